//! The twin's DTDL model set in the instance, as one resource: the interfaces twin-models
//! generates, each under the version [`twin_models::versions::resolve`] gives it against the
//! models the instance holds (so the version comes from the service: an unchanged config
//! resolves to what is uploaded and sends nothing, a changed device gets `;N+1`). Missing
//! versions are uploaded in dependency order, at most 250 per call. Old versions are deleted
//! by [`super::retire`] once the twins moved off them; destroy deletes every model under the
//! twin's DTMI prefix, dependents first.

use super::client::AdtClient;
use super::{content_hash, instance_host, no_instance, HOST_KEY, PREFIX_KEY};
use crate::arm::ArmClient;
use crate::context::input;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};
use twin_models::dtdl::Interface;
use twin_models::order::ADT_MAX_MODELS_PER_CALL;
use twin_models::versions::{self, Resolution};

/// Driver kind of the model set.
pub const KIND: &str = "azure_digital_twins_models";

/// Inputs key: the generated interfaces (as generated, every one `;1`).
pub const MODELS_INPUT: &str = "interfaces";

/// Observed attribute: the resolved DTMI of each interface, by its unversioned DTMI.
pub const VERSIONS_ATTR: &str = "versions";

/// The desired settings: every generated interface is held (under some version), and the
/// content hash of the set (so a plan shows a changed set as a change).
pub fn desired(interfaces: &Value) -> Value {
    json!({"content": content_hash(interfaces), "missing_models": 0})
}

/// Uploads and deletes the twin's models.
pub struct ModelsDriver {
    arm: Arc<ArmClient>,
}

impl ModelsDriver {
    /// A driver on this client (whose credential the data-plane client reuses).
    pub fn new(arm: Arc<ArmClient>) -> Self {
        ModelsDriver { arm }
    }
}

fn what(spec: &ResourceSpec) -> String {
    format!(
        "DTDL models of Azure Digital Twins instance {}",
        spec.name.trim_end_matches("/models")
    )
}

/// The interfaces a spec asks for.
fn generated(spec: &ResourceSpec) -> Result<Vec<Interface>, CloudError> {
    let v = spec
        .inputs
        .get(MODELS_INPUT)
        .cloned()
        .unwrap_or(Value::Null);
    serde_json::from_value(v).map_err(|e| {
        CloudError::fatal(
            "SpecIncomplete",
            format!("{}: its interfaces do not parse: {e}", spec.label()),
        )
    })
}

/// The models the instance holds, as interfaces (a model whose definition does not parse as
/// one is kept with its id only, so it never equals a generated one).
pub async fn held_models(client: &AdtClient, what: &str) -> Result<Vec<Interface>, CloudError> {
    let mut out = Vec::new();
    for m in client.list_models(what).await? {
        let id = m.get("id").and_then(Value::as_str).ok_or_else(|| {
            CloudError::fatal(
                "MalformedResponse",
                format!("{what}: a listed model has no `id`"),
            )
        })?;
        let parsed = m
            .get("model")
            .cloned()
            .and_then(|d| serde_json::from_value::<Interface>(d).ok());
        out.push(parsed.unwrap_or_else(|| Interface {
            context: String::new(),
            id: id.to_string(),
            kind: String::new(),
            display_name: None,
            description: None,
            extends: Vec::new(),
            contents: Vec::new(),
        }));
    }
    Ok(out)
}

fn resolve(spec: &ResourceSpec, held: &[Interface], what: &str) -> Result<Resolution, CloudError> {
    versions::resolve(&generated(spec)?, held, input(spec, PREFIX_KEY)?).map_err(|e| {
        CloudError::fatal("InvalidModels", format!("{what}: {e}"))
            .with_hint("fix the relationships named above in config_hierarchy.json")
    })
}

fn observe(spec: &ResourceSpec, host: &str, r: &Resolution) -> Observed {
    let missing = r.to_upload.len();
    let content = if missing == 0 {
        spec.desired.get("content").cloned().unwrap_or(Value::Null)
    } else {
        json!(format!("{missing} models not uploaded"))
    };
    Observed::new(
        format!("{host}/models"),
        json!({
            "content": content,
            "missing_models": missing,
            VERSIONS_ATTR: r.versions,
            HOST_KEY: host,
        }),
    )
}

impl ModelsDriver {
    async fn upload(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let what = what(spec);
        let host = instance_host(&self.arm, spec, deps)
            .await?
            .ok_or_else(|| no_instance(&what))?;
        let client = AdtClient::new(&self.arm, &host);
        let held = held_models(&client, &what).await?;
        let r = resolve(spec, &held, &what)?;
        let batches = r
            .upload_batches(ADT_MAX_MODELS_PER_CALL)
            .map_err(|e| CloudError::fatal("InvalidModels", format!("{what}: {e}")))?;
        for (n, batch) in batches.iter().enumerate() {
            let bodies: Vec<Value> = batch.iter().map(|m| json!(m)).collect();
            client
                .add_models(
                    &bodies,
                    &format!("upload of {what} (batch {} of {})", n + 1, batches.len()),
                )
                .await?;
        }
        let mut done = r;
        done.to_upload.clear();
        Ok(observe(spec, &host, &done))
    }
}

#[async_trait]
impl ResourceDriver for ModelsDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let what = what(spec);
        let Some(host) = instance_host(&self.arm, spec, deps).await? else {
            return Ok(None);
        };
        let client = AdtClient::new(&self.arm, &host);
        let held = held_models(&client, &what).await?;
        let prefix = input(spec, PREFIX_KEY)?;
        if !held.iter().any(|m| m.id.starts_with(prefix)) {
            return Ok(None);
        }
        Ok(Some(observe(spec, &host, &resolve(spec, &held, &what)?)))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.upload(spec, deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.upload(spec, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        // Delete gets no outputs: the observation carries the instance's host. Models found
        // without it go with the instance, which is deleted after them.
        let Some(host) = current.attr(HOST_KEY) else {
            return Ok(());
        };
        let what = what(spec);
        let client = AdtClient::new(&self.arm, host);
        let held = held_models(&client, &what).await?;
        // Resolving nothing makes every held model under the prefix obsolete, dependents first.
        let all = versions::resolve(&[], &held, input(spec, PREFIX_KEY)?)
            .map_err(|e| CloudError::fatal("InvalidModels", format!("{what}: {e}")))?;
        for id in all.obsolete {
            client
                .delete_model(&id, &format!("delete model {id} of {what}"))
                .await?;
        }
        Ok(())
    }
}
