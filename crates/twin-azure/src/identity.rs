//! The twin's user-assigned managed identity (`Microsoft.ManagedIdentity/userAssignedIdentities`,
//! API 2024-11-30): the identity the twin's functions run as and that role assignments name.

use crate::arm::ArmClient;
use crate::arm_resource::{group_resource_path, ArmDriver, ArmResource};
use crate::context::{input, owner_from, settled_state, LOCATION_KEY};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of the managed identity.
pub const KIND: &str = "azure_managed_identity";

/// API version (stable; specification/msi/resource-manager/Microsoft.ManagedIdentity/stable).
pub const API: &str = "2024-11-30";

/// ARM type of the identity.
pub const TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

/// The desired settings of the identity.
pub fn desired(location: &str) -> Value {
    json!({"location": location, "provisioning_state": "Succeeded"})
}

/// The managed identity as an [`ArmResource`].
pub struct Identity;

/// Creates, reads, updates (tags) and deletes the identity.
pub type IdentityDriver = ArmDriver<Identity>;

impl ArmResource for Identity {
    const API: &'static str = API;

    fn what(spec: &ResourceSpec) -> String {
        format!("managed identity {}", spec.name)
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
        let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
        Ok(Observed::new(
            id,
            json!({
                "id": id,
                "location": body.get("location"),
                "provisioning_state": state,
                "principal_id": p("principalId"),
                "client_id": p("clientId"),
                "tenant_id": p("tenantId"),
            }),
        )
        .owned_by(owner_from(body.get("tags"))))
    }
}
