//! IoT Hub's direct methods, locally: the hub's service REST call
//! `POST /twins/{device}/methods?api-version=...` (https, a bearer token from the local managed
//! identity for the hub's audience) becomes a method call to the device over the hub broker, and
//! the device's answer becomes the call's result, as IoT Hub does it:
//!
//! - the call is published to `$iothub/methods/POST/<method>/?$rid=<rid>` as the twin's service
//!   identity ([`IOT_DATA_IDENTITY`]); the answer comes on `$iothub/methods/res/<status>/?$rid=<rid>`
//!   and is returned as `{"status": <status>, "payload": <body>}`;
//! - a device that is not connected and subscribed to its methods gets 404 with errorCode 404103
//!   (DeviceNotOnline) at once, one that does not answer within `responseTimeoutInSeconds` 504
//!   with errorCode 504101 (GatewayTimeout).
//!
//! Departures, both forced by mosquitto standing in for the hub: (1) a topic reaches every
//! subscriber, while IoT Hub sends a call only to its device's session, so the request id is
//! `<device>/<n>` and the broker's ACL (`pattern read .../?$rid=%c/#`, see
//! [`crate::broker::render_direct_method_acl`]) delivers a call only to the device it names and
//! lets a device answer only its own calls; (2) the broker has no API that lists its sessions, so
//! whether a device is subscribed to its methods is read from the broker's own log (the
//! subscriptions and disconnections it records), on each call.

use crate::broker::{self, HUB_METHOD_REQUESTS};
use crate::pki::{Pki, IOT_DATA_IDENTITY};
use crate::LocalError;
use base64::Engine;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// The filter the service identity reads the devices' answers on.
pub const ANSWER_FILTER: &str = "$iothub/methods/res/#";
/// The audience of the hub's service API tokens (the scope without `/.default`).
pub const IOT_HUB_AUDIENCE: &str = "https://iothubs.azure.net";
/// IoT Hub's limits on `responseTimeoutInSeconds` (and its default).
const RESPONSE_TIMEOUT_MIN: u64 = 5;
const RESPONSE_TIMEOUT_MAX: u64 = 300;
const RESPONSE_TIMEOUT_DEFAULT: u64 = 30;
/// IoT Hub's limit on a method's payload (128 KiB), with room for the envelope.
const MAX_BODY: usize = 132 * 1024;
/// How long `start` waits for the broker to accept the service identity's subscription.
const CONNECT_WITHIN: Duration = Duration::from_secs(15);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The topic a call of `method` with request id `rid` is published on.
pub fn call_topic(method: &str, rid: &str) -> String {
    format!("{HUB_METHOD_REQUESTS}{method}/?$rid={rid}")
}

/// The status and request id of a device's answer on `topic`
/// (`$iothub/methods/res/<status>/?$rid=<rid>`).
pub fn parse_answer(topic: &str) -> Option<(u16, &str)> {
    let rest = topic.strip_prefix("$iothub/methods/res/")?;
    let (status, properties) = rest.split_once("/?")?;
    let status = status.parse().ok()?;
    let rid = properties
        .split('&')
        .find_map(|p| p.strip_prefix("$rid="))
        .filter(|r| !r.is_empty())?;
    Some((status, rid))
}

/// A direct method request as the hub's REST API takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodRequest {
    /// The device (percent-decoded from the path).
    pub device: String,
    /// `methodName`.
    pub method: String,
    /// `payload` (any JSON; null when absent).
    pub payload: Value,
    /// `responseTimeoutInSeconds`, within IoT Hub's limits.
    pub timeout: Duration,
}

/// An IoT Hub error answer: `{"errorCode": <code>, "message": ...}` with the hub's HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubError {
    /// The HTTP status.
    pub status: StatusCode,
    /// IoT Hub's six-digit errorCode (status × 1000 + a detail).
    pub code: u32,
    /// What is wrong and what to do.
    pub message: String,
}

impl HubError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> HubError {
        HubError {
            status,
            code,
            message: message.into(),
        }
    }

    fn body(&self) -> Value {
        json!({
            "errorCode": self.code,
            "trackingId": hex::encode(crate::azure_host::random_bytes()),
            "message": self.message,
            "info": {},
            "timestampUtc": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
    }
}

/// Parses `POST /twins/{device}/methods?api-version=...` and its JSON body.
pub fn parse_request(
    method: &http::Method,
    path_and_query: &str,
    body: &[u8],
) -> Result<MethodRequest, HubError> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let device = path
        .strip_prefix("/twins/")
        .and_then(|r| r.strip_suffix("/methods"))
        .filter(|d| !d.is_empty() && !d.contains('/'))
        .map(crate::azure_host::percent_decode)
        .ok_or_else(|| {
            HubError::new(
                StatusCode::NOT_FOUND,
                404001,
                format!("{path}: the local hub serves only direct methods (POST /twins/{{deviceId}}/methods)"),
            )
        })?;
    if method != http::Method::POST {
        return Err(HubError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            405001,
            format!("{method} {path}: a direct method is invoked with POST"),
        ));
    }
    if !query.split('&').any(|p| {
        p.strip_prefix("api-version=")
            .is_some_and(|v| !v.is_empty())
    }) {
        return Err(HubError::new(
            StatusCode::BAD_REQUEST,
            400004,
            "the api-version query parameter is required (e.g. api-version=2021-04-12)",
        ));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        HubError::new(
            StatusCode::BAD_REQUEST,
            400004,
            format!("the body of the direct method request to {device} is not JSON: {e}"),
        )
    })?;
    let name = v
        .get("methodName")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty() && !m.contains(['/', '+', '#', '?']))
        .ok_or_else(|| {
            HubError::new(
                StatusCode::BAD_REQUEST,
                400004,
                format!("the direct method request to {device} has no valid methodName"),
            )
        })?;
    let secs = match v.get("responseTimeoutInSeconds") {
        None | Some(Value::Null) => RESPONSE_TIMEOUT_DEFAULT,
        Some(t) => t
            .as_u64()
            .filter(|s| (RESPONSE_TIMEOUT_MIN..=RESPONSE_TIMEOUT_MAX).contains(s))
            .ok_or_else(|| {
                HubError::new(
                    StatusCode::BAD_REQUEST,
                    400027,
                    format!(
                        "responseTimeoutInSeconds must be between {RESPONSE_TIMEOUT_MIN} and {RESPONSE_TIMEOUT_MAX}"
                    ),
                )
            })?,
    };
    Ok(MethodRequest {
        device,
        method: name.to_string(),
        payload: v.get("payload").cloned().unwrap_or(Value::Null),
        timeout: Duration::from_secs(secs),
    })
}

/// Checks the bearer token as the local emulators check the local identity's tokens: a JWT for
/// the hub's audience, issued for `tenant`, not expired (signatures are not checked: the local
/// identity's tokens are unsigned and open nothing in a real cloud).
pub fn check_token(authorization: Option<&str>, tenant: &str) -> Result<(), HubError> {
    let unauthorized = |why: &str| {
        HubError::new(
            StatusCode::UNAUTHORIZED,
            401002,
            format!("Unauthorized: {why}"),
        )
    };
    let token = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .ok_or_else(|| {
            unauthorized("a bearer token from the app's managed identity is required")
        })?;
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| unauthorized("the bearer token is not a JWT"))?;
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if aud.trim_end_matches('/') != IOT_HUB_AUDIENCE {
        return Err(unauthorized(&format!(
            "the token is for {aud}, not IoT Hub ({IOT_HUB_AUDIENCE}); ask for scope {IOT_HUB_AUDIENCE}/.default"
        )));
    }
    let issuer = format!("https://sts.windows.net/{tenant}/");
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
        return Err(unauthorized(&format!(
            "the token was not issued by {issuer}"
        )));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    if claims.get("exp").and_then(Value::as_u64).unwrap_or(0) <= now {
        return Err(unauthorized("the token has expired"));
    }
    Ok(())
}

/// The devices subscribed to their direct methods, as the broker's debug log records them: a
/// `Received SUBSCRIBE from <client>` followed by the filter `\t$iothub/methods/POST/...` (or
/// the `subscribe` log type's `<client> <qos> <filter>`) adds one; an UNSUBSCRIBE of it, a new
/// connection of the same client (clean session), a disconnection or a socket error removes it.
/// mosquitto is single-threaded, so a SUBSCRIBE's filter lines follow it directly.
#[derive(Debug)]
pub struct MethodSubscribers {
    log: PathBuf,
    offset: u64,
    partial: String,
    subscribed: BTreeSet<String>,
    /// The client whose SUBSCRIBE (true) or UNSUBSCRIBE (false) the next filter lines belong to.
    listing: Option<(String, bool)>,
}

impl MethodSubscribers {
    /// Reads `log` from byte `offset` on (where the running broker's lines begin).
    pub fn new(log: &Path, offset: u64) -> MethodSubscribers {
        MethodSubscribers {
            log: log.to_path_buf(),
            offset,
            partial: String::new(),
            subscribed: BTreeSet::new(),
            listing: None,
        }
    }

    /// Whether `device` is subscribed, after reading what the broker logged since last time.
    pub fn is_subscribed(&mut self, device: &str) -> bool {
        self.refresh();
        self.subscribed.contains(device)
    }

    fn refresh(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.log) else {
            return;
        };
        let mut bytes = Vec::new();
        if f.seek(SeekFrom::Start(self.offset)).is_err() || f.read_to_end(&mut bytes).is_err() {
            return;
        }
        self.offset += bytes.len() as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let text = std::mem::take(&mut self.partial);
        let mut lines = text.split('\n').peekable();
        while let Some(line) = lines.next() {
            if lines.peek().is_none() {
                // Not ended by a newline yet: the rest of it comes with the next read.
                self.partial = line.to_string();
            } else {
                self.apply(line);
            }
        }
    }

    /// Applies one log line (`<unix time>: <message>`).
    pub fn apply(&mut self, line: &str) {
        let msg = line.split_once(": ").map_or(line, |(_, m)| m).trim_end();
        if let Some(filter) = msg.strip_prefix('\t') {
            if let Some((client, subscribe)) = &self.listing {
                if filter.starts_with(HUB_METHOD_REQUESTS) {
                    if *subscribe {
                        self.subscribed.insert(client.clone());
                    } else {
                        self.subscribed.remove(client);
                    }
                }
            }
            return;
        }
        self.listing = None;
        if let Some(id) = msg.strip_prefix("Received SUBSCRIBE from ") {
            self.listing = Some((id.to_string(), true));
        } else if let Some(id) = msg.strip_prefix("Received UNSUBSCRIBE from ") {
            self.listing = Some((id.to_string(), false));
        } else if let Some(rest) = msg.strip_prefix("New client connected from ") {
            if let Some(id) = rest
                .split_once(" as ")
                .and_then(|(_, r)| r.split(' ').next())
            {
                self.subscribed.remove(id);
            }
        } else if let Some(rest) = msg.strip_prefix("Socket error on client ") {
            if let Some((id, _)) = rest.split_once(',') {
                self.subscribed.remove(id);
            }
        } else if let Some(rest) = msg.strip_prefix("Client ") {
            if msg.contains("disconnect") || msg.contains("closed its connection") {
                if let Some(id) = rest.split(' ').next() {
                    self.subscribed.remove(id);
                }
            }
        } else {
            let parts: Vec<&str> = msg.split(' ').collect();
            if let [client, qos, filter] = parts[..] {
                if qos.chars().all(|c| c.is_ascii_digit())
                    && filter.starts_with(HUB_METHOD_REQUESTS)
                {
                    self.subscribed.insert(client.to_string());
                }
            }
        }
    }
}

/// What the local hub's method endpoint counts.
#[derive(Debug, Default)]
pub struct MethodCounters {
    /// Calls answered by the device.
    pub answered: AtomicU64,
    /// Calls refused because the device was not online (404103).
    pub not_online: AtomicU64,
    /// Calls the device did not answer in time (504101).
    pub timed_out: AtomicU64,
    /// Requests refused otherwise (bad request, no token).
    pub refused: AtomicU64,
}

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<(u16, Bytes)>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Hub {
    tenant: String,
    client: AsyncClient,
    waiting: Waiting,
    subscribers: Mutex<MethodSubscribers>,
    next_rid: AtomicU64,
    counters: Arc<MethodCounters>,
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

impl Hub {
    async fn handle(&self, req: http::Request<Incoming>) -> Response<Full<Bytes>> {
        match self.invoke(req).await {
            Ok(answer) => {
                self.counters.answered.fetch_add(1, Ordering::Relaxed);
                respond(StatusCode::OK, &answer)
            }
            Err(e) => {
                let counter = match e.code {
                    404103 => &self.counters.not_online,
                    504101 => &self.counters.timed_out,
                    _ => &self.counters.refused,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(status = %e.status, code = e.code, message = %e.message, "local hub: direct method not answered");
                respond(e.status, &e.body())
            }
        }
    }

    async fn invoke(&self, req: http::Request<Incoming>) -> Result<Value, HubError> {
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        check_token(auth.as_deref(), &self.tenant)?;
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        let method = req.method().clone();
        let body = Limited::new(req.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                HubError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    413001,
                    format!(
                        "the request body was not read ({e}); a method payload is at most 128 KiB"
                    ),
                )
            })?
            .to_bytes();
        let call = parse_request(&method, &path, &body)?;
        if !lock(&self.subscribers).is_subscribed(&call.device) {
            return Err(HubError::new(
                StatusCode::NOT_FOUND,
                404103,
                format!(
                    "Timed out waiting for device {} to connect: it is not connected to the local hub or not subscribed to its direct methods",
                    call.device
                ),
            ));
        }
        let n = self.next_rid.fetch_add(1, Ordering::Relaxed);
        // The device's id first: the broker's ACL delivers the call to that device only.
        let rid = format!("{}/{n:x}", call.device);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(rid.clone(), tx);
        let payload = serde_json::to_vec(&call.payload).unwrap_or_else(|_| b"null".to_vec());
        if let Err(e) = self
            .client
            .publish(
                call_topic(&call.method, &rid),
                QoS::AtMostOnce,
                false,
                payload,
            )
            .await
        {
            lock(&self.waiting).remove(&rid);
            return Err(HubError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                503001,
                format!("the call to {} was not sent: {e} (retry)", call.device),
            ));
        }
        let answer = tokio::time::timeout(call.timeout, rx).await;
        lock(&self.waiting).remove(&rid);
        match answer {
            Ok(Ok((status, body))) => {
                // A body that is not JSON is returned as a string, as the hub does.
                let payload = serde_json::from_slice::<Value>(&body)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
                Ok(json!({"status": status, "payload": payload}))
            }
            _ => Err(HubError::new(
                StatusCode::GATEWAY_TIMEOUT,
                504101,
                format!(
                    "Timed out waiting for the response from device {} to {} within {:?}",
                    call.device, call.method, call.timeout
                ),
            )),
        }
    }
}

/// The hub's direct method endpoint, running.
pub struct DirectMethodService {
    url: String,
    counters: Arc<MethodCounters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DirectMethodService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn service_error(message: String) -> LocalError {
    LocalError::Service {
        name: "iot-hub-methods".into(),
        message,
    }
}

impl DirectMethodService {
    /// Connects to the hub broker on `broker_port` as the service identity of `pki`, subscribes
    /// to the answers, and serves the REST call over https on 127.0.0.1 until `cancel`; tokens
    /// must name `tenant`. Subscriptions are read from the broker's `log` from byte `log_start`.
    pub async fn start(
        broker_port: u16,
        pki: &Pki,
        log: &Path,
        log_start: u64,
        tenant: &str,
        cancel: CancellationToken,
    ) -> Result<DirectMethodService, LocalError> {
        let tls = pki.https_server_config()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| service_error(format!("cannot listen on 127.0.0.1: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| service_error(format!("no local address: {e}")))?
            .port();
        let client_tls = broker::identity_tls(pki, &pki.iot_data_cert, &pki.iot_data_key)?;
        let mut options = MqttOptions::new(IOT_DATA_IDENTITY, "127.0.0.1", broker_port);
        options
            .set_transport(Transport::Tls(TlsConfiguration::Rustls(client_tls)))
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(15));
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        // Ready only once the answers' subscription is granted: a call before would lose its
        // answer.
        let deadline = Instant::now() + CONNECT_WITHIN;
        let mut delay = BACKOFF_FIRST;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    client
                        .subscribe(ANSWER_FILTER, QoS::AtMostOnce)
                        .await
                        .map_err(|e| service_error(format!("cannot subscribe to {ANSWER_FILTER}: {e}")))?;
                }
                Ok(Ok(Event::Incoming(Packet::SubAck(ack)))) => {
                    if ack
                        .return_codes
                        .contains(&rumqttc::SubscribeReasonCode::Failure)
                    {
                        return Err(service_error(format!(
                            "the hub broker refused {IOT_DATA_IDENTITY} the subscription to {ANSWER_FILTER} (its ACL)"
                        )));
                    }
                    break;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "local hub methods: broker not ready yet");
                    // Connect backoff while the broker starts.
                    tokio::time::sleep(delay.min(remaining)).await;
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
                Ok(Err(e)) => {
                    return Err(service_error(format!(
                        "the hub broker on 127.0.0.1:{broker_port} refused {IOT_DATA_IDENTITY}: {e} (run the plane again so its trust bundle holds the service certificate)"
                    )))
                }
                Err(_) => {
                    return Err(service_error(format!(
                        "the hub broker on 127.0.0.1:{broker_port} did not accept {IOT_DATA_IDENTITY}'s subscription within {CONNECT_WITHIN:?}"
                    )))
                }
            }
        }
        let waiting: Waiting = Arc::default();
        let counters = Arc::new(MethodCounters::default());
        let hub = Arc::new(Hub {
            tenant: tenant.to_string(),
            client: client.clone(),
            waiting: waiting.clone(),
            subscribers: Mutex::new(MethodSubscribers::new(log, log_start)),
            next_rid: AtomicU64::new(1),
            counters: counters.clone(),
        });
        let mqtt = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let mut delay = BACKOFF_FIRST;
                loop {
                    let event = tokio::select! {
                        _ = cancel.cancelled() => break,
                        e = eventloop.poll() => e,
                    };
                    match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            delay = BACKOFF_FIRST;
                            // A clean session: the answers' subscription is made again.
                            if let Err(e) = client.try_subscribe(ANSWER_FILTER, QoS::AtMostOnce) {
                                tracing::warn!(error = %e, "local hub methods: cannot subscribe to the answers again");
                            }
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let Some((status, rid)) = parse_answer(&p.topic) else {
                                continue;
                            };
                            match lock(&waiting).remove(rid) {
                                Some(tx) => {
                                    let _ = tx.send((status, p.payload.clone()));
                                }
                                // Late (the call timed out) or for a call never made.
                                None => tracing::debug!(
                                    rid,
                                    "local hub methods: an answer nobody waits for"
                                ),
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "local hub methods: broker 127.0.0.1:{broker_port} connection lost");
                            // Reconnect backoff: the broker restarts or is gone; poll() reconnects.
                            tokio::select! {
                                _ = cancel.cancelled() => break,
                                _ = tokio::time::sleep(delay) => {}
                            }
                            delay = (delay * 2).min(BACKOFF_MAX);
                        }
                    }
                }
            })
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = cancel.cancelled() => break,
                    a = listener.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "local hub methods: accept failed");
                            continue;
                        }
                    },
                };
                let (hub, acceptor, cancel) = (hub.clone(), acceptor.clone(), cancel.clone());
                tokio::spawn(async move {
                    let stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(error = %e, "local hub methods: TLS handshake failed");
                            return;
                        }
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let hub = hub.clone();
                        async move { Ok::<_, std::convert::Infallible>(hub.handle(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        r = conn => if let Err(e) = r {
                            tracing::debug!(error = %e, "local hub methods: connection ended");
                        },
                    }
                });
            }
            let _ = mqtt.await;
        });
        Ok(DirectMethodService {
            url: format!("https://127.0.0.1:{port}"),
            counters,
            task,
        })
    }

    /// The endpoint's base URL (what the functions get as the hub's host name).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its counters.
    pub fn counters(&self) -> Arc<MethodCounters> {
        self.counters.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn a_call_and_its_answer_share_the_request_id() {
        assert_eq!(
            call_topic("feedback", "dev-0/1f"),
            "$iothub/methods/POST/feedback/?$rid=dev-0/1f"
        );
        assert_eq!(
            parse_answer("$iothub/methods/res/200/?$rid=dev-0/1f"),
            Some((200, "dev-0/1f"))
        );
        assert_eq!(parse_answer("$iothub/methods/res/x/?$rid=1"), None);
        assert_eq!(parse_answer("$iothub/methods/res/200/?$rid="), None);
        assert_eq!(parse_answer("$iothub/methods/POST/m/?$rid=1"), None);
    }

    #[test]
    fn the_rest_call_names_device_method_payload_and_timeout() {
        let r = parse_request(
            &http::Method::POST,
            "/twins/dev%2D0/methods?api-version=2021-04-12",
            &body(json!({"methodName": "feedback", "payload": "too hot", "responseTimeoutInSeconds": 10})),
        )
        .expect("a call");
        assert_eq!(r.device, "dev-0");
        assert_eq!(r.method, "feedback");
        assert_eq!(r.payload, json!("too hot"));
        assert_eq!(r.timeout, Duration::from_secs(10));
        let default = parse_request(
            &http::Method::POST,
            "/twins/d/methods?api-version=2021-04-12",
            &body(json!({"methodName": "m"})),
        )
        .expect("a call");
        assert_eq!(default.timeout, Duration::from_secs(30));
        assert_eq!(default.payload, Value::Null);
    }

    #[test]
    fn bad_calls_are_refused_with_the_hubs_codes() {
        let post = http::Method::POST;
        let ok_path = "/twins/d/methods?api-version=2021-04-12";
        let cases: Vec<(http::Method, &str, Vec<u8>, u32)> = vec![
            (
                post.clone(),
                "/devices/d",
                body(json!({"methodName": "m"})),
                404001,
            ),
            (
                http::Method::GET,
                ok_path,
                body(json!({"methodName": "m"})),
                405001,
            ),
            (
                post.clone(),
                "/twins/d/methods",
                body(json!({"methodName": "m"})),
                400004,
            ),
            (post.clone(), ok_path, b"not json".to_vec(), 400004),
            (
                post.clone(),
                ok_path,
                body(json!({"methodName": "a/#"})),
                400004,
            ),
            (
                post.clone(),
                ok_path,
                body(json!({"methodName": "m", "responseTimeoutInSeconds": 1})),
                400027,
            ),
        ];
        for (m, path, b, code) in cases {
            let e = parse_request(&m, path, &b).expect_err(path);
            assert_eq!(e.code, code, "{m} {path}: {}", e.message);
            assert_eq!(u32::from(e.status.as_u16()), code / 1000, "{path}");
        }
    }

    fn token(claims: Value) -> String {
        let b = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!("Bearer {}.{}.local", b(&json!({"alg": "none"})), b(&claims))
    }

    #[test]
    fn only_a_live_token_of_the_tenant_for_iot_hub_is_accepted() {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        let good =
            json!({"aud": IOT_HUB_AUDIENCE, "iss": "https://sts.windows.net/t1/", "exp": exp});
        assert!(check_token(Some(&token(good.clone())), "t1").is_ok());
        let mut storage = good.clone();
        storage["aud"] = json!("https://storage.azure.com");
        let mut expired = good.clone();
        expired["exp"] = json!(1);
        for (auth, why) in [
            (None, "a bearer token"),
            (Some("Bearer nope".to_string()), "not a JWT"),
            (Some(token(storage)), "not IoT Hub"),
            (Some(token(expired)), "expired"),
            (Some(token(good)), "not issued by"),
        ] {
            let tenant = if why == "not issued by" { "t2" } else { "t1" };
            let e = check_token(auth.as_deref(), tenant).expect_err(why);
            assert_eq!(e.status, StatusCode::UNAUTHORIZED);
            assert!(e.message.contains(why), "{why}: {}", e.message);
        }
    }

    #[test]
    fn a_device_is_online_for_methods_from_its_subscription_to_its_disconnection() {
        let mut s = MethodSubscribers::new(Path::new("/nonexistent"), 0);
        let online = |s: &MethodSubscribers, d: &str| s.subscribed.contains(d);
        for line in [
            "1: New client connected from 127.0.0.1:41712 as dev-0 (p2, c1, k30, u'dev-0').",
            "1: Received SUBSCRIBE from dev-0",
            "1: \t$iothub/methods/POST/# (QoS 0)",
            "1: Sending SUBACK to dev-0",
            "1: Received SUBSCRIBE from dev-1",
            "1: \tdevices/dev-1/messages/events/# (QoS 1)",
            "1: dev-2 0 $iothub/methods/POST/#",
        ] {
            s.apply(line);
        }
        assert!(online(&s, "dev-0"));
        assert!(
            !online(&s, "dev-1"),
            "another subscription is not a method one"
        );
        assert!(
            online(&s, "dev-2"),
            "the subscribe log type's line counts too"
        );
        s.apply("1: Received UNSUBSCRIBE from dev-2");
        s.apply("1: \t$iothub/methods/POST/#");
        assert!(!online(&s, "dev-2"));
        // A filter line outside a SUBSCRIBE is nobody's.
        s.apply("1: \t$iothub/methods/POST/# (QoS 0)");
        assert!(!online(&s, "dev-2"));
        s.apply("2: Client dev-0 disconnected.");
        assert!(!online(&s, "dev-0"));
        for (line, gone) in [
            ("3: Socket error on client dev-0, disconnecting.", true),
            ("3: Client dev-0 closed its connection.", true),
            ("3: Client dev-0 has exceeded timeout, disconnecting.", true),
            ("3: New client connected from 127.0.0.1:1 as dev-0 (p2, c1, k30).", true),
            ("3: Received PUBLISH from dev-0 (d0, q1, r0, m1, 'devices/dev-0/messages/events/', ... (9 bytes))", false),
        ] {
            s.apply("3: dev-0 0 $iothub/methods/POST/#");
            s.apply(line);
            assert_eq!(!online(&s, "dev-0"), gone, "{line}");
        }
    }

    #[test]
    fn the_log_is_read_incrementally_and_a_partial_line_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mosquitto.log");
        std::fs::write(
            &log,
            "0: Received SUBSCRIBE from dev-9\n0: \t$iothub/methods/POST/#\n",
        )
        .unwrap();
        let start = std::fs::metadata(&log).unwrap().len();
        let mut s = MethodSubscribers::new(&log, start);
        assert!(
            !s.is_subscribed("dev-9"),
            "a previous broker's lines are not read"
        );
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(
            &mut f,
            b"1: Received SUBSCRIBE from dev-0\n1: \t$iothub/meth",
        )
        .unwrap();
        assert!(!s.is_subscribed("dev-0"));
        std::io::Write::write_all(&mut f, b"ods/POST/# (QoS 0)\n").unwrap();
        assert!(s.is_subscribed("dev-0"));
    }
}
