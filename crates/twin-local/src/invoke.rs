//! A plain HTTP/1 client for the Lambda Invoke API served by the local router
//! (`POST /2015-03-31/functions/{name}/invocations`). hyper rather than aws-sdk-lambda: the router
//! is a local, unsigned endpoint, the callers need the raw status (202 vs 429/5xx decides
//! acknowledging and retrying) and headers (`X-Amz-Function-Error`), and the SDK would add
//! credentials, signing and a retry layer of its own on top of the callers' retries.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::time::Duration;

/// Where the router listens.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    host: String,
    port: u16,
    base_path: String,
    url: String,
}

/// How the function is invoked (the `X-Amz-Invocation-Type` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvocationType {
    /// Asynchronous: the router answers 202 once it has queued the event.
    Event,
    /// Synchronous: the router answers 200 with the function's result.
    RequestResponse,
}

/// The router's answer.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `X-Amz-Function-Error`, set when the function itself failed.
    pub function_error: Option<String>,
    /// The body (the function's result for RequestResponse, an error document otherwise).
    pub body: Bytes,
}

/// Why no answer came back.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum Unreachable {
    /// No TCP connection (router not up yet, or gone).
    #[error("cannot connect to the Lambda router at {url}: {message}")]
    Connect {
        /// The router URL.
        url: String,
        /// The OS error.
        message: String,
    },
    /// The exchange failed or took too long.
    #[error("the Lambda router at {url} did not answer: {message}")]
    Exchange {
        /// The router URL.
        url: String,
        /// What happened.
        message: String,
    },
}

/// The router URL is not one this client can use.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the Lambda router URL `{url}` is not usable: {reason} (expected http://127.0.0.1:PORT)")]
pub struct BadRouterUrl {
    /// The URL given.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A function name and qualifier from an ARN (`arn:aws:lambda:r:a:function:name[:qualifier]`),
/// or a plain name as it is.
pub(crate) fn function_of(arn_or_name: &str) -> (String, Option<String>) {
    match arn_or_name.split_once(":function:") {
        Some((_, rest)) => match rest.split_once(':') {
            Some((name, q)) => (name.to_string(), Some(q.to_string())),
            None => (rest.to_string(), None),
        },
        None => (arn_or_name.to_string(), None),
    }
}

impl Router {
    /// Parses `http://host:port[/prefix]`.
    pub(crate) fn parse(url: &str) -> Result<Router, BadRouterUrl> {
        let bad = |reason: &str| BadRouterUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only plain http is supported for the local router"));
        }
        let host = uri.host().ok_or_else(|| bad("no host"))?.to_string();
        let port = uri.port_u16().unwrap_or(80);
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(Router {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            base_path,
            url: url.to_string(),
        })
    }

    /// The URL as given.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// One Invoke call; `function` is a name or ARN.
    pub(crate) async fn invoke(
        &self,
        function: &str,
        kind: InvocationType,
        payload: Bytes,
        within: Duration,
    ) -> Result<Answer, Unreachable> {
        match tokio::time::timeout(within, self.exchange(function, kind, payload)).await {
            Ok(r) => r,
            Err(_) => Err(Unreachable::Exchange {
                url: self.url.clone(),
                message: format!("no answer within {within:?}"),
            }),
        }
    }

    async fn exchange(
        &self,
        function: &str,
        kind: InvocationType,
        payload: Bytes,
    ) -> Result<Answer, Unreachable> {
        let exchange = |e: &dyn std::fmt::Display| Unreachable::Exchange {
            url: self.url.clone(),
            message: e.to_string(),
        };
        let stream = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| Unreachable::Connect {
                url: self.url.clone(),
                message: e.to_string(),
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| exchange(&e))?;
        // The connection task ends when `sender` is dropped at the end of this call.
        tokio::spawn(conn);
        let (name, qualifier) = function_of(function);
        let mut path = format!("{}/2015-03-31/functions/{name}/invocations", self.base_path);
        if let Some(q) = qualifier {
            path.push_str(&format!("?Qualifier={q}"));
        }
        let request = http::Request::post(path)
            .header(http::header::HOST, format!("{}:{}", self.host, self.port))
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(
                "X-Amz-Invocation-Type",
                match kind {
                    InvocationType::Event => "Event",
                    InvocationType::RequestResponse => "RequestResponse",
                },
            )
            .body(Full::new(payload))
            .map_err(|e| exchange(&e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| exchange(&e))?;
        let status = response.status().as_u16();
        let function_error = response
            .headers()
            .get("X-Amz-Function-Error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| exchange(&e))?
            .to_bytes();
        Ok(Answer {
            status,
            function_error,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_come_from_arns() {
        assert_eq!(
            function_of("arn:aws:lambda:us-east-1:1:function:t-dispatcher"),
            ("t-dispatcher".into(), None)
        );
        assert_eq!(
            function_of("arn:aws:lambda:us-east-1:1:function:t-dispatcher:live"),
            ("t-dispatcher".into(), Some("live".into()))
        );
        assert_eq!(function_of("plain"), ("plain".into(), None));
    }

    #[test]
    fn router_urls_are_plain_http() {
        let r = Router::parse("http://127.0.0.1:9001/").expect("parses");
        assert_eq!(
            (r.host.as_str(), r.port, r.base_path.as_str()),
            ("127.0.0.1", 9001, "")
        );
        assert!(Router::parse("https://127.0.0.1:1").is_err());
        assert!(Router::parse("nope").is_err());
    }
}
