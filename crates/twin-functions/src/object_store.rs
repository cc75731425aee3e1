//! The cold and archive tiers: buckets (AWS S3) or containers (Azure Blob) of JSON objects.

use crate::error::CloudError;
use async_trait::async_trait;

/// The storage class (AWS) or access tier (Azure) of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageTier {
    /// Infrequent access: S3 `STANDARD_IA`, Azure Cool.
    Cold,
    /// Long-term retention: S3 `DEEP_ARCHIVE`, Azure Archive.
    Archive,
    /// Any other class, by its cloud name (e.g. `STANDARD`).
    Other(String),
}

/// What the store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Storage class / tier.
    pub tier: StorageTier,
    /// Content hash as the store reports it (S3 ETag), if any.
    pub etag: Option<String>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ObjectListing {
    /// Objects on this page, in key order.
    pub objects: Vec<ObjectInfo>,
    /// Token for the next page; `None` at the end.
    pub next: Option<String>,
}

/// A store of objects in named buckets.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Writes (or overwrites) an object in the given tier.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
    ) -> Result<(), CloudError>;

    /// The object's metadata, or `None` if it does not exist.
    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, CloudError>;

    /// The object's content.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, CloudError>;

    /// One page of the objects whose keys start with `prefix`.
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ObjectListing, CloudError>;

    /// Copies `key` from one bucket to the same key in another, in the given tier.
    async fn copy_object(
        &self,
        from_bucket: &str,
        key: &str,
        to_bucket: &str,
        tier: StorageTier,
    ) -> Result<(), CloudError>;

    /// Deletes an object; deleting a missing object is not an error.
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), CloudError>;
}

#[async_trait]
impl<T: ObjectStore + ?Sized> ObjectStore for std::sync::Arc<T> {
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        (**self).put_object(bucket, key, body, tier).await
    }
    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, CloudError> {
        (**self).head_object(bucket, key).await
    }
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, CloudError> {
        (**self).get_object(bucket, key).await
    }
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ObjectListing, CloudError> {
        (**self).list_objects(bucket, prefix, continuation).await
    }
    async fn copy_object(
        &self,
        from_bucket: &str,
        key: &str,
        to_bucket: &str,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        (**self)
            .copy_object(from_bucket, key, to_bucket, tier)
            .await
    }
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), CloudError> {
        (**self).delete_object(bucket, key).await
    }
}
