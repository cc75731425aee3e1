//! A twin's configuration: loading and validating its JSON files (SPEC §3), the typed model the
//! deployer works from, and the deterministic cloud resource names derived from it.
//!
//! ```no_run
//! let config = twin_config::load_dir(std::path::Path::new("."))
//!     .map_err(|problems| eprintln!("{problems}"));
//! ```

mod boundaries;
mod cost;
mod diagnostics;
pub mod events_env;
mod load;
mod model;
pub mod names;
mod providers;
mod schema;
mod spans;
mod validate;

pub use boundaries::{
    boundary_secret_name, cross_cloud_boundaries, Boundary, BoundarySide, Direction, Hop,
};
pub use diagnostics::{Diagnostic, Diagnostics};
pub use load::{load_dir, CONFIG_FILE, DEVICES_FILE, EVENTS_FILE, HIERARCHY_FILE, PROVIDERS_FILE};
pub use model::{
    ConstProperty, DataType, Device, ExpectedLoad, HierarchyEntity, HierarchyNode, LogMode,
    Property, TwinConfig, TwinSettings, DEFAULT_PROCESSOR_CRATE,
};
pub use providers::{
    Architecture, AwsSettings, AzureSettings, GrafanaGrantees, GrafanaSaml, Layer, ProviderName,
    Providers, SamlAssertionAttributes, UnknownName,
};
pub use schema::schema;

/// Fields the pipeline writes into records, so no device property may be named like them:
/// the device id and timestamp (`iotDeviceId`, `time`, stored as `id`), the dispatcher's
/// `correlationId`, the IoT topic rule's `topic(3) AS topicDeviceId`, and `verifyRun` (the mark on
/// the records `deployer verify` sends).
pub const RESERVED_RECORD_FIELDS: &[&str] = &[
    "iotDeviceId",
    "id",
    "time",
    "correlationId",
    "topicDeviceId",
    "verifyRun",
];

/// Properties every twin component has (TwinMaker's external id naming the device), so no
/// constant property may be named like them.
pub const RESERVED_COMPONENT_PROPERTIES: &[&str] = &["iotDeviceId"];
