//! `deployer`: parse, dispatch, map errors to exit codes. The work lives in the libraries.

mod boundaries;
mod boundary_health;
mod cli;
mod commands;
mod cost;
mod dead_letters;
mod endpoints;
mod error;
mod local;
mod model;
mod output;
mod registry;
mod render;
mod repl;
mod verify;

/// The function packages compiled in by build.rs (none in a plain development build).
mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_functions.rs"));
}

/// `--version`: the crate's version and which function packages this binary carries.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    ", ",
    env!("DEPLOYER_FUNCTIONS_SUMMARY")
);

use clap::Parser;
use cli::Cli;
use error::CliError;

/// Prints a failed command's error: a JSON document under `--json`, text on stderr otherwise.
pub fn report_error(cli: &Cli, e: &CliError) {
    if let CliError::Reported(line) = e {
        // The outcome (or its JSON document) is already out: one document per command.
        eprintln!("{line}");
        return;
    }
    if cli.json {
        let diagnostics = match e {
            CliError::Config(d) => serde_json::to_value(&d.0).unwrap_or_default(),
            _ => serde_json::Value::Array(Vec::new()),
        };
        output::json(&serde_json::json!({
            "error": e.to_string(), "exit_code": e.exit_code(), "diagnostics": diagnostics,
        }));
    } else {
        match e {
            CliError::Config(d) => {
                eprintln!("{d}");
                eprintln!(
                    "{} problem(s) in the config; nothing was deployed.",
                    d.0.len()
                );
            }
            other => eprintln!("error: {other}"),
        }
    }
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (_, 0) => "warn",
        (_, 1) => "info,twin=debug,deployer=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("DEPLOYER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only to a terminal and without NO_COLOR: logs piped to a file stay plain.
        .with_ansi(render::escapes_on_stderr())
        .try_init();
}

fn main() {
    // Like any Unix filter, end quietly when the reader goes away (`deployer info | head`)
    // instead of panicking in println! on a broken pipe.
    // SAFETY: restoring the default disposition of one signal before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Before any provider is made: every command's function code comes from the same place.
    twin_artifacts::embed(embedded::PACKAGES);
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 2 } else { 0 });
        }
    };
    init_logging(&cli);
    local::point_lambda_at_runner(&cli);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match cli.command.clone() {
        None => repl::run(&cli, &rt),
        Some(cmd) => repl::run_one(&cli, &cmd, &rt),
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_build_script_embeds_the_default_function_crates() {
        assert_eq!(
            crate::embedded::CRATES,
            &twin_artifacts::DEFAULT_FUNCTION_CRATES[..]
        );
        for p in crate::embedded::PACKAGES {
            assert!(crate::embedded::CRATES.contains(&p.crate_name), "{p:?}");
        }
    }
}
