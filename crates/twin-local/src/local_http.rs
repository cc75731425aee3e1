//! One plain HTTP/1 exchange with a process on 127.0.0.1 (the custom handler, the local
//! Functions host): the callers need the raw status to decide on retries, and nothing here is
//! signed or encrypted.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Sends `method path` with `headers` and `body` to `addr` and returns the status and body, or
/// why there is no answer (no connection, or none within `within`).
pub(crate) async fn call(
    addr: (&str, u16),
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
    within: Duration,
) -> Result<(u16, Bytes), String> {
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", addr.0, addr.1))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{}:{}", addr.0, addr.1));
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    };
    match tokio::time::timeout(within, exchange).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{method} {path} on {}:{} got no answer within {within:?}",
            addr.0, addr.1
        )),
    }
}
