//! The IoT data-plane shim: what `iot-data` `Publish` (`POST /topics/{topic}?qos=N`, body = the
//! payload) does on AWS, on 127.0.0.1 for the twin's local functions: the body is published to the
//! local broker on that topic, as the twin's service identity ([`IOT_DATA_IDENTITY`]). Topics
//! outside the twin's `<twin>/` prefix are refused with 403, as IoT refuses a publish its policy
//! does not allow. The functions get its URL as their iot-data endpoint ([`function_env`]).
//! Requests are not signature-checked: the listener is on loopback only, like the router's.

use crate::broker;
use crate::pki::{Pki, IOT_DATA_IDENTITY};
use crate::runner::{LocalService, ServiceContext, StartedService};
use crate::LocalError;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The service name of the shim in `runner.json`.
pub const IOT_DATA: &str = "iot-data";

/// The SDK's own endpoint override for the IoT data plane (aws-config reads
/// `AWS_ENDPOINT_URL_<SERVICE ID>`), set beside [`twin_functions::env_vars::IOT_DATA_ENDPOINT`]
/// so a client built from the environment alone reaches the shim too, not the emulator.
pub const SDK_ENDPOINT_VAR: &str = "AWS_ENDPOINT_URL_IOT_DATA_PLANE";

/// IoT Core's limit on a message's payload (128 KiB).
pub const MAX_PAYLOAD: usize = 128 * 1024;

/// How long `start` waits for the broker to accept the shim's connection.
const CONNECT_WITHIN: Duration = Duration::from_secs(15);

/// Reconnect backoff bounds when the broker goes away.
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The environment the twin's functions get so their iot-data client reaches the shim at `url`.
pub fn function_env(url: &str) -> Vec<(String, String)> {
    vec![
        (
            twin_functions::env_vars::IOT_DATA_ENDPOINT.to_string(),
            url.to_string(),
        ),
        (SDK_ENDPOINT_VAR.to_string(), url.to_string()),
    ]
}

/// Why a request is refused, as IoT's REST API names it (`x-amzn-ErrorType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// IoT's error code.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: String) -> Refusal {
        Refusal {
            status,
            code,
            message,
        }
    }
}

/// A `Publish` request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The topic (percent-decoded).
    pub topic: String,
    /// The QoS asked for (`qos`, 0 when absent, as IoT).
    pub qos: QoS,
}

/// Parses `method path?query` as IoT's `Publish` for twin `twin`: the topic must be one of the
/// twin's (`<twin>/...`) and not a filter (`+`, `#`), the QoS 0 or 1.
pub fn parse_publish(
    twin: &str,
    method: &http::Method,
    path_and_query: &str,
) -> Result<PublishRequest, Refusal> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let Some(raw_topic) = path.strip_prefix("/topics/") else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("{path}: the local IoT data-plane shim serves only Publish (POST /topics/{{topic}})"),
        ));
    };
    if method != http::Method::POST {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowedException",
            format!("{method} {path}: only POST (Publish) is served"),
        ));
    }
    let topic = crate::http_api::percent_decode(raw_topic, false);
    let mut qos = QoS::AtMostOnce;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "qos" {
            qos = match v {
                "0" => QoS::AtMostOnce,
                "1" => QoS::AtLeastOnce,
                other => {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestException",
                        format!("qos `{other}` on topic {topic}: IoT accepts 0 or 1"),
                    ))
                }
            };
        }
    }
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestException",
            format!("`{topic}` is not a topic one can publish to (empty or a filter with + or #)"),
        ));
    }
    let prefix = format!("{twin}/");
    if !topic.starts_with(&prefix) || topic.len() == prefix.len() {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            format!(
                "publishing to {topic} is not allowed: the twin's service identity may publish only on the twin's topics ({prefix}...)"
            ),
        ));
    }
    Ok(PublishRequest { topic, qos })
}

/// What the shim counts (for `local status` and tests).
#[derive(Debug, Default)]
pub struct ShimCounters {
    /// Messages handed to the broker connection.
    pub published: AtomicU64,
    /// Requests refused (bad topic, too large, broker away).
    pub refused: AtomicU64,
    /// Whether the broker connection is up.
    pub connected: AtomicBool,
}

struct Shim {
    twin: String,
    client: AsyncClient,
    counters: Arc<ShimCounters>,
}

fn respond(status: StatusCode, code: Option<&str>, body: String) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(code) = code {
        builder = builder.header("x-amzn-ErrorType", code);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn refuse(r: Refusal) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "message": r.message }).to_string();
    respond(r.status, Some(r.code), body)
}

impl Shim {
    async fn handle(&self, req: http::Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        let parsed = parse_publish(&self.twin, req.method(), &path);
        let publish = match parsed {
            Ok(p) => p,
            Err(r) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(status = %r.status, code = r.code, message = %r.message, "iot-data shim: refused");
                return refuse(r);
            }
        };
        let body = match Limited::new(req.into_body(), MAX_PAYLOAD).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return refuse(Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLargeException",
                    format!(
                        "the payload for {} was not read ({e}); IoT accepts at most {MAX_PAYLOAD} bytes",
                        publish.topic
                    ),
                ));
            }
        };
        if !self.counters.connected.load(Ordering::Relaxed) {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return refuse(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                format!(
                    "the local broker is not connected; {} was not published (retry; is `deployer local up` running?)",
                    publish.topic
                ),
            ));
        }
        match self
            .client
            .publish(publish.topic.clone(), publish.qos, false, body.to_vec())
            .await
        {
            Ok(()) => {
                self.counters.published.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(topic = %publish.topic, bytes = body.len(), "iot-data shim: published");
                respond(StatusCode::OK, None, "{}".into())
            }
            Err(e) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                refuse(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    format!("{} was not published: {e} (retry)", publish.topic),
                ))
            }
        }
    }
}

/// The shim as a runner service. Its listener is bound when it is made, so its URL is known
/// before the functions start (they get it in their environment).
pub struct IotDataService {
    twin: String,
    broker_port: u16,
    pki: Pki,
    listener: std::net::TcpListener,
    url: String,
    counters: Arc<ShimCounters>,
}

impl IotDataService {
    /// Binds a port on 127.0.0.1 for the shim of twin `twin`, publishing to the local broker on
    /// `broker_port` with the identity in `pki`.
    pub fn bind(twin: &str, broker_port: u16, pki: Pki) -> Result<IotDataService, LocalError> {
        let fail = |e: std::io::Error| LocalError::Service {
            name: IOT_DATA.into(),
            message: format!("cannot listen on 127.0.0.1: {e}"),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let port = listener.local_addr().map_err(fail)?.port();
        Ok(IotDataService {
            twin: twin.to_string(),
            broker_port,
            pki,
            listener,
            url: format!("http://127.0.0.1:{port}"),
            counters: Arc::new(ShimCounters::default()),
        })
    }

    /// The shim's URL (the functions' iot-data endpoint).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its counters, live while it runs.
    pub fn counters(&self) -> Arc<ShimCounters> {
        self.counters.clone()
    }
}

fn service_error(message: String) -> LocalError {
    LocalError::Service {
        name: IOT_DATA.into(),
        message,
    }
}

#[async_trait::async_trait]
impl LocalService for IotDataService {
    fn name(&self) -> String {
        IOT_DATA.into()
    }

    fn function_env(&self) -> Vec<(String, String)> {
        function_env(&self.url)
    }

    async fn start(self: Box<Self>, ctx: ServiceContext) -> Result<StartedService, LocalError> {
        let tls = broker::identity_tls(&self.pki, &self.pki.iot_data_cert, &self.pki.iot_data_key)?;
        let mut options = MqttOptions::new(IOT_DATA_IDENTITY, "127.0.0.1", self.broker_port);
        options
            .set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)))
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(15));
        let (client, mut eventloop) = AsyncClient::new(options, 256);
        let counters = self.counters.clone();
        // Ready only once the broker accepted the connection: a publish before would be refused.
        let deadline = Instant::now() + CONNECT_WITHIN;
        let mut delay = BACKOFF_FIRST;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "iot-data shim: broker not ready yet");
                    // Connect backoff while the broker starts.
                    tokio::time::sleep(delay.min(remaining)).await;
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
                Ok(Err(e)) => {
                    return Err(service_error(format!(
                        "the local broker on 127.0.0.1:{} refused the shim's connection as {IOT_DATA_IDENTITY}: {e} (run `deployer local up` again so its trust bundle holds the shim's certificate)",
                        self.broker_port
                    )))
                }
                Err(_) => {
                    return Err(service_error(format!(
                        "the local broker on 127.0.0.1:{} did not accept the shim's connection within {CONNECT_WITHIN:?}",
                        self.broker_port
                    )))
                }
            }
        }
        counters.connected.store(true, Ordering::Relaxed);
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .map_err(|e| service_error(format!("cannot listen on {}: {e}", self.url)))?;
        let shim = Arc::new(Shim {
            twin: self.twin.clone(),
            client,
            counters: counters.clone(),
        });
        let cancel = ctx.cancel.clone();
        let mqtt = {
            let cancel = cancel.clone();
            let counters = counters.clone();
            let port = self.broker_port;
            tokio::spawn(async move {
                let mut delay = BACKOFF_FIRST;
                loop {
                    let event = tokio::select! {
                        _ = cancel.cancelled() => break,
                        e = eventloop.poll() => e,
                    };
                    match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            counters.connected.store(true, Ordering::Relaxed);
                            delay = BACKOFF_FIRST;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            counters.connected.store(false, Ordering::Relaxed);
                            tracing::warn!(error = %e, "iot-data shim: broker 127.0.0.1:{port} connection lost");
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
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = cancel.cancelled() => break,
                    a = listener.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "iot-data shim: accept failed");
                            continue;
                        }
                    },
                };
                let shim = shim.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shim = shim.clone();
                        async move { Ok::<_, std::convert::Infallible>(shim.handle(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        r = conn => if let Err(e) = r {
                            tracing::debug!(error = %e, "iot-data shim: connection ended");
                        },
                    }
                });
            }
            let _ = mqtt.await;
            Ok(())
        });
        Ok(StartedService {
            name: IOT_DATA.into(),
            port: self.url.rsplit(':').next().and_then(|p| p.parse().ok()),
            status: format!(
                "IoT Publish for {}/... at {} → broker as {IOT_DATA_IDENTITY}",
                self.twin, self.url
            ),
            task,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Result<PublishRequest, Refusal> {
        parse_publish("t", &http::Method::POST, path)
    }

    #[test]
    fn a_twin_topic_is_accepted_with_its_qos_percent_decoded() {
        assert_eq!(
            parse("/topics/t%2Ffeedback%2Fd1?qos=1"),
            Ok(PublishRequest {
                topic: "t/feedback/d1".into(),
                qos: QoS::AtLeastOnce
            })
        );
        assert_eq!(
            parse("/topics/t/feedback/d1").map(|p| p.qos),
            Ok(QoS::AtMostOnce)
        );
    }

    #[test]
    fn a_foreign_topic_is_forbidden_like_a_policy_miss() {
        for path in [
            "/topics/other%2Ffeedback%2Fd1",
            "/topics/t",
            "/topics/t%2F",
            "/topics/tt%2Fx",
        ] {
            let r = parse(path).expect_err(path);
            assert_eq!(
                (r.status, r.code),
                (StatusCode::FORBIDDEN, "ForbiddenException"),
                "{path}"
            );
        }
    }

    #[test]
    fn filters_bad_qos_and_other_operations_are_refused() {
        assert_eq!(
            parse("/topics/t%2F%23").map_err(|r| r.status),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            parse("/topics/t%2Fx?qos=2").map_err(|r| r.status),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            parse("/things/x/shadow").map_err(|r| r.status),
            Err(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            parse_publish("t", &http::Method::GET, "/topics/t%2Fx").map_err(|r| r.status),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
    }

    #[test]
    fn functions_get_the_shim_as_their_iot_data_endpoint() {
        let env = function_env("http://127.0.0.1:1");
        assert!(env.contains(&("IOT_DATA_ENDPOINT".into(), "http://127.0.0.1:1".into())));
        assert!(env.contains(&(SDK_ENDPOINT_VAR.into(), "http://127.0.0.1:1".into())));
    }
}
