//! A layer's dead-letter queue: a standard SQS queue (Lambda destinations and IoT error actions
//! refuse FIFO queues), kept 14 days (SQS's maximum, so a failure seen after a weekend is still
//! there), encrypted with SQS-managed keys and tagged `twin=<name>`.

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a dead-letter queue.
pub const KIND: &str = "sqs_dead_letter_queue";

/// How long a failed message is kept: 14 days, SQS's maximum.
pub const RETENTION_SECONDS: i64 = 14 * 24 * 3600;

/// The settings compared for drift.
pub fn desired() -> Value {
    json!({"retention_seconds": RETENTION_SECONDS, "sse": true})
}

/// Creates, reads, updates and deletes dead-letter queues.
pub struct QueueDriver {
    clients: Arc<AwsClients>,
}

impl QueueDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        QueueDriver { clients }
    }
}

/// The URL SQS gives for the queue `name`, or `None` when there is no such queue.
pub async fn queue_url(clients: &AwsClients, name: &str) -> Result<Option<String>, CloudError> {
    let Some(out) = not_found_is_none(clients.sqs.get_queue_url().queue_name(name).send().await)?
    else {
        return Ok(None);
    };
    out.queue_url().map(|u| Some(u.to_string())).ok_or_else(|| {
        CloudError::new(
            ErrorClass::Transient,
            "IncompleteResponse",
            format!("SQS GetQueueUrl for queue {name} returned no URL"),
        )
    })
}

/// A queue's attributes: `None` when it vanished between the two calls.
async fn attributes(
    clients: &AwsClients,
    url: &str,
) -> Result<Option<HashMap<QueueAttributeName, String>>, CloudError> {
    let out = not_found_is_none(
        clients
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await,
    )?;
    Ok(out.map(|o| o.attributes().cloned().unwrap_or_default()))
}

fn settings_of(spec: &ResourceSpec) -> (String, String) {
    let retention = spec
        .desired
        .get("retention_seconds")
        .and_then(Value::as_i64)
        .unwrap_or(RETENTION_SECONDS);
    let sse = spec
        .desired
        .get("sse")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    (retention.to_string(), sse.to_string())
}

#[async_trait]
impl ResourceDriver for QueueDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let Some(url) = queue_url(&self.clients, &spec.name).await? else {
            return Ok(None);
        };
        let Some(attrs) = attributes(&self.clients, &url).await? else {
            return Ok(None);
        };
        let arn = attrs
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .ok_or_else(|| {
                CloudError::new(
                    ErrorClass::Transient,
                    "IncompleteResponse",
                    format!(
                        "SQS GetQueueAttributes for queue {} returned no QueueArn",
                        spec.name
                    ),
                )
            })?;
        let number = |k: QueueAttributeName| attrs.get(&k).and_then(|v| v.parse::<i64>().ok());
        let tags = not_found_is_none(
            self.clients
                .sqs
                .list_queue_tags()
                .queue_url(&url)
                .send()
                .await,
        )?;
        let owner = crate::context::owner_from_tags(
            tags.iter()
                .flat_map(|t| t.tags().into_iter().flatten())
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        Ok(Some(
            Observed::new(
                arn.clone(),
                json!({
                    "arn": arn,
                    "url": url,
                    "name": spec.name,
                    "retention_seconds": number(QueueAttributeName::MessageRetentionPeriod),
                    "sse": attrs.get(&QueueAttributeName::SqsManagedSseEnabled).map(|v| v == "true"),
                    // Reported, not compared: how many failed messages wait.
                    "messages": number(QueueAttributeName::ApproximateNumberOfMessages),
                }),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let (retention, sse) = settings_of(spec);
        self.clients
            .sqs
            .create_queue()
            .queue_name(&spec.name)
            .attributes(QueueAttributeName::MessageRetentionPeriod, retention)
            .attributes(QueueAttributeName::SqsManagedSseEnabled, sse)
            .tags(twin_config::names::TAG_KEY, crate::context::twin_tag(spec))
            .send()
            .await
            .map_err(cloud)?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("queue {} not visible after create", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let url = current.attr("url").map(str::to_string).ok_or_else(|| {
            CloudError::fatal(
                "IncompleteObservation",
                format!("queue {} was read without its URL", spec.name),
            )
        })?;
        let (retention, sse) = settings_of(spec);
        self.clients
            .sqs
            .set_queue_attributes()
            .queue_url(url)
            .attributes(QueueAttributeName::MessageRetentionPeriod, retention)
            .attributes(QueueAttributeName::SqsManagedSseEnabled, sse)
            .send()
            .await
            .map_err(cloud)?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "AWS.SimpleQueueService.NonExistentQueue",
            &format!("queue {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        // The URL is asked for again: a recorded one may be of a queue deleted and re-made.
        let Some(url) = queue_url(&self.clients, &spec.name).await? else {
            return Ok(());
        };
        gone_is_ok(self.clients.sqs.delete_queue().queue_url(url).send().await)
    }
}
