//! Layer 4 (IoT TwinMaker) against `aws-smithy-mocks`: TwinMaker has no emulator, so these
//! tests pin the exact requests the drivers send, in order, for deploy and destroy, and that
//! the asynchronous creates and deletes are waited on by polling status.

mod l45_support;

use l45_support::fake_twinmaker::FakeTwinMaker;
use l45_support::{clients, twin, unused_grafana};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_aws::artifacts::Artifacts;
use twin_aws::{l4_twinmaker, AwsClients, LayerContext};
use twin_config::{Architecture, TwinConfig};
use twin_engine::{ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec, RetryPolicy};

/// Prebuilt function zips so describing the connector needs no cargo-lambda build; one
/// directory for the whole binary because the env var naming it is process-wide.
fn prebuilt_functions() {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("twin-l4-zips-{}", std::process::id()));
        let d = dir.join("twin-connector");
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(d.join("bootstrap.zip"), b"PK fake zip").unwrap_or_else(|e| panic!("{e}"));
        std::env::set_var(twin_aws::artifacts::PREBUILT_ENV, &dir);
        dir
    });
}

fn l4_specs(config: &TwinConfig, clients: &Arc<AwsClients>) -> Vec<ResourceSpec> {
    prebuilt_functions();
    let artifacts = Arc::new(Artifacts::new(None, Architecture::X86_64));
    let ctx = LayerContext {
        twin: config,
        clients,
        artifacts: &artifacts,
    };
    l4_twinmaker::specs(&ctx).unwrap_or_else(|e| panic!("specs: {e}"))
}

fn by_id<'a>(specs: &'a [ResourceSpec], id: &str) -> &'a ResourceSpec {
    specs
        .iter()
        .find(|s| s.id.0 == id)
        .unwrap_or_else(|| panic!("no spec {id}"))
}

/// Creates like the engine does: a retryable failure is retried with backoff, and before each
/// retry the resource is read in case the failed attempt landed.
async fn create(driver: &Arc<dyn ResourceDriver>, spec: &ResourceSpec) -> (Observed, u32) {
    let policy = RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        deadline: Duration::from_secs(10),
    };
    let deps = Outputs::default();
    let result = policy
        .run(
            &CancellationToken::new(),
            |attempt| {
                let (driver, deps) = (driver.clone(), &deps);
                async move {
                    if attempt > 1 {
                        if let Some(o) = driver.read(spec, deps).await? {
                            return Ok(o);
                        }
                    }
                    driver.create(spec, deps).await
                }
            },
            |_, _, _| {},
        )
        .await;
    match result {
        Ok(v) => v,
        Err(_) => panic!("create {} failed", spec.id),
    }
}

fn driver(kind: &str, clients: &Arc<AwsClients>) -> Arc<dyn ResourceDriver> {
    l4_twinmaker::driver(kind, clients).unwrap_or_else(|| panic!("no driver for {kind}"))
}

const WS_ID: &str = "l4/twinmaker_workspace/workspace";
const CT_ID: &str = "l4/twinmaker_component_type/pressure-sensor-1";
const BUILDING_ID: &str = "l4/twinmaker_entity/building";
const ROOM_ID: &str = "l4/twinmaker_entity/room-1";

/// Deploys the L4 TwinMaker resources in dependency order, as the engine would.
async fn deploy(fake: &FakeTwinMaker) -> (Arc<AwsClients>, Vec<ResourceSpec>) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = twin(dir.path().to_path_buf());
    let clients = clients(fake.client(), unused_grafana());
    let specs = l4_specs(&config, &clients);
    for id in [WS_ID, CT_ID, BUILDING_ID, ROOM_ID] {
        let spec = by_id(&specs, id);
        let d = driver(&spec.kind, &clients);
        let (observed, _) = create(&d, spec).await;
        // What the cloud reports back matches what was asked for: a second deploy changes nothing.
        assert_eq!(observed.drift(&spec.desired), Vec::<String>::new(), "{id}");
        assert!(observed.attr("arn").is_some(), "{id} reports its ARN");
    }
    (clients, specs)
}

#[test]
fn twinmaker_specs_wire_dependencies_and_least_privilege_roles() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = twin(dir.path().to_path_buf());
    let c = clients(l45_support::unused_twinmaker(), unused_grafana());
    let specs = l4_specs(&config, &c);

    let ws = by_id(&specs, WS_ID);
    assert_eq!(ws.name, "dt-twinmaker");
    assert_eq!(
        ws.depends_on
            .iter()
            .map(|d| d.0.as_str())
            .collect::<Vec<_>>(),
        ["l4/iam_role/twinmaker", "l4/s3_bucket/twinmaker"]
    );
    let bucket = by_id(&specs, "l4/s3_bucket/twinmaker");
    assert_eq!(
        bucket.name,
        twin_config::names::bucket_name("dt", "twinmaker", "123456789012", "us-east-1")
    );
    assert_eq!(ws.desired["bucket"], json!(bucket.name));
    assert_eq!(ws.desired["role"], json!("dt-twinmaker"));

    // The workspace role: assumable by TwinMaker only; its bucket and the connector only.
    let role = by_id(&specs, "l4/iam_role/twinmaker");
    assert_eq!(
        role.desired["trust"]["Statement"][0]["Principal"]["Service"],
        json!("iottwinmaker.amazonaws.com")
    );
    let bucket_arn = format!("arn:aws:s3:::{}", bucket.name);
    assert_eq!(
        role.desired["policy"]["Statement"],
        json!([
            {"Effect": "Allow",
             "Action": ["s3:GetBucket*", "s3:GetObject", "s3:ListBucket", "s3:PutObject"],
             "Resource": [bucket_arn.clone(), format!("{bucket_arn}/*")]},
            {"Effect": "Allow", "Action": ["s3:DeleteObject"],
             "Resource": [format!("{bucket_arn}/DO_NOT_DELETE_WORKSPACE_*")]},
            {"Effect": "Allow", "Action": ["lambda:InvokeFunction"],
             "Resource": ["arn:aws:lambda:us-east-1:123456789012:function:dt-twin-connector"]}
        ])
    );

    // The scene viewer may load the bucket's files from the Grafana workspace's origin.
    let cors = by_id(&specs, "l4/s3_bucket_cors/twinmaker");
    assert_eq!(cors.depends_on, std::slice::from_ref(&bucket.id));
    assert_eq!(
        cors.desired,
        json!({"bucket": bucket.name, "rules": [{
            "allowedOrigins": ["https://*.grafana-workspace.us-east-1.amazonaws.com"],
            "allowedMethods": ["DELETE", "GET", "HEAD", "POST", "PUT"],
            "allowedHeaders": ["*"],
            "exposeHeaders": ["ETag"]}]})
    );

    // The connector: env, and a role that may only Query the hot table (plus its own logs).
    let f = by_id(&specs, "l4/lambda_function/twin-connector");
    assert_eq!(f.name, "dt-twin-connector");
    assert_eq!(f.desired["env"]["HOT_TABLE"], json!("dt-hot"));
    assert_eq!(f.desired["env"]["TWIN_NAME"], json!("dt"));
    assert_eq!(f.desired["env"]["LOG_LEVEL"], json!("DEBUG"));
    let crole = by_id(&specs, "l4/iam_role/twin-connector");
    let statements = crole.desired["policy"]["Statement"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let dynamo: Vec<&Value> = statements
        .iter()
        .filter(|s| s["Action"].to_string().contains("dynamodb"))
        .collect();
    assert_eq!(
        dynamo,
        [&json!({"Effect": "Allow", "Action": ["dynamodb:Query"],
                 "Resource": ["arn:aws:dynamodb:us-east-1:123456789012:table/dt-hot"]})]
    );
    let twinmaker: Vec<&Value> = statements
        .iter()
        .filter(|s| s["Action"].to_string().contains("iottwinmaker"))
        .collect();
    assert_eq!(
        twinmaker,
        [&json!({"Effect": "Allow",
                 "Action": ["iottwinmaker:ListEntities", "iottwinmaker:GetEntity"],
                 "Resource": ["arn:aws:iottwinmaker:us-east-1:123456789012:workspace/dt-twinmaker",
                              "arn:aws:iottwinmaker:us-east-1:123456789012:workspace/dt-twinmaker/entity/*"]})]
    );
    assert!(statements
        .iter()
        .all(|s| !s["Resource"].to_string().contains("\"*\"")));

    // Component types after the workspace and the connector; entities after their parent and
    // the component types their components use.
    let ct = by_id(&specs, CT_ID);
    assert_eq!(ct.name, "dt-pressure-sensor-1");
    assert_eq!(
        ct.depends_on
            .iter()
            .map(|d| d.0.as_str())
            .collect::<Vec<_>>(),
        [WS_ID, "l4/lambda_function/twin-connector"]
    );
    assert_eq!(ct.desired["dataReader"], json!("dt-twin-connector"));
    assert_eq!(
        ct.desired["properties"]["iotDeviceId"]["externalId"],
        json!(true)
    );
    assert_eq!(
        ct.desired["properties"]["pressure"]["timeSeries"],
        json!(true)
    );
    assert_eq!(
        ct.desired["properties"]["serial-number"]["defaultValue"],
        json!({"stringValue": "1232323"})
    );
    let building = by_id(&specs, BUILDING_ID);
    assert_eq!(
        building
            .depends_on
            .iter()
            .map(|d| d.0.as_str())
            .collect::<Vec<_>>(),
        [WS_ID]
    );
    let room = by_id(&specs, ROOM_ID);
    assert_eq!(
        room.depends_on
            .iter()
            .map(|d| d.0.as_str())
            .collect::<Vec<_>>(),
        [CT_ID, BUILDING_ID, WS_ID]
    );
    assert_eq!(
        room.desired["components"],
        json!({"pressure": {"componentTypeId": "dt-pressure-sensor-1",
                            "iotDeviceId": "pressure-sensor-1"}})
    );
}

#[tokio::test(start_paused = true)]
async fn twinmaker_deploy_sends_exact_requests_smithy_mock() {
    let fake = FakeTwinMaker::new(1);
    // IAM has not propagated the brand-new role yet: TwinMaker cannot assume it.
    fake.fail_once(
        "CreateWorkspace",
        "Unable to assume role arn:aws:iam::123456789012:role/dt-twinmaker. Check the role's trust policy.",
    );
    let (_clients, specs) = deploy(&fake).await;
    let bucket = by_id(&specs, "l4/s3_bucket/twinmaker").name.clone();
    assert_eq!(
        fake.calls.take(),
        [
            "CreateWorkspace dt-twinmaker -> ValidationException".to_string(),
            // The engine retries the classified error, reading first.
            "GetWorkspace dt-twinmaker -> not found".to_string(),
            format!("CreateWorkspace dt-twinmaker role=arn:aws:iam::123456789012:role/dt-twinmaker s3=arn:aws:s3:::{bucket}"),
            "GetWorkspace dt-twinmaker -> found".to_string(),
            "CreateComponentType dt-pressure-sensor-1 props=[\"hardness:INTEGER:ts\", \"iotDeviceId:STRING:extid\", \"pressure:DOUBLE:ts\", \"serial-number:STRING\"] dataReader=arn:aws:lambda:us-east-1:123456789012:function:dt-twin-connector".to_string(),
            // Created asynchronously: polled until ACTIVE, then read.
            "GetComponentType dt-pressure-sensor-1 -> CREATING".to_string(),
            "GetComponentType dt-pressure-sensor-1 -> ACTIVE".to_string(),
            "GetComponentType dt-pressure-sensor-1 -> ACTIVE".to_string(),
            "CreateEntity building parent=- components=[]".to_string(),
            "GetEntity building -> CREATING".to_string(),
            "GetEntity building -> ACTIVE".to_string(),
            "GetEntity building -> ACTIVE".to_string(),
            "CreateEntity room-1 parent=building components=[\"pressure:dt-pressure-sensor-1:pressure-sensor-1\"]".to_string(),
            "GetEntity room-1 -> CREATING".to_string(),
            "GetEntity room-1 -> ACTIVE".to_string(),
            "GetEntity room-1 -> ACTIVE".to_string(),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn twinmaker_read_after_deploy_finds_everything_unchanged_smithy_mock() {
    let fake = FakeTwinMaker::new(0);
    let (clients, specs) = deploy(&fake).await;
    fake.calls.take();
    for id in [WS_ID, CT_ID, BUILDING_ID, ROOM_ID] {
        let spec = by_id(&specs, id);
        let found = driver(&spec.kind, &clients)
            .read(spec, &Outputs::default())
            .await
            .unwrap_or_else(|e| panic!("read {id}: {e}"))
            .unwrap_or_else(|| panic!("{id} not found"));
        assert!(found.drift(&spec.desired).is_empty(), "{id}");
    }
    assert_eq!(
        fake.calls.take(),
        [
            "GetWorkspace dt-twinmaker -> found",
            "GetComponentType dt-pressure-sensor-1 -> ACTIVE",
            "GetEntity building -> ACTIVE",
            "GetEntity room-1 -> ACTIVE",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn twinmaker_destroy_sends_exact_requests_smithy_mock() {
    let fake = FakeTwinMaker::new(1);
    let (clients, specs) = deploy(&fake).await;
    fake.calls.take();
    // Reverse dependency order, as the engine walks it: children, then types, then workspace.
    for id in [ROOM_ID, BUILDING_ID, CT_ID, WS_ID] {
        let spec = by_id(&specs, id);
        driver(&spec.kind, &clients)
            .delete(spec, &Observed::default())
            .await
            .unwrap_or_else(|e| panic!("delete {id}: {e}"));
    }
    assert_eq!(
        fake.calls.take(),
        [
            "DeleteEntity room-1 recursive=true",
            "GetEntity room-1 -> DELETING",
            "GetEntity room-1 -> not found",
            "DeleteEntity building recursive=true",
            "GetEntity building -> DELETING",
            "GetEntity building -> not found",
            "DeleteComponentType dt-pressure-sensor-1",
            "GetComponentType dt-pressure-sensor-1 -> DELETING",
            "GetComponentType dt-pressure-sensor-1 -> not found",
            // Nothing left inside but TwinMaker's own types; then the workspace itself.
            "ListEntities dt-twinmaker -> []",
            "ListComponentTypes dt-twinmaker -> [\"com.amazon.iottwinmaker.alarm.basic\"]",
            "DeleteWorkspace dt-twinmaker",
            "GetWorkspace dt-twinmaker -> deleting",
            "GetWorkspace dt-twinmaker -> not found",
        ]
    );
    assert_eq!(fake.contents(), (vec![], vec![], vec![]));

    // Deleting what is already gone succeeds (a destroy resumed after a crash).
    for id in [ROOM_ID, CT_ID, WS_ID] {
        let spec = by_id(&specs, id);
        let r = driver(&spec.kind, &clients)
            .delete(spec, &Observed::default())
            .await;
        assert!(r.is_ok(), "{id}: {r:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn twinmaker_workspace_delete_sweeps_unknown_entities_and_types_smithy_mock() {
    let fake = FakeTwinMaker::new(0);
    let (clients, specs) = deploy(&fake).await;
    // A device and an entity removed from the config after an earlier deploy.
    fake.add_orphans("dt-twinmaker", "dt-old-sensor", "old-room");
    for id in [ROOM_ID, BUILDING_ID, CT_ID] {
        let spec = by_id(&specs, id);
        driver(&spec.kind, &clients)
            .delete(spec, &Observed::default())
            .await
            .unwrap_or_else(|e| panic!("delete {id}: {e}"));
    }
    fake.calls.take();
    let ws = by_id(&specs, WS_ID);
    driver(&ws.kind, &clients)
        .delete(ws, &Observed::default())
        .await
        .unwrap_or_else(|e| panic!("delete workspace: {e}"));
    assert_eq!(
        fake.calls.take(),
        [
            "ListEntities dt-twinmaker -> [\"old-room\"]",
            "DeleteEntity old-room recursive=true",
            "GetEntity old-room -> not found",
            "ListComponentTypes dt-twinmaker -> [\"com.amazon.iottwinmaker.alarm.basic\", \"dt-old-sensor\"]",
            "DeleteComponentType dt-old-sensor",
            "GetComponentType dt-old-sensor -> not found",
            "DeleteWorkspace dt-twinmaker",
            "GetWorkspace dt-twinmaker -> deleting",
            "GetWorkspace dt-twinmaker -> not found",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn twinmaker_entity_in_error_state_fails_with_the_reason_smithy_mock() {
    let fake = FakeTwinMaker::new(1);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = twin(dir.path().to_path_buf());
    let clients = clients(fake.client(), unused_grafana());
    let specs = l4_specs(&config, &clients);
    fake.entity_errors("building", "component type dt-x does not exist");
    let spec = by_id(&specs, BUILDING_ID);
    let err = driver(&spec.kind, &clients)
        .create(spec, &Outputs::default())
        .await
        .err()
        .unwrap_or_else(|| panic!("create should fail"));
    assert_eq!(err.class, ErrorClass::Fatal);
    assert!(err.message.contains("entity building"), "{err}");
    assert!(
        err.message.contains("component type dt-x does not exist"),
        "{err}"
    );
    assert!(err.hint.is_some());
}
