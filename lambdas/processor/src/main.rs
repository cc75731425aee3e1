//! Lambda adapter of the default processor (logic: `twin_functions::processor`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use twin_functions::processor::{ProcessOutcome, Processor};
use twin_functions::settings::ProcessorSettings;
use twin_functions::SystemClock;
use twin_functions_aws::{aws_sdk_config, lambda_client, load_catalogue, start, LambdaInvoker};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(ProcessorSettings::from_lookup)?;
    let config = aws_sdk_config()?;
    let catalogue = load_catalogue(&config, &settings.catalogue).await?;
    let invoker = LambdaInvoker::new(lambda_client(&config));
    let processor = Processor::new(&settings, catalogue, invoker, SystemClock);
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
