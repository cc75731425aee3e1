//! `deployer model` as a user runs it: the document on stdout, the files with `--out`, the
//! real DTDL parser accepting what the binary wrote, and the errors. No cloud is called.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use twin_models::dtdl::{self, Interface};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deployer(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_deployer"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run deployer")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn example() -> twin_config::TwinConfig {
    twin_config::load_dir(&repo_root()).expect("the example twin is valid")
}

#[test]
fn model_prints_every_dtdl_interface_in_upload_order() {
    let out = deployer(&repo_root(), &["model"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let printed = dtdl::parse(&text(&out.stdout)).expect("stdout is DTDL");
    let interfaces = dtdl::interfaces(&example()).expect("interfaces");
    let ordered: Vec<Interface> = twin_models::order::upload_order(&interfaces)
        .expect("order")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(printed, ordered);
    // The base every device extends comes first.
    assert_eq!(printed[0].id, dtdl::device_base_id("digital-twin"));
}

#[test]
fn model_out_writes_files_the_real_dtdl_parser_accepts() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = deployer(
        &repo_root(),
        &["model", "--out", &out_dir.path().display().to_string()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Wrote 6 DTDL files (upload order in upload-order.txt)"),
        "{}",
        text(&out.stdout)
    );
    let listing = std::fs::read_to_string(out_dir.path().join("upload-order.txt"))
        .expect("upload order written");
    assert!(listing.starts_with("# DTDL files in upload order"));
    assert!(listing.contains("# batch 1\nDevice.json\n"), "{listing}");

    let setup = Command::new("bash")
        .arg(repo_root().join("scripts/setup-dtdl-parser.sh"))
        .output()
        .expect("run setup-dtdl-parser.sh");
    assert!(setup.status.success(), "{}", text(&setup.stderr));
    let module = text(&setup.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let parsed = Command::new("node")
        .arg(repo_root().join("scripts/dtdl-parse.mjs"))
        .arg(module.trim())
        .arg(out_dir.path())
        .output()
        .expect("run node");
    assert_eq!(
        parsed.status.code(),
        Some(0),
        "the DTDL parser rejected the files deployer wrote: {}",
        text(&parsed.stderr)
    );
    let summary: Value = serde_json::from_slice(&parsed.stdout).expect("summary");
    assert_eq!(summary["models"], 5);
}

#[test]
fn model_twinmaker_out_writes_component_types_and_entities() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(out_dir.path().join("old-device.json"), "{}").expect("write");
    let out = deployer(
        &repo_root(),
        &[
            "model",
            "--format",
            "twinmaker",
            "--out",
            &out_dir.path().display().to_string(),
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A JSON file that is not one of ours is pointed out (a directory import would take it).
    assert!(
        text(&out.stderr).contains("old-device.json is not a model of this twin"),
        "{}",
        text(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(
        doc["files"],
        serde_json::json!([
            "digital-twin-temperature-sensor-1.component-type.json",
            "digital-twin-temperature-sensor-2.component-type.json",
            "digital-twin-pressure-sensor-1.component-type.json",
            "entities.json"
        ])
    );
    let entities: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("entities.json")).expect("entities"),
    )
    .expect("JSON");
    assert_eq!(entities[0]["entityId"], "room-1");
    assert_eq!(
        entities[0]["components"]["pressure-sensor-1"]["componentTypeId"],
        "digital-twin-pressure-sensor-1"
    );
    // The same component type the AWS L4 deploys.
    let ct: Value = serde_json::from_str(
        &std::fs::read_to_string(
            out_dir
                .path()
                .join("digital-twin-pressure-sensor-1.component-type.json"),
        )
        .expect("component type"),
    )
    .expect("JSON");
    let model = twin_models::twinmaker::ComponentTypeModel::for_device(
        "digital-twin",
        example().device("pressure-sensor-1").expect("device"),
    );
    assert_eq!(ct["properties"], model.to_desired()["properties"]);
}

#[test]
fn model_errors_are_clear() {
    let out = deployer(&repo_root(), &["model", "--format", "owl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("dtdl") && text(&out.stderr).contains("twinmaker"),
        "{}",
        text(&out.stderr)
    );

    let missing = tempfile::tempdir().expect("temp dir");
    let out = deployer(missing.path(), &["model"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("config.json"),
        "{}",
        text(&out.stderr)
    );

    // --out naming a file, not a directory.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let out = deployer(
        &repo_root(),
        &["model", "--out", &file.path().display().to_string()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("cannot create {}", file.path().display())),
        "{}",
        text(&out.stderr)
    );
}
