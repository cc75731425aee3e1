//! The movers against the in-memory stores: chunking, keys, cut-offs and crash recovery.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use twin_functions::cold_key::ColdObjectKey;
use twin_functions::cold_to_archive::ColdToArchiveMover;
use twin_functions::hot_store::HotStore;
use twin_functions::hot_to_cold::HotToColdMover;
use twin_functions::in_memory::{InMemoryHotStore, InMemoryObjectStore};
use twin_functions::lease::{COLD_TO_ARCHIVE_LEASE, HOT_TO_COLD_LEASE};
use twin_functions::mover_error::MoverError;
use twin_functions::object_store::StorageTier;
use twin_functions::record::HotItem;
use twin_functions::settings::{
    ColdToArchiveSettings, CommonSettings, HotToColdSettings, LogLevel,
};
use twin_functions::testing::{
    CrashPoint, CrashingHotStore, CrashingObjectStore, Pause, PausingHotStore, PausingObjectStore,
};
use twin_functions::{FixedClock, Timestamp};

const DAY: i64 = 86_400_000;

fn now() -> Timestamp {
    Timestamp::parse("2025-11-04T12:00:00.000Z").unwrap()
}

fn common() -> CommonSettings {
    CommonSettings {
        twin_name: "twin".into(),
        log_level: LogLevel::Info,
    }
}

fn hot_settings() -> HotToColdSettings {
    HotToColdSettings {
        common: common(),
        hot_table: "hot".into(),
        cold_bucket: "cold".into(),
        hot_storage_days: 30,
        lease_seconds: twin_functions::lease::DEFAULT_LEASE_SECONDS,
    }
}

fn archive_settings() -> ColdToArchiveSettings {
    ColdToArchiveSettings {
        common: common(),
        cold_bucket: "cold".into(),
        archive_bucket: "archive".into(),
        cold_storage_days: 60,
        lease_seconds: twin_functions::lease::DEFAULT_LEASE_SECONDS,
    }
}

/// `per_device` records per device, one every 6 hours going back from now.
async fn fill(store: &InMemoryHotStore, devices: &[&str], per_device: i64) -> Vec<HotItem> {
    let mut all = Vec::new();
    for d in devices {
        for i in 0..per_device {
            let item = HotItem {
                device_id: d.to_string(),
                id: Timestamp::from_millis(now().millis() - i * DAY / 4).unwrap(),
                properties: json!({"temperature": i as f64 / 2.0, "pad": "x".repeat(100)})
                    .as_object()
                    .cloned()
                    .unwrap(),
            };
            store.put_item(&item).await.unwrap();
            all.push(item);
        }
    }
    all
}

/// Every record in the bucket, with the count of copies seen.
fn records_in(
    objects: &InMemoryObjectStore,
    bucket: &str,
) -> (BTreeSet<(String, Timestamp)>, usize) {
    let mut set = BTreeSet::new();
    let mut copies = 0;
    for (key, body, tier) in objects.objects(bucket) {
        assert_eq!(
            tier,
            if bucket == "cold" {
                StorageTier::Cold
            } else {
                StorageTier::Archive
            },
            "{key}"
        );
        assert!(body.len() <= 2_000, "{key} has {} bytes", body.len());
        let parsed = ColdObjectKey::parse(&key).unwrap_or_else(|| panic!("bad key {key}"));
        let records: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&body).unwrap();
        for r in records {
            let item = HotItem::from_json(r).unwrap();
            assert_eq!(item.device_id, parsed.window.device_id);
            assert!(parsed.window.contains(item.id), "{key} holds {}", item.id);
            set.insert((item.device_id, item.id));
            copies += 1;
        }
    }
    (set, copies)
}

fn expected_old(all: &[HotItem], cutoff: Timestamp) -> BTreeSet<(String, Timestamp)> {
    all.iter()
        .filter(|i| i.id < cutoff)
        .map(|i| (i.device_id.clone(), i.id))
        .collect()
}

#[tokio::test]
async fn moves_exactly_the_records_older_than_the_cutoff_in_bounded_chunks() {
    let hot = Arc::new(InMemoryHotStore::new(17));
    let objects = Arc::new(InMemoryObjectStore::new(&["cold", "archive"], 5));
    let all = fill(&hot, &["a", "b"], 200).await;
    let clock = FixedClock::new(now());
    let mover = HotToColdMover::new(&hot_settings(), hot.clone(), objects.clone(), clock)
        .with_chunk_limit(2_000);
    let report = mover.run().await.unwrap();
    let cutoff = now().minus_days(30);
    assert_eq!(report.cutoff, Some(cutoff));
    let expected = expected_old(&all, cutoff);
    let (moved, copies) = records_in(&objects, "cold");
    assert_eq!(moved, expected);
    assert_eq!(copies, expected.len());
    assert_eq!(report.records_moved as usize, expected.len());
    assert!(report.objects_written > 10);
    assert!(hot.all().iter().all(|i| i.id >= cutoff));
    assert_eq!(hot.all().len(), all.len() - expected.len());
    // A second run the same day finds nothing to do.
    let again = mover.run().await.unwrap();
    assert_eq!((again.records_moved, again.objects_written), (0, 0));
}

async fn crash_then_rerun(ok_deletes: i64, rerun_days_later: u32) {
    let hot = Arc::new(InMemoryHotStore::new(13));
    let objects = Arc::new(InMemoryObjectStore::new(&["cold", "archive"], 4));
    let all = fill(&hot, &["a", "b"], 200).await;
    let clock = Arc::new(FixedClock::new(now()));
    let crashing = CrashingHotStore {
        inner: hot.clone(),
        crash: CrashPoint::after(ok_deletes),
    };
    let mover = HotToColdMover::new(&hot_settings(), crashing, objects.clone(), clock.clone())
        .with_chunk_limit(2_000);
    assert!(
        mover.run().await.is_err(),
        "the injected crash stops the run"
    );
    clock.set(now().plus_days(rerun_days_later));
    let report = mover.run().await.unwrap();
    assert!(report.records_already_in_cold > 0, "{report:?}");
    let cutoff = now().plus_days(rerun_days_later).minus_days(30);
    let expected = expected_old(&all, cutoff);
    let (moved, copies) = records_in(&objects, "cold");
    assert_eq!(moved, expected, "nothing lost");
    assert_eq!(copies, expected.len(), "nothing duplicated");
    assert_eq!(hot.all().len(), all.len() - expected.len());
}

#[tokio::test]
async fn a_crash_between_the_first_write_and_its_delete_loses_and_duplicates_nothing() {
    crash_then_rerun(0, 0).await;
}

#[tokio::test]
async fn a_crash_midway_rerun_days_later_with_new_old_records_loses_and_duplicates_nothing() {
    crash_then_rerun(3, 5).await;
}

#[tokio::test]
async fn archives_objects_whose_records_are_all_older_than_cold_days_and_survives_a_crash() {
    let hot = Arc::new(InMemoryHotStore::new(50));
    let objects = Arc::new(InMemoryObjectStore::new(&["cold", "archive"], 3));
    fill(&hot, &["a"], 400).await;
    // Two hot-to-cold runs ten days apart make two windows.
    let clock = Arc::new(FixedClock::new(now().minus_days(10)));
    let second_cutoff = now().minus_days(30);
    let mover = HotToColdMover::new(&hot_settings(), hot.clone(), objects.clone(), clock.clone())
        .with_chunk_limit(2_000);
    mover.run().await.unwrap();
    clock.set(now());
    mover.run().await.unwrap();
    let cold_before = objects.objects("cold");
    let (records_before, _) = records_in(&objects, "cold");
    let old: Vec<String> = cold_before
        .iter()
        .filter(|(k, _, _)| ColdObjectKey::parse(k).unwrap().window.end < second_cutoff)
        .map(|(k, _, _)| k.clone())
        .collect();
    assert!(!old.is_empty() && old.len() < cold_before.len());

    // Windows end at now-40d and now-30d; at now+25d with 60 cold days the cut-off is now-35d,
    // so only the first window is old enough.
    clock.set(now().plus_days(25));
    let crashing = CrashingObjectStore {
        inner: objects.clone(),
        crash: CrashPoint::after(1),
    };
    let archiver = ColdToArchiveMover::new(&archive_settings(), crashing, clock.clone());
    assert!(archiver.run().await.is_err());
    let report = archiver.run().await.unwrap();
    assert!(report.objects_archived >= 1);
    let archived: Vec<String> = objects
        .objects("archive")
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(archived, old, "exactly the old windows, once each");
    let cold_after: Vec<String> = objects
        .objects("cold")
        .into_iter()
        .map(|(k, _, _)| k)
        .collect();
    assert_eq!(cold_after.len() + archived.len(), cold_before.len());
    assert!(cold_after.iter().all(|k| !archived.contains(k)));
    // The archive holds the same bytes the cold tier held.
    for (key, body, tier) in objects.objects("archive") {
        assert_eq!(tier, StorageTier::Archive);
        assert!(cold_before.iter().any(|(k, b, _)| *k == key && *b == body));
    }
    assert!(!records_before.is_empty());
}

#[tokio::test]
async fn overlapping_runs_move_every_record_exactly_once_and_the_later_one_finds_the_lease_held() {
    let hot = Arc::new(InMemoryHotStore::new(17));
    let objects = Arc::new(InMemoryObjectStore::new(&["cold", "archive"], 5));
    let all = fill(&hot, &["a", "b"], 200).await;
    let clock = Arc::new(FixedClock::new(now()));
    let lease_end = Timestamp::from_millis(now().millis() + 900_000).unwrap();

    // The first run takes the lease and stops at its device scan; the second starts then.
    let pause = Arc::new(Pause::default());
    let paused = PausingHotStore {
        inner: hot.clone(),
        pause: pause.clone(),
    };
    let first = HotToColdMover::new(&hot_settings(), paused, objects.clone(), clock.clone())
        .with_chunk_limit(2_000);
    let second = HotToColdMover::new(&hot_settings(), hot.clone(), objects.clone(), clock.clone())
        .with_chunk_limit(2_000);
    let (a, b) = tokio::join!(first.run(), async {
        pause.reached.wait().await;
        let report = second.run().await;
        pause.resume.set();
        report
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    let held = b.lease_held.expect("the second run finds the lease held");
    assert_eq!(
        (held.name.as_str(), held.until),
        (HOT_TO_COLD_LEASE, lease_end)
    );
    assert_eq!((b.cutoff, b.records_moved, b.objects_written), (None, 0, 0));
    assert!(a.lease_held.is_none());
    let expected = expected_old(&all, now().minus_days(30));
    let (moved, copies) = records_in(&objects, "cold");
    assert_eq!(moved, expected, "none lost");
    assert_eq!(copies, expected.len(), "none duplicated");
    assert_eq!(a.records_moved as usize, expected.len());
    assert_eq!(hot.lease(HOT_TO_COLD_LEASE), None, "released at the end");

    // The same for cold → archive, 100 days on: every window is old enough.
    clock.set(now().plus_days(100));
    let pause = Arc::new(Pause::default());
    let paused = PausingObjectStore {
        inner: objects.clone(),
        pause: pause.clone(),
    };
    let first = ColdToArchiveMover::new(&archive_settings(), paused, clock.clone());
    let second = ColdToArchiveMover::new(&archive_settings(), objects.clone(), clock.clone());
    let (a, b) = tokio::join!(first.run(), async {
        pause.reached.wait().await;
        let report = second.run().await;
        pause.resume.set();
        report
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    let held = b
        .lease_held
        .expect("the second archive run finds the lease held");
    assert_eq!(held.name, COLD_TO_ARCHIVE_LEASE);
    assert_eq!((b.cutoff, b.objects_archived), (None, 0));
    assert!(a.lease_held.is_none());
    assert_eq!(
        a.objects_foreign, 0,
        "the lease object is not a foreign object"
    );
    let (archived, copies) = records_in(&objects, "archive");
    assert_eq!(archived, expected, "none lost");
    assert_eq!(copies, expected.len(), "none duplicated");
    assert!(
        objects.objects("cold").is_empty(),
        "cold drained, lease released"
    );
}

#[tokio::test]
async fn a_lease_left_by_a_crashed_run_blocks_until_it_expires_then_is_taken_over() {
    use twin_functions::LeaseStore;
    let hot = Arc::new(InMemoryHotStore::new(17));
    let objects = Arc::new(InMemoryObjectStore::new(&["cold", "archive"], 5));
    let all = fill(&hot, &["a"], 200).await;
    let clock = Arc::new(FixedClock::new(now()));
    // A run that died holding the lease, 10 minutes ago, for 15 minutes.
    let taken = Timestamp::from_millis(now().millis() - 600_000).unwrap();
    let until = Timestamp::from_millis(taken.millis() + 900_000).unwrap();
    hot.try_acquire_lease(HOT_TO_COLD_LEASE, "crashed", until, taken)
        .await
        .unwrap();
    let mover = HotToColdMover::new(&hot_settings(), hot.clone(), objects.clone(), clock.clone())
        .with_chunk_limit(2_000);
    let blocked = mover.run().await.unwrap();
    assert_eq!(blocked.lease_held.map(|h| h.holder), Some("crashed".into()));
    assert_eq!(hot.all().len(), all.len(), "nothing done");
    clock.set(Timestamp::from_millis(until.millis() + 1).unwrap());
    let report = mover.run().await.unwrap();
    assert!(report.lease_held.is_none());
    assert!(report.records_moved > 0);
    assert_eq!(hot.lease(HOT_TO_COLD_LEASE), None);
}

/// A clock that moves `step_ms` forward every time it is read.
struct TickingClock {
    at: std::sync::atomic::AtomicI64,
    step_ms: i64,
}

impl twin_functions::Clock for TickingClock {
    fn now(&self) -> Timestamp {
        let t = self
            .at
            .fetch_add(self.step_ms, std::sync::atomic::Ordering::SeqCst);
        Timestamp::from_millis(t).unwrap()
    }
}

#[tokio::test]
async fn a_run_that_outlives_its_lease_stops_before_its_next_write_and_the_next_run_finishes() {
    let hot = Arc::new(InMemoryHotStore::new(17));
    let objects = Arc::new(InMemoryObjectStore::new(&["cold", "archive"], 5));
    let all = fill(&hot, &["a", "b"], 200).await;
    // A 60 s lease on a clock that jumps 10 s per reading: it runs out after a few chunks.
    let settings = HotToColdSettings {
        lease_seconds: 60,
        ..hot_settings()
    };
    let clock = TickingClock {
        at: std::sync::atomic::AtomicI64::new(now().millis()),
        step_ms: 10_000,
    };
    let slow =
        HotToColdMover::new(&settings, hot.clone(), objects.clone(), clock).with_chunk_limit(2_000);
    let err = slow.run().await.unwrap_err();
    assert!(
        matches!(
            err,
            twin_functions::mover_error::MoverError::LeaseExpired { .. }
        ),
        "{err}"
    );
    let (partial, _) = records_in(&objects, "cold");
    assert!(
        !partial.is_empty(),
        "some chunks were written before the lease ran out"
    );
    assert_eq!(
        hot.lease(HOT_TO_COLD_LEASE),
        None,
        "released after the error"
    );
    // The next run (same day) completes the move: nothing lost, nothing duplicated.
    let mover = HotToColdMover::new(
        &hot_settings(),
        hot.clone(),
        objects.clone(),
        FixedClock::new(now()),
    )
    .with_chunk_limit(2_000);
    mover.run().await.unwrap();
    let expected = expected_old(&all, now().minus_days(30));
    let (moved, copies) = records_in(&objects, "cold");
    assert_eq!(moved, expected);
    assert_eq!(copies, expected.len());
}

#[tokio::test]
async fn a_requested_cutoff_moves_everything_before_it_and_a_future_one_is_refused() {
    let hot = Arc::new(InMemoryHotStore::new(50));
    let objects = Arc::new(InMemoryObjectStore::new(&["cold", "archive"], 5));
    let all = fill(&hot, &["a", "b"], 20).await;
    let clock = Arc::new(FixedClock::new(now().plus_days(1)));
    let mover = HotToColdMover::new(&hot_settings(), hot.clone(), objects.clone(), clock.clone())
        .with_chunk_limit(2_000);
    let future = now().plus_days(2);
    let refused = mover.run_until(Some(future)).await.unwrap_err();
    assert!(
        matches!(refused, MoverError::CutoffInFuture { .. }),
        "{refused}"
    );
    assert_eq!(hot.all().len(), all.len(), "a refused run moves nothing");

    // Every record is younger than 30 days, yet a cut-off just after the newest makes all due.
    let cutoff = Timestamp::from_millis(now().millis() + 1).unwrap();
    let report = mover.run_until(Some(cutoff)).await.unwrap();
    assert_eq!(report.cutoff, Some(cutoff));
    assert_eq!(report.records_moved as usize, all.len());
    assert!(hot.all().is_empty());

    let archiver = ColdToArchiveMover::new(&archive_settings(), objects.clone(), clock.clone());
    let report = archiver.run_until(Some(cutoff)).await.unwrap();
    assert!(report.objects_archived >= 2);
    assert!(objects.objects("cold").is_empty());
    let (archived, copies) = records_in(&objects, "archive");
    assert_eq!(archived, expected_old(&all, cutoff));
    assert_eq!(copies, all.len());
}
