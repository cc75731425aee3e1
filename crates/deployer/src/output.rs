//! Results on stdout: tables for people, one JSON document under `--json`.

use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use serde::Serialize;
use twin_engine::{Action, InfoRow, Plan, Report};

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

/// `info` for people.
pub fn info_table(rows: &[InfoRow]) -> String {
    if rows.is_empty() {
        return "No resources: every layer's provider is `none`.".into();
    }
    let mut t = table(&["layer", "provider", "kind", "name", "id", "status"]);
    for r in rows {
        t.add_row(vec![
            r.layer.to_string(),
            r.provider.as_str().to_string(),
            r.kind.clone(),
            r.name.clone(),
            r.id.clone(),
            r.status.to_string(),
        ]);
    }
    t.to_string()
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
