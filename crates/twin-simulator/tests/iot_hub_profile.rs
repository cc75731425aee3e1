//! The simulator's IoT Hub profile against a real mosquitto with mutual TLS whose ACL lets a
//! device publish only with IoT Hub's username and only to IoT Hub's telemetry topic of its
//! own id: a message arrives only if client id, username and topic are what IoT Hub expects.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Broker, KeyKind, Subscriber, Twin};

const HOST: &str = "twin-iot-0123abcd.azure-devices.net";

#[test]
fn iot_hub_profile_publishes_with_the_hub_username_and_topic() {
    let twin = Twin::new();
    twin.device("sensor-az", KeyKind::EcSec1);
    let reader = twin.device("reader", KeyKind::EcSec1);
    // Anonymous clients (the reader) may read; the device may write its own topic only when
    // it connects with the hub's username for it.
    let acl = format!(
        "topic read devices/#\n\
         user {HOST}/sensor-az/?api-version=2021-04-12\n\
         topic write devices/sensor-az/messages/events/#\n"
    );
    let broker = Broker::start_with(&twin.root.join("broker"), &twin.ca, false, Some(&acl));
    let sub = Subscriber::start_on(&twin, broker.port, &reader, "devices/#");

    // First as another hub's device: the broker acknowledges and drops it (the ACL gate works).
    twin.point_at_iot_hub(broker.port, "another-hub.azure-devices.net");
    twin.write_payloads(&json!([{"iotDeviceId": "sensor-az", "time": "", "temperature": 1.0}]));
    let out = twin.simulator(&["send", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    twin.point_at_iot_hub(broker.port, HOST);
    twin.write_payloads(&json!([{"iotDeviceId": "sensor-az", "time": "", "temperature": 21.5}]));

    let out = twin.simulator(&["send", "1"]);
    assert!(
        out.status.success(),
        "stderr: {}\nbroker: {}",
        String::from_utf8_lossy(&out.stderr),
        broker.log_text()
    );
    sub.wait_for_count(1, Duration::from_secs(15));
    let mut messages = sub.messages();
    assert_eq!(
        messages.len(),
        1,
        "only the hub-shaped message passes: {messages:?}"
    );
    let (topic, payload) = messages.remove(0);
    assert_eq!(
        topic,
        "devices/sensor-az/messages/events/$.ct=application%2Fjson&$.ce=utf-8"
    );
    assert_eq!(payload["iotDeviceId"], "sensor-az");
    assert_eq!(payload["temperature"], 21.5);
}
