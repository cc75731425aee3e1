//! Devices' own processor crates inside the one custom handler.
//!
//! A Function App runs one executable, so a device's own processor crate cannot be a function of
//! its own as on AWS. Its binary (the same cargo-lambda build that is its Lambda function) ships
//! in the package under `processors/<crate>`; the handler starts it as a child with
//! `TWIN_DEVICE_LOGIC_STDIO=1` on first use and asks it, one line per message, to run the crate's
//! logic (`twin_functions::device_logic`). The handler keeps the catalogue, the default checks
//! and the persister, so a crate needs no Azure code and no credentials.
//!
//! One child per crate, one message at a time: the answer on stdout belongs to the last request.
//! A child that dies, hangs past [`ANSWER_TIMEOUT`] or stops speaking the protocol is killed and
//! the message is tried once more on a fresh child; failing again is an error, so Event Grid
//! redelivers the event later (the persister's write is idempotent).

use super::payload::log_line;
use crate::app::OWN_PROCESSORS_DIR;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use twin_functions::device_logic::{
    parse_answer, AnswerLine, LogicRequest, LogicStep, StepOutcome, STDIO_ENV,
};
use twin_functions::{CloudError, CloudErrorKind};

/// How long a child may take to answer one message before it is taken for hung.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the package holds the binary of the processor crate `crate_name`.
pub fn executable_in(app_root: &Path, crate_name: &str) -> PathBuf {
    app_root.join(OWN_PROCESSORS_DIR).join(crate_name)
}

/// A processor crate's logic, run by its binary as a child of the handler.
pub struct ChildLogic {
    crate_name: String,
    executable: PathBuf,
    answer_timeout: Duration,
    running: tokio::sync::Mutex<Option<Running>>,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

/// Why one exchange with a child failed.
enum ExchangeFailure {
    /// The child is gone, hung or unreadable: a fresh one may do.
    Lost(String),
    /// The child answers in a way this handler cannot use: a fresh one will too.
    Broken(String),
}

impl ChildLogic {
    /// The logic of `crate_name`, run by `executable` (started on first use).
    pub fn new(crate_name: impl Into<String>, executable: PathBuf) -> Self {
        Self {
            crate_name: crate_name.into(),
            executable,
            answer_timeout: ANSWER_TIMEOUT,
            running: tokio::sync::Mutex::new(None),
        }
    }

    /// The same logic with another answer timeout (tests).
    pub fn with_answer_timeout(mut self, timeout: Duration) -> Self {
        self.answer_timeout = timeout;
        self
    }

    fn resource(&self) -> String {
        format!(
            "processor crate {} ({})",
            self.crate_name,
            self.executable.display()
        )
    }

    fn error(&self, code: &str, message: String, kind: CloudErrorKind) -> CloudError {
        CloudError::new("RunDeviceLogic", self.resource(), code, message, kind)
    }

    fn spawn(&self) -> Result<Running, CloudError> {
        let mut child = Command::new(&self.executable)
            .env(STDIO_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // The crate's own diagnostics join the handler's log stream.
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                self.error(
                    "ProcessorNotStarted",
                    format!(
                        "cannot start it: {e}; run `deployer deploy` to upload the package again"
                    ),
                    CloudErrorKind::Rejected,
                )
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(self.error(
                "ProcessorNotStarted",
                "its stdin/stdout pipes were not opened".into(),
                CloudErrorKind::Transient,
            ));
        };
        Ok(Running {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
        })
    }

    async fn exchange(
        &self,
        running: &mut Running,
        request: &str,
    ) -> Result<StepOutcome, ExchangeFailure> {
        let lost = |what: &str, e: std::io::Error| ExchangeFailure::Lost(format!("{what}: {e}"));
        running
            .stdin
            .write_all(request.as_bytes())
            .await
            .map_err(|e| lost("writing the message", e))?;
        running
            .stdin
            .flush()
            .await
            .map_err(|e| lost("writing the message", e))?;
        let read = async {
            loop {
                match running.stdout.next_line().await {
                    Err(e) => return Err(lost("reading the answer", e)),
                    Ok(None) => {
                        return Err(ExchangeFailure::Lost(
                            "it exited before answering".to_string(),
                        ))
                    }
                    Ok(Some(line)) => match parse_answer(&line) {
                        AnswerLine::Answer(outcome) => return Ok(outcome),
                        AnswerLine::Broken(why) => return Err(ExchangeFailure::Broken(why)),
                        AnswerLine::Other(text) if text.trim().is_empty() => {}
                        AnswerLine::Other(text) => {
                            log_line(format!("processor {}: {text}", self.crate_name))
                        }
                    },
                }
            }
        };
        match tokio::time::timeout(self.answer_timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(ExchangeFailure::Lost(format!(
                "no answer within {} s",
                self.answer_timeout.as_secs()
            ))),
        }
    }
}

#[async_trait]
impl LogicStep for ChildLogic {
    async fn apply(&self, message: Map<String, Value>) -> Result<StepOutcome, CloudError> {
        let mut request = serde_json::to_string(&LogicRequest { message }).map_err(|e| {
            self.error(
                "InvalidMessage",
                format!("the message cannot be written as JSON: {e}"),
                CloudErrorKind::Rejected,
            )
        })?;
        request.push('\n');
        let mut running = self.running.lock().await;
        let mut last = String::new();
        for _attempt in 0..2 {
            let mut current = match running.take() {
                Some(r) => r,
                None => self.spawn()?,
            };
            match self.exchange(&mut current, &request).await {
                Ok(outcome) => {
                    *running = Some(current);
                    return Ok(outcome);
                }
                Err(ExchangeFailure::Broken(why)) => {
                    let _ = current.child.kill().await;
                    return Err(self.error("ProcessorProtocol", why, CloudErrorKind::Rejected));
                }
                Err(ExchangeFailure::Lost(why)) => {
                    // Killed (and reaped) before a fresh child takes over.
                    let _ = current.child.kill().await;
                    log_line(format!(
                        "processor {}: {why}; starting it again",
                        self.crate_name
                    ));
                    last = why;
                }
            }
        }
        Err(self.error(
            "ProcessorFailed",
            format!("{last} (twice, on fresh processes); Event Grid delivers the event again"),
            CloudErrorKind::Transient,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    /// A shell script standing in for a crate's binary.
    fn script(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("twin-own-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn message() -> Map<String, Value> {
        json!({"iotDeviceId": "d", "v": 1})
            .as_object()
            .cloned()
            .unwrap()
    }

    const ANSWER: &str = r#"{"twinDeviceLogic":1,"message":{"iotDeviceId":"d","v":2}}"#;

    #[tokio::test]
    async fn one_child_answers_every_message_and_stray_output_is_skipped() {
        // Counts its requests: a second process would start again at 1.
        let exe = script(
            "echoer",
            "n=0\nwhile read line; do n=$((n+1)); echo \"stray line $n\"; echo '{\"twinDeviceLogic\":1,\"message\":{\"iotDeviceId\":\"d\",\"n\":'$n'}}'; done",
        );
        let logic = ChildLogic::new("echoer", exe);
        for n in 1..=3 {
            let out = logic.apply(message()).await.unwrap();
            assert_eq!(
                out,
                StepOutcome::Message(
                    json!({"iotDeviceId": "d", "n": n})
                        .as_object()
                        .cloned()
                        .unwrap()
                )
            );
        }
    }

    #[tokio::test]
    async fn a_child_that_dies_is_replaced_and_the_message_tried_again() {
        // Answers one message per process, then exits: every message after the first finds a
        // dead child and needs a fresh one.
        let exe = script("one-shot", &format!("read line; echo '{ANSWER}'"));
        let logic = ChildLogic::new("one-shot", exe);
        for _ in 0..3 {
            assert!(matches!(
                logic.apply(message()).await.unwrap(),
                StepOutcome::Message(_)
            ));
        }
    }

    #[tokio::test]
    async fn a_child_that_never_answers_fails_after_two_fresh_tries_as_transient() {
        let crashing = ChildLogic::new("crasher", script("crasher", "read line; exit 3"));
        let e = crashing.apply(message()).await.unwrap_err();
        assert_eq!(e.kind, CloudErrorKind::Transient, "{e}");
        assert!(e.to_string().contains("exited before answering"), "{e}");
        assert!(e.to_string().contains("crasher"), "{e}");

        let hung = ChildLogic::new("hung", script("hung", "read line; sleep 30"))
            .with_answer_timeout(Duration::from_millis(300));
        let e = hung.apply(message()).await.unwrap_err();
        assert!(e.to_string().contains("no answer within"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_binary_or_another_protocol_is_refused_not_retried() {
        let missing = ChildLogic::new("gone", PathBuf::from("/nonexistent/processors/gone"));
        let e = missing.apply(message()).await.unwrap_err();
        assert_eq!(e.code, "ProcessorNotStarted", "{e}");
        assert_eq!(e.kind, CloudErrorKind::Rejected);

        let other = ChildLogic::new(
            "v2",
            script(
                "v2",
                "read line; echo '{\"twinDeviceLogic\":2,\"message\":{}}'",
            ),
        );
        let e = other.apply(message()).await.unwrap_err();
        assert_eq!(e.code, "ProcessorProtocol", "{e}");
        assert!(e.to_string().contains("protocol 2"), "{e}");
    }
}
