//! `config.json`: the twin's name, storage retention and log mode.

use serde_json::Value;

use super::reader::{kind, FileReader};
use crate::diagnostics::Diagnostic;
use crate::model::{ExpectedLoad, LogMode};
use crate::names;

/// Whatever of `config.json` was readable; `None` fields had a diagnostic.
#[derive(Debug, Default)]
pub(crate) struct TwinPart {
    pub name: Option<String>,
    pub hot_days: Option<u32>,
    pub cold_days: Option<u32>,
    pub mode: Option<LogMode>,
    /// `expected_load`, when given and valid (`Some(None)` = absent).
    pub expected_load: Option<Option<ExpectedLoad>>,
    /// Legal but doubtful settings.
    pub warnings: Vec<Diagnostic>,
}

const KEYS: [&str; 5] = [
    "digital_twin_name",
    "hot_storage_size_in_days",
    "cold_storage_size_in_days",
    "mode",
    "expected_load",
];

const LOAD_KEYS: [&str; 4] = [
    "devices",
    "messages_per_device_per_minute",
    "message_bytes",
    "dashboard_users",
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
    part.expected_load = match map.get("expected_load") {
        None => Some(None),
        Some(v) => expected_load(r, v).map(Some),
    };
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

fn expected_load(r: &mut FileReader<'_>, value: &Value) -> Option<ExpectedLoad> {
    let path = "$.expected_load";
    let map = r.object(value, path, "an object with the twin's expected load")?;
    let before = r.count();
    r.keys(
        map,
        path,
        &LOAD_KEYS,
        &[(
            "messages_per_device_per_minute",
            "messages each device sends a minute, a number ≥ 0",
        )],
    );
    let whole = |r: &mut FileReader<'_>, key: &str, min: u64, max: u64| -> Option<u64> {
        let v = map.get(key)?;
        let p = format!("{path}.{key}");
        match v.as_u64().filter(|n| (min..=max).contains(n)) {
            Some(n) => Some(n),
            None => {
                r.at_value(
                    &p,
                    format!("expected a whole number from {min} to {max}, found {v}"),
                );
                None
            }
        }
    };
    let devices = whole(r, "devices", 1, 10_000_000);
    let message_bytes = whole(r, "message_bytes", 1, 262_144);
    let dashboard_users = whole(r, "dashboard_users", 0, 100_000);
    let rate = map.get("messages_per_device_per_minute").and_then(|v| {
        match v
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f <= 600_000.0)
        {
            Some(f) => Some(f),
            None => {
                r.at_value(
                    &format!("{path}.messages_per_device_per_minute"),
                    format!("expected a number of messages a minute from 0 to 600000, found {v}"),
                );
                None
            }
        }
    });
    if r.count() > before {
        return None;
    }
    Some(ExpectedLoad {
        devices,
        messages_per_device_per_minute: rate?,
        message_bytes,
        dashboard_users,
    })
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
