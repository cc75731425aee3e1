//! A stateful fake of Azure Resource Manager for tests (no ARM emulator exists, EMULATORS.md):
//! resources stored by id, PUT and DELETE answered as long-running operations that finish after
//! a configurable number of polls, resource groups that delete what they hold, resource
//! provider registration, and injected faults (429 with Retry-After, 409
//! AnotherOperationInProgress, 500, a connection dropped after the change was applied).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeArmConfig {
    /// The subscription it serves.
    pub subscription_id: String,
    /// The tenant `GET /subscriptions/{id}` names.
    pub tenant_id: String,
    /// Polls an operation answers `InProgress` (or 202) before it succeeds.
    pub polls: u32,
    /// `Retry-After` seconds on accepted operations and their polls.
    pub retry_after_secs: u64,
    /// Resource provider namespaces not registered yet (PUTs answer
    /// `MissingSubscriptionRegistration` until registered).
    pub unregistered: Vec<String>,
}

impl Default for FakeArmConfig {
    fn default() -> Self {
        FakeArmConfig {
            subscription_id: "00000000-0000-0000-0000-0000000000aa".into(),
            tenant_id: "00000000-0000-0000-0000-0000000000tt".into(),
            polls: 2,
            retry_after_secs: 0,
            unregistered: Vec::new(),
        }
    }
}

/// A fault the fake answers instead of (or, for a drop, after) handling a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 429 `TooManyRequests` with `Retry-After`.
    Throttle {
        /// Seconds asked for.
        retry_after_secs: u64,
    },
    /// 409 `AnotherOperationInProgress`.
    Busy,
    /// 500 `InternalServerError`.
    ServerError,
    /// The request is applied, then the connection is closed without an answer.
    DropAfterApply,
}

#[derive(Debug)]
struct Injected {
    method: String,
    path_contains: String,
    fault: Fault,
    times: u32,
}

#[derive(Debug)]
enum Completion {
    /// Set `properties.provisioningState` of this id to `Succeeded`.
    Settle(String),
    /// Remove this id and everything under it.
    Remove(String),
}

#[derive(Debug)]
struct Operation {
    remaining: u32,
    completion: Option<Completion>,
    result: Option<Value>,
}

#[derive(Debug, Default)]
struct State {
    resources: BTreeMap<String, Value>,
    operations: HashMap<u64, Operation>,
    next_op: u64,
    unregistered: HashSet<String>,
    registering: HashMap<String, u32>,
    faults: Vec<Injected>,
    log: Vec<String>,
    web: WebState,
}

/// A running fake ARM on 127.0.0.1.
pub struct FakeArm {
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    config: FakeArmConfig,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeArm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeArm {
    /// Starts a fake on a free port (inside the current tokio runtime).
    pub async fn start(config: FakeArmConfig) -> std::io::Result<FakeArm> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            unregistered: config
                .unregistered
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            ..State::default()
        }));
        let (s, c, u) = (state.clone(), config.clone(), url.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, c, u) = (s.clone(), c.clone(), u.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (s, c, u) = (s.clone(), c.clone(), u.clone());
                        async move { handle(&s, &c, &u, req).await }
                    });
                    // A dropped connection ends here with an error, which is the point.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FakeArm {
            url,
            config,
            state,
            task,
        })
    }

    /// The subscription it serves.
    pub fn subscription_id(&self) -> &str {
        &self.config.subscription_id
    }

    /// The tenant it names.
    pub fn tenant_id(&self) -> &str {
        &self.config.tenant_id
    }

    /// Answers the next `times` requests of `method` whose path contains `path_contains`
    /// (case-insensitive) with `fault`.
    pub fn inject(&self, method: &str, path_contains: &str, fault: Fault, times: u32) {
        lock(&self.state).faults.push(Injected {
            method: method.to_ascii_uppercase(),
            path_contains: path_contains.to_ascii_lowercase(),
            fault,
            times,
        });
    }

    /// Faults injected but not yet answered.
    pub fn faults_left(&self) -> u32 {
        lock(&self.state).faults.iter().map(|f| f.times).sum()
    }

    /// The stored resource with this id (case-insensitive).
    pub fn resource(&self, id: &str) -> Option<Value> {
        lock(&self.state)
            .resources
            .get(&id.to_ascii_lowercase())
            .cloned()
    }

    /// The ids of every stored resource (lowercase).
    pub fn ids(&self) -> Vec<String> {
        lock(&self.state).resources.keys().cloned().collect()
    }

    /// Stores a resource as if someone else had made it.
    pub fn insert(&self, id: &str, body: Value) {
        let mut body = body;
        body["id"] = json!(id);
        lock(&self.state)
            .resources
            .insert(id.to_ascii_lowercase(), body);
    }

    /// Changes a stored resource behind the deployer's back (`pointer` as in JSON Pointer).
    pub fn set(&self, id: &str, pointer: &str, value: Value) -> bool {
        let mut st = lock(&self.state);
        match st
            .resources
            .get_mut(&id.to_ascii_lowercase())
            .and_then(|r| r.pointer_mut(pointer))
        {
            Some(v) => {
                *v = value;
                true
            }
            None => false,
        }
    }

    /// Every request answered so far, as `METHOD path`.
    pub fn log(&self) -> Vec<String> {
        lock(&self.state).log.clone()
    }

    /// The requests so far that change something (PUT, PATCH, POST, DELETE).
    pub fn mutating_calls(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| !l.starts_with("GET "))
            .collect()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        lock(&self.state).log.clear();
    }

    /// Whether a resource provider is registered.
    pub fn is_registered(&self, namespace: &str) -> bool {
        !lock(&self.state)
            .unregistered
            .contains(&namespace.to_ascii_lowercase())
    }
}

/// Why the fake closes a connection without an answer.
#[derive(Debug)]
pub struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fake (injected)")
    }
}

impl std::error::Error for Dropped {}

type Answer = Result<Response<Full<Bytes>>, Dropped>;

fn reply(status: u16, body: &Value, headers: &[(&str, String)]) -> Response<Full<Bytes>> {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let mut r = Response::new(Full::new(bytes));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}

fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        &json!({"error": {"code": code, "message": message}}),
        &[],
    )
}

async fn handle(
    state: &Mutex<State>,
    config: &FakeArmConfig,
    base: &str,
    req: Request<Incoming>,
) -> Answer {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorized = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7);
    let body: Value = match req.into_body().collect().await {
        Ok(b) => serde_json::from_slice(&b.to_bytes()).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    let mut st = lock(state);
    st.log.push(format!("{method} {path}"));
    if !authorized {
        return Ok(error(401, "AuthenticationFailed", "no bearer token"));
    }
    let lower = path.to_ascii_lowercase();
    let fault = st
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && f.method == method && lower.contains(&f.path_contains))
        .map(|f| {
            f.times -= 1;
            f.fault
        });
    let mut drop_after = false;
    match fault {
        Some(Fault::Throttle { retry_after_secs }) => {
            return Ok(reply(
                429,
                &json!({"error": {"code": "TooManyRequests", "message": "slow down (injected)"}}),
                &[("retry-after", retry_after_secs.to_string())],
            ))
        }
        Some(Fault::Busy) => {
            return Ok(error(
                409,
                "AnotherOperationInProgress",
                "another operation is in progress on the resource (injected)",
            ))
        }
        Some(Fault::ServerError) => {
            return Ok(error(500, "InternalServerError", "injected failure"))
        }
        Some(Fault::DropAfterApply) => drop_after = true,
        None => {}
    }
    let answer = route(&mut st, config, base, &method, &path, &query, body);
    if drop_after {
        return Err(Dropped);
    }
    Ok(answer)
}

fn route(
    st: &mut State,
    config: &FakeArmConfig,
    base: &str,
    method: &str,
    path: &str,
    query: &str,
    body: Value,
) -> Response<Full<Bytes>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    if lower.first().map(String::as_str) == Some("fake") && segs.len() == 3 {
        return poll(st, config, &lower[1], segs[2]);
    }
    if !query.contains("api-version=") {
        return error(
            400,
            "MissingApiVersionParameter",
            "the api-version query parameter is required",
        );
    }
    if lower.len() < 2 || lower[0] != "subscriptions" {
        return error(404, "InvalidResourceType", "unknown path");
    }
    if lower[1] != config.subscription_id.to_ascii_lowercase() {
        return error(404, "SubscriptionNotFound", "no such subscription");
    }
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    if let Some(answer) = web_route(st, method, path, &segs, &l, &body) {
        return answer;
    }
    match (method, &l[2..]) {
        ("GET", []) => reply(
            200,
            &json!({"id": format!("/subscriptions/{}", config.subscription_id),
                "subscriptionId": config.subscription_id, "tenantId": config.tenant_id,
                "state": "Enabled"}),
            &[],
        ),
        ("POST", ["providers", ns, "register"]) => {
            if st.unregistered.contains(*ns) {
                st.registering.entry(ns.to_string()).or_insert(config.polls);
            }
            reply(
                200,
                &json!({"namespace": segs[3], "registrationState": "Registering"}),
                &[],
            )
        }
        ("GET", ["providers", ns]) => {
            let ns = ns.to_string();
            let state = if !st.unregistered.contains(&ns) {
                "Registered"
            } else if let Some(left) = st.registering.get_mut(&ns) {
                if *left == 0 {
                    st.unregistered.remove(&ns);
                    st.registering.remove(&ns);
                    "Registered"
                } else {
                    *left -= 1;
                    "Registering"
                }
            } else {
                "NotRegistered"
            };
            reply(
                200,
                &json!({"namespace": segs[3], "registrationState": state}),
                &[],
            )
        }
        ("GET", ["resourcegroups"]) => {
            let groups: Vec<Value> = st
                .resources
                .iter()
                .filter(|(k, _)| k.split('/').count() == 5)
                .map(|(_, v)| v.clone())
                .collect();
            reply(200, &json!({"value": groups}), &[])
        }
        ("GET", ["resourcegroups", _, "resources"]) => {
            let prefix = format!("{}/providers/", lower[..4].join("/"));
            let prefix = format!("/{prefix}");
            let items: Vec<Value> = st
                .resources
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix) && k.split('/').count() == 9)
                .map(|(_, v)| v.clone())
                .collect();
            reply(200, &json!({"value": items}), &[])
        }
        (_, ["resourcegroups", _]) => group(st, config, base, method, path, body),
        (_, ["resourcegroups", _, "providers", ns, _, _, ..]) if l.len() & 1 == 0 => {
            let ns = ns.to_string();
            resource(st, config, base, method, path, &segs, &ns, body)
        }
        _ => error(
            404,
            "InvalidResourceType",
            "the fake does not know this path",
        ),
    }
}

fn new_op(
    st: &mut State,
    config: &FakeArmConfig,
    completion: Completion,
    result: Option<Value>,
) -> u64 {
    st.next_op += 1;
    let id = st.next_op;
    st.operations.insert(
        id,
        Operation {
            remaining: config.polls,
            completion: Some(completion),
            result,
        },
    );
    id
}

fn complete(st: &mut State, c: Completion) {
    match c {
        Completion::Settle(id) => {
            if let Some(r) = st.resources.get_mut(&id) {
                r["properties"]["provisioningState"] = json!("Succeeded");
            }
        }
        Completion::Remove(id) => {
            let prefix = format!("{id}/");
            st.resources
                .retain(|k, _| k != &id && !k.starts_with(&prefix));
        }
    }
}

fn poll(st: &mut State, config: &FakeArmConfig, kind: &str, id: &str) -> Response<Full<Bytes>> {
    let Ok(n) = id.parse::<u64>() else {
        return error(404, "NotFound", "no such operation");
    };
    let retry = [("retry-after", config.retry_after_secs.to_string())];
    let Some(op) = st.operations.get_mut(&n) else {
        return error(404, "NotFound", "no such operation");
    };
    if op.remaining > 0 {
        op.remaining -= 1;
        return if kind == "operations" {
            reply(200, &json!({"status": "InProgress"}), &retry)
        } else {
            reply(202, &Value::Null, &retry)
        };
    }
    let done = op.completion.take();
    let result = op.result.clone();
    if let Some(c) = done {
        complete(st, c);
    }
    if kind == "operations" {
        reply(200, &json!({"status": "Succeeded"}), &[])
    } else {
        match result.and_then(|id| st.resources.get(id.as_str().unwrap_or_default()).cloned()) {
            Some(r) => reply(200, &r, &[]),
            None => reply(204, &Value::Null, &[]),
        }
    }
}

fn group(
    st: &mut State,
    config: &FakeArmConfig,
    base: &str,
    method: &str,
    path: &str,
    body: Value,
) -> Response<Full<Bytes>> {
    let key = path.to_ascii_lowercase();
    match method {
        "GET" => match st.resources.get(&key) {
            Some(r) => reply(200, r, &[]),
            None => error(404, "ResourceGroupNotFound", "resource group not found"),
        },
        "PUT" => {
            let existed = st.resources.contains_key(&key);
            let name = path.rsplit('/').next().unwrap_or_default();
            let g = json!({"id": path, "name": name, "type": "Microsoft.Resources/resourceGroups",
                "location": body.get("location"), "tags": body.get("tags").cloned().unwrap_or(json!({})),
                "properties": {"provisioningState": "Succeeded"}});
            st.resources.insert(key, g.clone());
            reply(if existed { 200 } else { 201 }, &g, &[])
        }
        "DELETE" => {
            if !st.resources.contains_key(&key) {
                return error(404, "ResourceGroupNotFound", "resource group not found");
            }
            if let Some(r) = st.resources.get_mut(&key) {
                r["properties"]["provisioningState"] = json!("Deleting");
            }
            let op = new_op(st, config, Completion::Remove(key), None);
            reply(
                202,
                &Value::Null,
                &[
                    ("location", format!("{base}/fake/locations/{op}")),
                    ("retry-after", config.retry_after_secs.to_string()),
                ],
            )
        }
        _ => error(405, "MethodNotAllowed", "not supported by the fake"),
    }
}

#[allow(clippy::too_many_arguments)]
fn resource(
    st: &mut State,
    config: &FakeArmConfig,
    base: &str,
    method: &str,
    path: &str,
    segs: &[&str],
    namespace: &str,
    body: Value,
) -> Response<Full<Bytes>> {
    let key = path.to_ascii_lowercase();
    let group_key = format!("/{}", segs[..4].join("/")).to_ascii_lowercase();
    let is_storage = segs.len() == 8 && key.contains("/microsoft.storage/storageaccounts/");
    match method {
        "GET" => match st.resources.get(&key) {
            Some(r) => reply(200, r, &[]),
            None => error(404, "ResourceNotFound", "the resource was not found"),
        },
        "PUT" => {
            if st.unregistered.contains(namespace) {
                return error(
                    409,
                    "MissingSubscriptionRegistration",
                    &format!("The subscription is not registered to use namespace '{namespace}'."),
                );
            }
            if !st.resources.contains_key(&group_key) {
                return error(404, "ResourceGroupNotFound", "resource group not found");
            }
            if segs.len() > 8 {
                let parent = format!("/{}", segs[..8].join("/")).to_ascii_lowercase();
                if !st.resources.contains_key(&parent) {
                    return error(
                        404,
                        "ParentResourceNotFound",
                        "the parent resource was not found",
                    );
                }
            }
            let existing = st.resources.get(&key).cloned();
            let name = segs[segs.len() - 1];
            let ty = segs[5..]
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 2 == 1 || *i == 0)
                .map(|(_, s)| *s)
                .collect::<Vec<_>>()
                .join("/");
            let mut stored = body.clone();
            stored["id"] = json!(path);
            stored["name"] = json!(name);
            stored["type"] = json!(ty);
            if !stored["properties"].is_object() {
                stored["properties"] = json!({});
            }
            // What the cloud fills in by itself.
            let short = config.subscription_id.len().min(8);
            if ty.eq_ignore_ascii_case("Microsoft.ManagedIdentity/userAssignedIdentities") {
                let prev = existing.as_ref().and_then(|e| e.get("properties"));
                let keep =
                    |k: &str, v: String| prev.and_then(|p| p.get(k)).cloned().unwrap_or(json!(v));
                stored["properties"]["principalId"] = keep(
                    "principalId",
                    format!("p-{}-{name}", &config.subscription_id[..short]),
                );
                stored["properties"]["clientId"] = keep("clientId", format!("c-{name}"));
                stored["properties"]["tenantId"] = json!(config.tenant_id);
            }
            fill_web(&mut stored, &ty, name, existing.as_ref(), &st.web);
            fill_monitoring(&mut stored, &ty, name, existing.as_ref());
            if is_storage {
                stored["properties"]["primaryEndpoints"] =
                    json!({"blob": format!("https://{name}.blob.core.windows.net/")});
            }
            let pending = config.polls > 0;
            stored["properties"]["provisioningState"] =
                json!(match (pending, existing.is_some()) {
                    (false, _) => "Succeeded",
                    (true, false) => "Creating",
                    (true, true) => "Updating",
                });
            st.resources.insert(key.clone(), stored.clone());
            let status = if existing.is_some() { 200 } else { 201 };
            if !pending {
                return reply(status, &stored, &[]);
            }
            let retry = ("retry-after", config.retry_after_secs.to_string());
            if is_storage {
                // Storage accounts answer 202 with Location and no body, as the real one does.
                let op = new_op(
                    st,
                    config,
                    Completion::Settle(key.clone()),
                    Some(json!(key)),
                );
                reply(
                    202,
                    &Value::Null,
                    &[("location", format!("{base}/fake/locations/{op}")), retry],
                )
            } else {
                let op = new_op(st, config, Completion::Settle(key), None);
                reply(
                    status,
                    &stored,
                    &[
                        (
                            "azure-asyncoperation",
                            format!("{base}/fake/operations/{op}"),
                        ),
                        retry,
                    ],
                )
            }
        }
        "DELETE" => {
            if !st.resources.contains_key(&key) {
                return reply(204, &Value::Null, &[]);
            }
            if config.polls == 0 {
                complete(st, Completion::Remove(key));
                return reply(200, &Value::Null, &[]);
            }
            let op = new_op(st, config, Completion::Remove(key), None);
            reply(
                202,
                &Value::Null,
                &[
                    ("location", format!("{base}/fake/locations/{op}")),
                    ("retry-after", config.retry_after_secs.to_string()),
                ],
            )
        }
        _ => error(405, "MethodNotAllowed", "not supported by the fake"),
    }
}

// ---- Microsoft.Web (Function Apps) and monitoring: what ARM fills in, and the site's child
// ---- resources that answer synchronously (app settings, publishing policies, functions).

/// Gives the Repository (SCM) host of a site by name, e.g. a fake deployment endpoint's
/// `127.0.0.1:port`.
pub type ScmHosts = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Sets the functions a site lists (`GET .../sites/<name>/functions`) after a deployment.
pub type FunctionSync = Arc<dyn Fn(&str, &[String]) + Send + Sync>;

#[derive(Default)]
struct WebState {
    scm_hosts: Option<ScmHosts>,
}

impl std::fmt::Debug for WebState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebState")
            .field("scm_hosts", &self.scm_hosts.is_some())
            .finish()
    }
}

impl FakeArm {
    /// Sites created from now on name `hosts(site)` as their Repository (SCM) host in
    /// `hostNameSslStates` (a fake deployment endpoint), instead of `<site>.scm.azurewebsites.net`.
    pub fn serve_scm_with(&self, hosts: ScmHosts) {
        lock(&self.state).web.scm_hosts = Some(hosts);
    }

    /// A handle that replaces the functions a site (by name, in any group) lists, as the
    /// Functions host does once a deployment is synced.
    pub fn function_sync(&self) -> FunctionSync {
        let state = self.state.clone();
        Arc::new(move |site: &str, functions: &[String]| {
            let mut st = lock(&state);
            let suffix = format!(
                "/providers/microsoft.web/sites/{}",
                site.to_ascii_lowercase()
            );
            let sites: Vec<String> = st
                .resources
                .keys()
                .filter(|k| k.ends_with(&suffix))
                .cloned()
                .collect();
            for site_key in sites {
                let Some(site_id) = st
                    .resources
                    .get(&site_key)
                    .and_then(|s| s.get("id"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                else {
                    continue;
                };
                let prefix = format!("{site_key}/functions/");
                st.resources.retain(|k, _| !k.starts_with(&prefix));
                for f in functions {
                    let id = format!("{site_id}/functions/{f}");
                    st.resources.insert(
                        id.to_ascii_lowercase(),
                        json!({"id": id, "name": format!("{site}/{f}"),
                            "type": "Microsoft.Web/sites/functions",
                            "properties": {"name": f, "language": "custom", "isDisabled": false}}),
                    );
                }
            }
        })
    }
}

/// What ARM fills in for `Microsoft.Web/sites`: host names (the SCM one from the fake
/// deployment endpoint when there is one), `state`; kept across updates as the cloud keeps them.
fn fill_web(stored: &mut Value, ty: &str, name: &str, existing: Option<&Value>, web: &WebState) {
    if !ty.eq_ignore_ascii_case("Microsoft.Web/sites") {
        return;
    }
    let prev = |k: &str| existing.and_then(|e| e.pointer(&format!("/properties/{k}")).cloned());
    let default_host = format!("{name}.azurewebsites.net");
    let scm_host = prev("hostNameSslStates")
        .and_then(|v| {
            v.as_array()?
                .iter()
                .find(|h| h["hostType"] == "Repository")
                .and_then(|h| h["name"].as_str().map(str::to_string))
        })
        .unwrap_or_else(|| match &web.scm_hosts {
            Some(hosts) => hosts(name),
            None => format!("{name}.scm.azurewebsites.net"),
        });
    let p = &mut stored["properties"];
    p["defaultHostName"] = json!(default_host);
    p["enabledHostNames"] = json!([default_host, scm_host]);
    p["hostNameSslStates"] = json!([
        {"name": default_host, "sslState": "Disabled", "hostType": "Standard"},
        {"name": scm_host, "sslState": "Disabled", "hostType": "Repository"},
    ]);
    p["state"] = json!("Running");
}

/// What ARM fills in for Log Analytics workspaces (`customerId`) and Application Insights
/// components (`ConnectionString`, `InstrumentationKey`, `AppId`), kept across updates.
fn fill_monitoring(stored: &mut Value, ty: &str, name: &str, existing: Option<&Value>) {
    let prev = |k: &str| existing.and_then(|e| e.pointer(&format!("/properties/{k}")).cloned());
    if ty.eq_ignore_ascii_case("Microsoft.OperationalInsights/workspaces") {
        stored["properties"]["customerId"] =
            prev("customerId").unwrap_or_else(|| json!(format!("ws-{name}")));
    }
    if ty.eq_ignore_ascii_case("Microsoft.Insights/components") {
        let key = format!("ikey-{name}");
        stored["properties"]["InstrumentationKey"] =
            prev("InstrumentationKey").unwrap_or_else(|| json!(key));
        stored["properties"]["AppId"] =
            prev("AppId").unwrap_or_else(|| json!(format!("app-{name}")));
        stored["properties"]["ConnectionString"] = prev("ConnectionString").unwrap_or_else(|| {
            json!(format!(
                "InstrumentationKey={key};IngestionEndpoint=https://westeurope-0.in.applicationinsights.azure.com/"
            ))
        });
    }
}

/// The site's child calls that are not plain long-running resources: `config/appsettings` and
/// `basicPublishingCredentialsPolicies/*` PUTs answer at once (no provisioning state),
/// `POST config/appsettings/list` reads the settings, `GET .../functions` lists functions.
fn web_route(
    st: &mut State,
    method: &str,
    path: &str,
    segs: &[&str],
    l: &[&str],
    body: &Value,
) -> Option<Response<Full<Bytes>>> {
    if l.len() < 9 || l[4] != "providers" || l[5] != "microsoft.web" || l[6] != "sites" {
        return None;
    }
    let site_key = format!("/{}", segs[..8].join("/")).to_ascii_lowercase();
    let missing = || error(404, "ResourceNotFound", "the site was not found");
    let sync_child =
        l.len() == 10 && matches!(l[8], "config" | "basicpublishingcredentialspolicies");
    match method {
        "PUT" if sync_child => {
            if !st.resources.contains_key(&site_key) {
                return Some(missing());
            }
            let stored = json!({"id": path, "name": segs[9],
                "type": format!("Microsoft.Web/sites/{}", segs[8]),
                "properties": body.get("properties").cloned().unwrap_or(json!({}))});
            st.resources
                .insert(path.to_ascii_lowercase(), stored.clone());
            Some(reply(200, &stored, &[]))
        }
        "POST" if l.len() == 11 && l[8] == "config" && l[10] == "list" => {
            if !st.resources.contains_key(&site_key) {
                return Some(missing());
            }
            let key = format!("/{}", segs[..10].join("/")).to_ascii_lowercase();
            let found = st.resources.get(&key).cloned().unwrap_or_else(
                || json!({"id": format!("/{}", segs[..10].join("/")), "name": segs[9], "properties": {}}),
            );
            Some(reply(200, &found, &[]))
        }
        "GET" if l.len() == 9 && l[8] == "functions" => {
            if !st.resources.contains_key(&site_key) {
                return Some(missing());
            }
            let prefix = format!("{site_key}/functions/");
            let items: Vec<Value> = st
                .resources
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                .map(|(_, v)| v.clone())
                .collect();
            Some(reply(200, &json!({"value": items}), &[]))
        }
        _ => None,
    }
}
