//! A stateful fake of an Azure Digital Twins instance's data plane (API 2023-10-31) for tests:
//! no emulator exists (EMULATORS.md). It keeps what the real service enforces and a deployer
//! can get wrong:
//!
//! - models are immutable: uploading a DTMI it holds answers 409 `ModelAlreadyExists` (the
//!   whole call is refused); more than 250 models in one call answer 400; a model whose
//!   dependency (`extends`, a component's schema, a relationship's target) is neither held nor
//!   in the same call answers 400; deleting a model that a twin or another model uses
//!   answers 409;
//! - a twin must name a held model and may set only properties its model (with what it
//!   extends) declares; a JSON Patch (`add`, `replace`, `remove`, content type
//!   `application/json-patch+json`) is checked the same way, `replace /$metadata/$model`
//!   included; deleting a twin that has relationships (either way) answers 409;
//! - a relationship needs both twins and a relationship of that name in the source's model;
//! - every request needs a bearer token (401), and, when started with a [`RoleCheck`],
//!   answers 403 until the token's principal (`oid`) holds Azure Digital Twins Data Owner on
//!   an instance in the fake ARM;
//! - injected faults ([`FakeAdt::inject`]): 429 with `Retry-After`, 503, or a connection
//!   dropped after the request was applied;
//! - lists (`GET /models`) and queries (`POST /query`: `SELECT * FROM digitaltwins`, with an
//!   optional `WHERE STARTSWITH($metadata.$model, '<prefix>')`, and `SELECT * FROM
//!   relationships`) come in pages of [`FakeAdt::PAGE`].

use crate::fake_arm::{Dropped, RoleCheck};
use crate::fake_http::{self, body_json, has_bearer, reply, Reply};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Role definition GUID of Azure Digital Twins Data Owner.
pub const DATA_OWNER: &str = "bcd981a7-7f74-457b-83e1-cceb9e632ffe";

/// ARM type the data role must be assigned on.
const INSTANCE_TYPE: &str = "Microsoft.DigitalTwins/digitalTwinsInstances";

/// Most models one upload call may hold.
const MAX_MODELS: usize = 250;

/// A fault the fake answers instead of (or, for a drop, after) handling a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdtFault {
    /// 429 `TooManyRequests` with `Retry-After: 0`.
    Throttle,
    /// 503 `ServiceUnavailable`.
    Unavailable,
    /// The request is applied, then the connection is closed without an answer.
    DropAfterApply,
}

#[derive(Debug)]
struct Injected {
    method: String,
    path_contains: String,
    fault: AdtFault,
    times: u32,
}

#[derive(Debug, Default)]
struct State {
    faults: Vec<Injected>,
    /// Models by DTMI: their definitions.
    models: BTreeMap<String, Value>,
    /// Twins by id.
    twins: BTreeMap<String, Value>,
    /// Relationships by (source, id).
    relationships: BTreeMap<(String, String), Value>,
    /// Largest number of models one accepted upload held.
    largest_upload: usize,
    forbidden_answers: u32,
    /// Requests still to answer 403 whatever the roles (a role that is still propagating).
    forbid_next: u32,
    next_etag: u64,
    log: Vec<String>,
}

/// A running fake instance data plane on 127.0.0.1.
pub struct FakeAdt {
    /// `127.0.0.1:<port>`: what the fake ARM reports as the instance's `hostName`.
    pub host: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAdt {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeAdt {
    /// Items per page of a list or a query.
    pub const PAGE: usize = 50;

    /// Starts a fake on a free port (inside the current tokio runtime); with `roles`, callers
    /// get 403 until they hold Azure Digital Twins Data Owner in that fake ARM.
    pub async fn start(roles: Option<RoleCheck>) -> std::io::Result<FakeAdt> {
        let (listener, host) = fake_http::bind_loopback()?;
        let state = Arc::new(Mutex::new(State::default()));
        let (s, h) = (state.clone(), host.clone());
        let roles = roles.map(Arc::new);
        let task = fake_http::serve(listener, move |req| {
            let (s, h, r) = (s.clone(), h.clone(), roles.clone());
            async move {
                let (answer, drop) = handle(&s, &h, r.as_deref(), req).await;
                if drop {
                    Err(Dropped)
                } else {
                    Ok(answer)
                }
            }
        });
        Ok(FakeAdt { host, state, task })
    }

    /// The DTMIs of the held models.
    pub fn model_ids(&self) -> Vec<String> {
        lock(&self.state).models.keys().cloned().collect()
    }

    /// A held model's definition.
    pub fn model(&self, id: &str) -> Option<Value> {
        lock(&self.state).models.get(id).cloned()
    }

    /// The ids of the twins.
    pub fn twin_ids(&self) -> Vec<String> {
        lock(&self.state).twins.keys().cloned().collect()
    }

    /// A twin as the service returns it.
    pub fn twin(&self, id: &str) -> Option<Value> {
        lock(&self.state).twins.get(id).cloned()
    }

    /// Every relationship as `(source, relationship id, target, name)`, sorted.
    pub fn relationships(&self) -> Vec<(String, String, String, String)> {
        lock(&self.state)
            .relationships
            .iter()
            .map(|((s, id), r)| {
                let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (
                    s.clone(),
                    id.clone(),
                    f("$targetId"),
                    f("$relationshipName"),
                )
            })
            .collect()
    }

    /// The largest number of models one accepted upload held.
    pub fn largest_upload(&self) -> usize {
        lock(&self.state).largest_upload
    }

    /// Answers the next `times` requests of `method` whose (decoded) path contains
    /// `path_contains` with `fault`.
    pub fn inject(&self, method: &str, path_contains: &str, fault: AdtFault, times: u32) {
        lock(&self.state).faults.push(Injected {
            method: method.to_ascii_uppercase(),
            path_contains: path_contains.to_string(),
            fault,
            times,
        });
    }

    /// Faults injected but not yet answered.
    pub fn faults_left(&self) -> u32 {
        lock(&self.state).faults.iter().map(|f| f.times).sum()
    }

    /// Answers the next `n` requests 403, as the service does for minutes after a role
    /// assignment while it propagates.
    pub fn forbid_next(&self, n: u32) {
        lock(&self.state).forbid_next = n;
    }

    /// How many requests were answered 403 for want of the data role.
    pub fn forbidden_answers(&self) -> u32 {
        lock(&self.state).forbidden_answers
    }

    /// Stores a model as if it had been uploaded (test setup), unchecked.
    pub fn insert_model(&self, definition: Value) {
        let id = definition["@id"].as_str().unwrap_or_default().to_string();
        lock(&self.state).models.insert(id, definition);
    }

    /// Stores a twin as if it had been created (test setup), unchecked.
    pub fn insert_twin(&self, id: &str, mut twin: Value) {
        twin["$dtId"] = json!(id);
        lock(&self.state).twins.insert(id.to_string(), twin);
    }

    /// Changes a twin behind the deployer's back (JSON Pointer into the stored twin).
    pub fn set_twin(&self, id: &str, pointer: &str, value: Value) -> bool {
        let mut st = lock(&self.state);
        match st.twins.get_mut(id).and_then(|t| t.pointer_mut(pointer)) {
            Some(v) => {
                *v = value;
                true
            }
            None => false,
        }
    }

    /// Every request answered so far, as `METHOD path` (path percent-decoded).
    pub fn log(&self) -> Vec<String> {
        lock(&self.state).log.clone()
    }

    /// The requests so far that change something: every one but GETs and queries.
    pub fn mutating_calls(&self) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|l| !l.starts_with("GET ") && l != "POST /query")
            .collect()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        lock(&self.state).log.clear();
    }
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        &json!({"error": {"code": code, "message": message}}),
        &[],
    )
}

/// `%XX` sequences decoded (invalid ones kept as they are).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `oid` claim of a bearer token, if it is a JWT that names one.
fn token_oid(auth: Option<&str>) -> Option<String> {
    use base64::Engine;
    let token = auth?.strip_prefix("Bearer ")?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("oid")?.as_str().map(str::to_string)
}

/// The DTMIs a model definition depends on (itself excluded).
fn dependencies(model: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    match model.get("extends") {
        Some(Value::String(s)) => {
            out.insert(s.clone());
        }
        Some(Value::Array(a)) => out.extend(a.iter().filter_map(Value::as_str).map(str::to_string)),
        _ => {}
    }
    for c in model["contents"].as_array().into_iter().flatten() {
        let key = match c["@type"].as_str() {
            Some("Component") => "schema",
            Some("Relationship") => "target",
            _ => continue,
        };
        if let Some(d) = c[key].as_str() {
            out.insert(d.to_string());
        }
    }
    if let Some(me) = model["@id"].as_str() {
        out.remove(me);
    }
    out
}

/// The contents of `@type` `kind` a model and what it extends declare, by name.
fn declared(models: &BTreeMap<String, Value>, model: &str, kind: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![model.to_string()];
    let mut seen = BTreeSet::new();
    while let Some(m) = todo.pop() {
        if !seen.insert(m.clone()) {
            continue;
        }
        let Some(def) = models.get(&m) else { continue };
        for c in def["contents"].as_array().into_iter().flatten() {
            if c["@type"].as_str() == Some(kind) {
                if let Some(n) = c["name"].as_str() {
                    out.insert(n.to_string());
                }
            }
        }
        todo.extend(dependencies(def).into_iter().filter(|d| {
            def.get("extends").is_some_and(|e| {
                e.as_str() == Some(d)
                    || e.as_array()
                        .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(d)))
            })
        }));
    }
    out
}

/// Why a twin's body does not fit its model, if it does not.
fn twin_problem(models: &BTreeMap<String, Value>, twin: &Value) -> Option<String> {
    let Some(model) = twin.pointer("/$metadata/$model").and_then(Value::as_str) else {
        return Some("the twin names no $metadata.$model".into());
    };
    if !models.contains_key(model) {
        return Some(format!("model {model} is not uploaded"));
    }
    let props = declared(models, model, "Property");
    let extra: Vec<&String> = twin
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| !k.starts_with('$') && !props.contains(*k))
        .collect();
    (!extra.is_empty()).then(|| format!("model {model} declares no property {extra:?}"))
}

fn page_of(items: Vec<Value>, start: usize) -> (Vec<Value>, Option<usize>) {
    let end = (start + FakeAdt::PAGE).min(items.len());
    let next = (end < items.len()).then_some(end);
    (
        items
            .get(start..end)
            .map(<[Value]>::to_vec)
            .unwrap_or_default(),
        next,
    )
}

/// The answer to a request, and whether to drop the connection instead of sending it.
async fn handle(
    state: &Mutex<State>,
    host: &str,
    roles: Option<&RoleCheck>,
    req: Request<Incoming>,
) -> (Reply, bool) {
    let method = req.method().as_str().to_string();
    let raw_path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let authorized = has_bearer(req.headers());
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = body_json(req.into_body()).await;
    let segs: Vec<String> = raw_path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let mut st = lock(state);
    st.log.push(format!("{method} /{}", segs.join("/")));
    let path = format!("/{}", segs.join("/"));
    let fault = st
        .faults
        .iter_mut()
        .find(|f| f.times > 0 && f.method == method && path.contains(&f.path_contains))
        .map(|f| {
            f.times -= 1;
            f.fault
        });
    match fault {
        Some(AdtFault::Throttle) => {
            let mut r = error(429, "TooManyRequests", "slow down (injected)");
            r.headers_mut()
                .insert("retry-after", hyper::header::HeaderValue::from_static("0"));
            return (r, false);
        }
        Some(AdtFault::Unavailable) => {
            return (error(503, "ServiceUnavailable", "injected failure"), false)
        }
        Some(AdtFault::DropAfterApply) | None => {}
    }
    let request = RequestParts {
        method: &method,
        query: &query,
        authorized,
        auth: auth.as_deref(),
        content_type: &content_type,
        segs: &segs,
    };
    let answer = route(&mut st, host, roles, &request, body);
    (answer, fault == Some(AdtFault::DropAfterApply))
}

/// The parts of a request [`route`] reads.
struct RequestParts<'a> {
    method: &'a str,
    query: &'a str,
    authorized: bool,
    auth: Option<&'a str>,
    content_type: &'a str,
    segs: &'a [String],
}

/// What the instance answers to one request.
fn route(
    st: &mut State,
    host: &str,
    roles: Option<&RoleCheck>,
    request: &RequestParts<'_>,
    body: Value,
) -> Reply {
    let RequestParts {
        method,
        query,
        authorized,
        auth,
        content_type,
        segs,
    } = *request;
    if !authorized {
        return error(401, "Unauthorized", "no bearer token");
    }
    if st.forbid_next > 0 {
        st.forbid_next -= 1;
        st.forbidden_answers += 1;
        return error(
            403,
            "Forbidden",
            "the caller's role assignment has not propagated yet (injected)",
        );
    }
    if let Some(r) = roles {
        let oid = token_oid(auth).unwrap_or_default();
        if !r.has(&oid, DATA_OWNER, INSTANCE_TYPE) {
            st.forbidden_answers += 1;
            return error(
                403,
                "Forbidden",
                &format!("principal {oid} is not authorized on this instance"),
            );
        }
    }
    if !query.contains("api-version=2023-10-31") {
        return error(
            400,
            "InvalidApiVersion",
            "api-version 2023-10-31 is required",
        );
    }
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method, s.as_slice()) {
        ("GET", ["models"]) => {
            let start = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("continuationToken="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let with_def = query.contains("includeModelDefinition=true");
            let items: Vec<Value> = st
                .models
                .iter()
                .map(|(id, m)| {
                    let mut v = json!({"id": id, "decommissioned": false,
                        "uploadTime": "2026-01-01T00:00:00.0000000Z"});
                    if with_def {
                        v["model"] = m.clone();
                    }
                    v
                })
                .collect();
            let (page, next) = page_of(items, start);
            let mut out = json!({"value": page});
            if let Some(n) = next {
                out["nextLink"] = json!(format!(
                    "http://{host}/models?api-version=2023-10-31&includeModelDefinition={with_def}&continuationToken={n}"
                ));
            }
            reply(200, &out, &[])
        }
        ("POST", ["models"]) => {
            let Some(models) = body.as_array() else {
                return error(
                    400,
                    "InvalidArgument",
                    "the body must be an array of models",
                );
            };
            if models.len() > MAX_MODELS {
                return error(
                    400,
                    "InvalidArgument",
                    &format!("{} models in one call; at most {MAX_MODELS}", models.len()),
                );
            }
            let mut batch = BTreeSet::new();
            for m in models {
                let Some(id) = m["@id"].as_str() else {
                    return error(400, "DTDLParserError", "a model has no @id");
                };
                if st.models.contains_key(id) {
                    return error(
                        409,
                        "ModelAlreadyExists",
                        &format!("model {id} already exists; models are immutable"),
                    );
                }
                if !batch.insert(id.to_string()) {
                    return error(
                        400,
                        "DTDLParserError",
                        &format!("model {id} is given twice"),
                    );
                }
            }
            for m in models {
                for d in dependencies(m) {
                    if !st.models.contains_key(&d) && !batch.contains(&d) {
                        return error(400, "DTDLParserError", &format!(
                            "model {} references {d}, which is neither uploaded nor in this call", m["@id"]));
                    }
                }
            }
            let mut out = Vec::new();
            for m in models {
                let id = m["@id"].as_str().unwrap_or_default().to_string();
                out.push(json!({"id": id, "decommissioned": false, "uploadTime": "2026-01-01T00:00:00.0000000Z"}));
                st.models.insert(id, m.clone());
            }
            st.largest_upload = st.largest_upload.max(models.len());
            reply(201, &Value::Array(out), &[])
        }
        ("DELETE", ["models", id]) => {
            let id = id.to_string();
            if !st.models.contains_key(&id) {
                return error(404, "ModelNotFound", &format!("there is no model {id}"));
            }
            let used_by_twin = st.twins.values().any(|t| {
                t.pointer("/$metadata/$model").and_then(Value::as_str) == Some(id.as_str())
            });
            let used_by_model = st
                .models
                .iter()
                .any(|(other, m)| *other != id && dependencies(m).contains(&id));
            if used_by_twin || used_by_model {
                return error(
                    409,
                    "ModelReferencesNotDeleted",
                    &format!("model {id} is still used by a twin or another model"),
                );
            }
            st.models.remove(&id);
            reply(204, &Value::Null, &[])
        }
        ("POST", ["query"]) => {
            // A continuation carries the query in its token: `<start>|<query>`.
            let (start, q) = match (body["continuationToken"].as_str(), body["query"].as_str()) {
                (Some(t), _) => match t.split_once('|') {
                    Some((n, q)) => (n.parse().unwrap_or(0), q.to_string()),
                    None => return error(400, "BadRequest", "unknown continuation token"),
                },
                (None, Some(q)) => (0, q.to_string()),
                (None, None) => return error(400, "BadRequest", "no query"),
            };
            let norm = q.split_whitespace().collect::<Vec<_>>().join(" ");
            let upper = norm.to_ascii_uppercase();
            let rows: Vec<Value> = if upper == "SELECT * FROM RELATIONSHIPS" {
                st.relationships.values().cloned().collect()
            } else if upper == "SELECT * FROM DIGITALTWINS" {
                st.twins.values().cloned().collect()
            } else if let Some(rest) =
                norm.strip_prefix("SELECT * FROM digitaltwins WHERE STARTSWITH($metadata.$model, '")
            {
                let Some(prefix) = rest.strip_suffix("')") else {
                    return error(400, "BadRequest", "the fake does not know this query");
                };
                st.twins
                    .values()
                    .filter(|t| {
                        t.pointer("/$metadata/$model")
                            .and_then(Value::as_str)
                            .is_some_and(|m| m.starts_with(prefix))
                    })
                    .cloned()
                    .collect()
            } else {
                return error(
                    400,
                    "BadRequest",
                    &format!("the fake does not know the query {q:?}"),
                );
            };
            let (page, next) = page_of(rows, start);
            let mut out = json!({"value": page});
            if let Some(n) = next {
                out["continuationToken"] = json!(format!("{n}|{q}"));
            }
            reply(200, &out, &[])
        }
        ("GET", ["digitaltwins", id]) => match st.twins.get(*id) {
            Some(t) => reply(200, t, &[]),
            None => error(
                404,
                "DigitalTwinNotFound",
                &format!("there is no twin {id}"),
            ),
        },
        ("PUT", ["digitaltwins", id]) => {
            if let Some(p) = twin_problem(&st.models, &body) {
                return error(400, "ValidationFailed", &format!("twin {id}: {p}"));
            }
            st.next_etag += 1;
            let mut t = body.clone();
            t["$dtId"] = json!(id);
            t["$etag"] = json!(format!("W/\"{}\"", st.next_etag));
            st.twins.insert(id.to_string(), t.clone());
            reply(200, &t, &[])
        }
        ("PATCH", ["digitaltwins", id]) => {
            if !content_type.starts_with("application/json-patch+json") {
                return error(
                    415,
                    "UnsupportedMediaType",
                    "a JSON Patch body needs content type application/json-patch+json",
                );
            }
            let Some(mut t) = st.twins.get(*id).cloned() else {
                return error(
                    404,
                    "DigitalTwinNotFound",
                    &format!("there is no twin {id}"),
                );
            };
            let Some(ops) = body.as_array() else {
                return error(
                    400,
                    "JsonPatchInvalid",
                    "the body must be a JSON Patch array",
                );
            };
            for op in ops {
                let path = op["path"].as_str().unwrap_or_default();
                let keys: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                match (op["op"].as_str(), keys.as_slice()) {
                    (Some("add" | "replace"), ["$metadata", "$model"]) => {
                        t["$metadata"]["$model"] = op["value"].clone()
                    }
                    (Some("add"), [k]) => t[*k] = op["value"].clone(),
                    (Some("replace"), [k]) if t.get(*k).is_some() => t[*k] = op["value"].clone(),
                    (Some("remove"), [k]) if t.get(*k).is_some() => {
                        if let Some(o) = t.as_object_mut() {
                            o.remove(*k);
                        }
                    }
                    _ => {
                        return error(
                            400,
                            "JsonPatchInvalid",
                            &format!("the fake cannot apply {op}"),
                        )
                    }
                }
            }
            if let Some(p) = twin_problem(&st.models, &t) {
                return error(400, "ValidationFailed", &format!("twin {id}: {p}"));
            }
            st.twins.insert(id.to_string(), t);
            reply(204, &Value::Null, &[])
        }
        ("DELETE", ["digitaltwins", id]) => {
            if !st.twins.contains_key(*id) {
                return error(
                    404,
                    "DigitalTwinNotFound",
                    &format!("there is no twin {id}"),
                );
            }
            let linked = st
                .relationships
                .iter()
                .any(|((src, _), r)| src == id || r["$targetId"].as_str() == Some(id));
            if linked {
                return error(
                    409,
                    "RelationshipsNotDeleted",
                    &format!("twin {id} still has relationships"),
                );
            }
            st.twins.remove(*id);
            reply(204, &Value::Null, &[])
        }
        ("PUT", ["digitaltwins", src, "relationships", rid]) => {
            let Some(source) = st.twins.get(*src) else {
                return error(
                    404,
                    "DigitalTwinNotFound",
                    &format!("there is no twin {src}"),
                );
            };
            let target = body["$targetId"].as_str().unwrap_or_default();
            if !st.twins.contains_key(target) {
                return error(
                    400,
                    "ValidationFailed",
                    &format!("the target twin {target:?} does not exist"),
                );
            }
            let name = body["$relationshipName"].as_str().unwrap_or_default();
            let model = source
                .pointer("/$metadata/$model")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !declared(&st.models, model, "Relationship").contains(name) {
                return error(
                    400,
                    "ValidationFailed",
                    &format!("model {model} declares no relationship {name:?}"),
                );
            }
            let r = json!({"$relationshipId": rid, "$sourceId": src, "$targetId": target,
                "$relationshipName": name, "$etag": "W/\"1\""});
            st.relationships
                .insert((src.to_string(), rid.to_string()), r.clone());
            reply(200, &r, &[])
        }
        ("DELETE", ["digitaltwins", src, "relationships", rid]) => {
            match st.relationships.remove(&(src.to_string(), rid.to_string())) {
                Some(_) => reply(204, &Value::Null, &[]),
                None => error(
                    404,
                    "RelationshipNotFound",
                    &format!("twin {src} has no relationship {rid}"),
                ),
            }
        }
        _ => error(404, "NotFound", "the fake does not know this path"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_percent_decoded() {
        assert_eq!(percent_decode("dtmi%3Aa%3Ab%3B1"), "dtmi:a:b;1");
        assert_eq!(percent_decode("room%201%2F%C3%A4"), "room 1/ä");
        assert_eq!(percent_decode("50%"), "50%");
    }

    #[test]
    fn dependencies_and_declared_contents() {
        let base = json!({"@id": "dtmi:t:b;1", "@type": "Interface", "contents": [
            {"@type": "Property", "name": "id", "schema": "string"}]});
        let dev = json!({"@id": "dtmi:t:d;1", "@type": "Interface", "extends": ["dtmi:t:b;1"],
            "contents": [{"@type": "Property", "name": "t", "schema": "double"},
                {"@type": "Relationship", "name": "r", "target": "dtmi:t:x;1"}]});
        assert_eq!(
            dependencies(&dev).into_iter().collect::<Vec<_>>(),
            ["dtmi:t:b;1", "dtmi:t:x;1"]
        );
        let models = BTreeMap::from([
            ("dtmi:t:b;1".to_string(), base),
            ("dtmi:t:d;1".to_string(), dev),
        ]);
        let props: Vec<String> = declared(&models, "dtmi:t:d;1", "Property")
            .into_iter()
            .collect();
        assert_eq!(props, ["id", "t"]);
        let twin = json!({"$metadata": {"$model": "dtmi:t:d;1"}, "t": 1, "x": 2});
        assert!(twin_problem(&models, &twin).is_some_and(|p| p.contains("\"x\"")));
    }
}
