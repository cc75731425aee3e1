//! The simulator binary against a real mosquitto with mutual TLS, as a user runs it.
//!
//! Each test starts its own broker on a free loopback port (see `support`). No test asserts on
//! timing; waits are conditions with deadlines.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{distinct, Broker, Ca, KeyKind, Subscriber, Twin, TOPIC};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A twin whose three devices use the three key formats, a broker, and a subscriber.
fn twin_with_broker(persistent: bool) -> (Twin, Broker, Subscriber) {
    let twin = Twin::new();
    twin.device("sensor-pkcs1", KeyKind::RsaPkcs1);
    twin.device("sensor-pkcs8", KeyKind::RsaPkcs8);
    twin.device("sensor-ec", KeyKind::EcSec1);
    let counter = twin.device("test-counter", KeyKind::EcSec1);
    let broker = Broker::start(&twin.root.join("broker"), &twin.ca, persistent);
    twin.point_at(broker.port);
    let subscriber = Subscriber::start(&twin, broker.port, &counter);
    (twin, broker, subscriber)
}

#[test]
fn send_publishes_each_payload_with_time_filled_and_every_key_format_works() {
    let (twin, broker, sub) = twin_with_broker(false);
    twin.write_payloads(&json!([
        {"iotDeviceId": "sensor-pkcs1", "time": "", "pressure": 1.5},
        {"iotDeviceId": "sensor-pkcs8", "pressure": 2},
        {"iotDeviceId": "sensor-ec", "time": "2025-11-04T13:23:11.203Z", "on": true},
    ]));

    let out = twin.simulator(&["send", "4"]);
    assert!(
        out.status.success(),
        "stderr: {}\nbroker: {}",
        stderr(&out),
        broker.log_text()
    );
    let printed = stdout(&out);
    assert_eq!(
        printed.matches("Message sent! Topic: ").count(),
        4,
        "{printed}"
    );
    assert!(
        printed.contains(&format!("Topic: {TOPIC}/sensor-ec, Payload: ")),
        "{printed}"
    );

    let got = sub.wait_for_distinct(4, Duration::from_secs(20));
    let topics: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        topics,
        [
            "twin/iot-data/sensor-pkcs1",
            "twin/iot-data/sensor-pkcs8",
            "twin/iot-data/sensor-ec",
            "twin/iot-data/sensor-pkcs1"
        ]
    );
    let first = &got[0].1;
    assert_eq!(first["iotDeviceId"], "sensor-pkcs1");
    assert_eq!(first["pressure"], 1.5);
    let time = first["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "time {time:?} is not YYYY-MM-DDTHH:mm:ss.SSSZ"
    );
    assert_eq!(
        got[1].1["time"].as_str().unwrap().len(),
        24,
        "missing time is added"
    );
    assert_eq!(
        got[2].1["time"], "2025-11-04T13:23:11.203Z",
        "a given time is kept"
    );
    assert_ne!(got[3].1["time"], got[0].1["time"]);
}

#[test]
fn repl_sends_and_lists_commands() {
    let (twin, _broker, sub) = twin_with_broker(false);
    twin.write_payloads(&json!([{"iotDeviceId": "sensor-ec", "time": "", "t": 20}]));
    let out = twin.simulator_with_stdin(&[], Some("help\nsend\nsend 2\nbogus\nexit\n"));
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("send [N]"), "{printed}");
    assert_eq!(printed.matches("Message sent!").count(), 3, "{printed}");
    assert!(
        stderr(&out).contains("unrecognized subcommand 'bogus'"),
        "{}",
        stderr(&out)
    );
    sub.wait_for_distinct(3, Duration::from_secs(20));
}

#[test]
fn client_certificate_from_another_ca_is_rejected_with_a_clear_error() {
    let (twin, broker, _sub) = twin_with_broker(false);
    let rogue = Ca::new(&twin.root.join("rogue-ca"), "Rogue CA");
    rogue.device_cert(&twin.devices_dir, "intruder", KeyKind::RsaPkcs1);
    twin.write_payloads(&json!([{"iotDeviceId": "intruder", "time": "", "t": 1}]));

    let out = twin.simulator(&["send", "--timeout", "20s"]);
    let err = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {err}\nbroker: {}",
        broker.log_text()
    );
    assert!(err.contains("device intruder"), "{err}");
    assert!(
        err.contains("rejected the device's client certificate"),
        "{err}"
    );
    assert!(
        err.contains("devices/intruder/certificate.pem.crt"),
        "{err}"
    );
    // Permanent: it must not have spent the timeout retrying.
    assert!(!err.contains("before the deadline"), "{err}");
}

#[test]
fn missing_client_certificate_is_a_config_error_naming_the_expected_file() {
    let (twin, _broker, _sub) = twin_with_broker(false);
    twin.write_payloads(&json!([{"iotDeviceId": "ghost", "time": "", "t": 1}]));
    let out = twin.simulator(&["send"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("device ghost"), "{err}");
    assert!(err.contains("devices/ghost/certificate.pem.crt"), "{err}");
    assert!(err.contains("file not found"), "{err}");

    // A key that does not belong to the certificate is caught before connecting, too.
    let a = twin.device("mixed-a", KeyKind::EcSec1);
    let b = twin.device("mixed-b", KeyKind::EcSec1);
    std::fs::copy(&b.private_key, &a.private_key).unwrap();
    twin.write_payloads(&json!([{"iotDeviceId": "mixed-a", "time": "", "t": 1}]));
    let out = twin.simulator(&["send"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not match"), "{err}");
    assert!(
        !err.contains("PRIVATE KEY-----"),
        "key material must never be printed"
    );
}

#[test]
fn broken_payload_file_is_reported_with_its_position() {
    let twin = Twin::new();
    twin.point_at(1);
    std::fs::write(
        &twin.payloads,
        "[\n  {\"iotDeviceId\": \"a\", \"time\": \"\"},\n  {\"iotDeviceId\": \"b\" \"t\": 1}\n]\n",
    )
    .unwrap();
    let out = twin.simulator(&["send"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("payloads.json, line 3, column 23"), "{err}");

    std::fs::write(
        &twin.payloads,
        "[\n  {\"iotDeviceId\": \"a\"},\n  {\"iotDeviceId\": \"b\"},\n    {\"time\": \"\"}\n]",
    )
    .unwrap();
    let out = twin.simulator(&["send"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("message 3 (line 4, column 5): iotDeviceId is missing"),
        "{err}"
    );
}

#[test]
fn unreachable_broker_is_a_connection_failure_after_the_timeout() {
    let twin = Twin::new();
    twin.device("sensor-ec", KeyKind::EcSec1);
    // A port nothing listens on: bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    twin.point_at(port);
    twin.write_payloads(&json!([{"iotDeviceId": "sensor-ec", "time": ""}]));
    let out = twin.simulator(&["send", "--timeout", "1s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not connected before the deadline"), "{err}");
    assert!(err.contains("is it running?"), "{err}");
}

/// Payloads for `devices` devices named `sim-<i>`, each with its own certificate.
fn load_twin(twin: &Twin, devices: usize) {
    let mut payloads = Vec::new();
    for i in 0..devices {
        let id = format!("sim-{i}");
        twin.device(&id, KeyKind::EcSec1);
        payloads.push(json!({"iotDeviceId": id, "time": "", "temperature": 20 + i}));
        payloads.push(json!({"iotDeviceId": id, "time": "", "temperature": 30 + i}));
    }
    twin.write_payloads(&Value::Array(payloads));
}

fn report_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}\n{}", stdout(out), stderr(out)))
}

#[test]
fn load_run_reports_counts_and_latency_percentiles() {
    let (twin, _broker, sub) = twin_with_broker(false);
    load_twin(&twin, 4);
    let out = twin.simulator(&[
        "load",
        "--devices",
        "3",
        "--rate",
        "600",
        "--duration",
        "1s",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r = report_of(&out);
    assert_eq!(r["devices"], 3);
    let generated = r["generated"].as_u64().unwrap();
    assert!(generated >= 500, "{r}");
    assert_eq!(r["acknowledged"].as_u64().unwrap(), generated, "{r}");
    assert_eq!(r["sent"].as_u64().unwrap(), generated, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    let l = &r["latency_ms"];
    let (p50, p95, p99) = (
        l["p50"].as_f64().unwrap(),
        l["p95"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{r}");

    let got = sub.wait_for_distinct(generated as usize, Duration::from_secs(30));
    let devices: std::collections::HashSet<&str> = got.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        devices.len(),
        3,
        "only the first 3 devices send: {devices:?}"
    );

    // The human report names every figure.
    let out = twin.simulator(&["load", "--rate", "100", "--duration", "500ms"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for word in [
        "sent",
        "acknowledged",
        "failed",
        "throughput",
        "p50",
        "p95",
        "p99",
    ] {
        assert!(text.contains(word), "{word} missing in:\n{text}");
    }

    let out = twin.simulator(&["load", "--devices", "9", "--rate", "10", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("names only 4 device(s)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn broker_restart_in_the_middle_of_a_run_loses_no_message() {
    let (twin, mut broker, sub) = twin_with_broker(true);
    load_twin(&twin, 5);
    let exe = env!("CARGO_BIN_EXE_simulator");
    let child = std::process::Command::new(exe)
        .current_dir(&twin.root)
        .args(["load", "--rate", "500", "--duration", "6s", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Restart once the run is visibly under way.
    sub.wait_for_count(300, Duration::from_secs(30));
    broker.restart();

    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\nbroker: {}",
        stderr(&out),
        broker.log_text()
    );
    let r = report_of(&out);
    eprintln!("report after a broker restart: {r}");
    let generated = r["generated"].as_u64().unwrap();
    assert!(generated >= 2500, "{r}");
    assert_eq!(r["acknowledged"].as_u64().unwrap(), generated, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert!(
        r["reconnects"].as_u64().unwrap() >= 5,
        "every device reconnected: {r}"
    );

    let got = sub.wait_for_distinct(generated as usize, Duration::from_secs(60));
    assert_eq!(distinct(&got), generated as usize);
    // In order per device: the first arrival of each message comes after its predecessor's
    // (redeliveries of already-seen messages may come later).
    for i in 0..5 {
        let topic = format!("{TOPIC}/sim-{i}");
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<String> = got
            .iter()
            .filter(|(t, _)| *t == topic)
            .map(|(_, p)| p["time"].as_str().unwrap().to_string())
            .filter(|time| seen.insert(time.clone()))
            .collect();
        assert!(
            firsts.windows(2).all(|w| w[0] < w[1]),
            "{topic}: out of order"
        );
    }
}

#[test]
fn broker_gone_mid_run_buffers_up_to_the_limit_and_counts_the_overflow() {
    let (twin, mut broker, sub) = twin_with_broker(false);
    load_twin(&twin, 2);
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_simulator"))
        .current_dir(&twin.root)
        .args([
            "load",
            "--rate",
            "400",
            "--duration",
            "3s",
            "--buffer",
            "50",
            "--inflight",
            "10",
            "--drain-timeout",
            "1s",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    sub.wait_for_count(100, Duration::from_secs(30));
    broker.stop();

    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("were not acknowledged"), "{err}");
    let r = report_of(&out);
    let n = |k: &str| r[k].as_u64().unwrap();
    assert!(n("overflow") > 0, "{r}");
    assert!(n("unacknowledged") > 0, "{r}");
    // Per device at most the buffer plus the in-flight window is kept.
    assert!(n("unacknowledged") <= 2 * (50 + 10), "{r}");
    assert_eq!(
        n("failed"),
        n("overflow") + n("unacknowledged") + n("rejected"),
        "{r}"
    );
    assert_eq!(n("acknowledged") + n("failed"), n("generated"), "{r}");
}
