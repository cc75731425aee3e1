//! IoT Hub's telemetry path, locally: a mosquitto broker stands in for the hub's MQTT endpoint
//! (mutual TLS trusting exactly the device certificates whose thumbprints are registered on the
//! hub, each device allowed to publish only to its own `devices/<id>/messages/events/...`), and a
//! bridge turns each message into the `Microsoft.Devices.DeviceTelemetry` event the hub's Event
//! Grid system topic would publish, delivering it to the event subscription's function on the
//! local Functions host.
//!
//! Delivery is Event Grid's: retried with backoff on any failure (no answer, 5xx, 4xx) until a
//! deadline, then counted as dead-lettered and logged as an error, never dropped silently. A
//! message is acknowledged to the broker only once its delivery is final, so a bridge restart
//! redelivers what was in flight (at least once, as Event Grid).
//!
//! The broker also carries IoT Hub's direct methods (each device reads and answers only its own
//! calls, see [`broker::render_direct_method_acl`]); [`crate::hub_methods`] serves the REST call.

use crate::broker::{self, BrokerFiles, TrustedDevice};
use crate::pki::Pki;
use crate::LocalError;
use base64::Engine;
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS, TlsConfiguration, Transport};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The topic filter the bridge reads: every device's telemetry.
pub const TELEMETRY_FILTER: &str = "devices/+/messages/events/#";
/// The event type of device telemetry.
pub const DEVICE_TELEMETRY: &str = "Microsoft.Devices.DeviceTelemetry";
/// First and longest wait between delivery attempts.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long one delivery attempt may take.
const ATTEMPT_WITHIN: Duration = Duration::from_secs(60);

/// A device the hub's registry knows, as the broker trusts it: its certificate's thumbprint
/// matches a registered one and the identity is enabled.
pub fn registered_device(device: &str, pem: &str, registry: &Value) -> Option<TrustedDevice> {
    if registry.get("status").and_then(Value::as_str) == Some("disabled") {
        return None;
    }
    let thumb = twin_device_credentials::der_sha256(pem).map(hex::encode_upper)?;
    let registered = ["primaryThumbprint", "secondaryThumbprint"]
        .iter()
        .any(|k| {
            registry
                .pointer(&format!("/authentication/x509Thumbprint/{k}"))
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(&thumb))
        });
    registered.then(|| TrustedDevice {
        thing: device.to_string(),
        certificate_id: thumb,
        identity: device.to_string(),
        publish_topics: vec![format!("devices/{device}/messages/events/#")],
        read_topics: Vec::new(),
        pem: pem.to_string(),
    })
}

/// A running hub broker.
#[derive(Debug)]
pub struct HubBroker {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its process id.
    pub pid: u32,
    /// Its files.
    pub files: BrokerFiles,
    /// The local PKI (the server certificate devices verify, the bridge's identity).
    pub pki: Pki,
    /// Where this broker's lines begin in its log (earlier ones are a previous broker's).
    pub log_start: u64,
}

impl HubBroker {
    /// Starts mosquitto in `dir` trusting exactly `devices`, and waits until it accepts TLS.
    pub fn start(dir: &Path, devices: &[TrustedDevice]) -> Result<HubBroker, LocalError> {
        let io = |path: &Path, e: std::io::Error| LocalError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let pki = Pki::in_dir(dir);
        pki.ensure()?;
        let files = BrokerFiles::in_dir(dir);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| LocalError::NoPort(e.to_string()))?;
        // The twin's name is only used for the IoT data shim's grant, which the hub has not.
        let mut acl = broker::render_acl("-", devices, Some(TELEMETRY_FILTER));
        acl.push_str(&broker::render_direct_method_acl());
        std::fs::write(&files.acl, acl).map_err(|e| io(&files.acl, e))?;
        let ca = std::fs::read_to_string(&pki.ca_cert).map_err(|e| io(&pki.ca_cert, e))?;
        std::fs::write(
            &files.trust_bundle,
            broker::render_trust_bundle(&ca, devices),
        )
        .map_err(|e| io(&files.trust_bundle, e))?;
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        std::fs::write(
            &files.config,
            broker::render_config(&files, &pki, port, as_root),
        )
        .map_err(|e| io(&files.config, e))?;
        let log_start = std::fs::metadata(&files.log).map_or(0, |m| m.len());
        let pid = broker::spawn(&files)?;
        if let Err(e) = broker::wait_ready(pid, port, &files, &pki, Duration::from_secs(20)) {
            let _ = broker::stop(pid, &files.config);
            return Err(e);
        }
        Ok(HubBroker {
            port,
            pid,
            files,
            pki,
            log_start,
        })
    }

    /// Stops the broker (SIGTERM, then SIGKILL, polling until it is gone).
    pub fn stop(&self) -> Result<(), LocalError> {
        broker::stop(self.pid, &self.files.config)
    }
}

/// Where the event subscription delivers: the function on the local Functions host.
#[derive(Debug, Clone)]
pub struct Destination {
    /// `127.0.0.1:<port>` of the site.
    pub host: String,
    /// The function's name.
    pub function: String,
    /// The Event Grid extension's system key of the site.
    pub key: String,
    /// The event types the subscription includes (empty: all).
    pub included_event_types: Vec<String>,
}

/// The bridge's counters.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    /// Messages taken from the broker.
    pub received: AtomicU64,
    /// Events the function accepted.
    pub delivered: AtomicU64,
    /// Failed attempts that were retried.
    pub retries: AtomicU64,
    /// Events given up on after the deadline (dead-lettered).
    pub dead_lettered: AtomicU64,
    /// Messages the subscription's filter excludes.
    pub filtered: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// The counters as numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeStatus {
    /// Messages taken from the broker.
    pub received: u64,
    /// Events the function accepted.
    pub delivered: u64,
    /// Failed attempts that were retried.
    pub retries: u64,
    /// Events given up on.
    pub dead_lettered: u64,
    /// Messages the subscription's filter excludes.
    pub filtered: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

impl BridgeCounters {
    fn error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// A snapshot.
    pub fn status(&self) -> BridgeStatus {
        BridgeStatus {
            received: self.received.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            filtered: self.filtered.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// The message properties a device put in its topic (`devices/<id>/messages/events/<bag>`, the
/// bag URL-encoded `k=v&k2=v2`): `(device id, properties)`.
pub fn parse_topic(topic: &str) -> Option<(String, Vec<(String, String)>)> {
    let rest = topic.strip_prefix("devices/")?;
    let (device, rest) = rest.split_once('/')?;
    let bag = rest.strip_prefix("messages/events")?;
    let bag = bag.strip_prefix('/').unwrap_or(bag);
    let props = bag
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                crate::azure_host::percent_decode(k),
                crate::azure_host::percent_decode(v),
            )
        })
        .collect();
    Some((device.to_string(), props))
}

/// The Event Grid event IoT Hub's system topic `hub_id` publishes for one telemetry message:
/// the body as JSON when the device set content type `application/json` and encoding `utf-8`
/// (and the body is JSON), else base64; the authenticated device in `systemProperties`.
pub fn telemetry_event(
    hub_id: &str,
    device: &str,
    properties: &[(String, String)],
    payload: &[u8],
    event_id: &str,
    enqueued: &str,
) -> Value {
    let mut app = Map::new();
    let (mut content_type, mut encoding) = (None, None);
    for (k, v) in properties {
        match k.as_str() {
            "$.ct" => content_type = Some(v.clone()),
            "$.ce" => encoding = Some(v.clone()),
            k if k.starts_with("$.") => {}
            _ => {
                app.insert(k.clone(), json!(v));
            }
        }
    }
    let json_body = content_type
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("application/json"))
        && encoding
            .as_deref()
            .is_some_and(|e| e.eq_ignore_ascii_case("utf-8"));
    let body = match json_body {
        true => serde_json::from_slice::<Value>(payload).ok(),
        false => None,
    }
    .unwrap_or_else(|| json!(base64::engine::general_purpose::STANDARD.encode(payload)));
    let mut system = Map::new();
    system.insert("iothub-connection-device-id".into(), json!(device));
    system.insert(
        "iothub-connection-auth-method".into(),
        json!(r#"{"scope":"device","type":"x509Certificate","issuer":"external","acceptingIpFilterRule":null}"#),
    );
    system.insert("iothub-enqueuedtime".into(), json!(enqueued));
    system.insert("iothub-message-source".into(), json!("Telemetry"));
    if let Some(c) = content_type {
        system.insert("iothub-content-type".into(), json!(c));
    }
    if let Some(e) = encoding {
        system.insert("iothub-content-encoding".into(), json!(e));
    }
    json!({
        "id": event_id,
        "topic": hub_id,
        "subject": format!("devices/{device}"),
        "eventType": DEVICE_TELEMETRY,
        "eventTime": enqueued,
        "data": {"properties": app, "systemProperties": system, "body": body},
        "dataVersion": "",
        "metadataVersion": "1",
    })
}

/// The bridge from the hub broker to the event subscription's function.
pub struct EventGridBridge {
    /// The broker's port.
    pub port: u16,
    /// The local PKI (the bridge connects as its rule engine identity).
    pub pki: Pki,
    /// The hub's ARM id (the events' `topic`).
    pub hub_id: String,
    /// Where the events go.
    pub destination: Destination,
    /// How long one event is retried before it is dead-lettered.
    pub delivery_deadline: Duration,
    counters: Arc<BridgeCounters>,
}

impl EventGridBridge {
    /// A bridge; nothing runs until [`Self::run`].
    pub fn new(
        port: u16,
        pki: Pki,
        hub_id: String,
        destination: Destination,
        delivery_deadline: Duration,
    ) -> EventGridBridge {
        EventGridBridge {
            port,
            pki,
            hub_id,
            destination,
            delivery_deadline,
            counters: Arc::default(),
        }
    }

    /// The counters, live while [`Self::run`] runs.
    pub fn counters(&self) -> Arc<BridgeCounters> {
        self.counters.clone()
    }

    /// Runs until `cancel`: connects (reconnecting with backoff), subscribes to
    /// [`TELEMETRY_FILTER`] and delivers every message, one at a time, in order.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), LocalError> {
        let tls = broker::identity_tls(
            &self.pki,
            &self.pki.rule_engine_cert,
            &self.pki.rule_engine_key,
        )?;
        let mut options =
            MqttOptions::new(crate::pki::RULE_ENGINE_IDENTITY, "127.0.0.1", self.port);
        options
            .set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(15));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Publish>();
        let worker = {
            let (client, counters, cancel) =
                (client.clone(), self.counters.clone(), cancel.clone());
            let (hub_id, destination, deadline) = (
                self.hub_id.clone(),
                self.destination.clone(),
                self.delivery_deadline,
            );
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    let done =
                        deliver(&p, &hub_id, &destination, deadline, &counters, &cancel).await;
                    if !done {
                        // Cancelled mid-delivery: left unacknowledged, the broker resends it.
                        return;
                    }
                    if let Err(e) = client.ack(&p).await {
                        counters.error(format!("cannot acknowledge a message to the broker: {e}"));
                    }
                }
            })
        };
        let mut delay = RETRY_FIRST;
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => break,
                e = eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    delay = RETRY_FIRST;
                    if let Err(e) = client.try_subscribe(TELEMETRY_FILTER, QoS::AtLeastOnce) {
                        self.counters
                            .error(format!("cannot subscribe to {TELEMETRY_FILTER}: {e}"));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(p);
                }
                Ok(_) => {}
                Err(e) => {
                    self.counters
                        .error(format!("hub broker 127.0.0.1:{}: {e}", self.port));
                    // Reconnect backoff: the broker is restarting or gone; poll() reconnects.
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(RETRY_MAX);
                }
            }
        }
        drop(tx);
        let _ = worker.await;
        Ok(())
    }
}

/// Delivers one message until it is accepted or its deadline passes; false if cancelled first.
async fn deliver(
    p: &Publish,
    hub_id: &str,
    destination: &Destination,
    deadline: Duration,
    counters: &BridgeCounters,
    cancel: &CancellationToken,
) -> bool {
    let Some((device, properties)) = parse_topic(&p.topic) else {
        // The broker's ACL lets devices publish only under their own telemetry topic.
        counters.filtered.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(topic = %p.topic, "hub bridge: not a telemetry topic, not delivered");
        return true;
    };
    let included = &destination.included_event_types;
    if !included.is_empty() && !included.iter().any(|t| t == DEVICE_TELEMETRY) {
        counters.filtered.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    let enqueued = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    // One id per message, the same on every retry (the dispatcher's correlation id).
    let event_id = uuid_like(&crate::azure_host::random_bytes());
    let event = telemetry_event(
        hub_id,
        &device,
        &properties,
        &p.payload,
        &event_id,
        &enqueued,
    );
    let body = Bytes::from(Value::Array(vec![event]).to_string());
    let Some((host, port)) = destination
        .host
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_string(), p)))
    else {
        counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
        counters.error(format!(
            "the destination host {} is not host:port",
            destination.host
        ));
        tracing::error!(event_id = %event_id, device = %device, "hub bridge: event dead-lettered: bad destination");
        return true;
    };
    let path = format!(
        "/runtime/webhooks/eventgrid?functionName={}&code={}",
        destination.function, destination.key
    );
    let headers = [
        ("content-type", "application/json".to_string()),
        ("aeg-event-type", "Notification".to_string()),
    ];
    let give_up = Instant::now() + deadline;
    let mut delay = RETRY_FIRST;
    loop {
        let attempt = crate::local_http::call(
            (host.as_str(), port),
            "POST",
            &path,
            &headers,
            body.clone(),
            ATTEMPT_WITHIN,
        );
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return false,
            o = attempt => o,
        };
        let why = match outcome {
            Ok((status, _)) if (200..300).contains(&status) => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Ok((status, text)) => format!("{status}: {}", String::from_utf8_lossy(&text)),
            Err(e) => e,
        };
        if Instant::now() >= give_up {
            counters.dead_lettered.fetch_add(1, Ordering::Relaxed);
            counters.error(format!(
                "event {event_id} of {device} dead-lettered after {deadline:?}: {why}"
            ));
            tracing::error!(event_id = %event_id, device = %device, error = %why, "hub bridge: event dead-lettered");
            return true;
        }
        counters.retries.fetch_add(1, Ordering::Relaxed);
        counters.error(format!("event {event_id} of {device}: {why}; retrying"));
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {} // Event Grid's retry backoff
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}

fn uuid_like(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_device_and_properties_of_a_telemetry_topic() {
        let (d, p) =
            parse_topic("devices/s-1/messages/events/$.ct=application%2Fjson&$.ce=utf-8&k=v")
                .unwrap();
        assert_eq!(d, "s-1");
        assert_eq!(
            p,
            vec![
                ("$.ct".into(), "application/json".into()),
                ("$.ce".into(), "utf-8".into()),
                ("k".into(), "v".into())
            ]
        );
        assert_eq!(
            parse_topic("devices/s-1/messages/events/").unwrap().1,
            vec![]
        );
        assert!(parse_topic("twin/iot-data/s-1").is_none());
    }

    #[test]
    fn the_event_has_a_json_body_only_with_json_content_type_and_utf8() {
        let props = vec![
            ("$.ct".to_string(), "application/json".to_string()),
            ("$.ce".to_string(), "utf-8".to_string()),
            ("site".to_string(), "a".to_string()),
        ];
        let e = telemetry_event("/hub", "s-1", &props, br#"{"t":1}"#, "id-1", "now");
        assert_eq!(e["eventType"], DEVICE_TELEMETRY);
        assert_eq!(e["data"]["body"], json!({"t": 1}));
        assert_eq!(
            e["data"]["systemProperties"]["iothub-connection-device-id"],
            "s-1"
        );
        assert_eq!(e["data"]["properties"], json!({"site": "a"}));
        let plain = telemetry_event("/hub", "s-1", &[], br#"{"t":1}"#, "id-2", "now");
        assert_eq!(plain["data"]["body"], json!("eyJ0IjoxfQ=="));
    }

    #[test]
    fn only_a_registered_enabled_thumbprint_is_trusted() {
        let (pem, _) = twin_device_credentials::make_certificate("s-1").unwrap();
        let thumb = twin_device_credentials::der_sha256(&pem)
            .map(hex::encode_upper)
            .unwrap();
        let reg = json!({"status": "enabled", "authentication": {"type": "selfSigned",
            "x509Thumbprint": {"primaryThumbprint": thumb}}});
        let d = registered_device("s-1", &pem, &reg).unwrap();
        assert_eq!(d.identity, "s-1");
        assert_eq!(d.publish_topics, vec!["devices/s-1/messages/events/#"]);
        let other = json!({"authentication": {"x509Thumbprint": {"primaryThumbprint": "AB"}}});
        assert!(registered_device("s-1", &pem, &other).is_none());
        let mut disabled = reg.clone();
        disabled["status"] = json!("disabled");
        assert!(registered_device("s-1", &pem, &disabled).is_none());
    }
}
