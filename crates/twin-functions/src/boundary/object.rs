//! The storage boundaries (L3 hot → cold, cold → archive) as a remote object store: the mover on
//! the sending cloud runs unchanged against [`RemoteObjectStore`], whose calls travel as signed
//! [`ObjectOp`]s to the receiving cloud's [`ObjectIngress`], which applies them to its one
//! bucket. The mover's own checks (head after put, delete from hot only after) keep working, so
//! a failed hop loses nothing: the data stays in the tier it was moving out of.

use super::envelope::BoundaryEnvelope;
use super::receiver::{verify, HeaderSource, NonceLedger, ReceiverPolicy, Refusal};
use super::sender::BoundarySender;
use crate::error::{CloudError, CloudErrorKind};
use crate::object_store::{
    ConditionalWrite, ObjectInfo, ObjectListing, ObjectStore, PutCondition, StorageTier,
    TaggedObject,
};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One object-store call across a boundary (the envelope's payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ObjectOp {
    /// Write an object in a tier.
    Put {
        /// The key.
        key: String,
        /// The content, standard base64.
        content_base64: String,
        /// `cold`, `archive` or the store's own class name.
        tier: String,
    },
    /// An object's metadata.
    Head {
        /// The key.
        key: String,
    },
    /// An object's content.
    Get {
        /// The key.
        key: String,
    },
    /// One page of a listing.
    List {
        /// Key prefix.
        prefix: String,
        /// The previous page's token.
        continuation: Option<String>,
    },
}

fn tier_name(t: &StorageTier) -> String {
    match t {
        StorageTier::Cold => "cold".into(),
        StorageTier::Archive => "archive".into(),
        StorageTier::Other(s) => s.clone(),
    }
}

fn tier_of(s: &str) -> StorageTier {
    match s {
        "cold" => StorageTier::Cold,
        "archive" => StorageTier::Archive,
        other => StorageTier::Other(other.to_string()),
    }
}

fn info_json(i: &ObjectInfo) -> Value {
    json!({"key": i.key, "size": i.size, "tier": tier_name(&i.tier), "etag": i.etag})
}

/// The ingress's answer: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct IngressReply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
}

/// The receiving side of a storage boundary: checks every request ([`verify`]) before touching
/// its bucket, then applies the one [`ObjectOp`] it carries to that bucket only.
pub struct ObjectIngress<'a> {
    /// The boundary's check.
    pub policy: &'a ReceiverPolicy,
    /// The nonces seen.
    pub ledger: &'a dyn NonceLedger,
    /// The receiving cloud's store.
    pub store: &'a dyn ObjectStore,
    /// The one bucket (container) this ingress writes: the receiving tier's.
    pub bucket: &'a str,
}

impl ObjectIngress<'_> {
    /// Handles one HTTP request.
    pub async fn handle(
        &self,
        headers: &dyn HeaderSource,
        body: &[u8],
        now_secs: i64,
    ) -> IngressReply {
        let verified = match verify(self.policy, self.ledger, headers, body, now_secs).await {
            Ok(v) => v,
            Err(refusal) => return refused(&refusal),
        };
        let trace = verified.envelope.trace_id.clone();
        let op: ObjectOp = match serde_json::from_value(verified.envelope.payload) {
            Ok(op) => op,
            Err(e) => {
                return refused(&Refusal::BadRequest(format!(
                    "not an object operation: {e}"
                )))
            }
        };
        match self.apply(op).await {
            Ok(mut v) => {
                v["traceId"] = json!(trace);
                IngressReply {
                    status: 200,
                    body: v,
                }
            }
            Err(e) => IngressReply {
                status: if e.is_retryable() { 503 } else { 502 },
                body: json!({"error": "store", "code": e.code, "operation": e.operation, "traceId": trace}),
            },
        }
    }

    async fn apply(&self, op: ObjectOp) -> Result<Value, CloudError> {
        let b = self.bucket;
        Ok(match op {
            ObjectOp::Put {
                key,
                content_base64,
                tier,
            } => {
                let body = STANDARD.decode(content_base64).map_err(|_| {
                    CloudError::new(
                        "PutObject",
                        format!("bucket {b}"),
                        "BadContent",
                        "content is not base64",
                        CloudErrorKind::Rejected,
                    )
                })?;
                self.store.put_object(b, &key, body, tier_of(&tier)).await?;
                json!({"ok": true})
            }
            ObjectOp::Head { key } => match self.store.head_object(b, &key).await? {
                Some(i) => json!({"found": true, "object": info_json(&i)}),
                None => json!({"found": false}),
            },
            ObjectOp::Get { key } => {
                let body = self.store.get_object(b, &key).await?;
                json!({"content_base64": STANDARD.encode(body)})
            }
            ObjectOp::List {
                prefix,
                continuation,
            } => {
                let page = self.store.list_objects(b, &prefix, continuation).await?;
                json!({"objects": page.objects.iter().map(info_json).collect::<Vec<_>>(), "next": page.next})
            }
        })
    }
}

/// The `reason` of an ingress's JSON answer, if it has one.
pub(crate) fn reason_of(body: &[u8]) -> Option<&'static str> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let reason = v.get("reason")?.as_str()?;
    // Only the codes the protocol defines, as static strings for matching.
    [
        "bad_signature",
        "stale_timestamp",
        "replayed_nonce",
        "wrong_boundary",
        "missing_header",
        "malformed_header",
    ]
    .into_iter()
    .find(|r| *r == reason)
}

impl IngressReply {
    /// Whether the request was refused for its signature: an ingress that read its secrets
    /// before a rotation staged the next one should read them again (at most now and then:
    /// anyone can send a bad signature) and check the request once more.
    pub fn is_bad_signature(&self) -> bool {
        self.status == 401
            && self.body.get("reason").and_then(Value::as_str) == Some("bad_signature")
    }
}

fn refused(r: &Refusal) -> IngressReply {
    IngressReply {
        status: r.status(),
        body: r.body(),
    }
}

/// The sending side of a storage boundary: an [`ObjectStore`] whose one remote bucket is
/// reached through a [`BoundarySender`]. Puts are pushes (kept in dead letters if given up);
/// the rest are queries.
pub struct RemoteObjectStore<'a> {
    /// The boundary's sender.
    pub sender: BoundarySender<'a>,
    /// The remote bucket's name as the mover knows it (only this one is reachable).
    pub bucket: String,
}

impl RemoteObjectStore<'_> {
    fn error(
        &self,
        operation: &'static str,
        code: &str,
        message: String,
        kind: CloudErrorKind,
    ) -> CloudError {
        CloudError::new(
            operation,
            format!(
                "remote bucket {} over boundary {}",
                self.bucket, self.sender.hop
            ),
            code,
            message,
            kind,
        )
    }

    async fn call(
        &self,
        operation: &'static str,
        bucket: &str,
        op: ObjectOp,
    ) -> Result<Value, CloudError> {
        if bucket != self.bucket {
            return Err(self.error(
                operation,
                "NotAcrossThisBoundary",
                format!("bucket {bucket} is not the boundary's"),
                CloudErrorKind::Rejected,
            ));
        }
        let push = matches!(op, ObjectOp::Put { .. });
        let payload = serde_json::to_value(&op).map_err(|e| {
            self.error(operation, "Encode", e.to_string(), CloudErrorKind::Rejected)
        })?;
        let envelope = BoundaryEnvelope::new(payload);
        let sent = if push {
            self.sender.push(&envelope).await
        } else {
            self.sender.query(&envelope).await
        };
        let body = sent.map_err(|e| {
            let kind = match &e {
                super::sender::SendError::GaveUp {
                    reason: super::retry::GiveUpReason::DeadlineExceeded,
                    ..
                } => CloudErrorKind::Transient,
                _ => CloudErrorKind::Rejected,
            };
            self.error(operation, "BoundarySendFailed", e.to_string(), kind)
        })?;
        serde_json::from_slice(&body).map_err(|e| {
            self.error(
                operation,
                "BadIngressReply",
                e.to_string(),
                CloudErrorKind::Transient,
            )
        })
    }

    fn info(&self, v: &Value) -> Result<ObjectInfo, CloudError> {
        let missing = || {
            self.error(
                "HeadObject",
                "BadIngressReply",
                format!("object without key or size: {v}"),
                CloudErrorKind::Transient,
            )
        };
        Ok(ObjectInfo {
            key: v
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(missing)?
                .to_string(),
            size: v.get("size").and_then(Value::as_u64).ok_or_else(missing)?,
            tier: tier_of(v.get("tier").and_then(Value::as_str).ok_or_else(missing)?),
            etag: v.get("etag").and_then(Value::as_str).map(str::to_string),
        })
    }

    fn unsupported(&self, operation: &'static str) -> CloudError {
        self.error(
            operation,
            "NotAcrossABoundary",
            "this operation is not offered across clouds".into(),
            CloudErrorKind::Rejected,
        )
    }
}

#[async_trait]
impl ObjectStore for RemoteObjectStore<'_> {
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        tier: StorageTier,
    ) -> Result<(), CloudError> {
        let op = ObjectOp::Put {
            key: key.into(),
            content_base64: STANDARD.encode(body),
            tier: tier_name(&tier),
        };
        self.call("PutObject", bucket, op).await.map(|_| ())
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<ObjectInfo>, CloudError> {
        let v = self
            .call("HeadObject", bucket, ObjectOp::Head { key: key.into() })
            .await?;
        match v.get("found").and_then(Value::as_bool) {
            Some(true) => Ok(Some(self.info(v.get("object").unwrap_or(&Value::Null))?)),
            Some(false) => Ok(None),
            None => Err(self.error(
                "HeadObject",
                "BadIngressReply",
                "no `found` in the reply".into(),
                CloudErrorKind::Transient,
            )),
        }
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Vec<u8>, CloudError> {
        let v = self
            .call("GetObject", bucket, ObjectOp::Get { key: key.into() })
            .await?;
        let text = v
            .get("content_base64")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                self.error(
                    "GetObject",
                    "BadIngressReply",
                    "no content in the reply".into(),
                    CloudErrorKind::Transient,
                )
            })?;
        STANDARD.decode(text).map_err(|_| {
            self.error(
                "GetObject",
                "BadIngressReply",
                "content is not base64".into(),
                CloudErrorKind::Transient,
            )
        })
    }

    async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ObjectListing, CloudError> {
        let v = self
            .call(
                "ListObjects",
                bucket,
                ObjectOp::List {
                    prefix: prefix.into(),
                    continuation,
                },
            )
            .await?;
        let objects = v.get("objects").and_then(Value::as_array).ok_or_else(|| {
            self.error(
                "ListObjects",
                "BadIngressReply",
                "no objects in the reply".into(),
                CloudErrorKind::Transient,
            )
        })?;
        Ok(ObjectListing {
            objects: objects
                .iter()
                .map(|o| self.info(o))
                .collect::<Result<_, _>>()?,
            next: v.get("next").and_then(Value::as_str).map(str::to_string),
        })
    }

    async fn copy_object(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: StorageTier,
    ) -> Result<(), CloudError> {
        Err(self.unsupported("CopyObject"))
    }

    async fn delete_object(&self, _: &str, _: &str) -> Result<(), CloudError> {
        Err(self.unsupported("DeleteObject"))
    }

    async fn put_object_if(
        &self,
        _: &str,
        _: &str,
        _: Vec<u8>,
        _: StorageTier,
        _: PutCondition,
    ) -> Result<ConditionalWrite, CloudError> {
        Err(self.unsupported("PutObjectIf"))
    }

    async fn get_object_tagged(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<TaggedObject>, CloudError> {
        Err(self.unsupported("GetObjectTagged"))
    }

    async fn delete_object_if_match(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<ConditionalWrite, CloudError> {
        Err(self.unsupported("DeleteObjectIfMatch"))
    }
}

#[cfg(test)]
mod tests {
    //! The remote sender played against the ingress, in memory: a good message arrives, a
    //! wrong secret is 401 with nothing written, a replay is 401, a receiver that is down makes
    //! the sender keep the message.

    use super::*;
    use crate::boundary::envelope::SignedRequest;
    use crate::boundary::receiver::{AcceptedSecrets, InMemoryNonceLedger, DEFAULT_WINDOW_SECS};
    use crate::boundary::retry::{GiveUpReason, RetryPolicy};
    use crate::boundary::secret::BoundarySecret;
    use crate::boundary::sender::{
        BoundaryDeadLetters, BoundaryTransport, Pause, SendError, TransportReply,
    };
    use crate::clock::{Clock, FixedClock};
    use crate::in_memory::InMemoryObjectStore;
    use crate::timestamp::Timestamp;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    const BUCKET: &str = "cold";

    /// Posts straight into the ingress, unless the receiver is "down"; records every request.
    struct Wire<'a> {
        ingress: ObjectIngress<'a>,
        clock: &'a FixedClock,
        down: AtomicBool,
        seen: Mutex<Vec<SignedRequest>>,
        attempts: AtomicUsize,
    }

    #[async_trait]
    impl BoundaryTransport for Wire<'_> {
        async fn post(&self, request: &SignedRequest) -> Result<TransportReply, String> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut s) = self.seen.lock() {
                s.push(request.clone());
            }
            if self.down.load(Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            let now = self.clock.now().millis() / 1000;
            let r = self.ingress.handle(request, &request.body, now).await;
            Ok(TransportReply {
                status: r.status,
                retry_after: None,
                body: serde_json::to_vec(&r.body).expect("json"),
            })
        }
    }

    /// Waiting moves the fixed clock: the deadline is reached with no real sleep.
    struct Jump<'a>(&'a FixedClock);

    #[async_trait]
    impl Pause for Jump<'_> {
        async fn pause(&self, wait: Duration) {
            let now = self.0.now().millis() + wait.as_millis() as i64;
            self.0.set(Timestamp::from_millis(now).expect("valid"));
        }
    }

    #[derive(Default)]
    struct Kept(Mutex<Vec<(String, BoundaryEnvelope, String)>>);

    #[async_trait]
    impl BoundaryDeadLetters for Kept {
        async fn keep(
            &self,
            hop: &str,
            e: &BoundaryEnvelope,
            reason: &str,
        ) -> Result<(), CloudError> {
            self.0
                .lock()
                .expect("lock")
                .push((hop.into(), e.clone(), reason.into()));
            Ok(())
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    struct World {
        clock: FixedClock,
        store: InMemoryObjectStore,
        ledger: InMemoryNonceLedger,
        policy: ReceiverPolicy,
        kept: Kept,
    }

    fn world() -> World {
        World {
            clock: FixedClock::new(Timestamp::from_millis(1_764_000_000_000).expect("valid")),
            store: InMemoryObjectStore::new(&[BUCKET], 100),
            ledger: InMemoryNonceLedger::default(),
            policy: ReceiverPolicy {
                hop: "hot-to-cold".into(),
                secrets: AcceptedSecrets::new(BoundarySecret::from_bytes([1; 32])),
                window_secs: DEFAULT_WINDOW_SECS,
            },
            kept: Kept::default(),
        }
    }

    fn wire(w: &World) -> Wire<'_> {
        Wire {
            ingress: ObjectIngress {
                policy: &w.policy,
                ledger: &w.ledger,
                store: &w.store,
                bucket: BUCKET,
            },
            clock: &w.clock,
            down: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
            attempts: AtomicUsize::new(0),
        }
    }

    fn remote<'a>(
        w: &'a World,
        wire: &'a Wire<'a>,
        pause: &'a Jump<'a>,
        secret: u8,
    ) -> RemoteObjectStore<'a> {
        RemoteObjectStore {
            sender: BoundarySender {
                hop: "hot-to-cold".into(),
                secret: BoundarySecret::from_bytes([secret; 32]),
                transport: wire,
                retry: RetryPolicy::default(),
                pause,
                clock: &w.clock,
                dead_letters: &w.kept,
                refresh: None,
            },
            bucket: BUCKET.into(),
        }
    }

    #[test]
    fn a_good_message_arrives_and_reads_back_across_the_boundary() {
        let w = world();
        let wire = wire(&w);
        let pause = Jump(&w.clock);
        let r = remote(&w, &wire, &pause, 1);
        block_on(async {
            r.put_object(
                BUCKET,
                "d/2025-11-04.jsonl",
                b"{\"a\":1}\n".to_vec(),
                StorageTier::Cold,
            )
            .await
            .expect("put");
            let head = r
                .head_object(BUCKET, "d/2025-11-04.jsonl")
                .await
                .expect("head")
                .expect("found");
            assert_eq!(head.size, 8);
            assert_eq!(head.tier, StorageTier::Cold);
            assert!(r
                .head_object(BUCKET, "d/none")
                .await
                .expect("head")
                .is_none());
            assert_eq!(
                r.get_object(BUCKET, "d/2025-11-04.jsonl")
                    .await
                    .expect("get"),
                b"{\"a\":1}\n"
            );
            let page = r.list_objects(BUCKET, "d/", None).await.expect("list");
            assert_eq!(page.objects.len(), 1);
            let other = r
                .put_object("elsewhere", "k", vec![], StorageTier::Cold)
                .await;
            assert!(other.is_err(), "only the boundary's bucket is reachable");
        });
        assert_eq!(w.store.objects(BUCKET).len(), 1);
        assert!(w.kept.0.lock().expect("lock").is_empty());
    }

    #[test]
    fn a_wrong_secret_is_401_writes_nothing_and_the_message_is_kept() {
        let w = world();
        let wire = wire(&w);
        let pause = Jump(&w.clock);
        let r = remote(&w, &wire, &pause, 2);
        let e =
            block_on(r.put_object(BUCKET, "k", b"x".to_vec(), StorageTier::Cold)).expect_err("401");
        assert!(e.message.contains("permanent_401"), "{e}");
        assert_eq!(
            wire.attempts.load(Ordering::SeqCst),
            1,
            "a 401 is not retried"
        );
        assert!(w.store.objects(BUCKET).is_empty(), "nothing written");
        assert!(w.ledger.is_empty(), "not even a nonce");
        let kept = w.kept.0.lock().expect("lock");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].2, "permanent_401");
    }

    #[test]
    fn a_replayed_request_is_401() {
        let w = world();
        let wire = wire(&w);
        let pause = Jump(&w.clock);
        let r = remote(&w, &wire, &pause, 1);
        block_on(r.put_object(BUCKET, "k", b"x".to_vec(), StorageTier::Cold)).expect("put");
        let captured = wire.seen.lock().expect("lock")[0].clone();
        let now = w.clock.now().millis() / 1000;
        let again = block_on(wire.ingress.handle(&captured, &captured.body, now));
        assert_eq!(again.status, 401);
        assert_eq!(again.body["reason"], "replayed_nonce");
    }

    #[test]
    fn a_receiver_that_is_down_makes_the_sender_retry_then_keep_the_message() {
        let w = world();
        let wire = wire(&w);
        wire.down.store(true, Ordering::SeqCst);
        let pause = Jump(&w.clock);
        let r = remote(&w, &wire, &pause, 1);
        let envelope = BoundaryEnvelope::new(serde_json::json!({"op": "head", "key": "k"}));
        let e = block_on(r.sender.push(&envelope)).expect_err("down");
        assert!(
            matches!(
                e,
                SendError::GaveUp {
                    reason: GiveUpReason::DeadlineExceeded,
                    kept: true,
                    ..
                }
            ),
            "{e}"
        );
        assert!(wire.attempts.load(Ordering::SeqCst) > 3, "it retried");
        let nonces: std::collections::HashSet<_> = wire
            .seen
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|r| r.header(crate::boundary::HEADER_NONCE).map(str::to_string))
            .collect();
        assert_eq!(
            nonces.len(),
            wire.attempts.load(Ordering::SeqCst),
            "a fresh nonce per attempt"
        );
        let kept = w.kept.0.lock().expect("lock");
        assert_eq!(kept[0].1, envelope, "the very message is kept");
        // Back up: the kept message is delivered by a redrive.
        wire.down.store(false, Ordering::SeqCst);
        drop(kept);
        let put = ObjectOp::Put {
            key: "k".into(),
            content_base64: STANDARD.encode(b"x"),
            tier: "cold".into(),
        };
        block_on(r.sender.push(&BoundaryEnvelope::new(
            serde_json::to_value(put).expect("json"),
        )))
        .expect("delivered once up");
        assert_eq!(w.store.objects(BUCKET).len(), 1);
    }

    struct Store(BoundarySecret);

    #[async_trait]
    impl crate::boundary::sender::SecretRefresh for Store {
        async fn reread(&self) -> Result<BoundarySecret, CloudError> {
            Ok(self.0.clone())
        }
    }

    #[test]
    fn a_sender_that_started_before_a_rotation_rereads_its_secret_once_and_delivers() {
        let w = world();
        let wire = wire(&w);
        let pause = Jump(&w.clock);
        // The store now holds secret 1 (the receiver's); this instance still signs with 3.
        let store = Store(BoundarySecret::from_bytes([1; 32]));
        let mut r = remote(&w, &wire, &pause, 3);
        r.sender.refresh = Some(&store);
        block_on(r.put_object(BUCKET, "k", b"x".to_vec(), StorageTier::Cold)).expect("delivered");
        assert_eq!(
            wire.attempts.load(Ordering::SeqCst),
            2,
            "one refused, one after re-reading"
        );
        assert_eq!(w.store.objects(BUCKET).len(), 1);
        // A store that still has the refused secret: the 401 is final, the message kept.
        let stale = Store(BoundarySecret::from_bytes([3; 32]));
        r.sender.refresh = Some(&stale);
        let e = block_on(r.put_object(BUCKET, "k2", b"x".to_vec(), StorageTier::Cold));
        assert!(e.is_err());
        assert_eq!(w.kept.0.lock().expect("lock").len(), 1);
    }

    #[test]
    fn an_ingress_reply_says_when_its_secrets_may_be_stale() {
        let w = world();
        let wire = wire(&w);
        let bad = sign_envelope_for_test(2);
        let reply = block_on(
            wire.ingress
                .handle(&bad, &bad.body, w.clock.now().millis() / 1000),
        );
        assert!(reply.is_bad_signature());
        let good = sign_envelope_for_test(1);
        let reply = block_on(
            wire.ingress
                .handle(&good, &good.body, w.clock.now().millis() / 1000),
        );
        assert!(!reply.is_bad_signature(), "{reply:?}");
    }

    fn sign_envelope_for_test(secret: u8) -> SignedRequest {
        let op = ObjectOp::Head { key: "k".into() };
        let e = BoundaryEnvelope::new(serde_json::to_value(op).expect("json"));
        crate::boundary::sign_envelope(
            &BoundarySecret::from_bytes([secret; 32]),
            "hot-to-cold",
            &e,
            1_764_000_000,
            &crate::boundary::new_trace_id(),
        )
        .expect("json")
    }
}
