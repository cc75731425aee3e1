//! The HTTP plumbing the test kit's fakes share (each fake stands in for a cloud service no
//! emulator exists for): a loopback listener, the accept loop, JSON replies, request bodies and
//! the bearer-token check. The fakes' behaviour stays in their own modules.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::future::Future;

/// What a fake answers with.
pub type Reply = Response<Full<Bytes>>;

/// Binds a free port on 127.0.0.1 without awaiting (so a fake can start a server from a
/// synchronous callback); returns the listener and its `127.0.0.1:<port>`. Needs a tokio runtime.
pub fn bind_loopback() -> std::io::Result<(tokio::net::TcpListener, String)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?.to_string();
    listener.set_nonblocking(true)?;
    Ok((tokio::net::TcpListener::from_std(listener)?, addr))
}

/// Serves HTTP/1 on `listener`, one task per connection, each request answered by `handle`,
/// until the returned task is aborted. A handler's error drops the connection (how a fake
/// simulates a connection lost mid-request).
pub fn serve<H, F, E>(listener: tokio::net::TcpListener, handle: H) -> tokio::task::JoinHandle<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Reply, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(handle);
                // A dropped connection ends here with an error, which is the point.
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

/// A reply with `body` as is, `content-type: application/json` and `headers` (a header that is
/// not valid HTTP is left out).
pub fn reply_bytes(status: u16, body: impl Into<Bytes>, headers: &[(&str, String)]) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            r.headers_mut().insert(name, value);
        }
    }
    r
}

/// A JSON reply; a `null` body is sent empty.
pub fn reply(status: u16, body: &Value, headers: &[(&str, String)]) -> Reply {
    let bytes = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    reply_bytes(status, bytes, headers)
}

/// Whether the request carries `Authorization: Bearer <something>` (the fakes do not check the
/// token itself).
pub fn has_bearer(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.len() > 7)
}

/// The request body's bytes; empty if the body could not be read.
pub async fn body_bytes(body: Incoming) -> Bytes {
    match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    }
}

/// The request body as JSON; `null` if it is empty, unreadable or not JSON.
pub async fn body_json(body: Incoming) -> Value {
    serde_json::from_slice(&body_bytes(body).await).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_needs_a_value() {
        let mut h = HeaderMap::new();
        assert!(!has_bearer(&h));
        h.insert("authorization", HeaderValue::from_static("Bearer "));
        assert!(!has_bearer(&h));
        h.insert("authorization", HeaderValue::from_static("Basic abc"));
        assert!(!has_bearer(&h));
        h.insert("authorization", HeaderValue::from_static("Bearer abc"));
        assert!(has_bearer(&h));
    }

    #[test]
    fn replies_are_json_with_valid_headers_only() {
        let r = reply(
            429,
            &Value::Null,
            &[("retry-after", "2".into()), ("bad header", "x".into())],
        );
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers().len(), 2);
    }
}
