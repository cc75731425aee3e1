//! `rotate-certificates` through the real `deployer` binary against moto: the `--json` document,
//! one device or all of them, keys never printed, and destroy leaving nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn deployer(dir: &Path, prebuilt: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_deployer"));
    c.arg("-C")
        .arg(dir)
        .args(args)
        .env("DEPLOYER_PREBUILT_FUNCTIONS", prebuilt)
        .stdin(Stdio::null());
    c
}

fn run(dir: &Path, prebuilt: &Path, args: &[&str]) -> Output {
    deployer(dir, prebuilt, args)
        .output()
        .expect("run deployer")
}

fn write_twin(dir: &Path, twin: &str, devices: usize) {
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

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains("PRIVATE KEY"),
            "{what} printed a key"
        );
    }
}

fn rotated(out: &Output) -> Vec<serde_json::Value> {
    let doc: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one --json document on stdout");
    doc["rotated"].as_array().cloned().expect("`rotated` list")
}

#[test]
fn rotate_certificates_json_for_one_device_then_all_then_destroy_leaves_nothing() {
    let moto = twin_testkit::aws_env_for_moto();
    let dir = tempfile::tempdir().expect("tempdir");
    let prebuilt: PathBuf = dir.path().join("prebuilt");
    twin_aws::testing::write_prebuilt(&prebuilt).expect("stand-in zips");
    let twin = "rotate-cli";
    write_twin(dir.path(), twin, 2);
    ok(&run(dir.path(), &prebuilt, &["deploy", "-y"]), "deploy");

    let one = run(
        dir.path(),
        &prebuilt,
        &["rotate-certificates", "dev-0", "--json"],
    );
    ok(&one, "rotate-certificates dev-0");
    let r = rotated(&one);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["device"], "dev-0");
    let (old, new) = (&r[0]["old_certificate_id"], &r[0]["new_certificate_id"]);
    assert!(old.is_string() && new.is_string() && old != new, "{r:?}");
    use std::os::unix::fs::PermissionsExt;
    let key = dir.path().join(".deployer/devices/dev-0/private.pem.key");
    let mode = std::fs::metadata(&key).expect("key").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let all = run(dir.path(), &prebuilt, &["rotate_certificates", "--json"]);
    ok(&all, "rotate_certificates");
    let r2 = rotated(&all);
    let devices: Vec<&str> = r2.iter().filter_map(|x| x["device"].as_str()).collect();
    assert_eq!(devices, vec!["dev-0", "dev-1"]);
    assert_eq!(
        &r2[0]["old_certificate_id"], new,
        "the second rotation replaces the first's"
    );

    let again = run(dir.path(), &prebuilt, &["deploy", "-y", "--json"]);
    ok(&again, "deploy after rotation");
    let report: serde_json::Value =
        serde_json::from_slice(&again.stdout).expect("deploy --json document");
    assert_eq!(
        (&report["created"], &report["updated"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "deploy after rotation changed something: {report}"
    );

    ok(&run(dir.path(), &prebuilt, &["destroy", "-y"]), "destroy");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let left = rt.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&moto.endpoint)
            .load()
            .await;
        let c = twin_aws::AwsClients::from_sdk_config(
            &config,
            "123456789012".into(),
            "us-east-1".into(),
            "aws".into(),
        );
        twin_aws::testing::leftovers(&c, twin).await
    });
    assert_eq!(left, Ok(Vec::new()), "destroy left resources behind");
}
