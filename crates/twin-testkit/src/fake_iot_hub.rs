//! A stateful fake of an IoT Hub's device registry (service API 2021-04-12) for tests: no
//! emulator exists (EMULATORS.md). Devices are stored by id with ETags; `PUT /devices/<id>`
//! without `If-Match` creates (409 `DeviceAlreadyExists` if it exists), with `If-Match` replaces
//! (412 `PreconditionFailed` on a stale ETag, 404 `DeviceNotFound` if unknown); GET and DELETE
//! of an unknown device answer 404; every request needs a bearer token; injected throttling
//! answers 429 with `Retry-After`. Errors have IoT Hub's shape, `{"Message":"ErrorCode:X;..."}`.
//!
//! The service API's direct method call, `POST /twins/<id>/methods`, is faked too: a device the
//! test marks connected ([`FakeIotHub::connect`]) answers every method with status 200; any other
//! gets 404 with errorCode 404103 (DeviceNotOnline) nested in `Message`, as the hub answers.
//! Every call is recorded ([`FakeIotHub::methods`]).

use crate::fake_http::{self, body_json, has_bearer, reply, Reply};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug)]
struct Throttle {
    method: String,
    times: u32,
    retry_after_secs: u64,
}

#[derive(Debug, Default)]
struct State {
    devices: BTreeMap<String, Value>,
    next_etag: u64,
    throttles: Vec<Throttle>,
    log: Vec<String>,
    connected: std::collections::BTreeSet<String>,
    methods: Vec<MethodCall>,
}

/// One direct method call the fake answered.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    /// The device called.
    pub device_id: String,
    /// `methodName`.
    pub method: String,
    /// `payload`.
    pub payload: Value,
    /// Whether the device was connected (so it got the method).
    pub delivered: bool,
}

/// A running fake registry on 127.0.0.1.
pub struct FakeIotHub {
    /// `127.0.0.1:<port>`: what the fake ARM reports as the hub's `hostName`.
    pub host: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIotHub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeIotHub {
    /// Starts a fake on a free port (inside the current tokio runtime).
    pub async fn start() -> std::io::Result<FakeIotHub> {
        let (listener, host) = fake_http::bind_loopback()?;
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let task = fake_http::serve(listener, move |req| {
            let s = s.clone();
            async move { Ok::<_, Infallible>(handle(&s, req).await) }
        });
        Ok(FakeIotHub { host, state, task })
    }

    /// Answers the next `times` requests of `method` with 429 and `Retry-After`.
    pub fn throttle(&self, method: &str, times: u32, retry_after_secs: u64) {
        lock(&self.state).throttles.push(Throttle {
            method: method.to_ascii_uppercase(),
            times,
            retry_after_secs,
        });
    }

    /// Throttles injected but not yet answered.
    pub fn throttles_left(&self) -> u32 {
        lock(&self.state).throttles.iter().map(|t| t.times).sum()
    }

    /// The stored device, if any.
    pub fn device(&self, id: &str) -> Option<Value> {
        lock(&self.state).devices.get(id).cloned()
    }

    /// The ids of every stored device.
    pub fn device_ids(&self) -> Vec<String> {
        lock(&self.state).devices.keys().cloned().collect()
    }

    /// Changes a stored device behind the deployer's back (`pointer` as in JSON Pointer); the
    /// device gets a new ETag, as a real change would give it.
    pub fn set(&self, id: &str, pointer: &str, value: Value) -> bool {
        let mut st = lock(&self.state);
        st.next_etag += 1;
        let etag = etag_of(st.next_etag);
        match st.devices.get_mut(id) {
            Some(d) => match d.pointer_mut(pointer) {
                Some(v) => {
                    *v = value;
                    d["etag"] = json!(etag);
                    true
                }
                None => false,
            },
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

    /// Marks `device_id` as connected: its direct methods are answered 200 from now on.
    pub fn connect(&self, device_id: &str) {
        lock(&self.state).connected.insert(device_id.to_string());
    }

    /// Marks `device_id` as not connected: its direct methods get 404103 again.
    pub fn disconnect(&self, device_id: &str) {
        lock(&self.state).connected.remove(device_id);
    }

    /// Every direct method call answered (delivered or not), in order.
    pub fn methods(&self) -> Vec<MethodCall> {
        lock(&self.state).methods.clone()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        lock(&self.state).log.clear();
    }
}

fn etag_of(n: u64) -> String {
    // Real ETags are opaque base64-looking strings; the content does not matter.
    format!("AAAAAAAA{n:08}")
}

fn error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        &json!({"Message": format!("ErrorCode:{code};{message}"),
            "ExceptionMessage": format!("Tracking ID:fake-0-G:0-TimeStamp:00/00/0000 00:00:00")}),
        &[],
    )
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Reply {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorized = has_bearer(req.headers());
    let if_match = header("if-match").map(|v| v.trim_matches('"').to_string());
    let body = body_json(req.into_body()).await;
    let mut st = lock(state);
    st.log.push(format!("{method} {path}"));
    if !authorized {
        return error(401, "IotHubUnauthorizedAccess", "no bearer token");
    }
    if let Some(t) = st
        .throttles
        .iter_mut()
        .find(|t| t.times > 0 && t.method == method)
    {
        t.times -= 1;
        let wait = t.retry_after_secs;
        let mut r = error(429, "ThrottlingException", "slow down (injected)");
        if let Ok(v) = hyper::header::HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert("retry-after", v);
        }
        return r;
    }
    if !query.contains("api-version=") {
        return error(400, "InvalidProtocolVersion", "api-version is required");
    }
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    if let ["twins", id, "methods"] = segs.as_slice() {
        if method != "POST" {
            return error(405, "InvalidOperation", "direct methods are POSTed");
        }
        let id = id.replace("%20", " ");
        let Some(name) = body.get("methodName").and_then(Value::as_str) else {
            return error(400, "ArgumentInvalid", "methodName is required");
        };
        if !body
            .get("responseTimeoutInSeconds")
            .and_then(Value::as_u64)
            .is_some_and(|t| (5..=300).contains(&t))
        {
            return error(
                400,
                "ArgumentInvalid",
                "responseTimeoutInSeconds must be 5..300",
            );
        }
        let delivered = st.connected.contains(&id);
        st.methods.push(MethodCall {
            device_id: id.clone(),
            method: name.to_string(),
            payload: body.get("payload").cloned().unwrap_or(Value::Null),
            delivered,
        });
        if !delivered {
            // The hub nests the JSON error in `Message` text.
            let inner = json!({"errorCode": 404103, "trackingId": "fake",
                "message": "Timed out waiting for device to connect.", "info": {},
                "timestampUtc": "2026-01-01T00:00:00Z"});
            return reply(
                404,
                &json!({"Message": inner.to_string(), "ExceptionMessage": ""}),
                &[],
            );
        }
        return reply(200, &json!({"status": 200, "payload": null}), &[]);
    }
    let [first, id] = segs.as_slice() else {
        return error(404, "InvalidOperation", "the fake does not know this path");
    };
    if *first != "devices" || id.is_empty() {
        return error(404, "InvalidOperation", "the fake does not know this path");
    }
    let id = id.to_string();
    let existing = st.devices.get(&id).cloned();
    let current_etag = existing
        .as_ref()
        .and_then(|d| d.get("etag"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let etag_matches = |m: &str| m == "*" || current_etag.as_deref() == Some(m);
    match method.as_str() {
        "GET" => match existing {
            Some(d) => {
                let etag = format!("\"{}\"", current_etag.unwrap_or_default());
                reply(200, &d, &[("etag", etag)])
            }
            None => error(404, "DeviceNotFound", &format!("Device {id} not found.")),
        },
        "PUT" => {
            match (&existing, if_match.as_deref()) {
                (Some(_), None) => {
                    return error(
                        409,
                        "DeviceAlreadyExists",
                        &format!("Device {id} already exists."),
                    )
                }
                (None, Some(m)) if m != "*" => {
                    return error(404, "DeviceNotFound", &format!("Device {id} not found."))
                }
                (Some(_), Some(m)) if !etag_matches(m) => {
                    return error(412, "PreconditionFailed", "the ETag does not match")
                }
                _ => {}
            }
            if body.get("deviceId").and_then(Value::as_str) != Some(id.as_str()) {
                return error(400, "ArgumentInvalid", "deviceId must match the URL");
            }
            let auth = body.pointer("/authentication/type").and_then(Value::as_str);
            let thumb = body
                .pointer("/authentication/x509Thumbprint/primaryThumbprint")
                .and_then(Value::as_str);
            if auth == Some("selfSigned") && !thumb.is_some_and(|t| t.len() == 64 || t.len() == 40)
            {
                return error(
                    400,
                    "ArgumentInvalid",
                    "a selfSigned device needs a SHA-1 or SHA-256 thumbprint",
                );
            }
            st.next_etag += 1;
            let etag = etag_of(st.next_etag);
            let mut stored = body.clone();
            stored["etag"] = json!(etag);
            stored["generationId"] = existing
                .as_ref()
                .and_then(|d| d.get("generationId").cloned())
                .unwrap_or(json!(format!("63800000000000{:04}", st.next_etag)));
            stored["connectionState"] = json!("Disconnected");
            if stored.get("status").is_none() {
                stored["status"] = json!("enabled");
            }
            st.devices.insert(id, stored.clone());
            reply(200, &stored, &[("etag", format!("\"{etag}\""))])
        }
        "DELETE" => {
            if existing.is_none() {
                return error(404, "DeviceNotFound", &format!("Device {id} not found."));
            }
            match if_match.as_deref() {
                None => error(
                    400,
                    "InvalidProtocolVersion",
                    "If-Match is required to delete",
                ),
                Some(m) if !etag_matches(m) => {
                    error(412, "PreconditionFailed", "the ETag does not match")
                }
                Some(_) => {
                    st.devices.remove(&id);
                    reply(204, &Value::Null, &[])
                }
            }
        }
        _ => error(405, "InvalidOperation", "not supported by the fake"),
    }
}
