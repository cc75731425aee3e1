//! Shared setup of the moto tests of L1-L3: a twin directory, prebuilt stand-in function zips,
//! an engine over the AWS provider, and listing every service for the twin's prefix.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;
use twin_aws::artifacts::{Artifacts, PREBUILT_ENV};
use twin_aws::{AwsClients, AwsProvider};
use twin_engine::{Engine, EngineOptions, NoEvents, Provider, RetryPolicy};

/// Points the SDK at moto and the provider at stand-in zips (moto's Lambda does not run them).
pub fn setup() -> &'static twin_testkit::Moto {
    static PREBUILT: OnceLock<PathBuf> = OnceLock::new();
    let m = twin_testkit::aws_env_for_moto();
    let dir = PREBUILT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("twin-aws-prebuilt-{}", std::process::id()));
        twin_aws::testing::write_prebuilt(&dir).expect("write stand-in zips");
        dir
    });
    // SAFETY of set_var: every test sets the same value.
    unsafe { std::env::set_var(PREBUILT_ENV, dir) };
    m
}

/// Writes a twin's three config files (L4/L5 = none, x86_64) with `devices` devices.
pub fn write_twin(dir: &Path, twin: &str, devices: usize) {
    let ids: Vec<String> = (0..devices).map(|i| format!("sensor-{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    write_twin_with_devices(dir, twin, &ids);
}

/// Writes a twin's three config files (L4/L5 = none, x86_64) with devices of these ids.
pub fn write_twin_with_devices(dir: &Path, twin: &str, ids: &[&str]) {
    let devs: Vec<serde_json::Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({"id": id,
                "properties": [{"name": "temperature", "dataType": "DOUBLE"}]})
        })
        .collect();
    let files = [
        (
            "config.json",
            serde_json::json!({"digital_twin_name": twin, "hot_storage_size_in_days": 30,
                "cold_storage_size_in_days": 90, "mode": "DEBUG"}),
        ),
        ("config_iot_devices.json", serde_json::Value::Array(devs)),
        (
            "config_providers.json",
            serde_json::json!({"layer_1_provider": "aws", "layer_2_provider": "aws",
                "layer_3_hot_provider": "aws", "layer_3_cold_provider": "aws",
                "layer_3_archive_provider": "aws", "layer_4_provider": "none",
                "layer_5_provider": "none",
                "aws": {"region": "us-east-1", "architecture": "x86_64"}}),
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

/// A fast retry policy for tests (moto is quick; injected faults clear after a few calls).
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: std::time::Duration::from_millis(20),
        cap: std::time::Duration::from_millis(200),
        deadline: std::time::Duration::from_secs(30),
    }
}

/// Clients talking to `endpoint` (moto or a proxy in front of it).
pub async fn clients(endpoint: &str) -> Arc<AwsClients> {
    clients_in(endpoint, "us-east-1").await
}

/// Clients talking to `endpoint` in `region`.
pub async fn clients_in(endpoint: &str, region: &str) -> Arc<AwsClients> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(region.to_string()))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    Arc::new(AwsClients::from_sdk_config(
        &config,
        "123456789012".into(),
        region.into(),
        "aws".into(),
    ))
}

/// An engine over the AWS provider for the twin in `dir`, with clients on `endpoint` in `region`.
pub async fn engine_in_region(dir: &Path, endpoint: &str, region: &str) -> Engine {
    engine_with(dir, clients_in(endpoint, region).await).0
}

/// An engine over the AWS provider for the twin in `dir`, with clients on `endpoint`.
pub async fn engine(dir: &Path, endpoint: &str) -> (Engine, Arc<twin_config::TwinConfig>) {
    engine_with(dir, clients(endpoint).await)
}

fn engine_with(dir: &Path, clients: Arc<AwsClients>) -> (Engine, Arc<twin_config::TwinConfig>) {
    let config = Arc::new(twin_config::load_dir(dir).expect("valid twin config"));
    let artifacts = Arc::new(Artifacts::new(None, config.providers.aws.architecture));
    let provider: Arc<dyn Provider> = Arc::new(AwsProvider::with_clients(clients, artifacts));
    let engine = Engine::new(
        config.clone(),
        vec![provider],
        EngineOptions {
            concurrency: 16,
            retry: fast_retry(),
        },
        Arc::new(NoEvents),
        CancellationToken::new(),
    );
    (engine, config)
}

/// What of the twin `prefix` is left in any service.
pub async fn leftovers(c: &AwsClients, prefix: &str) -> Vec<String> {
    twin_aws::testing::leftovers(c, prefix)
        .await
        .expect("list services")
}
