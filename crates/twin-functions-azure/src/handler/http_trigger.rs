//! The HTTP trigger's value as the Functions host sends it to a custom handler:
//! `{"Url", "Method", "Query": {name: value}, "Headers": {name: [values]}, "Params", "Body"}`
//! (the host's `HttpRequest` → JSON conversion; `Body` is the request body as text).

use super::payload::unwrap_json;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// One HTTP request, as far as the functions need it.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTriggerRequest {
    /// `GET`, `POST`.
    pub method: String,
    /// The URL the caller used.
    pub url: String,
    /// Query parameters (repeated parameters arrive comma-joined).
    pub query: Map<String, Value>,
    /// Header names (lowercased) with their first value; the host sends each as a list.
    pub headers: HashMap<String, String>,
    /// The body as text, if any.
    pub body: Option<String>,
}

impl HttpTriggerRequest {
    /// Reads the trigger's value; older hosts send `Query` as JSON text, which is accepted too.
    pub fn parse(trigger: &Value) -> Result<Self, String> {
        let Value::Object(req) = unwrap_json(trigger.clone()) else {
            return Err("the HTTP trigger's value is not an object".into());
        };
        let text = |k: &str| {
            req.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let query = match req.get("Query").cloned().map(unwrap_json) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(q)) => q,
            Some(other) => {
                return Err(format!(
                    "the HTTP trigger's Query is not an object: {other}"
                ))
            }
        };
        let headers = match req.get("Headers").cloned().map(unwrap_json) {
            None | Some(Value::Null) => HashMap::new(),
            Some(Value::Object(h)) => h
                .into_iter()
                .filter_map(|(name, v)| {
                    let value = match v {
                        Value::Array(values) => values.first()?.as_str()?.to_string(),
                        Value::String(s) => s,
                        _ => return None,
                    };
                    Some((name.to_ascii_lowercase(), value))
                })
                .collect(),
            Some(other) => {
                return Err(format!(
                    "the HTTP trigger's Headers is not an object: {other}"
                ))
            }
        };
        let body = match req.get("Body") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            // A host that parsed a JSON body already.
            Some(other) => Some(other.to_string()),
        };
        Ok(Self {
            method: text("Method"),
            url: text("Url"),
            query,
            headers,
            body,
        })
    }

    /// The body as JSON (the processor's and persister's payload).
    pub fn json_body(self) -> Result<Value, String> {
        let body = self
            .body
            .filter(|b| !b.trim().is_empty())
            .ok_or("the request has no body; POST the JSON payload")?;
        serde_json::from_str(&body).map_err(|e| format!("the request body is not JSON: {e}"))
    }

    /// The request in the HTTP shape `twin_functions::hot_reader::parse_request` reads (its
    /// query string parameters), so the reader's checks and answers apply unchanged.
    pub fn hot_reader_event(self) -> Value {
        let path = azure_core::http::Url::parse(&self.url)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        json!({"rawPath": path, "queryStringParameters": self.query})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hosts_request_shape() {
        let req = HttpTriggerRequest::parse(&json!({
            "Url": "https://app.azurewebsites.net/api/hot-reader?iotDeviceId=s-1",
            "Method": "GET",
            "Query": {"iotDeviceId": "s-1"},
            "Headers": {"Accept": ["application/json"]},
            "Params": {},
        }))
        .unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(
            req.headers.get("accept").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(
            req.clone().hot_reader_event(),
            json!({"rawPath": "/api/hot-reader", "queryStringParameters": {"iotDeviceId": "s-1"}})
        );
        assert!(req.json_body().unwrap_err().contains("no body"));
        let old = HttpTriggerRequest::parse(
            &json!({"Method": "POST", "Query": "{}", "Body": "{\"a\":1}"}),
        )
        .unwrap();
        assert_eq!(old.json_body().unwrap(), json!({"a": 1}));
        let bad = HttpTriggerRequest::parse(&json!({"Method": "POST", "Body": "{"})).unwrap();
        assert!(bad.json_body().unwrap_err().contains("not JSON"));
    }
}
