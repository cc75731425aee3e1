//! The `deployer` binary as a user runs it: exit codes, messages, `--json` documents, and the
//! shell reading commands from stdin. No cloud is called by any of these.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deployer(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run deployer")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A copy of the example twin in a temp dir, so tests can break it.
fn example_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "config_iot_devices.json",
        "config_providers.json",
        "config_hierarchy.json",
    ] {
        std::fs::copy(repo_root().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

#[test]
fn validate_passes_on_the_example_twin() {
    let out = deployer(&repo_root(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("config OK: twin 'digital-twin', 3 device(s)"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn broken_config_exits_2_with_every_problem_and_its_position() {
    let dir = example_copy();
    std::fs::write(
        dir.path().join("config.json"),
        "{\n  \"digital_twin_name\": \"digital-twin\",\n  \"hot_storage_size_in_days\": 90,\n  \"cold_storage_size_in_days\": 30,\n  \"colour\": 1\n}\n",
    )
    .unwrap();
    for cmd in [
        &["validate"][..],
        &["deploy", "-y"],
        &["plan"],
        &["destroy", "-y"],
        &["info"],
    ] {
        let out = deployer(dir.path(), cmd);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("config.json:5:3: $.colour: unknown key"),
            "{cmd:?}: {err}"
        );
        assert!(err.contains("hot_storage_size_in_days"), "{cmd:?}: {err}");
        assert!(err.contains("nothing was deployed"), "{cmd:?}: {err}");
    }
    assert!(
        !dir.path().join(".deployer").exists(),
        "no state was written for a bad config"
    );
}

#[test]
fn json_errors_are_one_document_with_positioned_diagnostics() {
    let dir = example_copy();
    std::fs::write(
        dir.path().join("config_iot_devices.json"),
        "[{\"id\": \"a\", \"properties\": []}]",
    )
    .unwrap();
    let out = deployer(dir.path(), &["validate", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["exit_code"], 2);
    let diags = doc["diagnostics"].as_array().unwrap();
    assert!(
        diags.iter().any(|d| d["file"] == "config_iot_devices.json"
            && d["path"] == "$[0].properties"
            && d["line"] == 1),
        "{doc}"
    );
}

#[test]
fn missing_config_dir_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = deployer(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("config.json"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn destroy_without_a_terminal_requires_yes() {
    let dir = example_copy();
    let out = deployer(dir.path(), &["destroy"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("pass -y"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_2() {
    let out = deployer(&repo_root(), &["deploy", "--layer", "l9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("l3-hot"),
        "{}",
        text(&out.stderr)
    );
    let out = deployer(&repo_root(), &["lambda_invoke", "persister", "{not json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("PAYLOAD is not valid JSON"),
        "{}",
        text(&out.stderr)
    );
    let out = deployer(&repo_root(), &["lambda_logs", "no-such-fn"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no function `no-such-fn`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn schema_is_one_json_document_covering_the_four_files() {
    let out = deployer(&repo_root(), &["schema"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for f in [
        "config.json",
        "config_iot_devices.json",
        "config_providers.json",
        "config_hierarchy.json",
    ] {
        assert!(doc.get(f).is_some(), "schema lacks {f}");
    }
}

#[test]
fn the_shell_reads_commands_from_stdin_with_the_same_parser() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("-C")
        .arg(repo_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"help\nvalidate\nlambda-logs\ndeploy --layer l9\nexit\nvalidate\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        stdout.contains("lambda_update"),
        "help listed the commands: {stdout}"
    );
    assert!(
        stdout.matches("config OK").count() == 1,
        "exit stopped the shell: {stdout}"
    );
    assert!(
        stderr.contains("<FUNCTION>"),
        "lambda-logs without a function is a usage error: {stderr}"
    );
    assert!(stderr.contains("l3-hot"), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(2),
        "the shell reports the last failure"
    );
}

#[test]
fn rotate_certificates_of_an_unknown_device_is_a_usage_error_listing_the_devices() {
    for spelling in ["rotate_certificates", "rotate-certificates"] {
        let out = deployer(
            &repo_root(),
            &[spelling, "temperature-sensor-1", "no-such-sensor"],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("no-such-sensor"), "{err}");
        assert!(
            err.contains("temperature-sensor-1, temperature-sensor-2, pressure-sensor-1"),
            "{err}"
        );
        assert!(!err.contains("no device temperature-sensor-1"), "{err}");
    }
}

#[test]
fn plan_compare_prices_every_mix_without_calling_a_cloud_and_names_the_cheapest() {
    let dir = example_copy();
    let out = deployer(
        dir.path(),
        &[
            "plan",
            "--compare",
            "--json",
            "--messages-per-minute",
            "2",
            "--message-bytes",
            "300",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["load"]["devices"], 3, "{doc}");
    assert_eq!(doc["load"]["message_bytes"], 300);
    assert_eq!(doc["assumed"], serde_json::json!([]));
    assert_eq!(doc["currency"], "USD");
    assert!(doc["prices_as_of"].as_str().is_some_and(|d| d.len() == 7));
    let mixes = doc["compare"].as_array().expect("compare");
    assert_eq!(mixes.len(), 32, "the example deploys five layers");
    let totals: Vec<f64> = mixes
        .iter()
        .map(|m| m["total_usd"].as_f64().unwrap())
        .collect();
    assert!(totals.windows(2).all(|w| w[0] <= w[1]), "{totals:?}");
    assert!(
        doc["cheapest"].as_str().is_some_and(|c| c.contains("l1=")),
        "{doc}"
    );
    // The twin as configured is priced layer by layer.
    let layers = doc["estimate"]["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 5);
    assert!(layers
        .iter()
        .all(|l| l["provider"] == "aws" && l["usd"].as_f64().unwrap() > 0.0));

    let text_out = deployer(dir.path(), &["plan", "--compare"]);
    let shown = text(&text_out.stdout);
    assert!(shown.contains("Cheapest this version deploys:"), "{shown}");
    assert!(shown.contains("prices.json"), "{shown}");
}

#[test]
fn plan_refuses_a_load_it_cannot_price_with_a_usage_error() {
    let dir = example_copy();
    let out = deployer(dir.path(), &["plan", "--compare", "--message-bytes", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("message_bytes"),
        "{}",
        text(&out.stderr)
    );
    // `expected_load` in config.json is used, and a bad one is a positioned config error.
    let config = dir.path().join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    c["expected_load"] = serde_json::json!({"messages_per_device_per_minute": 6, "devices": 1000});
    std::fs::write(&config, c.to_string()).unwrap();
    let out = deployer(dir.path(), &["plan", "--compare", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["load"]["devices"], 1000);
    assert_eq!(doc["assumed"], serde_json::json!(["message_bytes"]));
    c["expected_load"] = serde_json::json!({"messages_per_device_per_minute": -1});
    std::fs::write(&config, c.to_string()).unwrap();
    let out = deployer(dir.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("messages_per_device_per_minute"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn completions_are_printed_for_each_shell_with_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = deployer(dir.path(), &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for word in [
            "deploy", "destroy", "plan", "redrive",
            // fish spells long flags `-l layer`.
            "layer", "compare",
        ] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    let out = deployer(dir.path(), &["completions", "tcsh"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn version_names_the_crate_version_and_the_function_packages() {
    let out = Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("--version")
        .output()
        .expect("run deployer");
    assert_eq!(out.status.code(), Some(0));
    let line = text(&out.stdout);
    let line = line.trim();
    let prefix = format!("deployer {}, ", env!("CARGO_PKG_VERSION"));
    let functions = line
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("`{line}` does not start with `{prefix}`"));
    let embedded = std::env::var_os("DEPLOYER_EMBED_FUNCTIONS").is_some_and(|d| !d.is_empty());
    if functions == "functions: built from source" {
        assert!(
            !embedded,
            "built with DEPLOYER_EMBED_FUNCTIONS but says `{line}`"
        );
        return;
    }
    // `functions <12 hex digits> (<architectures>)`
    let rest = functions
        .strip_prefix("functions ")
        .unwrap_or_else(|| panic!("{line}"));
    let (hash, arches) = rest.split_once(' ').unwrap_or_else(|| panic!("{line}"));
    assert_eq!(hash.len(), 12, "{line}");
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()), "{line}");
    assert!(
        arches == "(x86_64)" || arches == "(x86_64, arm64)" || arches == "(arm64)",
        "{line}"
    );
}
