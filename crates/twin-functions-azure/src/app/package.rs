//! The Function App's code package: one zip holding `host.json` (the custom handler and the
//! extension bundle), the handler binary (executable), the device catalogue and one
//! `<function>/function.json` per function. The same input always gives the same bytes (sorted
//! entries, fixed timestamps and modes), so [`package_hash`] tells the deployer whether the
//! deployed package drifted.
//!
//! Shapes follow the Azure Functions custom handler documentation (`host.json`
//! `customHandler.description.defaultExecutablePath`, function folders named after the function)
//! and the bindings reference (`eventGridTrigger`, `httpTrigger` + `http` output,
//! `timerTrigger` with an NCRONTAB schedule).

use super::{AppFunction, Trigger, CATALOGUE_FILE, HANDLER_EXECUTABLE, HTTP_OUTPUT_BINDING};
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
    /// The catalogue names processors the app cannot run.
    #[error("devices {} have processors of their own, which the Azure Function App cannot run yet (it runs the default processor only); remove their custom processor or deploy L2 to AWS", .devices.join(", "))]
    OwnProcessors {
        /// The devices.
        devices: Vec<String>,
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
            // `function` level: callers need the function's key (or the host's); never anonymous.
            {"type": "httpTrigger", "direction": "in", "name": trigger,
             "authLevel": "function", "methods": methods},
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
    let own: Vec<String> = parsed
        .devices
        .iter()
        .filter(|(_, d)| {
            d.processor
                .as_deref()
                .is_some_and(|p| p != parsed.shared_processor)
        })
        .map(|(id, _)| id.clone())
        .collect();
    if !own.is_empty() {
        return Err(PackageError::OwnProcessors { devices: own });
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
        let mut own = input(vec![AppFunction::Processor, AppFunction::Persister]);
        own.catalogue = serde_json::from_value(json!({
            "sharedProcessor": "processor",
            "devices": {"s-1": {"properties": [{"name": "t", "dataType": "DOUBLE"}],
                                "processor": "t--s-1-processor"}}
        }))
        .unwrap();
        let e = package(&own).unwrap_err();
        assert!(e.to_string().contains("devices s-1 have processors"), "{e}");
    }
}
