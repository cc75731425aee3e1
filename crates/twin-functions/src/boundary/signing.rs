//! The signature of a boundary request: HMAC-SHA256 with the boundary's secret over the hop, the
//! timestamp, the nonce and the body, so none of them can be changed or replayed elsewhere.

use super::secret::BoundarySecret;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header: the boundary's hop (`dispatch`, `persist`, ...), also signed.
pub const HEADER_HOP: &str = "x-twin-boundary";
/// Header: the sender's clock when it signed, Unix seconds.
pub const HEADER_TIMESTAMP: &str = "x-twin-timestamp";
/// Header: 32 hex digits, random per request (the replay check's key).
pub const HEADER_NONCE: &str = "x-twin-nonce";
/// Header: `v1=<64 hex digits>`, the HMAC-SHA256 of [`signed_bytes`].
pub const HEADER_SIGNATURE: &str = "x-twin-signature";
/// Header: the message's trace id, the same as the envelope's (for logs before the body is read).
pub const HEADER_TRACE_ID: &str = "x-twin-trace-id";

/// The version prefix of the signature header's value.
pub const SIGNATURE_VERSION: &str = "v1=";

/// The bytes that are signed: a version label, the hop, the timestamp and the nonce, each
/// followed by a newline (none of them may hold one), then the body as sent.
pub fn signed_bytes(hop: &str, timestamp: i64, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + hop.len() + nonce.len() + 32);
    v.extend_from_slice(b"twin-boundary-v1\n");
    v.extend_from_slice(hop.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(timestamp.to_string().as_bytes());
    v.push(b'\n');
    v.extend_from_slice(nonce.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(body);
    v
}

fn mac(secret: &BoundarySecret) -> Hmac<Sha256> {
    // HMAC takes keys of any length; a 32-byte key can never be refused.
    match Hmac::<Sha256>::new_from_slice(secret.key()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// The signature header's value for these parts: `v1=<hex>`.
pub fn sign(
    secret: &BoundarySecret,
    hop: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
) -> String {
    let mut m = mac(secret);
    m.update(&signed_bytes(hop, timestamp, nonce, body));
    format!(
        "{SIGNATURE_VERSION}{}",
        hex::encode(m.finalize().into_bytes())
    )
}

/// Whether `signature` (the raw header value) is the signature of these parts under `secret`.
/// The comparison is constant-time (`hmac`'s `verify_slice`, built on `subtle`), so a caller
/// learns nothing from how long a wrong guess took.
pub fn signature_matches(
    secret: &BoundarySecret,
    hop: &str,
    timestamp: i64,
    nonce: &str,
    body: &[u8],
    signature: &[u8],
) -> bool {
    let mut m = mac(secret);
    m.update(&signed_bytes(hop, timestamp, nonce, body));
    m.verify_slice(signature).is_ok()
}

/// The 32 MAC bytes of a `v1=<64 hex>` header value, or `None` if it is not one.
pub fn parse_signature(value: &str) -> Option<Vec<u8>> {
    let hex_part = value.trim().strip_prefix(SIGNATURE_VERSION)?;
    let bytes = hex::decode(hex_part).ok()?;
    (bytes.len() == 32).then_some(bytes)
}
