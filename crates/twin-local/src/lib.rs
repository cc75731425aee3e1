//! The local data plane: under the emulator, what the emulator cannot run runs on this machine,
//! configured from what `deploy` registered (read back from the emulator, not from the config).
//! L1: a mosquitto broker standing in for IoT Core, with mutual TLS that trusts exactly the
//! registered ACTIVE device certificates and an ACL derived from their IoT policies; the deployed
//! topic rule applied by a bridge that invokes its Lambda action through the Lambda Invoke API
//! ([`rule`]). L2/L3: the deployed `bootstrap`s run for real under cargo-lambda's runtime API,
//! behind a Lambda API router, their logs shipped to the emulator's CloudWatch Logs ([`runner`]);
//! the hot reader's HTTP API served locally ([`http_api`]); the IoT data plane's `Publish` for the
//! functions' feedback to devices ([`iot_data`]).

pub mod azure_host;
pub mod azure_identity;
pub mod azure_plane;
pub mod azure_storage;
pub mod broker;
pub mod cloudwatch;
pub mod functions;
pub mod http_api;
pub mod hub_bridge;
pub mod hub_methods;
mod invoke;
pub mod iot_data;
mod local_http;
pub mod pki;
pub mod plane;
pub mod policy;
pub mod registered;
pub mod router;
pub mod rule;
pub mod rule_sql;
pub mod runner;
pub mod runtime;
pub mod services;
pub mod simulator;
pub mod x509;

pub use invoke::BadRouterUrl;
pub use plane::{LocalPlane, Refused, RunningBroker, Status, UpAction, UpReport};

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
    #[error("process {pid} (mosquitto or the local runner) did not stop after SIGTERM and SIGKILL; end it by hand")]
    StopFailed {
        /// Its pid.
        pid: u32,
    },
    /// No free port on 127.0.0.1.
    #[error("no free port on 127.0.0.1: {0}")]
    NoPort(String),
    /// A function's code could not be fetched or is not what was deployed.
    #[error("function {function}: {message}")]
    Code {
        /// The function.
        function: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// The deployed twin has no functions to run.
    #[error("the emulator has no functions of twin `{twin}` (named `{twin}-...` and tagged twin={twin}): run `deployer deploy` first")]
    NoFunctions {
        /// The twin.
        twin: String,
    },
    /// cargo-lambda is not installed.
    #[error("cargo-lambda is not installed (looked in $TWIN_VENV/bin, .venv/bin of the current directory and the deployer's, and PATH): run scripts/setup.sh")]
    CargoLambdaMissing,
    /// A process of the runtime ended while starting or running.
    #[error("{what} exited; its log {} ends with:\n{tail}", log.display())]
    RuntimeExited {
        /// Which process and how it ended.
        what: String,
        /// Its log.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// cargo-lambda did not accept connections in time.
    #[error("cargo-lambda's runtime API on 127.0.0.1:{port} did not accept connections within {within:?} (last attempt: {last}); its log ends with:\n{tail}")]
    RuntimeNotReady {
        /// Its port.
        port: u16,
        /// How long we waited.
        within: Duration,
        /// The last probe's error.
        last: String,
        /// The log's last lines.
        tail: String,
    },
    /// The Lambda API router cannot run.
    #[error("the local Lambda router: {0}")]
    Router(String),
    /// An extra service of the runner failed.
    #[error("local service {name}: {message}")]
    Service {
        /// The service.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The detached runner exited before it was ready.
    #[error("the local runner exited while starting ({status}); its log {} ends with:\n{tail}", log.display())]
    RunnerExited {
        /// How it ended.
        status: String,
        /// Its log.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// The detached runner was not ready in time.
    #[error("the local runner (pid {pid}) was not ready within {within:?}; its log {} ends with:\n{tail}", log.display())]
    RunnerNotReady {
        /// Its pid.
        pid: u32,
        /// How long we waited.
        within: Duration,
        /// Its log.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
}
