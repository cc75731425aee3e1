//! A device's X.509 credentials, made on this machine: a P-256 key pair and a self-signed
//! certificate (rcgen), written into the device's directory with the key mode 0600 and never
//! printed. IoT Hub learns only the certificate's SHA-256 thumbprint, and so does the state.

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

/// The directory of a device's credentials: `<config-dir>/.deployer/devices/<device>/`, the
/// same place the AWS layer uses, so the simulator finds them either way.
pub fn device_dir(config_dir: &Path, device: &str) -> PathBuf {
    config_dir.join(".deployer").join("devices").join(device)
}

/// The SHA-256 thumbprint of a PEM certificate as IoT Hub shows it: 64 uppercase hex digits
/// of the DER encoding's hash.
pub fn thumbprint(pem: &str) -> Option<String> {
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
    Some(hex::encode_upper(Sha256::digest(der)))
}

/// The thumbprint of the certificate in `dir`, when a certificate and its key are both there.
pub fn local_thumbprint(dir: &Path) -> Option<String> {
    if !dir.join(PRIVATE_KEY_FILE).exists() {
        return None;
    }
    let pem = std::fs::read_to_string(dir.join(CERTIFICATE_FILE)).ok()?;
    thumbprint(&pem)
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

/// The thumbprint of the device's credentials in `dir`: the pair already there (written by an
/// earlier or interrupted run), else a new pair, the key written first so a certificate file
/// always has its key beside it.
pub fn ensure_credentials(dir: &Path, device: &str) -> Result<String, CloudError> {
    if let Some(t) = local_thumbprint(dir) {
        return Ok(t);
    }
    let (cert, key) = make_certificate(device)?;
    write_private(&dir.join(PRIVATE_KEY_FILE), &key, 0o600)?;
    write_private(&dir.join(CERTIFICATE_FILE), &cert, 0o644)?;
    thumbprint(&cert).ok_or_else(|| {
        CloudError::fatal(
            "CertificateGeneration",
            format!("certificate of device {device}: the new certificate has no DER body"),
        )
    })
}

/// Removes a device's credentials (a deleted identity's key must not linger).
pub fn remove_credentials(dir: &Path) -> Result<(), CloudError> {
    for f in [PRIVATE_KEY_FILE, CERTIFICATE_FILE] {
        let path = dir.join(f);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(CloudError::fatal(
                    "LocalFile",
                    format!("cannot remove {}: {e}", path.display()),
                )
                .with_hint("remove it by hand or fix its permissions, then run the command again"))
            }
        }
    }
    // The directory may hold files of the user's own; only an empty one goes.
    let _ = std::fs::remove_dir(dir);
    Ok(())
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
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
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
    fn credentials_are_made_once_with_an_owner_only_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("sensor-1");
        let t = ensure_credentials(&d, "sensor-1").expect("made");
        assert_eq!(t.len(), 64);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
        let mode = std::fs::metadata(d.join(PRIVATE_KEY_FILE))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ensure_credentials(&d, "sensor-1").expect("kept"), t);
        remove_credentials(&d).expect("removed");
        assert!(!d.exists());
    }

    #[test]
    fn a_thumbprint_needs_a_certificate() {
        assert_eq!(thumbprint("not a pem"), None);
        let (cert, _) = make_certificate("d").expect("cert");
        assert_eq!(thumbprint(&cert), thumbprint(&cert));
    }
}
