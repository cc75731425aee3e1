//! `simulator`: parses arguments, runs one command or the REPL, maps errors to exit codes.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use twin_simulator::cli::{Cli, Command};
use twin_simulator::config::SimulatorConfig;
use twin_simulator::payloads::Payloads;
use twin_simulator::send::SendSession;
use twin_simulator::{load, repl, SimError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    if let Some(Command::Help) = cli.command {
        print!("{}", repl::HELP);
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Exit) = cli.command {
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

async fn run(cli: Cli) -> Result<(), SimError> {
    let config = SimulatorConfig::load(&cli.config)?;
    let payload_file = cli
        .payloads
        .clone()
        .unwrap_or_else(|| config.payload_file.clone());
    let payloads = Payloads::load(&payload_file)?;
    match cli.command {
        None => repl::run(config, payloads).await,
        Some(Command::Send(args)) => {
            let mut session = SendSession::new(config, payloads)?;
            let mut out = std::io::stdout();
            let result = session.send(args.count, args.timeout, &mut out).await;
            session.close().await;
            result
        }
        Some(Command::Load(args)) => {
            let report = load::run_load(&config, &payloads, &args).await?;
            let mut out = std::io::stdout();
            if args.json {
                let json = serde_json::to_string_pretty(&report)
                    .map_err(|e| SimError::Output(std::io::Error::other(e)))?;
                writeln!(out, "{json}")?;
            } else {
                write!(out, "{}", report.human())?;
            }
            if report.failed > 0 {
                return Err(SimError::Incomplete {
                    failed: report.failed,
                    generated: report.generated,
                });
            }
            Ok(())
        }
        Some(Command::Help) | Some(Command::Exit) => Ok(()),
    }
}

/// Logs go to stderr; RUST_LOG overrides the -v level.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "twin_simulator=info,warn",
        _ => "twin_simulator=debug,rumqttc=info,info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
