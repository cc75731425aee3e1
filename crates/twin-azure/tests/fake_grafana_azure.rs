//! Azure L5 through the engine, end to end, against the test kit's fakes (no emulator exists
//! for Azure Managed Grafana, ARM or a Flex Consumption app): an all-Azure twin (L1, L2, L3
//! hot/cold/archive and L5; L4 none) deploys the Grafana resource (fake ARM, its endpoint the
//! fake Grafana's address), the deployer's Grafana Admin role, and through the Grafana API
//! with the deployer's Entra token (fake Grafana in its Entra mode, answering 403 while the
//! role "propagates") the hot reader's Infinity data source with the function key in
//! `secureJsonData`, the twin's folder and a dashboard with a panel per device property.
//! A second deploy makes no mutating call, a new device updates the dashboard only, and destroy
//! leaves nothing in either fake. The whole twin, L1 to L5 with Azure Digital Twins (fake ADT)
//! as L4, goes through the same steps in one test.

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use twin_azure::l2::{AppPackage, StaticPackage};
use twin_azure::l5;
use twin_config::{Layer, TwinConfig};
use twin_engine::Engine;
use twin_grafana::dashboard_model;
use twin_testkit::fake_adt::FakeAdt;
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, FunctionHosting, FAKE_PRINCIPAL_ID};
use twin_testkit::fake_functions_host::FakeFunctionsHost;
use twin_testkit::fake_grafana::{FakeGrafana, INFINITY_PLUGIN};
use twin_testkit::fake_iot_hub::FakeIotHub;
use twin_testkit::fake_kudu::FakeKudu;

const COSMOS: &str = "Microsoft.DocumentDB/databaseAccounts";
const GRAFANA: &str = "Microsoft.Dashboard/grafana";
const TWIN: &str = "graf-twin";
/// Every function of the app when L1–L3 are on Azure.
const FUNCTIONS: [&str; 6] = [
    "cold-to-archive-mover",
    "dispatcher",
    "hot-reader",
    "hot-to-cold-mover",
    "persister",
    "processor",
];
const AZURE: [Layer; 6] = [
    Layer::L1,
    Layer::L2,
    Layer::L3Hot,
    Layer::L3Cold,
    Layer::L3Archive,
    Layer::L5,
];

struct Fakes {
    arm: FakeArm,
    grafana: FakeGrafana,
    hosting: FunctionHosting,
    _kudu: FakeKudu,
    _host: FakeFunctionsHost,
    _hub: FakeIotHub,
}

async fn fakes() -> Fakes {
    let grafana = FakeGrafana::start().await.expect("fake Grafana");
    let arm = support::start_arm(FakeArmConfig {
        provisioning: HashMap::from([(COSMOS.to_string(), Duration::from_millis(20))]),
        endpoints: HashMap::from([
            (COSMOS.to_string(), "https://127.0.0.1:8081/".to_string()),
            (GRAFANA.to_string(), grafana.url.clone()),
        ]),
        ..FakeArmConfig::default()
    })
    .await;
    let kudu = support::serve_kudu(&arm, 1);
    let host = FakeFunctionsHost::new();
    let hosting = host.hosting();
    arm.serve_functions_with(host.hosting());
    let hub = support::try_serve_iot_hub(&arm)
        .await
        .expect("fake registry");
    Fakes {
        arm,
        grafana,
        hosting,
        _kudu: kudu,
        _host: host,
        _hub: hub,
    }
}

/// The twin with `devices` (each with `temperature` and a `door` boolean), `sensor-0` in room-1
/// of the hierarchy and the others in none.
fn write_twin(dir: &Path, devices: &[&str]) -> Arc<TwinConfig> {
    write_twin_on(dir, devices, &AZURE)
}

/// [`write_twin`] with exactly `azure` on Azure.
fn write_twin_on(dir: &Path, devices: &[&str], azure: &[Layer]) -> Arc<TwinConfig> {
    let hierarchy = json!([{"type": "entity", "id": "room-1", "children": [
        {"type": "component", "name": "sensor-0", "iotDeviceId": "sensor-0"}]}]);
    std::fs::write(dir.join("config_hierarchy.json"), hierarchy.to_string()).expect("hierarchy");
    let config = support::try_write_twin(dir, TWIN, devices, azure).expect("valid twin config");
    let mut config = Arc::unwrap_or_clone(config);
    for d in &mut config.devices {
        d.properties.push(twin_config::Property {
            name: "door".into(),
            data_type: twin_config::DataType::Boolean,
            init_value: None,
        });
    }
    Arc::new(config)
}

fn package() -> AppPackage {
    support::try_package("v1", &FUNCTIONS, None).expect("zip")
}

async fn engine(f: &Fakes, config: &Arc<TwinConfig>) -> Engine {
    let provider = support::provider(&f.arm, config)
        .await
        .with_app_package(Arc::new(StaticPackage(package())), support::polling());
    support::engine(
        config,
        Arc::new(provider),
        support::retry(Duration::from_secs(30)),
    )
}

fn grafana_id(f: &Fakes) -> String {
    format!(
        "{}/providers/Microsoft.Dashboard/grafana/{}",
        support::group_id(&f.arm, TWIN),
        l5::grafana_name(TWIN, f.arm.subscription_id())
    )
}

/// ARM calls that change something (`list` and `listkeys` are POSTs that read).
fn arm_changes(fake: &FakeArm) -> Vec<String> {
    fake.mutating_calls()
        .into_iter()
        .filter(|c| !c.ends_with("/list") && !c.ends_with("/listkeys"))
        .collect()
}

/// Grafana API calls that change something.
fn grafana_changes(g: &FakeGrafana) -> Vec<String> {
    g.take_requests()
        .into_iter()
        .filter(|r| !r.starts_with("GET "))
        .collect()
}

/// (device, property) of every property panel of the stored dashboard.
fn panels(g: &FakeGrafana) -> Vec<(String, String)> {
    let (dash, folder) = g
        .dashboard(&l5::dashboard_uid(TWIN))
        .expect("the dashboard");
    assert_eq!(folder.as_deref(), Some(l5::folder_uid(TWIN).as_str()));
    dashboard_model::property_panels(&dash)
        .iter()
        .map(|p| {
            let t = &p["targets"][0];
            assert_eq!(t["datasource"]["uid"], l5::datasource_uid(TWIN));
            (
                t["url_options"]["params"][0]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                t["columns"][1]["selector"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn want_panels(devices: &[&str]) -> Vec<(String, String)> {
    devices
        .iter()
        .flat_map(|d| ["temperature", "door"].map(|p| (d.to_string(), p.to_string())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_grafana_azure_deploy_redeploy_new_device_and_destroy_through_the_engine() {
    let f = fakes().await;
    // The deployer's Grafana Admin role "propagates" for its first three Grafana requests.
    f.grafana.admit_entra(FAKE_PRINCIPAL_ID, 3);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_twin(dir.path(), &["sensor-0", "sensor-1"]);
    let engine = engine(&f, &config).await;
    engine.deploy(None).await.expect("deploy");

    // The Grafana resource, as ARM holds it.
    let g = f
        .arm
        .resource(&grafana_id(&f))
        .expect("the Grafana resource");
    assert_eq!(g["sku"]["name"], "Standard");
    assert_eq!(g["identity"]["type"], "SystemAssigned");
    assert_eq!(g["properties"]["apiKey"], "Disabled");
    assert!(g["properties"]["grafanaPlugins"][INFINITY_PLUGIN].is_object());
    assert_eq!(g["tags"]["twin"], TWIN);
    // The deployer's Grafana Admin role on it.
    let scope = format!(
        "{}/providers/microsoft.authorization/roleassignments/",
        grafana_id(&f)
    )
    .to_ascii_lowercase();
    let roles: Vec<Value> = f
        .arm
        .ids()
        .into_iter()
        .filter(|i| i.starts_with(&scope))
        .filter_map(|i| f.arm.resource(&i))
        .collect();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0]["properties"]["principalId"], FAKE_PRINCIPAL_ID);
    assert!(roles[0]["properties"]["roleDefinitionId"]
        .as_str()
        .is_some_and(|d| d.ends_with("22926164-76b3-42b3-bc55-97df8dab3e41")));

    // The data source calls the hot reader at the app's host with the function's key, which
    // only the fake's secret store holds.
    let app = twin_config::names::azure_unique_name(TWIN, "func", f.arm.subscription_id());
    let key = (f.hosting.keys)(&app, Some("hot-reader"));
    let ds_uid = l5::datasource_uid(TWIN);
    let ds = f.grafana.datasource(&ds_uid).expect("the data source");
    assert_eq!(ds["type"], INFINITY_PLUGIN);
    let base = format!("http://{}", (f.hosting.host)(&app));
    assert_eq!(ds["url"], base);
    assert_eq!(ds["jsonData"]["allowedHosts"], json!([base]));
    assert_eq!(ds["jsonData"]["httpHeaderName1"], "x-functions-key");
    assert!(
        !ds.to_string().contains(&key),
        "the key is not readable back"
    );
    assert_eq!(
        f.grafana
            .datasource_secret(&ds_uid, "httpHeaderValue1")
            .as_deref(),
        Some(key.as_str())
    );
    let state = std::fs::read_to_string(dir.path().join(".deployer").join(format!("{TWIN}.json")))
        .expect("state");
    assert!(!state.contains(&key), "the key is not in the state");
    // Folder and dashboard: a panel per property, the unplaced device in a row of its own.
    let (_, folders, _) = f.grafana.contents();
    assert_eq!(folders, [l5::folder_uid(TWIN)]);
    assert_eq!(panels(&f.grafana), want_panels(&["sensor-0", "sensor-1"]));

    // info names the Grafana, the healthy data source and the dashboard.
    let lines = l5::info_lines(&engine.info().await.expect("info"));
    assert_eq!(
        lines[0],
        format!("Azure Managed Grafana: {}", f.grafana.url)
    );
    assert!(lines[1].contains(": healthy"), "{lines:?}");
    assert!(
        lines[2].starts_with(&format!("Grafana dashboard: {}/d/", f.grafana.url)),
        "{lines:?}"
    );

    // A second deploy changes nothing anywhere.
    f.arm.clear_log();
    f.grafana.take_requests();
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert_eq!(arm_changes(&f.arm), Vec::<String>::new());
    assert_eq!(grafana_changes(&f.grafana), Vec::<String>::new());

    // A new device: its identity in L1, and in Grafana only the dashboard is saved again.
    let config = write_twin(dir.path(), &["sensor-0", "sensor-1", "sensor-2"]);
    let engine = self::engine(&f, &config).await;
    engine.deploy(None).await.expect("deploy with a new device");
    assert_eq!(
        grafana_changes(&f.grafana),
        ["POST /api/dashboards/db".to_string()]
    );
    assert_eq!(
        panels(&f.grafana),
        want_panels(&["sensor-0", "sensor-1", "sensor-2"])
    );

    // Destroy leaves nothing in Grafana or ARM.
    engine.destroy(None).await.expect("destroy");
    assert_eq!(f.grafana.contents(), (Vec::new(), Vec::new(), Vec::new()));
    assert_eq!(support::twin_resources(&f.arm, TWIN), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_grafana_azure_a_broken_data_source_and_a_hand_edited_dashboard_are_repaired() {
    let f = fakes().await;
    f.grafana.admit_entra(FAKE_PRINCIPAL_ID, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_twin(dir.path(), &["sensor-0"]);
    let engine = engine(&f, &config).await;
    engine.deploy(None).await.expect("deploy");

    let ds_uid = l5::datasource_uid(TWIN);
    f.grafana
        .edit_datasource(&ds_uid, |d| d["url"] = json!("http://127.0.0.1:1"));
    f.grafana.edit_dashboard(&l5::dashboard_uid(TWIN), |d| {
        d["tags"] = json!(["deployer"]);
    });
    let rows = engine.info().await.expect("info");
    assert!(l5::info_lines(&rows)[1].contains("UNHEALTHY"), "{rows:?}");
    f.grafana.take_requests();
    let fixed = engine.deploy(None).await.expect("deploy repairs");
    assert_eq!(fixed.updated, 2, "{fixed:?}");
    let mut changes = grafana_changes(&f.grafana);
    changes.sort();
    assert_eq!(
        changes,
        [
            "POST /api/dashboards/db".to_string(),
            format!("PUT /api/datasources/uid/{ds_uid}"),
        ]
    );
    let again = engine.deploy(None).await.expect("deploy after repair");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_grafana_azure_without_the_hot_reader_on_azure_is_refused_before_any_call() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = support::try_write_twin(
        dir.path(),
        TWIN,
        &["sensor-0"],
        &[Layer::L3Cold, Layer::L3Archive, Layer::L5],
    )
    .expect("twin");
    f.arm.clear_log();
    let e = engine(&f, &config)
        .await
        .deploy(None)
        .await
        .expect_err("refused");
    let text = e.to_string();
    assert!(text.contains("layer_2_provider"), "{text}");
    assert_eq!(arm_changes(&f.arm), Vec::<String>::new());
    assert!(f.grafana.take_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_adt_and_grafana_an_all_azure_twin_l1_to_l5_deploys_redeploys_and_destroys() {
    let f = fakes().await;
    let adt = FakeAdt::start(Some(f.arm.role_check()))
        .await
        .expect("fake ADT");
    f.arm.set_digital_twins_host(&adt.host);
    f.grafana.admit_entra(FAKE_PRINCIPAL_ID, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let every_layer = Layer::ALL;
    let config = write_twin_on(dir.path(), &["sensor-0", "sensor-1"], &every_layer);
    assert!(
        every_layer
            .iter()
            .all(|l| config.providers.get(*l) == twin_config::ProviderName::Azure),
        "every layer is on Azure"
    );
    let engine = engine(&f, &config).await;
    engine.deploy(None).await.expect("deploy L1 to L5");

    // L4: a model per device and per entity, a twin each, the room containing sensor-0.
    let models = adt.model_ids();
    assert!(
        models.iter().any(|m| m.contains("sensor_0")),
        "a model for sensor-0: {models:?}"
    );
    let twins = adt.twin_ids();
    assert_eq!(twins.len(), 3, "room-1, sensor-0 and sensor-1: {twins:?}");
    let relationships = adt.relationships();
    assert_eq!(
        relationships.len(),
        1,
        "room-1 holds sensor-0: {relationships:?}"
    );
    // L5: a panel per property, reading the hot reader.
    assert_eq!(panels(&f.grafana), want_panels(&["sensor-0", "sensor-1"]));

    // A second deploy changes nothing in ARM, ADT or Grafana.
    f.arm.clear_log();
    f.grafana.take_requests();
    adt.clear_log();
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert_eq!(arm_changes(&f.arm), Vec::<String>::new());
    assert_eq!(grafana_changes(&f.grafana), Vec::<String>::new());
    assert_eq!(adt.mutating_calls(), Vec::<String>::new());

    // Destroy leaves nothing in any fake.
    engine.destroy(None).await.expect("destroy");
    assert_eq!(adt.model_ids(), Vec::<String>::new());
    assert_eq!(adt.twin_ids(), Vec::<String>::new());
    assert_eq!(f.grafana.contents(), (Vec::new(), Vec::new(), Vec::new()));
    assert_eq!(support::twin_resources(&f.arm, TWIN), Vec::<String>::new());
}
