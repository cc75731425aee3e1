//! The development commands on deployed functions (`lambda_update`, `lambda_logs`,
//! `lambda_invoke`), implemented by each provider that hosts functions.

use crate::error::CloudError;
use async_trait::async_trait;
use serde::Serialize;
use twin_config::{names, Layer, TwinConfig};

/// One log line of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The line as the function wrote it.
    pub message: String,
}

/// What an invocation returned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Invocation {
    /// HTTP-like status of the invoke call (200 sync, 202 async).
    pub status_code: i32,
    /// The function's response, if any.
    pub payload: Option<String>,
    /// Set when the function itself failed (`Unhandled`, `Handled`).
    pub function_error: Option<String>,
    /// The end of the function's log for this invocation, when the cloud returns it.
    pub log_tail: Option<String>,
}

/// What `lambda_update` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FunctionUpdate {
    /// The code was rebuilt because its sources changed.
    pub rebuilt: bool,
    /// New code was uploaded.
    pub code_updated: bool,
    /// Environment variables were merged and changed.
    pub env_updated: bool,
}

/// The layer that hosts a local function name (`dispatcher`, `processor`, `<device>-processor`,
/// ...).
pub fn function_layer(function: &str) -> Option<Layer> {
    match function {
        "dispatcher" => Some(Layer::L1),
        "persister" | names::SHARED_PROCESSOR => Some(Layer::L2),
        "hot-reader" | "hot-to-cold-mover" => Some(Layer::L3Hot),
        "cold-to-archive-mover" => Some(Layer::L3Cold),
        "twin-connector" => Some(Layer::L4),
        f if f.ends_with("-processor") => Some(Layer::L2),
        // An event rule's function runs where the persister evaluating the rules does.
        f if f.starts_with(names::EVENT_FUNCTION_PREFIX) => Some(Layer::L2),
        _ => None,
    }
}

/// The local names of every function of a twin, for completion and error messages: the shared
/// `processor` while some device uses it, `<device>-processor` for each device with a
/// processor function of its own, and `event-<crate>` for each rule function it deploys.
pub fn function_names(twin: &TwinConfig) -> Vec<String> {
    let mut names: Vec<String> = [
        "dispatcher",
        "persister",
        "hot-reader",
        "hot-to-cold-mover",
        "cold-to-archive-mover",
        "twin-connector",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if twin.devices.iter().any(|d| !twin.has_own_processor(d)) {
        names.push(names::SHARED_PROCESSOR.to_string());
    }
    names.extend(
        twin.devices
            .iter()
            .filter(|d| twin.has_own_processor(d))
            .map(|d| names::processor_local_name(&d.id)),
    );
    names.extend(
        twin.deployed_rule_functions()
            .into_iter()
            .map(names::event_function_local_name),
    );
    names
}

/// Function commands of one provider.
#[async_trait]
pub trait FunctionOps: Send + Sync {
    /// Rebuilds the function's code if its sources changed, uploads it if it differs from what
    /// is deployed, merges `env` into its environment, and waits until the update is active.
    async fn update(
        &self,
        twin: &TwinConfig,
        function: &str,
        env: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> Result<FunctionUpdate, CloudError>;

    /// The last `lines` log lines (oldest first) newer than `since_ms` if given.
    async fn logs(
        &self,
        twin: &TwinConfig,
        function: &str,
        lines: usize,
        include_system: bool,
        since_ms: Option<i64>,
    ) -> Result<Vec<LogLine>, CloudError>;

    /// Invokes the function with a JSON payload, synchronously or as an event.
    async fn invoke(
        &self,
        twin: &TwinConfig,
        function: &str,
        payload: &str,
        asynchronous: bool,
    ) -> Result<Invocation, CloudError>;
}
