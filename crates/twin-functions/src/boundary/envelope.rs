//! What crosses a boundary: the in-cloud hop's JSON, unchanged, wrapped with a trace id, and the
//! headers that sign it.

use super::secret::BoundarySecret;
use super::signing::{
    sign, HEADER_HOP, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_TRACE_ID,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The body of a boundary request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BoundaryEnvelope {
    /// Follows the message across clouds, in both sides' logs (and in `verify`'s latencies).
    pub trace_id: String,
    /// Exactly what the in-cloud hop would have passed (the dispatcher's processor event, the
    /// persister's record, a mover's object, the connector's query).
    pub payload: Value,
}

impl BoundaryEnvelope {
    /// An envelope around `payload` with a fresh trace id.
    pub fn new(payload: Value) -> Self {
        Self {
            trace_id: new_trace_id(),
            payload,
        }
    }
}

/// A fresh random id: 32 hex digits (128 bits), used for trace ids and nonces.
pub fn new_trace_id() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

/// A request ready to post to a remote ingress: the headers to set and the exact body bytes
/// they sign (send these bytes, not a re-serialization).
#[derive(Debug, Clone, PartialEq)]
pub struct SignedRequest {
    /// Header name (lowercase) and value pairs.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

impl SignedRequest {
    /// The value of header `name` (lowercase), if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Signs `envelope` for `hop` at `now_secs` (Unix seconds) with `nonce`. Pure: the caller picks
/// the nonce (a fresh [`new_trace_id`] per attempt of a send, so a retry is not a replay).
pub fn sign_envelope(
    secret: &BoundarySecret,
    hop: &str,
    envelope: &BoundaryEnvelope,
    now_secs: i64,
    nonce: &str,
) -> Result<SignedRequest, serde_json::Error> {
    let body = serde_json::to_vec(envelope)?;
    let signature = sign(secret, hop, now_secs, nonce, &body);
    Ok(SignedRequest {
        headers: vec![
            (HEADER_HOP, hop.to_string()),
            (HEADER_TIMESTAMP, now_secs.to_string()),
            (HEADER_NONCE, nonce.to_string()),
            (HEADER_TRACE_ID, envelope.trace_id.clone()),
            (HEADER_SIGNATURE, signature),
            ("content-type", "application/json".to_string()),
        ],
        body,
    })
}
