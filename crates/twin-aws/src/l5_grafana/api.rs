//! How the deployer authenticates to a Managed Grafana workspace's HTTP API (the client is
//! `twin_grafana::api`): a short-lived service account token per session, created with
//! CreateWorkspaceServiceAccountToken and deleted again when the session ends. The token lives
//! in memory only.

use crate::errors::cloud;
use crate::AwsClients;
use async_trait::async_trait;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use twin_engine::{CloudError, ErrorClass, Outputs};
pub use twin_grafana::api::{base_url, grafana_uid, Answer, GrafanaApi, Secret, Session, Target};
use twin_grafana::api::{Forbidden, GrafanaAuth};

/// How long a token lives: long enough for one driver call (a few HTTP requests, a health
/// wait), short enough that one that failed to be deleted expires almost at once.
pub const TOKEN_SECONDS_TO_LIVE: i32 = 300;

/// Target id: the Managed Grafana workspace id (`g-…`).
pub const WORKSPACE_ID: &str = "workspaceId";
/// Target id: the deployer's service account in the workspace.
pub const SERVICE_ACCOUNT_ID: &str = "serviceAccountId";

/// A process-wide counter that makes token names unique within one second.
static TOKEN_SEQ: AtomicU64 = AtomicU64::new(0);

fn token_name() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!(
        "deployer-{now}-{}-{}",
        std::process::id(),
        TOKEN_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Service account tokens of the deployer's account in the workspace.
pub struct ServiceAccountAuth {
    clients: Arc<AwsClients>,
}

/// The Grafana HTTP API client of a workspace, authenticated with service account tokens.
pub fn grafana_api(clients: Arc<AwsClients>) -> Result<GrafanaApi, CloudError> {
    GrafanaApi::new(Arc::new(ServiceAccountAuth { clients }))
}

#[async_trait]
impl GrafanaAuth for ServiceAccountAuth {
    fn target_of(&self, deps: &Outputs) -> Result<Target, CloudError> {
        let ws = super::workspace_id();
        Ok(Target {
            endpoint: deps.attr(&ws, "endpoint")?,
            ids: vec![
                (WORKSPACE_ID.to_string(), deps.attr(&ws, "id")?),
                (
                    SERVICE_ACCOUNT_ID.to_string(),
                    deps.attr(&super::service_account_id(), "id")?,
                ),
            ],
        })
    }

    fn id_keys(&self) -> &'static [&'static str] {
        &[WORKSPACE_ID, SERVICE_ACCOUNT_ID]
    }

    async fn open(&self, target: &Target) -> Result<(Secret, Option<String>), CloudError> {
        let workspace = target.id(WORKSPACE_ID)?;
        let out = self
            .clients
            .grafana
            .create_workspace_service_account_token()
            .workspace_id(workspace)
            .service_account_id(target.id(SERVICE_ACCOUNT_ID)?)
            .name(token_name())
            .seconds_to_live(TOKEN_SECONDS_TO_LIVE)
            .send()
            .await
            .map_err(cloud)?;
        let token = out.service_account_token().ok_or_else(|| {
            CloudError::new(
                ErrorClass::Transient,
                "IncompleteResponse",
                format!(
                    "CreateWorkspaceServiceAccountToken for workspace {workspace} returned no token"
                ),
            )
        })?;
        Ok((Secret::new(token.key()), Some(token.id().to_string())))
    }

    async fn close(&self, target: &Target, token_id: Option<String>) {
        let (Some(token_id), Ok(workspace), Ok(account)) = (
            token_id,
            target.id(WORKSPACE_ID),
            target.id(SERVICE_ACCOUNT_ID),
        ) else {
            return;
        };
        let deleted = crate::errors::gone_is_ok(
            self.clients
                .grafana
                .delete_workspace_service_account_token()
                .workspace_id(workspace)
                .service_account_id(account)
                .token_id(&token_id)
                .send()
                .await,
        );
        if let Err(e) = deleted {
            // The token expires by itself within TOKEN_SECONDS_TO_LIVE; the work is done, so
            // failing it for this would only repeat it.
            tracing::warn!(
                workspace = %workspace,
                token_id = %token_id,
                "could not delete the short-lived Grafana token (it expires in {TOKEN_SECONDS_TO_LIVE} s): {e}"
            );
        }
    }

    fn forbidden(&self) -> Forbidden {
        Forbidden {
            class: ErrorClass::Fatal,
            hint: "the deployer's service account is not a Grafana Admin of the workspace; run `destroy --layer l5` and `deploy` to make it again",
        }
    }
}

/// The TwinMaker data source needs nothing beyond its desired settings: it assumes the
/// dashboard role, named in its `jsonData`.
pub struct TwinMakerLink;

#[async_trait]
impl twin_grafana::data_plane::DatasourceLink for TwinMakerLink {
    async fn body_extra(
        &self,
        _: &twin_engine::ResourceSpec,
        _: &Outputs,
    ) -> Result<serde_json::Value, CloudError> {
        Ok(serde_json::json!({}))
    }

    fn observe_extra(
        &self,
        _: &serde_json::Value,
        _: &twin_engine::ResourceSpec,
        _: &Outputs,
    ) -> serde_json::Value {
        serde_json::json!({})
    }

    fn unhealthy_hint(&self) -> &'static str {
        "the data source assumes the dashboard role; if this persists, check the role's trust policy names the workspace role"
    }
}
