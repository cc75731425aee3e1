//! The topic rule bridge and the HTTP API stand-in against moto + mosquitto: a 2-device twin is
//! deployed on moto, `local up` starts the broker, a fake Lambda Invoke endpoint in this test
//! stands in for the router and records what it is asked to invoke.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use twin_local::rule::{Bridge, BridgeConfig, BridgeStatus};
use twin_local::LocalPlane;
use twin_simulator::tls::{DeviceCredentials, TlsContext};

/// One call the fake router received and what it answered.
#[derive(Debug, Clone)]
struct Call {
    path: String,
    invocation_type: String,
    body: serde_json::Value,
    answered: u16,
}

/// A fake Lambda Invoke endpoint: Event invokes get `event_status`; RequestResponse invokes get
/// a proxy answer (or a function error / a plain object, as the event's query asks).
#[derive(Default)]
struct FakeRouter {
    calls: Mutex<Vec<Call>>,
    event_status: AtomicU16,
}

impl FakeRouter {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    fn accepted(&self) -> Vec<serde_json::Value> {
        self.calls()
            .into_iter()
            .filter(|c| c.invocation_type == "Event" && c.answered == 202)
            .map(|c| c.body)
            .collect()
    }

    fn answer(&self, req: &http::request::Parts, body: &[u8]) -> http::Response<Full<Bytes>> {
        let invocation_type = req
            .headers
            .get("x-amz-invocation-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("RequestResponse")
            .to_string();
        let body: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let mut response = http::Response::builder();
        let (status, out) = if invocation_type == "Event" {
            (self.event_status.load(Ordering::SeqCst), String::new())
        } else {
            let query = body["rawQueryString"].as_str().unwrap_or_default();
            if query.contains("fail") {
                response = response.header("X-Amz-Function-Error", "Unhandled");
                (200, r#"{"errorMessage":"boom"}"#.to_string())
            } else if query.contains("plain") {
                (200, r#"{"rows":[1]}"#.to_string())
            } else {
                (
                    200,
                    serde_json::json!({"statusCode": 201, "headers": {"x-test": "yes"},
                        "body": "{\"rows\":[]}"})
                    .to_string(),
                )
            }
        };
        self.calls.lock().expect("calls").push(Call {
            path: req.uri.path().to_string(),
            invocation_type,
            body,
            answered: status,
        });
        response
            .status(status)
            .body(Full::new(Bytes::from(out)))
            .expect("response")
    }
}

/// Serves the fake router on a free port; returns its URL.
async fn fake_router(fake: Arc<FakeRouter>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let fake = fake.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let fake = fake.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = BodyExt::collect(body).await?.to_bytes();
                        Ok::<_, hyper::Error>(fake.answer(&parts, &body))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

/// A device connection; `acked` counts the broker's PUBACKs of its QoS 1 publishes.
struct Device {
    client: AsyncClient,
    acked: Arc<AtomicUsize>,
}

async fn device(plane: &LocalPlane, dir: &Path, port: u16, name: &str) -> Device {
    let d = dir.join(".deployer/devices").join(name);
    let creds = DeviceCredentials {
        device_id: name.to_string(),
        certificate: d.join("certificate.pem.crt"),
        private_key: d.join("private.pem.key"),
    };
    let tls = TlsContext::load(&plane.pki().ca_cert, port)
        .expect("local CA")
        .client_config(&creds)
        .expect("client TLS config");
    let mut options = MqttOptions::new(name, "127.0.0.1", port);
    options
        .set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)))
        .set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let acked = Arc::new(AtomicUsize::new(0));
    let counter = acked.clone();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let Event::Incoming(Packet::PubAck(_)) = event {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    Device { client, acked }
}

/// Polls `check` with backoff until it holds or `within` passes.
async fn until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    let mut delay = Duration::from_millis(5);
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(delay).await; // poll backoff
        delay = (delay * 2).min(Duration::from_millis(100));
    }
}

async fn publish(d: &Device, topic: &str, payload: &[u8]) {
    let before = d.acked.load(Ordering::SeqCst);
    d.client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_vec())
        .await
        .expect("publish");
    until(
        "the broker acknowledges the publish",
        Duration::from_secs(10),
        || d.acked.load(Ordering::SeqCst) > before,
    )
    .await;
}

/// A GET against the local HTTP API, optionally SigV4-signed for execute-api in us-east-1.
async fn get(url: &str, path_and_query: &str, sign: bool) -> (u16, http::HeaderMap, String) {
    let authority = url.trim_start_matches("http://").to_string();
    let mut req = http::Request::get(path_and_query)
        .header(http::header::HOST, &authority)
        .body(Full::new(Bytes::new()))
        .expect("request");
    if sign {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let identity =
            aws_credential_types::Credentials::new("AKIDLOCAL", "secret", None, None, "test")
                .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("execute-api")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .expect("signing params")
            .into();
        let full = format!("{url}{path_and_query}");
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        let signable = SignableRequest::new(
            "GET",
            &full,
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(b""),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        instructions.apply_to_request_http1x(&mut req);
    }
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .expect("connect to the HTTP API");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Stops the broker when the test ends, also when it fails (a panic would leave it running).
struct StopOnDrop(LocalPlane);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.down();
    }
}

fn status(counters: &twin_local::rule::BridgeCounters) -> BridgeStatus {
    counters.snapshot()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rule_bridge_delivers_every_message_once_and_the_http_api_serves_the_reader() {
    let moto = twin_testkit::aws_env_for_moto();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let twin = "local-br";
    support::write_twin(dir, twin, &["dev-a", "dev-b"]);
    let clients = support::clients(&moto.endpoint).await;
    support::deploy(dir, clients.clone(), support::Zips::StandIn).await;
    let plane = LocalPlane::new(dir, twin);
    let up = plane.up(&clients).await.expect("local up");
    let _stop = StopOnDrop(plane.clone());

    let fake = Arc::new(FakeRouter::default());
    fake.event_status.store(202, Ordering::SeqCst);
    let router = fake_router(fake.clone()).await;
    let rule = twin_local::registered::read_rule(&clients, twin)
        .await
        .expect("read the rule")
        .expect("the rule is deployed");
    assert!(rule.enabled);
    let bridge = Bridge::new(
        BridgeConfig {
            port: up.port,
            pki: plane.pki(),
            error_action: twin_local::rule::ErrorAction::of(&rule, clients.clone()),
            rule,
            publishers: up.trusted.clone(),
        },
        &router,
    )
    .expect("the deployed rule is applied");
    assert_eq!(bridge.rule().sql.from, format!("{twin}/iot-data/+"));
    let counters = bridge.counters();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(bridge.run(cancel.clone()));
    until("the bridge subscribes", Duration::from_secs(15), || {
        status(&counters).subscribed
    })
    .await;

    // A device's JSON message: exactly one Event invoke of the dispatcher, payload + device id.
    let a = device(&plane, dir, up.port, "dev-a").await;
    let topic_a = format!("{twin}/iot-data/dev-a");
    publish(&a, &topic_a, br#"{"temperature":21.5}"#).await;
    until("the first invoke", Duration::from_secs(10), || {
        fake.calls().len() == 1
    })
    .await;
    let call = &fake.calls()[0];
    assert_eq!(
        call.path,
        format!("/2015-03-31/functions/{twin}-dispatcher/invocations")
    );
    assert_eq!(call.invocation_type, "Event");
    assert_eq!(
        call.body,
        serde_json::json!({"temperature": 21.5, "topicDeviceId": "dev-a"})
    );

    // Not JSON: rejected at L1, never invoked. The marker after it is (messages go in order).
    publish(&a, &topic_a, b"\x01not json").await;
    publish(&a, &topic_a, br#"{"marker":1}"#).await;
    until("the marker", Duration::from_secs(10), || {
        fake.calls().len() == 2
    })
    .await;
    assert_eq!(fake.calls()[1].body["marker"], 1);
    let s = status(&counters);
    assert_eq!((s.delivered, s.rejected), (2, 1), "{s:?}");
    assert_eq!(s.rejected_by_reason.values().sum::<u64>(), 1, "{s:?}");
    assert!(
        s.rejected_by_reason.keys().any(|r| r.contains("not JSON")),
        "{s:?}"
    );

    // The router fails for a while: retried with backoff, delivered exactly once.
    fake.event_status.store(503, Ordering::SeqCst);
    publish(&a, &topic_a, br#"{"n":3}"#).await;
    until("three failed attempts", Duration::from_secs(10), || {
        fake.calls().iter().filter(|c| c.body["n"] == 3).count() >= 3
    })
    .await;
    fake.event_status.store(202, Ordering::SeqCst);
    until("the retried delivery", Duration::from_secs(15), || {
        fake.accepted().iter().any(|b| b["n"] == 3)
    })
    .await;
    publish(&a, &topic_a, br#"{"marker":2}"#).await;
    until("the second marker", Duration::from_secs(10), || {
        fake.accepted().iter().any(|b| b["marker"] == 2)
    })
    .await;
    assert_eq!(fake.accepted().iter().filter(|b| b["n"] == 3).count(), 1);
    assert!(status(&counters).invoke_retries >= 2);

    // The broker restarts while messages wait for the bridge: all arrive, none twice.
    fake.event_status.store(503, Ordering::SeqCst);
    let b = device(&plane, dir, up.port, "dev-b").await;
    let topic_b = format!("{twin}/iot-data/dev-b");
    for seq in 0..5 {
        publish(&b, &topic_b, format!(r#"{{"seq":{seq}}}"#).as_bytes()).await;
    }
    until(
        "the bridge is retrying the first",
        Duration::from_secs(10),
        || fake.calls().iter().any(|c| c.body["seq"] == 0),
    )
    .await;
    // SIGTERM (as `local down` sends) but keeping the state file, so `up` reuses the port the
    // bridge connects to.
    twin_local::broker::stop(up.pid, &plane.files().config).expect("stop the broker");
    let again = plane.up(&clients).await.expect("local up again");
    assert_eq!(again.port, up.port, "the broker keeps its port");
    fake.event_status.store(202, Ordering::SeqCst);
    until("every queued message", Duration::from_secs(30), || {
        let got = fake.accepted();
        (0..5).all(|seq| got.iter().any(|b| b["seq"] == seq))
    })
    .await;
    // Anything redelivered late would come before this marker.
    let b = device(&plane, dir, again.port, "dev-b").await;
    publish(&b, &topic_b, br#"{"marker":3}"#).await;
    until("the third marker", Duration::from_secs(15), || {
        fake.accepted().iter().any(|b| b["marker"] == 3)
    })
    .await;
    let got = fake.accepted();
    for seq in 0..5 {
        assert_eq!(
            got.iter().filter(|b| b["seq"] == seq).count(),
            1,
            "seq {seq} delivered once: {:?}",
            status(&counters)
        );
        assert!(got
            .iter()
            .any(|b| b["seq"] == seq && b["topicDeviceId"] == "dev-b"));
    }
    let s = status(&counters);
    assert!(s.reconnects >= 1, "{s:?}");
    assert!(s.connected, "{s:?}");

    // The Lambda action is refused for good (the function is gone): IoT's error message goes
    // to the rule's error action, L1's dead-letter queue, and `redrive` can read it back.
    fake.event_status.store(404, Ordering::SeqCst);
    publish(&b, &topic_b, br#"{"refused":1}"#).await;
    until("the error action", Duration::from_secs(15), || {
        status(&counters).to_error_action == 1
    })
    .await;
    fake.event_status.store(202, Ordering::SeqCst);
    let queue = clients
        .sqs
        .get_queue_url()
        .queue_name(format!("{twin}-l1-dead-letters"))
        .send()
        .await
        .expect("L1's queue")
        .queue_url()
        .expect("url")
        .to_string();
    let got = clients
        .sqs
        .receive_message()
        .queue_url(&queue)
        .wait_time_seconds(1)
        .send()
        .await
        .expect("receive");
    let bodies: Vec<&str> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let message: serde_json::Value = serde_json::from_str(bodies[0]).expect("JSON");
    assert_eq!(
        message["ruleName"],
        format!("{}", twin.replace('-', "_") + "_iot_data")
    );
    assert_eq!(message["topic"], topic_b);
    assert_eq!(message["failures"][0]["failedAction"], "LambdaAction");
    let replay = twin_aws::dead_letters::records::parse(bodies[0], twin).expect("replayable");
    assert_eq!(replay.function, format!("{twin}-dispatcher"));
    assert_eq!(
        replay.payload,
        serde_json::json!({"refused": 1, "topicDeviceId": "dev-b"})
    );

    // The HTTP API: read back from moto, served locally, refusing unsigned requests.
    let api = twin_local::http_api::read(&clients, twin)
        .await
        .expect("read the API")
        .expect("the API is deployed");
    assert_eq!(api.routes.len(), 1, "{api:?}");
    assert_eq!(api.routes[0].route_key, "GET /");
    assert_eq!(api.routes[0].authorization, "AWS_IAM");
    assert!(api.routes[0]
        .function_arn
        .ends_with(&format!(":function:{twin}-hot-reader")));
    let served = twin_local::http_api::serve(api.clone(), &router, cancel.clone())
        .await
        .expect("serve");
    let before = fake.calls().len();
    let (code, _, body) = get(&served.url, "/?device=dev-a", false).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("Missing Authentication Token"), "{body}");
    assert_eq!(
        fake.calls().len(),
        before,
        "an unsigned request reached the function"
    );

    let (code, headers, body) = get(&served.url, "/?device=dev-a&limit=5&limit=6", true).await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(headers["x-test"], "yes");
    assert_eq!(body, r#"{"rows":[]}"#);
    let call = fake
        .calls()
        .last()
        .cloned()
        .expect("the reader was invoked");
    assert_eq!(call.invocation_type, "RequestResponse");
    assert_eq!(
        call.path,
        format!("/2015-03-31/functions/{twin}-hot-reader/invocations")
    );
    let e = &call.body;
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "GET /");
    assert_eq!(e["rawPath"], "/");
    assert_eq!(e["rawQueryString"], "device=dev-a&limit=5&limit=6");
    assert_eq!(
        e["queryStringParameters"],
        serde_json::json!({"device": "dev-a", "limit": "5,6"})
    );
    assert_eq!(e["requestContext"]["http"]["method"], "GET");
    assert_eq!(e["requestContext"]["http"]["path"], "/");
    assert_eq!(e["requestContext"]["routeKey"], "GET /");
    assert_eq!(
        e["requestContext"]["authorizer"]["iam"]["accessKey"],
        "AKIDLOCAL"
    );
    assert_eq!(e["isBase64Encoded"], false);
    assert!(e["headers"]["authorization"]
        .as_str()
        .is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 Credential=AKIDLOCAL/")));
    assert!(
        e.get("body").is_none() && e.get("pathParameters").is_none(),
        "{e}"
    );

    let (code, headers, body) = get(&served.url, "/?plain=1", true).await;
    assert_eq!((code, body.as_str()), (200, r#"{"rows":[1]}"#));
    assert_eq!(headers["content-type"], "application/json");
    let (code, _, body) = get(&served.url, "/?fail=1", true).await;
    assert_eq!(
        (code, body.as_str()),
        (500, r#"{"message":"Internal Server Error"}"#)
    );
    let (code, _, _) = get(&served.url, "/elsewhere", true).await;
    assert_eq!(code, 404);

    cancel.cancel();
    run.await
        .expect("bridge task")
        .expect("bridge ends cleanly");
    served.task.await.expect("API task");
    plane.down().expect("local down");
}
