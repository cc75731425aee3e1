//! L3 hot on Azure (Cosmos DB account, SQL database, container, data-plane role assignment) and
//! the ARM role assignment on the cold/archive storage account, through the engine against the
//! test kit's fake ARM (no ARM emulator exists): the bodies ARM receives, a no-op re-deploy,
//! drift, identity propagation (`PrincipalNotFound`), a deploy cut off after each step, random
//! faults, and destroy.

mod support;

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::{group_id, twin_resources};
use twin_azure::l3::hot;
use twin_azure::{roles, AzureProvider};
use twin_config::{Layer, TwinConfig};
use twin_engine::{Engine, RetryPolicy, StateFile};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, Fault};

const COSMOS: &str = "Microsoft.DocumentDB/databaseAccounts";

fn write_twin(dir: &Path, twin: &str) -> Arc<TwinConfig> {
    // The three L3 tiers go on Azure.
    support::write_twin(dir, twin, &[Layer::L3Hot, Layer::L3Cold, Layer::L3Archive])
}

fn config() -> FakeArmConfig {
    FakeArmConfig {
        provisioning: HashMap::from([(COSMOS.to_string(), Duration::from_millis(150))]),
        endpoints: HashMap::from([(COSMOS.to_string(), "https://127.0.0.1:8081/".to_string())]),
        ..FakeArmConfig::default()
    }
}

fn policy(deadline: Duration) -> RetryPolicy {
    support::fast_retry(deadline)
}

/// The storage layers alone: L3 hot and cold on Azure get the twin's Function App too (the
/// first Azure layer with functions owns it), which `fake_arm_app` and
/// `fake_arm_cold_receiver` cover.
async fn provider(fake: &FakeArm, config: &Arc<TwinConfig>) -> Arc<AzureProvider> {
    Arc::new(support::provider(fake, config).await.without_app())
}

fn engine(provider: &Arc<AzureProvider>, config: &Arc<TwinConfig>, retry: RetryPolicy) -> Engine {
    support::engine(config, provider.clone(), retry)
}

struct Ids {
    account: String,
    storage: String,
    identity: String,
}

fn ids(fake: &FakeArm, twin: &str) -> Ids {
    let group = group_id(fake, twin);
    Ids {
        account: format!(
            "{group}/providers/{COSMOS}/{}",
            hot::account_name(twin, fake.subscription_id())
        ),
        storage: format!(
            "{group}/providers/Microsoft.Storage/storageAccounts/{}",
            twin_config::names::storage_account_name(twin, fake.subscription_id())
        ),
        identity: format!(
            "{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{twin}-identity"
        ),
    }
}

fn count(fake: &FakeArm, twin: &str, needle: &str) -> usize {
    twin_resources(fake, twin)
        .iter()
        .filter(|i| i.contains(needle))
        .count()
}

const ARM_ROLE: &str = "/providers/microsoft.authorization/roleassignments/";
const DATA_ROLE: &str = "/sqlroleassignments/";

/// Group, identity, Cosmos account + database + container + data role, storage account +
/// blob role + two containers.
const ALL: usize = 10;

/// Exactly one of everything, as a converged deploy leaves it.
fn assert_converged(fake: &FakeArm, twin: &str) {
    let all = twin_resources(fake, twin);
    assert_eq!(all.len(), ALL, "{all:#?}");
    assert_eq!(count(fake, twin, ARM_ROLE), 1, "{all:#?}");
    assert_eq!(count(fake, twin, DATA_ROLE), 1, "{all:#?}");
}

async fn assert_noop_redeploy(engine: &Engine, fake: &FakeArm) {
    fake.clear_log();
    let again = engine.deploy(None).await.expect("re-deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert!(
        fake.mutating_calls().is_empty(),
        "{:?}",
        fake.mutating_calls()
    );
}

fn stored(fake: &FakeArm, id: &str) -> Value {
    fake.resource(id)
        .unwrap_or_else(|| panic!("{id} is stored: {:#?}", fake.ids()))
}

fn only(fake: &FakeArm, twin: &str, needle: &str) -> Value {
    let id = twin_resources(fake, twin)
        .into_iter()
        .find(|i| i.contains(needle))
        .unwrap_or_else(|| panic!("no {needle}"));
    stored(fake, &id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hot_deploy_sends_the_right_bodies_is_idempotent_and_destroys_everything() {
    let fake = FakeArm::start(config()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "hot-twin";
    let config = write_twin(dir.path(), twin);
    let provider = provider(&fake, &config).await;
    let engine = engine(&provider, &config, policy(Duration::from_secs(30)));
    let report = engine.deploy(None).await.expect("deploy");
    assert_eq!(report.created, ALL, "{report:?}");
    assert_converged(&fake, twin);
    let ids = ids(&fake, twin);
    let principal = stored(&fake, &ids.identity)["properties"]["principalId"].clone();
    assert!(principal.is_string());

    let account = stored(&fake, &ids.account);
    assert_eq!(account["kind"], "GlobalDocumentDB");
    assert_eq!(account["tags"]["twin"], twin);
    let p = &account["properties"];
    assert_eq!(p["capabilities"], json!([{"name": "EnableServerless"}]));
    assert_eq!(p["disableLocalAuth"], true);
    assert_eq!(p["consistencyPolicy"]["defaultConsistencyLevel"], "Session");
    assert_eq!(p["locations"][0]["locationName"], "westeurope");
    assert_eq!(p["provisioningState"], "Succeeded");

    let database = stored(
        &fake,
        &format!("{}/sqlDatabases/{}", ids.account, hot::database_name(twin)),
    );
    assert_eq!(database["properties"]["resource"]["id"], twin);
    let container = stored(
        &fake,
        &format!(
            "{}/sqlDatabases/{}/containers/{}",
            ids.account,
            hot::database_name(twin),
            hot::CONTAINER_NAME
        ),
    );
    assert_eq!(
        container["properties"]["resource"]["partitionKey"],
        json!({"paths": ["/iotDeviceId"], "kind": "Hash", "version": 2})
    );

    let data_role = only(&fake, twin, DATA_ROLE);
    assert_eq!(data_role["properties"]["principalId"], principal);
    assert_eq!(data_role["properties"]["scope"], json!(ids.account));
    assert_eq!(
        data_role["properties"]["roleDefinitionId"],
        json!(format!(
            "{}/sqlRoleDefinitions/00000000-0000-0000-0000-000000000002",
            ids.account
        ))
    );

    let blob_role = only(&fake, twin, ARM_ROLE);
    assert!(
        blob_role["id"]
            .as_str()
            .is_some_and(|i| i.starts_with(&format!("{}/providers/", ids.storage))),
        "scoped to the storage account, not wider: {blob_role}"
    );
    assert_eq!(blob_role["properties"]["principalId"], principal);
    assert_eq!(blob_role["properties"]["principalType"], "ServicePrincipal");
    assert_eq!(
        blob_role["properties"]["roleDefinitionId"],
        json!(roles::role_definition_id(
            fake.subscription_id(),
            &roles::STORAGE_BLOB_DATA_CONTRIBUTOR
        ))
    );
    let expected_name = roles::assignment_name(
        &ids.storage,
        &roles::role_definition_id(
            fake.subscription_id(),
            &roles::STORAGE_BLOB_DATA_CONTRIBUTOR,
        ),
        &ids.identity,
    );
    assert_eq!(blob_role["name"], json!(expected_name));

    // The endpoint the handler gets is the one ARM returned (here the emulator's URL).
    let state = StateFile::peek(dir.path(), twin).expect("state");
    let observed = state
        .resources
        .values()
        .find(|r| r.spec.kind == hot::account::KIND)
        .and_then(|r| r.observed.clone())
        .expect("account recorded");
    assert_eq!(
        observed.attr("document_endpoint"),
        Some("https://127.0.0.1:8081/")
    );

    assert_noop_redeploy(&engine, &fake).await;

    let gone = engine.destroy(None).await.expect("destroy");
    assert_eq!(gone.deleted, ALL, "{gone:?}");
    assert!(twin_resources(&fake, twin).is_empty(), "{:?}", fake.ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hot_drift_is_fixed_and_a_changed_partition_key_is_refused() {
    let fake = FakeArm::start(config()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "drift-twin";
    let config = write_twin(dir.path(), twin);
    let provider = provider(&fake, &config).await;
    let engine = engine(&provider, &config, policy(Duration::from_secs(30)));
    engine.deploy(None).await.expect("deploy");
    let ids = ids(&fake, twin);

    // Someone enables keys on the account and points the blob role at another principal.
    assert!(fake.set(&ids.account, "/properties/disableLocalAuth", json!(false)));
    let role_id = twin_resources(&fake, twin)
        .into_iter()
        .find(|i| i.contains(ARM_ROLE))
        .expect("blob role");
    assert!(fake.set(&role_id, "/properties/principalId", json!("someone-else")));
    fake.clear_log();
    let fixed = engine.deploy(None).await.expect("deploy after drift");
    assert_eq!(fixed.updated, 2, "{fixed:?}");
    assert_eq!(
        stored(&fake, &ids.account)["properties"]["disableLocalAuth"],
        true
    );
    let principal = stored(&fake, &ids.identity)["properties"]["principalId"].clone();
    assert_eq!(
        stored(&fake, &role_id)["properties"]["principalId"],
        principal
    );
    // An assignment cannot be changed in place: it was deleted and made again.
    let calls = fake.mutating_calls();
    let role_calls: Vec<&String> = calls
        .iter()
        .filter(|c| c.to_ascii_lowercase().contains(ARM_ROLE))
        .collect();
    assert_eq!(role_calls.len(), 2, "{calls:?}");
    assert!(role_calls[0].starts_with("DELETE") && role_calls[1].starts_with("PUT"));
    assert_converged(&fake, twin);
    assert_noop_redeploy(&engine, &fake).await;

    // A partition key cannot change; replacing the container would lose the hot data.
    let container = format!(
        "{}/sqlDatabases/{}/containers/{}",
        ids.account,
        hot::database_name(twin),
        hot::CONTAINER_NAME
    );
    assert!(fake.set(
        &container,
        "/properties/resource/partitionKey",
        json!({"paths": ["/deviceId"], "kind": "Hash", "version": 2})
    ));
    let err = engine
        .deploy(None)
        .await
        .expect_err("a changed partition key must stop the deploy");
    let text = format!("{err:?}");
    assert!(
        text.contains("PartitionKeyImmutable") && text.contains("/iotDeviceId"),
        "{text}"
    );
    assert_eq!(
        stored(&fake, &container)["properties"]["resource"]["partitionKey"]["paths"],
        json!(["/deviceId"]),
        "left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hot_principal_not_found_while_propagating_converges_with_one_assignment_each() {
    let fake = FakeArm::start(FakeArmConfig {
        principal_propagation: Duration::from_millis(600),
        ..config()
    })
    .await
    .expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "prop-twin";
    let config = write_twin(dir.path(), twin);
    let provider = provider(&fake, &config).await;
    let engine = engine(&provider, &config, policy(Duration::from_secs(30)));
    engine
        .deploy(None)
        .await
        .expect("deploy waits out propagation");
    assert_converged(&fake, twin);
    // The blob role's first PUT came before the principal had replicated and was retried.
    let role_puts = fake
        .log()
        .into_iter()
        .filter(|c| c.starts_with("PUT") && c.to_ascii_lowercase().contains(ARM_ROLE))
        .count();
    assert!(
        role_puts >= 2,
        "retried after PrincipalNotFound: {role_puts}"
    );
    assert_noop_redeploy(&engine, &fake).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hot_a_deploy_cut_off_after_each_step_resumes_without_duplicates() {
    // Each step's change is applied, then the connection drops and the deploy gives up at once
    // (no retries), as a killed process would leave it; a fresh engine on the same state
    // finishes the job.
    let steps = [
        // The group's PUT is the first under its path (everything else depends on it).
        "/resourceGroups/cut-twin-rg",
        "/userAssignedIdentities/",
        "/databaseAccounts/",
        "/sqlDatabases/",
        "/containers/hot",
        "/sqlRoleAssignments/",
        "/roleAssignments/",
        "/storageAccounts/",
        "/containers/cold",
    ];
    for step in steps {
        let fake = FakeArm::start(config()).await.expect("fake");
        let dir = tempfile::tempdir().expect("tempdir");
        let twin = "cut-twin";
        let config = write_twin(dir.path(), twin);
        let provider = provider(&fake, &config).await;
        // (`/roleAssignments/` does not match `/sqlRoleAssignments/`: the slash comes first.)
        fake.inject("PUT", step, Fault::DropAfterApply, 1);
        let cut = engine(&provider, &config, policy(Duration::ZERO));
        let first = cut.deploy(None).await;
        assert!(
            first.is_err(),
            "{step}: the cut-off deploy reports a failure"
        );
        let resumed = engine(&provider, &config, policy(Duration::from_secs(30)));
        resumed
            .deploy(None)
            .await
            .unwrap_or_else(|e| panic!("{step}: resume: {e:?}"));
        assert_converged(&fake, twin);
        assert_noop_redeploy(&resumed, &fake).await;
        resumed.destroy(None).await.expect("destroy");
        assert!(twin_resources(&fake, twin).is_empty(), "{step}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hot_ten_percent_random_faults_converge_and_destroy_leaves_nothing() {
    let fake = FakeArm::start(FakeArmConfig {
        principal_propagation: Duration::from_millis(200),
        ..config()
    })
    .await
    .expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "flaky-twin";
    let config = write_twin(dir.path(), twin);
    let provider = provider(&fake, &config).await;
    let engine = engine(&provider, &config, policy(Duration::from_secs(60)));
    fake.fail_randomly(10, 0x5eed);
    engine.deploy(None).await.expect("deploy despite faults");
    assert!(fake.random_faults() > 0, "faults were injected");
    fake.fail_randomly(0, 0);
    assert_converged(&fake, twin);
    assert_noop_redeploy(&engine, &fake).await;
    fake.fail_randomly(10, 0xfeed);
    engine.destroy(None).await.expect("destroy despite faults");
    fake.fail_randomly(0, 0);
    assert!(twin_resources(&fake, twin).is_empty(), "{:?}", fake.ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_hot_a_lost_state_file_finds_every_resource_again_by_its_deterministic_name() {
    let fake = FakeArm::start(config()).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "lost-hot";
    let config = write_twin(dir.path(), twin);
    let provider = provider(&fake, &config).await;
    engine(&provider, &config, policy(Duration::from_secs(30)))
        .deploy(None)
        .await
        .expect("deploy");
    std::fs::remove_dir_all(dir.path().join(".deployer")).expect("lose the state");
    fake.clear_log();
    let engine = engine(&provider, &config, policy(Duration::from_secs(30)));
    let again = engine.deploy(None).await.expect("deploy without state");
    // Role assignments included: their UUID names are derived, not random, so none is doubled.
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert!(
        fake.mutating_calls().is_empty(),
        "{:?}",
        fake.mutating_calls()
    );
    assert_converged(&fake, twin);
    engine.destroy(None).await.expect("destroy");
    assert!(twin_resources(&fake, twin).is_empty(), "{:?}", fake.ids());
}
