//! The event notification topic `<twin>-events` on moto: created encrypted with SNS's managed
//! key and tagged, read again with no drift, a display name or encryption changed by hand is
//! drift and is fixed, delete leaves nothing; and only a twin whose rules notify gets it, with
//! its ARN in the persister's environment and exactly `sns:Publish` on it in the persister's role.

mod aws_support;

use aws_support::{clients, leftovers, setup};
use twin_aws::l2::events_topic::{self, EventsTopicDriver};
use twin_config::{Layer, ProviderName};
use twin_engine::{Outputs, ResourceDriver, ResourceId, ResourceSpec};

fn spec(twin: &str, arn: &str) -> ResourceSpec {
    let mut s = ResourceSpec::new(
        ResourceId::new(&["l2", events_topic::KIND, "events"]),
        Layer::L2,
        ProviderName::Aws,
        events_topic::KIND,
        twin_config::names::events_topic_name(twin),
    )
    .desired(events_topic::desired(twin))
    .inputs(serde_json::json!({"tags": {"twin": twin}}));
    s.inputs["arn"] = serde_json::json!(arn);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_events_topic_is_created_read_healed_and_deleted() {
    let moto = setup();
    let c = clients(&moto.endpoint).await;
    let twin = "evtopic-twin";
    let arn = c.arn("sns", &twin_config::names::events_topic_name(twin));
    let driver = EventsTopicDriver::new(c.clone());
    let s = spec(twin, &arn);
    let deps = Outputs::default();

    assert!(driver.read(&s, &deps).await.expect("read").is_none());
    let made = driver.create(&s, &deps).await.expect("create");
    assert!(made.drift(&s.desired).is_empty(), "{:?}", made.attributes);
    assert_eq!(made.attr("arn"), Some(arn.as_str()));
    assert_eq!(
        made.attr("kms_master_key_id"),
        Some(events_topic::MANAGED_KEY)
    );
    let again = driver.read(&s, &deps).await.expect("read").expect("exists");
    assert_eq!(again.attributes, made.attributes);

    // Encryption switched off and the display name changed by hand: both drift, both healed.
    for (name, value) in [("KmsMasterKeyId", ""), ("DisplayName", "by hand")] {
        c.sns
            .set_topic_attributes()
            .topic_arn(&arn)
            .attribute_name(name)
            .attribute_value(value)
            .send()
            .await
            .expect("change by hand");
    }
    let drifted = driver.read(&s, &deps).await.expect("read").expect("exists");
    let mut drift = drifted.drift(&s.desired);
    drift.sort();
    assert_eq!(drift, ["display_name", "kms_master_key_id"]);
    let healed = driver.update(&s, &drifted, &deps).await.expect("update");
    assert!(
        healed.drift(&s.desired).is_empty(),
        "{:?}",
        healed.attributes
    );

    driver.delete(&s, &healed).await.expect("delete");
    assert!(driver.read(&s, &deps).await.expect("read").is_none());
    driver
        .delete(&s, &healed)
        .await
        .expect("deleting twice is fine");
    assert_eq!(leftovers(&c, twin).await, Vec::<String>::new());
}
