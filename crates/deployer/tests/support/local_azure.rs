//! Shared by the tests that deploy an all-Azure L1–L3 twin through the real `deployer` binary on
//! the fake ARM (with the fake IoT Hub registry and the fake deployment endpoint) and then run it
//! on the local Azure data plane: the Cosmos DB emulator and Azurite (https, OAuth) behind the
//! endpoints ARM returns, the deployed package under the local Functions host, the local hub
//! broker the simulator's IoT Hub profile is pointed at. Included with `#[path]` by those tests
//! only (it needs the emulators).
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twin_local::azure_plane::{AzureLocalPlane, AzurePlatform, PlaneSettings};
use twin_local::azure_storage::Emulators;
use twin_simulator::config::SimulatorConfig;
use twin_simulator::failure::FailureContext;
use twin_simulator::publisher::{DeviceLink, FeedbackChannel};
use twin_simulator::tls::{DeviceCredentials, TlsContext};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, FunctionHosting};
use twin_testkit::fake_iot_hub::FakeIotHub;
use twin_testkit::fake_kudu::FakeKudu;

/// `config_providers.json` of an all-Azure L1–L3 twin (L4, L5 none).
pub fn providers() -> Value {
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

/// The real `deployer args` on the twin in `dir` against the fake ARM, to be run.
pub fn deployer_command(arm: &FakeArm, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
    c.arg("-C")
        .arg(dir)
        .args(args)
        .env("DEPLOYER_AZURE_ARM_URL", &arm.url)
        .env("DEPLOYER_AZURE_TOKEN", twin_testkit::fake_arm::fake_token())
        .env("AZURE_SUBSCRIPTION_ID", arm.subscription_id())
        .env("DEPLOYER_PREBUILT_FUNCTIONS", twin_testkit::function_zips())
        .stdin(Stdio::null());
    c
}

/// Runs the real `deployer args` on the twin in `dir` against the fake ARM.
pub fn deployer(arm: &FakeArm, dir: &Path, args: &[&str]) -> Output {
    deployer_command(arm, dir, args)
        .output()
        .expect("run deployer")
}

/// Asserts the command succeeded, showing its output when not.
pub fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// One plain HTTP/1.1 request to the local host; returns the status and body.
pub fn http(
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

/// The Function App's settings as the fake ARM holds them.
pub fn app_settings(arm: &FakeArm) -> serde_json::Map<String, Value> {
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

/// A deployed twin running on the local Azure plane.
pub struct LocalAzure {
    /// The twin.
    pub twin: String,
    /// Drives the fakes, the plane and the device links.
    pub rt: tokio::runtime::Runtime,
    /// The fake ARM.
    pub arm: FakeArm,
    /// The fake IoT Hub registry.
    pub hub: FakeIotHub,
    /// The local platform (Functions host, identity endpoint).
    pub platform: AzurePlatform,
    /// The running plane (None once stopped).
    pub plane: Option<AzureLocalPlane>,
    /// The Function App.
    pub site: String,
    /// How long `deploy` took, and until the plane was up.
    pub deployed_in: Duration,
    /// How long until the plane was up.
    pub planed_in: Duration,
    /// Azurite over https (kept running while the twin is).
    pub azurite: twin_testkit::azure::Azurite,
    /// The CA of Azurite's certificate.
    pub emulator_pki: twin_local::pki::Pki,
    /// The fake deployment endpoint (the packages `deploy` uploaded).
    pub kudu: Arc<FakeKudu>,
    started: Instant,
}

impl LocalAzure {
    /// Deploys the twin whose config files are in `dir` (named `twin`) with the real binary on
    /// the fake ARM and starts the local plane from what the deploy put there.
    pub fn deploy_and_start(dir: &Path, twin: &str) -> LocalAzure {
        let mut local = LocalAzure::deploy(dir, twin);
        local.start_plane(dir);
        local
    }

    /// Deploys the twin whose config files are in `dir` (named `twin`) with the real binary on
    /// the fake ARM, the local platform serving the sites' hosts (each answers 503 until
    /// [`Self::start_plane`] loads its package, as an app that has not started yet).
    pub fn deploy(dir: &Path, twin: &str) -> LocalAzure {
        let started = Instant::now();
        let cosmos = twin_testkit::azure::cosmos();
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

        LocalAzure {
            twin: twin.to_string(),
            rt,
            arm,
            hub,
            platform,
            plane: None,
            site: String::new(),
            deployed_in,
            planed_in: deployed_in,
            azurite,
            emulator_pki,
            kudu: Arc::new(kudu),
            started,
        }
    }

    /// Starts the local plane from what the deploy put on ARM (the sites load their packages).
    pub fn start_plane(&mut self, dir: &Path) {
        let cosmos = twin_testkit::azure::cosmos();
        let arm_client = Arc::new(
            twin_azure::ArmClient::new(
                &self.arm.url,
                self.arm.subscription_id(),
                twin_azure::Auth::StaticToken(twin_testkit::fake_arm::fake_token()),
                twin_azure::ArmOptions::default(),
            )
            .expect("ARM client"),
        );
        let k = self.kudu.clone();
        let plane = self
            .rt
            .block_on(self.platform.start(PlaneSettings {
                twin: self.twin.clone(),
                config_dir: dir.to_path_buf(),
                arm: arm_client,
                emulators: Emulators {
                    blob_endpoint: self.azurite.blob_endpoint.clone(),
                    blob_sas: self.azurite.account_sas(),
                    blob_ca: self.emulator_pki.ca_cert.clone(),
                    cosmos_endpoint: cosmos.endpoint.clone(),
                    cosmos_key: cosmos.key.clone(),
                },
                package: Arc::new(move |site: &str| k.package(site)),
                delivery_deadline: Duration::from_secs(30),
            }))
            .expect("the local Azure plane starts from what deploy put on ARM");
        self.site = plane.sites().first().cloned().expect("one Function App");
        self.plane = Some(plane);
        self.planed_in = self.started.elapsed();
    }

    /// The running plane.
    pub fn plane(&self) -> &AzureLocalPlane {
        self.plane.as_ref().expect("the plane runs")
    }

    /// Starts `device`'s link with the simulator's IoT Hub profile (pointed at the local hub),
    /// receiving its feedback on `feedback`, and waits until it is connected.
    pub fn device_link(
        &self,
        sim: &SimulatorConfig,
        device: &str,
        feedback: Option<FeedbackChannel>,
    ) -> DeviceLink {
        let creds = DeviceCredentials::locate(&sim.auth_files_dir, device);
        let tls = TlsContext::load(&sim.root_ca_cert, sim.port)
            .expect("root CA")
            .client_config(&creds)
            .expect("device TLS");
        self.rt.block_on(async {
            let link = DeviceLink::start_with_channel(
                device,
                sim.device_topic(device),
                feedback,
                tls,
                &sim.link_options(),
                FailureContext::for_device(sim, device, &creds),
            );
            link.wait_connected(Instant::now() + Duration::from_secs(20))
                .await
                .expect("device connects");
            link
        })
    }

    /// Destroys the twin with the real binary and asserts nothing is left: not in ARM, not in
    /// the registry, not in the emulators; then stops the plane.
    pub fn destroy_leaves_nothing(&mut self, dir: &Path) {
        ok(
            &deployer(&self.arm, dir, &["destroy", "-y", "-q"]),
            "destroy",
        );
        let group = format!(
            "/subscriptions/{}/resourcegroups/{}-rg",
            self.arm.subscription_id(),
            self.twin
        );
        let left: Vec<String> = self
            .arm
            .ids()
            .into_iter()
            .filter(|i| i.to_ascii_lowercase().starts_with(&group))
            .collect();
        assert!(left.is_empty(), "destroy left {left:?}");
        assert!(
            self.hub.device_ids().is_empty(),
            "destroy left device identities"
        );
        let plane = self.plane.take().expect("the plane runs");
        self.rt
            .block_on(plane.sync_storage())
            .expect("emulators follow ARM");
        assert!(
            plane.storage().made().is_empty(),
            "{:?}",
            plane.storage().made()
        );
        self.rt.block_on(plane.stop()).expect("stop");
    }
}
