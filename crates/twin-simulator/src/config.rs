//! The simulator's own `config.json`, as `deployer deploy` writes it (the established tool's keys).
//!
//! Relative paths in the file are resolved against the file's own directory, so the simulator
//! works from any working directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where `deployer deploy` writes the simulator config, relative to the twin's config directory.
pub const DEFAULT_CONFIG_PATH: &str = ".deployer/simulator/config.json";

/// The MQTT-over-TLS port AWS IoT Core and most brokers use.
pub const DEFAULT_PORT: u16 = 8883;

/// Placeholder in `topic` that is replaced by the device id instead of appending it.
pub const DEVICE_PLACEHOLDER: &str = "{iotDeviceId}";

/// The MQTT protocol version the simulator speaks (rumqttc's v4 client).
pub const MQTT_VERSION: &str = "3.1.1";

/// Which cloud's broker profile a config describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerProfile {
    /// AWS IoT Core (and plain brokers): topic `<prefix>/<device>`, no username; the
    /// established tool's files, which have no `provider` key.
    Aws,
    /// Azure IoT Hub: client id = device id, username
    /// `<hostName>/<device>/?api-version=...`, a fixed per-device topic.
    Azure,
}

/// What can be wrong with the simulator config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing or unreadable.
    #[error("cannot read simulator config {path}: {source}. {hint}")]
    Read {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
        /// What the user can do.
        hint: &'static str,
    },
    /// The file is not valid JSON or has unknown/mistyped keys.
    #[error("simulator config {path}, line {line}, column {column}: {message}")]
    Parse {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// A key has a value that cannot work.
    #[error("simulator config {path}: `{key}` {problem}")]
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// The offending key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// The file as written, keys exactly as the established tool names them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    endpoint: String,
    #[serde(default)]
    port: Option<u16>,
    topic: String,
    payload_file_path: String,
    auth_files_path: String,
    root_ca_cert_path: String,
    /// Put before each device id to make its MQTT client id (`<twin>--`, so two twins with the
    /// same device ids do not knock each other off); absent in the established tool's files.
    #[serde(default)]
    client_id_prefix: String,
    /// `aws` (the default: the established tool's files have no such key) or `azure`.
    #[serde(default)]
    provider: Option<String>,
    /// The MQTT username, `{iotDeviceId}` replaced by the device id (IoT Hub needs one).
    #[serde(default)]
    username: Option<String>,
    /// The MQTT version the broker expects; only 3.1.1 is spoken.
    #[serde(default)]
    mqtt_version: Option<String>,
    /// The feedback topic of each device some event rule sends feedback to, by device id
    /// (`<twin>/feedback/<device>`); the device subscribes to it. Absent: no feedback.
    #[serde(default)]
    feedback_topics: BTreeMap<String, String>,
    /// The devices some event rule sends feedback to on IoT Hub, where feedback is a direct
    /// method call: each subscribes to `$iothub/methods/POST/#` and answers every call. A list
    /// of its own rather than a wildcard in `feedback_topics`, which stays one exact topic each.
    #[serde(default)]
    direct_method_devices: BTreeSet<String>,
}

/// The simulator config with every path made absolute (or relative to the working directory).
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// The config file this came from (for messages).
    pub source: PathBuf,
    /// Broker host name or IP address (also the TLS server name).
    pub endpoint: String,
    /// Broker port.
    pub port: u16,
    /// Topic prefix (`<twin>/iot-data`) or a pattern containing `{iotDeviceId}`.
    pub topic: String,
    /// The payloads file.
    pub payload_file: PathBuf,
    /// Directory holding one `<device-id>/` folder of credentials per device.
    pub auth_files_dir: PathBuf,
    /// The CA certificate(s) that sign the broker's certificate.
    pub root_ca_cert: PathBuf,
    /// Put before each device id to make its MQTT client id.
    pub client_id_prefix: String,
    /// Which broker profile this is.
    pub profile: BrokerProfile,
    /// The MQTT username pattern (`{iotDeviceId}` for the device id), if the broker wants one.
    pub username: Option<String>,
    /// The feedback topic of each device that receives event-rule feedback, by device id.
    pub feedback_topics: BTreeMap<String, String>,
    /// The devices that receive event-rule feedback as IoT Hub direct method calls.
    pub direct_method_devices: BTreeSet<String>,
}

impl SimulatorConfig {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            hint: if source.kind() == std::io::ErrorKind::NotFound {
                "Run `deployer deploy` in the twin's config directory (it writes \
                 .deployer/simulator/config.json), or pass -c PATH"
            } else {
                "Check the file's permissions"
            },
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` names the file in messages and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        })?;
        let invalid = |key: &'static str, problem: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem: problem.to_string(),
        };
        let endpoint = raw.endpoint.trim().to_string();
        if endpoint.is_empty() || endpoint.contains('/') || endpoint.contains(char::is_whitespace) {
            return Err(invalid(
                "endpoint",
                "must be a bare host name or IP address (e.g. `abc123-ats.iot.eu-west-1.amazonaws.com`), \
                 without scheme or path; put a non-default port in `port`",
            ));
        }
        let port = raw.port.unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err(invalid("port", "must be between 1 and 65535"));
        }
        let topic = raw.topic.trim_end_matches('/').to_string();
        if topic.is_empty() || topic.contains('+') || topic.contains('#') {
            return Err(invalid(
                "topic",
                "must be a topic name without wildcards, e.g. `my-twin/iot-data`",
            ));
        }
        for (key, value) in [
            ("payload_file_path", &raw.payload_file_path),
            ("auth_files_path", &raw.auth_files_path),
            ("root_ca_cert_path", &raw.root_ca_cert_path),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(key, "must not be empty"));
            }
        }
        let profile = match raw
            .provider
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("aws") => BrokerProfile::Aws,
            Some("azure") => BrokerProfile::Azure,
            Some(_) => return Err(invalid("provider", "must be `aws` or `azure`")),
        };
        if let Some(v) = raw.mqtt_version.as_deref() {
            if v != MQTT_VERSION {
                return Err(invalid(
                    "mqtt_version",
                    &format!("`{v}` is not spoken by this simulator; use `{MQTT_VERSION}`"),
                ));
            }
        }
        let username = raw.username.filter(|u| !u.trim().is_empty());
        if profile == BrokerProfile::Azure {
            // IoT Hub accepts a device only as itself: its id as client id, in the username
            // and in the topic.
            if !topic.contains(DEVICE_PLACEHOLDER) {
                return Err(invalid(
                    "topic",
                    "must contain {iotDeviceId} for IoT Hub, e.g. `devices/{iotDeviceId}/messages/events/`",
                ));
            }
            if !username
                .as_deref()
                .is_some_and(|u| u.contains(DEVICE_PLACEHOLDER))
            {
                return Err(invalid(
                    "username",
                    "must be set for IoT Hub: `<hostName>/{iotDeviceId}/?api-version=2021-04-12`",
                ));
            }
            if !raw.client_id_prefix.is_empty() {
                return Err(invalid(
                    "client_id_prefix",
                    "must be empty for IoT Hub (the client id is the device id)",
                ));
            }
        }
        if let Some((device, t)) = raw
            .feedback_topics
            .iter()
            .find(|(_, t)| t.trim().is_empty() || t.contains(['+', '#']))
        {
            return Err(invalid(
                "feedback_topics",
                &format!("`{device}`: `{t}` must be one topic without wildcards, e.g. `my-twin/feedback/{device}`"),
            ));
        }
        if !raw.direct_method_devices.is_empty() && profile != BrokerProfile::Azure {
            return Err(invalid(
                "direct_method_devices",
                "needs `provider: azure`: only IoT Hub has direct methods (on AWS feedback comes \
                 on `feedback_topics`)",
            ));
        }
        if let Some(device) = raw.direct_method_devices.iter().find(|d| {
            d.trim().is_empty()
                || d.contains(['+', '#', '/'])
                || raw.feedback_topics.contains_key(*d)
        }) {
            return Err(invalid(
                "direct_method_devices",
                &format!(
                    "`{device}` must be a device id (no `/`, `+` or `#`) not also listed in `feedback_topics`"
                ),
            ));
        }
        let base = path.parent().unwrap_or(Path::new(""));
        Ok(Self {
            source: path.to_path_buf(),
            endpoint,
            port,
            topic,
            payload_file: base.join(&raw.payload_file_path),
            auth_files_dir: base.join(&raw.auth_files_path),
            root_ca_cert: base.join(&raw.root_ca_cert_path),
            client_id_prefix: raw.client_id_prefix,
            profile,
            username,
            feedback_topics: raw.feedback_topics,
            direct_method_devices: raw.direct_method_devices,
        })
    }

    /// The connection options this config asks for (host, port, client id prefix, username);
    /// every caller that opens device links starts from these.
    pub fn link_options(&self) -> crate::publisher::LinkOptions {
        let mut options = crate::publisher::LinkOptions::new(self.endpoint.clone(), self.port);
        options.client_id_prefix = self.client_id_prefix.clone();
        options.username = self.username.clone();
        options
    }

    /// The MQTT username of one device, if the broker wants one.
    pub fn device_username(&self, device_id: &str) -> Option<String> {
        self.username
            .as_ref()
            .map(|u| u.replace(DEVICE_PLACEHOLDER, device_id))
    }

    /// The topic one device receives its event-rule feedback on, if any.
    pub fn feedback_topic(&self, device_id: &str) -> Option<String> {
        self.feedback_topics.get(device_id).cloned()
    }

    /// How one device receives its event-rule feedback, if it does: its feedback topic, or
    /// direct method calls on IoT Hub.
    pub fn feedback(&self, device_id: &str) -> Option<crate::publisher::FeedbackChannel> {
        use crate::publisher::FeedbackChannel;
        if self.direct_method_devices.contains(device_id) {
            return Some(FeedbackChannel::DirectMethods);
        }
        self.feedback_topic(device_id).map(FeedbackChannel::Topic)
    }

    /// The topic one device publishes to (SPEC §6: `<twin>/iot-data/<device-id>`).
    pub fn device_topic(&self, device_id: &str) -> String {
        if self.topic.contains(DEVICE_PLACEHOLDER) {
            self.topic.replace(DEVICE_PLACEHOLDER, device_id)
        } else {
            format!("{}/{}", self.topic, device_id)
        }
    }
}

/// serde_json appends " at line L column C"; the message carries the position separately.
pub(crate) fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"endpoint": "example-ats.iot.eu-west-1.amazonaws.com",
        "topic": "twin/iot-data", "payload_file_path": "payloads.json",
        "auth_files_path": "../devices", "root_ca_cert_path": "../devices/AmazonRootCA1.pem"}"#;

    #[test]
    fn relative_paths_are_relative_to_the_config_file() {
        let c = SimulatorConfig::parse(GOOD, Path::new("/twin/.deployer/simulator/config.json"))
            .unwrap();
        assert_eq!(c.port, 8883);
        assert_eq!(
            c.payload_file,
            Path::new("/twin/.deployer/simulator/payloads.json")
        );
        assert_eq!(
            c.auth_files_dir,
            Path::new("/twin/.deployer/simulator/../devices")
        );
        assert_eq!(c.device_topic("dev-1"), "twin/iot-data/dev-1");
    }

    #[test]
    fn feedback_topics_are_per_device_and_never_filters() {
        let text = GOOD.replace(
            "\"topic\"",
            "\"feedback_topics\": {\"d1\": \"twin/feedback/d1\"}, \"topic\"",
        );
        let c = SimulatorConfig::parse(&text, Path::new("c.json")).unwrap();
        assert_eq!(c.feedback_topic("d1").as_deref(), Some("twin/feedback/d1"));
        assert_eq!(c.feedback_topic("d2"), None);
        let c = SimulatorConfig::parse(GOOD, Path::new("c.json")).unwrap();
        assert!(c.feedback_topics.is_empty());
        let bad = text.replace("twin/feedback/d1", "twin/feedback/#");
        let err = SimulatorConfig::parse(&bad, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("feedback_topics"), "{err}");
    }

    #[test]
    fn placeholder_in_topic_is_substituted() {
        let text = GOOD.replace("twin/iot-data", "dt/{iotDeviceId}/telemetry");
        let c = SimulatorConfig::parse(&text, Path::new("c.json")).unwrap();
        assert_eq!(c.device_topic("d1"), "dt/d1/telemetry");
    }

    #[test]
    fn unknown_key_is_reported_with_position() {
        let text = GOOD.replace("\"topic\"", "\"topik\"");
        let err = SimulatorConfig::parse(&text, Path::new("c.json")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown field `topik`"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    const AZURE: &str = r#"{"provider": "azure", "endpoint": "hub.azure-devices.net", "port": 8883,
        "topic": "devices/{iotDeviceId}/messages/events/$.ct=application%2Fjson&$.ce=utf-8",
        "username": "hub.azure-devices.net/{iotDeviceId}/?api-version=2021-04-12",
        "mqtt_version": "3.1.1", "payload_file_path": "payloads.json",
        "auth_files_path": "../devices", "root_ca_cert_path": "../devices/IoTHubRootCAs.pem",
        "client_id_prefix": ""}"#;

    #[test]
    fn the_iot_hub_profile_names_device_topic_and_username() {
        let c = SimulatorConfig::parse(AZURE, Path::new("c.json")).unwrap();
        assert_eq!(c.profile, BrokerProfile::Azure);
        assert_eq!(
            c.device_topic("d1"),
            "devices/d1/messages/events/$.ct=application%2Fjson&$.ce=utf-8"
        );
        assert_eq!(
            c.device_username("d1").as_deref(),
            Some("hub.azure-devices.net/d1/?api-version=2021-04-12")
        );
        let aws = SimulatorConfig::parse(GOOD, Path::new("c.json")).unwrap();
        assert_eq!(aws.profile, BrokerProfile::Aws);
        assert_eq!(aws.device_username("d1"), None);
    }

    #[test]
    fn an_iot_hub_profile_without_its_parts_is_refused_by_key() {
        for (from, to, key) in [
            (
                r#""username": "hub.azure-devices.net/{iotDeviceId}/?api-version=2021-04-12","#,
                "",
                "`username`",
            ),
            ("devices/{iotDeviceId}/", "devices/x/", "`topic`"),
            (
                r#""client_id_prefix": """#,
                r#""client_id_prefix": "t--""#,
                "`client_id_prefix`",
            ),
            (
                r#""mqtt_version": "3.1.1""#,
                r#""mqtt_version": "5""#,
                "`mqtt_version`",
            ),
            (
                r#""provider": "azure""#,
                r#""provider": "gcp""#,
                "`provider`",
            ),
        ] {
            let text = AZURE.replace(from, to);
            assert_ne!(text, AZURE, "{from}");
            let err = SimulatorConfig::parse(&text, Path::new("c.json")).unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn direct_method_devices_receive_feedback_as_method_calls() {
        use crate::publisher::FeedbackChannel;
        let text = AZURE.replace(
            r#""provider": "azure","#,
            r#""provider": "azure", "direct_method_devices": ["d1"],"#,
        );
        let c = SimulatorConfig::parse(&text, Path::new("c.json")).unwrap();
        assert_eq!(c.feedback("d1"), Some(FeedbackChannel::DirectMethods));
        assert_eq!(c.feedback("d2"), None);
        assert_eq!(c.feedback_topic("d1"), None, "no topic is made up for it");
        let plain = SimulatorConfig::parse(AZURE, Path::new("c.json")).unwrap();
        assert!(plain.direct_method_devices.is_empty());
        assert_eq!(plain.feedback("d1"), None);
        let aws = GOOD.replace(
            "\"topic\"",
            "\"feedback_topics\": {\"d1\": \"twin/feedback/d1\"}, \"topic\"",
        );
        let c = SimulatorConfig::parse(&aws, Path::new("c.json")).unwrap();
        assert_eq!(
            c.feedback("d1"),
            Some(FeedbackChannel::Topic("twin/feedback/d1".into()))
        );
    }

    #[test]
    fn direct_method_devices_are_device_ids_on_iot_hub_only() {
        let on_aws = GOOD.replace(
            "\"topic\"",
            "\"direct_method_devices\": [\"d1\"], \"topic\"",
        );
        let err = SimulatorConfig::parse(&on_aws, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("`direct_method_devices`"), "{err}");
        assert!(err.to_string().contains("provider: azure"), "{err}");
        for bad in [r#"["$iothub/methods/POST/#"]"#, r#"["+"]"#, r#"[""]"#] {
            let text = AZURE.replace(
                r#""provider": "azure","#,
                &format!(r#""provider": "azure", "direct_method_devices": {bad},"#),
            );
            let err = SimulatorConfig::parse(&text, Path::new("c.json")).unwrap_err();
            assert!(
                err.to_string().contains("`direct_method_devices`"),
                "{bad}: {err}"
            );
        }
        let both = AZURE.replace(
            r#""provider": "azure","#,
            r#""provider": "azure", "direct_method_devices": ["d1"], "feedback_topics": {"d1": "x/d1"},"#,
        );
        let err = SimulatorConfig::parse(&both, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("feedback_topics"), "{err}");
        let typo = AZURE.replace(
            r#""provider": "azure","#,
            r#""provider": "azure", "direct_methods": ["d1"],"#,
        );
        assert!(SimulatorConfig::parse(&typo, Path::new("c.json")).is_err());
    }

    #[test]
    fn endpoint_with_scheme_is_rejected() {
        let text = GOOD.replace("example-ats", "mqtts://example-ats");
        let err = SimulatorConfig::parse(&text, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("`endpoint`"), "{err}");
    }
}
