//! L3 cold and archive on Azure: one storage account (StorageV2, no public or shared-key
//! access) with a `cold` and an `archive` blob container; blobs get their tier on upload.

pub mod containers;
pub mod storage;
