//! The cold and archive tiers on Azure Blob Storage: one container per bucket, each blob's
//! access tier set on upload (`Cool` for cold, `Archive` for archive). An Archive blob is
//! offline: it cannot be read back, so copies are checked by HEAD (length and Content-MD5).

use crate::error_map::{cloud_error, is_precondition_failed};
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{Etag, StatusCode, Url};
use azure_storage_blob::models::{
    AccessTier, BlobClientDeleteOptions, BlobClientGetPropertiesResultHeaders,
    BlobClientStartCopyFromUrlOptions, BlobClientUploadOptions,
    BlobContainerClientListBlobsOptions, CopyStatus,
};
use azure_storage_blob::{BlobClient, BlobContainerClient};
use base64::Engine;
use futures::TryStreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use twin_functions::object_store::{
    ConditionalWrite, ObjectInfo, ObjectListing, ObjectStore, PutCondition, StorageTier,
    TaggedObject,
};
use twin_functions::{CloudError, CloudErrorKind};

/// Blobs per listing page unless set otherwise (the service's own maximum is 5,000).
pub const DEFAULT_LIST_PAGE: i32 = 1_000;
/// How long a server-side copy may stay pending before the mover gives up on this run.
const COPY_DEADLINE: Duration = Duration::from_secs(120);

/// How the store authenticates.
#[derive(Clone)]
pub enum BlobAuth {
    /// An Entra ID token credential (the twin's managed identity when deployed).
    Token(Arc<dyn TokenCredential>),
    /// A SAS query string (no leading `?`) appended to every URL (the emulator in tests:
    /// `azure_storage_blob` 1.x has no shared-key auth).
    Sas(String),
}

/// Blobs in the containers of one storage account.
#[derive(Clone)]
pub struct BlobObjectStore {
    account_url: String,
    auth: BlobAuth,
    list_page: i32,
    containers: Arc<Mutex<HashMap<String, Arc<BlobContainerClient>>>>,
}

impl std::fmt::Debug for BlobObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobObjectStore")
            .field("account_url", &self.account_url)
            .field("list_page", &self.list_page)
            .finish()
    }
}

fn tier_of(tier: &StorageTier) -> AccessTier {
    match tier {
        StorageTier::Cold => AccessTier::Cool,
        StorageTier::Archive => AccessTier::Archive,
        StorageTier::Other(name) => match name.as_str() {
            "Hot" => AccessTier::Hot,
            "Cold" => AccessTier::Cold,
            "Cool" => AccessTier::Cool,
            "Archive" => AccessTier::Archive,
            other => AccessTier::UnknownValue(other.to_string()),
        },
    }
}

/// Azure's tier name back to the engine's.
fn storage_tier(name: Option<&str>) -> StorageTier {
    match name {
        Some("Cool") => StorageTier::Cold,
        Some("Archive") => StorageTier::Archive,
        Some(other) => StorageTier::Other(other.to_string()),
        // Without an explicit tier a blob inherits the account's default (Hot).
        None => StorageTier::Other("Hot".to_string()),
    }
}

/// The content hash the movers compare: Content-MD5, base64 as Azure reports it. (The ETag is
/// per blob, so a copy's ETag never equals the original's.)
fn md5_text(md5: Option<&[u8]>) -> Option<String> {
    md5.filter(|m| !m.is_empty())
        .map(|m| base64::engine::general_purpose::STANDARD.encode(m))
}

fn object(container: &str, key: &str) -> String {
    format!("blob {container}/{key}")
}

impl BlobObjectStore {
    /// A store for the account at `account_url` (e.g. `https://<account>.blob.core.windows.net`;
    /// no trailing slash needed).
    pub fn new(account_url: impl Into<String>, auth: BlobAuth) -> Self {
        Self {
            account_url: account_url.into().trim_end_matches('/').to_string(),
            auth,
            list_page: DEFAULT_LIST_PAGE,
            containers: Arc::default(),
        }
    }

    /// Lists at most `blobs` per page (tests use small pages to exercise continuation).
    pub fn with_list_page(mut self, blobs: i32) -> Self {
        self.list_page = blobs.clamp(1, 5_000);
        self
    }

    fn container(&self, name: &str) -> Result<Arc<BlobContainerClient>, CloudError> {
        let mut cache = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(name) {
            return Ok(c.clone());
        }
        let bad_url = |detail: String| {
            CloudError::new(
                "ContainerClient",
                format!("container {name}"),
                "InvalidUrl",
                detail,
                CloudErrorKind::Rejected,
            )
        };
        let (url, credential) = match &self.auth {
            BlobAuth::Token(c) => (format!("{}/{name}", self.account_url), Some(c.clone())),
            BlobAuth::Sas(sas) => (format!("{}/{name}?{sas}", self.account_url), None),
        };
        let url = Url::parse(&url).map_err(|e| bad_url(format!("{url}: {e}")))?;
        let client = BlobContainerClient::new(url, credential, None)
            .map(Arc::new)
            .map_err(|e| cloud_error("ContainerClient", format!("container {name}"), &e))?;
        cache.insert(name.to_string(), client.clone());
        Ok(client)
    }

    fn blob(&self, container: &str, key: &str) -> Result<BlobClient, CloudError> {
        Ok(self.container(container)?.blob_client(key))
    }

    async fn upload(
        &self,
        container: &str,
        key: &str,
        body: Vec<u8>,
        tier: &StorageTier,
        condition: Option<&PutCondition>,
    ) -> Result<(), azure_core::Error> {
        let blob = self.blob(container, key).map_err(|e| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Other, e.to_string())
        })?;
        let mut options = BlobClientUploadOptions {
            blob_content_type: Some("application/json".to_string()),
            tier: Some(tier_of(tier)),
            ..Default::default()
        };
        match condition {
            Some(PutCondition::IfAbsent) => options.if_none_match = Some(Etag::from("*")),
            Some(PutCondition::IfMatch(etag)) => options.if_match = Some(Etag::from(etag.clone())),
            None => {}
        }
        blob.upload(bytes::Bytes::from(body).into(), Some(options))
            .await?;
        Ok(())
    }

    async fn read(
        &self,
        container: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, Option<Etag>)>, CloudError> {
        let blob = self.blob(container, key)?;
        let result = match blob.download(None).await {
            Ok(r) => r,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(None),
            Err(e) => return Err(cloud_error("GetBlob", object(container, key), &e)),
        };
        let etag = result.properties.etag.clone();
        let body = result.body.collect().await.map_err(|e| {
            CloudError::new(
                "GetBlob",
                object(container, key),
                "ReadBody",
                e.to_string(),
                CloudErrorKind::Transient,
            )
        })?;
        Ok(Some((body.to_vec(), etag)))
    }

    /// Waits, with backoff and a deadline, until a server-side copy to `blob` has finished.
    async fn wait_for_copy(&self, blob: &BlobClient, resource: &str) -> Result<(), CloudError> {
        let deadline = Instant::now() + COPY_DEADLINE;
        let mut delay = Duration::from_millis(100);
        loop {
            let props = blob
                .get_properties(None)
                .await
                .map_err(|e| cloud_error("GetBlobProperties", resource, &e))?;
            let status = props
                .copy_status()
                .map_err(|e| cloud_error("GetBlobProperties", resource, &e))?;
            match status {
                None | Some(CopyStatus::Success) => return Ok(()),
                Some(CopyStatus::Pending) if Instant::now() < deadline => {
                    tokio::time::sleep(delay).await; // poll backoff
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Some(other) => {
                    let detail = props.copy_status_description().ok().flatten();
                    return Err(CloudError::new(
                        "CopyBlob",
                        resource,
                        format!("Copy{other:?}"),
                        format!(
                            "the server-side copy ended as {other:?}{}",
                            detail.map(|d| format!(": {d}")).unwrap_or_default()
                        ),
                        if matches!(other, CopyStatus::Pending) {
                            CloudErrorKind::Transient
                        } else {
                            CloudErrorKind::Rejected
                        },
                    ));
                }
            }
        }
    }
}

#[async_trait]
impl ObjectStore for BlobObjectStore {
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        self.upload(bucket, key, body, &tier, None)
            .await
            .map_err(|e| cloud_error("PutBlob", object(bucket, key), &e))
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, CloudError> {
        let resource = object(bucket, key);
        let props = match self.blob(bucket, key)?.get_properties(None).await {
            Ok(p) => p,
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => return Ok(None),
            Err(e) => return Err(cloud_error("GetBlobProperties", resource, &e)),
        };
        let header = |e: azure_core::Error| cloud_error("GetBlobProperties", resource.clone(), &e);
        let size = props.content_length().map_err(header)?.unwrap_or_default();
        let md5 = props.content_md5().map_err(header)?;
        let tier = props.access_tier().map_err(header)?;
        Ok(Some(ObjectInfo {
            key: key.to_string(),
            size,
            tier: storage_tier(tier.as_deref()),
            etag: md5_text(md5.as_deref()),
        }))
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, CloudError> {
        match self.read(bucket, key).await? {
            Some((body, _)) => Ok(body),
            None => Err(CloudError::new(
                "GetBlob",
                object(bucket, key),
                "BlobNotFound",
                "the blob does not exist",
                CloudErrorKind::NotFound,
            )),
        }
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ObjectListing, CloudError> {
        let resource = format!("container {bucket}");
        let options = BlobContainerClientListBlobsOptions {
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            marker: continuation,
            maxresults: Some(self.list_page),
            ..Default::default()
        };
        let mut pages = self
            .container(bucket)?
            .list_blobs(Some(options))
            .map_err(|e| cloud_error("ListBlobs", resource.clone(), &e))?
            .into_pages();
        // One page per call: the marker in the answer is the caller's continuation.
        let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| cloud_error("ListBlobs", resource.clone(), &e))?
        else {
            return Ok(ObjectListing::default());
        };
        let page = page
            .into_model()
            .map_err(|e| cloud_error("ListBlobs", resource.clone(), &e))?;
        let objects = page
            .blob_items
            .iter()
            .filter_map(|b| {
                let props = b.properties.as_ref();
                Some(ObjectInfo {
                    key: b.name.clone()?,
                    size: props.and_then(|p| p.content_length).unwrap_or_default(),
                    tier: storage_tier(
                        props
                            .and_then(|p| p.access_tier.as_ref())
                            .map(|t| t.as_ref()),
                    ),
                    etag: md5_text(props.and_then(|p| p.content_md5.as_deref())),
                })
            })
            .collect();
        let next = page.next_marker.filter(|m| !m.is_empty());
        Ok(ObjectListing { objects, next })
    }

    /// A server-side copy (`x-ms-copy-source` = the source blob's URL, with the SAS when the
    /// store uses one), the tier set on the copy, then a wait until the copy has finished.
    async fn copy_object(
        &self,
        from_bucket: &str,
        key: &str,
        to_bucket: &str,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        let resource = format!("{} → container {to_bucket}", object(from_bucket, key));
        let source = self.blob(from_bucket, key)?.url().to_string();
        let target = self.blob(to_bucket, key)?;
        let options = BlobClientStartCopyFromUrlOptions {
            tier: Some(tier_of(&tier)),
            ..Default::default()
        };
        target
            .start_copy_from_url(source, Some(options))
            .await
            .map_err(|e| cloud_error("CopyBlob", resource.clone(), &e))?;
        self.wait_for_copy(&target, &resource).await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), CloudError> {
        match self.blob(bucket, key)?.delete(None).await {
            Ok(_) => Ok(()),
            Err(e) if e.http_status() == Some(StatusCode::NotFound) => Ok(()),
            Err(e) => Err(cloud_error("DeleteBlob", object(bucket, key), &e)),
        }
    }

    async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
        condition: PutCondition,
    ) -> Result<ConditionalWrite, CloudError> {
        match self
            .upload(bucket, key, body, &tier, Some(&condition))
            .await
        {
            Ok(()) => Ok(ConditionalWrite::Applied),
            Err(e) if lost_condition(&e) => Ok(ConditionalWrite::PreconditionFailed),
            Err(e) => Err(cloud_error("PutBlob", object(bucket, key), &e)),
        }
    }

    async fn get_object_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<TaggedObject>, CloudError> {
        let Some((body, etag)) = self.read(bucket, key).await? else {
            return Ok(None);
        };
        let etag = etag.ok_or_else(|| {
            CloudError::new(
                "GetBlob",
                object(bucket, key),
                "MissingETag",
                "the response carried no ETag, so a conditional write cannot follow",
                CloudErrorKind::Rejected,
            )
        })?;
        Ok(Some(TaggedObject {
            body,
            etag: etag.to_string(),
        }))
    }

    async fn delete_object_if_match(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<ConditionalWrite, CloudError> {
        let options = BlobClientDeleteOptions {
            if_match: Some(Etag::from(etag.to_string())),
            ..Default::default()
        };
        match self.blob(bucket, key)?.delete(Some(options)).await {
            Ok(_) => Ok(ConditionalWrite::Applied),
            Err(e) if lost_condition(&e) => Ok(ConditionalWrite::PreconditionFailed),
            Err(e) => Err(cloud_error("DeleteBlob", object(bucket, key), &e)),
        }
    }
}

/// Whether a conditional request failed on its condition: 412 `ConditionNotMet`, 409
/// `BlobAlreadyExists` (`If-None-Match: *` on an existing blob), or 404 for an `If-Match` on a
/// blob that no longer exists.
fn lost_condition(e: &azure_core::Error) -> bool {
    let status = e.http_status();
    is_precondition_failed(status)
        || status == Some(StatusCode::NotFound)
        || (status == Some(StatusCode::Conflict)
            && matches!(
                e.kind(),
                azure_core::error::ErrorKind::HttpResponse { error_code: Some(c), .. }
                    if c == "BlobAlreadyExists"
            ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_tiers_both_ways() {
        assert_eq!(tier_of(&StorageTier::Cold), AccessTier::Cool);
        assert_eq!(tier_of(&StorageTier::Archive), AccessTier::Archive);
        assert_eq!(storage_tier(Some("Cool")), StorageTier::Cold);
        assert_eq!(storage_tier(Some("Archive")), StorageTier::Archive);
        assert_eq!(storage_tier(None), StorageTier::Other("Hot".into()));
    }
}
