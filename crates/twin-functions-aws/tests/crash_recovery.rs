//! Crashes injected between write and delete in each mover, then a re-run: nothing lost, nothing
//! duplicated. And the same message delivered twice to the persister stores one item.

mod support;

use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use support::MotoTwin;
use twin_functions::cold_to_archive::ColdToArchiveMover;
use twin_functions::hot_to_cold::HotToColdMover;
use twin_functions::object_store::{ObjectStore, StorageTier};
use twin_functions::persister::Persister;
use twin_functions::settings::{
    ColdToArchiveSettings, CommonSettings, HotToColdSettings, LogLevel,
};
use twin_functions::testing::{CrashPoint, CrashingHotStore, CrashingObjectStore};
use twin_functions::{FixedClock, Timestamp};

fn now() -> Timestamp {
    Timestamp::parse("2025-11-04T12:00:00.000Z").unwrap()
}

fn common() -> CommonSettings {
    CommonSettings {
        twin_name: "it".into(),
        log_level: LogLevel::Info,
    }
}

/// `n` records of one device, one per hour back from `until`, ~2 KB each.
async fn persist(twin: &MotoTwin, device: &str, until: Timestamp, n: i64) {
    let persister = Persister::new(twin.hot_store());
    for i in 0..n {
        let time = Timestamp::from_millis(until.millis() - i * 3_600_000).unwrap();
        let msg = json!({"iotDeviceId": device, "time": time.canonical(), "v": i, "pad": "p".repeat(2_000)});
        persister.handle(msg, "c").await.unwrap();
    }
}

async fn cold_keys(twin: &MotoTwin) -> (Vec<(String, String)>, usize) {
    let store = twin.object_store();
    let mut all = Vec::new();
    let mut objects = 0;
    for (key, info) in twin.objects(&twin.cold).await {
        assert_eq!(info.tier, StorageTier::Cold);
        objects += 1;
        let chunk: Vec<Map<String, Value>> =
            serde_json::from_slice(&store.get_object(&twin.cold, &key).await.unwrap()).unwrap();
        all.extend(chunk.iter().map(|r| {
            (
                r["iotDeviceId"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            )
        }));
    }
    all.sort();
    (all, objects)
}

async fn hot_to_cold_crash_and_rerun(name: &str, ok_deletes: i64) {
    let twin = MotoTwin::create(name).await;
    // 45 days of hourly records for two devices: 15 days' worth (~360 × 2 KB each) is old.
    for d in ["dev-a", "dev-b"] {
        persist(&twin, d, now(), 45 * 24).await;
    }
    let clock = Arc::new(FixedClock::new(now()));
    let settings = HotToColdSettings {
        common: common(),
        hot_table: twin.table.clone(),
        cold_bucket: twin.cold.clone(),
        hot_storage_days: 30,
        lease_seconds: twin_functions::lease::DEFAULT_LEASE_SECONDS,
    };
    let crashing = CrashingHotStore {
        inner: twin.hot_store(),
        crash: CrashPoint::after(ok_deletes),
    };
    let mover = HotToColdMover::new(&settings, crashing, twin.object_store(), clock.clone())
        .with_chunk_limit(100_000);
    let err = mover.run().await.unwrap_err();
    assert!(err.to_string().contains("InjectedCrash"), "{err}");
    assert!(
        !twin.objects(&twin.cold).await.is_empty(),
        "the crash came after a write"
    );

    // The re-run happens a day later and a new day of records has arrived meanwhile.
    persist(&twin, "dev-a", now().plus_days(1), 24).await;
    clock.set(now().plus_days(1));
    let report = mover.run().await.unwrap();
    assert!(report.records_already_in_cold > 0, "{report:?}");

    let cutoff = now().plus_days(1).minus_days(30);
    let hot = twin.hot_items().await;
    assert!(hot
        .iter()
        .all(|i| i["id"].as_str().unwrap() >= cutoff.canonical().as_str()));
    let (cold, _) = cold_keys(&twin).await;
    let unique: BTreeSet<_> = cold.iter().cloned().collect();
    assert_eq!(unique.len(), cold.len(), "nothing duplicated in cold");
    assert_eq!(cold.len() + hot.len(), 2 * 45 * 24 + 24, "nothing lost");
    assert!(unique
        .iter()
        .all(|(_, id)| id.as_str() < cutoff.canonical().as_str()));
}

#[tokio::test]
async fn hot_to_cold_crash_before_the_first_delete_then_rerun() {
    hot_to_cold_crash_and_rerun("crash-first", 0).await;
}

#[tokio::test]
async fn hot_to_cold_crash_after_some_deletes_then_rerun() {
    hot_to_cold_crash_and_rerun("crash-mid", 3).await;
}

#[tokio::test]
async fn cold_to_archive_crash_between_copy_and_delete_then_rerun() {
    let twin = MotoTwin::create("crash-archive").await;
    persist(&twin, "dev-a", now(), 45 * 24).await;
    let clock = Arc::new(FixedClock::new(now()));
    let settings = HotToColdSettings {
        common: common(),
        hot_table: twin.table.clone(),
        cold_bucket: twin.cold.clone(),
        hot_storage_days: 30,
        lease_seconds: twin_functions::lease::DEFAULT_LEASE_SECONDS,
    };
    HotToColdMover::new(
        &settings,
        twin.hot_store(),
        twin.object_store(),
        clock.clone(),
    )
    .with_chunk_limit(100_000)
    .run()
    .await
    .unwrap();
    let cold_before = twin.objects(&twin.cold).await;
    assert!(cold_before.len() > 3);

    let archive_settings = ColdToArchiveSettings {
        common: common(),
        cold_bucket: twin.cold.clone(),
        archive_bucket: twin.archive.clone(),
        cold_storage_days: 60,
        lease_seconds: twin_functions::lease::DEFAULT_LEASE_SECONDS,
    };
    clock.set(now().plus_days(31));
    let crashing = CrashingObjectStore {
        inner: twin.object_store(),
        crash: CrashPoint::after(2),
    };
    let archiver = ColdToArchiveMover::new(&archive_settings, crashing, clock.clone());
    assert!(archiver.run().await.is_err());
    assert_eq!(
        twin.objects(&twin.cold).await.len(),
        cold_before.len() - 2,
        "two moved before the crash"
    );
    archiver.run().await.unwrap();

    assert!(twin.objects(&twin.cold).await.is_empty());
    let archived = twin.objects(&twin.archive).await;
    assert_eq!(
        archived.len(),
        cold_before.len(),
        "each object archived once"
    );
    for (key, info) in archived {
        assert_eq!(info.tier, StorageTier::Archive);
        assert_eq!(info.etag, cold_before[&key].etag);
    }
}

#[tokio::test]
async fn the_same_message_twice_stores_one_item() {
    let twin = MotoTwin::create("dedup").await;
    let persister = Persister::new(twin.hot_store());
    let msg = json!({"iotDeviceId": "dev-a", "time": "2025-11-04T13:23:11.203Z", "correlationId": "c1", "temperature": 21.5});
    persister.handle(msg.clone(), "first").await.unwrap();
    persister.handle(msg, "second").await.unwrap();
    let items = twin.hot_items().await;
    assert_eq!(items.len(), 1);
    assert_eq!(
        Value::Object(items[0].clone()),
        json!({"id": "2025-11-04T13:23:11.203Z", "iotDeviceId": "dev-a", "temperature": 21.5})
    );
    let _ = twin
        .object_store()
        .list_objects(&twin.cold, "", None)
        .await
        .unwrap();
}
