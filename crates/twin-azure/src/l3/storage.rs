//! The L3 storage account (`Microsoft.Storage/storageAccounts`, API 2025-01-01): StorageV2,
//! private (`allowBlobPublicAccess: false`), Entra-only (`allowSharedKeyAccess: false`), TLS 1.2,
//! named `<twin letters><subscription+twin hash>` because account names are global.

use crate::arm::ArmClient;
use crate::context::{
    input, merged_tags, owner_from, resource_path, settled_state, GROUP_KEY, LOCATION_KEY,
};
use async_trait::async_trait;
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

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

/// Creates, reads, updates and deletes the account.
pub struct StorageAccountDriver {
    arm: Arc<ArmClient>,
}

impl StorageAccountDriver {
    /// A driver on this client.
    pub fn new(arm: Arc<ArmClient>) -> Self {
        StorageAccountDriver { arm }
    }

    fn path(&self, spec: &ResourceSpec) -> Result<String, CloudError> {
        Ok(resource_path(
            &self.arm,
            input(spec, GROUP_KEY)?,
            TYPE,
            &spec.name,
        ))
    }

    /// PUT creates the account, and on an existing one sets the properties it names (ARM's
    /// documented behaviour for storage accounts), so create and update share it.
    async fn put(&self, spec: &ResourceSpec, tags: Value) -> Result<Observed, CloudError> {
        let what = what(spec);
        let d = &spec.desired;
        let body = json!({
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
        });
        let got = self.arm.put(&self.path(spec)?, API, &body, &what).await?;
        observe(&got, &what)
    }
}

fn what(spec: &ResourceSpec) -> String {
    format!("storage account {}", spec.name)
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

#[async_trait]
impl ResourceDriver for StorageAccountDriver {
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
        // Deleting the account deletes its containers and blobs with it.
        self.arm.delete(&self.path(spec)?, API, &what(spec)).await
    }
}
