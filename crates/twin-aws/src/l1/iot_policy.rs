//! A device's IoT policy: connect only as its own client id, publish only to its own topic, and
//! (when an event rule sends it feedback) subscribe to and receive only its own feedback topic.

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
/// connects as: unique across twins); the topic is `<twin>/iot-data/<device>`. A device that an
/// event rule sends feedback to may also subscribe to `<twin>/feedback/<device>` (the filter is
/// the topic itself, no wildcard) and receive on it; devices without feedback get no such grant.
pub fn policy_document(ctx: &LayerContext<'_>, device: &str) -> Value {
    let topic = names::telemetry_topic(ctx.name(), device);
    let client = names::mqtt_client_id(ctx.name(), device);
    let mut statements = vec![
        json!({"Effect": "Allow", "Action": "iot:Connect",
         "Resource": ctx.clients.arn("iot", &format!("client/{client}"))}),
        json!({"Effect": "Allow", "Action": "iot:Publish",
         "Resource": ctx.clients.arn("iot", &format!("topic/{topic}"))}),
    ];
    if ctx.twin.receives_feedback(device) {
        let feedback = names::feedback_topic(ctx.name(), device);
        statements.push(json!({"Effect": "Allow", "Action": "iot:Subscribe",
            "Resource": ctx.clients.arn("iot", &format!("topicfilter/{feedback}"))}));
        statements.push(json!({"Effect": "Allow", "Action": "iot:Receive",
            "Resource": ctx.clients.arn("iot", &format!("topic/{feedback}"))}));
    }
    json!({
        "Version": "2012-10-17",
        "Statement": statements,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::Artifacts;
    use std::path::PathBuf;
    use twin_config::{Architecture, ProviderName, Providers, TwinConfig};

    fn twin(events: Value) -> TwinConfig {
        TwinConfig {
            dir: PathBuf::from("/nonexistent/t"),
            twin: serde_json::from_value(json!({
                "digital_twin_name": "t",
                "hot_storage_size_in_days": 1,
                "cold_storage_size_in_days": 2
            }))
            .expect("settings"),
            devices: serde_json::from_value(json!([
                {"id": "a", "properties": [{"name": "p", "dataType": "DOUBLE"}]},
                {"id": "b", "properties": [{"name": "p", "dataType": "DOUBLE"}]}
            ]))
            .expect("devices"),
            providers: Providers::all(ProviderName::Aws),
            hierarchy: None,
            events: serde_json::from_value(events).expect("rules"),
            warnings: Vec::new(),
        }
    }

    fn documents(config: &TwinConfig) -> (Value, Value) {
        let conf = aws_types::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_types::region::Region::new("us-east-1"))
            .build();
        let clients = Arc::new(AwsClients::from_sdk_config(
            &conf,
            "123456789012".into(),
            "us-east-1".into(),
            "aws".into(),
        ));
        let artifacts = Arc::new(Artifacts::new(None, Architecture::Arm64));
        let ctx = LayerContext {
            twin: config,
            clients: &clients,
            artifacts: &artifacts,
        };
        (policy_document(&ctx, "a"), policy_document(&ctx, "b"))
    }

    #[test]
    fn the_simulator_subscribes_only_feedback_targets_to_their_own_topic() {
        let config = twin(json!([{
            "key": "hot",
            "condition": {"text": "e.c.p > 1", "devices": ["b"]},
            "action": {"type": "mqtt", "iotDeviceId": "a", "payload": "x"}
        }]));
        let topics = crate::l1::simulator_config::feedback_topics(&config);
        assert_eq!(
            topics.into_iter().collect::<Vec<_>>(),
            vec![("a".to_string(), "t/feedback/a".to_string())]
        );
        assert!(crate::l1::simulator_config::feedback_topics(&twin(json!([]))).is_empty());
    }

    #[test]
    fn only_a_feedback_target_may_subscribe_and_only_to_its_own_feedback_topic() {
        let config = twin(json!([{
            "key": "hot",
            "condition": {"text": "e.c.p > 1", "devices": ["b"]},
            "action": {"type": "mqtt", "iotDeviceId": "a", "payload": "x"}
        }]));
        let (a, b) = documents(&config);
        let actions = |doc: &Value| -> Vec<String> {
            doc["Statement"]
                .as_array()
                .expect("statements")
                .iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        s["Action"].as_str().unwrap_or(""),
                        s["Resource"].as_str().unwrap_or("")
                    )
                })
                .collect()
        };
        assert_eq!(
            actions(&a)[2..],
            [
                "iot:Subscribe arn:aws:iot:us-east-1:123456789012:topicfilter/t/feedback/a",
                "iot:Receive arn:aws:iot:us-east-1:123456789012:topic/t/feedback/a",
            ]
        );
        // The device whose readings the rule reads, but which gets no feedback, gains nothing.
        assert_eq!(actions(&b).len(), 2);
        let (plain, _) = documents(&twin(json!([])));
        assert_eq!(actions(&plain).len(), 2);
    }
}
