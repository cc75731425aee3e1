//! The Azure adapters against the real emulators (Cosmos DB: `@vercel/cosmosdb-server`; Blob:
//! Azurite): the same contract the AWS adapters meet against moto.

mod support;

use serde_json::{json, Map};
use std::collections::BTreeSet;
use support::AzureTwin;
use twin_functions::hot_store::{DeviceQuery, HotStore, Order, TimeRange};
use twin_functions::lease::{lease_until, BucketLease, LEASE_PARTITION};
use twin_functions::object_store::{ConditionalWrite, ObjectStore, PutCondition, StorageTier};
use twin_functions::record::HotItem;
use twin_functions::testing::check_lease_contract;
use twin_functions::{LeaseOutcome, LeaseStore, Timestamp};

fn at(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn item(device: &str, minute: i64) -> HotItem {
    let base = at("2025-11-04T12:00:00.000Z").millis();
    HotItem {
        device_id: device.into(),
        id: Timestamp::from_millis(base + minute * 60_000).unwrap(),
        properties: json!({"v": minute}).as_object().cloned().unwrap(),
    }
}

async fn all_pages(store: &dyn HotStore, mut query: DeviceQuery) -> (Vec<HotItem>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.query_page(&query).await.unwrap();
        pages += 1;
        items.extend(page.items);
        match page.next {
            Some(n) => query.after = Some(n),
            None => return (items, pages),
        }
    }
}

#[tokio::test]
async fn cosmos_hot_store_puts_queries_pages_scans_and_deletes() {
    let twin = AzureTwin::create("hot").await;
    let hot = twin.hot_store().await.with_page_items(4);
    for m in 0..10 {
        hot.put_item(&item("dev-a", m)).await.unwrap();
    }
    for m in 0..3 {
        hot.put_item(&item("dev-b", m)).await.unwrap();
    }
    // Idempotent: the same record twice is one document, the second write wins.
    let mut again = item("dev-a", 5);
    again.properties.insert("v".into(), json!("again"));
    hot.put_item(&again).await.unwrap();

    let query = |range, order| DeviceQuery {
        device_id: "dev-a".into(),
        range,
        after: None,
        order,
        limit: None,
    };
    let (items, pages) = all_pages(&hot, query(TimeRange::All, Order::Ascending)).await;
    assert_eq!(items.len(), 10, "{items:?}");
    assert!(pages >= 3, "pages of 4: {pages}");
    assert!(items.windows(2).all(|w| w[0].id < w[1].id), "ascending");
    assert_eq!(
        items[5], again,
        "system properties stripped, overwrite kept"
    );
    assert!(items.iter().all(|i| i.device_id == "dev-a"));

    let (desc, _) = all_pages(&hot, query(TimeRange::All, Order::Descending)).await;
    assert_eq!(
        desc.iter().map(|i| i.id).collect::<Vec<_>>(),
        items.iter().rev().map(|i| i.id).collect::<Vec<_>>()
    );
    let (between, _) = all_pages(
        &hot,
        query(
            TimeRange::Between(item("x", 2).id, item("x", 6).id),
            Order::Ascending,
        ),
    )
    .await;
    assert_eq!(between.len(), 5, "inclusive bounds");
    let (before, _) = all_pages(
        &hot,
        query(TimeRange::Before(item("x", 3).id), Order::Ascending),
    )
    .await;
    assert_eq!(before.len(), 3, "exclusive cut-off");
    let mut limited = query(TimeRange::From(item("x", 8).id), Order::Ascending);
    limited.limit = Some(1);
    let page = hot.query_page(&limited).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert!(page.next.is_some());

    // The movers' scan: devices with records before a cut-off, one page at a time.
    let t = at("2025-11-04T12:00:00.000Z");
    hot.try_acquire_lease("scan-lease", "x", lease_until(t, 60), t)
        .await
        .unwrap();
    let scan = |cutoff| {
        let hot = hot.clone();
        async move {
            let mut devices = BTreeSet::new();
            let mut after = None;
            loop {
                let page = hot.scan_devices_before(cutoff, after).await.unwrap();
                devices.extend(page.device_ids);
                match page.next {
                    Some(n) => after = Some(n),
                    None => return devices,
                }
            }
        }
    };
    let far = at("9999-12-31T23:59:59.999Z");
    assert_eq!(
        scan(far).await,
        BTreeSet::from(["dev-a".into(), "dev-b".into()])
    );
    assert_eq!(
        scan(item("x", 4).id).await,
        BTreeSet::from(["dev-a".into(), "dev-b".into()])
    );
    assert_eq!(
        scan(item("x", 0).id).await,
        BTreeSet::new(),
        "nothing before the first record"
    );

    // Deletes, including one of a missing record.
    let ids: Vec<Timestamp> = (0..3)
        .map(|m| item("dev-a", m).id)
        .chain([item("x", 99).id])
        .collect();
    hot.delete_items("dev-a", &ids).await.unwrap();
    let (left, _) = all_pages(&hot, query(TimeRange::All, Order::Ascending)).await;
    assert_eq!(left.len(), 7);
    assert_eq!(left[0].id, item("dev-a", 3).id);

    // The reserved partition: invisible and unwritable.
    let lease_query = DeviceQuery {
        device_id: LEASE_PARTITION.into(),
        ..query(TimeRange::All, Order::Ascending)
    };
    assert!(hot.query_page(&lease_query).await.unwrap().items.is_empty());
    let forged = HotItem {
        device_id: LEASE_PARTITION.into(),
        id: t,
        properties: Map::new(),
    };
    assert!(hot.put_item(&forged).await.is_err());
    assert!(hot.delete_items(LEASE_PARTITION, &[t]).await.is_err());
}

#[tokio::test]
async fn cosmos_leases_follow_the_contract() {
    let twin = AzureTwin::create("lease-cosmos").await;
    let hot = twin.hot_store().await;
    check_lease_contract(&hot).await;

    // Two writers racing for a free lease: exactly one wins (409 on the create / 412 on the
    // replace sends the loser back to read the winner's lease).
    let t = at("2025-11-04T13:00:00.000Z");
    let (a, b) = tokio::join!(
        hot.try_acquire_lease("race", "a", lease_until(t, 60), t),
        hot.try_acquire_lease("race", "b", lease_until(t, 60), t),
    );
    let wins = [a.unwrap(), b.unwrap()]
        .iter()
        .filter(|o| **o == LeaseOutcome::Acquired)
        .count();
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn blob_leases_follow_the_contract() {
    let twin = AzureTwin::create("lease-blob").await;
    let objects = twin.object_store();
    check_lease_contract(&BucketLease::new(&objects, &twin.cold)).await;
    let keys: Vec<String> = twin.objects(&twin.cold).await.into_keys().collect();
    assert_eq!(keys, vec!["#lease/m".to_string(), "#lease/n".to_string()]);
}

#[tokio::test]
async fn blobs_keep_tiers_page_refuse_archived_reads_copy_and_write_conditionally() {
    let twin = AzureTwin::create("blobs").await;
    let store = twin.object_store().with_list_page(3);
    store
        .put_object(
            &twin.cold,
            "a/cold.json",
            b"[1]".to_vec(),
            StorageTier::Cold,
        )
        .await
        .unwrap();
    store
        .put_object(
            &twin.cold,
            "a/archived.json",
            b"[2,3]".to_vec(),
            StorageTier::Archive,
        )
        .await
        .unwrap();
    let cold = store
        .head_object(&twin.cold, "a/cold.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((cold.size, &cold.tier), (3, &StorageTier::Cold));
    assert!(cold.etag.is_some(), "Content-MD5 reported");
    let archived = store
        .head_object(&twin.cold, "a/archived.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((archived.size, &archived.tier), (5, &StorageTier::Archive));
    assert_eq!(store.head_object(&twin.cold, "nope").await.unwrap(), None);
    assert_eq!(
        store.get_object(&twin.cold, "a/cold.json").await.unwrap(),
        b"[1]"
    );

    // Archive is offline: a typed, explained error, not bytes.
    let err = store
        .get_object(&twin.cold, "a/archived.json")
        .await
        .unwrap_err();
    assert!(twin_functions_azure::is_archived(&err), "{err}");
    assert!(err.to_string().contains("rehydrate"), "{err}");
    assert!(!err.is_retryable());
    let missing = store.get_object(&twin.cold, "nope").await.unwrap_err();
    assert_eq!(missing.kind, twin_functions::CloudErrorKind::NotFound);

    // Listing in pages of 3 with continuation, in key order, with a prefix.
    for i in 0..8 {
        store
            .put_object(
                &twin.cold,
                &format!("p/{i:02}"),
                vec![b'x'; i + 1],
                StorageTier::Cold,
            )
            .await
            .unwrap();
    }
    let mut keys = Vec::new();
    let mut next = None;
    let mut pages = 0;
    loop {
        let page = store.list_objects(&twin.cold, "p/", next).await.unwrap();
        pages += 1;
        assert!(page.objects.len() <= 3);
        for o in &page.objects {
            assert_eq!(o.tier, StorageTier::Cold);
        }
        keys.extend(page.objects.into_iter().map(|o| o.key));
        match page.next {
            Some(n) => next = Some(n),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        keys,
        (0..8).map(|i| format!("p/{i:02}")).collect::<Vec<_>>()
    );

    // Server-side copy into the archive tier, checked by HEAD (length, MD5), then delete.
    store
        .copy_object(
            &twin.cold,
            "a/cold.json",
            &twin.archive,
            StorageTier::Archive,
        )
        .await
        .unwrap();
    let copy = store
        .head_object(&twin.archive, "a/cold.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(copy.tier, StorageTier::Archive);
    assert_eq!(
        (copy.size, &copy.etag),
        (cold.size, &cold.etag),
        "same length and MD5"
    );
    store
        .delete_object(&twin.cold, "a/cold.json")
        .await
        .unwrap();
    store
        .delete_object(&twin.cold, "a/cold.json")
        .await
        .unwrap();
    assert_eq!(
        store.head_object(&twin.cold, "a/cold.json").await.unwrap(),
        None
    );

    // Conditional create / replace / delete (the bucket lease's primitives).
    let put = |body: &'static str, condition: PutCondition| {
        let store = store.clone();
        let bucket = twin.cold.clone();
        async move {
            store
                .put_object_if(&bucket, "k", body.into(), StorageTier::Cold, condition)
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
        "If-None-Match: * on an existing blob"
    );
    let first = store
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
        store
            .delete_object_if_match(&twin.cold, "k", &first.etag)
            .await
            .unwrap(),
        ConditionalWrite::PreconditionFailed
    );
    let current = store
        .get_object_tagged(&twin.cold, "k")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(current.body, b"three");
    assert_eq!(
        store
            .delete_object_if_match(&twin.cold, "k", &current.etag)
            .await
            .unwrap(),
        ConditionalWrite::Applied
    );
    assert_eq!(
        store.get_object_tagged(&twin.cold, "k").await.unwrap(),
        None
    );
    assert_eq!(
        put("five", PutCondition::IfMatch(current.etag)).await,
        ConditionalWrite::PreconditionFailed,
        "If-Match on a missing blob"
    );
}

fn reading(device: &str, second: u32, t: f64) -> HotItem {
    HotItem {
        device_id: device.into(),
        id: at(&format!("2025-11-04T13:23:{second:02}.000Z")),
        properties: json!({"temperature": t}).as_object().cloned().unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosmos_rule_state_writes_are_conditional_create_only_then_if_match() {
    use twin_functions::event_evaluator::{RuleState, RuleStateStore};
    let twin = AzureTwin::create("rule-state").await;
    let hot = twin.hot_store().await;
    let first = RuleState {
        active: true,
        version: 1,
        at: None,
    };
    assert_eq!(hot.get("r").await.unwrap(), None);
    // Create-only: the second create (another persister, same transition) loses.
    assert!(hot.create_rule_state("r", first).await.unwrap());
    assert!(!hot.create_rule_state("r", first).await.unwrap());
    // Two persisters read the same document; the first replace lands, the second, with the ETag
    // of the same read, must be refused (an unconditional write would land as well).
    let a = hot.read_rule_state("r").await.unwrap().expect("stored");
    let b = hot.read_rule_state("r").await.unwrap().expect("stored");
    assert_eq!(a.state, first);
    let next = RuleState {
        active: false,
        version: 2,
        at: Some(1_762_261_391_203),
    };
    assert!(hot.replace_rule_state("r", a.etag, next).await.unwrap());
    assert!(!hot
        .replace_rule_state(
            "r",
            b.etag,
            RuleState {
                active: true,
                version: 2,
                at: Some(1_762_261_391_203),
            }
        )
        .await
        .unwrap());
    assert_eq!(hot.get("r").await.unwrap(), Some(next));
    // compare_and_set against a stale expectation is refused; against the current one it lands.
    assert!(!hot.compare_and_set("r", Some(first), next).await.unwrap());
    let third = RuleState {
        active: true,
        version: 3,
        at: Some(1_762_261_391_203),
    };
    assert!(hot.compare_and_set("r", Some(next), third).await.unwrap());
    // The state lives in the reserved partition: no record query or scan sees it.
    assert!(hot
        .query_page(&DeviceQuery {
            device_id: LEASE_PARTITION.into(),
            range: TimeRange::All,
            after: None,
            order: Order::Ascending,
            limit: None,
        })
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosmos_two_concurrent_persisters_fire_one_transition_once() {
    use twin_events::{Action, Feedback, Fire};
    use twin_functions::event_evaluator::{EventEvaluator, RecordingActions};
    let twin = AzureTwin::create("rule-race").await;
    let hot = twin.hot_store().await;
    // Several transitions, each raced by two persisters sharing the container: one fires each.
    for round in 0..6u32 {
        let rule = support::resolved_rule(
            &format!("hot-{round}"),
            "room.s-1.temperature > DOUBLE(30)",
            Fire::OnChange,
            Action::Feedback(Feedback {
                iot_device_id: "s-1".into(),
                payload: json!("too hot"),
            }),
        );
        let make =
            || EventEvaluator::new(vec![rule.clone()], hot.clone(), RecordingActions::default());
        let (a, b) = (make(), make());
        let (ra, rb) = (reading("s-1", 1, 31.0), reading("s-1", 2, 33.0));
        let (x, y) = tokio::join!(a.handle(&ra, &hot), b.handle(&rb, &hot));
        let fired = x.expect("a").len() + y.expect("b").len();
        assert_eq!(fired, 1, "round {round}");
        assert_eq!(a.actions().sent().len() + b.actions().sent().len(), 1);
    }
}
