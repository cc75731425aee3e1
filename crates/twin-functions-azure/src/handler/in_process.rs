//! The dispatcher → processor → persister chain inside one invocation. On AWS each hop is an
//! asynchronous Lambda invocation that Lambda retries; here the hop awaits the next function in
//! the same process, so a failure anywhere fails the Event Grid delivery and Event Grid, the
//! durable queue, redelivers the event (the persister's write is idempotent).

use super::payload::log_line;
use super::stores::HotHandle;
use crate::adt_twin::TwinPatchingStore;
use crate::AzureActionSink;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use twin_functions::event_evaluator::EventEvaluator;
use twin_functions::persister::{PersistOutcome, Persister};
use twin_functions::processor::{ProcessOutcome, Processor};
use twin_functions::record::{FIELD_CORRELATION_ID, FIELD_DEVICE_ID, FIELD_TIME};
use twin_functions::{CloudError, CloudErrorKind, FunctionInvoker, SystemClock};

/// The event evaluator the Azure persister runs: rule states in the hot container, actions
/// through Azure.
pub type AzureEventEvaluator = EventEvaluator<HotHandle, AzureActionSink>;

/// The persister as the handler runs it: store the record (and patch its twin), then, when the
/// twin has event rules, evaluate those that read its device, as the AWS persister does.
pub struct AppPersister {
    persister: Persister<TwinPatchingStore<HotHandle>>,
    hot: HotHandle,
    events: Option<AzureEventEvaluator>,
}

impl AppPersister {
    /// A persister writing through `store` to `hot`, evaluating `events` after each record.
    pub fn new(
        store: TwinPatchingStore<HotHandle>,
        hot: HotHandle,
        events: Option<AzureEventEvaluator>,
    ) -> Self {
        Self {
            persister: Persister::new(store),
            hot,
            events,
        }
    }

    /// Stores the record, then evaluates the rules. A failed rule fails the invocation after
    /// the others ran, so the redelivery stores the record again (idempotent) and fires what did
    /// not fire (the evaluator put its state back).
    pub async fn handle(
        &self,
        event: Value,
        request_id: &str,
    ) -> Result<PersistOutcome, CloudError> {
        let outcome = self.persister.handle(event, request_id).await?;
        if let (PersistOutcome::Stored(item), Some(events)) = (&outcome, &self.events) {
            let fired = events.handle(item, &self.hot).await?;
            if !fired.is_empty() {
                let rules: Vec<&str> = fired.iter().map(|f| f.rule.as_str()).collect();
                log_line(format!(
                    "persister: event rules fired for {}: {}",
                    item.device_id,
                    rules.join(", ")
                ));
            }
        }
        Ok(outcome)
    }
}
/// The processor as the handler runs it (its persister in process).
pub type AppProcessor = Processor<InProcessInvoker, SystemClock>;

/// A function the chain can hand a payload to.
#[derive(Clone)]
pub enum InProcessTarget {
    /// The default processor.
    Processor(Arc<AppProcessor>),
    /// The persister.
    Persister(Arc<AppPersister>),
}

/// Hands payloads to functions of this process by name, awaiting them.
#[derive(Clone, Default)]
pub struct InProcessInvoker {
    targets: BTreeMap<String, InProcessTarget>,
}

impl InProcessInvoker {
    /// An invoker that knows no function yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `target` under `name` (the name the caller's settings or catalogue use).
    pub fn with(mut self, name: impl Into<String>, target: InProcessTarget) -> Self {
        self.targets.insert(name.into(), target);
        self
    }
}

fn text(event: &Value, field: &str) -> String {
    event
        .get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

#[async_trait]
impl FunctionInvoker for InProcessInvoker {
    /// Runs `function` on `payload` now and returns once it has: a drop is logged and is not an
    /// error; a storage failure is.
    async fn invoke_async(&self, function: &str, payload: Vec<u8>) -> Result<(), CloudError> {
        let resource = format!("function {function}");
        let target = self.targets.get(function).ok_or_else(|| {
            CloudError::new(
                "InvokeInProcess",
                resource.clone(),
                "UnknownFunction",
                "this Function App runs no such function; the device catalogue names a processor the app does not hold",
                CloudErrorKind::NotFound,
            )
        })?;
        let event: Value = serde_json::from_slice(&payload).map_err(|e| {
            CloudError::new(
                "InvokeInProcess",
                resource.clone(),
                "InvalidPayload",
                format!("the payload is not JSON: {e}"),
                CloudErrorKind::Rejected,
            )
        })?;
        let correlation = text(&event, FIELD_CORRELATION_ID);
        let device = text(&event, FIELD_DEVICE_ID);
        match target {
            InProcessTarget::Processor(p) => match p.handle(event, &correlation).await? {
                ProcessOutcome::Persisting(record) => log_line(format!(
                    "processor: record of {device} at {} handed to the persister",
                    record
                        .get(FIELD_TIME)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                )),
                ProcessOutcome::Dropped(reason) => log_line(format!(
                    "processor: message of {device} dropped ({}): {reason}",
                    reason.code()
                )),
            },
            InProcessTarget::Persister(p) => match p.handle(event, &correlation).await? {
                PersistOutcome::Stored(item) => log_line(format!(
                    "persister: stored {}/{}",
                    item.device_id,
                    item.id.canonical()
                )),
                PersistOutcome::Dropped(reason) => log_line(format!(
                    "persister: record of {device} dropped ({}): {reason}",
                    reason.code()
                )),
            },
        }
        Ok(())
    }
}
