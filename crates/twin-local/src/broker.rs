//! The mosquitto broker: its config, ACL and trust bundle rendered from what is trusted, and the
//! background process (start, wait until it accepts TLS and MQTT, stop).

use crate::pki::{Pki, IOT_DATA_IDENTITY, RULE_ENGINE_IDENTITY};
use crate::LocalError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A device the broker lets in: its certificate is in the trust bundle, its identity (the
/// certificate's CN) is its client id, and it may publish to exactly these topics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TrustedDevice {
    /// The thing the certificate is attached to.
    pub thing: String,
    /// IoT's certificate id.
    pub certificate_id: String,
    /// The broker identity (certificate CN), which is also its forced client id.
    pub identity: String,
    /// Topics it may publish to.
    pub publish_topics: Vec<String>,
    /// Topics it may subscribe to (its event-rule feedback topic, when it has one).
    #[serde(default)]
    pub read_topics: Vec<String>,
    /// The certificate (PEM), one entry of the trust bundle.
    #[serde(skip)]
    pub pem: String,
}

/// The files of one broker under `.deployer/local/`.
#[derive(Debug, Clone)]
pub struct BrokerFiles {
    /// mosquitto.conf.
    pub config: PathBuf,
    /// The ACL file.
    pub acl: PathBuf,
    /// The trust bundle (`cafile`): the local CA plus every trusted device certificate.
    pub trust_bundle: PathBuf,
    /// The broker's log.
    pub log: PathBuf,
    /// Its persistence database (sessions, subscriptions, queued QoS 1 messages).
    pub persistence: PathBuf,
}

impl BrokerFiles {
    /// The broker's paths in `dir`.
    pub fn in_dir(dir: &Path) -> BrokerFiles {
        BrokerFiles {
            config: dir.join("mosquitto.conf"),
            acl: dir.join("mosquitto.acl"),
            trust_bundle: dir.join("trusted-certificates.pem"),
            log: dir.join("mosquitto.log"),
            persistence: dir.join("mosquitto.db"),
        }
    }
}

/// The ACL: the rule engine reads what the deployed rule selects, each device writes its
/// policies' topics; everything else is denied (mosquitto denies what no line grants).
pub fn render_acl(
    twin: &str,
    devices: &[TrustedDevice],
    rule_topic_filter: Option<&str>,
) -> String {
    let mut out = String::from(
        "# Written by `deployer local up` from the IoT policies registered in the emulator.\n\
         # Anything not granted here is denied.\n",
    );
    out.push_str(&format!("\nuser {RULE_ENGINE_IDENTITY}\n"));
    if let Some(filter) = rule_topic_filter {
        out.push_str(&format!("topic read {filter}\n"));
    }
    // The IoT data-plane shim publishes for the twin's functions (feedback to devices): the
    // twin's own topics only, as the shim itself checks before publishing.
    out.push_str(&format!(
        "\nuser {IOT_DATA_IDENTITY}\ntopic write {twin}/#\n"
    ));
    for d in devices {
        out.push_str(&format!("\nuser {}\n", d.identity));
        for t in &d.publish_topics {
            out.push_str(&format!("topic write {t}\n"));
        }
        for t in &d.read_topics {
            out.push_str(&format!("topic read {t}\n"));
        }
    }
    out
}

/// Where IoT Hub's direct method calls to a device are published (`<this><method>/?$rid=<rid>`).
pub const HUB_METHOD_REQUESTS: &str = "$iothub/methods/POST/";

/// The hub broker's ACL lines for direct methods, appended to [`render_acl`]'s: the twin's
/// service identity calls methods and reads the answers; each device reads only the calls whose
/// request id starts with its own id (its client id, `%c`: the broker forces the certificate's
/// CN) and answers only those. mosquitto checks `read` on each delivered message (a
/// subscription to `$iothub/methods/POST/#` is granted, what it delivers is filtered), so a
/// device never sees another's calls although all subscribe to the same filter.
pub fn render_direct_method_acl() -> String {
    format!(
        "\n# IoT Hub direct methods: request ids are `<device>/<n>`.\n\
         user {IOT_DATA_IDENTITY}\n\
         topic write {HUB_METHOD_REQUESTS}#\n\
         topic read $iothub/methods/res/#\n\
         \n\
         pattern read {HUB_METHOD_REQUESTS}+/?$rid=%c/#\n\
         pattern write $iothub/methods/res/+/?$rid=%c/#\n"
    )
}

/// The trust bundle: the local CA (it signs the rule engine's identity) and every trusted
/// device's self-signed certificate, each of which verifies against itself.
pub fn render_trust_bundle(ca_pem: &str, devices: &[TrustedDevice]) -> String {
    let mut out = ca_pem.trim_end().to_string();
    out.push('\n');
    for d in devices {
        out.push_str(d.pem.trim_end());
        out.push('\n');
    }
    out
}

/// mosquitto.conf: one TLS 1.2+ listener on 127.0.0.1:`port` that requires a client
/// certificate from the bundle, names each client by its certificate's CN and forces that as
/// its client id; persistence on, so the rule engine's session and the QoS 1 messages queued
/// for it survive a restart of the broker. Debug logging is on because mosquitto 2.0 reports a
/// publish refused by the ACL ("Denied PUBLISH") only at that level, and `local status` counts
/// them (about 300 bytes of log per message).
pub fn render_config(files: &BrokerFiles, pki: &Pki, port: u16, as_root: bool) -> String {
    let user = if as_root {
        // As root mosquitto would switch to the `mosquitto` user, which cannot read 0600 keys.
        "user root\n"
    } else {
        ""
    };
    format!(
        "# Written by `deployer local up`; rewritten on every change of what is deployed.\n\
         {user}per_listener_settings false\n\
         persistence true\n\
         persistence_location {db_dir}/\n\
         persistence_file {db_file}\n\
         autosave_on_changes false\n\
         autosave_interval 1\n\
         max_queued_messages 100000\n\
         log_dest stderr\n\
         log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
         log_type debug\n\
         connection_messages true\n\
         allow_anonymous false\n\
         acl_file {acl}\n\
         listener {port} 127.0.0.1\n\
         cafile {bundle}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         tls_version tlsv1.2\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         use_username_as_clientid true\n",
        // mosquitto saves the database when it exits (SIGTERM from `local down` or a restart)
        // and, with these settings, also every second, so a crash loses at most about a
        // second of queued messages. It joins location and file without a separator.
        db_dir = files
            .persistence
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .display(),
        db_file = files
            .persistence
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "mosquitto.db".into()),
        acl = files.acl.display(),
        bundle = files.trust_bundle.display(),
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
    )
}

/// The mosquitto binary: `$MOSQUITTO_BIN`, else the usual install paths, else `$PATH`.
pub fn mosquitto_binary() -> Result<PathBuf, LocalError> {
    if let Some(p) = std::env::var_os("MOSQUITTO_BIN") {
        return Ok(PathBuf::from(p));
    }
    let mut candidates: Vec<PathBuf> =
        ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
            .iter()
            .map(PathBuf::from)
            .collect();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates
        .into_iter()
        .map(|d| d.join("mosquitto"))
        .find(|p| p.is_file())
        .ok_or(LocalError::MosquittoMissing)
}

/// Whether `pid` is a live mosquitto running `config` (a reused pid or a zombie is not).
pub fn is_running(pid: u32, config: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let config = config.as_os_str().as_encoded_bytes();
    args.first().is_some_and(|a| a.ends_with(b"mosquitto")) && args.contains(&config)
}

/// Whether the process `pid` (a child this process just started) has ended: gone, or a zombie.
/// Unlike [`is_running`] it does not look at the command line, which is still the parent's
/// between fork and exec.
fn has_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Starts mosquitto with `files.config` in its own process group (Ctrl-C in the terminal does
/// not reach it), logging to `files.log`; returns its pid.
pub fn spawn(files: &BrokerFiles) -> Result<u32, LocalError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| LocalError::Io {
            path: path.clone(),
            message: e.to_string(),
        }
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&files.log)
        .map_err(io(&files.log))?;
    let log_err = log.try_clone().map_err(io(&files.log))?;
    let bin = mosquitto_binary()?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-c")
        .arg(&files.config)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| LocalError::Io {
        path: bin.clone(),
        message: format!("cannot start mosquitto: {e}"),
    })?;
    let pid = child.id();
    // Reaps it if it ends while this process lives (e.g. `local down` in the same shell), so
    // a stopped broker does not linger as a zombie; when this process exits, init adopts it.
    std::thread::spawn(move || child.wait());
    Ok(pid)
}

/// The last lines of the broker's log (for error messages).
pub fn log_tail(files: &BrokerFiles) -> String {
    let text = std::fs::read_to_string(&files.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Polls with backoff until the broker completes a TLS handshake and an MQTT CONNECT as the
/// rule engine, the process ends, or `within` passes.
pub fn wait_ready(
    pid: u32,
    port: u16,
    files: &BrokerFiles,
    pki: &Pki,
    within: Duration,
) -> Result<(), LocalError> {
    let tls = client_tls(pki)?;
    let deadline = Instant::now() + within;
    let mut delay = Duration::from_millis(10);
    loop {
        let last = match probe(&tls, port) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if has_exited(pid) {
            return Err(LocalError::BrokerExited {
                log: files.log.clone(),
                tail: log_tail(files),
            });
        }
        if Instant::now() >= deadline {
            return Err(LocalError::BrokerNotReady {
                port,
                within,
                last,
                tail: log_tail(files),
            });
        }
        std::thread::sleep(delay); // poll backoff
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// The rule engine's client TLS config: trusts the local CA, presents the rule engine identity.
pub(crate) fn client_tls(pki: &Pki) -> Result<Arc<rustls::ClientConfig>, LocalError> {
    identity_tls(pki, &pki.rule_engine_cert, &pki.rule_engine_key)
}

/// A client TLS config that trusts the local CA and presents the certificate `cert` with its key
/// `key` (one of the identities the local CA signs, see [`Pki`]).
pub fn identity_tls(
    pki: &Pki,
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ClientConfig>, LocalError> {
    let bad = |path: &Path, e: String| LocalError::Io {
        path: path.to_path_buf(),
        message: e,
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in
        CertificateDer::pem_file_iter(&pki.ca_cert).map_err(|e| bad(&pki.ca_cert, e.to_string()))?
    {
        roots
            .add(c.map_err(|e| bad(&pki.ca_cert, e.to_string()))?)
            .map_err(|e| bad(&pki.ca_cert, e.to_string()))?;
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, e.to_string()))?;
    // The error names the file, never the key.
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| bad(key, format!("not a usable private key: {e}")))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| LocalError::Certificate(e.to_string()))?
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .map_err(|e| LocalError::Certificate(e.to_string()))?;
    Ok(Arc::new(config))
}

/// One TLS handshake plus MQTT 3.1.1 CONNECT/CONNACK/DISCONNECT as the rule engine. The broker
/// forces the client id to the certificate's CN, so this is the rule bridge's own session: it
/// connects with clean session 0, which resumes that session instead of discarding it (and
/// what the broker sends it before DISCONNECT stays unacknowledged, so is resent to the bridge).
fn probe(tls: &Arc<rustls::ClientConfig>, port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut sock =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(tls.clone(), name).map_err(|e| e.to_string())?;
    let mut stream = rustls::Stream::new(&mut conn, &mut sock);
    let id = b"deployer-local-probe";
    let mut connect = vec![0x10, (12 + id.len()) as u8];
    connect.extend_from_slice(&[
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,
        0x00,
        0,
        10,
        0,
        id.len() as u8,
    ]);
    connect.extend_from_slice(id);
    stream.write_all(&connect).map_err(|e| e.to_string())?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack).map_err(|e| e.to_string())?;
    // Byte 2 is the session-present flag: set when the rule bridge's session is resumed.
    if connack[..2] != [0x20, 0x02] || connack[2] > 1 || connack[3] != 0 {
        return Err(format!("unexpected CONNACK {connack:02x?}"));
    }
    let _ = stream.write_all(&[0xe0, 0x00]);
    Ok(())
}

/// Sends SIGTERM and waits (polling, with a deadline) until the broker is gone; SIGKILL if it
/// does not end in time. A broker that is not running is fine.
pub fn stop(pid: u32, config: &Path) -> Result<(), LocalError> {
    for (signal, within) in [
        (libc::SIGTERM, Duration::from_secs(10)),
        (libc::SIGKILL, Duration::from_secs(5)),
    ] {
        if !is_running(pid, config) {
            return Ok(());
        }
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            return Ok(());
        };
        // SAFETY: kill(2) with a pid checked above to be our mosquitto.
        unsafe { libc::kill(raw, signal) };
        let deadline = Instant::now() + within;
        let mut delay = Duration::from_millis(5);
        while is_running(pid, config) && Instant::now() < deadline {
            std::thread::sleep(delay); // poll backoff
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }
    if is_running(pid, config) {
        return Err(LocalError::StopFailed { pid });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(identity: &str, topic: &str) -> TrustedDevice {
        TrustedDevice {
            thing: identity.into(),
            certificate_id: "id".into(),
            identity: identity.into(),
            publish_topics: vec![topic.into()],
            read_topics: Vec::new(),
            pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        }
    }

    #[test]
    fn the_acl_grants_each_identity_its_topics_and_the_rule_engine_its_filter() {
        let acl = render_acl(
            "t",
            &[
                device("t--a", "t/iot-data/a"),
                device("t--b", "t/iot-data/b"),
            ],
            Some("t/iot-data/+"),
        );
        assert!(acl.contains(&format!(
            "user {RULE_ENGINE_IDENTITY}\ntopic read t/iot-data/+\n"
        )));
        assert!(
            acl.contains("user t--a\ntopic write t/iot-data/a\n"),
            "{acl}"
        );
        assert!(
            acl.contains("user t--b\ntopic write t/iot-data/b\n"),
            "{acl}"
        );
        assert!(
            acl.contains(&format!("user {IOT_DATA_IDENTITY}\ntopic write t/#\n")),
            "{acl}"
        );
        assert!(
            !acl.contains("readwrite") && !acl.contains("pattern"),
            "{acl}"
        );
    }

    #[test]
    fn a_feedback_target_reads_only_its_own_feedback_topic() {
        let mut a = device("t--a", "t/iot-data/a");
        a.read_topics = vec!["t/feedback/a".into()];
        let acl = render_acl("t", &[a, device("t--b", "t/iot-data/b")], None);
        assert!(
            acl.contains("user t--a\ntopic write t/iot-data/a\ntopic read t/feedback/a\n"),
            "{acl}"
        );
        assert_eq!(acl.matches("topic read").count(), 1, "{acl}");
    }

    #[test]
    fn devices_read_and_answer_only_their_own_direct_method_calls() {
        let acl = render_direct_method_acl();
        assert!(
            acl.contains(&format!(
                "user {IOT_DATA_IDENTITY}\ntopic write $iothub/methods/POST/#\ntopic read $iothub/methods/res/#\n"
            )),
            "{acl}"
        );
        assert!(
            acl.contains("pattern read $iothub/methods/POST/+/?$rid=%c/#\n"),
            "{acl}"
        );
        assert!(
            acl.contains("pattern write $iothub/methods/res/+/?$rid=%c/#\n"),
            "{acl}"
        );
        assert!(!acl.contains("readwrite"), "{acl}");
    }

    #[test]
    fn the_config_requires_certificates_and_names_clients_by_them() {
        let dir = Path::new("/twin/.deployer/local");
        let text = render_config(&BrokerFiles::in_dir(dir), &Pki::in_dir(dir), 4242, false);
        for line in [
            "listener 4242 127.0.0.1",
            "require_certificate true",
            "use_identity_as_username true",
            "use_username_as_clientid true",
            "tls_version tlsv1.2",
            "allow_anonymous false",
            "cafile /twin/.deployer/local/trusted-certificates.pem",
            "persistence true",
            "persistence_location /twin/.deployer/local/",
            "persistence_file mosquitto.db",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("user root"));
    }

    #[test]
    fn the_bundle_holds_the_ca_and_each_device_certificate() {
        let b = render_trust_bundle("CA\n", &[device("t--a", "x"), device("t--b", "y")]);
        assert_eq!(b.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(b.starts_with("CA\n"));
    }
}
