//! Telemetry records: the reserved fields and the item stored in the hot tier.

use crate::timestamp::Timestamp;
use serde_json::{Map, Value};

/// The device a record belongs to (hot store partition key).
pub const FIELD_DEVICE_ID: &str = "iotDeviceId";
/// The record's timestamp as stored (hot store sort key).
pub const FIELD_ID: &str = "id";
/// The record's timestamp as sent by the device.
pub const FIELD_TIME: &str = "time";
/// Carried from dispatcher to persister to follow one message through the logs.
pub const FIELD_CORRELATION_ID: &str = "correlationId";
/// Added by the IoT topic rule (`topic(3) AS topicDeviceId`); never stored.
pub const FIELD_TOPIC_DEVICE_ID: &str = "topicDeviceId";
/// Stored on records that `deployer verify` sent (value: the verify run's id), so they can be told
/// apart from the devices' own data and removed afterwards. Never set on any other record.
pub const FIELD_VERIFY_RUN: &str = "verifyRun";
/// A correlation id starting with this marks a verify reading: `verify-<run>-<n>`.
pub const VERIFY_CORRELATION_PREFIX: &str = "verify-";

/// The verify run a correlation id names (`verify-<run>-<n>` → `<run>`), if it is one.
pub fn verify_run_of(correlation_id: &str) -> Option<&str> {
    let rest = correlation_id.strip_prefix(VERIFY_CORRELATION_PREFIX)?;
    let run = rest.split('-').next()?;
    (!run.is_empty() && run.chars().all(|c| c.is_ascii_alphanumeric())).then_some(run)
}

/// Fields the pipeline itself writes; a device property may not use these names.
pub const RESERVED_FIELDS: [&str; 4] =
    [FIELD_DEVICE_ID, FIELD_ID, FIELD_TIME, FIELD_CORRELATION_ID];

/// One record in the hot store: `{iotDeviceId, id: time, <properties>}`.
#[derive(Debug, Clone, PartialEq)]
pub struct HotItem {
    /// Partition key.
    pub device_id: String,
    /// Sort key: the record's time.
    pub id: Timestamp,
    /// The device's property values (no reserved fields).
    pub properties: Map<String, Value>,
}

/// A stored item that is not a valid record (written by something other than the persister).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored item is not a record: {0}")]
pub struct NotARecord(pub String);

impl HotItem {
    /// The item as a flat JSON object, the shape stored, returned by the hot reader and written
    /// to cold objects.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut map = Map::with_capacity(self.properties.len() + 2);
        map.insert(
            FIELD_DEVICE_ID.into(),
            Value::String(self.device_id.clone()),
        );
        map.insert(FIELD_ID.into(), Value::String(self.id.canonical()));
        for (k, v) in &self.properties {
            map.insert(k.clone(), v.clone());
        }
        map
    }

    /// Reads a flat JSON object back (from the store or a cold object).
    pub fn from_json(mut map: Map<String, Value>) -> Result<Self, NotARecord> {
        let device_id = match map.remove(FIELD_DEVICE_ID) {
            Some(Value::String(d)) if !d.is_empty() => d,
            _ => return Err(NotARecord("iotDeviceId is missing".into())),
        };
        let id = match map.remove(FIELD_ID) {
            Some(Value::String(t)) => {
                Timestamp::parse(&t).map_err(|e| NotARecord(e.to_string()))?
            }
            _ => return Err(NotARecord(format!("id is missing for device {device_id}"))),
        };
        for reserved in RESERVED_FIELDS {
            map.remove(reserved);
        }
        Ok(Self {
            device_id,
            id,
            properties: map,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trip_keeps_key_names() {
        let item = HotItem {
            device_id: "s-1".into(),
            id: Timestamp::parse("2025-11-04T13:23:11.203Z").unwrap(),
            properties: json!({"temperature": 21.5}).as_object().cloned().unwrap(),
        };
        let json = item.to_json();
        assert_eq!(
            Value::Object(json.clone()),
            json!({"iotDeviceId": "s-1", "id": "2025-11-04T13:23:11.203Z", "temperature": 21.5})
        );
        assert_eq!(HotItem::from_json(json).unwrap(), item);
    }

    #[test]
    fn verify_runs_are_read_from_correlation_ids() {
        assert_eq!(verify_run_of("verify-ab12-7"), Some("ab12"));
        assert_eq!(verify_run_of("verify-ab12"), Some("ab12"));
        assert_eq!(verify_run_of("verify--7"), None);
        assert_eq!(verify_run_of("verify-a/b-7"), None);
        assert_eq!(verify_run_of("3f2c-11"), None);
    }

    #[test]
    fn rejects_items_without_keys() {
        assert!(HotItem::from_json(
            json!({"id": "2025-11-04T13:23:11.203Z"})
                .as_object()
                .cloned()
                .unwrap()
        )
        .is_err());
        assert!(HotItem::from_json(
            json!({"iotDeviceId": "d", "id": "x"})
                .as_object()
                .cloned()
                .unwrap()
        )
        .is_err());
    }
}
