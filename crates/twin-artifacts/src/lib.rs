//! Function code, the same for every provider: finding the function crates, hashing their
//! sources, and building each crate's zip once per change with cargo-lambda (or taking prebuilt
//! zips from `DEPLOYER_PREBUILT_FUNCTIONS`). Uploading a zip is each provider's own business.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use twin_config::{Architecture, Device};
use twin_engine::CloudError;
use twin_functions::data_type::{DataType, PropertySpec};

/// Env var naming a directory of prebuilt `<crate>/bootstrap.zip` files (tests, CI).
pub const PREBUILT_ENV: &str = "DEPLOYER_PREBUILT_FUNCTIONS";

/// Hex digits of a source hash.
const HASH_LEN: usize = 16;

/// The function code of one twin: where the crates are, their hashes, built zips.
pub struct Artifacts {
    workspace: Option<PathBuf>,
    prebuilt: Option<PathBuf>,
    architecture: Architecture,
    hashes: Mutex<HashMap<String, String>>,
    builds: tokio::sync::Mutex<HashMap<String, PathBuf>>,
}

impl Artifacts {
    /// Function code found in `functions_dir`, else the cargo workspace around the current
    /// directory, else the workspace this deployer was built from; built for `architecture`.
    pub fn new(functions_dir: Option<PathBuf>, architecture: Architecture) -> Self {
        let workspace = functions_dir.or_else(find_workspace);
        let prebuilt = std::env::var_os(PREBUILT_ENV)
            .map(PathBuf::from)
            .filter(|p| !p.as_os_str().is_empty());
        Artifacts {
            workspace,
            prebuilt,
            architecture,
            hashes: Mutex::new(HashMap::new()),
            builds: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The architecture functions are built for.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The content hash of a function crate's code (its sources, the shared function crates and
    /// Cargo.lock, or the prebuilt zip), computed once per command.
    pub fn source_hash(&self, crate_name: &str) -> Result<String, CloudError> {
        if let Some(h) = lock(&self.hashes).get(crate_name) {
            return Ok(h.clone());
        }
        let hash = if let Some(dir) = &self.prebuilt {
            let zip = dir.join(crate_name).join("bootstrap.zip");
            let bytes = std::fs::read(&zip).map_err(|e| {
                CloudError::fatal(
                    "ArtifactMissing",
                    format!("prebuilt function {}: {e}", zip.display()),
                )
                .with_hint(format!("build it, or unset {PREBUILT_ENV}"))
            })?;
            short(&Sha256::digest(&bytes))
        } else {
            let ws = self.workspace()?;
            let crate_dir = ws.join("lambdas").join(crate_name);
            if !crate_dir.join("Cargo.toml").exists() {
                return Err(CloudError::fatal(
                    "FunctionCrateMissing",
                    format!("no function crate {}", crate_dir.display()),
                )
                .with_hint("pass --functions-dir pointing at the deployer workspace"));
            }
            let mut files = Vec::new();
            collect_files(&crate_dir, &mut files);
            if let Ok(entries) = std::fs::read_dir(ws.join("crates")) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if name.starts_with("twin-functions") {
                        collect_files(&e.path(), &mut files);
                    }
                }
            }
            files.push(ws.join("Cargo.lock"));
            files.sort();
            let mut h = Sha256::new();
            h.update(self.architecture.as_str().as_bytes());
            for f in files {
                let rel = f.strip_prefix(&ws).unwrap_or(&f);
                h.update(rel.to_string_lossy().as_bytes());
                h.update([0]);
                h.update(std::fs::read(&f).unwrap_or_default());
                h.update([0]);
            }
            short(&h.finalize())
        };
        lock(&self.hashes).insert(crate_name.to_string(), hash.clone());
        Ok(hash)
    }

    /// The S3 key of a crate's zip: `<crate>/<arch>-<hash>.zip`.
    pub fn object_key(&self, crate_name: &str) -> Result<String, CloudError> {
        Ok(format!(
            "{crate_name}/{}-{}.zip",
            self.architecture.as_str(),
            self.source_hash(crate_name)?
        ))
    }

    fn workspace(&self) -> Result<PathBuf, CloudError> {
        self.workspace.clone().ok_or_else(|| {
            CloudError::fatal("FunctionsNotFound", "the function crates were not found")
                .with_hint("pass --functions-dir DIR (the deployer's cargo workspace) or set DEPLOYER_PREBUILT_FUNCTIONS")
        })
    }

    /// The zip of a crate, built with cargo-lambda if its hash has none cached yet.
    pub async fn zip(&self, crate_name: &str) -> Result<PathBuf, CloudError> {
        let hash = self.source_hash(crate_name)?;
        if let Some(dir) = &self.prebuilt {
            return Ok(dir.join(crate_name).join("bootstrap.zip"));
        }
        // One build at a time: cargo would serialise on its lock anyway, and this makes "build
        // once per hash" hold even when several functions need the same crate at once.
        let mut builds = self.builds.lock().await;
        if let Some(p) = builds.get(crate_name) {
            return Ok(p.clone());
        }
        let ws = self.workspace()?;
        let cache = ws.join("target").join("deployer-artifacts");
        let cached = cache.join(format!(
            "{crate_name}-{}-{hash}.zip",
            self.architecture.as_str()
        ));
        if !cached.exists() {
            build(&ws, crate_name, self.architecture, &cached).await?;
        }
        builds.insert(crate_name.to_string(), cached.clone());
        Ok(cached)
    }
}

async fn build(
    ws: &Path,
    crate_name: &str,
    arch: Architecture,
    into: &Path,
) -> Result<(), CloudError> {
    let venv_bin = ws.join(".venv").join("bin");
    let program = if venv_bin.join("cargo-lambda").exists() {
        venv_bin.join("cargo-lambda")
    } else {
        PathBuf::from("cargo-lambda")
    };
    let out_dir = ws.join("target").join("deployer-lambda");
    let mut cmd = tokio::process::Command::new(&program);
    cmd.current_dir(ws)
        .args([
            "lambda",
            "build",
            "--release",
            "--output-format",
            "zip",
            "-p",
            crate_name,
        ])
        .arg(if arch == Architecture::Arm64 {
            "--arm64"
        } else {
            "--x86-64"
        })
        .arg("--lambda-dir")
        .arg(&out_dir);
    // cargo-lambda finds zig in the same virtualenv.
    if let Some(path) = std::env::var_os("PATH") {
        let mut paths = vec![venv_bin.clone()];
        paths.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(paths) {
            cmd.env("PATH", joined);
        }
    }
    let out = cmd.output().await.map_err(|e| {
        CloudError::fatal(
            "BuildFailed",
            format!("cannot run {}: {e}", program.display()),
        )
        .with_hint("install cargo-lambda (scripts/setup.sh) or set DEPLOYER_PREBUILT_FUNCTIONS")
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        return Err(CloudError::fatal(
            "BuildFailed",
            format!(
                "cargo lambda build -p {crate_name} failed:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        ));
    }
    let built = out_dir.join(crate_name).join("bootstrap.zip");
    if let Some(parent) = into.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| CloudError::fatal("BuildFailed", format!("{}: {e}", parent.display())))?;
    }
    std::fs::copy(&built, into)
        .map_err(|e| CloudError::fatal("BuildFailed", format!("{}: {e}", built.display())))?;
    Ok(())
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// A cargo workspace with a `lambdas/` folder around the current directory, else the one this
/// binary was built from.
fn find_workspace() -> Option<PathBuf> {
    let is_ws = |d: &Path| d.join("Cargo.toml").exists() && d.join("lambdas").is_dir();
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(d) = cwd.ancestors().find(|d| is_ws(d)) {
            return Some(d.to_path_buf());
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2)?;
    is_ws(built_from).then(|| built_from.to_path_buf())
}

fn short(digest: &[u8]) -> String {
    let mut s = hex::encode(digest);
    s.truncate(HASH_LEN);
    s
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A device's property types as the functions coerce them (the catalogue every cloud's
/// functions load), or an error naming the device and property whose type they cannot coerce.
pub fn property_specs(device: &Device) -> Result<Vec<PropertySpec>, CloudError> {
    device
        .properties
        .iter()
        .map(|p| {
            let data_type: DataType =
                serde_json::from_value(serde_json::Value::String(p.data_type.as_str().into()))
                    .map_err(|e| {
                        CloudError::fatal(
                    "UnsupportedDataType",
                    format!(
                        "device {} property {}: the functions cannot coerce dataType {} ({e})",
                        device.id,
                        p.name,
                        p.data_type.as_str()
                    ),
                )
                .with_hint(
                    "use DOUBLE, INTEGER, LONG, BOOLEAN or STRING in config_iot_devices.json",
                )
                    })?;
            Ok(PropertySpec {
                name: p.name.clone(),
                data_type,
            })
        })
        .collect()
}
