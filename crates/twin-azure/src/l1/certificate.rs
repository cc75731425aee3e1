//! A device's X.509 credentials, made on this machine: a P-256 key pair and a self-signed
//! certificate (rcgen), written into the device's directory with the key mode 0600 and never
//! printed. IoT Hub learns only the certificate's SHA-256 thumbprint, and so does the state.

use std::path::Path;
use twin_engine::CloudError;

pub use twin_device_credentials::{
    device_dir, make_certificate, write_private, CERTIFICATE_FILE, PRIVATE_KEY_FILE,
};

/// The SHA-256 thumbprint of a PEM certificate as IoT Hub shows it: 64 uppercase hex digits
/// of the DER encoding's hash.
pub fn thumbprint(pem: &str) -> Option<String> {
    twin_device_credentials::der_sha256(pem).map(hex::encode_upper)
}

/// The thumbprint of the certificate in `dir`, when a certificate and its key are both there.
pub fn local_thumbprint(dir: &Path) -> Option<String> {
    if !dir.join(PRIVATE_KEY_FILE).exists() {
        return None;
    }
    let pem = std::fs::read_to_string(dir.join(CERTIFICATE_FILE)).ok()?;
    thumbprint(&pem)
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
