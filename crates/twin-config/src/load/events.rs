//! `config_events.json`: event rules in the established tool's format, an array of
//! `{condition, action}` (plus this tool's optional `name`, `description` and `fire`).
//!
//! A condition that does not parse, names an unknown entity/device/property or compares unlike
//! types is reported at the line:column of the offending character inside the condition string.

use std::path::Path;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use twin_events::{Action, Condition, Feedback, Fire, PropertyRef, Resolved, Rule, ValueType};

use super::reader::{kind, label, FileReader};
use crate::diagnostics::Diagnostic;
use crate::model::{DataType, Device, HierarchyEntity, HierarchyNode};
use crate::names;
use crate::spans::{element, member, Pos};

const RULE_KEYS: [&str; 5] = ["condition", "action", "name", "description", "fire"];
const FUNCTION_KEYS: [&str; 4] = ["type", "functionName", "autoDeploy", "feedback"];
const FEEDBACK_KEYS: [&str; 3] = ["type", "iotDeviceId", "payload"];
const NOTIFICATION_KEYS: [&str; 2] = ["type", "message"];
/// The established tool's workflow actions, one per cloud: loaded, not deployed by this version.
const WORKFLOW_KINDS: [&str; 3] = ["step_function", "logic_app", "workflow"];

/// What the rules are checked against; `None` where that file is missing or broken.
pub(crate) struct Context<'c> {
    /// The hierarchy, when `config_hierarchy.json` loaded.
    pub hierarchy: Option<&'c [HierarchyEntity]>,
    /// Whether `config_hierarchy.json` exists (it may exist and be broken).
    pub hierarchy_present: bool,
    /// The devices that loaded without problems; `None` when the device file did not load.
    pub devices: Option<&'c [Device]>,
    /// The config directory: `lambdas/<functionName>` is looked for beside it or above it.
    pub dir: &'c Path,
    /// The file's text, to place a character of a condition at its line:column.
    pub text: &'c str,
    /// The twin's name when layer 2 is on AWS, where a rule's own function becomes the Lambda
    /// function `<twin>-event-<crate>`, whose name must fit Lambda's limits.
    pub lambda_twin: Option<&'c str>,
}

/// The rules that read without problems, and the warnings about them.
#[derive(Debug, Default)]
pub(crate) struct EventsPart {
    pub rules: Vec<Rule>,
    pub warnings: Vec<Diagnostic>,
}

pub(crate) fn read(r: &mut FileReader<'_>, root: &Value, ctx: &Context<'_>) -> EventsPart {
    let mut part = EventsPart::default();
    let Some(items) = r.array(root, "$", "an array of {\"condition\", \"action\"} rules") else {
        return part;
    };
    let mut keys_seen: Vec<(String, Pos)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = element("$", i);
        let Some(map) = r.object(item, &path, "a rule object {\"condition\", \"action\"}") else {
            continue;
        };
        let before = r.count();
        let name = map.get("name").and_then(Value::as_str);
        r.set_item(Some(match name {
            Some(n) => label("rule", n),
            None => format!("rule {}", i + 1),
        }));
        r.keys(
            map,
            &path,
            &RULE_KEYS,
            &[
                (
                    "condition",
                    "e.g. \"room-1.sensor-1.temperature > DOUBLE(30)\"",
                ),
                ("action", "an object with a `type`"),
            ],
        );
        let key = match map.get("name") {
            None => {
                let k = content_key(map);
                if let Some((_, first)) = keys_seen.iter().find(|(seen, _)| *seen == k) {
                    r.at_value(
                        &path,
                        format!(
                            "this rule repeats the rule at {}:{} (same condition and action, so both would fire on every match); remove one, or give each a `name`",
                            first.line, first.column
                        ),
                    );
                    None
                } else {
                    keys_seen.push((k.clone(), r.pos(&path)));
                    Some(k)
                }
            }
            Some(v) => r.string(v, &member(&path, "name"), "a rule name, a string").and_then(|n| {
                let p = member(&path, "name");
                if let Err(e) = names::RULE_NAME.check(n) {
                    r.at_value(&p, e.to_string());
                    return None;
                }
                if let Some((_, first)) = keys_seen.iter().find(|(k, _)| k == n) {
                    r.at_value(
                        &p,
                        format!(
                            "duplicate rule name `{n}` (first at {}:{}); a rule's name keys its stored state",
                            first.line, first.column
                        ),
                    );
                    return None;
                }
                keys_seen.push((n.to_string(), r.pos(&p)));
                Some(n.to_string())
            }),
        };
        let description = match map.get("description") {
            None => Some(None),
            Some(v) => r
                .string(v, &member(&path, "description"), "a description, a string")
                .map(|d| Some(d.to_string())),
        };
        let fire = match map.get("fire") {
            None => Some(Fire::default()),
            Some(v) => r.one_of(
                v,
                &member(&path, "fire"),
                "fire mode",
                &[
                    ("on_change", Fire::OnChange),
                    ("every_message", Fire::EveryMessage),
                ],
            ),
        };
        let condition = map
            .get("condition")
            .and_then(|v| read_condition(r, v, &member(&path, "condition"), ctx));
        let action = map
            .get("action")
            .and_then(|v| read_action(r, v, &member(&path, "action"), ctx, &mut part.warnings));
        r.set_item(None);
        if let (Some(key), Some(description), Some(fire), Some(condition), Some(action)) =
            (key, description, fire, condition, action)
        {
            if r.count() == before {
                part.rules.push(Rule {
                    key,
                    description,
                    condition,
                    action,
                    fire,
                });
            }
        }
    }
    part
}

fn read_condition(
    r: &mut FileReader<'_>,
    value: &Value,
    path: &str,
    ctx: &Context<'_>,
) -> Option<Condition> {
    let text = r.string(
        value,
        path,
        "a condition string, e.g. \"room-1.sensor-1.temperature > DOUBLE(30)\"",
    )?;
    let start = r.pos(path);
    let mut condition = match Condition::parse(text) {
        Ok(c) => c,
        Err(e) => {
            let at = inside_string(ctx.text, start, e.at);
            r.at_position(path, at, format!("condition: {e}"));
            return None;
        }
    };
    let schema = TwinSchema { ctx };
    let errors = twin_events::check(&mut condition.expr, &schema);
    if errors.is_empty() {
        return Some(condition);
    }
    for e in errors {
        let at = inside_string(ctx.text, start, e.span.start);
        r.at_position(path, at, format!("condition: {}", e.message));
    }
    None
}

/// Where the `offset`-th character of the JSON string starting (at its quote) at `start` is in
/// the file: escapes such as `\"` take more characters in the file than in the string.
fn inside_string(text: &str, start: Pos, offset: usize) -> Pos {
    let Some(line) = text.split('\n').nth(start.line.saturating_sub(1)) else {
        return start;
    };
    // A JSON string cannot span lines, so only the column moves.
    let raw: Vec<char> = line.chars().skip(start.column).collect();
    let mut i = 0;
    let mut decoded = 0;
    while decoded < offset && i < raw.len() && raw[i] != '"' {
        if raw[i] == '\\' {
            let is_high_surrogate = raw.get(i + 1) == Some(&'u')
                && raw
                    .get(i + 2..i + 6)
                    .map(|h| h.iter().collect::<String>())
                    .and_then(|h| u16::from_str_radix(&h, 16).ok())
                    .is_some_and(|u| (0xD800..0xDC00).contains(&u));
            i += match raw.get(i + 1) {
                Some('u') if is_high_surrogate => 12,
                Some('u') => 6,
                _ => 2,
            };
        } else {
            i += 1;
        }
        decoded += 1;
    }
    Pos {
        line: start.line,
        column: start.column + 1 + i,
    }
}

struct TwinSchema<'x, 'c> {
    ctx: &'x Context<'c>,
}

fn find_entity<'h>(tree: &'h [HierarchyEntity], id: &str) -> Option<&'h HierarchyEntity> {
    tree.iter().find_map(|e| entity_ref(e, id))
}

fn entity_ref<'h>(e: &'h HierarchyEntity, id: &str) -> Option<&'h HierarchyEntity> {
    if e.id == id {
        return Some(e);
    }
    e.children.iter().find_map(|c| match c {
        HierarchyNode::Entity(n) => entity_ref(n, id),
        HierarchyNode::Component { .. } => None,
    })
}

fn all_entities(tree: &[HierarchyEntity], out: &mut Vec<String>) {
    for e in tree {
        out.push(e.id.clone());
        for c in &e.children {
            if let HierarchyNode::Entity(n) = c {
                all_entities(std::slice::from_ref(n), out);
            }
        }
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items.join(", ")
}

fn value_type(t: DataType) -> ValueType {
    match t {
        DataType::Double => ValueType::Double,
        DataType::Integer => ValueType::Integer,
        DataType::Long => ValueType::Long,
        DataType::Boolean => ValueType::Boolean,
        DataType::String => ValueType::String,
    }
}

impl twin_events::Schema for TwinSchema<'_, '_> {
    fn resolve(&self, p: &PropertyRef) -> Result<Option<Resolved>, String> {
        let Some(tree) = self.ctx.hierarchy else {
            if self.ctx.hierarchy_present {
                return Ok(None);
            }
            return Err(format!(
                "`{p}` names entity `{}`, but there is no config_hierarchy.json; a condition names `<entity>.<device>.<property>` from the hierarchy",
                p.entity
            ));
        };
        let Some(entity) = find_entity(tree, &p.entity) else {
            let mut ids = Vec::new();
            all_entities(tree, &mut ids);
            return Err(format!(
                "unknown entity `{}`; the hierarchy's entities are {}",
                p.entity,
                list(&ids)
            ));
        };
        let components: Vec<(&str, &str)> = entity
            .children
            .iter()
            .filter_map(|c| match c {
                HierarchyNode::Component {
                    name,
                    iot_device_id,
                    ..
                } => Some((name.as_str(), iot_device_id.as_str())),
                HierarchyNode::Entity(_) => None,
            })
            .collect();
        let Some((_, device_id)) = components
            .iter()
            .find(|(name, id)| *name == p.device || *id == p.device)
        else {
            let names: Vec<String> = components.iter().map(|(n, _)| n.to_string()).collect();
            return Err(format!(
                "entity `{}` has no component or device `{}`; its components are {}",
                p.entity,
                p.device,
                list(&names)
            ));
        };
        let Some(devices) = self.ctx.devices else {
            return Ok(None);
        };
        // A device with problems of its own is left out of the list and reported there.
        let Some(device) = devices.iter().find(|d| d.id == *device_id) else {
            return Ok(None);
        };
        if let Some(prop) = device.properties.iter().find(|x| x.name == p.property) {
            return Ok(Some(Resolved {
                iot_device_id: device.id.clone(),
                value_type: value_type(prop.data_type),
            }));
        }
        let telemetry: Vec<String> = device.properties.iter().map(|x| x.name.clone()).collect();
        if device.const_properties.iter().any(|c| c.name == p.property) {
            return Err(format!(
                "`{}` is a constant property of device `{}`, which never changes; conditions read its telemetry properties: {}",
                p.property,
                device.id,
                list(&telemetry)
            ));
        }
        Err(format!(
            "device `{}` has no property `{}`; its properties are {}",
            device.id,
            p.property,
            list(&telemetry)
        ))
    }
}

fn read_action(
    r: &mut FileReader<'_>,
    value: &Value,
    path: &str,
    ctx: &Context<'_>,
    warnings: &mut Vec<Diagnostic>,
) -> Option<Action> {
    let map = r.object(value, path, "an action object with a `type`")?;
    let type_path = member(path, "type");
    let Some(t) = map.get("type") else {
        r.at_value(
            &type_path,
            "missing required key `type` (lambda, mqtt or notification)",
        );
        return None;
    };
    #[derive(Clone, Copy)]
    enum Kind {
        Function,
        Feedback,
        Notification,
        Workflow(&'static str),
    }
    let mut options: Vec<(&str, Kind)> = vec![
        ("lambda", Kind::Function),
        ("mqtt", Kind::Feedback),
        ("notification", Kind::Notification),
    ];
    options.extend(WORKFLOW_KINDS.iter().map(|k| (*k, Kind::Workflow(k))));
    match r.one_of(t, &type_path, "action type", &options)? {
        Kind::Function => read_function(r, map, path, ctx),
        Kind::Feedback => read_feedback(r, map, path, ctx).map(Action::Feedback),
        Kind::Notification => {
            r.keys(
                map,
                path,
                &NOTIFICATION_KEYS,
                &[(
                    "message",
                    "what the notification says: a string or any JSON value",
                )],
            );
            Some(Action::Notification {
                message: map.get("message")?.clone(),
            })
        }
        Kind::Workflow(kind) => {
            warnings.push(r.diagnostic(
                &type_path,
                format!("`{kind}` actions are not deployed by this version; the rule is checked but does nothing"),
            ));
            Some(Action::Workflow {
                kind: kind.to_string(),
            })
        }
    }
}

fn read_function(
    r: &mut FileReader<'_>,
    map: &Map<String, Value>,
    path: &str,
    ctx: &Context<'_>,
) -> Option<Action> {
    r.keys(
        map,
        path,
        &FUNCTION_KEYS,
        &[(
            "functionName",
            "the name of a function crate under lambdas/",
        )],
    );
    let auto_deploy = match map.get("autoDeploy") {
        None => Some(true),
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => {
            r.at_value(
                &member(path, "autoDeploy"),
                format!("expected true or false, found {}", kind(other)),
            );
            None
        }
    };
    let name_path = member(path, "functionName");
    let function_name = map.get("functionName").and_then(|v| {
        let name = r.string(v, &name_path, "a function crate name, a string")?;
        if let Err(e) = names::PROCESSOR_CRATE.check(name) {
            r.at_value(&name_path, e.to_string());
            return None;
        }
        Some(name.to_string())
    });
    if let (Some(name), Some(true)) = (&function_name, auto_deploy) {
        if let Err(message) = find_function_crate(ctx.dir, name) {
            r.at_value(&name_path, message);
        } else if let Some(twin) = ctx.lambda_twin {
            let deployed = names::event_function_name(twin, name);
            if let Err(e) = names::LAMBDA_FUNCTION.check(&deployed) {
                r.at_value(
                    &name_path,
                    format!("{e} (function `{name}` deployed with the twin); shorten the crate name or the twin name"),
                );
            }
        }
    }
    let feedback = match map.get("feedback") {
        None => Some(None),
        Some(v) => {
            let fpath = member(path, "feedback");
            let fmap = r.object(
                v,
                &fpath,
                "a feedback object {\"type\": \"mqtt\", \"iotDeviceId\", \"payload\"}",
            )?;
            let tpath = member(&fpath, "type");
            match fmap.get("type") {
                None => r.at_value(&tpath, "missing required key `type` (mqtt)"),
                Some(t) => {
                    r.one_of(t, &tpath, "feedback type", &[("mqtt", ())]);
                }
            }
            read_feedback(r, fmap, &fpath, ctx).map(Some)
        }
    };
    Some(Action::Function {
        function_name: function_name?,
        auto_deploy: auto_deploy?,
        feedback: feedback?,
    })
}

/// The stored-state key of a rule without a `name`: a hash of what it is (everything but its
/// description), not of where it is, so reordering the file keeps every rule's firing state
/// and changing a rule starts it afresh, as a new rule.
fn content_key(rule: &Map<String, Value>) -> String {
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), canonical(&m[k])))
                        .collect(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let what: Map<String, Value> = rule
        .iter()
        .filter(|(k, _)| k.as_str() != "description")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let digest = Sha256::digest(canonical(&Value::Object(what)).to_string().as_bytes());
    format!("rule-{}", &hex::encode(digest)[..12])
}

/// `lambdas/<name>/Cargo.toml` in the config directory or a directory above it.
fn find_function_crate(dir: &Path, name: &str) -> Result<(), String> {
    let Some(lambdas) = dir
        .ancestors()
        .map(|d| d.join("lambdas"))
        .find(|d| d.is_dir())
    else {
        return Err(format!(
            "function `{name}` is deployed with the twin (autoDeploy), but there is no lambdas/ folder in {} or above it; create the crate lambdas/{name}, or set \"autoDeploy\": false for a function that exists already",
            dir.display()
        ));
    };
    if lambdas.join(name).join("Cargo.toml").is_file() {
        return Ok(());
    }
    Err(format!(
        "function crate `{name}` not found: {} does not exist; create the crate there, or set \"autoDeploy\": false for a function that exists already",
        lambdas.join(name).join("Cargo.toml").display()
    ))
}

fn read_feedback(
    r: &mut FileReader<'_>,
    map: &Map<String, Value>,
    path: &str,
    ctx: &Context<'_>,
) -> Option<Feedback> {
    if map.contains_key("topic") {
        r.at_key(
            &member(path, "topic"),
            "feedback goes to the device's own feedback topic, which only it may read: name the device with `iotDeviceId` instead of `topic`",
        );
        return None;
    }
    r.keys(
        map,
        path,
        &FEEDBACK_KEYS,
        &[
            ("iotDeviceId", "the device that receives the feedback"),
            (
                "payload",
                "what the device receives: a string or any JSON value",
            ),
        ],
    );
    let dpath = member(path, "iotDeviceId");
    let device = map.get("iotDeviceId").and_then(|v| {
        let id = r.string(v, &dpath, "a device id, a string")?;
        if let Some(devices) = ctx.devices {
            if !devices.iter().any(|d| d.id == id) {
                let ids: Vec<String> = devices.iter().map(|d| d.id.clone()).collect();
                r.at_value(
                    &dpath,
                    format!(
                        "unknown device `{id}`; config_iot_devices.json defines {}",
                        list(&ids)
                    ),
                );
                return None;
            }
        }
        Some(id.to_string())
    });
    Some(Feedback {
        iot_device_id: device?,
        payload: map.get("payload")?.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_of_a_condition_is_placed_past_the_escapes_before_it() {
        let text = "[\n  {\"condition\": \"a.b.c == STRING(\\\"x\\\") AND q\"}\n]";
        // The string starts (at its quote) on line 2, column 17.
        let start = Pos {
            line: 2,
            column: 17,
        };
        // Character 0 is just after the quote.
        assert_eq!(inside_string(text, start, 0).column, 18);
        // `AND` is character 23 of the decoded text; two `\"` escapes before it add 2 columns.
        let decoded = "a.b.c == STRING(\"x\") AND q";
        let and = decoded.find("AND").expect("AND");
        assert_eq!(inside_string(text, start, and).column, 18 + and + 2);
    }
}
