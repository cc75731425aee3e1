//! Errors: a cloud call's classified error, and what the engine reports to the CLI.

use crate::events::Action;
use crate::resource::ResourceId;
use std::fmt;

/// How the engine treats a failed cloud call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The cloud asked us to slow down (429, `ThrottlingException`, `TooManyRequests`).
    Throttling,
    /// Server-side or network failure (5xx, timeouts, connection reset).
    Transient,
    /// A known propagation delay, e.g. Lambda's "role cannot be assumed" right after the role
    /// was created, or a dependency that is still being deleted.
    EventualConsistency,
    /// The resource does not exist.
    NotFound,
    /// Anything else: bad request, access denied, quota. Never retried.
    Fatal,
}

impl ErrorClass {
    /// Whether the engine retries a call that failed this way.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::Throttling | ErrorClass::Transient | ErrorClass::EventualConsistency
        )
    }
}

/// A classified error from one cloud call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudError {
    /// How to treat it.
    pub class: ErrorClass,
    /// The cloud's error code (e.g. `InvalidParameterValueException`), or `io` for transport.
    pub code: String,
    /// The cloud's message.
    pub message: String,
    /// What the user can do about it, when the driver knows.
    pub hint: Option<String>,
    /// How long the cloud asked us to wait before trying again (`Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl CloudError {
    /// A new error of the given class.
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        CloudError {
            class,
            code: code.into(),
            message: message.into(),
            hint: None,
            retry_after: None,
        }
    }

    /// A fatal error (never retried).
    pub fn fatal(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Fatal, code, message)
    }

    /// Records the wait the cloud asked for.
    pub fn with_retry_after(mut self, wait: Option<std::time::Duration>) -> Self {
        self.retry_after = wait;
        self
    }

    /// Adds advice for the user.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " ({h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CloudError {}

/// One resource whose operation failed after retries.
#[derive(Debug, Clone)]
pub struct ResourceFailure {
    /// Which resource.
    pub id: ResourceId,
    /// `kind name`.
    pub label: String,
    /// What the engine was doing.
    pub action: Action,
    /// How many calls were made.
    pub attempts: u32,
    /// The last error.
    pub error: CloudError,
}

impl fmt::Display for ResourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} failed after {} attempt{}: {}",
            self.action.verb(),
            self.label,
            self.attempts,
            if self.attempts == 1 { "" } else { "s" },
            self.error
        )?;
        if self.error.hint.is_none() {
            let advice = match self.error.class {
                ErrorClass::Throttling | ErrorClass::Transient | ErrorClass::EventualConsistency => {
                    "the cloud kept failing until the retry deadline; run the command again to resume"
                }
                ErrorClass::NotFound => "a resource this one needs is missing; run `deploy` to recreate it",
                ErrorClass::Fatal => "fix the cause above, then run the command again; finished resources are kept",
            };
            write!(f, "; {advice}")?;
        }
        Ok(())
    }
}

/// What an engine command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// One or more resources failed; the state file records everything that succeeded.
    #[error("{}", failures.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("\n"))]
    Resources {
        /// Each failure.
        failures: Vec<ResourceFailure>,
    },
    /// The user interrupted the command; the state file is consistent and the next run resumes.
    #[error("interrupted; the state file is saved and the next command resumes from it")]
    Cancelled,
    /// The state file cannot be read or written.
    #[error("state file {path}: {reason}")]
    State {
        /// The file.
        path: String,
        /// What went wrong, and what to do.
        reason: String,
    },
    /// The resources a provider described do not form a valid graph (a bug in that provider).
    #[error("invalid resource graph: {0}")]
    Graph(String),
    /// A resource needs one in another layer that is not deployed.
    #[error("{0}")]
    MissingDependency(String),
    /// The state was made in another cloud scope (account, region, subscription) than the
    /// credentials reach now; nothing was changed.
    #[error("{provider}: the state file {path} belongs to {recorded}, but the credentials reach {current}; nothing was changed. Use the credentials and region of {recorded}, or another config directory for {current}")]
    ScopeMismatch {
        /// Which provider.
        provider: String,
        /// The state file.
        path: String,
        /// The scope in the state.
        recorded: String,
        /// The scope of the credentials.
        current: String,
    },
    /// A provider could not describe or discover its resources.
    #[error("{provider}: {error}")]
    Provider {
        /// Which provider.
        provider: String,
        /// Its error.
        error: CloudError,
    },
}
