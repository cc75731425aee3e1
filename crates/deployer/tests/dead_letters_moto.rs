//! No silent drops, end to end with the real `deployer` binary, moto and the real function
//! zips under the local data plane: a reading whose persister fails (its hot table is gone)
//! lands, after Lambda's retries, in L2's dead-letter queue; `info` counts it; once the cause
//! is fixed (`deploy` makes the table again) `redrive` replays it and the record arrives in the
//! hot table.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{run, write_twin};

/// The real function zips (`scripts/build-functions.sh`, built when missing).
fn real_zips() -> PathBuf {
    twin_testkit::function_zips().to_path_buf()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `probe` with backoff until it gives a value or `within` passes.
fn eventually<T>(what: &str, within: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    let mut delay = Duration::from_millis(200);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(delay); // poll backoff
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// The provider's clients on moto (their DynamoDB client, here).
async fn clients(endpoint: &str) -> twin_aws::AwsClients {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    twin_aws::AwsClients::from_sdk_config(
        &config,
        "123456789012".into(),
        "us-east-1".into(),
        "aws".into(),
    )
}

#[test]
fn a_failed_reading_waits_in_its_dead_letter_queue_and_redrive_delivers_it() {
    let moto = twin_testkit::aws_env_for_moto();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let zips = real_zips();
    let twin = "dlq-cli";
    write_twin(dir, twin, 1);
    let deploy = run(dir, &zips, &["deploy", "-y", "-q"]);
    assert!(deploy.status.success(), "{}", text(&deploy));
    let info = run(dir, &zips, &["info"]);
    assert!(info.status.success(), "{}", text(&info));
    let out = String::from_utf8_lossy(&info.stdout).to_string();
    assert!(
        out.contains(&format!("l2 {twin}-l2-dead-letters: 0 waiting")),
        "{out}"
    );

    let up = run(dir, &zips, &["local", "up"]);
    assert!(up.status.success(), "{}", text(&up));

    // The cause: the hot table is gone, so the persister fails on every attempt.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ddb = rt.block_on(clients(&moto.endpoint)).dynamodb;
    let table = format!("{twin}-hot");
    rt.block_on(ddb.delete_table().table_name(&table).send())
        .expect("delete the hot table");
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let reading =
        serde_json::json!({"iotDeviceId": "dev-0", "temperature": 31.25, "time": time}).to_string();
    let sent = run(
        dir,
        &zips,
        &["lambda_invoke", "dispatcher", &reading, "--async"],
    );
    assert!(sent.status.success(), "{}", text(&sent));

    // Dispatcher → processor → persister, which fails three times (two retries): the record
    // goes to L2's queue, and `info` counts it.
    eventually(
        "the failed reading in info",
        Duration::from_secs(90),
        || {
            let info = run(dir, &zips, &["info"]);
            String::from_utf8_lossy(&info.stdout)
                .contains(&format!("l2 {twin}-l2-dead-letters: 1 waiting"))
                .then_some(())
        },
    );

    // The cause fixed, `redrive` replays it to the persister and deletes it.
    let deploy = run(dir, &zips, &["deploy", "-y", "-q"]);
    assert!(deploy.status.success(), "{}", text(&deploy));
    let redrive = run(dir, &zips, &["redrive", "--layer", "l2"]);
    assert!(redrive.status.success(), "{}", text(&redrive));
    let out = String::from_utf8_lossy(&redrive.stdout).to_string();
    assert!(out.contains("1 replayed, 0 kept"), "{}", text(&redrive));
    let items = rt
        .block_on(ddb.scan().table_name(&table).send())
        .expect("scan the hot table");
    let found = items.items().iter().any(|i| {
        i.get("temperature")
            .and_then(|v| v.as_n().ok())
            .is_some_and(|n| n == "31.25")
    });
    assert!(found, "the replayed record is in the hot table: {items:?}");
    let info = run(dir, &zips, &["info"]);
    let out = String::from_utf8_lossy(&info.stdout).to_string();
    assert!(
        out.contains(&format!("l2 {twin}-l2-dead-letters: 0 waiting")),
        "{out}"
    );

    let down = run(dir, &zips, &["local", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    let destroy = run(dir, &zips, &["destroy", "-y", "-q"]);
    assert!(destroy.status.success(), "{}", text(&destroy));
    let left = support::leftovers(&moto.endpoint, twin).expect("list");
    assert!(left.is_empty(), "{left:?}");
}
