//! Azure L1 through the engine against the test kit's fake ARM and fake IoT Hub registry (no
//! emulator exists for either): the hub, one X.509 identity per device, the Event Grid route
//! to the dispatcher and the simulator profile; a no-op second deploy, devices added and
//! removed, drift, throttling, an interrupted deploy, and destroy.
//!
//! L2 is not built here: a stand-in driver (`StubDispatcher`) plays the L2 Function App's
//! dispatcher, creating a site and its `dispatcher` function in the fake ARM under the spec id
//! the event subscription depends on.

mod support;

use async_trait::async_trait;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use twin_azure::l1::{self, certificate};
use twin_azure::{ArmClient, ArmOptions, AzureProvider};
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{
    CloudError, Engine, Observed, Outputs, Provider, ResourceDriver, ResourceSpec, RetryPolicy,
};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, Fault};
use twin_testkit::fake_iot_hub::FakeIotHub;

const SITE_API: &str = "2024-04-01";

/// Stands in for L2's dispatcher function: a site and its function in the fake ARM.
struct StubDispatcher {
    arm: Arc<ArmClient>,
}

impl StubDispatcher {
    fn site(&self, spec: &ResourceSpec) -> String {
        format!(
            "{}/resourceGroups/{}/providers/Microsoft.Web/sites/{}",
            self.arm.subscription_path(),
            spec.inputs["resource_group"].as_str().unwrap_or_default(),
            spec.name
        )
    }
}

#[async_trait]
impl ResourceDriver for StubDispatcher {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let path = format!("{}/functions/dispatcher", self.site(spec));
        Ok(self.arm.get(&path, SITE_API, "dispatcher").await?.map(|b| {
            let id = b["id"].as_str().unwrap_or_default().to_string();
            Observed::new(id.clone(), json!({"id": id, l1::DISPATCHER_ATTR: id}))
        }))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let site = self.site(spec);
        let body = json!({"location": "westeurope", "kind": "functionapp,linux",
            "tags": {"twin": spec.inputs["tags"]["twin"]}});
        self.arm.put(&site, SITE_API, &body, "site").await?;
        let f = json!({"properties": {"config": {"bindings": [{"type": "eventGridTrigger"}]}}});
        self.arm
            .put(
                &format!("{site}/functions/dispatcher"),
                SITE_API,
                &f,
                "dispatcher",
            )
            .await?;
        self.read(spec, deps)
            .await?
            .ok_or_else(|| CloudError::fatal("Stub", "dispatcher not visible"))
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.create(spec, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        self.arm.delete(&self.site(spec), SITE_API, "site").await
    }
}

/// The Azure provider with the stand-in dispatcher as its L2.
struct WithDispatcher {
    inner: Arc<AzureProvider>,
    stub: Arc<StubDispatcher>,
}

#[async_trait]
impl Provider for WithDispatcher {
    fn name(&self) -> ProviderName {
        ProviderName::Azure
    }

    fn scope(&self) -> twin_engine::Scope {
        self.inner.scope()
    }

    async fn layer_resources(
        &self,
        layer: Layer,
        twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError> {
        if layer != Layer::L2 {
            return self.inner.layer_resources(layer, twin).await;
        }
        let group = format!("{}-rg", twin.name());
        let group_id =
            twin_azure::context::resource_id(Layer::L1, twin_azure::resource_group::KIND, "twin");
        Ok(vec![ResourceSpec::new(
            l1::dispatcher_spec_id(),
            Layer::L2,
            ProviderName::Azure,
            l1::DISPATCHER_FUNCTION_KIND,
            format!("{}-func", twin.name()),
        )
        .depends_on([group_id])
        .inputs(
            json!({"resource_group": group, "tags": {"twin": twin.name()}}),
        )])
    }

    fn driver(&self, kind: &str) -> Option<Arc<dyn ResourceDriver>> {
        if kind == l1::DISPATCHER_FUNCTION_KIND {
            return Some(self.stub.clone());
        }
        self.inner.driver(kind)
    }

    async fn discover(
        &self,
        layer: Layer,
        twin: &TwinConfig,
    ) -> Result<Vec<ResourceSpec>, CloudError> {
        self.inner.discover(layer, twin).await
    }
}

struct Fakes {
    arm: FakeArm,
    hub: FakeIotHub,
}

async fn fakes() -> Fakes {
    let arm = support::start_arm(FakeArmConfig::default()).await;
    let hub = support::try_serve_iot_hub(&arm)
        .await
        .expect("fake registry");
    Fakes { arm, hub }
}

fn write_twin(dir: &Path, twin: &str, devices: &[&str]) -> Arc<TwinConfig> {
    // L1 (and the stand-in L2) go on Azure.
    support::try_write_twin(dir, twin, devices, &[Layer::L1, Layer::L2]).expect("valid twin config")
}

fn retry(deadline: Duration) -> RetryPolicy {
    support::fast_retry(deadline)
}

async fn engine(f: &Fakes, config: &Arc<TwinConfig>, retry: RetryPolicy) -> Engine {
    let arm = support::client(&f.arm);
    let inner = Arc::new(
        AzureProvider::with_client(arm.clone(), &config.providers.azure)
            .await
            .expect("provider"),
    );
    let provider = WithDispatcher {
        inner,
        stub: Arc::new(StubDispatcher { arm }),
    };
    support::engine(config, Arc::new(provider), retry)
}

fn group_id(f: &Fakes, twin: &str) -> String {
    support::group_id(&f.arm, twin)
}

fn hub_id(f: &Fakes, twin: &str) -> String {
    format!(
        "{}/providers/Microsoft.Devices/IotHubs/{}",
        group_id(f, twin),
        twin_config::names::azure_unique_name(twin, "iot", f.arm.subscription_id())
    )
}

fn topic_id(f: &Fakes, twin: &str) -> String {
    format!(
        "{}/providers/Microsoft.EventGrid/systemTopics/{twin}-hub-events",
        group_id(f, twin)
    )
}

fn twin_resources(f: &Fakes, twin: &str) -> Vec<String> {
    support::twin_resources(&f.arm, twin)
}

fn device_dir(dir: &Path, device: &str) -> std::path::PathBuf {
    certificate::device_dir(dir, device)
}

/// Asserts that the registry holds exactly `devices`, each with the thumbprint of the
/// certificate written for it, its key owner-only.
fn assert_registry_matches_files(f: &Fakes, dir: &Path, devices: &[&str]) {
    let mut want: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    want.sort();
    assert_eq!(f.hub.device_ids(), want);
    for d in devices {
        let dd = device_dir(dir, d);
        let pem = std::fs::read_to_string(dd.join(certificate::CERTIFICATE_FILE)).expect("cert");
        let thumb = certificate::thumbprint(&pem).expect("thumbprint");
        let stored = f.hub.device(d).expect("device");
        assert_eq!(
            stored["authentication"]["x509Thumbprint"]["primaryThumbprint"],
            thumb
        );
        assert_eq!(stored["authentication"]["type"], "selfSigned");
        assert_eq!(stored["status"], "enabled");
        let mode = std::fs::metadata(dd.join(certificate::PRIVATE_KEY_FILE))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{d}'s key is owner-only");
    }
}

fn state_text(dir: &Path, twin: &str) -> String {
    std::fs::read_to_string(dir.join(".deployer").join(format!("{twin}.json"))).expect("state")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hub_deploy_routes_telemetry_redeploys_as_a_no_op_and_destroys_everything() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "hub-twin";
    let config = write_twin(dir.path(), twin, &["sensor-1", "sensor-2"]);
    let engine = engine(&f, &config, retry(Duration::from_secs(30))).await;

    let report = engine.deploy(None).await.expect("deploy");
    // group, identity, hub, the deployer's registry role on it, 2 devices, topic,
    // subscription, simulator config, stand-in L2
    assert_eq!(report.created, 10, "{report:?}");
    let roles: Vec<String> = f
        .arm
        .ids()
        .into_iter()
        .filter(|i| i.contains("/providers/microsoft.authorization/roleassignments/"))
        .collect();
    assert_eq!(roles.len(), 1, "{roles:?}");
    let role = f.arm.resource(&roles[0]).expect("role assignment");
    assert_eq!(
        role["properties"]["principalId"],
        twin_testkit::fake_arm::FAKE_PRINCIPAL_ID,
        "the deployer's own principal gets the registry role: {role}"
    );
    assert!(
        role["properties"]["roleDefinitionId"]
            .as_str()
            .is_some_and(|d| d.ends_with("4ea46cd5-c1b2-4a8e-910b-273211f9ce47")),
        "{role}"
    );

    let hub = f.arm.resource(&hub_id(&f, twin)).expect("hub");
    assert_eq!(hub["sku"]["name"], "S1");
    assert_eq!(hub["sku"]["capacity"], 1);
    assert_eq!(hub["properties"]["disableLocalAuth"], true);
    assert_eq!(hub["properties"]["disableDeviceSAS"], true);
    assert_eq!(hub["properties"]["minTlsVersion"], "1.2");
    assert_eq!(hub["tags"]["twin"], twin);
    assert_eq!(hub["properties"]["hostName"], f.hub.host);

    assert_registry_matches_files(&f, dir.path(), &["sensor-1", "sensor-2"]);
    let state = state_text(dir.path(), twin);
    assert!(!state.contains("PRIVATE KEY"), "no key in the state");
    let thumb = f.hub.device("sensor-1").expect("device")["authentication"]["x509Thumbprint"]
        ["primaryThumbprint"]
        .as_str()
        .expect("thumbprint")
        .to_string();
    assert!(state.contains(&thumb), "the state records the thumbprint");

    let topic = f.arm.resource(&topic_id(&f, twin)).expect("system topic");
    assert_eq!(
        topic["properties"]["topicType"],
        "Microsoft.Devices.IoTHubs"
    );
    assert_eq!(
        topic["properties"]["source"]
            .as_str()
            .map(str::to_ascii_lowercase),
        Some(hub_id(&f, twin).to_ascii_lowercase())
    );
    let sub = f
        .arm
        .resource(&format!(
            "{}/eventSubscriptions/telemetry-to-dispatcher",
            topic_id(&f, twin)
        ))
        .expect("event subscription");
    let dest = &sub["properties"]["destination"];
    assert_eq!(dest["endpointType"], "AzureFunction");
    assert_eq!(
        dest["properties"]["resourceId"],
        format!(
            "{}/providers/Microsoft.Web/sites/{twin}-func/functions/dispatcher",
            group_id(&f, twin)
        )
    );
    assert_eq!(
        sub["properties"]["filter"]["includedEventTypes"],
        json!(["Microsoft.Devices.DeviceTelemetry"])
    );

    let sim_dir = dir.path().join(".deployer").join("simulator");
    let sim: Value = serde_json::from_str(
        &std::fs::read_to_string(sim_dir.join("config.json")).expect("simulator config"),
    )
    .expect("json");
    assert_eq!(sim["provider"], "azure");
    assert_eq!(sim["endpoint"], "127.0.0.1");
    assert_eq!(sim["port"], 8883);
    assert_eq!(
        sim["username"],
        format!("{}/{{iotDeviceId}}/?api-version=2021-04-12", f.hub.host)
    );
    assert_eq!(
        sim["topic"],
        "devices/{iotDeviceId}/messages/events/$.ct=application%2Fjson&$.ce=utf-8"
    );
    let ca = std::fs::read_to_string(sim_dir.join(sim["root_ca_cert_path"].as_str().expect("ca")))
        .expect("CA file");
    assert_eq!(ca.matches("BEGIN CERTIFICATE").count(), 2);
    // The simulator reads it as an IoT Hub profile.
    let parsed = twin_simulator::config::SimulatorConfig::load(&sim_dir.join("config.json"))
        .expect("the simulator accepts the profile");
    assert_eq!(parsed.profile, twin_simulator::config::BrokerProfile::Azure);
    assert_eq!(
        parsed.device_username("sensor-1"),
        Some(format!("{}/sensor-1/?api-version=2021-04-12", f.hub.host))
    );
    assert_eq!(
        parsed.device_topic("sensor-1"),
        "devices/sensor-1/messages/events/$.ct=application%2Fjson&$.ce=utf-8"
    );
    assert!(parsed
        .auth_files_dir
        .join("sensor-1")
        .join(certificate::PRIVATE_KEY_FILE)
        .exists());

    f.arm.clear_log();
    f.hub.clear_log();
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert!(
        f.arm.mutating_calls().is_empty(),
        "{:?}",
        f.arm.mutating_calls()
    );
    assert!(
        f.hub.mutating_calls().is_empty(),
        "{:?}",
        f.hub.mutating_calls()
    );

    engine.destroy(None).await.expect("destroy");
    assert!(f.hub.device_ids().is_empty(), "registry empty");
    assert!(twin_resources(&f, twin).is_empty(), "{:?}", f.arm.ids());
    assert!(!device_dir(dir.path(), "sensor-1").exists(), "keys removed");
    assert!(!sim_dir.join("config.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hub_a_device_added_and_one_removed_in_the_config_follow_it() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "churn-twin";
    let config = write_twin(dir.path(), twin, &["a", "b"]);
    engine(&f, &config, retry(Duration::from_secs(30)))
        .await
        .deploy(None)
        .await
        .expect("deploy");
    let a_thumb = f.hub.device("a").expect("a")["authentication"].clone();

    let config = write_twin(dir.path(), twin, &["a", "c"]);
    let engine = engine(&f, &config, retry(Duration::from_secs(30))).await;
    let report = engine.deploy(None).await.expect("deploy after the change");
    assert_eq!((report.created, report.deleted), (1, 1), "{report:?}");
    assert_registry_matches_files(&f, dir.path(), &["a", "c"]);
    assert_eq!(
        f.hub.device("a").expect("a")["authentication"],
        a_thumb,
        "a kept its credentials"
    );
    assert!(!device_dir(dir.path(), "b").exists(), "b's key is gone");
    engine.destroy(None).await.expect("destroy");
    assert!(f.hub.device_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hub_thumbprint_status_and_hub_drift_are_fixed() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "drift-twin";
    let config = write_twin(dir.path(), twin, &["a", "b"]);
    let engine = engine(&f, &config, retry(Duration::from_secs(30))).await;
    engine.deploy(None).await.expect("deploy");

    assert!(f.hub.set(
        "a",
        "/authentication/x509Thumbprint/primaryThumbprint",
        json!("0".repeat(64))
    ));
    assert!(f.hub.set("b", "/status", json!("disabled")));
    assert!(f.arm.set(
        &hub_id(&f, twin),
        "/properties/disableLocalAuth",
        json!(false)
    ));
    let fixed = engine.deploy(None).await.expect("deploy after drift");
    assert_eq!(fixed.updated, 3, "{fixed:?}");
    assert_registry_matches_files(&f, dir.path(), &["a", "b"]);
    let hub = f.arm.resource(&hub_id(&f, twin)).expect("hub");
    assert_eq!(hub["properties"]["disableLocalAuth"], true);

    // A lost key file is drift too: a new pair is made and the registry follows it.
    let old = f.hub.device("a").expect("a")["authentication"].clone();
    std::fs::remove_file(device_dir(dir.path(), "a").join(certificate::PRIVATE_KEY_FILE))
        .expect("lose the key");
    let fixed = engine.deploy(None).await.expect("deploy after a lost key");
    assert_eq!(fixed.updated, 1, "{fixed:?}");
    assert_ne!(f.hub.device("a").expect("a")["authentication"], old);
    assert_registry_matches_files(&f, dir.path(), &["a", "b"]);
    engine.destroy(None).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hub_throttling_converges_without_duplicates() {
    let f = fakes().await;
    f.hub.throttle("PUT", 2, 1);
    f.hub.throttle("GET", 2, 0);
    f.arm.inject(
        "PUT",
        "/IotHubs/",
        Fault::Throttle {
            retry_after_secs: 1,
        },
        1,
    );
    // (Not DropAfterApply: the fake's operations advance only when polled, so a dropped
    // answer leaves the resource `Creating` for good, which a real ARM would not.)
    f.arm.inject("PUT", "/systemTopics/", Fault::Busy, 1);
    f.arm
        .inject("PUT", "/eventSubscriptions/", Fault::ServerError, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "throttle-twin";
    let config = write_twin(dir.path(), twin, &["a", "b", "c"]);
    let engine = engine(&f, &config, retry(Duration::from_secs(30))).await;
    let report = engine
        .deploy(None)
        .await
        .expect("deploy despite throttling");
    assert_eq!(report.created, 11, "{report:?}");
    assert_eq!(f.hub.throttles_left(), 0);
    assert_eq!(f.arm.faults_left(), 0);
    assert_registry_matches_files(&f, dir.path(), &["a", "b", "c"]);
    f.arm.clear_log();
    f.hub.clear_log();
    engine.deploy(None).await.expect("second deploy");
    assert!(
        f.hub.mutating_calls().is_empty(),
        "{:?}",
        f.hub.mutating_calls()
    );
    assert!(
        f.arm.mutating_calls().is_empty(),
        "{:?}",
        f.arm.mutating_calls()
    );
    engine.destroy(None).await.expect("destroy");
    assert!(twin_resources(&f, twin).is_empty(), "{:?}", f.arm.ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hub_an_interrupted_deploy_resumes_and_destroy_removes_it_all() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "resume-twin";
    let config = write_twin(dir.path(), twin, &["a", "b"]);
    // The simulator config, which comes after the devices, cannot be written (a file stands
    // where its directory goes): the first deploy fails after the identities were made.
    let blocker = dir.path().join(".deployer").join("simulator");
    std::fs::create_dir_all(dir.path().join(".deployer")).expect("dir");
    std::fs::write(&blocker, "not a directory").expect("blocker");
    let first = engine(&f, &config, retry(Duration::from_millis(300))).await;
    first
        .deploy(None)
        .await
        .expect_err("the first deploy fails");
    assert_registry_matches_files(&f, dir.path(), &["a", "b"]);
    let made: Vec<Value> = ["a", "b"]
        .iter()
        .map(|d| f.hub.device(d).expect("device"))
        .collect();

    // As if killed before the state was written: the next deploy finds everything again.
    drop(first);
    std::fs::remove_file(&blocker).expect("unblock");
    std::fs::remove_file(dir.path().join(".deployer").join(format!("{twin}.json")))
        .expect("lose the state");
    f.hub.clear_log();
    let engine = engine(&f, &config, retry(Duration::from_secs(30))).await;
    let report = engine.deploy(None).await.expect("resumed deploy");
    assert!(
        report.created >= 1,
        "the simulator config was missing: {report:?}"
    );
    assert!(blocker.join("config.json").exists());
    assert!(
        f.hub.mutating_calls().is_empty(),
        "the identities were found, not made again: {:?}",
        f.hub.mutating_calls()
    );
    for (d, before) in ["a", "b"].iter().zip(made) {
        assert_eq!(f.hub.device(d).expect("device")["etag"], before["etag"]);
    }
    engine.destroy(None).await.expect("destroy");
    assert!(f.hub.device_ids().is_empty());
    assert!(twin_resources(&f, twin).is_empty(), "{:?}", f.arm.ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hub_registry_needs_a_token_and_the_current_etag() {
    use twin_azure::l1::registry::Registry;
    use twin_engine::ErrorClass;
    let f = fakes().await;
    let arm = support::try_client(&f.arm, ArmOptions::default()).expect("client");
    let registry = Registry::new(&arm, &f.hub.host);
    assert!(registry.get("d", "device d").await.expect("get").is_none());

    let (cert, _) = certificate::make_certificate("d").expect("certificate");
    let thumb = certificate::thumbprint(&cert).expect("thumbprint");
    let body = l1::devices::identity_body("d", &thumb, None);
    let made = registry
        .put("d", &body, None, "device d")
        .await
        .expect("create");
    let etag = made.etag.clone().expect("etag");
    let again = registry
        .put("d", &body, None, "device d")
        .await
        .expect_err("a second create is refused");
    assert_eq!(again.code, "DeviceAlreadyExists");

    // Someone else changes it: the old ETag is refused with a retryable error.
    assert!(f.hub.set("d", "/status", json!("disabled")));
    let stale = registry
        .put("d", &body, Some(&etag), "device d")
        .await
        .expect_err("stale etag");
    assert_eq!(stale.class, ErrorClass::EventualConsistency, "{stale:?}");
    let current = registry
        .get("d", "device d")
        .await
        .expect("get")
        .expect("d");
    let fixed = registry
        .put("d", &body, current.etag.as_deref(), "device d")
        .await
        .expect("update with the current etag");
    assert_eq!(fixed.body["status"], "enabled");

    f.hub.throttle("GET", 1, 3);
    let throttled = registry.get("d", "device d").await.expect_err("throttled");
    assert_eq!(throttled.class, ErrorClass::Throttling);
    assert_eq!(throttled.retry_after, Some(Duration::from_secs(3)));

    // Without a bearer token nothing is answered.
    let port: u16 = f
        .hub
        .host
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let anonymous = tokio::task::spawn_blocking(move || {
        twin_testkit::http_request(port, "GET", "/devices/d?api-version=2021-04-12", "")
    })
    .await
    .expect("join");
    assert!(
        anonymous.as_ref().is_err_and(|e| e.contains("401")),
        "{anonymous:?}"
    );

    registry.delete("d", "device d").await.expect("delete");
    registry
        .delete("d", "device d")
        .await
        .expect("a second delete is fine");
    assert!(f.hub.device_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hub_destroy_without_a_state_file_still_removes_identities_and_keys() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "lost-hub-twin";
    let config = write_twin(dir.path(), twin, &["a", "b"]);
    let engine = engine(&f, &config, retry(Duration::from_secs(30))).await;
    engine.deploy(None).await.expect("deploy");
    std::fs::remove_file(dir.path().join(".deployer").join(format!("{twin}.json")))
        .expect("lose the state");
    let engine = self::engine(&f, &config, retry(Duration::from_secs(30))).await;
    engine.destroy(None).await.expect("destroy");
    assert!(f.hub.device_ids().is_empty(), "{:?}", f.hub.device_ids());
    assert!(twin_resources(&f, twin).is_empty(), "{:?}", f.arm.ids());
    for d in ["a", "b"] {
        assert!(!device_dir(dir.path(), d).exists(), "{d}'s key is gone");
    }
}
