//! A named, expiring lease that keeps a mover from running twice at once.
//!
//! EventBridge delivers a scheduled event at least once, a user can `lambda_invoke` a mover by
//! hand, and on Azure a timer and a manual run can overlap. Two overlapping runs would each
//! compute a cut-off and write chunks under different keys, duplicating records. So every mover
//! run first takes a lease: a small record named after the mover (`hot-to-cold-mover`,
//! `cold-to-archive-mover`) holding a random per-run holder id and an expiry.
//!
//! Where the lease lives: in the store the mover drains (hot-to-cold: the hot store;
//! cold-to-archive: the cold bucket). Both movers already need that store, so no extra resource,
//! permission-wise only a write to one reserved key, and it keeps working when the hot store and
//! the object stores sit on different clouds. The lease is a separate trait, [`LeaseStore`],
//! rather than more methods on [`crate::HotStore`]: the hot store implements it directly with one
//! conditional write (DynamoDB's condition expression), while object stores get it from
//! [`BucketLease`], which runs the protocol once, cloud-free, over the conditional writes every
//! object store has (S3 and Azure Blob both honour `If-None-Match: *` and `If-Match: <etag>`).
//!
//! Rules every implementation follows:
//! - acquiring succeeds when no lease exists, when the existing one expired (`until < now`, so a
//!   crashed run blocks the mover only until its lease runs out) or when the caller already holds
//!   it (a write the SDK retried after a lost response must not lock its own run out);
//! - the check and the write are one atomic conditional write, never a read followed by a write;
//! - releasing succeeds only for the holder; a lease taken over by someone else is left alone.

use crate::clock::Clock;
use crate::error::CloudError;
use crate::object_store::{ConditionalWrite, ObjectStore, PutCondition, StorageTier};
use crate::timestamp::Timestamp;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};

/// The reserved partition (hot store) or key prefix (object store) leases live under. Device ids
/// are `[A-Za-z0-9_-]+`, so no device can be named like this, and every reader skips it.
pub const LEASE_PARTITION: &str = "#lease";
/// The hot-to-cold mover's lease.
pub const HOT_TO_COLD_LEASE: &str = "hot-to-cold-mover";
/// The cold-to-archive mover's lease.
pub const COLD_TO_ARCHIVE_LEASE: &str = "cold-to-archive-mover";
/// Default lease duration: Lambda's maximum timeout, so a run ends before its lease does.
pub const DEFAULT_LEASE_SECONDS: u32 = 900;

/// Someone else's live lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHeld {
    /// The lease's name.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// When it expires.
    pub until: Timestamp,
}

impl fmt::Display for LeaseHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "another run ({}) holds the lease {} until {}; nothing done",
            self.holder, self.name, self.until
        )
    }
}

/// What an attempt to take a lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// The caller holds the lease now.
    Acquired,
    /// Another holder has a live lease.
    Held(LeaseHeld),
}

/// A store that can keep named leases atomically.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes lease `name` for `holder` until `until`, if it is free, expired at `now`, or already
    /// `holder`'s. One atomic conditional write.
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, CloudError>;

    /// Gives lease `name` up if `holder` still holds it; `Ok(false)` when it was not `holder`'s
    /// (taken over after expiry, or already gone).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, CloudError>;
}

#[async_trait]
impl<T: LeaseStore + ?Sized> LeaseStore for std::sync::Arc<T> {
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, CloudError> {
        (**self).try_acquire_lease(name, holder, until, now).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, CloudError> {
        (**self).release_lease(name, holder).await
    }
}

/// A fresh holder id for one run: `run-` and 16 hex digits from the process's random hash keys,
/// the clock and a counter, so two runs (even in one process) never share one.
pub fn new_holder_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(nanos);
    hasher.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    format!("run-{:016x}", hasher.finish())
}

/// `now` plus `seconds`, saturating at the latest representable time.
pub fn lease_until(now: Timestamp, seconds: u32) -> Timestamp {
    let millis = now.millis().saturating_add(i64::from(seconds) * 1000);
    Timestamp::from_millis(millis).unwrap_or(now)
}

/// The lease a run holds: its name, holder id and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLease {
    /// The lease's name.
    pub name: String,
    /// This run's holder id.
    pub holder: String,
    /// When the lease expires: the run must stop before this.
    pub until: Timestamp,
}

/// Runs `work` under lease `name`: takes it (for `seconds` from the clock's now), runs `work`,
/// then releases it, also when `work` failed. When another live holder has it, `work` does not
/// run and the result is `Ok(Err(held))`, logged at info level: a normal outcome, not an error
/// the platform would retry. A failed release is logged and does not fail the run: the lease
/// expires by itself.
pub async fn run_under_lease<L, C, T, E, F, Fut>(
    store: &L,
    clock: &C,
    name: &str,
    seconds: u32,
    work: F,
) -> Result<Result<T, LeaseHeld>, E>
where
    L: LeaseStore + ?Sized,
    C: Clock + ?Sized,
    E: From<CloudError>,
    F: FnOnce(HeldLease) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let holder = new_holder_id();
    let now = clock.now();
    let until = lease_until(now, seconds);
    match store.try_acquire_lease(name, &holder, until, now).await? {
        LeaseOutcome::Held(held) => {
            tracing::info!(lease = %held.name, holder = %held.holder, until = %held.until, "{held}");
            return Ok(Err(held));
        }
        LeaseOutcome::Acquired => {
            tracing::info!(lease = name, holder = %holder, until = %until, "lease acquired");
        }
    }
    let lease = HeldLease {
        name: name.to_string(),
        holder: holder.clone(),
        until,
    };
    let result = work(lease).await;
    match store.release_lease(name, &holder).await {
        Ok(true) => tracing::info!(lease = name, holder = %holder, "lease released"),
        Ok(false) => tracing::warn!(
            lease = name,
            holder = %holder,
            "the lease was no longer this run's when it ended (it expired and was taken over)"
        ),
        Err(e) => tracing::warn!(
            lease = name,
            holder = %holder,
            error = %e,
            "could not release the lease; it expires by itself"
        ),
    }
    result.map(Ok)
}

/// What a lease object holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseBody {
    holder: String,
    until: String,
}

/// How often [`BucketLease`] re-reads and retries when its conditional write lost a race with
/// another writer of the same lease (each loss means someone else just wrote it).
const OBJECT_LEASE_ATTEMPTS: u32 = 4;

/// Leases as objects `#lease/<name>` in one bucket of an object store, kept with conditional
/// requests only: `If-None-Match: *` creates a lease, a PUT with `If-Match: <etag of what was
/// read>` takes over an expired one, a DELETE with the same `If-Match` releases one, so of two
/// concurrent writers one always fails rather than both succeeding. The object exists only while
/// a run holds (or a crashed run held) the lease.
pub struct BucketLease<'a, O: ?Sized> {
    objects: &'a O,
    bucket: &'a str,
}

impl<'a, O: ObjectStore + ?Sized> BucketLease<'a, O> {
    /// Leases in `bucket` of `objects`.
    pub fn new(objects: &'a O, bucket: &'a str) -> Self {
        Self { objects, bucket }
    }

    /// The key of lease `name`.
    pub fn key(name: &str) -> String {
        format!("{LEASE_PARTITION}/{name}")
    }

    async fn write(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        condition: PutCondition,
    ) -> Result<ConditionalWrite, CloudError> {
        let body = LeaseBody {
            holder: holder.to_string(),
            until: until.canonical(),
        };
        // Serialising two strings cannot fail; an empty body would only read back as expired.
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        self.objects
            .put_object_if(
                self.bucket,
                &Self::key(name),
                bytes,
                StorageTier::Cold,
                condition,
            )
            .await
    }

    /// The lease as stored, with its ETag; `None` when there is none. An unreadable body counts as
    /// an expired lease (it can only be taken over, never block the mover).
    async fn read(&self, name: &str) -> Result<Option<(LeaseBody, String)>, CloudError> {
        let key = Self::key(name);
        let Some(object) = self.objects.get_object_tagged(self.bucket, &key).await? else {
            return Ok(None);
        };
        let body = serde_json::from_slice::<LeaseBody>(&object.body).unwrap_or_else(|e| {
            tracing::warn!(key = %key, error = %e, "unreadable lease object; treating it as expired");
            LeaseBody {
                holder: String::new(),
                until: Timestamp::from_millis(0)
                    .map(Timestamp::canonical)
                    .unwrap_or_default(),
            }
        });
        Ok(Some((body, object.etag)))
    }
}

fn parse_until(body: &LeaseBody) -> Timestamp {
    Timestamp::parse(&body.until)
        .or_else(|_| Timestamp::from_millis(0))
        .unwrap_or_else(|_| Timestamp::now())
}

#[async_trait]
impl<O: ObjectStore + ?Sized> LeaseStore for BucketLease<'_, O> {
    async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<LeaseOutcome, CloudError> {
        // Usually the lease object is absent (the last run released it): one request.
        if self
            .write(name, holder, until, PutCondition::IfAbsent)
            .await?
            == ConditionalWrite::Applied
        {
            return Ok(LeaseOutcome::Acquired);
        }
        let mut last_seen = None;
        for _ in 0..OBJECT_LEASE_ATTEMPTS {
            let outcome = match self.read(name).await? {
                None => {
                    self.write(name, holder, until, PutCondition::IfAbsent)
                        .await?
                }
                Some((body, etag)) => {
                    let current_until = parse_until(&body);
                    if body.holder != holder && current_until >= now {
                        return Ok(LeaseOutcome::Held(LeaseHeld {
                            name: name.to_string(),
                            holder: body.holder,
                            until: current_until,
                        }));
                    }
                    last_seen = Some((body.holder.clone(), current_until));
                    self.write(name, holder, until, PutCondition::IfMatch(etag))
                        .await?
                }
            };
            if outcome == ConditionalWrite::Applied {
                return Ok(LeaseOutcome::Acquired);
            }
            // Someone else wrote the lease between our read and our write: read again.
        }
        // Lost every race: someone keeps writing it, so report the last holder seen as live.
        let (holder, until) = last_seen.unwrap_or_else(|| ("another run".to_string(), until));
        Ok(LeaseOutcome::Held(LeaseHeld {
            name: name.to_string(),
            holder,
            until,
        }))
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, CloudError> {
        let Some((body, etag)) = self.read(name).await? else {
            return Ok(false);
        };
        if body.holder != holder {
            return Ok(false);
        }
        let outcome = self
            .objects
            .delete_object_if_match(self.bucket, &Self::key(name), &etag)
            .await?;
        Ok(outcome == ConditionalWrite::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::in_memory::{InMemoryHotStore, InMemoryObjectStore};
    use crate::testing::check_lease_contract;
    use std::sync::Arc;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[tokio::test]
    async fn hot_store_leases_follow_the_contract() {
        check_lease_contract(&InMemoryHotStore::new(10)).await;
    }

    #[tokio::test]
    async fn bucket_leases_follow_the_contract() {
        let objects = InMemoryObjectStore::new(&["cold"], 10);
        check_lease_contract(&BucketLease::new(&objects, "cold")).await;
        // Only the lease still held is left, under the reserved prefix.
        let keys: Vec<String> = objects.objects("cold").into_iter().map(|o| o.0).collect();
        assert_eq!(keys, vec!["#lease/m".to_string(), "#lease/n".to_string()]);
        let leases = BucketLease::new(&objects, "cold");
        assert!(leases.release_lease("m", "c").await.unwrap());
        assert!(leases.release_lease("n", "b").await.unwrap());
        assert!(
            objects.objects("cold").is_empty(),
            "released leases leave nothing"
        );
    }

    #[tokio::test]
    async fn an_unreadable_lease_object_counts_as_expired() {
        let objects = InMemoryObjectStore::new(&["cold"], 10);
        objects
            .put_object("cold", "#lease/m", b"garbage".to_vec(), StorageTier::Cold)
            .await
            .unwrap();
        let leases = BucketLease::new(&objects, "cold");
        let now = at("2025-11-04T12:00:00.000Z");
        let got = leases
            .try_acquire_lease("m", "a", lease_until(now, 60), now)
            .await
            .unwrap();
        assert_eq!(got, LeaseOutcome::Acquired);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn of_many_simultaneous_takers_exactly_one_wins() {
        let objects = Arc::new(InMemoryObjectStore::new(&["cold"], 10));
        let hot = Arc::new(InMemoryHotStore::new(10));
        let now = at("2025-11-04T12:00:00.000Z");
        let until = lease_until(now, 900);
        let mut tasks = Vec::new();
        for i in 0..16 {
            let (objects, hot) = (objects.clone(), hot.clone());
            tasks.push(tokio::spawn(async move {
                let holder = format!("h{i}");
                let bucket = BucketLease::new(&*objects, "cold")
                    .try_acquire_lease("m", &holder, until, now)
                    .await
                    .unwrap();
                let table = hot
                    .try_acquire_lease("m", &holder, until, now)
                    .await
                    .unwrap();
                (
                    bucket == LeaseOutcome::Acquired,
                    table == LeaseOutcome::Acquired,
                )
            }));
        }
        let (mut bucket_wins, mut table_wins) = (0, 0);
        for t in tasks {
            let (b, h) = t.await.unwrap();
            bucket_wins += usize::from(b);
            table_wins += usize::from(h);
        }
        assert_eq!((bucket_wins, table_wins), (1, 1));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("work failed")]
    struct WorkFailed;

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error(transparent)]
        Cloud(#[from] CloudError),
        #[error(transparent)]
        Work(#[from] WorkFailed),
    }

    #[tokio::test]
    async fn run_under_lease_releases_after_success_and_after_an_error_and_skips_when_held() {
        let store = InMemoryHotStore::new(10);
        let clock = FixedClock::new(at("2025-11-04T12:00:00.000Z"));
        let ok: Result<Result<u32, LeaseHeld>, TestError> =
            run_under_lease(&store, &clock, "m", 900, |lease| async move {
                assert_eq!(lease.until, at("2025-11-04T12:15:00.000Z"));
                assert!(lease.holder.starts_with("run-"));
                Ok(7)
            })
            .await;
        assert_eq!(ok.unwrap().unwrap(), 7);
        assert_eq!(store.lease("m"), None, "released after success");

        let failed: Result<Result<u32, LeaseHeld>, TestError> =
            run_under_lease(&store, &clock, "m", 900, |_| async {
                Err(WorkFailed.into())
            })
            .await;
        assert!(matches!(failed, Err(TestError::Work(_))));
        assert_eq!(store.lease("m"), None, "released after an error");

        let now = clock.now();
        store
            .try_acquire_lease("m", "other", lease_until(now, 60), now)
            .await
            .unwrap();
        let mut ran = false;
        let skipped: Result<Result<(), LeaseHeld>, TestError> =
            run_under_lease(&store, &clock, "m", 900, |_| {
                ran = true;
                async { Ok(()) }
            })
            .await;
        let held = skipped.unwrap().unwrap_err();
        assert_eq!(held.holder, "other");
        assert!(!ran, "nothing done while another run holds the lease");
        assert_eq!(store.lease("m").map(|l| l.0), Some("other".to_string()));
    }

    #[test]
    fn holder_ids_differ_per_run() {
        let ids: std::collections::BTreeSet<String> = (0..100).map(|_| new_holder_id()).collect();
        assert_eq!(ids.len(), 100);
    }

    #[test]
    fn lease_expiry_is_checked_against_the_clock() {
        let lease = HeldLease {
            name: "m".into(),
            holder: "a".into(),
            until: at("2025-11-04T12:15:00.000Z"),
        };
        assert!(crate::mover_error::MoverError::check_lease(
            &lease,
            at("2025-11-04T12:14:59.999Z")
        )
        .is_ok());
        let e = crate::mover_error::MoverError::check_lease(&lease, lease.until).unwrap_err();
        assert!(e.to_string().contains("MOVER_LEASE_SECONDS"));
    }
}
