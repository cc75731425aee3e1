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
