//! The IoT data-plane shim against a real mosquitto configured as `local up` configures it: a
//! `Publish` made with aws-sdk-iotdataplane reaches a subscriber on the broker; a topic outside
//! the twin's prefix is refused with IoT's 403 and never reaches the broker.

use aws_sdk_iotdataplane::error::ProvideErrorMetadata;
use aws_sdk_iotdataplane::primitives::Blob;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use twin_local::broker::{self, BrokerFiles};
use twin_local::iot_data::IotDataService;
use twin_local::pki::{Pki, RULE_ENGINE_IDENTITY};
use twin_local::runner::{LocalService, ServiceContext};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A broker whose ACL is what `local up` writes for twin `t`, the rule engine reading `#` so
/// the test sees everything the broker lets through.
fn start_broker(dir: &std::path::Path) -> (u16, u32, BrokerFiles, Pki) {
    let pki = Pki::in_dir(dir);
    pki.ensure().expect("local PKI");
    let files = BrokerFiles::in_dir(dir);
    let port = free_port();
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let ca = std::fs::read_to_string(&pki.ca_cert).expect("CA");
    std::fs::write(&files.trust_bundle, broker::render_trust_bundle(&ca, &[])).expect("bundle");
    std::fs::write(&files.acl, broker::render_acl("t", &[], Some("#"))).expect("acl");
    std::fs::write(
        &files.config,
        broker::render_config(&files, &pki, port, as_root),
    )
    .expect("config");
    let pid = broker::spawn(&files).expect("mosquitto starts (run scripts/setup-mosquitto.sh)");
    broker::wait_ready(pid, port, &files, &pki, Duration::from_secs(15)).expect("broker ready");
    (port, pid, files, pki)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shim_publish_via_the_sdk_reaches_a_broker_subscriber_and_a_foreign_topic_is_forbidden() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, pid, files, pki) = start_broker(dir.path());

    // The subscriber: the rule engine identity, reading everything the ACL lets it.
    let tls = broker::identity_tls(&pki, &pki.rule_engine_cert, &pki.rule_engine_key)
        .expect("client tls");
    let mut options = MqttOptions::new(RULE_ENGINE_IDENTITY, "127.0.0.1", port);
    options
        .set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)))
        .set_clean_session(true);
    let (sub, mut events) = AsyncClient::new(options, 16);
    sub.subscribe("#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (tx, mut got) = tokio::sync::mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let listener = tokio::spawn(async move {
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(s) = subscribed_tx.take() {
                        let _ = s.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber lost the broker: {e}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed)
        .await
        .expect("SUBACK in time")
        .expect("SUBACK");

    let service = IotDataService::bind("t", port, pki.clone()).expect("bind");
    let url = service.url().to_string();
    let env = service.function_env();
    assert!(env.contains(&("IOT_DATA_ENDPOINT".to_string(), url.clone())));
    let cancel = CancellationToken::new();
    let started = Box::new(service)
        .start(ServiceContext {
            router_url: "http://127.0.0.1:1".into(),
            endpoint: "http://127.0.0.1:1".into(),
            local_dir: dir.path().to_path_buf(),
            twin: "t".into(),
            cancel: cancel.clone(),
        })
        .await
        .expect("the shim connects to the broker");

    let config = aws_sdk_iotdataplane::Config::builder()
        .behavior_version(aws_sdk_iotdataplane::config::BehaviorVersion::latest())
        .region(aws_sdk_iotdataplane::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_iotdataplane::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .endpoint_url(&url)
        .build();
    let iot = aws_sdk_iotdataplane::Client::from_conf(config);

    iot.publish()
        .topic("t/feedback/d1")
        .qos(1)
        .payload(Blob::new(br#"{"alert":"hot"}"#.to_vec()))
        .send()
        .await
        .expect("Publish on the twin's feedback topic");
    let foreign = iot
        .publish()
        .topic("other/feedback/d1")
        .qos(1)
        .payload(Blob::new(b"nope".to_vec()))
        .send()
        .await
        .expect_err("a foreign topic is refused");
    assert_eq!(foreign.code(), Some("ForbiddenException"), "{foreign:?}");
    assert_eq!(
        foreign.raw_response().map(|r| r.status().as_u16()),
        Some(403)
    );
    iot.publish()
        .topic("t/feedback/d1")
        .qos(1)
        .payload(Blob::new(b"second".to_vec()))
        .send()
        .await
        .expect("a second Publish");

    // Both accepted messages arrive, in order; the refused one, published between them, not.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut received = Vec::new();
    while received.len() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, got.recv())
            .await
            .expect("the subscriber gets both messages in time")
            .expect("subscriber open");
        received.push(m);
    }
    assert_eq!(
        received,
        vec![
            ("t/feedback/d1".to_string(), br#"{"alert":"hot"}"#.to_vec()),
            ("t/feedback/d1".to_string(), b"second".to_vec()),
        ]
    );

    cancel.cancel();
    started
        .task
        .await
        .expect("shim task")
        .expect("shim ends cleanly");
    listener.abort();
    broker::stop(pid, &files.config).expect("broker stops");
}
