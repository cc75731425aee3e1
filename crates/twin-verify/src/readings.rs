//! Synthetic readings: one message per device and sequence number, with a value for every
//! property the device declares (so the processor takes it), a time that is the moment it is
//! published, and a correlation id `verify-<run>-<n>` that marks it through every layer.

use serde_json::{json, Map, Value};
use twin_config::{DataType, Device};
use twin_functions::record::VERIFY_CORRELATION_PREFIX;

/// The correlation id of reading `n` of run `run`.
pub fn correlation_id(run: &str, n: u64) -> String {
    format!("{VERIFY_CORRELATION_PREFIX}{run}-{n}")
}

/// The reading number inside a correlation id (or any text holding it) of run `run`.
pub fn reading_number(text: &str, run: &str) -> Option<u64> {
    let marker = format!("{VERIFY_CORRELATION_PREFIX}{run}-");
    let start = text.find(&marker)? + marker.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The payload of reading `n` (`seq` is its place among the device's readings) at `time`.
pub fn reading(device: &Device, run: &str, n: u64, seq: u64, time: &str) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("iotDeviceId".into(), Value::String(device.id.clone()));
    m.insert("time".into(), Value::String(time.to_string()));
    m.insert(
        "correlationId".into(),
        Value::String(correlation_id(run, n)),
    );
    for p in &device.properties {
        m.insert(p.name.clone(), value_for(p.data_type, seq));
    }
    Value::Object(m).to_string().into_bytes()
}

/// A value of `data_type` that changes with `seq`, so readings are told apart in a dashboard.
fn value_for(data_type: DataType, seq: u64) -> Value {
    match data_type {
        DataType::Double => json!(20.0 + (seq % 100) as f64 / 10.0),
        DataType::Integer => json!((seq % 1000) as i64),
        DataType::Long => json!(seq as i64),
        DataType::Boolean => json!(seq.is_multiple_of(2)),
        DataType::String => json!(format!("verify-{seq}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        serde_json::from_value(json!({"id": "s-1", "properties": [
            {"name": "temperature", "dataType": "DOUBLE"},
            {"name": "count", "dataType": "INTEGER"},
            {"name": "on", "dataType": "BOOLEAN"},
            {"name": "label", "dataType": "STRING"}]}))
        .unwrap()
    }

    #[test]
    fn a_reading_has_every_property_its_time_and_its_mark() {
        let payload = reading(&device(), "ab12", 7, 3, "2026-12-01T10:00:00.000Z");
        let v: Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(
            v,
            json!({"iotDeviceId": "s-1", "time": "2026-12-01T10:00:00.000Z",
                "correlationId": "verify-ab12-7", "temperature": 20.3, "count": 3, "on": false,
                "label": "verify-3"})
        );
    }

    #[test]
    fn reading_numbers_are_found_in_log_lines() {
        let line = r#"{"level":"INFO","message":"record stored","span":{"correlation_id":"verify-ab12-42","device_id":"s-1"}}"#;
        assert_eq!(reading_number(line, "ab12"), Some(42));
        assert_eq!(reading_number(line, "ab1"), None);
        assert_eq!(reading_number("verify-ab12-", "ab12"), None);
        assert_eq!(reading_number(&correlation_id("z9", 0), "z9"), Some(0));
    }
}
