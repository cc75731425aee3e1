//! The event rules' state in the hot table, against moto: DynamoDB's conditional PutItem gives
//! the compare-and-set contract, the state items are invisible to readers and movers of records,
//! and a reading above a threshold fires its rule once (the persister's evaluation step).

mod support;

use serde_json::json;
use support::MotoTwin;
use twin_functions::event_evaluator::{
    EventEvaluator, RecordingActions, RuleState, RuleStateStore, SentAction,
};
use twin_functions::hot_store::{DeviceQuery, HotStore, Order, TimeRange};
use twin_functions::persister::{PersistOutcome, Persister};
use twin_functions::Timestamp;

#[tokio::test]
async fn moto_rule_state_is_a_compare_and_set() {
    let twin = MotoTwin::create("rule-cas").await;
    let store = twin.hot_store();
    assert_eq!(store.get("hot").await.expect("get"), None);
    let v1 = RuleState {
        active: true,
        version: 1,
        at: None,
    };
    assert!(store
        .compare_and_set("hot", None, v1)
        .await
        .expect("create"));
    // A second writer that also saw no state loses.
    assert!(!store
        .compare_and_set("hot", None, v1)
        .await
        .expect("lost create"));
    let v2 = RuleState {
        active: false,
        version: 2,
        at: Some(1_762_261_391_203),
    };
    assert!(store
        .compare_and_set("hot", Some(v1), v2)
        .await
        .expect("update"));
    // A writer holding the stale version loses.
    assert!(!store
        .compare_and_set(
            "hot",
            Some(v1),
            RuleState {
                active: true,
                version: 2,
                at: Some(1_762_261_391_203),
            }
        )
        .await
        .expect("stale"));
    assert_eq!(store.get("hot").await.expect("get"), Some(v2));
}

#[tokio::test]
async fn moto_a_reading_above_the_threshold_fires_once_and_records_stay_clean() {
    let twin = MotoTwin::create("rule-fire").await;
    let rules =
        EventEvaluator::<twin_functions_aws::DynamoHotStore, RecordingActions>::rules_from_json(
            &json!([{
                "key": "hot",
                "condition": {"text": "room-1.sensor.temperature > DOUBLE(30)", "devices": ["s-1"]},
                "action": {"type": "mqtt", "iotDeviceId": "s-1", "payload": {"message": "too hot"}},
                "fire": "on_change"
            }])
            .to_string(),
        )
        .expect("rules");
    let evaluator = EventEvaluator::new(rules, twin.hot_store(), RecordingActions::default());
    let persister = Persister::new(twin.hot_store());
    let mut fired = Vec::new();
    for (second, t) in [(1, 20.0), (2, 31.0), (3, 32.0)] {
        let msg = json!({"iotDeviceId": "s-1", "time": format!("2025-11-04T12:00:0{second}.000Z"), "temperature": t});
        let PersistOutcome::Stored(item) = persister.handle(msg, "c").await.expect("persist")
        else {
            panic!("stored");
        };
        fired.push(
            evaluator
                .handle(&item, &twin.hot_store())
                .await
                .expect("evaluate")
                .len(),
        );
    }
    assert_eq!(fired, [0, 1, 0], "fires on the transition only");
    assert_eq!(
        evaluator.actions().sent(),
        [SentAction::Feedback(
            "s-1".into(),
            json!({"message": "too hot"})
        )]
    );
    // The state item is not a record of any reader's.
    let page = twin
        .hot_store()
        .query_page(&DeviceQuery {
            device_id: "s-1".into(),
            range: TimeRange::All,
            after: None,
            order: Order::Ascending,
            limit: None,
        })
        .await
        .expect("query");
    assert_eq!(page.items.len(), 3);
    let cutoff = Timestamp::parse("2100-01-01T00:00:00.000Z").expect("time");
    let devices = twin
        .hot_store()
        .scan_devices_before(cutoff, None)
        .await
        .expect("scan");
    assert!(!devices.device_ids.is_empty());
    assert!(
        devices.device_ids.iter().all(|d| d == "s-1"),
        "{:?}",
        devices.device_ids
    );
}
