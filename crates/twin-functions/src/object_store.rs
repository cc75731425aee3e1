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

/// The precondition of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutCondition {
    /// Only if no object has the key (`If-None-Match: *`).
    IfAbsent,
    /// Only if the object's current ETag is this one (`If-Match: <etag>`).
    IfMatch(String),
}

/// What a conditional write or delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionalWrite {
    /// The condition held and the object was written (or deleted).
    Applied,
    /// The condition did not hold (or a concurrent write to the key won): nothing was written.
    PreconditionFailed,
}

/// An object's content with the ETag it had when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedObject {
    /// The content.
    pub body: Vec<u8>,
    /// The ETag, to make a later write conditional on the object being unchanged.
    pub etag: String,
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

    /// Writes an object only if `condition` holds, atomically (the check and the write are one
    /// request); a failed condition is an outcome, not an error.
    async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
        condition: PutCondition,
    ) -> Result<ConditionalWrite, CloudError>;

    /// The object's content and ETag, or `None` if it does not exist.
    async fn get_object_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<TaggedObject>, CloudError>;

    /// Deletes an object only if its ETag is still `etag`, atomically (`If-Match: <etag>`); a
    /// changed or missing object is an outcome, not an error.
    async fn delete_object_if_match(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<ConditionalWrite, CloudError>;
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
    async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
        condition: PutCondition,
    ) -> Result<ConditionalWrite, CloudError> {
        (**self)
            .put_object_if(bucket, key, body, tier, condition)
            .await
    }
    async fn get_object_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<TaggedObject>, CloudError> {
        (**self).get_object_tagged(bucket, key).await
    }
    async fn delete_object_if_match(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<ConditionalWrite, CloudError> {
        (**self).delete_object_if_match(bucket, key, etag).await
    }
}
