//! A stateful fake of a Function App's public host (no emulator runs a Flex Consumption app):
//! one loopback listener per site, whose address the fake ARM reports as the site's
//! `defaultHostName` ([`crate::fake_arm::FakeArm::serve_functions_with`]). It holds the site's
//! keys (a master key and one default key per function, stable per site, which the fake ARM's
//! `listkeys` calls hand out), checks `x-functions-key`, and records every invocation.
//!
//! It does NOT run the real handler: `POST /api/<fn>` answers what the test told it the function
//! answers ([`FakeFunctionsHost::respond`], by default `{"function": <fn>, "input": <body>}`)
//! and `POST /admin/functions/<fn>` answers 202 as the Functions host does when it queued the
//! run. Keys can be rotated behind the caller's back ([`FakeFunctionsHost::rotate_keys`]).

use crate::fake_arm::FunctionHosting;
use crate::fake_http::{self, body_bytes, Reply};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

/// One call the host received with a valid key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoked {
    /// The site (Function App) name.
    pub site: String,
    /// The function's name.
    pub function: String,
    /// `true` for `/admin/functions/<fn>`, `false` for `/api/<fn>`.
    pub admin: bool,
    /// HTTP method.
    pub method: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The request body as text.
    pub body: String,
}

#[derive(Default)]
struct State {
    hosts: HashMap<String, String>,
    /// Per site: the generation of its keys (bumped by a rotation).
    generation: HashMap<String, u32>,
    /// Per function: the status and body its HTTP trigger answers.
    answers: HashMap<String, (u16, String)>,
    invoked: Vec<Invoked>,
    rejected: u32,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The key of `site` (`None`: the master key, else the function's default key) at `generation`.
fn key_of(site: &str, function: Option<&str>, generation: u32) -> String {
    use sha2::{Digest, Sha256};
    let seed = format!("{site}/{}/{generation}", function.unwrap_or("_master"));
    let hex: String = Sha256::digest(seed.as_bytes())
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("fk-{hex}")
}

/// A running fake functions host.
#[derive(Default)]
pub struct FakeFunctionsHost {
    state: Arc<Mutex<State>>,
}

impl Drop for FakeFunctionsHost {
    fn drop(&mut self) {
        for t in lock(&self.state).tasks.drain(..) {
            t.abort();
        }
    }
}

impl FakeFunctionsHost {
    /// A fake with no sites yet (each gets its listener on first use).
    pub fn new() -> FakeFunctionsHost {
        FakeFunctionsHost::default()
    }

    /// What the fake ARM needs: the host of each site and its current keys.
    pub fn hosting(&self) -> FunctionHosting {
        let (a, b) = (self.state.clone(), self.state.clone());
        FunctionHosting {
            host: Arc::new(move |site: &str| host_for(&a, site)),
            keys: Arc::new(move |site: &str, function: Option<&str>| {
                let g = lock(&b).generation.get(site).copied().unwrap_or(0);
                key_of(site, function, g)
            }),
        }
    }

    /// Makes the HTTP-triggered `function` answer `status` with `body` (every site).
    pub fn respond(&self, function: &str, status: u16, body: &str) {
        lock(&self.state)
            .answers
            .insert(function.to_string(), (status, body.to_string()));
    }

    /// Rotates every key of `site`: keys handed out before are refused from now on.
    pub fn rotate_keys(&self, site: &str) {
        *lock(&self.state)
            .generation
            .entry(site.to_string())
            .or_default() += 1;
    }

    /// Makes the next `n` calls be refused with 401 whatever key they carry (a key rotated
    /// between the caller's `listkeys` and its call).
    pub fn reject_next(&self, n: u32) {
        lock(&self.state).rejected = n;
    }

    /// Every invocation that carried a valid key, in order.
    pub fn invocations(&self) -> Vec<Invoked> {
        lock(&self.state).invoked.clone()
    }
}

fn host_for(state: &Arc<Mutex<State>>, site: &str) -> String {
    if let Some(h) = lock(state).hosts.get(site) {
        return h.clone();
    }
    let (listener, addr) = match fake_http::bind_loopback() {
        Ok(b) => b,
        Err(e) => return format!("unbindable-{e}"),
    };
    let (s, name) = (state.clone(), site.to_string());
    let task = fake_http::serve(listener, move |req| {
        let (s, name) = (s.clone(), name.clone());
        async move { Ok::<_, Infallible>(handle(&s, &name, req).await) }
    });
    let mut st = lock(state);
    st.tasks.push(task);
    st.hosts.insert(site.to_string(), addr.clone());
    addr
}

fn reply(status: u16, body: String) -> Reply {
    fake_http::reply_bytes(status, body, &[])
}

async fn handle(state: &Mutex<State>, site: &str, req: Request<Incoming>) -> Reply {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let key = req
        .headers()
        .get("x-functions-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bearer = req.headers().contains_key("authorization");
    let body = String::from_utf8_lossy(&body_bytes(req.into_body()).await).into_owned();
    let mut st = lock(state);
    if bearer {
        // A caller must never hand the app its Entra token: the key is the only credential.
        return reply(
            400,
            json!({"error": "unexpected Authorization header"}).to_string(),
        );
    }
    let (admin, function) = if let Some(f) = path.strip_prefix("/admin/functions/") {
        (true, f.to_string())
    } else if let Some(f) = path.strip_prefix("/api/") {
        (false, f.to_string())
    } else {
        return reply(404, String::new());
    };
    let generation = st.generation.get(site).copied().unwrap_or(0);
    let want = key_of(site, if admin { None } else { Some(&function) }, generation);
    let master = key_of(site, None, generation);
    // The master key opens every function too, as on the real host.
    let ok = key.as_deref().is_some_and(|k| k == want || k == master);
    if st.rejected > 0 {
        st.rejected -= 1;
        return reply(401, String::new());
    }
    if !ok {
        return reply(401, String::new());
    }
    st.invoked.push(Invoked {
        site: site.to_string(),
        function: function.clone(),
        admin,
        method,
        query,
        body: body.clone(),
    });
    if admin {
        return reply(202, String::new());
    }
    match st.answers.get(&function) {
        Some((status, text)) => reply(*status, text.clone()),
        None => {
            let input: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
            reply(
                200,
                json!({"function": function, "input": input}).to_string(),
            )
        }
    }
}
