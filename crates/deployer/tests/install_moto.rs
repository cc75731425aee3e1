//! The deployer as an installed tool, against moto: the binary built with the default function
//! packages compiled in (`DEPLOYER_EMBED_FUNCTIONS`, which scripts/test.sh exports for the test
//! build), copied into an empty directory holding only the example twin's three config files,
//! deploys it with no cargo, cargo-lambda or zig on PATH and no checkout to build from, then
//! destroys it leaving nothing.

mod support;

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `deployer args` in `dir` with nothing but an empty directory on PATH and a fresh HOME: no
/// toolchain, no prebuilt zips, no functions directory.
fn installed(bin: &Path, dir: &Path, path: &Path, home: &Path, args: &[&str]) -> Output {
    command(bin, dir, path, home, args)
        .output()
        .expect("run the installed deployer")
}

fn command(bin: &Path, dir: &Path, path: &Path, home: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(bin);
    c.current_dir(dir)
        .args(args)
        .env("PATH", path)
        .env("HOME", home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("DEPLOYER_PREBUILT_FUNCTIONS")
        .env_remove("DEPLOYER_FUNCTIONS_DIR")
        .env_remove("CARGO_HOME")
        .env_remove("RUSTUP_HOME")
        .env_remove("TWIN_VENV")
        .env_remove("NO_COLOR")
        .env("COLUMNS", "120")
        .stdin(Stdio::null());
    c
}

/// Fails when a command's output holds an escape sequence (colour, cursor movement).
fn assert_plain(what: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !bytes.windows(2).any(|w| w == b"\x1b["),
            "{what}: escape sequence on {stream}: {:?}",
            text(bytes)
        );
    }
}

/// `deployer args` with a terminal as stdout and stderr (util-linux `script`), and NO_COLOR set:
/// the output must be as plain as through a pipe.
fn on_a_terminal_with_no_color(
    bin: &Path,
    dir: &Path,
    path: &Path,
    home: &Path,
    args: &[&str],
) -> Option<Output> {
    let script = ["/usr/bin/script", "/bin/script"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())?;
    let line = std::iter::once(bin.display().to_string())
        .chain(args.iter().map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(" ");
    let mut c = command(
        Path::new(script),
        dir,
        path,
        home,
        &["-qec", &line, "/dev/null"],
    );
    c.env("NO_COLOR", "1").env("TERM", "xterm-256color");
    Some(c.output().expect("run deployer under script"))
}

#[test]
fn the_installed_binary_deploys_the_example_twin_from_an_empty_directory_without_a_toolchain() {
    let built = Path::new(env!("CARGO_BIN_EXE_deployer"));
    let version = Command::new(built)
        .arg("--version")
        .output()
        .expect("deployer --version");
    let version = text(&version.stdout);
    assert!(
        !version.contains("built from source"),
        "this test needs a deployer built with the function packages compiled in: build it with \
         DEPLOYER_EMBED_FUNCTIONS=<target>/lambda (scripts/test.sh exports it after \
         scripts/build-functions.sh); got `{}`",
        version.trim()
    );
    let moto = twin_testkit::aws_env_for_moto();

    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("twin");
    let path = root.path().join("bin");
    let home = root.path().join("home");
    for d in [&dir, &path, &home] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    for f in [
        "config.json",
        "config_iot_devices.json",
        "config_providers.json",
    ] {
        std::fs::copy(repo_root().join(f), dir.join(f)).expect("copy config");
    }
    let bin = dir.join("deployer");
    std::fs::copy(built, &bin).expect("copy the binary");
    for tool in ["cargo", "cargo-lambda", "zig", "rustc"] {
        assert!(
            !path.join(tool).exists(),
            "{tool} must not be reachable on PATH"
        );
    }

    // Piped output (every run here) has no escape sequences, with or without NO_COLOR.
    let plan = installed(&bin, &dir, &path, &home, &["plan"]);
    assert!(plan.status.success(), "plan failed: {}", text(&plan.stderr));
    assert_plain("plan", &plan);
    let deploy = installed(&bin, &dir, &path, &home, &["deploy", "-y"]);
    assert!(
        deploy.status.success(),
        "deploy failed: {}",
        text(&deploy.stderr)
    );
    assert_plain("deploy", &deploy);

    // For people: the endpoints first, every line within 120 columns.
    let info = installed(&bin, &dir, &path, &home, &["info"]);
    assert!(info.status.success(), "info failed: {}", text(&info.stderr));
    assert_plain("info", &info);
    let shown = text(&info.stdout);
    for line in shown.lines() {
        assert!(
            line.chars().count() <= 120,
            "{} columns: {line}\n{shown}",
            line.chars().count()
        );
    }
    let top: Vec<&str> = shown.lines().take(2).collect();
    assert!(
        top[0].starts_with("IoT endpoint (aws):") && top[0].len() > "IoT endpoint (aws): ".len(),
        "{shown}"
    );
    assert!(
        top[1].starts_with("Hot-reader URL (aws):") && top[1].contains("http"),
        "{shown}"
    );
    for cmd in ["info", "plan"] {
        if let Some(tty) = on_a_terminal_with_no_color(&bin, &dir, &path, &home, &[cmd]) {
            assert!(tty.status.success(), "{cmd}: {}", text(&tty.stdout));
            assert_plain(&format!("{cmd} on a terminal with NO_COLOR"), &tty);
            assert!(
                !tty.stdout.is_empty(),
                "{cmd} printed nothing on the terminal"
            );
        }
    }

    // Every resource is there, and the functions' code is the packages the binary carries
    // (their hash is in the uploaded object's key), not something built on the way.
    let info = installed(&bin, &dir, &path, &home, &["info", "--json"]);
    assert!(info.status.success(), "info failed: {}", text(&info.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info --json");
    let rows = rows.as_array().expect("rows");
    assert!(!rows.is_empty());
    for r in rows {
        assert_eq!(r["status"], "ok", "{r}");
    }
    let zips = twin_testkit::function_zips();
    for name in ["dispatcher", "persister", "hot-reader"] {
        let bytes = std::fs::read(zips.join(name).join("bootstrap.zip")).expect("zip");
        let hash = &hex::encode(Sha256::digest(&bytes))[..16];
        let key = format!("{name}/x86_64-{hash}.zip");
        assert!(
            rows.iter().any(|r| r["kind"] == "lambda_artifact"
                && r["id"].as_str().is_some_and(|id| id.ends_with(&key))),
            "no artifact {key} in {rows:?}"
        );
    }
    let again = installed(&bin, &dir, &path, &home, &["deploy", "-y", "--json"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).expect("report");
    assert_eq!(
        (&report["created"], &report["updated"]),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "a second deploy changes nothing: {report}"
    );

    let destroy = command(&bin, &dir, &path, &home, &["destroy", "-y"])
        .env("NO_COLOR", "1")
        .output()
        .expect("destroy");
    assert!(
        destroy.status.success(),
        "destroy failed: {}",
        text(&destroy.stderr)
    );
    assert_plain("destroy", &destroy);
    let left = support::leftovers(&moto.endpoint, "digital-twin");
    assert_eq!(left, Ok(Vec::new()), "destroy left resources behind");
}
