//! The movers' daily EventBridge rules (`rate(1 day)`), each targeting one mover. The rule owns
//! its target: EventBridge refuses to delete a rule that still has targets.

use crate::context::LayerContext;
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_eventbridge::types::{RuleState, Tag, Target};
use serde_json::{json, Value};
use std::sync::Arc;
use twin_config::{names, Layer};
use twin_engine::{
    CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec,
};

/// Driver kind of a schedule.
pub const KIND: &str = "schedule_rule";

/// How often the movers run.
pub const SCHEDULE: &str = "rate(1 day)";

/// Id of the mover's target on its rule.
const TARGET_ID: &str = "mover";

/// The ARN of a mover's rule (deterministic, so the invoke permission can name it first).
pub fn rule_arn(ctx: &LayerContext<'_>, mover: &str) -> String {
    ctx.clients.arn(
        "events",
        &format!("rule/{}", names::schedule_rule_name(ctx.name(), mover)),
    )
}

/// The daily rule of `mover` in `layer`, invoking the function `function_id`.
pub fn schedule_spec(
    ctx: &LayerContext<'_>,
    layer: Layer,
    mover: &str,
    deps: Vec<ResourceId>,
) -> ResourceSpec {
    ctx.spec(
        layer,
        KIND,
        mover,
        names::schedule_rule_name(ctx.name(), mover),
    )
    .depends_on(deps)
    .desired(json!({
        "schedule": SCHEDULE,
        "state": "ENABLED",
        "target": crate::lambda_fn::function_arn(ctx, mover),
    }))
}

/// Creates, reads and deletes rules with their target.
pub struct ScheduleDriver {
    clients: Arc<AwsClients>,
}

impl ScheduleDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        ScheduleDriver { clients }
    }

    async fn put(&self, spec: &ResourceSpec) -> Result<(), CloudError> {
        let ev = &self.clients.events;
        let tag = Tag::builder()
            .key(names::TAG_KEY)
            .value(crate::context::twin_tag(spec))
            .build()
            .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
        ev.put_rule()
            .name(&spec.name)
            .schedule_expression(field(spec, "schedule"))
            .state(RuleState::Enabled)
            .description("Runs a digital twin's storage mover daily (deployer)")
            .tags(tag)
            .send()
            .await
            .map_err(cloud)?;
        let target = Target::builder()
            .id(TARGET_ID)
            .arn(field(spec, "target"))
            .build()
            .map_err(|e| CloudError::fatal("RequestInvalid", e.to_string()))?;
        let out = ev
            .put_targets()
            .rule(&spec.name)
            .targets(target)
            .send()
            .await
            .map_err(cloud)?;
        if out.failed_entry_count() > 0 {
            let e = out.failed_entries().first();
            return Err(CloudError::fatal(
                e.and_then(|e| e.error_code()).unwrap_or("PutTargetsFailed"),
                e.and_then(|e| e.error_message())
                    .unwrap_or("the target was not added")
                    .to_string(),
            ));
        }
        Ok(())
    }
}

fn field<'a>(spec: &'a ResourceSpec, k: &str) -> &'a str {
    spec.desired
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[async_trait]
impl ResourceDriver for ScheduleDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let ev = &self.clients.events;
        let Some(rule) = not_found_is_none(ev.describe_rule().name(&spec.name).send().await)?
        else {
            return Ok(None);
        };
        let targets = not_found_is_none(ev.list_targets_by_rule().rule(&spec.name).send().await)?;
        let target = targets
            .as_ref()
            .and_then(|t| t.targets().iter().find(|t| t.id() == TARGET_ID))
            .map(|t| t.arn().to_string());
        let arn = rule.arn().unwrap_or_default().to_string();
        let tags = not_found_is_none(ev.list_tags_for_resource().resource_arn(&arn).send().await)?;
        let owner = crate::context::owner_from_tags(
            tags.iter()
                .flat_map(|t| t.tags())
                .map(|t| (t.key(), t.value())),
        );
        Ok(Some(
            Observed::new(
                arn.clone(),
                json!({
                    "arn": arn,
                    "schedule": rule.schedule_expression(),
                    "state": rule.state().map(|s| s.as_str()),
                    "target": target,
                }),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec).await?;
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
        self.create(spec, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        let ev = &self.clients.events;
        if let Some(t) = not_found_is_none(ev.list_targets_by_rule().rule(&spec.name).send().await)?
        {
            let ids: Vec<String> = t.targets().iter().map(|t| t.id().to_string()).collect();
            if !ids.is_empty() {
                gone_is_ok(
                    ev.remove_targets()
                        .rule(&spec.name)
                        .set_ids(Some(ids))
                        .send()
                        .await,
                )?;
            }
        }
        gone_is_ok(ev.delete_rule().name(&spec.name).send().await)
    }
}
