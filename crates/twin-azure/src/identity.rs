//! The twin's user-assigned managed identity (`Microsoft.ManagedIdentity/userAssignedIdentities`,
//! API 2024-11-30): the identity the twin's functions run as and that role assignments name.

use crate::arm::ArmClient;
use crate::context::{
    input, merged_tags, owner_from, resource_path, settled_state, GROUP_KEY, LOCATION_KEY,
};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

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

/// Creates, reads and deletes the identity.
pub struct IdentityDriver {
    arm: Arc<ArmClient>,
}

impl IdentityDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        IdentityDriver { arm }
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
        let body = json!({"location": input(spec, LOCATION_KEY)?, "tags": tags});
        let got = self.arm.put(&self.path(spec)?, API, &body, &what).await?;
        observe(&got, &what)
    }
}

fn what(spec: &ResourceSpec) -> String {
    format!("managed identity {}", spec.name)
}

fn observe(body: &Value, what: &str) -> Result<Observed, CloudError> {
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

#[async_trait]
impl ResourceDriver for IdentityDriver {
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
