//! `deployer local` through the binary without an emulator: `up` is a usage error that says
//! why, `status` and `down` work on a twin that never ran a local broker.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn write_twin(dir: &Path) {
    let files = [
        (
            "config.json",
            serde_json::json!({"digital_twin_name": "local-cli",
            "hot_storage_size_in_days": 30, "cold_storage_size_in_days": 90}),
        ),
        (
            "config_iot_devices.json",
            serde_json::json!([{"id": "dev-0",
            "properties": [{"name": "temperature", "dataType": "DOUBLE"}]}]),
        ),
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

fn local(dir: &Path, action: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("-C")
        .arg(dir)
        .args(["local", action])
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run deployer")
}

#[test]
fn local_up_against_real_aws_is_a_usage_error_and_status_says_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_twin(dir.path());
    let up = local(dir.path(), "up");
    assert_eq!(up.status.code(), Some(2));
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(
        err.contains("only against an emulator") && err.contains("AWS_ENDPOINT_URL"),
        "{err}"
    );
    let status = local(dir.path(), "status");
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("stopped"));
    let down = local(dir.path(), "down");
    assert!(down.status.success());
    assert!(String::from_utf8_lossy(&down.stdout).contains("not running"));
}
