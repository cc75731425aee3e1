//! The real `deployer` binary against moto and the real function zips: `local up` starts the
//! detached runner, `lambda_invoke` then reaches the real hot reader (not moto's echo),
//! `local up` again changes nothing, and `local down` stops it.

mod support;

use std::path::PathBuf;
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

#[test]
fn local_up_makes_lambda_invoke_reach_the_real_function() {
    twin_testkit::aws_env_for_moto();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let zips = real_zips();
    write_twin(dir, "local-cli-rt", 1);
    let deploy = run(dir, &zips, &["deploy", "-y", "-q"]);
    assert!(deploy.status.success(), "{}", text(&deploy));

    // `info` for people fits 120 columns (no terminal here, no COLUMNS: 120), grouped by layer.
    let info = support::deployer(dir, &zips, &["info"])
        .env_remove("COLUMNS")
        .output()
        .expect("run info");
    assert!(info.status.success(), "{}", text(&info));
    let shown = String::from_utf8_lossy(&info.stdout).to_string();
    assert!(shown.contains(" resources: "), "{shown}");
    assert!(shown.contains("l3-hot on aws: "), "{shown}");
    for line in shown.lines() {
        assert!(
            line.chars().count() <= 120,
            "{} columns: {line}",
            line.chars().count()
        );
    }

    let up = run(dir, &zips, &["local", "up"]);
    assert!(up.status.success(), "{}", text(&up));
    let out = String::from_utf8_lossy(&up.stdout).to_string();
    assert!(out.contains("local runner started"), "{out}");

    let invoke = run(
        dir,
        &zips,
        &["lambda_invoke", "hot-reader", r#"{"iotDeviceId":"dev-0"}"#],
    );
    assert!(invoke.status.success(), "{}", text(&invoke));
    let answer = String::from_utf8_lossy(&invoke.stdout).to_string();
    // moto would echo the payload; the real hot reader answers with its page of records.
    assert!(answer.contains("\"items\""), "{}", text(&invoke));

    let again = run(dir, &zips, &["local", "up"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("local runner already running"),
        "{}",
        text(&again)
    );
    let status = run(dir, &zips, &["local", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("local-cli-rt-hot-reader: 1 instance(s)"),
        "{}",
        text(&status)
    );

    let info = twin_local::runner::read_info(&twin_local::runner::local_dir(dir))
        .expect("runner.json while up");
    let down = run(dir, &zips, &["local", "down"]);
    assert!(down.status.success(), "{}", text(&down));
    assert!(
        String::from_utf8_lossy(&down.stdout).contains("local runner stopped"),
        "{}",
        text(&down)
    );
    assert!(
        !twin_local::runner::pid_alive(info.pid),
        "the runner still runs"
    );
}
