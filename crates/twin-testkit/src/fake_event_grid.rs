//! A fake Event Grid custom topic endpoint for tests (no emulator exists, EMULATORS.md): it takes
//! `POST /api/events?api-version=...` with a batch in the Event Grid event schema
//! (`[{id, eventType, subject, eventTime, data, dataVersion}]`), refuses a request without the
//! expected bearer token (401) or with an event missing a field (400), answers 503 to injected
//! faults, and records every accepted event.

use crate::fake_http::{self, body_json, reply, Reply};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct State {
    events: Vec<Value>,
    fail_next: u32,
    refused: Vec<String>,
}

/// A running fake topic endpoint on 127.0.0.1.
pub struct FakeEventGrid {
    /// The topic's endpoint, as ARM reports it in `properties.endpoint`.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEventGrid {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fields every event of the Event Grid schema carries.
const FIELDS: [&str; 6] = [
    "id",
    "eventType",
    "subject",
    "eventTime",
    "data",
    "dataVersion",
];

impl FakeEventGrid {
    /// Starts a fake accepting only `Authorization: Bearer <token>`.
    pub async fn start(token: &str) -> std::io::Result<FakeEventGrid> {
        let (listener, host) = fake_http::bind_loopback()?;
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let expected = format!("Bearer {token}");
        let task = fake_http::serve(listener, move |req| {
            let s = s.clone();
            let expected = expected.clone();
            async move { Ok::<_, Infallible>(handle(&s, &expected, req).await) }
        });
        Ok(FakeEventGrid {
            endpoint: format!("http://{host}/api/events"),
            state,
            task,
        })
    }

    /// Every accepted event, in order.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.state).events.clone()
    }

    /// Why each refused request was refused.
    pub fn refused(&self) -> Vec<String> {
        lock(&self.state).refused.clone()
    }

    /// Answers the next `n` publishes with 503.
    pub fn fail_next(&self, n: u32) {
        lock(&self.state).fail_next = n;
    }
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        &json!({"error": {"code": code, "message": message}}),
        &[],
    )
}

async fn handle(state: &Mutex<State>, expected: &str, req: Request<Incoming>) -> Reply {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().as_str().to_string();
    let body = body_json(req.into_body()).await;
    let mut st = lock(state);
    let refuse = |st: &mut State, status: u16, code: &str, why: &str| {
        st.refused.push(format!("{code}: {why}"));
        error(status, code, why)
    };
    if method != "POST" || path != "/api/events" {
        return refuse(&mut st, 404, "NotFound", "events are POSTed to /api/events");
    }
    if auth.as_deref() != Some(expected) {
        return refuse(
            &mut st,
            401,
            "Unauthorized",
            "the bearer token is not the expected one",
        );
    }
    if !query.contains("api-version=") {
        return refuse(&mut st, 400, "BadRequest", "api-version is required");
    }
    let Some(events) = body.as_array() else {
        return refuse(
            &mut st,
            400,
            "BadRequest",
            "the body must be an array of events",
        );
    };
    for e in events {
        if let Some(f) = FIELDS.iter().find(|f| e.get(**f).is_none()) {
            return refuse(
                &mut st,
                400,
                "BadRequest",
                &format!("an event has no `{f}`"),
            );
        }
    }
    if st.fail_next > 0 {
        st.fail_next -= 1;
        return error(503, "ServiceUnavailable", "injected fault");
    }
    st.events.extend(events.iter().cloned());
    reply(200, &Value::Null, &[])
}
