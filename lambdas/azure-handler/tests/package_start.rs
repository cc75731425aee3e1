//! The binary as the Functions host runs it: unpacked from the package `app::package` builds
//! (so the executable bit comes from the zip), started with the host's variables, ready within
//! the host's 60 s, answering invocations in the custom handler shape. Storage is not reached:
//! the store is resolved on first use, and these invocations never need it.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use twin_functions_azure::app::{package, AppFunction, PackageInput};

/// The host's startup limit for a custom handler.
const HOST_START_LIMIT: Duration = Duration::from_secs(60);

fn unpack(zip: &[u8], dir: &Path) {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).expect("entry");
        let path = dir.join(entry.name());
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read");
        std::fs::write(&path, bytes).expect("write");
        if let Some(mode) = entry.unix_mode() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o777))
                .expect("chmod");
        }
    }
}

/// The package of the built binary, made once per test binary (deflating a debug build takes
/// seconds).
fn app_zip() -> &'static [u8] {
    static ZIP: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    ZIP.get_or_init(build_zip)
}

fn build_zip() -> Vec<u8> {
    let handler = std::fs::read(env!("CARGO_BIN_EXE_azure-handler")).expect("the built binary");
    let catalogue = serde_json::from_value(json!({
        "sharedProcessor": "processor",
        "devices": {"s-1": {"properties": [{"name": "temperature", "dataType": "DOUBLE"}]}}
    }))
    .expect("catalogue");
    package(&PackageInput {
        handler,
        catalogue,
        functions: AppFunction::ALL.to_vec(),
        processors: Default::default(),
        events: Default::default(),
    })
    .expect("package")
}

fn app_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twin-app-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("app dir");
    unpack(app_zip(), &dir);
    dir
}

fn settings() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TWIN_NAME", "it"),
        ("LOG_LEVEL", "DEBUG"),
        ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-00000000c1d0"),
        // Nobody listens there: nothing in these tests may need the store.
        ("COSMOS_ENDPOINT", "https://127.0.0.1:9/"),
        ("COSMOS_DATABASE", "twin"),
        ("HOT_TABLE", "it-hot"),
        ("BLOB_ENDPOINT", "https://127.0.0.1:9/account"),
        ("COLD_BUCKET", "it-cold"),
        ("ARCHIVE_BUCKET", "it-archive"),
        ("HOT_STORAGE_DAYS", "30"),
        ("COLD_STORAGE_DAYS", "90"),
        ("BOUNDARY_NONCE_CONTAINER", "boundary-nonces"),
        (
            "BOUNDARY_SECRET_HOT_TO_COLD",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        ),
    ]
}

/// Starts `<dir>/handler` as the host does: from the app root, with the port and the settings.
fn spawn(dir: &Path, port: u16, settings: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(dir.join("handler"));
    cmd.current_dir(dir)
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_APP_ROOT_PATH", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in settings {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the packaged handler is executable")
}

/// One HTTP/1.1 exchange; `None` while nothing listens.
fn request(port: u16, method: &str, path: &str, body: &str) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nX-Azure-Functions-InvocationId: 0f0e0d0c-0000-4000-8000-000000000001\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Polls the host's readiness ping (`GET /`) with backoff until it answers or the host's limit.
fn wait_ready(port: u16, child: &mut Child) -> Duration {
    let started = Instant::now();
    let mut delay = Duration::from_millis(10);
    loop {
        if let Some((status, _)) = request(port, "GET", "/", "") {
            assert_eq!(status, 200);
            return started.elapsed();
        }
        if let Ok(Some(exit)) = child.try_wait() {
            panic!("the handler exited before listening: {exit}");
        }
        assert!(
            started.elapsed() < HOST_START_LIMIT,
            "not listening within the host's 60 s"
        );
        std::thread::sleep(delay); // poll backoff
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

#[test]
fn packaged_handler_starts_within_the_host_limit_and_answers_invocations() {
    let dir = app_dir("start");
    let port = twin_testkit::free_port().expect("port");
    let mut child = spawn(&dir, port, &settings());
    let ready = wait_ready(port, &mut child);
    eprintln!("listening after {ready:?}");

    // A telemetry event from a device the catalogue does not list: dropped, acknowledged.
    let event = json!({"Data": {"event": {
        "id": "e-1", "eventType": "Microsoft.Devices.DeviceTelemetry", "subject": "devices/s-9",
        "data": {"body": {"iotDeviceId": "s-9", "temperature": 1.0},
                 "systemProperties": {"iothub-connection-device-id": "s-9",
                                      "iothub-content-type": "application/json",
                                      "iothub-content-encoding": "utf-8"}}}},
        "Metadata": {}});
    let (status, body) = request(port, "POST", "/dispatcher", &event.to_string()).expect("answer");
    assert_eq!(status, 200, "{body}");
    assert!(
        body["Logs"].to_string().contains("unknown_device"),
        "{body}"
    );
    let (status, body) = request(port, "POST", "/nothing-here", "{}").expect("answer");
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["Outputs"], json!({}), "{body}");

    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    let log = String::from_utf8_lossy(&out.stdout);
    // JSON lines, one of them saying which functions are ready.
    assert!(
        log.lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| {
                v["functions"]
        == "dispatcher,processor,persister,hot-reader,hot-to-cold-mover,cold-to-archive-mover,ingress-cold"
            })),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn packaged_handler_names_every_missing_setting_and_exits() {
    let dir = app_dir("missing");
    let port = twin_testkit::free_port().expect("port");
    let partial: Vec<_> = settings()
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "COSMOS_ENDPOINT" | "COLD_BUCKET" | "HOT_STORAGE_DAYS"))
        .collect();
    let child = spawn(&dir, port, &partial);
    let out = child.wait_with_output().expect("exit");
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains(
            "missing environment variable(s) COSMOS_ENDPOINT, COLD_BUCKET, HOT_STORAGE_DAYS"
        ),
        "{log}"
    );
    assert!(log.contains("deployer deploy"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
