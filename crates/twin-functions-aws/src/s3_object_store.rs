//! The cold and archive tiers on S3: `STANDARD_IA` for cold, `DEEP_ARCHIVE` for archive.

use crate::error_map::cloud_error;
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::StorageClass;
use aws_sdk_s3::Client;
use twin_functions::object_store::{
    ConditionalWrite, ObjectInfo, ObjectListing, ObjectStore, PutCondition, StorageTier,
    TaggedObject,
};
use twin_functions::{CloudError, CloudErrorKind};

/// Objects in S3 buckets.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: Client,
}

impl S3ObjectStore {
    /// A store using `client` (built with path-style addressing when an endpoint is overridden).
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn storage_class(tier: &StorageTier) -> StorageClass {
    match tier {
        StorageTier::Cold => StorageClass::StandardIa,
        StorageTier::Archive => StorageClass::DeepArchive,
        StorageTier::Other(name) => StorageClass::from(name.as_str()),
    }
}

/// S3 reports no storage class for `STANDARD` objects.
fn tier(class: Option<&str>) -> StorageTier {
    match class {
        Some("STANDARD_IA") => StorageTier::Cold,
        Some("DEEP_ARCHIVE") => StorageTier::Archive,
        Some(other) => StorageTier::Other(other.to_string()),
        None => StorageTier::Other("STANDARD".to_string()),
    }
}

fn object(bucket: &str, key: &str) -> String {
    format!("object s3://{bucket}/{key}")
}

/// `x-amz-copy-source` is `<bucket>/<url-encoded key>`; keys keep their `/`.
fn copy_source(bucket: &str, key: &str) -> String {
    let mut out = format!("{bucket}/");
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Whether a conditional request failed on its condition: 412 Precondition Failed, 409
/// ConditionalRequestConflict (a concurrent conditional write to the key won), or 404 for an
/// `If-Match` on a key that no longer exists.
fn lost_condition<E>(
    err: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata,
{
    let code = err.as_service_error().and_then(|e| e.code());
    let status = err.raw_response().map(|r| r.status().as_u16());
    matches!(
        code,
        Some("PreconditionFailed" | "ConditionalRequestConflict" | "NoSuchKey")
    ) || matches!(status, Some(409 | 412))
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .storage_class(storage_class(&tier))
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| cloud_error("PutObject", object(bucket, key), e))?;
        Ok(())
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, CloudError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                key: key.to_string(),
                size: out.content_length().unwrap_or_default().max(0) as u64,
                tier: tier(out.storage_class().map(StorageClass::as_str)),
                etag: out.e_tag().map(str::to_string),
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(cloud_error("HeadObject", object(bucket, key), e)),
        }
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, CloudError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| cloud_error("GetObject", object(bucket, key), e))?;
        let body = out.body.collect().await.map_err(|e| {
            CloudError::new(
                "GetObject",
                object(bucket, key),
                "ReadBody",
                e.to_string(),
                CloudErrorKind::Transient,
            )
        })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ObjectListing, CloudError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(continuation)
            .send()
            .await
            .map_err(|e| cloud_error("ListObjectsV2", format!("bucket {bucket}"), e))?;
        let objects = out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(ObjectInfo {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or_default().max(0) as u64,
                    tier: tier(o.storage_class().map(|c| c.as_str())),
                    etag: o.e_tag().map(str::to_string),
                })
            })
            .collect();
        let next = if out.is_truncated().unwrap_or(false) {
            out.next_continuation_token().map(str::to_string)
        } else {
            None
        };
        Ok(ObjectListing { objects, next })
    }

    async fn copy_object(
        &self,
        from_bucket: &str,
        key: &str,
        to_bucket: &str,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        self.client
            .copy_object()
            .copy_source(copy_source(from_bucket, key))
            .bucket(to_bucket)
            .key(key)
            .storage_class(storage_class(&tier))
            .send()
            .await
            .map_err(|e| {
                cloud_error(
                    "CopyObject",
                    format!("{} → bucket {to_bucket}", object(from_bucket, key)),
                    e,
                )
            })?;
        Ok(())
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), CloudError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| cloud_error("DeleteObject", object(bucket, key), e))?;
        Ok(())
    }

    async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
        condition: PutCondition,
    ) -> Result<ConditionalWrite, CloudError> {
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .storage_class(storage_class(&tier))
            .body(ByteStream::from(body));
        let request = match condition {
            PutCondition::IfAbsent => request.if_none_match("*"),
            PutCondition::IfMatch(etag) => request.if_match(etag),
        };
        match request.send().await {
            Ok(_) => Ok(ConditionalWrite::Applied),
            Err(e) if lost_condition(&e) => Ok(ConditionalWrite::PreconditionFailed),
            Err(e) => Err(cloud_error("PutObject", object(bucket, key), e)),
        }
    }

    async fn get_object_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<TaggedObject>, CloudError> {
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(cloud_error("GetObject", object(bucket, key), e)),
        };
        let etag = out.e_tag().map(str::to_string).ok_or_else(|| {
            CloudError::new(
                "GetObject",
                object(bucket, key),
                "MissingETag",
                "the response carried no ETag, so a conditional write cannot follow",
                CloudErrorKind::Rejected,
            )
        })?;
        let body = out.body.collect().await.map_err(|e| {
            CloudError::new(
                "GetObject",
                object(bucket, key),
                "ReadBody",
                e.to_string(),
                CloudErrorKind::Transient,
            )
        })?;
        Ok(Some(TaggedObject {
            body: body.into_bytes().to_vec(),
            etag,
        }))
    }

    async fn delete_object_if_match(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<ConditionalWrite, CloudError> {
        match self
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .if_match(etag)
            .send()
            .await
        {
            Ok(_) => Ok(ConditionalWrite::Applied),
            Err(e) if lost_condition(&e) => Ok(ConditionalWrite::PreconditionFailed),
            Err(e) => Err(cloud_error("DeleteObject", object(bucket, key), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_source_escapes_all_but_path_characters() {
        assert_eq!(
            copy_source("b", "dev-1/2025T-2026T/chunk-0.json"),
            "b/dev-1/2025T-2026T/chunk-0.json"
        );
        assert_eq!(copy_source("b", "a b:c"), "b/a%20b%3Ac");
    }

    #[test]
    fn maps_storage_classes_both_ways() {
        assert_eq!(tier(Some("STANDARD_IA")), StorageTier::Cold);
        assert_eq!(tier(Some("DEEP_ARCHIVE")), StorageTier::Archive);
        assert_eq!(tier(None), StorageTier::Other("STANDARD".into()));
        assert_eq!(
            storage_class(&StorageTier::Archive),
            StorageClass::DeepArchive
        );
    }
}
