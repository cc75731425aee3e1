//! Shared by the end-to-end tests: a twin deployed on moto with the real function packages and
//! its local data plane up, driven through the real `deployer` binary.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One local data plane at a time: each runs a broker, the function runtime and 7+ function
/// processes, and two cores do not run several of them well.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A twin deployed on moto with its local data plane up; torn down (plane stopped, twin
/// destroyed, nothing left checked) by [`Twin::finish`].
pub struct Twin {
    /// The config directory.
    pub dir: tempfile::TempDir,
    /// The twin's name.
    pub name: String,
    /// Its device ids.
    pub devices: Vec<String>,
    /// moto's endpoint.
    pub endpoint: String,
    /// Set by [`Twin::finish`]; otherwise (a failed test) dropping stops the local data plane.
    finished: bool,
    _turn: MutexGuard<'static, ()>,
}

impl Drop for Twin {
    fn drop(&mut self) {
        if !self.finished {
            // A failed assertion must not leave the broker, the runner and its functions running
            // after the test's directory is gone.
            let _ = run(self.dir.path(), &["local", "down"]);
        }
    }
}

/// Writes the twin's config: `devices` devices `dev-<i>` with two properties, L1–L3 on AWS.
pub fn write_twin(dir: &Path, twin: &str, devices: usize) -> Vec<String> {
    let ids: Vec<String> = (0..devices).map(|i| format!("dev-{i}")).collect();
    let devs: Vec<Value> = ids
        .iter()
        .map(|id| {
            serde_json::json!({"id": id, "properties": [
                {"name": "temperature", "dataType": "DOUBLE"},
                {"name": "pressure", "dataType": "INTEGER"}]})
        })
        .collect();
    let files = [
        (
            "config.json",
            serde_json::json!({"digital_twin_name": twin,
            "hot_storage_size_in_days": 30, "cold_storage_size_in_days": 90}),
        ),
        ("config_iot_devices.json", Value::Array(devs)),
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
    ids
}

/// The `deployer` binary on the twin in `dir`, against moto, with the real function packages.
pub fn deployer(dir: &Path, args: &[&str]) -> Command {
    let moto = twin_testkit::aws_env_for_moto();
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
    c.arg("-C")
        .arg(dir)
        .args(args)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("DEPLOYER_PREBUILT_FUNCTIONS", twin_testkit::function_zips())
        .stdin(Stdio::null());
    c
}

/// Runs `deployer args` to the end.
pub fn run(dir: &Path, args: &[&str]) -> Output {
    deployer(dir, args).output().expect("run deployer")
}

/// Runs `deployer args` and panics with its output unless it succeeds.
pub fn run_ok(dir: &Path, args: &[&str]) -> Output {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "deployer {args:?} failed ({:?}):\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The JSON document a `--json` command printed.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON document ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

impl Twin {
    /// Deploys twin `name` with `devices` devices and starts its local data plane.
    pub fn up(name: &str, devices: usize) -> Twin {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let moto = twin_testkit::aws_env_for_moto();
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = write_twin(dir.path(), name, devices);
        run_ok(dir.path(), &["deploy", "-y"]);
        run_ok(dir.path(), &["local", "up"]);
        Twin {
            dir,
            name: name.to_string(),
            devices: ids,
            endpoint: moto.endpoint.clone(),
            finished: false,
            _turn: turn,
        }
    }

    /// The config directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `deployer <args>` on this twin.
    pub fn run(&self, args: &[&str]) -> Output {
        run(self.path(), args)
    }

    /// `deployer <args>` on this twin, which must succeed.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        run_ok(self.path(), args)
    }

    /// `deployer local status --json`.
    pub fn local_status(&self) -> Value {
        json_of(&self.run_ok(&["--json", "local", "status"]))
    }

    /// AWS clients on moto for direct checks.
    pub async fn clients(&self) -> Arc<twin_aws::AwsClients> {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .load()
            .await;
        Arc::new(twin_aws::AwsClients::from_sdk_config(
            &config,
            "123456789012".into(),
            "us-east-1".into(),
            "aws".into(),
        ))
    }

    /// The simulator config `deploy` wrote (pointed at the local broker by `local up`).
    pub fn simulator_config(&self) -> PathBuf {
        self.path().join(".deployer/simulator/config.json")
    }

    /// Stops the local data plane, destroys the twin and checks that nothing is left.
    pub fn finish(mut self) {
        self.finished = true;
        self.run_ok(&["local", "down"]);
        self.run_ok(&["destroy", "-y"]);
        let left = leftovers(&self.endpoint, &self.name).expect("list leftovers");
        assert!(left.is_empty(), "left behind: {left:?}");
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

/// Polls `check` with backoff until it gives `Some` or `within` passes.
pub fn wait_for<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    let mut pause = Duration::from_millis(100);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// The layer rows of a verify document, by layer name: (expected, arrived).
pub fn layer_counts(doc: &Value) -> Vec<(String, u64, u64)> {
    doc["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            (
                l["layer"].as_str().unwrap_or_default().to_string(),
                l["expected"].as_u64().unwrap_or_default(),
                l["arrived"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}
