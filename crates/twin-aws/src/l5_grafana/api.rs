//! The Grafana HTTP API of a Managed Grafana workspace, called with a short-lived service
//! account token: [`GrafanaApi::with_session`] creates the token
//! (CreateWorkspaceServiceAccountToken), runs the calls, and deletes the token again, whatever
//! the calls returned. The token lives in memory only: it is never stored in the state, printed
//! or logged ([`Secret`] has no `Debug` or `Display` that shows it).
//!
//! The workspace's address is the `endpoint` DescribeWorkspace reports (never rebuilt from
//! names); an endpoint without a scheme is HTTPS. Plain `http://` is accepted for loopback
//! addresses only (the test kit's fake Grafana), so a token never crosses a network unencrypted.

use crate::errors::cloud;
use crate::AwsClients;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use twin_engine::{CloudError, ErrorClass};

/// How long a token lives: long enough for one driver call (a few HTTP requests, a health
/// wait), short enough that one that failed to be deleted expires almost at once.
pub const TOKEN_SECONDS_TO_LIVE: i32 = 300;

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The request body type.
type Body = http_body_util::Full<hyper::body::Bytes>;

/// A token's value, kept out of every `Debug`, `Display` and serialisation.
pub struct Secret(String);

impl Secret {
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which workspace to call, and as whom: read from the workspace's and the service account's
/// observed attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Managed Grafana workspace id (`g-…`).
    pub workspace_id: String,
    /// The workspace's endpoint as DescribeWorkspace reports it.
    pub endpoint: String,
    /// The deployer's service account in the workspace.
    pub service_account_id: String,
}

impl Target {
    /// The base URL of the workspace's Grafana (no trailing slash).
    pub fn base_url(&self) -> Result<String, CloudError> {
        base_url(&self.endpoint)
    }
}

/// `https://<endpoint>`, or the endpoint itself when it already names a scheme; plain HTTP only
/// to a loopback address.
pub fn base_url(endpoint: &str) -> Result<String, CloudError> {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.is_empty() {
        return Err(CloudError::fatal(
            "IncompleteResponse",
            "the Grafana workspace reports no endpoint",
        ));
    }
    if let Some(rest) = endpoint.strip_prefix("http://") {
        let host = rest.split([':', '/']).next().unwrap_or_default();
        if !matches!(host, "127.0.0.1" | "localhost") {
            return Err(CloudError::fatal(
                "InsecureEndpoint",
                format!("refusing to send a Grafana token over plain HTTP to {endpoint}"),
            ));
        }
        return Ok(endpoint.to_string());
    }
    if endpoint.starts_with("https://") {
        return Ok(endpoint.to_string());
    }
    Ok(format!("https://{endpoint}"))
}

/// One Grafana API answer: status and JSON body (`null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Answer {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Grafana's `message`, or the status.
    pub fn message(&self) -> String {
        self.body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("HTTP {}", self.status))
    }

    /// The answer as an error about `what`, classified by status: 401 (a token that is not
    /// valid yet) and 409/412 (a concurrent change) are retried, 429 is throttling, 5xx is
    /// transient, 404 is not-found, the rest is fatal with Grafana's message.
    pub fn error(&self, what: &str) -> CloudError {
        let (class, hint) = match self.status {
            401 => (ErrorClass::EventualConsistency, None),
            403 => (
                ErrorClass::Fatal,
                Some("the deployer's service account is not a Grafana Admin of the workspace; run `destroy --layer l5` and `deploy` to make it again"),
            ),
            404 => (ErrorClass::NotFound, None),
            409 | 412 => (ErrorClass::EventualConsistency, None),
            429 => (ErrorClass::Throttling, None),
            s if s >= 500 => (ErrorClass::Transient, None),
            _ => (
                ErrorClass::Fatal,
                Some("Grafana refused the request (the message says why); this is likely a bug in deployer, please report it"),
            ),
        };
        let e = CloudError::new(
            class,
            format!("GrafanaHTTP{}", self.status),
            format!("{what}: {}", self.message()),
        );
        match hint {
            Some(h) => e.with_hint(h),
            None => e,
        }
    }
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Body,
>;

/// Calls a workspace's Grafana HTTP API with short-lived service account tokens.
pub struct GrafanaApi {
    clients: Arc<AwsClients>,
    http: HttpClient,
}

/// The calls of one session: a base URL and a token that is deleted when the session ends.
pub struct Session<'a> {
    api: &'a GrafanaApi,
    base: String,
    token: Secret,
}

/// A process-wide counter that makes token names unique within one second.
static TOKEN_SEQ: AtomicU64 = AtomicU64::new(0);

fn token_name() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!(
        "deployer-{now}-{}-{}",
        std::process::id(),
        TOKEN_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

impl GrafanaApi {
    /// An API client using these AWS clients for the tokens.
    pub fn new(clients: Arc<AwsClients>) -> Result<Self, CloudError> {
        // The ring provider explicitly: the process may hold more than one rustls provider.
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .map_err(|e| CloudError::fatal("TlsSetup", format!("the HTTPS client: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(GrafanaApi { clients, http })
    }

    /// Runs `calls` with a fresh token for `target`'s service account and deletes the token
    /// afterwards (also when `calls` failed). A workspace or service account that is gone
    /// answers `NotFound`, so a delete can treat it as done.
    pub async fn with_session<T>(
        &self,
        target: &Target,
        calls: impl AsyncFnOnce(&Session<'_>) -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        let base = target.base_url()?;
        let out = self
            .clients
            .grafana
            .create_workspace_service_account_token()
            .workspace_id(&target.workspace_id)
            .service_account_id(&target.service_account_id)
            .name(token_name())
            .seconds_to_live(TOKEN_SECONDS_TO_LIVE)
            .send()
            .await
            .map_err(cloud)?;
        let token = out.service_account_token().ok_or_else(|| {
            CloudError::new(
                ErrorClass::Transient,
                "IncompleteResponse",
                format!(
                    "CreateWorkspaceServiceAccountToken for workspace {} returned no token",
                    target.workspace_id
                ),
            )
        })?;
        let token_id = token.id().to_string();
        let session = Session {
            api: self,
            base,
            token: Secret(token.key().to_string()),
        };
        let result = calls(&session).await;
        drop(session);
        let deleted = crate::errors::gone_is_ok(
            self.clients
                .grafana
                .delete_workspace_service_account_token()
                .workspace_id(&target.workspace_id)
                .service_account_id(&target.service_account_id)
                .token_id(&token_id)
                .send()
                .await,
        );
        if let Err(e) = deleted {
            // The token expires by itself within TOKEN_SECONDS_TO_LIVE; the work is done, so
            // failing it for this would only repeat it.
            tracing::warn!(
                workspace = %target.workspace_id,
                token_id = %token_id,
                "could not delete the short-lived Grafana token (it expires in {TOKEN_SECONDS_TO_LIVE} s): {e}"
            );
        }
        result
    }
}

impl Session<'_> {
    /// The workspace's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; `body` `None` sends none. Connection failures are transient (a new
    /// workspace's name may not resolve yet).
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, CloudError> {
        let url = format!("{}{path}", self.base);
        let bytes = body.map(Value::to_string).unwrap_or_default();
        let request = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token.expose()))
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(Body::new(hyper::body::Bytes::from(bytes)))
            .map_err(|e| CloudError::fatal("RequestInvalid", format!("{method} {url}: {e}")))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.api.http.request(request))
            .await
            .map_err(|_| {
                CloudError::new(
                    ErrorClass::Transient,
                    "Timeout",
                    format!("{method} {url} timed out"),
                )
            })?
            .map_err(|e| {
                CloudError::new(
                    ErrorClass::Transient,
                    "ConnectionFailed",
                    format!("{method} {url}: {e}"),
                )
                .with_hint("the workspace may still be coming up; the call is retried")
            })?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| {
                CloudError::new(
                    ErrorClass::Transient,
                    "ResponseError",
                    format!("{method} {url}: {e}"),
                )
            })?
            .to_bytes();
        Ok(Answer {
            status,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        })
    }

    /// GET `path`: `None` on 404, the body on 2xx, else the classified error about `what`.
    pub async fn get(&self, path: &str, what: &str) -> Result<Option<Value>, CloudError> {
        let a = self.call(http::Method::GET, path, None).await?;
        match a.status {
            404 => Ok(None),
            _ if a.ok() => Ok(Some(a.body)),
            _ => Err(a.error(what)),
        }
    }

    /// A write (`POST`, `PUT`): the body on 2xx, else the classified error about `what`.
    pub async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: &Value,
        what: &str,
    ) -> Result<Value, CloudError> {
        let a = self.call(method, path, Some(body)).await?;
        if a.ok() {
            Ok(a.body)
        } else {
            Err(a.error(what))
        }
    }

    /// DELETE `path`; already gone (404) is success.
    pub async fn delete(&self, path: &str, what: &str) -> Result<(), CloudError> {
        let a = self.call(http::Method::DELETE, path, None).await?;
        if a.ok() || a.status == 404 {
            Ok(())
        } else {
            Err(a.error(what))
        }
    }
}

/// A Grafana uid (at most 40 characters of `[A-Za-z0-9_-]`) made from the twin name and a
/// suffix; a name too long keeps its start and gets a short hash of the whole.
pub fn grafana_uid(twin: &str, suffix: &str) -> String {
    use sha2::Digest;
    let raw = format!("{twin}-{suffix}");
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if clean.len() <= 40 {
        return clean;
    }
    let hash = hex::encode(sha2::Sha256::digest(raw.as_bytes()));
    format!("{}-{}", &clean[..31], &hash[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_https_unless_loopback() {
        assert_eq!(
            base_url("g-1.grafana-workspace.us-east-1.amazonaws.com").ok(),
            Some("https://g-1.grafana-workspace.us-east-1.amazonaws.com".to_string())
        );
        assert_eq!(
            base_url("http://127.0.0.1:4000/").ok(),
            Some("http://127.0.0.1:4000".to_string())
        );
        let e = base_url("http://g-1.example.com").err().map(|e| e.code);
        assert_eq!(e.as_deref(), Some("InsecureEndpoint"));
        assert!(base_url("").is_err());
    }

    #[test]
    fn answers_are_classified_by_status() {
        let a = |status| Answer {
            status,
            body: serde_json::json!({"message": "nope"}),
        };
        assert_eq!(a(401).error("x").class, ErrorClass::EventualConsistency);
        assert_eq!(a(404).error("x").class, ErrorClass::NotFound);
        assert_eq!(a(429).error("x").class, ErrorClass::Throttling);
        assert_eq!(a(502).error("x").class, ErrorClass::Transient);
        let e = a(400).error("data source dt-twinmaker");
        assert_eq!(e.class, ErrorClass::Fatal);
        assert_eq!(e.code, "GrafanaHTTP400");
        assert!(e.message.contains("data source dt-twinmaker: nope"));
    }

    #[test]
    fn uids_fit_grafana_limits() {
        assert_eq!(grafana_uid("dt", "twinmaker"), "dt-twinmaker");
        let long = grafana_uid(&"a".repeat(60), "twinmaker");
        assert_eq!(long.len(), 40);
        assert_ne!(long, grafana_uid(&"a".repeat(61), "twinmaker"));
        assert_eq!(grafana_uid("my.twin", "x"), "my-twin-x");
    }

    #[test]
    fn secrets_do_not_show() {
        assert_eq!(format!("{:?}", Secret("abc".into())), "Secret(***)");
    }
}
