//! Test support: starts one moto server per test binary on a free loopback port.
//!
//! The server comes from the project-local virtualenv that `scripts/setup.sh` creates. When it
//! cannot start, the first test that asks for it panics with the reason: integration tests never
//! skip silently.

pub mod azure;
pub mod fake_adt;
pub mod fake_app_insights;
pub mod fake_arm;
pub mod fake_event_grid;
pub mod fake_functions_host;
pub mod fake_grafana;
pub mod fake_http;
pub mod fake_iot_data;
pub mod fake_iot_hub;
pub mod fake_kudu;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running moto server shared by every test in this binary.
#[derive(Debug)]
pub struct Moto {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub endpoint: String,
    /// Port the server listens on.
    pub port: u16,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The project-local virtualenv (`$TWIN_VENV` overrides it).
pub fn venv() -> PathBuf {
    std::env::var_os("TWIN_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv"))
}

/// Returns the shared moto server, starting it on first use; panics with the reason if it cannot.
pub fn moto() -> &'static Moto {
    match MOTO.get_or_init(start_moto) {
        Ok(m) => m,
        Err(e) => panic!("moto server is not available: {e}. Run scripts/setup.sh first."),
    }
}

/// Sets the environment the AWS SDK reads so clients built with `aws_config` talk to `moto()`.
pub fn aws_env_for_moto() -> &'static Moto {
    let m = moto();
    // SAFETY of set_var: tests set the same values from any thread; the values never differ.
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", &m.endpoint);
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::remove_var("AWS_PROFILE");
    }
    m
}

/// A free TCP port on 127.0.0.1 (the OS picks it; the listener is closed again before return).
pub fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn start_moto() -> Result<Moto, String> {
    let bin = venv().join("bin").join("moto_server");
    if !bin.exists() {
        return Err(format!("{} does not exist", bin.display()));
    }
    let mut last_err = String::new();
    // The port can be taken between free_port() and moto's bind; try a few.
    for _ in 0..5 {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        match spawn_and_wait(&bin, port) {
            Ok(()) => {
                let endpoint = format!("http://127.0.0.1:{port}");
                // Lambda Invoke without Docker: the simple backend echoes the payload.
                http_request(
                    port,
                    "POST",
                    "/moto-api/config",
                    r#"{"lambda":{"use_docker":false}}"#,
                )?;
                return Ok(Moto { endpoint, port });
            }
            Err(e) => last_err = e,
        }
    }
    Err(last_err)
}

fn spawn_and_wait(bin: &Path, port: u16) -> Result<(), String> {
    let log = std::env::temp_dir().join(format!("twin-moto-{port}.log"));
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let bin = bin.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    // The child is spawned from a thread that lives as long as the process, because
    // PR_SET_PDEATHSIG fires when the spawning *thread* ends; the test thread may end early.
    std::thread::spawn(move || {
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "false")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                // Dies with the test binary, so no moto outlives a test run.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let _ = child.wait();
                // Keep this thread (and so the death signal) until the process exits.
                loop {
                    std::thread::park();
                }
            }
            Err(e) => {
                let _ = tx.send(Err(format!("cannot start {}: {e}", bin.display())));
            }
        }
    });
    rx.recv().map_err(|e| e.to_string())??;
    wait_until_ready(port, Duration::from_secs(60)).map_err(|e| {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        format!("{e}; moto log {}:\n{tail}", log.display())
    })
}

/// Polls moto's own API with backoff until it answers or the deadline passes.
fn wait_until_ready(port: u16, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut delay = Duration::from_millis(20);
    loop {
        match http_request(port, "GET", "/moto-api/data.json", "") {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "moto on port {port} not ready after {within:?}: {e}"
                ))
            }
            Err(_) => {
                std::thread::sleep(delay); // poll backoff
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// Minimal HTTP/1.1 request to the emulator; returns the body of a 2xx answer.
pub fn http_request(port: u16, method: &str, path: &str, body: &str) -> Result<String, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let status: u16 = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad HTTP answer: {resp:.80}"))?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(format!("{method} {path} answered {status}: {body:.200}"))
    }
}

/// Clears all of moto's state (only for tests that run alone).
pub fn reset_moto() -> Result<(), String> {
    http_request(moto().port, "POST", "/moto-api/reset", "").map(|_| ())
}

/// The function crates `scripts/build-functions.sh` packages (seven Lambda functions, the
/// Azure Functions custom handler and the example own-processor crate).
pub const FUNCTION_CRATES: [&str; 9] = [
    "dispatcher",
    "processor",
    "persister",
    "hot-reader",
    "hot-to-cold-mover",
    "cold-to-archive-mover",
    "twin-connector",
    "azure-handler",
    // The example of a device's own processor crate (tests of that path on both clouds).
    "fahrenheit-processor",
];

static FUNCTION_ZIPS: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The directory of the real function packages (`<target>/lambda/<fn>/bootstrap.zip`), for tests
/// that run the functions' code (the local data plane). Built once by
/// `scripts/build-functions.sh` when missing (the test command builds them first); panics with
/// the reason when they cannot be built.
pub fn function_zips() -> &'static Path {
    let built = FUNCTION_ZIPS.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"));
        let dir = target.join("lambda");
        let complete = |d: &Path| {
            FUNCTION_CRATES
                .iter()
                .all(|f| d.join(f).join("bootstrap.zip").is_file())
        };
        if complete(&dir) {
            return Ok(dir);
        }
        let out = Command::new("bash")
            .arg(workspace_root().join("scripts/build-functions.sh"))
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .map_err(|e| format!("cannot run scripts/build-functions.sh: {e}"))?;
        if !out.status.success() || !complete(&dir) {
            return Err(format!(
                "scripts/build-functions.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(dir)
    });
    match built {
        Ok(d) => d,
        Err(e) => panic!("the function packages are not available: {e}"),
    }
}
