//! Event-rule feedback against a real mosquitto with mutual TLS: a device whose simulator config
//! names a feedback topic subscribes to it over its own certificate's connection, receives what
//! is published there (and only there), and its telemetry accounting is untouched by the
//! subscription's SUBACK and the incoming PUBLISHes.

mod support;

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use support::{Broker, KeyKind, Twin, TOPIC};
use twin_simulator::config::SimulatorConfig;
use twin_simulator::failure::FailureContext;
use twin_simulator::publisher::DeviceLink;
use twin_simulator::tls::{DeviceCredentials, TlsContext};

/// Publishes `messages` (topic, payload) at QoS 1 as `creds`, waiting for every PUBACK.
async fn publish_as(twin: &Twin, port: u16, creds: &DeviceCredentials, messages: &[(&str, &str)]) {
    let tls = TlsContext::load(&twin.ca.cert, port)
        .expect("root CA")
        .client_config(creds)
        .expect("tls");
    let mut options = MqttOptions::new(creds.device_id.clone(), "127.0.0.1", port);
    options.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
    let (client, mut events) = AsyncClient::new(options, 16);
    for (topic, payload) in messages {
        client
            .publish(*topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await
            .expect("queue publish");
    }
    let mut acked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while acked < messages.len() {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("feedback publisher: {e}"),
            Err(_) => panic!("feedback publisher: {acked} of {} PUBACKs", messages.len()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_receives_its_feedback_and_its_telemetry_accounting_is_unchanged() {
    let twin = Twin::new();
    let device = twin.device("d1", KeyKind::EcSec1);
    let service = twin.device("svc", KeyKind::RsaPkcs8);
    let broker = Broker::start(&twin.root.join("broker"), &twin.ca, false);
    twin.point_at(broker.port);
    // What deploy adds for a device an event rule sends feedback to.
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&twin.config).expect("config")).expect("json");
    config["feedback_topics"] = serde_json::json!({"d1": "twin/feedback/d1"});
    std::fs::write(&twin.config, serde_json::to_vec(&config).expect("json")).expect("write");
    let config = SimulatorConfig::load(&twin.config).expect("simulator config");
    assert_eq!(
        config.feedback_topic("d1").as_deref(),
        Some("twin/feedback/d1")
    );
    assert_eq!(config.feedback_topic("d2"), None);

    let tls = TlsContext::load(&config.root_ca_cert, config.port)
        .expect("root CA")
        .client_config(&device)
        .expect("device tls");
    let link = DeviceLink::start_with_feedback(
        "d1",
        config.device_topic("d1"),
        config.feedback_topic("d1"),
        tls,
        &config.link_options(),
        FailureContext {
            device: "d1".into(),
            broker: format!("127.0.0.1:{}", broker.port),
            certificate: device.certificate.clone(),
            root_ca: config.root_ca_cert.clone(),
        },
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    link.wait_connected(deadline).await.expect("connected");
    assert!(
        link.wait_feedback_subscribed(deadline)
            .await
            .expect("SUBACK"),
        "the broker granted the feedback subscription"
    );

    for i in 0..3 {
        link.try_send(format!("{{\"n\":{i}}}").into_bytes())
            .expect("queued");
    }
    link.wait_idle(deadline)
        .await
        .expect("telemetry acknowledged");
    publish_as(
        &twin,
        broker.port,
        &service,
        &[
            ("twin/feedback/d1", r#"{"alert":"hot"}"#),
            ("twin/feedback/d2", "not d1's"),
            (&format!("{TOPIC}/other"), "telemetry of another device"),
            ("twin/feedback/d1", "second"),
        ],
    )
    .await;
    link.wait_feedback(2, deadline)
        .await
        .expect("both feedback messages");

    assert_eq!(
        link.take_feedback(),
        vec![br#"{"alert":"hot"}"#.to_vec(), b"second".to_vec()]
    );
    let c = link.counters();
    assert_eq!(
        (
            c.accepted,
            c.sent,
            c.acknowledged,
            c.outstanding,
            c.feedback
        ),
        (3, 3, 3, 0, 2),
        "feedback and its SUBACK are not acknowledgements of telemetry"
    );
    let stats = link.stats();
    assert_eq!((stats.lost, stats.retransmitted, stats.feedback), (0, 0, 2));
    assert_eq!(
        twin_simulator::send::feedback_line("d1", b"{\"alert\":\"hot\"}"),
        "feedback for d1: {\"alert\":\"hot\"}"
    );
}
