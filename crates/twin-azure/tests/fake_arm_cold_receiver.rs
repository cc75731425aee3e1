//! A twin whose L3 hot is on another cloud and whose L3 cold and archive are on Azure: the
//! Azure side of the hot → cold boundary, deployed through the engine against the test kit's
//! fake ARM and fake deployment endpoint. The Function App lives under L3 cold (the twin's app
//! layer), holds only the cold layer's functions with `ingress-cold` among them, carries no
//! persister setting, names its receiver's URL as an output, keeps the boundary secret written
//! beside it across redeploys, and leaves nothing behind on destroy.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use support::{group_id, twin_resources, OtherCloud};
use tokio_util::sync::CancellationToken;
use twin_azure::l2::handler_package::{app_functions, catalogue};
use twin_azure::l2::{self, site, AppPackage, StaticPackage};
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{Engine, EngineOptions, NoEvents, Provider};
use twin_functions_azure::app::{package, package_hash, AppFunction, PackageInput};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig};
use twin_testkit::fake_kudu::FakeKudu;

/// L1, L2 and L3 hot on AWS; L3 cold and archive on Azure; L4 and L5 not deployed.
fn write_twin(dir: &Path, twin: &str) -> Arc<TwinConfig> {
    let mut config = (*support::write_twin(dir, twin, &[Layer::L3Cold, Layer::L3Archive])).clone();
    for l in [Layer::L1, Layer::L2, Layer::L3Hot] {
        config.providers.set(l, ProviderName::Aws);
    }
    Arc::new(config)
}

/// The package the deployer builds for `config` (`twin_functions_azure::app::package`, the
/// functions `app_functions` picks), with a stand-in x86-64 ELF handler binary.
fn real_package(config: &TwinConfig) -> AppPackage {
    let mut handler = b"\x7fELF\x02\x01\x01\x00".to_vec();
    handler.resize(18, 0);
    handler.extend_from_slice(&0x3Eu16.to_le_bytes());
    handler.extend_from_slice(b" a stand-in handler");
    let functions = app_functions(config);
    let bytes = package(&PackageInput {
        handler,
        catalogue: catalogue(config).expect("catalogue"),
        functions: functions.clone(),
        processors: BTreeMap::new(),
        events: BTreeMap::new(),
    })
    .expect("package");
    AppPackage {
        hash: package_hash(&bytes),
        bytes,
        functions: functions.iter().map(|f| f.name().to_string()).collect(),
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

/// An engine over the Azure provider (building `pkg`) and a stand-in AWS provider.
async fn engine(fake: &FakeArm, config: &Arc<TwinConfig>, pkg: AppPackage) -> Engine {
    let azure = support::provider(fake, config)
        .await
        .with_app_package(Arc::new(StaticPackage(pkg)), support::polling());
    let providers: Vec<Arc<dyn Provider>> =
        vec![Arc::new(azure), Arc::new(OtherCloud(ProviderName::Aws))];
    Engine::new(
        config.clone(),
        providers,
        EngineOptions {
            concurrency: 8,
            retry: support::retry(std::time::Duration::from_secs(30)),
        },
        Arc::new(NoEvents),
        CancellationToken::new(),
    )
}

fn app_name(fake: &FakeArm, twin: &str) -> String {
    twin_config::names::azure_unique_name(twin, "func", fake.subscription_id())
}

fn site_arm_id(fake: &FakeArm, twin: &str) -> String {
    format!(
        "{}/providers/Microsoft.Web/sites/{}",
        group_id(fake, twin),
        app_name(fake, twin)
    )
}

/// The app's settings as the fake ARM holds them.
fn settings(fake: &FakeArm, twin: &str) -> serde_json::Map<String, Value> {
    fake.resource(&format!("{}/config/appsettings", site_arm_id(fake, twin)))
        .expect("app settings")["properties"]
        .as_object()
        .cloned()
        .expect("an object")
}

/// Calls that change something; the app settings' `list` is a POST that only reads.
fn changes(fake: &FakeArm) -> Vec<String> {
    fake.mutating_calls()
        .into_iter()
        .filter(|c| !c.ends_with("/config/appsettings/list"))
        .collect()
}

/// The state file as JSON.
fn state(dir: &Path, twin: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(".deployer").join(format!("{twin}.json")))
        .expect("state file");
    serde_json::from_str(&text).expect("state JSON")
}

/// Every file name in a zip and the text of `name`.
fn zip_entry(bytes: &[u8], name: &str) -> (Vec<String>, Option<String>) {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("zip");
    let names: Vec<String> = zip.file_names().map(str::to_string).collect();
    let text = zip.by_name(name).ok().map(|mut f| {
        let mut s = String::new();
        f.read_to_string(&mut s).expect("text");
        s
    });
    (names, text)
}

#[test]
fn the_app_layer_is_l3_cold_and_the_package_holds_only_its_functions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_twin(dir.path(), "pick-twin");
    assert_eq!(l2::app_layer(&config), Some(Layer::L3Cold));
    assert!(l2::receives_hot_to_cold(&config));
    assert_eq!(
        app_functions(&config),
        [AppFunction::ColdToArchiveMover, AppFunction::IngressCold]
    );
    let (id, attr) = l2::ingress_cold_url_source(&config).expect("a receiver");
    assert_eq!(id.0, "l3-cold/azure_function_app/twin");
    assert_eq!(attr, site::INGRESS_COLD_URL);

    // With L3 hot on Azure too, no boundary enters cold: no ingress, and the app is L3 hot's.
    let mut same_cloud = (*config).clone();
    same_cloud.providers.set(Layer::L3Hot, ProviderName::Azure);
    assert_eq!(l2::app_layer(&same_cloud), Some(Layer::L3Hot));
    assert!(!app_functions(&same_cloud).contains(&AppFunction::IngressCold));
    assert_eq!(l2::ingress_cold_url_source(&same_cloud), None);
    // L3 hot on `none`: no hop at all, so no ingress either.
    let mut no_hot = (*config).clone();
    no_hot.providers.set(Layer::L3Hot, ProviderName::None);
    assert_eq!(app_functions(&no_hot), [AppFunction::ColdToArchiveMover]);
    // L2 on Azure keeps the app where it always was.
    let mut l2_too = (*config).clone();
    l2_too.providers.set(Layer::L2, ProviderName::Azure);
    assert_eq!(l2::app_layer(&l2_too), Some(Layer::L2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_arm_cold_receiver_deploys_the_ingress_keeps_boundary_secrets_and_destroys_everything()
{
    use twin_azure::boundary_secret::AppSettingsSecretStore;
    use twin_functions::boundary::{sync, BoundarySecret, InMemorySecretStore, SyncOutcome};
    use twin_functions_azure::app::settings as names_of;

    let f = fakes().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "recv-twin";
    let config = write_twin(dir.path(), twin);
    let pkg = real_package(&config);
    let engine = engine(&f.arm, &config, pkg.clone()).await;

    let report = engine.deploy(None).await.expect("deploy");
    // The group, the identity, the storage account, its cold, archive and nonce containers and
    // the identity's role on it; the app's twelve (its storage and package container,
    // workspace, insights, plan, site, settings, two policies, package, two roles).
    assert_eq!(report.created, 19, "{report:?}");

    // The app, under L3 cold, with the package the deployer built: the cold layer's functions,
    // `ingress-cold` anonymous (the HMAC envelope is its auth), nothing of L2 or L3 hot.
    let app = app_name(&f.arm, twin);
    assert!(
        f.arm.resource(&site_arm_id(&f.arm, twin)).is_some(),
        "{:?}",
        f.arm.ids()
    );
    let deployed = f.kudu.package(&app).expect("a deployed package");
    assert_eq!(deployed, pkg.bytes);
    let (names, ingress) = zip_entry(&deployed, "ingress-cold/function.json");
    let ingress: Value =
        serde_json::from_str(&ingress.expect("ingress-cold/function.json")).expect("function.json");
    assert_eq!(ingress["bindings"][0]["type"], "httpTrigger", "{ingress:#}");
    assert_eq!(
        ingress["bindings"][0]["authLevel"], "anonymous",
        "{ingress:#}"
    );
    for absent in ["dispatcher", "processor", "persister", "hot-reader"] {
        assert!(
            !names.iter().any(|n| n.starts_with(&format!("{absent}/"))),
            "{absent} is another cloud's: {names:?}"
        );
    }
    for fun in ["cold-to-archive-mover", "ingress-cold"] {
        assert!(
            f.arm
                .resource(&format!("{}/functions/{fun}", site_arm_id(&f.arm, twin)))
                .is_some(),
            "{fun} is listed: {:?}",
            f.arm.ids()
        );
    }

    // Settings: what the cold functions read, none of the persister's or the hot tier's, and
    // never a boundary secret.
    let s = settings(&f.arm, twin);
    assert_eq!(s["COLD_BUCKET"], "cold");
    assert_eq!(s["ARCHIVE_BUCKET"], "archive");
    assert_eq!(s[names_of::BOUNDARY_NONCE_CONTAINER], "boundary-nonces");
    let blob = s[names_of::BLOB_ENDPOINT].as_str().expect("blob endpoint");
    let account = twin_config::names::storage_account_name(twin, f.arm.subscription_id());
    assert!(blob.contains(&account), "{blob}");
    for absent in [
        names_of::COSMOS_ENDPOINT,
        names_of::COSMOS_DATABASE,
        names_of::HOT_TABLE,
        names_of::ADT_ENDPOINT,
        names_of::EVENT_RULES,
        names_of::IOTHUB_HOSTNAME,
        names_of::EVENT_TOPIC_ENDPOINT,
        names_of::INGRESS_COLD_SECRET,
        names_of::INGRESS_COLD_SECRET_NEXT,
    ] {
        assert!(s.get(absent).is_none(), "{absent} is set: {s:#?}");
    }
    let nonces = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/{account}/blobServices/default/containers/boundary-nonces",
        group_id(&f.arm, twin)
    );
    assert!(f.arm.resource(&nonces).is_some(), "{:?}", f.arm.ids());

    // The receiver's URL is the site's output, from the host ARM reported.
    let st = state(dir.path(), twin);
    let (site_spec, attr) = l2::ingress_cold_url_source(&config).expect("a receiver");
    let site_record = &st["resources"][&site_spec.0];
    assert_eq!(site_record["layer"], "L3Cold", "{site_record:#}");
    let host = site_record["observed"]["attributes"]["default_host_name"]
        .as_str()
        .expect("host");
    let url = site_record["observed"]["attributes"][attr]
        .as_str()
        .expect("ingress URL");
    assert!(
        url.ends_with(&format!("{host}/api/ingress-cold")) && url.starts_with("http"),
        "{url}"
    );
    assert!(
        st["resources"]
            .as_object()
            .expect("resources")
            .keys()
            .all(|k| !k.starts_with("l2/") && !k.starts_with("l3-hot/")),
        "nothing under another cloud's layers: {:?}",
        st["resources"]
            .as_object()
            .map(|r| r.keys().collect::<Vec<_>>())
    );

    // A second deploy changes nothing.
    f.arm.clear_log();
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    assert!(changes(&f.arm).is_empty(), "{:?}", changes(&f.arm));
    assert_eq!(f.kudu.uploads(&app), 1, "no re-upload");

    // The boundary secret written beside the settings resource survives a redeploy that
    // rewrites the app's settings, and never reaches the state.
    let group = twin_config::names::resource_group(twin);
    let receiver = AppSettingsSecretStore::hot_to_cold(support::client(&f.arm), &group, &app);
    let secret = BoundarySecret::generate();
    let next = BoundarySecret::generate();
    let sender = InMemorySecretStore::new("the AWS sender", Some(secret.clone()));
    assert_eq!(
        sync(&sender, &receiver).await.expect("syncs"),
        SyncOutcome::Installed
    );
    use twin_functions::boundary::BoundarySecretStore;
    receiver.stage_next(&next).await.expect("stages");
    let id = format!("{}/config/appsettings", site_arm_id(&f.arm, twin));
    let mut drifted = f.arm.resource(&id).expect("settings");
    drifted["properties"]["COLD_BUCKET"] = serde_json::json!("someone-changed-it");
    f.arm.insert(&id, drifted);
    let fixed = engine.deploy(None).await.expect("deploy after drift");
    assert_eq!((fixed.created, fixed.updated), (0, 1), "{fixed:?}");
    let s = settings(&f.arm, twin);
    assert_eq!(s["COLD_BUCKET"], "cold", "the drift is fixed");
    assert_eq!(s[names_of::INGRESS_COLD_SECRET], secret.encoded());
    assert_eq!(s[names_of::INGRESS_COLD_SECRET_NEXT], next.encoded());
    assert_eq!(
        receiver.current().await.expect("reads"),
        Some(secret.clone())
    );
    let text = serde_json::to_string(&state(dir.path(), twin)).expect("text");
    assert!(!text.contains(&secret.encoded()) && !text.contains(&next.encoded()));

    let gone = engine.destroy(None).await.expect("destroy");
    assert_eq!(gone.deleted, 19, "{gone:?}");
    assert!(twin_resources(&f.arm, twin).is_empty(), "{:?}", f.arm.ids());
}
