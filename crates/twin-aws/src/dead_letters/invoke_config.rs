//! A function's asynchronous-invocation settings (`PutFunctionEventInvokeConfig`): how often
//! Lambda retries a failed event, how old an event may get, and the on-failure destination (its
//! layer's dead-letter queue).
//!
//! Its own resource rather than part of the function's settings: it is a separate API with its
//! own read and delete, it depends on the queue and on the role's `sqs:SendMessage` (Lambda
//! checks the role when the config is put), and keeping it apart means a drifted destination
//! is fixed without touching the function's code or configuration (and a function update never
//! waits on a queue).

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_lambda::types::{DestinationConfig, OnFailure};
use serde_json::{json, Value};
use std::sync::Arc;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of an event invoke config.
pub const KIND: &str = "lambda_event_invoke_config";

/// Retries of a failed asynchronous event before it goes to the queue (Lambda's default, made
/// explicit so that drift from it shows).
pub const MAX_RETRIES: i64 = 2;

/// Oldest an event may get before it goes to the queue unprocessed: 6 h, Lambda's maximum.
pub const MAX_EVENT_AGE_SECONDS: i64 = 6 * 3600;

/// The settings compared for drift: the function's name, retries, age and destination ARN.
pub fn desired(function: &str, queue_arn: &str) -> Value {
    json!({
        "function": function,
        "max_retries": MAX_RETRIES,
        "max_event_age_seconds": MAX_EVENT_AGE_SECONDS,
        "on_failure": queue_arn,
    })
}

/// Puts, reads and deletes event invoke configs.
pub struct InvokeConfigDriver {
    clients: Arc<AwsClients>,
}

impl InvokeConfigDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        InvokeConfigDriver { clients }
    }

    /// Puts the whole config. On an existing one it is deleted first: moto 5.2.5 ignores a
    /// `Put` onto an existing config and answers `Update` with a timestamp the SDK cannot read.
    /// Until the `Put` lands Lambda applies its defaults (the same retries and age, no
    /// destination), and only an event that fails for good in that instant is affected.
    async fn put(&self, spec: &ResourceSpec, exists: bool) -> Result<(), CloudError> {
        let int = |k: &str| spec.desired.get(k).and_then(Value::as_i64).unwrap_or(0) as i32;
        let destination = spec
            .desired
            .get("on_failure")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let lambda = &self.clients.lambda;
        if exists {
            gone_is_ok(
                lambda
                    .delete_function_event_invoke_config()
                    .function_name(&spec.name)
                    .send()
                    .await,
            )?;
        }
        lambda
            .put_function_event_invoke_config()
            .function_name(&spec.name)
            .maximum_retry_attempts(int("max_retries"))
            .maximum_event_age_in_seconds(int("max_event_age_seconds"))
            .destination_config(
                DestinationConfig::builder()
                    .on_failure(OnFailure::builder().destination(destination).build())
                    .build(),
            )
            .send()
            .await
            .map_err(cloud)?;
        Ok(())
    }
}

#[async_trait]
impl ResourceDriver for InvokeConfigDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let Some(out) = not_found_is_none(
            self.clients
                .lambda
                .get_function_event_invoke_config()
                .function_name(&spec.name)
                .send()
                .await,
        )?
        else {
            return Ok(None);
        };
        let arn = out.function_arn().ok_or_else(|| {
            CloudError::new(
                ErrorClass::Transient,
                "IncompleteResponse",
                format!(
                    "GetFunctionEventInvokeConfig of {} returned no FunctionArn",
                    spec.name
                ),
            )
        })?;
        let on_failure = out
            .destination_config()
            .and_then(|d| d.on_failure())
            .and_then(|f| f.destination());
        Ok(Some(Observed::new(
            format!("{arn}#event-invoke-config"),
            json!({
                "function": spec.name,
                "function_arn": arn,
                "max_retries": out.maximum_retry_attempts(),
                "max_event_age_seconds": out.maximum_event_age_in_seconds(),
                "on_failure": on_failure,
            }),
        )))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        self.put(spec, false).await?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("event invoke config of {} not visible yet", spec.name),
            )
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.put(spec, true).await?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "ResourceNotFoundException",
            &format!("event invoke config of {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        gone_is_ok(
            self.clients
                .lambda
                .delete_function_event_invoke_config()
                .function_name(&spec.name)
                .send()
                .await,
        )
    }
}
