//! The environment variables the deployer sets on each function: the one place their names live.

/// All functions: the twin's name (prefix of every resource name).
pub const TWIN_NAME: &str = "TWIN_NAME";
/// All functions: `DEBUG` or `INFO` (from `mode` in config.json); `INFO` when absent.
pub const LOG_LEVEL: &str = "LOG_LEVEL";
/// Dispatcher and processors: bucket of the device catalogue object (`catalogue.rs`).
pub const DEVICE_CATALOGUE_BUCKET: &str = "DEVICE_CATALOGUE_BUCKET";
/// Dispatcher and processors: key of the device catalogue object (its content hash in the name).
pub const DEVICE_CATALOGUE_KEY: &str = "DEVICE_CATALOGUE_KEY";
/// Dispatcher, cross-cloud L1→L2: HTTPS ingress of the remote processor.
pub const REMOTE_PROCESSOR_URL: &str = "REMOTE_PROCESSOR_URL";
/// Dispatcher, cross-cloud: bearer token for the remote ingress (never logged).
pub const REMOTE_TOKEN: &str = "REMOTE_TOKEN";
/// Processor (optional): the one device a device's own processor serves; absent on the shared
/// processor, which serves every device of the catalogue.
pub const DEVICE_ID: &str = "DEVICE_ID";
/// Processor: name of the persister function to invoke.
pub const PERSISTER_FUNCTION: &str = "PERSISTER_FUNCTION";
/// Persister, hot reader, hot-to-cold mover, twin connector: the hot table's name.
pub const HOT_TABLE: &str = "HOT_TABLE";
/// Hot reader: cap on one response's size in bytes (optional).
pub const MAX_RESPONSE_BYTES: &str = "MAX_RESPONSE_BYTES";
/// Hot-to-cold and cold-to-archive movers: the cold bucket's name.
pub const COLD_BUCKET: &str = "COLD_BUCKET";
/// Hot-to-cold mover: records older than this many days leave the hot store.
pub const HOT_STORAGE_DAYS: &str = "HOT_STORAGE_DAYS";
/// Cold-to-archive mover: the archive bucket's name.
pub const ARCHIVE_BUCKET: &str = "ARCHIVE_BUCKET";
/// Cold-to-archive mover: cold objects whose records are all older than this many days leave cold.
pub const COLD_STORAGE_DAYS: &str = "COLD_STORAGE_DAYS";
/// Both movers (optional): how many seconds a run's lease lasts; must exceed the function's
/// timeout (default 900 = Lambda's maximum).
pub const MOVER_LEASE_SECONDS: &str = "MOVER_LEASE_SECONDS";
/// Boundary ingress: the hop it serves (`hot-to-cold`, ...).
pub const BOUNDARY_HOP: &str = "BOUNDARY_HOP";
/// Boundary ingress: the name of its copy of the boundary secret in its cloud's secret store
/// (the name only; the value is read at start from the store).
pub const BOUNDARY_SECRET_NAME: &str = "BOUNDARY_SECRET_NAME";
/// Boundary sender (optional): the remote ingress's URL, as the deployer took it from what the
/// receiving cloud returned for the function (never built from names). With it the sender
/// reaches its next tier across the boundary instead of in its own cloud.
pub const BOUNDARY_INGRESS_URL: &str = "BOUNDARY_INGRESS_URL";
/// Boundary ingress: the nonce ledger's table.
pub const BOUNDARY_NONCE_TABLE: &str = "BOUNDARY_NONCE_TABLE";
/// Storage boundary ingress: the one bucket it writes (the receiving tier's).
pub const BOUNDARY_TARGET_BUCKET: &str = "BOUNDARY_TARGET_BUCKET";
/// Persister (optional): the twin's event rules, the JSON of `Vec<twin_events::Rule>`
/// (`EventEvaluator::rules_from_json`); absent when the twin has none.
pub const EVENT_RULES: &str = "EVENT_RULES";
/// Persister, when a rule sends feedback: the IoT data-plane endpoint (`https://<host>`), as
/// the deployer read it from DescribeEndpoint `iot:Data-ATS` (the local data plane: its shim).
pub const IOT_DATA_ENDPOINT: &str = "IOT_DATA_ENDPOINT";
/// Persister, when a rule notifies: the ARN of the twin's notification topic.
pub const EVENTS_TOPIC_ARN: &str = "EVENTS_TOPIC_ARN";
