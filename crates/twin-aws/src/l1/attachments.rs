//! A device's attachments: its certificate to its thing (AttachThingPrincipal) and its policy to
//! its certificate (AttachPolicy), as one resource so a half-attached device is drift.

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of a device's attachments.
pub const KIND: &str = "iot_attachments";

/// Attaches, reads and detaches.
pub struct AttachmentsDriver {
    clients: Arc<AwsClients>,
}

impl AttachmentsDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        AttachmentsDriver { clients }
    }
}

fn field<'a>(spec: &'a ResourceSpec, k: &str) -> &'a str {
    spec.desired
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The certificate ARN from the certificate this spec depends on.
fn cert_arn(spec: &ResourceSpec, deps: &Outputs) -> Option<String> {
    let id = ResourceId::from(field(spec, "certificate"));
    deps.get(&id)
        .and_then(|o| o.attr("arn"))
        .map(str::to_string)
}

#[async_trait]
impl ResourceDriver for AttachmentsDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        // Without a certificate there is nothing to be attached (a certificate's delete
        // detaches everything anyway).
        let Some(arn) = cert_arn(spec, deps) else {
            return Ok(None);
        };
        let iot = &self.clients.iot;
        let thing = field(spec, "thing");
        let thing_attached =
            not_found_is_none(iot.list_thing_principals().thing_name(thing).send().await)?
                .is_some_and(|p| p.principals().iter().any(|x| x == &arn));
        let policy = field(spec, "policy");
        let policy_attached =
            not_found_is_none(iot.list_attached_policies().target(&arn).send().await)?
                .is_some_and(|p| p.policies().iter().any(|x| x.policy_name() == Some(policy)));
        if !thing_attached && !policy_attached {
            return Ok(None);
        }
        Ok(Some(Observed::new(
            format!("{arn}|{thing}|{policy}"),
            json!({
                "certificate": field(spec, "certificate"),
                "thing": thing,
                "policy": policy,
                "certificate_arn": arn,
                "thing_attached": thing_attached,
                "policy_attached": policy_attached,
            }),
        )))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.update(spec, &Observed::default(), deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let arn = cert_arn(spec, deps).ok_or_else(|| {
            CloudError::new(
                twin_engine::ErrorClass::NotFound,
                "DependencyMissing",
                format!("the certificate of {} is not deployed", spec.name),
            )
        })?;
        let iot = &self.clients.iot;
        if current.attributes.get("thing_attached") != Some(&Value::Bool(true)) {
            iot.attach_thing_principal()
                .thing_name(field(spec, "thing"))
                .principal(&arn)
                .send()
                .await
                .map_err(cloud)?;
        }
        if current.attributes.get("policy_attached") != Some(&Value::Bool(true)) {
            iot.attach_policy()
                .policy_name(field(spec, "policy"))
                .target(&arn)
                .send()
                .await
                .map_err(cloud)?;
        }
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                twin_engine::ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("attachments of {} not visible yet", spec.name),
            )
        })
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        let Some(arn) = current.attr("certificate_arn") else {
            return Ok(());
        };
        let iot = &self.clients.iot;
        gone_is_ok(
            iot.detach_policy()
                .policy_name(field(spec, "policy"))
                .target(arn)
                .send()
                .await,
        )?;
        gone_is_ok(
            iot.detach_thing_principal()
                .thing_name(field(spec, "thing"))
                .principal(arn)
                .send()
                .await,
        )
    }
}
