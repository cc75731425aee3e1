//! The event rules on AWS's layer 2: what the persister needs to evaluate them (the rules in its
//! environment, the data-plane endpoint, the notification topic, exactly the rights its actions
//! use) and the rules' own functions (`autoDeploy`), deployed beside the processors.

use std::collections::BTreeSet;

use crate::dead_letters;
use crate::errors::cloud;
use crate::iam::RoleSpec;
use crate::l2::events_topic;
use crate::l3::table;
use crate::lambda_fn::{function_arn, FunctionSpec};
use crate::{AwsClients, LayerContext};
use twin_config::{events_env, names, Layer};
use twin_engine::{CloudError, ErrorClass, ResourceSpec};
use twin_events::Action;
use twin_functions::env_vars;

/// Role shared by the rules' own functions: they get logging and nothing else (what they do
/// beyond logging is theirs to ask for).
pub const EVENT_FUNCTION_ROLE: &str = "event-function";

/// Whether some rule of the twin sends feedback to a device (then the persister needs the
/// account's IoT data endpoint).
pub fn sends_feedback(ctx: &LayerContext<'_>) -> bool {
    ctx.twin
        .events
        .iter()
        .any(|r| r.action.feedback().is_some())
}

/// Whether some rule publishes a notification (then the twin has its SNS topic).
pub fn notifies(ctx: &LayerContext<'_>) -> bool {
    ctx.twin
        .events
        .iter()
        .any(|r| matches!(r.action, Action::Notification { .. }))
}

/// The account's IoT data endpoint (DescribeEndpoint `iot:Data-ATS`) as an URL, the one the
/// devices connect to: the persister publishes feedback there.
pub async fn iot_data_endpoint(clients: &AwsClients) -> Result<String, CloudError> {
    let out = clients
        .iot
        .describe_endpoint()
        .endpoint_type("iot:Data-ATS")
        .send()
        .await
        .map_err(cloud)?;
    let address = out
        .endpoint_address()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            CloudError::new(
                ErrorClass::Transient,
                "IncompleteResponse",
                "IoT DescribeEndpoint iot:Data-ATS returned no endpoint address",
            )
        })?;
    // The emulator answers with a full URL; AWS with a host name.
    Ok(if address.contains("://") {
        address.to_string()
    } else {
        format!("https://{address}")
    })
}

/// The rules' functions: `functionName` → (the Lambda name, whether the twin deploys it).
fn rule_functions(ctx: &LayerContext<'_>) -> Vec<(String, String, bool)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in &ctx.twin.events {
        if let Action::Function {
            function_name,
            auto_deploy,
            ..
        } = &r.action
        {
            if seen.insert(function_name.clone()) {
                let cloud = if *auto_deploy {
                    names::event_function_name(ctx.name(), function_name)
                } else {
                    function_name.clone()
                };
                out.push((function_name.clone(), cloud, *auto_deploy));
            }
        }
    }
    out
}

/// What evaluating the rules adds to layer 2.
pub struct EventWiring {
    /// The persister with the rules' environment.
    pub persister: FunctionSpec,
    /// Its role with the rights the rules' actions use.
    pub persister_role: RoleSpec,
    /// The rules' own functions (to build with the layer's others).
    pub functions: Vec<FunctionSpec>,
    /// Other resources: the notification topic, the rules' functions' role.
    pub specs: Vec<ResourceSpec>,
}

/// Adds the event rules to the persister (`persister`, `persister_role`); `iot_data_endpoint`
/// is required when a rule sends feedback. Nothing changes for a twin without rules.
pub fn wire(
    ctx: &LayerContext<'_>,
    layer: Layer,
    mut persister: FunctionSpec,
    mut persister_role: RoleSpec,
    iot_data_endpoint: Option<&str>,
) -> Result<EventWiring, CloudError> {
    let mut functions = Vec::new();
    let mut specs = Vec::new();
    let rules = &ctx.twin.events;
    if rules.is_empty() {
        return Ok(EventWiring {
            persister,
            persister_role,
            functions,
            specs,
        });
    }
    let twin = ctx.name();
    persister = persister.env(env_vars::EVENT_RULES, events_env::rules_json(rules));
    if ctx.on_aws(Layer::L3Hot) {
        // The rule states (GetItem, conditional PutItem, already allowed) and the newest value
        // of another device a condition reads (Query).
        persister_role = persister_role.allow(
            &["dynamodb:GetItem", "dynamodb:Query"],
            &[table::table_arn(ctx)],
        );
    }
    let rule_functions = rule_functions(ctx);
    if !rule_functions.is_empty() {
        let arns: Vec<String> = rule_functions
            .iter()
            .map(|(local, cloud, deployed)| {
                if *deployed {
                    function_arn(ctx, &names::event_function_local_name(local))
                } else {
                    ctx.clients.arn("lambda", &format!("function:{cloud}"))
                }
            })
            .collect();
        persister_role = persister_role.allow(&["lambda:InvokeFunction"], &arns);
    }
    let deployed: Vec<&(String, String, bool)> =
        rule_functions.iter().filter(|(_, _, d)| *d).collect();
    if !deployed.is_empty() {
        let logged: Vec<String> = deployed.iter().map(|(_, c, _)| c.clone()).collect();
        // The persister invokes them asynchronously: an event the function keeps failing on
        // goes to the layer's dead-letter queue (counted by `info`, replayed by `redrive`)
        // instead of vanishing after Lambda's two retries.
        let role =
            RoleSpec::new(EVENT_FUNCTION_ROLE, "lambda.amazonaws.com").allow_logs(ctx, &logged);
        specs.push(dead_letters::allow_send(role, ctx, layer).build(ctx, layer));
        for (crate_name, _, _) in deployed {
            functions.push(
                FunctionSpec::new(
                    &names::event_function_local_name(crate_name),
                    crate_name,
                    EVENT_FUNCTION_ROLE,
                )
                .async_with_dead_letters(),
            );
        }
    }
    if sends_feedback(ctx) {
        let endpoint = iot_data_endpoint.ok_or_else(|| {
            CloudError::fatal(
                "IotDataEndpointUnknown",
                "the twin's event rules send feedback, but the IoT data endpoint was not read",
            )
        })?;
        persister = persister.env(env_vars::IOT_DATA_ENDPOINT, endpoint);
        let topics = ctx.clients.arn(
            "iot",
            &format!("topic/{}", names::feedback_topic(twin, "*")),
        );
        persister_role = persister_role.allow(&["iot:Publish"], &[topics]);
    }
    if notifies(ctx) {
        let topic = events_topic::spec(ctx, layer);
        let arn = events_topic::topic_arn(ctx);
        persister = persister
            .env(env_vars::EVENTS_TOPIC_ARN, &arn)
            .depends_on([topic.id.clone()]);
        persister_role = persister_role.allow(&["sns:Publish"], &[arn]);
        specs.push(topic);
    }
    Ok(EventWiring {
        persister,
        persister_role,
        functions,
        specs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use twin_config::{ProviderName, Providers, TwinConfig};

    const ENDPOINT: &str = "https://abc123-ats.iot.us-east-1.amazonaws.com";

    fn twin(rules: Value) -> TwinConfig {
        TwinConfig {
            dir: std::env::temp_dir(),
            twin: serde_json::from_value(json!({
                "digital_twin_name": "t", "hot_storage_size_in_days": 1,
                "cold_storage_size_in_days": 2
            }))
            .expect("twin"),
            devices: serde_json::from_value(json!([{
                "id": "s-1", "properties": [{"name": "temperature", "dataType": "DOUBLE"}]
            }]))
            .expect("devices"),
            providers: Providers::all(ProviderName::Aws),
            hierarchy: None,
            events: serde_json::from_value(rules).expect("rules"),
            warnings: Vec::new(),
        }
    }

    fn l2(config: &TwinConfig) -> Vec<ResourceSpec> {
        let (clients, artifacts) = crate::testing::offline_clients_and_artifacts();
        let ctx = LayerContext {
            twin: config,
            clients: &clients,
            artifacts: &artifacts,
        };
        crate::l2::specs(&ctx, Some(ENDPOINT)).expect("specs")
    }

    fn named<'a>(specs: &'a [ResourceSpec], kind: &str, name: &str) -> Option<&'a ResourceSpec> {
        specs.iter().find(|s| s.kind == kind && s.name == name)
    }

    fn statements(role: &ResourceSpec) -> Vec<(Value, Value)> {
        role.desired["policy"]["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .map(|s| (s["Action"].clone(), s["Resource"].clone()))
            .collect()
    }

    #[test]
    fn a_twin_without_rules_gets_nothing_for_them() {
        let specs = l2(&twin(json!([])));
        let persister = named(&specs, crate::lambda_fn::KIND, "t-persister").expect("persister");
        let env = &persister.desired["env"];
        for var in [
            env_vars::EVENT_RULES,
            env_vars::IOT_DATA_ENDPOINT,
            env_vars::EVENTS_TOPIC_ARN,
        ] {
            assert!(env.get(var).is_none(), "{var}");
        }
        assert!(!specs.iter().any(|s| s.kind == events_topic::KIND));
        let role = named(&specs, crate::iam::KIND, "t-persister").expect("role");
        let text = role.desired["policy"].to_string();
        for right in ["lambda:InvokeFunction", "iot:Publish", "sns:Publish"] {
            assert!(!text.contains(right), "{right}: {text}");
        }
    }

    #[test]
    fn the_persister_gets_the_rules_endpoint_topic_and_exactly_their_rights() {
        let rules = json!([
            {"key": "a", "condition": {"text": "r.s.temperature > 30", "devices": ["s-1"]},
             "action": {"type": "lambda", "functionName": "fahrenheit-processor", "autoDeploy": true,
                        "feedback": {"type": "mqtt", "iotDeviceId": "s-1", "payload": "hot"}}},
            {"key": "b", "condition": {"text": "r.s.temperature > 40", "devices": ["s-1"]},
             "action": {"type": "lambda", "functionName": "someone-elses", "autoDeploy": false}},
            {"key": "c", "condition": {"text": "r.s.temperature > 50", "devices": ["s-1"]},
             "action": {"type": "notification", "message": "very hot"}}
        ]);
        let config = twin(rules);
        let specs = l2(&config);
        let persister = named(&specs, crate::lambda_fn::KIND, "t-persister").expect("persister");
        let env = &persister.desired["env"];
        assert_eq!(env[env_vars::IOT_DATA_ENDPOINT], ENDPOINT);
        let topic_arn = "arn:aws:sns:us-east-1:123456789012:t-events";
        assert_eq!(env[env_vars::EVENTS_TOPIC_ARN], topic_arn);
        let carried = env[env_vars::EVENT_RULES].as_str().expect("rules");
        assert_eq!(carried, events_env::rules_json(&config.events));
        let topic = named(&specs, events_topic::KIND, "t-events").expect("topic");
        assert!(persister.depends_on.contains(&topic.id));

        let role = named(&specs, crate::iam::KIND, "t-persister").expect("role");
        let st = statements(role);
        let has = |action: &str, resources: Value| st.contains(&(json!([action]), resources));
        assert!(
            has(
                "lambda:InvokeFunction",
                json!([
                    "arn:aws:lambda:us-east-1:123456789012:function:t-event-fahrenheit-processor",
                    "arn:aws:lambda:us-east-1:123456789012:function:someone-elses"
                ])
            ),
            "{st:?}"
        );
        assert!(
            has(
                "iot:Publish",
                json!(["arn:aws:iot:us-east-1:123456789012:topic/t/feedback/*"])
            ),
            "{st:?}"
        );
        assert!(has("sns:Publish", json!([topic_arn])), "{st:?}");

        // The deployed rule function, with its logs-only role; the other is only invoked.
        let f = named(
            &specs,
            crate::lambda_fn::KIND,
            "t-event-fahrenheit-processor",
        )
        .expect("rule function");
        assert!(f.desired["role"]
            .as_str()
            .is_some_and(|r| r.ends_with("role/t-event-function")));
        assert!(named(&specs, crate::lambda_fn::KIND, "someone-elses").is_none());
        let fn_role = named(&specs, crate::iam::KIND, "t-event-function").expect("role");
        let policy = fn_role.desired["policy"].to_string();
        assert!(
            !policy.contains("lambda:"),
            "logs and its dead letters only"
        );
        // Its failed async events land in layer 2's dead-letter queue, which its role may send to.
        let queue = format!(
            "arn:aws:sqs:us-east-1:123456789012:{}",
            crate::dead_letters::queue_name("t", Layer::L2)
        );
        let fn_st = statements(fn_role);
        assert!(
            fn_st.contains(&(json!(["sqs:SendMessage"]), json!([queue]))),
            "{fn_st:?}"
        );
        let invoke_config = named(
            &specs,
            crate::dead_letters::invoke_config::KIND,
            "t-event-fahrenheit-processor",
        )
        .expect("the rule function's event invoke config");
        assert!(invoke_config.depends_on.contains(&f.id));
        assert!(invoke_config.desired.to_string().contains(&queue));
    }
}
