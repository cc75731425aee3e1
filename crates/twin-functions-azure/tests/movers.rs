//! Both movers end to end on Cosmos DB (hot) and Azurite (cold, archive): every record lands
//! exactly once in cold (Cool tier) and then in the archive (Archive tier, checked by HEAD).

mod support;

use serde_json::{json, Map, Value};
use std::sync::Arc;
use support::AzureTwin;
use twin_functions::cold_to_archive::ColdToArchiveMover;
use twin_functions::hot_store::{DeviceQuery, HotStore, Order, TimeRange};
use twin_functions::hot_to_cold::HotToColdMover;
use twin_functions::lease::{DEFAULT_LEASE_SECONDS, LEASE_PARTITION};
use twin_functions::object_store::{ObjectStore, StorageTier};
use twin_functions::persister::Persister;
use twin_functions::settings::{
    ColdToArchiveSettings, CommonSettings, HotToColdSettings, LogLevel,
};
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

/// Every record of `device` left in the hot store.
async fn hot_ids(hot: &dyn HotStore, device: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut query = DeviceQuery {
        device_id: device.into(),
        range: TimeRange::All,
        after: None,
        order: Order::Ascending,
        limit: None,
    };
    loop {
        let page = hot.query_page(&query).await.unwrap();
        ids.extend(page.items.iter().map(|i| i.id.canonical()));
        match page.next {
            Some(n) => query.after = Some(n),
            None => return ids,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn movers_take_every_record_to_cold_then_archive_exactly_once() {
    let twin = AzureTwin::create("movers").await;
    // Small pages so the movers page through Cosmos and the blob listing.
    let hot = twin.hot_store().await.with_page_items(25);
    let objects = twin.object_store().with_list_page(4);
    let persister = Persister::new(hot.clone());
    let mut expected = Vec::new();
    for device in ["dev-a", "dev-b", "dev-c"] {
        // 12 days, one record every 6 hours: the first 8 days are older than the cut-off.
        for i in 0..48i64 {
            let time = Timestamp::from_millis(now().millis() - i * 6 * 3_600_000).unwrap();
            let msg = json!({"iotDeviceId": device, "time": time.canonical(), "v": i,
                             "pad": "p".repeat(300)});
            persister.handle(msg.clone(), "c").await.unwrap();
            // A redelivery must not add a record.
            if i % 10 == 0 {
                persister.handle(msg, "c").await.unwrap();
            }
            expected.push((device.to_string(), time.canonical()));
        }
    }
    let cutoff = now().minus_days(4);
    let (old, recent): (Vec<_>, Vec<_>) = expected
        .into_iter()
        .partition(|(_, id)| Timestamp::parse(id).unwrap() < cutoff);

    // Hot → cold with an explicit cut-off (as `deployer verify --movers` runs it).
    let clock = Arc::new(FixedClock::new(now()));
    let settings = HotToColdSettings {
        common: common(),
        hot_table: twin.hot.clone(),
        cold_bucket: twin.cold.clone(),
        hot_storage_days: 30,
        lease_seconds: DEFAULT_LEASE_SECONDS,
    };
    let mover = HotToColdMover::new(&settings, hot.clone(), objects.clone(), clock.clone())
        .with_chunk_limit(4_000);
    let report = mover.run_until(Some(cutoff)).await.unwrap();
    assert!(report.lease_held.is_none());
    assert_eq!(report.records_moved as usize, old.len(), "{report:?}");
    assert!(report.objects_written > 3, "several chunks: {report:?}");
    // A second run finds nothing left to move.
    let again = mover.run_until(Some(cutoff)).await.unwrap();
    assert_eq!(again.records_moved, 0, "{again:?}");

    let mut left = Vec::new();
    for device in ["dev-a", "dev-b", "dev-c"] {
        left.extend(
            hot_ids(&hot, device)
                .await
                .into_iter()
                .map(|id| (device.to_string(), id)),
        );
    }
    left.sort();
    let mut recent_sorted = recent.clone();
    recent_sorted.sort();
    assert_eq!(left, recent_sorted, "hot keeps exactly the recent records");

    let cold = twin.objects(&twin.cold).await;
    assert!(
        cold.keys().all(|k| !k.starts_with(LEASE_PARTITION)),
        "lease released"
    );
    let mut in_cold = Vec::new();
    for (key, info) in &cold {
        assert_eq!(info.tier, StorageTier::Cold, "{key} is Cool");
        let body = objects.get_object(&twin.cold, key).await.unwrap();
        let chunk: Vec<Map<String, Value>> = serde_json::from_slice(&body).unwrap();
        for r in &chunk {
            assert!(
                !r.keys().any(|k| k.starts_with('_')),
                "no Cosmos system properties: {r:?}"
            );
            in_cold.push((
                r["iotDeviceId"].as_str().unwrap().to_string(),
                r["id"].as_str().unwrap().to_string(),
            ));
        }
    }
    in_cold.sort();
    let mut old_sorted = old.clone();
    old_sorted.sort();
    assert_eq!(in_cold, old_sorted, "every old record in cold exactly once");

    // Cold → archive, 100 days on: every window is old enough.
    clock.set(now().plus_days(100));
    let archive_settings = ColdToArchiveSettings {
        common: common(),
        cold_bucket: twin.cold.clone(),
        archive_bucket: twin.archive.clone(),
        cold_storage_days: 60,
        lease_seconds: DEFAULT_LEASE_SECONDS,
    };
    let archiver = ColdToArchiveMover::new(&archive_settings, objects.clone(), clock.clone());
    let report = archiver.run_until(None).await.unwrap();
    assert!(report.lease_held.is_none());
    assert_eq!(report.objects_foreign, 0, "the lease blob is not foreign");
    assert_eq!(report.objects_archived as usize, cold.len(), "{report:?}");
    assert!(
        twin.objects(&twin.cold).await.is_empty(),
        "cold drained, lease released"
    );
    let archived = twin.objects(&twin.archive).await;
    assert_eq!(
        archived.keys().collect::<Vec<_>>(),
        cold.keys().collect::<Vec<_>>()
    );
    for (key, info) in &archived {
        assert_eq!(info.tier, StorageTier::Archive, "{key} is Archive");
        assert_eq!(info.size, cold[key].size, "{key}");
        assert!(info.etag.is_some(), "{key} has a Content-MD5");
        assert_eq!(info.etag, cold[key].etag, "{key}: same content (MD5)");
    }
    // The archive is offline.
    let first = archived.keys().next().unwrap();
    let err = objects.get_object(&twin.archive, first).await.unwrap_err();
    assert!(twin_functions_azure::is_archived(&err), "{err}");
}
