//! A stateful fake of the AWS IoT data plane's Publish (`POST /topics/{topic}?qos=<0|1>`, body =
//! the payload). moto accepts Publish but keeps what was published out of reach of a test over
//! HTTP, so the event-rule feedback tests publish here and read the messages back. Requests
//! must be SigV4-signed (an `Authorization: AWS4-HMAC-SHA256 ...` header; the signature itself
//! is not checked). Faults can be queued to test the sender's error classification.

use crate::fake_http::{self, body_bytes, reply, Reply};
use hyper::body::Incoming;
use hyper::Request;
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

/// One published message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The topic, decoded.
    pub topic: String,
    /// The `qos` query parameter (0 when absent, as the service defaults it).
    pub qos: u8,
    /// The payload's bytes.
    pub payload: Vec<u8>,
}

#[derive(Default)]
struct State {
    published: Vec<Published>,
    /// Replies to send instead of accepting the next requests: (HTTP status, error type).
    faults: VecDeque<(u16, String)>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake IoT data-plane endpoint.
pub struct FakeIotData {
    /// Base URL, e.g. `http://127.0.0.1:40123` (what `IOT_DATA_ENDPOINT` names in tests).
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIotData {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIotData {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> std::io::Result<FakeIotData> {
        let (listener, addr) = fake_http::bind_loopback()?;
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let task = fake_http::serve(listener, move |req| {
            let s = s.clone();
            async move { Ok::<_, Infallible>(handle(&s, req).await) }
        });
        Ok(FakeIotData {
            url: format!("http://{addr}"),
            state,
            task,
        })
    }

    /// Everything published so far, in order.
    pub fn published(&self) -> Vec<Published> {
        lock(&self.state).published.clone()
    }

    /// Makes the next request fail with `status` and the service error type `error_type`
    /// (e.g. 503 `ServiceUnavailableException`, 403 `ForbiddenException`).
    pub fn fail_next(&self, status: u16, error_type: &str) {
        lock(&self.state)
            .faults
            .push_back((status, error_type.to_string()));
    }

    /// Drops the faults not yet used.
    pub fn clear_faults(&self) {
        lock(&self.state).faults.clear();
    }
}

async fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Reply {
    let signed = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256 "));
    if !signed {
        return error(403, "ForbiddenException", "the request is not signed");
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let Some(raw_topic) = path.strip_prefix("/topics/") else {
        return error(404, "ResourceNotFoundException", "only Publish is faked");
    };
    if req.method() != hyper::Method::POST {
        return error(405, "MethodNotAllowedException", "Publish is a POST");
    }
    if let Some((status, kind)) = lock(state).faults.pop_front() {
        return error(status, &kind, "injected fault");
    }
    let Some(topic) = percent_decode(raw_topic) else {
        return error(
            400,
            "InvalidRequestException",
            "the topic is not valid UTF-8",
        );
    };
    let qos = match query
        .split('&')
        .find_map(|kv| kv.strip_prefix("qos="))
        .unwrap_or("0")
    {
        "0" => 0,
        "1" => 1,
        other => {
            return error(
                400,
                "InvalidRequestException",
                &format!("qos {other} is not 0 or 1"),
            )
        }
    };
    let payload = body_bytes(req.into_body()).await.to_vec();
    lock(state).published.push(Published {
        topic,
        qos,
        payload,
    });
    reply(200, &serde_json::Value::Null, &[])
}

fn error(status: u16, kind: &str, message: &str) -> Reply {
    reply(
        status,
        &json!({"message": message}),
        &[("x-amzn-errortype", kind.to_string())],
    )
}

/// `%XX` sequences decoded; `None` for a malformed sequence or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_topics() {
        assert_eq!(
            percent_decode("t%2Ffeedback%2Fs-1").as_deref(),
            Some("t/feedback/s-1")
        );
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
    }
}
