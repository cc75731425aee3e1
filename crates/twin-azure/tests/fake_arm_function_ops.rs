//! `lambda_invoke`, `lambda_logs` and `lambda_update` on Azure, through `AzureFunctionOps`,
//! after a real engine deploy of a twin with L2 and L3 (hot, cold, archive) on Azure, against
//! the test kit's fakes (no emulator exists for any of them): the fake ARM, the fake deployment
//! endpoint, a fake functions host (a stateful stand-in that checks keys and records calls; it
//! does not run the real handler) and a fake Application Insights query API.
//!
//! L1 stays off Azure here (its IoT Hub fakes are another test's): the dispatcher is therefore
//! refused as not on Azure, and the admin-API path is exercised with the movers.

mod support;

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::{client, polling};
use twin_azure::function_ops::AzureFunctionOps;
use twin_azure::l2::package::PackageDriver;
use twin_azure::l2::{AppPackage, StaticPackage};
use twin_azure::AzureProvider;
use twin_config::{Layer, TwinConfig};
use twin_engine::{Engine, FunctionOps, Provider};
use twin_testkit::fake_app_insights::{FakeAppInsights, Trace};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, Fault};
use twin_testkit::fake_functions_host::FakeFunctionsHost;
use twin_testkit::fake_kudu::FakeKudu;

const COSMOS: &str = "Microsoft.DocumentDB/databaseAccounts";
const FUNCTIONS: [&str; 5] = [
    "cold-to-archive-mover",
    "hot-reader",
    "hot-to-cold-mover",
    "persister",
    "processor",
];

fn write_twin(dir: &Path, twin: &str) -> Arc<TwinConfig> {
    // L2 and L3 go on Azure.
    support::write_twin(
        dir,
        twin,
        &[Layer::L2, Layer::L3Hot, Layer::L3Cold, Layer::L3Archive],
    )
}

/// A stand-in package with the app's five functions (L2 and L3 on Azure).
fn package(version: &str) -> AppPackage {
    support::try_package(version, &FUNCTIONS, None).expect("zip")
}

struct Fakes {
    arm: FakeArm,
    kudu: FakeKudu,
    host: FakeFunctionsHost,
    insights: FakeAppInsights,
}

async fn fakes() -> Fakes {
    let arm = support::start_arm(FakeArmConfig {
        provisioning: HashMap::from([(COSMOS.to_string(), Duration::from_millis(20))]),
        endpoints: HashMap::from([(COSMOS.to_string(), "https://127.0.0.1:8081/".to_string())]),
        ..FakeArmConfig::default()
    })
    .await;
    let kudu = support::serve_kudu(&arm, 1);
    let host = FakeFunctionsHost::new();
    arm.serve_functions_with(host.hosting());
    let insights = FakeAppInsights::start().await.expect("fake insights");
    Fakes {
        arm,
        kudu,
        host,
        insights,
    }
}

async fn provider(fake: &FakeArm, config: &TwinConfig, pkg: AppPackage) -> AzureProvider {
    support::provider(fake, config)
        .await
        .with_app_package(Arc::new(StaticPackage(pkg)), polling())
}

async fn engine(fake: &FakeArm, config: &Arc<TwinConfig>, pkg: AppPackage) -> Engine {
    support::engine(
        config,
        Arc::new(provider(fake, config, pkg).await),
        support::retry(Duration::from_secs(30)),
    )
}

/// The commands as a test drives them: their own client and package driver, this package.
fn ops(f: &Fakes, pkg: AppPackage) -> AzureFunctionOps {
    let arm = client(&f.arm);
    AzureFunctionOps::new(
        arm.clone(),
        "westeurope",
        None,
        Some(Arc::new(StaticPackage(pkg))),
        Arc::new(PackageDriver::new(arm, polling())),
    )
    .with_insights_url(f.insights.url.clone())
}

/// A deployed twin: its config (kept with its directory) and app name.
async fn deployed(f: &Fakes, twin: &str) -> (tempfile::TempDir, Arc<TwinConfig>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_twin(dir.path(), twin);
    engine(&f.arm, &config, package("v1"))
        .await
        .deploy(None)
        .await
        .expect("deploy");
    let app = twin_config::names::azure_unique_name(twin, "func", f.arm.subscription_id());
    (dir, config, app)
}

fn site_id(f: &Fakes, twin: &str, app: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{twin}-rg/providers/Microsoft.Web/sites/{app}",
        f.arm.subscription_id()
    )
}

/// Calls that change something; the app settings' `list` and `listkeys` are POSTs that read.
fn changes(fake: &FakeArm) -> Vec<String> {
    fake.mutating_calls()
        .into_iter()
        .filter(|c| !c.ends_with("/list") && !c.ends_with("/listkeys"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_functions_invoke_http_functions_return_their_output_and_keys_stay_secret() {
    let f = fakes().await;
    let (_dir, config, app) = deployed(&f, "inv-twin").await;
    f.host
        .respond("persister", 200, r#"{"stored":1,"table":"hot"}"#);
    let ops = ops(&f, package("v1"));
    let payload = r#"{"iotDeviceId":"sensor-0","temperature":21.5}"#;
    let r = ops
        .invoke(&config, "persister", payload, false)
        .await
        .expect("invoke");
    assert_eq!(r.status_code, 200);
    assert_eq!(r.payload.as_deref(), Some(r#"{"stored":1,"table":"hot"}"#));
    assert_eq!(r.function_error, None);
    let calls = f.host.invocations();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (
            calls[0].site.as_str(),
            calls[0].function.as_str(),
            calls[0].admin
        ),
        (app.as_str(), "persister", false)
    );
    assert_eq!(
        (calls[0].method.as_str(), calls[0].body.as_str()),
        ("POST", payload)
    );
    // The key was asked of ARM for that function, and appears in nothing returned.
    let log = f.arm.log();
    assert!(
        log.iter()
            .any(|c| c.ends_with("/functions/persister/listkeys")),
        "{log:?}"
    );
    let key = (f.host.hosting().keys)(&app, Some("persister"));
    assert!(!format!("{r:?}").contains(&key));

    // The hot reader is a GET: the payload's fields are its query string.
    let r = ops
        .invoke(
            &config,
            "hot-reader",
            r#"{"iotDeviceId":"sensor-0"}"#,
            false,
        )
        .await
        .expect("hot reader");
    assert_eq!(r.status_code, 200);
    let last = f.host.invocations().pop().expect("call");
    assert_eq!(last.method, "GET");
    assert_eq!(last.query.as_deref(), Some("iotDeviceId=sensor-0"));

    // A function that fails is reported as the function's error, with its answer.
    f.host.respond("processor", 500, "processor panicked");
    let r = ops
        .invoke(&config, "processor", "{}", false)
        .await
        .expect("invocation of a failing function");
    assert_eq!(r.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(r.payload.as_deref(), Some("processor panicked"));
    let runs = |name: &str| {
        f.host
            .invocations()
            .iter()
            .filter(|c| c.function == name)
            .count()
    };
    assert_eq!(
        runs("processor"),
        1,
        "a failed invocation is not sent again"
    );

    // HTTP functions have no queued mode on Azure.
    let e = ops
        .invoke(&config, "persister", "{}", true)
        .await
        .expect_err("async HTTP");
    assert_eq!(e.code, "AsyncNotSupported");

    // The provider hands out the same commands.
    let p = provider(&f.arm, &config, package("v1")).await;
    let via_provider = p.functions().expect("function commands");
    let r = via_provider
        .invoke(&config, "persister", payload, false)
        .await
        .expect("invoke through the provider");
    assert_eq!(r.status_code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_functions_invoke_a_mover_through_the_admin_api_is_accepted() {
    let f = fakes().await;
    let (_dir, config, app) = deployed(&f, "adm-twin").await;
    let ops = ops(&f, package("v1"));
    let r = ops
        .invoke(
            &config,
            "cold-to-archive-mover",
            r#"{"dryRun":true}"#,
            false,
        )
        .await
        .expect("admin invoke");
    assert_eq!(r.status_code, 202);
    assert_eq!(r.payload, None);
    let calls = f.host.invocations();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0].admin);
    assert_eq!(calls[0].site, app);
    assert_eq!(calls[0].function, "cold-to-archive-mover");
    let body: Value = serde_json::from_str(&calls[0].body).expect("json body");
    assert_eq!(body, json!({"input": r#"{"dryRun":true}"#}));
    assert!(f
        .arm
        .log()
        .iter()
        .any(|c| c.ends_with("/host/default/listkeys")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_functions_a_rejected_key_is_a_clear_error_and_rotated_keys_are_fetched_afresh() {
    let f = fakes().await;
    let (_dir, config, app) = deployed(&f, "key-twin").await;
    let ops = ops(&f, package("v1"));
    f.host.reject_next(1);
    let e = ops
        .invoke(&config, "persister", "{}", false)
        .await
        .expect_err("refused key");
    assert_eq!(e.code, "FunctionKeyRejected");
    assert_eq!(e.class, twin_engine::ErrorClass::Fatal);
    assert!(
        e.message.contains("persister") && e.message.contains(&app) && e.message.contains("401"),
        "{e:?}"
    );
    assert!(e.hint.as_deref().is_some_and(|h| h.contains("rotated")));
    assert!(f.host.invocations().is_empty(), "nothing ran");
    // Keys are not cached: after a rotation, the next call asks ARM again and succeeds.
    f.host.rotate_keys(&app);
    let r = ops
        .invoke(&config, "hot-to-cold-mover", "{}", false)
        .await
        .expect("after rotation");
    assert_eq!(r.status_code, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_functions_logs_are_the_newest_lines_in_order_and_since_filters() {
    let f = fakes().await;
    let twin = "log-twin";
    let (_dir, config, app) = deployed(&f, twin).await;
    let component = f
        .arm
        .resource(&format!(
            "/subscriptions/{}/resourceGroups/{twin}-rg/providers/Microsoft.Insights/components/{twin}-insights",
            f.arm.subscription_id()
        ))
        .expect("component");
    let app_id = component["properties"]["AppId"]
        .as_str()
        .expect("app id")
        .to_string();
    let t0 = 1_790_000_000_000_i64;
    let trace = |role: &str, function: &str, dt: i64, message: &str| Trace {
        app_id: app_id.clone(),
        role: role.to_string(),
        function: function.to_string(),
        timestamp_ms: t0 + dt,
        message: message.to_string(),
    };
    // Stored out of order, with the host's own lines, another function's and another app's.
    for t in [
        trace(&app, "persister", 3000, "line 3"),
        trace(&app, "persister", 1000, "line 1"),
        trace(
            &app,
            "persister",
            500,
            "Executing 'Functions.persister' (Reason='x')",
        ),
        trace(&app, "persister", 5000, "line 5"),
        trace(&app, "persister", 2000, "line 2"),
        trace(&app, "persister", 4000, "line 4"),
        trace(
            &app,
            "persister",
            5500,
            "Executed 'Functions.persister' (Succeeded)",
        ),
        trace(&app, "processor", 6000, "processor line"),
        trace("other-app", "persister", 7000, "other app"),
    ] {
        f.insights.add(t);
    }
    let ops = ops(&f, package("v1"));
    let got = ops
        .logs(&config, "persister", 3, false, None)
        .await
        .expect("logs");
    let text: Vec<&str> = got.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(text, ["line 3", "line 4", "line 5"]);
    assert_eq!(got[0].timestamp_ms, t0 + 3000);

    let with_system = ops
        .logs(&config, "persister", 2, true, None)
        .await
        .expect("logs with the host's lines");
    let text: Vec<&str> = with_system.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(
        text,
        ["line 5", "Executed 'Functions.persister' (Succeeded)"]
    );

    let newer = ops
        .logs(&config, "persister", 100, false, Some(t0 + 3000))
        .await
        .expect("logs since");
    let text: Vec<&str> = newer.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(text, ["line 4", "line 5"]);
    let queries = f.insights.queries();
    assert!(
        queries
            .iter()
            .all(|q| q.contains(&format!("cloud_RoleName =~ '{app}'"))
                && q.contains("operation_Name =~ 'persister'")),
        "{queries:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_functions_update_merges_settings_redeploys_once_and_the_next_deploy_is_a_no_op() {
    let f = fakes().await;
    let twin = "upd-twin";
    let (_dir, config, app) = deployed(&f, twin).await;
    let settings_id = format!("{}/config/appsettings", site_id(&f, twin, &app));
    let mut settings = f.arm.resource(&settings_id).expect("settings");
    settings["properties"]["SOMEONE_ELSES"] = json!("keep me");
    f.arm.insert(&settings_id, settings);
    assert_eq!(f.kudu.uploads(&app), 1);

    let v2 = package("v2");
    let ops = ops(&f, v2.clone());
    let env: Map<String, Value> =
        serde_json::from_value(json!({"FEATURE_FLAG": "on", "BATCH": 5})).expect("env");
    f.arm.clear_log();
    let r = ops
        .update(&config, "persister", Some(env))
        .await
        .expect("update");
    assert!(r.rebuilt && r.code_updated && r.env_updated, "{r:?}");
    assert_eq!(f.kudu.uploads(&app), 2, "exactly one new upload");
    assert_eq!(f.kudu.package(&app).as_deref(), Some(v2.bytes.as_slice()));
    let s = f.arm.resource(&settings_id).expect("settings")["properties"].clone();
    assert_eq!(s["FEATURE_FLAG"], "on");
    assert_eq!(s["BATCH"], "5");
    assert_eq!(s["SOMEONE_ELSES"], "keep me");
    assert_eq!(s["TWIN_NAME"], twin, "ours kept");
    // One settings write and one package record: nothing else changed.
    let calls = changes(&f.arm);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls.iter().any(|c| c.ends_with("/config/appsettings")));
    assert!(calls.iter().any(|c| c.ends_with("/tags/default")));

    // deploy with the same package afterwards finds nothing to do.
    f.arm.clear_log();
    let report = engine(&f.arm, &config, v2.clone())
        .await
        .deploy(None)
        .await
        .expect("deploy after update");
    assert_eq!((report.created, report.updated), (0, 0), "{report:?}");
    assert!(changes(&f.arm).is_empty(), "{:?}", changes(&f.arm));
    assert_eq!(f.kudu.uploads(&app), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_functions_update_with_nothing_changed_changes_nothing() {
    let f = fakes().await;
    let (_dir, config, app) = deployed(&f, "same-twin").await;
    let ops = ops(&f, package("v1"));
    f.arm.clear_log();
    let r = ops
        .update(&config, "persister", None)
        .await
        .expect("update");
    assert_eq!(r, twin_engine::FunctionUpdate::default());
    // Settings equal to what the app has are no change either.
    let env: Map<String, Value> =
        serde_json::from_value(json!({"TWIN_NAME": "same-twin"})).expect("env");
    let r = ops
        .update(&config, "hot-reader", Some(env))
        .await
        .expect("update");
    assert_eq!(r, twin_engine::FunctionUpdate::default());
    assert!(changes(&f.arm).is_empty(), "{:?}", changes(&f.arm));
    assert_eq!(f.kudu.uploads(&app), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_functions_unknown_or_foreign_functions_list_the_valid_names() {
    let f = fakes().await;
    let (_dir, config, _app) = deployed(&f, "name-twin").await;
    let ops = ops(&f, package("v1"));
    let listed =
        "use one of: processor, persister, hot-reader, hot-to-cold-mover, cold-to-archive-mover";
    let e = ops
        .invoke(&config, "nope", "{}", false)
        .await
        .expect_err("unknown");
    assert_eq!(e.code, "UnknownFunction");
    assert_eq!(e.hint.as_deref(), Some(listed));
    let e = ops
        .logs(&config, "sensor-0-processor", 5, false, None)
        .await
        .expect_err("per-device processor");
    assert_eq!(e.code, "UnknownFunction");
    assert!(e.message.contains("`processor`"), "{e:?}");
    for foreign in ["dispatcher", "twin-connector"] {
        let e = ops
            .update(&config, foreign, None)
            .await
            .expect_err("not on Azure");
        assert_eq!(e.code, "NotOnAzure", "{foreign}: {e:?}");
        assert!(
            e.hint.as_deref().is_some_and(|h| h.contains("persister")),
            "{e:?}"
        );
    }
    assert!(f.host.invocations().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_functions_arm_faults_while_finding_the_key_converge_and_the_function_runs_once() {
    let f = fakes().await;
    let (_dir, config, _app) = deployed(&f, "flt-twin").await;
    let ops = ops(&f, package("v1"));
    f.arm.inject("POST", "/listkeys", Fault::ServerError, 1);
    f.arm.inject(
        "GET",
        "/microsoft.web/sites/",
        Fault::Throttle {
            retry_after_secs: 0,
        },
        1,
    );
    let r = ops
        .invoke(&config, "persister", "{}", false)
        .await
        .expect("invoke despite ARM faults");
    assert_eq!(r.status_code, 200);
    assert_eq!(f.arm.faults_left(), 0, "every fault was met");
    assert_eq!(f.host.invocations().len(), 1, "the function ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_functions_commands_on_a_twin_never_deployed_say_to_deploy() {
    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_twin(dir.path(), "new-twin");
    let ops = ops(&f, package("v1"));
    let app = twin_config::names::azure_unique_name("new-twin", "func", f.arm.subscription_id());
    let e = ops
        .invoke(&config, "persister", "{}", false)
        .await
        .expect_err("no app");
    assert_eq!(e.code, "NotDeployed");
    assert!(e.message.contains(&app), "{e:?}");
    assert!(e.hint.as_deref().is_some_and(|h| h.contains("deploy")));
    let e = ops
        .update(&config, "persister", None)
        .await
        .expect_err("no app");
    assert_eq!(e.code, "NotDeployed");
    let e = ops
        .logs(&config, "persister", 5, false, None)
        .await
        .expect_err("no component");
    assert_eq!(e.code, "NotDeployed");
    assert!(e.message.contains("new-twin-insights"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_functions_update_whose_deployment_fails_once_converges_and_reports_what_it_did() {
    let f = fakes().await;
    let (_dir, config, app) = deployed(&f, "retry-twin").await;
    let ops = ops(&f, package("v2"));
    f.kudu.fail_next(1);
    let env: Map<String, Value> =
        serde_json::from_value(json!({"FEATURE_FLAG": "on"})).expect("env");
    let r = ops
        .update(&config, "persister", Some(env))
        .await
        .expect("update converges");
    assert!(r.rebuilt && r.code_updated && r.env_updated, "{r:?}");
    assert_eq!(f.kudu.failed_deployments(&app).len(), 1);
    assert_eq!(
        f.kudu.uploads(&app),
        3,
        "first deploy, the failed one, the retry"
    );
    assert_eq!(
        f.kudu.package(&app).as_deref(),
        Some(package("v2").bytes.as_slice())
    );
}
