//! The interactive session: `send`, `load`, `help`, `exit`, parsed by the same grammar as the
//! one-shot command line.

use std::io::Write;

use clap::Parser;
use rustyline::error::ReadlineError;

use crate::cli::{Command, ReplLine};
use crate::config::SimulatorConfig;
use crate::load::run_load;
use crate::payloads::Payloads;
use crate::send::SendSession;
use crate::SimError;

/// The command list the `help` command prints.
pub const HELP: &str = "\
commands:
  send [N] [--timeout 30s]      send the next N payloads (default 1) and wait for each PUBACK
  load --rate R --duration D [--devices N] [--buffer N] [--inflight N] [--json]
                                one connection per device, R messages/s in total (or `max`)
  help                          this list
  exit                          leave (also Ctrl-D)
";

/// Runs the REPL until `exit` or end of input; command errors are printed, not fatal.
pub async fn run(config: SimulatorConfig, payloads: Payloads) -> Result<(), SimError> {
    let mut editor = rustyline::DefaultEditor::new()
        .map_err(|e| SimError::Usage(format!("cannot start the interactive session: {e}")))?;
    let mut session = SendSession::new(config.clone(), payloads.clone())?;
    println!(
        "simulator: {} message(s) for {} device(s) from {}; broker {}:{}. Type `help`.",
        payloads.messages.len(),
        payloads.device_ids().len(),
        payloads.path.display(),
        config.endpoint,
        config.port
    );
    loop {
        let line = match editor.readline("simulator> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                session.close().await;
                return Err(SimError::Usage(format!("cannot read input: {e}")));
            }
        };
        let words = match shell_words::split(&line) {
            Ok(w) if w.is_empty() => continue,
            Ok(w) => w,
            Err(e) => {
                eprintln!("error: {e}");
                continue;
            }
        };
        let _ = editor.add_history_entry(line.as_str());
        let command = match ReplLine::try_parse_from(&words) {
            Ok(parsed) => parsed.command,
            Err(e) => {
                // clap's own rendering (with usage) is the clearest message here.
                let _ = e.print();
                continue;
            }
        };
        match command {
            Command::Send(args) => {
                let mut out = std::io::stdout();
                if let Err(e) = session.send(args.count, args.timeout, &mut out).await {
                    eprintln!("error: {e}");
                }
            }
            Command::Load(args) => {
                session.disconnect_all().await;
                match run_load(&config, &payloads, &args).await {
                    Ok(report) if args.json => match serde_json::to_string_pretty(&report) {
                        Ok(json) => println!("{json}"),
                        Err(e) => eprintln!("error: {e}"),
                    },
                    Ok(report) => print!("{}", report.human()),
                    Err(e) => eprintln!("error: {e}"),
                }
            }
            Command::Help => print!("{HELP}"),
            Command::Exit => break,
        }
        let _ = std::io::stdout().flush();
    }
    session.close().await;
    Ok(())
}
