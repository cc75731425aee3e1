//! Compiles the default function packages into the binary when they are given (an installed
//! deployer then deploys with no Rust toolchain): `DEPLOYER_EMBED_FUNCTIONS` names a directory
//! of x86_64 `<crate>/bootstrap.zip` files (what `scripts/build-functions.sh` writes to
//! `<target>/lambda`), `DEPLOYER_EMBED_FUNCTIONS_ARM64` one of arm64 builds. Without either,
//! the binary builds its functions from source as before.
//!
//! Writes `$OUT_DIR/embedded_functions.rs` (the package table, `include_bytes!` of each zip) and
//! sets `DEPLOYER_FUNCTIONS_SUMMARY` (what `--version` says about the functions).

use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The default function crates (the same list as `twin_artifacts::DEFAULT_FUNCTION_CRATES`, which
/// a unit test compares with this one): a build script cannot depend on the library.
const CRATES: [&str; 8] = [
    "dispatcher",
    "processor",
    "persister",
    "hot-reader",
    "hot-to-cold-mover",
    "cold-to-archive-mover",
    "twin-connector",
    "azure-handler",
];

/// Runs on x86_64 only (Flex Consumption is x86_64 Linux), so it has no arm64 build.
const X86_ONLY: &str = "azure-handler";

/// (env var, architecture as the config spells it, its `twin_config::Architecture` variant,
/// the ELF `e_machine` of its binaries).
const ARCHES: [(&str, &str, &str, u16); 2] = [
    ("DEPLOYER_EMBED_FUNCTIONS", "x86_64", "X86_64", 62),
    ("DEPLOYER_EMBED_FUNCTIONS_ARM64", "arm64", "Arm64", 183),
];

fn main() {
    let mut table = String::new();
    let mut hash = Sha256::new();
    let mut arches = Vec::new();
    for (var, arch, variant, machine) in ARCHES {
        println!("cargo:rerun-if-env-changed={var}");
        let Some(dir) = std::env::var_os(var).filter(|d| !d.is_empty()) else {
            continue;
        };
        let dir = PathBuf::from(dir);
        for name in CRATES {
            if arch != "x86_64" && name == X86_ONLY {
                continue;
            }
            let zip = dir.join(name).join("bootstrap.zip");
            println!("cargo:rerun-if-changed={}", zip.display());
            let bytes = std::fs::read(&zip).unwrap_or_else(|e| {
                panic!(
                    "{var}={}: cannot read {} ({e}); build the packages first (scripts/build-functions.sh{})",
                    dir.display(),
                    zip.display(),
                    if arch == "arm64" { " --arm64" } else { "" }
                )
            });
            check_machine(&zip, &bytes, arch, machine, var);
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(arch.as_bytes());
            hash.update([0]);
            hash.update(&bytes);
            let _ = writeln!(
                table,
                "    twin_artifacts::EmbeddedPackage {{ crate_name: {name:?}, architecture: twin_config::Architecture::{variant}, zip: include_bytes!({:?}) }},",
                absolute(&zip)
            );
        }
        arches.push(arch);
    }
    let summary = if arches.is_empty() {
        "functions: built from source".to_string()
    } else {
        let digest = hex::encode(hash.finalize());
        format!("functions {} ({})", &digest[..12], arches.join(", "))
    };
    let code = format!(
        "/// The default function crates this build script knows (compared with the library's list by a test).\n#[cfg_attr(not(test), allow(dead_code))]\npub const CRATES: &[&str] = &{CRATES:?};\n\n/// The packages compiled into this binary.\npub static PACKAGES: &[twin_artifacts::EmbeddedPackage] = &[\n{table}];\n"
    );
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("embedded_functions.rs"), code).expect("write embedded_functions.rs");
    println!("cargo:rustc-env=DEPLOYER_FUNCTIONS_SUMMARY={summary}");
}

/// Fails the build when a package's `bootstrap` is not an ELF binary for `arch`: a directory
/// of x86_64 builds given as arm64 would otherwise deploy functions that cannot start.
fn check_machine(zip: &Path, bytes: &[u8], arch: &str, machine: u16, var: &str) {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .unwrap_or_else(|e| panic!("{var}: {} is not a zip: {e}", zip.display()));
    let mut entry = archive
        .by_name("bootstrap")
        .unwrap_or_else(|e| panic!("{var}: {} has no `bootstrap`: {e}", zip.display()));
    let mut head = [0u8; 20];
    entry
        .read_exact(&mut head)
        .unwrap_or_else(|e| panic!("{var}: {}: bootstrap too short: {e}", zip.display()));
    let found = u16::from_le_bytes([head[18], head[19]]);
    if &head[..4] != b"\x7fELF" || found != machine {
        panic!(
            "{var}: {} holds a bootstrap for ELF machine {found}, not {arch} ({machine}); give {var} a directory of {arch} builds",
            zip.display()
        );
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}
