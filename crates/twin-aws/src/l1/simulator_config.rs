//! The ready-to-use simulator config `deploy` writes for the twin (SPEC §7):
//! `<config-dir>/.deployer/simulator/config.json` with the IoT data endpoint (DescribeEndpoint
//! `iot:Data-ATS`), the topic prefix, the device credentials and the Amazon root CA, plus an
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

/// Amazon's root CA 1, which signs the IoT Core ATS endpoints' certificates.
pub const AMAZON_ROOT_CA1: &str = include_str!("AmazonRootCA1.pem");

/// File name of the root CA beside the device folders.
pub const ROOT_CA_FILE: &str = "AmazonRootCA1.pem";

/// Where the simulator config goes.
pub fn simulator_dir(config_dir: &Path) -> PathBuf {
    config_dir.join(".deployer").join("simulator")
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
        let ca_present = path
            .parent()
            .map(|p| p.join(field(spec, "root_ca_cert_path")).exists())
            .unwrap_or(false);
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
                "root_ca_present": ca_present,
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
        write_private(&ca, AMAZON_ROOT_CA1, 0o644)?;
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
        let config = json!({
            "endpoint": endpoint,
            "topic": field(spec, "topic"),
            "payload_file_path": field(spec, "payload_file_path"),
            "auth_files_path": field(spec, "auth_files_path"),
            "root_ca_cert_path": field(spec, "root_ca_cert_path"),
            "client_id_prefix": field(spec, "client_id_prefix"),
        });
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
