//! What a dead-letter message says: which function to invoke again, and with what.
//!
//! Two shapes arrive (AWS documentation: "Capturing records of Lambda asynchronous
//! invocations" and IoT Core's "Error action message format"):
//! - Lambda's on-failure record: `requestContext.functionArn` (the function that failed, with
//!   its qualifier) and `requestPayload` (the event it was given, as JSON);
//! - IoT's error action message: `ruleName`, `topic` and `base64OriginalPayload` (the MQTT
//!   payload before the rule's SQL), with `failures[]`. Replaying it means doing what the rule
//!   does: `SELECT *, topic(3) AS topicDeviceId` on the payload, handed to the dispatcher.

use base64::Engine as _;
use serde_json::Value;

/// A message that can be replayed.
#[derive(Debug, Clone, PartialEq)]
pub struct Replay {
    /// The function to invoke (its name, no qualifier).
    pub function: String,
    /// The payload to invoke it with.
    pub payload: Value,
    /// Where the message came from, for the report.
    pub source: Source,
}

/// Which kind of dead-letter message it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Lambda's on-failure record of an asynchronous invocation.
    LambdaOnFailure,
    /// The topic rule's error action.
    TopicRuleError,
}

/// The function name of an ARN `arn:...:function:<name>[:qualifier]`.
pub fn function_name_of(arn: &str) -> Option<&str> {
    let rest = arn.split_once(":function:")?.1;
    let name = rest.split(':').next().unwrap_or_default();
    (!name.is_empty()).then_some(name)
}

/// Parses one message body. `twin` is the twin whose functions may be invoked: a record that
/// names another twin's (or anyone else's) function is not replayed.
pub fn parse(body: &str, twin: &str) -> Result<Replay, String> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("the message is not JSON: {e}"))?;
    let replay = if let Some(ctx) = v.get("requestContext") {
        let arn = ctx
            .get("functionArn")
            .and_then(Value::as_str)
            .ok_or("a Lambda record without requestContext.functionArn")?;
        let function = function_name_of(arn)
            .ok_or_else(|| format!("requestContext.functionArn `{arn}` is not a function ARN"))?;
        let payload = v
            .get("requestPayload")
            .cloned()
            .ok_or("a Lambda record without requestPayload")?;
        Replay {
            function: function.to_string(),
            payload,
            source: Source::LambdaOnFailure,
        }
    } else if let Some(b64) = v.get("base64OriginalPayload") {
        let b64 = b64
            .as_str()
            .ok_or("base64OriginalPayload is not a string")?;
        let topic = v
            .get("topic")
            .and_then(Value::as_str)
            .ok_or("an IoT error message without topic")?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("base64OriginalPayload is not base64: {e}"))?;
        let mut payload: Value = serde_json::from_slice(&raw)
            .map_err(|e| format!("the original payload is not JSON: {e}"))?;
        let device = rule_device_id(topic, twin)
            .ok_or_else(|| format!("topic `{topic}` is not one of the twin's telemetry topics"))?;
        let obj = payload
            .as_object_mut()
            .ok_or("the original payload is not a JSON object")?;
        obj.insert("topicDeviceId".into(), Value::String(device.to_string()));
        Replay {
            function: twin_config::names::function_name(twin, "dispatcher"),
            payload,
            source: Source::TopicRuleError,
        }
    } else {
        return Err("neither a Lambda on-failure record (requestContext) nor an IoT error action message (base64OriginalPayload)".into());
    };
    if !is_twin_function(&replay.function, twin) {
        return Err(format!(
            "the record names function `{}`, which is not one of twin `{twin}`'s",
            replay.function
        ));
    }
    Ok(replay)
}

/// Whether `name` is one of the twin's asynchronously invoked functions: a shared one, or a
/// device's own processor (`<twin>--<device>-processor`). A prefix alone would not do: twin
/// `a`'s prefix `a-` also starts the names of twin `a-b`.
fn is_twin_function(name: &str, twin: &str) -> bool {
    use twin_config::names;
    let shared = names::FUNCTION_ROLES
        .iter()
        .copied()
        .chain([names::SHARED_PROCESSOR])
        .any(|role| name == names::function_name(twin, role));
    let own_processor = name
        .strip_prefix(&names::per_device_prefix(twin))
        .is_some_and(|rest| rest.ends_with("-processor") && rest.len() > "-processor".len());
    shared || own_processor
}

/// `topic(3)` of the rule's SQL for a telemetry topic `<twin>/iot-data/<device>`.
fn rule_device_id<'a>(topic: &'a str, twin: &str) -> Option<&'a str> {
    let rest = topic.strip_prefix(twin)?.strip_prefix("/iot-data/")?;
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_lambda_on_failure_record_replays_its_request_payload_to_its_function() {
        let record = json!({
            "version": "1.0",
            "timestamp": "2019-11-14T18:16:05.568Z",
            "requestContext": {
                "requestId": "e4b46cbf-b738-xmpl-8880-a18cdf61200e",
                "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:t-persister:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3
            },
            "requestPayload": {"iotDeviceId": "s-1", "temperature": 20},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": "boom"}
        });
        let r = parse(&record.to_string(), "t").expect("parses");
        assert_eq!(r.function, "t-persister");
        assert_eq!(r.payload, json!({"iotDeviceId": "s-1", "temperature": 20}));
        assert_eq!(r.source, Source::LambdaOnFailure);
    }

    #[test]
    fn an_iot_error_message_replays_what_the_rule_would_have_given_the_dispatcher() {
        let original = base64::engine::general_purpose::STANDARD.encode(br#"{"temperature":21}"#);
        let msg = json!({
            "ruleName": "t_iot_data",
            "topic": "t/iot-data/s-1",
            "cloudwatchTraceId": "7e146a2c",
            "clientId": "t--s-1",
            "base64OriginalPayload": original,
            "failures": [{"failedAction": "LambdaAction", "failedResource": "t-dispatcher", "errorMessage": "x"}]
        });
        let r = parse(&msg.to_string(), "t").expect("parses");
        assert_eq!(r.function, "t-dispatcher");
        assert_eq!(
            r.payload,
            json!({"temperature": 21, "topicDeviceId": "s-1"})
        );
        assert_eq!(r.source, Source::TopicRuleError);
    }

    #[test]
    fn what_cannot_be_replayed_says_why() {
        assert!(parse("not json", "t").unwrap_err().contains("not JSON"));
        assert!(parse("{}", "t").unwrap_err().contains("neither"));
        for foreign in ["other-persister", "t-b-persister", "t-unknown"] {
            let other = json!({"requestContext": {"functionArn": format!("arn:aws:lambda:r:1:function:{foreign}")}, "requestPayload": {}});
            assert!(
                parse(&other.to_string(), "t")
                    .unwrap_err()
                    .contains("not one of twin"),
                "{foreign}"
            );
        }
        for own in [
            "t-persister",
            "t-processor",
            "t--s-1-processor",
            "t-hot-to-cold-mover",
        ] {
            let record = json!({"requestContext": {"functionArn": format!("arn:aws:lambda:r:1:function:{own}")}, "requestPayload": {}});
            assert!(parse(&record.to_string(), "t").is_ok(), "{own}");
        }
        let no_payload =
            json!({"requestContext": {"functionArn": "arn:aws:lambda:r:1:function:t-x"}});
        assert!(parse(&no_payload.to_string(), "t")
            .unwrap_err()
            .contains("requestPayload"));
        let bad_b64 = json!({"topic": "t/iot-data/s", "base64OriginalPayload": "%%%"});
        assert!(parse(&bad_b64.to_string(), "t")
            .unwrap_err()
            .contains("base64"));
        let wrong_topic = json!({"topic": "u/iot-data/s", "base64OriginalPayload": "e30="});
        assert!(parse(&wrong_topic.to_string(), "t")
            .unwrap_err()
            .contains("telemetry"));
        let array = json!({"topic": "t/iot-data/s", "base64OriginalPayload": "WzFd"});
        assert!(parse(&array.to_string(), "t")
            .unwrap_err()
            .contains("object"));
    }

    #[test]
    fn function_names_come_from_arns_without_qualifier() {
        assert_eq!(
            function_name_of("arn:aws:lambda:r:1:function:t-a:$LATEST"),
            Some("t-a")
        );
        assert_eq!(
            function_name_of("arn:aws:lambda:r:1:function:t-a"),
            Some("t-a")
        );
        assert_eq!(function_name_of("t-a"), None);
    }
}
