//! The HTTP/1 server the Functions host talks to: `POST /<function>` per invocation, and any
//! answer to the host's readiness ping (`GET /`).

use super::Handler;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// The header carrying the host's invocation id.
pub const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";
/// The largest invocation body taken: the host's HTTP trigger limit is 100 MB, an Event Grid
/// event at most 1 MB; a telemetry pipeline needs far less than either.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Serves `handler` on `listener` until `shutdown` completes; invocations in flight finish.
pub async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let unnamed = Arc::new(AtomicU64::new(0));
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let handler = handler.clone();
        let unnamed = unnamed.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let handler = handler.clone();
                let unnamed = unnamed.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&handler, req, &unnamed).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

fn respond(status: u16, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn shaped(status: u16, log: String) -> Response<Full<Bytes>> {
    tracing::warn!("{log}");
    let body = json!({"Outputs": {}, "Logs": [log], "ReturnValue": null});
    respond(status, body.to_string().into_bytes())
}

async fn answer(
    handler: &Handler,
    req: Request<Incoming>,
    unnamed: &AtomicU64,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET && path == "/" {
        // The host's readiness ping: any answer will do.
        let names: Vec<&str> = handler.functions.iter().map(|f| f.name()).collect();
        return respond(200, json!({"functions": names}).to_string().into_bytes());
    }
    if req.method() != Method::POST {
        return shaped(
            405,
            format!(
                "{} {path}: the Functions host invokes functions with POST",
                req.method()
            ),
        );
    }
    let invocation_id = req
        .headers()
        .get(INVOCATION_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("local-{}", unnamed.fetch_add(1, Ordering::Relaxed) + 1));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return shaped(
                413,
                format!("POST {path}: the body could not be read ({e}); at most {MAX_BODY} bytes"),
            )
        }
    };
    let response = handler.invoke(&path, &body, &invocation_id).await;
    respond(response.status, response.body.to_string().into_bytes())
}
