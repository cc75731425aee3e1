//! A stateful fake of a managed Grafana's HTTP API (no emulator exists for Amazon Managed
//! Grafana or Azure Managed Grafana): data sources (CRUD by uid and the health check), folders
//! and dashboards, behind one of two auth modes.
//!
//! - Service account tokens (Amazon Managed Grafana): the test's fake control plane issues them
//!   ([`FakeGrafana::issue_token`], with a lifetime) and revokes them
//!   ([`FakeGrafana::revoke_token`]); a request without a token, or with one that is unknown,
//!   expired or revoked, gets 401.
//! - Entra bearer tokens (Azure Managed Grafana): a JWT whose `oid` names a principal the test
//!   made a Grafana Admin ([`FakeGrafana::admit_entra`]) is let in, after answering 403 to its
//!   first requests while the role "propagates"; a principal that is no admin gets 403, a token
//!   that is not a JWT with an `oid` 401. Signatures and audiences are not checked.
//! - `secureJsonData` is write-only, as in Grafana: it is kept apart and a read shows only
//!   `secureJsonFields` (`{"<field>": true}`); an update without it keeps what was set.
//! - Health: `GET /api/datasources/uid/<uid>/health` answers, as the plugins do:
//!   for the TwinMaker plugin `OK` only when `jsonData.assumeRoleArn` names a role the fake was
//!   told can be assumed ([`FakeGrafana::allow_role`]) and `workspaceId` is set; for the
//!   Infinity plugin `OK` only when the data source has a `url`, lists it in
//!   `jsonData.allowedHosts`, and has the header its `jsonData.httpHeaderName1` names with a
//!   secure value; otherwise 400 with `ERROR`.
//! - Dashboards are stored as sent (plus `id` and `version`, as Grafana adds), with their folder.
//!
//! Every request is logged as `METHOD /path` so a test can count the writes.

use crate::fake_http::{self, body_json, Reply};
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Type of the TwinMaker data source plugin.
pub const TWINMAKER_PLUGIN: &str = "grafana-iot-twinmaker-datasource";

/// Type of the Infinity data source plugin.
pub const INFINITY_PLUGIN: &str = "yesoreyeram-infinity-datasource";

#[derive(Default)]
struct State {
    /// Token value → when it stops working.
    tokens: HashMap<String, Instant>,
    /// Roles the plugin can assume.
    roles: BTreeSet<String>,
    datasources: BTreeMap<String, Value>,
    /// uid → the data source's `secureJsonData` (never answered).
    secrets: BTreeMap<String, Value>,
    /// Entra principals (`oid`) that are Grafana Admins → 403s left before they are let in.
    entra_admins: HashMap<String, u32>,
    folders: BTreeMap<String, Value>,
    /// uid → (dashboard, folder uid).
    dashboards: BTreeMap<String, (Value, Option<String>)>,
    next_id: u64,
    requests: Vec<String>,
    /// Answers with status 503 for the next this many requests (a workspace still coming up).
    unavailable: u32,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake Grafana.
pub struct FakeGrafana {
    /// Base URL, e.g. `http://127.0.0.1:40123` (what the fake control plane reports as the
    /// workspace's endpoint).
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGrafana {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGrafana {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> std::io::Result<FakeGrafana> {
        let (listener, addr) = fake_http::bind_loopback()?;
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let task = fake_http::serve(listener, move |req| {
            let s = s.clone();
            async move { Ok::<_, Infallible>(handle(&s, req).await) }
        });
        Ok(FakeGrafana {
            url: format!("http://{addr}"),
            state,
            task,
        })
    }

    /// Accepts `token` for `ttl` from now.
    pub fn issue_token(&self, token: &str, ttl: Duration) {
        lock(&self.state)
            .tokens
            .insert(token.to_string(), Instant::now() + ttl);
    }

    /// Stops accepting `token`.
    pub fn revoke_token(&self, token: &str) {
        lock(&self.state).tokens.remove(token);
    }

    /// Tokens still accepted now.
    pub fn live_tokens(&self) -> usize {
        let now = Instant::now();
        lock(&self.state)
            .tokens
            .values()
            .filter(|t| **t > now)
            .count()
    }

    /// The plugin can assume `role_arn` (the test made the role).
    pub fn allow_role(&self, role_arn: &str) {
        lock(&self.state).roles.insert(role_arn.to_string());
    }

    /// Lets Entra tokens of principal `oid` in as a Grafana Admin, after answering 403 to its
    /// next `forbidden_first` requests (the role assignment propagating).
    pub fn admit_entra(&self, oid: &str, forbidden_first: u32) {
        lock(&self.state)
            .entra_admins
            .insert(oid.to_string(), forbidden_first);
    }

    /// The value of secure field `field` of data source `uid`, as the deployer set it (what
    /// no API call gives back).
    pub fn datasource_secret(&self, uid: &str, field: &str) -> Option<String> {
        lock(&self.state)
            .secrets
            .get(uid)
            .and_then(|s| s.get(field))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// The plugin can no longer assume `role_arn`.
    pub fn forbid_role(&self, role_arn: &str) {
        lock(&self.state).roles.remove(role_arn);
    }

    /// The next `n` requests answer 503.
    pub fn unavailable_for(&self, n: u32) {
        lock(&self.state).unavailable = n;
    }

    /// A stored data source by uid.
    pub fn datasource(&self, uid: &str) -> Option<Value> {
        lock(&self.state).datasources.get(uid).cloned()
    }

    /// Changes a stored data source behind the deployer's back.
    pub fn edit_datasource(&self, uid: &str, edit: impl FnOnce(&mut Value)) {
        if let Some(d) = lock(&self.state).datasources.get_mut(uid) {
            edit(d);
        }
    }

    /// A stored dashboard and its folder uid.
    pub fn dashboard(&self, uid: &str) -> Option<(Value, Option<String>)> {
        lock(&self.state).dashboards.get(uid).cloned()
    }

    /// Changes a stored dashboard behind the deployer's back.
    pub fn edit_dashboard(&self, uid: &str, edit: impl FnOnce(&mut Value)) {
        if let Some((d, _)) = lock(&self.state).dashboards.get_mut(uid) {
            edit(d);
        }
    }

    /// The uids of the stored data sources, folders and dashboards.
    pub fn contents(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let s = lock(&self.state);
        (
            s.datasources.keys().cloned().collect(),
            s.folders.keys().cloned().collect(),
            s.dashboards.keys().cloned().collect(),
        )
    }

    /// Every request so far (`METHOD /path`), clearing the log.
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut lock(&self.state).requests)
    }
}

fn reply(status: u16, body: Value) -> Reply {
    fake_http::reply(status, &body, &[])
}

fn message(status: u16, text: &str) -> Reply {
    reply(status, json!({"message": text}))
}

/// The `oid` claim of a JWT-shaped token, if it is one.
fn entra_oid(token: &str) -> Option<String> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("oid")?.as_str().map(str::to_string)
}

/// `None` when the request may go on, else the answer refusing it.
fn refusal(state: &Mutex<State>, req: &Request<Incoming>) -> Option<Reply> {
    let Some(token) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Some(message(401, "Unauthorized"));
    };
    let mut s = lock(state);
    if s.tokens
        .get(token)
        .is_some_and(|until| *until > Instant::now())
    {
        return None;
    }
    let Some(oid) = entra_oid(token) else {
        return Some(message(401, "invalid API key"));
    };
    match s.entra_admins.get_mut(&oid) {
        Some(0) => None,
        Some(left) => {
            *left -= 1;
            Some(message(
                403,
                "Permissions needed: the user has no Grafana role yet",
            ))
        }
        None => Some(message(403, "Permissions needed: datasources:create")),
    }
}

/// Moves `secureJsonData` out of a data source's body into the secrets of `uid` (kept when the
/// body has none) and answers with the `secureJsonFields` Grafana shows instead.
fn keep_secrets(s: &mut State, uid: &str, body: &mut Value) {
    if let Some(secure) = body
        .as_object_mut()
        .and_then(|b| b.remove("secureJsonData"))
    {
        s.secrets.insert(uid.to_string(), secure);
    }
    let fields: serde_json::Map<String, Value> = s
        .secrets
        .get(uid)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, _)| (k.clone(), json!(true)))
        .collect();
    body["secureJsonFields"] = Value::Object(fields);
}

/// The Infinity plugin's verdict: its URL allowed and its header's secure value set.
fn infinity_health(d: &Value, secrets: Option<&Value>) -> Reply {
    let url = d["url"].as_str().unwrap_or_default();
    let allowed = d["jsonData"]["allowedHosts"]
        .as_array()
        .is_some_and(|h| h.iter().any(|h| h == url));
    let header_set = d["jsonData"]["httpHeaderName1"]
        .as_str()
        .is_some_and(|h| !h.is_empty())
        && secrets
            .and_then(|s| s["httpHeaderValue1"].as_str())
            .is_some_and(|v| !v.is_empty());
    let problem = if url.is_empty() {
        Some("no URL is set")
    } else if !allowed {
        Some("the URL is not among the allowed hosts")
    } else if !header_set {
        Some("the header has no value")
    } else {
        None
    };
    match problem {
        Some(p) => reply(400, json!({"status": "ERROR", "message": p})),
        None => reply(200, json!({"status": "OK", "message": "Settings saved"})),
    }
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    {
        let mut s = lock(state);
        s.requests.push(format!("{method} {path}"));
        if s.unavailable > 0 {
            s.unavailable -= 1;
            return message(503, "workspace is starting");
        }
    }
    if let Some(refused) = refusal(state, &req) {
        return refused;
    }
    let body = if matches!(method, Method::POST | Method::PUT) {
        body_json(req.into_body()).await
    } else {
        Value::Null
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut s = lock(state);
    match (&method, parts.as_slice()) {
        (&Method::POST, ["api", "datasources"]) => {
            let Some(uid) = body["uid"].as_str().map(str::to_string) else {
                return message(400, "uid required");
            };
            if s.datasources.contains_key(&uid)
                || s.datasources.values().any(|d| d["name"] == body["name"])
            {
                return message(409, "data source with the same uid or name already exists");
            }
            s.next_id += 1;
            let mut d = body.clone();
            d["id"] = json!(s.next_id);
            keep_secrets(&mut s, &uid, &mut d);
            s.datasources.insert(uid, d.clone());
            reply(
                200,
                json!({"datasource": d, "id": s.next_id, "message": "Datasource added", "name": body["name"]}),
            )
        }
        (&Method::GET, ["api", "datasources", "uid", uid]) => match s.datasources.get(*uid) {
            Some(d) => reply(200, d.clone()),
            None => message(404, "Data source not found"),
        },
        (&Method::PUT, ["api", "datasources", "uid", uid]) => {
            let Some(id) = s.datasources.get(*uid).map(|d| d["id"].clone()) else {
                return message(404, "Data source not found");
            };
            let mut d = body;
            d["id"] = id;
            d["uid"] = json!(uid);
            keep_secrets(&mut s, uid, &mut d);
            s.datasources.insert(uid.to_string(), d.clone());
            reply(
                200,
                json!({"datasource": d, "message": "Datasource updated"}),
            )
        }
        (&Method::DELETE, ["api", "datasources", "uid", uid]) => match s.datasources.remove(*uid) {
            Some(_) => {
                s.secrets.remove(*uid);
                message(200, "Data source deleted")
            }
            None => message(404, "Data source not found"),
        },
        (&Method::GET, ["api", "datasources", "uid", uid, "health"]) => {
            let Some(d) = s.datasources.get(*uid) else {
                return message(404, "Data source not found");
            };
            if d["type"] == INFINITY_PLUGIN {
                return infinity_health(d, s.secrets.get(*uid));
            }
            let role = d["jsonData"]["assumeRoleArn"].as_str().unwrap_or_default();
            if d["type"] != TWINMAKER_PLUGIN {
                message(400, "plugin unavailable")
            } else if d["jsonData"]["workspaceId"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                reply(
                    400,
                    json!({"status": "ERROR", "message": "workspace id is required"}),
                )
            } else if !s.roles.contains(role) {
                reply(
                    400,
                    json!({"status": "ERROR", "message": format!("failed to assume role {role}: AccessDenied")}),
                )
            } else {
                reply(
                    200,
                    json!({"status": "OK", "message": "Connection success"}),
                )
            }
        }
        (&Method::POST, ["api", "folders"]) => {
            let Some(uid) = body["uid"].as_str().map(str::to_string) else {
                return message(400, "uid required");
            };
            if s.folders.contains_key(&uid) {
                return message(409, "a folder with the same uid already exists");
            }
            s.next_id += 1;
            let f = json!({"id": s.next_id, "uid": uid, "title": body["title"], "version": 1,
                "url": format!("/dashboards/f/{uid}")});
            s.folders.insert(uid, f.clone());
            reply(200, f)
        }
        (&Method::GET, ["api", "folders", uid]) => match s.folders.get(*uid) {
            Some(f) => reply(200, f.clone()),
            None => message(404, "folder not found"),
        },
        (&Method::PUT, ["api", "folders", uid]) => {
            let Some(f) = s.folders.get_mut(*uid) else {
                return message(404, "folder not found");
            };
            f["title"] = body["title"].clone();
            f["version"] = json!(f["version"].as_u64().unwrap_or(0) + 1);
            reply(200, f.clone())
        }
        (&Method::DELETE, ["api", "folders", uid]) => {
            let uid = uid.to_string();
            if s.folders.remove(&uid).is_none() {
                return message(404, "folder not found");
            }
            // Grafana deletes a folder's dashboards with it.
            s.dashboards
                .retain(|_, (_, f)| f.as_deref() != Some(uid.as_str()));
            message(200, "Folder deleted")
        }
        (&Method::POST, ["api", "dashboards", "db"]) => {
            let mut d = body["dashboard"].clone();
            let Some(uid) = d["uid"].as_str().map(str::to_string) else {
                return message(400, "dashboard uid required");
            };
            let folder = body["folderUid"].as_str().map(str::to_string);
            if let Some(f) = &folder {
                if !s.folders.contains_key(f) {
                    return message(400, "folder not found");
                }
            }
            let version = match s.dashboards.get(&uid) {
                Some(_) if body["overwrite"] != true => {
                    return message(412, "A dashboard with the same uid already exists");
                }
                Some((old, _)) => old["version"].as_u64().unwrap_or(0) + 1,
                None => 1,
            };
            s.next_id += 1;
            d["id"] = json!(s.next_id);
            d["version"] = json!(version);
            s.dashboards.insert(uid.clone(), (d, folder));
            reply(
                200,
                json!({"uid": uid, "status": "success", "version": version,
                    "url": format!("/d/{uid}/dashboard")}),
            )
        }
        (&Method::GET, ["api", "dashboards", "uid", uid]) => match s.dashboards.get(*uid) {
            Some((d, folder)) => reply(
                200,
                json!({"dashboard": d, "meta": {"folderUid": folder, "url": format!("/d/{uid}/dashboard"),
                    "slug": "dashboard"}}),
            ),
            None => message(404, "Dashboard not found"),
        },
        (&Method::DELETE, ["api", "dashboards", "uid", uid]) => match s.dashboards.remove(*uid) {
            Some(_) => message(200, "Dashboard deleted"),
            None => message(404, "Dashboard not found"),
        },
        _ => message(404, "Not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 request with `Connection: close`; the status and JSON body.
    async fn call(
        url: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let addr = url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let text = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            text.len()
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        let out = String::from_utf8_lossy(&out).to_string();
        let status = out
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn tokens_must_be_issued_live_and_not_revoked() {
        let g = FakeGrafana::start().await.expect("start");
        let path = "/api/folders/x";
        assert_eq!(call(&g.url, "GET", path, None, &Value::Null).await.0, 401);
        assert_eq!(
            call(&g.url, "GET", path, Some("nope"), &Value::Null)
                .await
                .0,
            401
        );
        g.issue_token("good", Duration::from_secs(60));
        assert_eq!(
            call(&g.url, "GET", path, Some("good"), &Value::Null)
                .await
                .0,
            404
        );
        g.issue_token("expired", Duration::ZERO);
        assert_eq!(
            call(&g.url, "GET", path, Some("expired"), &Value::Null)
                .await
                .0,
            401
        );
        g.revoke_token("good");
        assert_eq!(
            call(&g.url, "GET", path, Some("good"), &Value::Null)
                .await
                .0,
            401
        );
        assert_eq!(g.live_tokens(), 0);
    }

    #[tokio::test]
    async fn health_needs_a_role_the_plugin_can_assume() {
        let g = FakeGrafana::start().await.expect("start");
        g.issue_token("t", Duration::from_secs(60));
        let ds = json!({"uid": "ds", "name": "TwinMaker", "type": TWINMAKER_PLUGIN, "access": "proxy",
            "jsonData": {"assumeRoleArn": "arn:aws:iam::1:role/dash", "workspaceId": "ws"}});
        assert_eq!(
            call(&g.url, "POST", "/api/datasources", Some("t"), &ds)
                .await
                .0,
            200
        );
        assert_eq!(
            call(&g.url, "POST", "/api/datasources", Some("t"), &ds)
                .await
                .0,
            409
        );
        let (status, body) = call(
            &g.url,
            "GET",
            "/api/datasources/uid/ds/health",
            Some("t"),
            &Value::Null,
        )
        .await;
        assert_eq!((status, body["status"].clone()), (400, json!("ERROR")));
        g.allow_role("arn:aws:iam::1:role/dash");
        let (status, body) = call(
            &g.url,
            "GET",
            "/api/datasources/uid/ds/health",
            Some("t"),
            &Value::Null,
        )
        .await;
        assert_eq!((status, body["status"].clone()), (200, json!("OK")));
        assert_eq!(
            call(
                &g.url,
                "DELETE",
                "/api/datasources/uid/ds",
                Some("t"),
                &Value::Null
            )
            .await
            .0,
            200
        );
        assert_eq!(
            call(
                &g.url,
                "DELETE",
                "/api/datasources/uid/ds",
                Some("t"),
                &Value::Null
            )
            .await
            .0,
            404
        );
    }

    #[tokio::test]
    async fn entra_admins_get_in_after_propagating_and_secure_fields_stay_write_only() {
        let g = FakeGrafana::start().await.expect("start");
        let token = crate::fake_arm::fake_token();
        let t = Some(token.as_str());
        let path = "/api/folders/x";
        assert_eq!(call(&g.url, "GET", path, t, &Value::Null).await.0, 403);
        g.admit_entra(crate::fake_arm::FAKE_PRINCIPAL_ID, 1);
        assert_eq!(call(&g.url, "GET", path, t, &Value::Null).await.0, 403);
        assert_eq!(call(&g.url, "GET", path, t, &Value::Null).await.0, 404);
        assert_eq!(
            call(&g.url, "GET", path, Some("not-a-jwt"), &Value::Null)
                .await
                .0,
            401
        );

        let ds = json!({"uid": "hot", "name": "hot", "type": INFINITY_PLUGIN, "access": "proxy",
            "url": "http://127.0.0.1:1", "jsonData": {"httpHeaderName1": "x-functions-key"},
            "secureJsonData": {"httpHeaderValue1": "secret-key"}});
        assert_eq!(
            call(&g.url, "POST", "/api/datasources", t, &ds).await.0,
            200
        );
        let health = "/api/datasources/uid/hot/health";
        let (status, body) = call(&g.url, "GET", health, t, &Value::Null).await;
        assert_eq!((status, body["status"].clone()), (400, json!("ERROR")));
        let mut fixed = ds.clone();
        fixed["jsonData"]["allowedHosts"] = json!(["http://127.0.0.1:1"]);
        if let Some(f) = fixed.as_object_mut() {
            f.remove("secureJsonData");
        }
        assert_eq!(
            call(&g.url, "PUT", "/api/datasources/uid/hot", t, &fixed)
                .await
                .0,
            200
        );
        let (status, body) = call(&g.url, "GET", health, t, &Value::Null).await;
        assert_eq!((status, body["status"].clone()), (200, json!("OK")));
        let (_, read) = call(&g.url, "GET", "/api/datasources/uid/hot", t, &Value::Null).await;
        assert!(!read.to_string().contains("secret-key"), "{read}");
        assert_eq!(read["secureJsonFields"]["httpHeaderValue1"], true);
        assert_eq!(
            g.datasource_secret("hot", "httpHeaderValue1").as_deref(),
            Some("secret-key")
        );
    }

    #[tokio::test]
    async fn dashboards_live_in_folders_and_go_with_them() {
        let g = FakeGrafana::start().await.expect("start");
        g.issue_token("t", Duration::from_secs(60));
        let dash = json!({"dashboard": {"uid": "d", "title": "T", "tags": []}, "folderUid": "f", "overwrite": true});
        assert_eq!(
            call(&g.url, "POST", "/api/dashboards/db", Some("t"), &dash)
                .await
                .0,
            400,
            "no folder yet"
        );
        let folder = json!({"uid": "f", "title": "F"});
        assert_eq!(
            call(&g.url, "POST", "/api/folders", Some("t"), &folder)
                .await
                .0,
            200
        );
        assert_eq!(
            call(&g.url, "POST", "/api/dashboards/db", Some("t"), &dash)
                .await
                .0,
            200
        );
        let (status, body) = call(
            &g.url,
            "GET",
            "/api/dashboards/uid/d",
            Some("t"),
            &Value::Null,
        )
        .await;
        assert_eq!(
            (status, body["meta"]["folderUid"].clone()),
            (200, json!("f"))
        );
        let mut again = dash.clone();
        again["overwrite"] = json!(false);
        assert_eq!(
            call(&g.url, "POST", "/api/dashboards/db", Some("t"), &again)
                .await
                .0,
            412
        );
        assert_eq!(
            call(&g.url, "DELETE", "/api/folders/f", Some("t"), &Value::Null)
                .await
                .0,
            200
        );
        assert_eq!(g.contents(), (Vec::new(), Vec::new(), Vec::new()));
    }
}
