//! JSON ↔ DynamoDB attribute values. Records are flat JSON objects; nested values are kept as
//! lists and maps so nothing a device sends is lost.

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{Map, Number, Value};
use std::collections::HashMap;

/// A JSON value as an attribute value.
pub fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => AttributeValue::L(items.iter().map(to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| (k.clone(), to_attribute(v)))
                .collect(),
        ),
    }
}

/// A JSON object as an item.
pub fn to_item(map: &Map<String, Value>) -> HashMap<String, AttributeValue> {
    map.iter()
        .map(|(k, v)| (k.clone(), to_attribute(v)))
        .collect()
}

/// An attribute value as JSON. Numbers with a fraction or exponent become floats, others
/// integers; sets become arrays; binary values (never written by the pipeline) become null.
pub fn to_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => number(n),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::L(items) => Value::Array(items.iter().map(to_json).collect()),
        AttributeValue::M(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        AttributeValue::Ss(items) => {
            Value::Array(items.iter().cloned().map(Value::String).collect())
        }
        AttributeValue::Ns(items) => Value::Array(items.iter().map(|n| number(n)).collect()),
        _ => Value::Null,
    }
}

/// An item as a JSON object, keys in name order (DynamoDB keeps no order).
pub fn from_item(item: &HashMap<String, AttributeValue>) -> Map<String, Value> {
    let mut keys: Vec<&String> = item.keys().collect();
    keys.sort();
    keys.into_iter()
        .map(|k| (k.clone(), to_json(&item[k])))
        .collect()
}

fn number(text: &str) -> Value {
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Number(i.into());
        }
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_record_values() {
        let record = json!({"d": 21.5, "i": 7, "l": 3_000_000_000i64, "b": true, "s": "on", "n": null, "a": [1, "x"], "m": {"k": 1.5}});
        let item = to_item(record.as_object().unwrap());
        assert_eq!(item["d"], AttributeValue::N("21.5".into()));
        assert_eq!(Value::Object(from_item(&item)), record);
    }
}
