//! In-memory stores with the services' paging behaviour, for unit tests and the benchmark.

use crate::error::{CloudError, CloudErrorKind};
use crate::hot_store::{DevicePage, DeviceQuery, HotPage, HotStore, Order, ScanCursor};
use crate::lease::{LeaseHeld, LeaseOutcome, LeaseStore, LEASE_PARTITION};
use crate::object_store::{
    ConditionalWrite, ObjectInfo, ObjectListing, ObjectStore, PutCondition, StorageTier,
    TaggedObject,
};
use crate::record::HotItem;
use crate::timestamp::Timestamp;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::ops::Bound;
use std::sync::Mutex;

/// A hot store in a `BTreeMap`, paging after `page_size` items like DynamoDB does after 1 MB.
#[derive(Debug)]
pub struct InMemoryHotStore {
    items: Mutex<BTreeMap<(String, Timestamp), HotItem>>,
    leases: Mutex<BTreeMap<String, (String, Timestamp)>>,
    page_size: usize,
}

impl InMemoryHotStore {
    /// An empty store returning at most `page_size` items per page.
    pub fn new(page_size: usize) -> Self {
        Self {
            items: Mutex::new(BTreeMap::new()),
            leases: Mutex::new(BTreeMap::new()),
            page_size: page_size.max(1),
        }
    }

    /// The holder and expiry of lease `name`, if one is stored.
    pub fn lease(&self, name: &str) -> Option<(String, Timestamp)> {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Every stored item, ordered by device then time.
    pub fn all(&self) -> Vec<HotItem> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, Timestamp), HotItem>> {
        // A panic while holding the lock can only come from a test assertion; keep going.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl HotStore for InMemoryHotStore {
    async fn put_item(&self, item: &HotItem) -> Result<(), CloudError> {
        if item.device_id == LEASE_PARTITION {
            return Err(reserved_partition("PutItem"));
        }
        self.lock()
            .insert((item.device_id.clone(), item.id), item.clone());
        Ok(())
    }

    async fn query_page(&self, query: &DeviceQuery) -> Result<HotPage, CloudError> {
        let items = self.lock();
        let device = query.device_id.clone();
        let lo = (device.clone(), Timestamp::from_millis(0).map_err(bad_key)?);
        let after = match &query.after {
            Some(a) => Some(Timestamp::parse(a).map_err(bad_key)?),
            None => None,
        };
        let in_device = items
            .range(lo..)
            .take_while(|((d, _), _)| *d == device)
            .map(|(_, v)| v);
        let selected: Vec<&HotItem> = match query.order {
            Order::Ascending => in_device
                .filter(|i| after.is_none_or(|a| i.id > a) && query.range.contains(i.id))
                .collect(),
            Order::Descending => {
                let mut v: Vec<&HotItem> = in_device
                    .filter(|i| after.is_none_or(|a| i.id < a) && query.range.contains(i.id))
                    .collect();
                v.reverse();
                v
            }
        };
        let limit = query
            .limit
            .map_or(self.page_size, |l| (l as usize).min(self.page_size));
        let page: Vec<HotItem> = selected.iter().take(limit).map(|i| (*i).clone()).collect();
        let next = (selected.len() > limit)
            .then(|| page.last().map(|i| i.id.canonical()))
            .flatten();
        Ok(HotPage { items: page, next })
    }

    async fn scan_devices_before(
        &self,
        cutoff: Timestamp,
        after: Option<ScanCursor>,
    ) -> Result<DevicePage, CloudError> {
        let items = self.lock();
        let start = match &after {
            Some(c) => Bound::Excluded((
                c.device_id.clone(),
                Timestamp::parse(&c.id).map_err(bad_key)?,
            )),
            None => Bound::Unbounded,
        };
        let page: Vec<&(String, Timestamp)> = items
            .range((start, Bound::Unbounded))
            .map(|(k, _)| k)
            .take(self.page_size)
            .collect();
        let next = (page.len() == self.page_size)
            .then(|| {
                page.last().map(|(d, t)| ScanCursor {
                    device_id: d.clone(),
                    id: t.canonical(),
                })
            })
            .flatten();
        let device_ids = page
            .iter()
            .filter(|(_, t)| *t < cutoff)
            .map(|(d, _)| d.clone())
            .collect();
        Ok(DevicePage { device_ids, next })
    }

    async fn delete_items(&self, device_id: &str, ids: &[Timestamp]) -> Result<(), CloudError> {
        let mut items = self.lock();
        for id in ids {
            items.remove(&(device_id.to_string(), *id));
        }
        Ok(())
    }
}

#[async_trait]
impl LeaseStore for InMemoryHotStore {
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, CloudError> {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        match leases.get(name) {
            Some((current, current_until)) if current != holder && *current_until >= now => {
                Ok(LeaseOutcome::Held(LeaseHeld {
                    name: name.to_string(),
                    holder: current.clone(),
                    until: *current_until,
                }))
            }
            _ => {
                leases.insert(name.to_string(), (holder.to_string(), until));
                Ok(LeaseOutcome::Acquired)
            }
        }
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, CloudError> {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if leases.get(name).is_some_and(|(h, _)| h == holder) {
            leases.remove(name);
            return Ok(true);
        }
        Ok(false)
    }
}

fn reserved_partition(operation: &'static str) -> CloudError {
    CloudError::new(
        operation,
        "in-memory hot store",
        "ValidationException",
        format!("{LEASE_PARTITION} is reserved for leases, not a device id"),
        CloudErrorKind::Rejected,
    )
}

fn bad_key(e: crate::timestamp::TimestampError) -> CloudError {
    CloudError::new(
        "Query",
        "in-memory hot store",
        "ValidationException",
        e.to_string(),
        CloudErrorKind::Rejected,
    )
}

/// Objects by (bucket, key): body and tier.
type Buckets = BTreeMap<(String, String), (Vec<u8>, StorageTier)>;

/// Buckets of objects in memory, listing `page_size` keys per page.
#[derive(Debug)]
pub struct InMemoryObjectStore {
    objects: Mutex<Buckets>,
    buckets: BTreeSet<String>,
    page_size: usize,
}

impl InMemoryObjectStore {
    /// A store with the given (empty) buckets.
    pub fn new(buckets: &[&str], page_size: usize) -> Self {
        Self {
            objects: Mutex::new(BTreeMap::new()),
            buckets: buckets.iter().map(|b| b.to_string()).collect(),
            page_size: page_size.max(1),
        }
    }

    /// Every object of a bucket: key, body and tier.
    pub fn objects(&self, bucket: &str) -> Vec<(String, Vec<u8>, StorageTier)> {
        self.lock()
            .iter()
            .filter(|((b, _), _)| b == bucket)
            .map(|((_, k), (body, tier))| (k.clone(), body.clone(), tier.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_bucket(&self, operation: &'static str, bucket: &str) -> Result<(), CloudError> {
        if self.buckets.contains(bucket) {
            Ok(())
        } else {
            Err(CloudError::new(
                operation,
                format!("bucket {bucket}"),
                "NoSuchBucket",
                "The specified bucket does not exist",
                CloudErrorKind::NotFound,
            ))
        }
    }
}

/// A content hash, like S3's ETag of a single-part upload: equal bodies, equal tags.
fn etag(body: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

fn info(key: &str, body: &[u8], tier: &StorageTier) -> ObjectInfo {
    ObjectInfo {
        key: key.to_string(),
        size: body.len() as u64,
        tier: tier.clone(),
        etag: Some(etag(body)),
    }
}

#[async_trait]
impl ObjectStore for InMemoryObjectStore {
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        self.check_bucket("PutObject", bucket)?;
        self.lock()
            .insert((bucket.to_string(), key.to_string()), (body, tier));
        Ok(())
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, CloudError> {
        self.check_bucket("HeadObject", bucket)?;
        Ok(self
            .lock()
            .get(&(bucket.to_string(), key.to_string()))
            .map(|(b, t)| info(key, b, t)))
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, CloudError> {
        self.check_bucket("GetObject", bucket)?;
        match self.lock().get(&(bucket.to_string(), key.to_string())) {
            Some((_, StorageTier::Archive)) => Err(CloudError::new(
                "GetObject",
                format!("object s3://{bucket}/{key}"),
                "InvalidObjectState",
                "The operation is not valid for the object's storage class",
                CloudErrorKind::Rejected,
            )),
            Some((body, _)) => Ok(body.clone()),
            None => Err(CloudError::new(
                "GetObject",
                format!("object s3://{bucket}/{key}"),
                "NoSuchKey",
                "The specified key does not exist.",
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
        self.check_bucket("ListObjectsV2", bucket)?;
        let objects = self.lock();
        let start = match continuation {
            Some(k) => Bound::Excluded((bucket.to_string(), k)),
            None => Bound::Included((bucket.to_string(), prefix.to_string())),
        };
        let page: Vec<ObjectInfo> = objects
            .range((start, Bound::Unbounded))
            .take_while(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .take(self.page_size)
            .map(|((_, k), (body, tier))| info(k, body, tier))
            .collect();
        let next = (page.len() == self.page_size)
            .then(|| page.last().map(|o| o.key.clone()))
            .flatten();
        Ok(ObjectListing {
            objects: page,
            next,
        })
    }

    async fn copy_object(
        &self,
        from_bucket: &str,
        key: &str,
        to_bucket: &str,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        self.check_bucket("CopyObject", to_bucket)?;
        let body = self.get_object(from_bucket, key).await?;
        self.lock()
            .insert((to_bucket.to_string(), key.to_string()), (body, tier));
        Ok(())
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), CloudError> {
        self.check_bucket("DeleteObject", bucket)?;
        self.lock().remove(&(bucket.to_string(), key.to_string()));
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
        self.check_bucket("PutObject", bucket)?;
        // One lock around check and write: the in-memory twin of S3's atomic conditional PUT.
        let mut objects = self.lock();
        let id = (bucket.to_string(), key.to_string());
        let holds = match (&condition, objects.get(&id)) {
            (PutCondition::IfAbsent, existing) => existing.is_none(),
            (PutCondition::IfMatch(want), Some((current, _))) => etag(current) == *want,
            (PutCondition::IfMatch(_), None) => false,
        };
        if !holds {
            return Ok(ConditionalWrite::PreconditionFailed);
        }
        objects.insert(id, (body, tier));
        Ok(ConditionalWrite::Applied)
    }

    async fn get_object_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<TaggedObject>, CloudError> {
        self.check_bucket("GetObject", bucket)?;
        match self.lock().get(&(bucket.to_string(), key.to_string())) {
            None => Ok(None),
            Some((_, StorageTier::Archive)) => Err(CloudError::new(
                "GetObject",
                format!("object s3://{bucket}/{key}"),
                "InvalidObjectState",
                "The operation is not valid for the object's storage class",
                CloudErrorKind::Rejected,
            )),
            Some((body, _)) => Ok(Some(TaggedObject {
                body: body.clone(),
                etag: etag(body),
            })),
        }
    }

    async fn delete_object_if_match(
        &self,
        bucket: &str,
        key: &str,
        want: &str,
    ) -> Result<ConditionalWrite, CloudError> {
        self.check_bucket("DeleteObject", bucket)?;
        let mut objects = self.lock();
        let id = (bucket.to_string(), key.to_string());
        match objects.get(&id) {
            Some((current, _)) if etag(current) == want => {
                objects.remove(&id);
                Ok(ConditionalWrite::Applied)
            }
            _ => Ok(ConditionalWrite::PreconditionFailed),
        }
    }
}
