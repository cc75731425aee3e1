//! Cross-cloud, end to end: AWS L1–L3 hot, Azure L3 cold and archive. The real `deployer`
//! deploys both clouds at once (moto for AWS; the test kit's stateful fake ARM, with the fake
//! deployment endpoint, for Azure); the local data plane runs both sides: mosquitto and the real
//! Lambda zips under the local runner on the AWS side, the deployed Azure package's real custom
//! handler under the local Functions host (https on the site's `defaultHostName`, Azurite behind
//! the storage account) on the other. Devices publish over mutual TLS; the AWS hot-to-cold mover
//! signs its batches with the boundary secret from Secrets Manager and posts them to the Azure
//! `ingress-cold`, which checks them against the same secret the deployer synced into the app's
//! settings. Exact record counts at each tier, a receiver that is not up yet (nothing lost), an
//! unsigned request (401, nothing written), and destroy leaving nothing on either cloud.

#[path = "support/local_azure.rs"]
mod local_azure;
mod support;

use local_azure::{http, LocalAzure};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use twin_simulator::config::SimulatorConfig;
use twin_simulator::failure::FailureContext;
use twin_simulator::publisher::DeviceLink;
use twin_simulator::tls::{DeviceCredentials, TlsContext};

const TWIN: &str = "xc-hc";
const DEVICES: usize = 2;
const MESSAGES: usize = 4;

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn providers() -> Value {
    json!({"layer_1_provider": "aws", "layer_2_provider": "aws",
        "layer_3_hot_provider": "aws", "layer_3_cold_provider": "azure",
        "layer_3_archive_provider": "azure", "layer_4_provider": "none",
        "layer_5_provider": "none",
        "aws": {"region": "us-east-1", "architecture": "x86_64"},
        "azure": {"location": "westeurope"}})
}

/// The first JSON object a command printed on stdout.
fn printed_json(o: &Output) -> Option<Value> {
    let stdout = String::from_utf8_lossy(&o.stdout);
    stdout
        .find('{')
        .and_then(|i| serde_json::from_str::<Value>(stdout[i..].trim()).ok())
}

/// How many records the real hot reader (a Lambda under the local runner) returns for `device`.
fn hot_records(dir: &Path, zips: &Path, device: &str) -> usize {
    let out = support::run(
        dir,
        zips,
        &[
            "lambda_invoke",
            "hot-reader",
            &json!({"iotDeviceId": device}).to_string(),
        ],
    );
    assert!(out.status.success(), "hot reader: {}", text(&out));
    printed_json(&out)
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or_else(|| panic!("the hot reader's answer has no items: {}", text(&out)))
}

fn hot_counts(dir: &Path, zips: &Path) -> Vec<usize> {
    (0..DEVICES)
        .map(|d| hot_records(dir, zips, &format!("dev-{d}")))
        .collect()
}

/// The records of each object in an Azure container of the twin (each object is a JSON array
/// of records), by name.
fn container_objects(local: &LocalAzure, container: &str) -> BTreeMap<String, usize> {
    let storage = local.plane().storage();
    local.rt.block_on(async {
        let mut out = BTreeMap::new();
        for name in storage
            .blob_names(container)
            .await
            .expect("container listing")
        {
            let text = storage.blob_text(container, &name).await.expect("object");
            let records = serde_json::from_str::<Vec<Value>>(&text)
                .expect("an object is a JSON array of records")
                .len();
            out.insert(name, records);
        }
        out
    })
}

/// Records in an Azure container of the twin.
fn container_records(local: &LocalAzure, container: &str) -> usize {
    container_objects(local, container).values().sum()
}

/// `info --json`'s row for the hot-to-cold boundary (the signed probe of its ingress).
fn boundary_health(local: &LocalAzure, dir: &Path, bundle: &Path) -> Value {
    let out = local_azure::deployer_command(&local.arm, dir, &["--json", "info"])
        .env("SSL_CERT_FILE", bundle)
        .output()
        .expect("info");
    assert!(out.status.success(), "{}", text(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("info --json is JSON");
    rows.as_array()
        .and_then(|r| r.iter().find(|r| r["kind"] == "boundary"))
        .cloned()
        .unwrap_or_else(|| panic!("no boundary row: {rows}"))
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[test]
fn moto_fake_arm_local_aws_hot_to_azure_cold_and_archive_carries_every_record_exactly_once() {
    let started = Instant::now();
    twin_testkit::aws_env_for_moto();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("moto endpoint");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let zips = twin_testkit::function_zips().to_path_buf();
    support::write_twin_with(dir, TWIN, DEVICES, providers());

    // One deploy for both clouds: AWS L1–L3 hot on moto, the Azure cold side on the fake ARM.
    let mut local = LocalAzure::deploy(dir, TWIN);
    let settings = local_azure::app_settings(&local.arm);
    let setting = |k: &str| {
        settings[k]
            .as_str()
            .unwrap_or_else(|| panic!("app setting {k}"))
            .to_string()
    };
    let (cold, archive) = (setting("COLD_BUCKET"), setting("ARCHIVE_BUCKET"));
    assert!(
        settings.contains_key("BOUNDARY_SECRET_HOT_TO_COLD"),
        "deploy synced the boundary secret into the receiving app"
    );
    let state =
        std::fs::read_to_string(dir.join(format!(".deployer/{TWIN}.json"))).expect("state file");
    assert!(
        !state.contains(
            settings["BOUNDARY_SECRET_HOT_TO_COLD"]
                .as_str()
                .expect("a text")
        ),
        "the boundary secret is not in the state file"
    );

    // The AWS side's local plane. Its functions trust the Azure sites' CA (the machine's roots
    // plus it, as SSL_CERT_FILE), so the mover reaches https://<defaultHostName> as on Azure.
    let system = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    let sites_ca = std::fs::read_to_string(local.platform.sites_ca_cert()).expect("sites CA");
    let bundle = dir.join("trust-bundle.pem");
    std::fs::write(&bundle, format!("{system}\n{sites_ca}")).expect("trust bundle");
    let up = support::deployer(dir, &zips, &["local", "up"])
        .env("SSL_CERT_FILE", &bundle)
        .output()
        .expect("local up");
    assert!(up.status.success(), "{}", text(&up));

    // Each device publishes MESSAGES readings, an hour old, over mutual TLS to the local broker.
    let sim = SimulatorConfig::load(&dir.join(".deployer/simulator/config.json"))
        .expect("simulator config");
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    local.rt.block_on(async {
        for d in 0..DEVICES {
            let id = format!("dev-{d}");
            let creds = DeviceCredentials::locate(&sim.auth_files_dir, &id);
            let tls = TlsContext::load(&sim.root_ca_cert, sim.port)
                .expect("root CA")
                .client_config(&creds)
                .expect("device TLS");
            let link = DeviceLink::start_with_channel(
                &id,
                sim.device_topic(&id),
                None,
                tls,
                &sim.link_options(),
                FailureContext::for_device(&sim, &id, &creds),
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            link.wait_connected(deadline)
                .await
                .expect("device connects");
            for i in 0..MESSAGES {
                let t = hour_ago + chrono::Duration::seconds(i as i64);
                let payload =
                    json!({"iotDeviceId": id, "time": rfc3339(t), "temperature": 20.0 + i as f64});
                link.try_send(payload.to_string().into_bytes())
                    .expect("queued");
            }
            link.wait_idle(deadline).await.expect("acknowledged");
        }
    });
    // L3 hot (DynamoDB on moto): exactly MESSAGES per device.
    let stored_by = Instant::now() + Duration::from_secs(60);
    let mut delay = Duration::from_millis(200);
    loop {
        let counts = hot_counts(dir, &zips);
        if counts.iter().all(|c| *c >= MESSAGES) || Instant::now() >= stored_by {
            assert_eq!(counts, vec![MESSAGES; DEVICES], "records per device in hot");
            break;
        }
        std::thread::sleep(delay); // poll backoff
        delay = (delay * 2).min(Duration::from_secs(2));
    }

    let cutoff = rfc3339(chrono::Utc::now() - chrono::Duration::minutes(1));
    let mover = json!({ "cutoff": cutoff }).to_string();
    // The receiver is not up yet (its site answers 503 until the app has loaded): the mover
    // retries to its deadline and fails the run; every record stays in hot.
    let down = support::run(dir, &zips, &["lambda_invoke", "hot-to-cold-mover", &mover]);
    assert!(
        !down.status.success(),
        "a run against a receiver that is down fails: {}",
        text(&down)
    );
    assert!(
        text(&down).contains("503"),
        "the failure says what the receiver answered: {}",
        text(&down)
    );
    assert_eq!(
        hot_counts(dir, &zips),
        vec![MESSAGES; DEVICES],
        "nothing lost"
    );

    // `info` probes the boundary as the sender sees it: down while the app has not started.
    assert_eq!(
        boundary_health(&local, dir, &bundle)["status"],
        "failing",
        "before the receiver is up"
    );

    // The receiver comes up.
    local.start_plane(dir);
    let up = boundary_health(&local, dir, &bundle);
    assert_eq!(up["status"], "ok", "{up}");
    assert!(
        up["id"].as_str().is_some_and(
            |u| u.starts_with("https://127.0.0.1:") && u.ends_with("/api/ingress-cold")
        ),
        "{up}"
    );
    assert_eq!(container_records(&local, &cold), 0);
    let site_host = local.plane().host().host_for(&local.site).expect("host");
    // An unsigned request: 401 before anything is done.
    let (status, body) = http(
        &site_host,
        "POST",
        "/api/ingress-cold",
        &[("content-type", "application/json")],
        r#"{"op":"put","bucket":"x","key":"dev-0/a/chunk-0.json","body":"[]"}"#,
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(container_records(&local, &cold), 0, "nothing written");

    // The mover again: every record crosses once, in signed batches, over https.
    let moved_at = Instant::now();
    let run = support::run(dir, &zips, &["lambda_invoke", "hot-to-cold-mover", &mover]);
    let hot_to_cold = moved_at.elapsed();
    assert!(run.status.success(), "{}", text(&run));
    let report = printed_json(&run).expect("the mover's report");
    assert_eq!(
        report["recordsMoved"],
        json!(DEVICES * MESSAGES),
        "{report}"
    );
    assert_eq!(
        hot_counts(dir, &zips),
        vec![0; DEVICES],
        "moved records left hot"
    );
    assert_eq!(
        container_records(&local, &cold),
        DEVICES * MESSAGES,
        "records in the Azure cold container"
    );
    // A second run moves nothing and writes nothing twice.
    let again = support::run(dir, &zips, &["lambda_invoke", "hot-to-cold-mover", &mover]);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        printed_json(&again).expect("report")["recordsMoved"],
        json!(0)
    );
    assert_eq!(container_records(&local, &cold), DEVICES * MESSAGES);

    let in_cold = container_objects(&local, &cold);

    // Cold → archive, inside Azure (the app's own mover, run through the admin API).
    let host = local.plane().host();
    let master = host.key_for(&local.site, None).expect("master key");
    let archive_cutoff = rfc3339(chrono::Utc::now());
    let (status, _) = http(
        &site_host,
        "POST",
        "/admin/functions/cold-to-archive-mover",
        &[
            ("x-functions-key", &master),
            ("content-type", "application/json"),
        ],
        &json!({"input": json!({"cutoff": archive_cutoff}).to_string()}).to_string(),
    );
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(60);
    let archived = loop {
        if let Some(r) = host
            .runs(&local.site)
            .into_iter()
            .find(|r| r.function == "cold-to-archive-mover")
        {
            break r;
        }
        assert!(Instant::now() < deadline, "the archive run did not end");
        std::thread::sleep(Duration::from_millis(100)); // poll for the run's end
    };
    assert!((200..300).contains(&archived.status), "{archived:?}");
    assert_eq!(
        container_records(&local, &cold),
        0,
        "archived objects left cold"
    );
    // The archive holds exactly the objects cold held, so exactly their records; they are in
    // the Archive tier, which refuses reads (Azurite answers 409 BlobArchived, as Azure does).
    let storage = local.plane().storage();
    let archived_names = local
        .rt
        .block_on(storage.blob_names(&archive))
        .expect("archive listing");
    assert_eq!(
        archived_names,
        in_cold.keys().cloned().collect::<Vec<_>>(),
        "the archive holds what cold held"
    );
    assert_eq!(in_cold.values().sum::<usize>(), DEVICES * MESSAGES);
    for name in &archived_names {
        let read = local.rt.block_on(storage.blob_text(&archive, name));
        assert!(
            read.as_ref()
                .is_err_and(|e| e.to_string().contains("BlobArchived")),
            "{name} is in the Archive tier: {read:?}"
        );
    }

    // Destroy: nothing left on either cloud.
    let down = support::run(dir, &zips, &["local", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    local.destroy_leaves_nothing(dir);
    let left = support::leftovers(&endpoint, TWIN).expect("moto listing");
    assert!(left.is_empty(), "destroy left on AWS: {left:?}");
    eprintln!(
        "cross-cloud hot-to-cold: {} records over the boundary in {hot_to_cold:?} (one mover run); deploy {:?}; total {:?}",
        DEVICES * MESSAGES,
        local.deployed_in,
        started.elapsed()
    );
}
