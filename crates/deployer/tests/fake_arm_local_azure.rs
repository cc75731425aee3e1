//! An all-Azure L1–L3 twin through the real `deployer` binary on the fake ARM (with the fake IoT
//! Hub registry and the fake deployment endpoint), then run by the local Azure data plane: the
//! deployed package's real custom handler under the local Functions host, tokens from the local
//! managed identity endpoint, the Cosmos DB emulator and Azurite (https, OAuth) behind the
//! endpoints ARM returned, devices publishing with the simulator's IoT Hub profile to the local
//! hub broker, and the bridge delivering Event Grid telemetry events to the dispatcher.

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twin_local::azure_plane::{AzurePlatform, PlaneSettings};
use twin_local::azure_storage::Emulators;
use twin_simulator::config::SimulatorConfig;
use twin_simulator::failure::FailureContext;
use twin_simulator::publisher::DeviceLink;
use twin_simulator::tls::{DeviceCredentials, TlsContext};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, FunctionHosting};
use twin_testkit::fake_iot_hub::FakeIotHub;
use twin_testkit::fake_kudu::FakeKudu;

const TWIN: &str = "az-local";
const DEVICES: usize = 2;
const MESSAGES: usize = 5;

fn providers() -> Value {
    let mut p = serde_json::Map::new();
    for layer in twin_config::Layer::IN_FILE_ORDER {
        let on = match layer {
            twin_config::Layer::L4 | twin_config::Layer::L5 => "none",
            _ => "azure",
        };
        p.insert(layer.key().to_string(), json!(on));
    }
    p.insert("azure".into(), json!({"location": "westeurope"}));
    Value::Object(p)
}

fn deployer(arm: &FakeArm, dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("DEPLOYER_AZURE_ARM_URL", &arm.url)
        .env("DEPLOYER_AZURE_TOKEN", twin_testkit::fake_arm::fake_token())
        .env("AZURE_SUBSCRIPTION_ID", arm.subscription_id())
        .env("DEPLOYER_PREBUILT_FUNCTIONS", twin_testkit::function_zips())
        .stdin(Stdio::null())
        .output()
        .expect("run deployer")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// One plain HTTP/1.1 request to the local host; returns the status and body.
fn http(
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(host).expect("connect to the local host");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn app_settings(arm: &FakeArm) -> serde_json::Map<String, Value> {
    let id = arm
        .ids()
        .into_iter()
        .find(|i| i.ends_with("/config/appsettings"))
        .expect("the app settings");
    arm.resource(&id).expect("settings")["properties"]
        .as_object()
        .cloned()
        .expect("settings object")
}

#[test]
fn fake_arm_local_all_azure_twin_carries_data_end_to_end_and_destroys_to_nothing() {
    let started = Instant::now();
    let cosmos = twin_testkit::azure::cosmos();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    support::write_twin_with(dir, TWIN, DEVICES, providers());

    // Azurite over https with OAuth, its certificate from a throwaway CA the handler trusts.
    let emulator_pki = twin_local::pki::Pki::in_dir(&dir.join("emulator-pki"));
    std::fs::create_dir_all(dir.join("emulator-pki")).expect("mkdir");
    emulator_pki.ensure().expect("emulator PKI");
    let azurite = twin_testkit::azure::start_azurite_https(
        &emulator_pki.server_cert,
        &emulator_pki.server_key,
    )
    .expect("Azurite over https");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = FakeArmConfig {
        endpoints: HashMap::from([
            (
                "Microsoft.DocumentDB/databaseAccounts".to_string(),
                cosmos.endpoint.clone(),
            ),
            (
                "Microsoft.Storage/storageAccounts".to_string(),
                format!("{}/", azurite.blob_endpoint),
            ),
        ]),
        ..FakeArmConfig::default()
    };
    let tenant = config.tenant_id.clone();
    let (arm, hub, kudu, platform) = rt.block_on(async {
        let arm = FakeArm::start(config).await.expect("fake ARM");
        let hub = FakeIotHub::start().await.expect("fake IoT Hub registry");
        arm.set_iot_hub_host(&hub.host);
        let kudu = FakeKudu::new(2, arm.function_sync());
        arm.serve_scm_with(kudu.hosts());
        let platform = AzurePlatform::new(&dir.join("local-azure"), &tenant)
            .await
            .expect("local Azure platform");
        let (h1, h2) = (platform.host(), platform.host());
        arm.serve_functions_with(FunctionHosting {
            host: Arc::new(move |site: &str| {
                h1.host_for(site)
                    .unwrap_or_else(|e| format!("unbindable-{e}"))
            }),
            keys: Arc::new(move |site: &str, f: Option<&str>| {
                h2.key_for(site, f).unwrap_or_default()
            }),
        });
        (arm, hub, kudu, platform)
    });

    ok(&deployer(&arm, dir, &["deploy", "-y", "-q"]), "deploy");
    let deployed_in = started.elapsed();

    let arm_client = Arc::new(
        twin_azure::ArmClient::new(
            &arm.url,
            arm.subscription_id(),
            twin_azure::Auth::StaticToken(twin_testkit::fake_arm::fake_token()),
            twin_azure::ArmOptions::default(),
        )
        .expect("ARM client"),
    );
    let kudu = Arc::new(kudu);
    let k = kudu.clone();
    let plane = rt
        .block_on(platform.start(PlaneSettings {
            twin: TWIN.into(),
            config_dir: dir.to_path_buf(),
            arm: arm_client,
            emulators: Emulators {
                blob_endpoint: azurite.blob_endpoint.clone(),
                blob_sas: azurite.account_sas(),
                blob_ca: emulator_pki.ca_cert.clone(),
                cosmos_endpoint: cosmos.endpoint.clone(),
                cosmos_key: cosmos.key.clone(),
            },
            package: Arc::new(move |site: &str| k.package(site)),
            delivery_deadline: Duration::from_secs(30),
        }))
        .expect("the local Azure plane starts from what deploy put on ARM");
    let site = plane.sites().first().cloned().expect("one Function App");
    let host = plane.host();
    let site_host = host.host_for(&site).expect("site host");
    let planed_in = started.elapsed();

    // The devices publish with the simulator's IoT Hub profile, pointed at the local hub.
    let sim = SimulatorConfig::load(&dir.join(".deployer/simulator/config.json"))
        .expect("simulator config");
    rt.block_on(async {
        for d in 0..DEVICES {
            let id = format!("dev-{d}");
            let creds = DeviceCredentials::locate(&sim.auth_files_dir, &id);
            let tls = TlsContext::load(&sim.root_ca_cert, sim.port)
                .expect("root CA")
                .client_config(&creds)
                .expect("device TLS");
            let link = DeviceLink::start_with_feedback(
                &id,
                sim.device_topic(&id),
                None,
                tls,
                &sim.link_options(),
                FailureContext {
                    device: id.clone(),
                    broker: format!("{}:{}", sim.endpoint, sim.port),
                    certificate: creds.certificate.clone(),
                    root_ca: sim.root_ca_cert.clone(),
                },
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            link.wait_connected(deadline)
                .await
                .expect("device connects");
            for i in 0..MESSAGES {
                let payload = json!({"iotDeviceId": id,
                    "time": format!("2026-11-30T10:00:0{i}.000Z"), "temperature": 20.0 + i as f64});
                link.try_send(payload.to_string().into_bytes())
                    .expect("queued");
            }
            link.wait_idle(deadline).await.expect("acknowledged");
        }
    });

    // Exactly N records per device in the hot container, read back through the hot reader.
    let reader_key = host.key_for(&site, Some("hot-reader")).expect("reader key");
    let read = |device: &str| -> Vec<Value> {
        let (status, body) = http(
            &site_host,
            "GET",
            &format!("/api/hot-reader?iotDeviceId={device}&startDate=2026-01-01T00:00:00.000Z&endDate=2027-01-01T00:00:00.000Z"),
            &[("x-functions-key", &reader_key)],
            "",
        );
        assert_eq!(status, 200, "hot reader: {body}");
        serde_json::from_str::<Vec<Value>>(&body).expect("a JSON array")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delay = Duration::from_millis(100);
    loop {
        let counts: Vec<usize> = (0..DEVICES)
            .map(|d| read(&format!("dev-{d}")).len())
            .collect();
        if counts.iter().all(|c| *c >= MESSAGES) || Instant::now() >= deadline {
            assert_eq!(
                counts,
                vec![MESSAGES; DEVICES],
                "records per device in the hot container; bridge {:?}",
                plane.bridges()
            );
            break;
        }
        std::thread::sleep(delay); // poll backoff
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    let bridge = &plane.bridges()[0];
    assert_eq!(bridge.delivered, (DEVICES * MESSAGES) as u64, "{bridge:?}");
    assert_eq!(bridge.dead_lettered, 0, "{bridge:?}");
    // The function key is checked like the real host checks it.
    let (status, _) = http(
        &site_host,
        "GET",
        "/api/hot-reader?iotDeviceId=dev-0",
        &[("x-functions-key", "wrong")],
        "",
    );
    assert_eq!(status, 401);
    let stored = read("dev-1");
    assert_eq!(stored[0]["iotDeviceId"], "dev-1", "{stored:?}");

    // The hot-to-cold mover on demand (admin API, 202 at once), with a cut-off after the readings.
    let master = host.key_for(&site, None).expect("master key");
    let (status, _) = http(
        &site_host,
        "POST",
        "/admin/functions/hot-to-cold-mover",
        &[
            ("x-functions-key", &master),
            ("content-type", "application/json"),
        ],
        &json!({"input": json!({"cutoff": "2026-12-01T00:00:00.000Z"}).to_string()}).to_string(),
    );
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        if let Some(r) = host
            .runs(&site)
            .into_iter()
            .find(|r| r.function == "hot-to-cold-mover")
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the mover did not finish in time"
        );
        std::thread::sleep(Duration::from_millis(100)); // poll for the run's end
    };
    assert!((200..300).contains(&run.status), "mover failed: {run:?}");
    let cold = app_settings(&arm)["COLD_BUCKET"]
        .as_str()
        .expect("COLD_BUCKET")
        .to_string();
    let moved: usize = rt.block_on(async {
        let mut total = 0;
        for name in plane
            .storage()
            .blob_names(&cold)
            .await
            .expect("cold listing")
        {
            let text = plane
                .storage()
                .blob_text(&cold, &name)
                .await
                .expect("chunk");
            total += serde_json::from_str::<Vec<Value>>(&text)
                .expect("a chunk is a JSON array")
                .len();
        }
        total
    });
    assert_eq!(moved, DEVICES * MESSAGES, "records in the cold container");
    for d in 0..DEVICES {
        assert!(
            read(&format!("dev-{d}")).is_empty(),
            "moved records left hot"
        );
    }

    // The handler reached both emulators with its managed identity's tokens, from the local
    // identity endpoint, for the storage and the Cosmos DB audiences.
    let issued = platform.identity().issued();
    assert!(
        issued
            .iter()
            .any(|(s, r)| s == &site && r == "https://storage.azure.com"),
        "{issued:?}"
    );
    assert!(
        issued
            .iter()
            .any(|(s, r)| s == &site && r == "https://cosmos.azure.com"),
        "{issued:?}"
    );

    // Destroy leaves nothing: not in ARM, not in the registry, not in the emulators.
    ok(&deployer(&arm, dir, &["destroy", "-y", "-q"]), "destroy");
    let group = format!(
        "/subscriptions/{}/resourcegroups/{TWIN}-rg",
        arm.subscription_id()
    );
    let left: Vec<String> = arm
        .ids()
        .into_iter()
        .filter(|i| i.to_ascii_lowercase().starts_with(&group))
        .collect();
    assert!(left.is_empty(), "destroy left {left:?}");
    assert!(
        hub.device_ids().is_empty(),
        "destroy left device identities"
    );
    rt.block_on(plane.sync_storage())
        .expect("emulators follow ARM");
    assert!(
        plane.storage().made().is_empty(),
        "{:?}",
        plane.storage().made()
    );
    rt.block_on(plane.stop()).expect("stop");
    eprintln!(
        "fake_arm_local_azure: deploy {deployed_in:?}, plane up {:?}, total {:?}",
        planed_in - deployed_in,
        started.elapsed()
    );
}
