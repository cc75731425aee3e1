//! The Lambda API front: invocations of the functions we run go to cargo-lambda's emulator
//! (synchronously, or queued in the background for `Event`), everything else (the control plane,
//! functions we do not run) is forwarded unchanged to the emulator. An SDK client whose Lambda
//! endpoint is this router sees the emulator plus real invocations.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Largest request body accepted (Lambda's synchronous payload limit is 6 MB).
pub const MAX_BODY: usize = 6 * 1024 * 1024 + 1024;

/// `Event` invocations waiting per function at most; beyond, Lambda-like throttling (429).
/// Lambda itself queues asynchronous invocations without limit for the caller and throttles
/// only their execution, so the queue is deep: a burst must wait, not fail.
pub const EVENT_QUEUE: usize = 100_000;

/// Retries of an asynchronous invocation whose function returned an error (Lambda's default
/// `MaximumRetryAttempts`).
pub const EVENT_FUNCTION_RETRIES: u32 = 2;

/// Delays before those retries. Lambda waits about one and then two minutes; locally the same
/// shape in seconds, so a test or a demo sees the retry without waiting minutes.
const EVENT_RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(2)];

/// How long an asynchronous invocation that cannot be delivered (the runtime busy, unreachable
/// or timing out) is kept and tried again; Lambda keeps such events up to six hours.
pub const EVENT_MAX_AGE: Duration = Duration::from_secs(600);

/// One queued asynchronous invocation.
#[derive(Debug, Clone)]
struct QueuedEvent {
    payload: Bytes,
    /// Function errors so far.
    function_errors: u32,
    /// Delivery failures so far (for the backoff).
    delivery_failures: u32,
    /// When the caller handed it over.
    enqueued: std::time::Instant,
}

/// A function the router invokes for real.
#[derive(Debug, Clone)]
pub struct Routed {
    /// Its deployed name.
    pub name: String,
    /// Its ARN (named in the on-failure records).
    pub arn: String,
    /// How long a synchronous invocation may take (the deployed timeout, plus a margin).
    pub timeout: Duration,
    /// Background workers for `Event` invocations (its instance count).
    pub workers: usize,
    /// Retries of a failed `Event` invocation (its event invoke config, else Lambda's 2).
    pub retries: u32,
    /// Oldest an `Event` invocation may get (its event invoke config, else [`EVENT_MAX_AGE`]).
    pub max_age: Duration,
    /// Where an `Event` invocation that failed for good goes (its on-failure destination).
    pub on_failure: Option<OnFailure>,
}

/// An on-failure destination: an SQS queue of the emulator, by ARN (its URL is asked of SQS).
#[derive(Debug, Clone)]
pub struct OnFailure {
    /// The queue's ARN as the event invoke config names it.
    pub queue_arn: String,
    /// Clients of the emulator.
    pub clients: Arc<twin_aws::AwsClients>,
}

/// Why an asynchronous invocation failed for good (`requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCondition {
    /// The function returned an error on every attempt.
    RetriesExhausted,
    /// The event got older than the maximum age before it could run.
    EventAgeExceeded,
}

/// Lambda's on-failure invocation record (the shape Lambda sends to a destination).
pub fn failure_record(
    function_arn: &str,
    payload: &[u8],
    condition: FailureCondition,
    attempts: u32,
    error: Option<&[u8]>,
) -> serde_json::Value {
    let as_json = |b: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(b)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(b).into_owned()))
    };
    let mut record = serde_json::json!({
        "version": "1.0",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "requestContext": {
            "requestId": format!("local-{:016x}", rand_id()),
            "functionArn": format!("{function_arn}:$LATEST"),
            "condition": match condition {
                FailureCondition::RetriesExhausted => "RetriesExhausted",
                FailureCondition::EventAgeExceeded => "EventAgeExceeded",
            },
            "approximateInvokeCount": attempts,
        },
        "requestPayload": as_json(payload),
    });
    if let Some(e) = error {
        record["responseContext"] = serde_json::json!({
            "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled",
        });
        record["responsePayload"] = as_json(e);
    }
    record
}

/// A request id that differs between records (no randomness crate here: time and a counter).
fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(48)
}

/// Sends an on-failure record to the destination, a few times with backoff; a record that
/// cannot be sent is logged (Lambda counts it as a `DestinationDeliveryFailures`).
async fn send_failure(f: &Routed, record: serde_json::Value) {
    let Some(dest) = &f.on_failure else {
        tracing::warn!(function = %f.name, "asynchronous invocation dropped: it failed for good and the function has no on-failure destination");
        return;
    };
    let body = record.to_string();
    let mut delay = Duration::from_millis(100);
    let mut last = String::new();
    for _ in 0..4 {
        let sent = async {
            let url = twin_aws::dead_letters::queue_url_of_arn(&dest.clients, &dest.queue_arn)
                .await?
                .ok_or_else(|| {
                    twin_engine::CloudError::fatal(
                        "AWS.SimpleQueueService.NonExistentQueue",
                        format!("the on-failure queue {} does not exist", dest.queue_arn),
                    )
                })?;
            twin_aws::dead_letters::send(&dest.clients, &url, &body).await
        }
        .await;
        match sent {
            Ok(()) => {
                tracing::info!(function = %f.name, queue = %dest.queue_arn, "asynchronous invocation failed for good; its record is in the on-failure queue");
                return;
            }
            Err(e) if e.class.is_retryable() => last = e.to_string(),
            Err(e) => {
                last = e.to_string();
                break;
            }
        }
        tokio::time::sleep(delay).await; // backoff between delivery attempts
        delay *= 2;
    }
    tracing::warn!(function = %f.name, queue = %dest.queue_arn, error = %last, "the on-failure record could not be delivered");
}

/// Where the router sends what.
#[derive(Debug, Clone)]
pub struct Upstreams {
    /// The emulator (`host:port`, plain HTTP).
    pub emulator: String,
    /// cargo-lambda's port on 127.0.0.1.
    pub runtime_port: u16,
}

/// The emulator's `host:port` from its URL; only plain HTTP emulators are forwarded to.
pub fn emulator_authority(endpoint: &str) -> Result<String, crate::LocalError> {
    let rest = endpoint
        .strip_prefix("http://")
        .ok_or_else(|| crate::LocalError::Router(format!("AWS_ENDPOINT_URL `{endpoint}` is not an http:// URL: the local router only forwards to a plain-HTTP emulator")))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(crate::LocalError::Router(format!(
            "AWS_ENDPOINT_URL `{endpoint}` names no host"
        )));
    }
    Ok(if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    })
}

struct State {
    upstreams: Upstreams,
    functions: BTreeMap<String, Routed>,
    queues: BTreeMap<String, mpsc::Sender<QueuedEvent>>,
}

/// The router's response body.
pub type Body = Full<Bytes>;

/// Binds nothing itself: serves `listener` until `cancel`, with `Event` workers per function.
pub async fn serve(
    listener: TcpListener,
    upstreams: Upstreams,
    functions: Vec<Routed>,
    cancel: CancellationToken,
) {
    let mut queues = BTreeMap::new();
    let mut by_name = BTreeMap::new();
    let mut workers = Vec::new();
    for f in functions {
        let (tx, rx) = mpsc::channel::<QueuedEvent>(EVENT_QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..f.workers.max(1) {
            workers.push(tokio::spawn(event_worker(
                upstreams.runtime_port,
                f.clone(),
                rx.clone(),
                tx.clone(),
                cancel.clone(),
            )));
        }
        queues.insert(f.name.clone(), tx);
        by_name.insert(f.name.clone(), f);
    }
    let state = Arc::new(State {
        upstreams,
        functions: by_name,
        queues,
    });
    loop {
        let (stream, _) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "router accept failed");
                    continue;
                }
            },
        };
        let state = state.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = cancel.cancelled() => {}
            }
        });
    }
    for w in workers {
        w.abort();
    }
}

/// The function an invocation path names: `/2015-03-31/functions/{name or ARN}/invocations`,
/// percent-decoded, the name taken from an ARN (`...:function:<name>[:qualifier]`).
pub fn invoked_function(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/2015-03-31/functions/")?;
    let raw = rest.strip_suffix("/invocations")?;
    let decoded = percent_decode(raw);
    if decoded.is_empty() || decoded.contains('/') {
        return None;
    }
    let name = match decoded.split_once("function:") {
        Some((_, after)) => after.split(':').next().unwrap_or_default().to_string(),
        None => decoded.split(':').next().unwrap_or_default().to_string(),
    };
    Some(name).filter(|n| !n.is_empty())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn aws_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"Type": "User", "message": message, "__type": code}).to_string();
    Response::builder()
        .status(status)
        .header("x-amzn-ErrorType", code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let routed = (req.method() == Method::POST)
        .then(|| invoked_function(&path))
        .flatten()
        .and_then(|n| state.functions.get(&n).cloned());
    let Some(function) = routed else {
        return forward(&state.upstreams.emulator, req).await;
    };
    let invocation_type = req
        .headers()
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return aws_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                &format!("the request body could not be read or exceeds {MAX_BODY} bytes: {e}"),
            )
        }
    };
    match invocation_type.as_str() {
        "DryRun" => with_version(Response::builder().status(StatusCode::NO_CONTENT))
            .body(Full::new(Bytes::new()))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
        "Event" => {
            let Some(queue) = state.queues.get(&function.name) else {
                return aws_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceException",
                    "no event queue",
                );
            };
            let event = QueuedEvent {
                payload: body,
                function_errors: 0,
                delivery_failures: 0,
                enqueued: std::time::Instant::now(),
            };
            match queue.try_send(event) {
                Ok(()) => with_version(Response::builder().status(StatusCode::ACCEPTED))
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))),
                Err(_) => aws_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    &format!(
                        "Rate Exceeded: {} already has {EVENT_QUEUE} queued event invocations in the local runner",
                        function.name
                    ),
                ),
            }
        }
        "RequestResponse" => match invoke(state.upstreams.runtime_port, &function, body).await {
            Ok(outcome) => outcome.into_response(),
            Err(message) => aws_error(StatusCode::BAD_GATEWAY, "ServiceException", &message),
        },
        other => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            &format!("unknown X-Amz-Invocation-Type `{other}` (Event, RequestResponse or DryRun)"),
        ),
    }
}

fn with_version(b: hyper::http::response::Builder) -> hyper::http::response::Builder {
    b.header("X-Amz-Executed-Version", "$LATEST")
}

/// What one synchronous invocation gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The function's answer (its result or its error document).
    pub body: Bytes,
    /// Whether it is an error the function reported.
    pub function_error: bool,
}

impl Outcome {
    /// As Lambda answers: 200, with `X-Amz-Function-Error: Unhandled` for a function error.
    fn into_response(self) -> Response<Body> {
        let mut b = with_version(Response::builder().status(StatusCode::OK))
            .header("content-type", "application/json");
        if self.function_error {
            b = b.header("X-Amz-Function-Error", "Unhandled");
        }
        b.body(Full::new(self.body))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }
}

/// Reads cargo-lambda's answer: 200 is the function's result; 500 carrying the function's error
/// document (`errorType`/`errorMessage`, what the runtime client posts to `/error`) is a function
/// error; anything else is the emulator failing, reported as such.
pub fn outcome_of(status: StatusCode, body: Bytes) -> Result<Outcome, String> {
    if status == StatusCode::OK {
        return Ok(Outcome {
            body,
            function_error: false,
        });
    }
    let is_function_error = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .is_some_and(|v| v.get("errorType").is_some() || v.get("errorMessage").is_some());
    if status == StatusCode::INTERNAL_SERVER_ERROR && is_function_error {
        return Ok(Outcome {
            body,
            function_error: true,
        });
    }
    Err(format!(
        "cargo-lambda's runtime emulator answered {status}: {}",
        String::from_utf8_lossy(&body)
    ))
}

/// One synchronous invocation through cargo-lambda, bounded by the function's timeout.
async fn invoke(port: u16, f: &Routed, payload: Bytes) -> Result<Outcome, String> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("/2015-03-31/functions/{}/invocations", f.name))
        .header("host", format!("127.0.0.1:{port}"))
        .header("content-type", "application/json")
        .body(Full::new(payload))
        .map_err(|e| e.to_string())?;
    let sent = tokio::time::timeout(f.timeout, send(&format!("127.0.0.1:{port}"), req)).await;
    match sent {
        Err(_) => Ok(Outcome {
            body: Bytes::from(
                serde_json::json!({
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": format!("Task timed out after {:.2} seconds", f.timeout.as_secs_f64()),
                })
                .to_string(),
            ),
            function_error: true,
        }),
        Ok(Err(e)) => Err(format!("cannot reach cargo-lambda on 127.0.0.1:{port}: {e}")),
        Ok(Ok((status, _, body))) => outcome_of(status, body),
    }
}

/// One HTTP/1 exchange on a fresh connection; the whole answer is read.
async fn send(
    authority: &str,
    req: Request<Body>,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), String> {
    let stream = TcpStream::connect(authority)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let resp = sender.send_request(req).await.map_err(|e| e.to_string());
    let out = match resp {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            body.collect()
                .await
                .map(|b| (parts.status, parts.headers, b.to_bytes()))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    driver.abort();
    out
}

/// Forwards the request unchanged (but for `Host`) to the emulator and relays its answer.
async fn forward(emulator: &str, req: Request<Incoming>) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY * 2).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return aws_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestTooLargeException",
                &format!("cannot read the request body: {e}"),
            )
        }
    };
    if let Ok(host) = emulator.parse() {
        parts.headers.insert(hyper::header::HOST, host);
    }
    // The path and query only: the emulator is reached on a connection of its own.
    if let Some(pq) = parts.uri.path_and_query().cloned() {
        if let Ok(uri) = pq.as_str().parse() {
            parts.uri = uri;
        }
    }
    match send(emulator, Request::from_parts(parts, Full::new(body))).await {
        Ok((status, headers, body)) => {
            let mut resp = Response::new(Full::new(body));
            *resp.status_mut() = status;
            *resp.headers_mut() = headers;
            // The body was read whole: its framing is ours now.
            resp.headers_mut().remove(hyper::header::TRANSFER_ENCODING);
            resp
        }
        Err(e) => aws_error(
            StatusCode::BAD_GATEWAY,
            "ServiceException",
            &format!("the local router cannot reach the emulator at {emulator}: {e}"),
        ),
    }
}

/// What to do with an asynchronous invocation after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AfterAttempt {
    /// It ran successfully.
    Done,
    /// It failed on every attempt: its retries are spent.
    Failed,
    /// Try it again after this long.
    RetryAfter(Duration),
    /// Given up: too old to deliver.
    Expired,
}

/// Lambda's asynchronous retry rules: a function error is retried `retries` times (the
/// function's event invoke config, Lambda's default [`EVENT_FUNCTION_RETRIES`]) with growing
/// delays; a delivery failure (throttled, unreachable, timed out) is retried with backoff until
/// the event is `max_age` old.
fn after_attempt(
    event: &QueuedEvent,
    outcome: &Result<bool, String>,
    age: Duration,
    retries: u32,
    max_age: Duration,
) -> AfterAttempt {
    match outcome {
        Ok(false) => AfterAttempt::Done,
        Ok(true) if event.function_errors >= retries => AfterAttempt::Failed,
        Ok(true) if age >= max_age => AfterAttempt::Expired,
        Ok(true) => {
            let i = (event.function_errors as usize).min(EVENT_RETRY_DELAYS.len() - 1);
            AfterAttempt::RetryAfter(EVENT_RETRY_DELAYS[i])
        }
        Err(_) if age >= max_age => AfterAttempt::Expired,
        Err(_) => {
            let exp = event.delivery_failures.min(6);
            AfterAttempt::RetryAfter(
                Duration::from_millis(100u64 << exp).min(Duration::from_secs(5)),
            )
        }
    }
}

/// Runs queued `Event` invocations one at a time (one worker per instance) and retries them as
/// Lambda does ([`after_attempt`]); a retry waits in its own task, not in the worker.
async fn event_worker(
    port: u16,
    f: Routed,
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<QueuedEvent>>>,
    tx: mpsc::Sender<QueuedEvent>,
    cancel: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            next = async { rx.lock().await.recv().await } => next,
        };
        let Some(mut event) = next else { return };
        let mut last_error = None;
        let outcome = match invoke(port, &f, event.payload.clone()).await {
            Ok(o) if o.function_error => {
                tracing::warn!(
                    function = %f.name,
                    attempt = event.function_errors + 1,
                    error = %String::from_utf8_lossy(&o.body),
                    "asynchronous invocation failed"
                );
                last_error = Some(o.body);
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) => {
                tracing::debug!(function = %f.name, error = %e, "asynchronous invocation not delivered; retrying");
                Err(e)
            }
        };
        let attempts = event.function_errors + u32::from(outcome.is_ok());
        match after_attempt(
            &event,
            &outcome,
            event.enqueued.elapsed(),
            f.retries,
            f.max_age,
        ) {
            AfterAttempt::Done => {}
            AfterAttempt::Failed => {
                let record = failure_record(
                    &f.arn,
                    &event.payload,
                    FailureCondition::RetriesExhausted,
                    attempts,
                    last_error.as_deref(),
                );
                send_failure(&f, record).await;
            }
            AfterAttempt::Expired => {
                tracing::warn!(
                    function = %f.name,
                    age_s = event.enqueued.elapsed().as_secs(),
                    "asynchronous invocation given up: older than the maximum event age"
                );
                let record = failure_record(
                    &f.arn,
                    &event.payload,
                    FailureCondition::EventAgeExceeded,
                    attempts,
                    last_error.as_deref(),
                );
                send_failure(&f, record).await;
            }
            AfterAttempt::RetryAfter(delay) => {
                match outcome {
                    Ok(_) => event.function_errors += 1,
                    Err(_) => event.delivery_failures += 1,
                }
                let tx = tx.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = tokio::time::sleep(delay) => {
                            // The queue is only full under a flood; then the retry waits its turn.
                            let _ = tx.send(event).await;
                        }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asynchronous_invocations_are_retried_as_lambda_retries_them() {
        let fresh = |function_errors, delivery_failures| QueuedEvent {
            payload: Bytes::new(),
            function_errors,
            delivery_failures,
            enqueued: std::time::Instant::now(),
        };
        let after = |e: &QueuedEvent, o: &Result<bool, String>, age: Duration| {
            after_attempt(e, o, age, EVENT_FUNCTION_RETRIES, EVENT_MAX_AGE)
        };
        assert_eq!(
            after(&fresh(0, 0), &Ok(false), Duration::ZERO),
            AfterAttempt::Done
        );
        assert_eq!(
            after(&fresh(0, 0), &Ok(true), Duration::ZERO),
            AfterAttempt::RetryAfter(Duration::from_secs(1))
        );
        assert_eq!(
            after(&fresh(1, 0), &Ok(true), Duration::ZERO),
            AfterAttempt::RetryAfter(Duration::from_secs(2))
        );
        assert_eq!(
            after(&fresh(2, 0), &Ok(true), Duration::ZERO),
            AfterAttempt::Failed,
            "two retries, then the error stands"
        );
        assert_eq!(
            after_attempt(&fresh(0, 0), &Ok(true), Duration::ZERO, 0, EVENT_MAX_AGE),
            AfterAttempt::Failed,
            "the event invoke config's retry count is honoured"
        );
        assert_eq!(
            after_attempt(
                &fresh(0, 0),
                &Ok(true),
                Duration::from_secs(61),
                2,
                Duration::from_secs(60)
            ),
            AfterAttempt::Expired,
            "and its maximum age"
        );
        assert_eq!(
            after(&fresh(0, 0), &Err("busy".into()), Duration::ZERO),
            AfterAttempt::RetryAfter(Duration::from_millis(100))
        );
        assert_eq!(
            after(&fresh(0, 9), &Err("busy".into()), Duration::ZERO),
            AfterAttempt::RetryAfter(Duration::from_secs(5))
        );
        assert_eq!(
            after(&fresh(0, 3), &Err("busy".into()), EVENT_MAX_AGE),
            AfterAttempt::Expired
        );
    }

    #[test]
    fn the_on_failure_record_has_lambdas_shape() {
        let r = failure_record(
            "arn:aws:lambda:us-east-1:1:function:t-persister",
            br#"{"a":1}"#,
            FailureCondition::RetriesExhausted,
            3,
            Some(br#"{"errorMessage":"boom"}"#),
        );
        assert_eq!(
            r["requestContext"]["functionArn"],
            "arn:aws:lambda:us-east-1:1:function:t-persister:$LATEST"
        );
        assert_eq!(r["requestContext"]["condition"], "RetriesExhausted");
        assert_eq!(r["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(r["requestPayload"], serde_json::json!({"a": 1}));
        assert_eq!(r["responsePayload"]["errorMessage"], "boom");
        // What redrive reads back from it.
        let replay = twin_aws::dead_letters::records::parse(&r.to_string(), "t").expect("parses");
        assert_eq!(replay.function, "t-persister");
        assert_eq!(replay.payload, serde_json::json!({"a": 1}));
    }

    #[test]
    fn names_come_from_paths_and_arns() {
        let p = |s: &str| invoked_function(s);
        assert_eq!(
            p("/2015-03-31/functions/t-dispatcher/invocations").as_deref(),
            Some("t-dispatcher")
        );
        assert_eq!(
            p("/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3At-persister/invocations").as_deref(),
            Some("t-persister")
        );
        assert_eq!(
            p("/2015-03-31/functions/arn:aws:lambda:us-east-1:1:function:t-x:$LATEST/invocations")
                .as_deref(),
            Some("t-x")
        );
        assert_eq!(
            p("/2015-03-31/functions/t-x:prod/invocations").as_deref(),
            Some("t-x")
        );
        assert_eq!(p("/2015-03-31/functions/t-x"), None);
        assert_eq!(p("/2015-03-31/functions//invocations"), None);
    }

    #[test]
    fn a_function_error_is_told_from_an_emulator_failure() {
        let ok = outcome_of(StatusCode::OK, Bytes::from_static(b"[]")).expect("ok");
        assert!(!ok.function_error);
        let err = outcome_of(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(br#"{"errorType":"x","errorMessage":"boom"}"#),
        )
        .expect("function error");
        assert!(err.function_error);
        let broken = outcome_of(
            StatusCode::INTERNAL_SERVER_ERROR,
            Bytes::from_static(br#"{"type":"https://httpstatuses.com/500","status":500}"#),
        );
        assert!(broken.is_err());
    }

    #[test]
    fn the_emulator_authority_needs_plain_http() {
        assert_eq!(
            emulator_authority("http://127.0.0.1:5000").expect("ok"),
            "127.0.0.1:5000"
        );
        assert_eq!(emulator_authority("http://moto/").expect("ok"), "moto:80");
        assert!(emulator_authority("https://x").is_err());
    }
}
