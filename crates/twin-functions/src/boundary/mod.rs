//! The cross-cloud boundary protocol (SPEC §2, issue 12), free of any cloud SDK.
//!
//! A sender wraps the in-cloud hop's JSON in a [`BoundaryEnvelope`] with a trace id and signs it
//! with [`sign_envelope`]: HMAC-SHA256 under the boundary's [`BoundarySecret`] over the hop, a
//! Unix-seconds timestamp, a fresh nonce and the body. The receiving ingress calls [`verify`]
//! before anything else: the signature under one of its [`AcceptedSecrets`] (current and, during
//! a rotation, one other), the timestamp within [`DEFAULT_WINDOW_SECS`], the nonce unseen in its
//! [`NonceLedger`]; a [`Refusal`] gives the 401 (or 400/503) answer with a reason code. The sender
//! retries by [`decide`] and keeps what it gives up on. The two copies of a secret (sender's
//! store, receiver's store) are kept in step and rotated by [`sync`] and [`rotate`] over
//! [`BoundarySecretStore`].
//!
//! Why HMAC and not the bearer token SPEC §2 sketches: a bearer token seen once (a proxy's log,
//! a misrouted request) can be replayed forever; a signature over timestamp and nonce is good
//! for one request within a few minutes, and the secret itself never travels.

mod envelope;
mod http_event;
mod object;
mod receiver;
mod retry;
mod rotation;
mod secret;
mod sender;
mod settings;
mod signing;

pub use envelope::{new_trace_id, sign_envelope, BoundaryEnvelope, SignedRequest};
pub use http_event::{function_url_request, function_url_response, NotAnHttpEvent};
pub use object::{IngressReply, ObjectIngress, ObjectOp, RemoteObjectStore};
pub use receiver::{
    authenticate, verify, AcceptedSecrets, HeaderSource, InMemoryNonceLedger, NonceLedger,
    ReceiverPolicy, Refusal, RejectReason, Verified, DEFAULT_WINDOW_SECS,
};
pub use retry::{
    decide, is_transient_status, AttemptOutcome, GiveUpReason, RetryDecision, RetryPolicy,
};
pub use rotation::{
    accepted, rotate, sync, BoundarySecretStore, InMemorySecretStore, RotationError, RotationStep,
    SyncOutcome,
};
pub use secret::{BoundarySecret, SecretFormatError, SECRET_BYTES};
pub use sender::{
    BoundaryDeadLetters, BoundarySender, BoundaryTransport, Pause, SecretRefresh, SendError,
    TransportReply,
};
pub use settings::{ObjectIngressSettings, ObjectSenderSettings};
pub use signing::{
    parse_signature, sign, signature_matches, signed_bytes, HEADER_HOP, HEADER_NONCE,
    HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_TRACE_ID, SIGNATURE_VERSION,
};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use std::time::Duration;

    const NOW: i64 = 1_764_000_000;
    const NONCE: &str = "0123456789abcdef0123456789abcdef";

    fn secret(b: u8) -> BoundarySecret {
        BoundarySecret::from_bytes([b; SECRET_BYTES])
    }

    fn policy(secrets: AcceptedSecrets) -> ReceiverPolicy {
        ReceiverPolicy {
            hop: "dispatch".into(),
            secrets,
            window_secs: DEFAULT_WINDOW_SECS,
        }
    }

    fn envelope() -> BoundaryEnvelope {
        BoundaryEnvelope {
            trace_id: "trace-1".into(),
            payload: json!({"iotDeviceId": "d1", "time": "2025-11-04T13:23:11.203Z", "t": 1.5}),
        }
    }

    fn signed(with: &BoundarySecret, at: i64, nonce: &str) -> SignedRequest {
        sign_envelope(with, "dispatch", &envelope(), at, nonce).expect("serializes")
    }

    fn set(r: &mut SignedRequest, name: &str, value: String) {
        for (n, v) in r.headers.iter_mut() {
            if *n == name {
                *v = value.clone();
            }
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn check(
        p: &ReceiverPolicy,
        l: &InMemoryNonceLedger,
        r: &SignedRequest,
    ) -> Result<Verified, Refusal> {
        block_on(verify(p, l, r, &r.body, NOW))
    }

    fn reason(r: Result<Verified, Refusal>) -> &'static str {
        match r {
            Err(Refusal::Unauthorized(why)) => why.code(),
            other => panic!("expected a 401, got {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes_once_and_is_a_replay_the_second_time() {
        let p = policy(AcceptedSecrets::new(secret(1)));
        let ledger = InMemoryNonceLedger::default();
        let r = signed(&secret(1), NOW, NONCE);
        let v = check(&p, &ledger, &r).expect("accepted");
        assert_eq!(v.envelope, envelope());
        assert!(v.current_secret);
        assert_eq!(reason(check(&p, &ledger, &r)), "replayed_nonce");
    }

    #[test]
    fn a_wrong_secret_or_missing_signature_is_401_and_claims_no_nonce() {
        let p = policy(AcceptedSecrets::new(secret(1)));
        let ledger = InMemoryNonceLedger::default();
        let r = signed(&secret(2), NOW, NONCE);
        assert_eq!(reason(check(&p, &ledger, &r)), "bad_signature");
        let mut bare = signed(&secret(1), NOW, NONCE);
        bare.headers.retain(|(n, _)| *n != HEADER_SIGNATURE);
        let refused = check(&p, &ledger, &bare).expect_err("no signature");
        assert_eq!(refused.status(), 401);
        assert_eq!(
            refused.body(),
            json!({"error": "unauthorized", "reason": "missing_header", "header": "x-twin-signature"})
        );
        assert!(
            ledger.is_empty(),
            "nothing was recorded for refused requests"
        );
    }

    #[test]
    fn old_timestamps_and_other_boundaries_are_refused() {
        let p = policy(AcceptedSecrets::new(secret(1)));
        let ledger = InMemoryNonceLedger::default();
        let old = signed(&secret(1), NOW - DEFAULT_WINDOW_SECS - 1, NONCE);
        assert_eq!(reason(check(&p, &ledger, &old)), "stale_timestamp");
        let future = signed(&secret(1), NOW + DEFAULT_WINDOW_SECS + 1, NONCE);
        assert_eq!(reason(check(&p, &ledger, &future)), "stale_timestamp");
        let edge = signed(&secret(1), NOW - DEFAULT_WINDOW_SECS, NONCE);
        check(&p, &ledger, &edge).expect("the window's edge is inside");
        let other = sign_envelope(&secret(1), "persist", &envelope(), NOW, NONCE).expect("json");
        assert_eq!(reason(check(&p, &ledger, &other)), "wrong_boundary");
    }

    #[test]
    fn during_a_rotation_both_secrets_pass_and_after_it_only_the_new_one() {
        let (old, new) = (secret(1), secret(2));
        let ledger = InMemoryNonceLedger::default();
        let rotating = policy(AcceptedSecrets::new(old.clone()).also(new.clone()));
        let v = check(&rotating, &ledger, &signed(&old, NOW, NONCE)).expect("old passes");
        assert!(v.current_secret);
        let nonce2 = "1123456789abcdef0123456789abcdef";
        let v = check(&rotating, &ledger, &signed(&new, NOW, nonce2)).expect("new passes");
        assert!(!v.current_secret);
        let retired = policy(AcceptedSecrets::new(new));
        let nonce3 = "2123456789abcdef0123456789abcdef";
        assert_eq!(
            reason(check(&retired, &ledger, &signed(&old, NOW, nonce3))),
            "bad_signature"
        );
    }

    #[test]
    fn an_authentic_body_that_is_not_an_envelope_is_400() {
        let p = policy(AcceptedSecrets::new(secret(1)));
        let ledger = InMemoryNonceLedger::default();
        let body = br#"{"not":"an envelope"}"#.to_vec();
        let sig = sign(&secret(1), "dispatch", NOW, NONCE, &body);
        let r = SignedRequest {
            headers: vec![
                (HEADER_HOP, "dispatch".into()),
                (HEADER_TIMESTAMP, NOW.to_string()),
                (HEADER_NONCE, NONCE.into()),
                (HEADER_SIGNATURE, sig),
            ],
            body,
        };
        assert_eq!(
            check(&p, &ledger, &r)
                .expect_err("not an envelope")
                .status(),
            400
        );
    }

    #[test]
    fn the_ledger_forgets_nonces_once_their_window_has_passed() {
        let ledger = InMemoryNonceLedger::default();
        assert!(block_on(ledger.claim("dispatch", NONCE, NOW + 300)).expect("claims"));
        assert!(!block_on(ledger.claim("dispatch", NONCE, NOW + 300)).expect("claims"));
        ledger.advance_to(NOW + 301);
        assert!(block_on(ledger.claim("dispatch", "other", NOW + 600)).expect("claims"));
        assert_eq!(ledger.len(), 1, "the expired nonce was dropped");
    }

    #[test]
    fn headers_match_case_insensitively() {
        let r = signed(&secret(1), NOW, NONCE);
        let map: std::collections::HashMap<String, String> = r
            .headers
            .iter()
            .map(|(n, v)| (n.to_ascii_uppercase(), v.clone()))
            .collect();
        let p = policy(AcceptedSecrets::new(secret(1)));
        authenticate(&p, &map, &r.body, NOW).expect("upper-case names are the same headers");
    }

    #[test]
    fn retry_policy_classifies_and_backs_off_within_the_deadline() {
        let p = RetryPolicy::default();
        let status = |code| AttemptOutcome::Status {
            code,
            retry_after: None,
        };
        assert_eq!(
            decide(&p, status(200), 1, Duration::ZERO, 0.5),
            RetryDecision::Delivered
        );
        assert_eq!(
            decide(&p, status(401), 1, Duration::ZERO, 0.5),
            RetryDecision::GiveUp(GiveUpReason::Permanent(401))
        );
        assert_eq!(
            decide(&p, status(503), 1, Duration::ZERO, 0.0),
            RetryDecision::RetryAfter(Duration::from_millis(100))
        );
        assert_eq!(
            decide(&p, AttemptOutcome::NoAnswer, 3, Duration::ZERO, 1.0),
            RetryDecision::RetryAfter(Duration::from_millis(800))
        );
        // Capped at max_delay.
        assert_eq!(
            decide(&p, status(502), 20, Duration::ZERO, 1.0),
            RetryDecision::RetryAfter(Duration::from_secs(5))
        );
        // Retry-After is honoured, and a wait past the deadline gives up.
        let throttled = AttemptOutcome::Status {
            code: 429,
            retry_after: Some(7),
        };
        assert_eq!(
            decide(&p, throttled, 1, Duration::ZERO, 0.0),
            RetryDecision::RetryAfter(Duration::from_secs(7))
        );
        assert_eq!(
            decide(&p, throttled, 1, Duration::from_secs(55), 0.0),
            RetryDecision::GiveUp(GiveUpReason::DeadlineExceeded)
        );
        assert_eq!(GiveUpReason::Permanent(401).code(), "permanent_401");
    }

    fn nonce_strategy() -> impl Strategy<Value = String> {
        "[0-9a-f]{32}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_tampered_body_fails(
            flip in 0usize..4096, bit in 0u8..8, payload in "[a-z]{1,40}", nonce in nonce_strategy()
        ) {
            let p = policy(AcceptedSecrets::new(secret(1)));
            let env = BoundaryEnvelope { trace_id: "t".into(), payload: json!({"v": payload}) };
            let mut r = sign_envelope(&secret(1), "dispatch", &env, NOW, &nonce).expect("json");
            let i = flip % r.body.len();
            r.body[i] ^= 1 << bit;
            prop_assert_eq!(
                authenticate(&p, &r, &r.body, NOW),
                Err(RejectReason::BadSignature)
            );
        }

        #[test]
        fn any_changed_timestamp_or_nonce_fails(
            delta in 1i64..200, nonce in nonce_strategy(), other in nonce_strategy()
        ) {
            prop_assume!(nonce != other);
            let p = policy(AcceptedSecrets::new(secret(1)));
            let mut r = signed(&secret(1), NOW, &nonce);
            set(&mut r, HEADER_TIMESTAMP, (NOW + delta).to_string());
            prop_assert_eq!(authenticate(&p, &r, &r.body, NOW), Err(RejectReason::BadSignature));
            let mut r = signed(&secret(1), NOW, &nonce);
            set(&mut r, HEADER_NONCE, other);
            prop_assert_eq!(authenticate(&p, &r, &r.body, NOW), Err(RejectReason::BadSignature));
        }

        #[test]
        fn old_and_new_secret_pass_during_rotation(
            a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), skew in -300i64..=300,
            nonce in nonce_strategy()
        ) {
            let (old, new) = (BoundarySecret::from_bytes(a), BoundarySecret::from_bytes(b));
            let p = policy(AcceptedSecrets::new(old.clone()).also(new.clone()));
            for s in [&old, &new] {
                let r = signed(s, NOW + skew, &nonce);
                prop_assert!(authenticate(&p, &r, &r.body, NOW).is_ok());
            }
        }

        #[test]
        fn retries_never_pass_the_deadline_or_the_cap(
            attempt in 1u32..100, elapsed_ms in 0u64..70_000, jitter in 0.0f64..1.0,
            code in prop::sample::select(vec![408u16, 429, 500, 502, 503, 504]),
            retry_after in prop::option::of(0u64..30)
        ) {
            let p = RetryPolicy::default();
            let elapsed = Duration::from_millis(elapsed_ms);
            match decide(&p, AttemptOutcome::Status { code, retry_after }, attempt, elapsed, jitter) {
                RetryDecision::RetryAfter(w) => {
                    prop_assert!(elapsed + w <= p.deadline);
                    prop_assert!(w <= p.max_delay.max(Duration::from_secs(retry_after.unwrap_or(0))));
                }
                RetryDecision::GiveUp(GiveUpReason::DeadlineExceeded) => {}
                other => prop_assert!(false, "transient status gave {:?}", other),
            }
        }
    }
}
