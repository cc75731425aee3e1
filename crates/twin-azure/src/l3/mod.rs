//! L3 on Azure. Hot (`hot`): a serverless Cosmos DB account, database and container, and the
//! identity's data-plane role on it. Cold and archive: one storage account (StorageV2, no
//! public or shared-key access) with a `cold` and an `archive` blob container; blobs get their
//! tier on upload.

pub mod containers;
pub mod hot;
pub mod storage;
