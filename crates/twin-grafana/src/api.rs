//! The Grafana HTTP API of a managed Grafana, called with a bearer token a cloud's
//! [`GrafanaAuth`] gives for one session: [`GrafanaApi::with_session`] opens the session (AWS:
//! a short-lived service account token; Azure: an Entra token for Grafana's application), runs
//! the calls and closes it again, whatever the calls returned. The token lives in memory only:
//! it is never stored in the state, printed or logged ([`Secret`] has no `Debug` or `Display`
//! that shows it).
//!
//! The Grafana's address is the endpoint its control plane reports (never rebuilt from names);
//! an endpoint without a scheme is HTTPS. Plain `http://` is accepted for loopback addresses
//! only (the test kit's fake Grafana), so a token never crosses a network unencrypted.

use async_trait::async_trait;
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use twin_engine::{CloudError, ErrorClass, Observed, Outputs};

/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The request body type.
type Body = http_body_util::Full<hyper::body::Bytes>;

/// A token's value, kept out of every `Debug`, `Display` and serialisation.
pub struct Secret(String);

impl Secret {
    /// Wraps a token's value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Which Grafana to call, and what the cloud's auth needs to get a token for it: read from the
/// dependencies' outputs, and recorded in each observation so a delete (which has no
/// dependencies) can reach the Grafana again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The Grafana's endpoint as its control plane reports it.
    pub endpoint: String,
    /// The ids the auth needs (AWS: the workspace and service account), as (attribute, value).
    pub ids: Vec<(String, String)>,
}

impl Target {
    /// The base URL of the Grafana (no trailing slash).
    pub fn base_url(&self) -> Result<String, CloudError> {
        base_url(&self.endpoint)
    }

    /// The value of id `key`, or a fatal error naming it (a bug in the auth).
    pub fn id(&self, key: &str) -> Result<&str, CloudError> {
        self.ids
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| {
                CloudError::fatal(
                    "TargetIncomplete",
                    format!("the Grafana target has no `{key}`"),
                )
            })
    }

    /// Adds the target to an observation's attributes (`endpoint` and each id at the top
    /// level, where [`recorded_target`] finds them).
    pub fn record(&self, mut attrs: Value) -> Value {
        attrs["endpoint"] = Value::String(self.endpoint.clone());
        for (k, v) in &self.ids {
            attrs[k.as_str()] = Value::String(v.clone());
        }
        attrs
    }
}

/// The target an observation recorded with `keys` as its ids; `None` for one made without (a
/// discovered spec).
pub fn recorded_target(current: &Observed, keys: &[&str]) -> Option<Target> {
    let get = |k: &str| {
        current
            .attr(k)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut ids = Vec::new();
    for k in keys {
        ids.push((k.to_string(), get(k)?));
    }
    Some(Target {
        endpoint: get("endpoint")?,
        ids,
    })
}

/// How a cloud authenticates to its Grafana: where the Grafana is (from the dependencies),
/// and a bearer token per session.
#[async_trait]
pub trait GrafanaAuth: Send + Sync {
    /// The target the spec's dependencies name; an error while they are not deployed yet.
    fn target_of(&self, deps: &Outputs) -> Result<Target, CloudError>;

    /// The ids [`Target::ids`] holds, by attribute name.
    fn id_keys(&self) -> &'static [&'static str];

    /// A token for one session with `target`, and an id for [`GrafanaAuth::close`].
    async fn open(&self, target: &Target) -> Result<(Secret, Option<String>), CloudError>;

    /// Ends the session opened with token id `token_id` (e.g. deletes the token). Failures
    /// are logged, not returned: the work is done.
    async fn close(&self, target: &Target, token_id: Option<String>);

    /// How a 403 is classified, and what the user can do about it (on Azure the deployer's
    /// Grafana Admin role may still be propagating: retryable).
    fn forbidden(&self) -> Forbidden;
}

/// The class and hint of a 403 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden {
    /// How it is classified.
    pub class: ErrorClass,
    /// What the user can do.
    pub hint: &'static str,
}

/// `https://<endpoint>`, or the endpoint itself when it already names a scheme; plain HTTP only
/// to a loopback address.
pub fn base_url(endpoint: &str) -> Result<String, CloudError> {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.is_empty() {
        return Err(CloudError::fatal(
            "IncompleteResponse",
            "the Grafana reports no endpoint",
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
    /// How a 403 is classified (the auth's [`GrafanaAuth::forbidden`]).
    pub forbidden: Forbidden,
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
    /// valid yet) and 409/412 (a concurrent change) are retried, 403 as the auth says, 429 is
    /// throttling, 5xx is transient, 404 is not-found, the rest is fatal with Grafana's message.
    pub fn error(&self, what: &str) -> CloudError {
        let (class, hint) = match self.status {
            401 => (ErrorClass::EventualConsistency, None),
            403 => (self.forbidden.class, Some(self.forbidden.hint)),
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

/// Calls a Grafana's HTTP API with the tokens of a cloud's [`GrafanaAuth`].
pub struct GrafanaApi {
    auth: Arc<dyn GrafanaAuth>,
    http: HttpClient,
}

/// The calls of one session: a base URL and a token that ends with the session.
pub struct Session<'a> {
    api: &'a GrafanaApi,
    base: String,
    token: Secret,
}

impl GrafanaApi {
    /// An API client taking its tokens from `auth`.
    pub fn new(auth: Arc<dyn GrafanaAuth>) -> Result<Self, CloudError> {
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
        Ok(GrafanaApi { auth, http })
    }

    /// The auth the tokens come from.
    pub fn auth(&self) -> &dyn GrafanaAuth {
        self.auth.as_ref()
    }

    /// Runs `calls` with a fresh token for `target` and ends the session afterwards (also
    /// when `calls` failed). A Grafana that is gone answers `NotFound`, so a delete can treat
    /// it as done.
    pub async fn with_session<T>(
        &self,
        target: &Target,
        calls: impl AsyncFnOnce(&Session<'_>) -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        let base = target.base_url()?;
        let (token, token_id) = self.auth.open(target).await?;
        let session = Session {
            api: self,
            base,
            token,
        };
        let result = calls(&session).await;
        drop(session);
        self.auth.close(target, token_id).await;
        result
    }
}

impl GrafanaApi {
    /// Runs `calls` in a session with the Grafana the dependencies name, which it is given
    /// as well (a write: no Grafana is an error).
    pub async fn in_grafana_of<T>(
        &self,
        deps: &Outputs,
        calls: impl AsyncFnOnce(&Session<'_>, &Target) -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        let t = self.auth.target_of(deps)?;
        self.with_session(&t, async |s: &Session<'_>| calls(s, &t).await)
            .await
    }

    /// [`GrafanaApi::in_grafana_of`] for a read: while the dependencies name no Grafana yet (a
    /// plan before the first deploy), nothing in it exists either.
    pub async fn read_in_grafana_of<T>(
        &self,
        deps: &Outputs,
        calls: impl AsyncFnOnce(&Session<'_>, &Target) -> Result<Option<T>, CloudError>,
    ) -> Result<Option<T>, CloudError> {
        if self.auth.target_of(deps).is_err() {
            return Ok(None);
        }
        self.in_grafana_of(deps, calls).await
    }
}

impl Session<'_> {
    /// The Grafana's base URL.
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
                .with_hint("the Grafana may still be coming up; the call is retried")
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
            forbidden: self.api.auth.forbidden(),
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

/// A resource that was just written must read back; one that does not has vanished.
pub fn reread(found: Option<Observed>, what: &str) -> Result<Observed, CloudError> {
    found.ok_or_else(|| CloudError::fatal("GrafanaHTTP404", format!("{what} vanished")))
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
            forbidden: Forbidden {
                class: ErrorClass::EventualConsistency,
                hint: "wait",
            },
        };
        assert_eq!(a(401).error("x").class, ErrorClass::EventualConsistency);
        assert_eq!(a(404).error("x").class, ErrorClass::NotFound);
        assert_eq!(a(403).error("x").class, ErrorClass::EventualConsistency);
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
