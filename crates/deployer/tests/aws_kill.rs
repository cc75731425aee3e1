//! The real `deployer` binary against moto, killed with SIGKILL at several points of a deploy
//! and of a destroy: the next run completes, a deploy after it changes nothing, and destroy
//! leaves nothing behind.

use std::path::{Path, PathBuf};
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{deployer, journal_lines, leftovers, run, write_twin};

/// Starts a deploy and kills it with SIGKILL once its journal has `lines` lines (or lets it
/// finish if it gets there first).
fn deploy_and_kill(dir: &Path, prebuilt: &Path, journal: &Path, lines: usize) {
    run_and_kill(dir, prebuilt, &["deploy", "-y", "-q"], journal, lines)
}

/// Starts `args` and kills it with SIGKILL once the journal has `lines` lines.
fn run_and_kill(dir: &Path, prebuilt: &Path, args: &[&str], journal: &Path, lines: usize) {
    support::run_and_kill(deployer(dir, prebuilt, args), journal, lines)
}

#[test]
fn kill_9_during_deploy_then_deploy_completes_and_destroy_leaves_nothing() {
    let moto = twin_testkit::aws_env_for_moto();
    let dir = tempfile::tempdir().expect("tempdir");
    let prebuilt: PathBuf = dir.path().join("prebuilt");
    twin_aws::testing::write_prebuilt(&prebuilt).expect("stand-in zips");
    let twin = "kill-twin";
    write_twin(dir.path(), twin, 4);
    let journal = dir.path().join(".deployer").join(format!("{twin}.journal"));

    // Kill at several depths: early (roles, buckets), mid (functions), late (L1 devices).
    for k in [3, 15, 40] {
        deploy_and_kill(dir.path(), &prebuilt, &journal, k);
    }
    let out = run(dir.path(), &prebuilt, &["deploy", "-y", "--json"]);
    assert!(
        out.status.success(),
        "deploy after kills failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = run(dir.path(), &prebuilt, &["deploy", "-y", "--json"]);
    assert!(again.status.success());
    let report: serde_json::Value =
        serde_json::from_slice(&again.stdout).expect("deploy --json document");
    let text = report.to_string();
    assert!(
        text.contains("\"created\":0") && text.contains("\"updated\":0"),
        "second deploy changed something: {text}"
    );

    let out = run(dir.path(), &prebuilt, &["destroy", "-y"]);
    assert!(
        out.status.success(),
        "destroy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = leftovers(&moto.endpoint, twin);
    assert_eq!(left, Ok(Vec::new()), "destroy left resources behind");
}

/// Ctrl-C in the shell: the running command stops (calls in flight finish, state saved), the
/// shell goes on to the next command, and a later deploy resumes where the first one stopped.
#[test]
fn ctrl_c_cancels_the_running_command_but_not_the_shell() {
    twin_testkit::aws_env_for_moto();
    let dir = tempfile::tempdir().expect("tempdir");
    let prebuilt: PathBuf = dir.path().join("prebuilt");
    twin_aws::testing::write_prebuilt(&prebuilt).expect("stand-in zips");
    let twin = "sigint-twin";
    write_twin(dir.path(), twin, 6);
    let journal = dir.path().join(".deployer").join(format!("{twin}.journal"));

    // The shell reads its commands from stdin; `info` is only reached if deploy's Ctrl-C
    // ended the command and not the shell.
    let mut shell = deployer(dir.path(), &prebuilt, &[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shell");
    {
        use std::io::Write;
        let mut stdin = shell.stdin.take().expect("stdin");
        stdin
            .write_all(b"deploy -y -q\ninfo --json\n")
            .expect("write commands");
    } // stdin closed: after `info` the shell sees end of input and leaves.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut wait = Duration::from_millis(2);
    // Some resources finished (a created record) and others are still to come.
    let finished_one =
        |j: &Path| std::fs::read_to_string(j).is_ok_and(|t| t.contains("\"status\":\"created\""));
    while journal_lines(&journal) < 5 || !finished_one(&journal) {
        assert!(
            Instant::now() < deadline,
            "deploy never started writing state"
        );
        assert!(
            shell.try_wait().expect("wait").is_none(),
            "shell ended before Ctrl-C"
        );
        std::thread::sleep(wait); // polling the journal, not waiting for time to pass
        wait = (wait * 2).min(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the child's pid, which we own and have not reaped.
    let sent = unsafe { libc::kill(shell.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0, "SIGINT not delivered");
    let out = shell.wait_with_output().expect("shell output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("interrupted; the state file is saved"),
        "deploy was not cancelled: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "the shell reports the interrupted command: {stderr}"
    );
    let rows: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("info --json ran after the interrupt");
    let statuses: Vec<&str> = rows
        .as_array()
        .expect("info rows")
        .iter()
        .filter_map(|r| r["status"].as_str())
        .collect();
    assert!(
        statuses.contains(&"ok") && statuses.contains(&"not deployed"),
        "deploy stopped part-way: {statuses:?}"
    );
    assert!(!journal.exists(), "the state was saved (journal folded in)");

    let out = run(dir.path(), &prebuilt, &["deploy", "-y", "--json"]);
    assert!(
        out.status.success(),
        "deploy after Ctrl-C failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert!(
        report["unchanged"].as_u64().unwrap_or(0) > 0
            && report["created"].as_u64().unwrap_or(0) > 0,
        "the second deploy resumed rather than starting over: {report}"
    );
    let out = run(dir.path(), &prebuilt, &["destroy", "-y"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Journal depths drawn from a fixed seed (a failing run can be replayed): "random moments"
/// that are the same on every run.
fn depths(seed: u64, n: usize, max: usize) -> Vec<usize> {
    let mut x = seed.max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            1 + (x % max as u64) as usize
        })
        .collect()
}

#[test]
fn kill_9_at_random_moments_of_deploy_and_destroy_then_reruns_converge() {
    let moto = twin_testkit::aws_env_for_moto();
    let dir = tempfile::tempdir().expect("tempdir");
    let prebuilt: PathBuf = dir.path().join("prebuilt");
    twin_aws::testing::write_prebuilt(&prebuilt).expect("stand-in zips");
    let twin = "rkill-twin";
    write_twin(dir.path(), twin, 3);
    let journal = dir.path().join(".deployer").join(format!("{twin}.journal"));
    for k in depths(0x9e37_79b9, 4, 50) {
        run_and_kill(dir.path(), &prebuilt, &["deploy", "-y", "-q"], &journal, k);
    }
    let out = run(dir.path(), &prebuilt, &["deploy", "-y", "--json"]);
    assert!(
        out.status.success(),
        "deploy after kills failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(dir.path(), &prebuilt, &["info", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("info --json");
    let not_ok: Vec<String> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["status"] != "ok")
        .map(|r| r.to_string())
        .collect();
    assert!(
        not_ok.is_empty(),
        "after the kills and a deploy: {not_ok:?}"
    );
    for k in depths(0x85eb_ca6b, 3, 30) {
        run_and_kill(dir.path(), &prebuilt, &["destroy", "-y", "-q"], &journal, k);
    }
    let out = run(dir.path(), &prebuilt, &["destroy", "-y"]);
    assert!(
        out.status.success(),
        "destroy after kills failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = leftovers(&moto.endpoint, twin);
    assert_eq!(left, Ok(Vec::new()), "destroy left resources behind");
}
