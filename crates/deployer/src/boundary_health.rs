//! A boundary's health as `info` shows it: whether the sender's store has a secret, whether the
//! receiver accepts it, and whether the ingress answers a request signed with it. The probe is a
//! real signed request (a read-only `head` of a key no pipeline writes), so "ok" means what the
//! sender needs: the URL reaches the receiver, the signature, clock and nonce pass, and the
//! receiver's storage answers. It costs the receiver one nonce, pruned with the others.

use serde::Serialize;
use std::time::Instant;
use twin_functions::boundary::{
    accepted, new_trace_id, sign_envelope, BoundaryEnvelope, BoundarySecretStore, BoundaryTransport,
};

/// The key the probe asks about: outside every pipeline's key layout, so it is never found.
pub const PROBE_KEY: &str = "deployer-health-probe";

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "health", rename_all = "kebab-case")]
pub enum BoundaryHealth {
    /// The receiver answered the signed probe; `millis` is the round trip.
    Ok {
        /// The probe's round trip in milliseconds.
        millis: u64,
    },
    /// The sender has no secret or no ingress URL: the boundary is not deployed (or was
    /// destroyed).
    NotDeployed {
        /// What is missing, where.
        detail: String,
    },
    /// The receiver does not accept the sender's current secret: every message is refused
    /// until a deploy syncs it.
    OutOfStep {
        /// The receiver's store.
        location: String,
    },
    /// A store could not be read.
    Unreadable {
        /// The store and its error.
        detail: String,
    },
    /// The ingress answered the signed probe with a refusal (4xx).
    Refused {
        /// The HTTP status.
        status: u16,
        /// The ingress's reason code, if it gave one.
        reason: String,
    },
    /// The ingress could not be reached, or said it cannot serve now (5xx, 429).
    Down {
        /// The status or the transport's error.
        detail: String,
    },
}

impl BoundaryHealth {
    /// Whether the boundary can carry data now.
    pub fn is_ok(&self) -> bool {
        matches!(self, BoundaryHealth::Ok { .. })
    }

    /// One line for people: `ok (42 ms)`, `down: ...`.
    pub fn summary(&self) -> String {
        match self {
            BoundaryHealth::Ok { millis } => format!("ok ({millis} ms)"),
            BoundaryHealth::NotDeployed { detail } => format!("not deployed: {detail}"),
            BoundaryHealth::OutOfStep { location } => format!(
                "refusing the sender: {location} does not accept the sender's secret (run deploy)"
            ),
            BoundaryHealth::Unreadable { detail } => format!("unknown: {detail}"),
            BoundaryHealth::Refused { status, reason } => {
                format!("refused the signed probe: HTTP {status} {reason}")
            }
            BoundaryHealth::Down { detail } => format!("down: {detail}"),
        }
    }
}

/// Probes boundary `hop`: the sender's current secret, the receiver's acceptance of it, then one
/// signed `head` of [`PROBE_KEY`] through `transport` at `now_secs`.
pub async fn probe(
    hop: &str,
    sender: &dyn BoundarySecretStore,
    receiver: &dyn BoundarySecretStore,
    transport: &dyn BoundaryTransport,
    now_secs: i64,
) -> BoundaryHealth {
    let unreadable = |store: &dyn BoundarySecretStore, e: twin_functions::CloudError| {
        BoundaryHealth::Unreadable {
            detail: format!("{}: {e}", store.location()),
        }
    };
    let secret = match sender.current().await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return BoundaryHealth::NotDeployed {
                detail: format!("no secret in {}", sender.location()),
            }
        }
        Err(e) => return unreadable(sender, e),
    };
    match accepted(receiver).await {
        Ok(Some(a)) if a.iter().any(|s| *s == secret) => {}
        Ok(_) => {
            return BoundaryHealth::OutOfStep {
                location: receiver.location(),
            }
        }
        Err(e) => return unreadable(receiver, e),
    }
    let envelope = BoundaryEnvelope::new(serde_json::json!({"op": "head", "key": PROBE_KEY}));
    let request = match sign_envelope(&secret, hop, &envelope, now_secs, &new_trace_id()) {
        Ok(r) => r,
        Err(e) => {
            return BoundaryHealth::Unreadable {
                detail: format!("the probe cannot be encoded: {e}"),
            }
        }
    };
    let started = Instant::now();
    match transport.post(&request).await {
        Err(why) => BoundaryHealth::Down { detail: why },
        Ok(r) if (200..300).contains(&r.status) => BoundaryHealth::Ok {
            millis: started.elapsed().as_millis() as u64,
        },
        Ok(r) if r.status == 429 || r.status >= 500 => BoundaryHealth::Down {
            detail: format!(
                "HTTP {}{}",
                r.status,
                reason_of(&r.body)
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default()
            ),
        },
        Ok(r) => BoundaryHealth::Refused {
            status: r.status,
            reason: reason_of(&r.body).unwrap_or_default(),
        },
    }
}

/// How long the probe waits for the ingress: a health check, not a delivery.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Posts the probe to one ingress URL over HTTPS (rustls, the system's roots or
/// `SSL_CERT_FILE`).
pub struct HttpsProbe {
    client: reqwest::Client,
    url: String,
}

impl HttpsProbe {
    /// A probe of `url`; the error says why no HTTP client could be made.
    pub fn new(url: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(PROBE_TIMEOUT)
            .build()
            .map_err(|e| format!("no HTTPS client: {e}"))?;
        Ok(Self {
            client,
            url: url.to_string(),
        })
    }
}

#[async_trait::async_trait]
impl BoundaryTransport for HttpsProbe {
    async fn post(
        &self,
        request: &twin_functions::boundary::SignedRequest,
    ) -> Result<twin_functions::boundary::TransportReply, String> {
        let mut r = self
            .client
            .post(&self.url)
            .header("content-type", "application/json");
        for (name, value) in &request.headers {
            r = r.header(*name, value);
        }
        let answer = r
            .body(request.body.clone())
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = answer.status().as_u16();
        let body = answer.bytes().await.map_err(|e| e.to_string())?.to_vec();
        Ok(twin_functions::boundary::TransportReply {
            status,
            retry_after: None,
            body,
        })
    }
}

/// The `reason` code of an ingress's JSON answer (it never echoes a request or a secret).
fn reason_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("reason")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use twin_functions::boundary::{
        AcceptedSecrets, BoundarySecret, InMemoryNonceLedger, InMemorySecretStore, ObjectIngress,
        ReceiverPolicy, SignedRequest, TransportReply, DEFAULT_WINDOW_SECS,
    };
    use twin_functions::in_memory::InMemoryObjectStore;

    const NOW: i64 = 1_764_000_000;

    /// The real ingress logic behind an in-process "wire", or a receiver that is down.
    struct Wire {
        up: Option<(ReceiverPolicy, InMemoryNonceLedger, InMemoryObjectStore)>,
    }

    #[async_trait]
    impl BoundaryTransport for Wire {
        async fn post(&self, request: &SignedRequest) -> Result<TransportReply, String> {
            let Some((policy, ledger, store)) = &self.up else {
                return Err("connection refused".into());
            };
            let ingress = ObjectIngress {
                policy,
                ledger,
                store,
                bucket: "cold",
            };
            let reply = ingress.handle(request, &request.body, NOW).await;
            Ok(TransportReply {
                status: reply.status,
                retry_after: None,
                body: reply.body.to_string().into_bytes(),
            })
        }
    }

    fn wire(accepts: &BoundarySecret) -> Wire {
        Wire {
            up: Some((
                ReceiverPolicy {
                    hop: "hot-to-cold".into(),
                    secrets: AcceptedSecrets::new(accepts.clone()),
                    window_secs: DEFAULT_WINDOW_SECS,
                },
                InMemoryNonceLedger::default(),
                InMemoryObjectStore::new(&["cold"], 100),
            )),
        }
    }

    fn store_with(secret: Option<&BoundarySecret>) -> InMemorySecretStore {
        InMemorySecretStore::new("store", secret.cloned())
    }

    #[tokio::test]
    async fn a_receiver_accepting_the_senders_secret_answers_the_signed_probe() {
        let secret = BoundarySecret::generate();
        let (sender, receiver) = (store_with(Some(&secret)), store_with(Some(&secret)));
        let h = probe("hot-to-cold", &sender, &receiver, &wire(&secret), NOW).await;
        assert!(h.is_ok(), "{h:?}");
        assert!(h.summary().starts_with("ok ("), "{}", h.summary());
    }

    #[tokio::test]
    async fn each_way_a_boundary_can_be_broken_is_named() {
        let secret = BoundarySecret::generate();
        let other = BoundarySecret::generate();
        let none = store_with(None);
        let sender = store_with(Some(&secret));
        let h = probe("hot-to-cold", &none, &sender, &wire(&secret), NOW).await;
        assert!(matches!(h, BoundaryHealth::NotDeployed { .. }), "{h:?}");
        let stale = store_with(Some(&other));
        let h = probe("hot-to-cold", &sender, &stale, &wire(&secret), NOW).await;
        assert!(matches!(h, BoundaryHealth::OutOfStep { .. }), "{h:?}");
        // The stores agree but the deployed ingress holds another secret: 401 bad_signature.
        let receiver = store_with(Some(&secret));
        let h = probe("hot-to-cold", &sender, &receiver, &wire(&other), NOW).await;
        assert_eq!(
            h,
            BoundaryHealth::Refused {
                status: 401,
                reason: "bad_signature".into()
            }
        );
        let h = probe("hot-to-cold", &sender, &receiver, &Wire { up: None }, NOW).await;
        assert_eq!(
            h,
            BoundaryHealth::Down {
                detail: "connection refused".into()
            }
        );
        assert!(!h.is_ok());
    }
}
