//! A stateful fake of Azure Resource Manager for tests (no ARM emulator exists, EMULATORS.md):
//! resources stored by id (nested children at any depth, and extension resources such as
//! `<resource>/providers/Microsoft.Authorization/roleAssignments/<name>`), PUT and DELETE
//! answered as long-running operations that finish after a configurable number of polls or,
//! per ARM type, after a provisioning time measured from the PUT; resource groups that delete
//! what they hold, resource provider registration, role assignments that answer
//! `PrincipalNotFound` while a new identity is still propagating, and injected faults (429 with
//! Retry-After, 409 AnotherOperationInProgress, 500, a connection dropped after the change was
//! applied), targeted or at a seeded random rate.

use crate::fake_http::{self, body_json, has_bearer, reply, Reply};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The object id the fake's bearer tokens name (the deployer's principal in tests).
pub const FAKE_PRINCIPAL_ID: &str = "00000000-0000-0000-0000-00000000d0e1";

/// A bearer token shaped like Entra's (an unsigned JWT whose payload names `oid` and `tid`),
/// for `DEPLOYER_AZURE_TOKEN` against the fakes: the deployer reads its own principal from it.
pub fn fake_token() -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(
            &json!({"oid": FAKE_PRINCIPAL_ID, "tid": "00000000-0000-0000-0000-0000000000tt",
            "aud": "https://management.azure.com"})
        ),
        "fake-signature"
    )
}

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
    /// Per ARM type (e.g. `Microsoft.DocumentDB/databaseAccounts`, case-insensitive), how long a
    /// PUT stays `InProgress`, measured from the PUT; types not named here follow `polls`.
    pub provisioning: HashMap<String, Duration>,
    /// How long after a user-assigned identity is created a role assignment naming its
    /// principal answers 400 `PrincipalNotFound` (Entra replication; zero: at once).
    pub principal_propagation: Duration,
    /// Per ARM type, the data-plane URL a PUT fills in (Cosmos DB `documentEndpoint`, Azure
    /// Managed Grafana `endpoint`, a storage account's `primaryEndpoints.blob`), so a test can point it at an emulator or fake; types not
    /// named get a made-up cloud URL.
    pub endpoints: HashMap<String, String>,
}

impl Default for FakeArmConfig {
    fn default() -> Self {
        FakeArmConfig {
            subscription_id: "00000000-0000-0000-0000-0000000000aa".into(),
            tenant_id: "00000000-0000-0000-0000-0000000000tt".into(),
            polls: 2,
            retry_after_secs: 0,
            unregistered: Vec::new(),
            provisioning: HashMap::new(),
            principal_propagation: Duration::ZERO,
            endpoints: HashMap::new(),
        }
    }
}

impl FakeArmConfig {
    /// The provisioning time configured for an ARM type, if any.
    fn provisioning_of(&self, ty: &str) -> Option<Duration> {
        self.provisioning
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(ty))
            .map(|(_, d)| *d)
    }

    /// The endpoint configured for an ARM type, if any.
    fn endpoint_of(&self, ty: &str) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(ty))
            .map(|(_, u)| u.as_str())
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
    /// For a type with a provisioning time: when the operation is done.
    ready_at: Option<Instant>,
    completion: Option<Completion>,
    result: Option<Value>,
}

impl Operation {
    fn pending(&self, now: Instant) -> bool {
        self.remaining > 0 || self.ready_at.is_some_and(|t| now < t)
    }
}

/// A seeded "fail N % of calls" injector (xorshift; reproducible for a seed).
#[derive(Debug, Default)]
struct RandomFaults {
    percent: u32,
    state: u64,
    injected: u32,
}

impl RandomFaults {
    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    /// The fault for this request, if it is one of the unlucky ones.
    fn draw(&mut self, mutating: bool) -> Option<Fault> {
        if self.percent == 0 || self.next() % 100 >= u64::from(self.percent) {
            return None;
        }
        self.injected += 1;
        Some(match self.next() % 4 {
            0 => Fault::Throttle {
                retry_after_secs: 0,
            },
            1 => Fault::Busy,
            2 if mutating => Fault::DropAfterApply,
            _ => Fault::ServerError,
        })
    }
}

#[derive(Debug, Default)]
struct State {
    resources: BTreeMap<String, Value>,
    operations: HashMap<u64, Operation>,
    next_op: u64,
    unregistered: HashSet<String>,
    registering: HashMap<String, u32>,
    faults: Vec<Injected>,
    random: RandomFaults,
    /// Principal ids of identities by when they were created (for propagation).
    principals: HashMap<String, Instant>,
    log: Vec<String>,
    /// What IoT Hubs report as `hostName` (a fake registry's `127.0.0.1:<port>`).
    iot_hub_host: Option<String>,
    /// What Azure Digital Twins instances report as `hostName` (a fake ADT's address).
    digital_twins_host: Option<String>,
    /// What Event Grid custom topics report as `endpoint` (a fake topic's URL).
    event_topic_endpoint: Option<String>,
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
        let (listener, addr) = fake_http::bind_loopback()?;
        let url = format!("http://{addr}");
        let state = Arc::new(Mutex::new(State {
            unregistered: config
                .unregistered
                .iter()
                .map(|n| n.to_ascii_lowercase())
                .collect(),
            ..State::default()
        }));
        let (s, c, u) = (state.clone(), config.clone(), url.clone());
        let task = fake_http::serve(listener, move |req| {
            let (s, c, u) = (s.clone(), c.clone(), u.clone());
            async move { handle(&s, &c, &u, req).await }
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

    /// Answers `percent` % of all later requests (0 stops it) with a random fault: 429, 409
    /// AnotherOperationInProgress, 500, or for a change a dropped connection after applying it.
    /// The same seed gives the same sequence of draws.
    pub fn fail_randomly(&self, percent: u32, seed: u64) {
        lock(&self.state).random = RandomFaults {
            percent: percent.min(100),
            // xorshift must not start at zero.
            state: seed | 1,
            injected: 0,
        };
    }

    /// How many random faults were answered since [`FakeArm::fail_randomly`].
    pub fn random_faults(&self) -> u32 {
        lock(&self.state).random.injected
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
        // ARM reads secrets and settings with POST (`.../list`, `.../listkeys`): reads too.
        self.log()
            .into_iter()
            .filter(|l| !l.starts_with("GET "))
            .filter(|l| {
                let lower = l.to_ascii_lowercase();
                !(lower.starts_with("post ")
                    && (lower.ends_with("/list") || lower.ends_with("/listkeys")))
            })
            .collect()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        lock(&self.state).log.clear();
    }

    /// Makes IoT Hubs created from now on report `host` as their `properties.hostName` (the
    /// address of a [`crate::fake_iot_hub::FakeIotHub`]); without it they report
    /// `<name>.azure-devices.net`.
    pub fn set_iot_hub_host(&self, host: &str) {
        lock(&self.state).iot_hub_host = Some(host.to_string());
    }

    /// Makes Azure Digital Twins instances created from now on report `host` as their
    /// `properties.hostName` (the address of a [`crate::fake_adt::FakeAdt`]); without it they
    /// report `<name>.api.weu.digitaltwins.azure.net`.
    pub fn set_digital_twins_host(&self, host: &str) {
        lock(&self.state).digital_twins_host = Some(host.to_string());
    }

    /// Makes Event Grid custom topics created from now on report `endpoint` as their
    /// `properties.endpoint` (the URL of a [`crate::fake_event_grid::FakeEventGrid`]); without
    /// it they report `https://<name>.<location>-1.eventgrid.azure.net/api/events`.
    pub fn set_event_topic_endpoint(&self, endpoint: &str) {
        lock(&self.state).event_topic_endpoint = Some(endpoint.to_string());
    }

    /// A view of the role assignments this fake holds, for a data-plane fake that answers
    /// 403 until its caller has a role (as the real data planes do).
    pub fn role_check(&self) -> RoleCheck {
        RoleCheck {
            state: self.state.clone(),
        }
    }

    /// Whether a resource provider is registered.
    pub fn is_registered(&self, namespace: &str) -> bool {
        !lock(&self.state)
            .unregistered
            .contains(&namespace.to_ascii_lowercase())
    }
}

/// Looks role assignments up in a running fake ARM (see [`FakeArm::role_check`]).
#[derive(Clone)]
pub struct RoleCheck {
    state: Arc<Mutex<State>>,
}

impl RoleCheck {
    /// Whether `principal_id` holds the built-in role `role_guid` on a resource of ARM type
    /// `scope_type` (case-insensitive), e.g. `Microsoft.DigitalTwins/digitalTwinsInstances`.
    pub fn has(&self, principal_id: &str, role_guid: &str, scope_type: &str) -> bool {
        let st = lock(&self.state);
        let marker = format!("/providers/{}/", scope_type.to_ascii_lowercase());
        st.resources.iter().any(|(k, r)| {
            k.contains("/providers/microsoft.authorization/roleassignments/")
                && k.contains(&marker)
                && r.pointer("/properties/principalId").and_then(Value::as_str)
                    == Some(principal_id)
                && r.pointer("/properties/roleDefinitionId")
                    .and_then(Value::as_str)
                    .is_some_and(|d| {
                        d.to_ascii_lowercase()
                            .ends_with(&role_guid.to_ascii_lowercase())
                    })
        })
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

type Answer = Result<Reply, Dropped>;

fn error(status: u16, code: &str, message: &str) -> Reply {
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
    let authorized = has_bearer(req.headers());
    let body = body_json(req.into_body()).await;
    let mut st = lock(state);
    st.log.push(format!("{method} {path}"));
    if !authorized {
        return Ok(error(401, "AuthenticationFailed", "no bearer token"));
    }
    settle_due(&mut st);
    let lower = path.to_ascii_lowercase();
    let fault = st
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && f.method == method && lower.contains(&f.path_contains))
        .map(|f| {
            f.times -= 1;
            f.fault
        });
    let fault = fault.or_else(|| st.random.draw(method != "GET"));
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
) -> Reply {
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
    if let Some(at) = extension_at(&l) {
        return extension(st, config, method, path, &segs, at, body);
    }
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
        // A child collection (`.../sqlDatabases`, `.../eventSubscriptions`): the stored
        // children one level below, as ARM lists them.
        ("GET", ["resourcegroups", _, "providers", _, _, _, _, ..]) => {
            let prefix = format!("/{}/", lower.join("/"));
            let items: Vec<Value> = st
                .resources
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
                .map(|(_, v)| v.clone())
                .collect();
            reply(200, &json!({"value": items}), &[])
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
    new_timed_op(st, config, completion, result, None)
}

/// An operation that ends after `config.polls` polls, or at `duration` after now when given.
fn new_timed_op(
    st: &mut State,
    config: &FakeArmConfig,
    completion: Completion,
    result: Option<Value>,
    duration: Option<Duration>,
) -> u64 {
    st.next_op += 1;
    let id = st.next_op;
    let (remaining, ready_at) = match duration {
        Some(d) => (0, Some(Instant::now() + d)),
        None => (config.polls, None),
    };
    st.operations.insert(
        id,
        Operation {
            remaining,
            ready_at,
            completion: Some(completion),
            result,
        },
    );
    id
}

/// A GET of a resource whose creation nobody polls any more (the client that asked is gone)
/// counts as a poll of that operation, so the resource still finishes provisioning, as it does
/// on Azure.
fn advance_by_read(st: &mut State, key: &str) {
    let now = Instant::now();
    let Some(id) = st
        .operations
        .iter()
        .find(|(_, op)| matches!(&op.completion, Some(Completion::Settle(k)) if k == key))
        .map(|(id, _)| *id)
    else {
        return;
    };
    let Some(op) = st.operations.get_mut(&id) else {
        return;
    };
    if op.pending(now) {
        op.remaining = op.remaining.saturating_sub(1);
    } else if let Some(c) = op.completion.take() {
        complete(st, c);
    }
}

/// Finishes the timed operations whose time has passed, whether or not anyone polls them (a
/// resource on Azure finishes provisioning even when the client that asked for it is gone).
fn settle_due(st: &mut State) {
    let now = Instant::now();
    let due: Vec<u64> = st
        .operations
        .iter()
        .filter(|(_, op)| op.ready_at.is_some() && !op.pending(now) && op.completion.is_some())
        .map(|(id, _)| *id)
        .collect();
    for id in due {
        if let Some(c) = st
            .operations
            .get_mut(&id)
            .and_then(|op| op.completion.take())
        {
            complete(st, c);
        }
    }
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

fn poll(st: &mut State, config: &FakeArmConfig, kind: &str, id: &str) -> Reply {
    let Ok(n) = id.parse::<u64>() else {
        return error(404, "NotFound", "no such operation");
    };
    let retry = [("retry-after", config.retry_after_secs.to_string())];
    let Some(op) = st.operations.get_mut(&n) else {
        return error(404, "NotFound", "no such operation");
    };
    if op.pending(Instant::now()) {
        op.remaining = op.remaining.saturating_sub(1);
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
) -> Reply {
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
) -> Reply {
    let key = path.to_ascii_lowercase();
    let group_key = format!("/{}", segs[..4].join("/")).to_ascii_lowercase();
    let is_storage = segs.len() == 8 && key.contains("/microsoft.storage/storageaccounts/");
    if method == "GET" {
        advance_by_read(st, &key);
    }
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
                // The direct parent (a Cosmos container needs its database, which needs its
                // account); singleton children named `default` (a storage account's
                // `blobServices/default`) exist implicitly with their own parent.
                let mut end = segs.len() - 2;
                // An extension resource (`<resource>/providers/<ns>/<type>/<name>`, e.g. a
                // site's `Microsoft.Resources/tags/default`) hangs off the resource before it.
                if end >= 10 && segs[end - 2].eq_ignore_ascii_case("providers") {
                    end -= 2;
                }
                while end > 8 && segs[end - 1].eq_ignore_ascii_case("default") {
                    end -= 2;
                }
                let parent = format!("/{}", segs[..end].join("/")).to_ascii_lowercase();
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
            if let Some(e) = unpropagated_principal(st, config, &ty, &body) {
                return e;
            }
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
            if let Some(refused) = fill_in_l1(st, &ty, name, existing.as_ref(), &mut stored) {
                return refused;
            }
            fill_web(&mut stored, &ty, name, existing.as_ref(), &st.web);
            fill_monitoring(&mut stored, &ty, name, existing.as_ref());
            if is_storage {
                // Every account on one emulator account when a test names one (Azurite serves
                // a single development account; container names tell the twin's apart).
                let blob = config
                    .endpoint_of("Microsoft.Storage/storageAccounts")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("https://{name}.blob.core.windows.net/"));
                stored["properties"]["primaryEndpoints"] = json!({ "blob": blob });
            }
            fill_in_generic(config, &ty, name, &mut stored);
            fill_in_l4(st, &ty, name, &mut stored);
            if existing.is_none() && ty.eq_ignore_ascii_case(IDENTITY_TYPE) {
                if let Some(p) = stored
                    .pointer("/properties/principalId")
                    .and_then(Value::as_str)
                {
                    st.principals.insert(p.to_string(), Instant::now());
                }
            }
            let timed = config.provisioning_of(&ty);
            let pending = config.polls > 0 || timed.is_some_and(|d| !d.is_zero());
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
                let op = new_timed_op(
                    st,
                    config,
                    Completion::Settle(key.clone()),
                    Some(json!(key)),
                    timed,
                );
                reply(
                    202,
                    &Value::Null,
                    &[("location", format!("{base}/fake/locations/{op}")), retry],
                )
            } else {
                let op = new_timed_op(st, config, Completion::Settle(key), None, timed);
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

/// The current key of a site by name: `None` for the host's master key, else the function's.
pub type SiteKeys = Arc<dyn Fn(&str, Option<&str>) -> String + Send + Sync>;

/// Where a site's functions are served, and with which keys (a fake functions host).
#[derive(Clone)]
pub struct FunctionHosting {
    /// The `defaultHostName` of a site by name, e.g. `127.0.0.1:port`.
    pub host: Arc<dyn Fn(&str) -> String + Send + Sync>,
    /// The current key of a site: `None` for the host's master key, else the function's
    /// default key.
    pub keys: SiteKeys,
}

#[derive(Default)]
struct WebState {
    scm_hosts: Option<ScmHosts>,
    functions: Option<FunctionHosting>,
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

    /// Sites created from now on name `hosting.host(site)` as their `defaultHostName` (a fake
    /// functions host), and `listkeys` on them answers `hosting.keys`.
    pub fn serve_functions_with(&self, hosting: FunctionHosting) {
        lock(&self.state).web.functions = Some(hosting);
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
                let host = st
                    .resources
                    .get(&site_key)
                    .and_then(|s| s.pointer("/properties/defaultHostName"))
                    .and_then(Value::as_str)
                    .map(str::to_string);
                for f in functions {
                    let id = format!("{site_id}/functions/{f}");
                    let mut properties =
                        json!({"name": f, "language": "custom", "isDisabled": false});
                    // As ARM reports it: the function's URL on the app's host, without a key.
                    if let Some(host) = &host {
                        properties["invoke_url_template"] =
                            json!(format!("https://{host}/api/{f}"));
                    }
                    st.resources.insert(
                        id.to_ascii_lowercase(),
                        json!({"id": id, "name": format!("{site}/{f}"),
                            "type": "Microsoft.Web/sites/functions",
                            "properties": properties}),
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
    let default_host = prev("defaultHostName")
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| match &web.functions {
            Some(f) => (f.host)(name),
            None => format!("{name}.azurewebsites.net"),
        });
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
) -> Option<Reply> {
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
        "POST" if l.len() == 11 && l[10] == "listkeys" => Some(list_keys(st, &site_key, segs, l)),
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

/// `POST .../sites/<app>/functions/<fn>/listkeys` (a StringDictionary: `properties.default`)
/// and `POST .../sites/<app>/host/default/listkeys` (HostKeys: `masterKey`, `functionKeys`,
/// `systemKeys`), with the keys of the fake functions host when there is one.
fn list_keys(st: &State, site_key: &str, segs: &[&str], l: &[&str]) -> Reply {
    if !st.resources.contains_key(site_key) {
        return error(404, "ResourceNotFound", "the site was not found");
    }
    let site = segs[7];
    let key = |function: Option<&str>| match &st.web.functions {
        Some(f) => (f.keys)(site, function),
        None => format!("key-{site}-{}", function.unwrap_or("master")),
    };
    match (l[8], l[9]) {
        ("functions", f) => {
            if !st
                .resources
                .contains_key(&format!("{site_key}/functions/{f}"))
            {
                return error(404, "NotFound", "the app lists no such function");
            }
            let function = segs[9];
            reply(
                200,
                &json!({"id": format!("/{}", segs[..10].join("/")), "name": function,
                    "properties": {"default": key(Some(function))}}),
                &[],
            )
        }
        ("host", "default") => reply(
            200,
            &json!({"masterKey": key(None), "functionKeys": {"default": key(Some("_host"))},
                "systemKeys": {}}),
            &[],
        ),
        _ => error(404, "NotFound", "unknown listkeys path"),
    }
}

/// What ARM fills in for L1's types (IoT Hubs, Event Grid system topics and their
/// subscriptions), or the refusal of a PUT the real service refuses.
fn fill_in_l1(
    st: &State,
    ty: &str,
    name: &str,
    existing: Option<&Value>,
    stored: &mut Value,
) -> Option<Reply> {
    if ty.eq_ignore_ascii_case("Microsoft.Devices/IotHubs") {
        let host = st
            .iot_hub_host
            .clone()
            .unwrap_or_else(|| format!("{name}.azure-devices.net"));
        let location = stored.get("location").cloned().unwrap_or(Value::Null);
        let p = &mut stored["properties"];
        p["hostName"] = json!(host);
        p["state"] = json!("Active");
        p["locations"] = json!([{"location": location, "role": "primary"}]);
        stored["sku"]["tier"] = json!("Standard");
        // IoT Hub's ETag guards updates: a PUT on an existing hub must carry the current one
        // (the real one reads the If-Match header; this fake, which sees no headers, the body's
        // `etag`, which the driver sends as well).
        if let Some(prev) = existing {
            let sent = stored.get("etag").and_then(Value::as_str);
            if sent != prev.get("etag").and_then(Value::as_str) {
                return Some(error(
                    412,
                    "PreconditionFailed",
                    "the IoT Hub's etag does not match: GET it and PUT with its etag",
                ));
            }
        }
        let n = existing
            .and_then(|e| e.get("etag"))
            .and_then(Value::as_str)
            .map(|e| e.len() as u64)
            .unwrap_or(0);
        stored["etag"] = json!(format!("AAAAAAFD6M{}=", n + 1));
    }
    if ty.eq_ignore_ascii_case("Microsoft.EventGrid/topics") {
        // A custom topic: ARM fills in its publishing endpoint (kept across updates).
        let location = stored
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or("westeurope")
            .to_string();
        let endpoint = existing
            .and_then(|e| e.pointer("/properties/endpoint").cloned())
            .unwrap_or_else(|| {
                json!(st.event_topic_endpoint.clone().unwrap_or_else(|| format!(
                    "https://{name}.{location}-1.eventgrid.azure.net/api/events"
                )))
            });
        stored["properties"]["endpoint"] = endpoint;
    }
    if ty.eq_ignore_ascii_case("Microsoft.EventGrid/systemTopics") {
        let source = stored.pointer("/properties/source").and_then(Value::as_str);
        let known = source.is_some_and(|s| st.resources.contains_key(&s.to_ascii_lowercase()));
        if !known {
            return Some(error(
                400,
                "InvalidRequest",
                "the system topic's source resource does not exist",
            ));
        }
        stored["properties"]["metricResourceId"] = json!("00000000-0000-0000-0000-00000000fa4e");
    }
    if ty.eq_ignore_ascii_case("Microsoft.EventGrid/systemTopics/eventSubscriptions") {
        let dest = stored
            .pointer("/properties/destination/properties/resourceId")
            .and_then(Value::as_str);
        let endpoint = stored
            .pointer("/properties/destination/endpointType")
            .and_then(Value::as_str);
        // Event Grid checks that an AzureFunction destination exists before it subscribes.
        if endpoint == Some("AzureFunction")
            && !dest.is_some_and(|d| st.resources.contains_key(&d.to_ascii_lowercase()))
        {
            return Some(error(
                400,
                "InvalidRequest",
                "the destination function does not exist",
            ));
        }
        let id = stored.get("id").and_then(Value::as_str).unwrap_or_default();
        let topic = id.split("/eventSubscriptions/").next().unwrap_or_default();
        stored["properties"]["topic"] = json!(topic);
    }
    None
}

/// ARM type of a user-assigned identity (its PUT fills in a principal id).
const IDENTITY_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

/// What the cloud fills in by itself for types whose data-plane endpoint a driver reads
/// (kept apart from the per-type blocks in `resource` so additions merge easily).
fn fill_in_generic(config: &FakeArmConfig, ty: &str, name: &str, stored: &mut Value) {
    if ty.eq_ignore_ascii_case("Microsoft.DocumentDB/databaseAccounts") {
        let url = config
            .endpoint_of(ty)
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://{name}.documents.azure.com:443/"));
        stored["properties"]["documentEndpoint"] = json!(url);
    }
    if ty.eq_ignore_ascii_case("Microsoft.Dashboard/grafana") {
        let url = config
            .endpoint_of(ty)
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://{name}-a1b2c3d4.weu.grafana.azure.com"));
        stored["properties"]["endpoint"] = json!(url);
    }
}

/// What ARM fills in for an Azure Digital Twins instance: its data-plane `hostName` and the
/// default network access.
fn fill_in_l4(st: &State, ty: &str, name: &str, stored: &mut Value) {
    if ty.eq_ignore_ascii_case("Microsoft.DigitalTwins/digitalTwinsInstances") {
        let host = st
            .digital_twins_host
            .clone()
            .unwrap_or_else(|| format!("{name}.api.weu.digitaltwins.azure.net"));
        let p = &mut stored["properties"];
        p["hostName"] = json!(host);
        if p.get("publicNetworkAccess").is_none() {
            p["publicNetworkAccess"] = json!("Enabled");
        }
    }
}

/// Whether an ARM type is a role assignment (ARM's or Cosmos DB's data-plane one).
fn is_role_assignment(ty: &str) -> bool {
    let t = ty.to_ascii_lowercase();
    t.ends_with("/roleassignments") || t.ends_with("/sqlroleassignments")
}

/// 400 `PrincipalNotFound` for a role assignment whose principal is an identity created less
/// than `principal_propagation` ago, as Entra answers until the principal has replicated.
fn unpropagated_principal(
    st: &State,
    config: &FakeArmConfig,
    ty: &str,
    body: &Value,
) -> Option<Reply> {
    if !is_role_assignment(ty) {
        return None;
    }
    let principal = body
        .pointer("/properties/principalId")
        .and_then(Value::as_str)?;
    let created = st.principals.get(principal)?;
    if created.elapsed() >= config.principal_propagation {
        return None;
    }
    Some(error(
        400,
        "PrincipalNotFound",
        &format!("Principal {principal} does not exist in the directory (not replicated yet)."),
    ))
}

/// Where an extension resource starts in a lowercased path: the index of a `providers`
/// segment after the scope's own, followed by `microsoft.authorization/roleassignments/<n>`.
fn extension_at(l: &[&str]) -> Option<usize> {
    (2..l.len()).find(|&i| {
        l[i] == "providers"
            && l.len() == i + 4
            && l[i + 1] == "microsoft.authorization"
            && l[i + 2] == "roleassignments"
    })
}

/// GET / PUT / DELETE of `<scope>/providers/Microsoft.Authorization/roleAssignments/<name>`:
/// synchronous as on ARM, removed with its scope (stored under the scope's id), immutable.
fn extension(
    st: &mut State,
    config: &FakeArmConfig,
    method: &str,
    path: &str,
    segs: &[&str],
    at: usize,
    body: Value,
) -> Reply {
    let key = path.to_ascii_lowercase();
    let scope = format!("/{}", segs[..at].join("/")).to_ascii_lowercase();
    // The subscription itself is always there; a group or resource scope must exist.
    let scope_exists = at <= 2 || st.resources.contains_key(&scope);
    match method {
        "GET" => match st.resources.get(&key) {
            Some(r) if scope_exists => reply(200, r, &[]),
            _ => error(
                404,
                "RoleAssignmentNotFound",
                "The role assignment does not exist.",
            ),
        },
        "PUT" => {
            if !scope_exists {
                return error(404, "ResourceNotFound", "the scope resource was not found");
            }
            let ty = "Microsoft.Authorization/roleAssignments";
            if let Some(e) = unpropagated_principal(st, config, ty, &body) {
                return e;
            }
            let props = body.get("properties").cloned().unwrap_or(json!({}));
            let want = |k: &str| props.get(k).and_then(Value::as_str).unwrap_or_default();
            if let Some(existing) = st.resources.get(&key) {
                let have = |k: &str| {
                    existing
                        .pointer(&format!("/properties/{k}"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                };
                if !have("roleDefinitionId").eq_ignore_ascii_case(want("roleDefinitionId"))
                    || have("principalId") != want("principalId")
                {
                    return error(
                        409,
                        "RoleAssignmentUpdateNotPermitted",
                        "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                    );
                }
                return reply(200, existing, &[]);
            }
            let duplicate = st.resources.iter().any(|(k, r)| {
                k.starts_with(&format!(
                    "{scope}/providers/microsoft.authorization/roleassignments/"
                )) && r.pointer("/properties/principalId").and_then(Value::as_str)
                    == Some(want("principalId"))
                    && r.pointer("/properties/roleDefinitionId")
                        .and_then(Value::as_str)
                        .is_some_and(|d| d.eq_ignore_ascii_case(want("roleDefinitionId")))
            });
            if duplicate {
                return error(
                    409,
                    "RoleAssignmentExists",
                    "The role assignment already exists.",
                );
            }
            let mut props = props;
            props["scope"] = json!(format!("/{}", segs[..at].join("/")));
            let stored = json!({"id": path, "name": segs[segs.len() - 1], "type": ty,
                "properties": props});
            st.resources.insert(key, stored.clone());
            reply(201, &stored, &[])
        }
        "DELETE" => match st.resources.remove(&key) {
            Some(r) => reply(200, &r, &[]),
            None => reply(204, &Value::Null, &[]),
        },
        _ => error(405, "MethodNotAllowed", "not supported by the fake"),
    }
}

/// The ARM type of a resource id: `Microsoft.Resources/resourceGroups` for a group, else the
/// namespace after the last `providers` and every type segment after it
/// (`Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers`).
pub fn arm_type_of(id: &str) -> String {
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    let Some(at) = segs
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))
    else {
        return if segs.len() == 4 {
            "Microsoft.Resources/resourceGroups".to_string()
        } else {
            "Microsoft.Resources/subscriptions".to_string()
        };
    };
    let mut parts = vec![segs.get(at + 1).copied().unwrap_or_default()];
    parts.extend(segs.iter().skip(at + 2).step_by(2));
    parts.join("/")
}

/// One resource of a deploy, for [`longest_chain`]: its key, ARM type and what it waits for.
#[derive(Debug, Clone)]
pub struct ChainNode {
    /// Key of the resource (e.g. the engine's spec id).
    pub key: String,
    /// ARM type (see [`arm_type_of`]).
    pub arm_type: String,
    /// Keys of the resources it depends on.
    pub depends_on: Vec<String>,
}

/// The longest dependency chain of a deploy against a fake with `config`'s provisioning times:
/// each resource takes its type's time after the last of its dependencies is done, and a role
/// assignment cannot start before its identity's principal has propagated. Returns the chain's
/// length and its keys, first to last (resources with unknown dependencies start at zero).
pub fn longest_chain(nodes: &[ChainNode], config: &FakeArmConfig) -> (Duration, Vec<String>) {
    let by_key: HashMap<&str, &ChainNode> = nodes.iter().map(|n| (n.key.as_str(), n)).collect();
    let mut done: HashMap<String, (Duration, Vec<String>)> = HashMap::new();
    fn finish(
        key: &str,
        by_key: &HashMap<&str, &ChainNode>,
        config: &FakeArmConfig,
        done: &mut HashMap<String, (Duration, Vec<String>)>,
        visiting: &mut HashSet<String>,
    ) -> (Duration, Vec<String>) {
        if let Some(d) = done.get(key) {
            return d.clone();
        }
        let Some(node) = by_key.get(key) else {
            return (Duration::ZERO, Vec::new());
        };
        // A cycle cannot be deployed; it adds nothing rather than recursing forever.
        if !visiting.insert(key.to_string()) {
            return (Duration::ZERO, Vec::new());
        }
        let role = is_role_assignment(&node.arm_type);
        let mut start = (Duration::ZERO, Vec::new());
        for dep in &node.depends_on {
            let (mut t, path) = finish(dep, by_key, config, done, visiting);
            let is_identity = by_key
                .get(dep.as_str())
                .is_some_and(|d| d.arm_type.eq_ignore_ascii_case(IDENTITY_TYPE));
            if role && is_identity {
                t += config.principal_propagation;
            }
            if t >= start.0 {
                start = (t, path);
            }
        }
        visiting.remove(key);
        let own = config.provisioning_of(&node.arm_type).unwrap_or_default();
        let mut path = start.1;
        path.push(key.to_string());
        let result = (start.0 + own, path);
        done.insert(key.to_string(), result.clone());
        result
    }
    let mut best = (Duration::ZERO, Vec::new());
    let mut visiting = HashSet::new();
    for n in nodes {
        let r = finish(&n.key, &by_key, config, &mut done, &mut visiting);
        // On a tie the chain with more steps is the one to show (it ends at a leaf).
        if r.0 > best.0 || (r.0 == best.0 && r.1.len() > best.1.len()) {
            best = r;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arm_types_of_ids() {
        let g = "/subscriptions/s/resourceGroups/rg";
        assert_eq!(arm_type_of(g), "Microsoft.Resources/resourceGroups");
        assert_eq!(
            arm_type_of(&format!(
                "{g}/providers/Microsoft.DocumentDB/databaseAccounts/a/sqlDatabases/d/containers/c"
            )),
            "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers"
        );
        assert_eq!(
            arm_type_of(&format!(
                "{g}/providers/Microsoft.Storage/storageAccounts/a/providers/Microsoft.Authorization/roleAssignments/u"
            )),
            "Microsoft.Authorization/roleAssignments"
        );
    }

    fn node(key: &str, ty: &str, deps: &[&str]) -> ChainNode {
        ChainNode {
            key: key.into(),
            arm_type: ty.into(),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn longest_chain_adds_times_and_propagation() {
        let config = FakeArmConfig {
            provisioning: HashMap::from([
                (
                    "Microsoft.DocumentDB/databaseAccounts".to_string(),
                    Duration::from_secs(4),
                ),
                (
                    "Microsoft.Devices/IotHubs".to_string(),
                    Duration::from_secs(2),
                ),
            ]),
            principal_propagation: Duration::from_secs(1),
            ..FakeArmConfig::default()
        };
        let nodes = vec![
            node("rg", "Microsoft.Resources/resourceGroups", &[]),
            node("id", IDENTITY_TYPE, &["rg"]),
            node("hub", "Microsoft.Devices/IotHubs", &["rg"]),
            node(
                "hub-role",
                "Microsoft.Authorization/roleAssignments",
                &["hub", "id"],
            ),
            node("cosmos", "Microsoft.DocumentDB/databaseAccounts", &["rg"]),
            node(
                "data-role",
                "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
                &["cosmos", "id"],
            ),
        ];
        let (len, path) = longest_chain(&nodes, &config);
        assert_eq!(len, Duration::from_secs(4));
        assert_eq!(path, ["rg", "cosmos", "data-role"]);
        // With slow propagation the identity's branch is the longest.
        let slow = FakeArmConfig {
            principal_propagation: Duration::from_secs(5),
            ..config
        };
        let (len, path) = longest_chain(&nodes, &slow);
        assert_eq!(len, Duration::from_secs(5));
        assert_eq!(path.last().map(String::as_str), Some("hub-role"));
    }
}
