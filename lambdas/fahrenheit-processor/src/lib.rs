//! A device's own processing logic, as a user writes it: a [`DeviceLogic`] and a one-line `main`.
//!
//! The device reports Fahrenheit as `temperatureF`; the twin's device declares `temperature`
//! (DOUBLE, °C). The default checks that run after this logic coerce and check `temperature`
//! like any device's property, so this crate only converts and refuses impossible readings.

use serde_json::{Map, Value};
use twin_functions::device_logic::DeviceLogic;

/// The field the device sends.
pub const FAHRENHEIT_FIELD: &str = "temperatureF";
/// The property the twin stores.
pub const CELSIUS_FIELD: &str = "temperature";
/// Absolute zero in °F: colder readings come from a broken sensor.
const ABSOLUTE_ZERO_F: f64 = -459.67;

/// °F → °C, rounded to hundredths.
#[derive(Debug, Clone, Copy, Default)]
pub struct FahrenheitToCelsius;

impl DeviceLogic for FahrenheitToCelsius {
    fn transform(&self, mut message: Map<String, Value>) -> Result<Map<String, Value>, String> {
        let Some(raw) = message.remove(FAHRENHEIT_FIELD) else {
            // Nothing to convert: the default checks decide about the rest.
            return Ok(message);
        };
        let fahrenheit = match &raw {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("{FAHRENHEIT_FIELD} {raw} is not a number"))?;
        if !fahrenheit.is_finite() || fahrenheit < ABSOLUTE_ZERO_F {
            return Err(format!(
                "{FAHRENHEIT_FIELD} {fahrenheit} is below absolute zero ({ABSOLUTE_ZERO_F} °F)"
            ));
        }
        let celsius = ((fahrenheit - 32.0) * 5.0 / 9.0 * 100.0).round() / 100.0;
        message.insert(CELSIUS_FIELD.into(), Value::from(celsius));
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value) -> Result<Value, String> {
        let Value::Object(m) = v else {
            panic!("object")
        };
        FahrenheitToCelsius.transform(m).map(Value::Object)
    }

    #[test]
    fn converts_and_keeps_the_rest() {
        assert_eq!(
            run(json!({"iotDeviceId": "d", "temperatureF": 212, "time": "t"})),
            Ok(json!({"iotDeviceId": "d", "temperature": 100.0, "time": "t"}))
        );
        assert_eq!(
            run(json!({"iotDeviceId": "d", "temperatureF": "70.7"})),
            Ok(json!({"iotDeviceId": "d", "temperature": 21.5}))
        );
        assert_eq!(
            run(json!({"iotDeviceId": "d", "humidity": 3})),
            Ok(json!({"iotDeviceId": "d", "humidity": 3}))
        );
    }

    #[test]
    fn refuses_impossible_and_non_numeric_readings() {
        let e = run(json!({"iotDeviceId": "d", "temperatureF": -500})).unwrap_err();
        assert!(e.contains("absolute zero"), "{e}");
        let e = run(json!({"iotDeviceId": "d", "temperatureF": true})).unwrap_err();
        assert!(e.contains("not a number"), "{e}");
    }
}
