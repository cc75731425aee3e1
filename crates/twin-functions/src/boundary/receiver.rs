//! The receiving side's check, run before the ingress does anything else: the signature under
//! one of the accepted secrets, the timestamp within the window, and the nonce not seen before
//! within it. Anything else is answered 401 with a reason code and touches nothing.

use super::envelope::{BoundaryEnvelope, SignedRequest};
use super::secret::BoundarySecret;
use super::signing::{
    parse_signature, signature_matches, HEADER_HOP, HEADER_NONCE, HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
};
use crate::error::CloudError;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;

/// How far (seconds) a request's timestamp may be from the receiver's clock, either way: long
/// enough for clock skew between clouds and a slow network, short enough that the nonce ledger
/// stays small.
pub const DEFAULT_WINDOW_SECS: i64 = 300;

/// The secrets a receiver accepts: its current one and, during a rotation, one other (the next
/// secret before the sender switches, or the previous one until it is retired).
#[derive(Debug, Clone)]
pub struct AcceptedSecrets {
    current: BoundarySecret,
    other: Option<BoundarySecret>,
}

impl AcceptedSecrets {
    /// Accepts only `current`.
    pub fn new(current: BoundarySecret) -> Self {
        Self {
            current,
            other: None,
        }
    }

    /// Accepts `other` too (rotation in progress).
    pub fn also(mut self, other: BoundarySecret) -> Self {
        self.other = Some(other);
        self
    }

    /// The accepted secrets, current first.
    pub fn iter(&self) -> impl Iterator<Item = &BoundarySecret> {
        std::iter::once(&self.current).chain(self.other.iter())
    }
}

/// Why a request was refused with 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// A required header is absent.
    MissingHeader(&'static str),
    /// A header is present but not in its format.
    MalformedHeader(&'static str),
    /// The request is signed for another boundary than this ingress's.
    WrongBoundary,
    /// The signature matches none of the accepted secrets (wrong secret, or a changed body,
    /// timestamp, nonce or hop).
    BadSignature,
    /// The timestamp is outside the window.
    StaleTimestamp,
    /// The nonce was already used within the window.
    ReplayedNonce,
}

impl RejectReason {
    /// The reason code in the 401 body, for the sender's logs and dead letters.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::MissingHeader(_) => "missing_header",
            RejectReason::MalformedHeader(_) => "malformed_header",
            RejectReason::WrongBoundary => "wrong_boundary",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::StaleTimestamp => "stale_timestamp",
            RejectReason::ReplayedNonce => "replayed_nonce",
        }
    }
}

/// Why an ingress refused a request, and the HTTP answer for it.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The request is not authentic or not fresh: 401, nothing done.
    Unauthorized(RejectReason),
    /// Authentic, but the body is not a boundary envelope: 400 (the sender has a bug; retrying
    /// the same bytes cannot help).
    BadRequest(String),
    /// The nonce ledger could not be reached: 503, so the sender retries later.
    Unavailable(CloudError),
}

impl Refusal {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Unauthorized(_) => 401,
            Refusal::BadRequest(_) => 400,
            Refusal::Unavailable(_) => 503,
        }
    }

    /// The JSON body to answer with: the reason code, and which header when one is at fault.
    /// Never echoes the request or a secret.
    pub fn body(&self) -> Value {
        match self {
            Refusal::Unauthorized(r) => {
                let mut v = json!({"error": "unauthorized", "reason": r.code()});
                if let RejectReason::MissingHeader(h) | RejectReason::MalformedHeader(h) = r {
                    v["header"] = json!(h);
                }
                v
            }
            Refusal::BadRequest(why) => json!({"error": "bad_request", "reason": why}),
            Refusal::Unavailable(_) => json!({"error": "unavailable", "reason": "nonce_ledger"}),
        }
    }
}

/// Where a request's headers come from; names are matched case-insensitively, as HTTP does.
pub trait HeaderSource: Sync {
    /// The value of header `name`, if present.
    fn header_value(&self, name: &str) -> Option<&str>;
}

impl HeaderSource for SignedRequest {
    fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl HeaderSource for HashMap<String, String> {
    fn header_value(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The nonces seen within the window, shared by every instance of the ingress (a function
/// scales out, so an in-process set alone would let a replay through another instance).
/// Cloud adapters implement it with a conditional write that expires (DynamoDB
/// `attribute_not_exists` + TTL, Cosmos `create` + `ttl`).
#[async_trait]
pub trait NonceLedger: Send + Sync {
    /// Records `nonce` for `hop` until `expires_at_secs`; `Ok(false)` if it was already there.
    async fn claim(&self, hop: &str, nonce: &str, expires_at_secs: i64)
        -> Result<bool, CloudError>;
}

/// A ledger in memory: for tests and for a single-instance receiver (the local data plane).
#[derive(Debug, Default)]
pub struct InMemoryNonceLedger {
    seen: Mutex<HashMap<(String, String), i64>>,
    now_secs: Mutex<i64>,
}

impl InMemoryNonceLedger {
    /// Tells the ledger the time, so it forgets nonces whose window has passed.
    pub fn advance_to(&self, now_secs: i64) {
        if let Ok(mut n) = self.now_secs.lock() {
            *n = now_secs;
        }
    }

    /// How many nonces it holds.
    pub fn len(&self) -> usize {
        self.seen.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl NonceLedger for InMemoryNonceLedger {
    async fn claim(
        &self,
        hop: &str,
        nonce: &str,
        expires_at_secs: i64,
    ) -> Result<bool, CloudError> {
        let now = self.now_secs.lock().map(|n| *n).unwrap_or(i64::MIN);
        let mut seen = self.seen.lock().map_err(|_| {
            CloudError::new(
                "ClaimNonce",
                format!("nonce ledger of boundary {hop}"),
                "Poisoned",
                "a thread panicked while holding the ledger",
                crate::error::CloudErrorKind::Transient,
            )
        })?;
        seen.retain(|_, expires| *expires >= now);
        let key = (hop.to_string(), nonce.to_string());
        if seen.contains_key(&key) {
            return Ok(false);
        }
        seen.insert(key, expires_at_secs);
        Ok(true)
    }
}

/// What a receiver knows about its boundary.
#[derive(Debug, Clone)]
pub struct ReceiverPolicy {
    /// The hop this ingress serves (`dispatch`, `persist`, ...).
    pub hop: String,
    /// The secrets it accepts.
    pub secrets: AcceptedSecrets,
    /// The timestamp window, seconds either way.
    pub window_secs: i64,
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The body.
    pub envelope: BoundaryEnvelope,
    /// Whether it was signed with the current secret (`false`: the other accepted one), so
    /// `info` can tell when a rotation's sender has switched.
    pub current_secret: bool,
}

/// The checks that need no storage: headers, hop, signature (constant-time, under each
/// accepted secret) and timestamp window, in that order. The signature comes before the
/// timestamp so that nobody without the secret learns anything about the receiver's clock.
/// Returns the nonce, its timestamp and whether the current secret signed.
pub fn authenticate<'a>(
    policy: &ReceiverPolicy,
    headers: &'a dyn HeaderSource,
    body: &[u8],
    now_secs: i64,
) -> Result<(&'a str, i64, bool), RejectReason> {
    let get = |name: &'static str| {
        headers
            .header_value(name)
            .ok_or(RejectReason::MissingHeader(name))
    };
    let signature = get(HEADER_SIGNATURE)?;
    let hop = get(HEADER_HOP)?;
    let timestamp = get(HEADER_TIMESTAMP)?;
    let nonce = get(HEADER_NONCE)?;
    let signature =
        parse_signature(signature).ok_or(RejectReason::MalformedHeader(HEADER_SIGNATURE))?;
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| RejectReason::MalformedHeader(HEADER_TIMESTAMP))?;
    if nonce.len() != 32 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RejectReason::MalformedHeader(HEADER_NONCE));
    }
    if hop != policy.hop {
        return Err(RejectReason::WrongBoundary);
    }
    let mut matched = None;
    // Every accepted secret is tried (no early exit) so timing does not tell which matched.
    for (i, secret) in policy.secrets.iter().enumerate() {
        if signature_matches(secret, hop, timestamp, nonce, body, &signature) && matched.is_none() {
            matched = Some(i == 0);
        }
    }
    let current = matched.ok_or(RejectReason::BadSignature)?;
    if (now_secs - timestamp).abs() > policy.window_secs {
        return Err(RejectReason::StaleTimestamp);
    }
    Ok((nonce, timestamp, current))
}

/// The whole check of a boundary request, before the ingress does anything: [`authenticate`],
/// then the nonce claimed in `ledger` (kept until the window around its timestamp closes, after
/// which the timestamp check refuses it anyway), then the body parsed as an envelope.
pub async fn verify(
    policy: &ReceiverPolicy,
    ledger: &dyn NonceLedger,
    headers: &dyn HeaderSource,
    body: &[u8],
    now_secs: i64,
) -> Result<Verified, Refusal> {
    let (nonce, timestamp, current_secret) =
        authenticate(policy, headers, body, now_secs).map_err(Refusal::Unauthorized)?;
    let fresh = ledger
        .claim(&policy.hop, nonce, timestamp + policy.window_secs)
        .await
        .map_err(Refusal::Unavailable)?;
    if !fresh {
        return Err(Refusal::Unauthorized(RejectReason::ReplayedNonce));
    }
    let envelope: BoundaryEnvelope = serde_json::from_slice(body)
        .map_err(|e| Refusal::BadRequest(format!("not a boundary envelope: {e}")))?;
    Ok(Verified {
        envelope,
        current_secret,
    })
}
