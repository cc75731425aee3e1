//! `lambda_logs` on Azure: the function's lines from the Application Insights `traces` table,
//! through the query API (`POST <endpoint>/v1/apps/<AppId>/query`, token scope
//! `https://api.applicationinsights.io/.default`). The `AppId` comes from ARM's answer for the
//! twin's component; the endpoint from `DEPLOYER_AZURE_APPINSIGHTS_URL` (ARM does not name it).
//!
//! The query filters on `cloud_RoleName` (the app's name) and `operation_Name` (the function's
//! name), newest first with `take`, and is turned oldest first here. Without `since_ms` it
//! looks back [`LOOKBACK`]; with it (what `--follow` polls with) only later lines.

use super::{required, AzureFunctionOps};
use crate::arm::{Body, Reply};
use crate::context::resource_path;
use crate::l2::insights;
use azure_core::http::Method;
use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use twin_config::TwinConfig;
use twin_engine::{CloudError, ErrorClass, LogLine};
use twin_functions_azure::app::AppFunction;

/// How far back a read without `since_ms` looks (KQL timespan).
pub const LOOKBACK: &str = "30d";

/// The Functions host's own lines around every invocation (`Executing 'Functions.x' ...`,
/// `Executed 'Functions.x' (Succeeded, ...)`); hidden unless asked for.
pub const SYSTEM_PREFIXES: [&str; 2] = ["Executing ", "Executed "];

/// A KQL string literal's content: `'` and `\` escaped.
fn literal(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// The query: the newest `lines` traces of `function` in `app`, after `since_ms` if given.
pub fn kql(
    app: &str,
    function: &str,
    lines: usize,
    include_system: bool,
    since_ms: Option<i64>,
) -> String {
    let bound = match since_ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single()) {
        Some(t) => format!(
            "timestamp > datetime({})",
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ),
        None => format!("timestamp > ago({LOOKBACK})"),
    };
    let mut q = format!(
        "traces\n| where {bound}\n| where cloud_RoleName =~ '{}' and operation_Name =~ '{}'\n",
        literal(app),
        literal(function)
    );
    if !include_system {
        let not: Vec<String> = SYSTEM_PREFIXES
            .iter()
            .map(|p| format!("message startswith '{}'", literal(p)))
            .collect();
        q.push_str(&format!("| where not({})\n", not.join(" or ")));
    }
    q.push_str(&format!(
        "| project timestamp, message, severityLevel\n| order by timestamp desc\n| take {lines}"
    ));
    q
}

/// The lines of a query answer (`tables[PrimaryResult]`), oldest first.
pub fn parse_tables(body: &Value, what: &str) -> Result<Vec<LogLine>, CloudError> {
    let incomplete = |m: &str| {
        CloudError::fatal("IncompleteAnswer", format!("{what}: {m}"))
            .with_hint("the query API answered in a shape the deployer does not know")
    };
    let tables = body
        .get("tables")
        .and_then(Value::as_array)
        .ok_or_else(|| incomplete("the answer has no tables"))?;
    let table = tables
        .iter()
        .find(|t| t.get("name").and_then(Value::as_str) == Some("PrimaryResult"))
        .or_else(|| tables.first())
        .ok_or_else(|| incomplete("the answer has no table"))?;
    let columns = table
        .get("columns")
        .and_then(Value::as_array)
        .ok_or_else(|| incomplete("the table has no columns"))?;
    let index = |name: &str| {
        columns
            .iter()
            .position(|c| c.get("name").and_then(Value::as_str) == Some(name))
            .ok_or_else(|| incomplete(&format!("the table has no `{name}` column")))
    };
    let (ts, msg) = (index("timestamp")?, index("message")?);
    let rows = table
        .get("rows")
        .and_then(Value::as_array)
        .ok_or_else(|| incomplete("the table has no rows"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let stamp = row.get(ts).and_then(Value::as_str).unwrap_or_default();
        let timestamp_ms = DateTime::parse_from_rfc3339(stamp)
            .map_err(|e| incomplete(&format!("timestamp `{stamp}`: {e}")))?
            .timestamp_millis();
        let message = row
            .get(msg)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim_end()
            .to_string();
        out.push(LogLine {
            timestamp_ms,
            message,
        });
    }
    // Rows come newest first; equal timestamps keep the order the service gave, reversed.
    out.reverse();
    out.sort_by_key(|l| l.timestamp_ms);
    Ok(out)
}

/// Reads the function's lines; see the module docs.
pub async fn fetch(
    ops: &AzureFunctionOps,
    twin: &TwinConfig,
    f: AppFunction,
    lines: usize,
    include_system: bool,
    since_ms: Option<i64>,
) -> Result<Vec<LogLine>, CloudError> {
    let app = ops.app(twin);
    let component = format!("{}-insights", twin.name());
    let what = format!("Application Insights {component}");
    let path = resource_path(&ops.arm, &app.group, insights::TYPE, &component);
    let body = ops
        .arm
        .get(&path, insights::API, &what)
        .await?
        .ok_or_else(|| {
            CloudError::fatal("NotDeployed", format!("{what} does not exist"))
                .with_hint("run `deploy` first: the Function App logs to it")
        })?;
    let app_id = required(&body, "/properties/AppId", &what)?;
    let query = kql(&app.name, f.name(), lines, include_system, since_ms);
    let dp = ops.arm.data_plane(super::APPINSIGHTS_SCOPE);
    let base = ops.insights_url.trim_end_matches('/');
    let what = format!("logs of function {f} ({what})");
    let r = dp
        .send(
            Method::Post,
            &format!("{base}/v1/apps/{app_id}/query"),
            Some(Body::json(&json!({ "query": query }), &what)?),
            &[],
            &what,
        )
        .await?;
    if !r.is_success() {
        return Err(query_error(&r, &what));
    }
    parse_tables(&r.body, &what)
}

/// A classified error for an answer of the query API.
fn query_error(r: &Reply, what: &str) -> CloudError {
    let code = r
        .body
        .pointer("/error/code")
        .and_then(Value::as_str)
        .unwrap_or("QueryFailed")
        .to_string();
    let message = r
        .body
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or("no message in the answer");
    let (class, hint) = match r.status {
        401 | 403 => (
            ErrorClass::Fatal,
            "the signed-in identity needs read access to the Application Insights component (e.g. Monitoring Reader or Reader on the twin's resource group)",
        ),
        404 => (
            ErrorClass::Fatal,
            "the query endpoint does not know this application: check DEPLOYER_AZURE_APPINSIGHTS_URL",
        ),
        429 => (ErrorClass::Throttling, "slow down"),
        s if s >= 500 => (ErrorClass::Transient, "the query service failed; try again"),
        _ => (
            ErrorClass::Fatal,
            "the query service refused the query; a failure that persists is worth reporting",
        ),
    };
    CloudError::new(
        class,
        code,
        format!("{what}: {message} (HTTP {})", r.status),
    )
    .with_retry_after(r.retry_after)
    .with_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_names_app_function_bound_and_count() {
        let q = kql("app-func", "persister", 20, false, Some(1_700_000_000_123));
        assert!(q.starts_with("traces\n"), "{q}");
        assert!(
            q.contains("timestamp > datetime(2023-11-14T22:13:20.123Z)"),
            "{q}"
        );
        assert!(q.contains("cloud_RoleName =~ 'app-func' and operation_Name =~ 'persister'"));
        assert!(q.contains(
            "| where not(message startswith 'Executing ' or message startswith 'Executed ')"
        ));
        assert!(q.ends_with("| order by timestamp desc\n| take 20"), "{q}");
        let all = kql("a'b", "f", 5, true, None);
        assert!(
            all.contains("timestamp > ago(30d)") && !all.contains("not("),
            "{all}"
        );
        assert!(all.contains("cloud_RoleName =~ 'a\\'b'"), "{all}");
    }

    #[test]
    fn answers_are_read_oldest_first_and_bad_shapes_are_errors() {
        let body = json!({"tables": [{"name": "PrimaryResult",
            "columns": [{"name": "timestamp", "type": "datetime"}, {"name": "message", "type": "string"}],
            "rows": [["2026-01-01T00:00:02.000Z", "second\n"], ["2026-01-01T00:00:01Z", "first"]]}]});
        let got = parse_tables(&body, "logs").expect("lines");
        assert_eq!(
            got.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert_eq!(got[1].timestamp_ms - got[0].timestamp_ms, 1000);
        let e = parse_tables(
            &json!({"tables": [{"name": "PrimaryResult", "columns": [], "rows": []}]}),
            "logs of x",
        )
        .expect_err("no columns");
        assert!(e.message.contains("logs of x") && e.message.contains("timestamp"));
        assert!(parse_tables(&json!({}), "x").is_err());
    }
}
