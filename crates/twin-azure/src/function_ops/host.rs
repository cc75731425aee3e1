//! Calls to the Function App's own host (`https://<defaultHostName>/api/<fn>`,
//! `/admin/functions/<fn>`). They carry the function's or the host's key in `x-functions-key`
//! and NO bearer token: the app must never receive the user's Entra token. The answer's body is
//! kept as text (a function may answer anything).

use crate::arm::lro::parse_retry_after;
use azure_core::http::headers::HeaderName;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, Request, RetryOptions, Url,
};
use std::time::Duration;
use twin_engine::CloudError;

/// An answer of the functions host.
#[derive(Debug, Clone)]
pub struct HostReply {
    /// HTTP status.
    pub status: u16,
    /// The body as text (empty when there is none).
    pub body: String,
    /// `Retry-After`, when the host asked to slow down.
    pub retry_after: Option<Duration>,
}

/// A client of a Function App's host: one attempt per call, no authorization policy.
#[derive(Debug, Clone)]
pub struct FunctionHost {
    pipeline: Pipeline,
    base: String,
}

/// The base URL of the host ARM reported (`defaultHostName`): https, except behind a local
/// fake ARM (`local`), whose services are plain http; a value that is a URL already is kept.
pub fn host_base_url(default_host: &str, local: bool) -> String {
    let host = default_host.trim_end_matches('/');
    if host.starts_with("https://") || host.starts_with("http://") {
        host.to_string()
    } else {
        format!("{}://{host}", if local { "http" } else { "https" })
    }
}

impl FunctionHost {
    /// A client of the host ARM reported (`defaultHostName`), at [`host_base_url`].
    pub fn new(default_host: &str, local: bool) -> Self {
        let base = host_base_url(default_host, local);
        let options = ClientOptions {
            retry: RetryOptions::none(),
            ..Default::default()
        };
        FunctionHost {
            pipeline: Pipeline::new(
                Some(env!("CARGO_PKG_NAME")),
                Some(env!("CARGO_PKG_VERSION")),
                options,
                Vec::new(),
                Vec::new(),
                None,
            ),
            base,
        }
    }

    /// The host's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends `method path_and_query` with the key (never logged) and an optional JSON body.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        key: &str,
        body: Option<String>,
        what: &str,
    ) -> Result<HostReply, CloudError> {
        let url = format!("{}{path_and_query}", self.base);
        let parsed = Url::parse(&url)
            .map_err(|e| CloudError::fatal("BadUrl", format!("{what}: `{url}`: {e}")))?;
        let mut req = Request::new(parsed, method);
        req.insert_header(HeaderName::from_static("accept"), "application/json");
        req.insert_header(HeaderName::from_static("x-functions-key"), key.to_string());
        if let Some(b) = body {
            req.insert_header(HeaderName::from_static("content-type"), "application/json");
            req.set_body(b.into_bytes());
        }
        let options = PipelineSendOptions {
            skip_checks: true,
            ..Default::default()
        };
        let resp = self
            .pipeline
            .send(&Context::new(), &mut req, Some(options))
            .await
            .map_err(|e| crate::arm::errors::transport_error(what, &e))?;
        let status = u16::from(resp.status());
        let header = |n: &'static str| {
            resp.headers()
                .get_optional_str(&HeaderName::from_static(n))
                .map(str::to_string)
        };
        let retry_after = parse_retry_after(header("retry-after").as_deref(), None);
        let bytes = resp.into_body();
        Ok(HostReply {
            status,
            body: String::from_utf8_lossy(bytes.as_ref()).into_owned(),
            retry_after,
        })
    }
}
