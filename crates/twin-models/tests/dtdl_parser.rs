//! The generated DTDL checked by a real DTDL parser: Microsoft's DTDLParser (1.1.3, compiled to
//! WebAssembly, npm `@digicatapult/dtdl-parser` 1.1.83), installed by
//! `scripts/setup-dtdl-parser.sh` and run through `scripts/dtdl-parse.mjs` under Node. A model
//! the parser rejects fails the test with the parser's own errors; what it accepts is compared
//! with what was generated, and the files are read back into the generator's structs.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use twin_models::dtdl::{self, Content, Interface};
use twin_models::{render, Format};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The parser's module, installed on first use (the script is idempotent and instant after).
fn parser_module() -> &'static Path {
    static MODULE: OnceLock<PathBuf> = OnceLock::new();
    MODULE.get_or_init(|| {
        let script = workspace_root().join("scripts/setup-dtdl-parser.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .expect("run setup-dtdl-parser.sh");
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let module = stdout.lines().last().unwrap_or_default().trim();
        PathBuf::from(module)
    })
}

/// What the real parser understood of the DTDL files in `dir`, or its errors when it rejects.
fn real_parse(dir: &Path) -> Result<Value, String> {
    let out = Command::new("node")
        .arg(workspace_root().join("scripts/dtdl-parse.mjs"))
        .arg(parser_module())
        .arg(dir)
        .output()
        .expect("run node");
    match out.status.code() {
        Some(0) => Ok(serde_json::from_slice(&out.stdout).expect("parser summary is JSON")),
        Some(1) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        _ => panic!(
            "dtdl-parse.mjs failed to run: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Writes the DTDL files of `config` into a fresh directory.
fn write_dtdl(config: &twin_config::TwinConfig) -> (tempfile::TempDir, Vec<Interface>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let files = render(config, Format::Dtdl).expect("models");
    for f in &files {
        std::fs::write(dir.path().join(&f.name), &f.text).expect("write model file");
    }
    let interfaces = dtdl::interfaces(config).expect("interfaces");
    (dir, interfaces)
}

/// What the parser should report for the generated interfaces (own contents only).
fn expected_summary(interfaces: &[Interface]) -> Value {
    let mut out = serde_json::Map::new();
    for i in interfaces {
        let mut properties = BTreeMap::new();
        let mut relationships = BTreeMap::new();
        let mut components = BTreeMap::new();
        for c in &i.contents {
            match c {
                Content::Property(p) => {
                    properties.insert(p.name.clone(), json!(p.schema));
                }
                Content::Relationship(r) => {
                    relationships.insert(r.name.clone(), json!(r.target));
                }
                Content::Component(c) => {
                    components.insert(c.name.clone(), json!(c.schema));
                }
            }
        }
        out.insert(
            i.id.clone(),
            json!({"extends": i.extends, "properties": properties,
                   "relationships": relationships, "components": components}),
        );
    }
    Value::Object(out)
}

/// The generated files are accepted by the real parser, it understood them as generated, and
/// each file reads back into the same interface.
fn check_round_trip(config: &twin_config::TwinConfig) -> Vec<Interface> {
    let (dir, interfaces) = write_dtdl(config);
    let summary = match real_parse(dir.path()) {
        Ok(s) => s,
        Err(errors) => panic!("the DTDL parser rejected the generated models:\n{errors}"),
    };
    assert!(summary["parser"]
        .as_str()
        .is_some_and(|v| v.starts_with("DTDLParser, Version=1.")));
    assert_eq!(summary["models"], json!(interfaces.len()));
    assert_eq!(summary["interfaces"], expected_summary(&interfaces));

    let mut read_back = Vec::new();
    for f in render(config, Format::Dtdl).expect("models") {
        if f.name.ends_with(".json") {
            let text = std::fs::read_to_string(dir.path().join(&f.name)).expect("read model");
            read_back.extend(dtdl::parse(&text).expect("own parse"));
        }
    }
    let by_id = |v: &[Interface]| -> BTreeMap<String, Interface> {
        v.iter().map(|i| (i.id.clone(), i.clone())).collect()
    };
    assert_eq!(by_id(&read_back), by_id(&interfaces));
    interfaces
}

#[test]
fn the_example_twin_parses_and_round_trips() {
    let config = twin_config::load_dir(&workspace_root()).expect("the example twin is valid");
    let interfaces = check_round_trip(&config);
    // The base, three devices and the room.
    assert_eq!(interfaces.len(), 5);
    let pressure = interfaces
        .iter()
        .find(|i| i.display_name.as_deref() == Some("pressure-sensor-1"))
        .expect("pressure sensor interface");
    let names: Vec<String> = pressure
        .contents
        .iter()
        .filter_map(|c| match c {
            Content::Property(p) => Some(p.display_name.clone().unwrap_or(p.name.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["pressure", "density", "hardness", "serial-number"]);
}

/// A twin of `devices` devices with every data type, constants, ids with `-` and `_`, and a
/// hierarchy whose entity ids hold `-`, `.`, spaces and leading digits.
fn big_twin(devices: usize) -> twin_config::TwinConfig {
    let types = ["DOUBLE", "INTEGER", "LONG", "BOOLEAN", "STRING"];
    let devs: Vec<Value> = (0..devices)
        .map(|i| {
            let id = match i % 3 {
                0 => format!("sensor-{i}"),
                1 => format!("Sensor_{i}"),
                _ => format!("{i}-probe"),
            };
            json!({
                "id": id,
                "properties": (0..=(i % 4)).map(|p| json!({
                    "name": format!("value-{p}"), "dataType": types[(i + p) % 5]
                })).collect::<Vec<_>>(),
                "constProperties": [
                    {"name": "serial-number", "dataType": "STRING", "value": format!("sn{i}")},
                    {"name": "rated-max_2", "dataType": "DOUBLE", "value": 1.5}
                ]
            })
        })
        .collect();
    let ids: Vec<String> = devs
        .iter()
        .map(|d| d["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let rooms: Vec<Value> = ids
        .chunks(10)
        .enumerate()
        .map(|(r, chunk)| {
            json!({"type": "entity", "id": format!("{r}. room {r}"), "children": chunk
                .iter()
                .map(|d| json!({"type": "component", "name": d, "iotDeviceId": d}))
                .collect::<Vec<_>>()})
        })
        .collect();
    let floors: Vec<Value> = rooms
        .chunks(5)
        .enumerate()
        .map(|(f, rs)| json!({"type": "entity", "id": format!("floor-{f}.a"), "children": rs}))
        .collect();
    // An entity id no DTDL tool would take as it is: long, with spaces and non-ASCII.
    let odd = format!("Gebäude Süd / {}", "x-".repeat(300));
    let hierarchy = json!([{"id": "site-1", "children": floors}, {"id": odd}]);

    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, v: &Value| {
        std::fs::write(dir.path().join(name), v.to_string()).expect("write config file")
    };
    write(
        "config.json",
        &json!({"digital_twin_name": "big-twin", "hot_storage_size_in_days": 1,
                "cold_storage_size_in_days": 2}),
    );
    write("config_iot_devices.json", &json!(devs));
    write("config_hierarchy.json", &hierarchy);
    std::fs::copy(
        workspace_root().join("config_providers.json"),
        dir.path().join("config_providers.json"),
    )
    .expect("copy providers");
    match twin_config::load_dir(dir.path()) {
        Ok(c) => c,
        Err(problems) => panic!("the big twin is invalid: {problems}"),
    }
}

#[test]
fn a_200_device_twin_parses_and_round_trips() {
    let config = big_twin(200);
    let interfaces = check_round_trip(&config);
    // The base, 200 devices, 20 rooms, 4 floors, the site and the odd entity.
    assert_eq!(interfaces.len(), 1 + 200 + 20 + 4 + 1 + 1);
}

#[test]
fn the_real_parser_rejects_known_bad_models() {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |v: Value| std::fs::write(dir.path().join("bad.json"), v.to_string());
    // A DTMI with `-`, as a generator without the mapping would write it.
    write(
        json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:deployer:big-twin:Device;1",
                 "@type": "Interface"}),
    )
    .expect("write");
    let err = real_parse(dir.path()).err().unwrap_or_default();
    assert!(err.contains("dtmi:dtdl:parsingError:invalidId"), "{err}");
    // A property name with `-`.
    write(
        json!({"@context": "dtmi:dtdl:context;3", "@id": "dtmi:a:b;1", "@type": "Interface",
                 "contents": [{"@type": "Property", "name": "serial-number", "schema": "string"}]}),
    )
    .expect("write");
    assert!(real_parse(dir.path()).is_err());
    // A device interface without the base it extends: the reference does not resolve.
    let config = twin_config::load_dir(&workspace_root()).expect("the example twin is valid");
    let device = dtdl::interfaces(&config).expect("interfaces").remove(1);
    write(json!(device)).expect("write");
    let err = real_parse(dir.path()).err().unwrap_or_default();
    assert!(err.contains(&dtdl::device_base_id("digital-twin")), "{err}");
}

#[test]
fn the_real_parser_applies_the_rules_of_dtdl_v3_not_v2() {
    // An Array-valued Property is new in DTDL v3: the same model is refused as v2.
    let dir = tempfile::tempdir().expect("temp dir");
    let model = |version: u32| {
        json!({"@context": format!("dtmi:dtdl:context;{version}"), "@id": "dtmi:a:b;1",
               "@type": "Interface", "contents": [{"@type": "Property", "name": "p",
               "schema": {"@type": "Array", "elementSchema": "double"}}]})
    };
    std::fs::write(dir.path().join("m.json"), model(2).to_string()).expect("write");
    let err = real_parse(dir.path()).err().unwrap_or_default();
    assert!(err.contains("which is not allowed"), "{err}");
    std::fs::write(dir.path().join("m.json"), model(3).to_string()).expect("write");
    assert!(real_parse(dir.path()).is_ok());
}
