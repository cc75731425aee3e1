//! L3 on Azure. Hot (`hot`): a serverless Cosmos DB account, database and container, and the
//! identity's data-plane role on it. Cold and archive: one storage account (StorageV2, no
//! public or shared-key access) with a `cold` and an `archive` blob container; blobs get their
//! tier on upload.

/// The blob container of `ingress-cold`'s nonce ledger (`BOUNDARY_NONCE_CONTAINER`), in the
/// cold tier's storage account, when L3 cold receives the hot → cold hop from another cloud.
pub const NONCE_CONTAINER: &str = "boundary-nonces";

pub mod containers;
pub mod hot;
pub mod storage;
