//! The event evaluator: after the persister stores a record, the twin's event rules that read
//! the record's device are evaluated, and the ones that fire run their action.
//!
//! Firing is decided by [`twin_events::decide`] from a durable per-rule state (whether the
//! condition held at the last evaluation). The state change is one conditional write
//! ([`RuleStateStore::compare_and_set`]), so when two persisters evaluate the same transition at
//! once only the one whose write lands fires; the other re-reads the state, now active, and does
//! not. If the action then fails the state is put back, so the platform's retry of the whole
//! invocation fires it again: a transition fires once when actions succeed, and is retried
//! (never silently lost) when they fail.
//!
//! Transitions are judged in event time: the state keeps the time of the reading it was decided
//! on, and a reading older than that (it arrived late, or its invocation was retried) does not
//! change the state. Without this, 20 arriving after 31 would reset a rule that 32 then fires
//! again.
//!
//! Values of other devices a condition reads come from the hot store (each device's newest
//! record); the record just stored supplies its own device's.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use twin_events::{decide, evaluate, Action, Fire, PropertyRef, Rule};

use crate::error::{CloudError, CloudErrorKind};
use crate::hot_store::{DeviceQuery, HotStore, Order, TimeRange};
use crate::record::HotItem;

/// A rule's stored firing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleState {
    /// Whether the condition held at the last known evaluation.
    pub active: bool,
    /// Bumped on every write: the conditional write's expected value.
    pub version: u64,
    /// The time (UTC milliseconds) of the reading this state was decided on; `None` in a state
    /// an older version wrote. Readings arrive out of order (asynchronous invocations, retries),
    /// so an older reading than this one is not judged again: it cannot undo a later transition.
    pub at: Option<i64>,
}

/// Durable per-rule state (on AWS: an item per rule in the twin's event-state table).
#[async_trait]
pub trait RuleStateStore: Send + Sync {
    /// The rule's state; `None` for a rule never evaluated.
    async fn get(&self, rule: &str) -> Result<Option<RuleState>, CloudError>;

    /// Writes `next` only if the stored state is still `expected` (`None`: absent), in one
    /// atomic conditional write; `Ok(false)` when another writer changed it first.
    async fn compare_and_set(
        &self,
        rule: &str,
        expected: Option<RuleState>,
        next: RuleState,
    ) -> Result<bool, CloudError>;
}

/// Where actions go (on AWS: Lambda Invoke (async), IoT data-plane Publish, SNS Publish).
#[async_trait]
pub trait ActionSink: Send + Sync {
    /// Starts the function `function` (a crate under `lambdas/`) with `event`, not waiting for it.
    async fn invoke_function(&self, function: &str, event: &Value) -> Result<(), CloudError>;
    /// Publishes `payload` to the device's own feedback topic.
    async fn send_feedback(&self, device: &str, payload: &Value) -> Result<(), CloudError>;
    /// Publishes `message` to the twin's notification topic. `delivery_id` is the same for every
    /// retry of one firing (rule, device, reading time), so a subscriber can drop duplicates.
    async fn notify(&self, delivery_id: &str, message: &Value) -> Result<(), CloudError>;
}

/// One rule that fired for a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    /// The rule's key.
    pub rule: String,
    /// Its action's type.
    pub action: String,
}

/// How often a lost conditional write is re-read and decided again before giving up: each loss
/// means another writer made progress, so a few rounds always settle.
const MAX_ROUNDS: usize = 5;

/// Evaluates the twin's rules against stored records.
pub struct EventEvaluator<S, A> {
    rules: Vec<Rule>,
    state: S,
    actions: A,
}

impl<S: RuleStateStore, A: ActionSink> EventEvaluator<S, A> {
    /// An evaluator of `rules` (as twin-config loaded them: references resolved).
    pub fn new(rules: Vec<Rule>, state: S, actions: A) -> Self {
        Self {
            rules,
            state,
            actions,
        }
    }

    /// The rules from `json`, the serialized `Vec<Rule>` the deployer passes to the function.
    pub fn rules_from_json(json: &str) -> Result<Vec<Rule>, String> {
        serde_json::from_str(json).map_err(|e| format!("the event rules are not valid: {e}"))
    }

    /// The action sink (for tests).
    pub fn actions(&self) -> &A {
        &self.actions
    }

    /// Evaluates every rule that reads `item`'s device and runs the actions of those that fire.
    /// An error (reading values or state, or running an action) is returned after the other
    /// rules were handled, so that a retry of the invocation redoes only what failed.
    pub async fn handle(
        &self,
        item: &HotItem,
        hot: &dyn HotStore,
    ) -> Result<Vec<Fired>, CloudError> {
        let mut fired = Vec::new();
        let mut first_error = None;
        let mut values: BTreeMap<String, Option<Map<String, Value>>> = BTreeMap::new();
        values.insert(item.device_id.clone(), Some(item.properties.clone()));
        for rule in self.rules.iter().filter(|r| r.reads(&item.device_id)) {
            match self.rule(rule, item, hot, &mut values).await {
                Ok(true) => fired.push(Fired {
                    rule: rule.key.clone(),
                    action: rule.action.kind().to_string(),
                }),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(rule = %rule.key, error = %e, "event rule failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(fired),
        }
    }

    async fn rule(
        &self,
        rule: &Rule,
        item: &HotItem,
        hot: &dyn HotStore,
        values: &mut BTreeMap<String, Option<Map<String, Value>>>,
    ) -> Result<bool, CloudError> {
        for device in rule.condition.devices() {
            if !values.contains_key(device) {
                values.insert(device.to_string(), newest(hot, device).await?);
            }
        }
        let latest = |p: &PropertyRef| -> Option<Value> {
            values
                .get(p.iot_device_id.as_deref()?)?
                .as_ref()?
                .get(&p.property)
                .cloned()
        };
        let now = evaluate(&rule.condition.expr, &latest);
        let at = item.id.millis();
        for _ in 0..MAX_ROUNDS {
            let stored = self.state.get(&rule.key).await?;
            let was_active = stored.is_some_and(|s| s.active);
            let d = decide(rule.fire, was_active, now);
            if stored
                .and_then(|s| s.at)
                .is_some_and(|decided| decided > at)
            {
                // A late reading: the state was decided on a newer one. Every-message rules
                // still fire for it (each message on its own); transitions are not redone.
                tracing::debug!(rule = %rule.key, "reading older than the rule's state; not judged again");
                let fire = rule.fire == Fire::EveryMessage && d.fire;
                if fire {
                    self.run(rule, item).await?;
                }
                return Ok(fire);
            }
            if d.active == was_active && stored.is_some() {
                // Nothing to record; every_message rules fire without a state change.
                if d.fire {
                    self.run(rule, item).await?;
                }
                return Ok(d.fire);
            }
            let next = RuleState {
                active: d.active,
                version: stored.map_or(1, |s| s.version + 1),
                at: Some(at),
            };
            if !self.state.compare_and_set(&rule.key, stored, next).await? {
                if rule.fire == Fire::EveryMessage && d.fire {
                    // Every message fires on its own; only the recorded state was contended.
                    self.run(rule, item).await?;
                    return Ok(true);
                }
                continue;
            }
            if !d.fire {
                return Ok(false);
            }
            if let Err(e) = self.run(rule, item).await {
                // Put the state back so that the retried invocation sees the transition again.
                let back = RuleState {
                    active: was_active,
                    version: next.version + 1,
                    at: stored.and_then(|s| s.at),
                };
                if let Err(undo) = self
                    .state
                    .compare_and_set(&rule.key, Some(next), back)
                    .await
                {
                    tracing::error!(rule = %rule.key, error = %undo, "could not reset the rule's state after its action failed");
                }
                return Err(e);
            }
            return Ok(true);
        }
        Err(CloudError::new(
            "UpdateRuleState",
            format!("event rule {}", rule.key),
            "ConditionalWriteContended",
            format!("the rule's state changed under {MAX_ROUNDS} conditional writes in a row"),
            CloudErrorKind::Transient,
        ))
    }

    async fn run(&self, rule: &Rule, item: &HotItem) -> Result<(), CloudError> {
        let delivery_id = delivery_id(rule, item);
        let event = json!({
            "deliveryId": delivery_id,
            "rule": rule.key,
            "condition": rule.condition.text,
            "iotDeviceId": item.device_id,
            "time": item.id.canonical(),
            "values": item.properties,
        });
        tracing::info!(rule = %rule.key, action = rule.action.kind(), "event rule fired");
        match &rule.action {
            Action::Function {
                function_name,
                feedback,
                ..
            } => {
                self.actions.invoke_function(function_name, &event).await?;
                if let Some(f) = feedback {
                    self.actions
                        .send_feedback(&f.iot_device_id, &f.payload)
                        .await?;
                }
            }
            Action::Feedback(f) => {
                self.actions
                    .send_feedback(&f.iot_device_id, &f.payload)
                    .await?
            }
            Action::Notification { message } => self.actions.notify(&delivery_id, message).await?,
            // Not deployed by this version (the loader warned); nothing to run.
            Action::Workflow { .. } => {}
        }
        Ok(())
    }
}

/// The id of one firing: the rule, the device and the time of the reading that fired it. The
/// same on every retry of that firing (platforms deliver asynchronous work at least once), so a
/// receiver can drop a duplicate; distinct for each message an every-message rule fires on.
pub fn delivery_id(rule: &Rule, item: &HotItem) -> String {
    format!("{}@{}@{}", rule.key, item.device_id, item.id.canonical())
}

/// The newest record's properties of `device`, `None` when it has none yet.
async fn newest(
    hot: &dyn HotStore,
    device: &str,
) -> Result<Option<Map<String, Value>>, CloudError> {
    let page = hot
        .query_page(&DeviceQuery {
            device_id: device.to_string(),
            range: TimeRange::All,
            after: None,
            order: Order::Descending,
            limit: Some(1),
        })
        .await?;
    Ok(page.items.into_iter().next().map(|i| i.properties))
}

/// Rule states in memory, with the conditional write's semantics (tests, the local data plane).
#[derive(Debug, Default)]
pub struct InMemoryRuleStates {
    states: Mutex<BTreeMap<String, RuleState>>,
}

impl InMemoryRuleStates {
    /// The stored state of `rule`.
    pub fn state(&self, rule: &str) -> Option<RuleState> {
        self.lock().get(rule).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RuleState>> {
        // A panic while holding the lock can only come from a test assertion; keep going.
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl RuleStateStore for InMemoryRuleStates {
    async fn get(&self, rule: &str) -> Result<Option<RuleState>, CloudError> {
        Ok(self.state(rule))
    }

    async fn compare_and_set(
        &self,
        rule: &str,
        expected: Option<RuleState>,
        next: RuleState,
    ) -> Result<bool, CloudError> {
        let mut states = self.lock();
        if states.get(rule).copied() != expected {
            return Ok(false);
        }
        states.insert(rule.to_string(), next);
        Ok(true)
    }
}

/// One action an [`RecordingActions`] sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SentAction {
    /// `invoke_function(name, event)`
    Function(String, Value),
    /// `send_feedback(device, payload)`
    Feedback(String, Value),
    /// `notify(delivery_id, message)`
    Notification(String, Value),
}

/// An action sink that records what it is asked to do, failing the next `fail_next` calls.
#[derive(Debug, Default)]
pub struct RecordingActions {
    sent: Mutex<Vec<SentAction>>,
    fail_next: Mutex<usize>,
}

impl RecordingActions {
    /// What was sent, in order.
    pub fn sent(&self) -> Vec<SentAction> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes the next `n` calls fail with a transient error.
    pub fn fail_next(&self, n: usize) {
        *self.fail_next.lock().unwrap_or_else(|e| e.into_inner()) = n;
    }

    fn record(&self, what: SentAction) -> Result<(), CloudError> {
        let mut fail = self.fail_next.lock().unwrap_or_else(|e| e.into_inner());
        if *fail > 0 {
            *fail -= 1;
            return Err(CloudError::new(
                "Action",
                "recording action sink",
                "InjectedFault",
                "a failure injected by the test",
                CloudErrorKind::Transient,
            ));
        }
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
        Ok(())
    }
}

#[async_trait]
impl ActionSink for RecordingActions {
    async fn invoke_function(&self, function: &str, event: &Value) -> Result<(), CloudError> {
        self.record(SentAction::Function(function.to_string(), event.clone()))
    }
    async fn send_feedback(&self, device: &str, payload: &Value) -> Result<(), CloudError> {
        self.record(SentAction::Feedback(device.to_string(), payload.clone()))
    }
    async fn notify(&self, delivery_id: &str, message: &Value) -> Result<(), CloudError> {
        self.record(SentAction::Notification(
            delivery_id.to_string(),
            message.clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::in_memory::InMemoryHotStore;
    use crate::timestamp::Timestamp;
    use twin_events::{Condition, Feedback};

    fn rule(key: &str, text: &str, fire: Fire, action: Action) -> Rule {
        let mut condition = Condition::parse(text).expect("parse");
        // What twin-config's resolution does: component `t1` is device `s-1`, `p1` is `s-2`.
        condition.expr = {
            let mut e = condition.expr.clone();
            struct Fake;
            impl twin_events::Schema for Fake {
                fn resolve(
                    &self,
                    p: &PropertyRef,
                ) -> Result<Option<twin_events::Resolved>, String> {
                    Ok(Some(twin_events::Resolved {
                        iot_device_id: if p.device == "t1" { "s-1" } else { "s-2" }.into(),
                        value_type: twin_events::ValueType::Double,
                    }))
                }
            }
            assert!(twin_events::check(&mut e, &Fake).is_empty());
            e
        };
        Rule {
            key: key.into(),
            description: None,
            condition,
            action,
            fire,
        }
    }

    fn feedback(device: &str, payload: &str) -> Action {
        Action::Feedback(Feedback {
            iot_device_id: device.into(),
            payload: Value::from(payload),
        })
    }

    fn reading(device: &str, second: u32, t: f64) -> HotItem {
        let mut properties = Map::new();
        properties.insert("temperature".into(), json!(t));
        HotItem {
            device_id: device.into(),
            id: Timestamp::parse(&format!("2025-11-04T13:23:{second:02}.000Z")).expect("time"),
            properties,
        }
    }

    #[tokio::test]
    async fn a_reading_above_the_threshold_fires_once_until_it_falls_back() {
        let ev = EventEvaluator::new(
            vec![rule(
                "hot",
                "room.t1.temperature > DOUBLE(30)",
                Fire::OnChange,
                feedback("s-1", "too hot"),
            )],
            InMemoryRuleStates::default(),
            RecordingActions::default(),
        );
        let hot = InMemoryHotStore::new(10);
        let mut fired = Vec::new();
        for (s, t) in [(1, 20.0), (2, 31.0), (3, 35.0), (4, 25.0), (5, 40.0)] {
            fired.push(
                ev.handle(&reading("s-1", s, t), &hot)
                    .await
                    .expect("handle")
                    .len(),
            );
        }
        assert_eq!(fired, [0, 1, 0, 0, 1]);
        assert_eq!(
            ev.actions().sent(),
            vec![
                SentAction::Feedback("s-1".into(), json!("too hot")),
                SentAction::Feedback("s-1".into(), json!("too hot")),
            ]
        );
        // A record of another device does not touch the rule.
        assert!(ev
            .handle(&reading("s-9", 6, 99.0), &hot)
            .await
            .expect("handle")
            .is_empty());
    }

    #[tokio::test]
    async fn readings_in_any_arrival_order_fire_the_one_transition_once() {
        // 20, 31, 32 in event time; invocations deliver them in any order.
        let readings = [(1, 20.0), (2, 31.0), (3, 32.0)];
        let orders = [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ];
        for order in orders {
            let ev = EventEvaluator::new(
                vec![rule(
                    "hot",
                    "room.t1.temperature > DOUBLE(30)",
                    Fire::OnChange,
                    feedback("s-1", "too hot"),
                )],
                InMemoryRuleStates::default(),
                RecordingActions::default(),
            );
            let hot = InMemoryHotStore::new(10);
            for i in order {
                let (s, t) = readings[i];
                ev.handle(&reading("s-1", s, t), &hot)
                    .await
                    .expect("handle");
            }
            assert_eq!(ev.actions().sent().len(), 1, "arrival order {order:?}");
        }
    }

    #[tokio::test]
    async fn a_late_reading_neither_resets_the_rule_nor_skips_every_message_rules() {
        let ev = EventEvaluator::new(
            vec![
                rule(
                    "hot",
                    "room.t1.temperature > DOUBLE(30)",
                    Fire::OnChange,
                    feedback("s-1", "too hot"),
                ),
                rule(
                    "each",
                    "room.t1.temperature > DOUBLE(10)",
                    Fire::EveryMessage,
                    feedback("s-1", "each"),
                ),
            ],
            InMemoryRuleStates::default(),
            RecordingActions::default(),
        );
        let hot = InMemoryHotStore::new(10);
        ev.handle(&reading("s-1", 5, 31.0), &hot).await.expect("31");
        let version = ev.state.state("hot").map(|s| (s.active, s.version));
        // 20 is older than the reading the state was decided on: no state change ...
        let fired = ev.handle(&reading("s-1", 4, 20.0), &hot).await.expect("20");
        assert_eq!(
            ev.state.state("hot").map(|s| (s.active, s.version)),
            version
        );
        // ... but the every-message rule fires for it all the same.
        assert_eq!(
            fired.iter().map(|f| f.rule.as_str()).collect::<Vec<_>>(),
            ["each"]
        );
        // A newer reading below the threshold does reset it.
        ev.handle(&reading("s-1", 6, 20.0), &hot)
            .await
            .expect("20 later");
        assert_eq!(ev.state.state("hot").map(|s| s.active), Some(false));
    }

    #[tokio::test]
    async fn every_message_fires_while_it_holds() {
        let ev = EventEvaluator::new(
            vec![rule(
                "hot",
                "room.t1.temperature > 30",
                Fire::EveryMessage,
                Action::Notification {
                    message: json!("hot"),
                },
            )],
            InMemoryRuleStates::default(),
            RecordingActions::default(),
        );
        let hot = InMemoryHotStore::new(10);
        for (s, t) in [(1, 31.0), (2, 32.0), (3, 1.0)] {
            ev.handle(&reading("s-1", s, t), &hot)
                .await
                .expect("handle");
        }
        assert_eq!(ev.actions().sent().len(), 2);
    }

    #[tokio::test]
    async fn a_failed_action_resets_the_state_so_the_retry_fires() {
        let ev = EventEvaluator::new(
            vec![rule(
                "hot",
                "room.t1.temperature > 30",
                Fire::OnChange,
                Action::Function {
                    function_name: "alarm".into(),
                    auto_deploy: true,
                    feedback: None,
                },
            )],
            InMemoryRuleStates::default(),
            RecordingActions::default(),
        );
        let hot = InMemoryHotStore::new(10);
        ev.actions().fail_next(1);
        let r = reading("s-1", 1, 31.0);
        let err = ev.handle(&r, &hot).await.expect_err("action fails");
        assert!(err.is_retryable());
        assert!(ev.actions().sent().is_empty());
        // The platform retries the invocation: now it fires, once.
        assert_eq!(ev.handle(&r, &hot).await.expect("retry").len(), 1);
        assert_eq!(ev.handle(&r, &hot).await.expect("again").len(), 0);
        let sent = ev.actions().sent();
        assert!(matches!(&sent[..], [SentAction::Function(name, event)]
            if name == "alarm" && event["rule"] == "hot" && event["values"]["temperature"] == 31.0));
    }

    #[tokio::test]
    async fn a_firing_keeps_its_delivery_id_across_retries() {
        let ev = EventEvaluator::new(
            vec![rule(
                "hot",
                "room.t1.temperature > 30",
                Fire::OnChange,
                Action::Notification {
                    message: json!("too hot"),
                },
            )],
            InMemoryRuleStates::default(),
            RecordingActions::default(),
        );
        let hot = InMemoryHotStore::new(10);
        ev.actions().fail_next(1);
        let r = reading("s-1", 1, 31.0);
        ev.handle(&r, &hot).await.expect_err("publish fails");
        ev.handle(&r, &hot).await.expect("retry");
        // The id is a function of the firing, not of the attempt: the failed publish carried it
        // too, so a subscriber that got both drops one.
        assert_eq!(
            ev.actions().sent(),
            vec![SentAction::Notification(
                "hot@s-1@2025-11-04T13:23:01.000Z".into(),
                json!("too hot")
            )]
        );
    }

    #[tokio::test]
    async fn two_evaluators_sharing_the_state_fire_one_transition_once() {
        let states = std::sync::Arc::new(InMemoryRuleStates::default());
        struct Shared(std::sync::Arc<InMemoryRuleStates>);
        #[async_trait]
        impl RuleStateStore for Shared {
            async fn get(&self, rule: &str) -> Result<Option<RuleState>, CloudError> {
                // Let the other evaluator run between the read and the conditional write.
                let got = self.0.get(rule).await;
                tokio::task::yield_now().await;
                got
            }
            async fn compare_and_set(
                &self,
                rule: &str,
                expected: Option<RuleState>,
                next: RuleState,
            ) -> Result<bool, CloudError> {
                self.0.compare_and_set(rule, expected, next).await
            }
        }
        let make = || {
            EventEvaluator::new(
                vec![rule(
                    "hot",
                    "room.t1.temperature > 30",
                    Fire::OnChange,
                    feedback("s-1", "x"),
                )],
                Shared(states.clone()),
                RecordingActions::default(),
            )
        };
        let (a, b) = (make(), make());
        let hot = InMemoryHotStore::new(10);
        let (ra, rb) = (reading("s-1", 1, 31.0), reading("s-1", 2, 33.0));
        let (x, y) = tokio::join!(a.handle(&ra, &hot), b.handle(&rb, &hot));
        let total = x.expect("a").len() + y.expect("b").len();
        assert_eq!(total, 1);
        assert_eq!(a.actions().sent().len() + b.actions().sent().len(), 1);
        assert_eq!(states.state("hot").map(|s| s.active), Some(true));
    }

    #[tokio::test]
    async fn a_condition_over_two_devices_reads_the_other_from_the_hot_store() {
        let ev = EventEvaluator::new(
            vec![rule(
                "warmer",
                "room.t1.temperature > room.p1.temperature",
                Fire::OnChange,
                feedback("s-1", "warmer"),
            )],
            InMemoryRuleStates::default(),
            RecordingActions::default(),
        );
        let hot = InMemoryHotStore::new(10);
        // No value of s-2 yet: unknown, no fire.
        assert!(ev
            .handle(&reading("s-1", 1, 50.0), &hot)
            .await
            .expect("h")
            .is_empty());
        hot.put_item(&reading("s-2", 2, 10.0)).await.expect("put");
        hot.put_item(&reading("s-2", 3, 20.0)).await.expect("put");
        assert_eq!(
            ev.handle(&reading("s-1", 4, 25.0), &hot)
                .await
                .expect("h")
                .len(),
            1
        );
    }
}
