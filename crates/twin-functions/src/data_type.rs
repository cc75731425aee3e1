//! Property data types (TwinMaker's names) and the coercion of device values to them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A property's data type, as named in `config_iot_devices.json` and by TwinMaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DataType {
    /// 64-bit float.
    Double,
    /// 32-bit signed integer.
    Integer,
    /// 64-bit signed integer.
    Long,
    /// true / false.
    Boolean,
    /// UTF-8 text.
    String,
}

/// One configured device property.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertySpec {
    /// The property's name (a key of the telemetry message).
    pub name: String,
    /// Its data type.
    #[serde(rename = "dataType")]
    pub data_type: DataType,
}

/// A value that does not fit a property's data type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("value {value} does not fit dataType {data_type}")]
pub struct CoercionError {
    /// The offending value, as JSON text (shortened).
    pub value: String,
    /// The expected type's name.
    pub data_type: &'static str,
}

impl DataType {
    /// The type's name as written in the config (`DOUBLE`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DataType::Double => "DOUBLE",
            DataType::Integer => "INTEGER",
            DataType::Long => "LONG",
            DataType::Boolean => "BOOLEAN",
            DataType::String => "STRING",
        }
    }

    /// Parses a config name (`DOUBLE`, ...); case-sensitive like TwinMaker.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "DOUBLE" => DataType::Double,
            "INTEGER" => DataType::Integer,
            "LONG" => DataType::Long,
            "BOOLEAN" => DataType::Boolean,
            "STRING" => DataType::String,
            _ => return None,
        })
    }

    /// TwinMaker's key for a value of this type inside a `DataValue` (`doubleValue`, ...).
    pub fn twinmaker_key(self) -> &'static str {
        match self {
            DataType::Double => "doubleValue",
            DataType::Integer => "integerValue",
            DataType::Long => "longValue",
            DataType::Boolean => "booleanValue",
            DataType::String => "stringValue",
        }
    }

    /// Converts `value` to this type. Numbers may arrive as numeric text and whole numbers as
    /// floats (`21.0`), because device firmware is not careful about either; anything that would
    /// lose information (21.5 as INTEGER, 3e9 as INTEGER, NaN) is refused.
    pub fn coerce(self, value: &Value) -> Result<Value, CoercionError> {
        let coerced = match self {
            DataType::Double => as_f64(value).filter(|f| f.is_finite()).map(Value::from),
            DataType::Integer => as_i64(value)
                .and_then(|i| i32::try_from(i).ok())
                .map(Value::from),
            DataType::Long => as_i64(value).map(Value::from),
            DataType::Boolean => as_bool(value).map(Value::Bool),
            DataType::String => match value {
                Value::String(s) => Some(Value::String(s.clone())),
                Value::Number(n) => Some(Value::String(n.to_string())),
                Value::Bool(b) => Some(Value::String(b.to_string())),
                _ => None,
            },
        };
        coerced.ok_or_else(|| CoercionError {
            value: shorten(&value.to_string()),
            data_type: self.name(),
        })
    }
}

fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

fn as_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(whole_f64)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(whole_f64))
        }
        _ => None,
    }
}

/// A float that is exactly a whole number inside the i64 range.
fn whole_f64(f: f64) -> Option<i64> {
    // 2^63 is exactly representable; anything at or above it overflows i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    (f.is_finite() && f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(t: DataType, v: Value) -> Value {
        t.coerce(&v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn bad(t: DataType, v: Value) {
        assert!(t.coerce(&v).is_err(), "{v} should not fit {}", t.name());
    }

    #[test]
    fn double() {
        assert_eq!(ok(DataType::Double, json!(21.5)), json!(21.5));
        assert_eq!(ok(DataType::Double, json!(21)), json!(21.0));
        assert_eq!(ok(DataType::Double, json!("21.5")), json!(21.5));
        bad(DataType::Double, json!(true));
        bad(DataType::Double, json!("warm"));
        bad(DataType::Double, json!("NaN"));
        bad(DataType::Double, json!(null));
        bad(DataType::Double, json!([1]));
    }

    #[test]
    fn integer() {
        assert_eq!(ok(DataType::Integer, json!(7)), json!(7));
        assert_eq!(ok(DataType::Integer, json!(7.0)), json!(7));
        assert_eq!(ok(DataType::Integer, json!("-7")), json!(-7));
        assert_eq!(ok(DataType::Integer, json!(i32::MAX)), json!(i32::MAX));
        bad(DataType::Integer, json!(7.5));
        bad(DataType::Integer, json!(i64::from(i32::MAX) + 1));
        bad(DataType::Integer, json!(false));
    }

    #[test]
    fn long() {
        assert_eq!(
            ok(DataType::Long, json!(3_000_000_000i64)),
            json!(3_000_000_000i64)
        );
        assert_eq!(ok(DataType::Long, json!(i64::MIN)), json!(i64::MIN));
        assert_eq!(ok(DataType::Long, json!("42")), json!(42));
        bad(DataType::Long, json!(u64::MAX));
        bad(DataType::Long, json!(1e19));
        bad(DataType::Long, json!(0.5));
    }

    #[test]
    fn boolean() {
        assert_eq!(ok(DataType::Boolean, json!(true)), json!(true));
        assert_eq!(ok(DataType::Boolean, json!("FALSE")), json!(false));
        assert_eq!(ok(DataType::Boolean, json!(1)), json!(true));
        assert_eq!(ok(DataType::Boolean, json!(0)), json!(false));
        bad(DataType::Boolean, json!(2));
        bad(DataType::Boolean, json!("yes"));
    }

    #[test]
    fn string() {
        assert_eq!(ok(DataType::String, json!("on")), json!("on"));
        assert_eq!(ok(DataType::String, json!(12)), json!("12"));
        assert_eq!(ok(DataType::String, json!(true)), json!("true"));
        bad(DataType::String, json!(null));
        bad(DataType::String, json!({"a": 1}));
    }

    #[test]
    fn twinmaker_keys_per_type() {
        let keys: Vec<&str> = [
            DataType::Double,
            DataType::Integer,
            DataType::Long,
            DataType::Boolean,
            DataType::String,
        ]
        .iter()
        .map(|t| t.twinmaker_key())
        .collect();
        assert_eq!(
            keys,
            [
                "doubleValue",
                "integerValue",
                "longValue",
                "booleanValue",
                "stringValue"
            ]
        );
    }

    #[test]
    fn property_specs_parse_from_config_json() {
        let specs: Vec<PropertySpec> = serde_json::from_str(
            r#"[{"name":"t","dataType":"DOUBLE"},{"name":"on","dataType":"BOOLEAN"}]"#,
        )
        .unwrap();
        assert_eq!(specs[1].data_type, DataType::Boolean);
        assert!(
            serde_json::from_str::<Vec<PropertySpec>>(r#"[{"name":"t","dataType":"FLOAT"}]"#)
                .is_err()
        );
    }
}
