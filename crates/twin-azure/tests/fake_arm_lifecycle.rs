//! The Azure provider through the engine against the test kit's fake ARM (no ARM emulator
//! exists): deploy, a no-op second deploy, drift, injected faults, provider registration,
//! a foreign resource group, and destroy (cold/archive: group, identity, storage account with
//! the identity's Storage Blob Data Contributor role, two containers).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_azure::{ArmClient, ArmOptions, Auth, AzureProvider};
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{Engine, EngineOptions, NoEvents, Provider, RetryPolicy};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, Fault};

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
    // twin-config does not accept Azure layers yet (cold alone on Azure needs cross-cloud
    // movers): the tests put L3 cold and archive on Azure in memory.
    let mut config = twin_config::load_dir(dir).expect("valid twin config");
    for l in Layer::ALL {
        config.providers.set(l, ProviderName::None);
    }
    config.providers.set(Layer::L3Cold, ProviderName::Azure);
    config.providers.set(Layer::L3Archive, ProviderName::Azure);
    config.providers.azure.location = Some("westeurope".into());
    Arc::new(config)
}

async fn engine(fake: &FakeArm, config: &Arc<TwinConfig>) -> (Engine, Arc<AzureProvider>) {
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
    let provider = Arc::new(
        AzureProvider::with_client(Arc::new(arm), &config.providers.azure)
            .await
            .expect("provider"),
    );
    let engine = Engine::new(
        config.clone(),
        vec![provider.clone() as Arc<dyn Provider>],
        EngineOptions {
            concurrency: 8,
            retry: RetryPolicy {
                base: Duration::from_millis(20),
                cap: Duration::from_millis(200),
                deadline: Duration::from_secs(30),
            },
        },
        Arc::new(NoEvents),
        CancellationToken::new(),
    );
    (engine, provider)
}

fn group_id(fake: &FakeArm, twin: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{twin}-rg",
        fake.subscription_id()
    )
}

fn account_id(fake: &FakeArm, twin: &str) -> String {
    format!(
        "{}/providers/Microsoft.Storage/storageAccounts/{}",
        group_id(fake, twin),
        twin_config::names::storage_account_name(twin, fake.subscription_id())
    )
}

/// The fake's resources inside the twin's group (and the group), lowercase ids.
fn twin_resources(fake: &FakeArm, twin: &str) -> Vec<String> {
    let g = group_id(fake, twin).to_ascii_lowercase();
    fake.ids()
        .into_iter()
        .filter(|i| *i == g || i.starts_with(&format!("{g}/")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_deploy_is_idempotent_fixes_drift_and_destroys_everything() {
    let fake = FakeArm::start(FakeArmConfig::default())
        .await
        .expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "az-twin";
    let config = write_twin(dir.path(), twin);
    let (engine, provider) = engine(&fake, &config).await;
    let scope = provider.scope();
    assert_eq!(
        scope.get("tenant").map(String::as_str),
        Some(fake.tenant_id())
    );
    assert_eq!(
        scope.get("subscription").map(String::as_str),
        Some(fake.subscription_id())
    );

    let report = engine.deploy(None).await.expect("deploy");
    assert_eq!(report.created, 6, "{report:?}");
    let ids = twin_resources(&fake, twin);
    assert_eq!(ids.len(), 6, "{ids:#?}");
    let account = fake.resource(&account_id(&fake, twin)).expect("account");
    assert_eq!(account["kind"], "StorageV2");
    assert_eq!(account["properties"]["allowBlobPublicAccess"], false);
    assert_eq!(account["properties"]["allowSharedKeyAccess"], false);
    assert_eq!(account["properties"]["minimumTlsVersion"], "TLS1_2");
    assert_eq!(account["tags"]["twin"], twin);
    for c in ["cold", "archive"] {
        let id = format!(
            "{}/blobServices/default/containers/{c}",
            account_id(&fake, twin)
        );
        let container = fake.resource(&id).expect("container");
        assert_eq!(container["properties"]["publicAccess"], "None");
    }
    let identity = fake
        .resource(&format!(
            "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{twin}-identity",
            group_id(&fake, twin)
        ))
        .expect("identity");
    assert_eq!(identity["tags"]["twin"], twin);

    fake.clear_log();
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert!(
        fake.mutating_calls().is_empty(),
        "{:?}",
        fake.mutating_calls()
    );

    assert!(fake.set(
        &account_id(&fake, twin),
        "/properties/allowBlobPublicAccess",
        serde_json::json!(true)
    ));
    let fixed = engine.deploy(None).await.expect("deploy after drift");
    assert_eq!(fixed.updated, 1, "{fixed:?}");
    let account = fake.resource(&account_id(&fake, twin)).expect("account");
    assert_eq!(account["properties"]["allowBlobPublicAccess"], false);

    let gone = engine.destroy(None).await.expect("destroy");
    assert_eq!(gone.deleted, 6, "{gone:?}");
    assert!(twin_resources(&fake, twin).is_empty(), "{:?}", fake.ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_faults_still_converge_without_duplicates() {
    let fake = FakeArm::start(FakeArmConfig::default())
        .await
        .expect("fake");
    fake.inject(
        "PUT",
        "/storageAccounts/",
        Fault::Throttle {
            retry_after_secs: 1,
        },
        1,
    );
    fake.inject("PUT", "/userAssignedIdentities/", Fault::Busy, 1);
    fake.inject("PUT", "/containers/cold", Fault::ServerError, 1);
    fake.inject("PUT", "/containers/archive", Fault::DropAfterApply, 1);
    fake.inject("PUT", "/resourceGroups/", Fault::DropAfterApply, 1);
    fake.inject("GET", "/fake/", Fault::ServerError, 2);
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "fault-twin";
    let config = write_twin(dir.path(), twin);
    let (engine, _) = engine(&fake, &config).await;
    let report = engine.deploy(None).await.expect("deploy despite faults");
    assert_eq!(report.created, 6, "{report:?}");
    assert_eq!(fake.faults_left(), 0, "every fault was met");
    assert_eq!(twin_resources(&fake, twin).len(), 6, "{:?}", fake.ids());
    fake.clear_log();
    engine.deploy(None).await.expect("second deploy");
    assert!(
        fake.mutating_calls().is_empty(),
        "{:?}",
        fake.mutating_calls()
    );
    fake.inject(
        "DELETE",
        "/resourceGroups/",
        Fault::Throttle {
            retry_after_secs: 1,
        },
        1,
    );
    engine.destroy(None).await.expect("destroy");
    assert!(twin_resources(&fake, twin).is_empty(), "{:?}", fake.ids());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_registers_a_missing_resource_provider() {
    let fake = FakeArm::start(FakeArmConfig {
        unregistered: vec!["Microsoft.Storage".into()],
        ..FakeArmConfig::default()
    })
    .await
    .expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "reg-twin";
    let config = write_twin(dir.path(), twin);
    let (engine, _) = engine(&fake, &config).await;
    engine.deploy(None).await.expect("deploy");
    assert!(fake.is_registered("Microsoft.Storage"));
    let registrations: Vec<String> = fake
        .mutating_calls()
        .into_iter()
        .filter(|c| c.ends_with("/providers/Microsoft.Storage/register"))
        .collect();
    assert_eq!(registrations.len(), 1, "{registrations:?}");
    assert_eq!(twin_resources(&fake, twin).len(), 6);
    engine.destroy(None).await.expect("destroy");
    assert!(twin_resources(&fake, twin).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_an_untagged_group_of_the_same_name_is_refused_and_left_alone() {
    let fake = FakeArm::start(FakeArmConfig::default())
        .await
        .expect("fake");
    let twin = "own-twin";
    let gid = group_id(&fake, twin);
    fake.insert(
        &gid,
        serde_json::json!({"name": format!("{twin}-rg"), "location": "westeurope",
            "tags": {"team": "someone-else"}, "properties": {"provisioningState": "Succeeded"}}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_twin(dir.path(), twin);
    let (engine, _) = engine(&fake, &config).await;
    let err = engine.deploy(None).await.expect_err("deploy must refuse");
    let text = err.to_string();
    assert!(text.contains("not managed by twin own-twin"), "{text}");
    assert_eq!(twin_resources(&fake, twin), vec![gid.to_ascii_lowercase()]);
    let report = engine.destroy(None).await.expect("destroy");
    assert_eq!(report.foreign, 1, "{report:?}");
    let group = fake
        .resource(&gid)
        .expect("the foreign group is still there");
    assert_eq!(group["tags"], serde_json::json!({"team": "someone-else"}));
    assert!(
        !fake
            .mutating_calls()
            .iter()
            .any(|c| c.starts_with("DELETE") || c.contains("resourceGroups/own-twin-rg/providers")),
        "{:?}",
        fake.mutating_calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_a_lost_state_file_is_found_again_by_tag() {
    let fake = FakeArm::start(FakeArmConfig::default())
        .await
        .expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "lost-twin";
    let config = write_twin(dir.path(), twin);
    let (engine, _) = engine(&fake, &config).await;
    engine.deploy(None).await.expect("deploy");
    std::fs::remove_dir_all(dir.path().join(".deployer")).expect("lose the state");
    // The config no longer has Azure layers: only discovery can find the resources.
    let mut moved = (*config).clone();
    moved.providers.set(Layer::L3Cold, ProviderName::None);
    moved.providers.set(Layer::L3Archive, ProviderName::None);
    let moved = Arc::new(moved);
    let (engine, _) = self::engine(&fake, &moved).await;
    engine.destroy(None).await.expect("destroy");
    assert!(twin_resources(&fake, twin).is_empty(), "{:?}", fake.ids());
}
