//! Application Insights (`Microsoft.Insights/components`, API 2020-02-02): kind `web`,
//! workspace-based (the twin's Log Analytics workspace), local (instrumentation-key) auth
//! disabled, so the handler sends telemetry with the twin's identity (Monitoring Metrics
//! Publisher, see [`super::role_needs`]). Its connection string is read from ARM when the app
//! settings are written and never kept in the state or logged.

use crate::arm::ArmClient;
use crate::arm_resource::{group_resource_path, ArmDriver, ArmResource};
use crate::context::{input, owner_from, settled_state, LOCATION_KEY};
use crate::l2::{link, same_id};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

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

/// Inputs key: spec id of the Log Analytics workspace.
pub const WORKSPACE_KEY: &str = "workspace";

/// The workspace's ARM id, as ARM reported it when the workspace was read.
fn workspace_id(spec: &ResourceSpec, deps: &Outputs) -> Result<String, CloudError> {
    let dep = twin_engine::ResourceId(input(spec, WORKSPACE_KEY)?.to_string());
    deps.attr(&dep, "id")
}

/// The component as an [`ArmResource`].
pub struct Insights;

/// Creates, reads, updates and deletes the component.
pub type InsightsDriver = ArmDriver<Insights>;

impl ArmResource for Insights {
    const API: &'static str = API;

    fn what(spec: &ResourceSpec) -> String {
        format!("Application Insights {}", spec.name)
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        group_resource_path(arm, spec, TYPE)
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        tags: Value,
        deps: &Outputs,
    ) -> Result<Value, CloudError> {
        // Writing needs the workspace's id: without it this is an error naming it.
        let ws = workspace_id(spec, deps)?;
        Ok(json!({
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
        }))
    }

    fn observe(
        body: &Value,
        what: &str,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        // A plan before the workspace exists, or a destroy, has no workspace id at hand: the
        // link then reads as drift, never as a match.
        let workspace = workspace_id(spec, deps).unwrap_or_default();
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
                "workspace": link(same_id(ws, &workspace)),
                "provisioning_state": state,
            }),
        )
        .owned_by(owner_from(body.get("tags"))))
    }
}
