//! The twin's resource group `<twin>-rg`: created and owned by the deployer, holding every
//! Azure resource of the twin. One without the twin's tag is someone else's and is never
//! adopted or deleted (its contents would go with it).

use crate::arm::{ArmClient, RESOURCES_API};
use crate::arm_resource::{ArmDriver, ArmResource};
use crate::context::{group_path, input, owner_from, settled_state, LOCATION_KEY};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of the resource group.
pub const KIND: &str = "azure_resource_group";

/// The desired settings of the group.
pub fn desired(location: &str) -> Value {
    json!({"location": location, "provisioning_state": "Succeeded"})
}

/// The resource group as an [`ArmResource`]. The engine checks the group's tag before a
/// delete: deleting it deletes what is left inside.
pub struct ResourceGroup;

/// Creates, reads, updates (tags) and deletes the resource group.
pub type ResourceGroupDriver = ArmDriver<ResourceGroup>;

impl ArmResource for ResourceGroup {
    const API: &'static str = RESOURCES_API;

    fn what(spec: &ResourceSpec) -> String {
        format!("resource group {}", spec.name)
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(group_path(arm, &spec.name))
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        tags: Value,
        _: &Outputs,
    ) -> Result<Value, CloudError> {
        Ok(json!({"location": input(spec, LOCATION_KEY)?, "tags": tags}))
    }

    fn observe(
        body: &Value,
        what: &str,
        _: &ResourceSpec,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        let state = settled_state(body, what)?;
        let id = body.get("id").and_then(Value::as_str).unwrap_or_default();
        Ok(Observed::new(
            id,
            json!({
                "id": id,
                "name": body.get("name"),
                "location": body.get("location"),
                "provisioning_state": state,
            }),
        )
        .owned_by(owner_from(body.get("tags"))))
    }
}
