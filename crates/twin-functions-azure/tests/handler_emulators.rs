//! The custom handler over HTTP, with requests shaped as the Functions host sends them (no host
//! runs here: its Core Tools download the host at install), against the real storage emulators:
//! the Cosmos DB emulator (hot) and Azurite (cold, archive).

mod support;

use base64::Engine;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use support::AzureTwin;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use twin_functions::boundary::{
    BoundaryDeadLetters, BoundaryEnvelope, BoundarySecret, BoundarySender, BoundaryTransport,
    Pause, RemoteObjectStore, RetryPolicy, SignedRequest, TransportReply,
};
use twin_functions::catalogue::DeviceCatalogue;
use twin_functions::hot_store::{DeviceQuery, HotStore, Order, TimeRange};
use twin_functions::hot_to_cold::HotToColdMover;
use twin_functions::in_memory::InMemoryHotStore;
use twin_functions::lease::DEFAULT_LEASE_SECONDS;
use twin_functions::object_store::ObjectStore;
use twin_functions::object_store::StorageTier;
use twin_functions::persister::Persister;
use twin_functions::settings::{CommonSettings, HotToColdSettings, LogLevel};
use twin_functions::Timestamp;
use twin_functions::{Clock, CloudError, FixedClock};
use twin_functions_azure::app::settings::{CosmosLocation, HandlerSettings};
use twin_functions_azure::app::AppFunction;
use twin_functions_azure::handler::server::serve;
use twin_functions_azure::handler::stores::HotHandle;
use twin_functions_azure::handler::{Handler, Stores};
use twin_functions_azure::CosmosHotStore;

fn catalogue() -> DeviceCatalogue {
    serde_json::from_value(json!({
        "sharedProcessor": "processor",
        "devices": {
            "s-1": {"properties": [{"name": "temperature", "dataType": "DOUBLE"}]},
            "s-2": {"properties": [{"name": "temperature", "dataType": "DOUBLE"}]},
        }
    }))
    .expect("catalogue")
}

/// The app settings the deployer would write for this twin (the stores themselves are the
/// emulators' clients, handed over through the test-only `Stores::prebuilt`).
fn settings(twin: &AzureTwin, extra: &[(&str, &str)]) -> HandlerSettings {
    let cosmos = twin_testkit::azure::cosmos();
    let azurite = twin_testkit::azure::azurite();
    let mut env: HashMap<String, String> = [
        ("TWIN_NAME", "it"),
        ("LOG_LEVEL", "DEBUG"),
        ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-00000000c1d0"),
        ("COSMOS_ENDPOINT", cosmos.endpoint.as_str()),
        ("COSMOS_DATABASE", support::DATABASE),
        ("HOT_TABLE", twin.hot.as_str()),
        ("BLOB_ENDPOINT", azurite.blob_endpoint.as_str()),
        ("COLD_BUCKET", twin.cold.as_str()),
        ("ARCHIVE_BUCKET", twin.archive.as_str()),
        ("HOT_STORAGE_DAYS", "3"),
        ("COLD_STORAGE_DAYS", "1"),
        // The cold ingress is in the app too; these tests never call it.
        ("BOUNDARY_NONCE_CONTAINER", "unused-nonces"),
        (
            "BOUNDARY_SECRET_HOT_TO_COLD",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        ),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    HandlerSettings::from_lookup(&AppFunction::ALL, &|k| env.get(k).cloned()).expect("settings")
}

/// A running handler on a free loopback port; stops when dropped.
struct RunningHandler {
    port: u16,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(
    settings: &HandlerSettings,
    hot: CosmosHotStore,
    twin: &AzureTwin,
) -> RunningHandler {
    start_with(
        settings,
        Stores::prebuilt(Some(hot), Some(twin.object_store())),
    )
    .await
}

/// What the handler answered the host.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn logs(&self) -> String {
        self.body["Logs"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }

    /// The `res` output of an HTTP-triggered function.
    fn res(&self) -> (u64, Value, Value) {
        let res = &self.body["Outputs"]["res"];
        let body = res["body"]
            .as_str()
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (
            res["statusCode"].as_u64().unwrap_or_default(),
            res["headers"].clone(),
            body,
        )
    }
}

/// POSTs an invocation to `/<function>` as the Functions host does (its headers, its payload).
async fn invoke(port: u16, function: &str, payload: &Value) -> Answer {
    let body = payload.to_string();
    let request = format!(
        "POST /{function} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\n\
         X-Azure-Functions-InvocationId: 5b6a1f0e-0000-4000-8000-00000000{:04}\r\n\
         X-Azure-Functions-HostVersion: 4.1040.300.0\r\nUser-Agent: Azure-Functions-Host/4.1040.300.0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len() % 10_000,
        body.len()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the handler");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read answer");
    let text = String::from_utf8(raw).expect("utf-8 answer");
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Answer {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
    }
}

fn sys(method: &str) -> Value {
    json!({"sys": {"MethodName": method, "UtcNow": Timestamp::now().canonical(),
                   "RandGuid": "24ad4c06-24ad-4e5b-8294-3da9714877e9"}})
}

/// An Event Grid `Microsoft.Devices.DeviceTelemetry` event from the hub, for `connected` (the
/// device the hub authenticated) with `body` as the hub writes it.
fn telemetry_event(id: &str, connected: &str, body: Value, json_declared: bool) -> Value {
    let mut system = json!({
        "iothub-connection-device-id": connected,
        "iothub-connection-auth-method": "{\"scope\":\"device\",\"type\":\"x509Certificate\",\"issuer\":\"iothub\",\"acceptingIpFilterRule\":null}",
        "iothub-connection-auth-generation-id": "638400000000000000",
        "iothub-enqueuedtime": "2025-11-04T13:23:11.48Z",
        "iothub-message-source": "Telemetry",
    });
    if json_declared {
        system["iothub-content-type"] = json!("application/json");
        system["iothub-content-encoding"] = json!("utf-8");
    }
    json!({
        "id": id,
        "topic": "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/it-rg/PROVIDERS/MICROSOFT.DEVICES/IOTHUBS/it-hub",
        "subject": format!("devices/{connected}"),
        "eventType": "Microsoft.Devices.DeviceTelemetry",
        "eventTime": "2025-11-04T13:23:11.48Z",
        "data": {"body": body, "properties": {}, "systemProperties": system},
        "dataVersion": "",
        "metadataVersion": "1"
    })
}

/// The host's invocation of the dispatcher for `event` (its Event Grid trigger binding `event`).
fn event_grid_invocation(event: Value) -> Value {
    json!({"Data": {"event": event}, "Metadata": sys("dispatcher")})
}

/// The host's invocation of an HTTP-triggered function.
fn http_invocation(function: &str, method: &str, query: Value, body: Option<&Value>) -> Value {
    let mut req = json!({
        "Url": format!("https://it-app.azurewebsites.net/api/{function}"),
        "Method": method,
        "Query": query,
        "Headers": {"Accept": ["application/json"], "Host": ["it-app.azurewebsites.net"]},
        "Params": {},
        "Identities": [],
    });
    if let Some(b) = body {
        req["Body"] = json!(b.to_string());
    }
    json!({"Data": {"req": req}, "Metadata": sys(function)})
}

/// The host's invocation of a timer-triggered function.
fn timer_invocation(function: &str) -> Value {
    json!({"Data": {"timer": {
        "Schedule": {"AdjustForDST": true},
        "ScheduleStatus": {"Last": "0001-01-01T00:00:00", "Next": "2025-11-05T03:00:00+00:00",
                           "LastUpdated": "0001-01-01T00:00:00"},
        "IsPastDue": false}},
        "Metadata": sys(function)})
}

async fn hot_records(hot: &dyn HotStore, device: &str) -> Vec<Value> {
    let page = hot
        .query_page(&DeviceQuery {
            device_id: device.into(),
            range: TimeRange::All,
            after: None,
            order: Order::Ascending,
            limit: None,
        })
        .await
        .expect("query the hot container");
    assert!(page.next.is_none(), "one page is all these tests write");
    page.items
        .into_iter()
        .map(|i| Value::Object(i.to_json()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_telemetry_event_ends_as_one_cosmos_item_even_when_delivered_twice() {
    let twin = AzureTwin::create("h-once").await;
    let hot = twin.hot_store().await;
    let handler = start(&settings(&twin, &[]), hot.clone(), &twin).await;

    let message =
        json!({"iotDeviceId": "s-1", "time": "2025-11-04T13:23:11.203Z", "temperature": 21.5});
    let event = telemetry_event("ev-1", "s-1", message, true);
    let first = invoke(
        handler.port,
        "dispatcher",
        &event_grid_invocation(event.clone()),
    )
    .await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(
        first
            .logs()
            .contains("persister: stored s-1/2025-11-04T13:23:11.203Z"),
        "{}",
        first.logs()
    );
    // Event Grid redelivers (here with the event as JSON text, as some host versions pass it).
    let again = invoke(
        handler.port,
        "dispatcher",
        &event_grid_invocation(json!(event.to_string())),
    )
    .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        hot_records(&hot, "s-1").await,
        vec![json!({"iotDeviceId": "s-1", "id": "2025-11-04T13:23:11.203Z", "temperature": 21.5})],
        "the same event twice is one item"
    );

    // A device that set no content type: the hub writes the body as base64.
    let text =
        json!({"iotDeviceId": "s-1", "time": "2025-11-04T13:24:00.000Z", "temperature": "22"})
            .to_string();
    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
    let base64_event = telemetry_event("ev-2", "s-1", json!(b64), false);
    let answer = invoke(
        handler.port,
        "dispatcher",
        &event_grid_invocation(base64_event),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let records = hot_records(&hot, "s-1").await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(
        records[1]["temperature"].as_f64(),
        Some(22.0),
        "coerced to DOUBLE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_spoofed_device_id_is_dropped_with_2xx_and_nothing_stored() {
    let twin = AzureTwin::create("h-spoof").await;
    let hot = twin.hot_store().await;
    let handler = start(&settings(&twin, &[]), hot.clone(), &twin).await;

    // s-1 is the device the hub authenticated; its payload claims s-2 (and tries to bring a
    // matching topic device of its own).
    let spoof = json!({"iotDeviceId": "s-2", "topicDeviceId": "s-2", "time": "2025-11-04T13:23:11.203Z", "temperature": 1.0});
    let answer = invoke(
        handler.port,
        "dispatcher",
        &event_grid_invocation(telemetry_event("ev-s", "s-1", spoof, true)),
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "acknowledged, so Event Grid does not redeliver: {answer:?}"
    );
    assert!(
        answer.logs().contains("dropped (topic_mismatch)"),
        "{}",
        answer.logs()
    );
    // Unknown devices and unreadable bodies are dropped the same way.
    let unknown = json!({"iotDeviceId": "s-9", "temperature": 1.0});
    let answer = invoke(
        handler.port,
        "dispatcher",
        &event_grid_invocation(telemetry_event("ev-u", "s-9", unknown, true)),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.logs().contains("unknown_device"),
        "{}",
        answer.logs()
    );
    let answer = invoke(
        handler.port,
        "dispatcher",
        &event_grid_invocation(telemetry_event("ev-b", "s-1", json!("%%%"), false)),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(answer.logs().contains("body_not_json"), "{}", answer.logs());
    for device in ["s-1", "s-2", "s-9"] {
        assert!(
            hot_records(&hot, device).await.is_empty(),
            "nothing stored for {device}"
        );
    }
}

/// A stand-in for the managed identity: a static token (the Cosmos emulator accepts any
/// signature), so the deployed app's own path (the container resolved on first use with a
/// token credential) runs against the emulator.
#[derive(Debug)]
struct StaticToken;

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for StaticToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let expires =
            azure_core::time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(3600);
        Ok(azure_core::credentials::AccessToken::new(
            "emulator-token",
            expires,
        ))
    }
}

async fn start_with(settings: &HandlerSettings, stores: Stores) -> RunningHandler {
    start_app(settings, stores, catalogue(), Path::new(".")).await
}

/// A handler for `catalogue` with the package unpacked at `app_root`.
async fn start_app(
    settings: &HandlerSettings,
    stores: Stores,
    catalogue: DeviceCatalogue,
    app_root: &Path,
) -> RunningHandler {
    let handler = Handler::new(
        &AppFunction::ALL,
        settings,
        Some(catalogue),
        stores,
        app_root,
    )
    .expect("handler");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, Arc::new(handler), async {
        let _ = stopped.await;
    }));
    RunningHandler { port, _stop: stop }
}

fn lazy_hot(endpoint: &str, twin: &AzureTwin) -> HotHandle {
    HotHandle::lazy(
        CosmosLocation {
            endpoint: endpoint.to_string(),
            database: support::DATABASE.into(),
            container: twin.hot.clone(),
        },
        Arc::new(StaticToken),
        Some("East US".into()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_storage_failure_answers_non_2xx_so_event_grid_redelivers() {
    let twin = AzureTwin::create("h-fail").await;
    // The deployed path (container resolved on first use) against an endpoint nobody listens on.
    let closed = twin_testkit::free_port().expect("a free port");
    let stores = Stores {
        hot: Some(lazy_hot(&format!("https://127.0.0.1:{closed}/"), &twin)),
        objects: Some(twin.object_store()),
        twin: None,
        credential: None,
    };
    let handler = start_with(&settings(&twin, &[]), stores).await;

    let message =
        json!({"iotDeviceId": "s-1", "time": "2025-11-04T13:23:11.203Z", "temperature": 21.5});
    let started = std::time::Instant::now();
    let answer = invoke(
        handler.port,
        "dispatcher",
        &event_grid_invocation(telemetry_event("ev-f", "s-1", message, true)),
    )
    .await;
    eprintln!("failure answered in {:?}: {answer:?}", started.elapsed());
    assert_eq!(
        answer.status, 503,
        "an unreachable store is retryable, and fails the delivery: {answer:?}"
    );
    assert!(
        answer.logs().contains("Event Grid redelivers"),
        "{}",
        answer.logs()
    );
    assert!(
        answer.logs().contains(&twin.hot),
        "the error names the container: {}",
        answer.logs()
    );
    assert!(hot_records(&twin.hot_store().await, "s-1").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_identity_path_resolves_the_container_on_first_use() {
    let twin = AzureTwin::create("h-lazy").await;
    let stores = Stores {
        hot: Some(lazy_hot(&twin_testkit::azure::cosmos().endpoint, &twin)),
        objects: Some(twin.object_store()),
        twin: None,
        credential: None,
    };
    let handler = start_with(&settings(&twin, &[]), stores).await;
    let message =
        json!({"iotDeviceId": "s-2", "time": "2025-11-04T13:23:11.203Z", "temperature": 3.0});
    let answer = invoke(
        handler.port,
        "dispatcher",
        &event_grid_invocation(telemetry_event("ev-l", "s-2", message, true)),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(hot_records(&twin.hot_store().await, "s-2").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_http_functions_store_and_the_hot_reader_answers_pages() {
    let twin = AzureTwin::create("h-read").await;
    let hot = twin.hot_store().await;
    let handler = start(
        &settings(&twin, &[("MAX_RESPONSE_BYTES", "1024")]),
        hot.clone(),
        &twin,
    )
    .await;

    // Records through the processor (which runs the persister) and straight to the persister.
    for i in 0..30i64 {
        let time = Timestamp::from_millis(1_762_262_591_000 + i * 1000).expect("time");
        let (function, record) = if i % 2 == 0 {
            (
                "processor",
                json!({"iotDeviceId": "s-1", "time": time.canonical(), "temperature": i}),
            )
        } else {
            (
                "persister",
                json!({"iotDeviceId": "s-1", "time": time.canonical(), "temperature": i as f64}),
            )
        };
        let answer = invoke(
            handler.port,
            function,
            &http_invocation(function, "POST", json!({}), Some(&record)),
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let (status, _, body) = answer.res();
        assert_eq!(status, 200, "{answer:?}");
        let outcome = if function == "processor" {
            "persisting"
        } else {
            "stored"
        };
        assert_eq!(body["outcome"], outcome, "{answer:?}");
    }
    let not_json = invoke(
        handler.port,
        "persister",
        &json!({"Data": {"req": {"Method": "POST", "Body": "{"}}, "Metadata": {}}),
    )
    .await;
    assert_eq!(not_json.res().0, 400, "{not_json:?}");

    // The reader pages under its 1 KB cap; following the tokens gives every record once, in order.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = json!({"iotDeviceId": "s-1", "startDate": "2025-11-04T00:00:00.000Z", "endDate": "2025-11-05"});
        if let Some(t) = &token {
            query["nextToken"] = json!(t);
        }
        let answer = invoke(
            handler.port,
            "hot-reader",
            &http_invocation("hot-reader", "GET", query, None),
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let (status, headers, body) = answer.res();
        assert_eq!(status, 200, "{answer:?}");
        assert_eq!(headers["content-type"], "application/json");
        let items = body.as_array().expect("a JSON array of records").clone();
        assert!(!items.is_empty());
        seen.extend(
            items
                .iter()
                .map(|r| r["temperature"].as_f64().unwrap_or(-1.0) as i64),
        );
        pages += 1;
        match headers["x-next-token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert!(pages > 1, "the cap cut the answer into pages");
    assert_eq!(seen, (0..30).collect::<Vec<_>>());

    let bad = invoke(
        handler.port,
        "hot-reader",
        &http_invocation(
            "hot-reader",
            "GET",
            json!({"startDate": "2025-11-04"}),
            None,
        ),
    )
    .await;
    assert_eq!(bad.res().0, 400, "{bad:?}");
    assert!(bad.res().2["error"]
        .as_str()
        .unwrap_or_default()
        .contains("iotDeviceId"));
    let unknown = invoke(
        handler.port,
        "twin-connector",
        &json!({"Data": {}, "Metadata": {}}),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(
        unknown.logs().contains("no function `twin-connector`"),
        "{unknown:?}"
    );
    assert_eq!(
        unknown.body["Outputs"],
        json!({}),
        "the custom handler response shape"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_timer_movers_move_what_is_due_from_cosmos_to_cold_then_archive() {
    let twin = AzureTwin::create("h-move").await;
    let hot = twin.hot_store().await;
    // HOT_STORAGE_DAYS 3, COLD_STORAGE_DAYS 1 (see `settings`).
    let handler = start(&settings(&twin, &[]), hot.clone(), &twin).await;
    let now = Timestamp::now();
    let mut old = Vec::new();
    for days in [10u32, 8, 6, 5] {
        let time = now.minus_days(days).canonical();
        let record = json!({"iotDeviceId": "s-2", "time": time, "temperature": days as f64});
        let answer = invoke(
            handler.port,
            "persister",
            &http_invocation("persister", "POST", json!({}), Some(&record)),
        )
        .await;
        assert_eq!(answer.res().0, 200, "{answer:?}");
        old.push(time);
    }
    let recent = Timestamp::from_millis(now.millis() - 3_600_000)
        .expect("time")
        .canonical();
    let record = json!({"iotDeviceId": "s-2", "time": recent, "temperature": 0.5});
    invoke(
        handler.port,
        "persister",
        &http_invocation("persister", "POST", json!({}), Some(&record)),
    )
    .await;

    let moved = invoke(
        handler.port,
        "hot-to-cold-mover",
        &timer_invocation("hot-to-cold-mover"),
    )
    .await;
    assert_eq!(moved.status, 200, "{moved:?}");
    assert!(
        moved
            .logs()
            .contains("4 records of 1 devices moved to cold"),
        "{}",
        moved.logs()
    );
    let left: Vec<Value> = hot_records(&hot, "s-2")
        .await
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(
        left,
        vec![json!(recent)],
        "only the recent record stays hot"
    );
    let cold = twin.objects(&twin.cold).await;
    assert!(!cold.is_empty());
    assert!(
        cold.values().all(|o| o.tier == StorageTier::Cold),
        "{cold:?}"
    );

    let archived = invoke(
        handler.port,
        "cold-to-archive-mover",
        &timer_invocation("cold-to-archive-mover"),
    )
    .await;
    assert_eq!(archived.status, 200, "{archived:?}");
    assert!(
        archived
            .logs()
            .contains(&format!("{} objects archived", cold.len())),
        "{}",
        archived.logs()
    );
    assert!(twin.objects(&twin.cold).await.is_empty(), "cold drained");
    let archive = twin.objects(&twin.archive).await;
    assert_eq!(
        archive.keys().collect::<Vec<_>>(),
        cold.keys().collect::<Vec<_>>()
    );
    assert!(
        archive.values().all(|o| o.tier == StorageTier::Archive),
        "{archive:?}"
    );

    // A manual run asking for a cut-off in the future is a failed invocation, not a silent run.
    let future = json!({"Data": {"timer": json!({"cutoff": now.plus_days(1).canonical()}).to_string()}, "Metadata": {}});
    let refused = invoke(handler.port, "hot-to-cold-mover", &future).await;
    assert_eq!(refused.status, 500, "{refused:?}");
    assert!(
        refused.logs().contains("later than now"),
        "{}",
        refused.logs()
    );
}

/// An app root holding, as the package does, the real build of the example processor crate
/// `fahrenheit-processor` (its cargo-lambda `bootstrap`, the same file its Lambda runs).
fn app_root_with_fahrenheit_processor(name: &str) -> PathBuf {
    let zip = twin_testkit::function_zips()
        .join("fahrenheit-processor")
        .join("bootstrap.zip");
    let file = std::fs::File::open(&zip).expect("the built crate");
    let mut archive = zip::ZipArchive::new(file).expect("a zip");
    let mut binary = Vec::new();
    archive
        .by_name("bootstrap")
        .expect("bootstrap in it")
        .read_to_end(&mut binary)
        .expect("read");
    let root = std::env::temp_dir().join(format!("twin-app-{name}-{}", std::process::id()));
    let exe =
        twin_functions_azure::handler::own_processors::executable_in(&root, "fahrenheit-processor");
    std::fs::create_dir_all(exe.parent().expect("parent")).expect("mkdir");
    std::fs::write(&exe, binary).expect("write");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_a_device_s_own_processor_crate_runs_in_the_handler_before_the_checks() {
    let twin = AzureTwin::create("h-own").await;
    let hot = twin.hot_store().await;
    let root = app_root_with_fahrenheit_processor("h-own");
    let catalogue: DeviceCatalogue = serde_json::from_value(json!({
        "sharedProcessor": "processor",
        "devices": {
            "s-1": {"properties": [{"name": "temperature", "dataType": "DOUBLE"}]},
            "f-1": {"properties": [{"name": "temperature", "dataType": "DOUBLE"}],
                    "processor": "fahrenheit-processor"},
        }
    }))
    .expect("catalogue");
    let handler = start_app(
        &settings(&twin, &[]),
        Stores::prebuilt(Some(hot.clone()), Some(twin.object_store())),
        catalogue,
        &root,
    )
    .await;

    // f-1 reports Fahrenheit; its crate converts, the default checks coerce, the persister stores.
    for (id, time, f) in [
        ("ev-f1", "2025-11-04T13:00:00.000Z", 212.0),
        ("ev-f2", "2025-11-04T13:01:00.000Z", 70.7),
    ] {
        let message = json!({"iotDeviceId": "f-1", "time": time, "temperatureF": f});
        let answer = invoke(
            handler.port,
            "dispatcher",
            &event_grid_invocation(telemetry_event(id, "f-1", message, true)),
        )
        .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    // Refused by the crate: acknowledged (no redelivery) and not stored.
    let refused =
        json!({"iotDeviceId": "f-1", "time": "2025-11-04T13:02:00.000Z", "temperatureF": -999});
    let answer = invoke(
        handler.port,
        "dispatcher",
        &event_grid_invocation(telemetry_event("ev-f3", "f-1", refused, true)),
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer.logs().contains("rejected_by_device_logic"),
        "{}",
        answer.logs()
    );
    // (Cosmos gives 100.0 back as 100: compared as numbers.)
    let stored: Vec<(String, Option<f64>)> = hot_records(&hot, "f-1")
        .await
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_string(),
                r["temperature"].as_f64(),
            )
        })
        .collect();
    assert_eq!(
        stored,
        vec![
            ("2025-11-04T13:00:00.000Z".to_string(), Some(100.0)),
            ("2025-11-04T13:01:00.000Z".to_string(), Some(21.5)),
        ]
    );
    // s-1 has no crate of its own: `temperatureF` is not one of its properties, so the default
    // processor drops it, and its Celsius reading is stored as sent.
    let answer = invoke(
        handler.port,
        "dispatcher",
        &event_grid_invocation(telemetry_event(
            "ev-s1",
            "s-1",
            json!({"iotDeviceId": "s-1", "time": "2025-11-04T13:00:00.000Z", "temperatureF": 50}),
            true,
        )),
    )
    .await;
    assert!(
        answer.logs().contains("unknown_properties"),
        "{}",
        answer.logs()
    );
    // The HTTP-triggered processor routes by device too.
    let direct =
        json!({"iotDeviceId": "f-1", "time": "2025-11-04T13:03:00.000Z", "temperatureF": 32});
    let answer = invoke(
        handler.port,
        "processor",
        &http_invocation("processor", "POST", json!({}), Some(&direct)),
    )
    .await;
    let (status, _, body) = answer.res();
    assert_eq!(status, 200, "{answer:?}");
    assert_eq!(body["record"]["temperature"], json!(0.0), "{body}");
    let _ = std::fs::remove_dir_all(&root);
}

// ---- The hot → cold boundary's receiver: the real handler's `ingress-cold` on Azurite ----

/// Blob containers of one boundary test (no Cosmos: the sending side's hot store is in memory,
/// standing in for the other cloud's).
async fn blob_twin(name: &str) -> (AzureTwin, String) {
    let twin = AzureTwin {
        hot: format!("{name}-hot"),
        cold: format!("{name}-cold"),
        archive: format!("{name}-archive"),
    };
    let nonces = format!("{name}-nonces");
    let azurite = twin_testkit::azure::azurite();
    for c in [&twin.cold, &twin.archive, &nonces] {
        let url = azurite.container_url(c).parse().expect("container url");
        azure_storage_blob::BlobContainerClient::new(url, None, None)
            .expect("container client")
            .create(None)
            .await
            .expect("create blob container");
    }
    (twin, nonces)
}

/// The app of the cold side when L3 hot is on another cloud: the ingress and the archive mover.
async fn start_cold_ingress(
    twin: &AzureTwin,
    nonces: &str,
    current: Option<&BoundarySecret>,
    next: Option<&BoundarySecret>,
) -> RunningHandler {
    let azurite = twin_testkit::azure::azurite();
    let mut env: HashMap<String, String> = [
        ("TWIN_NAME", "it"),
        ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-00000000c1d0"),
        ("BLOB_ENDPOINT", azurite.blob_endpoint.as_str()),
        ("COLD_BUCKET", twin.cold.as_str()),
        ("ARCHIVE_BUCKET", twin.archive.as_str()),
        ("COLD_STORAGE_DAYS", "1"),
        ("BOUNDARY_NONCE_CONTAINER", nonces),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(c) = current {
        env.insert("BOUNDARY_SECRET_HOT_TO_COLD".into(), c.encoded());
    }
    if let Some(n) = next {
        env.insert("BOUNDARY_SECRET_HOT_TO_COLD_NEXT".into(), n.encoded());
    }
    let functions = [AppFunction::IngressCold, AppFunction::ColdToArchiveMover];
    let settings =
        HandlerSettings::from_lookup(&functions, &|k| env.get(k).cloned()).expect("settings");
    let handler = Handler::new(
        &functions,
        &settings,
        None,
        Stores::prebuilt(None, Some(twin.object_store())),
        Path::new("."),
    )
    .expect("handler");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, Arc::new(handler), async {
        let _ = stopped.await;
    }));
    RunningHandler { port, _stop: stop }
}

/// The Functions host's part, faked: each signed request becomes the host's HTTP-trigger
/// invocation of `ingress-cold` (headers as lists, body as text) on the real handler, and the
/// `res` output becomes the answer. Port 0 plays a receiver that is down: a real refused
/// connection (a port nothing listens on).
struct FakeHostWire {
    port: AtomicU16,
    closed_port: u16,
    seen: Mutex<Vec<SignedRequest>>,
}

impl FakeHostWire {
    fn invocation(request: &SignedRequest) -> Value {
        let headers: serde_json::Map<String, Value> = request
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), json!([v])))
            .chain([("Content-Type".to_string(), json!(["application/json"]))])
            .collect();
        json!({"Data": {"req": {
            "Url": "https://it-func.azurewebsites.net/api/ingress-cold",
            "Method": "POST",
            "Query": {},
            "Headers": headers,
            "Params": {},
            "Body": String::from_utf8_lossy(&request.body),
        }}, "Metadata": sys("ingress-cold")})
    }
}

#[async_trait::async_trait]
impl BoundaryTransport for FakeHostWire {
    async fn post(&self, request: &SignedRequest) -> Result<TransportReply, String> {
        self.seen.lock().expect("lock").push(request.clone());
        let port = match self.port.load(Ordering::SeqCst) {
            0 => self.closed_port,
            p => p,
        };
        // The connection is made here, so a receiver that is down is a transport error.
        TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let answer = invoke(port, "ingress-cold", &Self::invocation(request)).await;
        if answer.status != 200 {
            return Ok(TransportReply {
                status: answer.status,
                retry_after: None,
                body: answer.body.to_string().into_bytes(),
            });
        }
        let (status, _, body) = answer.res();
        Ok(TransportReply {
            status: status as u16,
            retry_after: None,
            body: body.to_string().into_bytes(),
        })
    }
}

/// The wait moves the sender's fixed clock: no real sleep between retries.
struct Jump<'a>(&'a FixedClock);

#[async_trait::async_trait]
impl Pause for Jump<'_> {
    async fn pause(&self, wait: Duration) {
        let t = self.0.now().millis() + wait.as_millis() as i64;
        self.0.set(Timestamp::from_millis(t).expect("valid"));
    }
}

#[derive(Default)]
struct Kept(Mutex<Vec<String>>);

#[async_trait::async_trait]
impl BoundaryDeadLetters for Kept {
    async fn keep(&self, _: &str, e: &BoundaryEnvelope, reason: &str) -> Result<(), CloudError> {
        self.0
            .lock()
            .expect("lock")
            .push(format!("{reason}:{}", e.payload["op"]));
        Ok(())
    }
}

/// Records in the cold container (each object is a JSON array of records), and whether every
/// object is in the Cool tier.
async fn cold_records(twin: &AzureTwin) -> (usize, bool) {
    let store = twin.object_store();
    let mut n = 0;
    let mut all_cool = true;
    for (key, info) in twin.objects(&twin.cold).await {
        all_cool &= info.tier == StorageTier::Cold;
        let body = store.get_object(&twin.cold, &key).await.expect("get");
        let chunk: Vec<Value> = serde_json::from_slice(&body).expect("a chunk of records");
        n += chunk.len();
    }
    (n, all_cool)
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

const HOP: &str = "hot-to-cold";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_fake_host_hot_to_cold_boundary_moves_exactly_once_and_refuses_bad_requests() {
    let (twin, nonces) = blob_twin("xc-in").await;
    let secret = BoundarySecret::generate();
    let handler = start_cold_ingress(&twin, &nonces, Some(&secret), None).await;
    // The receiver checks timestamps against its wall clock, so the sender's starts at now.
    let clock = Arc::new(FixedClock::new(Timestamp::now()));
    let hot = Arc::new(InMemoryHotStore::new(100));
    let persister = Persister::new(hot.clone());
    for i in 0..5i64 {
        let t =
            Timestamp::from_millis(clock.now().minus_days(40).millis() - i * 60_000).expect("time");
        let msg = json!({"iotDeviceId": "d1", "time": t.canonical(), "v": i});
        persister.handle(msg, "c").await.expect("persist");
    }
    let wire = FakeHostWire {
        port: AtomicU16::new(handler.port),
        closed_port: closed_port(),
        seen: Mutex::new(Vec::new()),
    };
    let pause = Jump(&clock);
    let kept = Kept::default();
    // The AWS side knows the cold tier by its own name; the ingress writes its one container.
    let remote_bucket = "aws-side-name-of-cold";
    let remote = |with: &BoundarySecret| RemoteObjectStore {
        sender: BoundarySender {
            hop: HOP.into(),
            secret: with.clone(),
            transport: &wire,
            retry: RetryPolicy::default(),
            pause: &pause,
            clock: &*clock,
            dead_letters: &kept,
            refresh: None,
        },
        bucket: remote_bucket.into(),
    };
    let settings = HotToColdSettings {
        common: CommonSettings {
            twin_name: "it".into(),
            log_level: LogLevel::Info,
        },
        hot_table: "hot".into(),
        cold_bucket: remote_bucket.into(),
        hot_storage_days: 30,
        lease_seconds: DEFAULT_LEASE_SECONDS,
    };
    let started = std::time::Instant::now();

    // A wrong secret: 401 with its reason, nothing written, not even a nonce.
    let wrong = BoundarySecret::generate();
    let e = remote(&wrong)
        .put_object(
            remote_bucket,
            "d1/x.json",
            b"[]".to_vec(),
            StorageTier::Cold,
        )
        .await
        .expect_err("a wrong secret is refused");
    assert!(e.message.contains("permanent_401"), "{e}");
    assert!(
        e.message.contains("bad_signature"),
        "the reason reaches the sender: {e}"
    );
    let mover = HotToColdMover::new(&settings, hot.clone(), remote(&wrong), clock.clone());
    assert!(mover.run().await.is_err(), "a 401 fails the run");
    assert_eq!(cold_records(&twin).await.0, 0, "nothing written");
    assert!(twin.objects(&nonces).await.is_empty(), "no nonce either");
    assert_eq!(hot.all().len(), 5, "nothing lost");

    // The receiver down: the run fails, the records stay in hot.
    wire.port.store(0, Ordering::SeqCst);
    let mover = HotToColdMover::new(&settings, hot.clone(), remote(&secret), clock.clone());
    assert!(
        mover.run().await.is_err(),
        "an unreachable receiver fails the run"
    );
    assert_eq!(hot.all().len(), 5, "nothing lost");
    assert_eq!(cold_records(&twin).await.0, 0);

    // Back up: the next run delivers every record, exactly once, in the Cool tier.
    wire.port.store(handler.port, Ordering::SeqCst);
    let mover = HotToColdMover::new(&settings, hot.clone(), remote(&secret), clock.clone());
    let report = mover.run().await.expect("moves");
    assert_eq!(report.records_moved, 5, "{report:?}");
    let (records, all_cool) = cold_records(&twin).await;
    assert_eq!(records, 5, "each record once in cold");
    assert!(
        all_cool,
        "written in the Cool tier as the in-cloud mover writes"
    );
    assert!(hot.all().is_empty(), "moved records leave hot");
    let again = mover.run().await.expect("a second run");
    assert_eq!(again.records_moved, 0, "nothing moves twice");
    assert_eq!(cold_records(&twin).await.0, 5);
    let ledger = twin.objects(&nonces).await.len();
    assert!(
        ledger > 0,
        "accepted requests claimed their nonces in the ledger"
    );

    // A captured request replayed: 401, nothing applied.
    let captured = wire
        .seen
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("sent");
    let replay = wire.post(&captured).await.expect("answered");
    assert_eq!(replay.status, 401);
    let body: Value = serde_json::from_slice(&replay.body).expect("json");
    assert_eq!(body["reason"], "replayed_nonce");
    assert_eq!(
        twin.objects(&nonces).await.len(),
        ledger,
        "a replay claims nothing"
    );
    // The mover's failed runs stopped at its first call (a listing: a query), so there was no
    // push to keep; the wrong-secret put above was kept.
    assert_eq!(kept.0.lock().expect("lock").len(), 1);
    eprintln!("boundary through the handler took {:?}", started.elapsed());
}

/// One HEAD across the boundary signed with `with`.
async fn head_once(
    wire: &FakeHostWire,
    with: &BoundarySecret,
    clock: &FixedClock,
    pause: &Jump<'_>,
    kept: &Kept,
) -> Result<(), CloudError> {
    let store = RemoteObjectStore {
        sender: BoundarySender {
            hop: HOP.into(),
            secret: with.clone(),
            transport: wire,
            retry: RetryPolicy::default(),
            pause,
            clock,
            dead_letters: kept,
            refresh: None,
        },
        bucket: "cold".into(),
    };
    store.head_object("cold", "none").await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_fake_host_cold_ingress_accepts_old_and_new_secret_during_a_rotation() {
    let (twin, nonces) = blob_twin("xc-rot").await;
    let (old, new) = (BoundarySecret::generate(), BoundarySecret::generate());
    let clock = FixedClock::new(Timestamp::now());
    let pause = Jump(&clock);
    let kept = Kept::default();
    let wire_to = |h: &RunningHandler| FakeHostWire {
        port: AtomicU16::new(h.port),
        closed_port: closed_port(),
        seen: Mutex::new(Vec::new()),
    };
    // Staged: the app holds the old secret as current and the new one as next.
    let staged = start_cold_ingress(&twin, &nonces, Some(&old), Some(&new)).await;
    let wire = wire_to(&staged);
    head_once(&wire, &old, &clock, &pause, &kept)
        .await
        .expect("the old secret passes");
    head_once(&wire, &new, &clock, &pause, &kept)
        .await
        .expect("the new secret passes");
    // Promoted: only the new one.
    let promoted = start_cold_ingress(&twin, &nonces, Some(&new), None).await;
    let wire = wire_to(&promoted);
    head_once(&wire, &new, &clock, &pause, &kept)
        .await
        .expect("the new secret passes");
    let e = head_once(&wire, &old, &clock, &pause, &kept)
        .await
        .expect_err("the old secret is retired");
    assert!(e.message.contains("bad_signature"), "{e}");
}

#[test]
fn a_bad_boundary_secret_setting_is_named_and_never_echoed() {
    let env: HashMap<&str, &str> = [
        ("TWIN_NAME", "it"),
        ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-00000000c1d0"),
        ("BLOB_ENDPOINT", "https://a.blob.core.windows.net"),
        ("COLD_BUCKET", "cold"),
        ("BOUNDARY_NONCE_CONTAINER", "boundary-nonces"),
        ("BOUNDARY_SECRET_HOT_TO_COLD", "hunter2-not-a-secret"),
    ]
    .into_iter()
    .collect();
    let e = HandlerSettings::from_lookup(&[AppFunction::IngressCold], &|k| {
        env.get(k).map(|v| v.to_string())
    })
    .expect_err("refused");
    let text = e.to_string();
    assert!(text.contains("BOUNDARY_SECRET_HOT_TO_COLD"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    // Not written yet (the deployer syncs it after the package is up): the app starts, and
    // its ingress accepts nothing until then.
    let without = HandlerSettings::from_lookup(&[AppFunction::IngressCold], &|k| {
        env.get(k)
            .filter(|_| k != "BOUNDARY_SECRET_HOT_TO_COLD")
            .map(|v| v.to_string())
    })
    .expect("an app without its boundary secret yet starts");
    let ingress = without.ingress_cold.expect("the ingress's settings");
    assert!(ingress.current.is_none());
    assert!(ingress.accepted().is_none(), "nothing is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_cold_ingress_before_its_secret_is_synced_answers_503_and_the_sender_keeps_its_records(
) {
    let (twin, nonces) = blob_twin("xc-nr").await;
    let handler = start_cold_ingress(&twin, &nonces, None, None).await;
    let clock = FixedClock::new(Timestamp::now());
    let wire = FakeHostWire {
        port: AtomicU16::new(handler.port),
        closed_port: closed_port(),
        seen: Mutex::new(Vec::new()),
    };
    let pause = Jump(&clock);
    let kept = Kept::default();
    let remote = RemoteObjectStore {
        sender: BoundarySender {
            hop: HOP.into(),
            secret: BoundarySecret::generate(),
            transport: &wire,
            retry: RetryPolicy::default(),
            pause: &pause,
            clock: &clock,
            dead_letters: &kept,
            refresh: None,
        },
        bucket: "cold".into(),
    };
    let e = remote
        .put_object("cold", "d1/x.json", b"[]".to_vec(), StorageTier::Cold)
        .await
        .expect_err("not ready yet");
    // 503 is transient: retried with backoff to the sender's deadline, never a 401 that would
    // make a correct sender give up for good.
    assert!(e.message.contains("deadline_exceeded"), "{e}");
    assert!(e.message.contains("not_ready"), "{e}");
    assert!(
        wire.seen.lock().expect("lock").len() > 1,
        "the sender retried"
    );
    assert_eq!(cold_records(&twin).await.0, 0, "nothing written");
    assert!(twin.objects(&nonces).await.is_empty(), "no nonce either");
}

/// A fixed token for the fakes of IoT Hub and Event Grid (the fake topic checks it is this one).
#[derive(Debug)]
struct FakeToken;

const FAKE_TOKEN: &str = "fake-identity-token";

#[async_trait::async_trait]
impl azure_core::credentials::TokenCredential for FakeToken {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        let expires =
            azure_core::time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(3600);
        Ok(azure_core::credentials::AccessToken::new(
            FAKE_TOKEN, expires,
        ))
    }
}

/// An app root whose `events/alarm` appends each event it is given on stdin to `runs.jsonl`.
fn app_root_with_event_function(name: &str) -> (PathBuf, PathBuf) {
    let root = std::env::temp_dir().join(format!("twin-events-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let exe = root.join("events/alarm");
    std::fs::create_dir_all(exe.parent().expect("parent")).expect("mkdir");
    let runs = root.join("runs.jsonl");
    std::fs::write(
        &exe,
        format!(
            "#!/bin/sh\n[ \"$TWIN_EVENT_STDIO\" = 1 ] || exit 9\n{{ cat; echo; }} >> '{}'\n",
            runs.display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (root, runs)
}

/// The events the function was run with, once there are `n` of them (it runs detached).
async fn function_runs(runs: &Path, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got: Vec<Value> = std::fs::read_to_string(runs)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if got.len() >= n || std::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await; // poll the child's output
    }
}

fn rules_env(rules: &[twin_events::Rule]) -> String {
    serde_json::to_string(rules).expect("rules json")
}

async fn persist(port: u16, second: u32, t: f64) -> Answer {
    let record = json!({"iotDeviceId": "s-1",
        "time": format!("2025-11-04T13:23:{second:02}.000Z"), "temperature": t});
    invoke(
        port,
        "persister",
        &http_invocation("persister", "POST", json!({}), Some(&record)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_fake_hub_fake_event_grid_rules_fire_on_change_once_and_every_message_twice() {
    use twin_events::{Action, Feedback, Fire};
    let hub = twin_testkit::fake_iot_hub::FakeIotHub::start()
        .await
        .expect("fake hub");
    hub.connect("s-1");
    let grid = twin_testkit::fake_event_grid::FakeEventGrid::start(FAKE_TOKEN)
        .await
        .expect("fake topic");
    let (root, runs) = app_root_with_event_function("fire");
    let cond = "room.s-1.temperature > DOUBLE(30)";
    let mut rules = Vec::new();
    for (fire, tag) in [(Fire::OnChange, "change"), (Fire::EveryMessage, "every")] {
        rules.push(support::resolved_rule(
            &format!("fb-{tag}"),
            cond,
            fire,
            Action::Feedback(Feedback {
                iot_device_id: "s-1".into(),
                payload: json!(format!("too hot ({tag})")),
            }),
        ));
        rules.push(support::resolved_rule(
            &format!("note-{tag}"),
            cond,
            fire,
            Action::Notification {
                message: json!({"text": format!("hot ({tag})")}),
            },
        ));
        rules.push(support::resolved_rule(
            &format!("fn-{tag}"),
            cond,
            fire,
            Action::Function {
                function_name: "alarm".into(),
                auto_deploy: true,
                feedback: None,
            },
        ));
    }
    let twin = AzureTwin::create("h-events").await;
    let hot = twin.hot_store().await;
    let rules_json = rules_env(&rules);
    let settings = settings(
        &twin,
        &[
            ("EVENT_RULES", rules_json.as_str()),
            ("IOTHUB_HOSTNAME", hub.host.as_str()),
            ("EVENT_TOPIC_ENDPOINT", grid.endpoint.as_str()),
        ],
    );
    let handler = start_app(
        &settings,
        Stores::prebuilt(Some(hot.clone()), Some(twin.object_store()))
            .with_credential(Arc::new(FakeToken)),
        catalogue(),
        &root,
    )
    .await;
    for (s, t) in [(1, 20.0), (2, 31.0), (3, 32.0)] {
        let answer = persist(handler.port, s, t).await;
        assert_eq!(answer.res().0, 200, "{answer:?}");
    }
    let feedback: Vec<Value> = hub
        .methods()
        .into_iter()
        .inspect(|m| assert!(m.method == "feedback" && m.delivered, "{m:?}"))
        .map(|m| m.payload)
        .collect();
    let count = |v: &[Value], s: &str| v.iter().filter(|p| p.to_string().contains(s)).count();
    assert_eq!(count(&feedback, "(change)"), 1, "{feedback:?}");
    assert_eq!(count(&feedback, "(every)"), 2, "{feedback:?}");
    let notes: Vec<Value> = grid.events().iter().map(|e| e["data"].clone()).collect();
    assert_eq!(count(&notes, "(change)"), 1, "{notes:?}");
    assert_eq!(count(&notes, "(every)"), 2, "{notes:?}");
    assert!(grid.refused().is_empty(), "{:?}", grid.refused());
    let ran = function_runs(&runs, 3).await;
    let by = |rule: &str| ran.iter().filter(|e| e["rule"] == rule).count();
    assert_eq!((by("fn-change"), by("fn-every")), (1, 2), "{ran:?}");
    assert!(ran
        .iter()
        .all(|e| e["iotDeviceId"] == "s-1" && e["condition"] == cond));
    // The states live beside the records, in the reserved partition, unseen by readers.
    assert_eq!(hot_records(&hot, "s-1").await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_fake_hub_a_failed_feedback_puts_the_state_back_so_the_redelivery_fires() {
    use twin_events::{Action, Feedback, Fire};
    let hub = twin_testkit::fake_iot_hub::FakeIotHub::start()
        .await
        .expect("fake hub");
    hub.connect("s-1");
    let rules = vec![support::resolved_rule(
        "hot",
        "room.s-1.temperature > DOUBLE(30)",
        Fire::OnChange,
        Action::Feedback(Feedback {
            iot_device_id: "s-1".into(),
            payload: json!("too hot"),
        }),
    )];
    let twin = AzureTwin::create("h-ev-fail").await;
    let hot = twin.hot_store().await;
    let rules_json = rules_env(&rules);
    let settings = settings(
        &twin,
        &[
            ("EVENT_RULES", rules_json.as_str()),
            ("IOTHUB_HOSTNAME", hub.host.as_str()),
        ],
    );
    let handler = start_with(
        &settings,
        Stores::prebuilt(Some(hot.clone()), Some(twin.object_store()))
            .with_credential(Arc::new(FakeToken)),
    )
    .await;
    // The hub throttles the method once: the invocation fails as retryable (503) ...
    hub.throttle("POST", 1, 0);
    let failed = persist(handler.port, 1, 31.0).await;
    assert_eq!(failed.res().0, 503, "{failed:?}");
    assert!(hub.methods().is_empty());
    // ... and its redelivery fires the transition (the state was put back), once.
    let again = persist(handler.port, 1, 31.0).await;
    assert_eq!(again.res().0, 200, "{again:?}");
    assert_eq!(persist(handler.port, 2, 32.0).await.res().0, 200);
    assert_eq!(hub.methods().len(), 1, "{:?}", hub.methods());
    // A device that is not connected: logged, delivered to nobody, not an error (not retried).
    assert_eq!(persist(handler.port, 3, 10.0).await.res().0, 200);
    hub.disconnect("s-1");
    let offline = persist(handler.port, 4, 35.0).await;
    assert_eq!(offline.res().0, 200, "{offline:?}");
    let calls = hub.methods();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(!calls[1].delivered);
}
