//! The real `deployer` binary on an all-Azure twin against the test kit's stateful fakes of
//! Azure Resource Manager and the services it returns endpoints for (no ARM emulator exists):
//! validate, plan, deploy, a second deploy that changes nothing, info, SIGKILL at several depths
//! then resume, injected faults, and destroy down to an empty subscription.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, Fault};
use twin_testkit::fake_iot_hub::FakeIotHub;
use twin_testkit::fake_kudu::FakeKudu;

/// The fakes (ARM, the IoT Hub registry ARM's hubs point at, the Function App deployment
/// endpoint ARM's sites point at), served by their own runtime while the test drives the
/// binary synchronously.
struct Fakes {
    arm: FakeArm,
    hub: FakeIotHub,
    kudu: FakeKudu,
    _rt: tokio::runtime::Runtime,
}

impl Fakes {
    fn start(config: FakeArmConfig) -> Fakes {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (arm, hub, kudu) = rt.block_on(async {
            let arm = FakeArm::start(config).await.expect("fake ARM");
            let hub = FakeIotHub::start().await.expect("fake IoT Hub registry");
            arm.set_iot_hub_host(&hub.host);
            let kudu = FakeKudu::new(2, arm.function_sync());
            arm.serve_scm_with(kudu.hosts());
            (arm, hub, kudu)
        });
        Fakes {
            arm,
            hub,
            kudu,
            _rt: rt,
        }
    }

    /// Every resource id the fake holds under the twin's resource group (the group included).
    fn twin_resources(&self, twin: &str) -> Vec<String> {
        let group = format!(
            "/subscriptions/{}/resourcegroups/{twin}-rg",
            self.arm.subscription_id()
        )
        .to_ascii_lowercase();
        self.arm
            .ids()
            .into_iter()
            .filter(|id| id.to_ascii_lowercase().starts_with(&group))
            .collect()
    }
}

/// The layers on Azure in these tests: every layer the Azure provider implements up to L3;
/// L4 and L5 none (their data planes need the fake ADT and fake Grafana: twin-azure's
/// `fake_adt` and `fake_grafana_azure` tests cover them through the engine).
fn azure_layers() -> serde_json::Value {
    let implemented = twin_azure::provider::IMPLEMENTED;
    let mut providers = serde_json::Map::new();
    for layer in twin_config::Layer::IN_FILE_ORDER {
        let on = if implemented.contains(&layer)
            && !matches!(layer, twin_config::Layer::L4 | twin_config::Layer::L5)
        {
            "azure"
        } else {
            "none"
        };
        providers.insert(layer.key().to_string(), serde_json::json!(on));
    }
    providers.insert(
        "azure".into(),
        serde_json::json!({"location": "westeurope"}),
    );
    serde_json::Value::Object(providers)
}

fn write_twin(dir: &Path, twin: &str, devices: usize) {
    support::write_twin_with(dir, twin, devices, azure_layers())
}

fn deployer(fakes: &Fakes, dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
    c.arg("-C")
        .arg(dir)
        .args(args)
        .env("DEPLOYER_AZURE_ARM_URL", &fakes.arm.url)
        .env("DEPLOYER_AZURE_TOKEN", twin_testkit::fake_arm::fake_token())
        .env("AZURE_SUBSCRIPTION_ID", fakes.arm.subscription_id())
        // The real handler binary, packaged as deploy packages it.
        .env("DEPLOYER_PREBUILT_FUNCTIONS", twin_testkit::function_zips())
        .stdin(Stdio::null());
    c
}

fn run(fakes: &Fakes, dir: &Path, args: &[&str]) -> Output {
    deployer(fakes, dir, args).output().expect("run deployer")
}

fn json_of(out: &Output, what: &str) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} --json is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Starts `args` and kills it with SIGKILL once its journal has `lines` lines.
fn run_and_kill(fakes: &Fakes, dir: &Path, args: &[&str], journal: &Path, lines: usize) {
    support::run_and_kill(deployer(fakes, dir, args), journal, lines)
}

/// What an uninterrupted, fault-free deploy of the same twin makes (names are deterministic,
/// so any duplicate or leftover shows as a difference).
fn clean_deploy(twin: &str, devices: usize) -> Vec<String> {
    let fakes = Fakes::start(FakeArmConfig::default());
    let dir = tempfile::tempdir().expect("tempdir");
    write_twin(dir.path(), twin, devices);
    json_of(
        &run(&fakes, dir.path(), &["deploy", "-y", "--json"]),
        "clean deploy",
    );
    fakes.twin_resources(twin)
}

fn assert_no_changes(report: &serde_json::Value) {
    assert_eq!(
        (&report["created"], &report["updated"], &report["deleted"]),
        (
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "a second deploy changed something: {report}"
    );
}

#[test]
fn fake_arm_all_azure_twin_validates_plans_deploys_idempotently_and_destroys_to_nothing() {
    let fakes = Fakes::start(FakeArmConfig::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "az-e2e";
    write_twin(dir.path(), twin, 3);

    let valid = json_of(
        &run(&fakes, dir.path(), &["validate", "--json"]),
        "validate",
    );
    assert_eq!(valid["valid"], true, "{valid}");

    let plan = json_of(&run(&fakes, dir.path(), &["plan", "--json"]), "plan");
    // The estimate comes with the plan: IoT Hub S1 alone is a whole unit a month.
    assert!(
        plan["cost"]["estimate"]["total_usd"]
            .as_f64()
            .is_some_and(|t| t >= 25.0),
        "{}",
        plan["cost"]
    );
    let plan_text = plan.to_string();
    assert!(
        plan_text.contains("azure_resource_group"),
        "plan names the group: {plan_text}"
    );
    assert!(
        fakes.twin_resources(twin).is_empty(),
        "plan created something: {:?}",
        fakes.arm.ids()
    );

    let deployed = json_of(
        &run(&fakes, dir.path(), &["deploy", "-y", "--json"]),
        "deploy",
    );
    let created = deployed["created"].as_u64().expect("created count");
    assert!(created >= 5, "{deployed}");
    let ids = fakes.twin_resources(twin);
    let count = |part: &str| ids.iter().filter(|i| i.contains(part)).count();
    // The identity's roles (app storage, Application Insights, cold/archive storage) and the
    // deployer's on the hub; the identity's Cosmos data role.
    assert_eq!(
        count("/providers/microsoft.authorization/roleassignments/"),
        4,
        "{ids:#?}"
    );
    assert_eq!(count("/sqlroleassignments/"), 1, "{ids:#?}");
    // One app: the site, its two publishing policies, app settings, web config, package tag
    // and six functions.
    assert_eq!(count("/providers/microsoft.web/sites/"), 12, "{ids:#?}");
    assert_eq!(
        count("/providers/microsoft.devices/iothubs/"),
        2,
        "{ids:#?}"
    );

    let mut devices = fakes.hub.device_ids();
    devices.sort();
    assert_eq!(
        devices,
        ["dev-0", "dev-1", "dev-2"],
        "one identity per device"
    );
    let site = fakes
        .twin_resources(twin)
        .into_iter()
        .find(|i| i.contains("/providers/microsoft.web/sites/") && i.matches('/').count() == 8)
        .expect("the Function App");
    let app = site.rsplit('/').next().expect("site name").to_string();
    assert_eq!(fakes.kudu.uploads(&app), 1, "the package was deployed once");
    let functions: Vec<String> = fakes
        .arm
        .ids()
        .into_iter()
        .filter(|i| i.starts_with(&format!("{site}/functions/")))
        .filter_map(|i| i.rsplit('/').next().map(str::to_string))
        .collect();
    for f in [
        "dispatcher",
        "processor",
        "persister",
        "hot-reader",
        "hot-to-cold-mover",
        "cold-to-archive-mover",
    ] {
        assert!(functions.iter().any(|g| g == f), "{f} not in {functions:?}");
    }
    let simulator = std::fs::read_to_string(
        dir.path()
            .join(".deployer")
            .join("simulator")
            .join("config.json"),
    )
    .expect("deploy wrote the simulator's IoT Hub profile");
    assert!(simulator.contains("\"azure\""), "{simulator}");

    fakes.arm.clear_log();
    fakes.hub.clear_log();
    let again = json_of(
        &run(&fakes, dir.path(), &["deploy", "-y", "--json"]),
        "deploy",
    );
    assert_no_changes(&again);
    assert!(
        fakes.arm.mutating_calls().is_empty(),
        "a second deploy wrote to ARM: {:?}",
        fakes.arm.mutating_calls()
    );
    assert!(
        fakes.hub.mutating_calls().is_empty(),
        "a second deploy wrote to the device registry: {:?}",
        fakes.hub.mutating_calls()
    );
    assert_eq!(fakes.kudu.uploads(&app), 1, "no second upload");

    let info = json_of(&run(&fakes, dir.path(), &["info", "--json"]), "info");
    let rows = info.as_array().expect("info rows");
    assert_eq!(rows.len() as u64, created, "{info}");
    for row in rows {
        assert_eq!(row["provider"], "azure", "{row}");
        assert_eq!(row["status"], "ok", "{row}");
    }

    // For people: the hub's host and the hot-reader's URL as ARM reported them, first.
    let shown = run(&fakes, dir.path(), &["info"]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown = String::from_utf8_lossy(&shown.stdout).into_owned();
    let top: Vec<&str> = shown.lines().take(2).collect();
    assert!(top[0].starts_with("IoT endpoint (azure):"), "{shown}");
    assert!(
        top[1].starts_with("Hot-reader URL (azure): https://")
            && top[1].ends_with("/api/hot-reader")
            && !top[1].contains("code="),
        "the function URL without a key: {shown}"
    );

    let state = std::fs::read_to_string(dir.path().join(".deployer").join(format!("{twin}.json")))
        .expect("the state file");
    assert!(
        !state.contains(&twin_testkit::fake_arm::fake_token()),
        "the token reached the state file"
    );

    let gone = json_of(
        &run(&fakes, dir.path(), &["destroy", "-y", "--json"]),
        "destroy",
    );
    assert_eq!(gone["deleted"].as_u64(), Some(created), "{gone}");
    assert!(
        fakes.twin_resources(twin).is_empty(),
        "destroy left {:?}",
        fakes.twin_resources(twin)
    );
    assert!(
        fakes.hub.device_ids().is_empty(),
        "destroy left device identities"
    );
}

#[test]
fn fake_arm_kill_9_at_several_depths_then_deploy_completes_and_destroy_leaves_nothing() {
    // Operations take a few polls, so a kill lands while some are still running.
    let fakes = Fakes::start(FakeArmConfig {
        polls: 3,
        ..FakeArmConfig::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "az-kill";
    write_twin(dir.path(), twin, 2);
    let journal = dir.path().join(".deployer").join(format!("{twin}.journal"));
    for lines in [1, 3, 6] {
        run_and_kill(&fakes, dir.path(), &["deploy", "-y", "-q"], &journal, lines);
    }
    let deployed = json_of(
        &run(&fakes, dir.path(), &["deploy", "-y", "--json"]),
        "deploy",
    );
    let again = json_of(
        &run(&fakes, dir.path(), &["deploy", "-y", "--json"]),
        "deploy",
    );
    assert_no_changes(&again);
    assert!(deployed["created"].as_u64().is_some(), "{deployed}");
    assert_eq!(
        fakes.twin_resources(twin),
        clean_deploy(twin, 2),
        "after the kills the twin has exactly what an uninterrupted deploy makes"
    );
    // A destroy killed midway, then finished.
    run_and_kill(&fakes, dir.path(), &["destroy", "-y", "-q"], &journal, 2);
    let out = run(&fakes, dir.path(), &["destroy", "-y", "--json"]);
    json_of(&out, "destroy");
    assert!(
        fakes.twin_resources(twin).is_empty(),
        "destroy left {:?}",
        fakes.twin_resources(twin)
    );
}

#[test]
fn fake_arm_throttling_busy_and_server_errors_converge_through_the_binary() {
    let fakes = Fakes::start(FakeArmConfig::default());
    for (fault, times) in [
        (
            Fault::Throttle {
                retry_after_secs: 1,
            },
            2,
        ),
        (Fault::Busy, 2),
        (Fault::ServerError, 2),
        (Fault::DropAfterApply, 2),
    ] {
        fakes.arm.inject("PUT", "/providers/", fault, times);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "az-faults";
    write_twin(dir.path(), twin, 2);
    let deployed = json_of(
        &run(&fakes, dir.path(), &["deploy", "-y", "--json"]),
        "deploy",
    );
    assert_eq!(fakes.arm.faults_left(), 0, "every injected fault was met");
    let again = json_of(
        &run(&fakes, dir.path(), &["deploy", "-y", "--json"]),
        "deploy",
    );
    assert_no_changes(&again);
    assert!(deployed["created"].as_u64().is_some(), "{deployed}");
    assert_eq!(
        fakes.twin_resources(twin),
        clean_deploy(twin, 2),
        "after the faults the twin has exactly what a fault-free deploy makes"
    );
    json_of(
        &run(&fakes, dir.path(), &["destroy", "-y", "--json"]),
        "destroy",
    );
    assert!(fakes.twin_resources(twin).is_empty());
}

/// The names in a package zip.
fn entries_of(zip: &[u8]) -> Vec<String> {
    let archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
    archive.file_names().map(str::to_string).collect()
}

#[test]
fn fake_arm_a_device_s_own_processor_crate_ships_in_the_app_package_and_leaves_with_it() {
    let fakes = Fakes::start(FakeArmConfig::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "own-az";
    write_twin(dir.path(), twin, 2);
    let devices = dir.path().join("config_iot_devices.json");
    let with_crate = serde_json::json!([
        {"id": "dev-0", "properties": [{"name": "temperature", "dataType": "DOUBLE"}],
         "processor": "fahrenheit-processor"},
        {"id": "dev-1", "properties": [{"name": "temperature", "dataType": "DOUBLE"}]}
    ]);
    std::fs::write(&devices, with_crate.to_string()).expect("devices");

    let out = run(&fakes, dir.path(), &["validate"]);
    assert!(
        out.status.success(),
        "an own processor crate validates on Azure: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_of(
        &run(&fakes, dir.path(), &["deploy", "-y", "--json"]),
        "deploy",
    );
    let site = fakes
        .twin_resources(twin)
        .into_iter()
        .find(|i| i.contains("/providers/microsoft.web/sites/") && i.matches('/').count() == 8)
        .expect("the Function App");
    let app = site.rsplit('/').next().expect("site name").to_string();
    let package = fakes.kudu.package(&app).expect("a deployed package");
    let names = entries_of(&package);
    assert!(
        names.iter().any(|n| n == "processors/fahrenheit-processor"),
        "{names:?}"
    );
    let catalogue: serde_json::Value = {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&package)).expect("zip");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut archive.by_name("catalogue.json").expect("catalogue"),
            &mut text,
        )
        .expect("read");
        serde_json::from_str(&text).expect("json")
    };
    assert_eq!(
        catalogue["devices"]["dev-0"]["processor"], "fahrenheit-processor",
        "{catalogue}"
    );
    assert!(
        catalogue["devices"]["dev-1"].get("processor").is_none(),
        "{catalogue}"
    );
    assert_no_changes(&json_of(
        &run(&fakes, dir.path(), &["deploy", "-y", "--json"]),
        "second deploy",
    ));
    assert_eq!(fakes.kudu.uploads(&app), 1);

    // The device drops its crate: the package is rebuilt without the binary and redeployed.
    write_twin(dir.path(), twin, 2);
    let report = json_of(
        &run(&fakes, dir.path(), &["deploy", "-y", "--json"]),
        "redeploy",
    );
    assert_eq!(
        report["updated"].as_u64(),
        Some(1),
        "only the package changes: {report}"
    );
    assert_eq!(fakes.kudu.uploads(&app), 2);
    let names = entries_of(&fakes.kudu.package(&app).expect("package"));
    assert!(
        !names.iter().any(|n| n.starts_with("processors/")),
        "{names:?}"
    );

    json_of(
        &run(&fakes, dir.path(), &["destroy", "-y", "--json"]),
        "destroy",
    );
    assert!(
        fakes.twin_resources(twin).is_empty(),
        "{:?}",
        fakes.twin_resources(twin)
    );
}
