//! The deploy engine: it owns ordering, concurrency, retries, state and progress, so that a
//! provider only describes resources and knows how to create, read, update and delete one.
//!
//! A deploy is one pass over the dependency graph: each resource is read from the cloud, compared
//! with what the config asks for, and created or updated only when it is missing or drifted.

mod devices;
mod engine;
mod error;
mod events;
mod executor;
mod functions;
mod graph;
mod provider;
mod reference;
mod resource;
mod retry;
mod state;
pub mod wait;

pub use devices::{CertificateRotation, DeviceOps};
pub use engine::{Engine, EngineOptions, InfoRow, InfoStatus, Plan, PlanItem, Report};
pub use error::{CloudError, EngineError, ErrorClass, ResourceFailure};
pub use events::{Action, Event, EventSink, NoEvents};
pub use functions::{
    function_layer, function_names, FunctionOps, FunctionUpdate, Invocation, LogLine,
};
pub use provider::{Outputs, Provider, ResourceDriver};
pub use reference::{pending_text, OutputRef, RefTarget, REF_KEY};
pub use resource::{contains, Observed, Owner, ResourceId, ResourceSpec, TWIN_ID_TAG};
pub use retry::RetryPolicy;
pub use state::{RecordStatus, ResourceRecord, Scope, StateFile, StateStore};
