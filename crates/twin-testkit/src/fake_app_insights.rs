//! A stateful fake of the Application Insights query API (`POST /v1/apps/<appId>/query`; no
//! emulator exists): it stores `traces` rows per application id and answers a query with the
//! API's table shape (`{"tables":[{"name":"PrimaryResult","columns":[...],"rows":[...]}]}`).
//!
//! It does not run KQL. It reads the filters the deployer's query is made of, and refuses a
//! query that lacks them, so a query that stopped naming the role, the function or the time
//! bound fails the test: `cloud_RoleName =~ '<app>'`, `operation_Name =~ '<fn>'`, `timestamp >
//! datetime(<RFC 3339>)`, `take <n>` (newest first, as `order by timestamp desc | take n`), and
//! `not(message startswith ...)`, which drops the host's own `Executing`/`Executed` lines.

use crate::fake_http::{self, body_json, has_bearer, Reply};
use chrono::{DateTime, TimeZone, Utc};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

/// One trace row.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The component's application id (what ARM reports as `properties.AppId`).
    pub app_id: String,
    /// `cloud_RoleName`: the Function App's name.
    pub role: String,
    /// `operation_Name`: the function's name.
    pub function: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The line.
    pub message: String,
}

#[derive(Default)]
struct State {
    traces: Vec<Trace>,
    queries: Vec<String>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake query endpoint.
pub struct FakeAppInsights {
    /// Base URL, e.g. `http://127.0.0.1:40123` (what `DEPLOYER_AZURE_APPINSIGHTS_URL` names).
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAppInsights {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeAppInsights {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> std::io::Result<FakeAppInsights> {
        let (listener, addr) = fake_http::bind_loopback()?;
        let url = format!("http://{addr}");
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let task = fake_http::serve(listener, move |req| {
            let s = s.clone();
            async move { Ok::<_, Infallible>(handle(&s, req).await) }
        });
        Ok(FakeAppInsights { url, state, task })
    }

    /// Stores a trace row.
    pub fn add(&self, trace: Trace) {
        lock(&self.state).traces.push(trace);
    }

    /// The query texts received, in order.
    pub fn queries(&self) -> Vec<String> {
        lock(&self.state).queries.clone()
    }
}

fn reply(status: u16, body: &Value) -> Reply {
    fake_http::reply(status, body, &[])
}

fn bad(message: &str) -> Reply {
    reply(
        400,
        &json!({"error": {"code": "BadArgumentError", "message": message}}),
    )
}

/// The text between `'` after `<field> =~ '`.
fn quoted_after(query: &str, field: &str) -> Option<String> {
    let start = query.find(&format!("{field} =~ '"))? + field.len() + 5;
    let end = query[start..].find('\'')?;
    Some(query[start..start + end].to_string())
}

fn since(query: &str) -> Option<i64> {
    let start = query.find("timestamp > datetime(")? + "timestamp > datetime(".len();
    let end = query[start..].find(')')?;
    DateTime::parse_from_rfc3339(&query[start..start + end])
        .ok()
        .map(|t| t.timestamp_millis())
}

fn take(query: &str) -> Option<usize> {
    let start = query.find("| take ")? + "| take ".len();
    query[start..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let authorized = has_bearer(req.headers());
    let method = req.method().clone();
    let body = body_json(req.into_body()).await;
    if !authorized {
        return reply(
            401,
            &json!({"error": {"code": "AuthorizationRequiredError", "message": "no token"}}),
        );
    }
    let Some(app_id) = path
        .strip_prefix("/v1/apps/")
        .and_then(|p| p.strip_suffix("/query"))
        .filter(|_| method == hyper::Method::POST)
    else {
        return reply(
            404,
            &json!({"error": {"code": "PathNotFoundError", "message": path}}),
        );
    };
    let Some(query) = body.get("query").and_then(Value::as_str) else {
        return bad("the body names no query");
    };
    let mut st = lock(state);
    st.queries.push(query.to_string());
    if !query.trim_start().starts_with("traces") {
        return bad("the fake answers queries of the traces table only");
    }
    let (Some(role), Some(function), Some(n)) = (
        quoted_after(query, "cloud_RoleName"),
        quoted_after(query, "operation_Name"),
        take(query),
    ) else {
        return bad("the query must filter cloud_RoleName and operation_Name and take n");
    };
    let after = since(query);
    if after.is_none() && !query.contains("timestamp > ago(") {
        return bad("the query has no time bound");
    }
    let hide_system = query.contains("not(message startswith");
    let mut rows: Vec<&Trace> = st
        .traces
        .iter()
        .filter(|t| {
            t.app_id == app_id
                && t.role.eq_ignore_ascii_case(&role)
                && t.function.eq_ignore_ascii_case(&function)
                && after.is_none_or(|a| t.timestamp_ms > a)
                && !(hide_system
                    && (t.message.starts_with("Executing ") || t.message.starts_with("Executed ")))
        })
        .collect();
    rows.sort_by_key(|t| std::cmp::Reverse(t.timestamp_ms));
    rows.truncate(n);
    let rows: Vec<Value> = rows
        .iter()
        .map(|t| {
            let ts = Utc
                .timestamp_millis_opt(t.timestamp_ms)
                .single()
                .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                .unwrap_or_default();
            json!([ts, t.message, 1])
        })
        .collect();
    reply(
        200,
        &json!({"tables": [{"name": "PrimaryResult", "columns": [
            {"name": "timestamp", "type": "datetime"},
            {"name": "message", "type": "string"},
            {"name": "severityLevel", "type": "int"}],
            "rows": rows}]}),
    )
}
