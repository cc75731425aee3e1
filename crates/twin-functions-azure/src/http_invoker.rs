//! Invoking another function of the twin over HTTP: a POST of the payload to the function's URL
//! (on Azure, an HTTP-triggered function of the twin's Function App).

use async_trait::async_trait;
use azure_core::http::{new_http_client, HttpClient, Method, Request, Url};
use std::collections::HashMap;
use std::sync::Arc;
use twin_functions::{CloudError, CloudErrorKind, FunctionInvoker};

/// POSTs payloads to function URLs by function name.
#[derive(Clone)]
pub struct HttpInvoker {
    client: Arc<dyn HttpClient>,
    urls: HashMap<String, Url>,
}

impl std::fmt::Debug for HttpInvoker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpInvoker")
            .field("functions", &self.urls.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl HttpInvoker {
    /// An invoker for the functions named in `urls` (name → URL).
    pub fn new(urls: HashMap<String, Url>) -> Self {
        Self {
            client: new_http_client(None),
            urls,
        }
    }
}

#[async_trait]
impl FunctionInvoker for HttpInvoker {
    /// Waits for the function's answer: a 2xx means it accepted the payload. (Functions behind
    /// HTTP triggers have no queued asynchronous mode; receivers are idempotent, so a caller's
    /// retry after a failure is safe.)
    async fn invoke_async(&self, function: &str, payload: Vec<u8>) -> Result<(), CloudError> {
        let resource = format!("function {function}");
        let url = self.urls.get(function).ok_or_else(|| {
            CloudError::new(
                "Invoke",
                resource.clone(),
                "UnknownFunction",
                "no URL is configured for this function",
                CloudErrorKind::NotFound,
            )
        })?;
        let mut request = Request::new(url.clone(), Method::Post);
        request.insert_header("content-type", "application/json");
        request.set_body(payload);
        let response = self
            .client
            .execute_request(&request)
            .await
            .map_err(|e| crate::error_map::cloud_error("Invoke", resource.clone(), &e))?;
        let status = u16::from(response.status());
        if (200..300).contains(&status) {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get_optional_str(&"retry-after".into())
            .map(str::to_string);
        Err(crate::error_map::classified(
            "Invoke",
            resource,
            Some(status),
            &format!("Http{status}"),
            "the function did not accept the payload",
            retry_after.as_deref(),
        ))
    }
}
