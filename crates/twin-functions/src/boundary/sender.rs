//! The sending side of a boundary: sign, post, retry by [`decide`], and keep what could not be
//! delivered in the boundary's dead-letter place. The HTTP client, the wait and the dead-letter
//! place are small traits, so the same loop runs in a Lambda, an Azure Function and a test.

use super::envelope::{new_trace_id, sign_envelope, BoundaryEnvelope, SignedRequest};
use super::retry::{decide, AttemptOutcome, GiveUpReason, RetryDecision, RetryPolicy};
use super::secret::BoundarySecret;
use crate::clock::Clock;
use crate::error::CloudError;
use async_trait::async_trait;
use std::time::Duration;

/// An answer from the remote ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportReply {
    /// The HTTP status.
    pub status: u16,
    /// `Retry-After`, seconds, if sent.
    pub retry_after: Option<u64>,
    /// The body.
    pub body: Vec<u8>,
}

/// Posts a signed request to the boundary's ingress URL (which the deployer took from what the
/// receiving cloud returned for the function, never built from names).
#[async_trait]
pub trait BoundaryTransport: Send + Sync {
    /// The ingress's answer, or why there was none (connection refused, timeout, TLS).
    async fn post(&self, request: &SignedRequest) -> Result<TransportReply, String>;
}

/// Waits between attempts (a timer in a function, a clock that jumps in tests).
#[async_trait]
pub trait Pause: Send + Sync {
    /// Returns after `wait`.
    async fn pause(&self, wait: Duration);
}

/// The boundary's dead-letter place: what a sender gave up on, kept for `deployer redrive`.
#[async_trait]
pub trait BoundaryDeadLetters: Send + Sync {
    /// Keeps `envelope` (with the reason code of the give-up).
    async fn keep(
        &self,
        hop: &str,
        envelope: &BoundaryEnvelope,
        reason: &str,
    ) -> Result<(), CloudError>;
}

/// Reads the sender's secret again from its store: a sender instance that started before a
/// rotation switched it signs with the retired secret, and one re-read on a `bad_signature`
/// 401 turns that into a delivered message instead of a dead letter.
#[async_trait]
pub trait SecretRefresh: Send + Sync {
    /// The store's current secret.
    async fn reread(&self) -> Result<BoundarySecret, CloudError>;
}

/// Why a send did not get a 2xx.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The sender stopped trying; for a push the envelope is in the dead-letter place when
    /// `kept` (else the caller must keep or fail it: nothing is dropped silently).
    #[error("boundary {hop}: gave up ({}){}: {detail}", reason.code(), if *kept { ", message kept in dead letters" } else { "" })]
    GaveUp {
        /// The boundary.
        hop: String,
        /// Why.
        reason: GiveUpReason,
        /// Whether the dead-letter place has the message.
        kept: bool,
        /// The last answer or transport error (never the secret; the ingress never echoes it).
        detail: String,
    },
    /// The envelope could not be serialized (a bug: its payload is already JSON).
    #[error("boundary {hop}: the envelope cannot be serialized: {message}")]
    Encode {
        /// The boundary.
        hop: String,
        /// serde's message.
        message: String,
    },
}

/// A sender for one boundary.
pub struct BoundarySender<'a> {
    /// The hop (`hot-to-cold`, ...), signed into every request.
    pub hop: String,
    /// The secret to sign with (the sender store's current one).
    pub secret: BoundarySecret,
    /// The HTTP client.
    pub transport: &'a dyn BoundaryTransport,
    /// Backoff and deadline.
    pub retry: RetryPolicy,
    /// The wait between attempts.
    pub pause: &'a dyn Pause,
    /// "Now", for timestamps and the deadline.
    pub clock: &'a dyn Clock,
    /// Where pushes that could not be delivered go.
    pub dead_letters: &'a dyn BoundaryDeadLetters,
    /// Where to read the secret again after a `bad_signature` 401 (once per send); `None`
    /// makes that 401 final.
    pub refresh: Option<&'a dyn SecretRefresh>,
}

impl BoundarySender<'_> {
    /// Delivers a push (data that must not be lost): on giving up it is kept in dead letters.
    pub async fn push(&self, envelope: &BoundaryEnvelope) -> Result<Vec<u8>, SendError> {
        self.send(envelope, true).await
    }

    /// Asks a query (nothing to keep: the caller fails and is retried as a whole).
    pub async fn query(&self, envelope: &BoundaryEnvelope) -> Result<Vec<u8>, SendError> {
        self.send(envelope, false).await
    }

    async fn send(&self, envelope: &BoundaryEnvelope, keep: bool) -> Result<Vec<u8>, SendError> {
        let start = self.clock.now().millis();
        let mut attempt = 0u32;
        let mut secret = self.secret.clone();
        let mut reread = false;
        loop {
            attempt += 1;
            let now = self.clock.now().millis();
            // A fresh nonce (and timestamp) per attempt: a retry is a new request, not a replay.
            let request = sign_envelope(&secret, &self.hop, envelope, now / 1000, &new_trace_id())
                .map_err(|e| SendError::Encode {
                    hop: self.hop.clone(),
                    message: e.to_string(),
                })?;
            let (outcome, detail, body) = match self.transport.post(&request).await {
                Ok(r) => (
                    AttemptOutcome::Status {
                        code: r.status,
                        retry_after: r.retry_after,
                    },
                    format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body)),
                    r.body,
                ),
                Err(why) => (AttemptOutcome::NoAnswer, why, Vec::new()),
            };
            if let (AttemptOutcome::Status { code: 401, .. }, Some(refresh), false) =
                (outcome, self.refresh, reread)
            {
                if super::object::reason_of(&body) == Some("bad_signature") {
                    reread = true;
                    if let Ok(fresh) = refresh.reread().await {
                        if fresh != secret {
                            secret = fresh;
                            continue;
                        }
                    }
                }
            }
            let elapsed = Duration::from_millis((now - start).max(0) as u64);
            match decide(
                &self.retry,
                outcome,
                attempt,
                elapsed,
                rand::random::<f64>(),
            ) {
                RetryDecision::Delivered => return Ok(body),
                RetryDecision::RetryAfter(wait) => self.pause.pause(wait).await,
                RetryDecision::GiveUp(reason) => {
                    let kept = keep
                        && self
                            .dead_letters
                            .keep(&self.hop, envelope, &reason.code())
                            .await
                            .is_ok();
                    tracing::warn!(
                        hop = %self.hop, trace_id = %envelope.trace_id, reason = %reason.code(),
                        kept, "cross-cloud send gave up"
                    );
                    return Err(SendError::GaveUp {
                        hop: self.hop.clone(),
                        reason,
                        kept,
                        detail,
                    });
                }
            }
        }
    }
}
