//! CloudWatch log groups of the functions, created explicitly with a retention so that logs do
//! not pile up forever and destroy removes them too.

use crate::errors::{cloud, gone_is_ok};
use crate::AwsClients;
use async_trait::async_trait;
use serde_json::json;
use std::sync::Arc;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a log group.
pub const KIND: &str = "log_group";

/// Days a function's logs are kept.
pub const RETENTION_DAYS: i32 = 30;

/// The log group Lambda writes a function's logs to.
pub fn log_group_name(function: &str) -> String {
    format!("/aws/lambda/{function}")
}

/// Creates, reads and deletes log groups.
pub struct LogGroupDriver {
    clients: Arc<AwsClients>,
}

impl LogGroupDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        LogGroupDriver { clients }
    }
}

#[async_trait]
impl ResourceDriver for LogGroupDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let out = self
            .clients
            .logs
            .describe_log_groups()
            .log_group_name_prefix(&spec.name)
            .send()
            .await
            .map_err(cloud)?;
        let Some(g) = out
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(spec.name.as_str()))
        else {
            return Ok(None);
        };
        let arn = g
            .arn()
            .unwrap_or_default()
            .trim_end_matches(":*")
            .to_string();
        let tags = crate::errors::not_found_is_none(
            self.clients
                .logs
                .list_tags_for_resource()
                .resource_arn(&arn)
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
                json!({"arn": arn, "retention_days": g.retention_in_days()}),
            )
            .owned_by(owner),
        ))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let r = self
            .clients
            .logs
            .create_log_group()
            .log_group_name(&spec.name)
            .tags(twin_config::names::TAG_KEY, crate::context::twin_tag(spec))
            .send()
            .await;
        if let Err(e) = r {
            let e = cloud(e);
            // Lambda may have made it already (a function invoked before we got here).
            if e.code != "ResourceAlreadyExistsException" {
                return Err(e);
            }
        }
        self.update(spec, &Observed::default(), deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let days = spec
            .desired
            .get("retention_days")
            .and_then(|v| v.as_i64())
            .unwrap_or(RETENTION_DAYS as i64) as i32;
        self.clients
            .logs
            .put_retention_policy()
            .log_group_name(&spec.name)
            .retention_in_days(days)
            .send()
            .await
            .map_err(cloud)?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("log group {} not listed yet", spec.name),
            )
        })
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        gone_is_ok(
            self.clients
                .logs
                .delete_log_group()
                .log_group_name(&spec.name)
                .send()
                .await,
        )
    }
}
