//! The local data plane: under the emulator, what the emulator cannot run runs on this machine,
//! configured from what `deploy` registered (read back from the emulator, not from the config).
//! So far L1: a mosquitto broker standing in for IoT Core, with mutual TLS that trusts exactly
//! the registered ACTIVE device certificates and an ACL derived from their IoT policies; the
//! deployed topic rule applied by a bridge that invokes its Lambda action through a local
//! Lambda Invoke API ([`rule`]); and the hot reader's HTTP API served locally ([`http_api`]).

pub mod broker;
pub mod http_api;
mod invoke;
pub mod pki;
pub mod plane;
pub mod policy;
pub mod registered;
pub mod rule;
pub mod rule_sql;
pub mod simulator;
pub mod x509;

pub use invoke::BadRouterUrl;
pub use plane::{LocalPlane, Refused, Status, UpAction, UpReport};

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong running the local data plane.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// The clients talk to real AWS: the local data plane only stands in for an emulator.
    #[error("the local data plane runs only against an emulator: AWS_ENDPOINT_URL is not set, so this would configure a broker from the real IoT Core while devices keep talking to AWS")]
    NotEmulator,
    /// A call to the emulator failed.
    #[error("reading the deployed twin back from the emulator failed ({call}): {message}")]
    Emulator {
        /// The API call.
        call: &'static str,
        /// What the emulator said.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The broker's certificates could not be made.
    #[error("cannot make the local broker's certificates: {0}")]
    Certificate(String),
    /// mosquitto is not installed.
    #[error("mosquitto is not installed (looked in /usr/sbin, /usr/bin, /usr/local and PATH; MOSQUITTO_BIN overrides): run scripts/setup-mosquitto.sh")]
    MosquittoMissing,
    /// mosquitto ended while starting.
    #[error("mosquitto exited while starting; its log {} ends with:\n{tail}", log.display())]
    BrokerExited {
        /// The log file.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// mosquitto did not accept a TLS + MQTT connection in time.
    #[error("mosquitto on 127.0.0.1:{port} did not accept a TLS connection within {within:?} (last attempt: {last}); log:\n{tail}")]
    BrokerNotReady {
        /// Its port.
        port: u16,
        /// How long we waited.
        within: Duration,
        /// The last probe's error.
        last: String,
        /// The log's last lines.
        tail: String,
    },
    /// mosquitto did not end after SIGTERM and SIGKILL.
    #[error("mosquitto (pid {pid}) did not stop")]
    StopFailed {
        /// Its pid.
        pid: u32,
    },
    /// No free port on 127.0.0.1.
    #[error("no free port on 127.0.0.1: {0}")]
    NoPort(String),
}
