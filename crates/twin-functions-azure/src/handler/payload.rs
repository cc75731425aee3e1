//! The custom handler's wire format with the Functions host: the host POSTs
//! `{"Data": {<binding>: <value>}, "Metadata": {...}}` to `/<function>` and reads back
//! `{"Outputs": {...}, "Logs": [...], "ReturnValue": ...}`; a non-2xx answer fails the invocation.
//! HTTP-triggered functions answer through the `res` output binding
//! (`{"statusCode", "headers", "body"}`), as the host's `HttpOutputBindingResponse` reads it.

use serde_json::{json, Map, Value};
use std::sync::Mutex;

/// How deep a value the host double-encoded (a JSON text inside a JSON string) is unwrapped.
const MAX_UNWRAP: usize = 3;

tokio::task_local! {
    /// The `Logs` lines of the invocation running on this task.
    static LOGS: Mutex<Vec<String>>;
}

/// Adds a line to the current invocation's `Logs` (the host writes them to Application
/// Insights) and to the handler's own log. Outside an invocation it only logs.
pub fn log_line(line: String) {
    tracing::info!("{line}");
    let _ = LOGS.try_with(|logs| logs.lock().unwrap_or_else(|e| e.into_inner()).push(line));
}

/// Runs `invocation` collecting its [`log_line`]s, returned with its result.
pub async fn collecting_logs<T>(
    invocation: impl std::future::Future<Output = T>,
) -> (T, Vec<String>) {
    LOGS.scope(Mutex::new(Vec::new()), async {
        let out = invocation.await;
        let logs = LOGS
            .try_with(|logs| std::mem::take(&mut *logs.lock().unwrap_or_else(|e| e.into_inner())))
            .unwrap_or_default();
        (out, logs)
    })
    .await
}

/// The value of trigger binding `binding` in a host request body, or why there is none.
pub fn trigger_value(body: &[u8], binding: &str) -> Result<Value, String> {
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        format!("the request body is not JSON ({e}), so not a Functions host invocation")
    })?;
    let Some(data) = request.get("Data").and_then(Value::as_object) else {
        return Err(
            "the request has no `Data` object, so it is not a Functions host invocation".into(),
        );
    };
    data.get(binding)
        .cloned()
        .ok_or_else(|| format!("the invocation's Data has no `{binding}` binding"))
}

/// Unwraps a value the host may have sent as JSON text inside a JSON string (once or twice,
/// depending on the binding's data type and the host version) down to the JSON it holds. A string
/// that is not JSON text is returned as it is.
pub fn unwrap_json(mut value: Value) -> Value {
    for _ in 0..MAX_UNWRAP {
        let Value::String(text) = &value else { break };
        match serde_json::from_str::<Value>(text) {
            Ok(inner) => value = inner,
            Err(_) => break,
        }
    }
    value
}

/// The answer to the host: the HTTP status the handler returns, and the response payload.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerResponse {
    /// 2xx: the invocation succeeded; anything else fails it (Event Grid then redelivers).
    pub status: u16,
    /// `{"Outputs": ..., "Logs": [...], "ReturnValue": null}`.
    pub body: Value,
}

impl HandlerResponse {
    /// A response with `outputs` and `logs`. `ReturnValue` stays null: no function binds
    /// `$return`, and a value there could be taken for an HTTP answer.
    pub fn new(status: u16, outputs: Map<String, Value>, logs: Vec<String>) -> Self {
        Self {
            status,
            body: json!({"Outputs": outputs, "Logs": logs, "ReturnValue": null}),
        }
    }

    /// The `Logs` lines.
    pub fn logs(&self) -> Vec<String> {
        self.body["Logs"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The `res` output of an HTTP-triggered function: `status`, JSON content type, `body` as text.
pub fn http_output(status: u16, headers: Map<String, Value>, body: String) -> Value {
    let mut all = Map::new();
    all.insert(
        "content-type".into(),
        Value::String("application/json".into()),
    );
    all.extend(headers);
    json!({"statusCode": status, "headers": all, "body": body})
}

/// The status of a failure: 503 when a retry may pass (throttling, transient), 500 otherwise.
pub fn failure_status(retryable: bool) -> u16 {
    if retryable {
        503
    } else {
        500
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwraps_json_text_once_or_twice_and_keeps_plain_strings() {
        let event = json!({"id": "e-1"});
        assert_eq!(unwrap_json(event.clone()), event);
        assert_eq!(unwrap_json(Value::String(event.to_string())), event);
        let twice = Value::String(Value::String(event.to_string()).to_string());
        assert_eq!(unwrap_json(twice), event);
        assert_eq!(unwrap_json(json!("not json")), json!("not json"));
    }

    #[test]
    fn reads_the_trigger_binding_or_says_why_not() {
        let body = br#"{"Data":{"timer":{"IsPastDue":false}},"Metadata":{}}"#;
        assert_eq!(
            trigger_value(body, "timer").unwrap(),
            json!({"IsPastDue": false})
        );
        assert!(trigger_value(body, "req").unwrap_err().contains("`req`"));
        assert!(trigger_value(b"{}", "req").unwrap_err().contains("Data"));
        assert!(trigger_value(b"nope", "req")
            .unwrap_err()
            .contains("not JSON"));
    }

    #[tokio::test]
    async fn logs_are_collected_per_invocation() {
        let ((), logs) = collecting_logs(async { log_line("one".into()) }).await;
        assert_eq!(logs, vec!["one".to_string()]);
        log_line("outside any invocation".into());
    }
}
