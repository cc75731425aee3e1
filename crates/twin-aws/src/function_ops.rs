//! The development commands on the twin's Lambda functions (`lambda_update`, `lambda_logs`,
//! `lambda_invoke`): [`AwsFunctionOps`], the AWS implementation of `twin_engine::FunctionOps`.
//! Local names (`dispatcher`, `<device>-processor`, ...) become cloud names through
//! `twin_config::names`, so the commands find exactly what `deploy` created.

mod invoke;
mod logs;
mod update;

pub use invoke::decode_log_tail;
pub use logs::{is_system_line, newest_lines};
pub use update::{code_sha256, merge_env};

use crate::artifacts::Artifacts;
use crate::AwsClients;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use twin_config::{names, ProviderName, TwinConfig};
use twin_engine::{
    function_layer, function_names, CloudError, ErrorClass, FunctionOps, FunctionUpdate,
    Invocation, LogLine, RetryPolicy,
};

/// Function commands against AWS Lambda and CloudWatch Logs.
pub struct AwsFunctionOps {
    clients: Arc<AwsClients>,
    artifacts: Arc<Artifacts>,
}

impl AwsFunctionOps {
    /// Commands using these clients, rebuilding code through `artifacts`.
    pub fn new(clients: Arc<AwsClients>, artifacts: Arc<Artifacts>) -> Self {
        AwsFunctionOps { clients, artifacts }
    }
}

/// One of the twin's functions, resolved from its local name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwinFunction {
    /// The name the user typed (`persister`, `<device>-processor`).
    pub local: String,
    /// The Lambda function name (`<twin>-persister`).
    pub cloud: String,
    /// The crate under `lambdas/` its code is built from.
    pub crate_name: String,
}

/// Resolves a local function name of `twin` to its Lambda name and crate; unknown names and
/// functions whose layer is not on AWS are errors that list what the user can use instead.
pub fn resolve(twin: &TwinConfig, local: &str) -> Result<TwinFunction, CloudError> {
    let unknown = || {
        CloudError::fatal(
            "UnknownFunction",
            format!("`{local}` is not a function of twin {}", twin.name()),
        )
        .with_hint(format!("use one of: {}", function_names(twin).join(", ")))
    };
    let layer = function_layer(local).ok_or_else(unknown)?;
    let crate_name = match local.strip_suffix("-processor").filter(|d| !d.is_empty()) {
        Some(device) => {
            let d = twin.device(device).ok_or_else(unknown)?;
            if !twin.has_own_processor(d) {
                return Err(CloudError::fatal(
                    "SharedProcessor",
                    format!(
                        "device {device} has no processor function of its own: it shares `{}` with every device that names no processor crate",
                        names::SHARED_PROCESSOR
                    ),
                )
                .with_hint(format!(
                    "use `{}`, or set \"processor_per_device\": true under \"aws\" in config_providers.json",
                    names::SHARED_PROCESSOR
                )));
            }
            twin.processor_crate(d).to_string()
        }
        // A rule's function is built from its own crate, `lambdas/<crate>`.
        None => match local.strip_prefix(names::EVENT_FUNCTION_PREFIX) {
            Some(krate) if twin.deployed_rule_functions().contains(&krate) => krate.to_string(),
            Some(_) => return Err(unknown()),
            None => local.to_string(),
        },
    };
    let provider = twin.providers.get(layer);
    if provider != ProviderName::Aws {
        return Err(CloudError::fatal(
            "NotOnAws",
            format!(
                "function `{local}` belongs to layer {layer}, which this twin deploys on {provider}"
            ),
        )
        .with_hint(format!(
            "its {} is set in config_providers.json",
            layer.key()
        )));
    }
    Ok(TwinFunction {
        local: local.to_string(),
        cloud: names::cloud_function_name(twin.name(), local),
        crate_name,
    })
}

#[async_trait]
impl FunctionOps for AwsFunctionOps {
    async fn update(
        &self,
        twin: &TwinConfig,
        function: &str,
        env: Option<Map<String, Value>>,
    ) -> Result<FunctionUpdate, CloudError> {
        let f = resolve(twin, function)?;
        // An update is idempotent (same code, same merged environment): retried like deploy.
        retried(|| update::update(&self.clients, &self.artifacts, &f, env.clone())).await
    }

    async fn logs(
        &self,
        twin: &TwinConfig,
        function: &str,
        lines: usize,
        include_system: bool,
        since_ms: Option<i64>,
    ) -> Result<Vec<LogLine>, CloudError> {
        let f = resolve(twin, function)?;
        retried(|| logs::fetch(&self.clients, &f, lines, include_system, since_ms)).await
    }

    async fn invoke(
        &self,
        twin: &TwinConfig,
        function: &str,
        payload: &str,
        asynchronous: bool,
    ) -> Result<Invocation, CloudError> {
        let f = resolve(twin, function)?;
        // An invocation is not idempotent: only a throttled call (never run) is tried again;
        // after a 5xx or a dropped connection the function may have run, so the error stands.
        retried(|| async {
            invoke::invoke(&self.clients, &f, payload, asynchronous)
                .await
                .map_err(|mut e| {
                    if e.class != ErrorClass::Throttling {
                        e.class = ErrorClass::Fatal;
                    }
                    e
                })
        })
        .await
    }
}

/// Runs a command's cloud calls under the engine's retry policy.
async fn retried<T, F, Fut>(mut call: F) -> Result<T, CloudError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, CloudError>>,
{
    RetryPolicy::default()
        .run_quiet(&CancellationToken::new(), |_| call())
        .await
        .map_err(|e| e.unwrap_or_else(|| CloudError::fatal("Cancelled", "interrupted")))
}
