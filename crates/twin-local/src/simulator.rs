//! Points the simulator config `deploy` wrote (`.deployer/simulator/config.json`) at the local
//! broker, keeping the original endpoint, port and root CA so `down` can restore them.

use crate::LocalError;
use serde_json::{json, Map, Value};
use std::path::Path;

/// The host the local broker listens on.
pub const LOCAL_HOST: &str = "127.0.0.1";

/// The keys the local plane changes.
const KEYS: [&str; 3] = ["endpoint", "port", "root_ca_cert_path"];

fn read(path: &Path) -> Result<Option<Map<String, Value>>, LocalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LocalError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
        }
    };
    match serde_json::from_str(&text) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        _ => Err(LocalError::Io {
            path: path.to_path_buf(),
            message: "not a JSON object (run `deployer deploy` to rewrite it)".into(),
        }),
    }
}

fn write(path: &Path, v: &Map<String, Value>) -> Result<(), LocalError> {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    twin_aws::l1::certificate::write_private(path, &text, 0o644).map_err(|e| LocalError::Io {
        path: path.to_path_buf(),
        message: e.message,
    })
}

fn is_local(m: &Map<String, Value>, root_ca: &str) -> bool {
    m.get("endpoint").and_then(Value::as_str) == Some(LOCAL_HOST)
        && m.get("root_ca_cert_path").and_then(Value::as_str) == Some(root_ca)
}

/// Points `config` at 127.0.0.1:`port` with `root_ca` (relative to the config's directory).
/// The values it replaces are saved in `saved` unless they are already local ones. Returns
/// false when there is no simulator config (L1 not deployed here).
pub fn point_at_local(
    config: &Path,
    saved: &Path,
    port: u16,
    root_ca: &str,
) -> Result<bool, LocalError> {
    let Some(mut m) = read(config)? else {
        return Ok(false);
    };
    if !is_local(&m, root_ca) {
        // What deploy wrote (after a re-deploy, the fresh values): kept for `down`.
        let original: Map<String, Value> = KEYS
            .iter()
            .map(|k| (k.to_string(), m.get(*k).cloned().unwrap_or(Value::Null)))
            .collect();
        write(saved, &original)?;
    }
    m.insert("endpoint".into(), json!(LOCAL_HOST));
    m.insert("port".into(), json!(port));
    m.insert("root_ca_cert_path".into(), json!(root_ca));
    write(config, &m)?;
    Ok(true)
}

/// Puts the saved values back if `config` still points at the local broker; removes `saved`.
pub fn restore(config: &Path, saved: &Path, root_ca: &str) -> Result<bool, LocalError> {
    let Some(original) = read(saved)? else {
        return Ok(false);
    };
    let mut restored = false;
    if let Some(mut m) = read(config)? {
        if is_local(&m, root_ca) {
            for k in KEYS {
                match original.get(k) {
                    Some(Value::Null) | None => m.remove(k),
                    Some(v) => m.insert(k.to_string(), v.clone()),
                };
            }
            write(config, &m)?;
            restored = true;
        }
    }
    std::fs::remove_file(saved).map_err(|e| LocalError::Io {
        path: saved.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointing_twice_keeps_the_original_and_restore_brings_it_back() -> Result<(), LocalError> {
        let dir = tempfile::tempdir().map_err(|e| LocalError::Certificate(e.to_string()))?;
        let config = dir.path().join("config.json");
        let saved = dir.path().join("saved.json");
        let original = json!({"endpoint": "abc-ats.iot.us-east-1.amazonaws.com",
            "topic": "t/iot-data", "root_ca_cert_path": "../devices/AmazonRootCA1.pem"});
        std::fs::write(&config, original.to_string())
            .map_err(|e| LocalError::Certificate(e.to_string()))?;
        assert!(point_at_local(&config, &saved, 1000, "../local/ca.pem")?);
        assert!(point_at_local(&config, &saved, 1001, "../local/ca.pem")?);
        let now: Value =
            serde_json::from_str(&std::fs::read_to_string(&config).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(now["port"], 1001);
        assert_eq!(now["endpoint"], LOCAL_HOST);
        assert!(restore(&config, &saved, "../local/ca.pem")?);
        let back: Value =
            serde_json::from_str(&std::fs::read_to_string(&config).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(back, original);
        assert!(!saved.exists());
        Ok(())
    }
}
