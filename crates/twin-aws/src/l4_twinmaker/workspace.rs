//! The TwinMaker workspace: its role and resource bucket. Desired keys: `role` and `bucket`
//! (names; the cloud reports ARNs, which `read` shortens to names).
//!
//! Deleting it first removes whatever entities and component types are still inside (TwinMaker
//! refuses to delete a non-empty workspace), so a destroy whose state file was lost or whose
//! hierarchy changed leaves nothing behind.

use super::component_type::delete_component_type;
use super::convert::arn_name;
use super::entity::delete_entity;
use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use twin_engine::wait::poll_until;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a workspace.
pub const KIND: &str = "twinmaker_workspace";

/// Component types TwinMaker puts in every workspace; they cannot be deleted.
const BUILT_IN_PREFIX: &str = "com.amazon.";

/// Creates, reads, updates and deletes the workspace.
pub struct WorkspaceDriver {
    clients: Arc<AwsClients>,
}

impl WorkspaceDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        WorkspaceDriver { clients }
    }

    fn role_arn(&self, spec: &ResourceSpec) -> String {
        self.clients
            .global_arn("iam", &format!("role/{}", str_of(spec, "role")))
    }

    fn bucket_arn(&self, spec: &ResourceSpec) -> String {
        format!(
            "arn:{}:s3:::{}",
            self.clients.partition,
            str_of(spec, "bucket")
        )
    }

    /// Removes every entity (root entities recursively) and every own component type.
    async fn empty(&self, workspace: &str) -> Result<(), CloudError> {
        let tm = &self.clients.twinmaker;
        let mut roots = Vec::new();
        let mut token = None;
        loop {
            let page = match not_found_is_none(
                tm.list_entities()
                    .workspace_id(workspace)
                    .set_next_token(token)
                    .send()
                    .await,
            )? {
                Some(p) => p,
                None => return Ok(()),
            };
            roots.extend(
                page.entity_summaries()
                    .iter()
                    .filter(|e| e.parent_entity_id().is_none_or(|p| p == "$ROOT"))
                    .map(|e| e.entity_id().to_string()),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        for id in roots {
            delete_entity(&self.clients, workspace, &id).await?;
        }
        let mut types = Vec::new();
        let mut token = None;
        loop {
            let page = match not_found_is_none(
                tm.list_component_types()
                    .workspace_id(workspace)
                    .set_next_token(token)
                    .send()
                    .await,
            )? {
                Some(p) => p,
                None => return Ok(()),
            };
            types.extend(
                page.component_type_summaries()
                    .iter()
                    .map(|c| c.component_type_id().to_string())
                    .filter(|id| !id.starts_with(BUILT_IN_PREFIX)),
            );
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        for id in types {
            delete_component_type(&self.clients, workspace, &id).await?;
        }
        Ok(())
    }
}

fn str_of<'a>(spec: &'a ResourceSpec, key: &str) -> &'a str {
    spec.desired
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// TwinMaker checks that it can assume the workspace role when the workspace is created; right
/// after the role was created IAM has not propagated it yet and TwinMaker answers with a
/// ValidationException about the role. That one is worth retrying; other validation errors not.
pub fn reclassify_role_not_ready(mut e: CloudError) -> CloudError {
    let m = e.message.to_ascii_lowercase();
    if e.code == "ValidationException"
        && m.contains("role")
        && (m.contains("assume") || m.contains("trust") || m.contains("not authorized"))
    {
        e.class = ErrorClass::EventualConsistency;
    }
    e
}

#[async_trait]
impl ResourceDriver for WorkspaceDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        _deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let got = not_found_is_none(
            self.clients
                .twinmaker
                .get_workspace()
                .workspace_id(&spec.name)
                .send()
                .await,
        )?;
        Ok(got.map(|w| {
            let bucket = w
                .s3_location()
                .map(|l| l.rsplit(":::").next().unwrap_or(l).to_string());
            Observed::new(
                w.arn(),
                json!({
                    "arn": w.arn(),
                    "role": w.role().map(arn_name),
                    "bucket": bucket,
                }),
            )
        }))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.clients
            .twinmaker
            .create_workspace()
            .workspace_id(&spec.name)
            .description("Created by deployer for a digital twin")
            .role(self.role_arn(spec))
            .s3_location(self.bucket_arn(spec))
            .tags(twin_config::names::TAG_KEY, crate::context::twin_tag(spec))
            .send()
            .await
            .map_err(|e| reclassify_role_not_ready(cloud(e)))?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("workspace {} not visible after create", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.clients
            .twinmaker
            .update_workspace()
            .workspace_id(&spec.name)
            .role(self.role_arn(spec))
            .s3_location(self.bucket_arn(spec))
            .send()
            .await
            .map_err(|e| reclassify_role_not_ready(cloud(e)))?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::fatal(
                "ResourceNotFoundException",
                format!("workspace {} vanished during update", spec.name),
            )
        })
    }

    async fn delete(&self, spec: &ResourceSpec, _current: &Observed) -> Result<(), CloudError> {
        self.empty(&spec.name).await?;
        gone_is_ok(
            self.clients
                .twinmaker
                .delete_workspace()
                .workspace_id(&spec.name)
                .send()
                .await,
        )?;
        let tm = &self.clients.twinmaker;
        let name = spec.name.as_str();
        poll_until(
            &format!("workspace {} deleted", spec.name),
            Duration::from_millis(500),
            Duration::from_secs(10),
            super::status::SETTLE_DEADLINE,
            move || async move {
                let got = not_found_is_none(tm.get_workspace().workspace_id(name).send().await)?;
                Ok(got.is_none().then_some(()))
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_role_validation_errors_are_retried() {
        let e = reclassify_role_not_ready(CloudError::fatal(
            "ValidationException",
            "Unable to assume role arn:aws:iam::1:role/dt-twinmaker; check the trust policy",
        ));
        assert_eq!(e.class, ErrorClass::EventualConsistency);
        let e = reclassify_role_not_ready(CloudError::fatal(
            "ValidationException",
            "workspaceId must match pattern",
        ));
        assert_eq!(e.class, ErrorClass::Fatal);
    }
}
