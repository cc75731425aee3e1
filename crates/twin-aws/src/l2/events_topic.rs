//! The SNS topic of the twin's event notifications, `<twin>-events`: created only when some rule
//! notifies, encrypted with SNS's AWS-managed key and tagged `twin=<name>`. The persister
//! publishes to it (its ARN is in the persister's `EVENTS_TOPIC_ARN`); who subscribes is the
//! user's choice, so subscriptions are neither created nor compared.

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::{AwsClients, LayerContext};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::{names, Layer};
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of the notification topic.
pub const KIND: &str = "sns_events_topic";

/// The key of the topic's resource id.
const KEY: &str = "events";

/// SNS's AWS-managed key: encryption at rest with nothing to create or pay for a key.
pub const MANAGED_KEY: &str = "alias/aws/sns";

/// The topic's settings compared for drift.
pub fn desired(twin: &str) -> Value {
    json!({
        "display_name": format!("{twin} events"),
        "kms_master_key_id": MANAGED_KEY,
    })
}

/// The topic's ARN (deterministic: account, region and name).
pub fn topic_arn(ctx: &LayerContext<'_>) -> String {
    ctx.clients
        .arn("sns", &names::events_topic_name(ctx.name()))
}

/// The topic's resource id in `layer`.
pub fn topic_id(layer: Layer) -> twin_engine::ResourceId {
    crate::context::resource_id(layer, KIND, KEY)
}

/// The topic's spec in `layer`.
pub fn spec(ctx: &LayerContext<'_>, layer: Layer) -> ResourceSpec {
    let mut spec = ctx
        .spec(layer, KIND, KEY, names::events_topic_name(ctx.name()))
        .desired(desired(ctx.name()));
    // Where to find it is an input, not a setting: it follows from the account and region.
    spec.inputs["arn"] = json!(topic_arn(ctx));
    spec
}

/// Creates, reads, updates and deletes the notification topic.
pub struct EventsTopicDriver {
    clients: Arc<AwsClients>,
}

impl EventsTopicDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        EventsTopicDriver { clients }
    }
}

fn arn_of(spec: &ResourceSpec) -> Result<String, CloudError> {
    spec.inputs
        .get("arn")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            CloudError::fatal(
                "IncompleteSpec",
                format!("SNS topic {} has no ARN in its inputs", spec.name),
            )
        })
}

fn setting<'a>(spec: &'a ResourceSpec, key: &str) -> &'a str {
    spec.desired
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[async_trait]
impl ResourceDriver for EventsTopicDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let arn = arn_of(spec)?;
        let Some(out) = not_found_is_none(
            self.clients
                .sns
                .get_topic_attributes()
                .topic_arn(&arn)
                .send()
                .await,
        )?
        else {
            return Ok(None);
        };
        let attrs = out.attributes().cloned().unwrap_or_default();
        let observed_arn = attrs.get("TopicArn").cloned().ok_or_else(|| {
            CloudError::new(
                ErrorClass::Transient,
                "IncompleteResponse",
                format!(
                    "SNS GetTopicAttributes for topic {} returned no TopicArn",
                    spec.name
                ),
            )
        })?;
        let tags = not_found_is_none(
            self.clients
                .sns
                .list_tags_for_resource()
                .resource_arn(&arn)
                .send()
                .await,
        )?;
        let owner = crate::context::owner_from_tags(
            tags.iter()
                .flat_map(|t| t.tags())
                .map(|t| (t.key(), t.value())),
        );
        // An unset attribute reads as empty, so a topic whose encryption was switched off
        // shows as drift rather than as an error.
        let attr = |k: &str| attrs.get(k).cloned().unwrap_or_default();
        Ok(Some(
            Observed::new(
                observed_arn.clone(),
                json!({
                    "arn": observed_arn,
                    "display_name": attr("DisplayName"),
                    "kms_master_key_id": attr("KmsMasterKeyId"),
                }),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let tag = aws_sdk_sns::types::Tag::builder()
            .key(names::TAG_KEY)
            .value(crate::context::twin_tag(spec))
            .build()
            .map_err(|e| CloudError::fatal("InvalidTag", e.to_string()))?;
        // CreateTopic is idempotent for the same name and attributes, so a retry after a lost
        // response finds the same topic.
        self.clients
            .sns
            .create_topic()
            .name(&spec.name)
            .attributes("DisplayName", setting(spec, "display_name"))
            .attributes("KmsMasterKeyId", setting(spec, "kms_master_key_id"))
            .tags(tag)
            .send()
            .await
            .map_err(cloud)?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("SNS topic {} not visible after create", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let arn = arn_of(spec)?;
        for (attribute, key) in [
            ("DisplayName", "display_name"),
            ("KmsMasterKeyId", "kms_master_key_id"),
        ] {
            self.clients
                .sns
                .set_topic_attributes()
                .topic_arn(&arn)
                .attribute_name(attribute)
                .attribute_value(setting(spec, key))
                .send()
                .await
                .map_err(cloud)?;
        }
        crate::errors::reread(
            self.read(spec, deps).await?,
            "NotFound",
            &format!("SNS topic {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        let arn = arn_of(spec)?;
        gone_is_ok(self.clients.sns.delete_topic().topic_arn(arn).send().await)
    }
}
