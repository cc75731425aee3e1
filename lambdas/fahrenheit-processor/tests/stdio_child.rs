//! The built binary as the Azure custom handler runs it: a child speaking the device-logic line
//! protocol on stdin/stdout, with no cloud settings in its environment.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use twin_functions::device_logic::{parse_answer, AnswerLine, StepOutcome, STDIO_ENV};

#[test]
fn the_binary_serves_the_line_protocol_without_any_cloud_setting() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fahrenheit-processor"))
        .env_clear()
        .env(STDIO_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut ask = |line: &str| {
        writeln!(stdin, "{line}").expect("write");
        stdin.flush().expect("flush");
        let mut answer = String::new();
        stdout.read_line(&mut answer).expect("read");
        parse_answer(answer.trim_end())
    };
    let converted = ask(r#"{"message":{"iotDeviceId":"t-1","temperatureF":212}}"#);
    let AnswerLine::Answer(StepOutcome::Message(m)) = converted else {
        panic!("{converted:?}")
    };
    assert_eq!(m["temperature"], serde_json::json!(100.0));
    assert!(!m.contains_key("temperatureF"));
    let refused = ask(r#"{"message":{"iotDeviceId":"t-1","temperatureF":-999}}"#);
    assert!(
        matches!(&refused, AnswerLine::Answer(StepOutcome::Rejected(why)) if why.contains("absolute zero")),
        "{refused:?}"
    );
    drop(stdin);
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "the child ends cleanly when stdin closes: {status}"
    );
}
