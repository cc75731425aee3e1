//! The Azure provider through the engine against the test kit's fake ARM (no ARM emulator
//! exists): deploy, a no-op second deploy, drift, injected faults, provider registration,
//! a foreign resource group, and destroy (cold/archive: group, identity, storage account with
//! the identity's Storage Blob Data Contributor role, two containers).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::{group_id, twin_resources};
use twin_azure::AzureProvider;
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{Engine, Provider};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig, Fault};

fn write_twin(dir: &Path, twin: &str) -> Arc<TwinConfig> {
    support::write_twin(dir, twin, &[Layer::L3Cold, Layer::L3Archive])
}

/// The storage layers alone: L3 cold on Azure gets the twin's Function App too (its cold-to-
/// archive mover), which `fake_arm_cold_receiver` covers.
async fn engine(fake: &FakeArm, config: &Arc<TwinConfig>) -> (Engine, Arc<AzureProvider>) {
    let provider = Arc::new(support::provider(fake, config).await.without_app());
    let engine = support::engine(
        config,
        provider.clone(),
        support::retry(Duration::from_secs(30)),
    );
    (engine, provider)
}

fn account_id(fake: &FakeArm, twin: &str) -> String {
    format!(
        "{}/providers/Microsoft.Storage/storageAccounts/{}",
        group_id(fake, twin),
        twin_config::names::storage_account_name(twin, fake.subscription_id())
    )
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
