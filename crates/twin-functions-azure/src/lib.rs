//! Azure implementations of the twin-functions traits: the hot store (and the hot-to-cold
//! mover's lease) on Cosmos DB for NoSQL, the cold and archive tiers on Blob Storage, and an
//! invoker that POSTs to a function's URL. Credentials are injected: the deployed functions use
//! the twin's managed identity ([`credential::managed_identity`]), tests the emulators' key or SAS.
//!
//! [`app`] is the contract with the deployer for the twin's Function App (functions, app settings,
//! the zip package); [`handler`] is the custom handler that runs every function of that app.

pub mod adt_twin;
pub mod azure_action_sink;
pub mod blob_nonce_ledger;
pub mod blob_object_store;
pub mod cosmos_hot_store;
pub mod credential;
pub mod error_map;
pub mod http_invoker;
#[cfg(test)]
mod test_credential;

pub use azure_action_sink::AzureActionSink;
pub use blob_object_store::BlobObjectStore;
pub use cosmos_hot_store::CosmosHotStore;
pub use error_map::BLOB_ARCHIVED;
pub use http_invoker::HttpInvoker;

/// Whether `error` is a read of an Archive-tier blob, which is offline until rehydrated.
pub fn is_archived(error: &twin_functions::CloudError) -> bool {
    error.code == BLOB_ARCHIVED
}

pub mod app;
pub mod handler;
