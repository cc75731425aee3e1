//! The whole life of a processor binary, the default one and every device's own crate alike:
//! the Lambda function on AWS, and the Azure custom handler's child (the device-logic line
//! protocol of `twin_functions::device_logic`) when started with `TWIN_DEVICE_LOGIC_STDIO=1`, so
//! one build of a crate serves both clouds.

use crate::{aws_sdk_config, lambda_client, load_catalogue, start, LambdaInvoker};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use std::sync::Arc;
use twin_functions::device_logic::{
    serve_lines, stdio_requested, DeviceLogic, InProcess, LogicStep,
};
use twin_functions::processor::{ProcessOutcome, Processor};
use twin_functions::settings::ProcessorSettings;
use twin_functions::SystemClock;

/// Runs the default processor (no device logic) as a Lambda function.
pub async fn run_default_processor() -> Result<(), Error> {
    serve_lambda(None).await
}

/// Runs a device's own processor: `logic`, then the default checks, then the persister. Under
/// the Azure handler (`TWIN_DEVICE_LOGIC_STDIO=1`) only `logic` runs, over stdin and stdout.
pub async fn run_processor<L: DeviceLogic + 'static>(logic: L) -> Result<(), Error> {
    let lookup = |name: &str| std::env::var(name).ok();
    if stdio_requested(&lookup) {
        // Nothing else runs in this process: blocking on stdin is its whole job. No log
        // subscriber either: stdout is the protocol's, and the handler logs stray lines itself.
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        serve_lines(&logic, stdin, stdout)?;
        return Ok(());
    }
    serve_lambda(Some(Arc::new(InProcess(logic)))).await
}

async fn serve_lambda(logic: Option<Arc<dyn LogicStep>>) -> Result<(), Error> {
    let settings = start(ProcessorSettings::from_lookup)?;
    let config = aws_sdk_config()?;
    let catalogue = load_catalogue(&config, &settings.catalogue).await?;
    let invoker = LambdaInvoker::new(lambda_client(&config));
    let mut processor = Processor::new(&settings, catalogue, invoker, SystemClock);
    if let Some(logic) = logic {
        processor = processor.with_logic(logic);
    }
    let processor = &processor;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let outcome = match processor
            .handle(event.payload, &event.context.request_id)
            .await?
        {
            ProcessOutcome::Persisting(record) => {
                json!({"outcome": "persisting", "record": record})
            }
            ProcessOutcome::Dropped(reason) => {
                json!({"outcome": "dropped", "reason": reason.code()})
            }
        };
        Ok::<Value, Error>(outcome)
    }))
    .await
}
