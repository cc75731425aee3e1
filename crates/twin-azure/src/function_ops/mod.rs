//! The development commands on a twin's functions when they run on Azure (`lambda_update`,
//! `lambda_logs`, `lambda_invoke`): [`AzureFunctionOps`], the Azure implementation of
//! `twin_engine::FunctionOps`.
//!
//! Every L1–L3 function of a twin runs in ONE Function App (`names::azure_unique_name(twin,
//! "func", subscription)`, SPEC §9), so a local function name is resolved to a function of that
//! app (`dispatcher`, `processor`, `persister`, `hot-reader`, `hot-to-cold-mover`,
//! `cold-to-archive-mover`), and every host the commands call comes from ARM's answer for the
//! site (`defaultHostName`, the SCM host) or, for the logs, from the component's `AppId` and
//! the query endpoint named by [`APPINSIGHTS_URL_ENV`].

mod host;
mod invoke;
mod logs;
mod update;

pub use host::{host_base_url, FunctionHost};
pub use invoke::{function_key, invocation_of, Target, HOT_READER_QUERY_HINT};
pub use logs::{kql, parse_tables, SYSTEM_PREFIXES};
pub use update::merge_settings;

use crate::arm::ArmClient;
use crate::l2::handler_package::app_functions;
use crate::l2::package::PackageDriver;
use crate::l2::{site, site_path, AppPackageSource};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use twin_config::{names, ProviderName, TwinConfig};
use twin_engine::{
    function_layer, CloudError, ErrorClass, FunctionOps, FunctionUpdate, Invocation, LogLine,
    RetryPolicy,
};
use twin_functions_azure::app::AppFunction;

/// Environment variable naming the Application Insights query endpoint (ARM does not report
/// it): a sovereign cloud's, or a local fake's. The same convention as
/// `DEPLOYER_AZURE_ARM_URL`.
pub const APPINSIGHTS_URL_ENV: &str = "DEPLOYER_AZURE_APPINSIGHTS_URL";

/// The public Application Insights query endpoint.
pub const APPINSIGHTS_DEFAULT_URL: &str = "https://api.applicationinsights.io";

/// Token scope of the Application Insights query API.
pub const APPINSIGHTS_SCOPE: &str = "https://api.applicationinsights.io/.default";

/// Function commands against the twin's Function App, ARM and Application Insights.
pub struct AzureFunctionOps {
    arm: Arc<ArmClient>,
    location: String,
    resource_group: Option<String>,
    packages: Option<Arc<dyn AppPackageSource>>,
    deployer: Arc<PackageDriver>,
    insights_url: String,
}

impl AzureFunctionOps {
    /// Commands on this client, for apps in `location` and `resource_group` (the twin's
    /// default group when `None`); `update` builds the package with `packages` and deploys it
    /// with `deployer`, the same package driver `deploy` uses. The query endpoint is
    /// [`APPINSIGHTS_URL_ENV`] when set, else [`APPINSIGHTS_DEFAULT_URL`].
    pub fn new(
        arm: Arc<ArmClient>,
        location: impl Into<String>,
        resource_group: Option<String>,
        packages: Option<Arc<dyn AppPackageSource>>,
        deployer: Arc<PackageDriver>,
    ) -> Self {
        let insights_url = std::env::var(APPINSIGHTS_URL_ENV)
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| APPINSIGHTS_DEFAULT_URL.to_string());
        AzureFunctionOps {
            arm,
            location: location.into(),
            resource_group,
            packages,
            deployer,
            insights_url,
        }
    }

    /// The same commands reading logs from `url` instead (tests, or a caller that knows it).
    pub fn with_insights_url(mut self, url: impl Into<String>) -> Self {
        self.insights_url = url.into();
        self
    }

    /// The twin's Function App.
    fn app(&self, twin: &TwinConfig) -> App {
        let group = self
            .resource_group
            .clone()
            .unwrap_or_else(|| names::resource_group(twin.name()));
        let name = names::azure_unique_name(twin.name(), "func", self.arm.subscription_id());
        let path = site_path(&self.arm, &group, &name);
        App { name, group, path }
    }

    /// The site as ARM reports it; a site that does not exist is an error telling to deploy.
    async fn site(&self, app: &App) -> Result<Value, CloudError> {
        let what = format!("Function App {}", app.name);
        self.arm
            .get(&app.path, site::API, &what)
            .await?
            .ok_or_else(|| not_deployed(&app.name))
    }
}

/// The twin's Function App: name, resource group and ARM path.
#[derive(Debug, Clone)]
pub(crate) struct App {
    pub name: String,
    pub group: String,
    pub path: String,
}

/// The error for an app that is not there.
fn not_deployed(app: &str) -> CloudError {
    CloudError::fatal("NotDeployed", format!("Function App {app} does not exist"))
        .with_hint("run `deploy` first: the twin's functions on Azure live in that app")
}

/// A string a response must have, or an error naming the resource and the field.
pub(crate) fn required<'a>(
    body: &'a Value,
    pointer: &str,
    what: &str,
) -> Result<&'a str, CloudError> {
    body.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            CloudError::fatal(
                "IncompleteAnswer",
                format!("{what}: the answer has no {pointer}"),
            )
            .with_hint("the resource may still be provisioning; try again in a minute")
        })
}

/// Resolves a local function name of `twin` to the function of its Function App; unknown
/// names, functions the app does not hold and functions of layers not on Azure are errors that
/// list what the user can use instead.
pub fn resolve(twin: &TwinConfig, local: &str) -> Result<AppFunction, CloudError> {
    let on_azure: Vec<String> = app_functions(twin)
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    let valid = || {
        if on_azure.is_empty() {
            "none: no layer with functions is on Azure".to_string()
        } else {
            on_azure.join(", ")
        }
    };
    if let Some(layer) = function_layer(local) {
        let provider = twin.providers.get(layer);
        if provider != ProviderName::Azure {
            return Err(CloudError::fatal(
                "NotOnAzure",
                format!(
                    "function `{local}` belongs to layer {layer}, which this twin deploys on {provider}"
                ),
            )
            .with_hint(format!(
                "its {} is set in config_providers.json; the twin's functions on Azure: {}",
                layer.key(),
                valid()
            )));
        }
    }
    let found = AppFunction::from_name(local).filter(|f| on_azure.iter().any(|n| n == f.name()));
    found.ok_or_else(|| {
        let why = if local.ends_with("-processor") {
            format!(
                "`{local}` is not a function of twin {}'s Function App: on Azure every device uses the one `{}`",
                twin.name(),
                names::SHARED_PROCESSOR
            )
        } else {
            format!("`{local}` is not a function of twin {} on Azure", twin.name())
        };
        CloudError::fatal("UnknownFunction", why).with_hint(format!("use one of: {}", valid()))
    })
}

#[async_trait]
impl FunctionOps for AzureFunctionOps {
    async fn update(
        &self,
        twin: &TwinConfig,
        function: &str,
        env: Option<Map<String, Value>>,
    ) -> Result<FunctionUpdate, CloudError> {
        let f = resolve(twin, function)?;
        // Idempotent (same package, same merged settings): retried like deploy, remembering
        // what an earlier attempt already did.
        let done = update::Done::default();
        retried(|| update::update(self, twin, f, env.clone(), &done)).await
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
        retried(|| logs::fetch(self, twin, f, lines, include_system, since_ms)).await
    }

    async fn invoke(
        &self,
        twin: &TwinConfig,
        function: &str,
        payload: &str,
        asynchronous: bool,
    ) -> Result<Invocation, CloudError> {
        let f = resolve(twin, function)?;
        // Finding the host and the key calls only ARM: retried like any read.
        let target = retried(|| invoke::target(self, twin, f, payload, asynchronous)).await?;
        // The invocation is not idempotent: only a throttled call (never run) is tried again;
        // after a 5xx or a dropped connection the function may have run, so the error stands.
        retried(|| async {
            invoke::call(&target).await.map_err(|mut e| {
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
