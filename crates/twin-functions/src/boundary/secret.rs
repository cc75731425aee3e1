//! A boundary's shared secret: 32 random bytes per boundary and twin, known to the sender (which
//! signs) and the receiver (which checks), and to nobody's logs.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;

/// Bytes of a boundary secret.
pub const SECRET_BYTES: usize = 32;

/// A boundary secret. `Debug` and `Display` never show the bytes; [`BoundarySecret::encoded`]
/// is the one way out, for writing it into a secret store.
#[derive(Clone, PartialEq, Eq)]
pub struct BoundarySecret([u8; SECRET_BYTES]);

/// A text that is not an encoded boundary secret (the text itself is never part of the error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is not a boundary secret: {reason}")]
pub struct SecretFormatError {
    /// Where the text came from, e.g. the environment variable's name.
    pub what: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl BoundarySecret {
    /// A fresh secret from the operating system's random source.
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::fill(&mut bytes);
        Self(bytes)
    }

    /// The secret with these bytes (tests and fixtures).
    pub fn from_bytes(bytes: [u8; SECRET_BYTES]) -> Self {
        Self(bytes)
    }

    /// Reads the stored form (standard base64 of the 32 bytes); `what` names the source in
    /// the error.
    pub fn from_encoded(what: &str, text: &str) -> Result<Self, SecretFormatError> {
        let error = |reason| SecretFormatError {
            what: what.to_string(),
            reason,
        };
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| error("not base64"))?;
        let bytes: [u8; SECRET_BYTES] = bytes
            .try_into()
            .map_err(|_| error("not 32 bytes once decoded"))?;
        Ok(Self(bytes))
    }

    /// The stored form: standard base64 of the bytes. Only for a secret store or a function's
    /// encrypted settings; never print it.
    pub fn encoded(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// A fingerprint safe to keep in the state file and show in `info`: SHA-256 of a fixed
    /// label and the secret, hex. It tells two secrets apart (drift, rotation done) and reveals
    /// nothing of a 256-bit random secret.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"twin-boundary-secret-fingerprint-v1\0");
        h.update(self.0);
        hex::encode(h.finalize())
    }

    /// The key bytes, for the HMAC inside this module tree only.
    pub(crate) fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for BoundarySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BoundarySecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_stored_form() {
        let s = BoundarySecret::generate();
        let back = BoundarySecret::from_encoded("X", &s.encoded()).expect("decodes");
        assert_eq!(s, back);
        assert_ne!(s, BoundarySecret::generate(), "two draws differ");
    }

    #[test]
    fn never_shows_its_bytes() {
        let s = BoundarySecret::from_bytes([7; 32]);
        let shown = format!("{s:?}");
        assert_eq!(shown, "BoundarySecret(<redacted>)");
        assert!(!s.fingerprint().contains(&hex::encode([7u8; 32])));
        assert_eq!(s.fingerprint().len(), 64);
    }

    #[test]
    fn refuses_texts_that_are_not_secrets_without_echoing_them() {
        let e = BoundarySecret::from_encoded("REMOTE_SECRET", "hunter2!").expect_err("not b64");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let short = STANDARD.encode([1u8; 16]);
        let e = BoundarySecret::from_encoded("REMOTE_SECRET", &short).expect_err("too short");
        assert!(e.to_string().contains("32 bytes"), "{e}");
    }
}
