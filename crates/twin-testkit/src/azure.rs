//! Azure data-plane emulators for the Azure adapter tests: Azurite (Blob) and the
//! `@vercel/cosmosdb-server` Cosmos DB NoSQL emulator, one of each per test binary, on free
//! loopback ports, killed with the test binary.
//!
//! Both come from the project-local directory `scripts/setup-azure-emulators.sh` fills
//! (`.azure-emulators/`, `$TWIN_AZURE_EMULATORS` overrides it); the first test that needs them runs
//! that script when they are missing. When an emulator cannot start, the test panics with the
//! reason: never a silent skip.

use crate::{free_port, workspace_root};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Azurite's (and every Azure storage emulator's) well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The development account's well-known key (public: it only opens local emulators).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The Cosmos DB emulator's well-known key (the server here accepts any key; the SDK signs with it).
pub const COSMOS_EMULATOR_KEY: &str =
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==";
/// The SAS version the helpers sign (its string-to-sign has the encryption-scope line).
const SAS_VERSION: &str = "2020-12-06";

/// A running Azurite blob service shared by every test in this binary.
#[derive(Debug)]
pub struct Azurite {
    /// The account URL without a trailing slash, e.g. `http://127.0.0.1:40123/devstoreaccount1`.
    pub blob_endpoint: String,
    /// Port the blob service listens on.
    pub port: u16,
    /// How long the emulator took from spawn to accepting connections.
    pub started_in: Duration,
}

impl Azurite {
    /// An account SAS query string (no leading `?`) for the blob service, valid until 2099, with
    /// every permission the adapters use; `azure_storage_blob` 1.x has no shared-key auth, so
    /// tests append this to container and blob URLs instead.
    pub fn account_sas(&self) -> String {
        account_sas(AZURITE_ACCOUNT, AZURITE_KEY, "2099-12-31T00:00:00Z")
    }

    /// The URL of `container` with the account SAS, ready for a client without a credential.
    pub fn container_url(&self, container: &str) -> String {
        format!("{}/{container}?{}", self.blob_endpoint, self.account_sas())
    }
}

/// A running Cosmos DB emulator shared by every test in this binary.
#[derive(Debug)]
pub struct Cosmos {
    /// The account endpoint, e.g. `https://127.0.0.1:40124/` (self-signed certificate).
    pub endpoint: String,
    /// The account key to sign requests with.
    pub key: String,
    /// Port the emulator listens on.
    pub port: u16,
    /// How long the emulator took from spawn to accepting connections.
    pub started_in: Duration,
}

/// Signs an account SAS for the blob service (services `b`, resource types `sco`).
pub fn account_sas(account: &str, key_base64: &str, expiry: &str) -> String {
    let permissions = "rwdlacup";
    let (services, types, protocol) = ("b", "sco", "https,http");
    // Account SAS string-to-sign for versions >= 2020-12-06: the last line is the (empty)
    // encryption scope.
    let to_sign = format!(
        "{account}\n{permissions}\n{services}\n{types}\n\n{expiry}\n\n{protocol}\n{SAS_VERSION}\n\n"
    );
    let key = base64::engine::general_purpose::STANDARD
        .decode(key_base64)
        .unwrap_or_default();
    // HMAC-SHA256 accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    format!(
        "sv={SAS_VERSION}&ss={services}&srt={types}&sp={permissions}&se={}&spr={}&sig={}",
        encode(expiry),
        encode(protocol),
        encode(&sig)
    )
}

/// Percent-encodes everything but unreserved characters (for SAS query values).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

static AZURITE: OnceLock<Result<Azurite, String>> = OnceLock::new();
static COSMOS: OnceLock<Result<Cosmos, String>> = OnceLock::new();
static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The shared Azurite blob service, started on first use; panics with the reason if it cannot.
pub fn azurite() -> &'static Azurite {
    match AZURITE.get_or_init(start_azurite) {
        Ok(a) => a,
        Err(e) => panic!("Azurite is not available: {e}"),
    }
}

/// The shared Cosmos DB emulator, started on first use; panics with the reason if it cannot.
/// Also sets the three variables `azure_data_cosmos` needs to talk to it (no certificate check,
/// HTTP/1.1 only, JSON instead of binary encoding).
pub fn cosmos() -> &'static Cosmos {
    match COSMOS.get_or_init(start_cosmos) {
        Ok(c) => {
            // SAFETY of set_var: every test sets the same values; they never differ.
            unsafe {
                std::env::set_var(
                    "AZURE_COSMOS_EMULATOR_SERVER_CERT_VALIDATION_DISABLED",
                    "true",
                );
                std::env::set_var("AZURE_COSMOS_CONNECTION_POOL_IS_HTTP2_ALLOWED", "false");
                std::env::set_var("AZURE_COSMOS_BINARY_ENCODING_ENABLED", "false");
            }
            c
        }
        Err(e) => panic!("the Cosmos DB emulator is not available: {e}"),
    }
}

/// The emulators' directory, installed by `scripts/setup-azure-emulators.sh` when missing.
fn emulators_dir() -> Result<&'static Path, String> {
    let dir = INSTALLED.get_or_init(|| {
        let dir = std::env::var_os("TWIN_AZURE_EMULATORS")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join(".azure-emulators"));
        let bins = |d: &Path| {
            [
                d.join("node_modules/.bin/azurite-blob"),
                d.join("node_modules/.bin/cosmosdb-server"),
            ]
        };
        if bins(&dir).iter().all(|b| b.exists()) {
            return Ok(dir);
        }
        let script = workspace_root().join("scripts/setup-azure-emulators.sh");
        let out = Command::new("bash")
            .arg(&script)
            .env("TWIN_AZURE_EMULATORS", &dir)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() || !bins(&dir).iter().all(|b| b.exists()) {
            return Err(format!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    });
    dir.as_ref().map(PathBuf::as_path).map_err(Clone::clone)
}

fn start_azurite() -> Result<Azurite, String> {
    let bin = emulators_dir()?.join("node_modules/.bin/azurite-blob");
    start_on_free_port("azurite", |port| {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--loose",
            "--inMemoryPersistence",
            // azure_storage_blob sends a newer API version than Azurite 3.35 knows.
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ]);
        cmd
    })
    .map(|(port, started_in)| Azurite {
        blob_endpoint: format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
        port,
        started_in,
    })
}

/// A separate Azurite blob service over https with OAuth (`--oauth basic`: bearer tokens are
/// checked for issuer, audience and lifetime, not signature), serving `cert`/`key` (PEM, for
/// 127.0.0.1): what a client authenticating with Entra tokens needs, since azure_core refuses
/// bearer tokens over plain http and Azurite takes them over https only. Each call starts a new
/// one (killed with the test binary).
pub fn start_azurite_https(cert: &Path, key: &Path) -> Result<Azurite, String> {
    let bin = emulators_dir()?.join("node_modules/.bin/azurite-blob");
    start_on_free_port("azurite-https", |port| {
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port.to_string(),
            "--loose",
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--oauth",
            "basic",
        ])
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key);
        cmd
    })
    .map(|(port, started_in)| Azurite {
        blob_endpoint: format!("https://127.0.0.1:{port}/{AZURITE_ACCOUNT}"),
        port,
        started_in,
    })
}

fn start_cosmos() -> Result<Cosmos, String> {
    let bin = emulators_dir()?.join("node_modules/.bin/cosmosdb-server");
    start_on_free_port("cosmosdb-server", |port| {
        let mut cmd = Command::new(&bin);
        cmd.args(["--host", "127.0.0.1", "-p", &port.to_string()]);
        cmd
    })
    .map(|(port, started_in)| Cosmos {
        endpoint: format!("https://127.0.0.1:{port}/"),
        key: COSMOS_EMULATOR_KEY.to_string(),
        port,
        started_in,
    })
}

/// Spawns the emulator `build(port)` describes on a free port and waits until it accepts
/// connections; retries with another port when the port was taken in between.
fn start_on_free_port(
    name: &str,
    build: impl Fn(u16) -> Command,
) -> Result<(u16, Duration), String> {
    let mut last_err = String::new();
    for _ in 0..5 {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let log = std::env::temp_dir().join(format!("twin-{name}-{port}.log"));
        let started = Instant::now();
        let result = spawn_with_pdeathsig(build(port), &log).and_then(|()| {
            wait_until_listening(port, Duration::from_secs(60)).map_err(|e| {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                format!("{e}; {name} log {}:\n{tail}", log.display())
            })
        });
        match result {
            Ok(()) => return Ok((port, started.elapsed())),
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

/// Starts `cmd` with its output in `log`, from a thread that lives as long as the process:
/// PR_SET_PDEATHSIG fires when the spawning *thread* ends, and the test thread may end early.
fn spawn_with_pdeathsig(mut cmd: Command, log: &Path) -> Result<(), String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(log_file).stderr(log_err);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                // Dies with the test binary, so no emulator outlives a test run.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(()));
                let _ = child.wait();
                loop {
                    std::thread::park();
                }
            }
            Err(e) => {
                let _ = tx.send(Err(format!("cannot start {cmd:?}: {e}")));
            }
        }
    });
    rx.recv().map_err(|e| e.to_string())?
}

/// Polls the port with backoff until something accepts connections there or the deadline
/// passes: both emulators bind their port only once they can serve.
fn wait_until_listening(port: u16, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut delay = Duration::from_millis(20);
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("port {port} not listening after {within:?}: {e}"))
            }
            Err(_) => {
                std::thread::sleep(delay); // poll backoff
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_is_signed_and_encoded() {
        let sas = account_sas(AZURITE_ACCOUNT, AZURITE_KEY, "2099-12-31T00:00:00Z");
        assert!(sas.starts_with("sv=2020-12-06&ss=b&srt=sco&sp=rwdlacup&se=2099-12-31T00%3A00%3A00Z&spr=https%2Chttp&sig="));
        assert!(!sas.contains('+') && !sas.contains('/'));
    }
}
