//! What a mover's invocation may ask for. The daily schedule sends no cut-off (the mover takes
//! `now - days`); `deployer verify --movers` sends `{"cutoff": "<time>"}` to make its readings due.

use crate::mover_error::MoverError;
use crate::timestamp::Timestamp;
use serde_json::Value;

/// The key holding a requested cut-off in a mover's event.
pub const CUTOFF_KEY: &str = "cutoff";

/// The cut-off an event asks for: none when the key is absent or null; an error when it is there
/// but not a timestamp text (so a typo is not silently replaced by the daily cut-off).
pub fn requested_cutoff(event: &Value) -> Result<Option<Timestamp>, MoverError> {
    match event.get(CUTOFF_KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Timestamp::parse(s)
            .map(Some)
            .map_err(|e| MoverError::BadEvent(format!("{CUTOFF_KEY}: {e}"))),
        Some(other) => Err(MoverError::BadEvent(format!(
            "{CUTOFF_KEY}: {other} is not a timestamp text"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_cutoff_or_none() {
        assert_eq!(requested_cutoff(&json!({})).unwrap(), None);
        assert_eq!(requested_cutoff(&json!({"cutoff": null})).unwrap(), None);
        assert_eq!(requested_cutoff(&json!("scheduled")).unwrap(), None);
        assert_eq!(
            requested_cutoff(&json!({"cutoff": "2026-12-01T10:00:00.000Z"})).unwrap(),
            Some(Timestamp::parse("2026-12-01T10:00:00.000Z").unwrap())
        );
        assert!(requested_cutoff(&json!({"cutoff": "yesterday"})).is_err());
        assert!(requested_cutoff(&json!({"cutoff": 17})).is_err());
    }
}
