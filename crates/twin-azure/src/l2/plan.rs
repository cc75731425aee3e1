//! The Flex Consumption plan (`Microsoft.Web/serverfarms`, API 2024-11-01): sku `FC1`, tier
//! `FlexConsumption`, kind `functionapp`, Linux (`reserved: true`). Linux Consumption retires,
//! so Flex is the only serverless Linux plan (SPEC §9).

use crate::arm::ArmClient;
use crate::context::{
    input, merged_tags, owner_from, resource_path, settled_state, GROUP_KEY, LOCATION_KEY,
};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of the plan.
pub const KIND: &str = "azure_function_plan";

/// API version of Microsoft.Web (stable; specification/web/.../AppService/stable/2024-11-01,
/// the example `CreateOrUpdateFunctionAppFlexConsumption.json`).
pub const API: &str = "2024-11-01";

/// ARM type of the plan.
pub const TYPE: &str = "Microsoft.Web/serverfarms";

/// The desired settings of the plan (the keys `read` reports).
pub fn desired() -> Value {
    json!({"sku": "FC1", "tier": "FlexConsumption", "kind": "functionapp", "reserved": true})
}

/// Creates, reads, updates and deletes the plan.
pub struct PlanDriver {
    arm: Arc<ArmClient>,
}

impl PlanDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        PlanDriver { arm }
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
            "kind": "functionapp",
            "tags": tags,
            "sku": {"name": "FC1", "tier": "FlexConsumption"},
            "properties": {"reserved": true},
        });
        let got = self.arm.put(&self.path(spec)?, API, &body, &what).await?;
        observe(&got, &what)
    }
}

fn what(spec: &ResourceSpec) -> String {
    format!("Function App plan {}", spec.name)
}

fn observe(body: &Value, what: &str) -> Result<Observed, CloudError> {
    let state = settled_state(body, what)?;
    let id = body.get("id").and_then(Value::as_str).ok_or_else(|| {
        CloudError::fatal("NoResourceId", format!("{what}: ARM's answer has no id"))
    })?;
    Ok(Observed::new(
        id,
        json!({
            "id": id,
            "sku": body.pointer("/sku/name"),
            "tier": body.pointer("/sku/tier"),
            "kind": body.get("kind"),
            "reserved": body.pointer("/properties/reserved"),
            "provisioning_state": state,
        }),
    )
    .owned_by(owner_from(body.get("tags"))))
}

#[async_trait]
impl ResourceDriver for PlanDriver {
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
        // The site is deleted first (it depends on the plan); a plan with apps refuses.
        self.arm.delete(&self.path(spec)?, API, &what(spec)).await
    }
}
