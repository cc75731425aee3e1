//! `payloads.json`: an array of telemetry messages `{"iotDeviceId": .., "time": "", <prop>: ..}`.
//!
//! Each message becomes a [`PayloadTemplate`]: its JSON pre-serialised around the `time` value, so
//! that stamping and encoding a message at load-test rates is two buffer copies.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{Map, Value};

use crate::config::strip_position;

/// What can be wrong with a payloads file; every variant names the file and, where it can, the
/// line and column.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The file is missing or unreadable.
    #[error("cannot read payloads file {path}: {source}")]
    Read {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("payloads file {path}, line {line}, column {column}: {message}")]
    Syntax {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// The top level is not a non-empty array.
    #[error("payloads file {path}: {problem}")]
    Shape {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// One message of the array is unusable.
    #[error("payloads file {path}, message {index} (line {line}, column {column}): {problem}")]
    Message {
        /// The file concerned.
        path: PathBuf,
        /// 1-based position in the array.
        index: usize,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        problem: String,
    },
}

/// One telemetry message, ready to be stamped with a time and sent.
#[derive(Debug, Clone)]
pub struct PayloadTemplate {
    /// The sending device (`iotDeviceId`).
    pub device_id: String,
    /// JSON up to the time value (or the whole message when its time is fixed).
    head: Vec<u8>,
    /// JSON after the time value.
    tail: Vec<u8>,
    /// Whether `time` was empty or missing and is filled at send time.
    fill_time: bool,
}

impl PayloadTemplate {
    /// Builds the template from one message object.
    fn from_object(device_id: String, object: &Map<String, Value>) -> Self {
        let fill_time = match object.get("time") {
            None => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        let mut head = Vec::with_capacity(128);
        let mut tail = Vec::new();
        let mut split = false;
        head.push(b'{');
        for (i, (key, value)) in object.iter().enumerate() {
            let out = if split { &mut tail } else { &mut head };
            if i > 0 {
                out.push(b',');
            }
            write_json(out, &Value::String(key.clone()));
            out.push(b':');
            if key == "time" && fill_time {
                split = true;
            } else {
                write_json(out, value);
            }
        }
        if fill_time && !split {
            if !object.is_empty() {
                head.push(b',');
            }
            head.extend_from_slice(br#""time":"#);
        }
        let out = if fill_time { &mut tail } else { &mut head };
        out.push(b'}');
        Self {
            device_id,
            head,
            tail,
            fill_time,
        }
    }

    /// The message as sent: `time` filled from `clock` when it was empty or missing.
    pub fn render(&self, clock: &mut DeviceClock) -> Vec<u8> {
        if !self.fill_time {
            return self.head.clone();
        }
        let time = clock.next_timestamp();
        let mut out = Vec::with_capacity(self.head.len() + self.tail.len() + time.len() + 2);
        out.extend_from_slice(&self.head);
        out.push(b'"');
        out.extend_from_slice(time.as_bytes());
        out.push(b'"');
        out.extend_from_slice(&self.tail);
        out
    }
}

fn write_json(out: &mut Vec<u8>, value: &Value) {
    // Serialising a serde_json::Value into a Vec cannot fail (no I/O, string keys only).
    if let Ok(bytes) = serde_json::to_vec(value) {
        out.extend_from_slice(&bytes);
    }
}

/// Hands out per-device timestamps, UTC `YYYY-MM-DDTHH:mm:ss.SSSZ`, strictly increasing.
///
/// Strictly increasing because the hot store keys a record by (`iotDeviceId`, `time`): two
/// readings of one device stamped in the same millisecond would overwrite each other. Above
/// 1,000 messages/s per device the stamps therefore run ahead of the wall clock.
#[derive(Debug, Default, Clone)]
pub struct DeviceClock {
    last_ms: i64,
}

impl DeviceClock {
    /// The next timestamp: now, or 1 ms after the previous one if that is later.
    pub fn next_timestamp(&mut self) -> String {
        let now = Utc::now().timestamp_millis();
        let ms = now.max(self.last_ms + 1);
        self.last_ms = ms;
        format_millis(ms)
    }
}

/// Formats epoch milliseconds as SPEC §6 wants them.
pub fn format_millis(ms: i64) -> String {
    let t: DateTime<Utc> = Utc
        .timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The messages of one payloads file, in file order.
#[derive(Debug, Clone)]
pub struct Payloads {
    /// The file they came from.
    pub path: PathBuf,
    /// The messages, in file order.
    pub messages: Vec<PayloadTemplate>,
}

impl Payloads {
    /// Reads and checks a payloads file.
    pub fn load(path: &Path) -> Result<Self, PayloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| PayloadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses payloads text; `path` names the file in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, PayloadError> {
        let value: Value = serde_json::from_str(text).map_err(|e| PayloadError::Syntax {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: strip_position(&e.to_string()),
        })?;
        let Value::Array(items) = value else {
            return Err(PayloadError::Shape {
                path: path.to_path_buf(),
                problem: "must be a JSON array of messages like \
                          [{\"iotDeviceId\": \"sensor-1\", \"time\": \"\", \"temperature\": 21.5}]"
                    .into(),
            });
        };
        if items.is_empty() {
            return Err(PayloadError::Shape {
                path: path.to_path_buf(),
                problem: "the array is empty: add at least one message".into(),
            });
        }
        let offsets = element_offsets(text);
        let mut messages = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let fail = |problem: String| {
                let (line, column) = offsets
                    .get(i)
                    .map(|&o| line_column(text, o))
                    .unwrap_or((0, 0));
                PayloadError::Message {
                    path: path.to_path_buf(),
                    index: i + 1,
                    line,
                    column,
                    problem,
                }
            };
            let Value::Object(object) = item else {
                return Err(fail(format!("must be an object, found {}", kind(item))));
            };
            let device_id = match object.get("iotDeviceId") {
                Some(Value::String(id)) if valid_device_id(id) => id.clone(),
                Some(Value::String(id)) => {
                    return Err(fail(format!(
                        "iotDeviceId {id:?} is not a usable device id \
                         (non-empty, no '/', '+', '#' or whitespace)"
                    )))
                }
                Some(other) => {
                    return Err(fail(format!(
                        "iotDeviceId must be a string, found {}",
                        kind(other)
                    )))
                }
                None => return Err(fail("iotDeviceId is missing".into())),
            };
            if let Some(time) = object.get("time") {
                if !time.is_string() {
                    return Err(fail(format!(
                        "time must be a string (\"\" to fill in the send time), found {}",
                        kind(time)
                    )));
                }
            }
            messages.push(PayloadTemplate::from_object(device_id, object));
        }
        Ok(Self {
            path: path.to_path_buf(),
            messages,
        })
    }

    /// The distinct device ids, in order of first appearance.
    pub fn device_ids(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.messages
            .iter()
            .filter(|m| seen.insert(m.device_id.as_str()))
            .map(|m| m.device_id.clone())
            .collect()
    }

    /// The messages of one device, in file order.
    pub fn for_device(&self, device_id: &str) -> Vec<PayloadTemplate> {
        self.messages
            .iter()
            .filter(|m| m.device_id == device_id)
            .cloned()
            .collect()
    }
}

fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && !id
            .chars()
            .any(|c| matches!(c, '/' | '+' | '#') || c.is_whitespace() || c.is_control())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Byte offsets where each element of the top-level array starts (text is known-valid JSON).
fn element_offsets(text: &str) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut expect_value = false;
    for (i, c) in text.char_indices() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if depth == 1 && expect_value && !c.is_whitespace() && c != ']' {
            offsets.push(i);
            expect_value = false;
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expect_value = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expect_value = true,
            _ => {}
        }
    }
    offsets
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Payloads, PayloadError> {
        Payloads::parse(text, Path::new("payloads.json"))
    }

    #[test]
    fn empty_time_is_filled_and_order_is_kept() {
        let p = parse(r#"[{"iotDeviceId":"d1","time":"","t":1.5,"ok":true}]"#).unwrap();
        let mut clock = DeviceClock::default();
        let out: Value = serde_json::from_slice(&p.messages[0].render(&mut clock)).unwrap();
        let time = out["time"].as_str().unwrap();
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
        let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["iotDeviceId", "time", "t", "ok"]);
        assert_eq!(out["t"], 1.5);
    }

    #[test]
    fn missing_time_is_added_and_given_time_is_kept() {
        let p = parse(
            r#"[{"iotDeviceId":"d1","t":2},
                {"iotDeviceId":"d2","time":"2025-11-04T13:23:11.203Z"}]"#,
        )
        .unwrap();
        let mut clock = DeviceClock::default();
        let a: Value = serde_json::from_slice(&p.messages[0].render(&mut clock)).unwrap();
        assert_eq!(a["time"].as_str().unwrap().len(), 24);
        assert_eq!(a["t"], 2);
        let b: Value = serde_json::from_slice(&p.messages[1].render(&mut clock)).unwrap();
        assert_eq!(b["time"], "2025-11-04T13:23:11.203Z");
        assert_eq!(p.device_ids(), ["d1", "d2"]);
    }

    #[test]
    fn clock_is_strictly_increasing() {
        let mut clock = DeviceClock::default();
        let stamps: Vec<String> = (0..2000).map(|_| clock.next_timestamp()).collect();
        assert!(stamps.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn format_is_spec_format() {
        assert_eq!(format_millis(1_762_262_591_203), "2025-11-04T13:23:11.203Z");
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let err = parse("[\n  {\"iotDeviceId\": \"d1\",}\n]").unwrap_err();
        match err {
            PayloadError::Syntax { line, column, .. } => assert_eq!((line, column), (2, 24)),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn bad_message_is_reported_with_its_position() {
        let text = "[\n  {\"iotDeviceId\": \"d1\"},\n  {\"id\": \"x\", \"s\": \"a,[b\"},\n  3\n]";
        let err = parse(text).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("message 2 (line 3, column 3): iotDeviceId is missing"),
            "{msg}"
        );
        let err = parse("[{\"iotDeviceId\":\"d\"}, 3]").unwrap_err();
        assert!(
            err.to_string()
                .contains("message 2 (line 1, column 23): must be an object, found a number"),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_and_shapes_are_rejected() {
        assert!(parse("{}").unwrap_err().to_string().contains("JSON array"));
        assert!(parse("[]").unwrap_err().to_string().contains("empty"));
        let e = parse(r#"[{"iotDeviceId": 5}]"#).unwrap_err();
        assert!(e.to_string().contains("must be a string"), "{e}");
        let e = parse(r#"[{"iotDeviceId": "a/b"}]"#).unwrap_err();
        assert!(e.to_string().contains("not a usable device id"), "{e}");
        let e = parse(r#"[{"iotDeviceId": "a", "time": 5}]"#).unwrap_err();
        assert!(e.to_string().contains("time must be a string"), "{e}");
    }
}
