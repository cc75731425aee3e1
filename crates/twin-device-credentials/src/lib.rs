//! A device's X.509 credentials, made on this machine the same way for every cloud: a P-256 key
//! pair and a self-signed certificate (rcgen), written into the device's directory with the key
//! owner-only (0600) and never printed. Each cloud learns only the certificate (AWS IoT Core) or
//! its SHA-256 thumbprint (Azure IoT Hub), both derived from [`der_sha256`].

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use twin_engine::CloudError;

/// File name of the device certificate (the simulator's name for it).
pub const CERTIFICATE_FILE: &str = "certificate.pem.crt";

/// File name of the device's private key (0600).
pub const PRIVATE_KEY_FILE: &str = "private.pem.key";

/// The directory of a device's credentials: `<config-dir>/.deployer/devices/<device>/`, on
/// every cloud, so the simulator finds them either way.
pub fn device_dir(config_dir: &Path, device: &str) -> PathBuf {
    config_dir.join(".deployer").join("devices").join(device)
}

/// The SHA-256 of a PEM certificate's DER encoding (AWS's certificate id in hex, IoT Hub's
/// thumbprint in uppercase hex), or `None` when the text holds no certificate.
pub fn der_sha256(pem: &str) -> Option<[u8; 32]> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()?;
    if der.is_empty() {
        return None;
    }
    Some(Sha256::digest(der).into())
}

/// Makes a P-256 key pair and a self-signed certificate whose subject is `common_name` (IoT
/// Hub wants the device id there); returns (certificate PEM, key PEM).
pub fn make_certificate(common_name: &str) -> Result<(String, String), CloudError> {
    let fail = |e: rcgen::Error| {
        CloudError::fatal(
            "CertificateGeneration",
            format!("certificate of device {common_name}: {e}"),
        )
    };
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2049, 12, 31);
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `contents` to `path` atomically with `mode` (the temp file has the mode from the
/// start, so a key is never readable by others, not even briefly).
pub fn write_private(path: &Path, contents: &str, mode: u32) -> Result<(), CloudError> {
    let fail = |e: std::io::Error| {
        CloudError::fatal("LocalFile", format!("cannot write {}: {e}", path.display()))
            .with_hint("check the permissions of the config directory")
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    // `<name>.tmp` beside it: distinct for `private.pem.key` and `private.pem.key.next`.
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| CloudError::fatal("LocalFile", format!("{} names no file", path.display())))?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(contents.as_bytes()).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_made_certificate_has_a_der_hash_and_its_key_is_written_owner_only() {
        let (cert, key) = make_certificate("sensor-1").expect("made");
        assert!(der_sha256(&cert).is_some());
        assert_eq!(der_sha256(&key), None, "a key is not a certificate");
        assert_eq!(der_sha256(""), None);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = device_dir(dir.path(), "sensor-1").join(PRIVATE_KEY_FILE);
        write_private(&path, &key, 0o600).expect("written");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), key);
    }
}
