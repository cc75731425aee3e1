//! Reading a config directory: every file is read and checked, and every problem is reported.

mod devices;
mod events;
mod hierarchy;
mod providers;
mod reader;
mod twin;

use std::path::Path;

use serde_json::Value;

use crate::cost;
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::model::{TwinConfig, TwinSettings};
use crate::providers::{Layer, ProviderName};
use crate::spans::Spans;
use crate::validate::{self, Source};
use reader::FileReader;

/// The twin settings file.
pub const CONFIG_FILE: &str = "config.json";
/// The device file.
pub const DEVICES_FILE: &str = "config_iot_devices.json";
/// The providers file.
pub const PROVIDERS_FILE: &str = "config_providers.json";
/// The optional hierarchy file.
pub const HIERARCHY_FILE: &str = "config_hierarchy.json";
/// The optional event rules file.
pub const EVENTS_FILE: &str = "config_events.json";

/// The files in report order.
const FILES: [&str; 5] = [
    CONFIG_FILE,
    DEVICES_FILE,
    PROVIDERS_FILE,
    HIERARCHY_FILE,
    EVENTS_FILE,
];

/// A file that parsed as JSON, with the positions of its values.
struct Doc {
    value: Value,
    spans: Spans,
    /// The text (BOM stripped), to place errors inside string values such as conditions.
    text: String,
}

/// Reads and validates `config.json`, `config_iot_devices.json`, `config_providers.json` and,
/// when present, `config_hierarchy.json` and `config_events.json` from `dir`, reporting every
/// problem at once. Legal but doubtful settings are in [`TwinConfig::warnings`].
pub fn load_dir(dir: &Path) -> Result<TwinConfig, Diagnostics> {
    let mut out: Vec<Diagnostic> = Vec::new();
    let config = read_doc(dir, CONFIG_FILE, true, &mut out);
    let devices = read_doc(dir, DEVICES_FILE, true, &mut out);
    let providers = read_doc(dir, PROVIDERS_FILE, true, &mut out);
    let hierarchy = read_doc(dir, HIERARCHY_FILE, false, &mut out);
    let events = read_doc(dir, EVENTS_FILE, false, &mut out);

    let twin = config.as_ref().map(|d| {
        twin::read(
            &mut FileReader::new(CONFIG_FILE, &d.spans, &mut out),
            &d.value,
        )
    });
    let devs = devices.as_ref().map(|d| {
        devices::read(
            &mut FileReader::new(DEVICES_FILE, &d.spans, &mut out),
            &d.value,
        )
    });
    let provs = providers.as_ref().map(|d| {
        providers::read(
            &mut FileReader::new(PROVIDERS_FILE, &d.spans, &mut out),
            &d.value,
        )
    });
    let twin_name = twin.as_ref().and_then(|t| t.name.as_deref());
    let device_ids: Option<Vec<validate::DeviceRef>> = match (&devices, &devs) {
        (Some(d), Some(part)) if d.value.is_array() => Some(part.ids.clone()),
        _ => None,
    };
    let tree = hierarchy.as_ref().map(|d| {
        let ctx = hierarchy::Context {
            twin: twin_name,
            device_ids: device_ids
                .as_ref()
                .map(|ids| ids.iter().map(|d| d.id.as_str()).collect()),
            twinmaker: provs
                .as_ref()
                .and_then(|p| p.get(Layer::L4))
                .is_some_and(|p| p == ProviderName::Aws),
        };
        hierarchy::read(
            &mut FileReader::new(HIERARCHY_FILE, &d.spans, &mut out),
            &d.value,
            &ctx,
        )
    });

    let rules = events.as_ref().map(|d| {
        let devices_ok = devices.is_some()
            && devs
                .as_ref()
                .is_some_and(|p| p.devices.len() == p.ids.len());
        let ctx = events::Context {
            hierarchy: tree.as_ref().and_then(|t| t.as_deref()),
            hierarchy_present: hierarchy.is_some(),
            devices: devs
                .as_ref()
                .filter(|_| devices_ok)
                .map(|p| p.devices.as_slice()),
            dir,
            text: &d.text,
            lambda_twin: twin_name.filter(|_| {
                provs
                    .as_ref()
                    .and_then(|p| p.get(Layer::L2))
                    .is_some_and(|p| p == ProviderName::Aws)
            }),
        };
        events::read(
            &mut FileReader::new(EVENTS_FILE, &d.spans, &mut out),
            &d.value,
            &ctx,
        )
    });

    if let (Some(name), Some(p)) = (twin_name, &provs) {
        let mut ids = device_ids.clone().unwrap_or_default();
        // Every device gets its own processor function when the AWS settings say so.
        if p.aws.as_ref().is_some_and(|a| a.processor_per_device) {
            for d in &mut ids {
                d.own_processor = true;
            }
        }
        for problem in validate::names(name, |l| p.get(l), &ids) {
            let (file, doc, path, item) = match problem.source {
                Source::Twin => (
                    CONFIG_FILE,
                    &config,
                    "$.digital_twin_name".to_string(),
                    None,
                ),
                Source::Device(i) => (
                    DEVICES_FILE,
                    &devices,
                    format!("$[{i}].id"),
                    ids.iter()
                        .find(|d| d.index == i)
                        .map(|d| reader::label("device", &d.id)),
                ),
            };
            if let Some(doc) = doc {
                let mut r = FileReader::new(file, &doc.spans, &mut out);
                r.set_item(item);
                r.at_value(&path, problem.message());
            }
        }
    }

    // On AWS the rules travel in the persister's environment (see `events_env`).
    if let (Some(name), Some(p), Some(part), Some(doc)) = (twin_name, &provs, &rules, &events) {
        if p.get(Layer::L2) == Some(ProviderName::Aws) && !part.rules.is_empty() {
            let json = crate::events_env::rules_json(&part.rules);
            let bytes = crate::events_env::persister_env_bytes(name, &json);
            if bytes > crate::events_env::LAMBDA_ENV_BYTES {
                FileReader::new(EVENTS_FILE, &doc.spans, &mut out).at_value(
                    "$",
                    format!(
                        "the rules take {} bytes as JSON, and with the persister's other variables its environment would be {bytes} bytes; Lambda allows {} in all (layer 2 is on AWS): shorten or remove rules (e.g. shorter payloads and messages)",
                        json.len(),
                        crate::events_env::LAMBDA_ENV_BYTES
                    ),
                );
            }
        }
    }

    if !out.is_empty() {
        sort(&mut out);
        return Err(Diagnostics(out));
    }
    let mut warnings = twin
        .as_ref()
        .map(|t| t.warnings.clone())
        .unwrap_or_default();
    if let Some(p) = &provs {
        warnings.extend(p.warnings.iter().cloned());
    }
    // Rules are evaluated by layer 2's persister (on AWS or Azure): with no layer 2 they load
    // and are checked, and the user is told they will not run rather than finding out from a
    // silent twin.
    if let (Some(p), Some(part)) = (&provs, &rules) {
        let l2 = p.get(Layer::L2);
        if !part.rules.is_empty() && !matches!(l2, Some(ProviderName::Aws | ProviderName::Azure)) {
            warnings.push(Diagnostic {
                file: EVENTS_FILE.to_string(),
                path: "$".to_string(),
                line: 1,
                column: 1,
                message: format!(
                    "event rules are evaluated by layer 2's persister (layer_2_provider `aws` or `azure`); with `{}` they are checked but not deployed",
                    l2.map(|l| l.as_str()).unwrap_or("none")
                ),
                item: None,
            });
        }
    }
    let rules = rules.map(|part| {
        warnings.extend(part.warnings);
        part.rules
    });
    sort(&mut warnings);
    let assembled = (|| {
        let t = twin?;
        Some(TwinConfig {
            dir: dir.to_path_buf(),
            twin: TwinSettings {
                digital_twin_name: t.name?,
                hot_storage_size_in_days: t.hot_days?,
                cold_storage_size_in_days: t.cold_days?,
                mode: t.mode?,
                expected_load: t.expected_load?,
            },
            devices: devs?.devices,
            providers: provs?.complete()?,
            hierarchy: match tree {
                None => None,
                Some(t) => Some(t?),
            },
            events: rules.unwrap_or_default(),
            warnings,
        })
    })();
    let mut loaded = assembled.ok_or_else(|| {
        // Every reader reports whatever it leaves out, so this is a bug here, not a user error.
        Diagnostics(vec![Diagnostic {
            file: CONFIG_FILE.to_string(),
            path: "$".to_string(),
            line: 0,
            column: 0,
            message: "internal error: the config was incomplete without a reported problem"
                .to_string(),
            item: None,
        }])
    })?;
    add_cost_traps(&mut loaded, config.as_ref(), devices.as_ref());
    Ok(loaded)
}

/// Adds the cost traps of the loaded config to its warnings, at the settings they come from.
fn add_cost_traps(loaded: &mut TwinConfig, config: Option<&Doc>, devices: Option<&Doc>) {
    let traps = cost::traps(&cost::Tiers {
        hot_days: loaded.twin.hot_storage_size_in_days,
        cold_days: loaded.twin.cold_storage_size_in_days,
        cold: loaded.providers.get(Layer::L3Cold),
        archive: loaded.providers.get(Layer::L3Archive),
        devices: &loaded.devices,
        rate: loaded
            .twin
            .expected_load
            .map(|l| l.messages_per_device_per_minute),
    });
    // A diagnostic only needs the spans; nothing is reported through this list.
    let mut unused = Vec::new();
    for trap in traps {
        let doc = if trap.file == CONFIG_FILE {
            config
        } else {
            devices
        };
        let Some(doc) = doc else { continue };
        let r = FileReader::new(trap.file, &doc.spans, &mut unused);
        loaded.warnings.push(r.diagnostic(&trap.path, trap.message));
    }
    sort(&mut loaded.warnings);
}

/// Reads and parses one file; `None` (with a diagnostic when `required`) if that fails.
fn read_doc(
    dir: &Path,
    file: &'static str,
    required: bool,
    out: &mut Vec<Diagnostic>,
) -> Option<Doc> {
    let path = dir.join(file);
    let whole = |message: String| Diagnostic {
        file: file.to_string(),
        path: "$".to_string(),
        line: 0,
        column: 0,
        message,
        item: None,
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if required {
                out.push(whole(format!(
                    "required file is missing: expected {}",
                    path.display()
                )));
            }
            return None;
        }
        Err(e) => {
            out.push(whole(format!("cannot read {}: {e}", path.display())));
            return None;
        }
    };
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            out.push(whole(format!(
                "the file is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )));
            return None;
        }
    };
    // Editors on Windows may write a byte order mark, which JSON parsers reject.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            out.push(syntax_error(file, text, &e));
            return None;
        }
    };
    let spans = Spans::of(text);
    for dup in &spans.duplicates {
        out.push(Diagnostic {
            file: file.to_string(),
            path: dup.path.clone(),
            line: dup.again.line,
            column: dup.again.column,
            message: format!(
                "duplicate key `{}` (first at {}:{}); each key may appear once per object",
                dup.key, dup.first.line, dup.first.column
            ),
            item: None,
        });
    }
    Some(Doc {
        value,
        spans,
        text: text.to_string(),
    })
}

/// A serde_json syntax error as a diagnostic, with its column counted in characters.
fn syntax_error(file: &str, text: &str, e: &serde_json::Error) -> Diagnostic {
    let full = e.to_string();
    let message = match full.rfind(" at line ") {
        Some(i) => &full[..i],
        None => &full,
    };
    let line = e.line().max(1);
    let column = text
        .split('\n')
        .nth(line - 1)
        .map(|l| {
            let bytes = l.as_bytes();
            let upto = e.column().min(bytes.len());
            bytes[..upto].iter().filter(|b| **b & 0xC0 != 0x80).count()
        })
        .unwrap_or(e.column())
        .max(1);
    Diagnostic {
        file: file.to_string(),
        path: "$".to_string(),
        line,
        column,
        message: format!("invalid JSON: {message}"),
        item: None,
    }
}

/// Report order: by file, then position; problems at the same place keep their discovery order.
fn sort(out: &mut [Diagnostic]) {
    out.sort_by_key(|d| {
        let rank = FILES
            .iter()
            .position(|f| *f == d.file)
            .unwrap_or(FILES.len());
        (rank, d.line, d.column)
    });
}
