//! An event rule's own function (`action.type = "lambda"`, a crate under `lambdas/`), the same
//! contract on every cloud.
//!
//! The evaluator hands the function one event, `{rule, condition, iotDeviceId, time, values}`
//! (see [`crate::event_evaluator`]), and does not wait for what it does with it. A crate is one
//! binary for both clouds: its `main` calls the AWS adapter's `run_event_function`, which is the
//! Lambda function on AWS (started by an asynchronous Invoke, the event as its payload). On Azure
//! the handler runs that same binary as a child with [`STDIO_ENV`] set and the event as its whole
//! stdin ([`serve_stdin`]); the child exits 0 when the function succeeded, non-zero otherwise.

use async_trait::async_trait;
use serde_json::Value;
use std::io::Read;

/// Set (to `1`) in an event function's environment when it runs as the Azure handler's child.
pub const STDIO_ENV: &str = "TWIN_EVENT_STDIO";

/// What an event rule's function crate implements.
#[async_trait]
pub trait EventFunction: Send + Sync {
    /// Handles one fired rule's event; an `Err` says why it failed (logged by the platform).
    async fn handle(&self, event: Value) -> Result<(), String>;
}

/// Whether this process was started as the Azure handler's child (`STDIO_ENV` is `1`).
pub fn stdio_requested(lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    lookup(STDIO_ENV).is_some_and(|v| v.trim() == "1")
}

/// Reads one event (a JSON document, the whole of `input`) and runs `function` on it.
pub async fn serve_stdin<F: EventFunction + ?Sized>(
    function: &F,
    mut input: impl Read,
) -> Result<(), String> {
    let mut text = String::new();
    input
        .read_to_string(&mut text)
        .map_err(|e| format!("the event could not be read from stdin: {e}"))?;
    let event: Value =
        serde_json::from_str(&text).map_err(|e| format!("the event on stdin is not JSON: {e}"))?;
    function.handle(event).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Value>>);

    #[async_trait]
    impl EventFunction for Recorder {
        async fn handle(&self, event: Value) -> Result<(), String> {
            if event["rule"] == "bad" {
                return Err("refused".into());
            }
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(event);
            Ok(())
        }
    }

    #[tokio::test]
    async fn one_event_from_stdin_reaches_the_function_and_its_failure_is_returned() {
        let f = Recorder::default();
        serve_stdin(&f, &br#"{"rule":"hot","values":{"t":31}}"#[..])
            .await
            .expect("handled");
        assert_eq!(f.0.lock().unwrap()[0]["values"]["t"], 31);
        assert_eq!(
            serve_stdin(&f, &br#"{"rule":"bad"}"#[..]).await,
            Err("refused".to_string())
        );
        assert!(serve_stdin(&f, &b"not json"[..])
            .await
            .unwrap_err()
            .contains("not JSON"));
        assert!(stdio_requested(&|k| (k == STDIO_ENV).then(|| "1".into())));
        assert!(!stdio_requested(&|_| None));
    }
}
