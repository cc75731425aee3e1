//! Progress events: the engine emits them, the CLI renders them.

use crate::resource::ResourceId;
use serde::Serialize;
use std::time::Duration;

/// What the engine does to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Make it.
    Create,
    /// Change its settings or code.
    Update,
    /// Leave it alone: it exists and matches.
    Unchanged,
    /// Remove it.
    Delete,
    /// Look it up (plan, info, and the first step of every deploy).
    Read,
}

impl Action {
    /// Present-tense verb for messages.
    pub fn verb(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "keep",
            Action::Delete => "delete",
            Action::Read => "read",
        }
    }
}

/// One step of progress.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The graph is known: how many resources this command looks at.
    Planned {
        /// Number of resources.
        total: usize,
    },
    /// An operation on a resource began.
    Started {
        /// Resource.
        id: ResourceId,
        /// `kind name`.
        label: String,
        /// What is being done.
        action: Action,
    },
    /// A call failed with a retryable error and will be tried again.
    Retrying {
        /// Resource.
        id: ResourceId,
        /// `kind name`.
        label: String,
        /// Attempt that failed (1-based).
        attempt: u32,
        /// Wait before the next one.
        #[serde(with = "millis")]
        delay: Duration,
        /// The error's code and message.
        error: String,
    },
    /// The operation finished.
    Finished {
        /// Resource.
        id: ResourceId,
        /// `kind name`.
        label: String,
        /// What was done.
        action: Action,
        /// How long it took.
        #[serde(with = "millis")]
        elapsed: Duration,
    },
    /// A resource was left alone on purpose (it is not this twin's).
    Skipped {
        /// Resource.
        id: ResourceId,
        /// `kind name`.
        label: String,
        /// Why.
        reason: String,
    },
    /// The operation failed for good.
    Failed {
        /// Resource.
        id: ResourceId,
        /// `kind name`.
        label: String,
        /// The error, with advice.
        error: String,
    },
}

mod millis {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// Receives progress events; implementations must be cheap (called on the executor's path).
pub trait EventSink: Send + Sync {
    /// Handles one event.
    fn emit(&self, event: Event);
}

/// Discards events.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _event: Event) {}
}

impl<F: Fn(Event) + Send + Sync> EventSink for F {
    fn emit(&self, event: Event) {
        self(event)
    }
}
