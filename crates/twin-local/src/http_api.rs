//! The hot reader's HTTP API, served locally: moto stores the API Gateway v2 HTTP API that deploy
//! created but serves nothing, so this reads its routes back (route keys, authorization type,
//! Lambda proxy integration) and serves them on 127.0.0.1 as API Gateway would: route matching,
//! IAM (SigV4) authorization refused when absent or malformed, the payload format 2.0 event, a
//! synchronous invoke through the local Lambda Invoke API, and the function's answer turned back
//! into the HTTP response.

use crate::invoke::{BadRouterUrl, InvocationType, Router, Unreachable};
use crate::LocalError;
use aws_sdk_apigatewayv2::error::DisplayErrorContext;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use twin_aws::AwsClients;
use twin_config::names;

/// API Gateway's integration timeout for HTTP APIs.
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(30);
/// API Gateway's request payload limit.
const MAX_BODY: usize = 10 * 1024 * 1024;
/// How far a request's X-Amz-Date may be from now (API Gateway allows 5 minutes).
const MAX_SKEW_SECS: i64 = 5 * 60;

/// One route of the API as deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRoute {
    /// `METHOD /path` (with `{param}` / `{proxy+}`), or `$default`.
    pub route_key: String,
    /// `NONE`, `AWS_IAM`, `JWT`, `CUSTOM`.
    pub authorization: String,
    /// The Lambda function its integration invokes.
    pub function_arn: String,
}

/// The deployed HTTP API, read back from API Gateway (the emulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpApiConfig {
    /// The API's id.
    pub api_id: String,
    /// Its name.
    pub name: String,
    /// The region SigV4 credentials must be scoped to.
    pub region: String,
    /// The account (reported in the event's requestContext).
    pub account_id: String,
    /// Its routes.
    pub routes: Vec<ApiRoute>,
}

/// Why the API cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum HttpApiError {
    /// A route cannot be served as API Gateway would serve it.
    #[error("route `{route}` of HTTP API {api} cannot be served locally: {reason}")]
    UnsupportedRoute {
        /// The API's name.
        api: String,
        /// The route key.
        route: String,
        /// Why.
        reason: String,
    },
    /// The router URL is unusable.
    #[error(transparent)]
    RouterUrl(#[from] BadRouterUrl),
    /// No port to listen on.
    #[error("cannot listen on 127.0.0.1 for HTTP API {api}: {message}")]
    Bind {
        /// The API's name.
        api: String,
        /// The OS error.
        message: String,
    },
}

/// The function ARN of a Lambda proxy integration URI (the ARN itself, or the
/// `arn:aws:apigateway:<region>:lambda:path/2015-03-31/functions/<arn>/invocations` form).
pub fn integration_function(uri: &str) -> Option<String> {
    if let Some((_, rest)) = uri.split_once("/functions/") {
        return rest
            .strip_suffix("/invocations")
            .map(str::to_string)
            .filter(|a| a.contains(":function:"));
    }
    uri.contains(":lambda:")
        .then(|| uri.to_string())
        .filter(|a| a.contains(":function:"))
}

fn emulator(call: &'static str) -> impl Fn(String) -> LocalError {
    move |message| LocalError::Emulator { call, message }
}

/// Reads the twin's HTTP API back from API Gateway; `None` if it is not deployed. A route whose
/// integration is not a Lambda proxy with payload format 2.0 is an error naming it.
pub async fn read(
    clients: &AwsClients,
    twin: &str,
) -> Result<Option<HttpApiConfig>, HttpApiReadError> {
    let name = names::http_api_name(twin);
    let apigw = &clients.apigw;
    let mut token: Option<String> = None;
    let api = loop {
        let out = apigw
            .get_apis()
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| emulator("GetApis")(DisplayErrorContext(&e).to_string()))?;
        if let Some(api) = out.items().iter().find(|a| a.name() == Some(name.as_str())) {
            break api.clone();
        }
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return Ok(None);
        }
    };
    let api_id = api.api_id().unwrap_or_default().to_string();
    let routes = apigw
        .get_routes()
        .api_id(&api_id)
        .send()
        .await
        .map_err(|e| emulator("GetRoutes")(DisplayErrorContext(&e).to_string()))?;
    let integrations = apigw
        .get_integrations()
        .api_id(&api_id)
        .send()
        .await
        .map_err(|e| emulator("GetIntegrations")(DisplayErrorContext(&e).to_string()))?;
    let mut out = Vec::new();
    for r in routes.items() {
        let key = r.route_key().unwrap_or_default().to_string();
        let unsupported = |reason: String| HttpApiError::UnsupportedRoute {
            api: name.clone(),
            route: key.clone(),
            reason,
        };
        let Some(id) = r.target().and_then(|t| t.strip_prefix("integrations/")) else {
            return Err(unsupported("it has no integration target".into()).into());
        };
        let Some(integration) = integrations
            .items()
            .iter()
            .find(|i| i.integration_id() == Some(id))
        else {
            return Err(unsupported(format!("its integration {id} does not exist")).into());
        };
        let kind = integration
            .integration_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default();
        if kind != "AWS_PROXY" {
            return Err(unsupported(format!(
                "its integration is {kind}, only Lambda proxy (AWS_PROXY) integrations are served"
            ))
            .into());
        }
        let format = integration.payload_format_version().unwrap_or("1.0");
        if format != "2.0" {
            return Err(unsupported(format!(
                "its integration uses payload format {format}, only 2.0 is served"
            ))
            .into());
        }
        let uri = integration.integration_uri().unwrap_or_default();
        let Some(function_arn) = integration_function(uri) else {
            return Err(unsupported(format!(
                "its integration URI `{uri}` is not a Lambda function"
            ))
            .into());
        };
        let authorization = r
            .authorization_type()
            .map(|a| a.as_str().to_string())
            .unwrap_or_else(|| "NONE".into());
        if authorization != "NONE" && authorization != "AWS_IAM" {
            return Err(unsupported(format!(
                "its authorization is {authorization}; only NONE and AWS_IAM are served"
            ))
            .into());
        }
        out.push(ApiRoute {
            route_key: key,
            authorization,
            function_arn,
        });
    }
    Ok(Some(HttpApiConfig {
        api_id,
        name,
        region: clients.region.clone(),
        account_id: clients.account_id.clone(),
        routes: out,
    }))
}

/// Why reading the API back failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpApiReadError {
    /// The emulator call failed.
    #[error(transparent)]
    Emulator(#[from] LocalError),
    /// The API as deployed cannot be served.
    #[error(transparent)]
    Unsupported(#[from] HttpApiError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Greedy(String),
}

#[derive(Debug, Clone)]
struct CompiledRoute {
    route: ApiRoute,
    /// `None` for `ANY`.
    method: Option<String>,
    /// `None` for `$default`.
    segments: Option<Vec<Segment>>,
}

fn compile(api: &str, route: &ApiRoute) -> Result<CompiledRoute, HttpApiError> {
    if route.route_key == "$default" {
        return Ok(CompiledRoute {
            route: route.clone(),
            method: None,
            segments: None,
        });
    }
    let unsupported = |reason: &str| HttpApiError::UnsupportedRoute {
        api: api.to_string(),
        route: route.route_key.clone(),
        reason: reason.to_string(),
    };
    let (method, path) = route
        .route_key
        .split_once(' ')
        .ok_or_else(|| unsupported("a route key is `METHOD /path` or `$default`"))?;
    if !path.starts_with('/') {
        return Err(unsupported("the path must start with `/`"));
    }
    let parts: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
    let mut segments = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        segments.push(
            match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                Some(name) => match name.strip_suffix('+') {
                    Some(g) if i + 1 == parts.len() => Segment::Greedy(g.to_string()),
                    Some(_) => return Err(unsupported("a greedy `{x+}` variable must come last")),
                    None => Segment::Param(name.to_string()),
                },
                None => Segment::Literal(p.to_string()),
            },
        );
    }
    Ok(CompiledRoute {
        route: route.clone(),
        method: (method != "ANY").then(|| method.to_string()),
        segments: Some(segments),
    })
}

/// How well a route matches: lower is more specific (API Gateway picks the most specific).
type Rank = (u8, usize, bool);

fn matches(
    r: &CompiledRoute,
    method: &str,
    parts: &[&str],
) -> Option<(Rank, BTreeMap<String, String>)> {
    if r.method.as_deref().is_some_and(|m| m != method) {
        return None;
    }
    let Some(segments) = &r.segments else {
        return Some(((3, 0, true), BTreeMap::new()));
    };
    let mut params = BTreeMap::new();
    let mut greedy = false;
    for (i, s) in segments.iter().enumerate() {
        match s {
            Segment::Literal(l) => {
                if parts.get(i) != Some(&l.as_str()) {
                    return None;
                }
            }
            Segment::Param(name) => {
                params.insert(name.clone(), percent_decode(parts.get(i)?, false));
            }
            Segment::Greedy(name) => {
                if parts.len() <= i {
                    return None;
                }
                params.insert(name.clone(), percent_decode(&parts[i..].join("/"), false));
                greedy = true;
            }
        }
    }
    if !greedy && parts.len() != segments.len() {
        return None;
    }
    let variables = segments
        .iter()
        .filter(|s| !matches!(s, Segment::Literal(_)))
        .count();
    Some(((u8::from(greedy), variables, r.method.is_none()), params))
}

pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a request is refused before its integration runs (403, as API Gateway answers).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    error_type: &'static str,
    message: String,
}

/// Checks the SigV4 `Authorization` header's shape for service `execute-api` in `region`;
/// returns the access key id. The signature itself cannot be checked: that needs the caller's
/// secret key, which neither moto nor this process has (moto accepts any credentials).
fn check_sigv4(
    headers: &HeaderMap,
    region: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, Refusal> {
    let incomplete = |message: String| Refusal {
        error_type: "IncompleteSignatureException",
        message,
    };
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(Refusal {
            error_type: "MissingAuthenticationTokenException",
            message: "Missing Authentication Token".into(),
        });
    };
    let value = value
        .to_str()
        .map_err(|_| incomplete("The Authorization header is not ASCII.".into()))?;
    let Some(rest) = value.strip_prefix("AWS4-HMAC-SHA256 ") else {
        let algorithm = value.split_whitespace().next().unwrap_or_default();
        return Err(incomplete(format!(
            "Unsupported Authorization Type: '{algorithm}' (expected AWS4-HMAC-SHA256)."
        )));
    };
    let mut fields: BTreeMap<&str, &str> = BTreeMap::new();
    for part in rest.split(',') {
        let part = part.trim();
        let Some((k, v)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{value}'."
            )));
        };
        fields.insert(k.trim(), v.trim());
    }
    let missing: String = ["Credential", "Signature", "SignedHeaders"]
        .iter()
        .filter(|k| !fields.contains_key(*k))
        .map(|k| format!("Authorization header requires '{k}' parameter. "))
        .collect();
    let date = headers
        .get("x-amz-date")
        .or_else(|| headers.get(http::header::DATE))
        .and_then(|v| v.to_str().ok());
    let missing = if date.is_none() {
        format!("{missing}Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ")
    } else {
        missing
    };
    if !missing.is_empty() {
        return Err(incomplete(format!("{}Authorization={value}", missing)));
    }
    let credential = fields.get("Credential").copied().unwrap_or_default();
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, day, scope_region, service, terminator] = scope.as_slice() else {
        return Err(incomplete(format!(
            "Credential should be of the form <access key>/<date>/<region>/execute-api/aws4_request, not '{credential}'."
        )));
    };
    if key_id.is_empty() {
        return Err(incomplete("Credential has no access key id.".into()));
    }
    if *scope_region != region {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region, not '{scope_region}'. "
        )));
    }
    if *service != "execute-api" {
        return Err(incomplete(
            "Credential should be scoped to correct service: 'execute-api'. ".into(),
        ));
    }
    if *terminator != "aws4_request" {
        return Err(incomplete(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
        )));
    }
    let signed: Vec<&str> = fields
        .get("SignedHeaders")
        .copied()
        .unwrap_or_default()
        .split(';')
        .collect();
    if !signed.contains(&"host") {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }
    if let Some(absent) = signed.iter().find(|h| !headers.contains_key(**h)) {
        return Err(incomplete(format!(
            "The signed header '{absent}' is not in the request."
        )));
    }
    let signature = fields.get("Signature").copied().unwrap_or_default();
    if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refusal {
            error_type: "InvalidSignatureException",
            message: "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.".into(),
        });
    }
    // x-amz-date is ISO 8601 basic (`20240101T000000Z`); Date is RFC 7231.
    let date = date.unwrap_or_default();
    let when = chrono::NaiveDateTime::parse_from_str(date, "%Y%m%dT%H%M%SZ")
        .map(|t| t.and_utc())
        .or_else(|_| chrono::DateTime::parse_from_rfc2822(date).map(|t| t.to_utc()))
        .map_err(|_| {
            incomplete(format!(
                "Date must be in ISO-8601 'basic format'. Got '{date}'."
            ))
        })?;
    let iso_day = when.format("%Y%m%d").to_string();
    if *day != iso_day {
        return Err(Refusal {
            error_type: "InvalidSignatureException",
            message: format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{day}' != '{iso_day}', from '{date}'."
            ),
        });
    }
    let skew = (now - when).num_seconds();
    if skew > MAX_SKEW_SECS {
        return Err(Refusal {
            error_type: "InvalidSignatureException",
            message: format!(
                "Signature expired: {date} is now earlier than {} ({} - 5 min.)",
                (now - chrono::Duration::seconds(MAX_SKEW_SECS)).format("%Y%m%dT%H%M%SZ"),
                now.format("%Y%m%dT%H%M%SZ")
            ),
        });
    }
    if -skew > MAX_SKEW_SECS {
        return Err(Refusal {
            error_type: "InvalidSignatureException",
            message: format!(
                "Signature not yet current: {date} is still later than {} ({} + 5 min.)",
                (now + chrono::Duration::seconds(MAX_SKEW_SECS)).format("%Y%m%dT%H%M%SZ"),
                now.format("%Y%m%dT%H%M%SZ")
            ),
        });
    }
    Ok(key_id.to_string())
}

/// Content types API Gateway passes as text; others are base64-encoded in the event.
fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let ct = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    ct.starts_with("text/")
        || ct == "application/json"
        || ct.ends_with("+json")
        || ct == "application/xml"
        || ct.ends_with("+xml")
        || ct == "application/javascript"
        || ct == "application/x-www-form-urlencoded"
}

/// What the event needs from one request.
struct RequestParts<'a> {
    method: &'a str,
    raw_path: &'a str,
    raw_query: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
    source_ip: String,
    request_id: String,
    access_key: Option<String>,
}

/// The payload format 2.0 event, as API Gateway builds it.
fn event(
    config: &HttpApiConfig,
    route_key: &str,
    params: &BTreeMap<String, String>,
    req: &RequestParts<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let mut headers: Map<String, Value> = Map::new();
    let mut cookies: Vec<Value> = Vec::new();
    for name in req.headers.keys() {
        let values: Vec<String> = req
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if name == http::header::COOKIE {
            // Payload 2.0 moves cookies out of the headers into their own list.
            cookies.extend(
                values
                    .iter()
                    .flat_map(|v| v.split(';'))
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_string())),
            );
            continue;
        }
        // Header names are lower-case already (http::HeaderName); repeats join with commas.
        headers.insert(name.as_str().to_string(), Value::String(values.join(",")));
    }
    let mut query: Map<String, Value> = Map::new();
    for pair in req.raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k, true), percent_decode(v, true));
        match query.get_mut(&k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                query.insert(k, Value::String(v));
            }
        }
    }
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let mut context = json!({
        "accountId": config.account_id,
        "apiId": config.api_id,
        // The local server's address stands in for `<api-id>.execute-api.<region>.amazonaws.com`.
        "domainName": host,
        "domainPrefix": host.split('.').next().unwrap_or_default(),
        "http": {
            "method": req.method,
            "path": percent_decode(req.raw_path, false),
            "protocol": "HTTP/1.1",
            "sourceIp": req.source_ip,
            "userAgent": req.headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default(),
        },
        "requestId": req.request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
        "timeEpoch": now.timestamp_millis(),
    });
    if let Some(key) = &req.access_key {
        // Only the access key is known locally: the rest needs IAM's view of the caller.
        context["authorizer"] = json!({"iam": {
            "accessKey": key,
            "accountId": config.account_id,
            "callerId": null,
            "cognitoIdentity": null,
            "principalOrgId": null,
            "userArn": null,
            "userId": null,
        }});
    }
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": req.raw_path,
        "rawQueryString": req.raw_query,
    });
    if !cookies.is_empty() {
        event["cookies"] = Value::Array(cookies);
    }
    event["headers"] = Value::Object(headers);
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    event["requestContext"] = context;
    let text = is_text(
        req.headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
    );
    if !req.body.is_empty() {
        event["body"] = match (text, std::str::from_utf8(req.body)) {
            (true, Ok(s)) => Value::String(s.to_string()),
            _ => Value::String(base64::engine::general_purpose::STANDARD.encode(req.body)),
        };
    }
    if !params.is_empty() {
        event["pathParameters"] = json!(params);
    }
    let plain = text && std::str::from_utf8(req.body).is_ok();
    event["isBase64Encoded"] = Value::Bool(!req.body.is_empty() && !plain);
    event
}

fn message(status: StatusCode, text: &str, error_type: Option<&str>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        json!({ "message": text }).to_string(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(t) = error_type.and_then(|t| HeaderValue::from_str(t).ok()) {
        r.headers_mut().insert("x-amzn-errortype", t);
    }
    r
}

fn internal_error() -> Response<Full<Bytes>> {
    message(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error",
        None,
    )
}

/// The HTTP response for a function's result, as API Gateway maps payload format 2.0 answers:
/// an object with `statusCode` is a proxy response; any other JSON is a 200 JSON body.
fn response_of(result: &[u8]) -> Option<Response<Full<Bytes>>> {
    let value: Value = serde_json::from_slice(result).ok()?;
    let proxy = value.as_object().filter(|o| o.contains_key("statusCode"));
    let Some(o) = proxy else {
        let body = match value {
            // A bare string is the body itself.
            Value::String(s) => s,
            other => other.to_string(),
        };
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Some(r);
    };
    let status = o
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())?;
    let body = match o.get("body") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let body = if o.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .ok()?,
        )
    } else {
        Bytes::from(body)
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    if let Some(headers) = o.get("headers").and_then(Value::as_object) {
        for (k, v) in headers {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let name = http::HeaderName::from_bytes(k.as_bytes()).ok()?;
            r.headers_mut()
                .insert(name, HeaderValue::from_str(&v).ok()?);
        }
    }
    if let Some(cookies) = o.get("cookies").and_then(Value::as_array) {
        for c in cookies.iter().filter_map(Value::as_str) {
            r.headers_mut()
                .append(http::header::SET_COOKIE, HeaderValue::from_str(c).ok()?);
        }
    }
    if !r.headers().contains_key(http::header::CONTENT_TYPE) {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Some(r)
}

struct Served {
    config: HttpApiConfig,
    routes: Vec<CompiledRoute>,
    router: Router,
    requests: AtomicU64,
}

impl Served {
    async fn handle(
        &self,
        req: hyper::Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Full<Bytes>> {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let now = chrono::Utc::now();
        let method = req.method().clone();
        let raw_path = req.uri().path().to_string();
        let raw_query = req.uri().query().unwrap_or_default().to_string();
        let parts: Vec<&str> = raw_path
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .collect();
        let best = self
            .routes
            .iter()
            .filter_map(|r| matches(r, method.as_str(), &parts).map(|(rank, p)| (rank, r, p)))
            .min_by_key(|(rank, _, _)| *rank);
        let Some((_, route, params)) = best else {
            return message(StatusCode::NOT_FOUND, "Not Found", None);
        };
        let access_key = if route.route.authorization == "AWS_IAM" {
            match check_sigv4(req.headers(), &self.config.region, now) {
                Ok(key) => Some(key),
                Err(r) => return message(StatusCode::FORBIDDEN, &r.message, Some(r.error_type)),
            }
        } else {
            None
        };
        let headers = req.headers().clone();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return message(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request Entity Too Large",
                    None,
                )
            }
        };
        let request_id = format!("local-{:x}-{n}", now.timestamp_millis());
        let parts = RequestParts {
            method: method.as_str(),
            raw_path: &raw_path,
            raw_query: &raw_query,
            headers: &headers,
            body: &body,
            source_ip: peer.ip().to_string(),
            request_id,
            access_key,
        };
        let event = event(&self.config, &route.route.route_key, &params, &parts, now);
        let answer = self
            .router
            .invoke(
                &route.route.function_arn,
                InvocationType::RequestResponse,
                Bytes::from(event.to_string()),
                INTEGRATION_TIMEOUT,
            )
            .await;
        match answer {
            Ok(a) if a.status == 200 && a.function_error.is_none() => {
                response_of(&a.body).unwrap_or_else(|| {
                    tracing::warn!(route = %route.route.route_key, "the function's answer is not a valid payload 2.0 response");
                    internal_error()
                })
            }
            Ok(a) => {
                tracing::warn!(route = %route.route.route_key, status = a.status, function_error = ?a.function_error, "the integration failed");
                internal_error()
            }
            Err(Unreachable::Exchange { message: m, .. }) if m.starts_with("no answer within") => {
                message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", None)
            }
            Err(e) => {
                tracing::warn!(route = %route.route.route_key, error = %e, "the integration is unreachable");
                internal_error()
            }
        }
    }
}

/// The API being served.
#[derive(Debug)]
pub struct RunningApi {
    /// Its URL, `http://127.0.0.1:PORT` (the stand-in for the API's invoke URL).
    pub url: String,
    /// The accept loop; it ends after the cancellation token fires.
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves the API on a free 127.0.0.1 port until `cancel`, invoking integrations through the
/// Lambda Invoke API at `router_url`; returns once it listens, with its URL.
pub async fn serve(
    config: HttpApiConfig,
    router_url: &str,
    cancel: CancellationToken,
) -> Result<RunningApi, HttpApiError> {
    let router = Router::parse(router_url)?;
    let routes = config
        .routes
        .iter()
        .map(|r| compile(&config.name, r))
        .collect::<Result<Vec<_>, _>>()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .and_then(|l| l.local_addr().map(|a| (l, a)))
        .map_err(|e| HttpApiError::Bind {
            api: config.name.clone(),
            message: e.to_string(),
        });
    let (listener, addr) = listener?;
    let served = Arc::new(Served {
        config,
        routes,
        router,
        requests: AtomicU64::new(0),
    });
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => break,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "HTTP API: accept failed");
                        continue;
                    }
                },
            };
            let served = served.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let served = served.clone();
                    async move { Ok::<_, std::convert::Infallible>(served.handle(req, peer).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    r = conn => if let Err(e) = r {
                        tracing::debug!(error = %e, "HTTP API: connection ended");
                    },
                }
            });
        }
    });
    Ok(RunningApi {
        url: format!("http://{addr}"),
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(key: &str, auth: &str) -> ApiRoute {
        ApiRoute {
            route_key: key.into(),
            authorization: auth.into(),
            function_arn: "arn:aws:lambda:us-east-1:1:function:f".into(),
        }
    }

    fn pick(
        routes: &[ApiRoute],
        method: &str,
        path: &str,
    ) -> Option<(String, BTreeMap<String, String>)> {
        let compiled: Vec<CompiledRoute> = routes
            .iter()
            .map(|r| compile("api", r).expect("compiles"))
            .collect();
        let parts: Vec<&str> = path.split('/').skip(1).filter(|s| !s.is_empty()).collect();
        compiled
            .iter()
            .filter_map(|r| matches(r, method, &parts).map(|(rank, p)| (rank, r, p)))
            .min_by_key(|(rank, _, _)| *rank)
            .map(|(_, r, p)| (r.route.route_key.clone(), p))
    }

    #[test]
    fn the_most_specific_route_matches() {
        let routes = [
            route("GET /", "AWS_IAM"),
            route("GET /devices/{id}", "NONE"),
            route("GET /devices/latest", "NONE"),
            route("ANY /files/{path+}", "NONE"),
            route("$default", "NONE"),
        ];
        assert_eq!(
            pick(&routes, "GET", "/").map(|r| r.0).as_deref(),
            Some("GET /")
        );
        assert_eq!(
            pick(&routes, "GET", "/devices/latest")
                .map(|r| r.0)
                .as_deref(),
            Some("GET /devices/latest")
        );
        let (key, params) = pick(&routes, "GET", "/devices/a%20b").expect("matches");
        assert_eq!(key, "GET /devices/{id}");
        assert_eq!(params.get("id").map(String::as_str), Some("a b"));
        let (key, params) = pick(&routes, "DELETE", "/files/x/y.txt").expect("matches");
        assert_eq!(key, "ANY /files/{path+}");
        assert_eq!(params.get("path").map(String::as_str), Some("x/y.txt"));
        assert_eq!(
            pick(&routes, "POST", "/").map(|r| r.0).as_deref(),
            Some("$default")
        );
        assert_eq!(pick(&routes[..1], "POST", "/"), None);
    }

    fn signed(auth: &str, date: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, HeaderValue::from_static("127.0.0.1:1"));
        h.insert("x-amz-date", HeaderValue::from_str(date).expect("date"));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(auth).expect("auth"),
        );
        h
    }

    #[test]
    fn sigv4_headers_are_checked_for_shape_scope_and_time() {
        let now = chrono::NaiveDateTime::parse_from_str("20240102T030405Z", "%Y%m%dT%H%M%SZ")
            .expect("time")
            .and_utc();
        let sig = "a".repeat(64);
        let good = format!("AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}");
        assert_eq!(
            check_sigv4(&signed(&good, "20240102T030000Z"), "us-east-1", now),
            Ok("AKID".into())
        );
        let refused = |auth: &str, date: &str| {
            check_sigv4(&signed(auth, date), "us-east-1", now)
                .expect_err("refused")
                .message
        };
        assert_eq!(
            check_sigv4(&HeaderMap::new(), "us-east-1", now)
                .expect_err("missing")
                .message,
            "Missing Authentication Token"
        );
        assert!(
            refused(&good.replace("us-east-1", "eu-west-1"), "20240102T030000Z")
                .contains("valid region, not 'eu-west-1'")
        );
        assert!(
            refused(&good.replace("execute-api", "lambda"), "20240102T030000Z")
                .contains("correct service: 'execute-api'")
        );
        assert!(refused(&good.replace("host;", ""), "20240102T030000Z").contains("'Host'"));
        assert!(refused(&good.replace(&sig, "xyz"), "20240102T030000Z").contains("signature"));
        assert!(refused(&good, "20240102T020000Z").contains("Signature expired"));
        assert!(refused(&good, "20240103T030000Z").contains("does not match"));
        assert!(refused("Basic dXNlcjpwdw==", "20240102T030000Z")
            .contains("Unsupported Authorization Type"));
        assert!(refused(
            "AWS4-HMAC-SHA256 Credential=AKID/20240102/us-east-1/execute-api/aws4_request",
            "20240102T030000Z"
        )
        .contains("requires 'Signature' parameter"));
    }

    #[test]
    fn function_answers_map_to_responses_as_payload_2_0_does() {
        let r = response_of(
            br#"{"statusCode":201,"headers":{"x-a":"1"},"cookies":["c=1"],"body":"hi"}"#,
        )
        .expect("proxy");
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.headers()["set-cookie"], "c=1");
        let r = response_of(br#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#)
            .expect("proxy");
        assert_eq!(r.status(), 200);
        let r = response_of(br#"{"rows":[]}"#).expect("plain");
        assert_eq!(
            (
                r.status().as_u16(),
                r.headers()["content-type"].to_str().ok()
            ),
            (200, Some("application/json"))
        );
        assert!(response_of(b"not json").is_none());
        assert!(response_of(br#"{"statusCode":"x"}"#).is_none());
    }

    #[test]
    fn integration_uris_name_their_function() {
        let arn = "arn:aws:lambda:us-east-1:1:function:t-hot-reader";
        assert_eq!(integration_function(arn).as_deref(), Some(arn));
        assert_eq!(
            integration_function(&format!(
                "arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations"
            ))
            .as_deref(),
            Some(arn)
        );
        assert_eq!(integration_function("http://example.com"), None);
    }
}
