//! End to end through the local data plane: devices publish over mutual TLS to mosquitto
//! (configured from what deploy registered in moto), the topic rule as deployed invokes the real
//! dispatcher, processor and persister (cargo-lambda's runtime emulation, each function with its
//! deployed environment), records land in moto's DynamoDB, the real hot reader answers through
//! the HTTP API stand-in, and the real movers carry them to cold and archive in moto's S3.

mod support;

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use support::{json_of, layer_counts, wait_for, Twin};
use twin_simulator::config::SimulatorConfig;
use twin_simulator::failure::FailureContext;
use twin_simulator::publisher::{DeviceLink, LinkOptions};
use twin_simulator::tls::{DeviceCredentials, TlsContext};
use twin_verify::probe::DataPlaneProbe;

/// A device's own MQTT connection, as the simulator makes it (`topic` overrides its own).
fn link(twin: &Twin, device: &str, topic: Option<String>) -> DeviceLink {
    let config = SimulatorConfig::load(&twin.simulator_config()).expect("simulator config");
    let tls = TlsContext::load(&config.root_ca_cert, config.port).expect("root CA");
    let creds = DeviceCredentials::locate(&config.auth_files_dir, device);
    let client = tls.client_config(&creds).expect("device credentials");
    let mut options = LinkOptions::new(config.endpoint.clone(), config.port);
    options.client_id_prefix = config.client_id_prefix.clone();
    options.backoff = twin_simulator::backoff::Backoff::new(
        Duration::from_millis(100),
        Duration::from_millis(500),
    );
    let context = FailureContext {
        device: device.into(),
        broker: format!("{}:{}", config.endpoint, config.port),
        certificate: creds.certificate.clone(),
        root_ca: config.root_ca_cert.clone(),
    };
    DeviceLink::start(
        device,
        topic.unwrap_or_else(|| config.device_topic(device)),
        client,
        &options,
        context,
    )
}

/// The verify probe on this twin (hot store, logs, tiers), with the local API's URL.
async fn probe(twin: &Twin) -> twin_verify::aws::AwsProbe {
    let status = twin.local_status();
    let api = status["http_api_url"].as_str().map(str::to_string);
    let config = twin_config::load_dir(twin.path()).expect("config");
    twin_verify::aws::AwsProbe::new(
        twin.clients().await,
        &twin.name,
        &config.devices,
        api,
        Default::default(),
    )
    .await
    .expect("probe")
}

fn ms_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn time_text(ms: i64) -> String {
    twin_functions::Timestamp::from_millis(ms)
        .expect("time")
        .canonical()
}

/// Marked readings of `device` in the hot store between two times.
async fn marked_in_hot(probe: &dyn DataPlaneProbe, device: &str, run: &str, from: i64) -> usize {
    probe
        .hot_records(device, &time_text(from), &time_text(ms_now() + 60_000))
        .await
        .expect("hot records")
        .iter()
        .filter(|r| r.verify_run.as_deref() == Some(run))
        .count()
}

#[test]
fn three_devices_a_thousand_readings_each_are_stored_once_and_returned_by_the_api_across_pages() {
    let twin = Twin::up("e2e-thousand", 3);
    // A 16 KB answer cap makes the hot reader page 1,000 records of a device over several
    // answers; the plane restarts the hot reader with the environment read back.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let clients = rt.block_on(twin.clients());
    rt.block_on(async {
        let f = format!("{}-hot-reader", twin.name);
        let current = clients
            .lambda
            .get_function_configuration()
            .function_name(&f)
            .send()
            .await
            .expect("hot reader");
        let mut vars = current
            .environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default();
        vars.insert("MAX_RESPONSE_BYTES".into(), "16384".into());
        clients
            .lambda
            .update_function_configuration()
            .function_name(&f)
            .environment(
                aws_sdk_lambda::types::Environment::builder()
                    .set_variables(Some(vars))
                    .build(),
            )
            .send()
            .await
            .expect("update hot reader env");
    });
    twin.run_ok(&["local", "up"]);

    let out = twin.run(&[
        "--json",
        "verify",
        "--messages",
        "1000",
        "--keep",
        "--timeout",
        "300",
    ]);
    let doc = json_of(&out);
    assert!(out.status.success(), "{doc:#}");
    assert_eq!(doc["ok"], json!(true), "{doc:#}");
    let rows = layer_counts(&doc);
    for layer in [
        "L1 accepted",
        "L2 processed",
        "L3 hot stored",
        "L3 hot reader API",
    ] {
        let row = rows
            .iter()
            .find(|r| r.0 == layer)
            .unwrap_or_else(|| panic!("no row {layer}: {doc:#}"));
        assert_eq!((row.1, row.2), (3000, 3000), "{layer}: {doc:#}");
    }
    // Checked apart from verify: exactly 3,000 items in the table, none twice.
    let run = doc["run"].as_str().expect("run id").to_string();
    let table = format!("{}-hot", twin.name);
    let items = rt.block_on(async {
        let mut n = 0;
        let mut start = None;
        loop {
            let out = clients
                .dynamodb
                .scan()
                .table_name(&table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            n += out
                .items()
                .iter()
                .filter(|i| i.get("verifyRun").and_then(|v| v.as_s().ok()) == Some(&run))
                .count();
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return n;
            }
        }
    });
    assert_eq!(items, 3000);
    twin.finish();
}

#[test]
fn bad_messages_are_stopped_at_their_layer_counted_and_crash_nothing() {
    let twin = Twin::up("e2e-bad", 2);
    let before = twin.local_status();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dev0 = link(&twin, "dev-0", None);
        dev0.wait_connected(Instant::now() + Duration::from_secs(20))
            .await
            .expect("dev-0 connects");
        // Not JSON: the rule cannot select from it, so nothing reaches the dispatcher.
        dev0.try_send(b"temperature=21.5".to_vec()).expect("queued");
        // JSON naming a device the twin does not have: the dispatcher drops it.
        dev0.try_send(
            json!({"iotDeviceId": "ghost", "temperature": 1.0})
                .to_string()
                .into_bytes(),
        )
        .expect("queued");
        // A property the device does not declare: the processor drops it.
        dev0.try_send(
            json!({"iotDeviceId": "dev-0", "humidity": 40})
                .to_string()
                .into_bytes(),
        )
        .expect("queued");
        dev0.wait_idle(Instant::now() + Duration::from_secs(20))
            .await
            .expect("acknowledged");
        // dev-0 on dev-1's topic: its policy does not allow it, the broker refuses it.
        let config = SimulatorConfig::load(&twin.simulator_config()).expect("simulator config");
        let intruder = link(&twin, "dev-0", Some(config.device_topic("dev-1")));
        intruder
            .wait_connected(Instant::now() + Duration::from_secs(20))
            .await
            .expect("connects");
        intruder
            .try_send(
                json!({"iotDeviceId": "dev-1", "temperature": 99.0})
                    .to_string()
                    .into_bytes(),
            )
            .expect("queued");
        let _ = intruder
            .wait_idle(Instant::now() + Duration::from_secs(10))
            .await;
    });

    let logs = |f: &str| {
        let out = twin.run_ok(&["lambda_logs", f, "200"]);
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    wait_for(Duration::from_secs(60), "the dispatcher's drop", || {
        let l = logs("dispatcher");
        (l.contains("message dropped") && l.contains("ghost")).then_some(())
    });
    wait_for(Duration::from_secs(60), "the processor's drop", || {
        let l = logs("processor");
        (l.contains("message dropped") && l.contains("humidity")).then_some(())
    });
    let status = wait_for(Duration::from_secs(30), "the rule's rejection", || {
        let s = twin.local_status();
        (s["rule"]["rejected"].as_u64() == Some(1)).then_some(s)
    });
    assert_eq!(status["rule"]["delivered"].as_u64(), Some(2), "{status:#}");
    assert_eq!(
        status["broker"]["denied_publishes"].as_u64(),
        Some(1),
        "{status:#}"
    );
    // No function instance was restarted by any of it.
    let pids = |s: &Value| -> Vec<Value> {
        s["runner"]["functions"]
            .as_array()
            .expect("runner functions")
            .iter()
            .map(|f| json!([f["name"], f["instances"]]))
            .collect()
    };
    assert_eq!(
        pids(&before),
        pids(&status),
        "function instances changed: {status:#}"
    );
    // And the pipeline still carries good readings.
    let out = twin.run(&["--json", "verify", "--messages", "3"]);
    let doc = json_of(&out);
    assert!(out.status.success() && doc["ok"] == json!(true), "{doc:#}");
    twin.finish();
}

#[test]
fn a_broker_restart_mid_run_loses_nothing() {
    let twin = Twin::up("e2e-restart", 3);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let probe = rt.block_on(probe(&twin));
    let run = "restart1";
    let per_device = 300u64;
    let start_ms = ms_now() - 1;
    let dir = twin.path().to_path_buf();
    rt.block_on(async {
        let links: Vec<(String, DeviceLink)> = twin
            .devices
            .iter()
            .map(|d| (d.clone(), link(&twin, d, None)))
            .collect();
        for (_, l) in &links {
            l.wait_connected(Instant::now() + Duration::from_secs(20))
                .await
                .expect("connects");
        }
        let mut n = 0u64;
        let mut last = start_ms;
        for seq in 0..per_device {
            if seq == per_device / 3 {
                // Stop mosquitto for good (SIGTERM) with readings in flight, then bring it back
                // on the same port through `local up`.
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || {
                    let status = json_of(&support::run_ok(&dir, &["--json", "local", "status"]));
                    let pid = status["broker"]["pid"]
                        .as_u64()
                        .or_else(|| status["pid"].as_u64())
                        .expect("broker pid");
                    // SAFETY: a plain kill(2) of the broker this test started.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                    wait_for(Duration::from_secs(10), "mosquitto to stop", || {
                        // SAFETY: signal 0 only checks that the pid exists.
                        (unsafe { libc::kill(pid as i32, 0) } != 0).then_some(())
                    });
                    support::run_ok(&dir, &["local", "up"]);
                })
                .await
                .expect("restart");
            }
            for (device, l) in &links {
                last = (last + 1).max(ms_now());
                let payload = json!({"iotDeviceId": device, "time": time_text(last),
                    "correlationId": format!("verify-{run}-{n}"),
                    "temperature": seq as f64, "pressure": 1000 + seq});
                l.try_send(payload.to_string().into_bytes())
                    .expect("buffered while the broker is away");
                n += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for (_, l) in &links {
            l.wait_idle(Instant::now() + Duration::from_secs(60))
                .await
                .expect("every reading acknowledged");
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut total = 0;
            for d in &twin.devices {
                total += marked_in_hot(&probe, d, run, start_ms).await;
            }
            if total as u64 == per_device * 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{total} of {} readings stored",
                per_device * 3
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    twin.finish();
}

#[test]
fn the_movers_carry_every_reading_to_cold_then_archive_with_their_storage_classes() {
    let twin = Twin::up("e2e-movers", 2);
    let out = twin.run(&["--json", "verify", "--messages", "150", "--movers"]);
    let doc = json_of(&out);
    assert!(out.status.success(), "{doc:#}");
    let rows = layer_counts(&doc);
    for layer in ["L3 cold", "L3 archive"] {
        let row = rows
            .iter()
            .find(|r| r.0 == layer)
            .unwrap_or_else(|| panic!("no row {layer}: {doc:#}"));
        assert_eq!((row.1, row.2), (300, 300), "{layer}: {doc:#}");
    }
    // verify removed its readings: nothing of the run is left in any tier.
    assert_eq!(doc["cleanup"]["ran"], json!(true));
    assert!(
        doc["cleanup"]["objects"].as_u64().unwrap_or_default() >= 2,
        "{doc:#}"
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let probe = rt.block_on(probe(&twin));
    let left: Vec<Value> = rt.block_on(async {
        let mut left = Vec::new();
        for d in &twin.devices {
            for tier in [
                twin_verify::probe::Tier::Cold,
                twin_verify::probe::Tier::Archive,
            ] {
                for o in probe.tier_objects(tier, d).await.expect("objects") {
                    left.push(json!(o.key));
                }
            }
        }
        left
    });
    assert!(left.is_empty(), "objects left: {left:?}");
    twin.finish();
}

#[test]
fn a_redeploy_that_adds_a_device_brings_the_running_plane_up_to_date() {
    let twin = Twin::up("e2e-redeploy", 1);
    support::write_twin(twin.path(), &twin.name, 2);
    let out = twin.run_ok(&["deploy", "-y"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("local data plane brought up to date"), "{err}");
    // The new device's certificate is trusted, its policy enforced, its processor catalogue
    // read: its readings go through like the first device's.
    let out = twin.run(&["--json", "verify", "--messages", "3"]);
    let doc = json_of(&out);
    assert!(out.status.success(), "{doc:#}");
    for (layer, expected, arrived) in layer_counts(&doc) {
        assert_eq!((expected, arrived), (6, 6), "{layer}: {doc:#}");
    }
    twin.finish();
}
