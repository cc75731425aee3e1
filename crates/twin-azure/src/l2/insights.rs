//! Application Insights (`Microsoft.Insights/components`, API 2020-02-02): kind `web`,
//! workspace-based (the twin's Log Analytics workspace), local (instrumentation-key) auth
//! disabled, so the handler sends telemetry with the twin's identity (Monitoring Metrics
//! Publisher, see [`super::role_needs`]). Its connection string is read from ARM when the app
//! settings are written and never kept in the state or logged.

use crate::arm::ArmClient;
use crate::context::{
    input, merged_tags, owner_from, resource_path, settled_state, GROUP_KEY, LOCATION_KEY,
};
use crate::l2::{link, same_id};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of the component.
pub const KIND: &str = "azure_application_insights";

/// API version (stable; specification/applicationinsights/.../stable/2020-02-02/components_API.json).
pub const API: &str = "2020-02-02";

/// ARM type of the component.
pub const TYPE: &str = "Microsoft.Insights/components";

/// The desired settings of the component (the keys `read` reports).
pub fn desired() -> Value {
    json!({
        "kind": "web",
        "application_type": "web",
        "ingestion_mode": "LogAnalytics",
        "disable_local_auth": true,
        "workspace": "linked",
    })
}

/// Creates, reads, updates and deletes the component.
pub struct InsightsDriver {
    arm: Arc<ArmClient>,
}

impl InsightsDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        InsightsDriver { arm }
    }

    fn path(&self, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(resource_path(
            &self.arm,
            input(spec, GROUP_KEY)?,
            TYPE,
            &spec.name,
        ))
    }

    async fn put(
        &self,
        spec: &ResourceSpec,
        tags: Value,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let what = what(spec);
        let ws = workspace_id(spec, deps)?;
        let body = json!({
            "location": input(spec, LOCATION_KEY)?,
            "kind": "web",
            "tags": tags,
            "properties": {
                "Application_Type": "web",
                "Flow_Type": "Bluefield",
                "Request_Source": "rest",
                "IngestionMode": "LogAnalytics",
                "WorkspaceResourceId": ws,
                "DisableLocalAuth": true,
            },
        });
        let got = self.arm.put(&self.path(spec)?, API, &body, &what).await?;
        observe(&got, &what, &ws)
    }
}

fn what(spec: &ResourceSpec) -> String {
    format!("Application Insights {}", spec.name)
}

/// Inputs key: spec id of the Log Analytics workspace.
pub const WORKSPACE_KEY: &str = "workspace";

/// The workspace's ARM id, as ARM reported it when the workspace was read.
fn workspace_id(spec: &ResourceSpec, deps: &Outputs) -> Result<String, CloudError> {
    let dep = twin_engine::ResourceId(input(spec, WORKSPACE_KEY)?.to_string());
    deps.attr(&dep, "id")
}

fn observe(body: &Value, what: &str, workspace: &str) -> Result<Observed, CloudError> {
    let state = settled_state(body, what)?;
    let id = body.get("id").and_then(Value::as_str).ok_or_else(|| {
        CloudError::fatal("NoResourceId", format!("{what}: ARM's answer has no id"))
    })?;
    let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
    let ws = body
        .pointer("/properties/WorkspaceResourceId")
        .and_then(Value::as_str);
    Ok(Observed::new(
        id,
        json!({
            "id": id,
            "kind": body.get("kind"),
            "application_type": p("Application_Type"),
            "ingestion_mode": p("IngestionMode"),
            // Absent means false: ARM omits the flag on components that never set it.
            "disable_local_auth": p("DisableLocalAuth").unwrap_or(json!(false)),
            "workspace": link(same_id(ws, workspace)),
            "provisioning_state": state,
        }),
    )
    .owned_by(owner_from(body.get("tags"))))
}

#[async_trait]
impl ResourceDriver for InsightsDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let what = what(spec);
        let Some(body) = self.arm.get(&self.path(spec)?, API, &what).await? else {
            return Ok(None);
        };
        // A plan before the workspace exists, or a destroy, has no workspace id at hand: the
        // link then reads as drift, never as a match.
        let ws = workspace_id(spec, deps).unwrap_or_default();
        observe(&body, &what, &ws).map(Some)
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec, merged_tags(None, spec), deps).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let current = self.arm.get(&self.path(spec)?, API, &what(spec)).await?;
        let tags = merged_tags(current.as_ref().and_then(|c| c.get("tags")), spec);
        self.put(spec, tags, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        self.arm.delete(&self.path(spec)?, API, &what(spec)).await
    }
}
