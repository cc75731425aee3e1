//! The hot reader (L3 hot query API): a device's records between two dates, paginated through the
//! whole range, capped per response with a continuation token.
//!
//! Two request shapes are accepted:
//! - an API Gateway HTTP API (v2) event: `GET /?iotDeviceId=..&startDate=..&endDate=..&nextToken=..`,
//!   answered with status, headers and a body that is the JSON array of records; when the cap cut
//!   the answer short, header `x-next-token` holds the token for the rest;
//! - a direct invocation payload `{"iotDeviceId":..,"startDate":..,"endDate":..,"nextToken":..}`,
//!   answered with `{"items":[..],"count":n,"nextToken":..}` (a Lambda payload has no headers).
//!
//! Missing dates mean an open range. Bad parameters get status 400 with the reason.

use crate::error::CloudError;
use crate::hot_store::{DeviceQuery, HotStore, Order, TimeRange};
use crate::record::FIELD_DEVICE_ID;
use crate::timestamp::{RangeEnd, Timestamp};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use tracing::Instrument;

const PARAM_START: &str = "startDate";
const PARAM_END: &str = "endDate";
const PARAM_TOKEN: &str = "nextToken";
/// The smallest answer size assumed for a record when estimating how many to ask the store for.
const MIN_RECORD_BYTES: usize = 64;
/// The header carrying the continuation token in HTTP answers.
pub const NEXT_TOKEN_HEADER: &str = "x-next-token";

/// How the request arrived, which decides the answer's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestShape {
    /// API Gateway HTTP API v2 event.
    Http,
    /// Direct Lambda invocation.
    Direct,
}

/// A validated read request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    /// The device.
    pub device_id: String,
    /// Inclusive lower bound.
    pub start: Option<Timestamp>,
    /// Inclusive upper bound.
    pub end: Option<Timestamp>,
    /// Continue after this record time (from `nextToken`).
    pub after: Option<String>,
}

/// A request the reader refuses, with the reason shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

/// One answer's worth of records.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadPage {
    /// The records, oldest first, as flat JSON objects.
    pub items: Vec<Map<String, Value>>,
    /// Token for the rest of the range, if the size cap cut this answer short.
    pub next_token: Option<String>,
}

/// The hot reader's logic.
pub struct HotReader<S> {
    store: S,
    max_response_bytes: usize,
}

/// Reads the request's shape and parameters.
pub fn parse_request(
    event: &Value,
) -> Result<(RequestShape, ReadRequest), (RequestShape, BadRequest)> {
    let Some(object) = event.as_object() else {
        return Err((
            RequestShape::Direct,
            BadRequest("the request must be a JSON object".into()),
        ));
    };
    let is_http = object.contains_key("queryStringParameters")
        || object.contains_key("requestContext")
        || object.contains_key("rawPath");
    let shape = if is_http {
        RequestShape::Http
    } else {
        RequestShape::Direct
    };
    let params = if is_http {
        match object.get("queryStringParameters") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => p.clone(),
            Some(_) => {
                return Err((
                    shape,
                    BadRequest("queryStringParameters must be an object".into()),
                ))
            }
        }
    } else {
        object.clone()
    };
    read_params(&params)
        .map(|r| (shape, r))
        .map_err(|e| (shape, e))
}

fn read_params(params: &Map<String, Value>) -> Result<ReadRequest, BadRequest> {
    let known = [FIELD_DEVICE_ID, PARAM_START, PARAM_END, PARAM_TOKEN];
    let unknown: Vec<&str> = params
        .keys()
        .map(String::as_str)
        .filter(|k| !known.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(BadRequest(format!(
            "unknown parameter(s) {}; allowed: iotDeviceId, startDate, endDate, nextToken",
            unknown.join(", ")
        )));
    }
    let text = |name: &str| -> Result<Option<String>, BadRequest> {
        match params.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
            Some(other) => Err(BadRequest(format!("{name} must be a string, got {other}"))),
        }
    };
    let device_id =
        text(FIELD_DEVICE_ID)?.ok_or_else(|| BadRequest("iotDeviceId is required".into()))?;
    let bound = |name: &str, end: RangeEnd| -> Result<Option<Timestamp>, BadRequest> {
        text(name)?
            .map(|s| {
                Timestamp::parse_bound(&s, end).map_err(|e| BadRequest(format!("{name}: {e}")))
            })
            .transpose()
    };
    let start = bound(PARAM_START, RangeEnd::Start)?;
    let end = bound(PARAM_END, RangeEnd::End)?;
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(BadRequest(format!("startDate {s} is after endDate {e}")));
        }
    }
    let after = text(PARAM_TOKEN)?
        .map(|t| decode_token(&t, &device_id))
        .transpose()?;
    Ok(ReadRequest {
        device_id,
        start,
        end,
        after,
    })
}

/// The continuation token: opaque to callers, bound to the device it was issued for.
pub fn encode_token(device_id: &str, after: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1\n{device_id}\n{after}"))
}

pub(crate) fn decode_token(token: &str, device_id: &str) -> Result<String, BadRequest> {
    let bad = || BadRequest("nextToken is not a token this reader issued".into());
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = raw.splitn(3, '\n');
    let (Some("v1"), Some(device), Some(after)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    if device != device_id {
        return Err(BadRequest(format!(
            "nextToken was issued for device {device}, not {device_id}"
        )));
    }
    Ok(after.to_string())
}

/// Bytes a record takes in the answer, counting the escaping it gets inside an HTTP body string.
fn answer_bytes(record_json: &str) -> usize {
    record_json.len()
        + record_json
            .bytes()
            .filter(|b| *b == b'"' || *b == b'\\')
            .count()
}

impl<S: HotStore> HotReader<S> {
    /// A reader over `store` whose answers stay below `max_response_bytes`.
    pub fn new(store: S, max_response_bytes: usize) -> Self {
        Self {
            store,
            max_response_bytes,
        }
    }

    /// Reads records page by page until the range ends or the next record would pass the cap.
    /// At least one record is returned per answer so a caller following tokens always advances.
    pub async fn read(&self, request: &ReadRequest) -> Result<ReadPage, CloudError> {
        // The envelope around the records: status, headers or `count`, and the token itself.
        let mut used = 256;
        let mut items: Vec<Map<String, Value>> = Vec::new();
        let mut after = request.after.clone();
        loop {
            // Ask only for about as many records as still fit (estimated from those seen so
            // far, plus one to detect the cut), so a small cap does not read 1 MB pages.
            let average = if items.is_empty() {
                MIN_RECORD_BYTES
            } else {
                (used / items.len()).max(MIN_RECORD_BYTES)
            };
            let fitting = self.max_response_bytes.saturating_sub(used) / average + 2;
            let query = DeviceQuery {
                device_id: request.device_id.clone(),
                range: TimeRange::inclusive(request.start, request.end),
                after: after.clone(),
                order: Order::Ascending,
                limit: Some(fitting.min(u32::MAX as usize) as u32),
            };
            let page = self.store.query_page(&query).await?;
            for item in page.items {
                let json = item.to_json();
                let size = answer_bytes(&Value::Object(json.clone()).to_string()) + 1;
                if !items.is_empty() && used + size > self.max_response_bytes {
                    let last = items
                        .last()
                        .and_then(|i| i.get("id"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let next_token = Some(encode_token(&request.device_id, last));
                    return Ok(ReadPage { items, next_token });
                }
                used += size;
                items.push(json);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => {
                    return Ok(ReadPage {
                        items,
                        next_token: None,
                    })
                }
            }
        }
    }

    /// Handles one event end to end: parses, reads, and shapes the answer (400 on bad input).
    pub async fn handle(&self, event: Value) -> Result<Value, CloudError> {
        let (shape, request) = match parse_request(&event) {
            Ok(ok) => ok,
            Err((shape, bad)) => {
                tracing::warn!(reason = %bad, "bad hot-reader request");
                return Ok(bad_request(shape, &bad));
            }
        };
        let span = tracing::info_span!("hot_read", device_id = %request.device_id);
        let page = self.read(&request).instrument(span).await?;
        tracing::debug!(
            count = page.items.len(),
            truncated = page.next_token.is_some(),
            "records read"
        );
        Ok(answer(shape, page))
    }
}

/// The 200 answer in the request's shape.
pub fn answer(shape: RequestShape, page: ReadPage) -> Value {
    let count = page.items.len();
    let items = Value::Array(page.items.into_iter().map(Value::Object).collect());
    match shape {
        RequestShape::Http => {
            let mut headers = json!({"content-type": "application/json"});
            if let (Some(token), Some(h)) = (&page.next_token, headers.as_object_mut()) {
                h.insert(NEXT_TOKEN_HEADER.into(), Value::String(token.clone()));
            }
            json!({"statusCode": 200, "headers": headers, "body": items.to_string()})
        }
        RequestShape::Direct => {
            json!({"items": items, "count": count, "nextToken": page.next_token})
        }
    }
}

/// The 400 answer in the request's shape.
pub fn bad_request(shape: RequestShape, bad: &BadRequest) -> Value {
    match shape {
        RequestShape::Http => json!({
            "statusCode": 400,
            "headers": {"content-type": "application/json"},
            "body": json!({"error": bad.0}).to_string(),
        }),
        RequestShape::Direct => json!({"statusCode": 400, "error": bad.0}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::in_memory::InMemoryHotStore;
    use crate::record::HotItem;

    async fn store_with(n: i64) -> InMemoryHotStore {
        let store = InMemoryHotStore::new(7);
        for i in 0..n {
            let item = HotItem {
                device_id: "s-1".into(),
                id: Timestamp::from_millis(1_700_000_000_000 + i * 1000).unwrap(),
                properties: json!({"t": i}).as_object().cloned().unwrap_or_default(),
            };
            store.put_item(&item).await.unwrap();
        }
        store
            .put_item(&HotItem {
                device_id: "s-2".into(),
                id: Timestamp::from_millis(1_700_000_000_000).unwrap(),
                properties: Map::new(),
            })
            .await
            .unwrap();
        store
    }

    #[tokio::test]
    async fn direct_invocation_without_dates_reads_the_whole_range_across_pages() {
        let reader = HotReader::new(store_with(50).await, 4_000_000);
        let out = reader.handle(json!({"iotDeviceId": "s-1"})).await.unwrap();
        assert_eq!(out["count"], 50);
        assert_eq!(out["nextToken"], Value::Null);
        let ids: Vec<&str> = out["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "oldest first");
    }

    #[tokio::test]
    async fn http_event_honours_dates_and_answers_with_a_body_array() {
        let reader = HotReader::new(store_with(50).await, 4_000_000);
        let start = Timestamp::from_millis(1_700_000_010_000)
            .unwrap()
            .canonical();
        let end = Timestamp::from_millis(1_700_000_019_000)
            .unwrap()
            .canonical();
        let event = json!({"version":"2.0","rawPath":"/","queryStringParameters":{"iotDeviceId":"s-1","startDate":start,"endDate":end}});
        let out = reader.handle(event).await.unwrap();
        assert_eq!(out["statusCode"], 200);
        let body: Vec<Value> = serde_json::from_str(out["body"].as_str().unwrap()).unwrap();
        assert_eq!(body.len(), 10, "both ends inclusive");
        assert_eq!(body[0]["id"], start);
        assert!(out["headers"].get(NEXT_TOKEN_HEADER).is_none());
    }

    #[tokio::test]
    async fn the_size_cap_yields_tokens_that_resume_without_gaps_or_repeats() {
        let reader = HotReader::new(store_with(50).await, 1024);
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut answers = 0;
        loop {
            let mut event = json!({"iotDeviceId": "s-1"});
            if let Some(t) = &token {
                event["nextToken"] = json!(t);
            }
            let out = reader.handle(event).await.unwrap();
            answers += 1;
            let text = out.to_string();
            assert!(text.len() <= 1024, "answer of {} bytes", text.len());
            for i in out["items"].as_array().unwrap() {
                seen.push(i["t"].as_i64().unwrap());
            }
            match out["nextToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert!(answers > 2);
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn bad_parameters_get_400_with_a_reason() {
        let token_for_other = encode_token("s-2", "2025-01-01T00:00:00.000Z");
        let cases = [
            (json!({}), "iotDeviceId is required"),
            (
                json!({"queryStringParameters": null}),
                "iotDeviceId is required",
            ),
            (
                json!({"iotDeviceId": "s-1", "startDate": "tuesday"}),
                "startDate",
            ),
            (
                json!({"iotDeviceId": "s-1", "startDate": "2025-02-01", "endDate": "2025-01-01"}),
                "is after endDate",
            ),
            (
                json!({"iotDeviceId": "s-1", "nextToken": "%%%"}),
                "nextToken is not a token",
            ),
            (
                json!({"iotDeviceId": "s-1", "nextToken": token_for_other}),
                "issued for device s-2",
            ),
            (
                json!({"iotDeviceId": "s-1", "startdate": "2025-01-01"}),
                "unknown parameter(s) startdate",
            ),
            (json!({"iotDeviceId": 5}), "must be a string"),
        ];
        for (event, reason) in cases {
            let (shape, bad) = parse_request(&event).unwrap_err();
            assert!(bad.0.contains(reason), "{event}: {}", bad.0);
            let answer = bad_request(shape, &bad);
            assert_eq!(answer["statusCode"], 400);
        }
    }
}
