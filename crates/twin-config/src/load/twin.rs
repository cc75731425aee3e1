//! `config.json`: the twin's name, storage retention and log mode.

use serde_json::Value;

use super::reader::{kind, FileReader};
use crate::diagnostics::Diagnostic;
use crate::model::LogMode;
use crate::names;

/// Whatever of `config.json` was readable; `None` fields had a diagnostic.
#[derive(Debug, Default)]
pub(crate) struct TwinPart {
    pub name: Option<String>,
    pub hot_days: Option<u32>,
    pub cold_days: Option<u32>,
    pub mode: Option<LogMode>,
    /// Legal but doubtful settings.
    pub warnings: Vec<Diagnostic>,
}

const KEYS: [&str; 4] = [
    "digital_twin_name",
    "hot_storage_size_in_days",
    "cold_storage_size_in_days",
    "mode",
];

pub(crate) fn read(r: &mut FileReader<'_>, root: &Value) -> TwinPart {
    let mut part = TwinPart::default();
    let Some(map) = r.object(root, "$", "an object with the twin settings") else {
        return part;
    };
    r.keys(
        map,
        "$",
        &KEYS,
        &[
            ("digital_twin_name", "the twin's name, a string"),
            (
                "hot_storage_size_in_days",
                "a whole number of days, at least 1",
            ),
            (
                "cold_storage_size_in_days",
                "a whole number of days, at least 1",
            ),
        ],
    );
    if let Some(v) = map.get("digital_twin_name") {
        let path = "$.digital_twin_name";
        if let Some(name) = r.string(v, path, "the twin's name, a string") {
            match names::TWIN_NAME.check(name) {
                Ok(()) => part.name = Some(name.to_string()),
                Err(e) => r.at_value(path, e.to_string()),
            }
        }
    }
    part.hot_days = map
        .get("hot_storage_size_in_days")
        .and_then(|v| days(r, v, "$.hot_storage_size_in_days"));
    part.cold_days = map
        .get("cold_storage_size_in_days")
        .and_then(|v| days(r, v, "$.cold_storage_size_in_days"));
    if let (Some(hot), Some(cold)) = (part.hot_days, part.cold_days) {
        if hot == cold {
            part.warnings.push(r.diagnostic(
                "$.hot_storage_size_in_days",
                format!(
                    "hot_storage_size_in_days equals cold_storage_size_in_days ({hot}): data \
                     passes through cold storage the same day it arrives there and goes on to archive"
                ),
            ));
        } else if hot > cold {
            r.at_value(
                "$.hot_storage_size_in_days",
                format!(
                    "hot_storage_size_in_days ({hot}) must not be greater than \
                     cold_storage_size_in_days ({cold}): data leaves hot storage before it leaves cold storage"
                ),
            );
        }
    }
    part.mode = match map.get("mode") {
        None => Some(LogMode::default()),
        Some(v) => r.one_of(
            v,
            "$.mode",
            "mode",
            &[("DEBUG", LogMode::Debug), ("INFO", LogMode::Info)],
        ),
    };
    part
}

fn days(r: &mut FileReader<'_>, value: &Value, path: &str) -> Option<u32> {
    let found = match value {
        Value::Number(n) => {
            if let Some(d) = n.as_u64().and_then(|d| u32::try_from(d).ok()) {
                if d >= 1 {
                    return Some(d);
                }
            }
            n.to_string()
        }
        other => kind(other).to_string(),
    };
    r.at_value(
        path,
        format!("expected a whole number of days from 1 to 4294967295, found {found}"),
    );
    None
}
