//! The Flex Consumption plan (`Microsoft.Web/serverfarms`, API 2024-11-01): sku `FC1`, tier
//! `FlexConsumption`, kind `functionapp`, Linux (`reserved: true`). Linux Consumption retires,
//! so Flex is the only serverless Linux plan (SPEC §9).

use crate::arm::ArmClient;
use crate::arm_resource::{group_resource_path, ArmDriver, ArmResource};
use crate::context::{input, owner_from, settled_state, LOCATION_KEY};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

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

/// The plan as an [`ArmResource`]. The site is deleted first (it depends on the plan); a plan
/// with apps refuses deletion.
pub struct Plan;

/// Creates, reads, updates and deletes the plan.
pub type PlanDriver = ArmDriver<Plan>;

impl ArmResource for Plan {
    const API: &'static str = API;

    fn what(spec: &ResourceSpec) -> String {
        format!("Function App plan {}", spec.name)
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
            "kind": "functionapp",
            "tags": tags,
            "sku": {"name": "FC1", "tier": "FlexConsumption"},
            "properties": {"reserved": true},
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
}
