//! The Amazon Managed Grafana workspace. Grafana assigns workspace ids itself, so the workspace
//! is found again by its deterministic name. Desired keys: `authentication` (providers),
//! `permissionType`, `role` (name), `dataSources`, `accountAccess`. Creation, updates and
//! deletion are asynchronous: every change waits for ACTIVE or for the workspace to be gone.

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_grafana::types::{
    AccountAccessType, AuthenticationProviderTypes, DataSourceType, PermissionType,
    WorkspaceDescription, WorkspaceStatus,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use twin_engine::wait::poll_until;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a Grafana workspace.
pub const KIND: &str = "grafana_workspace";

/// First poll interval: a workspace takes minutes, so polling fast only costs calls.
const FIRST_POLL: Duration = Duration::from_secs(2);
/// Longest poll interval.
const MAX_POLL: Duration = Duration::from_secs(20);
/// How long creating or deleting a workspace may take.
const DEADLINE: Duration = Duration::from_secs(1200);

/// Creates, reads, updates and deletes the workspace.
pub struct GrafanaWorkspaceDriver {
    clients: Arc<AwsClients>,
}

impl GrafanaWorkspaceDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        GrafanaWorkspaceDriver { clients }
    }

    /// The id of the live (not deleting) workspace with this name, if any.
    async fn find(&self, name: &str) -> Result<Option<String>, CloudError> {
        let mut token = None;
        loop {
            let page = self
                .clients
                .grafana
                .list_workspaces()
                .set_next_token(token)
                .send()
                .await
                .map_err(cloud)?;
            if let Some(w) = page.workspaces().iter().find(|w| {
                w.name() == Some(name) && !matches!(w.status(), WorkspaceStatus::Deleting)
            }) {
                return Ok(Some(w.id().to_string()));
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(None);
            }
        }
    }

    async fn describe(&self, id: &str) -> Result<Option<WorkspaceDescription>, CloudError> {
        Ok(not_found_is_none(
            self.clients
                .grafana
                .describe_workspace()
                .workspace_id(id)
                .send()
                .await,
        )?
        .and_then(|o| o.workspace))
    }

    fn observed(&self, w: &WorkspaceDescription) -> Observed {
        let arn = self
            .clients
            .arn("grafana", &format!("/workspaces/{}", w.id()));
        let mut auth: Vec<&str> = w
            .authentication()
            .map(|a| a.providers().iter().map(|p| p.as_str()).collect())
            .unwrap_or_default();
        auth.sort_unstable();
        let mut sources: Vec<&str> = w.data_sources().iter().map(|d| d.as_str()).collect();
        sources.sort_unstable();
        Observed::new(
            w.id(),
            json!({
                "arn": arn,
                "id": w.id(),
                "endpoint": w.endpoint(),
                "url": super::api::base_url(w.endpoint()).ok(),
                "status": w.status().as_str(),
                "authentication": auth,
                "permissionType": w.permission_type().map(|p| p.as_str()),
                "role": w.workspace_role_arn().map(|r| r.rsplit('/').next().unwrap_or(r)),
                "dataSources": sources,
                "accountAccess": w.account_access_type().map(|a| a.as_str()),
            }),
        )
    }

    /// Waits until the workspace is ACTIVE; a failed state ends the wait with Grafana's reason.
    async fn wait_active(&self, name: &str, id: &str) -> Result<Observed, CloudError> {
        poll_until(
            &format!("Grafana workspace {name} ({id}) ACTIVE"),
            FIRST_POLL,
            MAX_POLL,
            DEADLINE,
            move || async move {
                let Some(w) = self.describe(id).await? else {
                    return Err(CloudError::new(
                        ErrorClass::EventualConsistency,
                        "NotYetVisible",
                        format!("Grafana workspace {id} not visible yet"),
                    ));
                };
                match w.status() {
                    WorkspaceStatus::Active => Ok(Some(self.observed(&w))),
                    WorkspaceStatus::Creating
                    | WorkspaceStatus::Updating
                    | WorkspaceStatus::Upgrading
                    | WorkspaceStatus::VersionUpdating => Ok(None),
                    other => Err(CloudError::fatal(
                        format!("Grafana{}", other.as_str()),
                        format!(
                            "Grafana workspace {name} ({id}) is {}{}",
                            other.as_str(),
                            w.degraded_workspace_reason()
                                .map(|r| format!(": {r}"))
                                .unwrap_or_default()
                        ),
                    )
                    .with_hint(
                        "check the workspace in the Grafana console (IAM Identity Center must be enabled for AWS_SSO), then run `destroy --layer l5` and `deploy`",
                    )),
                }
            },
        )
        .await
    }

    fn role_arn(&self, spec: &ResourceSpec) -> String {
        self.clients
            .global_arn("iam", &format!("role/{}", str_of(spec, "role")))
    }
}

fn str_of<'a>(spec: &'a ResourceSpec, key: &str) -> &'a str {
    spec.desired
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn strings(spec: &ResourceSpec, key: &str) -> Vec<String> {
    spec.desired
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn auth_providers(spec: &ResourceSpec) -> Vec<AuthenticationProviderTypes> {
    strings(spec, "authentication")
        .iter()
        .map(|s| AuthenticationProviderTypes::from(s.as_str()))
        .collect()
}

fn data_sources(spec: &ResourceSpec) -> Vec<DataSourceType> {
    strings(spec, "dataSources")
        .iter()
        .map(|s| DataSourceType::from(s.as_str()))
        .collect()
}

#[async_trait]
impl ResourceDriver for GrafanaWorkspaceDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        _deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let Some(id) = self.find(&spec.name).await? else {
            return Ok(None);
        };
        Ok(self.describe(&id).await?.map(|w| self.observed(&w)))
    }

    async fn create(&self, spec: &ResourceSpec, _deps: &Outputs) -> Result<Observed, CloudError> {
        let out = self
            .clients
            .grafana
            .create_workspace()
            .workspace_name(&spec.name)
            .workspace_description("Created by deployer for a digital twin")
            .account_access_type(AccountAccessType::from(str_of(spec, "accountAccess")))
            .set_authentication_providers(Some(auth_providers(spec)))
            .permission_type(PermissionType::from(str_of(spec, "permissionType")))
            .workspace_role_arn(self.role_arn(spec))
            .set_workspace_data_sources(Some(data_sources(spec)))
            .tags(twin_config::names::TAG_KEY, crate::context::twin_tag(spec))
            .send()
            .await
            .map_err(|e| crate::l4_twinmaker::reclassify_role_not_ready(cloud(e)))?;
        let id = out.workspace().map(|w| w.id().to_string()).ok_or_else(|| {
            CloudError::new(
                ErrorClass::Transient,
                "IncompleteResponse",
                format!("CreateWorkspace for {} returned no workspace", spec.name),
            )
        })?;
        self.wait_active(&spec.name, &id).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        _deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let id = current.cloud_id.clone();
        let drift = current.drift(&spec.desired);
        if drift.iter().any(|d| d != "authentication") {
            self.clients
                .grafana
                .update_workspace()
                .workspace_id(&id)
                .account_access_type(AccountAccessType::from(str_of(spec, "accountAccess")))
                .permission_type(PermissionType::from(str_of(spec, "permissionType")))
                .workspace_role_arn(self.role_arn(spec))
                .set_workspace_data_sources(Some(data_sources(spec)))
                .send()
                .await
                .map_err(|e| crate::l4_twinmaker::reclassify_role_not_ready(cloud(e)))?;
            self.wait_active(&spec.name, &id).await?;
        }
        if drift.iter().any(|d| d == "authentication") {
            self.clients
                .grafana
                .update_workspace_authentication()
                .workspace_id(&id)
                .set_authentication_providers(Some(auth_providers(spec)))
                .send()
                .await
                .map_err(cloud)?;
        }
        self.wait_active(&spec.name, &id).await
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        // The recorded id, else the one found by name (a state file from before the create
        // finished has none).
        let id = if current.cloud_id.is_empty() {
            match self.find(&spec.name).await? {
                Some(id) => id,
                None => return Ok(()),
            }
        } else {
            current.cloud_id.clone()
        };
        gone_is_ok(
            self.clients
                .grafana
                .delete_workspace()
                .workspace_id(&id)
                .send()
                .await,
        )?;
        let id = id.as_str();
        poll_until(
            &format!("Grafana workspace {} ({id}) deleted", spec.name),
            FIRST_POLL,
            MAX_POLL,
            DEADLINE,
            move || async move {
                match self.describe(id).await? {
                    None => Ok(Some(())),
                    Some(w) if matches!(w.status(), WorkspaceStatus::DeletionFailed) => {
                        Err(CloudError::fatal(
                            "GrafanaDELETION_FAILED",
                            format!("deleting Grafana workspace {} ({id}) failed", spec.name),
                        )
                        .with_hint(
                            "check the workspace in the Grafana console, then run `destroy` again",
                        ))
                    }
                    Some(_) => Ok(None),
                }
            },
        )
        .await
    }
}
