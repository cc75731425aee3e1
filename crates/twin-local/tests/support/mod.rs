//! Shared by the twin-local tests against moto: a twin's config, clients on moto, and a deploy
//! through the engine with the AWS provider.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_aws::artifacts::{Artifacts, PREBUILT_ENV};
use twin_aws::{AwsClients, AwsProvider};
use twin_engine::{Engine, EngineOptions, NoEvents, Provider, RetryPolicy};

/// Writes a twin's config (L1–L3 on AWS) with devices `ids`, each with a `temperature`.
pub fn write_twin(dir: &Path, twin: &str, ids: &[&str]) {
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
                "cold_storage_size_in_days": 90}),
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
        std::fs::write(dir.join(name), v.to_string()).expect("write config");
    }
}

/// Clients on the moto at `endpoint` (SDK retries off: the engine retries).
pub async fn clients(endpoint: &str) -> Arc<AwsClients> {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .endpoint_url(endpoint)
        .load()
        .await;
    Arc::new(AwsClients::from_sdk_config(
        &config,
        "123456789012".into(),
        "us-east-1".into(),
        "aws".into(),
    ))
}

/// Which function packages a deploy uploads.
pub enum Zips<'a> {
    /// Stand-ins (for tests that run no function), written under the twin's directory.
    StandIn,
    /// These real packages (`scripts/build-functions.sh`).
    Real(&'a Path),
}

/// Deploys the twin in `dir` on moto through the engine.
pub async fn deploy(dir: &Path, clients: Arc<AwsClients>, zips: Zips<'_>) {
    let packages = match zips {
        Zips::StandIn => {
            let prebuilt = dir.join("prebuilt");
            twin_aws::testing::write_prebuilt(&prebuilt).expect("stand-in zips");
            prebuilt
        }
        Zips::Real(p) => p.to_path_buf(),
    };
    // SAFETY of set_var: each test binary deploys from one test, which sets it once before any
    // engine reads it.
    unsafe { std::env::set_var(PREBUILT_ENV, &packages) };
    let config = Arc::new(twin_config::load_dir(dir).expect("valid twin config"));
    let artifacts = Arc::new(Artifacts::new(None, config.providers.aws.architecture));
    let provider: Arc<dyn Provider> = Arc::new(AwsProvider::with_clients(clients, artifacts));
    let engine = Engine::new(
        config,
        vec![provider],
        EngineOptions {
            concurrency: 16,
            retry: RetryPolicy {
                base: Duration::from_millis(20),
                cap: Duration::from_millis(200),
                deadline: Duration::from_secs(30),
            },
        },
        Arc::new(NoEvents),
        CancellationToken::new(),
    );
    engine.deploy(None).await.expect("deploy on moto");
}
