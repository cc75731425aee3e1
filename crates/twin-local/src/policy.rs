//! What a device may do at the broker, derived from the IoT policy documents attached to its
//! certificate: `iot:Connect` on `client/<id>`, `iot:Publish` on `topic/<t>`, and reading a
//! topic (`iot:Subscribe` on `topicfilter/<t>` together with `iot:Receive` on `topic/<t>`, which
//! event-rule feedback grants). Anything the
//! broker cannot express exactly (wildcards, policy variables, other actions) grants nothing:
//! the broker denies by default, so an approximation could only ever widen access.

use serde_json::Value;

/// The rights one certificate's policies grant, as the broker can enforce them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Client ids the device may connect as.
    pub client_ids: Vec<String>,
    /// Topics the device may publish to (exact names).
    pub publish_topics: Vec<String>,
    /// Topics the device may subscribe to and receive on (exact names; both rights needed).
    pub read_topics: Vec<String>,
    /// Statements or resources left out because the broker cannot enforce them exactly.
    pub skipped: Vec<String>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// The resource part of an IoT ARN of `kind` (`client` or `topic`): `arn:*:iot:*:*:<kind>/<x>`.
fn iot_resource<'a>(arn: &'a str, kind: &str) -> Option<&'a str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some("iot"), Some(_), Some(_), Some(res)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    res.strip_prefix(kind)?.strip_prefix('/')
}

/// An exact name the broker can use verbatim: no IoT wildcards or policy variables, no MQTT
/// wildcards, nothing that would break a line of the ACL file.
fn exact(name: &str) -> bool {
    !name.is_empty()
        && !name.contains(['*', '?', '+', '#', '\n', '\r', '\0'])
        && !name.contains("${")
        && name.trim() == name
}

fn action_matches(actions: &[String], action: &str) -> bool {
    actions
        .iter()
        .any(|a| a.eq_ignore_ascii_case(action) || a == "iot:*" || a == "*")
}

impl Grants {
    /// The grants of a set of policy documents (the union of their Allow statements, minus
    /// anything a Deny statement names).
    pub fn from_documents(documents: &[Value]) -> Grants {
        let mut g = Grants::default();
        let mut denied: Vec<(String, String)> = Vec::new();
        let mut deny_all = Vec::new();
        let (mut subscribe, mut receive) = (Vec::new(), Vec::new());
        for doc in documents {
            let statements = match doc.get("Statement") {
                Some(Value::Array(a)) => a.clone(),
                Some(s @ Value::Object(_)) => vec![s.clone()],
                _ => Vec::new(),
            };
            for st in statements {
                let effect = st.get("Effect").and_then(Value::as_str).unwrap_or_default();
                let actions = strings(st.get("Action"));
                let resources = strings(st.get("Resource"));
                if st.get("Condition").is_some() || st.get("NotAction").is_some() {
                    g.skipped
                        .push(format!("statement with Condition/NotAction: {st}"));
                    continue;
                }
                for (action, kind) in [
                    ("iot:Connect", "client"),
                    ("iot:Publish", "topic"),
                    ("iot:Subscribe", "topicfilter"),
                    ("iot:Receive", "topic"),
                ] {
                    if !action_matches(&actions, action) {
                        continue;
                    }
                    for r in &resources {
                        let name = iot_resource(r, kind);
                        match (effect, name) {
                            ("Deny", Some(n)) if exact(n) => {
                                denied.push((action.to_string(), n.to_string()))
                            }
                            // A Deny the broker cannot match exactly takes the whole action away.
                            ("Deny", _) => deny_all.push(action),
                            ("Allow", Some(n)) if exact(n) => {
                                let list = match action {
                                    "iot:Connect" => &mut g.client_ids,
                                    "iot:Publish" => &mut g.publish_topics,
                                    "iot:Subscribe" => &mut subscribe,
                                    _ => &mut receive,
                                };
                                if !list.iter().any(|x| x == n) {
                                    list.push(n.to_string());
                                }
                            }
                            ("Allow", _) => g.skipped.push(format!("{action} on {r}")),
                            _ => {}
                        }
                    }
                }
            }
        }
        let keep = |action: &str, list: &mut Vec<String>| {
            if deny_all.contains(&action) {
                list.clear();
            }
            list.retain(|n| !denied.iter().any(|(a, d)| a == action && d == n));
        };
        keep("iot:Connect", &mut g.client_ids);
        keep("iot:Publish", &mut g.publish_topics);
        keep("iot:Subscribe", &mut subscribe);
        keep("iot:Receive", &mut receive);
        // A subscription delivers nothing without Receive, and Receive alone subscribes to nothing.
        g.read_topics = subscribe
            .into_iter()
            .filter(|t| receive.contains(t))
            .collect();
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployed(client: &str, topic: &str) -> Value {
        json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": format!("arn:aws:iot:us-east-1:123456789012:client/{client}")},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": format!("arn:aws:iot:us-east-1:123456789012:topic/{topic}")},
        ]})
    }

    #[test]
    fn the_deployed_policy_grants_its_client_id_and_topic() {
        let g = Grants::from_documents(&[deployed("t--a", "t/iot-data/a")]);
        assert_eq!(g.client_ids, ["t--a"]);
        assert_eq!(g.publish_topics, ["t/iot-data/a"]);
        assert!(g.skipped.is_empty());
    }

    #[test]
    fn subscribe_with_receive_on_the_same_topic_grants_reading_it() {
        let feedback = json!({"Statement": [
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": "arn:aws:iot:us-east-1:1:topicfilter/t/feedback/a"},
            {"Effect": "Allow", "Action": "iot:Receive",
             "Resource": "arn:aws:iot:us-east-1:1:topic/t/feedback/a"},
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": "arn:aws:iot:us-east-1:1:topicfilter/t/feedback/b"},
        ]});
        let g = Grants::from_documents(&[deployed("t--a", "t/iot-data/a"), feedback]);
        assert_eq!(g.read_topics, ["t/feedback/a"]);
        assert_eq!(g.publish_topics, ["t/iot-data/a"]);
    }

    #[test]
    fn wildcards_and_variables_grant_nothing_and_are_reported() {
        let doc = json!({"Statement": {"Effect": "Allow", "Action": ["iot:Publish", "iot:Connect"],
            "Resource": ["arn:aws:iot:us-east-1:1:topic/t/*",
                         "arn:aws:iot:us-east-1:1:client/${iot:Connection.Thing.ThingName}"]}});
        let g = Grants::from_documents(&[doc]);
        assert!(g.client_ids.is_empty() && g.publish_topics.is_empty());
        assert_eq!(g.skipped.len(), 4, "{:?}", g.skipped);
    }

    #[test]
    fn deny_wins_over_allow() {
        let deny = json!({"Statement": [{"Effect": "Deny", "Action": "iot:Publish",
            "Resource": "arn:aws:iot:us-east-1:1:topic/t/iot-data/a"},
            {"Effect": "Deny", "Action": "iot:Connect", "Resource": "*"}]});
        let g = Grants::from_documents(&[deployed("t--a", "t/iot-data/a"), deny]);
        assert!(
            g.publish_topics.is_empty() && g.client_ids.is_empty(),
            "{g:?}"
        );
    }

    #[test]
    fn other_actions_and_services_grant_nothing() {
        let doc = json!({"Statement": [{"Effect": "Allow", "Action": "iot:Subscribe",
            "Resource": "arn:aws:iot:us-east-1:1:topicfilter/t/#"},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": "arn:aws:s3:us-east-1:1:topic/x"}]});
        let g = Grants::from_documents(&[doc]);
        assert_eq!(
            g,
            Grants {
                skipped: g.skipped.clone(),
                ..Grants::default()
            }
        );
        // The S3 resource, and the wildcard filter (Subscribe is enforced now, exact names only).
        assert_eq!(g.skipped.len(), 2, "{:?}", g.skipped);
    }
}
