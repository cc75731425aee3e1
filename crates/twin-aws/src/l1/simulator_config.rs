//! The ready-to-use simulator config `deploy` writes for the twin (SPEC §7):
//! `<config-dir>/.deployer/simulator/config.json` with the IoT data endpoint (DescribeEndpoint
//! `iot:Data-ATS`), the topic prefix, the device credentials and Amazon's root CAs 1-4, plus an
//! example `payloads.json` when there is none yet.

use crate::errors::cloud;
use crate::l1::certificate::write_private;
use crate::AwsClients;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use twin_engine::{CloudError, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of the simulator config.
pub const KIND: &str = "simulator_config";

/// Amazon Root CA 1 to 4 (RSA 2048, RSA 4096, ECC P-256, ECC P-384), one PEM block each, as
/// Mozilla's root store has them (copied from Debian's ca-certificates 20230311). IoT Core's
/// ATS endpoints are served from a chain that ends in one of them; which one depends on the
/// account and region (an ECC chain ends in Root CA 3), so the simulator trusts all four and
/// nothing else, and works offline.
pub const AMAZON_ROOT_CAS: &str = include_str!("AmazonRootCAs.pem");

/// File name of the root CA bundle beside the device folders.
pub const ROOT_CA_FILE: &str = "AmazonRootCAs.pem";

/// The file earlier versions wrote (Root CA 1 only); removed when the bundle is written.
const LEGACY_ROOT_CA_FILE: &str = "AmazonRootCA1.pem";

/// What `root_ca_bundle` reads as when the CA file holds exactly [`AMAZON_ROOT_CAS`].
pub const ROOT_CA_BUNDLE: &str = "amazon-root-ca-1-4";

/// Where the simulator config goes.
pub fn simulator_dir(config_dir: &Path) -> PathBuf {
    config_dir.join(".deployer").join("simulator")
}

/// The feedback topic of each device some event rule sends feedback to
/// (`names::feedback_topic`), by device id: what the simulator subscribes to for that device.
pub fn feedback_topics(
    twin: &twin_config::TwinConfig,
) -> std::collections::BTreeMap<String, String> {
    twin.devices
        .iter()
        .filter(|d| twin.receives_feedback(&d.id))
        .map(|d| {
            (
                d.id.clone(),
                twin_config::names::feedback_topic(&twin.twin.digital_twin_name, &d.id),
            )
        })
        .collect()
}

/// Writes, reads and removes the simulator config.
pub struct SimulatorConfigDriver {
    clients: Arc<AwsClients>,
}

impl SimulatorConfigDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        SimulatorConfigDriver { clients }
    }
}

fn field<'a>(spec: &'a ResourceSpec, k: &str) -> &'a str {
    spec.desired
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CloudError + '_ {
    move |e| CloudError::fatal("LocalFile", format!("{}: {e}", path.display()))
}

#[async_trait]
impl ResourceDriver for SimulatorConfigDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let path = PathBuf::from(field(spec, "path"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let ca = path
            .parent()
            .map(|p| p.join(field(spec, "root_ca_cert_path")));
        let ca_present = ca.as_ref().is_some_and(|c| c.exists());
        // A CA file that is not the current bundle (Root CA 1 alone, from an earlier version,
        // or edited by hand) is drift: update writes the bundle again.
        let bundle = ca
            .and_then(|c| std::fs::read_to_string(c).ok())
            .filter(|text| text == AMAZON_ROOT_CAS)
            .map(|_| ROOT_CA_BUNDLE);
        Ok(Some(Observed::new(
            path.display().to_string(),
            json!({
                "path": path.display().to_string(),
                "endpoint": v.get("endpoint"),
                "topic": v.get("topic"),
                "auth_files_path": v.get("auth_files_path"),
                "root_ca_cert_path": v.get("root_ca_cert_path"),
                "client_id_prefix": v.get("client_id_prefix"),
                "payload_file_path": v.get("payload_file_path"),
                "feedback_topics": v.get("feedback_topics"),
                "root_ca_present": ca_present,
                "root_ca_bundle": bundle,
            }),
        )))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let out = self
            .clients
            .iot
            .describe_endpoint()
            .endpoint_type("iot:Data-ATS")
            .send()
            .await
            .map_err(cloud)?;
        let endpoint = out.endpoint_address().unwrap_or_default().to_string();
        let path = PathBuf::from(field(spec, "path"));
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let ca = dir.join(field(spec, "root_ca_cert_path"));
        write_private(&ca, AMAZON_ROOT_CAS, 0o644)?;
        let legacy = ca.with_file_name(LEGACY_ROOT_CA_FILE);
        if legacy != ca {
            remove_if_present(&legacy)?;
        }
        let payloads = dir.join(field(spec, "payload_file_path"));
        if !payloads.exists() {
            let example = spec
                .inputs
                .get("example_payloads")
                .cloned()
                .unwrap_or(json!([]));
            let text = serde_json::to_string_pretty(&example).unwrap_or_else(|_| "[]".into());
            write_private(&payloads, &text, 0o644)?;
        }
        let mut config = json!({
            "endpoint": endpoint,
            "topic": field(spec, "topic"),
            "payload_file_path": field(spec, "payload_file_path"),
            "auth_files_path": field(spec, "auth_files_path"),
            "root_ca_cert_path": field(spec, "root_ca_cert_path"),
            "client_id_prefix": field(spec, "client_id_prefix"),
        });
        if let Some(topics) = spec.desired.get("feedback_topics") {
            config["feedback_topics"] = topics.clone();
        }
        let text = serde_json::to_string_pretty(&config).unwrap_or_default();
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
        let path = PathBuf::from(field(spec, "path"));
        let mut files = vec![path.clone()];
        if let Some(dir) = path.parent() {
            let ca = dir.join(field(spec, "root_ca_cert_path"));
            files.push(ca.with_file_name(LEGACY_ROOT_CA_FILE));
            files.push(ca);
        }
        for f in files {
            remove_if_present(&f)?;
        }
        Ok(())
    }
}

/// Removes a file the simulator config owns; one already gone is fine.
fn remove_if_present(f: &Path) -> Result<(), CloudError> {
    match std::fs::remove_file(f) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CloudError::fatal(
            "LocalFile",
            format!("cannot remove {}: {e}", f.display()),
        )
        .with_hint("remove it by hand or fix its permissions, then destroy again")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twin_config::{Layer, ProviderName};
    use twin_engine::ResourceId;

    fn driver() -> SimulatorConfigDriver {
        let conf = aws_types::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_types::region::Region::new("us-east-1"))
            .build();
        SimulatorConfigDriver::new(Arc::new(AwsClients::from_sdk_config(
            &conf,
            "123456789012".into(),
            "us-east-1".into(),
            "aws".into(),
        )))
    }

    #[test]
    fn the_bundle_holds_amazon_root_ca_1_to_4() {
        assert_eq!(AMAZON_ROOT_CAS.matches("BEGIN CERTIFICATE").count(), 4);
    }

    #[tokio::test]
    async fn a_ca_file_that_is_not_the_bundle_is_drift() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let sim = simulator_dir(dir.path());
        let devices = dir.path().join(".deployer").join("devices");
        std::fs::create_dir_all(&sim).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(&devices).unwrap_or_else(|e| panic!("{e}"));
        let path = sim.join("config.json");
        std::fs::write(&path, "{}").unwrap_or_else(|e| panic!("{e}"));
        let spec = ResourceSpec::new(
            ResourceId("l1/simulator_config/config".into()),
            Layer::L1,
            ProviderName::Aws,
            KIND,
            path.display().to_string(),
        )
        .desired(json!({
            "path": path.display().to_string(),
            "root_ca_cert_path": format!("../devices/{ROOT_CA_FILE}"),
            "root_ca_bundle": ROOT_CA_BUNDLE,
        }));
        // What an earlier version wrote: Root CA 1 alone.
        let first_only = AMAZON_ROOT_CAS
            .split_inclusive("-----END CERTIFICATE-----\n")
            .next()
            .unwrap_or_default();
        std::fs::write(devices.join(ROOT_CA_FILE), first_only).unwrap_or_else(|e| panic!("{e}"));
        let d = driver();
        let seen = d.read(&spec, &Outputs::default()).await;
        let seen = seen.ok().flatten().unwrap_or_else(|| panic!("config read"));
        assert!(seen
            .drift(&spec.desired)
            .contains(&"root_ca_bundle".to_string()));

        std::fs::write(devices.join(ROOT_CA_FILE), AMAZON_ROOT_CAS)
            .unwrap_or_else(|e| panic!("{e}"));
        let seen = d.read(&spec, &Outputs::default()).await;
        let seen = seen.ok().flatten().unwrap_or_else(|| panic!("config read"));
        assert!(!seen
            .drift(&spec.desired)
            .contains(&"root_ca_bundle".to_string()));
    }
}
