//! L2 on Azure (the Flex Consumption Function App) through the engine against the test kit's
//! fake ARM and fake deployment endpoint (no emulator exists for either): what a deploy
//! creates and how, a no-op second deploy, a new package uploaded once, app-setting drift
//! fixed with others' settings kept, a failed deployment retried, dropped connections after a
//! change was applied, and destroy.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_azure::l2::package::DeployPolling;
use twin_azure::l2::{AppPackage, StaticPackage};
use twin_azure::{ArmClient, ArmOptions, Auth, AzureProvider};
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{Engine, EngineOptions, Event, EventSink, Provider, RetryPolicy};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, Fault};
use twin_testkit::fake_kudu::FakeKudu;

fn write_twin(dir: &Path, twin: &str) -> Arc<TwinConfig> {
    let files = [
        (
            "config.json",
            serde_json::json!({"digital_twin_name": twin, "hot_storage_size_in_days": 30,
                "cold_storage_size_in_days": 90, "mode": "DEBUG"}),
        ),
        (
            "config_iot_devices.json",
            serde_json::json!([{"id": "sensor-0",
                "properties": [{"name": "temperature", "dataType": "DOUBLE"}]}]),
        ),
        (
            "config_providers.json",
            serde_json::json!({"layer_1_provider": "aws", "layer_2_provider": "aws",
                "layer_3_hot_provider": "aws", "layer_3_cold_provider": "aws",
                "layer_3_archive_provider": "aws", "layer_4_provider": "none",
                "layer_5_provider": "none", "aws": {"region": "us-east-1"}}),
        ),
    ];
    for (name, v) in files {
        std::fs::write(dir.join(name), v.to_string()).expect("write config");
    }
    // twin-config does not accept Azure layers yet: L2 alone goes on Azure in memory.
    let mut config = twin_config::load_dir(dir).expect("valid twin config");
    for l in Layer::ALL {
        config.providers.set(l, ProviderName::None);
    }
    config.providers.set(Layer::L2, ProviderName::Azure);
    config.providers.azure.location = Some("westeurope".into());
    Arc::new(config)
}

/// A stand-in package: a handler "binary", host.json and one function.json per function.
fn package(version: &str) -> AppPackage {
    let functions = ["dispatcher", "persister", "processor"];
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    zip.start_file("handler", opts).expect("zip");
    zip.write_all(format!("#!handler {version}").as_bytes())
        .expect("zip");
    zip.start_file("host.json", opts).expect("zip");
    zip.write_all(
        br#"{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"}}}"#,
    )
    .expect("zip");
    for f in functions {
        zip.start_file(format!("{f}/function.json"), opts)
            .expect("zip");
        zip.write_all(br#"{"bindings":[]}"#).expect("zip");
    }
    let bytes = zip.finish().expect("zip").into_inner();
    AppPackage {
        bytes,
        hash: format!("hash-{version}"),
        functions: functions.iter().map(|f| f.to_string()).collect(),
    }
}

/// The retryable errors the engine reported.
#[derive(Default)]
struct Retries(Mutex<Vec<String>>);

impl EventSink for Retries {
    fn emit(&self, event: Event) {
        if let Event::Retrying { error, .. } = event {
            self.0.lock().expect("lock").push(error);
        }
    }
}

struct Fakes {
    arm: FakeArm,
    kudu: FakeKudu,
}

async fn fakes() -> Fakes {
    let arm = FakeArm::start(FakeArmConfig::default())
        .await
        .expect("fake ARM");
    let kudu = FakeKudu::new(2, arm.function_sync());
    arm.serve_scm_with(kudu.hosts());
    Fakes { arm, kudu }
}

async fn engine(
    fake: &FakeArm,
    config: &Arc<TwinConfig>,
    pkg: AppPackage,
    events: Arc<Retries>,
) -> Engine {
    engine_until(fake, config, pkg, events, Duration::from_secs(30)).await
}

/// An engine that gives up on a resource after `deadline` of retries.
async fn engine_until(
    fake: &FakeArm,
    config: &Arc<TwinConfig>,
    pkg: AppPackage,
    events: Arc<Retries>,
    deadline: Duration,
) -> Engine {
    let arm = ArmClient::new(
        &fake.url,
        fake.subscription_id(),
        Auth::StaticToken(twin_testkit::fake_arm::fake_token()),
        ArmOptions {
            poll_min: Duration::from_millis(5),
            poll_max: Duration::from_millis(50),
            operation_deadline: Duration::from_secs(10),
        },
    )
    .expect("client");
    let provider = AzureProvider::with_client(Arc::new(arm), &config.providers.azure)
        .await
        .expect("provider")
        .with_app_package(
            Arc::new(StaticPackage(pkg)),
            DeployPolling {
                min: Duration::from_millis(5),
                max: Duration::from_millis(50),
                deadline: Duration::from_secs(10),
            },
        );
    Engine::new(
        config.clone(),
        vec![Arc::new(provider) as Arc<dyn Provider>],
        EngineOptions {
            concurrency: 8,
            retry: RetryPolicy {
                base: Duration::from_millis(20),
                cap: Duration::from_millis(200),
                deadline,
            },
        },
        events,
        CancellationToken::new(),
    )
}

fn group_id(fake: &FakeArm, twin: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{twin}-rg",
        fake.subscription_id()
    )
}

fn app_name(fake: &FakeArm, twin: &str) -> String {
    twin_config::names::azure_unique_name(twin, "func", fake.subscription_id())
}

fn site_id(fake: &FakeArm, twin: &str) -> String {
    format!(
        "{}/providers/Microsoft.Web/sites/{}",
        group_id(fake, twin),
        app_name(fake, twin)
    )
}

fn settings_id(fake: &FakeArm, twin: &str) -> String {
    format!("{}/config/appsettings", site_id(fake, twin))
}

fn twin_resources(fake: &FakeArm, twin: &str) -> Vec<String> {
    let g = group_id(fake, twin).to_ascii_lowercase();
    fake.ids()
        .into_iter()
        .filter(|i| *i == g || i.starts_with(&format!("{g}/")))
        .collect()
}

/// Calls that change something; the app settings' `list` is a POST that only reads.
fn changes(fake: &FakeArm) -> Vec<String> {
    fake.mutating_calls()
        .into_iter()
        .filter(|c| !c.ends_with("/config/appsettings/list"))
        .collect()
}

/// Everything the engine wrote under `.deployer`.
fn state_text(dir: &Path) -> String {
    let mut text = String::new();
    for e in std::fs::read_dir(dir.join(".deployer")).expect("state dir") {
        let p = e.expect("entry").path();
        if p.is_file() {
            text.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_app_deploy_creates_the_function_app_redeploys_nothing_and_destroys_everything() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "app-twin";
    let config = write_twin(dir.path(), twin);
    let pkg = package("v1");
    let engine = engine(&f.arm, &config, pkg.clone(), Arc::default()).await;

    let report = engine.deploy(None).await.expect("deploy");
    // group, identity, storage account, container, workspace, insights, plan, site, app
    // settings, two publishing policies, package, and the identity's two roles (Blob Data
    // Owner on the host storage, Monitoring Metrics Publisher on Application Insights)
    assert_eq!(report.created, 14, "{report:?}");
    let roles: Vec<String> = twin_resources(&f.arm, twin)
        .into_iter()
        .filter(|i| i.contains("/providers/microsoft.authorization/roleassignments/"))
        .collect();
    assert_eq!(roles.len(), 2, "{roles:?}");
    for role in &roles {
        let body = f.arm.resource(role).expect("role assignment");
        assert_eq!(
            body["properties"]["principalType"], "ServicePrincipal",
            "{body}"
        );
    }
    let app = app_name(&f.arm, twin);
    let g = group_id(&f.arm, twin);
    let identity_id =
        format!("{g}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{twin}-identity");
    let identity = f.arm.resource(&identity_id).expect("identity");
    let client_id = identity["properties"]["clientId"]
        .as_str()
        .expect("client id");

    let plan = f
        .arm
        .resource(&format!(
            "{g}/providers/Microsoft.Web/serverfarms/{twin}-plan"
        ))
        .expect("plan");
    assert_eq!(plan["sku"]["name"], "FC1");
    assert_eq!(plan["sku"]["tier"], "FlexConsumption");
    assert_eq!(plan["kind"], "functionapp");
    assert_eq!(plan["properties"]["reserved"], true);

    let site = f.arm.resource(&site_id(&f.arm, twin)).expect("site");
    assert_eq!(site["kind"], "functionapp,linux");
    assert_eq!(site["identity"]["type"], "UserAssigned");
    assert!(
        site["identity"]["userAssignedIdentities"]
            .get(&identity_id)
            .is_some(),
        "{site:#}"
    );
    assert_eq!(site["properties"]["httpsOnly"], true);
    let fac = &site["properties"]["functionAppConfig"];
    assert_eq!(fac["runtime"]["name"], "custom");
    let storage = &fac["deployment"]["storage"];
    assert_eq!(storage["type"], "blobContainer");
    let account = twin_config::names::function_storage_account_name(twin, f.arm.subscription_id());
    // The blob endpoint as the fake ARM reported it for the app's own account.
    assert_eq!(
        storage["value"],
        format!("https://{account}.blob.core.windows.net/app-package")
    );
    assert_eq!(storage["authentication"]["type"], "UserAssignedIdentity");
    assert_eq!(
        storage["authentication"]["userAssignedIdentityResourceId"],
        identity_id
    );
    let web = f
        .arm
        .resource(&format!("{}/config/web", site_id(&f.arm, twin)))
        .expect("web config");
    assert_eq!(web["properties"]["minTlsVersion"], "1.2");
    assert_eq!(web["properties"]["ftpsState"], "Disabled");
    for p in ["scm", "ftp"] {
        let policy = f
            .arm
            .resource(&format!(
                "{}/basicPublishingCredentialsPolicies/{p}",
                site_id(&f.arm, twin)
            ))
            .expect("policy");
        assert_eq!(policy["properties"]["allow"], false, "{p}");
    }
    let host = f
        .arm
        .resource(&format!(
            "{g}/providers/Microsoft.Storage/storageAccounts/{account}"
        ))
        .expect("host storage account");
    assert_eq!(host["properties"]["allowSharedKeyAccess"], false);
    assert_eq!(host["properties"]["minimumTlsVersion"], "TLS1_2");

    let insights = f
        .arm
        .resource(&format!(
            "{g}/providers/Microsoft.Insights/components/{twin}-insights"
        ))
        .expect("insights");
    assert_eq!(insights["kind"], "web");
    assert_eq!(insights["properties"]["DisableLocalAuth"], true);
    assert_eq!(
        insights["properties"]["WorkspaceResourceId"],
        format!("{g}/providers/Microsoft.OperationalInsights/workspaces/{twin}-logs")
    );
    let connection = insights["properties"]["ConnectionString"]
        .as_str()
        .expect("connection string");

    let settings = f
        .arm
        .resource(&settings_id(&f.arm, twin))
        .expect("settings");
    let s = &settings["properties"];
    assert_eq!(s["AzureWebJobsStorage__accountName"], account);
    assert_eq!(s["AzureWebJobsStorage__credential"], "managedidentity");
    assert_eq!(s["AzureWebJobsStorage__clientId"], client_id);
    assert_eq!(s["AZURE_CLIENT_ID"], client_id);
    assert_eq!(s["APPLICATIONINSIGHTS_CONNECTION_STRING"], connection);
    assert_eq!(
        s["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"],
        format!("Authorization=AAD;ClientId={client_id}")
    );
    assert_eq!(s["TWIN_NAME"], twin);
    assert_eq!(s["HOT_STORAGE_DAYS"], "30");
    assert!(
        s.get("FUNCTIONS_WORKER_RUNTIME").is_none(),
        "Flex refuses it"
    );

    assert_eq!(f.kudu.package(&app).as_deref(), Some(pkg.bytes.as_slice()));
    assert_eq!(f.kudu.uploads(&app), 1);
    let dispatcher = format!("{}/functions/dispatcher", site_id(&f.arm, twin));
    assert!(f.arm.resource(&dispatcher).is_some(), "{:?}", f.arm.ids());
    let state = state_text(dir.path());
    assert!(
        state.contains(&dispatcher),
        "the dispatcher's function id is an output"
    );
    assert!(
        !state.contains(connection),
        "the connection string stays out of the state"
    );

    f.arm.clear_log();
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert!(changes(&f.arm).is_empty(), "{:?}", changes(&f.arm));
    assert_eq!(f.kudu.uploads(&app), 1, "no re-upload");

    let gone = engine.destroy(None).await.expect("destroy");
    assert_eq!(gone.deleted, 14, "{gone:?}");
    assert!(twin_resources(&f.arm, twin).is_empty(), "{:?}", f.arm.ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_app_a_new_package_is_uploaded_exactly_once() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "pkg-twin";
    let config = write_twin(dir.path(), twin);
    let app = app_name(&f.arm, twin);
    engine(&f.arm, &config, package("v1"), Arc::default())
        .await
        .deploy(None)
        .await
        .expect("deploy v1");
    let v2 = package("v2");
    f.arm.clear_log();
    let next = engine(&f.arm, &config, v2.clone(), Arc::default()).await;
    let report = next.deploy(None).await.expect("deploy v2");
    assert_eq!((report.created, report.updated), (0, 1), "{report:?}");
    assert_eq!(f.kudu.uploads(&app), 2);
    assert_eq!(f.kudu.package(&app).as_deref(), Some(v2.bytes.as_slice()));
    // The one ARM change: recording the new hash on the site.
    let calls = changes(&f.arm);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].ends_with("/providers/Microsoft.Resources/tags/default"),
        "{calls:?}"
    );
    f.arm.clear_log();
    next.deploy(None).await.expect("deploy v2 again");
    assert!(changes(&f.arm).is_empty(), "{:?}", changes(&f.arm));
    assert_eq!(f.kudu.uploads(&app), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_app_setting_drift_is_fixed_and_settings_of_others_are_kept() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "drift-twin";
    let config = write_twin(dir.path(), twin);
    let engine = engine(&f.arm, &config, package("v1"), Arc::default()).await;
    engine.deploy(None).await.expect("deploy");
    let id = settings_id(&f.arm, twin);
    let mut settings = f.arm.resource(&id).expect("settings");
    let props = settings["properties"].as_object_mut().expect("object");
    props.insert("TWIN_NAME".into(), serde_json::json!("someone-changed-it"));
    props.remove("AzureWebJobsStorage__clientId");
    props.insert("SOMEONE_ELSES".into(), serde_json::json!("keep me"));
    f.arm.insert(&id, settings);

    let fixed = engine.deploy(None).await.expect("deploy after drift");
    assert_eq!(fixed.updated, 1, "{fixed:?}");
    let s = f.arm.resource(&id).expect("settings")["properties"].clone();
    assert_eq!(s["TWIN_NAME"], twin);
    assert!(s["AzureWebJobsStorage__clientId"].is_string(), "{s:#}");
    assert_eq!(s["SOMEONE_ELSES"], "keep me");
    assert_eq!(f.kudu.uploads(&app_name(&f.arm, twin)), 1, "no re-upload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_app_a_failed_deployment_names_app_and_deployment_and_converges() {
    let f = fakes().await;
    f.kudu.fail_next(1);
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "fail-twin";
    let config = write_twin(dir.path(), twin);
    let retries = Arc::new(Retries::default());
    let pkg = package("v1");
    let engine = engine(&f.arm, &config, pkg.clone(), retries.clone()).await;
    engine.deploy(None).await.expect("deploy converges");
    let app = app_name(&f.arm, twin);
    let failed = f.kudu.failed_deployments(&app);
    assert_eq!(failed.len(), 1, "{failed:?}");
    let errors = retries.0.lock().expect("lock").clone();
    assert!(
        errors
            .iter()
            .any(|e| e.contains(&app) && e.contains(&failed[0]) && e.contains("DeploymentFailed")),
        "{errors:#?}"
    );
    assert_eq!(f.kudu.uploads(&app), 2);
    assert_eq!(f.kudu.package(&app).as_deref(), Some(pkg.bytes.as_slice()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_app_connections_dropped_after_apply_resume_without_duplicates() {
    let f = fakes().await;
    // The site's web config and the package's record are applied, but their answers are
    // lost. (Not the site's own PUT: the fake settles a long-running PUT only when its
    // operation is polled, which a dropped answer never is.)
    f.arm.inject("PUT", "/config/web", Fault::DropAfterApply, 1);
    f.arm
        .inject("PUT", "/tags/default", Fault::DropAfterApply, 1);
    f.arm
        .inject("PUT", "/config/appsettings", Fault::ServerError, 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "crash-twin";
    let config = write_twin(dir.path(), twin);
    let engine = engine(&f.arm, &config, package("v1"), Arc::default()).await;
    let report = engine.deploy(None).await.expect("deploy despite drops");
    assert_eq!(report.created, 14, "{report:?}");
    assert_eq!(f.arm.faults_left(), 0, "every fault was met");
    let app = app_name(&f.arm, twin);
    assert_eq!(
        f.kudu.uploads(&app),
        1,
        "the lost answer did not cause a re-upload"
    );
    f.arm.clear_log();
    engine.deploy(None).await.expect("second deploy");
    assert!(changes(&f.arm).is_empty(), "{:?}", changes(&f.arm));
    engine.destroy(None).await.expect("destroy");
    assert!(twin_resources(&f.arm, twin).is_empty(), "{:?}", f.arm.ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_app_a_deployment_that_keeps_failing_is_an_error_and_a_later_run_resumes() {
    let f = fakes().await;
    f.kudu.fail_next(u32::MAX);
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "resume-twin";
    let config = write_twin(dir.path(), twin);
    let pkg = package("v1");
    let failing = engine_until(
        &f.arm,
        &config,
        pkg.clone(),
        Arc::default(),
        Duration::from_secs(1),
    )
    .await;
    let err = failing
        .deploy(None)
        .await
        .expect_err("the deployment keeps failing");
    let app = app_name(&f.arm, twin);
    let text = format!("{err:?}");
    let failed = f.kudu.failed_deployments(&app);
    assert!(!failed.is_empty());
    assert!(
        text.contains(&app)
            && text.contains("DeploymentFailed")
            && failed.iter().any(|d| text.contains(d.as_str())),
        "{text}"
    );
    assert_eq!(f.kudu.package(&app), None, "nothing was deployed");
    drop(failing);

    // Next run, from the state the failed one left: only the package is left to do.
    f.kudu.fail_next(0);
    f.arm.clear_log();
    let uploads = f.kudu.uploads(&app);
    let resumed = engine(&f.arm, &config, pkg.clone(), Arc::default()).await;
    let report = resumed.deploy(None).await.expect("resumed deploy");
    assert_eq!(report.created, 1, "{report:?}");
    assert_eq!(f.kudu.uploads(&app), uploads + 1);
    assert_eq!(f.kudu.package(&app).as_deref(), Some(pkg.bytes.as_slice()));
    let calls = changes(&f.arm);
    assert_eq!(calls.len(), 1, "only the package's record: {calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_app_with_l3_on_azure_too_shares_the_group_and_identity() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "both-twin";
    let mut config = (*write_twin(dir.path(), twin)).clone();
    config.providers.set(Layer::L3Cold, ProviderName::Azure);
    config.providers.set(Layer::L3Archive, ProviderName::Azure);
    let config = Arc::new(config);
    let engine = engine(&f.arm, &config, package("v1"), Arc::default()).await;
    let report = engine.deploy(None).await.expect("deploy");
    // L2's fourteen, plus L3's account, its two containers and the identity's role on it;
    // one group, one identity.
    assert_eq!(report.created, 18, "{report:?}");
    let accounts: Vec<String> = twin_resources(&f.arm, twin)
        .into_iter()
        .filter(|i| {
            i.ends_with(&format!(
                "/storageaccounts/{}",
                twin_config::names::storage_account_name(twin, f.arm.subscription_id())
            ))
        })
        .collect();
    assert_eq!(accounts.len(), 1, "L3's own account: {accounts:?}");
    f.arm.clear_log();
    engine.deploy(None).await.expect("second deploy");
    assert!(changes(&f.arm).is_empty(), "{:?}", changes(&f.arm));
    engine.destroy(None).await.expect("destroy");
    assert!(twin_resources(&f.arm, twin).is_empty(), "{:?}", f.arm.ids());
}
