//! The IoT device simulator (SPEC §7): publishes a twin's telemetry over MQTT with mutual TLS,
//! one message at a time (`send`, REPL) or as a multi-device load test (`load`).
//!
//! The binary (`simulator`) only parses arguments, calls into these modules and maps
//! [`SimError`] to exit codes.

#![warn(missing_docs)]

pub mod backoff;
pub mod cli;
pub mod config;
pub mod direct_method;
pub mod failure;
pub mod load;
pub mod payloads;
pub mod publisher;
pub mod repl;
pub mod report;
pub mod send;
pub mod stats;
pub mod tls;

/// Everything that can end a simulator command, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The simulator config is missing or wrong.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The payloads file is missing or wrong.
    #[error(transparent)]
    Payloads(#[from] payloads::PayloadError),
    /// Certificates or keys are missing or wrong.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The command line asks for something the files cannot give.
    #[error("{0}")]
    Usage(String),
    /// A connection failed or a message was not acknowledged.
    #[error(transparent)]
    Link(#[from] failure::LinkFailure),
    /// A load run finished but not every message was acknowledged.
    #[error("{failed} of {generated} messages were not acknowledged")]
    Incomplete {
        /// Messages not acknowledged (overflow included).
        failed: u64,
        /// Messages generated.
        generated: u64,
    },
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

impl SimError {
    /// 2 for bad usage or config, 1 for connection and publish failures (SPEC §4's convention).
    pub fn exit_code(&self) -> i32 {
        match self {
            SimError::Config(_) | SimError::Payloads(_) | SimError::Tls(_) | SimError::Usage(_) => {
                2
            }
            SimError::Link(_) | SimError::Incomplete { .. } | SimError::Output(_) => 1,
        }
    }
}
