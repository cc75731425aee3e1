//! `lambda_invoke` on Azure.
//!
//! HTTP-triggered functions (processor, persister: POST; hot-reader: GET) are called at
//! `https://<defaultHostName>/api/<fn>` with the function's default key (`POST
//! .../sites/<app>/functions/<fn>/listkeys`), synchronously: the answer is the function's. They
//! have no queued mode, so `--async` on them is refused rather than silently ignored.
//!
//! Other functions (the Event Grid dispatcher, the timer movers) can only be started through
//! the host's admin API, `POST https://<defaultHostName>/admin/functions/<fn>` with the host's
//! master key (`POST .../sites/<app>/host/default/listkeys`) and `{"input": "<payload>"}`: the
//! host queues the run and answers 202, so these invocations are always asynchronous (status
//! 202, no payload) and their outcome is read with `lambda_logs`.
//!
//! Keys are secrets: they are held only for the call, never printed, logged or stored.

use super::host::{FunctionHost, HostReply};
use super::{required, AzureFunctionOps};
use crate::l2::site;
use azure_core::http::Method;
use serde_json::{json, Value};
use twin_config::TwinConfig;
use twin_engine::{CloudError, ErrorClass, Invocation};
use twin_functions_azure::app::{AppFunction, Trigger};

/// How the hot reader's parameters are given to `lambda_invoke`.
pub const HOT_READER_QUERY_HINT: &str =
    "the hot reader takes its parameters from the query string: pass them as a flat JSON object, e.g. '{\"iotDeviceId\":\"sensor-1\"}'";

/// Where and how one invocation is sent: the host ARM named, the key for it (a secret: this
/// type has no `Debug`, so it is never printed), and the request.
pub struct Target {
    host: FunctionHost,
    key: String,
    method: Method,
    path: String,
    body: Option<String>,
    admin: bool,
    what: String,
}

/// Resolves the call to `f` with `payload`: the site's host and the key from ARM. Makes no
/// call to the function, so it can be retried freely.
pub async fn target(
    ops: &AzureFunctionOps,
    twin: &TwinConfig,
    f: AppFunction,
    payload: &str,
    asynchronous: bool,
) -> Result<Target, CloudError> {
    let app = ops.app(twin);
    let what = format!("function {f} of Function App {}", app.name);
    let trigger = f.trigger();
    if asynchronous && matches!(trigger, Trigger::Http { .. }) {
        return Err(CloudError::fatal(
            "AsyncNotSupported",
            format!("{what} is HTTP-triggered: Azure runs it only synchronously"),
        )
        .with_hint("invoke it without --async"));
    }
    let body = ops.site(&app).await?;
    let host = FunctionHost::new(
        required(
            &body,
            "/properties/defaultHostName",
            &format!("Function App {}", app.name),
        )?,
        ops.arm.is_local(),
    );
    Ok(match trigger {
        Trigger::Http { methods } => {
            let key = function_key(&ops.arm, &app.path, f, &what).await?;
            let (method, path, body) = if methods.contains(&"post") {
                (Method::Post, format!("/api/{f}"), Some(payload.to_string()))
            } else {
                (
                    Method::Get,
                    format!("/api/{f}{}", query_of(payload, &what)?),
                    None,
                )
            };
            Target {
                host,
                key,
                method,
                path,
                body,
                admin: false,
                what,
            }
        }
        Trigger::EventGrid | Trigger::Timer { .. } => Target {
            host,
            key: master_key(ops, &app, &what).await?,
            method: Method::Post,
            path: format!("/admin/functions/{f}"),
            body: Some(json!({ "input": payload }).to_string()),
            admin: true,
            what,
        },
    })
}

/// Sends the invocation once and reads its answer.
pub async fn call(t: &Target) -> Result<Invocation, CloudError> {
    let r = t
        .host
        .send(t.method, &t.path, &t.key, t.body.clone(), &t.what)
        .await?;
    if !t.admin {
        return invocation_of(&r, &t.what);
    }
    if r.status == 202 || r.status == 200 {
        return Ok(Invocation {
            status_code: i32::from(r.status),
            payload: None,
            function_error: None,
            log_tail: None,
        });
    }
    Err(host_error(&r, &t.what))
}

/// The function's default key (`POST <site>/functions/<f>/listkeys`); a function the app
/// does not list is a retryable error telling to deploy. The key is a secret: the caller must
/// never print, log or store it.
pub async fn function_key(
    arm: &crate::arm::ArmClient,
    site_path: &str,
    f: AppFunction,
    what: &str,
) -> Result<String, CloudError> {
    let got = arm
        .call(
            Method::Post,
            &format!("{site_path}/functions/{f}/listkeys"),
            site::API,
            None,
            &format!("keys of {what}"),
        )
        .await?
        .ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "FunctionNotListed",
                format!("{what}: the app does not list the function"),
            )
            .with_hint("run `deploy` (or `lambda_update`) so the app's package holds it")
        })?;
    // A StringDictionary: the keys are under `properties` (older answers: at the top level).
    got.pointer("/properties/default")
        .or_else(|| got.get("default"))
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            CloudError::fatal(
                "IncompleteAnswer",
                format!("keys of {what}: the answer has no `default` key"),
            )
            .with_hint("create a default key for the function (`az functionapp function keys set`)")
        })
}

/// The host's master key (`masterKey` of the host keys).
async fn master_key(
    ops: &AzureFunctionOps,
    app: &super::App,
    what: &str,
) -> Result<String, CloudError> {
    let what = format!("host keys for {what}");
    let got = ops
        .arm
        .call(
            Method::Post,
            &format!("{}/host/default/listkeys", app.path),
            site::API,
            None,
            &what,
        )
        .await?
        .ok_or_else(|| super::not_deployed(&app.name))?;
    required(&got, "/masterKey", &what).map(str::to_string)
}

/// A flat JSON object as a query string (`?k=v&...`); `{}` gives none.
fn query_of(payload: &str, what: &str) -> Result<String, CloudError> {
    let bad = || {
        CloudError::fatal(
            "InvalidPayload",
            format!("{what}: the payload is not a flat JSON object"),
        )
        .with_hint(HOT_READER_QUERY_HINT)
    };
    let v: Value = serde_json::from_str(payload).map_err(|_| bad())?;
    let obj = v.as_object().ok_or_else(bad)?;
    let mut parts = Vec::new();
    for (k, v) in obj {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => return Err(bad()),
        };
        parts.push(format!("{}={}", encode(k), encode(&text)));
    }
    Ok(if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    })
}

/// Percent-encoding of a query component (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The answer of an HTTP-triggered function as an [`Invocation`]: 2xx is its result, a 4xx
/// other than the host's own refusals is the function rejecting its input (`Handled`), a 5xx
/// the function failing (`Unhandled`); a refused key, a missing function and throttling are
/// errors.
pub fn invocation_of(r: &HostReply, what: &str) -> Result<Invocation, CloudError> {
    let payload = Some(r.body.clone()).filter(|b| !b.trim().is_empty());
    let function_error = match r.status {
        200..=299 => None,
        401 | 403 | 404 | 429 => return Err(host_error(r, what)),
        400..=499 => Some("Handled".to_string()),
        _ => Some("Unhandled".to_string()),
    };
    Ok(Invocation {
        status_code: i32::from(r.status),
        payload,
        function_error,
        log_tail: None,
    })
}

/// A classified error for an answer of the functions host.
fn host_error(r: &HostReply, what: &str) -> CloudError {
    let (class, code, hint) = match r.status {
        401 | 403 => (
            ErrorClass::Fatal,
            "FunctionKeyRejected",
            "the host refused the key ARM returned: it was probably rotated a moment ago; try again, and if it persists check the app's keys (`az functionapp keys list`)",
        ),
        404 => (
            ErrorClass::EventualConsistency,
            "FunctionNotFound",
            "the host does not run this function (yet): after a deploy the host takes a moment to load it; run `deploy` if it persists",
        ),
        429 => (ErrorClass::Throttling, "TooManyRequests", "slow down"),
        s if s >= 500 => (
            ErrorClass::Transient,
            "FunctionHostError",
            "the functions host failed; see `lambda_logs`",
        ),
        _ => (
            ErrorClass::Fatal,
            "InvocationRefused",
            "the host refused the invocation; fix what it names",
        ),
    };
    let detail: String = r.body.chars().take(300).collect();
    let detail = if detail.trim().is_empty() {
        "no message in the answer".to_string()
    } else {
        detail
    };
    CloudError::new(class, code, format!("{what}: {detail} (HTTP {})", r.status))
        .with_retry_after(r.retry_after)
        .with_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> HostReply {
        HostReply {
            status,
            body: body.into(),
            retry_after: None,
        }
    }

    #[test]
    fn answers_map_to_invocations_or_errors() {
        let ok = invocation_of(&reply(200, r#"{"ok":true}"#), "f").expect("ok");
        assert_eq!(ok.status_code, 200);
        assert_eq!(ok.payload.as_deref(), Some(r#"{"ok":true}"#));
        assert_eq!(ok.function_error, None);
        let handled = invocation_of(&reply(400, "bad input"), "f").expect("handled");
        assert_eq!(handled.function_error.as_deref(), Some("Handled"));
        let failed = invocation_of(&reply(500, "boom"), "f").expect("unhandled");
        assert_eq!(failed.function_error.as_deref(), Some("Unhandled"));
        assert_eq!(failed.payload.as_deref(), Some("boom"));
        let refused = invocation_of(&reply(401, ""), "function persister").expect_err("key");
        assert_eq!(refused.code, "FunctionKeyRejected");
        assert!(refused.message.contains("persister") && refused.hint.is_some());
        assert_eq!(
            invocation_of(&reply(429, ""), "f")
                .expect_err("throttled")
                .class,
            ErrorClass::Throttling
        );
        assert_eq!(
            invocation_of(&reply(204, " "), "f").expect("empty").payload,
            None
        );
    }

    #[test]
    fn flat_objects_become_query_strings() {
        assert_eq!(
            query_of(r#"{"iotDeviceId":"sensor 1","limit":5}"#, "f").expect("query"),
            "?iotDeviceId=sensor%201&limit=5"
        );
        assert_eq!(query_of("{}", "f").expect("empty"), "");
        assert_eq!(
            query_of("[1]", "f").expect_err("array").code,
            "InvalidPayload"
        );
        assert!(query_of(r#"{"a":{"b":1}}"#, "f").is_err());
    }
}
