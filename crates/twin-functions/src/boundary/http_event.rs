//! The HTTP shapes an ingress sees on AWS: a Lambda function URL event (payload format 2.0) in,
//! its response object out. Pure, so the Lambda adapter stays a few lines.

use super::object::IngressReply;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;

/// A function URL event that is not an HTTP request the ingress can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a function URL request: {0}")]
pub struct NotAnHttpEvent(pub &'static str);

/// The request's headers (names lowercased, as function URLs deliver them) and body bytes.
/// A missing body is an empty one; a body flagged base64 that does not decode is refused.
pub fn function_url_request(
    event: &Value,
) -> Result<(HashMap<String, String>, Vec<u8>), NotAnHttpEvent> {
    let headers = event
        .get("headers")
        .and_then(Value::as_object)
        .ok_or(NotAnHttpEvent("no headers object"))?
        .iter()
        .filter_map(|(k, v)| Some((k.to_ascii_lowercase(), v.as_str()?.to_string())))
        .collect();
    let body = match event.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => {
            if event.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
                STANDARD
                    .decode(text)
                    .map_err(|_| NotAnHttpEvent("body flagged base64 does not decode"))?
            } else {
                text.clone().into_bytes()
            }
        }
        Some(_) => return Err(NotAnHttpEvent("body is not a string")),
    };
    Ok((headers, body))
}

/// The function URL response for an ingress reply.
pub fn function_url_response(reply: &IngressReply) -> Value {
    json!({
        "statusCode": reply.status,
        "headers": {"content-type": "application/json"},
        "body": reply.body.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_function_url_event_and_writes_its_response() {
        let event = json!({
            "version": "2.0", "rawPath": "/",
            "headers": {"x-twin-nonce": "abc", "Content-Type": "application/json"},
            "body": STANDARD.encode(br#"{"traceId":"t","payload":{}}"#), "isBase64Encoded": true,
            "requestContext": {"http": {"method": "POST"}}
        });
        let (headers, body) = function_url_request(&event).expect("request");
        assert_eq!(headers.get("x-twin-nonce").map(String::as_str), Some("abc"));
        assert!(headers.contains_key("content-type"));
        assert_eq!(body, br#"{"traceId":"t","payload":{}}"#);
        let plain = json!({"headers": {}, "body": "{}", "isBase64Encoded": false});
        assert_eq!(function_url_request(&plain).expect("request").1, b"{}");
        assert!(function_url_request(&json!({"body": "x"})).is_err());
        let r = function_url_response(&IngressReply {
            status: 401,
            body: json!({"error": "unauthorized", "reason": "bad_signature"}),
        });
        assert_eq!(r["statusCode"], 401);
        assert_eq!(
            r["body"],
            r#"{"error":"unauthorized","reason":"bad_signature"}"#
        );
    }
}
