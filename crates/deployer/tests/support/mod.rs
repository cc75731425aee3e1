//! Shared by the binary tests (against moto and against the Azure fakes): running the real
//! `deployer`, killing it at a journal depth, writing a twin's config, and listing what of a
//! twin is left in moto.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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
    write_twin_with(
        dir,
        twin,
        devices,
        serde_json::json!({"layer_1_provider": "aws",
        "layer_2_provider": "aws", "layer_3_hot_provider": "aws",
        "layer_3_cold_provider": "aws", "layer_3_archive_provider": "aws",
        "layer_4_provider": "none", "layer_5_provider": "none",
        "aws": {"region": "us-east-1", "architecture": "x86_64"}}),
    )
}

/// Writes a twin's three config files with `devices` devices `dev-<i>` and `providers` as
/// `config_providers.json`.
pub fn write_twin_with(dir: &Path, twin: &str, devices: usize, providers: serde_json::Value) {
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
        ("config_providers.json", providers),
    ];
    for (name, v) in files {
        std::fs::write(dir.join(name), v.to_string()).expect("write config");
    }
}

/// How many lines the journal at `path` has (0 while it does not exist).
pub fn journal_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Starts `command` (a `deployer` run) and kills it with SIGKILL once the journal has `lines`
/// lines (or lets it finish if it never gets there).
pub fn run_and_kill(mut command: Command, journal: &Path, lines: usize) {
    // The arguments only: the command's environment may hold a token.
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn deployer");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut wait = Duration::from_millis(2);
    loop {
        if journal_lines(journal) >= lines {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            return;
        }
        if child.try_wait().expect("wait").is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never reached {lines} journal lines"
        );
        std::thread::sleep(wait); // polling the journal, not waiting for time to pass
        wait = (wait * 2).min(Duration::from_millis(20));
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
