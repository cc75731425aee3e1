//! The broker's own certificates, made once per twin directory and kept: a local CA, the
//! server certificate for `localhost`/127.0.0.1 it signs, and the rule engine's client
//! identity (it reads what the deployed topic rule selects), and the IoT data-plane shim's client
//! identity (it publishes what the twin's functions send to devices). Keys are written 0600.

use crate::LocalError;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use twin_aws::l1::certificate::write_private;

/// CN of the rule engine's client certificate. Device identities are thing names
/// (`<twin>--<device>`, always with `--`), so this cannot be a device's.
pub const RULE_ENGINE_IDENTITY: &str = "deployer-local-rule-engine";

/// CN of the IoT data-plane shim's client certificate: the twin's service identity publishing to
/// devices (a separate identity, because the broker forces the CN as client id and two clients
/// with one id would keep disconnecting each other).
pub const IOT_DATA_IDENTITY: &str = "deployer-local-iot-data";

/// The files of the local PKI under `.deployer/local/`.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The local CA certificate (the simulator's root CA while the local plane is up).
    pub ca_cert: PathBuf,
    /// The local CA's key (0600).
    pub ca_key: PathBuf,
    /// The broker's server certificate.
    pub server_cert: PathBuf,
    /// The broker's server key (0600).
    pub server_key: PathBuf,
    /// The rule engine's client certificate.
    pub rule_engine_cert: PathBuf,
    /// The rule engine's client key (0600).
    pub rule_engine_key: PathBuf,
    /// The IoT data-plane shim's client certificate.
    pub iot_data_cert: PathBuf,
    /// The IoT data-plane shim's client key (0600).
    pub iot_data_key: PathBuf,
}

impl Pki {
    /// The PKI's paths in `dir`.
    pub fn in_dir(dir: &Path) -> Pki {
        Pki {
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            rule_engine_cert: dir.join("rule-engine.pem"),
            rule_engine_key: dir.join("rule-engine.key"),
            iot_data_cert: dir.join("iot-data.pem"),
            iot_data_key: dir.join("iot-data.key"),
        }
    }

    fn files(&self) -> [&Path; 8] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
            &self.rule_engine_cert,
            &self.rule_engine_key,
            &self.iot_data_cert,
            &self.iot_data_key,
        ]
    }

    /// Makes the CA and the certificates it signs unless all are already there (a directory from
    /// before a certificate was added gets all of them anew; `local up` then rewrites the trust
    /// bundle and restarts the broker, since its files changed).
    pub fn ensure(&self) -> Result<(), LocalError> {
        if self.files().iter().all(|f| f.exists()) {
            return Ok(());
        }
        let fail = |e: rcgen::Error| LocalError::Certificate(e.to_string());
        let ca_key = KeyPair::generate().map_err(fail)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca.distinguished_name
            .push(DnType::CommonName, "deployer local data plane CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = rcgen::date_time_ymd(2024, 1, 1);
        ca.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;

        let issue = |cn: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().map_err(fail)?;
            let mut p = CertificateParams::new(sans).map_err(fail)?;
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            p.not_before = rcgen::date_time_ymd(2024, 1, 1);
            p.not_after = rcgen::date_time_ymd(2049, 12, 31);
            let cert = p.signed_by(&key, &ca_cert, &ca_key).map_err(fail)?;
            Ok::<_, LocalError>((cert.pem(), key.serialize_pem()))
        };
        let (server, server_key) = issue(
            "localhost",
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (engine, engine_key) = issue(
            RULE_ENGINE_IDENTITY,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let (iot_data, iot_data_key) = issue(
            IOT_DATA_IDENTITY,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let write = |path: &Path, text: &str, mode: u32| {
            write_private(path, text, mode).map_err(|e| LocalError::Io {
                path: path.to_path_buf(),
                message: e.message,
            })
        };
        // Keys first: a certificate on disk always has its key beside it.
        write(&self.ca_key, &ca_key.serialize_pem(), 0o600)?;
        write(&self.server_key, &server_key, 0o600)?;
        write(&self.rule_engine_key, &engine_key, 0o600)?;
        write(&self.iot_data_key, &iot_data_key, 0o600)?;
        write(&self.server_cert, &server, 0o644)?;
        write(&self.rule_engine_cert, &engine, 0o644)?;
        write(&self.iot_data_cert, &iot_data, 0o644)?;
        write(&self.ca_cert, &ca_cert.pem(), 0o644)
    }
}

impl Pki {
    /// A TLS server config for an https endpoint on this machine: the server certificate
    /// (127.0.0.1, localhost) this CA signed, HTTP/1.1 only. Errors name the file, never the key.
    pub fn https_server_config(&self) -> Result<Arc<rustls::ServerConfig>, LocalError> {
        let bad = |path: &Path, e: String| LocalError::Io {
            path: path.to_path_buf(),
            message: e,
        };
        let chain = CertificateDer::pem_file_iter(&self.server_cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(&self.server_cert, e.to_string()))?;
        let key = PrivateKeyDer::from_pem_file(&self.server_key)
            .map_err(|e| bad(&self.server_key, format!("not a usable private key: {e}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| LocalError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| LocalError::Certificate(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
