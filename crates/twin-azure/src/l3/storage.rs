//! The L3 storage account (`Microsoft.Storage/storageAccounts`, API 2025-01-01): StorageV2,
//! private (`allowBlobPublicAccess: false`), Entra-only (`allowSharedKeyAccess: false`), TLS 1.2,
//! named `<twin letters><subscription+twin hash>` because account names are global.

use crate::arm::ArmClient;
use crate::arm_resource::{group_resource_path, ArmDriver, ArmResource};
use crate::context::{input, owner_from, settled_state, LOCATION_KEY};
use serde_json::{json, Value};
use twin_engine::{CloudError, Observed, Outputs, ResourceSpec};

/// Driver kind of the storage account.
pub const KIND: &str = "azure_storage_account";

/// API version (stable; specification/storage/resource-manager/Microsoft.Storage/stable).
pub const API: &str = "2025-01-01";

/// ARM type of the account.
pub const TYPE: &str = "Microsoft.Storage/storageAccounts";

/// The desired settings of the account (the keys `read` reports).
pub fn desired(location: &str) -> Value {
    json!({
        "location": location,
        "kind": "StorageV2",
        "sku": "Standard_LRS",
        // The account holds cold and archive data; each blob's tier is set on upload.
        "access_tier": "Cool",
        "allow_blob_public_access": false,
        "allow_shared_key_access": false,
        "minimum_tls_version": "TLS1_2",
        "https_only": true,
        "provisioning_state": "Succeeded",
    })
}

/// The storage account as an [`ArmResource`]. PUT creates the account, and on an existing one
/// sets the properties it names (ARM's documented behaviour for storage accounts), so create
/// and update share it. Deleting the account deletes its containers and blobs with it.
pub struct StorageAccount;

/// Creates, reads, updates and deletes the account.
pub type StorageAccountDriver = ArmDriver<StorageAccount>;

impl ArmResource for StorageAccount {
    const API: &'static str = API;

    fn what(spec: &ResourceSpec) -> String {
        format!("storage account {}", spec.name)
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
        let d = &spec.desired;
        Ok(json!({
            "location": input(spec, LOCATION_KEY)?,
            "kind": d.get("kind").cloned().unwrap_or(json!("StorageV2")),
            "sku": {"name": d.get("sku").cloned().unwrap_or(json!("Standard_LRS"))},
            "tags": tags,
            "properties": {
                "accessTier": d.get("access_tier").cloned().unwrap_or(json!("Cool")),
                "allowBlobPublicAccess": false,
                "allowSharedKeyAccess": false,
                "minimumTlsVersion": "TLS1_2",
                "supportsHttpsTrafficOnly": true,
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
        let id = body.get("id").and_then(Value::as_str).unwrap_or_default();
        let p = |k: &str| body.pointer(&format!("/properties/{k}")).cloned();
        Ok(Observed::new(
            id,
            json!({
                "id": id,
                "location": body.get("location"),
                "kind": body.get("kind"),
                "sku": body.pointer("/sku/name"),
                "access_tier": p("accessTier"),
                "allow_blob_public_access": p("allowBlobPublicAccess"),
                "allow_shared_key_access": p("allowSharedKeyAccess"),
                "minimum_tls_version": p("minimumTlsVersion"),
                "https_only": p("supportsHttpsTrafficOnly"),
                "provisioning_state": state,
                // The data-plane endpoint as ARM reports it, never rebuilt from the name (SPEC §9).
                "blob_endpoint": body.pointer("/properties/primaryEndpoints/blob"),
            }),
        )
        .owned_by(owner_from(body.get("tags"))))
    }
}
