//! The Log Analytics workspace (`Microsoft.OperationalInsights/workspaces`, API 2023-09-01)
//! that the twin's workspace-based Application Insights stores its logs in: pay-as-you-go
//! (`PerGB2018`), 30 days of retention.

use crate::arm::ArmClient;
use crate::context::{
    input, merged_tags, owner_from, resource_path, settled_state, GROUP_KEY, LOCATION_KEY,
};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

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

/// Creates, reads, updates and deletes the workspace.
pub struct WorkspaceDriver {
    arm: Arc<ArmClient>,
}

impl WorkspaceDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        WorkspaceDriver { arm }
    }

    fn path(&self, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(resource_path(
            &self.arm,
            input(spec, GROUP_KEY)?,
            TYPE,
            &spec.name,
        ))
    }

    async fn put(&self, spec: &ResourceSpec, tags: Value) -> Result<Observed, CloudError> {
        let what = what(spec);
        let body = json!({
            "location": input(spec, LOCATION_KEY)?,
            "tags": tags,
            "properties": {
                "sku": {"name": spec.desired["sku"]},
                "retentionInDays": spec.desired["retention_in_days"],
            },
        });
        let got = self.arm.put(&self.path(spec)?, API, &body, &what).await?;
        observe(&got, &what)
    }
}

fn what(spec: &ResourceSpec) -> String {
    format!("Log Analytics workspace {}", spec.name)
}

fn observe(body: &Value, what: &str) -> Result<Observed, CloudError> {
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

#[async_trait]
impl ResourceDriver for WorkspaceDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let what = what(spec);
        match self.arm.get(&self.path(spec)?, API, &what).await? {
            Some(b) => observe(&b, &what).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec, merged_tags(None, spec)).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        let current = self.arm.get(&self.path(spec)?, API, &what(spec)).await?;
        let tags = merged_tags(current.as_ref().and_then(|c| c.get("tags")), spec);
        self.put(spec, tags).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        self.arm.delete(&self.path(spec)?, API, &what(spec)).await
    }
}
