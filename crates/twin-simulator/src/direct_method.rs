//! IoT Hub's direct methods as a device sees them over MQTT: the hub publishes each call on
//! `$iothub/methods/POST/<method>/?$rid=<rid>` (the device subscribes to
//! [`REQUEST_FILTER`]) and the device answers on `$iothub/methods/res/<status>/?$rid=<rid>`.
//! On IoT Hub event-rule feedback reaches a device this way (the hub's service API has no
//! cloud-to-device message over REST), so the simulator treats every call as feedback.

/// The filter a device subscribes to for its direct method calls.
pub const REQUEST_FILTER: &str = "$iothub/methods/POST/#";

const REQUEST_PREFIX: &str = "$iothub/methods/POST/";

/// The status the simulator answers every call with (the method "succeeded").
pub const ANSWER_STATUS: u16 = 200;

/// The body of that answer: a small JSON status, as a device SDK's method handler returns.
pub const ANSWER_BODY: &[u8] = br#"{"status":"received"}"#;

/// One direct method call, as its topic names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodCall<'a> {
    /// The method's name (`feedback` for event-rule feedback).
    pub method: &'a str,
    /// The request id the answer must carry (opaque: everything after `$rid=` up to the next
    /// property).
    pub rid: &'a str,
}

/// The call a PUBLISH on `topic` carries, if it is one: `$iothub/methods/POST/<method>/?$rid=<rid>`
/// with a non-empty method name and request id.
pub fn parse_call(topic: &str) -> Option<MethodCall<'_>> {
    let rest = topic.strip_prefix(REQUEST_PREFIX)?;
    let (method, properties) = rest.split_once("/?")?;
    if method.is_empty() || method.contains('/') {
        return None;
    }
    let rid = properties
        .split('&')
        .find_map(|p| p.strip_prefix("$rid="))
        .filter(|r| !r.is_empty())?;
    Some(MethodCall { method, rid })
}

/// The topic a device answers the call `rid` on with `status`.
pub fn answer_topic(status: u16, rid: &str) -> String {
    format!("$iothub/methods/res/{status}/?$rid={rid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_topic_names_its_method_and_request_id() {
        assert_eq!(
            parse_call("$iothub/methods/POST/feedback/?$rid=1"),
            Some(MethodCall {
                method: "feedback",
                rid: "1"
            })
        );
        // The request id is opaque, other properties are skipped.
        assert_eq!(
            parse_call("$iothub/methods/POST/reboot/?x=y&$rid=dev-0/7f"),
            Some(MethodCall {
                method: "reboot",
                rid: "dev-0/7f"
            })
        );
    }

    #[test]
    fn other_topics_and_calls_without_a_request_id_are_not_calls() {
        for topic in [
            "$iothub/methods/POST/feedback/",
            "$iothub/methods/POST/feedback/?$rid=",
            "$iothub/methods/POST//?$rid=1",
            "$iothub/methods/res/200/?$rid=1",
            "$iothub/twin/res/200/?$rid=1",
            "twin/feedback/dev-0",
            "$iothub/methods/POST/a/b/?$rid=1",
        ] {
            assert_eq!(parse_call(topic), None, "{topic}");
        }
    }

    #[test]
    fn the_answer_goes_to_the_response_topic_of_the_same_request_id() {
        assert_eq!(
            answer_topic(ANSWER_STATUS, "dev-0/7f"),
            "$iothub/methods/res/200/?$rid=dev-0/7f"
        );
        let call = parse_call("$iothub/methods/POST/feedback/?$rid=42").unwrap();
        assert_eq!(
            answer_topic(200, call.rid),
            "$iothub/methods/res/200/?$rid=42"
        );
    }
}
