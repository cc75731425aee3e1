//! Test doubles shared by unit tests, the AWS integration tests and the benchmark.

use crate::error::CloudError;
use crate::invoker::FunctionInvoker;
use async_trait::async_trait;
use serde_json::Value;
use std::sync::Mutex;

/// An invoker that records every call instead of invoking anything.
#[derive(Debug, Default)]
pub struct RecordingInvoker {
    calls: Mutex<Vec<(String, Value)>>,
}

impl RecordingInvoker {
    /// Every call so far: function name and payload (parsed back to JSON).
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Removes and returns the calls so far.
    pub fn take(&self) -> Vec<(String, Value)> {
        std::mem::take(&mut *self.calls.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait]
impl FunctionInvoker for RecordingInvoker {
    async fn invoke_async(&self, function: &str, payload: Vec<u8>) -> Result<(), CloudError> {
        let value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((function.to_string(), value));
        Ok(())
    }
}

use crate::error::CloudErrorKind;
use crate::hot_store::{DevicePage, DeviceQuery, HotPage, HotStore, ScanCursor};
use crate::object_store::{ObjectInfo, ObjectListing, ObjectStore, StorageTier};
use crate::record::HotItem;
use crate::timestamp::Timestamp;
use std::sync::atomic::{AtomicI64, Ordering};

/// Counts down deletes and fails the one that reaches zero, as if the function died right after
/// writing and before deleting.
#[derive(Debug)]
pub struct CrashPoint(AtomicI64);

impl CrashPoint {
    /// Lets `ok_deletes` deletes through, crashes on the next, then lets everything through.
    pub fn after(ok_deletes: i64) -> Self {
        Self(AtomicI64::new(ok_deletes))
    }

    fn check(&self, operation: &'static str) -> Result<(), CloudError> {
        if self.0.fetch_sub(1, Ordering::SeqCst) == 0 {
            return Err(CloudError::new(
                operation,
                "crash injection",
                "InjectedCrash",
                "the function died here",
                CloudErrorKind::Transient,
            ));
        }
        Ok(())
    }
}

/// A hot store whose deletes crash at a chosen point.
pub struct CrashingHotStore<S> {
    /// The real store.
    pub inner: S,
    /// Where it crashes.
    pub crash: CrashPoint,
}

#[async_trait]
impl<S: HotStore> HotStore for CrashingHotStore<S> {
    async fn put_item(&self, item: &HotItem) -> Result<(), CloudError> {
        self.inner.put_item(item).await
    }
    async fn query_page(&self, query: &DeviceQuery) -> Result<HotPage, CloudError> {
        self.inner.query_page(query).await
    }
    async fn scan_devices_before(
        &self,
        cutoff: Timestamp,
        after: Option<ScanCursor>,
    ) -> Result<DevicePage, CloudError> {
        self.inner.scan_devices_before(cutoff, after).await
    }
    async fn delete_items(&self, device_id: &str, ids: &[Timestamp]) -> Result<(), CloudError> {
        self.crash.check("BatchWriteItem")?;
        self.inner.delete_items(device_id, ids).await
    }
}

/// An object store whose deletes crash at a chosen point.
pub struct CrashingObjectStore<O> {
    /// The real store.
    pub inner: O,
    /// Where it crashes.
    pub crash: CrashPoint,
}

#[async_trait]
impl<O: ObjectStore> ObjectStore for CrashingObjectStore<O> {
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        self.inner.put_object(bucket, key, body, tier).await
    }
    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, CloudError> {
        self.inner.head_object(bucket, key).await
    }
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, CloudError> {
        self.inner.get_object(bucket, key).await
    }
    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ObjectListing, CloudError> {
        self.inner.list_objects(bucket, prefix, continuation).await
    }
    async fn copy_object(
        &self,
        from_bucket: &str,
        key: &str,
        to_bucket: &str,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        self.inner
            .copy_object(from_bucket, key, to_bucket, tier)
            .await
    }
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), CloudError> {
        self.crash.check("DeleteObject")?;
        self.inner.delete_object(bucket, key).await
    }
}
