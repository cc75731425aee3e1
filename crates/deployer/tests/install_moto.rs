//! The deployer as an installed tool, against moto: the binary built with the default function
//! packages compiled in (`DEPLOYER_EMBED_FUNCTIONS`, which scripts/test.sh exports for the test
//! build), copied into an empty directory holding only the example twin's three config files,
//! deploys it with no cargo, cargo-lambda or zig on PATH and no checkout to build from, then
//! destroys it leaving nothing.

mod support;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `deployer args` in `dir` with nothing but an empty directory on PATH and a fresh HOME: no
/// toolchain, no prebuilt zips, no functions directory.
fn installed(bin: &Path, dir: &Path, path: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .current_dir(dir)
        .args(args)
        .env("PATH", path)
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("DEPLOYER_PREBUILT_FUNCTIONS")
        .env_remove("DEPLOYER_FUNCTIONS_DIR")
        .env_remove("CARGO_HOME")
        .env_remove("RUSTUP_HOME")
        .env_remove("TWIN_VENV")
        .stdin(Stdio::null())
        .output()
        .expect("run the installed deployer")
}

#[test]
fn the_installed_binary_deploys_the_example_twin_from_an_empty_directory_without_a_toolchain() {
    let built = Path::new(env!("CARGO_BIN_EXE_deployer"));
    let version = Command::new(built)
        .arg("--version")
        .output()
        .expect("deployer --version");
    let version = text(&version.stdout);
    assert!(
        !version.contains("built from source"),
        "this test needs a deployer built with the function packages compiled in: build it with \
         DEPLOYER_EMBED_FUNCTIONS=<target>/lambda (scripts/test.sh exports it after \
         scripts/build-functions.sh); got `{}`",
        version.trim()
    );
    let moto = twin_testkit::aws_env_for_moto();

    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("twin");
    let path = root.path().join("bin");
    let home = root.path().join("home");
    for d in [&dir, &path, &home] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    for f in [
        "config.json",
        "config_iot_devices.json",
        "config_providers.json",
    ] {
        std::fs::copy(repo_root().join(f), dir.join(f)).expect("copy config");
    }
    let bin = dir.join("deployer");
    std::fs::copy(built, &bin).expect("copy the binary");
    for tool in ["cargo", "cargo-lambda", "zig", "rustc"] {
        assert!(
            !path.join(tool).exists(),
            "{tool} must not be reachable on PATH"
        );
    }

    let deploy = installed(&bin, &dir, &path, &home, &["deploy", "-y", "--json"]);
    assert!(
        deploy.status.success(),
        "deploy failed: {}",
        text(&deploy.stderr)
    );

    // Every resource is there, and the functions' code is the packages the binary carries
    // (their hash is in the uploaded object's key), not something built on the way.
    let info = installed(&bin, &dir, &path, &home, &["info", "--json"]);
    assert!(info.status.success(), "info failed: {}", text(&info.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info --json");
    let rows = rows.as_array().expect("rows");
    assert!(!rows.is_empty());
    for r in rows {
        assert_eq!(r["status"], "ok", "{r}");
    }
    let zips = twin_testkit::function_zips();
    for name in ["dispatcher", "persister", "hot-reader"] {
        let bytes = std::fs::read(zips.join(name).join("bootstrap.zip")).expect("zip");
        let hash = &hex::encode(Sha256::digest(&bytes))[..16];
        let key = format!("{name}/x86_64-{hash}.zip");
        assert!(
            rows.iter().any(|r| r["kind"] == "lambda_artifact"
                && r["id"].as_str().is_some_and(|id| id.ends_with(&key))),
            "no artifact {key} in {rows:?}"
        );
    }
    let again = installed(&bin, &dir, &path, &home, &["deploy", "-y", "--json"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).expect("report");
    assert_eq!(
        (&report["created"], &report["updated"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "a second deploy changes nothing: {report}"
    );

    let destroy = installed(&bin, &dir, &path, &home, &["destroy", "-y"]);
    assert!(
        destroy.status.success(),
        "destroy failed: {}",
        text(&destroy.stderr)
    );
    let left = support::leftovers(&moto.endpoint, "digital-twin");
    assert_eq!(left, Ok(Vec::new()), "destroy left resources behind");
}
