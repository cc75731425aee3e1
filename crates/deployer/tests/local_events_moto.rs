//! End to end on the local data plane (moto + mosquitto + the real function zips): a twin with
//! the rule `room.dev-0.temperature > DOUBLE(30)` sending feedback to dev-0; the simulated dev-0
//! (its own certificate, subscribed to its feedback topic) sends 20, 31, 32; it receives exactly
//! one feedback message (the rule fires on the transition into the condition, not on 32).
//! And the established tool's own example rule, as its `config_events.json` writes it: a
//! function action (`lambdas/high-temperature-callback`, deployed with the twin) with feedback;
//! the function runs once and the device gets its feedback once.

mod support;

use std::time::{Duration, Instant};
use support::{run, write_twin};
use twin_simulator::config::SimulatorConfig;
use twin_simulator::failure::FailureContext;
use twin_simulator::publisher::DeviceLink;
use twin_simulator::tls::{DeviceCredentials, TlsContext};

const TWIN: &str = "local-ev";

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// How many records the real hot reader returns for `device`.
fn hot_records(dir: &std::path::Path, zips: &std::path::Path, device: &str) -> usize {
    let out = run(
        dir,
        zips,
        &[
            "lambda_invoke",
            "hot-reader",
            &serde_json::json!({ "iotDeviceId": device }).to_string(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .find('{')
        .and_then(|i| serde_json::from_str::<serde_json::Value>(&stdout[i..]).ok())
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Starts `device`'s link with the simulator config `local up` pointed at the local broker
/// (subscribed to the feedback topic deploy wrote for it), sends 20, 31 and 32 one at a time,
/// waits until the three are stored and the first feedback message has arrived.
async fn send_20_31_32(
    dir: &std::path::Path,
    zips: &std::path::Path,
    twin: &str,
    device: &str,
) -> DeviceLink {
    let config = SimulatorConfig::load(&dir.join(".deployer/simulator/config.json"))
        .expect("simulator config");
    assert_eq!(
        config.feedback_topic(device),
        Some(format!("{twin}/feedback/{device}"))
    );
    let creds = DeviceCredentials::locate(&config.auth_files_dir, device);
    let tls = TlsContext::load(&config.root_ca_cert, config.port)
        .expect("root CA")
        .client_config(&creds)
        .expect("device TLS");
    let link = DeviceLink::start_with_feedback(
        device,
        config.device_topic(device),
        config.feedback_topic(device),
        tls,
        &config.link_options(),
        FailureContext::for_device(&config, device, &creds),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    link.wait_connected(deadline)
        .await
        .expect("the device connects");
    assert!(
        link.wait_feedback_subscribed(deadline)
            .await
            .expect("SUBACK"),
        "the broker's ACL (from the device's IoT policy) lets it read its feedback topic"
    );
    for (i, t) in [20.0, 31.0, 32.0].iter().enumerate() {
        let payload = serde_json::json!({"iotDeviceId": device,
            "time": format!("2026-01-01T00:00:0{i}.000Z"), "temperature": t});
        link.try_send(payload.to_string().into_bytes())
            .expect("queued");
        // One at a time, so the rule sees the readings in order.
        link.wait_idle(deadline).await.expect("acknowledged");
    }
    // All three persisted (the rule is evaluated after the persister) ...
    let stored_by = Instant::now() + Duration::from_secs(60);
    let mut delay = Duration::from_millis(200);
    while hot_records(dir, zips, device) < 3 {
        assert!(
            Instant::now() < stored_by,
            "the three readings were not stored in time"
        );
        tokio::time::sleep(delay).await; // poll backoff
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    // ... and the transition into the condition (31) sent one feedback.
    link.wait_feedback(1, Instant::now() + Duration::from_secs(60))
        .await
        .expect("one feedback message");
    link
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_a_reading_above_the_threshold_sends_the_device_exactly_one_feedback() {
    twin_testkit::aws_env_for_moto();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let zips = twin_testkit::function_zips().to_path_buf();
    write_twin(dir, TWIN, 1);
    std::fs::write(
        dir.join("config_hierarchy.json"),
        serde_json::json!([{"type": "entity", "id": "room", "children": [
            {"type": "component", "name": "dev-0", "iotDeviceId": "dev-0"}]}])
        .to_string(),
    )
    .expect("hierarchy");
    std::fs::write(
        dir.join("config_events.json"),
        serde_json::json!([{"name": "hot",
            "condition": "room.dev-0.temperature > DOUBLE(30)",
            "action": {"type": "mqtt", "iotDeviceId": "dev-0", "payload": "too hot"}}])
        .to_string(),
    )
    .expect("events");

    let deploy = run(dir, &zips, &["deploy", "-y", "-q"]);
    assert!(deploy.status.success(), "{}", text(&deploy));
    let up = run(dir, &zips, &["local", "up"]);
    assert!(up.status.success(), "{}", text(&up));
    let link = send_20_31_32(dir, &zips, TWIN, "dev-0").await;
    // ... and 32, still above, none: a second one does not come within a grace period.
    assert!(
        link.wait_feedback(2, Instant::now() + Duration::from_secs(5))
            .await
            .is_err(),
        "a second feedback arrived: the rule fired on 32 too"
    );
    let got = link.take_feedback();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        String::from_utf8_lossy(&got[0]).contains("too hot"),
        "{:?}",
        String::from_utf8_lossy(&got[0])
    );
    assert_eq!(link.counters().acknowledged, 3);

    let down = run(dir, &zips, &["local", "down"]);
    assert!(down.status.success(), "{}", text(&down));
}

/// The rule function's log lines for its firings (`lambda_logs event-<crate>`: CloudWatch Logs on
/// moto, where the local runner ships the function's output).
fn callback_firings(dir: &std::path::Path, zips: &std::path::Path) -> usize {
    let out = run(
        dir,
        zips,
        &["lambda_logs", "event-high-temperature-callback", "100"],
    );
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("high temperature: rule"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_the_established_tools_example_rule_runs_its_function_once_and_feeds_back_once() {
    const EXAMPLE: &str = "local-ex";
    twin_testkit::aws_env_for_moto();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let zips = twin_testkit::function_zips().to_path_buf();
    write_twin(dir, EXAMPLE, 0);
    std::fs::write(
        dir.join("config_iot_devices.json"),
        r#"[{"id": "temperature-sensor-1",
             "properties": [{"name": "temperature", "dataType": "DOUBLE"}]}]"#,
    )
    .expect("devices");
    std::fs::write(
        dir.join("config_hierarchy.json"),
        r#"[{"type": "entity", "id": "room-1", "children": [
              {"type": "component", "name": "temperature-sensor-1",
               "iotDeviceId": "temperature-sensor-1"}]}]"#,
    )
    .expect("hierarchy");
    // The established tool's file, unchanged: no `name`, a function action with feedback.
    std::fs::write(
        dir.join("config_events.json"),
        r#"[
  {
    "condition": "room-1.temperature-sensor-1.temperature > DOUBLE(30)",
    "action": {
      "type": "lambda",
      "functionName": "high-temperature-callback",
      "autoDeploy": true,
      "feedback": {
        "type": "mqtt",
        "iotDeviceId": "temperature-sensor-1",
        "payload": "High Temp Warning"
      }
    }
  }
]"#,
    )
    .expect("events");
    // The rule's crate beside the config (its code is this repository's
    // lambdas/high-temperature-callback, prebuilt with the others).
    let krate = dir.join("lambdas/high-temperature-callback");
    std::fs::create_dir_all(&krate).expect("mkdir");
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"high-temperature-callback\"\n",
    )
    .expect("crate");

    let deploy = run(dir, &zips, &["deploy", "-y", "-q"]);
    assert!(deploy.status.success(), "{}", text(&deploy));
    let up = run(dir, &zips, &["local", "up"]);
    assert!(up.status.success(), "{}", text(&up));
    let link = send_20_31_32(dir, &zips, EXAMPLE, "temperature-sensor-1").await;
    // The function ran for the transition (31): its one log line reaches CloudWatch Logs.
    let logged_by = Instant::now() + Duration::from_secs(60);
    let mut delay = Duration::from_millis(200);
    while callback_firings(dir, &zips) < 1 {
        assert!(
            Instant::now() < logged_by,
            "the rule's function did not run (or its log did not arrive) in time"
        );
        tokio::time::sleep(delay).await; // poll backoff
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    // 32 is still above: no second feedback, no second run.
    assert!(
        link.wait_feedback(2, Instant::now() + Duration::from_secs(5))
            .await
            .is_err(),
        "a second feedback arrived: the rule fired on 32 too"
    );
    assert_eq!(callback_firings(dir, &zips), 1, "the function ran once");
    let got = link.take_feedback();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        String::from_utf8_lossy(&got[0]).contains("High Temp Warning"),
        "{:?}",
        String::from_utf8_lossy(&got[0])
    );

    let down = run(dir, &zips, &["local", "down"]);
    assert!(down.status.success(), "{}", text(&down));
}
