//! The handlers in-process against moto's DynamoDB and S3: 10,000 records through persister →
//! hot reader → hot-to-cold mover → cold-to-archive mover, checked at every tier.

mod support;

use futures::StreamExt;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use support::MotoTwin;
use twin_functions::cold_key::ColdObjectKey;
use twin_functions::cold_to_archive::ColdToArchiveMover;
use twin_functions::hot_reader::HotReader;
use twin_functions::hot_to_cold::HotToColdMover;
use twin_functions::object_store::{ObjectStore, StorageTier};
use twin_functions::persister::{PersistOutcome, Persister};
use twin_functions::settings::{
    ColdToArchiveSettings, CommonSettings, HotToColdSettings, LogLevel,
};
use twin_functions::{FixedClock, Timestamp};

const DEVICES: [&str; 2] = ["temperature-sensor-1", "pressure-sensor-1"];
const RECORDS: i64 = 10_000;
const SPAN_DAYS: i64 = 80;
/// The hot reader's answer cap: a device's 3.5 MB take several answers.
const ANSWER_CAP: usize = 512 * 1024;

fn now() -> Timestamp {
    Timestamp::parse("2025-11-04T12:00:00.000Z").unwrap()
}

fn common() -> CommonSettings {
    CommonSettings {
        twin_name: "it".into(),
        log_level: LogLevel::Info,
    }
}

/// Record `i`: devices alternate, times spread evenly over the last SPAN_DAYS days; about 700
/// bytes each so a device's old records need several 1 MB chunks.
fn message(i: i64) -> Value {
    let step = SPAN_DAYS * 86_400_000 / RECORDS;
    let time = Timestamp::from_millis(now().millis() - i * step).unwrap();
    json!({
        "iotDeviceId": DEVICES[(i % 2) as usize],
        "time": time.canonical(),
        "correlationId": format!("c-{i}"),
        "temperature": 20.0 + (i % 100) as f64 / 4.0,
        "sequence": i,
        "status": format!("{:0>600}", i),
    })
}

/// The stored form of record `i`, keyed by (device, id).
fn stored(i: i64) -> ((String, String), Map<String, Value>) {
    let m = message(i);
    let device = m["iotDeviceId"].as_str().unwrap().to_string();
    let id = m["time"].as_str().unwrap().to_string();
    let mut item = m.as_object().cloned().unwrap();
    item.remove("time");
    item.remove("correlationId");
    item.insert("id".into(), json!(id));
    ((device, id), item)
}

fn key_of(item: &Map<String, Value>) -> (String, String) {
    (
        item["iotDeviceId"].as_str().unwrap().to_string(),
        item["id"].as_str().unwrap().to_string(),
    )
}

/// Parses every object of the cold bucket, checking keys, sizes and storage class.
async fn cold_records(twin: &MotoTwin) -> Vec<Map<String, Value>> {
    let store = twin.object_store();
    let mut records = Vec::new();
    for (key, info) in twin.objects(&twin.cold).await {
        assert_eq!(info.tier, StorageTier::Cold, "{key} is STANDARD_IA");
        assert!(info.size <= 1_000_000, "{key} has {} bytes", info.size);
        let parsed =
            ColdObjectKey::parse(&key).unwrap_or_else(|| panic!("{key} follows the key format"));
        let body = store.get_object(&twin.cold, &key).await.unwrap();
        let chunk: Vec<Map<String, Value>> = serde_json::from_slice(&body).unwrap();
        for r in &chunk {
            assert_eq!(r["iotDeviceId"], parsed.window.device_id.as_str());
            let t = Timestamp::parse(r["id"].as_str().unwrap()).unwrap();
            assert!(parsed.window.contains(t), "{key} holds {t}");
        }
        records.extend(chunk);
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_through_every_tier() {
    let twin = MotoTwin::create("pipeline").await;
    let started = std::time::Instant::now();
    let phase = |name: &str| {
        eprintln!(
            "pipeline: {name} done after {:.1} s",
            started.elapsed().as_secs_f64()
        )
    };

    // Persister: every record, plus 100 redeliveries that must not add items.
    let persister = Persister::new(twin.hot_store());
    let persister = &persister;
    futures::stream::iter((0..RECORDS).chain(0..100))
        .for_each_concurrent(16, |i| async move {
            let out = persister.handle(message(i), "it").await.expect("persist");
            assert!(matches!(out, PersistOutcome::Stored(_)));
        })
        .await;
    let expected: BTreeMap<(String, String), Map<String, Value>> =
        (0..RECORDS).map(stored).collect();
    let hot: BTreeMap<_, _> = twin
        .hot_items()
        .await
        .into_iter()
        .map(|i| (key_of(&i), i))
        .collect();
    assert_eq!(
        hot.len(),
        RECORDS as usize,
        "10,000 items, redeliveries stored once"
    );
    assert_eq!(hot, expected, "hot tier holds exactly what was sent");
    phase("persister");

    // Hot reader: each device's whole range, following continuation tokens (64 KB answers).
    let reader = HotReader::new(twin.hot_store(), ANSWER_CAP);
    let mut read = BTreeMap::new();
    for device in DEVICES {
        let mut token: Option<String> = None;
        let mut answers = 0;
        let mut last_id = String::new();
        loop {
            let mut event = json!({"iotDeviceId": device});
            if let Some(t) = &token {
                event["nextToken"] = json!(t);
            }
            let asked = std::time::Instant::now();
            let out = reader.handle(event).await.unwrap();
            if answers < 2 {
                eprintln!(
                    "pipeline: one hot-reader answer took {:.2} s",
                    asked.elapsed().as_secs_f64()
                );
            }
            answers += 1;
            assert!(out.to_string().len() <= ANSWER_CAP);
            for item in out["items"].as_array().unwrap() {
                let item = item.as_object().unwrap().clone();
                let id = item["id"].as_str().unwrap().to_string();
                assert!(id > last_id, "ascending, no repeats");
                last_id = id;
                assert!(read.insert(key_of(&item), item).is_none());
            }
            match out["nextToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert!(answers > 3, "{device} needed {answers} answers");
    }
    assert_eq!(
        read, expected,
        "the reader returns every record exactly once"
    );
    phase("hot reader");

    // An HTTP API event with a date range.
    let start = Timestamp::parse("2025-10-01T00:00:00Z").unwrap();
    let end = Timestamp::parse("2025-10-01T23:59:59.999Z").unwrap();
    let out = HotReader::new(twin.hot_store(), 4_000_000)
        .handle(
            json!({"version": "2.0", "rawPath": "/", "queryStringParameters": {
            "iotDeviceId": DEVICES[0], "startDate": "2025-10-01", "endDate": "2025-10-01"}}),
        )
        .await
        .unwrap();
    assert_eq!(out["statusCode"], 200);
    let body: Vec<Map<String, Value>> =
        serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
    let in_range = expected
        .keys()
        .filter(|(d, id)| d == DEVICES[0] && (start..=end).contains(&Timestamp::parse(id).unwrap()))
        .count();
    assert_eq!(body.len(), in_range);
    assert!(in_range > 0);

    // Hot to cold: everything older than 30 days.
    let clock = Arc::new(FixedClock::new(now()));
    let settings = HotToColdSettings {
        common: common(),
        hot_table: twin.table.clone(),
        cold_bucket: twin.cold.clone(),
        hot_storage_days: 30,
        lease_seconds: twin_functions::lease::DEFAULT_LEASE_SECONDS,
    };
    let mover = HotToColdMover::new(
        &settings,
        twin.hot_store(),
        twin.object_store(),
        clock.clone(),
    );
    let report = mover.run().await.unwrap();
    phase("hot-to-cold mover");
    let cutoff = now().minus_days(30);
    let (old, recent): (BTreeMap<_, _>, BTreeMap<_, _>) = expected
        .clone()
        .into_iter()
        .partition(|((_, id), _)| Timestamp::parse(id).unwrap() < cutoff);
    assert_eq!(report.records_moved as usize, old.len());
    assert!(
        report.objects_written >= 4,
        "several 1 MB chunks per device: {report:?}"
    );
    let hot_after: BTreeMap<_, _> = twin
        .hot_items()
        .await
        .into_iter()
        .map(|i| (key_of(&i), i))
        .collect();
    assert_eq!(hot_after, recent, "hot keeps exactly the recent records");
    let cold = cold_records(&twin).await;
    assert_eq!(cold.len(), old.len(), "no duplicates in cold");
    let cold: BTreeMap<_, _> = cold.into_iter().map(|i| (key_of(&i), i)).collect();
    assert_eq!(cold, old, "cold holds exactly the old records");

    // Cold to archive: 30 days later every window (ending at now-30d) is older than 60 days... not
    // yet; 31 days later it is.
    phase("cold checks");
    let cold_objects = twin.objects(&twin.cold).await;
    let archive_settings = ColdToArchiveSettings {
        common: common(),
        cold_bucket: twin.cold.clone(),
        archive_bucket: twin.archive.clone(),
        cold_storage_days: 60,
        lease_seconds: twin_functions::lease::DEFAULT_LEASE_SECONDS,
    };
    clock.set(now().plus_days(29));
    let archiver = ColdToArchiveMover::new(&archive_settings, twin.object_store(), clock.clone());
    let early = archiver.run().await.unwrap();
    assert_eq!(
        (early.objects_archived, early.objects_kept as usize),
        (0, cold_objects.len())
    );
    clock.set(now().plus_days(31));
    let report = archiver.run().await.unwrap();
    assert_eq!(report.objects_archived as usize, cold_objects.len());
    assert!(twin.objects(&twin.cold).await.is_empty(), "cold is empty");
    let archived = twin.objects(&twin.archive).await;
    assert_eq!(
        archived.keys().collect::<Vec<_>>(),
        cold_objects.keys().collect::<Vec<_>>()
    );
    for (key, info) in &archived {
        assert_eq!(info.tier, StorageTier::Archive, "{key} is DEEP_ARCHIVE");
        assert_eq!(info.size, cold_objects[key].size);
        assert_eq!(
            info.etag, cold_objects[key].etag,
            "{key}: same content (MD5 ETag)"
        );
    }
    phase("cold-to-archive mover");
    // DEEP_ARCHIVE is enforced: the archive cannot be read without a restore.
    let first = archived.keys().next().unwrap();
    assert!(twin
        .object_store()
        .get_object(&twin.archive, first)
        .await
        .is_err());
}
