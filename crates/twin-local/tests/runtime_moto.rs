//! The local runner against moto and the real function zips: a 2-device twin deployed with the
//! AWS provider, its functions run for real behind the Lambda API router, messages flow
//! dispatcher -> processor -> persister into moto's DynamoDB, logs reach moto's CloudWatch Logs,
//! and a killed instance is restarted.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use twin_local::runner::{self, RunnerConfig, RunnerInfo};

/// The real function zips (`scripts/build-functions.sh`, built when missing).
fn real_zips() -> PathBuf {
    twin_testkit::function_zips().to_path_buf()
}

/// Polls `probe` with backoff until it gives a value or `within` passes.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(delay).await; // poll backoff
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// A Lambda client whose endpoint is the router.
async fn router_lambda(info: &RunnerInfo) -> aws_sdk_lambda::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .endpoint_url(info.router_url())
        .load()
        .await;
    aws_sdk_lambda::Client::new(&config)
}

fn http_event(device: &str) -> serde_json::Value {
    serde_json::json!({
        "version": "2.0", "routeKey": "GET /", "rawPath": "/", "rawQueryString": format!("iotDeviceId={device}"),
        "queryStringParameters": {"iotDeviceId": device},
        "requestContext": {"http": {"method": "GET", "path": "/"}},
        "isBase64Encoded": false
    })
}

async fn invoke(
    lambda: &aws_sdk_lambda::Client,
    name: &str,
    payload: &serde_json::Value,
) -> (Option<String>, serde_json::Value) {
    let out = lambda
        .invoke()
        .function_name(name)
        .payload(aws_sdk_lambda::primitives::Blob::new(payload.to_string()))
        .send()
        .await
        .expect("invoke through the router");
    let body = out
        .payload()
        .map(|b| serde_json::from_slice(b.as_ref()).expect("JSON answer"))
        .unwrap_or_default();
    (out.function_error().map(str::to_string), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deployed_functions_run_for_real_behind_the_router() {
    let moto = twin_testkit::aws_env_for_moto();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let twin = "local-rt";
    support::write_twin(dir, twin, &["dev-a", "dev-b"]);
    // dev-b reports Fahrenheit through a processor crate of its own (the example crate).
    std::fs::write(
        dir.join("config_iot_devices.json"),
        serde_json::json!([
            {"id": "dev-a", "properties": [{"name": "temperature", "dataType": "DOUBLE"}]},
            {"id": "dev-b", "properties": [{"name": "temperature", "dataType": "DOUBLE"}],
             "processor": "fahrenheit-processor"}
        ])
        .to_string(),
    )
    .expect("devices");
    let clients = support::clients(&moto.endpoint).await;
    support::deploy(dir, clients.clone(), support::Zips::Real(&real_zips())).await;

    let cancel = CancellationToken::new();
    let runner = tokio::spawn(runner::run(RunnerConfig {
        config_dir: dir.to_path_buf(),
        twin: twin.into(),
        clients: clients.clone(),
        endpoint: moto.endpoint.clone(),
        instances: Default::default(),
        services: Vec::new(),
        services_fingerprint: String::new(),
        cancel: cancel.clone(),
        handle_signals: false,
    }));
    let local = runner::local_dir(dir);
    let info = eventually("runner.json", Duration::from_secs(90), || async {
        assert!(!runner.is_finished(), "the runner ended while starting");
        runner::read_info(&local)
    })
    .await;
    assert!(runner::is_alive(&info));
    let names: Vec<&str> = info.functions.iter().map(|f| f.name.as_str()).collect();
    for f in ["dispatcher", "persister", "hot-reader"] {
        assert!(names.contains(&format!("{twin}-{f}").as_str()), "{names:?}");
    }
    let text = std::fs::read_to_string(runner::info_path(&local)).expect("runner.json");
    assert!(
        !text.contains("testing"),
        "runner.json holds a secret: {text}"
    );
    let lambda = router_lambda(&info).await;

    // The hot reader, synchronously, with an API Gateway v2 event: nothing stored yet.
    let reader = format!("{twin}-hot-reader");
    let (error, answer) = invoke(&lambda, &reader, &http_event("dev-a")).await;
    assert_eq!(error, None, "{answer}");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    assert_eq!(answer["body"], "[]", "{answer}");

    // A control-plane call goes to moto.
    let got = lambda
        .get_function()
        .function_name(&reader)
        .send()
        .await
        .expect("GetFunction through the router");
    assert_eq!(
        got.configuration().and_then(|c| c.function_name()),
        Some(reader.as_str())
    );

    // The dispatcher, asynchronously: the record reaches moto's hot table through the chain.
    let send_message = |t: f64| {
        let lambda = lambda.clone();
        let dispatcher = format!("{twin}-dispatcher");
        async move {
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let out = lambda
                .invoke()
                .function_name(&dispatcher)
                .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
                .payload(aws_sdk_lambda::primitives::Blob::new(
                    serde_json::json!({"iotDeviceId": "dev-a", "temperature": t, "time": now})
                        .to_string(),
                ))
                .send()
                .await
                .expect("Event invoke");
            assert_eq!(out.status_code(), 202);
        }
    };
    send_message(21.5).await;
    let stored = |t: f64| {
        let reader = reader.clone();
        let lambda = lambda.clone();
        async move {
            let (_, answer) = invoke(&lambda, &reader, &http_event("dev-a")).await;
            let body: serde_json::Value =
                serde_json::from_str(answer["body"].as_str().unwrap_or("[]")).unwrap_or_default();
            body.as_array()
                .is_some_and(|items| items.iter().any(|i| i["temperature"] == t))
                .then_some(())
        }
    };
    eventually(
        "the record in the hot table",
        Duration::from_secs(60),
        || stored(21.5),
    )
    .await;
    let items = clients
        .dynamodb
        .scan()
        .table_name(format!("{twin}-hot"))
        .send()
        .await
        .expect("scan the hot table");
    assert!(items.count() >= 1);

    // The processor's lines reach moto's CloudWatch Logs.
    let processor = info
        .functions
        .iter()
        .find(|f| f.name == format!("{twin}-processor"))
        .expect("the shared processor")
        .name
        .clone();
    eventually(
        "processor lines in CloudWatch Logs",
        Duration::from_secs(30),
        || {
            let clients = clients.clone();
            let group = format!("/aws/lambda/{processor}");
            async move {
                let got = clients
                    .logs
                    .filter_log_events()
                    .log_group_name(&group)
                    .send()
                    .await
                    .ok()?;
                (!got.events().is_empty()).then_some(())
            }
        },
    )
    .await;

    // A killed instance is restarted and invocations still succeed.
    let victim = info
        .functions
        .iter()
        .find(|f| f.name == reader)
        .and_then(|f| f.instances.first())
        .and_then(|i| i.pid)
        .expect("the hot reader's pid");
    // SAFETY: kill(2) on a pid the runner reports as its hot-reader instance.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    let restarted = eventually(
        "the instance restarted",
        Duration::from_secs(30),
        || async {
            let info = runner::read_info(&local)?;
            let i = info
                .functions
                .iter()
                .find(|f| f.name == reader)?
                .instances
                .first()?
                .clone();
            (i.pid.is_some_and(|p| p != victim) && i.starts >= 2).then_some(i)
        },
    )
    .await;
    assert!(restarted.last_exit.is_some());
    let (error, answer) = invoke(&lambda, &reader, &http_event("dev-a")).await;
    assert_eq!(error, None, "{answer}");
    assert_eq!(answer["statusCode"], 200, "{answer}");
    send_message(22.5).await;
    eventually(
        "a second record after the restart",
        Duration::from_secs(60),
        || stored(22.5),
    )
    .await;

    // dev-b's own processor function runs its crate's logic before the default checks.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let out = lambda
        .invoke()
        .function_name(format!("{twin}-dispatcher"))
        .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
        .payload(aws_sdk_lambda::primitives::Blob::new(
            serde_json::json!({"iotDeviceId": "dev-b", "temperatureF": 212, "time": now})
                .to_string(),
        ))
        .send()
        .await
        .expect("Event invoke");
    assert_eq!(out.status_code(), 202);
    eventually(
        "dev-b's converted record in the hot table",
        Duration::from_secs(60),
        || {
            let reader = reader.clone();
            let lambda = lambda.clone();
            async move {
                let (_, answer) = invoke(&lambda, &reader, &http_event("dev-b")).await;
                let body: serde_json::Value =
                    serde_json::from_str(answer["body"].as_str().unwrap_or("[]"))
                        .unwrap_or_default();
                body.as_array()
                    .is_some_and(|items| {
                        items.iter().any(|i| {
                            i["temperature"].as_f64() == Some(100.0)
                                && i.get("temperatureF").is_none()
                        })
                    })
                    .then_some(())
            }
        },
    )
    .await;

    // A function error (here: an event that is not JSON) is reported as Lambda does.
    let out = lambda
        .invoke()
        .function_name(&reader)
        .payload(aws_sdk_lambda::primitives::Blob::new("not json {"))
        .send()
        .await
        .expect("invoke through the router");
    let body = String::from_utf8_lossy(out.payload().map(|b| b.as_ref()).unwrap_or_default());
    assert_eq!(out.function_error(), Some("Unhandled"), "{body}");
    assert!(body.contains("errorType"), "{body}");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(30), runner)
        .await
        .expect("the runner stops within 30 s")
        .expect("runner task")
        .expect("the runner ended cleanly");
    assert!(
        runner::read_info(&local).is_none(),
        "runner.json left behind"
    );
    for f in &info.functions {
        for i in &f.instances {
            if let Some(pid) = i.pid {
                assert!(
                    !runner::pid_alive(pid),
                    "{} instance {} still runs",
                    f.name,
                    i.index
                );
            }
        }
    }
}
