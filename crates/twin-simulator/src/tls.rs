//! Mutual TLS for one device: the broker's CA plus the device's own certificate and private key.
//!
//! Keys may be PKCS#1 (`BEGIN RSA PRIVATE KEY`, what AWS IoT returns), PKCS#8 or SEC1 (EC).
//! Key material is never printed: errors name the file, not its contents.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// File name of a device's certificate inside its credentials folder (as `deploy` writes it).
pub const CERTIFICATE_FILE: &str = "certificate.pem.crt";
/// File name of a device's private key inside its credentials folder (as `deploy` writes it).
pub const PRIVATE_KEY_FILE: &str = "private.pem.key";
/// ALPN protocol AWS IoT Core requires for MQTT over mutual TLS on port 443.
const AWS_IOT_ALPN: &[u8] = b"x-amzn-mqtt-ca";

/// What can be wrong with the TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The root CA file is missing, unreadable or holds no certificate.
    #[error("root CA certificate {path} (root_ca_cert_path): {problem}")]
    RootCa {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A device's certificate is missing, unreadable or invalid.
    #[error("device {device}: certificate {path}: {problem}")]
    Certificate {
        /// The device concerned.
        device: String,
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A device's private key is missing, unreadable or in an unknown format.
    #[error("device {device}: private key {path}: {problem}")]
    PrivateKey {
        /// The device concerned.
        device: String,
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The certificate and key do not belong together, or rustls refuses them.
    #[error("device {device}: {cert} and {key} cannot be used together: {problem}")]
    Pair {
        /// The device concerned.
        device: String,
        /// The certificate file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

/// Where one device's credentials live: `<auth_files_path>/<device-id>/`.
#[derive(Debug, Clone)]
pub struct DeviceCredentials {
    /// The device (and MQTT client id).
    pub device_id: String,
    /// Its certificate (PEM, leaf first; intermediates may follow).
    pub certificate: PathBuf,
    /// Its private key (PEM).
    pub private_key: PathBuf,
}

impl DeviceCredentials {
    /// The credential paths of `device_id` under `auth_files_dir`.
    pub fn locate(auth_files_dir: &Path, device_id: &str) -> Self {
        let dir = auth_files_dir.join(device_id);
        Self {
            device_id: device_id.to_string(),
            certificate: dir.join(CERTIFICATE_FILE),
            private_key: dir.join(PRIVATE_KEY_FILE),
        }
    }
}

/// The broker's trust anchors plus the crypto provider, shared by every device's connection.
#[derive(Debug, Clone)]
pub struct TlsContext {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    alpn: Option<Vec<u8>>,
}

impl TlsContext {
    /// Loads every root CA in `root_ca` (a PEM bundle: `deploy` writes Amazon Root CA 1-4 for
    /// AWS, the IoT Hub roots for Azure, a test CA for a local broker) and trusts exactly those;
    /// `port` 443 turns on AWS IoT's MQTT ALPN.
    pub fn load(root_ca: &Path, port: u16) -> Result<Self, TlsError> {
        let fail = |problem: String| TlsError::RootCa {
            path: root_ca.to_path_buf(),
            problem,
        };
        let certs = read_certificates(root_ca).map_err(fail)?;
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(fail(
                "no usable CA certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)".into(),
            ));
        }
        Ok(Self {
            roots: Arc::new(roots),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            alpn: (port == 443).then(|| AWS_IOT_ALPN.to_vec()),
        })
    }

    /// A client config that presents `creds` to the broker.
    pub fn client_config(&self, creds: &DeviceCredentials) -> Result<Arc<ClientConfig>, TlsError> {
        let chain =
            read_certificates(&creds.certificate).map_err(|problem| TlsError::Certificate {
                device: creds.device_id.clone(),
                path: creds.certificate.clone(),
                problem,
            })?;
        let key = read_private_key(&creds.private_key).map_err(|problem| TlsError::PrivateKey {
            device: creds.device_id.clone(),
            path: creds.private_key.clone(),
            problem,
        })?;
        let pair_error = |problem: String| TlsError::Pair {
            device: creds.device_id.clone(),
            cert: creds.certificate.clone(),
            key: creds.private_key.clone(),
            problem,
        };
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| pair_error(e.to_string()))?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(chain, key)
            .map_err(|e| {
                pair_error(match e {
                    rustls::Error::InconsistentKeys(_) => {
                        "the private key does not match the certificate's public key".into()
                    }
                    rustls::Error::InvalidCertificate(why) => format!(
                        "the certificate cannot be parsed for TLS ({why:?}); it must be an \
                         X.509 v3 certificate, as AWS IoT and `openssl x509 -req -extfile` issue"
                    ),
                    other => other.to_string(),
                })
            })?;
        if let Some(alpn) = &self.alpn {
            config.alpn_protocols = vec![alpn.clone()];
        }
        Ok(Arc::new(config))
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM `BEGIN CERTIFICATE` block".into());
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read_file(path)?;
    // The pem error names the problem, never the key bytes.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => "holds no PEM private key \
             (expected `BEGIN RSA PRIVATE KEY`, `BEGIN PRIVATE KEY` or `BEGIN EC PRIVATE KEY`)"
            .to_string(),
        other => format!("not a valid PEM private key: {other}"),
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "file not found (deploy writes one per device; \
             check auth_files_path / root_ca_cert_path in the simulator config)"
            .to_string(),
        _ => format!("cannot read: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_located_per_device() {
        let c = DeviceCredentials::locate(Path::new("/x/devices"), "sensor-1");
        assert_eq!(
            c.certificate,
            Path::new("/x/devices/sensor-1/certificate.pem.crt")
        );
        assert_eq!(
            c.private_key,
            Path::new("/x/devices/sensor-1/private.pem.key")
        );
    }

    #[test]
    fn missing_root_ca_names_the_file() {
        let err = TlsContext::load(Path::new("/nonexistent/ca.pem"), 8883).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/nonexistent/ca.pem") && msg.contains("not found"),
            "{msg}"
        );
    }

    #[test]
    fn every_ca_of_a_bundle_is_trusted() {
        // The bundle `deploy` writes for AWS: Amazon Root CA 1 to 4, so that an endpoint served
        // from an ECC chain (Root CA 3) is trusted as well as the RSA one (Root CA 1).
        let bundle =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../twin-aws/src/l1/AmazonRootCAs.pem");
        let ctx = TlsContext::load(&bundle, 443).unwrap();
        assert_eq!(ctx.roots.len(), 4);
        assert_eq!(ctx.alpn.as_deref(), Some(AWS_IOT_ALPN));
    }

    #[test]
    fn garbage_root_ca_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "hello").unwrap();
        let err = TlsContext::load(&path, 8883).unwrap_err();
        assert!(err.to_string().contains("no PEM"), "{err}");
    }
}
