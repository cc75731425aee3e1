//! Long-running operations as ARM describes them: an answer names how to follow the operation
//! (`Azure-AsyncOperation`, else `Location`, else the resource's `provisioningState`), and each
//! poll says whether it is still running and how long to wait (`Retry-After`).

use serde_json::Value;
use std::time::Duration;

/// How to follow an operation that ARM accepted but has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollTarget {
    /// GET this URL until its `status` is `Succeeded`, `Failed` or `Canceled`.
    AsyncOperation(String),
    /// GET this URL until it answers 200/201/204 instead of 202.
    Location(String),
    /// GET the resource until its `properties.provisioningState` is terminal.
    ProvisioningState,
}

/// How to follow the answer to a PUT or DELETE, or `None` when it is already final.
pub fn poll_target(
    status: u16,
    async_operation: Option<&str>,
    location: Option<&str>,
    body: &Value,
) -> Option<PollTarget> {
    // ARM's rules: an Azure-AsyncOperation header wins over Location, and either only matters
    // on an answer that accepted work (200/201 for PUT may carry one, 202 always should).
    if let Some(url) = async_operation.filter(|u| !u.is_empty()) {
        if (200..=202).contains(&status) {
            return Some(PollTarget::AsyncOperation(url.to_string()));
        }
    }
    if let Some(url) = location.filter(|u| !u.is_empty()) {
        if matches!(status, 201 | 202) {
            return Some(PollTarget::Location(url.to_string()));
        }
    }
    match status {
        201 | 202 => Some(PollTarget::ProvisioningState),
        200 if provisioning_outcome(body) == Outcome::Pending => {
            Some(PollTarget::ProvisioningState)
        }
        _ => None,
    }
}

/// Where an operation stands after one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Still running.
    Pending,
    /// Done.
    Succeeded,
    /// Ended without success, with ARM's code and message.
    Failed {
        /// The status (`Failed`, `Canceled`) or the error code.
        code: String,
        /// What ARM said.
        message: String,
    },
}

/// The outcome an operation-status body (`{"status": ..., "error": {...}}`) reports.
pub fn async_operation_outcome(body: &Value) -> Outcome {
    let status = body.get("status").and_then(Value::as_str).unwrap_or("");
    terminal(status, body)
}

/// The outcome a `Location` poll's HTTP status reports.
pub fn location_outcome(status: u16, body: &Value) -> Outcome {
    match status {
        202 => Outcome::Pending,
        200 | 201 | 204 => Outcome::Succeeded,
        _ => {
            let (code, message) = super::errors::error_parts(status, body);
            Outcome::Failed { code, message }
        }
    }
}

/// The outcome a resource body's `properties.provisioningState` reports (a resource without
/// one, like a resource group of some API versions, is done).
pub fn provisioning_outcome(body: &Value) -> Outcome {
    match body
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
    {
        None => Outcome::Succeeded,
        Some(state) => terminal(state, body),
    }
}

fn terminal(state: &str, body: &Value) -> Outcome {
    match state.to_ascii_lowercase().as_str() {
        "succeeded" => Outcome::Succeeded,
        "failed" | "canceled" | "cancelled" => {
            let e = body.get("error");
            Outcome::Failed {
                code: e
                    .and_then(|e| e.get("code"))
                    .and_then(Value::as_str)
                    .unwrap_or(state)
                    .to_string(),
                message: e
                    .and_then(|e| e.get("message"))
                    .and_then(Value::as_str)
                    .unwrap_or("the operation ended without success")
                    .to_string(),
            }
        }
        _ => Outcome::Pending,
    }
}

/// `Retry-After` as seconds (ARM sends seconds; an HTTP date is not used by ARM and reads as
/// absent), or the millisecond variants `retry-after-ms` / `x-ms-retry-after-ms`.
pub fn parse_retry_after(seconds: Option<&str>, millis: Option<&str>) -> Option<Duration> {
    if let Some(ms) = millis.and_then(|v| v.trim().parse::<u64>().ok()) {
        return Some(Duration::from_millis(ms));
    }
    seconds
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// How long to wait before poll number `attempt` (from 0): what the server asked for, else an
/// exponential backoff from `min` capped at `max`; never less than `min`, so a server that says
/// "0" is not hammered.
pub fn poll_delay(
    retry_after: Option<Duration>,
    attempt: u32,
    min: Duration,
    max: Duration,
) -> Duration {
    match retry_after {
        Some(d) => d.max(min),
        None => min
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(max)
            .max(min),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn async_operation_header_wins_over_location() {
        assert_eq!(
            poll_target(201, Some("https://a/op"), Some("https://a/loc"), &json!({})),
            Some(PollTarget::AsyncOperation("https://a/op".into()))
        );
        assert_eq!(
            poll_target(202, None, Some("https://a/loc"), &json!(null)),
            Some(PollTarget::Location("https://a/loc".into()))
        );
        // A 200 with a Location header is final (Location only matters on 201/202).
        assert_eq!(
            poll_target(
                200,
                None,
                Some("https://a/loc"),
                &json!({"properties": {"provisioningState": "Succeeded"}})
            ),
            None
        );
    }

    #[test]
    fn without_headers_the_provisioning_state_decides() {
        assert_eq!(
            poll_target(201, None, None, &json!({})),
            Some(PollTarget::ProvisioningState)
        );
        assert_eq!(
            poll_target(
                200,
                None,
                None,
                &json!({"properties": {"provisioningState": "Updating"}})
            ),
            Some(PollTarget::ProvisioningState)
        );
        assert_eq!(
            poll_target(
                200,
                None,
                None,
                &json!({"properties": {"provisioningState": "Succeeded"}})
            ),
            None
        );
        assert_eq!(poll_target(204, None, None, &json!(null)), None);
    }

    #[test]
    fn outcomes() {
        assert_eq!(
            async_operation_outcome(&json!({"status": "InProgress"})),
            Outcome::Pending
        );
        assert_eq!(
            async_operation_outcome(&json!({"status": "Succeeded"})),
            Outcome::Succeeded
        );
        assert_eq!(
            async_operation_outcome(
                &json!({"status": "Failed", "error": {"code": "QuotaExceeded", "message": "no"}})
            ),
            Outcome::Failed {
                code: "QuotaExceeded".into(),
                message: "no".into()
            }
        );
        assert!(matches!(
            async_operation_outcome(&json!({"status": "Canceled"})),
            Outcome::Failed { code, .. } if code == "Canceled"
        ));
        assert_eq!(location_outcome(202, &json!(null)), Outcome::Pending);
        assert_eq!(location_outcome(204, &json!(null)), Outcome::Succeeded);
        assert_eq!(location_outcome(200, &json!({})), Outcome::Succeeded);
        assert!(matches!(
            location_outcome(400, &json!({"error": {"code": "Bad", "message": "m"}})),
            Outcome::Failed { code, .. } if code == "Bad"
        ));
        assert_eq!(provisioning_outcome(&json!({})), Outcome::Succeeded);
        assert_eq!(
            provisioning_outcome(&json!({"properties": {"provisioningState": "Creating"}})),
            Outcome::Pending
        );
    }

    #[test]
    fn retry_after_is_honoured_and_floored() {
        assert_eq!(
            parse_retry_after(Some("7"), None),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(Some("7"), Some("250")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), None),
            None
        );
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(
            poll_delay(Some(Duration::from_secs(3)), 0, min, max),
            Duration::from_secs(3)
        );
        assert_eq!(poll_delay(Some(Duration::ZERO), 0, min, max), min);
        assert_eq!(poll_delay(None, 0, min, max), min);
        assert_eq!(poll_delay(None, 2, min, max), Duration::from_millis(400));
        assert_eq!(poll_delay(None, 30, min, max), max);
    }
}
