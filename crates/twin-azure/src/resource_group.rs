//! The twin's resource group `<twin>-rg`: created and owned by the deployer, holding every
//! Azure resource of the twin. One without the twin's tag is someone else's and is never
//! adopted or deleted (its contents would go with it).

use crate::arm::{ArmClient, RESOURCES_API};
use crate::context::{group_path, input, merged_tags, owner_from, settled_state, LOCATION_KEY};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of the resource group.
pub const KIND: &str = "azure_resource_group";

/// The desired settings of the group.
pub fn desired(location: &str) -> Value {
    json!({"location": location, "provisioning_state": "Succeeded"})
}

/// Creates, reads and deletes the resource group.
pub struct ResourceGroupDriver {
    arm: Arc<ArmClient>,
}

impl ResourceGroupDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        ResourceGroupDriver { arm }
    }

    fn what(spec: &ResourceSpec) -> String {
        format!("resource group {}", spec.name)
    }

    async fn put(&self, spec: &ResourceSpec, tags: Value) -> Result<Observed, CloudError> {
        let body = json!({"location": input(spec, LOCATION_KEY)?, "tags": tags});
        let got = self
            .arm
            .put(
                &group_path(&self.arm, &spec.name),
                RESOURCES_API,
                &body,
                &Self::what(spec),
            )
            .await?;
        observe(&got, &Self::what(spec))
    }
}

fn observe(body: &Value, what: &str) -> Result<Observed, CloudError> {
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

#[async_trait]
impl ResourceDriver for ResourceGroupDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let what = Self::what(spec);
        match self
            .arm
            .get(&group_path(&self.arm, &spec.name), RESOURCES_API, &what)
            .await?
        {
            Some(body) => observe(&body, &what).map(Some),
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
        // The tags are re-read rather than taken from the observation, which keeps only ours.
        let what = Self::what(spec);
        let current = self
            .arm
            .get(&group_path(&self.arm, &spec.name), RESOURCES_API, &what)
            .await?;
        let tags = merged_tags(current.as_ref().and_then(|c| c.get("tags")), spec);
        self.put(spec, tags).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        // The engine has checked the group's tag: deleting it deletes what is left inside.
        self.arm
            .delete(
                &group_path(&self.arm, &spec.name),
                RESOURCES_API,
                &Self::what(spec),
            )
            .await
    }
}
