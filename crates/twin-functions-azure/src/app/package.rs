//! The Function App's code package: one zip holding `host.json` (the custom handler and the
//! extension bundle), the handler binary (executable), the device catalogue, one
//! `<function>/function.json` per function and the binary of each device's own processor crate
//! (`processors/<crate>`, run by the handler as a child: `handler::own_processors`). The same input always gives the same bytes (sorted
//! entries, fixed timestamps and modes), so [`package_hash`] tells the deployer whether the
//! deployed package drifted.
//!
//! Shapes follow the Azure Functions custom handler documentation (`host.json`
//! `customHandler.description.defaultExecutablePath`, function folders named after the function)
//! and the bindings reference (`eventGridTrigger`, `httpTrigger` + `http` output,
//! `timerTrigger` with an NCRONTAB schedule).

use super::{
    AppFunction, Trigger, CATALOGUE_FILE, HANDLER_EXECUTABLE, HTTP_OUTPUT_BINDING,
    OWN_PROCESSORS_DIR,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use twin_functions::catalogue::{CatalogueLocation, DeviceCatalogue};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

/// The extension bundle that brings the Event Grid trigger (HTTP and timer triggers are built
/// into the host); v4 is the current major version of the bundle.
pub const EXTENSION_BUNDLE: (&str, &str) =
    ("Microsoft.Azure.Functions.ExtensionBundle", "[4.*, 5.0.0)");
/// The host's per-invocation timeout. Kept below the movers' default lease (900 s,
/// `MOVER_LEASE_SECONDS`), so a run that the host cuts off never outlives its lease.
pub const FUNCTION_TIMEOUT: &str = "00:10:00";

/// What goes into the package.
#[derive(Debug, Clone)]
pub struct PackageInput {
    /// The Linux (x86_64) handler binary: the `bootstrap` of `azure-handler`'s cargo-lambda zip.
    pub handler: Vec<u8>,
    /// The twin's devices (written as `catalogue.json`).
    pub catalogue: DeviceCatalogue,
    /// The functions the app holds.
    pub functions: Vec<AppFunction>,
    /// The Linux (x86_64) binary of each processor crate the catalogue's devices name, by crate
    /// name (the `bootstrap` of its cargo-lambda zip, the same build as its Lambda function).
    pub processors: BTreeMap<String, Vec<u8>>,
    /// The Linux (x86_64) binary of each event rule's function crate, by crate name, written
    /// to `events/<crate>` (the handler runs it with the event on stdin).
    pub events: BTreeMap<String, Vec<u8>>,
}

/// A package that cannot be built from its input.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The handler bytes are not a Linux executable.
    #[error("the Function App package needs the handler's Linux binary, but the {len} bytes given are not an ELF executable; pass the `bootstrap` file out of target/lambda/azure-handler/bootstrap.zip")]
    NotAnExecutable {
        /// How many bytes were given.
        len: usize,
    },
    /// The handler is built for another machine than the app's.
    #[error("the handler binary is built for {found}, but Flex Consumption Function Apps run Linux x86_64; build azure-handler for x86_64 (scripts/build-functions.sh without --arm64)")]
    WrongArchitecture {
        /// What the ELF header says.
        found: String,
    },
    /// No function to package.
    #[error("the Function App package lists no function; deploy at least one layer of the twin to Azure")]
    NoFunctions,
    /// A function runs another in process that the package lacks.
    #[error("the {function} function runs the {missing} function in the same invocation, so the Function App package must hold it too")]
    MissingInProcess {
        /// The function.
        function: AppFunction,
        /// The function it needs.
        missing: AppFunction,
    },
    /// A device names a processor crate whose binary was not given.
    #[error("device {device} names the processor crate `{crate_name}`, but the package has no binary for it; build it (scripts/build-functions.sh, or `deployer deploy` builds lambdas/{crate_name})")]
    MissingProcessor {
        /// The device.
        device: String,
        /// The crate it names.
        crate_name: String,
    },
    /// A processor binary no device uses.
    #[error("the package was given a binary for the processor crate `{0}`, which no device of the catalogue names")]
    UnusedProcessor(String),
    /// A processor crate's name cannot be a file name in the package.
    #[error("`{0}` is not a processor crate name (letters, digits, `-` and `_` only)")]
    BadProcessorName(String),
    /// A processor crate's binary is not a Linux x86_64 executable.
    #[error("the processor crate `{crate_name}`: {problem}")]
    BadProcessorBinary {
        /// The crate.
        crate_name: String,
        /// What is wrong with its bytes (the handler's checks).
        problem: Box<PackageError>,
    },
    /// The catalogue is not usable.
    #[error(transparent)]
    Catalogue(#[from] twin_functions::catalogue::CatalogueError),
    /// Writing the zip failed (in memory: only on a bug in the zip writer).
    #[error("cannot write the Function App package: {0}")]
    Zip(String),
}

/// `host.json`: the custom handler, its executable, and the bundle the Event Grid trigger needs.
///
/// `enableForwardingHttpRequest` stays `false`: every function, HTTP-triggered or not, is then
/// invoked the same way (`POST /<function>` with `{"Data":…,"Metadata":…}`), and HTTP answers
/// go back through the `res` output binding.
pub fn host_json() -> Value {
    json!({
        "version": "2.0",
        "functionTimeout": FUNCTION_TIMEOUT,
        "customHandler": {
            "description": {
                "defaultExecutablePath": HANDLER_EXECUTABLE,
                "workingDirectory": "",
                "arguments": []
            },
            "enableForwardingHttpRequest": false
        },
        "extensionBundle": {
            "id": EXTENSION_BUNDLE.0,
            "version": EXTENSION_BUNDLE.1
        }
    })
}

/// `<function>/function.json`: the function's trigger (and the HTTP output of HTTP triggers).
pub fn function_json(function: AppFunction) -> Value {
    let trigger = function.trigger_binding();
    let bindings = match function.trigger() {
        Trigger::EventGrid => json!([
            {"type": "eventGridTrigger", "direction": "in", "name": trigger}
        ]),
        Trigger::Http { methods } => json!([
            // `function` level (callers need the function's key) except for a boundary
            // ingress, which checks its HMAC first (see `AppFunction::auth_level`).
            {"type": "httpTrigger", "direction": "in", "name": trigger,
             "authLevel": function.auth_level(), "methods": methods},
            {"type": "http", "direction": "out", "name": HTTP_OUTPUT_BINDING}
        ]),
        Trigger::Timer { schedule } => json!([
            {"type": "timerTrigger", "direction": "in", "name": trigger,
             "schedule": schedule, "runOnStartup": false}
        ]),
    };
    json!({ "bindings": bindings })
}

/// ELF `e_machine` of x86-64, the only architecture Flex Consumption runs.
const ELF_X86_64: u16 = 0x3E;

/// Refuses bytes that are not a 64-bit little-endian x86-64 ELF executable (e.g. the zip itself,
/// or an arm64 build made for Lambda).
fn check_executable(bytes: &[u8]) -> Result<(), PackageError> {
    // e_ident: magic, class (2 = 64-bit), data (1 = little-endian); e_machine at offset 18.
    if bytes.len() < 20 || !bytes.starts_with(b"\x7fELF") {
        return Err(PackageError::NotAnExecutable { len: bytes.len() });
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    if bytes[4] != 2 || bytes[5] != 1 || machine != ELF_X86_64 {
        let found = match machine {
            0xB7 => "aarch64 (arm64)".to_string(),
            other => format!("ELF class {} machine {other:#x}", bytes[4]),
        };
        return Err(PackageError::WrongArchitecture { found });
    }
    Ok(())
}

/// The package's entries, name → (bytes, unix mode), sorted by name.
fn entries(input: &PackageInput) -> Result<BTreeMap<String, (Vec<u8>, u32)>, PackageError> {
    check_executable(&input.handler)?;
    let functions: BTreeSet<AppFunction> = input.functions.iter().copied().collect();
    if functions.is_empty() {
        return Err(PackageError::NoFunctions);
    }
    for f in &functions {
        if let Some(missing) = f.runs_in_process().iter().find(|m| !functions.contains(m)) {
            return Err(PackageError::MissingInProcess {
                function: *f,
                missing: *missing,
            });
        }
    }
    let catalogue = input.catalogue.to_json();
    // The same checks the handler makes when it loads the file, so a bad catalogue fails here.
    let location = CatalogueLocation {
        bucket: super::settings::PACKAGE_CATALOGUE.into(),
        key: CATALOGUE_FILE.into(),
    };
    let parsed = DeviceCatalogue::parse(catalogue.as_bytes(), &location)?;
    let mut named = BTreeSet::new();
    for (device, entry) in &parsed.devices {
        let Some(crate_name) = entry
            .processor
            .as_deref()
            .filter(|p| *p != parsed.shared_processor)
        else {
            continue;
        };
        if !input.processors.contains_key(crate_name) {
            return Err(PackageError::MissingProcessor {
                device: device.clone(),
                crate_name: crate_name.to_string(),
            });
        }
        named.insert(crate_name);
    }
    for (crate_name, binary) in &input.processors {
        let safe = !crate_name.is_empty()
            && crate_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !safe {
            return Err(PackageError::BadProcessorName(crate_name.clone()));
        }
        if !named.contains(crate_name.as_str()) {
            return Err(PackageError::UnusedProcessor(crate_name.clone()));
        }
        check_executable(binary).map_err(|problem| PackageError::BadProcessorBinary {
            crate_name: crate_name.clone(),
            problem: Box::new(problem),
        })?;
    }
    for (crate_name, binary) in &input.events {
        let safe = !crate_name.is_empty()
            && crate_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !safe {
            return Err(PackageError::BadProcessorName(crate_name.clone()));
        }
        check_executable(binary).map_err(|problem| PackageError::BadProcessorBinary {
            crate_name: crate_name.clone(),
            problem: Box::new(problem),
        })?;
    }
    let pretty = |v: &Value| {
        // A `Value` always serializes.
        let mut text = serde_json::to_vec_pretty(v).unwrap_or_default();
        text.push(b'\n');
        text
    };
    let mut out = BTreeMap::new();
    out.insert("host.json".to_string(), (pretty(&host_json()), 0o644));
    out.insert(
        HANDLER_EXECUTABLE.to_string(),
        (input.handler.clone(), 0o755),
    );
    out.insert(CATALOGUE_FILE.to_string(), (catalogue.into_bytes(), 0o644));
    for (crate_name, binary) in &input.processors {
        out.insert(
            format!("{OWN_PROCESSORS_DIR}/{crate_name}"),
            (binary.clone(), 0o755),
        );
    }
    for (crate_name, binary) in &input.events {
        out.insert(
            format!(
                "{}/{crate_name}",
                crate::azure_action_sink::EVENT_FUNCTIONS_DIR
            ),
            (binary.clone(), 0o755),
        );
    }
    for f in &functions {
        out.insert(
            format!("{}/function.json", f.name()),
            (pretty(&function_json(*f)), 0o644),
        );
    }
    Ok(out)
}

/// Builds the package zip: deterministic bytes for the same input.
pub fn package(input: &PackageInput) -> Result<Vec<u8>, PackageError> {
    let zip_error = |e: zip::result::ZipError| PackageError::Zip(e.to_string());
    let mut zip = ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, (bytes, mode)) in entries(input)? {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            // 1980-01-01, the zip format's epoch: no build time leaks into the bytes.
            .last_modified_time(DateTime::default())
            .unix_permissions(mode);
        zip.start_file(name, options).map_err(zip_error)?;
        zip.write_all(&bytes)
            .map_err(|e| PackageError::Zip(e.to_string()))?;
    }
    Ok(zip.finish().map_err(zip_error)?.into_inner())
}

/// The package's SHA-256 as lowercase hex, for drift checks.
pub fn package_hash(zip: &[u8]) -> String {
    hex::encode(Sha256::digest(zip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn catalogue() -> DeviceCatalogue {
        serde_json::from_value(json!({
            "sharedProcessor": "processor",
            "devices": {"s-1": {"properties": [{"name": "t", "dataType": "DOUBLE"}]}}
        }))
        .expect("catalogue")
    }

    /// An ELF header of a 64-bit little-endian binary for `machine`, then filler.
    fn elf(machine: u16) -> Vec<u8> {
        let mut bytes = b"\x7fELF\x02\x01\x01\x00".to_vec();
        bytes.resize(18, 0);
        bytes.extend_from_slice(&machine.to_le_bytes());
        bytes.extend_from_slice(b" the rest of a binary");
        bytes
    }

    fn input(functions: Vec<AppFunction>) -> PackageInput {
        PackageInput {
            handler: elf(0x3E),
            catalogue: catalogue(),
            functions,
            processors: BTreeMap::new(),
            events: BTreeMap::new(),
        }
    }

    fn read(zip: &[u8]) -> BTreeMap<String, (Vec<u8>, Option<u32>)> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
        let mut out = BTreeMap::new();
        for i in 0..archive.len() {
            let mut f = archive.by_index(i).expect("entry");
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).expect("read entry");
            out.insert(f.name().to_string(), (bytes, f.unix_mode()));
        }
        out
    }

    #[test]
    fn package_holds_host_handler_catalogue_and_one_function_json_each() {
        let zip = package(&input(AppFunction::ALL.to_vec())).expect("package");
        let files = read(&zip);
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            vec![
                "catalogue.json",
                "cold-to-archive-mover/function.json",
                "dispatcher/function.json",
                "handler",
                "host.json",
                "hot-reader/function.json",
                "hot-to-cold-mover/function.json",
                "ingress-cold/function.json",
                "persister/function.json",
                "processor/function.json",
            ]
        );
        assert_eq!(files["handler"].1.map(|m| m & 0o777), Some(0o755));
        assert_eq!(files["host.json"].1.map(|m| m & 0o777), Some(0o644));
        let host: Value = serde_json::from_slice(&files["host.json"].0).expect("json");
        assert_eq!(host["version"], "2.0");
        assert_eq!(
            host["customHandler"]["description"]["defaultExecutablePath"],
            "handler"
        );
        assert_eq!(host["customHandler"]["enableForwardingHttpRequest"], false);
        assert_eq!(
            host["extensionBundle"]["id"],
            "Microsoft.Azure.Functions.ExtensionBundle"
        );
        let fj = |name: &str| -> Value {
            serde_json::from_slice(&files[&format!("{name}/function.json")].0).expect("json")
        };
        assert_eq!(fj("dispatcher")["bindings"][0]["type"], "eventGridTrigger");
        assert_eq!(fj("dispatcher")["bindings"][0]["name"], "event");
        let reader = fj("hot-reader");
        assert_eq!(reader["bindings"][0]["type"], "httpTrigger");
        assert_eq!(reader["bindings"][0]["authLevel"], "function");
        assert_eq!(reader["bindings"][0]["methods"], json!(["get"]));
        assert_eq!(
            reader["bindings"][1],
            json!({"type": "http", "direction": "out", "name": "res"})
        );
        assert_eq!(fj("persister")["bindings"][0]["methods"], json!(["post"]));
        assert_eq!(fj("persister")["bindings"][0]["authLevel"], "function");
        // The boundary ingress checks its HMAC first; no function key to hand over.
        let ingress = fj("ingress-cold");
        assert_eq!(ingress["bindings"][0]["authLevel"], "anonymous");
        assert_eq!(ingress["bindings"][0]["methods"], json!(["post"]));
        let mover = fj("hot-to-cold-mover");
        assert_eq!(mover["bindings"][0]["type"], "timerTrigger");
        assert_eq!(mover["bindings"][0]["schedule"], "0 0 3 * * *");
        assert_eq!(
            fj("cold-to-archive-mover")["bindings"][0]["schedule"],
            "0 0 4 * * *"
        );
        let back = DeviceCatalogue::parse(
            &files["catalogue.json"].0,
            &CatalogueLocation {
                bucket: "p".into(),
                key: "c".into(),
            },
        )
        .expect("catalogue");
        assert_eq!(back, catalogue());
    }

    #[test]
    fn same_input_same_bytes_and_a_change_changes_the_hash() {
        let a = package(&input(vec![AppFunction::HotReader, AppFunction::Persister])).unwrap();
        // Order and repeats of the function list do not matter.
        let b = package(&input(vec![
            AppFunction::Persister,
            AppFunction::HotReader,
            AppFunction::Persister,
        ]))
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(package_hash(&a), package_hash(&b));
        assert_eq!(package_hash(&a).len(), 64);
        let mut other = input(vec![AppFunction::HotReader, AppFunction::Persister]);
        other.handler.push(0);
        assert_ne!(package_hash(&package(&other).unwrap()), package_hash(&a));
    }

    #[test]
    fn refuses_what_the_app_cannot_run() {
        let e = package(&input(vec![
            AppFunction::Dispatcher,
            AppFunction::Persister,
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("runs the processor function"), "{e}");
        assert!(matches!(
            package(&input(vec![])),
            Err(PackageError::NoFunctions)
        ));
        let mut zip_given = input(vec![AppFunction::Persister]);
        zip_given.handler = b"PK\x03\x04".to_vec();
        assert!(matches!(
            package(&zip_given),
            Err(PackageError::NotAnExecutable { len: 4 })
        ));
        let mut arm = input(vec![AppFunction::Persister]);
        arm.handler = elf(0xB7);
        let e = package(&arm).unwrap_err();
        assert!(e.to_string().contains("aarch64"), "{e}");
    }

    fn own_input() -> PackageInput {
        let mut own = input(vec![AppFunction::Processor, AppFunction::Persister]);
        own.catalogue = serde_json::from_value(json!({
            "sharedProcessor": "processor",
            "devices": {
                "s-1": {"properties": [{"name": "t", "dataType": "DOUBLE"}],
                        "processor": "fahrenheit-processor"},
                "s-2": {"properties": [{"name": "t", "dataType": "DOUBLE"}],
                        "processor": "fahrenheit-processor"},
                "s-3": {"properties": [{"name": "t", "dataType": "DOUBLE"}]}
            }
        }))
        .unwrap();
        own.processors
            .insert("fahrenheit-processor".into(), elf(0x3E));
        own
    }

    #[test]
    fn event_function_binaries_ship_under_events_as_executables() {
        let mut with = input(vec![AppFunction::Persister]);
        with.events.insert("alarm".into(), elf(0x3E));
        let files = read(&package(&with).expect("package"));
        let entry = &files["events/alarm"];
        assert_eq!(entry.0, elf(0x3E));
        assert_eq!(entry.1.map(|m| m & 0o777), Some(0o755));
        let mut arm = input(vec![AppFunction::Persister]);
        arm.events.insert("alarm".into(), elf(0xB7));
        assert!(package(&arm).is_err());
        let mut bad = input(vec![AppFunction::Persister]);
        bad.events.insert("../x".into(), elf(0x3E));
        assert!(package(&bad).is_err());
    }

    #[test]
    fn own_processor_binaries_ship_once_per_crate_as_executables() {
        let zip = package(&own_input()).expect("package");
        let files = read(&zip);
        let entry = &files["processors/fahrenheit-processor"];
        assert_eq!(entry.0, elf(0x3E));
        assert_eq!(entry.1.map(|m| m & 0o777), Some(0o755));
        assert_eq!(
            files
                .keys()
                .filter(|k| k.starts_with("processors/"))
                .count(),
            1
        );
        // A new build of the crate is a new package.
        let mut rebuilt = own_input();
        rebuilt
            .processors
            .insert("fahrenheit-processor".into(), [elf(0x3E), vec![1]].concat());
        assert_ne!(package(&rebuilt).unwrap(), zip);
    }

    #[test]
    fn refuses_missing_unused_misnamed_and_foreign_processor_binaries() {
        let mut missing = own_input();
        missing.processors.clear();
        let e = package(&missing).unwrap_err();
        assert!(
            matches!(&e, PackageError::MissingProcessor { device, crate_name } if device == "s-1" && crate_name == "fahrenheit-processor"),
            "{e}"
        );
        let mut unused = own_input();
        unused.processors.insert("other".into(), elf(0x3E));
        assert!(matches!(package(&unused), Err(PackageError::UnusedProcessor(c)) if c == "other"));
        let mut arm = own_input();
        arm.processors
            .insert("fahrenheit-processor".into(), elf(0xB7));
        let e = package(&arm).unwrap_err();
        assert!(e.to_string().contains("fahrenheit-processor"), "{e}");
        assert!(e.to_string().contains("aarch64"), "{e}");
        let mut bad = own_input();
        bad.catalogue.devices.get_mut("s-1").unwrap().processor = Some("../x".into());
        bad.processors.insert("../x".into(), elf(0x3E));
        assert!(matches!(
            package(&bad),
            Err(PackageError::BadProcessorName(_))
        ));
    }
}
