//! Test fixtures: a throwaway CA with server and device certificates (openssl CLI), a mosquitto
//! broker on a free loopback port that requires client certificates, a counting subscriber, and
//! a twin directory laid out the way `deployer deploy` writes it.
//!
//! Missing tools make the tests fail loudly, never skip: run scripts/setup-mosquitto.sh.
#![allow(dead_code)]

use std::collections::HashSet;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::Value;
use twin_simulator::tls::{DeviceCredentials, TlsContext};

/// The topic prefix the fixtures' twin uses.
pub const TOPIC: &str = "twin/iot-data";

const SETUP_HINT: &str = "run scripts/setup-mosquitto.sh (installs mosquitto and openssl)";

/// Runs a command, panicking with its output when it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}; {SETUP_HINT}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// Key formats a device certificate can come with.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    /// `BEGIN RSA PRIVATE KEY`, as AWS IoT returns.
    RsaPkcs1,
    /// `BEGIN PRIVATE KEY` (RSA inside).
    RsaPkcs8,
    /// `BEGIN EC PRIVATE KEY` (P-256).
    EcSec1,
}

/// A certificate authority in a directory of its own.
pub struct Ca {
    pub dir: PathBuf,
    pub cert: PathBuf,
    key: PathBuf,
}

impl Ca {
    /// Makes a new self-signed CA (EC P-256: quick to generate, as a throwaway should be).
    pub fn new(dir: &Path, name: &str) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        Self {
            dir: dir.to_path_buf(),
            cert: dir.join("ca.pem"),
            key: dir.join("ca.key"),
        }
    }

    /// Issues a certificate for `key` (an existing key file) into `cert`.
    fn sign(&self, key: &Path, cert: &Path, cn: &str, ext: &str) {
        let work = cert.parent().unwrap();
        let csr = work.join(format!("{cn}.csr"));
        let extfile = work.join(format!("{cn}.ext"));
        std::fs::write(&extfile, ext).unwrap();
        openssl(
            work,
            &[
                "req",
                "-new",
                "-key",
                key.to_str().unwrap(),
                "-out",
                csr.to_str().unwrap(),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            work,
            &[
                "x509",
                "-req",
                "-in",
                csr.to_str().unwrap(),
                "-CA",
                self.cert.to_str().unwrap(),
                "-CAkey",
                self.key.to_str().unwrap(),
                "-CAcreateserial",
                "-out",
                cert.to_str().unwrap(),
                "-days",
                "2",
                "-extfile",
                extfile.to_str().unwrap(),
            ],
        );
        let _ = std::fs::remove_file(csr);
        let _ = std::fs::remove_file(extfile);
    }

    /// A server certificate for 127.0.0.1 / localhost; returns (cert, key).
    pub fn server_cert(&self) -> (PathBuf, PathBuf) {
        let key = self.dir.join("server.key");
        let cert = self.dir.join("server.pem");
        openssl(
            &self.dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "server.key",
            ],
        );
        self.sign(
            &key,
            &cert,
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n\
             basicConstraints=CA:FALSE\n",
        );
        (cert, key)
    }

    /// Writes `<auth_dir>/<device>/certificate.pem.crt` and `private.pem.key`.
    pub fn device_cert(&self, auth_dir: &Path, device: &str, kind: KeyKind) -> DeviceCredentials {
        let creds = DeviceCredentials::locate(auth_dir, device);
        let dir = creds.certificate.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let key = creds.private_key.to_str().unwrap().to_string();
        match kind {
            KeyKind::RsaPkcs1 => openssl(&dir, &["genrsa", "-traditional", "-out", &key, "2048"]),
            KeyKind::RsaPkcs8 => openssl(
                &dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    &key,
                ],
            ),
            KeyKind::EcSec1 => openssl(
                &dir,
                &[
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                    &key,
                ],
            ),
        }
        self.sign(
            &creds.private_key,
            &creds.certificate,
            device,
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        );
        creds
    }
}

/// A mosquitto broker on 127.0.0.1 with TLS and required client certificates.
pub struct Broker {
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

fn mosquitto_binary() -> PathBuf {
    for candidate in [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("mosquitto is not installed: {SETUP_HINT}");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

impl Broker {
    /// Starts a broker in `dir` trusting `ca` for client certificates; `persistent` keeps
    /// sessions and queued messages across a restart.
    pub fn start(dir: &Path, ca: &Ca, persistent: bool) -> Self {
        Self::start_with(dir, ca, persistent, None)
    }

    /// [`Broker::start`] with an ACL file (`acl_file`), so that what a client may publish
    /// depends on its username.
    pub fn start_with(dir: &Path, ca: &Ca, persistent: bool, acl: Option<&str>) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let acl_line = match acl {
            Some(text) => {
                let path = dir.join("acl");
                std::fs::write(&path, text).unwrap();
                format!("acl_file {}\n", path.display())
            }
            None => String::new(),
        };
        let (cert, key) = ca.server_cert();
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        let log = dir.join("mosquitto.log");
        let persistence = if persistent {
            format!(
                "persistence true\npersistence_location {}/\nautosave_interval 0\n",
                dir.display()
            )
        } else {
            "persistence false\n".to_string()
        };
        // `user root`: as root mosquitto would drop to the `mosquitto` user, which cannot read
        // the test's keys (EMULATORS.md).
        let text = format!(
            "user root\n{persistence}max_queued_messages 0\nmax_inflight_messages 100\n\
             log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n\
             allow_anonymous true\nset_tcp_nodelay true\n{acl_line}\
             listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
             require_certificate true\n",
            ca.cert.display(),
            cert.display(),
            key.display()
        );
        std::fs::write(&config, text).unwrap();
        let mut broker = Self {
            port,
            config,
            log,
            child: None,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start mosquitto: {e}; {SETUP_HINT}"));
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(15));
    }

    /// Polls the port with backoff until mosquitto accepts connections.
    fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut delay = Duration::from_millis(5);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "mosquitto exited ({status}) during start: {}",
                        self.log_text()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto not accepting on port {} after {within:?}: {}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the broker gracefully (SIGTERM: it saves persistent state) and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut delay = Duration::from_millis(5);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                _ if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                _ => {
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_millis(100));
                }
            }
        }
    }

    /// Stops and starts the broker on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A twin directory as `deploy` lays it out: `.deployer/simulator/{config,payloads}.json` and
/// `devices/<id>/` credentials.
pub struct Twin {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub ca: Ca,
    pub config: PathBuf,
    pub payloads: PathBuf,
    pub devices_dir: PathBuf,
}

impl Twin {
    /// A twin with a CA and config pointing at `127.0.0.1:port` (port set later by `point_at`).
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let ca = Ca::new(&root.join("ca"), "Twin Test CA");
        let devices_dir = root.join("devices");
        std::fs::create_dir_all(&devices_dir).unwrap();
        std::fs::copy(&ca.cert, devices_dir.join("RootCA.pem")).unwrap();
        let sim = root.join(".deployer/simulator");
        std::fs::create_dir_all(&sim).unwrap();
        Self {
            config: sim.join("config.json"),
            payloads: sim.join("payloads.json"),
            _tmp: tmp,
            root,
            ca,
            devices_dir,
        }
    }

    /// Writes the simulator config for a broker on 127.0.0.1:`port`.
    pub fn point_at(&self, port: u16) {
        let config = serde_json::json!({
            "endpoint": "127.0.0.1",
            "port": port,
            "topic": TOPIC,
            "payload_file_path": "payloads.json",
            "auth_files_path": "../../devices",
            "root_ca_cert_path": "../../devices/RootCA.pem",
        });
        std::fs::write(&self.config, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    /// Writes the simulator's IoT Hub profile (as `deploy` writes it for Azure) for a broker on
    /// 127.0.0.1:`port` that plays the hub `host_name`.
    pub fn point_at_iot_hub(&self, port: u16, host_name: &str) {
        let config = serde_json::json!({
            "provider": "azure",
            "endpoint": "127.0.0.1",
            "port": port,
            "topic": "devices/{iotDeviceId}/messages/events/$.ct=application%2Fjson&$.ce=utf-8",
            "username": format!("{host_name}/{{iotDeviceId}}/?api-version=2021-04-12"),
            "mqtt_version": "3.1.1",
            "payload_file_path": "payloads.json",
            "auth_files_path": "../../devices",
            "root_ca_cert_path": "../../devices/RootCA.pem",
            "client_id_prefix": "",
        });
        std::fs::write(&self.config, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
    }

    /// Writes payloads.json.
    pub fn write_payloads(&self, payloads: &Value) {
        std::fs::write(&self.payloads, serde_json::to_vec_pretty(payloads).unwrap()).unwrap();
    }

    /// Credentials for `device` under the twin's devices directory.
    pub fn device(&self, device: &str, kind: KeyKind) -> DeviceCredentials {
        self.ca.device_cert(&self.devices_dir, device, kind)
    }

    /// Runs the simulator binary in the twin's root directory (it finds the default config).
    pub fn simulator(&self, args: &[&str]) -> Output {
        self.simulator_with_stdin(args, None)
    }

    /// Runs the simulator with `stdin` fed to it.
    pub fn simulator_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_simulator"))
            .current_dir(&self.root)
            .args(args)
            .env_remove("SIMULATOR_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the simulator binary");
        if let Some(mut pipe) = child.stdin.take() {
            if let Some(text) = stdin {
                pipe.write_all(text.as_bytes()).expect("write stdin");
            }
        }
        child.wait_with_output().expect("wait for the simulator")
    }
}

/// What a subscriber has received: (topic, payload) in arrival order.
#[derive(Default)]
struct Received {
    messages: Vec<(String, Value)>,
    subscribed: bool,
    connects: usize,
}

/// A QoS 1 subscriber to `<TOPIC>/#` with a persistent session, so it misses nothing across a
/// broker restart (the broker keeps its subscription and queued messages).
pub struct Subscriber {
    received: Arc<Mutex<Received>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Subscriber {
    /// Connects as `client_id` with `creds` and waits until the subscription is acknowledged.
    pub fn start(twin: &Twin, port: u16, creds: &DeviceCredentials) -> Self {
        Self::start_on(twin, port, creds, &format!("{TOPIC}/#"))
    }

    /// [`Subscriber::start`] on another topic filter.
    pub fn start_on(twin: &Twin, port: u16, creds: &DeviceCredentials, filter: &str) -> Self {
        let filter = filter.to_string();
        let tls = TlsContext::load(&twin.ca.cert, port)
            .expect("root CA")
            .client_config(creds)
            .expect("subscriber TLS config");
        let mut options = MqttOptions::new(creds.device_id.clone(), "127.0.0.1", port);
        options
            .set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)))
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(256 * 1024, 256 * 1024);
        let received = Arc::new(Mutex::new(Received::default()));
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sink = received.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("subscriber runtime");
            rt.block_on(async move {
                let (client, mut eventloop) = AsyncClient::new(options, 1000);
                let mut delay = Duration::from_millis(20);
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return,
                        event = eventloop.poll() => match event {
                            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                                delay = Duration::from_millis(20);
                                sink.lock().unwrap().connects += 1;
                                // Harmless when the session already has it.
                                let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                            }
                            Ok(Event::Incoming(Packet::SubAck(_))) => {
                                sink.lock().unwrap().subscribed = true;
                            }
                            Ok(Event::Incoming(Packet::Publish(p))) => {
                                let payload: Value = serde_json::from_slice(&p.payload)
                                    .unwrap_or(Value::Null);
                                sink.lock().unwrap().messages.push((p.topic.clone(), payload));
                            }
                            Ok(_) => {}
                            Err(_) => {
                                // Broker restarting: reconnect with backoff.
                                tokio::time::sleep(delay).await;
                                delay = (delay * 2).min(Duration::from_millis(500));
                            }
                        }
                    }
                }
            });
        });
        let sub = Self {
            received,
            stop: Some(stop_tx),
        };
        sub.wait_until(Duration::from_secs(15), "subscription", |r| r.subscribed);
        sub
    }

    fn wait_until(&self, within: Duration, what: &str, done: impl Fn(&Received) -> bool) {
        let deadline = Instant::now() + within;
        let mut delay = Duration::from_millis(5);
        loop {
            {
                let r = self.received.lock().unwrap();
                if done(&r) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "subscriber: no {what} within {within:?} ({} messages so far)",
                    r.messages.len()
                );
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// Waits until at least `n` messages arrived (any, duplicates included).
    pub fn wait_for_count(&self, n: usize, within: Duration) {
        self.wait_until(within, &format!("{n} messages"), |r| r.messages.len() >= n);
    }

    /// Waits until `n` distinct messages (by topic and time) arrived, then returns all received.
    pub fn wait_for_distinct(&self, n: usize, within: Duration) -> Vec<(String, Value)> {
        self.wait_until(within, &format!("{n} distinct messages"), |r| {
            distinct(&r.messages) >= n
        });
        self.messages()
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().messages.clone()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Messages counted once per (topic, time): a QoS 1 redelivery is the same message.
pub fn distinct(messages: &[(String, Value)]) -> usize {
    messages
        .iter()
        .map(|(topic, payload)| (topic.clone(), payload["time"].to_string()))
        .collect::<HashSet<_>>()
        .len()
}
