//! A cross-cloud boundary's secret in AWS Secrets Manager (`<twin>-boundary-<hop>`): 32 random
//! bytes made by `create`, never read back into the deployer's output or state. `read` reports
//! only a fingerprint of each stage (`AWSCURRENT`, and `AWSPENDING` while a rotation has staged
//! the next secret), so the state shows when the value changed without holding it.
//!
//! The same secret serves either role: on the sending side the function signs with
//! `AWSCURRENT`; on the receiving side the ingress accepts `AWSCURRENT` and `AWSPENDING`.
//! Rotation (`deployer rotate-secrets`) is [`stage_next`] on the receiver, the sender switched,
//! then [`promote_next`] on the receiver.

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_secretsmanager::types::Tag;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};
use twin_functions::boundary::{AcceptedSecrets, BoundarySecret};

/// Driver kind of a boundary secret.
pub const KIND: &str = "secretsmanager_boundary_secret";

/// The stage a sender signs with and a receiver accepts first.
pub const CURRENT: &str = "AWSCURRENT";
/// The stage of the next secret during a rotation: accepted by a receiver, not used by a sender.
pub const PENDING: &str = "AWSPENDING";

/// The settings compared for drift: the description that says what the secret is for (the
/// value is never a setting: it is made once and changed only by rotation).
pub fn desired(twin: &str, hop: &str) -> Value {
    json!({"description": description(twin, hop)})
}

/// The spec of `boundary`'s secret on its AWS sending side, in the sender's layer (key: the
/// hop's slug). Its `arn` output is what the sender's role may read.
pub fn secret_spec(
    ctx: &crate::LayerContext<'_>,
    boundary: &twin_config::Boundary,
) -> ResourceSpec {
    let hop = boundary.hop.slug();
    ctx.spec(boundary.sender.layer, KIND, hop, &boundary.secret)
        .desired(desired(ctx.name(), hop))
}

/// The id of the secret spec of `hop`'s boundary sent from `layer`.
pub fn secret_id(layer: twin_config::Layer, hop: twin_config::Hop) -> twin_engine::ResourceId {
    crate::context::resource_id(layer, KIND, hop.slug())
}

fn description(twin: &str, hop: &str) -> String {
    format!("deployer: HMAC secret of the cross-cloud boundary {hop} of twin {twin}")
}

/// Creates, reads, updates and deletes boundary secrets.
pub struct BoundarySecretDriver {
    clients: Arc<AwsClients>,
}

impl BoundarySecretDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        BoundarySecretDriver { clients }
    }
}

fn incomplete(name: &str, what: &str) -> CloudError {
    CloudError::new(
        ErrorClass::Transient,
        "IncompleteResponse",
        format!("Secrets Manager {what} for secret {name}"),
    )
}

/// The value of stage `stage` of secret `name`, or `None` if the secret or the stage is absent.
async fn stage_value(
    clients: &AwsClients,
    name: &str,
    stage: &str,
) -> Result<Option<BoundarySecret>, CloudError> {
    let Some(out) = not_found_is_none(
        clients
            .secrets
            .get_secret_value()
            .secret_id(name)
            .version_stage(stage)
            .send()
            .await,
    )?
    else {
        return Ok(None);
    };
    let text = out.secret_string().ok_or_else(|| {
        incomplete(
            name,
            &format!("GetSecretValue ({stage}) returned no SecretString"),
        )
    })?;
    BoundarySecret::from_encoded(&format!("secret {name} ({stage})"), text)
        .map(Some)
        .map_err(|e| {
            CloudError::fatal("InvalidBoundarySecret", e.to_string()).with_hint(
                "the secret's value was changed outside deployer; run `deployer rotate-secrets` to replace it",
            )
        })
}

/// The secret a sender signs with (`AWSCURRENT`).
pub async fn current(clients: &AwsClients, name: &str) -> Result<BoundarySecret, CloudError> {
    stage_value(clients, name, CURRENT).await?.ok_or_else(|| {
        CloudError::new(
            ErrorClass::NotFound,
            "ResourceNotFoundException",
            format!("boundary secret {name} has no {CURRENT} value"),
        )
        .with_hint("run `deployer deploy` to create it")
    })
}

/// The ingress URL `boundary`'s AWS sender is configured with (its deployed function's
/// `BOUNDARY_INGRESS_URL`, read back from Lambda: where it really posts, not what the config
/// says); `None` when the function is not deployed or has no such variable.
pub async fn sender_ingress_url(
    clients: &AwsClients,
    twin: &str,
    boundary: &twin_config::Boundary,
) -> Result<Option<String>, CloudError> {
    let name = twin_config::names::cloud_function_name(twin, boundary.sender.function);
    let found = not_found_is_none(
        clients
            .lambda
            .get_function_configuration()
            .function_name(&name)
            .send()
            .await,
    )
    .map_err(|e| {
        e.with_hint(format!(
            "the boundary's health needs lambda:GetFunctionConfiguration on function {name}"
        ))
    })?;
    Ok(found.and_then(|f| {
        f.environment()
            .and_then(|e| e.variables())
            .and_then(|v| v.get(twin_functions::env_vars::BOUNDARY_INGRESS_URL))
            .cloned()
    }))
}

/// The secrets a receiver accepts: `AWSCURRENT`, and `AWSPENDING` while a rotation is under way.
pub async fn accepted(clients: &AwsClients, name: &str) -> Result<AcceptedSecrets, CloudError> {
    let accepted = AcceptedSecrets::new(current(clients, name).await?);
    Ok(match stage_value(clients, name, PENDING).await? {
        Some(next) => accepted.also(next),
        None => accepted,
    })
}

/// Rotation step on the receiver: stores `next` as `AWSPENDING`, so the receiver accepts both.
pub async fn stage_next(
    clients: &AwsClients,
    name: &str,
    next: &BoundarySecret,
) -> Result<(), CloudError> {
    clients
        .secrets
        .put_secret_value()
        .secret_id(name)
        .secret_string(next.encoded())
        .version_stages(PENDING)
        .send()
        .await
        .map_err(cloud)?;
    Ok(())
}

/// Rotation step: makes the `AWSPENDING` version `AWSCURRENT` (the old one becomes
/// `AWSPREVIOUS`, which no receiver accepts) and clears `AWSPENDING`. Without a pending
/// version this is a no-op, so a rotation interrupted after it can simply be run again.
pub async fn promote_next(clients: &AwsClients, name: &str) -> Result<(), CloudError> {
    let out = clients
        .secrets
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .map_err(cloud)?;
    let stages = out.version_ids_to_stages().cloned().unwrap_or_default();
    let holding = |stage: &str| {
        stages
            .iter()
            .find(|(_, s)| s.iter().any(|x| x == stage))
            .map(|(v, _)| v.clone())
    };
    let Some(pending) = holding(PENDING) else {
        return Ok(());
    };
    let current = holding(CURRENT);
    if current.as_deref() != Some(pending.as_str()) {
        let mut move_current = clients
            .secrets
            .update_secret_version_stage()
            .secret_id(name)
            .version_stage(CURRENT)
            .move_to_version_id(&pending);
        if let Some(c) = current {
            move_current = move_current.remove_from_version_id(c);
        }
        move_current.send().await.map_err(cloud)?;
    }
    clients
        .secrets
        .update_secret_version_stage()
        .secret_id(name)
        .version_stage(PENDING)
        .remove_from_version_id(pending)
        .send()
        .await
        .map_err(cloud)?;
    Ok(())
}

fn tag(spec: &ResourceSpec) -> Tag {
    Tag::builder()
        .key(twin_config::names::TAG_KEY)
        .value(crate::context::twin_tag(spec))
        .build()
}

fn wanted_description(spec: &ResourceSpec) -> Result<String, CloudError> {
    spec.desired
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            CloudError::fatal(
                "InvalidSpec",
                format!("boundary secret {} has no description setting", spec.name),
            )
        })
}

#[async_trait]
impl ResourceDriver for BoundarySecretDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let Some(out) = not_found_is_none(
            self.clients
                .secrets
                .describe_secret()
                .secret_id(&spec.name)
                .send()
                .await,
        )?
        else {
            return Ok(None);
        };
        // A secret scheduled for deletion is gone for every purpose; `create` restores it.
        if out.deleted_date().is_some() {
            return Ok(None);
        }
        let arn = out
            .arn()
            .ok_or_else(|| incomplete(&spec.name, "DescribeSecret returned no ARN"))?
            .to_string();
        let owner = crate::context::owner_from_tags(
            out.tags()
                .iter()
                .filter_map(|t| Some((t.key()?, t.value()?))),
        );
        let fingerprint = |s: Option<BoundarySecret>| s.map(|s| s.fingerprint());
        let current = fingerprint(stage_value(&self.clients, &spec.name, CURRENT).await?);
        let next = fingerprint(stage_value(&self.clients, &spec.name, PENDING).await?);
        Ok(Some(
            Observed::new(
                arn.clone(),
                json!({
                    "arn": arn,
                    "name": spec.name,
                    "description": out.description(),
                    // Fingerprints only (SHA-256 of a label and the value): never the value.
                    "fingerprint": current,
                    "next_fingerprint": next,
                }),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let description = wanted_description(spec)?;
        let secret = BoundarySecret::generate();
        let created = self
            .clients
            .secrets
            .create_secret()
            .name(&spec.name)
            .description(&description)
            .secret_string(secret.encoded())
            .tags(tag(spec))
            .send()
            .await;
        if let Err(e) = created {
            let e = cloud(e);
            if !e.message.contains("scheduled for deletion") {
                return Err(e);
            }
            // The name is held by a deleted secret still in its recovery window (deleted by
            // hand without force): take it back, with a fresh value and this twin's tag.
            self.clients
                .secrets
                .restore_secret()
                .secret_id(&spec.name)
                .send()
                .await
                .map_err(cloud)?;
            self.clients
                .secrets
                .put_secret_value()
                .secret_id(&spec.name)
                .secret_string(secret.encoded())
                .send()
                .await
                .map_err(cloud)?;
            self.clients
                .secrets
                .update_secret()
                .secret_id(&spec.name)
                .description(&description)
                .send()
                .await
                .map_err(cloud)?;
            self.clients
                .secrets
                .tag_resource()
                .secret_id(&spec.name)
                .tags(tag(spec))
                .send()
                .await
                .map_err(cloud)?;
        }
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("boundary secret {} not visible after create", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        // Only the description can drift; the value changes by rotation alone.
        self.clients
            .secrets
            .update_secret()
            .secret_id(&spec.name)
            .description(wanted_description(spec)?)
            .send()
            .await
            .map_err(cloud)?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "ResourceNotFoundException",
            &format!("boundary secret {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        // Without recovery window: destroy leaves nothing, and a later deploy can use the name.
        gone_is_ok(
            self.clients
                .secrets
                .delete_secret()
                .secret_id(&spec.name)
                .force_delete_without_recovery(true)
                .send()
                .await,
        )
    }
}

/// One side's copy of a boundary secret in Secrets Manager, for `sync` and `rotate-secrets`
/// (`twin_functions::boundary::rotate`): current = `AWSCURRENT`, next = `AWSPENDING`.
pub struct SecretsManagerStore {
    clients: Arc<AwsClients>,
    name: String,
}

impl SecretsManagerStore {
    /// The store of secret `name` (`twin_config::boundary_secret_name`).
    pub fn new(clients: Arc<AwsClients>, name: impl Into<String>) -> Self {
        Self {
            clients,
            name: name.into(),
        }
    }

    /// The function-side error for a failed call, keeping the code, message and whether a
    /// retry may help.
    fn err(&self, operation: &'static str, e: CloudError) -> twin_functions::CloudError {
        use twin_functions::CloudErrorKind as K;
        let kind = match e.class {
            ErrorClass::Throttling => K::Throttled,
            ErrorClass::Transient | ErrorClass::EventualConsistency => K::Transient,
            ErrorClass::NotFound => K::NotFound,
            ErrorClass::Fatal if e.code.contains("AccessDenied") => K::AccessDenied,
            ErrorClass::Fatal => K::Rejected,
        };
        twin_functions::CloudError::new(
            operation,
            format!("secret {}", self.name),
            e.code,
            e.message,
            kind,
        )
    }
}

#[async_trait]
impl twin_functions::boundary::BoundarySecretStore for SecretsManagerStore {
    fn location(&self) -> String {
        format!("AWS Secrets Manager secret {}", self.name)
    }

    async fn current(&self) -> Result<Option<BoundarySecret>, twin_functions::CloudError> {
        stage_value(&self.clients, &self.name, CURRENT)
            .await
            .map_err(|e| self.err("GetSecretValue", e))
    }

    async fn next(&self) -> Result<Option<BoundarySecret>, twin_functions::CloudError> {
        stage_value(&self.clients, &self.name, PENDING)
            .await
            .map_err(|e| self.err("GetSecretValue", e))
    }

    async fn set_current(&self, secret: &BoundarySecret) -> Result<(), twin_functions::CloudError> {
        // Without stages, PutSecretValue makes the new version AWSCURRENT (the old one becomes
        // AWSPREVIOUS) and leaves AWSPENDING where it was.
        self.clients
            .secrets
            .put_secret_value()
            .secret_id(&self.name)
            .secret_string(secret.encoded())
            .send()
            .await
            .map_err(|e| self.err("PutSecretValue", cloud(e)))?;
        Ok(())
    }

    async fn stage_next(&self, secret: &BoundarySecret) -> Result<(), twin_functions::CloudError> {
        stage_next(&self.clients, &self.name, secret)
            .await
            .map_err(|e| self.err("PutSecretValue", e))
    }

    async fn promote_next(&self) -> Result<(), twin_functions::CloudError> {
        promote_next(&self.clients, &self.name)
            .await
            .map_err(|e| self.err("UpdateSecretVersionStage", e))
    }
}
