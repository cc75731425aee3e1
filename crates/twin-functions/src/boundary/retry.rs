//! The sender's retry policy, as a pure function: what one attempt's outcome means and how long
//! to wait before the next, within a deadline. What is given up on goes to the boundary's
//! dead-letter place, never nowhere.

use std::time::Duration;

/// How one attempt to post to a remote ingress ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The ingress answered with this HTTP status; `retry_after` is its `Retry-After` in
    /// seconds, if it sent one.
    Status {
        /// The HTTP status.
        code: u16,
        /// `Retry-After`, seconds.
        retry_after: Option<u64>,
    },
    /// No answer: connection refused or reset, DNS failure, TLS handshake failure, timeout.
    NoAnswer,
}

/// What the sender does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// The message arrived.
    Delivered,
    /// Try again after this long (the nonce is new on every attempt).
    RetryAfter(Duration),
    /// Stop and keep the message in the dead-letter place, for this reason.
    GiveUp(GiveUpReason),
}

/// Why a sender stopped trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The ingress refused in a way that repeating the same request cannot fix (401: wrong or
    /// rotated-away secret; 400, 404, 413, ...).
    Permanent(u16),
    /// Transient failures lasted until the deadline.
    DeadlineExceeded,
}

impl GiveUpReason {
    /// A short code for dead-letter records and logs.
    pub fn code(&self) -> String {
        match self {
            GiveUpReason::Permanent(s) => format!("permanent_{s}"),
            GiveUpReason::DeadlineExceeded => "deadline_exceeded".to_string(),
        }
    }
}

/// The sender's backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles after each further one.
    pub base: Duration,
    /// No single wait is longer.
    pub max_delay: Duration,
    /// No retry starts after this long since the first attempt.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// Fits inside a function invocation: 200 ms doubling to 5 s, 60 s in all.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
        }
    }
}

/// Whether a status means "try again later": timeouts, too early, throttling, and the 5xx that
/// gateways and overloaded hosts answer. Everything else 4xx is permanent, and so are the 5xx
/// that say the server will not ever handle this request (501, 505).
pub fn is_transient_status(code: u16) -> bool {
    matches!(code, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// The decision after attempt number `attempt` (1 = the first) ended with `outcome`,
/// `elapsed` after the first attempt began. `jitter` in `[0, 1)` is the caller's random draw:
/// the wait is between half and all of the exponential delay ("equal jitter"), so senders that
/// failed together do not retry together. A `Retry-After` longer than the computed wait is
/// honoured. A wait that would end past the deadline gives up instead.
pub fn decide(
    policy: &RetryPolicy,
    outcome: AttemptOutcome,
    attempt: u32,
    elapsed: Duration,
    jitter: f64,
) -> RetryDecision {
    let retry_after = match outcome {
        AttemptOutcome::Status { code, .. } if (200..300).contains(&code) => {
            return RetryDecision::Delivered
        }
        AttemptOutcome::Status { code, retry_after } if is_transient_status(code) => retry_after,
        AttemptOutcome::Status { code, .. } => {
            return RetryDecision::GiveUp(GiveUpReason::Permanent(code))
        }
        AttemptOutcome::NoAnswer => None,
    };
    let exponent = attempt.saturating_sub(1).min(30);
    let full = policy
        .base
        .saturating_mul(1u32 << exponent)
        .min(policy.max_delay);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut wait = full / 2 + full.mul_f64(jitter / 2.0);
    if let Some(secs) = retry_after {
        wait = wait.max(Duration::from_secs(secs));
    }
    if elapsed.saturating_add(wait) > policy.deadline {
        return RetryDecision::GiveUp(GiveUpReason::DeadlineExceeded);
    }
    RetryDecision::RetryAfter(wait)
}
