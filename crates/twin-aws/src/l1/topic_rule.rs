//! The topic rule on `<twin>/iot-data/+` invoking the dispatcher; what it cannot deliver goes
//! through its error action to L1's dead-letter queue (plain JSON, not base64, so the message
//! is IoT's documented error message with the payload in `base64OriginalPayload`).

use crate::context::LayerContext;
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_iot::types::{Action, LambdaAction, SqsAction, TopicRulePayload};
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::names;
use twin_engine::{
    CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec,
};

/// Driver kind of the rule.
pub const KIND: &str = "iot_topic_rule";

/// The rule's SQL: every telemetry message, with the device id of its topic added.
pub fn rule_sql(twin: &str) -> String {
    format!(
        "SELECT *, topic(3) AS topicDeviceId FROM '{}'",
        names::telemetry_topic_filter(twin)
    )
}

/// The rule's ARN (deterministic, so the dispatcher's permission can name it first).
pub fn rule_arn(ctx: &LayerContext<'_>) -> String {
    ctx.clients.arn(
        "iot",
        &format!("rule/{}", names::topic_rule_name(ctx.name())),
    )
}

/// Creates, reads, replaces and deletes the rule.
pub struct TopicRuleDriver {
    clients: Arc<AwsClients>,
}

impl TopicRuleDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        TopicRuleDriver { clients }
    }
}

fn field<'a>(spec: &'a ResourceSpec, k: &str) -> &'a str {
    spec.desired
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The error action: an SQS action into the queue whose URL SQS gave for the spec's
/// `error_queue_id` dependency.
fn error_action(spec: &ResourceSpec, deps: &Outputs) -> Result<Option<Action>, CloudError> {
    let Some(queue_id) = spec.inputs.get("error_queue_id").and_then(Value::as_str) else {
        return Ok(None);
    };
    let url = deps.attr(&ResourceId(queue_id.to_string()), "url")?;
    let sqs = SqsAction::builder()
        .role_arn(field(spec, "error_role_arn"))
        .queue_url(url)
        .use_base64(false)
        .build()
        .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
    Ok(Some(Action::builder().sqs(sqs).build()))
}

fn payload(spec: &ResourceSpec, deps: &Outputs) -> Result<TopicRulePayload, CloudError> {
    let action = Action::builder()
        .lambda(
            LambdaAction::builder()
                .function_arn(field(spec, "function_arn"))
                .build()
                .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?,
        )
        .build();
    TopicRulePayload::builder()
        .sql(field(spec, "sql"))
        .aws_iot_sql_version("2016-03-23")
        .rule_disabled(false)
        .actions(action)
        .set_error_action(error_action(spec, deps)?)
        .build()
        .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))
}

#[async_trait]
impl ResourceDriver for TopicRuleDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let r = self
            .clients
            .iot
            .get_topic_rule()
            .rule_name(&spec.name)
            .send()
            .await;
        // IoT answers a missing rule with UnauthorizedException (it does not reveal names).
        let r = match r {
            Err(e) if crate::errors::classify(&e).code == "UnauthorizedException" => {
                return Ok(None)
            }
            other => other,
        };
        let Some(out) = not_found_is_none(r)? else {
            return Ok(None);
        };
        let Some(rule) = out.rule() else {
            return Ok(None);
        };
        let function = rule
            .actions()
            .iter()
            .find_map(|a| a.lambda().map(|l| l.function_arn().to_string()));
        let error_sqs = rule.error_action().and_then(|a| a.sqs());
        // The queue's name is the last segment of the URL SQS gave (`.../<account>/<name>`).
        let error_queue = error_sqs.map(|q| q.queue_url().rsplit('/').next().unwrap_or_default());
        let error_role_arn = error_sqs.map(|q| q.role_arn());
        let arn = out.rule_arn().unwrap_or_default().to_string();
        // A rule is the twin's when it reads the twin's own telemetry topics.
        let twin = crate::context::twin_tag(spec);
        let owner = if rule.sql().unwrap_or_default().contains(&format!(
            "'{}'",
            twin_config::names::telemetry_topic_filter(&twin)
        )) {
            twin_engine::Owner::Twin {
                name: twin,
                id: None,
            }
        } else {
            twin_engine::Owner::Unmarked
        };
        Ok(Some(
            Observed::new(
                arn.clone(),
                json!({
                    "arn": arn,
                    "sql": rule.sql(),
                    "function_arn": function,
                    "enabled": !rule.rule_disabled().unwrap_or(false),
                    "error_queue": error_queue,
                    "error_role_arn": error_role_arn,
                }),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.clients
            .iot
            .create_topic_rule()
            .rule_name(&spec.name)
            .topic_rule_payload(payload(spec, deps)?)
            .tags(format!(
                "{}={}",
                names::TAG_KEY,
                crate::context::twin_tag(spec)
            ))
            .send()
            .await
            .map_err(cloud)?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("rule {} not visible yet", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.clients
            .iot
            .replace_topic_rule()
            .rule_name(&spec.name)
            .topic_rule_payload(payload(spec, deps)?)
            .send()
            .await
            .map_err(cloud)?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "ResourceNotFoundException",
            &format!("rule {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        gone_is_ok(
            self.clients
                .iot
                .delete_topic_rule()
                .rule_name(&spec.name)
                .send()
                .await,
        )
    }
}
