//! A stateful fake of a Function App's deployment endpoint (Kudu's OneDeploy, as Flex
//! Consumption apps use it; no emulator exists): one loopback listener per site, a bearer token
//! required, `POST /api/publish` stores the zip and starts a deployment that answers a few polls
//! of `GET /api/deployments/<id>` before it ends, failures on demand, and after a success the
//! functions found in the zip (`<name>/function.json`) are handed to the fake ARM (through a
//! [`FunctionSync`]) so that `GET .../sites/<app>/functions` lists them.

use crate::fake_arm::{FunctionSync, ScmHosts};
use crate::fake_http::{self, body_bytes, has_bearer, reply, Reply};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard};

/// Kudu's deployment status codes (`status` of `GET /api/deployments/<id>`).
const STATUS_BUILDING: u32 = 1;
const STATUS_FAILED: u32 = 3;
const STATUS_SUCCESS: u32 = 4;

#[derive(Debug)]
struct Deployment {
    id: String,
    zip: Vec<u8>,
    polls_left: u32,
    fail: bool,
    status: u32,
}

#[derive(Debug, Default)]
struct Site {
    /// The package of the last successful deployment.
    current: Option<Vec<u8>>,
    uploads: u32,
    deployments: Vec<Deployment>,
}

#[derive(Default)]
struct State {
    hosts: HashMap<String, String>,
    sites: HashMap<String, Site>,
    fail_next: u32,
    next_id: u64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake deployment endpoint.
pub struct FakeKudu {
    state: Arc<Mutex<State>>,
    polls: u32,
    sync: FunctionSync,
}

impl Drop for FakeKudu {
    fn drop(&mut self) {
        for t in lock(&self.state).tasks.drain(..) {
            t.abort();
        }
    }
}

impl FakeKudu {
    /// A fake whose deployments answer `polls` polls as running before they end, and that
    /// reports each successful deployment's functions to `sync`.
    pub fn new(polls: u32, sync: FunctionSync) -> FakeKudu {
        FakeKudu {
            state: Arc::new(Mutex::new(State::default())),
            polls,
            sync,
        }
    }

    /// The host allocator to give the fake ARM ([`crate::fake_arm::FakeArm::serve_scm_with`]):
    /// each site gets its own `127.0.0.1:<port>` on first use (inside a tokio runtime).
    pub fn hosts(&self) -> ScmHosts {
        let (state, polls, sync) = (self.state.clone(), self.polls, self.sync.clone());
        Arc::new(move |site: &str| host_for(&state, polls, &sync, site))
    }

    /// Makes the next `n` deployments fail (after their polls).
    pub fn fail_next(&self, n: u32) {
        lock(&self.state).fail_next = n;
    }

    /// The package of the site's last successful deployment.
    pub fn package(&self, site: &str) -> Option<Vec<u8>> {
        lock(&self.state)
            .sites
            .get(site)
            .and_then(|s| s.current.clone())
    }

    /// How many packages were uploaded to the site.
    pub fn uploads(&self, site: &str) -> u32 {
        lock(&self.state).sites.get(site).map_or(0, |s| s.uploads)
    }

    /// The ids of the site's deployments that failed.
    pub fn failed_deployments(&self, site: &str) -> Vec<String> {
        lock(&self.state)
            .sites
            .get(site)
            .map_or_else(Vec::new, |s| {
                s.deployments
                    .iter()
                    .filter(|d| d.status == STATUS_FAILED)
                    .map(|d| d.id.clone())
                    .collect()
            })
    }
}

fn host_for(state: &Arc<Mutex<State>>, polls: u32, sync: &FunctionSync, site: &str) -> String {
    if let Some(h) = lock(state).hosts.get(site) {
        return h.clone();
    }
    let (listener, addr) = match fake_http::bind_loopback() {
        Ok(b) => b,
        Err(e) => return format!("unbindable-{e}"),
    };
    let (s, sy, name) = (state.clone(), sync.clone(), site.to_string());
    let task = fake_http::serve(listener, move |req| {
        let (s, sy, name) = (s.clone(), sy.clone(), name.clone());
        async move { Ok::<_, Infallible>(handle(&s, polls, &sy, &name, req).await) }
    });
    let mut st = lock(state);
    st.tasks.push(task);
    st.hosts.insert(site.to_string(), addr.clone());
    addr
}

/// The functions of a package: the `<name>` of every `<name>/function.json` entry.
pub fn functions_in(zip: &[u8]) -> Result<Vec<String>, String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|e| format!("not a zip: {e}"))?;
    let mut names = Vec::new();
    for i in 0..archive.len() {
        let mut f = archive.by_index(i).map_err(|e| e.to_string())?;
        let n = f.name().to_string();
        if let Some(dir) = n.strip_suffix("/function.json") {
            if !dir.is_empty() && !dir.contains('/') {
                let mut text = String::new();
                f.read_to_string(&mut text).map_err(|e| e.to_string())?;
                serde_json::from_str::<Value>(&text)
                    .map_err(|e| format!("{n} is not JSON: {e}"))?;
                names.push(dir.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}

async fn handle(
    state: &Mutex<State>,
    polls: u32,
    sync: &FunctionSync,
    site: &str,
    req: Request<Incoming>,
) -> Reply {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let authorized = has_bearer(req.headers());
    let body = body_bytes(req.into_body()).await.to_vec();
    if !authorized {
        // Basic publishing credentials are disabled: only an Entra bearer token is accepted.
        return reply(
            401,
            &json!({"Message": "Unauthorized: a bearer token is required"}),
            &[],
        );
    }
    let mut st = lock(state);
    match (method.as_str(), path.as_str()) {
        ("POST", "/api/publish") => {
            if let Err(e) = functions_in(&body) {
                return reply(400, &json!({"Message": e}), &[]);
            }
            st.next_id += 1;
            let id = format!("dep-{}", st.next_id);
            let fail = st.fail_next > 0;
            if fail {
                st.fail_next -= 1;
            }
            let s = st.sites.entry(site.to_string()).or_default();
            s.uploads += 1;
            s.deployments.push(Deployment {
                id: id.clone(),
                zip: body,
                polls_left: polls,
                fail,
                status: STATUS_BUILDING,
            });
            reply(
                202,
                &json!({"id": id}),
                &[("location", format!("http://{host}/api/deployments/{id}"))],
            )
        }
        ("GET", p) if p.starts_with("/api/deployments/") => {
            let want = &p["/api/deployments/".len()..];
            let Some(s) = st.sites.get_mut(site) else {
                return reply(404, &json!({"Message": "no deployments"}), &[]);
            };
            let found = if want == "latest" {
                s.deployments.last_mut()
            } else {
                s.deployments.iter_mut().find(|d| d.id == want)
            };
            let Some(d) = found else {
                return reply(404, &json!({"Message": "no such deployment"}), &[]);
            };
            let mut synced = None;
            if d.status == STATUS_BUILDING {
                if d.polls_left > 0 {
                    d.polls_left -= 1;
                } else if d.fail {
                    d.status = STATUS_FAILED;
                } else {
                    d.status = STATUS_SUCCESS;
                    synced = Some(d.zip.clone());
                }
            }
            let answer = json!({"id": d.id, "status": d.status,
                "complete": d.status != STATUS_BUILDING,
                "status_text": if d.status == STATUS_FAILED { "Deployment failed: the package could not be mounted (injected)" } else { "" }});
            if let Some(zip) = synced {
                s.current = Some(zip.clone());
                drop(st);
                let functions = functions_in(&zip).unwrap_or_default();
                sync(site, &functions);
            }
            reply(200, &answer, &[])
        }
        _ => reply(
            404,
            &json!({"Message": "the fake does not know this path"}),
            &[],
        ),
    }
}
