//! Setup shared by the Azure engine tests and `examples/bench_azure.rs` against the test kit's
//! fakes (no ARM emulator exists): a twin directory with some layers on Azure, an ARM client and
//! provider tuned for the fakes' speed, an engine, a stand-in Function App package, and ids.
//!
//! It lives here rather than in twin-testkit because twin-azure dev-depends on the test kit: the
//! kit depending on twin-azure would build a second copy of twin-azure's types.

// Each test binary uses only part of this module.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_azure::l2::package::DeployPolling;
use twin_azure::l2::AppPackage;
use twin_azure::{ArmClient, ArmOptions, Auth, AzureProvider};
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_engine::{Engine, EngineOptions, EventSink, NoEvents, Provider, RetryPolicy};
use twin_testkit::fake_arm::{FakeArm, FakeArmConfig};
use twin_testkit::fake_iot_hub::FakeIotHub;
use twin_testkit::fake_kudu::FakeKudu;

/// Writes a twin's config files with `devices` and puts exactly `azure` on Azure (westeurope).
pub fn try_write_twin(
    dir: &Path,
    twin: &str,
    devices: &[&str],
    azure: &[Layer],
) -> Result<Arc<TwinConfig>, String> {
    let devices: Vec<Value> = devices
        .iter()
        .map(|d| json!({"id": d, "properties": [{"name": "temperature", "dataType": "DOUBLE"}]}))
        .collect();
    let files = [
        (
            "config.json",
            json!({"digital_twin_name": twin, "hot_storage_size_in_days": 30,
                "cold_storage_size_in_days": 90, "mode": "DEBUG"}),
        ),
        ("config_iot_devices.json", Value::Array(devices)),
        (
            "config_providers.json",
            json!({"layer_1_provider": "aws", "layer_2_provider": "aws",
                "layer_3_hot_provider": "aws", "layer_3_cold_provider": "aws",
                "layer_3_archive_provider": "aws", "layer_4_provider": "none",
                "layer_5_provider": "none", "aws": {"region": "us-east-1"}}),
        ),
    ];
    for (name, v) in files {
        std::fs::write(dir.join(name), v.to_string()).map_err(|e| format!("{name}: {e}"))?;
    }
    // twin-config does not accept every Azure layer yet (cold alone on Azure needs
    // cross-cloud movers): the Azure layers are set in memory.
    let mut config = twin_config::load_dir(dir).map_err(|e| e.to_string())?;
    for l in Layer::ALL {
        config.providers.set(l, ProviderName::None);
    }
    for l in azure {
        config.providers.set(*l, ProviderName::Azure);
    }
    config.providers.azure.location = Some("westeurope".into());
    Ok(Arc::new(config))
}

/// [`try_write_twin`] with the one device `sensor-0`, for tests.
pub fn write_twin(dir: &Path, twin: &str, azure: &[Layer]) -> Arc<TwinConfig> {
    try_write_twin(dir, twin, &["sensor-0"], azure).expect("valid twin config")
}

/// ARM polling fast enough for the fakes, giving up on an operation after `deadline`.
pub fn arm_options(deadline: Duration) -> ArmOptions {
    ArmOptions {
        poll_min: Duration::from_millis(5),
        poll_max: Duration::from_millis(50),
        operation_deadline: deadline,
    }
}

/// An ARM client on the fake with the fake's token and `options`.
pub fn try_client(fake: &FakeArm, options: ArmOptions) -> Result<Arc<ArmClient>, String> {
    ArmClient::new(
        &fake.url,
        fake.subscription_id(),
        Auth::StaticToken(twin_testkit::fake_arm::fake_token()),
        options,
    )
    .map(Arc::new)
    .map_err(|e| e.to_string())
}

/// An ARM client on the fake, operations limited to 10 s, for tests.
pub fn client(fake: &FakeArm) -> Arc<ArmClient> {
    try_client(fake, arm_options(Duration::from_secs(10))).expect("client")
}

/// The Azure provider on the fake (no app package), for tests.
pub async fn provider(fake: &FakeArm, config: &TwinConfig) -> AzureProvider {
    AzureProvider::with_client(client(fake), &config.providers.azure)
        .await
        .expect("provider")
}

/// Deployment polling fast enough for the fake deployment endpoint, up to `deadline`.
pub fn polling_until(deadline: Duration) -> DeployPolling {
    DeployPolling {
        min: Duration::from_millis(5),
        max: Duration::from_millis(50),
        deadline,
    }
}

/// [`polling_until`] 10 s.
pub fn polling() -> DeployPolling {
    polling_until(Duration::from_secs(10))
}

/// Retries from 20 ms up to 200 ms apart, for `deadline`.
pub fn retry(deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        cap: Duration::from_millis(200),
        deadline,
    }
}

/// Retries from 10 ms up to 100 ms apart, for `deadline`.
pub fn fast_retry(deadline: Duration) -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(10),
        cap: Duration::from_millis(100),
        deadline,
    }
}

/// An engine over `provider` with 8 resources at a time, `retry` and `events`.
pub fn engine_with(
    config: &Arc<TwinConfig>,
    provider: Arc<dyn Provider>,
    retry: RetryPolicy,
    events: Arc<dyn EventSink>,
) -> Engine {
    Engine::new(
        config.clone(),
        vec![provider],
        EngineOptions {
            concurrency: 8,
            retry,
        },
        events,
        CancellationToken::new(),
    )
}

/// [`engine_with`] without events.
pub fn engine(config: &Arc<TwinConfig>, provider: Arc<dyn Provider>, retry: RetryPolicy) -> Engine {
    engine_with(config, provider, retry, Arc::new(NoEvents))
}

/// Starts the fake ARM with `config`.
pub async fn start_arm(config: FakeArmConfig) -> FakeArm {
    FakeArm::start(config).await.expect("fake ARM")
}

/// A fake deployment endpoint whose deployments stay running for `polls` polls, served by
/// `arm` as the sites' SCM hosts.
pub fn serve_kudu(arm: &FakeArm, polls: u32) -> FakeKudu {
    let kudu = FakeKudu::new(polls, arm.function_sync());
    arm.serve_scm_with(kudu.hosts());
    kudu
}

/// Starts a fake IoT Hub registry and tells `arm` to report it as the hubs' host.
pub async fn try_serve_iot_hub(arm: &FakeArm) -> Result<FakeIotHub, String> {
    let hub = FakeIotHub::start()
        .await
        .map_err(|e| format!("fake IoT Hub registry: {e}"))?;
    arm.set_iot_hub_host(&hub.host);
    Ok(hub)
}

/// A stand-in Function App package: a handler "binary" naming `version`, `host.json` when
/// given, and one `function.json` per function (all the fake deployment endpoint reads).
pub fn try_package(
    version: &str,
    functions: &[&str],
    host_json: Option<&[u8]>,
) -> Result<AppPackage, String> {
    let err = |e: &dyn std::fmt::Display| format!("stand-in package: {e}");
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
    zip.start_file("handler", opts).map_err(|e| err(&e))?;
    zip.write_all(format!("#!handler {version}").as_bytes())
        .map_err(|e| err(&e))?;
    if let Some(host) = host_json {
        zip.start_file("host.json", opts).map_err(|e| err(&e))?;
        zip.write_all(host).map_err(|e| err(&e))?;
    }
    for f in functions {
        zip.start_file(format!("{f}/function.json"), opts)
            .map_err(|e| err(&e))?;
        zip.write_all(br#"{"bindings":[]}"#).map_err(|e| err(&e))?;
    }
    Ok(AppPackage {
        bytes: zip.finish().map_err(|e| err(&e))?.into_inner(),
        hash: format!("hash-{version}"),
        functions: functions.iter().map(|f| f.to_string()).collect(),
    })
}

/// The twin's resource group id in the fake's subscription.
pub fn group_id(fake: &FakeArm, twin: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{twin}-rg",
        fake.subscription_id()
    )
}

/// The fake's resources inside the twin's group (and the group), lowercase ids.
pub fn twin_resources(fake: &FakeArm, twin: &str) -> Vec<String> {
    let g = group_id(fake, twin).to_ascii_lowercase();
    fake.ids()
        .into_iter()
        .filter(|i| *i == g || i.starts_with(&format!("{g}/")))
        .collect()
}

/// A provider standing for another cloud in a mixed twin: it describes, discovers and drives
/// nothing, so an engine deploys the twin's Azure layers for real and the other cloud's layers
/// as empty (their own crate's tests cover them).
pub struct OtherCloud(pub ProviderName);

#[async_trait::async_trait]
impl Provider for OtherCloud {
    fn name(&self) -> ProviderName {
        self.0
    }

    fn scope(&self) -> twin_engine::Scope {
        Default::default()
    }

    async fn layer_resources(
        &self,
        _: Layer,
        _: &TwinConfig,
    ) -> Result<Vec<twin_engine::ResourceSpec>, twin_engine::CloudError> {
        Ok(Vec::new())
    }

    fn driver(&self, _: &str) -> Option<Arc<dyn twin_engine::ResourceDriver>> {
        None
    }

    async fn discover(
        &self,
        _: Layer,
        _: &TwinConfig,
    ) -> Result<Vec<twin_engine::ResourceSpec>, twin_engine::CloudError> {
        Ok(Vec::new())
    }
}
