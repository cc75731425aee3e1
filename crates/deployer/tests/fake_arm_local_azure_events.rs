//! Event-rule feedback on Azure, end to end on the fake ARM and the local Azure data plane: an
//! all-Azure L1–L3 twin with the rule `room.dev-0.temperature > DOUBLE(30)` sending feedback to
//! dev-0, deployed by the real `deployer` binary; the deployed persister (the real custom handler
//! under the local Functions host) evaluates the rule and calls the direct method `feedback` on
//! the local hub's REST endpoint with its managed identity's token; the simulated dev-0 (IoT Hub
//! profile, its own certificate, subscribed to its direct methods) sends 20, 31, 32 and receives
//! exactly one call (the rule fires on the transition into the condition, not on 32), which it
//! answers; destroy leaves nothing.

#[path = "support/local_azure.rs"]
mod local_azure;
mod support;

use local_azure::{http, LocalAzure};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use twin_simulator::config::SimulatorConfig;
use twin_simulator::publisher::FeedbackChannel;

const TWIN: &str = "az-events";

#[test]
fn fake_arm_local_plane_azure_rule_feedback_reaches_the_device_once_as_a_direct_method() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    support::write_twin_with(dir, TWIN, 1, local_azure::providers());
    std::fs::write(
        dir.join("config_hierarchy.json"),
        json!([{"type": "entity", "id": "room", "children": [
            {"type": "component", "name": "dev-0", "iotDeviceId": "dev-0"}]}])
        .to_string(),
    )
    .expect("hierarchy");
    std::fs::write(
        dir.join("config_events.json"),
        json!([{"name": "hot",
            "condition": "room.dev-0.temperature > DOUBLE(30)",
            "action": {"type": "mqtt", "iotDeviceId": "dev-0", "payload": "too hot"}}])
        .to_string(),
    )
    .expect("events");

    let mut local = LocalAzure::deploy_and_start(dir, TWIN);
    let settings = local_azure::app_settings(&local.arm);
    assert!(
        settings.contains_key("IOTHUB_HOSTNAME"),
        "the persister is told the hub: {settings:?}"
    );
    let methods = local.plane().direct_methods();
    assert_eq!(methods.len(), 1, "one hub, one direct method endpoint");
    let (methods_url, calls) = methods[0].clone();
    assert!(
        methods_url.starts_with("https://127.0.0.1:"),
        "{methods_url}"
    );

    // deploy listed dev-0 as receiving feedback by direct method; the plane pointed the
    // simulator config at the local hub.
    let sim = SimulatorConfig::load(&dir.join(".deployer/simulator/config.json"))
        .expect("simulator config");
    assert_eq!(sim.feedback("dev-0"), Some(FeedbackChannel::DirectMethods));
    let link = local.device_link(&sim, "dev-0", sim.feedback("dev-0"));
    let deadline = Instant::now() + Duration::from_secs(30);
    local.rt.block_on(async {
        assert!(
            link.wait_feedback_subscribed(deadline)
                .await
                .expect("SUBACK"),
            "the hub broker lets dev-0 subscribe to its direct methods"
        );
        for (i, t) in [20.0, 31.0, 32.0].iter().enumerate() {
            let payload = json!({"iotDeviceId": "dev-0",
                "time": format!("2026-01-01T00:00:0{i}.000Z"), "temperature": t});
            link.try_send(payload.to_string().into_bytes())
                .expect("queued");
            // One at a time, so the rule sees the readings in order.
            link.wait_idle(deadline).await.expect("acknowledged");
        }
    });

    // All three persisted (the rule is evaluated after the persister wrote) ...
    let host = local.plane().host();
    let site_host = host.host_for(&local.site).expect("site host");
    let reader_key = host
        .key_for(&local.site, Some("hot-reader"))
        .expect("reader key");
    let stored = || -> usize {
        let (status, body) = http(
            &site_host,
            "GET",
            "/api/hot-reader?iotDeviceId=dev-0&startDate=2026-01-01T00:00:00.000Z&endDate=2027-01-01T00:00:00.000Z",
            &[("x-functions-key", &reader_key)],
            "",
        );
        assert_eq!(status, 200, "hot reader: {body}");
        serde_json::from_str::<Vec<Value>>(&body)
            .expect("a JSON array")
            .len()
    };
    let stored_by = Instant::now() + Duration::from_secs(60);
    let mut delay = Duration::from_millis(100);
    while stored() < 3 {
        assert!(
            Instant::now() < stored_by,
            "the three readings were not stored in time; bridge {:?}",
            local.plane().bridges()
        );
        std::thread::sleep(delay); // poll backoff
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    local.rt.block_on(async {
        // ... the transition into the condition (31) called the method once ...
        link.wait_feedback(1, Instant::now() + Duration::from_secs(60))
            .await
            .expect("one feedback call");
        // ... and 32, still above, did not: no second call within a grace period.
        assert!(
            link.wait_feedback(2, Instant::now() + Duration::from_secs(5))
                .await
                .is_err(),
            "a second feedback arrived: the rule fired on 32 too"
        );
    });
    let got = link.take_feedback();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        String::from_utf8_lossy(&got[0]).contains("too hot"),
        "{:?}",
        String::from_utf8_lossy(&got[0])
    );
    assert_eq!(link.counters().acknowledged, 3);
    // The call came through the local hub's REST endpoint and dev-0's answer went back.
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        (
            calls.answered.load(Relaxed),
            calls.not_online.load(Relaxed),
            calls.timed_out.load(Relaxed),
            calls.refused.load(Relaxed)
        ),
        (1, 0, 0, 0),
        "direct method calls: answered, not online, timed out, refused"
    );
    let issued = local.platform.identity().issued();
    assert!(
        issued
            .iter()
            .any(|(s, r)| s == &local.site && r == "https://iothubs.azure.net"),
        "the persister asked its identity for an IoT Hub token: {issued:?}"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut link = link;
    local.rt.block_on(link.close(deadline));
    local.destroy_leaves_nothing(dir);
    eprintln!(
        "fake_arm_local_azure_events: deploy {:?}, plane up {:?}, total {:?}",
        local.deployed_in,
        local.planed_in - local.deployed_in,
        started.elapsed()
    );
}
