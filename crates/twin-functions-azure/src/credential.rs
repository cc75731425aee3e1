//! The credential the deployed functions use: the twin's user-assigned managed identity. Every
//! client here takes its credential (or a SAS URL / key) from the caller, so tests inject the
//! emulators' key or SAS instead.

use azure_core::credentials::TokenCredential;
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use std::sync::Arc;
use twin_functions::{CloudError, CloudErrorKind};

/// The environment variable holding the client id of the twin's user-assigned managed identity
/// (the deployer sets it on the Function App, as `AzureWebJobsStorage__clientId` is set).
pub const CLIENT_ID_ENV: &str = "AZURE_CLIENT_ID";

/// The twin's managed identity, by the client id in [`CLIENT_ID_ENV`].
pub fn managed_identity() -> Result<Arc<dyn TokenCredential>, CloudError> {
    let client_id = std::env::var(CLIENT_ID_ENV).map_err(|_| {
        CloudError::new(
            "ManagedIdentity",
            format!("environment variable {CLIENT_ID_ENV}"),
            "MissingClientId",
            format!("{CLIENT_ID_ENV} is not set, so the twin's managed identity is unknown"),
            CloudErrorKind::Rejected,
        )
    })?;
    managed_identity_with_client_id(client_id)
}

/// The user-assigned managed identity with `client_id`.
pub fn managed_identity_with_client_id(
    client_id: impl Into<String>,
) -> Result<Arc<dyn TokenCredential>, CloudError> {
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: Some(UserAssignedId::ClientId(client_id.into())),
        ..Default::default()
    };
    let credential = ManagedIdentityCredential::new(Some(options)).map_err(|e| {
        crate::error_map::cloud_error("ManagedIdentity", "the twin's managed identity", &e)
    })?;
    Ok(credential)
}
