//! The `cold` and `archive` blob containers of the L3 storage account (API 2025-01-01):
//! private (`publicAccess: None`). Containers carry no tags, so the twin's name is kept in their
//! metadata, which is where ownership is read from.

use crate::arm::ArmClient;
use crate::context::{input, owner_from, resource_path, spec_tags, GROUP_KEY};
use crate::l3::storage;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a container.
pub const KIND: &str = "azure_blob_container";

/// Inputs key of the storage account a container is in.
pub const ACCOUNT_KEY: &str = "account";

/// The desired settings of a container.
pub fn desired() -> Value {
    json!({"public_access": "None"})
}

/// Creates, reads and deletes containers.
pub struct ContainerDriver {
    arm: Arc<ArmClient>,
}

impl ContainerDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        ContainerDriver { arm }
    }

    fn path(&self, spec: &ResourceSpec) -> Result<String, CloudError> {
        let account = resource_path(
            &self.arm,
            input(spec, GROUP_KEY)?,
            storage::TYPE,
            input(spec, ACCOUNT_KEY)?,
        );
        Ok(format!(
            "{account}/blobServices/default/containers/{}",
            spec.name
        ))
    }

    async fn put(&self, spec: &ResourceSpec) -> Result<Observed, CloudError> {
        let what = what(spec);
        let body = json!({"properties": {"publicAccess": "None", "metadata": spec_tags(spec)}});
        let got = self
            .arm
            .put(&self.path(spec)?, storage::API, &body, &what)
            .await?;
        Ok(observe(&got))
    }
}

fn what(spec: &ResourceSpec) -> String {
    let account = spec
        .inputs
        .get(ACCOUNT_KEY)
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("blob container {account}/{}", spec.name)
}

fn observe(body: &Value) -> Observed {
    let id = body.get("id").and_then(Value::as_str).unwrap_or_default();
    Observed::new(
        id,
        json!({
            "id": id,
            "public_access": body.pointer("/properties/publicAccess"),
        }),
    )
    .owned_by(owner_from(body.pointer("/properties/metadata")))
}

#[async_trait]
impl ResourceDriver for ContainerDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        Ok(self
            .arm
            .get(&self.path(spec)?, storage::API, &what(spec))
            .await?
            .map(|b| observe(&b)))
    }

    async fn create(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec).await
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.put(spec).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        self.arm
            .delete(&self.path(spec)?, storage::API, &what(spec))
            .await
    }
}
