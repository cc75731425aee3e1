//! Shared by the binary tests against moto: running the real `deployer`, writing a twin's
//! config, and listing what of a twin is left in the emulator.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The `deployer` binary on the twin in `dir`, with stand-in function zips from `prebuilt`.
pub fn deployer(dir: &Path, prebuilt: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
    c.arg("-C")
        .arg(dir)
        .args(args)
        .env("DEPLOYER_PREBUILT_FUNCTIONS", prebuilt)
        .stdin(Stdio::null());
    c
}

/// Runs `deployer args` to the end.
pub fn run(dir: &Path, prebuilt: &Path, args: &[&str]) -> Output {
    deployer(dir, prebuilt, args)
        .output()
        .expect("run deployer")
}

/// Writes a twin's three config files (L1-L3 on AWS, x86_64) with `devices` devices `dev-<i>`.
pub fn write_twin(dir: &Path, twin: &str, devices: usize) {
    let devs: Vec<serde_json::Value> = (0..devices)
        .map(|i| {
            serde_json::json!({"id": format!("dev-{i}"),
            "properties": [{"name": "temperature", "dataType": "DOUBLE"}]})
        })
        .collect();
    let files = [
        (
            "config.json",
            serde_json::json!({"digital_twin_name": twin,
            "hot_storage_size_in_days": 30, "cold_storage_size_in_days": 90}),
        ),
        ("config_iot_devices.json", serde_json::Value::Array(devs)),
        (
            "config_providers.json",
            serde_json::json!({"layer_1_provider": "aws",
            "layer_2_provider": "aws", "layer_3_hot_provider": "aws",
            "layer_3_cold_provider": "aws", "layer_3_archive_provider": "aws",
            "layer_4_provider": "none", "layer_5_provider": "none",
            "aws": {"region": "us-east-1", "architecture": "x86_64"}}),
        ),
    ];
    for (name, v) in files {
        std::fs::write(dir.join(name), v.to_string()).expect("write config");
    }
}

/// What of twin `twin` is left in the moto at `endpoint`, in any service.
pub fn leftovers(endpoint: &str, twin: &str) -> Result<Vec<String>, String> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .load()
            .await;
        let c = twin_aws::AwsClients::from_sdk_config(
            &config,
            "123456789012".into(),
            "us-east-1".into(),
            "aws".into(),
        );
        twin_aws::testing::leftovers(&c, twin).await
    })
}
