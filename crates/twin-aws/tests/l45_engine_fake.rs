//! Layers 3–5 on AWS through the ENGINE, end to end: IAM, Lambda, S3 and DynamoDB on moto;
//! TwinMaker and the Managed Grafana control plane as stateful `aws-smithy-mocks` fakes
//! (neither has an emulator); the workspace's Grafana HTTP API as twin-testkit's `FakeGrafana`,
//! reached at the endpoint the fake control plane reports, with the tokens that control plane
//! issues. Deploy, re-deploy with no changes (zero mutating calls), drift repaired, a device
//! change reaching the dashboard, `info`, and destroy leaving nothing.

mod aws_support;
mod l45_support;

use l45_support::fake_managed_grafana::FakeManagedGrafana;
use l45_support::fake_twinmaker::FakeTwinMaker;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_aws::artifacts::Artifacts;
use twin_aws::{l5_grafana, AwsClients, AwsProvider};
use twin_engine::{Engine, EngineOptions, InfoStatus, NoEvents, Provider, RetryPolicy};
use twin_testkit::fake_grafana::FakeGrafana;

const TWIN: &str = "gfe2e";
/// The twin of the SAML test (its own names, so both tests share moto).
const SAML_TWIN: &str = "gfsaml";
const ACCOUNT: &str = "123456789012";

fn write_config(dir: &Path, properties: &[&str]) {
    write_twin(
        dir,
        TWIN,
        properties,
        json!({"region": "us-east-1", "architecture": "x86_64",
            "grafana_admins": {"users": ["u-admin"]},
            "grafana_viewers": {"groups": ["g-viewers"]}}),
    );
}

fn write_twin(dir: &Path, twin: &str, properties: &[&str], aws: Value) {
    let props: Vec<Value> = properties
        .iter()
        .map(|p| json!({"name": p, "dataType": "DOUBLE"}))
        .collect();
    let files = [
        (
            "config.json",
            json!({"digital_twin_name": twin, "hot_storage_size_in_days": 30,
                "cold_storage_size_in_days": 90, "mode": "DEBUG"}),
        ),
        (
            "config_iot_devices.json",
            json!([{"id": "pressure-sensor-1", "properties": props}]),
        ),
        (
            "config_hierarchy.json",
            json!([{"type": "entity", "id": "building", "children": [
                {"type": "entity", "id": "room-1", "children": [
                    {"type": "component", "name": "pressure", "iotDeviceId": "pressure-sensor-1"}
                ]}
            ]}]),
        ),
        (
            "config_providers.json",
            json!({"layer_1_provider": "none", "layer_2_provider": "none",
                "layer_3_hot_provider": "aws", "layer_3_cold_provider": "aws",
                "layer_3_archive_provider": "aws", "layer_4_provider": "aws",
                "layer_5_provider": "aws", "aws": aws}),
        ),
    ];
    for (name, v) in files {
        std::fs::write(
            dir.join(name),
            serde_json::to_string_pretty(&v).expect("json"),
        )
        .expect("write config");
    }
}

/// The fakes and moto clients of one test.
struct Clouds {
    moto: Arc<AwsClients>,
    twinmaker: FakeTwinMaker,
    grafana_cp: FakeManagedGrafana,
    grafana: Arc<FakeGrafana>,
}

async fn clouds() -> Clouds {
    let m = aws_support::setup();
    let grafana = Arc::new(FakeGrafana::start().await.expect("fake Grafana"));
    Clouds {
        moto: aws_support::clients(&m.endpoint).await,
        twinmaker: FakeTwinMaker::new(1),
        grafana_cp: FakeManagedGrafana::new(grafana.clone(), 1),
        grafana,
    }
}

async fn engine(dir: &Path, c: &Clouds) -> Engine {
    let config = Arc::new(twin_config::load_dir(dir).expect("valid twin config"));
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(&aws_support::setup().endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    let mut clients =
        AwsClients::from_sdk_config(&sdk, ACCOUNT.into(), "us-east-1".into(), "aws".into());
    clients.twinmaker = c.twinmaker.client();
    clients.grafana = c.grafana_cp.client();
    let artifacts = Arc::new(Artifacts::new(None, config.providers.aws.architecture));
    let provider: Arc<dyn Provider> =
        Arc::new(AwsProvider::with_clients(Arc::new(clients), artifacts));
    Engine::new(
        config,
        vec![provider],
        EngineOptions {
            concurrency: 8,
            retry: RetryPolicy {
                base: Duration::from_millis(50),
                cap: Duration::from_millis(500),
                deadline: Duration::from_secs(60),
            },
        },
        Arc::new(NoEvents),
        CancellationToken::new(),
    )
}

fn dashboard_role_arn() -> String {
    role_arn_of(TWIN)
}

fn role_arn_of(twin: &str) -> String {
    format!("arn:aws:iam::{ACCOUNT}:role/{twin}-grafana-dashboard")
}

/// IAM propagation as the plugin sees it: the fake Grafana can assume the dashboard role only
/// some time after IAM (moto) has it, so the data source's health check fails at first.
fn propagate_dashboard_role(c: &Clouds) -> tokio::task::JoinHandle<()> {
    propagate_role_of(c, TWIN)
}

fn propagate_role_of(c: &Clouds, twin: &str) -> tokio::task::JoinHandle<()> {
    let (iam, grafana) = (c.moto.iam.clone(), c.grafana.clone());
    let name = format!("{twin}-grafana-dashboard");
    let arn = role_arn_of(twin);
    tokio::spawn(async move {
        let mut wait = Duration::from_millis(50);
        loop {
            if iam.get_role().role_name(&name).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(wait).await; // test-side poll of the emulator
            wait = (wait * 2).min(Duration::from_millis(500));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await; // the propagation being simulated
        grafana.allow_role(&arn);
    })
}

/// The writes among the fake Grafana's requests.
fn writes(requests: &[String]) -> Vec<&String> {
    requests.iter().filter(|r| !r.starts_with("GET ")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fake_grafana_l4_l5_deploy_redeploy_drift_destroy_through_the_engine() {
    let c = clouds().await;
    let dir = tempfile::tempdir().expect("dir");
    write_config(dir.path(), &["pressure", "hardness"]);
    let config = twin_config::load_dir(dir.path()).expect("config");
    assert!(
        !config
            .warnings
            .iter()
            .any(|w| w.message.contains("sign in")),
        "grants are configured, so no sign-in warning: {:?}",
        config.warnings
    );
    let propagation = propagate_dashboard_role(&c);

    // 1. Deploy.
    let e = engine(dir.path(), &c).await;
    let report = e.deploy(None).await.expect("deploy");
    assert!(report.created > 0, "{report:?}");
    propagation.await.expect("propagation task");

    // The dashboard role: trusted only by the workspace role, read-only on the twin's TwinMaker
    // workspace and bucket; the workspace role may only assume it.
    let role = c
        .moto
        .iam
        .get_role()
        .role_name(format!("{TWIN}-grafana-dashboard"))
        .send()
        .await
        .expect("dashboard role");
    let trust = twin_aws::iam::parse_policy_document(
        role.role()
            .and_then(|r| r.assume_role_policy_document())
            .unwrap_or_default(),
    );
    assert_eq!(
        trust["Statement"],
        json!([{"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/{TWIN}-grafana")},
            "Action": "sts:AssumeRole"}])
    );
    let policy = c
        .moto
        .iam
        .get_role_policy()
        .role_name(format!("{TWIN}-grafana-dashboard"))
        .policy_name(twin_aws::iam::INLINE_POLICY)
        .send()
        .await
        .expect("dashboard policy");
    let policy = twin_aws::iam::parse_policy_document(policy.policy_document());
    let actions: Vec<&Value> = policy["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["Action"].as_array().into_iter().flatten())
        .collect();
    assert!(
        actions.iter().all(|a| {
            let a = a.as_str().unwrap_or_default();
            a.starts_with("iottwinmaker:Get")
                || a.starts_with("iottwinmaker:List")
                || a == "s3:GetObject"
        }),
        "read-only: {actions:?}"
    );
    let ws_policy = c
        .moto
        .iam
        .get_role_policy()
        .role_name(format!("{TWIN}-grafana"))
        .policy_name(twin_aws::iam::INLINE_POLICY)
        .send()
        .await
        .expect("workspace role policy");
    assert_eq!(
        twin_aws::iam::parse_policy_document(ws_policy.policy_document())["Statement"],
        json!([{"Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": [dashboard_role_arn()]}])
    );

    // The data source, made through the Grafana API, assumes the dashboard role and is healthy.
    let ds_uid = l5_grafana::datasource_uid(TWIN);
    let ds = c.grafana.datasource(&ds_uid).expect("data source");
    assert_eq!(ds["type"], "grafana-iot-twinmaker-datasource");
    assert_eq!(
        ds["jsonData"],
        json!({"authType": "ec2_iam_role", "assumeRoleArn": dashboard_role_arn(),
            "defaultRegion": "us-east-1", "workspaceId": format!("{TWIN}-twinmaker")})
    );
    let requests = c.grafana.take_requests();
    let health = format!("GET /api/datasources/uid/{ds_uid}/health");
    assert!(requests.contains(&health), "{requests:?}");
    // The starter dashboard: in the twin's folder, a panel per property.
    let (dash, folder) = c
        .grafana
        .dashboard(&l5_grafana::dashboard_uid(TWIN))
        .expect("dashboard");
    assert_eq!(
        folder.as_deref(),
        Some(l5_grafana::folder_uid(TWIN).as_str())
    );
    let panels = l5_grafana::dashboard_model::property_panels(&dash);
    assert_eq!(panels.len(), 2);
    assert_eq!(panels[0]["targets"][0]["entityId"], "room-1");
    assert_eq!(panels[0]["targets"][0]["datasource"]["uid"], json!(ds_uid));
    // Access as configured; the only service account is the deployer's, with no token left.
    let ws_name = format!("{TWIN}-grafana");
    assert_eq!(
        c.grafana_cp.permissions(&ws_name),
        ["VIEWER SSO_GROUP g-viewers", "ADMIN SSO_USER u-admin"]
    );
    assert_eq!(
        c.grafana_cp.accounts(&ws_name),
        (vec!["deployer".to_string()], 0)
    );
    assert_eq!(
        c.grafana.live_tokens(),
        0,
        "every token was deleted after use"
    );
    c.grafana_cp.take_mutating();

    // 2. Re-deploy with no changes: nothing is written anywhere.
    let e = engine(dir.path(), &c).await;
    let report = e.deploy(None).await.expect("re-deploy");
    assert_eq!((report.created, report.updated), (0, 0), "{report:?}");
    assert!(c.grafana_cp.take_mutating().is_empty());
    let requests = c.grafana.take_requests();
    assert!(writes(&requests).is_empty(), "{requests:?}");
    assert!(
        requests.contains(&health),
        "the health check is read: {requests:?}"
    );
    assert_eq!(c.grafana.live_tokens(), 0);

    // 3. `info`: the workspace URL, a healthy data source, the dashboard URL; an unhealthy one
    // shows as such.
    let rows = e.info().await.expect("info");
    let lines = l5_grafana::info_lines(&rows);
    assert_eq!(lines[0], format!("Grafana workspace: {}", c.grafana.url));
    assert!(lines[1].contains(": healthy"), "{lines:?}");
    assert!(
        lines[2].starts_with(&format!("Grafana dashboard: {}/d/", c.grafana.url)),
        "{lines:?}"
    );
    c.grafana.forbid_role(&dashboard_role_arn());
    let rows = e.info().await.expect("info");
    let ds_row = rows
        .iter()
        .find(|r| r.kind == l5_grafana::DATASOURCE_KIND)
        .expect("data source row");
    assert_eq!(ds_row.status, InfoStatus::Drifted(vec!["health".into()]));
    assert!(l5_grafana::info_lines(&rows)[1].contains("UNHEALTHY"));
    c.grafana.allow_role(&dashboard_role_arn());

    // 4. Drift is repaired: a data source pointed elsewhere, a grant made in the console.
    c.grafana.edit_datasource(&ds_uid, |d| {
        d["jsonData"]["assumeRoleArn"] = json!("arn:aws:iam::123456789012:role/someone-else");
    });
    c.grafana_cp.grant_out_of_band(&ws_name, "intruder");
    c.grafana.take_requests();
    let report = e.deploy(None).await.expect("deploy repairs drift");
    assert_eq!((report.created, report.updated), (0, 2), "{report:?}");
    let ds = c.grafana.datasource(&ds_uid).expect("data source");
    assert_eq!(ds["jsonData"]["assumeRoleArn"], json!(dashboard_role_arn()));
    assert!(!c
        .grafana_cp
        .permissions(&ws_name)
        .iter()
        .any(|p| p.contains("intruder")));
    let requests = c.grafana.take_requests();
    assert_eq!(
        writes(&requests),
        [&format!("PUT /api/datasources/uid/{ds_uid}")]
    );

    // 5. A device gains a property: the dashboard follows.
    write_config(dir.path(), &["pressure", "hardness", "density"]);
    let e = engine(dir.path(), &c).await;
    let plan = e.plan(Some(twin_config::Layer::L5)).await.expect("plan");
    let updates: Vec<&str> = plan
        .items
        .iter()
        .filter(|i| i.action == twin_engine::Action::Update)
        .map(|i| i.kind.as_str())
        .collect();
    assert_eq!(updates, [l5_grafana::DASHBOARD_KIND]);
    // Only L5: the fake TwinMaker does not implement UpdateComponentType (L4's own tests
    // cover its component types).
    let report = e
        .deploy(Some(twin_config::Layer::L5))
        .await
        .expect("deploy new property");
    assert_eq!((report.created, report.updated), (0, 1), "{report:?}");
    let (dash, _) = c
        .grafana
        .dashboard(&l5_grafana::dashboard_uid(TWIN))
        .expect("dashboard");
    assert_eq!(l5_grafana::dashboard_model::property_panels(&dash).len(), 3);

    // 6. Destroy leaves nothing: not in Grafana, not in the control plane, not in moto.
    let report = e.destroy(None).await.expect("destroy");
    assert!(report.deleted > 0);
    assert_eq!(
        c.grafana.contents(),
        (Vec::new(), Vec::new(), Vec::new()),
        "data source, folder and dashboard deleted"
    );
    assert!(c.grafana_cp.workspaces().is_empty());
    assert_eq!(c.twinmaker.contents(), (Vec::new(), Vec::new(), Vec::new()));
    assert_eq!(c.grafana.live_tokens(), 0);
    let left = twin_aws::testing::leftovers(&c.moto, TWIN)
        .await
        .expect("leftovers");
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fake_grafana_saml_configuration_and_a_slow_workspace_converge_through_the_engine() {
    let c = clouds().await;
    let dir = tempfile::tempdir().expect("dir");
    write_twin(
        dir.path(),
        SAML_TWIN,
        &["pressure"],
        json!({"region": "us-east-1", "architecture": "x86_64",
            "grafana_authentication_provider": "SAML",
            "grafana_saml": {"idp_metadata_url": "https://idp.example/metadata",
                "assertion_attributes": {"role": "role", "email": "mail"},
                "admin_role_values": ["admin"]}}),
    );
    let propagation = propagate_role_of(&c, SAML_TWIN);
    // A new workspace's Grafana answers 503 for a while: the calls are retried.
    c.grafana.unavailable_for(3);
    let e = engine(dir.path(), &c).await;
    e.deploy(None).await.expect("deploy");
    propagation.await.expect("propagation task");
    let ws = format!("{SAML_TWIN}-grafana");
    let mutating = c.grafana_cp.take_mutating();
    let auth: Vec<&String> = mutating
        .iter()
        .filter(|m| m.starts_with("UpdateWorkspaceAuthentication"))
        .collect();
    assert_eq!(auth.len(), 1, "{mutating:?}");
    assert!(
        c.grafana_cp.permissions(&ws).is_empty(),
        "SAML grants nothing itself"
    );
    let ds = c
        .grafana
        .datasource(&l5_grafana::datasource_uid(SAML_TWIN))
        .expect("data source");
    assert_eq!(
        ds["jsonData"]["assumeRoleArn"],
        json!(role_arn_of(SAML_TWIN))
    );
    let requests = c.grafana.take_requests();
    assert!(
        requests.iter().filter(|r| r.starts_with("POST")).count() >= 3,
        "the data source, folder and dashboard were made after the 503s: {requests:?}"
    );
    assert!(
        requests.iter().filter(|r| r.contains("/api/")).count() > 3,
        "some calls met the 503s: {requests:?}"
    );
    // The tokens of the calls that failed were deleted too.
    assert_eq!(c.grafana.live_tokens(), 0);
    assert_eq!(
        c.grafana_cp.accounts(&ws),
        (vec!["deployer".to_string()], 0)
    );

    let e = engine(dir.path(), &c).await;
    let report = e.deploy(None).await.expect("re-deploy");
    assert_eq!((report.created, report.updated), (0, 0), "{report:?}");
    assert!(c.grafana_cp.take_mutating().is_empty());
    assert!(writes(&c.grafana.take_requests()).is_empty());

    e.destroy(None).await.expect("destroy");
    assert!(c.grafana_cp.workspaces().is_empty());
    assert_eq!(c.grafana.contents(), (Vec::new(), Vec::new(), Vec::new()));
    assert_eq!(c.grafana.live_tokens(), 0);
    let left = twin_aws::testing::leftovers(&c.moto, SAML_TWIN)
        .await
        .expect("leftovers");
    assert!(left.is_empty(), "{left:?}");
}
