//! A device's own processing logic, the same on every cloud.
//!
//! A device that names a processor crate of its own (`processor` in config_iot_devices.json)
//! gets that crate's [`DeviceLogic`] in front of the default checks: the logic turns the device's
//! message into the message the processor then checks against the device's configured properties
//! and coerces, exactly as for every other device. So a crate only writes what is particular to
//! its device (unit conversion, renaming, plausibility) and the record that reaches the persister
//! still fits the twin's data contract.
//!
//! A crate is one binary for both clouds: its `main` calls the AWS adapter's `run_processor`,
//! which is the Lambda function on AWS. On Azure the one custom handler runs that same binary as a
//! child process with [`STDIO_ENV`] set, and speaks the line protocol below with it over stdin
//! and stdout ([`serve_lines`]): the handler keeps the catalogue, the checks and the persister,
//! the child only runs the logic.
//!
//! The protocol: one JSON object per line each way. A request is `{"message": {...}}`; an answer
//! is `{"twinDeviceLogic": 1, "message": {...}}` or `{"twinDeviceLogic": 1, "rejected": "why"}`.
//! Lines the child writes without the `twinDeviceLogic` marker (a stray `println!` in a crate)
//! are not answers: the handler logs them and keeps reading.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::{BufRead, Write};

/// Set (to `1`) in a processor binary's environment when it runs as the Azure handler's child.
pub const STDIO_ENV: &str = "TWIN_DEVICE_LOGIC_STDIO";

/// The protocol version an answer carries (`twinDeviceLogic`).
pub const PROTOCOL_VERSION: u64 = 1;

/// What a processor crate of a device's own implements.
pub trait DeviceLogic: Send + Sync {
    /// Turns one message of the device into the message the default checks then see; an `Err`
    /// drops the message with that reason (logged and counted, never retried).
    ///
    /// The message has the device's `iotDeviceId` and, when the device sent it, `time`; the
    /// result must keep the same `iotDeviceId`.
    fn transform(&self, message: Map<String, Value>) -> Result<Map<String, Value>, String>;
}

/// The default processor's logic: the message as it came.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unchanged;

impl DeviceLogic for Unchanged {
    fn transform(&self, message: Map<String, Value>) -> Result<Map<String, Value>, String> {
        Ok(message)
    }
}

/// What a step in front of the default checks made of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// The message the default checks get next.
    Message(Map<String, Value>),
    /// The logic refused the message, for this reason.
    Rejected(String),
}

/// A device's logic as the processor runs it: in process, or in another process (the Azure
/// handler's child), where running it can fail for reasons that are not the message's.
#[async_trait]
pub trait LogicStep: Send + Sync {
    /// Runs the logic on `message`; an `Err` is a failure to run it (retried by the platform).
    async fn apply(
        &self,
        message: Map<String, Value>,
    ) -> Result<StepOutcome, crate::error::CloudError>;
}

/// A [`DeviceLogic`] run in the processor's own process.
pub struct InProcess<L>(pub L);

#[async_trait]
impl<L: DeviceLogic> LogicStep for InProcess<L> {
    async fn apply(
        &self,
        message: Map<String, Value>,
    ) -> Result<StepOutcome, crate::error::CloudError> {
        Ok(match self.0.transform(message) {
            Ok(m) => StepOutcome::Message(m),
            Err(reason) => StepOutcome::Rejected(reason),
        })
    }
}

/// One request line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogicRequest {
    /// The device's message.
    pub message: Map<String, Value>,
}

/// One answer line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LogicAnswer {
    /// Always [`PROTOCOL_VERSION`]: marks the line as an answer.
    pub twin_device_logic: u64,
    /// The transformed message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Map<String, Value>>,
    /// Why the logic refused the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

impl LogicAnswer {
    /// The answer for a step's outcome.
    pub fn from_outcome(outcome: StepOutcome) -> Self {
        let (message, rejected) = match outcome {
            StepOutcome::Message(m) => (Some(m), None),
            StepOutcome::Rejected(r) => (None, Some(r)),
        };
        Self {
            twin_device_logic: PROTOCOL_VERSION,
            message,
            rejected,
        }
    }
}

/// A line the child wrote, as the handler reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerLine {
    /// The answer to the pending request.
    Answer(StepOutcome),
    /// Not an answer (the crate's own output): to be logged.
    Other(String),
    /// Marked as an answer but unusable: the child speaks another protocol version or shape.
    Broken(String),
}

/// Reads one line the child wrote.
pub fn parse_answer(line: &str) -> AnswerLine {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else {
        return AnswerLine::Other(line.to_string());
    };
    let Some(version) = object.get("twinDeviceLogic") else {
        return AnswerLine::Other(line.to_string());
    };
    if version.as_u64() != Some(PROTOCOL_VERSION) {
        return AnswerLine::Broken(format!(
            "the processor speaks device-logic protocol {version}, this handler {PROTOCOL_VERSION}; rebuild the crate against this twin-functions"
        ));
    }
    match serde_json::from_value::<LogicAnswer>(Value::Object(object)) {
        Ok(LogicAnswer {
            message: Some(m),
            rejected: None,
            ..
        }) => AnswerLine::Answer(StepOutcome::Message(m)),
        Ok(LogicAnswer {
            message: None,
            rejected: Some(r),
            ..
        }) => AnswerLine::Answer(StepOutcome::Rejected(r)),
        Ok(_) => AnswerLine::Broken(
            "an answer needs exactly one of `message` (an object) and `rejected`".into(),
        ),
        Err(e) => AnswerLine::Broken(format!("an answer line is malformed: {e}")),
    }
}

/// Serves the line protocol on `input`/`output` until `input` ends: the child's whole life. A
/// request line that is not a request is answered as rejected (the handler never sends one, so
/// that is a bug worth seeing, not a reason to die).
pub fn serve_lines<L: DeviceLogic + ?Sized>(
    logic: &L,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let outcome = match serde_json::from_str::<LogicRequest>(&line) {
            Ok(request) => match logic.transform(request.message) {
                Ok(m) => StepOutcome::Message(m),
                Err(reason) => StepOutcome::Rejected(reason),
            },
            Err(e) => StepOutcome::Rejected(format!("not a device-logic request: {e}")),
        };
        let mut text = serde_json::to_string(&LogicAnswer::from_outcome(outcome))
            .map_err(std::io::Error::other)?;
        text.push('\n');
        output.write_all(text.as_bytes())?;
        output.flush()?;
    }
    Ok(())
}

/// Whether this process was started as the Azure handler's child (`STDIO_ENV` is `1`).
pub fn stdio_requested(lookup: &dyn Fn(&str) -> Option<String>) -> bool {
    lookup(STDIO_ENV).is_some_and(|v| v.trim() == "1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Doubler;
    impl DeviceLogic for Doubler {
        fn transform(&self, mut m: Map<String, Value>) -> Result<Map<String, Value>, String> {
            let v = m.get("v").and_then(Value::as_f64).ok_or("no v")?;
            m.insert("v".into(), json!(v * 2.0));
            Ok(m)
        }
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn serves_one_answer_per_request_line_and_skips_blank_lines() {
        let input = b"{\"message\":{\"iotDeviceId\":\"d\",\"v\":2}}\n\n{\"message\":{\"iotDeviceId\":\"d\"}}\nnot json\n";
        let mut out = Vec::new();
        serve_lines(&Doubler, &input[..], &mut out).unwrap();
        let lines: Vec<AnswerLine> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(parse_answer)
            .collect();
        assert_eq!(
            lines[0],
            AnswerLine::Answer(StepOutcome::Message(object(
                json!({"iotDeviceId": "d", "v": 4.0})
            )))
        );
        assert_eq!(
            lines[1],
            AnswerLine::Answer(StepOutcome::Rejected("no v".into()))
        );
        assert!(
            matches!(&lines[2], AnswerLine::Answer(StepOutcome::Rejected(r)) if r.contains("not a device-logic request")),
            "{:?}",
            lines[2]
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn lines_without_the_marker_are_output_and_bad_answers_are_broken() {
        assert_eq!(
            parse_answer("hello from println"),
            AnswerLine::Other("hello from println".into())
        );
        assert_eq!(
            parse_answer("{\"level\":\"info\"}"),
            AnswerLine::Other("{\"level\":\"info\"}".into())
        );
        assert!(matches!(
            parse_answer("{\"twinDeviceLogic\":2,\"message\":{}}"),
            AnswerLine::Broken(e) if e.contains("protocol 2")
        ));
        assert!(matches!(
            parse_answer("{\"twinDeviceLogic\":1}"),
            AnswerLine::Broken(e) if e.contains("exactly one")
        ));
        assert!(matches!(
            parse_answer("{\"twinDeviceLogic\":1,\"message\":{},\"rejected\":\"x\"}"),
            AnswerLine::Broken(_)
        ));
        assert!(matches!(
            parse_answer("{\"twinDeviceLogic\":1,\"message\":3}"),
            AnswerLine::Broken(e) if e.contains("malformed")
        ));
    }

    #[test]
    fn stdio_mode_only_when_the_variable_is_one() {
        assert!(stdio_requested(&|k| (k == STDIO_ENV).then(|| "1".into())));
        assert!(!stdio_requested(&|k| (k == STDIO_ENV).then(|| "0".into())));
        assert!(!stdio_requested(&|_| None));
    }

    #[tokio::test]
    async fn in_process_logic_gives_the_same_outcomes() {
        let step = InProcess(Doubler);
        assert_eq!(
            step.apply(object(json!({"v": 1}))).await.unwrap(),
            StepOutcome::Message(object(json!({"v": 2.0})))
        );
        assert_eq!(
            step.apply(object(json!({}))).await.unwrap(),
            StepOutcome::Rejected("no v".into())
        );
    }
}
