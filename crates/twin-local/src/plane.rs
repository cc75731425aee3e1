//! `local up | down | status`: the broker's life cycle and its state file
//! (`.deployer/local/broker.json`: pid, port, what it trusts, a fingerprint of its files).

use crate::broker::{self, BrokerFiles, TrustedDevice};
use crate::pki::{Pki, RULE_ENGINE_IDENTITY};
use crate::registered::{self, Registered};
use crate::{simulator, LocalError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use twin_aws::AwsClients;

/// How long `up` waits for the broker to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(15);

/// The root CA path written into the simulator config, relative to its directory.
const SIMULATOR_ROOT_CA: &str = "../local/ca.pem";

/// A registered certificate the broker does not trust, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The thing it is attached to.
    pub thing: String,
    /// IoT's certificate id.
    pub certificate_id: String,
    /// Why it is left out of the trust bundle.
    pub reason: String,
}

/// What `up` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpAction {
    /// The broker was not running and was started.
    Started,
    /// What is deployed changed: files rewritten and the broker restarted.
    Restarted,
    /// Running with the same files: nothing done.
    Unchanged,
}

/// The outcome of `up`.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    /// What was done.
    pub action: UpAction,
    /// The broker's pid.
    pub pid: u32,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Devices it lets in.
    pub trusted: Vec<TrustedDevice>,
    /// Registered certificates it refuses, with the reason.
    pub refused: Vec<Refused>,
    /// Policy grants it could not express (left out, so denied).
    pub unenforced: Vec<String>,
    /// Whether the simulator config now points at it.
    pub simulator_pointed: bool,
}

/// The state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BrokerState {
    pid: u32,
    port: u16,
    fingerprint: String,
    trusted: Vec<TrustedDevice>,
    refused: Vec<Refused>,
}

/// What `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Whether the broker process is alive.
    pub running: bool,
    /// Its pid (last known).
    pub pid: Option<u32>,
    /// Its port (last known).
    pub port: Option<u16>,
    /// Identities of the devices it trusts.
    pub trusted: Vec<String>,
    /// Certificates it refuses.
    pub refused: Vec<Refused>,
    /// Its log file.
    pub log: PathBuf,
    /// Publishes it refused (a device on a topic its policy does not allow).
    pub denied_publishes: u64,
}

/// The running broker, for the rule bridge.
#[derive(Debug, Clone)]
pub struct RunningBroker {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The devices it trusts.
    pub trusted: Vec<TrustedDevice>,
    /// A fingerprint of its files.
    pub fingerprint: String,
}

/// The local data plane of one twin directory.
#[derive(Debug, Clone)]
pub struct LocalPlane {
    twin: String,
    dir: PathBuf,
    simulator_config: PathBuf,
}

/// What the broker should trust, decided from what is registered.
fn decide(reg: &Registered) -> (Vec<TrustedDevice>, Vec<Refused>, Vec<String>) {
    let mut trusted: Vec<TrustedDevice> = Vec::new();
    let mut refused = Vec::new();
    let mut unenforced = Vec::new();
    for c in &reg.certificates {
        if trusted.iter().any(|t| t.certificate_id == c.certificate_id) {
            continue;
        }
        let refuse = |reason: String| Refused {
            thing: c.thing.clone(),
            certificate_id: c.certificate_id.clone(),
            reason,
        };
        unenforced.extend(c.grants.skipped.iter().map(|s| format!("{}: {s}", c.thing)));
        if c.status != "ACTIVE" {
            refused.push(refuse(format!("certificate status is {}", c.status)));
            continue;
        }
        let Some(cn) = c.common_name.clone() else {
            refused.push(refuse(
                "the certificate has no single subject CN to name the client by".into(),
            ));
            continue;
        };
        if cn == RULE_ENGINE_IDENTITY || trusted.iter().any(|t| t.identity == cn) {
            refused.push(refuse(format!(
                "its CN `{cn}` is already another identity's"
            )));
            continue;
        }
        if !c.grants.client_ids.contains(&cn) {
            refused.push(refuse(if c.grants.client_ids.is_empty() {
                "its policies allow no iot:Connect".to_string()
            } else {
                format!(
                    "its policies allow connecting as {} but the broker can only give it its certificate's CN `{cn}` as client id",
                    c.grants.client_ids.join(", ")
                )
            }));
            continue;
        }
        trusted.push(TrustedDevice {
            thing: c.thing.clone(),
            certificate_id: c.certificate_id.clone(),
            identity: cn,
            publish_topics: c.grants.publish_topics.clone(),
            read_topics: c.grants.read_topics.clone(),
            pem: c.pem.clone(),
        });
    }
    (trusted, refused, unenforced)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LocalError + '_ {
    move |e| LocalError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn free_port() -> Result<u16, LocalError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LocalError::NoPort(e.to_string()))
}

impl LocalPlane {
    /// The local plane of twin `twin` whose config directory is `config_dir`.
    pub fn new(config_dir: &Path, twin: &str) -> LocalPlane {
        let deployer = config_dir.join(".deployer");
        LocalPlane {
            twin: twin.to_string(),
            dir: deployer.join("local"),
            simulator_config: twin_aws::l1::simulator_config::simulator_dir(config_dir)
                .join("config.json"),
        }
    }

    /// `.deployer/local/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The broker's files.
    pub fn files(&self) -> BrokerFiles {
        BrokerFiles::in_dir(&self.dir)
    }

    /// The broker's certificates.
    pub fn pki(&self) -> Pki {
        Pki::in_dir(&self.dir)
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("broker.json")
    }

    fn saved_simulator(&self) -> PathBuf {
        self.dir.join("simulator-original.json")
    }

    fn state(&self) -> Option<BrokerState> {
        let text = std::fs::read_to_string(self.state_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn running_state(&self) -> Option<BrokerState> {
        self.state()
            .filter(|s| broker::is_running(s.pid, &self.files().config))
    }

    /// Reads the deployed L1 back from the emulator, (re)writes the broker's files, starts or
    /// restarts mosquitto if they changed, waits until it accepts TLS, and points the simulator
    /// config at it. Running with unchanged files, it does nothing.
    pub async fn up(&self, clients: &AwsClients) -> Result<UpReport, LocalError> {
        if !clients.endpoint_override {
            return Err(LocalError::NotEmulator);
        }
        let reg = registered::read(clients, &self.twin).await?;
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let pki = self.pki();
        pki.ensure()?;
        let files = self.files();
        let (trusted, refused, unenforced) = decide(&reg);
        let running = self.running_state();
        let previous_port = self.state().map(|s| s.port);
        let ca_pem = std::fs::read_to_string(&pki.ca_cert).map_err(io(&pki.ca_cert))?;
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        let render = |port: u16| {
            (
                broker::render_config(&files, &pki, port, as_root),
                broker::render_acl(&self.twin, &trusted, reg.rule_topic_filter.as_deref()),
                broker::render_trust_bundle(&ca_pem, &trusted),
            )
        };
        let fingerprint = |t: &(String, String, String)| {
            let mut h = Sha256::new();
            for part in [&t.0, &t.1, &t.2] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            hex::encode(h.finalize())
        };
        let (action, pid, port) = match running {
            Some(s) if s.fingerprint == fingerprint(&render(s.port)) => {
                (UpAction::Unchanged, s.pid, s.port)
            }
            other => {
                let action = if let Some(s) = &other {
                    broker::stop(s.pid, &files.config)?;
                    UpAction::Restarted
                } else {
                    UpAction::Started
                };
                // The same port as before where possible, so clients reconnect to it.
                let mut ports = vec![];
                if let Some(p) = previous_port {
                    ports.push(p);
                }
                ports.push(free_port()?);
                let mut last = None;
                let mut started = None;
                for port in ports {
                    let text = render(port);
                    self.write_files(&files, &text)?;
                    let pid = broker::spawn(&files)?;
                    match broker::wait_ready(pid, port, &files, &pki, READY_WITHIN) {
                        Ok(()) => {
                            started = Some((pid, port, fingerprint(&text)));
                            break;
                        }
                        Err(e) => {
                            let _ = broker::stop(pid, &files.config);
                            last = Some(e);
                        }
                    }
                }
                let Some((pid, port, fp)) = started else {
                    return Err(last.unwrap_or(LocalError::NoPort("no port tried".into())));
                };
                let state = BrokerState {
                    pid,
                    port,
                    fingerprint: fp,
                    trusted: trusted.clone(),
                    refused: refused.clone(),
                };
                let text = serde_json::to_string_pretty(&state).unwrap_or_default();
                let path = self.state_path();
                twin_aws::l1::certificate::write_private(&path, &text, 0o644).map_err(|e| {
                    LocalError::Io {
                        path: path.clone(),
                        message: e.message,
                    }
                })?;
                (action, pid, port)
            }
        };
        // Also when unchanged: a re-deploy rewrites the simulator config to AWS values.
        let simulator_pointed = simulator::point_at_local(
            &self.simulator_config,
            &self.saved_simulator(),
            port,
            SIMULATOR_ROOT_CA,
        )?;
        Ok(UpReport {
            action,
            pid,
            port,
            trusted,
            refused,
            unenforced,
            simulator_pointed,
        })
    }

    fn write_files(
        &self,
        files: &BrokerFiles,
        (config, acl, bundle): &(String, String, String),
    ) -> Result<(), LocalError> {
        for (path, text) in [
            (&files.trust_bundle, bundle),
            (&files.acl, acl),
            (&files.config, config),
        ] {
            twin_aws::l1::certificate::write_private(path, text, 0o644).map_err(|e| {
                LocalError::Io {
                    path: path.clone(),
                    message: e.message,
                }
            })?;
        }
        Ok(())
    }

    /// Stops the broker (if running) and restores the simulator config; returns whether a
    /// broker was stopped.
    pub fn down(&self) -> Result<bool, LocalError> {
        let stopped = match self.running_state() {
            Some(s) => {
                broker::stop(s.pid, &self.files().config)?;
                true
            }
            None => false,
        };
        simulator::restore(
            &self.simulator_config,
            &self.saved_simulator(),
            SIMULATOR_ROOT_CA,
        )?;
        match std::fs::remove_file(self.state_path()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&self.state_path())(e)),
        }
        Ok(stopped)
    }

    /// The running broker as the rule bridge needs it: its port, the devices it trusts and the
    /// fingerprint of its files (a change means the bridge must be started again).
    pub fn running_broker(&self) -> Option<RunningBroker> {
        self.running_state().map(|s| RunningBroker {
            port: s.port,
            trusted: s.trusted,
            fingerprint: s.fingerprint,
        })
    }

    /// How many publishes the broker refused because the device's policy does not allow the
    /// topic (its ACL), read from its log.
    pub fn denied_publishes(&self) -> u64 {
        std::fs::read(self.files().log)
            .map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .filter(|l| l.contains("Denied PUBLISH"))
                    .count() as u64
            })
            .unwrap_or(0)
    }

    /// Whether the broker runs, where, and whom it trusts.
    pub fn status(&self) -> Status {
        let state = self.state();
        let running = state
            .as_ref()
            .is_some_and(|s| broker::is_running(s.pid, &self.files().config));
        Status {
            running,
            pid: state.as_ref().map(|s| s.pid),
            port: state.as_ref().map(|s| s.port),
            trusted: state
                .as_ref()
                .map(|s| s.trusted.iter().map(|t| t.identity.clone()).collect())
                .unwrap_or_default(),
            refused: state.map(|s| s.refused).unwrap_or_default(),
            log: self.files().log,
            denied_publishes: self.denied_publishes(),
        }
    }
}
