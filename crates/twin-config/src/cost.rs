//! Cost traps: settings that are valid but make a storage tier bill more than is stored, because
//! the tier charges a minimum duration or object size. They are warnings, never errors.
//!
//! The facts, from the providers' pricing pages: S3 STANDARD_IA bills every object for at least
//! 30 days and at least 128 KB; S3 DEEP_ARCHIVE bills at least 180 days and adds 40 KB per
//! object (32 KB at the archive rate for its index, 8 KB at the STANDARD rate for its name and
//! metadata); Azure's Cool tier charges early deletion for a blob removed within 30 days and the
//! Archive tier within 180 days. The twin's cold tier is STANDARD_IA / Cool and its archive tier
//! DEEP_ARCHIVE / Archive (SPEC §2). The archive's minimum duration is no trap of a setting: the
//! twin keeps archived data until `destroy`. Its per-object overhead is, for small objects.
//!
//! How long data stays in cold: the hot-to-cold mover writes a window of records that are
//! `hot_storage_size_in_days` old, and the cold-to-archive mover moves that window once its end is
//! `cold_storage_size_in_days` old, so an object lives in cold for the difference. The hot-to-cold
//! mover runs daily and writes one object per device per run (more only past 1 MB), so a cold
//! object holds about one day of one device's records.

use crate::load::{CONFIG_FILE, DEVICES_FILE};
use crate::model::{DataType, Device};
use crate::providers::ProviderName;
use serde_json::{json, Map, Value};

/// S3 STANDARD_IA's minimum billable storage duration, in days.
pub const STANDARD_IA_MIN_DAYS: u32 = 30;
/// S3 STANDARD_IA's minimum billable object size, in bytes (128 KB).
pub const STANDARD_IA_MIN_BYTES: usize = 128 * 1024;
/// The overhead S3 bills for each archived object, in KB (32 archive-priced + 8 STANDARD).
pub const DEEP_ARCHIVE_OBJECT_OVERHEAD_KB: u32 = 40;
/// Azure Cool tier's early-deletion period, in days.
pub const AZURE_COOL_MIN_DAYS: u32 = 30;

/// One cost trap: where in the config it comes from and what it costs, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CostTrap {
    /// The file the setting is in.
    pub file: &'static str,
    /// The JSON path of the setting.
    pub path: String,
    /// What it will cost.
    pub message: String,
}

/// The tiers' providers and the settings that decide what they bill.
pub(crate) struct Tiers<'a> {
    pub hot_days: u32,
    pub cold_days: u32,
    pub cold: ProviderName,
    pub archive: ProviderName,
    pub devices: &'a [Device],
    /// `expected_load`'s messages per device a minute, when given.
    pub rate: Option<f64>,
}

/// Every cost trap of these settings.
pub(crate) fn traps(t: &Tiers<'_>) -> Vec<CostTrap> {
    let mut out = Vec::new();
    let in_cold = t.cold_days.saturating_sub(t.hot_days);
    let cold_path = "$.cold_storage_size_in_days";
    let stay = |tier: &str| match in_cold {
        0 => format!("the day they arrive in {tier}"),
        d => format!("after {} in {tier}", days(d)),
    };
    match t.cold {
        ProviderName::Aws if in_cold < STANDARD_IA_MIN_DAYS => out.push(CostTrap {
            file: CONFIG_FILE,
            path: cold_path.to_string(),
            message: format!(
                "objects move from cold storage to the archive {} \
                 (cold_storage_size_in_days {} - hot_storage_size_in_days {}), but S3 \
                 STANDARD_IA bills at least {STANDARD_IA_MIN_DAYS} days per object: each one is \
                 billed {STANDARD_IA_MIN_DAYS} days of STANDARD_IA, {} more than it is stored; \
                 keep cold_storage_size_in_days at least {} to avoid it",
                stay("cold"),
                t.cold_days,
                t.hot_days,
                days(STANDARD_IA_MIN_DAYS - in_cold),
                t.hot_days.saturating_add(STANDARD_IA_MIN_DAYS),
            ),
        }),
        ProviderName::Azure if in_cold < AZURE_COOL_MIN_DAYS => out.push(CostTrap {
            file: CONFIG_FILE,
            path: cold_path.to_string(),
            message: format!(
                "blobs move from the Cool tier to the archive {} \
                 (cold_storage_size_in_days {} - hot_storage_size_in_days {}), but Azure charges \
                 early deletion for a Cool blob removed within {AZURE_COOL_MIN_DAYS} days: each \
                 one costs {AZURE_COOL_MIN_DAYS} days of Cool storage, {} more than it is stored; \
                 keep cold_storage_size_in_days at least {} to avoid it",
                stay("Cool"),
                t.cold_days,
                t.hot_days,
                days(AZURE_COOL_MIN_DAYS - in_cold),
                t.hot_days.saturating_add(AZURE_COOL_MIN_DAYS),
            ),
        }),
        _ => {}
    }
    if t.cold == ProviderName::Aws {
        if let Some(trap) = small_objects(t.devices, t.archive == ProviderName::Aws, t.rate) {
            out.push(trap);
        }
    }
    out
}

/// STANDARD_IA's 128 KB minimum against a cold object of one device's day of records: how many
/// messages a day the device with the smallest records needs to fill one.
fn small_objects(devices: &[Device], archive_on_aws: bool, rate: Option<f64>) -> Option<CostTrap> {
    let (index, device, bytes) = devices
        .iter()
        .enumerate()
        .map(|(i, d)| (i, d, record_bytes(d)))
        .min_by_key(|(_, _, b)| *b)?;
    let needed = STANDARD_IA_MIN_BYTES.div_ceil(bytes.max(1));
    // With an expected rate that fills the minimum, there is no trap to name.
    if rate.is_some_and(|r| r * 1440.0 >= needed as f64) {
        return None;
    }
    let every = 86_400.0 / needed as f64;
    let archive = if archive_on_aws {
        format!(
            "; the same small objects each carry {DEEP_ARCHIVE_OBJECT_OVERHEAD_KB} KB of billed \
             overhead once archived"
        )
    } else {
        String::new()
    };
    Some(CostTrap {
        file: DEVICES_FILE,
        path: format!("$[{index}].properties"),
        message: format!(
            "S3 STANDARD_IA bills every cold object as at least 128 KB, and the daily hot-to-cold \
             move writes one object per device per day: a record of device `{}` is about {bytes} \
             bytes, so unless it sends at least {needed} messages a day (one every {every:.0} s) \
             each of its cold objects is billed as 128 KB, more than it holds{archive}",
            device.id
        ),
    })
}

/// The size of one of the device's records as the mover writes it into a cold object, with
/// typical values (a timestamp id, 8 significant digits for a DOUBLE, 10 characters of text),
/// plus the comma that separates it from the next.
fn record_bytes(device: &Device) -> usize {
    let mut m = Map::new();
    m.insert("iotDeviceId".into(), json!(device.id));
    m.insert("id".into(), json!("2024-01-01T00:00:00.000Z"));
    for p in &device.properties {
        let v = match p.data_type {
            DataType::Double => json!(1234.5678),
            DataType::Integer => json!(12345),
            DataType::Long => json!(1_700_000_000_000i64),
            DataType::Boolean => json!(false),
            DataType::String => json!("abcdefghij"),
        };
        m.insert(p.name.clone(), v);
    }
    Value::Object(m).to_string().len() + 1
}

fn days(n: u32) -> String {
    if n == 1 {
        "1 day".to_string()
    } else {
        format!("{n} days")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Property;

    fn device(id: &str, props: &[(&str, DataType)]) -> Device {
        Device {
            id: id.into(),
            properties: props
                .iter()
                .map(|(n, t)| Property {
                    name: n.to_string(),
                    data_type: *t,
                    init_value: None,
                })
                .collect(),
            const_properties: Vec::new(),
            processor: None,
        }
    }

    fn tiers(hot: u32, cold: u32, c: ProviderName, a: ProviderName, d: &[Device]) -> Vec<CostTrap> {
        traps(&Tiers {
            hot_days: hot,
            cold_days: cold,
            cold: c,
            archive: a,
            devices: d,
            rate: None,
        })
    }

    #[test]
    fn an_expected_rate_that_fills_the_minimum_object_names_no_small_object_trap() {
        let d = [device("t-1", &[("temperature", DataType::Double)])];
        let at = |rate: Option<f64>| {
            traps(&Tiers {
                hot_days: 30,
                cold_days: 90,
                cold: ProviderName::Aws,
                archive: ProviderName::Aws,
                devices: &d,
                rate,
            })
            .len()
        };
        assert_eq!(at(None), 1, "no rate known: the trap is named");
        assert_eq!(
            at(Some(0.1)),
            1,
            "144 small records a day stay below 128 KB"
        );
        assert_eq!(at(Some(60.0)), 0, "86,400 records a day fill it");
    }

    #[test]
    fn short_stays_in_standard_ia_are_billed_30_days() {
        let d = [device("t-1", &[("temperature", DataType::Double)])];
        let found = tiers(30, 40, ProviderName::Aws, ProviderName::None, &d);
        let trap = &found[0];
        assert_eq!(trap.path, "$.cold_storage_size_in_days");
        assert_eq!(
            trap.message,
            "objects move from cold storage to the archive after 10 days in cold \
             (cold_storage_size_in_days 40 - hot_storage_size_in_days 30), but S3 STANDARD_IA \
             bills at least 30 days per object: each one is billed 30 days of STANDARD_IA, 20 \
             days more than it is stored; keep cold_storage_size_in_days at least 60 to avoid it"
        );
        // 30 days in cold: no duration trap.
        let found = tiers(30, 60, ProviderName::Aws, ProviderName::None, &d);
        assert!(found
            .iter()
            .all(|t| !t.message.contains("30 days per object")));
    }

    #[test]
    fn azure_cool_early_deletion_is_named() {
        let found = tiers(7, 7, ProviderName::Azure, ProviderName::None, &[]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].message.starts_with(
                "blobs move from the Cool tier to the archive the day they arrive in Cool"
            ),
            "{}",
            found[0].message
        );
        assert!(found[0].message.contains("30 days more than it is stored"));
        assert!(tiers(7, 37, ProviderName::Azure, ProviderName::None, &[]).is_empty());
    }

    #[test]
    fn small_cold_objects_name_the_device_and_the_rate_they_need() {
        let d = [
            device(
                "big",
                &[
                    ("a-long-property-name", DataType::String),
                    ("another", DataType::Double),
                ],
            ),
            device("t-1", &[("temperature", DataType::Double)]),
        ];
        let bytes = record_bytes(&d[1]);
        // {"iotDeviceId":"t-1","id":"2024-01-01T00:00:00.000Z","temperature":1234.5678} + ","
        assert_eq!(bytes, 78);
        let found = tiers(30, 90, ProviderName::Aws, ProviderName::Aws, &d);
        let trap = found
            .iter()
            .find(|t| t.file == DEVICES_FILE)
            .unwrap_or_else(|| panic!("{found:?}"));
        assert_eq!(trap.path, "$[1].properties");
        let needed = (128 * 1024usize).div_ceil(78);
        assert!(
            trap.message.contains(&format!(
                "device `t-1` is about 78 bytes, so unless it sends at least {needed} messages a day"
            )),
            "{}",
            trap.message
        );
        assert!(trap.message.contains("40 KB of billed overhead"));
    }

    #[test]
    fn archive_minimums_alone_are_no_trap() {
        // The twin keeps archived data until `destroy`: their 180 days are no cost of a setting.
        assert!(tiers(30, 90, ProviderName::Azure, ProviderName::Azure, &[]).is_empty());
        assert!(tiers(1, 2, ProviderName::None, ProviderName::None, &[]).is_empty());
    }
}
