//! Lambda adapter of the dispatcher (logic: `twin_functions::dispatcher`).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use twin_functions::dispatcher::{DispatchOutcome, Dispatcher};
use twin_functions::settings::DispatcherSettings;
use twin_functions_aws::{aws_sdk_config, lambda_client, load_catalogue, start, LambdaInvoker};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let settings = start(DispatcherSettings::from_lookup)?;
    if let Some(remote) = &settings.remote_processor {
        // The cross-cloud ingress client is a later issue; refuse rather than drop messages.
        let reason = format!(
            "REMOTE_PROCESSOR_URL ({}) is set but this dispatcher build has no HTTPS ingress client yet",
            remote.url
        );
        tracing::error!(error = %reason, "cannot start");
        return Err(reason.into());
    }
    let config = aws_sdk_config()?;
    let catalogue = load_catalogue(&config, &settings.catalogue).await?;
    let invoker = LambdaInvoker::new(lambda_client(&config));
    let dispatcher = Dispatcher::new(&settings, catalogue, invoker);
    let dispatcher = &dispatcher;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        let outcome = match dispatcher
            .handle(event.payload, &event.context.request_id)
            .await?
        {
            DispatchOutcome::Forwarded {
                device_id,
                processor,
            } => {
                json!({"outcome": "forwarded", "iotDeviceId": device_id, "processor": processor})
            }
            DispatchOutcome::Dropped(reason) => {
                json!({"outcome": "dropped", "reason": reason.code()})
            }
        };
        Ok::<Value, Error>(outcome)
    }))
    .await
}
