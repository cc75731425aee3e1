//! The simulator's IoT Hub profile that `deploy` writes (SPEC §7, §9):
//! `<config-dir>/.deployer/simulator/config.json` with `provider: "azure"`, the hub's host as
//! ARM returned it (port 8883), client id = device id, the username
//! `<hostName>/<deviceId>/?api-version=2021-04-12`, the fixed telemetry topic with JSON content
//! type and UTF-8 encoding, MQTT 3.1.1, the device credentials and the CA roots IoT Hub's
//! certificates chain to; plus an example `payloads.json` when there is none yet. The devices
//! some event rule sends feedback to are listed in `direct_method_devices`: on IoT Hub feedback
//! is a direct method call (see `twin_functions_azure::azure_action_sink`), which those devices
//! subscribe to and answer.

use crate::context::input;
use crate::l1::certificate::write_private;
use crate::l1::hub;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceId, ResourceSpec};

/// Driver kind of the simulator config.
pub const KIND: &str = "azure_simulator_config";

/// IoT Hub's TLS roots: DigiCert Global Root G2 (the root of IoT Hub's server certificates
/// since the 2023 migration) and Microsoft RSA Root Certificate Authority 2017 (the next one
/// Microsoft names for Azure services). Copied from Debian's ca-certificates 20230311 (Mozilla's
/// root store); SHA-256 fingerprints CB:3C:CB:B7:…:CB:5F and C7:41:F7:0F:…:73:E0.
pub const IOT_HUB_ROOT_CAS: &str = include_str!("IoTHubRootCAs.pem");

/// File name of the CA bundle beside the device folders.
pub const ROOT_CA_FILE: &str = "IoTHubRootCAs.pem";

/// The telemetry topic, `{iotDeviceId}` replaced by the simulator: content type JSON and UTF-8
/// as message properties, so the body reaches Event Grid as JSON and not base64.
pub const TOPIC: &str = "devices/{iotDeviceId}/messages/events/$.ct=application%2Fjson&$.ce=utf-8";

/// The device API version in the MQTT username.
pub const DEVICE_API: &str = "2021-04-12";

/// Inputs key: the id of the hub's spec.
pub const HUB_KEY: &str = "hub";

/// Inputs key: one example message per device.
pub const EXAMPLES_KEY: &str = "example_payloads";

/// The key of the devices that receive feedback as direct method calls.
pub const DIRECT_METHOD_DEVICES: &str = "direct_method_devices";

/// The devices of the twin some event rule sends feedback to, sorted: on IoT Hub they receive it
/// as direct method calls.
pub fn direct_method_devices(twin: &twin_config::TwinConfig) -> Vec<String> {
    let mut devices: Vec<String> = twin
        .devices
        .iter()
        .filter(|d| twin.receives_feedback(&d.id))
        .map(|d| d.id.clone())
        .collect();
    devices.sort();
    devices.dedup();
    devices
}

/// Where the simulator config goes.
pub fn simulator_dir(config_dir: &Path) -> PathBuf {
    config_dir.join(".deployer").join("simulator")
}

/// The desired settings (what `read` reports of the file).
pub fn desired(path: &Path) -> Value {
    json!({
        "path": path.display().to_string(),
        "provider": "azure",
        "port": 8883,
        "topic": TOPIC,
        "mqtt_version": "3.1.1",
        "payload_file_path": "payloads.json",
        "auth_files_path": "../devices",
        "root_ca_cert_path": format!("../devices/{ROOT_CA_FILE}"),
        "client_id_prefix": "",
        "endpoint_is_hub": true,
        "root_ca_present": true,
    })
}

/// The MQTT username of a device on `host_name`, `{iotDeviceId}` left for the simulator.
pub fn username(host_name: &str) -> String {
    format!("{host_name}/{{iotDeviceId}}/?api-version={DEVICE_API}")
}

/// The broker host devices connect to: the hub's host name without a port (a local fake
/// reports `127.0.0.1:<registry port>`; MQTT is always 8883).
pub fn broker_host(host_name: &str) -> &str {
    match host_name.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host_name,
    }
}

/// The config file's contents for a hub at `host_name`.
pub fn config_json(spec: &ResourceSpec, host_name: &str) -> Value {
    let d = |k: &str| spec.desired.get(k).cloned().unwrap_or(Value::Null);
    let mut config = json!({
        "provider": "azure",
        "endpoint": broker_host(host_name),
        "port": d("port"),
        "topic": d("topic"),
        "username": username(host_name),
        "mqtt_version": d("mqtt_version"),
        "payload_file_path": d("payload_file_path"),
        "auth_files_path": d("auth_files_path"),
        "root_ca_cert_path": d("root_ca_cert_path"),
        "client_id_prefix": d("client_id_prefix"),
    });
    // Only when some device receives feedback, so the file of a twin without such rules stays
    // as before.
    if let Some(devices) = spec.desired.get(DIRECT_METHOD_DEVICES) {
        config[DIRECT_METHOD_DEVICES] = devices.clone();
    }
    config
}

/// Writes, reads and removes the simulator config.
pub struct SimulatorConfigDriver;

fn path_of(spec: &ResourceSpec) -> Result<PathBuf, CloudError> {
    spec.desired
        .get("path")
        .and_then(Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| CloudError::fatal("SpecIncomplete", format!("{} has no path", spec.label())))
}

fn field(spec: &ResourceSpec, k: &str) -> String {
    spec.desired
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn hub_host(spec: &ResourceSpec, deps: &Outputs) -> Result<Option<String>, CloudError> {
    let id = ResourceId(input(spec, HUB_KEY)?.to_string());
    Ok(deps
        .get(&id)
        .and_then(|o| o.attr(hub::HOST_NAME))
        .map(str::to_string))
}

#[async_trait]
impl ResourceDriver for SimulatorConfigDriver {
    async fn read(
        &self,
        spec: &ResourceSpec,
        deps: &Outputs,
    ) -> Result<Option<Observed>, CloudError> {
        let path = path_of(spec)?;
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        // A file someone broke is drift to rewrite, not an error.
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let ca_present = path
            .parent()
            .map(|p| p.join(field(spec, "root_ca_cert_path")).exists())
            .unwrap_or(false);
        let host = hub_host(spec, deps)?;
        let endpoint_is_hub = host.as_deref().is_some_and(|h| {
            v.get("endpoint").and_then(Value::as_str) == Some(broker_host(h))
                && v.get("username").and_then(Value::as_str) == Some(username(h).as_str())
        });
        let g = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
        Ok(Some(Observed::new(
            path.display().to_string(),
            json!({
                "path": path.display().to_string(),
                "provider": g("provider"),
                "endpoint": g("endpoint"),
                "port": g("port"),
                "topic": g("topic"),
                "username": g("username"),
                "mqtt_version": g("mqtt_version"),
                "payload_file_path": g("payload_file_path"),
                "auth_files_path": g("auth_files_path"),
                "root_ca_cert_path": g("root_ca_cert_path"),
                "client_id_prefix": g("client_id_prefix"),
                DIRECT_METHOD_DEVICES: g(DIRECT_METHOD_DEVICES),
                "endpoint_is_hub": endpoint_is_hub,
                "root_ca_present": ca_present,
            }),
        )))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let host = hub_host(spec, deps)?.ok_or_else(|| {
            CloudError::new(
                twin_engine::ErrorClass::NotFound,
                "DependencyMissing",
                format!(
                    "{}: the IoT Hub has no host name (is it deployed?)",
                    spec.label()
                ),
            )
        })?;
        let path = path_of(spec)?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        write_private(
            &dir.join(field(spec, "root_ca_cert_path")),
            IOT_HUB_ROOT_CAS,
            0o644,
        )?;
        let payloads = dir.join(field(spec, "payload_file_path"));
        if !payloads.exists() {
            let example = spec.inputs.get(EXAMPLES_KEY).cloned().unwrap_or(json!([]));
            let text = serde_json::to_string_pretty(&example)
                .map_err(|e| CloudError::fatal("LocalFile", e.to_string()))?;
            write_private(&payloads, &text, 0o644)?;
        }
        let text = serde_json::to_string_pretty(&config_json(spec, &host))
            .map_err(|e| CloudError::fatal("LocalFile", e.to_string()))?;
        write_private(&path, &text, 0o644)?;
        self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::fatal("LocalFile", format!("{} not written", path.display()))
        })
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        _: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        self.create(spec, deps).await
    }

    async fn delete(&self, spec: &ResourceSpec, _: &Observed) -> Result<(), CloudError> {
        // payloads.json is the user's to edit and is kept; the config and CA copy go.
        let path = path_of(spec)?;
        let mut files = vec![path.clone()];
        if let Some(dir) = path.parent() {
            files.push(dir.join(field(spec, "root_ca_cert_path")));
        }
        for f in files {
            match std::fs::remove_file(&f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(CloudError::fatal(
                        "LocalFile",
                        format!("cannot remove {}: {e}", f.display()),
                    )
                    .with_hint("remove it by hand or fix its permissions, then destroy again"))
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_speaks_iot_hub_mqtt() {
        assert_eq!(
            username("hub.azure-devices.net"),
            "hub.azure-devices.net/{iotDeviceId}/?api-version=2021-04-12"
        );
        assert_eq!(
            broker_host("hub.azure-devices.net"),
            "hub.azure-devices.net"
        );
        assert_eq!(broker_host("127.0.0.1:4711"), "127.0.0.1");
        assert_eq!(
            TOPIC.replace("{iotDeviceId}", "d1"),
            "devices/d1/messages/events/$.ct=application%2Fjson&$.ce=utf-8"
        );
        assert_eq!(IOT_HUB_ROOT_CAS.matches("BEGIN CERTIFICATE").count(), 2);
    }

    fn spec(desired: Value) -> ResourceSpec {
        ResourceSpec::new(
            ResourceId("l1/azure_simulator_config/config".into()),
            twin_config::Layer::L1,
            twin_config::ProviderName::Azure,
            KIND,
            "config.json",
        )
        .desired(desired)
    }

    fn twin(events: Value) -> twin_config::TwinConfig {
        twin_config::TwinConfig {
            dir: PathBuf::from("/nonexistent/t"),
            twin: serde_json::from_value(json!({
                "digital_twin_name": "t",
                "hot_storage_size_in_days": 1,
                "cold_storage_size_in_days": 2
            }))
            .expect("settings"),
            devices: serde_json::from_value(json!([
                {"id": "a", "properties": [{"name": "p", "dataType": "DOUBLE"}]},
                {"id": "b", "properties": [{"name": "p", "dataType": "DOUBLE"}]}
            ]))
            .expect("devices"),
            providers: twin_config::Providers::all(twin_config::ProviderName::Azure),
            hierarchy: None,
            events: serde_json::from_value(events).expect("rules"),
            warnings: Vec::new(),
        }
    }

    #[test]
    fn only_feedback_targets_receive_direct_methods() {
        let rule = |key: &str, device: &str| {
            json!({"key": key, "condition": {"text": "e.c.p > 1", "devices": ["b"]},
                   "action": {"type": "mqtt", "iotDeviceId": device, "payload": "x"}})
        };
        let config = twin(json!([rule("hot", "a"), rule("hotter", "a")]));
        assert_eq!(direct_method_devices(&config), vec!["a".to_string()]);
        assert!(direct_method_devices(&twin(json!([]))).is_empty());
    }

    #[test]
    fn feedback_targets_are_listed_as_direct_method_devices_only_when_there_are_some() {
        let path = Path::new("/t/.deployer/simulator/config.json");
        let plain = config_json(&spec(desired(path)), "hub.azure-devices.net");
        assert!(plain.get(DIRECT_METHOD_DEVICES).is_none(), "{plain}");
        let mut d = desired(path);
        d[DIRECT_METHOD_DEVICES] = json!(["dev-0"]);
        let with = config_json(&spec(d), "hub.azure-devices.net");
        assert_eq!(with[DIRECT_METHOD_DEVICES], json!(["dev-0"]));
        assert_eq!(with["provider"], "azure");
    }
}
