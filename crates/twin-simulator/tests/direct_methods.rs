//! Event-rule feedback as IoT Hub direct methods against a real mosquitto with mutual TLS: a
//! device listed in `direct_method_devices` subscribes to `$iothub/methods/POST/#`, counts each
//! call as feedback and answers it on `$iothub/methods/res/200/?$rid=<rid>`, and its telemetry
//! accounting is untouched by the calls and its answers.

mod support;

use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use support::{Broker, KeyKind, Twin};
use twin_simulator::config::SimulatorConfig;
use twin_simulator::failure::FailureContext;
use twin_simulator::publisher::{DeviceLink, FeedbackChannel};
use twin_simulator::tls::{DeviceCredentials, TlsContext};

const HOST: &str = "twin-iot-0123abcd.azure-devices.net";

/// Plays the hub's service side: subscribes to the answers, calls `calls` (topic, payload) at
/// QoS 0 and returns the answers (topic, body) once `calls.len()` arrived.
async fn call_methods(
    twin: &Twin,
    port: u16,
    creds: &DeviceCredentials,
    calls: &[(&str, &str)],
) -> Vec<(String, String)> {
    let tls = TlsContext::load(&twin.ca.cert, port)
        .expect("root CA")
        .client_config(creds)
        .expect("tls");
    let mut options = MqttOptions::new(creds.device_id.clone(), "127.0.0.1", port);
    options.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .subscribe("$iothub/methods/res/#", QoS::AtMostOnce)
        .await
        .expect("queue subscribe");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut answers = Vec::new();
    let mut subscribed = false;
    while answers.len() < calls.len() {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) if !subscribed => {
                subscribed = true;
                for (topic, payload) in calls {
                    client
                        .publish(*topic, QoS::AtMostOnce, false, payload.as_bytes().to_vec())
                        .await
                        .expect("queue call");
                }
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => answers.push((
                p.topic.clone(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("hub side: {e}"),
            Err(_) => panic!("hub side: {} of {} answers", answers.len(), calls.len()),
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_method_device_answers_each_call_and_counts_it_as_feedback() {
    let twin = Twin::new();
    let device = twin.device("d1", KeyKind::EcSec1);
    let service = twin.device("svc", KeyKind::RsaPkcs8);
    let broker = Broker::start(&twin.root.join("broker"), &twin.ca, false);
    twin.point_at_iot_hub(broker.port, HOST);
    // What deploy adds for a device an event rule sends feedback to on IoT Hub.
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&twin.config).expect("config")).expect("json");
    config["direct_method_devices"] = serde_json::json!(["d1"]);
    std::fs::write(&twin.config, serde_json::to_vec(&config).expect("json")).expect("write");
    let config = SimulatorConfig::load(&twin.config).expect("simulator config");
    assert_eq!(config.feedback("d1"), Some(FeedbackChannel::DirectMethods));

    let tls = TlsContext::load(&config.root_ca_cert, config.port)
        .expect("root CA")
        .client_config(&device)
        .expect("device tls");
    let link = DeviceLink::start_with_channel(
        "d1",
        config.device_topic("d1"),
        config.feedback("d1"),
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
        "the broker granted the method subscription"
    );
    assert_eq!(link.feedback_topic(), Some("$iothub/methods/POST/#"));

    for i in 0..3 {
        link.try_send(format!("{{\"n\":{i}}}").into_bytes())
            .expect("queued");
    }
    let answers = call_methods(
        &twin,
        broker.port,
        &service,
        &[
            ("$iothub/methods/POST/feedback/?$rid=d1/1", "\"too hot\""),
            ("$iothub/methods/POST/feedback/?$rid=d1/2", "\"still hot\""),
        ],
    )
    .await;
    link.wait_idle(deadline)
        .await
        .expect("telemetry acknowledged");
    link.wait_feedback(2, deadline)
        .await
        .expect("both calls as feedback");

    let mut topics: Vec<&str> = answers.iter().map(|(t, _)| t.as_str()).collect();
    topics.sort();
    assert_eq!(
        topics,
        [
            "$iothub/methods/res/200/?$rid=d1/1",
            "$iothub/methods/res/200/?$rid=d1/2"
        ]
    );
    for (_, body) in &answers {
        let v: serde_json::Value = serde_json::from_str(body).expect("a JSON answer");
        assert_eq!(v["status"], "received");
    }
    assert_eq!(
        link.take_feedback(),
        vec![b"\"too hot\"".to_vec(), b"\"still hot\"".to_vec()]
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
        "method calls and their answers are not telemetry"
    );
    let stats = link.stats();
    assert_eq!((stats.lost, stats.retransmitted), (0, 0));
}
