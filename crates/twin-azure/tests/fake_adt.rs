//! Azure L4 (Azure Digital Twins) through the engine against the test kit's fakes (no emulator
//! exists for ARM, the IoT Hub registry, the deployment endpoint or the ADT data plane): the
//! instance, the Data Owner roles, models in dependency order and batches, twins and
//! relationships; a no-op re-deploy, a device whose properties change (new model version,
//! twin moved, old version gone), a role still propagating, a 200-device twin, and destroy.

mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use twin_azure::l2::StaticPackage;
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::Engine;
use twin_models::dtdl;
use twin_testkit::fake_adt::{AdtFault, FakeAdt};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, FAKE_PRINCIPAL_ID};
use twin_testkit::fake_iot_hub::FakeIotHub;
use twin_testkit::fake_kudu::FakeKudu;

const FUNCTIONS: [&str; 6] = [
    "cold-to-archive-mover",
    "dispatcher",
    "hot-reader",
    "hot-to-cold-mover",
    "persister",
    "processor",
];

/// The repository's example devices, and its hierarchy nested one level deeper (a building
/// holding the room), or `devices`/`hierarchy` given.
fn example_devices() -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config_iot_devices.json"),
    )
    .expect("the example devices");
    serde_json::from_str(&text).expect("JSON")
}

fn example_hierarchy() -> Value {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config_hierarchy.json"),
    )
    .expect("the example hierarchy");
    let rooms: Value = serde_json::from_str(&text).expect("JSON");
    json!([{"type": "entity", "id": "building-1", "children": rooms}])
}

/// Writes and loads a twin with these devices and hierarchy, exactly `azure` on Azure.
fn write_twin(
    dir: &Path,
    twin: &str,
    devices: &Value,
    hierarchy: &Value,
    azure: &[Layer],
) -> Arc<TwinConfig> {
    let files = [
        (
            "config.json",
            json!({"digital_twin_name": twin, "hot_storage_size_in_days": 30,
                "cold_storage_size_in_days": 90, "mode": "DEBUG"}),
        ),
        ("config_iot_devices.json", devices.clone()),
        ("config_hierarchy.json", hierarchy.clone()),
        (
            "config_providers.json",
            json!({"layer_1_provider": "aws", "layer_2_provider": "aws",
                "layer_3_hot_provider": "aws", "layer_3_cold_provider": "aws",
                "layer_3_archive_provider": "aws", "layer_4_provider": "none",
                "layer_5_provider": "none", "aws": {"region": "us-east-1"}}),
        ),
    ];
    for (name, v) in files {
        std::fs::write(dir.join(name), v.to_string()).expect("write config");
    }
    // As in the other Azure tests, the Azure layers are set in memory.
    let mut config = twin_config::load_dir(dir).expect("valid config");
    for l in Layer::ALL {
        config.providers.set(l, ProviderName::None);
    }
    for l in azure {
        config.providers.set(*l, ProviderName::Azure);
    }
    config.providers.azure.location = Some("westeurope".into());
    Arc::new(config)
}

struct Fakes {
    arm: FakeArm,
    adt: FakeAdt,
    _hub: FakeIotHub,
    _kudu: FakeKudu,
}

async fn fakes() -> Fakes {
    let arm = support::start_arm(FakeArmConfig::default()).await;
    let adt = FakeAdt::start(Some(arm.role_check()))
        .await
        .expect("fake ADT");
    arm.set_digital_twins_host(&adt.host);
    let hub = support::try_serve_iot_hub(&arm)
        .await
        .expect("fake registry");
    let kudu = support::serve_kudu(&arm, 1);
    Fakes {
        arm,
        adt,
        _hub: hub,
        _kudu: kudu,
    }
}

async fn engine(f: &Fakes, config: &Arc<TwinConfig>) -> Engine {
    let pkg = support::try_package("v1", &FUNCTIONS, None).expect("zip");
    let provider = support::provider(&f.arm, config)
        .await
        .with_app_package(Arc::new(StaticPackage(pkg)), support::polling());
    support::engine(
        config,
        Arc::new(provider),
        support::fast_retry(Duration::from_secs(30)),
    )
}

fn instance_id(f: &Fakes, twin: &str) -> String {
    format!(
        "{}/providers/Microsoft.DigitalTwins/digitalTwinsInstances/{}",
        support::group_id(&f.arm, twin),
        twin_azure::l4::instance_name(twin, f.arm.subscription_id())
    )
}

/// ARM calls that change something (the app settings' `list` and `listkeys` are POSTs that
/// read).
fn arm_changes(fake: &FakeArm) -> Vec<String> {
    fake.mutating_calls()
        .into_iter()
        .filter(|c| !c.ends_with("/list") && !c.ends_with("/listkeys"))
        .collect()
}

/// The role assignments stored on the instance, as principal ids.
fn instance_role_principals(f: &Fakes, twin: &str) -> Vec<String> {
    let prefix = format!(
        "{}/providers/microsoft.authorization/roleassignments/",
        instance_id(f, twin).to_ascii_lowercase()
    );
    let mut out: Vec<String> = f
        .arm
        .ids()
        .into_iter()
        .filter(|i| i.starts_with(&prefix))
        .filter_map(|i| f.arm.resource(&i))
        .filter(|r| {
            r["properties"]["roleDefinitionId"]
                .as_str()
                .is_some_and(|d| d.ends_with("bcd981a7-7f74-457b-83e1-cceb9e632ffe"))
        })
        .filter_map(|r| r["properties"]["principalId"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

fn model_of(adt: &FakeAdt, twin: &str) -> String {
    adt.twin(twin)
        .and_then(|t| t["$metadata"]["$model"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_adt_an_all_azure_twin_deploys_its_graph_redeploys_as_a_no_op_and_destroys_everything()
{
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "adt-twin";
    let config = write_twin(
        dir.path(),
        twin,
        &example_devices(),
        &example_hierarchy(),
        &[
            Layer::L1,
            Layer::L2,
            Layer::L3Hot,
            Layer::L3Cold,
            Layer::L3Archive,
            Layer::L4,
        ],
    );
    let engine = engine(&f, &config).await;
    engine.deploy(None).await.expect("deploy");

    // The instance, with the host the data plane answers on, and the Data Owner role for the
    // twin's identity and for the deployer.
    let instance = f.arm.resource(&instance_id(&f, twin)).expect("instance");
    assert_eq!(instance["properties"]["hostName"], json!(f.adt.host));
    assert_eq!(instance["tags"]["twin"], twin);
    let identity = f
        .arm
        .resource(&format!(
            "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{twin}-identity",
            support::group_id(&f.arm, twin)
        ))
        .expect("identity");
    let mut want = vec![
        FAKE_PRINCIPAL_ID.to_string(),
        identity["properties"]["principalId"]
            .as_str()
            .expect("principal")
            .to_string(),
    ];
    want.sort();
    assert_eq!(instance_role_principals(&f, twin), want);

    // Models: the device base, one per device, one per entity, all version 1.
    let mut models = dtdl::interfaces(&config).expect("interfaces");
    let mut ids: Vec<String> = models.drain(..).map(|m| m.id).collect();
    ids.sort();
    assert_eq!(f.adt.model_ids(), ids);
    assert_eq!(ids.len(), 1 + 3 + 2);
    // Twins: one per device and entity, on their models, with constants and the device id.
    assert_eq!(
        f.adt.twin_ids(),
        [
            "building-1",
            "pressure-sensor-1",
            "room-1",
            "temperature-sensor-1",
            "temperature-sensor-2"
        ]
    );
    let pressure = f.adt.twin("pressure-sensor-1").expect("twin");
    assert_eq!(
        pressure["$metadata"]["$model"],
        json!(dtdl::device_interface_id(twin, "pressure-sensor-1"))
    );
    assert_eq!(pressure["iotDeviceId"], "pressure-sensor-1");
    assert_eq!(pressure[dtdl::property_name("serial-number")], "1232323");
    let rels: Vec<(String, String)> = f
        .adt
        .relationships()
        .into_iter()
        .map(|(s, _, t, n)| {
            assert_eq!(n, "contains");
            (s, t)
        })
        .collect();
    assert_eq!(
        rels,
        [
            ("building-1".to_string(), "room-1".to_string()),
            ("room-1".into(), "pressure-sensor-1".into()),
            ("room-1".into(), "temperature-sensor-1".into()),
            ("room-1".into(), "temperature-sensor-2".into()),
        ]
    );
    // The persister learns the instance's host from ARM.
    let app = twin_config::names::azure_unique_name(twin, "func", f.arm.subscription_id());
    let settings = f
        .arm
        .resource(&format!(
            "{}/providers/Microsoft.Web/sites/{app}/config/appsettings",
            support::group_id(&f.arm, twin)
        ))
        .expect("app settings");
    assert_eq!(settings["properties"]["ADT_ENDPOINT"], json!(f.adt.host));

    // A second deploy reads and sends nothing, to ARM or the data plane.
    f.arm.clear_log();
    f.adt.clear_log();
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert!(arm_changes(&f.arm).is_empty(), "{:?}", arm_changes(&f.arm));
    assert!(
        f.adt.mutating_calls().is_empty(),
        "{:?}",
        f.adt.mutating_calls()
    );

    // A constant changed behind the deployer's back is set back with one patch.
    assert!(f.adt.set_twin(
        "pressure-sensor-1",
        &format!("/{}", dtdl::property_name("serial-number")),
        json!("tampered")
    ));
    f.adt.clear_log();
    let fixed = engine.deploy(None).await.expect("deploy after drift");
    assert_eq!(fixed.updated, 1, "{fixed:?}");
    assert_eq!(
        f.adt.mutating_calls(),
        ["PATCH /digitaltwins/pressure-sensor-1"]
    );
    let pressure = f.adt.twin("pressure-sensor-1").expect("twin");
    assert_eq!(pressure[dtdl::property_name("serial-number")], "1232323");

    // Destroy: relationships, twins and models go before the instance; nothing is left.
    engine.destroy(None).await.expect("destroy");
    assert!(f.adt.relationships().is_empty());
    assert!(f.adt.twin_ids().is_empty(), "{:?}", f.adt.twin_ids());
    assert!(f.adt.model_ids().is_empty(), "{:?}", f.adt.model_ids());
    assert!(
        support::twin_resources(&f.arm, twin).is_empty(),
        "{:?}",
        support::twin_resources(&f.arm, twin)
    );
}

/// A twin with only L4 on Azure (its group and identity then live in L4): quick to deploy.
fn l4_twin(dir: &Path, twin: &str, devices: &Value, hierarchy: &Value) -> Arc<TwinConfig> {
    write_twin(dir, twin, devices, hierarchy, &[Layer::L4])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_adt_a_changed_device_gets_a_new_model_version_its_twin_moves_and_the_old_one_goes() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "ver-twin";
    let config = l4_twin(dir.path(), twin, &example_devices(), &example_hierarchy());
    engine(&f, &config)
        .await
        .deploy(None)
        .await
        .expect("deploy");
    let v1 = dtdl::device_interface_id(twin, "temperature-sensor-1");
    assert_eq!(model_of(&f.adt, "temperature-sensor-1"), v1);
    let before = f.adt.model_ids();

    // temperature-sensor-1 gains a property: its model's content changes.
    let mut devices = example_devices();
    devices[0]["properties"]
        .as_array_mut()
        .expect("properties")
        .push(json!({"name": "humidity", "dataType": "DOUBLE"}));
    let changed = l4_twin(dir.path(), twin, &devices, &example_hierarchy());
    f.adt.clear_log();
    f.arm.clear_log();
    let engine = engine(&f, &changed).await;
    engine.deploy(None).await.expect("deploy the change");
    let v2 = twin_models::versions::with_version(twin_models::versions::unversioned(&v1), 2);
    assert_eq!(model_of(&f.adt, "temperature-sensor-1"), v2);
    let models = f.adt.model_ids();
    assert!(models.contains(&v2) && !models.contains(&v1), "{models:?}");
    assert_eq!(models.len(), before.len());
    let v2_def = f.adt.model(&v2).expect("v2");
    assert!(v2_def.to_string().contains("humidity"));
    // Exactly: upload the new version, move the twin, delete the old version.
    assert_eq!(
        f.adt.mutating_calls(),
        [
            "POST /models".to_string(),
            "PATCH /digitaltwins/temperature-sensor-1".to_string(),
            format!("DELETE /models/{v1}"),
        ]
    );
    assert!(arm_changes(&f.arm).is_empty(), "{:?}", arm_changes(&f.arm));

    // The same config again resolves to version 2 and sends nothing.
    f.adt.clear_log();
    let again = engine.deploy(None).await.expect("redeploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert!(
        f.adt.mutating_calls().is_empty(),
        "{:?}",
        f.adt.mutating_calls()
    );

    // A device removed from the config loses its twin, relationship and model.
    let fewer = json!([devices[0].clone(), devices[2].clone()]);
    let mut hierarchy = example_hierarchy();
    let children = hierarchy[0]["children"][0]["children"]
        .as_array_mut()
        .expect("room children");
    children.retain(|c| c["iotDeviceId"] != "temperature-sensor-2");
    let smaller = l4_twin(dir.path(), twin, &fewer, &hierarchy);
    let engine = self::engine(&f, &smaller).await;
    engine.deploy(None).await.expect("deploy without a device");
    assert!(f.adt.twin("temperature-sensor-2").is_none());
    assert!(!f
        .adt
        .model_ids()
        .contains(&dtdl::device_interface_id(twin, "temperature-sensor-2")));
    assert_eq!(f.adt.relationships().len(), 3);

    engine.destroy(None).await.expect("destroy");
    assert!(f.adt.model_ids().is_empty() && f.adt.twin_ids().is_empty());
    assert!(support::twin_resources(&f.arm, twin).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_adt_a_role_still_propagating_is_retried_until_the_data_plane_answers() {
    let f = fakes().await;
    f.adt.forbid_next(4);
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "prop-twin";
    let config = l4_twin(dir.path(), twin, &example_devices(), &example_hierarchy());
    engine(&f, &config)
        .await
        .deploy(None)
        .await
        .expect("deploy despite 403s");
    assert_eq!(f.adt.forbidden_answers(), 4);
    assert_eq!(f.adt.twin_ids().len(), 5);
    assert_eq!(f.adt.model_ids().len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_adt_a_260_device_twin_uploads_in_batches_under_the_limit_and_redeploys_as_a_no_op() {
    let f = fakes().await;
    let devices: Vec<Value> = (0..260)
        .map(|i| {
            json!({"id": format!("sensor-{i:03}"),
            "properties": [{"name": "temperature", "dataType": "DOUBLE"}]})
        })
        .collect();
    let floors: Vec<Value> = (0..13)
        .map(|fl| {
            let kids: Vec<Value> = (0..20)
                .map(|k| {
                    let id = format!("sensor-{:03}", fl * 20 + k);
                    json!({"type": "component", "name": id, "iotDeviceId": id})
                })
                .collect();
            json!({"type": "entity", "id": format!("floor-{fl}"), "children": kids})
        })
        .collect();
    let hierarchy = json!([{"type": "entity", "id": "tower", "children": floors}]);
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "big-twin";
    let config = l4_twin(dir.path(), twin, &Value::Array(devices), &hierarchy);
    let engine = engine(&f, &config).await;
    engine.deploy(None).await.expect("deploy");
    // 1 base + 260 devices + 14 entities: two upload calls, each under the limit.
    assert_eq!(f.adt.model_ids().len(), 275);
    assert!(f.adt.largest_upload() <= 250, "{}", f.adt.largest_upload());
    let uploads = f.adt.log().iter().filter(|l| *l == "POST /models").count();
    assert_eq!(uploads, 2);
    assert_eq!(f.adt.twin_ids().len(), 274);
    assert_eq!(f.adt.relationships().len(), 273);
    f.adt.clear_log();
    engine.deploy(None).await.expect("redeploy");
    assert!(
        f.adt.mutating_calls().is_empty(),
        "{:?}",
        f.adt.mutating_calls()
    );
    // The re-deploy reads pages, not one request per twin.
    assert!(f.adt.log().len() < 30, "{} requests", f.adt.log().len());
    engine.destroy(None).await.expect("destroy");
    assert!(f.adt.model_ids().is_empty() && f.adt.twin_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_adt_destroy_without_a_state_file_still_empties_the_data_plane_and_arm() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "lost-adt";
    let config = l4_twin(dir.path(), twin, &example_devices(), &example_hierarchy());
    engine(&f, &config)
        .await
        .deploy(None)
        .await
        .expect("deploy");
    std::fs::remove_dir_all(dir.path().join(".deployer")).expect("lose the state");
    // The resources are found again by their deterministic names: the instance through ARM,
    // its models and twins through the host ARM reports.
    engine(&f, &config)
        .await
        .destroy(None)
        .await
        .expect("destroy");
    assert!(f.adt.relationships().is_empty());
    assert!(f.adt.twin_ids().is_empty(), "{:?}", f.adt.twin_ids());
    assert!(f.adt.model_ids().is_empty(), "{:?}", f.adt.model_ids());
    assert!(
        support::twin_resources(&f.arm, twin).is_empty(),
        "{:?}",
        support::twin_resources(&f.arm, twin)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_adt_throttling_outages_and_lost_answers_converge_without_duplicates() {
    let f = fakes().await;
    // An upload applied whose answer is lost: the retry must find the models, not re-upload
    // them (the service answers 409 to a DTMI it holds).
    f.adt.inject("POST", "/models", AdtFault::DropAfterApply, 1);
    f.adt
        .inject("PUT", "/digitaltwins/room-1", AdtFault::Throttle, 2);
    f.adt
        .inject("PUT", "/relationships/", AdtFault::Unavailable, 1);
    f.adt.inject(
        "PUT",
        "/digitaltwins/building-1",
        AdtFault::DropAfterApply,
        1,
    );
    f.adt.inject("POST", "/query", AdtFault::Unavailable, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "fault-adt";
    let config = l4_twin(dir.path(), twin, &example_devices(), &example_hierarchy());
    let engine = engine(&f, &config).await;
    engine.deploy(None).await.expect("deploy despite faults");
    assert_eq!(f.adt.faults_left(), 0, "every fault was met");
    assert_eq!(f.adt.model_ids().len(), 6);
    assert_eq!(f.adt.twin_ids().len(), 5);
    assert_eq!(f.adt.relationships().len(), 4);
    f.adt.clear_log();
    engine.deploy(None).await.expect("redeploy");
    assert!(
        f.adt.mutating_calls().is_empty(),
        "{:?}",
        f.adt.mutating_calls()
    );
    f.adt
        .inject("DELETE", "/models/", AdtFault::DropAfterApply, 1);
    f.adt
        .inject("DELETE", "/digitaltwins/room-1", AdtFault::Throttle, 1);
    engine.destroy(None).await.expect("destroy despite faults");
    assert_eq!(f.adt.faults_left(), 0);
    assert!(f.adt.model_ids().is_empty() && f.adt.twin_ids().is_empty());
    assert!(support::twin_resources(&f.arm, twin).is_empty());
}
