//! Runs an event rule's own function crate (`twin_functions::event_function`): the Lambda
//! function on AWS, or, under the Azure handler (`TWIN_EVENT_STDIO=1`), one event from stdin.

use crate::startup::init_tracing;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};
use twin_functions::event_function::{serve_stdin, stdio_requested, EventFunction};
use twin_functions::settings::LogLevel;

/// Runs `function`: as a Lambda function (the event is the payload of an asynchronous Invoke),
/// or, as the Azure handler's child, on the one event on stdin, failing (non-zero exit) when the
/// function fails, which the handler logs.
pub async fn run_event_function<F: EventFunction + 'static>(function: F) -> Result<(), Error> {
    let lookup = |name: &str| std::env::var(name).ok();
    if stdio_requested(&lookup) {
        let stdin = std::io::stdin().lock();
        return serve_stdin(&function, stdin).await.map_err(Error::from);
    }
    let level = lookup(twin_functions::env_vars::LOG_LEVEL)
        .and_then(|l| LogLevel::parse(&l))
        .unwrap_or(LogLevel::Info);
    init_tracing(level);
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        function.handle(event.payload).await.map_err(Error::from)?;
        Ok::<Value, Error>(json!({"outcome": "handled"}))
    }))
    .await
}
