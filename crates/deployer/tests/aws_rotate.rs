//! `rotate-certificates` through the real `deployer` binary against moto: the `--json` document,
//! one device or all of them, keys never printed, and destroy leaving nothing.

mod support;

use std::path::PathBuf;
use std::process::Output;
use support::{leftovers, run, write_twin};

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
    let left = leftovers(&moto.endpoint, twin);
    assert_eq!(left, Ok(Vec::new()), "destroy left resources behind");
}
