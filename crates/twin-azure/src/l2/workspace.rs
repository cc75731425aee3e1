//! The Log Analytics workspace (`Microsoft.OperationalInsights/workspaces`, API 2023-09-01)
//! that the twin's workspace-based Application Insights stores its logs in: pay-as-you-go
//! (`PerGB2018`), 30 days of retention.

use crate::arm::ArmClient;
use crate::arm_resource::{group_resource_path, ArmDriver, ArmResource};
use crate::context::{input, owner_from, settled_state, LOCATION_KEY};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of the workspace.
pub const KIND: &str = "azure_log_analytics_workspace";

/// API version (stable; specification/operationalinsights/.../stable/2023-09-01/Workspaces.json).
pub const API: &str = "2023-09-01";

/// ARM type of the workspace.
pub const TYPE: &str = "Microsoft.OperationalInsights/workspaces";

/// The desired settings of the workspace (the keys `read` reports).
pub fn desired() -> Value {
    json!({"sku": "PerGB2018", "retention_in_days": 30})
}

/// The workspace as an [`ArmResource`].
pub struct Workspace;

/// Creates, reads, updates and deletes the workspace.
pub type WorkspaceDriver = ArmDriver<Workspace>;

impl ArmResource for Workspace {
    const API: &'static str = API;

    fn what(spec: &ResourceSpec) -> String {
        format!("Log Analytics workspace {}", spec.name)
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        group_resource_path(arm, spec, TYPE)
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        tags: Value,
        _: &Outputs,
    ) -> Result<Value, CloudError> {
        Ok(json!({
            "location": input(spec, LOCATION_KEY)?,
            "tags": tags,
            "properties": {
                "sku": {"name": spec.desired["sku"]},
                "retentionInDays": spec.desired["retention_in_days"],
            },
        }))
    }

    fn observe(
        body: &Value,
        what: &str,
        _: &ResourceSpec,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        let state = settled_state(body, what)?;
        let id = body.get("id").and_then(Value::as_str).ok_or_else(|| {
            CloudError::fatal("NoResourceId", format!("{what}: ARM's answer has no id"))
        })?;
        let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
        Ok(Observed::new(
            id,
            json!({
                "id": id,
                "sku": body.pointer("/properties/sku/name"),
                "retention_in_days": p("retentionInDays"),
                "customer_id": p("customerId"),
                "provisioning_state": state,
            }),
        )
        .owned_by(owner_from(body.get("tags"))))
    }
}
