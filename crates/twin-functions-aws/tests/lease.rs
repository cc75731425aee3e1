//! The movers' lease against moto: DynamoDB's conditional PutItem/DeleteItem and S3's conditional
//! PUT/DELETE follow the lease contract, the lease item is invisible to every reader of the hot
//! table, and two overlapping mover runs move every record exactly once.

mod support;

use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::sync::Arc;
use support::MotoTwin;
use twin_functions::cold_to_archive::ColdToArchiveMover;
use twin_functions::hot_reader::{HotReader, ReadRequest};
use twin_functions::hot_store::HotStore;
use twin_functions::hot_to_cold::HotToColdMover;
use twin_functions::lease::{
    lease_until, BucketLease, COLD_TO_ARCHIVE_LEASE, DEFAULT_LEASE_SECONDS, HOT_TO_COLD_LEASE,
    LEASE_PARTITION,
};
use twin_functions::object_store::ObjectStore;
use twin_functions::persister::Persister;
use twin_functions::settings::{
    ColdToArchiveSettings, CommonSettings, HotToColdSettings, LogLevel,
};
use twin_functions::testing::{check_lease_contract, Pause, PausingHotStore, PausingObjectStore};
use twin_functions::twin_connector::TwinConnector;
use twin_functions::{FixedClock, LeaseOutcome, LeaseStore, Timestamp};

fn now() -> Timestamp {
    Timestamp::parse("2025-11-04T12:00:00.000Z").unwrap()
}

fn common() -> CommonSettings {
    CommonSettings {
        twin_name: "it".into(),
        log_level: LogLevel::Info,
    }
}

/// `n` records of one device, one per hour back from now, ~2 KB each.
async fn persist(twin: &MotoTwin, device: &str, n: i64) -> Vec<(String, String)> {
    let persister = Persister::new(twin.hot_store());
    let mut keys = Vec::new();
    for i in 0..n {
        let time = Timestamp::from_millis(now().millis() - i * 3_600_000).unwrap();
        let msg = json!({"iotDeviceId": device, "time": time.canonical(), "v": i, "pad": "p".repeat(2_000)});
        persister.handle(msg, "c").await.unwrap();
        keys.push((device.to_string(), time.canonical()));
    }
    keys
}

/// Every record in `bucket`'s chunks, as (device, id), with duplicates kept.
async fn records_in(twin: &MotoTwin, bucket: &str) -> Vec<(String, String)> {
    let store = twin.object_store();
    let mut all = Vec::new();
    for (key, info) in twin.objects(bucket).await {
        assert!(
            !key.starts_with(LEASE_PARTITION),
            "lease {key} left behind in {bucket}"
        );
        let body = match store.get_object(bucket, &key).await {
            Ok(body) => body,
            Err(e) => panic!("{key} ({:?}) unreadable: {e}", info.tier),
        };
        let chunk: Vec<Map<String, Value>> = serde_json::from_slice(&body).unwrap();
        all.extend(chunk.iter().map(|r| {
            (
                r["iotDeviceId"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            )
        }));
    }
    all.sort();
    all
}

#[tokio::test]
async fn dynamodb_leases_follow_the_contract() {
    let twin = MotoTwin::create("lease-ddb").await;
    check_lease_contract(&twin.hot_store()).await;
    // The lease items sit in the reserved partition, as the table's only items.
    let items = twin.hot_items().await;
    assert!(!items.is_empty());
    assert!(items.iter().all(|i| i["iotDeviceId"] == LEASE_PARTITION));
}

#[tokio::test]
async fn s3_leases_follow_the_contract_with_conditional_put_and_delete() {
    let twin = MotoTwin::create("lease-s3").await;
    let objects = twin.object_store();
    check_lease_contract(&BucketLease::new(&objects, &twin.cold)).await;
    let keys: Vec<String> = twin.objects(&twin.cold).await.into_keys().collect();
    assert_eq!(keys, vec!["#lease/m".to_string(), "#lease/n".to_string()]);
}

#[tokio::test]
async fn moto_s3_honours_if_none_match_and_if_match_on_put_and_delete() {
    use twin_functions::object_store::{ConditionalWrite, PutCondition, StorageTier};
    let twin = MotoTwin::create("lease-cond").await;
    let s3 = twin.object_store();
    let put = |body: &'static str, condition: PutCondition| {
        let s3 = s3.clone();
        let bucket = twin.cold.clone();
        async move {
            s3.put_object_if(&bucket, "k", body.into(), StorageTier::Cold, condition)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        put("one", PutCondition::IfAbsent).await,
        ConditionalWrite::Applied
    );
    assert_eq!(
        put("two", PutCondition::IfAbsent).await,
        ConditionalWrite::PreconditionFailed,
        "If-None-Match: * on an existing key"
    );
    let first = s3
        .get_object_tagged(&twin.cold, "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.body, b"one");
    assert_eq!(
        put("three", PutCondition::IfMatch(first.etag.clone())).await,
        ConditionalWrite::Applied
    );
    assert_eq!(
        put("four", PutCondition::IfMatch(first.etag.clone())).await,
        ConditionalWrite::PreconditionFailed,
        "If-Match with a stale ETag"
    );
    assert_eq!(
        s3.delete_object_if_match(&twin.cold, "k", &first.etag)
            .await
            .unwrap(),
        ConditionalWrite::PreconditionFailed,
        "DELETE If-Match with a stale ETag"
    );
    let current = s3
        .get_object_tagged(&twin.cold, "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.body, b"three");
    assert_eq!(
        s3.delete_object_if_match(&twin.cold, "k", &current.etag)
            .await
            .unwrap(),
        ConditionalWrite::Applied
    );
    assert_eq!(s3.get_object_tagged(&twin.cold, "k").await.unwrap(), None);
    assert_eq!(
        put("five", PutCondition::IfMatch(current.etag)).await,
        ConditionalWrite::PreconditionFailed,
        "If-Match on a missing key"
    );
}

#[tokio::test]
async fn no_reader_of_the_hot_table_sees_the_lease_item() {
    let twin = MotoTwin::create("lease-readers").await;
    let hot = twin.hot_store();
    persist(&twin, "dev-a", 3).await;
    let t = now();
    let got = hot
        .try_acquire_lease(HOT_TO_COLD_LEASE, "someone", lease_until(t, 900), t)
        .await
        .unwrap();
    assert_eq!(got, LeaseOutcome::Acquired);
    // The mover's device scan, even with a cut-off after every sort key.
    let far = Timestamp::parse("9999-12-31T23:59:59.999Z").unwrap();
    let page = hot.scan_devices_before(far, None).await.unwrap();
    let devices: BTreeSet<String> = page.device_ids.into_iter().collect();
    assert_eq!(devices, BTreeSet::from(["dev-a".to_string()]));
    // The hot reader, asked for the reserved partition by name.
    let reader = HotReader::new(twin.hot_store(), 4_000_000);
    let page = reader
        .read(&ReadRequest {
            device_id: LEASE_PARTITION.into(),
            start: None,
            end: None,
            after: None,
        })
        .await
        .unwrap();
    assert!(page.items.is_empty(), "{:?}", page.items);
    // The twin connector, for a component bound to the reserved partition.
    let connector = TwinConnector::new(twin.hot_store());
    let answer = connector
        .handle(json!({
            "workspaceId": "w", "entityId": "e", "componentName": "c",
            "selectedProperties": ["holder"],
            "properties": {"iotDeviceId": {"value": {"stringValue": LEASE_PARTITION}}},
        }))
        .await;
    if let Ok(answer) = answer {
        assert!(
            !answer.to_string().contains("someone"),
            "the connector leaked the lease: {answer}"
        );
    }
    // Nobody can write or delete records in the reserved partition.
    let forged = twin_functions::record::HotItem {
        device_id: LEASE_PARTITION.into(),
        id: now(),
        properties: Map::new(),
    };
    assert!(hot.put_item(&forged).await.is_err());
    assert!(hot.delete_items(LEASE_PARTITION, &[now()]).await.is_err());
}

#[tokio::test]
async fn overlapping_mover_runs_on_moto_move_every_record_exactly_once() {
    let twin = MotoTwin::create("lease-overlap").await;
    let mut expected = Vec::new();
    for d in ["dev-a", "dev-b"] {
        // 40 days hourly: the oldest 10 days are older than the 30-day cut-off.
        expected.extend(persist(&twin, d, 40 * 24).await);
    }
    let cutoff = now().minus_days(30).canonical();
    expected.retain(|(_, id)| *id < cutoff);
    expected.sort();
    let clock = Arc::new(FixedClock::new(now()));
    let settings = HotToColdSettings {
        common: common(),
        hot_table: twin.table.clone(),
        cold_bucket: twin.cold.clone(),
        hot_storage_days: 30,
        lease_seconds: DEFAULT_LEASE_SECONDS,
    };
    let pause = Arc::new(Pause::default());
    let paused = PausingHotStore {
        inner: twin.hot_store(),
        pause: pause.clone(),
    };
    let first = HotToColdMover::new(&settings, paused, twin.object_store(), clock.clone())
        .with_chunk_limit(100_000);
    let second = HotToColdMover::new(
        &settings,
        twin.hot_store(),
        twin.object_store(),
        clock.clone(),
    )
    .with_chunk_limit(100_000);
    let (a, b) = tokio::join!(first.run(), async {
        pause.reached.wait().await;
        let report = second.run().await;
        pause.resume.set();
        report
    });
    let (a, b) = (a.unwrap(), b.unwrap());
    let held = b.lease_held.expect("the second run finds the lease held");
    assert_eq!(held.name, HOT_TO_COLD_LEASE);
    assert_eq!((b.records_moved, b.objects_written), (0, 0));
    assert!(a.lease_held.is_none());
    assert_eq!(a.records_moved as usize, expected.len());
    assert_eq!(
        records_in(&twin, &twin.cold).await,
        expected,
        "exactly once"
    );
    let left = twin.hot_items().await;
    assert!(
        left.iter().all(|i| i["iotDeviceId"] != LEASE_PARTITION),
        "lease released"
    );
    assert_eq!(left.len(), 2 * 40 * 24 - expected.len());

    // Cold → archive, 100 days on: every window is old enough.
    clock.set(now().plus_days(100));
    let settings = ColdToArchiveSettings {
        common: common(),
        cold_bucket: twin.cold.clone(),
        archive_bucket: twin.archive.clone(),
        cold_storage_days: 60,
        lease_seconds: DEFAULT_LEASE_SECONDS,
    };
    let cold_objects = twin.objects(&twin.cold).await;
    let pause = Arc::new(Pause::default());
    let paused = PausingObjectStore {
        inner: twin.object_store(),
        pause: pause.clone(),
    };
    let first = ColdToArchiveMover::new(&settings, paused, clock.clone());
    let second = ColdToArchiveMover::new(&settings, twin.object_store(), clock.clone());
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
    assert_eq!(b.objects_archived, 0);
    assert!(a.lease_held.is_none());
    assert_eq!(a.objects_foreign, 0, "the lease object is not foreign");
    assert_eq!(a.objects_archived as usize, cold_objects.len());
    assert!(twin.objects(&twin.cold).await.is_empty(), "cold drained");
    // Archive objects cannot be read (DEEP_ARCHIVE), so compare keys, sizes and ETags: each cold
    // object is in the archive once, unchanged.
    let archived = twin.objects(&twin.archive).await;
    assert_eq!(
        archived.keys().collect::<Vec<_>>(),
        cold_objects.keys().collect::<Vec<_>>()
    );
    for (key, info) in &archived {
        let cold = &cold_objects[key];
        assert_eq!((info.size, &info.etag), (cold.size, &cold.etag), "{key}");
    }
}
