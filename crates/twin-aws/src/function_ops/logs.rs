//! `lambda_logs`: the newest lines of a function's CloudWatch log group, oldest first.
//!
//! FilterLogEvents reads forward in time only, so the newest N lines are found by reading
//! widening windows back from now (the last hour, the last day, everything) until one holds
//! N lines: a busy function costs one short read, a quiet one a few more.

use super::TwinFunction;
use crate::errors::cloud;
use crate::AwsClients;
use twin_engine::{CloudError, ErrorClass, LogLine};

/// Windows read back from now, in milliseconds; `None` reads the whole retention.
const WINDOWS_MS: [Option<i64>; 3] = [Some(3_600_000), Some(86_400_000), None];

/// Lines Lambda itself writes around every invocation; hidden unless asked for.
const SYSTEM_PREFIXES: [&str; 5] = ["START ", "END ", "REPORT ", "INIT_START ", "INIT_REPORT "];

/// Whether a log line is one of Lambda's own (START, END, REPORT, INIT_START, INIT_REPORT).
pub fn is_system_line(message: &str) -> bool {
    SYSTEM_PREFIXES.iter().any(|p| message.starts_with(p))
}

/// The newest `n` lines of `lines` (system lines dropped unless `include_system`), oldest first;
/// lines with the same timestamp keep the order they were read in.
pub fn newest_lines(mut lines: Vec<LogLine>, n: usize, include_system: bool) -> Vec<LogLine> {
    if !include_system {
        lines.retain(|l| !is_system_line(&l.message));
    }
    lines.sort_by_key(|l| l.timestamp_ms);
    let skip = lines.len().saturating_sub(n);
    lines.split_off(skip)
}

/// Reads the function's log group: lines newer than `since_ms` when given (for `--follow`),
/// else the newest `n`.
pub async fn fetch(
    clients: &AwsClients,
    f: &TwinFunction,
    n: usize,
    include_system: bool,
    since_ms: Option<i64>,
) -> Result<Vec<LogLine>, CloudError> {
    let group = crate::logs::log_group_name(&f.cloud);
    if let Some(since) = since_ms {
        let lines = read_from(clients, &group, &f.local, Some(since + 1)).await?;
        return Ok(newest_lines(lines, n, include_system));
    }
    let now = chrono::Utc::now().timestamp_millis();
    let mut lines = Vec::new();
    for window in WINDOWS_MS {
        lines = read_from(clients, &group, &f.local, window.map(|w| now - w)).await?;
        let kept = lines
            .iter()
            .filter(|l| include_system || !is_system_line(&l.message))
            .count();
        if kept >= n {
            break;
        }
    }
    Ok(newest_lines(lines, n, include_system))
}

/// Every event of the group from `start_ms` (inclusive) on, across all pages and streams.
async fn read_from(
    clients: &AwsClients,
    group: &str,
    local: &str,
    start_ms: Option<i64>,
) -> Result<Vec<LogLine>, CloudError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = clients
            .logs
            .filter_log_events()
            .log_group_name(group)
            .set_start_time(start_ms)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| {
                let err = cloud(e);
                if err.class == ErrorClass::NotFound {
                    err.with_hint(format!(
                        "log group {group} does not exist: deploy `{local}`'s layer first"
                    ))
                } else {
                    err
                }
            })?;
        out.extend(page.events().iter().map(|e| LogLine {
            timestamp_ms: e.timestamp().unwrap_or_default(),
            message: e.message().unwrap_or_default().trim_end().to_string(),
        }));
        let next = page.next_token().map(str::to_string);
        // The same token twice means the service has nothing more for now.
        if next.is_none() || next == token {
            break;
        }
        token = next;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(t: i64, m: &str) -> LogLine {
        LogLine {
            timestamp_ms: t,
            message: m.to_string(),
        }
    }

    #[test]
    fn keeps_the_newest_lines_oldest_first_without_system_lines() {
        let lines = vec![
            line(5, "END RequestId: 1"),
            line(3, "b"),
            line(1, "START RequestId: 1 Version: $LATEST"),
            line(2, "a"),
            line(4, "c"),
            line(6, "REPORT RequestId: 1 Duration: 1 ms"),
            line(0, "INIT_START Runtime Version: provided:al2023"),
        ];
        let got = newest_lines(lines.clone(), 2, false);
        assert_eq!(got, vec![line(3, "b"), line(4, "c")]);
        let got = newest_lines(lines, 3, true);
        assert_eq!(
            got,
            vec![
                line(4, "c"),
                line(5, "END RequestId: 1"),
                line(6, "REPORT RequestId: 1 Duration: 1 ms")
            ]
        );
    }

    #[test]
    fn system_lines_are_recognised_by_prefix_only() {
        assert!(is_system_line("START RequestId: x"));
        assert!(is_system_line("INIT_START Runtime"));
        assert!(!is_system_line("STARTED processing"));
        assert!(!is_system_line("the END of it"));
    }
}
