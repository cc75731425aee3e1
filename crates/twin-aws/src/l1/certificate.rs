//! A device's X.509 certificate. The key pair and a self-signed certificate are made locally and
//! written (key 0600) before the certificate is registered with IoT Core
//! (RegisterCertificateWithoutCA), so its id — the SHA-256 of its DER — is known before the
//! cloud call: a crash between the call and the state write still finds it again.

use crate::errors::{cloud, gone_is_ok, not_found_is_none};
use crate::AwsClients;
use async_trait::async_trait;
use aws_sdk_iot::types::CertificateStatus;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs, ResourceDriver, ResourceSpec};

/// Driver kind of a device certificate.
pub const KIND: &str = "iot_certificate";

pub use twin_device_credentials::{
    device_dir, make_certificate, write_private, CERTIFICATE_FILE, PRIVATE_KEY_FILE,
};

/// The id IoT Core gives a certificate: hex SHA-256 of its DER encoding.
pub fn certificate_id(pem: &str) -> Option<String> {
    twin_device_credentials::der_sha256(pem).map(hex::encode)
}

/// Registers, reads and deletes device certificates.
pub struct CertificateDriver {
    clients: Arc<AwsClients>,
}

impl CertificateDriver {
    /// A driver using these clients.
    pub fn new(clients: Arc<AwsClients>) -> Self {
        CertificateDriver { clients }
    }
}

fn field<'a>(spec: &'a ResourceSpec, k: &str) -> &'a str {
    spec.inputs
        .get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The ids a certificate may have: the DER hash (AWS), plus, against an emulator, the hash of
/// the PEM text, which is how moto derives ids unless configured otherwise.
pub fn candidate_ids(pem: &str, emulator: bool) -> Vec<String> {
    let mut ids: Vec<String> = certificate_id(pem).into_iter().collect();
    if emulator {
        ids.push(hex::encode(Sha256::digest(pem.as_bytes())));
    }
    ids
}

/// The certificate ids a spec may refer to: a discovered one names it, a configured one has it
/// in its local certificate file.
fn ids_of(spec: &ResourceSpec, emulator: bool) -> Vec<String> {
    let named = field(spec, "certificate_id");
    if !named.is_empty() {
        return vec![named.to_string()];
    }
    let dir = field(spec, "dir");
    if dir.is_empty() {
        return Vec::new();
    }
    match std::fs::read_to_string(Path::new(dir).join(CERTIFICATE_FILE)) {
        Ok(pem) => candidate_ids(&pem, emulator),
        Err(_) => Vec::new(),
    }
}

#[async_trait]
impl ResourceDriver for CertificateDriver {
    async fn read(&self, spec: &ResourceSpec, _: &Outputs) -> Result<Option<Observed>, CloudError> {
        let mut found = None;
        for id in ids_of(spec, self.clients.endpoint_override) {
            if let Some(out) = not_found_is_none(
                self.clients
                    .iot
                    .describe_certificate()
                    .certificate_id(&id)
                    .send()
                    .await,
            )? {
                found = out.certificate_description().cloned().map(|d| (id, d));
                break;
            }
        }
        let Some((id, d)) = found else {
            return Ok(None);
        };
        let arn = d.certificate_arn().unwrap_or_default().to_string();
        Ok(Some(Observed::new(
            arn.clone(),
            json!({
                "arn": arn,
                "certificate_id": id,
                "status": d.status().map(|s| s.as_str()),
            }),
        )))
    }

    async fn create(&self, spec: &ResourceSpec, deps: &Outputs) -> Result<Observed, CloudError> {
        let dir = PathBuf::from(field(spec, "dir"));
        let cert_path = dir.join(CERTIFICATE_FILE);
        let key_path = dir.join(PRIVATE_KEY_FILE);
        // A pair written by an interrupted run is reused; otherwise a new one is made. The
        // key is written first, so a certificate file always has its key beside it.
        let pem = match (std::fs::read_to_string(&cert_path), key_path.exists()) {
            (Ok(pem), true) if certificate_id(&pem).is_some() => pem,
            _ => {
                let (cert, key) = make_certificate(field(spec, "thing"))?;
                write_private(&key_path, &key, 0o600)?;
                write_private(&cert_path, &cert, 0o644)?;
                cert
            }
        };
        let r = self
            .clients
            .iot
            .register_certificate_without_ca()
            .certificate_pem(&pem)
            .status(CertificateStatus::Active)
            .send()
            .await;
        if let Err(e) = r {
            let e = cloud(e);
            if e.code != "ResourceAlreadyExistsException" {
                return Err(e);
            }
        }
        let current = self.read(spec, deps).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("certificate of {} not visible yet", spec.name),
            )
        })?;
        if current.attr("status") != Some("ACTIVE") {
            return self.update(spec, &current, deps).await;
        }
        Ok(current)
    }

    async fn update(
        &self,
        spec: &ResourceSpec,
        current: &Observed,
        deps: &Outputs,
    ) -> Result<Observed, CloudError> {
        let id = current.attr("certificate_id").unwrap_or_default();
        self.clients
            .iot
            .update_certificate()
            .certificate_id(id)
            .new_status(CertificateStatus::Active)
            .send()
            .await
            .map_err(cloud)?;
        crate::errors::reread(
            self.read(spec, deps).await?,
            "ResourceNotFoundException",
            &format!("certificate of {}", spec.name),
        )
    }

    async fn delete(&self, spec: &ResourceSpec, current: &Observed) -> Result<(), CloudError> {
        delete_certificate(
            &self.clients,
            current.attr("certificate_id").unwrap_or_default(),
            &current.cloud_id,
        )
        .await?;
        let dir = field(spec, "dir");
        if !dir.is_empty() {
            // The credentials of a deleted certificate are useless; the key must not linger.
            for f in [PRIVATE_KEY_FILE, CERTIFICATE_FILE] {
                let _ = std::fs::remove_file(Path::new(dir).join(f));
            }
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }
}

/// Deactivates a certificate, detaches it from every thing and policy, and deletes it.
pub async fn delete_certificate(
    clients: &AwsClients,
    id: &str,
    arn: &str,
) -> Result<(), CloudError> {
    let iot = &clients.iot;
    gone_is_ok(
        iot.update_certificate()
            .certificate_id(id)
            .new_status(CertificateStatus::Inactive)
            .send()
            .await,
    )?;
    if let Some(things) =
        not_found_is_none(iot.list_principal_things().principal(arn).send().await)?
    {
        for t in things.things() {
            gone_is_ok(
                iot.detach_thing_principal()
                    .thing_name(t)
                    .principal(arn)
                    .send()
                    .await,
            )?;
        }
    }
    if let Some(policies) =
        not_found_is_none(iot.list_attached_policies().target(arn).send().await)?
    {
        for p in policies.policies() {
            if let Some(name) = p.policy_name() {
                gone_is_ok(
                    iot.detach_policy()
                        .policy_name(name)
                        .target(arn)
                        .send()
                        .await,
                )?;
            }
        }
    }
    gone_is_ok(
        iot.delete_certificate()
            .certificate_id(id)
            .force_delete(true)
            .send()
            .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_certificates_have_a_stable_id_and_a_private_key() -> Result<(), CloudError> {
        let (cert, key) = make_certificate("twin-device")?;
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
        let id = certificate_id(&cert).unwrap_or_default();
        assert_eq!(id.len(), 64);
        assert_eq!(certificate_id(&cert), Some(id));
        Ok(())
    }

    #[test]
    fn keys_are_written_owner_only() -> Result<(), CloudError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().map_err(|e| CloudError::fatal("io", e.to_string()))?;
        let p = dir.path().join("d").join(PRIVATE_KEY_FILE);
        write_private(&p, "secret", 0o600)?;
        let mode = std::fs::metadata(&p)
            .map_err(|e| CloudError::fatal("io", e.to_string()))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        Ok(())
    }
}
