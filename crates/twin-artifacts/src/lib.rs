//! Function code, the same for every provider: finding the function crates, hashing their
//! sources, and building each crate's zip once per change with cargo-lambda (or taking prebuilt
//! zips from `DEPLOYER_PREBUILT_FUNCTIONS`, or the packages an installed deployer carries, see
//! [`embed`]). Uploading a zip is each provider's own business.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use twin_config::{Architecture, Device};
use twin_engine::CloudError;
use twin_functions::data_type::{DataType, PropertySpec};

/// Env var naming a directory of prebuilt `<crate>/bootstrap.zip` files (tests, CI).
pub const PREBUILT_ENV: &str = "DEPLOYER_PREBUILT_FUNCTIONS";

/// Hex digits of a source hash.
const HASH_LEN: usize = 16;

/// The function crates every twin deploys with its default processors: the seven Lambda
/// functions and the Azure Functions custom handler. An installed deployer carries their
/// packages; a device's own processor crate is always built from source.
pub const DEFAULT_FUNCTION_CRATES: [&str; 8] = [
    "dispatcher",
    "processor",
    "persister",
    "hot-reader",
    "hot-to-cold-mover",
    "cold-to-archive-mover",
    "twin-connector",
    "azure-handler",
];

/// One function package carried inside the deployer binary (`include_bytes!` of a
/// cargo-lambda `bootstrap.zip`).
#[derive(Debug)]
pub struct EmbeddedPackage {
    /// The function crate, one of [`DEFAULT_FUNCTION_CRATES`].
    pub crate_name: &'static str,
    /// The architecture its `bootstrap` binary runs on.
    pub architecture: Architecture,
    /// The zip itself.
    pub zip: &'static [u8],
}

static EMBEDDED: OnceLock<&'static [EmbeddedPackage]> = OnceLock::new();

/// Makes the packages compiled into this binary the default function code of every
/// [`Artifacts`] made after it. A process-wide setting on purpose: the packages are part of the
/// binary, like its version, and every provider of every command must see the same ones. The
/// first call wins; later calls are ignored.
pub fn embed(packages: &'static [EmbeddedPackage]) {
    let _ = EMBEDDED.set(packages);
}

/// The packages this binary carries (none unless [`embed`] was called with some).
pub fn embedded() -> &'static [EmbeddedPackage] {
    EMBEDDED.get().copied().unwrap_or(&[])
}

/// Where one crate's zip comes from.
enum Source {
    /// `DEPLOYER_PREBUILT_FUNCTIONS/<crate>/bootstrap.zip`.
    Prebuilt(PathBuf),
    /// Compiled into this binary.
    Embedded(&'static [u8]),
    /// Built from the crate in a cargo workspace.
    Workspace,
}

/// The function code of one twin: where the crates are, their hashes, built zips.
pub struct Artifacts {
    workspace: Option<PathBuf>,
    /// Whether the workspace was named by the caller (`--functions-dir`): then every crate is
    /// built from it, even one this binary carries.
    workspace_given: bool,
    prebuilt: Option<PathBuf>,
    embedded: &'static [EmbeddedPackage],
    architecture: Architecture,
    hashes: Mutex<HashMap<String, String>>,
    builds: tokio::sync::Mutex<HashMap<String, PathBuf>>,
}

impl Artifacts {
    /// Function code for `architecture`: prebuilt zips from `DEPLOYER_PREBUILT_FUNCTIONS`,
    /// else crates built from `functions_dir`, else the default packages this binary carries
    /// ([`embed`]), else crates built from the cargo workspace around the current directory or
    /// the one this deployer was built from.
    pub fn new(functions_dir: Option<PathBuf>, architecture: Architecture) -> Self {
        Self::with_embedded(functions_dir, architecture, embedded())
    }

    /// [`Artifacts::new`] with these packages in place of the binary's own (tests).
    pub fn with_embedded(
        functions_dir: Option<PathBuf>,
        architecture: Architecture,
        embedded: &'static [EmbeddedPackage],
    ) -> Self {
        let workspace_given = functions_dir.is_some();
        let workspace = functions_dir.or_else(find_workspace);
        let prebuilt = std::env::var_os(PREBUILT_ENV)
            .map(PathBuf::from)
            .filter(|p| !p.as_os_str().is_empty());
        Artifacts {
            workspace,
            workspace_given,
            prebuilt,
            embedded,
            architecture,
            hashes: Mutex::new(HashMap::new()),
            builds: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The architecture functions are built for.
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// Where `crate_name`'s zip comes from, or why it cannot come from anywhere.
    fn source(&self, crate_name: &str) -> Result<Source, CloudError> {
        if let Some(dir) = &self.prebuilt {
            return Ok(Source::Prebuilt(dir.join(crate_name).join("bootstrap.zip")));
        }
        if self.workspace_given || self.embedded.is_empty() {
            return Ok(Source::Workspace);
        }
        if let Some(p) = self
            .embedded
            .iter()
            .find(|p| p.crate_name == crate_name && p.architecture == self.architecture)
        {
            return Ok(Source::Embedded(p.zip));
        }
        if !DEFAULT_FUNCTION_CRATES.contains(&crate_name) {
            // A device's own processor: always built from its source.
            return Ok(Source::Workspace);
        }
        // A default function this binary was not given for this architecture: building it from
        // some checkout instead would deploy code of another version, and falling back to
        // another architecture would deploy code that cannot run.
        let mut carried: Vec<&str> = self
            .embedded
            .iter()
            .filter(|p| p.crate_name == crate_name)
            .map(|p| p.architecture.as_str())
            .collect();
        carried.dedup();
        let carried = if carried.is_empty() {
            "no architecture".to_string()
        } else {
            carried.join(", ")
        };
        let arch = self.architecture.as_str();
        Err(CloudError::fatal(
            "FunctionPackageNotEmbedded",
            format!(
                "this deployer carries the {crate_name} function for {carried} only, and the twin needs it for {arch}"
            ),
        )
        .with_hint(if self.architecture == Architecture::Arm64 {
            "build the arm64 packages (`scripts/build-functions.sh --arm64`, needs the aarch64-unknown-linux-gnu Rust target) and reinstall with `scripts/install.sh --arm64`; or pass --functions-dir DIR (a deployer checkout) to build them from source; or set aws.architecture to x86_64".to_string()
        } else {
            format!("reinstall with `scripts/install.sh` (it builds and embeds every default function for {arch}), or pass --functions-dir DIR (a deployer checkout) to build them from source")
        }))
    }

    /// The content hash of a function crate's code (its sources, the shared function crates and
    /// Cargo.lock, or the prebuilt or embedded zip), computed once per command.
    pub fn source_hash(&self, crate_name: &str) -> Result<String, CloudError> {
        if let Some(h) = lock(&self.hashes).get(crate_name) {
            return Ok(h.clone());
        }
        let source = self.source(crate_name)?;
        let hash = if let Source::Prebuilt(zip) = &source {
            let bytes = std::fs::read(zip).map_err(|e| {
                CloudError::fatal(
                    "ArtifactMissing",
                    format!("prebuilt function {}: {e}", zip.display()),
                )
                .with_hint(format!("build it, or unset {PREBUILT_ENV}"))
            })?;
            short(&Sha256::digest(&bytes))
        } else if let Source::Embedded(bytes) = source {
            short(&Sha256::digest(bytes))
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

    /// The zip of a crate: prebuilt, written out from this binary, or built with cargo-lambda
    /// if its hash has none cached yet.
    pub async fn zip(&self, crate_name: &str) -> Result<PathBuf, CloudError> {
        let hash = self.source_hash(crate_name)?;
        match self.source(crate_name)? {
            Source::Prebuilt(zip) => return Ok(zip),
            Source::Embedded(bytes) => {
                return write_embedded(
                    &embedded_cache(),
                    crate_name,
                    self.architecture,
                    &hash,
                    bytes,
                )
            }
            Source::Workspace => {}
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

/// Where embedded zips are written for the providers to upload: the user's cache directory
/// (not a shared temp directory another user could plant files in).
fn embedded_cache() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("deployer").join("functions")
}

/// Writes an embedded zip to `<dir>/<crate>-<arch>-<hash>.zip` unless a file with the same
/// content is there already; returns its path.
fn write_embedded(
    dir: &Path,
    crate_name: &str,
    arch: Architecture,
    hash: &str,
    bytes: &[u8],
) -> Result<PathBuf, CloudError> {
    let path = dir.join(format!("{crate_name}-{}-{hash}.zip", arch.as_str()));
    let fail = |what: &Path, e: std::io::Error| {
        CloudError::fatal(
            "ArtifactUnwritable",
            format!(
                "cannot write the {crate_name} function package to {}: {e}",
                what.display()
            ),
        )
        .with_hint("make the directory writable, or set XDG_CACHE_HOME to a writable directory")
    };
    // The name carries the hash, but the content decides: a truncated or altered file is
    // rewritten.
    if let Ok(existing) = std::fs::read(&path) {
        if existing == bytes {
            return Ok(path);
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, e))?;
    // Written aside and renamed, so a concurrent deploy never reads half a zip.
    let partial = dir.join(format!(
        ".{crate_name}-{}-{hash}.{}.partial",
        arch.as_str(),
        std::process::id()
    ));
    std::fs::write(&partial, bytes).map_err(|e| fail(&partial, e))?;
    std::fs::rename(&partial, &path).map_err(|e| fail(&path, e))?;
    Ok(path)
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

#[cfg(test)]
mod tests {
    use super::*;

    static X86_ONLY: [EmbeddedPackage; 2] = [
        EmbeddedPackage {
            crate_name: "dispatcher",
            architecture: Architecture::X86_64,
            zip: b"dispatcher x86_64 zip",
        },
        EmbeddedPackage {
            crate_name: "azure-handler",
            architecture: Architecture::X86_64,
            zip: b"azure-handler x86_64 zip",
        },
    ];

    fn artifacts(arch: Architecture) -> Artifacts {
        let mut a = Artifacts::with_embedded(None, arch, &X86_ONLY);
        // Whatever the test environment exports: these tests are about the embedded packages.
        a.prebuilt = None;
        a
    }

    #[test]
    fn an_embedded_package_is_hashed_by_its_bytes() {
        let a = artifacts(Architecture::X86_64);
        assert_eq!(
            a.source_hash("dispatcher").unwrap(),
            short(&Sha256::digest(b"dispatcher x86_64 zip"))
        );
        assert_eq!(
            a.object_key("azure-handler").unwrap(),
            format!(
                "azure-handler/x86_64-{}.zip",
                short(&Sha256::digest(b"azure-handler x86_64 zip"))
            )
        );
    }

    #[test]
    fn another_architecture_is_an_error_saying_how_to_build_it_never_the_x86_package() {
        let a = artifacts(Architecture::Arm64);
        let e = a.source_hash("dispatcher").unwrap_err();
        assert_eq!(e.code, "FunctionPackageNotEmbedded");
        assert!(!e.class.is_retryable(), "{e:?}");
        assert!(e.message.contains("x86_64 only"), "{}", e.message);
        assert!(e.message.contains("arm64"), "{}", e.message);
        let hint = e.hint.unwrap_or_default();
        assert!(
            hint.contains("scripts/build-functions.sh --arm64"),
            "{hint}"
        );
        assert!(hint.contains("aarch64-unknown-linux-gnu"), "{hint}");
    }

    #[test]
    fn a_default_function_the_binary_lacks_is_an_error_too() {
        let a = artifacts(Architecture::X86_64);
        let e = a.source_hash("persister").unwrap_err();
        assert_eq!(e.code, "FunctionPackageNotEmbedded");
        assert!(e.message.contains("no architecture"), "{}", e.message);
    }

    #[test]
    fn an_own_processor_crate_is_built_from_source_and_an_explicit_workspace_wins() {
        let a = artifacts(Architecture::X86_64);
        assert!(matches!(
            a.source("fahrenheit-processor"),
            Ok(Source::Workspace)
        ));
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut given = Artifacts::with_embedded(Some(ws), Architecture::X86_64, &X86_ONLY);
        given.prebuilt = None;
        assert!(matches!(given.source("dispatcher"), Ok(Source::Workspace)));
        let mut none = Artifacts::with_embedded(None, Architecture::Arm64, &[]);
        none.prebuilt = None;
        assert!(matches!(none.source("dispatcher"), Ok(Source::Workspace)));
    }

    #[test]
    fn an_embedded_zip_is_written_once_and_rewritten_when_altered() {
        let dir = std::env::temp_dir().join(format!("twin-artifacts-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = write_embedded(&dir, "dispatcher", Architecture::X86_64, "abc", b"zip").unwrap();
        assert_eq!(p, dir.join("dispatcher-x86_64-abc.zip"));
        assert_eq!(std::fs::read(&p).unwrap(), b"zip");
        std::fs::write(&p, b"tampered").unwrap();
        let again =
            write_embedded(&dir, "dispatcher", Architecture::X86_64, "abc", b"zip").unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), b"zip");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "no partial file left: {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
