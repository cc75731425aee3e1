//! L2 on Azure (the Flex Consumption Function App) through the engine against the test kit's
//! fake ARM and fake deployment endpoint (no emulator exists for either): what a deploy
//! creates and how, a no-op second deploy, a new package uploaded once, app-setting drift
//! fixed with others' settings kept, a failed deployment retried, dropped connections after a
//! change was applied, and destroy.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{group_id, twin_resources};
use twin_azure::l2::{AppPackage, StaticPackage};
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{Engine, Event, EventSink};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, Fault};
use twin_testkit::fake_kudu::FakeKudu;

fn write_twin(dir: &Path, twin: &str) -> Arc<TwinConfig> {
    // L2 alone goes on Azure.
    support::write_twin(dir, twin, &[Layer::L2])
}

/// A stand-in package: a handler "binary", host.json and one function.json per function.
fn package(version: &str) -> AppPackage {
    support::try_package(
        version,
        &["dispatcher", "persister", "processor"],
        Some(br#"{"version":"2.0","customHandler":{"description":{"defaultExecutablePath":"handler"}}}"#),
    )
    .expect("zip")
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
    let arm = support::start_arm(FakeArmConfig::default()).await;
    let kudu = support::serve_kudu(&arm, 2);
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
    let provider = support::provider(fake, config)
        .await
        .with_app_package(Arc::new(StaticPackage(pkg)), support::polling());
    support::engine_with(config, Arc::new(provider), support::retry(deadline), events)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_app_boundary_secret_syncs_into_app_settings_rotates_and_never_reaches_state() {
    use twin_azure::boundary_secret::AppSettingsSecretStore;
    use twin_functions::boundary::{
        rotate, sync, BoundarySecret, BoundarySecretStore, InMemorySecretStore, RotationStep,
        SyncOutcome,
    };
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "sec-twin";
    let config = write_twin(dir.path(), twin);
    let engine = engine(&f.arm, &config, package("v1"), Arc::default()).await;
    engine.deploy(None).await.expect("deploy");

    let group = twin_config::names::resource_group(twin);
    let receiver = AppSettingsSecretStore::hot_to_cold(
        support::client(&f.arm),
        &group,
        &app_name(&f.arm, twin),
    );
    // The sender's store stands in for Secrets Manager (its own moto test covers it).
    let first = BoundarySecret::generate();
    let sender = InMemorySecretStore::new("sender", Some(first.clone()));
    assert_eq!(receiver.current().await.expect("reads"), None);
    assert_eq!(
        sync(&sender, &receiver).await.expect("syncs"),
        SyncOutcome::Installed
    );
    assert_eq!(
        receiver.current().await.expect("reads"),
        Some(first.clone())
    );
    assert_eq!(
        sync(&sender, &receiver).await.expect("syncs"),
        SyncOutcome::InStep,
        "a second sync changes nothing"
    );
    let settings = || {
        f.arm
            .resource(&settings_id(&f.arm, twin))
            .expect("settings")["properties"]
            .clone()
    };
    assert_eq!(settings()["BOUNDARY_SECRET_HOT_TO_COLD"], first.encoded());
    assert_eq!(settings()["TWIN_NAME"], twin, "the other settings are kept");

    // A redeploy neither changes nor removes the secret, and the state never holds it.
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert_eq!(settings()["BOUNDARY_SECRET_HOT_TO_COLD"], first.encoded());
    assert!(!state_text(dir.path()).contains(&first.encoded()));

    // Rotation: at each step the app accepts what the sender signs with.
    let new = BoundarySecret::generate();
    let mut steps = Vec::new();
    rotate(&sender, &receiver, &new, &mut |step| steps.push(step))
        .await
        .expect("rotates");
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert!(matches!(steps[1], RotationStep::StagedOnReceiver));
    assert!(
        settings().get("BOUNDARY_SECRET_HOT_TO_COLD_NEXT").is_none(),
        "the next secret is promoted, not left staged"
    );
    assert_eq!(receiver.current().await.expect("reads"), Some(new.clone()));
    assert_eq!(receiver.next().await.expect("reads"), None);

    let gone = engine.destroy(None).await.expect("destroy");
    assert_eq!(gone.deleted, 14, "{gone:?}");
    assert!(twin_resources(&f.arm, twin).is_empty(), "{:?}", f.arm.ids());
    assert!(
        receiver.current().await.is_err(),
        "the secret went with the app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_app_a_notifying_rule_deploys_its_topic_role_and_settings_heals_drift_and_destroys(
) {
    use twin_events::{Action, Condition, Fire, Rule};
    let f = fakes().await;
    f.arm
        .set_event_topic_endpoint("http://127.0.0.1:9/api/events");
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "ev-twin";
    let mut config = (*write_twin(dir.path(), twin)).clone();
    config.events = vec![Rule {
        key: "hot".into(),
        description: None,
        condition: Condition::parse("room.s-1.temperature > DOUBLE(30)").expect("condition"),
        action: Action::Notification {
            message: serde_json::json!("too hot"),
        },
        fire: Fire::OnChange,
    }];
    let config = Arc::new(config);
    let engine = engine(&f.arm, &config, package("v1"), Arc::default()).await;
    let report = engine.deploy(None).await.expect("deploy");
    // L2's fourteen, the topic and the identity's EventGrid Data Sender role on it.
    assert_eq!(report.created, 16, "{report:?}");
    let topic_id = format!(
        "{}/providers/Microsoft.EventGrid/topics/{twin}-events",
        group_id(&f.arm, twin)
    );
    let topic = f.arm.resource(&topic_id).expect("the topic");
    assert_eq!(topic["properties"]["disableLocalAuth"], true, "{topic:#}");
    let prefix = format!("{topic_id}/providers/Microsoft.Authorization/roleAssignments/")
        .to_ascii_lowercase();
    let sender = f.arm.ids().into_iter().any(|i| {
        i.to_ascii_lowercase().starts_with(&prefix)
            && f.arm.resource(&i).is_some_and(|r| {
                r.pointer("/properties/roleDefinitionId")
                    .and_then(|v| v.as_str())
                    .is_some_and(|d| d.ends_with("/d5a91429-5739-47e2-a06b-3470a27159e7"))
            })
    });
    assert!(
        sender,
        "EventGrid Data Sender on the topic: {:?}",
        f.arm.ids()
    );
    let s = f
        .arm
        .resource(&settings_id(&f.arm, twin))
        .expect("settings")["properties"]
        .clone();
    // The endpoint ARM returned, not one rebuilt from the name.
    assert_eq!(
        s["EVENT_TOPIC_ENDPOINT"], "http://127.0.0.1:9/api/events",
        "{s:#}"
    );
    let rules: Vec<Rule> =
        serde_json::from_str(s["EVENT_RULES"].as_str().expect("EVENT_RULES")).expect("rules");
    assert_eq!(rules[0].key, "hot");
    assert!(s.get("IOTHUB_HOSTNAME").is_none(), "no rule sends feedback");

    f.arm.clear_log();
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert!(changes(&f.arm).is_empty(), "{:?}", changes(&f.arm));

    // Someone turns key authentication back on: the next deploy turns it off again.
    let mut drifted = topic.clone();
    drifted["properties"]["disableLocalAuth"] = serde_json::json!(false);
    f.arm.insert(&topic_id, drifted);
    let healed = engine.deploy(None).await.expect("deploy after drift");
    assert_eq!(healed.updated, 1, "{healed:?}");
    assert_eq!(
        f.arm.resource(&topic_id).expect("topic")["properties"]["disableLocalAuth"],
        true
    );

    let gone = engine.destroy(None).await.expect("destroy");
    assert_eq!(gone.deleted, 16, "{gone:?}");
    assert!(twin_resources(&f.arm, twin).is_empty(), "{:?}", f.arm.ids());
}
