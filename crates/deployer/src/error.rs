//! What a command can fail with, and the exit code each failure maps to (SPEC §4).

use twin_config::Diagnostics;
use twin_engine::{CloudError, EngineError};

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line was wrong.
    #[error("{0}")]
    Usage(String),
    /// The config files have problems (all of them listed).
    #[error("{0}")]
    Config(Diagnostics),
    /// A cloud operation failed after retries, or the state file is unusable.
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// A single cloud call (function commands) failed.
    #[error("{0}")]
    Cloud(#[from] CloudError),
    /// A local file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The local data plane failed.
    #[error("{0}")]
    Local(#[from] twin_local::LocalError),
    /// verify could not follow the readings.
    #[error("{0}")]
    Verify(#[from] twin_verify::VerifyError),
    /// The command ran and printed its outcome (its JSON document too), which is a failure:
    /// `verify` when a reading did not arrive. Only this line goes to stderr.
    #[error("{0}")]
    Reported(String),
}

impl CliError {
    /// 2 for bad usage or config, 1 for everything that failed in the cloud or on disk.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) | CliError::Config(_) => 2,
            CliError::Engine(_)
            | CliError::Cloud(_)
            | CliError::Io(_)
            | CliError::Local(_)
            | CliError::Verify(_)
            | CliError::Reported(_) => 1,
        }
    }
}
