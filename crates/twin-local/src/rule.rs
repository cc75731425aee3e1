//! The twin's topic rule applied as deployed: a long-running bridge that reads the rule's topic
//! filter from the local mosquitto as the rule engine identity (mutual TLS, QoS 1, a persistent
//! session), evaluates the rule's SQL on each message and invokes the rule's Lambda action
//! through the local Lambda Invoke API (`X-Amz-Invocation-Type: Event`, as IoT Core does).
//!
//! An invoke the router refuses for good (not throttling, not a server error) is what IoT Core
//! hands to the rule's error action: with one deployed, the bridge sends IoT's error message
//! (`base64OriginalPayload`, `failures[]`) to its SQS queue, as IoT Core would.
//!
//! A message is acknowledged to the broker only once its outcome is final (the router accepted
//! the invoke with 202, or the rule skipped or rejected it), so a bridge or broker restart loses
//! nothing: the broker redelivers what was not acknowledged. Delivery is at least once.

use crate::broker::{self, TrustedDevice};
use crate::invoke::{BadRouterUrl, InvocationType, Router};
use crate::pki::{Pki, RULE_ENGINE_IDENTITY};
use crate::registered::DeployedRule;
use crate::rule_sql::{self, Message, Outcome, RuleSql, SqlError};
use crate::LocalError;
use rumqttc::{
    AsyncClient, ConnectionError, Event, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long one Invoke call may take before it counts as a transient failure.
const INVOKE_WITHIN: Duration = Duration::from_secs(10);
/// First and longest wait between retries of an invoke and between reconnects.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why the bridge cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The rule's SQL uses syntax the local rule engine does not support.
    #[error("topic rule `{rule}` is not applied locally: {source}")]
    NotApplied {
        /// The rule.
        rule: String,
        /// Where and what.
        source: SqlError,
    },
    /// The rule is disabled in IoT: it does nothing, so neither does the bridge.
    #[error("topic rule `{rule}` is disabled, so no message reaches its action (enable it and run `deployer deploy` again)")]
    Disabled {
        /// The rule.
        rule: String,
    },
    /// The rule has no Lambda action, the only kind the local plane runs.
    #[error("topic rule `{rule}` has no Lambda action ({other} other action(s)); the local data plane only runs Lambda actions")]
    NoLambdaAction {
        /// The rule.
        rule: String,
        /// How many other actions it has.
        other: usize,
    },
    /// The router URL is unusable.
    #[error(transparent)]
    RouterUrl(#[from] BadRouterUrl),
    /// The rule engine's certificate or key cannot be loaded.
    #[error(
        "the rule engine's TLS identity cannot be loaded (run `deployer local up` to make it): {0}"
    )]
    Identity(#[from] LocalError),
}

/// What the bridge needs to know.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The local broker's port on 127.0.0.1 (`UpReport::port`).
    pub port: u16,
    /// The local PKI (the rule engine's certificate and key, the CA).
    pub pki: Pki,
    /// The rule as deployed (`registered::read_rule`).
    pub rule: DeployedRule,
    /// The devices the broker trusts (`UpReport::trusted`): the client id of a message is the
    /// one identity allowed to publish on its topic, since MQTT does not carry it to subscribers.
    pub publishers: Vec<TrustedDevice>,
    /// The rule's error action, when it has one ([`ErrorAction::of`]).
    pub error_action: Option<ErrorAction>,
}

/// The rule's SQS error action: where what the Lambda action could not take goes.
#[derive(Debug, Clone)]
pub struct ErrorAction {
    /// The queue's URL, as the deployed rule names it.
    pub queue_url: String,
    /// Clients of the emulator.
    pub clients: Arc<twin_aws::AwsClients>,
}

impl ErrorAction {
    /// The deployed rule's error action, if it has an SQS one.
    pub fn of(rule: &DeployedRule, clients: Arc<twin_aws::AwsClients>) -> Option<ErrorAction> {
        rule.error_queue_url
            .clone()
            .map(|queue_url| ErrorAction { queue_url, clients })
    }
}

/// IoT Core's error action message for one failed message (AWS IoT "Error action message
/// format").
pub fn error_message(
    rule: &str,
    topic: &str,
    client_id: Option<&str>,
    payload: &[u8],
    failed_resource: &str,
    error: &str,
) -> serde_json::Value {
    use base64::Engine as _;
    serde_json::json!({
        "ruleName": rule,
        "topic": topic,
        "cloudwatchTraceId": format!("local-{}", now_ms()),
        "clientId": client_id.unwrap_or_default(),
        "base64OriginalPayload": base64::engine::general_purpose::STANDARD.encode(payload),
        "failures": [{
            "failedAction": "LambdaAction",
            "failedResource": failed_resource,
            "errorMessage": error,
        }],
    })
}

/// The bridge's counters, shared with whoever reports status.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    received: AtomicU64,
    delivered: AtomicU64,
    skipped: AtomicU64,
    rejected: AtomicU64,
    invoke_retries: AtomicU64,
    reconnects: AtomicU64,
    duplicates_suppressed: AtomicU64,
    errored: AtomicU64,
    connected: AtomicBool,
    subscribed: AtomicBool,
    reasons: Mutex<BTreeMap<String, u64>>,
    last_error: Mutex<Option<String>>,
}

/// A snapshot of [`BridgeCounters`] for a status report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct BridgeStatus {
    /// Messages taken from the broker (redeliveries of an unacknowledged message count again).
    pub received: u64,
    /// Invokes the router accepted (202).
    pub delivered: u64,
    /// Messages the WHERE condition did not select.
    pub skipped: u64,
    /// Messages rejected at L1, by reason (sums to `rejected`).
    pub rejected: u64,
    /// Rejections by reason.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Invokes retried after a transient failure.
    pub invoke_retries: u64,
    /// Times the broker connection was lost.
    pub reconnects: u64,
    /// Redeliveries recognised as already delivered and not invoked again.
    pub duplicates_suppressed: u64,
    /// Messages the Lambda action refused, sent to the rule's error action's queue.
    #[serde(default)]
    pub to_error_action: u64,
    /// Whether the bridge is connected to the broker now.
    pub connected: bool,
    /// Whether the broker confirmed the subscription on the current connection.
    pub subscribed: bool,
    /// The last transient error (broker or router), if any.
    pub last_error: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere while holding a counter lock leaves a usable counter.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BridgeCounters {
    /// The counters now.
    pub fn snapshot(&self) -> BridgeStatus {
        BridgeStatus {
            received: self.received.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            rejected_by_reason: lock(&self.reasons).clone(),
            invoke_retries: self.invoke_retries.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            duplicates_suppressed: self.duplicates_suppressed.load(Ordering::Relaxed),
            to_error_action: self.errored.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
            subscribed: self.subscribed.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }

    fn reject(&self, reason: String) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        *lock(&self.reasons).entry(reason).or_default() += 1;
    }

    fn error(&self, e: String) {
        *lock(&self.last_error) = Some(e);
    }
}

/// A rule the bridge can apply: parsed SQL and the function its Lambda action invokes.
#[derive(Debug, Clone)]
pub struct AppliedRule {
    /// The rule's name.
    pub name: String,
    /// Its parsed SQL.
    pub sql: RuleSql,
    /// The Lambda action's function ARN.
    pub function_arn: String,
}

impl AppliedRule {
    /// Parses the deployed rule; an error says why it cannot be applied locally.
    pub fn new(rule: &DeployedRule) -> Result<AppliedRule, BridgeError> {
        if !rule.enabled {
            return Err(BridgeError::Disabled {
                rule: rule.name.clone(),
            });
        }
        let sql = rule_sql::parse(&rule.sql).map_err(|source| BridgeError::NotApplied {
            rule: rule.name.clone(),
            source,
        })?;
        let Some(function_arn) = rule.lambda_function_arn.clone() else {
            return Err(BridgeError::NoLambdaAction {
                rule: rule.name.clone(),
                other: rule.other_actions,
            });
        };
        Ok(AppliedRule {
            name: rule.name.clone(),
            sql,
            function_arn,
        })
    }
}

/// The client id IoT Core would report for a message on `topic`: the one trusted identity whose
/// policy lets it publish there (the broker's ACL enforces exactly that), if there is one.
fn publisher_of<'a>(publishers: &'a [TrustedDevice], topic: &str) -> Option<&'a str> {
    let mut who = publishers.iter().filter(|d| {
        d.publish_topics
            .iter()
            .any(|t| rule_sql::topic_matches(t, topic))
    });
    match (who.next(), who.next()) {
        (Some(d), None) => Some(d.identity.as_str()),
        _ => None,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn fingerprint(p: &Publish) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    p.topic.hash(&mut h);
    p.payload.hash(&mut h);
    h.finish()
}

/// The topic rule bridge.
pub struct Bridge {
    config: BridgeConfig,
    rule: AppliedRule,
    router: Router,
    counters: Arc<BridgeCounters>,
}

impl Bridge {
    /// Checks the rule and the router URL; nothing connects until [`Bridge::run`].
    pub fn new(config: BridgeConfig, router_url: &str) -> Result<Bridge, BridgeError> {
        let rule = AppliedRule::new(&config.rule)?;
        let router = Router::parse(router_url)?;
        Ok(Bridge {
            config,
            rule,
            router,
            counters: Arc::new(BridgeCounters::default()),
        })
    }

    /// The counters, live while [`Bridge::run`] runs (and after).
    pub fn counters(&self) -> Arc<BridgeCounters> {
        self.counters.clone()
    }

    /// The rule being applied.
    pub fn rule(&self) -> &AppliedRule {
        &self.rule
    }

    /// Runs until `cancel`: connects (reconnecting with backoff when the broker goes away),
    /// subscribes to the rule's filter and applies the rule to every message. Returns an error
    /// only if it cannot start at all.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), BridgeError> {
        let tls = broker::client_tls(&self.config.pki)?;
        let mut options = MqttOptions::new(RULE_ENGINE_IDENTITY, "127.0.0.1", self.config.port);
        options
            .set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)))
            // The broker keeps the subscription and queues QoS 1 messages while the bridge is
            // away; the client id is the certificate's CN anyway (use_username_as_clientid).
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(Duration::from_secs(15));
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let generation = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::unbounded_channel::<(Publish, u64)>();
        let worker = Worker {
            rule: self.rule.clone(),
            router: self.router.clone(),
            publishers: self.config.publishers.clone(),
            counters: self.counters.clone(),
            client: client.clone(),
            generation: generation.clone(),
            cancel: cancel.clone(),
            delivered_unacked: HashMap::new(),
            error_action: self.config.error_action.clone(),
        };
        let worker = tokio::spawn(worker.run(rx));
        let filter = self.rule.sql.from.clone();
        let mut delay = BACKOFF_FIRST;
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => break,
                e = eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    generation.fetch_add(1, Ordering::SeqCst);
                    self.counters.connected.store(true, Ordering::Relaxed);
                    delay = BACKOFF_FIRST;
                    // Also when the session is present: the deployed rule's filter may have
                    // changed since the session was made, and subscribing again is harmless.
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        self.counters
                            .error(format!("cannot subscribe to {filter}: {e}"));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send((p, generation.load(Ordering::SeqCst)));
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack.return_codes.contains(&SubscribeReasonCode::Failure);
                    self.counters.subscribed.store(!refused, Ordering::Relaxed);
                    if refused {
                        self.counters.error(format!(
                            "the broker refused the subscription to {filter} for {RULE_ENGINE_IDENTITY} (is the ACL from `local up` current?)"
                        ));
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    // The connection is gone: messages taken on it and not yet acknowledged
                    // will come again on the next one, so the worker drops them.
                    generation.fetch_add(1, Ordering::SeqCst);
                    self.counters.connected.store(false, Ordering::Relaxed);
                    self.counters.subscribed.store(false, Ordering::Relaxed);
                    self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    self.counters.error(describe(&e, self.config.port));
                    tracing::debug!(error = %e, "rule bridge: broker connection lost");
                    // Reconnect backoff: the broker is restarting or gone; poll() reconnects.
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
            }
        }
        self.counters.connected.store(false, Ordering::Relaxed);
        drop(tx);
        let _ = worker.await;
        Ok(())
    }
}

fn describe(e: &ConnectionError, port: u16) -> String {
    format!("broker 127.0.0.1:{port}: {e}")
}

/// Applies the rule to messages in order, one at a time, and acknowledges each when final.
struct Worker {
    rule: AppliedRule,
    router: Router,
    publishers: Vec<TrustedDevice>,
    counters: Arc<BridgeCounters>,
    client: AsyncClient,
    generation: Arc<AtomicU64>,
    cancel: CancellationToken,
    /// Messages delivered whose connection was lost before they could be acknowledged, by packet
    /// id: the broker resends them (same id, DUP) and they are then acknowledged, not invoked.
    delivered_unacked: HashMap<u16, u64>,
    error_action: Option<ErrorAction>,
}

/// The end of one message.
enum Done {
    /// Outcome final: acknowledge it.
    Ack,
    /// Cancelled before its outcome was final: leave it to the broker to resend.
    Leave,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<(Publish, u64)>) {
        while let Some((p, generation)) = rx.recv().await {
            if generation != self.generation.load(Ordering::SeqCst) {
                continue;
            }
            if p.dup && self.delivered_unacked.get(&p.pkid) == Some(&fingerprint(&p)) {
                self.delivered_unacked.remove(&p.pkid);
                self.counters
                    .duplicates_suppressed
                    .fetch_add(1, Ordering::Relaxed);
                self.ack(&p).await;
                continue;
            }
            self.counters.received.fetch_add(1, Ordering::Relaxed);
            match self.handle(&p).await {
                Done::Leave => return,
                Done::Ack if generation == self.generation.load(Ordering::SeqCst) => {
                    self.ack(&p).await
                }
                Done::Ack => {
                    self.delivered_unacked.insert(p.pkid, fingerprint(&p));
                }
            }
        }
    }

    async fn ack(&self, p: &Publish) {
        if let Err(e) = self.client.ack(p).await {
            self.counters
                .error(format!("cannot acknowledge a message to the broker: {e}"));
        }
    }

    /// Sends IoT's error message for `p` to the rule's error action, if it has one; a send that
    /// fails is counted as an error (IoT Core logs it the same way).
    async fn to_error_action(&self, p: &Publish, client_id: Option<&str>, error: &str) {
        let Some(action) = &self.error_action else {
            return;
        };
        let body = error_message(
            &self.rule.name,
            &p.topic,
            client_id,
            &p.payload,
            &self.rule.function_arn,
            error,
        );
        if let Err(e) =
            twin_aws::dead_letters::send(&action.clients, &action.queue_url, &body.to_string())
                .await
        {
            self.counters.error(format!(
                "the rule's error action could not send to {}: {e}",
                action.queue_url
            ));
        } else {
            self.counters.errored.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn handle(&self, p: &Publish) -> Done {
        let msg = Message {
            topic: &p.topic,
            payload: &p.payload,
            client_id: publisher_of(&self.publishers, &p.topic),
            timestamp_ms: now_ms(),
        };
        let document = match self.rule.sql.evaluate(&msg) {
            Outcome::Skipped => {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                return Done::Ack;
            }
            Outcome::Rejected(reason) => {
                self.counters.reject(reason);
                return Done::Ack;
            }
            Outcome::Deliver(doc) => doc,
        };
        let body = match serde_json::to_vec(&document) {
            Ok(b) => bytes::Bytes::from(b),
            Err(e) => {
                self.counters
                    .reject(format!("the rule's output cannot be serialised: {e}"));
                return Done::Ack;
            }
        };
        let mut delay = BACKOFF_FIRST;
        loop {
            let transient = match self
                .router
                .invoke(
                    &self.rule.function_arn,
                    InvocationType::Event,
                    body.clone(),
                    INVOKE_WITHIN,
                )
                .await
            {
                Ok(a) if a.status == 202 => {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                    return Done::Ack;
                }
                Ok(a) if a.status == 429 || a.status >= 500 => format!(
                    "invoking {} through {}: HTTP {} {}",
                    self.rule.function_arn,
                    self.router.url(),
                    a.status,
                    String::from_utf8_lossy(&a.body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
                Ok(a) => {
                    // IoT Core hands this to the rule's error action.
                    self.counters.reject(format!(
                        "the Lambda router refused the invoke with HTTP {}",
                        a.status
                    ));
                    let error = format!(
                        "invoking {} through {}: HTTP {} {}",
                        self.rule.function_arn,
                        self.router.url(),
                        a.status,
                        String::from_utf8_lossy(&a.body)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    );
                    self.counters.error(error.clone());
                    self.to_error_action(p, msg.client_id, &error).await;
                    return Done::Ack;
                }
                Err(e) => e.to_string(),
            };
            self.counters.invoke_retries.fetch_add(1, Ordering::Relaxed);
            self.counters.error(transient);
            // Retry backoff: the router is starting, throttling or failing for now; the message
            // stays unacknowledged meanwhile, so nothing is lost if this process ends.
            tokio::select! {
                _ = self.cancel.cancelled() => return Done::Leave,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployed(sql: &str) -> DeployedRule {
        DeployedRule {
            name: "t_iot_data".into(),
            sql: sql.into(),
            enabled: true,
            lambda_function_arn: Some("arn:aws:lambda:us-east-1:1:function:t-dispatcher".into()),
            other_actions: 0,
            error_queue_url: None,
        }
    }

    #[test]
    fn a_rule_is_applied_only_when_enabled_parsable_and_with_a_lambda_action() {
        assert!(AppliedRule::new(&deployed("SELECT * FROM 't/+'")).is_ok());
        let bad = AppliedRule::new(&deployed("SELECT upper(x) AS u FROM 't/+'"))
            .expect_err("unsupported");
        assert!(
            matches!(&bad, BridgeError::NotApplied { source, .. } if source.position == 8),
            "{bad}"
        );
        assert!(bad.to_string().contains("t_iot_data"), "{bad}");
        let mut off = deployed("SELECT * FROM 't/+'");
        off.enabled = false;
        assert!(matches!(
            AppliedRule::new(&off),
            Err(BridgeError::Disabled { .. })
        ));
        let mut none = deployed("SELECT * FROM 't/+'");
        none.lambda_function_arn = None;
        none.other_actions = 1;
        assert!(matches!(
            AppliedRule::new(&none),
            Err(BridgeError::NoLambdaAction { other: 1, .. })
        ));
    }

    #[test]
    fn the_client_id_is_the_only_identity_allowed_on_the_topic() {
        let dev = |id: &str, topic: &str| TrustedDevice {
            thing: id.into(),
            certificate_id: "c".into(),
            identity: id.into(),
            publish_topics: vec![topic.into()],
            read_topics: Vec::new(),
            pem: String::new(),
        };
        let devices = [dev("t--a", "t/iot-data/a"), dev("t--b", "t/iot-data/b")];
        assert_eq!(publisher_of(&devices, "t/iot-data/a"), Some("t--a"));
        assert_eq!(publisher_of(&devices, "t/iot-data/c"), None);
        let shared = [dev("t--a", "t/iot-data/+"), dev("t--b", "t/iot-data/b")];
        assert_eq!(publisher_of(&shared, "t/iot-data/b"), None);
    }
}
