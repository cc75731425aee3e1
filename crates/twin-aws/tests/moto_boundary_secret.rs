//! A cross-cloud boundary's secret in Secrets Manager, on moto: the driver creates it with a
//! random value and reports only fingerprints; reading again shows no drift; a changed
//! description is drift and is fixed; a rotation between two stores (standing in for the two
//! clouds' copies) keeps every message accepted; delete leaves nothing and the name can be
//! used again at once.

mod aws_support;

use aws_support::{clients, leftovers, setup};
use serde_json::Value;
use twin_aws::boundary_secret::{self, BoundarySecretDriver, SecretsManagerStore};
use twin_config::{Layer, ProviderName};
use twin_engine::{Outputs, ResourceDriver, ResourceId, ResourceSpec};
use twin_functions::boundary::{
    rotate, sign_envelope, sync, AcceptedSecrets, BoundaryEnvelope, BoundarySecret,
    BoundarySecretStore, ReceiverPolicy, RotationStep, SyncOutcome,
};

fn spec(twin: &str, name: &str) -> ResourceSpec {
    ResourceSpec::new(
        ResourceId::new(&["l1", boundary_secret::KIND, "dispatch"]),
        Layer::L1,
        ProviderName::Aws,
        boundary_secret::KIND,
        name,
    )
    .desired(boundary_secret::desired(twin, "dispatch"))
    .inputs(serde_json::json!({"tags": {"twin": twin}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_secret_is_created_read_as_a_fingerprint_healed_and_deleted() {
    let moto = setup();
    let c = clients(&moto.endpoint).await;
    let twin = "bsec-twin";
    let name = twin_config::boundary_secret_name(twin, twin_config::Hop::Dispatch);
    let driver = BoundarySecretDriver::new(c.clone());
    let s = spec(twin, &name);
    let deps = Outputs::default();

    assert!(driver.read(&s, &deps).await.expect("read").is_none());
    let made = driver.create(&s, &deps).await.expect("create");
    assert!(made.drift(&s.desired).is_empty(), "{:?}", made.attributes);

    // The value is 32 random bytes and is nowhere in what the engine records.
    let value = boundary_secret::current(&c, &name).await.expect("current");
    let recorded = serde_json::to_string(&made.attributes).expect("json");
    assert!(!recorded.contains(&value.encoded()), "{recorded}");
    assert_eq!(made.attr("fingerprint"), Some(value.fingerprint().as_str()));
    assert_eq!(made.attributes["next_fingerprint"], Value::Null);

    // Read again: the same, no drift.
    let again = driver.read(&s, &deps).await.expect("read").expect("exists");
    assert_eq!(again.attributes, made.attributes);

    // A description changed by hand is drift, fixed by update.
    c.secrets
        .update_secret()
        .secret_id(&name)
        .description("changed by hand")
        .send()
        .await
        .expect("update by hand");
    let drifted = driver.read(&s, &deps).await.expect("read").expect("exists");
    assert_eq!(drifted.drift(&s.desired), vec!["description".to_string()]);
    let healed = driver.update(&s, &drifted, &deps).await.expect("update");
    assert!(healed.drift(&s.desired).is_empty());
    assert_eq!(
        healed.attr("fingerprint"),
        made.attr("fingerprint"),
        "an update never changes the value"
    );

    driver.delete(&s, &healed).await.expect("delete");
    assert!(driver.read(&s, &deps).await.expect("read").is_none());
    assert_eq!(leftovers(&c, twin).await, Vec::<String>::new());
    // Forced deletion frees the name: a redeploy makes it again.
    let remade = driver.create(&s, &deps).await.expect("create again");
    assert_ne!(remade.attr("fingerprint"), made.attr("fingerprint"));
    driver.delete(&s, &remade).await.expect("delete");
    driver
        .delete(&s, &remade)
        .await
        .expect("deleting twice is fine");
}

/// Whether the receiver's store accepts a message signed with the sender's current secret.
async fn accepted_now(sender: &SecretsManagerStore, receiver: &SecretsManagerStore) -> bool {
    let signing = sender.current().await.expect("read").expect("has one");
    let accepted = twin_functions::boundary::accepted(receiver)
        .await
        .expect("read")
        .expect("has one");
    let policy = ReceiverPolicy {
        hop: "dispatch".into(),
        secrets: accepted,
        window_secs: 300,
    };
    let now = 1_764_000_000;
    let envelope = BoundaryEnvelope::new(serde_json::json!({"iotDeviceId": "d"}));
    let nonce = twin_functions::boundary::new_trace_id();
    let r = sign_envelope(&signing, "dispatch", &envelope, now, &nonce).expect("json");
    twin_functions::boundary::authenticate(&policy, &r, &r.body, now).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_secrets_sync_and_rotate_across_two_stores_with_no_refused_message() {
    let moto = setup();
    let c = clients(&moto.endpoint).await;
    let twin = "brot-twin";
    // Two secrets stand in for the sender's and the receiver's cloud.
    let (sender_name, receiver_name) = (format!("{twin}-sender"), format!("{twin}-receiver"));
    let driver = BoundarySecretDriver::new(c.clone());
    let deps = Outputs::default();
    let (ss, rs) = (spec(twin, &sender_name), spec(twin, &receiver_name));
    driver.create(&ss, &deps).await.expect("sender copy");
    driver.create(&rs, &deps).await.expect("receiver copy");
    let sender = SecretsManagerStore::new(c.clone(), &sender_name);
    let receiver = SecretsManagerStore::new(c.clone(), &receiver_name);

    // Each was made with its own random value: sync installs the sender's on the receiver.
    assert!(!accepted_now(&sender, &receiver).await);
    assert_eq!(
        sync(&sender, &receiver).await.expect("sync"),
        SyncOutcome::Installed
    );
    assert!(accepted_now(&sender, &receiver).await);
    assert_eq!(
        sync(&sender, &receiver).await.expect("sync"),
        SyncOutcome::InStep
    );

    let before = boundary_secret::current(&c, &sender_name)
        .await
        .expect("current");
    let new = BoundarySecret::generate();
    let mut steps = Vec::new();
    // The whole rotation; below, the same steps one at a time with a signed message checked
    // between them.
    rotate(&sender, &receiver, &new, &mut |s| steps.push(s))
        .await
        .expect("rotate");
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[0], RotationStep::Synced(SyncOutcome::InStep));
    assert_eq!(
        boundary_secret::current(&c, &sender_name).await.expect("s"),
        new
    );
    let accepted: AcceptedSecrets = boundary_secret::accepted(&c, &receiver_name)
        .await
        .expect("accepted");
    assert_eq!(
        accepted.iter().collect::<Vec<_>>(),
        vec![&new],
        "the old one is retired"
    );
    assert_ne!(before, new);

    // Step by step on the real API shapes: staged → both accepted; switched → still accepted.
    let newer = BoundarySecret::generate();
    boundary_secret::stage_next(&c, &receiver_name, &newer)
        .await
        .expect("stage");
    assert!(accepted_now(&sender, &receiver).await, "old still accepted");
    sender.set_current(&newer).await.expect("switch");
    assert!(
        accepted_now(&sender, &receiver).await,
        "new accepted before promote"
    );
    let seen = driver
        .read(&rs, &deps)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        seen.attr("next_fingerprint"),
        Some(newer.fingerprint().as_str())
    );
    boundary_secret::promote_next(&c, &receiver_name)
        .await
        .expect("promote");
    assert!(accepted_now(&sender, &receiver).await, "after promote");
    boundary_secret::promote_next(&c, &receiver_name)
        .await
        .expect("promoting again is a no-op");
    let seen = driver
        .read(&rs, &deps)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(seen.attr("fingerprint"), Some(newer.fingerprint().as_str()));
    assert_eq!(seen.attributes["next_fingerprint"], Value::Null);

    for (s, name) in [(&ss, &sender_name), (&rs, &receiver_name)] {
        let o = driver.read(s, &deps).await.expect("read").expect(name);
        driver.delete(s, &o).await.expect("delete");
    }
    assert_eq!(leftovers(&c, twin).await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boundary_nonce_table_is_created_with_ttl_healed_and_deleted() {
    use twin_aws::boundary_nonce_table::{self, NonceTableDriver};
    let moto = setup();
    let c = clients(&moto.endpoint).await;
    let twin = "bnon-twin";
    let name = boundary_nonce_table::table_name(twin);
    let s = ResourceSpec::new(
        ResourceId::new(&["l3-cold", boundary_nonce_table::KIND, "nonces"]),
        Layer::L3Cold,
        ProviderName::Aws,
        boundary_nonce_table::KIND,
        &name,
    )
    .desired(boundary_nonce_table::desired())
    .inputs(serde_json::json!({"tags": {"twin": twin}}));
    let driver = NonceTableDriver::new(c.clone());
    let deps = Outputs::default();

    assert!(driver.read(&s, &deps).await.expect("read").is_none());
    let made = driver.create(&s, &deps).await.expect("create");
    assert!(made.drift(&s.desired).is_empty(), "{:?}", made.attributes);
    assert_eq!(made.owner, twin_engine::Owner::from_tags([("twin", twin)]));

    // Time to live switched off by hand is drift, and update switches it back on.
    c.dynamodb
        .update_time_to_live()
        .table_name(&name)
        .time_to_live_specification(
            aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                .enabled(false)
                .attribute_name(boundary_nonce_table::TTL_ATTRIBUTE)
                .build()
                .expect("spec"),
        )
        .send()
        .await
        .expect("disable ttl by hand");
    let drifted = driver.read(&s, &deps).await.expect("read").expect("exists");
    assert_eq!(drifted.drift(&s.desired), vec!["ttl_attribute".to_string()]);
    let healed = driver.update(&s, &drifted, &deps).await.expect("update");
    assert!(
        healed.drift(&s.desired).is_empty(),
        "{:?}",
        healed.attributes
    );

    // The ingress's ledger works on it.
    let ledger = twin_functions_aws::DynamoNonceLedger::new(c.dynamodb.clone(), &name);
    use twin_functions::boundary::NonceLedger;
    let later = chrono::Utc::now().timestamp() + 300;
    assert!(ledger
        .claim("hot-to-cold", "n1", later)
        .await
        .expect("claim"));
    assert!(!ledger
        .claim("hot-to-cold", "n1", later)
        .await
        .expect("claim"));
    assert!(ledger
        .claim("cold-to-archive", "n1", later)
        .await
        .expect("claim"));
    // An expired claim is free again before TTL removes it.
    let past = chrono::Utc::now().timestamp() - 1;
    assert!(ledger
        .claim("hot-to-cold", "n2", past)
        .await
        .expect("claim"));
    assert!(ledger
        .claim("hot-to-cold", "n2", later)
        .await
        .expect("reclaim"));

    driver.delete(&s, &healed).await.expect("delete");
    assert!(driver.read(&s, &deps).await.expect("read").is_none());
    assert_eq!(leftovers(&c, twin).await, Vec::<String>::new());
}
