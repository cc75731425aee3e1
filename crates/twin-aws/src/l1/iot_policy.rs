//! A device's IoT policy: connect only as its own client id, publish only to its own topic.

use crate::context::LayerContext;
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_iot::types::Tag;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::names;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of an IoT policy.
pub const KIND: &str = "iot_policy";

/// The policy document of one device. The client id is the thing name (what the simulator
/// connects as: unique across twins); the topic is `<twin>/iot-data/<device>`.
pub fn policy_document(ctx: &LayerContext<'_>, device: &str) -> Value {
    let topic = names::telemetry_topic(ctx.name(), device);
    let client = names::mqtt_client_id(ctx.name(), device);
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": ctx.clients.arn("iot", &format!("client/{client}"))},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": ctx.clients.arn("iot", &format!("topic/{topic}"))},
        ],
    })
}

/// Creates, reads, versions and deletes IoT policies.
pub struct IotPolicyDriver {
    clients: Arc<AwsClients>,
}

impl IotPolicyDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        IotPolicyDriver { clients }
    }
}

fn document(spec: &ResourceSpec) -> String {
    spec.desired
        .get("document")
        .cloned()
        .unwrap_or(Value::Null)
        .to_string()
}

#[async_trait]
impl ResourceDriver for IotPolicyDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let Some(p) = not_found_is_none(
            self.clients
                .iot
                .get_policy()
                .policy_name(&spec.name)
                .send()
                .await,
        )?
        else {
            return Ok(None);
        };
        let arn = p.policy_arn().unwrap_or_default().to_string();
        let doc = p
            .policy_document()
            .map(crate::iam::parse_policy_document)
            .unwrap_or(Value::Null);
        // IoT lists no tags on moto and a policy document is the policy: one that grants the
        // twin's own telemetry topic is the twin's (the same mark discovery uses).
        let owner = if doc.to_string().contains(&format!(
            ":topic/{}/iot-data/",
            crate::context::twin_tag(spec)
        )) {
            twin_engine::Owner::Twin {
                name: crate::context::twin_tag(spec),
                id: None,
            }
        } else {
            twin_engine::Owner::Unmarked
        };
        Ok(Some(
            Observed::new(
                arn.clone(),
                json!({"arn": arn, "name": spec.name, "document": doc}),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let tag = Tag::builder()
            .key(names::TAG_KEY)
            .value(crate::context::twin_tag(spec))
            .build()
            .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
        self.clients
            .iot
            .create_policy()
            .policy_name(&spec.name)
            .policy_document(document(spec))
            .tags(tag)
            .send()
            .await
            .map_err(cloud)?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("policy {} not visible yet", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let iot = &self.clients.iot;
        // A policy keeps at most five versions: make room by deleting the oldest old one.
        let versions = iot
            .list_policy_versions()
            .policy_name(&spec.name)
            .send()
            .await
            .map_err(cloud)?;
        let mut old: Vec<_> = versions
            .policy_versions()
            .iter()
            .filter(|v| !v.is_default_version())
            .filter_map(|v| v.version_id().map(str::to_string))
            .collect();
        old.sort_by_key(|v| v.parse::<u64>().unwrap_or(0));
        if versions.policy_versions().len() >= 5 {
            if let Some(oldest) = old.first() {
                gone_is_ok(
                    iot.delete_policy_version()
                        .policy_name(&spec.name)
                        .policy_version_id(oldest)
                        .send()
                        .await,
                )?;
            }
        }
        iot.create_policy_version()
            .policy_name(&spec.name)
            .policy_document(document(spec))
            .set_as_default(true)
            .send()
            .await
            .map_err(cloud)?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "ResourceNotFoundException",
            &format!("policy {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        delete_policy(&self.clients, &spec.name).await
    }
}

/// Detaches a policy from every target, deletes its old versions, then the policy.
pub async fn delete_policy(clients: &AwsClients, name: &str) -> Result<(), CloudError> {
    let iot = &clients.iot;
    if let Some(t) =
        not_found_is_none(iot.list_targets_for_policy().policy_name(name).send().await)?
    {
        for target in t.targets() {
            gone_is_ok(
                iot.detach_policy()
                    .policy_name(name)
                    .target(target)
                    .send()
                    .await,
            )?;
        }
    }
    if let Some(v) = not_found_is_none(iot.list_policy_versions().policy_name(name).send().await)? {
        for version in v
            .policy_versions()
            .iter()
            .filter(|v| !v.is_default_version())
        {
            if let Some(id) = version.version_id() {
                gone_is_ok(
                    iot.delete_policy_version()
                        .policy_name(name)
                        .policy_version_id(id)
                        .send()
                        .await,
                )?;
            }
        }
    }
    gone_is_ok(iot.delete_policy().policy_name(name).send().await)
}
