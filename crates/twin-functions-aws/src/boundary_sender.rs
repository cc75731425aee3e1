//! The sending side of a storage boundary in a Lambda function: HTTPS to the remote ingress,
//! real waits between attempts, the signing secret from Secrets Manager (`AWSCURRENT`, read
//! again once after a `bad_signature` 401 so a rotation's switch is picked up), and where a
//! give-up leaves the data.

use crate::boundary_secret::current_secret;
use async_trait::async_trait;
use std::time::Duration;
use twin_functions::boundary::{
    BoundaryDeadLetters, BoundaryEnvelope, BoundarySecret, BoundaryTransport, Pause, SecretRefresh,
    SignedRequest, TransportReply,
};
use twin_functions::{CloudError, CloudErrorKind};

/// How long one attempt may take: well inside the sender's retry deadline (60 s), so a hung
/// connection becomes a retry instead of the whole invocation.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Posts signed requests to one ingress URL over HTTPS (rustls, the system's roots).
pub struct HttpsTransport {
    client: reqwest::Client,
    url: String,
}

impl HttpsTransport {
    /// A transport to `url` (the ingress URL the deployer took from the receiving cloud).
    pub fn new(url: impl Into<String>) -> Result<Self, CloudError> {
        let url = url.into();
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|e| {
                CloudError::new(
                    "BoundaryClient",
                    format!("ingress {url}"),
                    "HttpClient",
                    e.to_string(),
                    CloudErrorKind::Rejected,
                )
            })?;
        Ok(Self { client, url })
    }
}

#[async_trait]
impl BoundaryTransport for HttpsTransport {
    async fn post(&self, request: &SignedRequest) -> Result<TransportReply, String> {
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
            // No URL in the text: it is the caller's, and reqwest's message already says what.
            .map_err(|e| e.without_url().to_string())?;
        let status = answer.status().as_u16();
        let retry_after = answer
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = answer.bytes().await.map_err(|e| e.to_string())?.to_vec();
        Ok(TransportReply {
            status,
            retry_after,
            body,
        })
    }
}

/// Waits with the runtime's timer (the backoff the retry policy asks for, not a fixed sleep).
pub struct TokioPause;

#[async_trait]
impl Pause for TokioPause {
    async fn pause(&self, wait: Duration) {
        tokio::time::sleep(wait).await;
    }
}

/// The sender's secret in Secrets Manager, read again on demand.
pub struct SecretsManagerRefresh {
    client: aws_sdk_secretsmanager::Client,
    name: String,
}

impl SecretsManagerRefresh {
    /// Reads `name` with `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    /// The current secret (what the sender signs with).
    pub async fn current(&self) -> Result<BoundarySecret, CloudError> {
        current_secret(&self.client, &self.name).await
    }
}

#[async_trait]
impl SecretRefresh for SecretsManagerRefresh {
    async fn reread(&self) -> Result<BoundarySecret, CloudError> {
        self.current().await
    }
}

/// The dead-letter place of a mover's boundary: the tier it moves out of. A mover deletes from
/// its source only after the destination confirmed the copy, so an undelivered put is still in
/// hot (or cold) and the next run sends it again; keeping a second copy elsewhere would only
/// duplicate it. `keep` therefore reports "not kept here", which the sender logs as such.
pub struct LeftAtSource {
    /// The tier the data stays in, for the message.
    pub source: &'static str,
}

#[async_trait]
impl BoundaryDeadLetters for LeftAtSource {
    async fn keep(
        &self,
        hop: &str,
        envelope: &BoundaryEnvelope,
        reason: &str,
    ) -> Result<(), CloudError> {
        Err(CloudError::new(
            "KeepBoundaryMessage",
            format!("boundary {hop}"),
            "LeftAtSource",
            format!(
                "message {} not delivered ({reason}): the data stays in {} and the next run sends it again",
                envelope.trace_id, self.source
            ),
            CloudErrorKind::Transient,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP exchange on a loopback listener: returns what arrived, answers `answer`.
    async fn serve_once(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/api/ingress-cold",
            listener.local_addr().expect("addr")
        );
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            // Read until the body (whose length the request states) is in.
            loop {
                let n = s.read(&mut buf).await.expect("read");
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            s.write_all(answer.as_bytes()).await.expect("answer");
            String::from_utf8_lossy(&seen).to_string()
        });
        (url, task)
    }

    #[tokio::test]
    async fn posts_the_signed_headers_and_body_and_reads_status_retry_after_and_body() {
        let (url, server) = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\ncontent-type: application/json\r\ncontent-length: 16\r\nconnection: close\r\n\r\n{\"error\":\"busy\"}",
        )
        .await;
        let transport = HttpsTransport::new(url).expect("client");
        let request = twin_functions::boundary::sign_envelope(
            &BoundarySecret::from_bytes([3; 32]),
            "hot-to-cold",
            &BoundaryEnvelope::new(serde_json::json!({"op": "head", "key": "k"})),
            1_764_000_000,
            "0123456789abcdef0123456789abcdef",
        )
        .expect("signs");
        let reply = transport.post(&request).await.expect("answered");
        assert_eq!(reply.status, 503);
        assert_eq!(reply.retry_after, Some(7));
        assert_eq!(reply.body, br#"{"error":"busy"}"#);
        let seen = server.await.expect("server").to_ascii_lowercase();
        assert!(seen.starts_with("post /api/ingress-cold "), "{seen}");
        for (name, value) in &request.headers {
            assert!(
                seen.contains(&format!(
                    "{}: {}",
                    name.to_ascii_lowercase(),
                    value.to_ascii_lowercase()
                )),
                "{name} missing in {seen}"
            );
        }
        assert!(seen.ends_with(&String::from_utf8_lossy(&request.body).to_ascii_lowercase()));
    }

    #[tokio::test]
    async fn a_receiver_that_is_down_is_a_transport_error_and_a_give_up_is_left_at_source() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let transport = HttpsTransport::new(format!("http://127.0.0.1:{port}/")).expect("client");
        let request = twin_functions::boundary::SignedRequest {
            headers: Vec::new(),
            body: b"{}".to_vec(),
        };
        assert!(transport.post(&request).await.is_err(), "nothing listens");
        let e = LeftAtSource { source: "hot" }
            .keep(
                "hot-to-cold",
                &BoundaryEnvelope::new(serde_json::json!({})),
                "deadline_exceeded",
            )
            .await
            .expect_err("not kept elsewhere");
        assert!(e.message.contains("stays in hot"), "{e}");
    }
}
