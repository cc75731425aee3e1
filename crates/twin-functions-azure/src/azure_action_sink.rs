//! The event rules' actions on Azure ([`ActionSink`]).
//!
//! - A function (`lambda`) is the rule's crate, shipped in the app package at `events/<crate>`
//!   and started as a child with the event on stdin (`twin_functions::event_function`): the
//!   counterpart of AWS's asynchronous Invoke, so the persister does not wait for it.
//! - Feedback (`mqtt`) is a direct method `feedback` on the device through the hub's service
//!   REST API. Departure from AWS: IoT Hub's cloud-to-device messages have no REST API (AMQP
//!   only), so the device gets a direct method instead of a message on a topic, and a device
//!   that is not connected (404, errorCode 404103 DeviceNotOnline) is logged and counts as
//!   delivered to nobody, as an MQTT publish nobody subscribes to on AWS; it is not retried.
//! - A notification is an event published to the twin's Event Grid custom topic.
//!
//! Every call to a service authenticates with the twin's managed identity (its token for the
//! service's scope); the deployer grants the roles ("IoT Hub Data Contributor" on the hub,
//! "EventGrid Data Sender" on the topic).

use crate::adt_twin::path_segment;
use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{new_http_client, HttpClient, Method, Request, Url};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use twin_events::{Action, Rule};
use twin_functions::event_evaluator::ActionSink;
use twin_functions::event_function::STDIO_ENV;
use twin_functions::{CloudError, CloudErrorKind, Timestamp};

/// Where the app package holds the event rules' function crates (`events/<crate>`).
pub const EVENT_FUNCTIONS_DIR: &str = "events";
/// IoT Hub service API version of the direct method call.
pub const IOT_HUB_API: &str = "2021-04-12";
/// Token scope of IoT Hub's service API.
pub const IOT_HUB_SCOPE: &str = "https://iothubs.azure.net/.default";
/// Token scope of Event Grid's data plane.
pub const EVENT_GRID_SCOPE: &str = "https://eventgrid.azure.net/.default";
/// Event Grid's publishing API version (the Event Grid event schema).
pub const EVENT_GRID_API: &str = "2018-01-01";
/// The direct method a device receives feedback as.
pub const FEEDBACK_METHOD: &str = "feedback";
/// How long the hub waits for the device to answer the method.
pub const METHOD_TIMEOUT_SECS: u64 = 30;
/// The `eventType` of the twin's notifications.
pub const NOTIFICATION_EVENT_TYPE: &str = "Twin.EventRule.Notification";
/// IoT Hub's errorCode for a direct method to a device that is not connected.
const DEVICE_NOT_ONLINE: &str = "404103";
/// Event functions running at once in one handler at most. They are not awaited (as AWS's
/// asynchronous Invoke is not), so without a cap a burst of firings would fork without bound
/// inside the Function App's instance.
pub const MAX_EVENT_FUNCTIONS_RUNNING: usize = 16;
/// How long a firing waits for a running event function to finish before it fails as
/// retryable (its rule state is put back and the platform retries).
const EVENT_FUNCTION_SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Where the binary of the event function crate `crate_name` is in the unpacked package.
pub fn event_executable_in(app_root: &Path, crate_name: &str) -> PathBuf {
    app_root.join(EVENT_FUNCTIONS_DIR).join(crate_name)
}

/// The base URL of a service host as ARM reports it (`hostName`, `endpoint`): a URL is kept, a
/// bare host gets `https://`, except a loopback one (a test's fake), which gets `http://`.
pub fn service_url(host: &str) -> String {
    let h = host.trim().trim_end_matches('/');
    if h.starts_with("https://") || h.starts_with("http://") {
        h.to_string()
    } else if h.starts_with("127.0.0.1") || h.starts_with("localhost") {
        format!("http://{h}")
    } else {
        format!("https://{h}")
    }
}

/// The actions of a twin's rules on Azure. Feedback and notifications are optional: a twin
/// whose rules never send feedback gets no hub host name, one that never notifies no topic.
pub struct AzureActionSink {
    twin: String,
    credential: Arc<dyn TokenCredential>,
    http: Arc<dyn HttpClient>,
    /// A rule's `functionName` → the binary in the package.
    functions: BTreeMap<String, PathBuf>,
    iot_hub: Option<String>,
    topic_endpoint: Option<String>,
    /// Slots for running event functions ([`MAX_EVENT_FUNCTIONS_RUNNING`]).
    running: Arc<tokio::sync::Semaphore>,
    /// How long a firing waits for a slot.
    slot_wait: std::time::Duration,
}

impl std::fmt::Debug for AzureActionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureActionSink")
            .field("twin", &self.twin)
            .field("functions", &self.functions)
            .field("iot_hub", &self.iot_hub)
            .field("topic_endpoint", &self.topic_endpoint)
            .finish()
    }
}

/// An action the deployment did not set up for: the deployer writes the settings a rule needs,
/// so this is a mismatch between the rules and the app's settings or package.
fn not_configured(operation: &'static str, resource: String, what: &str) -> CloudError {
    CloudError::new(
        operation,
        resource,
        "NotConfigured",
        format!("the persister has no {what}; deploy the twin again so the Function App matches its event rules"),
        CloudErrorKind::Rejected,
    )
}

impl AzureActionSink {
    /// A sink for `rules` of `twin`, authenticating as `credential`; the rules' function crates
    /// are under `app_root` (the unpacked package).
    pub fn new(
        twin: impl Into<String>,
        rules: &[Rule],
        app_root: &Path,
        credential: Arc<dyn TokenCredential>,
    ) -> Self {
        let functions = rules
            .iter()
            .filter_map(|r| match &r.action {
                Action::Function { function_name, .. } => Some((
                    function_name.clone(),
                    event_executable_in(app_root, function_name),
                )),
                _ => None,
            })
            .collect();
        Self {
            twin: twin.into(),
            credential,
            http: new_http_client(None),
            functions,
            iot_hub: None,
            topic_endpoint: None,
            running: Arc::new(tokio::sync::Semaphore::new(MAX_EVENT_FUNCTIONS_RUNNING)),
            slot_wait: EVENT_FUNCTION_SLOT_WAIT,
        }
    }

    /// At most `running` event functions at once; a firing waits `wait` for a slot, then fails
    /// as retryable (defaults: [`MAX_EVENT_FUNCTIONS_RUNNING`], 30 s).
    pub fn with_running_limit(mut self, running: usize, wait: std::time::Duration) -> Self {
        self.running = Arc::new(tokio::sync::Semaphore::new(running.max(1)));
        self.slot_wait = wait;
        self
    }

    /// Sends feedback through the hub at `host_name` (`IOTHUB_HOSTNAME`, ARM's `hostName`).
    pub fn with_feedback(mut self, host_name: impl Into<String>) -> Self {
        self.iot_hub = Some(host_name.into());
        self
    }

    /// Publishes notifications to the topic at `endpoint` (`EVENT_TOPIC_ENDPOINT`, ARM's
    /// `properties.endpoint`).
    pub fn with_notifications(mut self, endpoint: impl Into<String>) -> Self {
        self.topic_endpoint = Some(endpoint.into());
        self
    }

    /// The binary a rule's `functionName` runs.
    pub fn function_for(&self, function: &str) -> Option<&Path> {
        self.functions.get(function).map(PathBuf::as_path)
    }

    async fn token(
        &self,
        scope: &str,
        operation: &'static str,
        resource: &str,
    ) -> Result<String, CloudError> {
        let token = self
            .credential
            .get_token(&[scope], None)
            .await
            .map_err(|e| {
                CloudError::new(
                    operation,
                    resource,
                    "NoToken",
                    format!("no token for {scope} from the twin's managed identity: {e}"),
                    CloudErrorKind::Transient,
                )
            })?;
        Ok(token.token.secret().to_string())
    }

    /// POSTs `body` to `url` with the bearer token; the status and the answer's body.
    async fn post(
        &self,
        operation: &'static str,
        resource: &str,
        url: &str,
        token: &str,
        body: &Value,
    ) -> Result<(u16, String), CloudError> {
        let err = |code: &str, message: String, kind| {
            CloudError::new(operation, resource, code, message, kind)
        };
        let url = Url::parse(url).map_err(|e| {
            err(
                "BadEndpoint",
                format!("{url} is not a URL: {e}"),
                CloudErrorKind::Rejected,
            )
        })?;
        let mut req = Request::new(url, Method::Post);
        req.insert_header("authorization", format!("Bearer {token}"));
        req.insert_header("content-type", "application/json");
        let bytes = serde_json::to_vec(body).map_err(|e| {
            err(
                "InvalidPayload",
                format!("the body cannot be serialized: {e}"),
                CloudErrorKind::Rejected,
            )
        })?;
        req.set_body(bytes);
        let resp = self.http.execute_request(&req).await.map_err(|e| {
            err(
                "io",
                format!("the request failed: {e}"),
                CloudErrorKind::Transient,
            )
        })?;
        let status = u16::from(resp.status());
        let raw = resp.try_into_raw_response().await.map_err(|e| {
            err(
                "io",
                format!("the answer could not be read: {e}"),
                CloudErrorKind::Transient,
            )
        })?;
        let text = String::from_utf8_lossy(raw.into_body().as_ref()).into_owned();
        Ok((status, text))
    }
}

/// The error of a refused call: retryable when a later delivery may pass (the identity's role
/// still propagating answers 403 for minutes; 429 and 5xx are the service's).
pub fn refused(operation: &'static str, resource: &str, status: u16, answer: &str) -> CloudError {
    let parsed: Value = serde_json::from_str(answer).unwrap_or(Value::Null);
    let code = parsed
        .pointer("/error/code")
        .or_else(|| parsed.get("errorCode"))
        .or_else(|| parsed.get("code"))
        .map(|c| {
            c.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| c.to_string())
        })
        .unwrap_or_else(|| format!("Http{status}"));
    let kind = match status {
        403 => CloudErrorKind::Transient,
        429 => CloudErrorKind::Throttled,
        s if s >= 500 => CloudErrorKind::Transient,
        404 => CloudErrorKind::NotFound,
        401 => CloudErrorKind::AccessDenied,
        _ => CloudErrorKind::Rejected,
    };
    let shown: String = answer.chars().take(300).collect();
    CloudError::new(
        operation,
        resource,
        code,
        format!("HTTP {status}: {shown}"),
        kind,
    )
}

/// Whether a direct method's 404 answer says the device is not connected (errorCode 404103,
/// nested in the hub's `Message` text, so the text is searched).
pub fn device_not_online(status: u16, answer: &str) -> bool {
    status == 404 && (answer.contains(DEVICE_NOT_ONLINE) || answer.contains("DeviceNotOnline"))
}

#[async_trait]
impl ActionSink for AzureActionSink {
    async fn invoke_function(&self, function: &str, event: &Value) -> Result<(), CloudError> {
        // A function no rule names cannot come from the evaluator; refused rather than guessed.
        let Some(executable) = self.function_for(function) else {
            return Err(not_configured(
                "RunEventFunction",
                format!("event function {function}"),
                "rule naming this function",
            ));
        };
        let resource = format!("event function {function} ({})", executable.display());
        let input = serde_json::to_vec(event).map_err(|e| {
            CloudError::new(
                "RunEventFunction",
                resource.clone(),
                "InvalidPayload",
                format!("the event cannot be serialized: {e}"),
                CloudErrorKind::Rejected,
            )
        })?;
        let slot = match tokio::time::timeout(
            self.slot_wait,
            self.running.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(slot)) => slot,
            _ => {
                return Err(CloudError::new(
                    "RunEventFunction",
                    resource,
                    "TooManyEventFunctions",
                    format!(
                        "every slot for event functions is still taken after {} ms; the firing is retried",
                        self.slot_wait.as_millis()
                    ),
                    CloudErrorKind::Transient,
                ))
            }
        };
        let mut child = Command::new(executable)
            .env(STDIO_ENV, "1")
            .stdin(Stdio::piped())
            // The function's own output joins the handler's log stream.
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                CloudError::new(
                    "RunEventFunction",
                    resource.clone(),
                    "EventFunctionNotStarted",
                    format!(
                        "cannot start it: {e}; run `deployer deploy` to upload the package again"
                    ),
                    CloudErrorKind::Rejected,
                )
            })?;
        let Some(mut stdin) = child.stdin.take() else {
            let _ = child.kill().await;
            return Err(CloudError::new(
                "RunEventFunction",
                resource,
                "EventFunctionNotStarted",
                "its stdin pipe was not opened",
                CloudErrorKind::Transient,
            ));
        };
        // Handing over the event is part of the action (as Lambda accepting the async Invoke
        // is): a child that cannot take it fails the action, so the state is put back.
        let handed = async {
            stdin.write_all(&input).await?;
            stdin.shutdown().await
        }
        .await;
        drop(stdin);
        if let Err(e) = handed {
            let _ = child.kill().await;
            return Err(CloudError::new(
                "RunEventFunction",
                resource,
                "EventNotHandedOver",
                format!("the event could not be written to its stdin: {e}"),
                CloudErrorKind::Transient,
            ));
        }
        // Not awaited, as AWS's asynchronous Invoke is not: the exit status is only logged (a
        // failed function is the function's to report; the rule's transition has fired, and
        // running the function again on a retry would not be "once").
        let name = function.to_string();
        tokio::spawn(async move {
            // The slot is held until the function exits.
            let _slot = slot;
            match child.wait().await {
                Ok(status) if status.success() => {
                    tracing::info!(function = %name, "event function finished");
                }
                Ok(status) => {
                    tracing::error!(function = %name, status = %status, "event function failed");
                }
                Err(e) => {
                    tracing::error!(function = %name, error = %e, "event function could not be waited for");
                }
            }
        });
        Ok(())
    }

    async fn send_feedback(&self, device: &str, payload: &Value) -> Result<(), CloudError> {
        let resource = format!("direct method {FEEDBACK_METHOD} of device {device}");
        let Some(hub) = &self.iot_hub else {
            return Err(not_configured(
                "InvokeDeviceMethod",
                resource,
                "IoT Hub host name (IOTHUB_HOSTNAME)",
            ));
        };
        let token = self
            .token(IOT_HUB_SCOPE, "InvokeDeviceMethod", &resource)
            .await?;
        let url = format!(
            "{}/twins/{}/methods?api-version={IOT_HUB_API}",
            service_url(hub),
            path_segment(device)
        );
        let body = json!({
            "methodName": FEEDBACK_METHOD,
            "payload": payload,
            "responseTimeoutInSeconds": METHOD_TIMEOUT_SECS,
        });
        let (status, answer) = self
            .post("InvokeDeviceMethod", &resource, &url, &token, &body)
            .await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        if device_not_online(status, &answer) {
            // Delivered to nobody, as an MQTT publish without a subscriber on AWS: not retried.
            tracing::warn!(device_id = %device, "feedback not delivered: the device is not connected");
            return Ok(());
        }
        Err(refused("InvokeDeviceMethod", &resource, status, &answer))
    }

    async fn notify(&self, delivery_id: &str, message: &Value) -> Result<(), CloudError> {
        let Some(endpoint) = &self.topic_endpoint else {
            return Err(not_configured(
                "PublishEvents",
                format!("Event Grid topic {}-events", self.twin),
                "notification topic (EVENT_TOPIC_ENDPOINT)",
            ));
        };
        let resource = format!("Event Grid topic {endpoint}");
        let token = self
            .token(EVENT_GRID_SCOPE, "PublishEvents", &resource)
            .await?;
        let now = Timestamp::now();
        // The firing's delivery id, shaped as a GUID: the same on every retry of one firing,
        // so a subscriber deduplicating on Event Grid's `id` sees one event per firing.
        let digest = Sha256::digest(format!("{}|{delivery_id}", self.twin).as_bytes());
        let h = hex::encode(&digest[..16]);
        let id = format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
        let events = json!([{
            "id": id,
            "eventType": NOTIFICATION_EVENT_TYPE,
            "subject": format!("{}/events", self.twin),
            "eventTime": now.canonical(),
            "data": {"twin": self.twin, "message": message},
            "dataVersion": "1.0",
        }]);
        let base = service_url(endpoint);
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}api-version={EVENT_GRID_API}");
        let (status, answer) = self
            .post("PublishEvents", &resource, &url, &token, &events)
            .await?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(refused("PublishEvents", &resource, status, &answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_credential::FixedToken;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn event_functions_beyond_the_running_limit_wait_then_fail_as_retryable() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rules: Vec<Rule> = serde_json::from_value(json!([{
            "key": "slow",
            "condition": {"text": "r.s.t > 1", "devices": ["s"]},
            "action": {"type": "lambda", "functionName": "slow", "autoDeploy": true},
            "fire": "on_change"
        }]))
        .expect("rules");
        // The function reads its event, then blocks until the test opens the gate (a FIFO).
        let gate = tmp.path().join("gate");
        let made = std::process::Command::new("mkfifo")
            .arg(&gate)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let exe = event_executable_in(tmp.path(), "slow");
        std::fs::create_dir_all(exe.parent().expect("dir")).expect("dir");
        std::fs::write(
            &exe,
            format!(
                "#!/bin/sh\ncat >/dev/null\ncat '{}' >/dev/null\n",
                gate.display()
            ),
        )
        .expect("script");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let sink = AzureActionSink::new("t", &rules, tmp.path(), Arc::new(FixedToken))
            .with_running_limit(1, Duration::from_millis(300));
        sink.invoke_function("slow", &json!({"n": 1}))
            .await
            .expect("first runs");
        let busy = sink
            .invoke_function("slow", &json!({"n": 2}))
            .await
            .expect_err("no slot while the first runs");
        assert_eq!(busy.code, "TooManyEventFunctions");
        assert!(busy.is_retryable(), "{busy}");
        // Opening the gate's write end and closing it ends the first function: its slot frees.
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&gate)
                .expect("gate"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match sink.invoke_function("slow", &json!({"n": 3})).await {
                Ok(()) => break,
                Err(e) if e.code == "TooManyEventFunctions" && Instant::now() < deadline => {}
                Err(e) => panic!("the slot was not freed: {e}"),
            }
        }
        drop(
            std::fs::OpenOptions::new()
                .write(true)
                .open(&gate)
                .expect("gate"),
        );
    }

    #[test]
    fn urls_and_answers() {
        assert_eq!(
            service_url("h.azure-devices.net"),
            "https://h.azure-devices.net"
        );
        assert_eq!(service_url("127.0.0.1:4000"), "http://127.0.0.1:4000");
        assert_eq!(
            service_url("https://t.westeurope-1.eventgrid.azure.net/api/events"),
            "https://t.westeurope-1.eventgrid.azure.net/api/events"
        );
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
        let offline = r#"{"Message":"{\"errorCode\":404103,\"message\":\"Timed out waiting for device to connect.\"}"}"#;
        assert!(device_not_online(404, offline));
        assert!(!device_not_online(
            404,
            r#"{"Message":"ErrorCode:DeviceNotFound;x"}"#
        ));
        assert!(refused("X", "r", 429, "").is_retryable());
        assert!(refused("X", "r", 503, "").is_retryable());
        assert!(!refused("X", "r", 400, r#"{"error":{"code":"BadRequest"}}"#).is_retryable());
        assert_eq!(
            refused("X", "r", 400, r#"{"error":{"code":"BadRequest"}}"#).code,
            "BadRequest"
        );
    }
}
