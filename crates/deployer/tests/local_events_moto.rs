//! End to end on the local data plane (moto + mosquitto + the real function zips): a twin with
//! the rule `room.dev-0.temperature > DOUBLE(30)` sending feedback to dev-0; the simulated dev-0
//! (its own certificate, subscribed to its feedback topic) sends 20, 31, 32; it receives exactly
//! one feedback message (the rule fires on the transition into the condition, not on 32).

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

/// How many records the real hot reader returns for dev-0.
fn hot_records(dir: &std::path::Path, zips: &std::path::Path) -> usize {
    let out = run(
        dir,
        zips,
        &["lambda_invoke", "hot-reader", r#"{"iotDeviceId":"dev-0"}"#],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .find('{')
        .and_then(|i| serde_json::from_str::<serde_json::Value>(&stdout[i..]).ok())
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0)
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

    // `local up` pointed the simulator config (with the feedback topic deploy wrote) at the
    // local broker.
    let config = SimulatorConfig::load(&dir.join(".deployer/simulator/config.json"))
        .expect("simulator config");
    assert_eq!(
        config.feedback_topic("dev-0"),
        Some(format!("{TWIN}/feedback/dev-0"))
    );
    let creds = DeviceCredentials::locate(&config.auth_files_dir, "dev-0");
    let tls = TlsContext::load(&config.root_ca_cert, config.port)
        .expect("root CA")
        .client_config(&creds)
        .expect("device TLS");
    let link = DeviceLink::start_with_feedback(
        "dev-0",
        config.device_topic("dev-0"),
        config.feedback_topic("dev-0"),
        tls,
        &config.link_options(),
        FailureContext::for_device(&config, "dev-0", &creds),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    link.wait_connected(deadline).await.expect("dev-0 connects");
    assert!(
        link.wait_feedback_subscribed(deadline)
            .await
            .expect("SUBACK"),
        "the broker's ACL (from dev-0's IoT policy) lets dev-0 read its feedback topic"
    );
    for (i, t) in [20.0, 31.0, 32.0].iter().enumerate() {
        let payload = serde_json::json!({"iotDeviceId": "dev-0",
            "time": format!("2026-01-01T00:00:0{i}.000Z"), "temperature": t});
        link.try_send(payload.to_string().into_bytes())
            .expect("queued");
        // One at a time, so the rule sees the readings in order.
        link.wait_idle(deadline).await.expect("acknowledged");
    }

    // All three persisted (the rule is evaluated after the persister) ...
    let stored_by = Instant::now() + Duration::from_secs(60);
    let mut delay = Duration::from_millis(200);
    while hot_records(dir, &zips) < 3 {
        assert!(
            Instant::now() < stored_by,
            "the three readings were not stored in time"
        );
        tokio::time::sleep(delay).await; // poll backoff
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    // ... the transition into the condition (31) sent one feedback ...
    link.wait_feedback(1, Instant::now() + Duration::from_secs(60))
        .await
        .expect("one feedback message");
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
