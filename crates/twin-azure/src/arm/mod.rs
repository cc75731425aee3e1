//! Azure Resource Manager over REST on azure_core's HTTP pipeline: one attempt per call (the
//! pipeline's retry policy is off because the engine retries by classified error), long-running
//! operations followed to their end, and resource providers registered when ARM asks for it.

pub mod auth;
pub mod data_plane;
pub mod errors;
pub mod lro;

use auth::{CredentialChain, StaticTokenPolicy, ARM_SCOPE, TOKEN_ENV};
use azure_core::http::headers::HeaderName;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::policies::Policy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, RetryOptions, Url,
};
use errors::{arm_error, error_parts, transport_error, SetupError, MISSING_REGISTRATION};
use lro::{Outcome, PollTarget};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use twin_engine::{CloudError, ErrorClass};

/// The public cloud's ARM endpoint.
pub const DEFAULT_ARM_URL: &str = "https://management.azure.com";

/// Environment variable overriding [`DEFAULT_ARM_URL`] (emulators and fakes).
pub const ARM_URL_ENV: &str = "DEPLOYER_AZURE_ARM_URL";

/// API version of subscriptions, resource groups, resource listings and provider registration
/// (Microsoft.Resources, stable 2021-04-01).
pub const RESOURCES_API: &str = "2021-04-01";

/// API version of `GET /subscriptions/{id}` (Microsoft.Resources subscriptions, 2022-12-01).
pub const SUBSCRIPTIONS_API: &str = "2022-12-01";

/// How long polls wait and how long an operation may take.
#[derive(Debug, Clone, Copy)]
pub struct ArmOptions {
    /// Shortest wait between polls (also the floor under a `Retry-After: 0`).
    pub poll_min: Duration,
    /// Longest wait between polls when ARM gives no `Retry-After`.
    pub poll_max: Duration,
    /// How long one operation (or a provider registration) may run before the call fails
    /// with a retryable error, leaving the rest to the engine's own deadline.
    pub operation_deadline: Duration,
}

impl Default for ArmOptions {
    fn default() -> Self {
        ArmOptions {
            poll_min: Duration::from_secs(1),
            poll_max: Duration::from_secs(15),
            // Cosmos DB and IoT Hub take minutes (SPEC §9).
            operation_deadline: Duration::from_secs(20 * 60),
        }
    }
}

/// How requests are authorized.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A fixed bearer token (`DEPLOYER_AZURE_TOKEN`; fakes and emulators only).
    StaticToken(String),
    /// Tokens from a credential (the chain of [`CredentialChain::from_env`]).
    Credential(Arc<dyn azure_core::credentials::TokenCredential>),
}

impl Auth {
    /// `DEPLOYER_AZURE_TOKEN` when set, else the credential chain.
    pub fn from_env() -> Result<Auth, SetupError> {
        match std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()) {
            Some(t) => Ok(Auth::StaticToken(t)),
            None => Ok(Auth::Credential(CredentialChain::from_env()?)),
        }
    }
}

/// A request body: its content type and bytes.
#[derive(Debug, Clone)]
pub struct Body {
    /// `content-type`.
    pub content_type: &'static str,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl Body {
    /// A JSON body.
    pub fn json(value: &Value, what: &str) -> Result<Body, CloudError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| CloudError::fatal("BadRequestBody", format!("{what}: {e}")))?;
        Ok(Body {
            content_type: "application/json",
            bytes,
        })
    }
}

/// Sends one request on `pipeline`; a transport failure is a transient error. Statuses are
/// returned, not judged: callers classify them with the service's own error code.
pub(crate) async fn send_on(
    pipeline: &Pipeline,
    method: Method,
    url: &str,
    body: Option<Body>,
    headers: &[(&'static str, String)],
    what: &str,
) -> Result<Reply, CloudError> {
    let parsed = Url::parse(url)
        .map_err(|e| CloudError::fatal("BadUrl", format!("{what}: `{url}`: {e}")))?;
    let mut req = Request::new(parsed, method);
    req.insert_header(HeaderName::from_static("accept"), "application/json");
    for (k, v) in headers {
        req.insert_header(HeaderName::from_static(k), v.clone());
    }
    if let Some(b) = body {
        req.insert_header(HeaderName::from_static("content-type"), b.content_type);
        req.set_body(b.bytes);
    }
    let options = PipelineSendOptions {
        skip_checks: true,
        ..Default::default()
    };
    let resp = pipeline
        .send(&Context::new(), &mut req, Some(options))
        .await
        .map_err(|e| transport_error(what, &e))?;
    let status = u16::from(resp.status());
    let header = |n: &'static str| {
        resp.headers()
            .get_optional_str(&HeaderName::from_static(n))
            .map(str::to_string)
    };
    let retry_after = lro::parse_retry_after(
        header("retry-after").as_deref(),
        header("retry-after-ms")
            .or_else(|| header("x-ms-retry-after-ms"))
            .as_deref(),
    );
    let (async_operation, location) = (header("azure-asyncoperation"), header("location"));
    let etag = header("etag");
    let bytes = resp.into_body();
    // A body that is not JSON (empty, or a service's text error) is kept as null: callers
    // that need a field report it missing by name.
    let body = serde_json::from_slice(bytes.as_ref()).unwrap_or(Value::Null);
    Ok(Reply {
        status,
        body,
        async_operation,
        location,
        retry_after,
        etag,
    })
}

/// A pipeline with one attempt per call (the engine retries by classified error) that
/// authorizes requests for `scope`.
pub(crate) fn pipeline_for(auth: &Auth, scope: &str) -> Pipeline {
    let auth_policy: Arc<dyn Policy> = match auth {
        Auth::StaticToken(t) => Arc::new(StaticTokenPolicy::new(t)),
        Auth::Credential(c) => Arc::new(BearerTokenAuthorizationPolicy::new(
            c.clone(),
            [scope.to_string()],
        )),
    };
    let client_options = ClientOptions {
        retry: RetryOptions::none(),
        ..Default::default()
    };
    Pipeline::new(
        Some(env!("CARGO_PKG_NAME")),
        Some(env!("CARGO_PKG_VERSION")),
        client_options,
        Vec::new(),
        vec![auth_policy],
        None,
    )
}

/// One answer of ARM, body parsed as JSON (`null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
    /// `Azure-AsyncOperation` header.
    pub async_operation: Option<String>,
    /// `Location` header.
    pub location: Option<String>,
    /// `Retry-After` (or its millisecond variants).
    pub retry_after: Option<Duration>,
    /// `ETag` header (data planes).
    pub etag: Option<String>,
}

impl Reply {
    /// A 2xx answer.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The error this answer stands for, classified by its status and the service's code.
    pub fn error(&self, what: &str) -> CloudError {
        let (code, message) = error_parts(self.status, &self.body);
        arm_error(what, self.status, &code, &message, self.retry_after)
    }
}

/// A client of one subscription's Resource Manager.
#[derive(Debug, Clone)]
pub struct ArmClient {
    pipeline: Pipeline,
    auth: Auth,
    base: String,
    subscription_id: String,
    options: ArmOptions,
}

impl ArmClient {
    /// A client of `base` (e.g. [`DEFAULT_ARM_URL`]) for `subscription_id`.
    pub fn new(
        base: &str,
        subscription_id: &str,
        auth: Auth,
        options: ArmOptions,
    ) -> Result<Self, SetupError> {
        Url::parse(base).map_err(|e| SetupError::BadUrl {
            url: base.to_string(),
            reason: e.to_string(),
        })?;
        let pipeline = pipeline_for(&auth, ARM_SCOPE);
        Ok(ArmClient {
            pipeline,
            auth,
            base: base.trim_end_matches('/').to_string(),
            subscription_id: subscription_id.to_string(),
            options,
        })
    }

    /// A client from the environment: `DEPLOYER_AZURE_ARM_URL` (else the public cloud) and
    /// `DEPLOYER_AZURE_TOKEN` (else the credential chain).
    pub fn from_env(subscription_id: &str, options: ArmOptions) -> Result<Self, SetupError> {
        let base = std::env::var(ARM_URL_ENV)
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_ARM_URL.to_string());
        Self::new(&base, subscription_id, Auth::from_env()?, options)
    }

    /// The credential this client was built with (data-plane clients reuse it).
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Whether ARM is reached over plain http: a local fake, whose data-plane hosts are plain
    /// http too (the real cloud is https only).
    pub fn is_local(&self) -> bool {
        self.base.starts_with("http://")
    }

    /// The subscription this client works in.
    pub fn subscription_id(&self) -> &str {
        &self.subscription_id
    }

    /// `/subscriptions/<id>`.
    pub fn subscription_path(&self) -> String {
        format!("/subscriptions/{}", self.subscription_id)
    }

    fn url(&self, path: &str, api: Option<&str>) -> String {
        let mut url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        if let Some(api) = api {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("api-version=");
            url.push_str(api);
        }
        url
    }

    /// Sends one request; a transport failure is a transient error.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Reply, CloudError> {
        let body = match body {
            Some(b) => Some(Body::json(b, what)?),
            None => None,
        };
        send_on(&self.pipeline, method, url, body, &[], what).await
    }

    /// GETs a resource; `None` when ARM answers 404.
    pub async fn get(
        &self,
        path: &str,
        api: &str,
        what: &str,
    ) -> Result<Option<Value>, CloudError> {
        let r = self
            .send(Method::Get, &self.url(path, Some(api)), None, what)
            .await?;
        if r.is_success() {
            return Ok(Some(r.body));
        }
        let e = r.error(what);
        if e.class == ErrorClass::NotFound {
            Ok(None)
        } else {
            Err(e)
        }
    }

    /// Every item of a list call, following `nextLink`.
    pub async fn list(&self, path: &str, api: &str, what: &str) -> Result<Vec<Value>, CloudError> {
        let mut items = Vec::new();
        let mut url = Some(self.url(path, Some(api)));
        while let Some(u) = url.take() {
            let r = self.send(Method::Get, &u, None, what).await?;
            if !r.is_success() {
                return Err(r.error(what));
            }
            if let Some(v) = r.body.get("value").and_then(Value::as_array) {
                items.extend(v.iter().cloned());
            }
            url = r
                .body
                .get("nextLink")
                .and_then(Value::as_str)
                .map(str::to_string);
        }
        Ok(items)
    }

    /// One call whose answer is final (an action such as `POST .../config/appsettings/list`,
    /// or a write ARM applies synchronously and has no GET for, such as `PUT
    /// .../config/appsettings`): ARM's answer body; `None` when ARM answers 404.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        api: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Option<Value>, CloudError> {
        let r = self
            .send(method, &self.url(path, Some(api)), body, what)
            .await?;
        if r.is_success() {
            return Ok(Some(r.body));
        }
        let e = r.error(what);
        if e.class == ErrorClass::NotFound {
            Ok(None)
        } else {
            Err(e)
        }
    }

    /// PUTs a resource and follows the operation to its end; returns the resource as ARM then
    /// reports it. Registers the resource provider first when ARM says it is not registered.
    pub async fn put(
        &self,
        path: &str,
        api: &str,
        body: &Value,
        what: &str,
    ) -> Result<Value, CloudError> {
        self.put_with_headers(path, api, body, &[], what).await
    }

    /// [`ArmClient::put`] with request headers (e.g. the `If-Match` IoT Hub requires to
    /// update an existing hub).
    pub async fn put_with_headers(
        &self,
        path: &str,
        api: &str,
        body: &Value,
        headers: &[(&'static str, String)],
        what: &str,
    ) -> Result<Value, CloudError> {
        let url = self.url(path, Some(api));
        let mut registered = false;
        let reply = loop {
            let r = send_on(
                &self.pipeline,
                Method::Put,
                &url,
                Some(Body::json(body, what)?),
                headers,
                what,
            )
            .await?;
            if r.is_success() {
                break r;
            }
            let e = r.error(what);
            if e.code == MISSING_REGISTRATION && !registered {
                let ns = provider_namespace(path).ok_or_else(|| e.clone())?;
                self.register(&ns).await?;
                registered = true;
                continue;
            }
            return Err(e);
        };
        let target = lro::poll_target(
            reply.status,
            reply.async_operation.as_deref(),
            reply.location.as_deref(),
            &reply.body,
        );
        if let Some(t) = target {
            self.follow(t, path, api, reply.retry_after, false, what)
                .await?;
        }
        self.get(path, api, what).await?.ok_or_else(|| {
            CloudError::new(
                ErrorClass::EventualConsistency,
                "NotYetVisible",
                format!("{what}: not visible right after it was created"),
            )
        })
    }

    /// DELETEs a resource and follows the operation to its end; one already gone is fine.
    pub async fn delete(&self, path: &str, api: &str, what: &str) -> Result<(), CloudError> {
        let r = self
            .send(Method::Delete, &self.url(path, Some(api)), None, what)
            .await?;
        if !r.is_success() {
            let e = r.error(what);
            return if e.class == ErrorClass::NotFound {
                Ok(())
            } else {
                Err(e)
            };
        }
        if r.status == 204 {
            return Ok(());
        }
        let target = match lro::poll_target(
            r.status,
            r.async_operation.as_deref(),
            r.location.as_deref(),
            &Value::Null,
        ) {
            Some(t) => t,
            // A 200 without headers: done.
            None => return Ok(()),
        };
        self.follow(target, path, api, r.retry_after, true, what)
            .await
    }

    /// Polls an operation until it ends, each poll after the wait ARM asked for; polls that
    /// fail with a retryable error are polled again, within the same deadline.
    async fn follow(
        &self,
        target: PollTarget,
        path: &str,
        api: &str,
        first_wait: Option<Duration>,
        deleting: bool,
        what: &str,
    ) -> Result<(), CloudError> {
        let deadline = Instant::now() + self.options.operation_deadline;
        let mut wait = first_wait;
        for attempt in 0u32.. {
            let delay =
                lro::poll_delay(wait, attempt, self.options.poll_min, self.options.poll_max);
            if Instant::now() + delay > deadline {
                return Err(CloudError::new(
                    ErrorClass::EventualConsistency,
                    "OperationStillRunning",
                    format!(
                        "{what}: the operation was still running after {}s",
                        self.options.operation_deadline.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(delay).await; // the wait ARM asked for, or backoff
            let url = match &target {
                PollTarget::AsyncOperation(u) | PollTarget::Location(u) => u.clone(),
                PollTarget::ProvisioningState => self.url(path, Some(api)),
            };
            let r = match self.send(Method::Get, &url, None, what).await {
                Ok(r) => r,
                Err(e) if e.class.is_retryable() => {
                    wait = e.retry_after;
                    continue;
                }
                Err(e) => return Err(e),
            };
            wait = r.retry_after;
            if !r.is_success() && r.status != 404 {
                let e = r.error(what);
                if e.class.is_retryable() {
                    continue;
                }
                if !matches!(target, PollTarget::Location(_)) {
                    return Err(e);
                }
            }
            let outcome = match &target {
                PollTarget::AsyncOperation(_) if r.status == 404 => {
                    return Err(r.error(what));
                }
                PollTarget::AsyncOperation(_) => lro::async_operation_outcome(&r.body),
                PollTarget::Location(_) if r.status == 404 && deleting => Outcome::Succeeded,
                PollTarget::Location(_) => lro::location_outcome(r.status, &r.body),
                PollTarget::ProvisioningState if r.status == 404 => {
                    if deleting {
                        Outcome::Succeeded
                    } else {
                        Outcome::Pending
                    }
                }
                PollTarget::ProvisioningState => lro::provisioning_outcome(&r.body),
            };
            match outcome {
                Outcome::Pending => continue,
                Outcome::Succeeded => return Ok(()),
                Outcome::Failed { code, message } => {
                    // The operation's own error: classified by its code (an internal error is
                    // worth another try; a bad request is not).
                    return Err(arm_error(what, 400, &code, &message, None));
                }
            }
        }
        Ok(())
    }

    /// Registers a resource provider in the subscription and waits until it is registered.
    pub async fn register(&self, namespace: &str) -> Result<(), CloudError> {
        let what = format!("resource provider {namespace}");
        let path = format!("{}/providers/{namespace}", self.subscription_path());
        tracing::info!(
            namespace,
            "registering the resource provider in the subscription"
        );
        let r = self
            .send(
                Method::Post,
                &self.url(&format!("{path}/register"), Some(RESOURCES_API)),
                None,
                &what,
            )
            .await?;
        if !r.is_success() {
            return Err(r.error(&what));
        }
        let deadline = Instant::now() + self.options.operation_deadline;
        let mut wait = r.retry_after;
        for attempt in 0u32.. {
            let state = match self.get(&path, RESOURCES_API, &what).await {
                Ok(p) => p
                    .as_ref()
                    .and_then(|p| p.get("registrationState"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                Err(e) if e.class.is_retryable() => {
                    wait = e.retry_after;
                    String::new()
                }
                Err(e) => return Err(e),
            };
            if state.eq_ignore_ascii_case("Registered") {
                return Ok(());
            }
            let delay =
                lro::poll_delay(wait, attempt, self.options.poll_min, self.options.poll_max);
            if Instant::now() + delay > deadline {
                break;
            }
            tokio::time::sleep(delay).await; // registration takes a minute or two
            wait = None;
        }
        Err(CloudError::new(
            ErrorClass::EventualConsistency,
            MISSING_REGISTRATION,
            format!("{what} is still registering"),
        )
        .with_hint(format!(
            "check `az provider show --namespace {namespace}`; registration needs rights on the subscription"
        )))
    }

    /// The tenant the subscription belongs to (`GET /subscriptions/{id}`).
    pub async fn tenant_id(&self) -> Result<String, CloudError> {
        let what = format!("subscription {}", self.subscription_id);
        let sub = self
            .get(&self.subscription_path(), SUBSCRIPTIONS_API, &what)
            .await?
            .ok_or_else(|| {
                CloudError::fatal("SubscriptionNotFound", format!("{what} does not exist"))
                    .with_hint(
                        "check `azure.subscription_id` and that the signed-in identity can see it",
                    )
            })?;
        sub.get("tenantId")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                CloudError::fatal("NoTenant", format!("{what}: the answer names no tenantId"))
            })
    }
}

/// The resource provider namespace of a resource path (`Microsoft.Storage` of
/// `.../providers/Microsoft.Storage/storageAccounts/x`).
pub fn provider_namespace(path: &str) -> Option<String> {
    let mut parts = path.split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case("providers") {
            return parts.next().map(str::to_string);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_of_a_path() {
        assert_eq!(
            provider_namespace(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a"
            )
            .as_deref(),
            Some("Microsoft.Storage")
        );
        assert_eq!(
            provider_namespace("/subscriptions/s/resourceGroups/rg"),
            None
        );
    }
}
