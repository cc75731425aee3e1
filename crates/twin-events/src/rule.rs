//! A rule (`{condition, action}`), its actions, and when it fires.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::syntax::{self, Expr, ParseError};

/// A parsed condition together with the text it was written as (its identity in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The text as written in `config_events.json`.
    pub text: String,
    /// Its syntax tree; property references are resolved once checked.
    pub expr: Expr,
}

impl Condition {
    /// Parses `text` (unchecked: see [`crate::check`]).
    pub fn parse(text: &str) -> Result<Condition, ParseError> {
        Ok(Condition {
            text: text.to_string(),
            expr: syntax::parse(text)?,
        })
    }

    /// The device ids the condition reads (resolved references only), without repeats.
    pub fn devices(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for p in self.expr.properties() {
            if let Some(d) = p.iot_device_id.as_deref() {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
        out
    }
}

/// Serialized as its text, so a rule set travels (e.g. to the evaluator function) as the user
/// wrote it; deserializing parses again and keeps resolved device ids in `devices`.
#[derive(Serialize, Deserialize)]
struct ConditionWire {
    text: String,
    /// Resolved device id per property reference, in text order.
    devices: Vec<Option<String>>,
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ConditionWire {
            text: self.text.clone(),
            devices: self
                .expr
                .properties()
                .iter()
                .map(|p| p.iot_device_id.clone())
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = ConditionWire::deserialize(d)?;
        let mut c = Condition::parse(&wire.text).map_err(|e| {
            serde::de::Error::custom(format!("condition `{}`: {e} at {}", wire.text, e.at))
        })?;
        let mut ids = wire.devices.into_iter();
        c.expr
            .properties_mut(&mut |p, _| p.iot_device_id = ids.next().flatten());
        Ok(c)
    }
}

/// When a rule's action runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fire {
    /// Once on each transition into the condition (false or unknown → true); the default, so an
    /// alert does not repeat on every message while a reading stays high.
    #[default]
    OnChange,
    /// On every message for which the condition holds.
    EveryMessage,
}

impl Fire {
    /// The spelling in `config_events.json`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Fire::OnChange => "on_change",
            Fire::EveryMessage => "every_message",
        }
    }
}

/// What to do about an evaluation, given the rule's stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the action runs now.
    pub fire: bool,
    /// The state to store: whether the condition held at the last known evaluation.
    pub active: bool,
}

/// Decides whether a rule fires. `was_active` is the stored state (false for a new rule);
/// `now` is the evaluation (`None`: unknown, which neither fires nor changes the state, so a
/// message from an unrelated device cannot reset a rule).
pub fn decide(fire: Fire, was_active: bool, now: Option<bool>) -> Decision {
    let active = now.unwrap_or(was_active);
    let holds = now == Some(true);
    Decision {
        fire: match fire {
            Fire::OnChange => holds && !was_active,
            Fire::EveryMessage => holds,
        },
        active,
    }
}

/// A message sent to one device on its own feedback topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Feedback {
    /// The device that receives it.
    pub iot_device_id: String,
    /// What it receives: a string or any JSON value, sent as written.
    pub payload: Value,
}

/// What a rule does when it fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Action {
    /// Runs a function: a crate under `lambdas/` deployed with the twin on the L2 provider
    /// (`"type": "lambda"` in the established format), then sends `feedback` if given.
    #[serde(rename = "lambda", rename_all = "camelCase")]
    Function {
        /// The crate's name under `lambdas/`.
        function_name: String,
        /// The established format's flag: `true` deploys the function with the twin. `false`
        /// means it exists already (deployed by someone else) and is only invoked.
        auto_deploy: bool,
        /// Feedback sent after the function is invoked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        feedback: Option<Feedback>,
    },
    /// Sends feedback to a device over MQTT (`"type": "mqtt"`).
    #[serde(rename = "mqtt")]
    Feedback(Feedback),
    /// Publishes a notification to the twin's topic (SNS on AWS, Event Grid on Azure).
    Notification {
        /// The message: a string or any JSON value.
        message: Value,
    },
    /// A workflow of the established tool (`step_function`, `logic_app`, `workflow`): loaded so
    /// the file stays valid, not deployed by this version (the loader warns).
    Workflow {
        /// The `type` as written.
        kind: String,
    },
}

impl Action {
    /// The `type` as written in `config_events.json`.
    pub fn kind(&self) -> &str {
        match self {
            Action::Function { .. } => "lambda",
            Action::Feedback(_) => "mqtt",
            Action::Notification { .. } => "notification",
            Action::Workflow { kind } => kind,
        }
    }

    /// The feedback the action sends, if any.
    pub fn feedback(&self) -> Option<&Feedback> {
        match self {
            Action::Function { feedback, .. } => feedback.as_ref(),
            Action::Feedback(f) => Some(f),
            _ => None,
        }
    }
}

/// One rule of `config_events.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule's key for its stored state: its `name` if given, else `rule-<n>` (1-based
    /// position in the file), so renaming or reordering unnamed rules starts them afresh.
    pub key: String,
    /// Optional free text (`description`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When the rule holds.
    pub condition: Condition,
    /// What it does.
    pub action: Action,
    /// When it fires (`fire`, default `on_change`).
    #[serde(default)]
    pub fire: Fire,
}

impl Rule {
    /// Whether a message from `device` can change this rule's evaluation.
    pub fn reads(&self, device: &str) -> bool {
        self.condition.devices().contains(&device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_change_fires_once_per_transition() {
        let mut active = false;
        let mut fired = Vec::new();
        for now in [
            Some(false),
            Some(true),
            Some(true),
            None,
            Some(true),
            Some(false),
            Some(true),
        ] {
            let d = decide(Fire::OnChange, active, now);
            active = d.active;
            fired.push(d.fire);
        }
        assert_eq!(fired, [false, true, false, false, false, false, true]);
    }

    #[test]
    fn every_message_fires_whenever_it_holds() {
        let d = decide(Fire::EveryMessage, true, Some(true));
        assert!(d.fire && d.active);
        assert!(!decide(Fire::EveryMessage, true, None).fire);
    }

    #[test]
    fn a_rule_travels_as_json_with_its_resolved_devices() {
        let mut condition = Condition::parse("room-1.t1.temperature > DOUBLE(30)").expect("parse");
        condition
            .expr
            .properties_mut(&mut |p, _| p.iot_device_id = Some("temperature-sensor-1".into()));
        let rule = Rule {
            key: "hot".into(),
            description: None,
            condition,
            action: Action::Feedback(Feedback {
                iot_device_id: "temperature-sensor-1".into(),
                payload: Value::from("too hot"),
            }),
            fire: Fire::OnChange,
        };
        let json = serde_json::to_string(&rule).expect("serialize");
        let back: Rule = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, rule);
        assert!(back.reads("temperature-sensor-1"));
        assert!(json.contains(r#""type":"mqtt""#), "{json}");
    }
}
