//! The `cold` and `archive` blob containers of the L3 storage account (API 2025-01-01):
//! private (`publicAccess: None`). Containers carry no tags, so the twin's name is kept in their
//! metadata, which is where ownership is read from.

use crate::arm::ArmClient;
use crate::arm_resource::{ArmDriver, ArmResource};
use crate::context::{input, owner_from, resource_path, spec_tags, GROUP_KEY};
use crate::l3::storage;
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of a container.
pub const KIND: &str = "azure_blob_container";

/// Inputs key of the storage account a container is in.
pub const ACCOUNT_KEY: &str = "account";

/// The desired settings of a container.
pub fn desired() -> Value {
    json!({"public_access": "None"})
}

/// A blob container as an [`ArmResource`] (no ARM tags: its metadata carries the twin's name).
pub struct BlobContainer;

/// Creates, reads, updates and deletes containers.
pub type ContainerDriver = ArmDriver<BlobContainer>;

impl ArmResource for BlobContainer {
    const API: &'static str = storage::API;
    const TAGGED: bool = false;

    fn what(spec: &ResourceSpec) -> String {
        let account = spec
            .inputs
            .get(ACCOUNT_KEY)
            .and_then(Value::as_str)
            .unwrap_or("?");
        format!("blob container {account}/{}", spec.name)
    }

    fn path(arm: &ArmClient, spec: &ResourceSpec) -> Result<String, CloudError> {
        let account = resource_path(
            arm,
            input(spec, GROUP_KEY)?,
            storage::TYPE,
            input(spec, ACCOUNT_KEY)?,
        );
        Ok(format!(
            "{account}/blobServices/default/containers/{}",
            spec.name
        ))
    }

    fn body(
        _: &ArmClient,
        spec: &ResourceSpec,
        _: Value,
        _: &Outputs,
    ) -> Result<Value, CloudError> {
        Ok(json!({"properties": {"publicAccess": "None", "metadata": spec_tags(spec)}}))
    }

    fn observe(
        body: &Value,
        _: &str,
        _: &ResourceSpec,
        _: &Outputs,
    ) -> Result<Observed, CloudError> {
        let id = body.get("id").and_then(Value::as_str).unwrap_or_default();
        Ok(Observed::new(
            id,
            json!({
                "id": id,
                "public_access": body.pointer("/properties/publicAccess"),
            }),
        )
        .owned_by(owner_from(body.pointer("/properties/metadata"))))
    }
}
