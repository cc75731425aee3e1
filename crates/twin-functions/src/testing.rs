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
use crate::lease::{lease_until, LeaseOutcome, LeaseStore};
use crate::object_store::{
    ConditionalWrite, ObjectInfo, ObjectListing, ObjectStore, PutCondition, StorageTier,
    TaggedObject,
};
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

#[async_trait]
impl<S: LeaseStore> LeaseStore for CrashingHotStore<S> {
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, CloudError> {
        self.inner.try_acquire_lease(name, holder, until, now).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, CloudError> {
        self.inner.release_lease(name, holder).await
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
    async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
        condition: PutCondition,
    ) -> Result<ConditionalWrite, CloudError> {
        self.inner
            .put_object_if(bucket, key, body, tier, condition)
            .await
    }
    async fn get_object_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<TaggedObject>, CloudError> {
        self.inner.get_object_tagged(bucket, key).await
    }
    async fn delete_object_if_match(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<ConditionalWrite, CloudError> {
        self.inner.delete_object_if_match(bucket, key, etag).await
    }
}

/// A one-shot signal tests use to make two runs overlap at a chosen point (no sleeps).
#[derive(Debug, Default)]
pub struct Signal {
    state: Mutex<(bool, Vec<std::task::Waker>)>,
}

impl Signal {
    /// Sets the signal and wakes every waiter.
    pub fn set(&self) {
        let wakers = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.0 = true;
            std::mem::take(&mut state.1)
        };
        wakers.into_iter().for_each(std::task::Waker::wake);
    }

    /// Waits until the signal is set.
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.0 {
                std::task::Poll::Ready(())
            } else {
                state.1.push(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await
    }
}

/// Where a pausing store stops the first time: `reached` is set, then it waits for `resume`.
#[derive(Debug, Default)]
pub struct Pause {
    /// Set when the store reached the pause point.
    pub reached: Signal,
    /// The store goes on once this is set.
    pub resume: Signal,
    used: std::sync::atomic::AtomicBool,
}

impl Pause {
    async fn here(&self) {
        if !self.used.swap(true, Ordering::SeqCst) {
            self.reached.set();
            self.resume.wait().await;
        }
    }
}

/// A hot store that pauses on its first device scan (the hot-to-cold mover's first step after
/// taking its lease), so a test can start a second run while the first holds the lease.
pub struct PausingHotStore<S> {
    /// The real store.
    pub inner: S,
    /// Where it pauses.
    pub pause: std::sync::Arc<Pause>,
}

#[async_trait]
impl<S: HotStore> HotStore for PausingHotStore<S> {
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
        self.pause.here().await;
        self.inner.scan_devices_before(cutoff, after).await
    }
    async fn delete_items(&self, device_id: &str, ids: &[Timestamp]) -> Result<(), CloudError> {
        self.inner.delete_items(device_id, ids).await
    }
}

#[async_trait]
impl<S: LeaseStore> LeaseStore for PausingHotStore<S> {
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, CloudError> {
        self.inner.try_acquire_lease(name, holder, until, now).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, CloudError> {
        self.inner.release_lease(name, holder).await
    }
}

/// An object store that pauses on its first listing (the cold-to-archive mover's first step after
/// taking its lease).
pub struct PausingObjectStore<O> {
    /// The real store.
    pub inner: O,
    /// Where it pauses.
    pub pause: std::sync::Arc<Pause>,
}

#[async_trait]
impl<O: ObjectStore> ObjectStore for PausingObjectStore<O> {
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
        self.pause.here().await;
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
        self.inner.delete_object(bucket, key).await
    }
    async fn put_object_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
        condition: PutCondition,
    ) -> Result<ConditionalWrite, CloudError> {
        self.inner
            .put_object_if(bucket, key, body, tier, condition)
            .await
    }
    async fn get_object_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<TaggedObject>, CloudError> {
        self.inner.get_object_tagged(bucket, key).await
    }
    async fn delete_object_if_match(
        &self,
        bucket: &str,
        key: &str,
        etag: &str,
    ) -> Result<ConditionalWrite, CloudError> {
        self.inner.delete_object_if_match(bucket, key, etag).await
    }
}

/// Checks the [`LeaseStore`] contract on a store without leases named `m` or `n`: acquire, a
/// holder's own retry, busy, independent names, release by the holder only, expired takeover.
/// Panics on the first violation (for tests).
pub async fn check_lease_contract(store: &dyn LeaseStore) {
    let at = |text: &str| Timestamp::parse(text).expect("a valid test time");
    let t0 = at("2025-11-04T12:00:00.000Z");
    let until = lease_until(t0, 900);
    assert_eq!(until, at("2025-11-04T12:15:00.000Z"));
    // Free: acquired.
    let first = store
        .try_acquire_lease("m", "a", until, t0)
        .await
        .expect("lease call");
    assert_eq!(first, LeaseOutcome::Acquired);
    // The holder retrying its own write (a lost response) still holds it.
    let again = store
        .try_acquire_lease("m", "a", until, t0)
        .await
        .expect("lease call");
    assert_eq!(again, LeaseOutcome::Acquired);
    // Live and someone else's: busy, with who and until when.
    let t1 = at("2025-11-04T12:10:00.000Z");
    let busy = store
        .try_acquire_lease("m", "b", lease_until(t1, 900), t1)
        .await
        .expect("lease call");
    let LeaseOutcome::Held(held) = busy else {
        panic!("expected busy, got {busy:?}")
    };
    assert_eq!((held.holder.as_str(), held.until), ("a", until));
    assert!(held
        .to_string()
        .contains("until 2025-11-04T12:15:00.000Z; nothing done"));
    // Another lease name is independent.
    let other = store
        .try_acquire_lease("n", "b", until, t1)
        .await
        .expect("lease call");
    assert_eq!(other, LeaseOutcome::Acquired);
    // Only the holder releases.
    assert!(!store.release_lease("m", "b").await.expect("lease call"));
    // Expired: taken over.
    let t2 = at("2025-11-04T12:16:00.000Z");
    let taken = store
        .try_acquire_lease("m", "b", lease_until(t2, 900), t2)
        .await
        .expect("lease call");
    assert_eq!(taken, LeaseOutcome::Acquired);
    // The crashed first holder cannot release the new holder's lease.
    assert!(!store.release_lease("m", "a").await.expect("lease call"));
    assert!(store.release_lease("m", "b").await.expect("lease call"));
    assert!(
        !store.release_lease("m", "b").await.expect("lease call"),
        "already released"
    );
    // Released: free for anyone at once.
    let t3 = at("2025-11-04T12:17:00.000Z");
    let next = store
        .try_acquire_lease("m", "c", lease_until(t3, 900), t3)
        .await
        .expect("lease call");
    assert_eq!(next, LeaseOutcome::Acquired);
}
