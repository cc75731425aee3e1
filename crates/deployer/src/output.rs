//! Results on stdout: tables for people, one JSON document under `--json`.

use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use serde::Serialize;
use twin_config::{Layer, ProviderName};
use twin_engine::{Action, InfoRow, InfoStatus, Plan, Report};

/// Prints a value as the single JSON document of a command.
pub fn json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("cannot encode the result as JSON: {e}"),
    }
}

pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

/// The width tables are fitted to: the terminal's, else `COLUMNS`, else 120.
pub fn width() -> u16 {
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|c| *c >= 40);
    Table::new().width().or(from_env).unwrap_or(120)
}

/// The part of a cloud id a person needs beside the name: an ARN without its
/// `arn:partition:service:region:account:` prefix, an Azure id from its provider namespace on, a
/// URL without its scheme; cut to 40 characters.
pub fn short_id(id: &str) -> String {
    let short = if let Some(rest) = id.strip_prefix("arn:") {
        rest.splitn(5, ':').nth(4).unwrap_or(rest)
    } else if let Some(i) = id.to_ascii_lowercase().rfind("/providers/") {
        &id[i + "/providers/".len()..]
    } else if let Some((_, rest)) = id.split_once("://") {
        rest
    } else {
        id
    };
    const MAX: usize = 40;
    if short.chars().count() <= MAX {
        short.to_string()
    } else {
        let tail: String = short
            .chars()
            .rev()
            .take(MAX - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}

/// `info` for people: a summary line, then per layer its counts and a table fitted to `width`
/// columns; ids short unless `wide`.
pub fn info_table(rows: &[InfoRow], wide: bool, width: u16) -> String {
    if rows.is_empty() {
        return "No resources: every layer's provider is `none`.".into();
    }
    let summary = |rows: &[&InfoRow]| {
        let count = |f: &dyn Fn(&InfoStatus) -> bool| rows.iter().filter(|r| f(&r.status)).count();
        let mut parts = vec![format!("{} ok", count(&|s| matches!(s, InfoStatus::Ok)))];
        for (label, n) in [
            ("drifted", count(&|s| matches!(s, InfoStatus::Drifted(_)))),
            ("missing", count(&|s| matches!(s, InfoStatus::Missing))),
            (
                "not deployed",
                count(&|s| matches!(s, InfoStatus::NotDeployed)),
            ),
            ("orphaned", count(&|s| matches!(s, InfoStatus::Orphaned))),
        ] {
            if n > 0 {
                parts.push(format!("{n} {label}"));
            }
        }
        parts.join(", ")
    };
    let all: Vec<&InfoRow> = rows.iter().collect();
    let mut out = format!("{} resources: {}", rows.len(), summary(&all));
    let mut layers: Vec<(Layer, ProviderName)> = Vec::new();
    for r in rows {
        if !layers.contains(&(r.layer, r.provider)) {
            layers.push((r.layer, r.provider));
        }
    }
    for (layer, provider) in layers {
        let these: Vec<&InfoRow> = rows
            .iter()
            .filter(|r| r.layer == layer && r.provider == provider)
            .collect();
        out.push_str(&format!(
            "\n\n{layer} on {}: {}\n",
            provider.as_str(),
            summary(&these)
        ));
        let mut t = table(&["kind", "name", "status", "id"]);
        t.set_width(width);
        for r in these {
            t.add_row(vec![
                r.kind.clone(),
                r.name.clone(),
                r.status.to_string(),
                if wide { r.id.clone() } else { short_id(&r.id) },
            ]);
        }
        out.push_str(&t.to_string());
    }
    out
}

/// `info --json`: `[{layer, provider, kind, name, id, status}]` with short layer names.
pub fn info_json(rows: &[InfoRow]) -> serde_json::Value {
    rows.iter()
        .map(|r| {
            serde_json::json!({
                "layer": r.layer.short(),
                "provider": r.provider.as_str(),
                "kind": r.kind,
                "name": r.name,
                "id": r.id,
                "status": r.status.to_string(),
            })
        })
        .collect()
}

/// `plan` for people: the changes, then a summary line.
pub fn plan_text(plan: &Plan) -> String {
    let changes: Vec<_> = plan
        .items
        .iter()
        .filter(|i| i.action != Action::Unchanged)
        .collect();
    let mut out = String::new();
    if !changes.is_empty() {
        let mut t = table(&["action", "layer", "kind", "name", "drifted"]);
        for i in changes {
            t.add_row(vec![
                i.action.verb().to_string(),
                i.layer.to_string(),
                i.kind.clone(),
                i.name.clone(),
                i.drift.join(", "),
            ]);
        }
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out.push_str(&format!(
        "Plan: {} to create, {} to update, {} to delete, {} unchanged.",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Delete),
        plan.count(Action::Unchanged)
    ));
    out
}

/// `plan --json`.
pub fn plan_json(plan: &Plan) -> serde_json::Value {
    serde_json::json!({
        "create": plan.count(Action::Create),
        "update": plan.count(Action::Update),
        "delete": plan.count(Action::Delete),
        "unchanged": plan.count(Action::Unchanged),
        "items": plan.items.iter().map(|i| serde_json::json!({
            "action": i.action, "layer": i.layer.short(), "provider": i.provider.as_str(),
            "kind": i.kind, "name": i.name, "drift": i.drift,
        })).collect::<Vec<_>>(),
    })
}

/// A deploy or destroy summary for people.
pub fn report_text(verb: &str, twin: &str, r: &Report, secs: f64) -> String {
    format!(
        "{verb} twin '{twin}' in {secs:.1}s: {} created, {} updated, {} unchanged, {} deleted.",
        r.created, r.updated, r.unchanged, r.deleted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(layer: Layer, kind: &str, name: &str, id: &str, status: InfoStatus) -> InfoRow {
        InfoRow {
            layer,
            provider: ProviderName::Aws,
            kind: kind.into(),
            name: name.into(),
            id: id.into(),
            status,
        }
    }

    #[test]
    fn info_groups_by_layer_counts_each_and_fits_the_width() {
        let rows = vec![
            row(Layer::L1, "iot_topic_rule", "digital_twin_telemetry_to_dispatcher",
                "arn:aws:iot:us-east-1:123456789012:rule/digital_twin_telemetry_to_dispatcher", InfoStatus::Ok),
            row(Layer::L1, "lambda_function", "digital-twin-dispatcher",
                "arn:aws:lambda:us-east-1:123456789012:function:digital-twin-dispatcher", InfoStatus::Drifted(vec!["memory".into(), "environment".into()])),
            row(Layer::L3Hot, "iam_role", "digital-twin-hot-to-cold-mover-role-with-a-very-long-name",
                "arn:aws:iam::123456789012:role/digital-twin-hot-to-cold-mover-role-with-a-very-long-name", InfoStatus::Missing),
        ];
        let text = info_table(&rows, false, 120);
        for line in text.lines() {
            assert!(
                line.chars().count() <= 120,
                "{} columns: {line}",
                line.chars().count()
            );
        }
        assert!(
            text.starts_with("3 resources: 1 ok, 1 drifted, 1 missing"),
            "{text}"
        );
        assert!(text.contains("on aws: 1 ok, 1 drifted"), "{text}");
        // Unwrapped (a wide terminal), the short id reads whole.
        let roomy = info_table(&rows, false, 400);
        assert!(
            roomy.contains("function:digital-twin-dispatcher"),
            "{roomy}"
        );
        assert!(!roomy.contains("arn:aws:lambda"), "short ids: {roomy}");
        let wide = info_table(&rows, true, 400);
        assert!(
            wide.contains("arn:aws:lambda:us-east-1:123456789012:function:digital-twin-dispatcher"),
            "{wide}"
        );
    }

    #[test]
    fn short_ids_drop_what_a_person_does_not_need() {
        assert_eq!(
            short_id("arn:aws:s3:::digital-twin-cold"),
            "digital-twin-cold"
        );
        assert_eq!(
            short_id("/subscriptions/0/resourceGroups/t-rg/providers/Microsoft.Web/sites/t-app"),
            "Microsoft.Web/sites/t-app"
        );
        assert_eq!(
            short_id("https://abc.execute-api.us-east-1.amazonaws.com"),
            "abc.execute-api.us-east-1.amazonaws.com"
        );
        let long = short_id(&format!("arn:aws:iam::1:role/{}", "x".repeat(60)));
        assert_eq!(long.chars().count(), 40);
        assert!(long.starts_with('…'));
    }
}
