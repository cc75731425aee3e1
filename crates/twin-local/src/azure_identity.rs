//! The managed identity endpoint the local Functions host gives each app, as App Service does
//! (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, protocol 2019-08-01): the handler's own
//! `ManagedIdentityCredential` asks it for tokens exactly as it asks Azure, so the deployed code
//! runs unchanged. It answers only for the app's own user-assigned identity (the `client_id` the
//! app's settings name) and only to a caller presenting that app's secret header.
//!
//! The tokens are unsigned JWTs naming the resource as audience and an Entra issuer: what the
//! local emulators check (Azurite's `--oauth basic` validates issuer, audience and lifetime, not
//! signatures). They open nothing in a real cloud.

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a token is valid.
const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
struct Caller {
    site: String,
    client_id: String,
}

/// A running local identity endpoint on 127.0.0.1.
pub struct LocalIdentity {
    url: String,
    tenant_id: String,
    callers: Arc<Mutex<HashMap<String, Caller>>>,
    issued: Arc<Mutex<Vec<(String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LocalIdentity {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LocalIdentity {
    /// Starts the endpoint (inside a tokio runtime); its tokens name `tenant_id` as issuer.
    pub async fn start(tenant_id: &str) -> std::io::Result<Arc<LocalIdentity>> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/msi/token", listener.local_addr()?);
        let callers: Arc<Mutex<HashMap<String, Caller>>> = Arc::default();
        let issued: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (c, i, tenant) = (callers.clone(), issued.clone(), tenant_id.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (c, i, tenant) = (c.clone(), i.clone(), tenant.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let answer = answer(&c, &i, &tenant, &req);
                        async move { Ok::<_, std::convert::Infallible>(answer) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Arc::new(LocalIdentity {
            url,
            tenant_id: tenant_id.to_string(),
            callers,
            issued,
            task,
        }))
    }

    /// The tenant the tokens name.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` for `site`, whose identity is `client_id`.
    pub fn endpoint_for(&self, site: &str, client_id: &str) -> (String, String) {
        let secret = hex::encode(crate::azure_host::random_bytes());
        lock(&self.callers).insert(
            secret.clone(),
            Caller {
                site: site.to_string(),
                client_id: client_id.to_string(),
            },
        );
        (self.url.clone(), secret)
    }

    /// Every token handed out so far, as (site, resource).
    pub fn issued(&self) -> Vec<(String, String)> {
        lock(&self.issued).clone()
    }
}

fn reply(status: u16, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn answer<B>(
    callers: &Mutex<HashMap<String, Caller>>,
    issued: &Mutex<Vec<(String, String)>>,
    tenant: &str,
    req: &Request<B>,
) -> Response<Full<Bytes>> {
    let secret = req
        .headers()
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(caller) = lock(callers).get(secret).cloned() else {
        return reply(
            401,
            json!({"error": "unauthorized", "error_description": "x-identity-header does not name an app of this host"}),
        );
    };
    let query = req.uri().query().unwrap_or("");
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| crate::azure_host::percent_decode(v))
    };
    let Some(resource) = param("resource").filter(|r| !r.is_empty()) else {
        return reply(
            400,
            json!({"error": "invalid_request", "error_description": "resource is required"}),
        );
    };
    // A user-assigned identity must be asked for by its client id, and only the app's own.
    if param("client_id").as_deref() != Some(caller.client_id.as_str()) {
        return reply(
            400,
            json!({"error": "invalid_request", "error_description": format!(
                "identity not found: app {} has user-assigned identity {} only", caller.site, caller.client_id)}),
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let exp = now + TOKEN_LIFETIME.as_secs();
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let token = format!(
        "{}.{}.local",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&json!({
            "aud": resource,
            "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": now, "nbf": now.saturating_sub(60), "exp": exp,
            "appid": caller.client_id, "tid": tenant,
            "xms_mirid": format!("local/{}", caller.site),
        }))
    );
    lock(issued).push((caller.site.clone(), resource.clone()));
    reply(
        200,
        json!({"access_token": token, "expires_on": exp.to_string(), "resource": resource,
               "token_type": "Bearer", "client_id": caller.client_id}),
    )
}
