//! The interactive shell: persistent history, tab completion of commands, flags, layers,
//! function and device names, history hints; Ctrl-C cancels the running command (not the
//! shell), Ctrl-D or `exit` quits.

use crate::cli::{parse_line, Cli, Command, COMMANDS};
use crate::commands;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::{Hinter, HistoryHinter};
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};
use std::sync::{Arc, Mutex};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const LAYERS: &[&str] = &["l1", "l2", "l3-hot", "l3-cold", "l3-archive", "l4", "l5"];

/// Completion and hints for the shell.
pub struct ShellHelper {
    /// Function names and device ids of the loaded twin (refreshed after every command).
    names: Arc<Mutex<Vec<String>>>,
    hinter: HistoryHinter,
}

impl ShellHelper {
    /// What completes at `pos` of `line`: (start of the word, candidates).
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let start = before
            .rfind(char::is_whitespace)
            .map(|i| i + 1)
            .unwrap_or(0);
        let word = &before[start..];
        let words: Vec<&str> = before[..start].split_whitespace().collect();
        let pool: Vec<String> = match words.as_slice() {
            [] => COMMANDS.iter().map(|(c, _)| c.to_string()).collect(),
            [.., "--layer"] => LAYERS.iter().map(|s| s.to_string()).collect(),
            ["local"] => ["up", "down", "status"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            ["help"] => COMMANDS.iter().map(|(c, _)| c.to_string()).collect(),
            [cmd] if cmd.starts_with("lambda") => {
                self.names.lock().map(|n| n.clone()).unwrap_or_default()
            }
            [cmd, ..] => flags(cmd).iter().map(|s| s.to_string()).collect(),
        };
        let mut out: Vec<String> = pool.into_iter().filter(|c| c.starts_with(word)).collect();
        out.sort();
        out.dedup();
        (start, out)
    }
}

fn flags(cmd: &str) -> &'static [&'static str] {
    match cmd.replace('-', "_").as_str() {
        "plan" => &[
            "--layer",
            "--json",
            "--compare",
            "--devices",
            "--messages-per-minute",
            "--message-bytes",
            "--dashboard-users",
        ],
        "deploy" | "destroy" => &["--layer", "--json", "-y"],
        "info" => &["--wide", "--json"],
        "completions" => &["bash", "zsh", "fish", "powershell", "elvish"],
        "lambda_logs" => &["--include-system", "--follow", "--json"],
        "lambda_invoke" => &["--async", "--json"],
        "redrive" => &["--layer", "--json"],
        _ => &["--json"],
    }
}

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, c) = self.candidates(line, pos);
        Ok((
            start,
            c.into_iter()
                .map(|s| Pair {
                    display: s.clone(),
                    replacement: s,
                })
                .collect(),
        ))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, ctx: &Context<'_>) -> Option<String> {
        if let Some(h) = self.hinter.hint(line, pos, ctx) {
            return Some(h);
        }
        // Before any history exists, hint the command's usage once the name is complete.
        let word = line.trim();
        COMMANDS
            .iter()
            .find(|(c, _)| *c == word)
            .map(|(_, text)| format!("  — {text}"))
    }
}

impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

fn refresh_names(global: &Cli, names: &Arc<Mutex<Vec<String>>>) {
    if let Ok(config) = twin_config::load_dir(&commands::config_dir(global)) {
        let mut n = twin_engine::function_names(&config);
        n.extend(config.devices.iter().map(|d| d.id.clone()));
        if let Ok(mut g) = names.lock() {
            *g = n;
        }
    }
}

/// Runs the shell until `exit` or Ctrl-D. Returns the exit code of the last failed command
/// (so a scripted session on stdin reports failure).
pub fn run(global: &Cli, rt: &Runtime) -> i32 {
    let names = Arc::new(Mutex::new(Vec::new()));
    refresh_names(global, &names);
    let helper = ShellHelper {
        names: names.clone(),
        hinter: HistoryHinter::new(),
    };
    let mut editor: Editor<ShellHelper, DefaultHistory> = match Editor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cannot start the interactive shell: {e}");
            return 1;
        }
    };
    editor.set_helper(Some(helper));
    let history = commands::config_dir(global)
        .join(".deployer")
        .join("repl_history");
    let _ = editor.load_history(&history);
    eprintln!("deployer shell — `help` lists the commands, Ctrl-D or `exit` leaves.");
    let mut last_failure = 0;
    loop {
        let line = match editor.readline("deployer> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("cannot read input: {e}");
                last_failure = 1;
                break;
            }
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        let parsed = match parse_line(line) {
            Ok(p) => p,
            Err(e) => {
                let _ = e.print();
                last_failure = 2;
                continue;
            }
        };
        let cli = merge(global, parsed);
        let Some(cmd) = cli.command.clone() else {
            continue;
        };
        if cmd == Command::Exit {
            break;
        }
        let code = run_one(&cli, &cmd, rt);
        if code != 0 {
            last_failure = code;
        }
        refresh_names(global, &names);
    }
    if let Some(parent) = history.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = editor.save_history(&history);
    last_failure
}

/// Runs one command with Ctrl-C wired to its cancellation; returns its exit code.
pub fn run_one(cli: &Cli, cmd: &Command, rt: &Runtime) -> i32 {
    let cancel = CancellationToken::new();
    let watcher = {
        let cancel = cancel.clone();
        rt.spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupt: finishing the calls in flight and saving state (Ctrl-C again to quit now)");
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        })
    };
    let result = rt.block_on(commands::run(cli, cmd, cancel));
    watcher.abort();
    match result {
        Ok(()) => 0,
        Err(e) => {
            crate::report_error(cli, &e);
            e.exit_code()
        }
    }
}

/// Options given on the REPL line win; otherwise those the shell was started with apply.
fn merge(global: &Cli, line: Cli) -> Cli {
    Cli {
        dir: line.dir.or_else(|| global.dir.clone()),
        json: line.json || global.json,
        yes: line.yes || global.yes,
        verbose: line.verbose.max(global.verbose),
        quiet: line.quiet || global.quiet,
        functions_dir: line.functions_dir.or_else(|| global.functions_dir.clone()),
        command: line.command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper(names: &[&str]) -> ShellHelper {
        ShellHelper {
            names: Arc::new(Mutex::new(names.iter().map(|s| s.to_string()).collect())),
            hinter: HistoryHinter::new(),
        }
    }

    #[test]
    fn completes_commands_flags_layers_and_function_names() {
        let h = helper(&["persister", "pressure-sensor-1-processor", "hot-reader"]);
        assert_eq!(
            h.candidates("de", 2),
            (0, vec!["deploy".to_string(), "destroy".to_string()])
        );
        assert_eq!(
            h.candidates("lambda_logs p", 13).1,
            vec!["persister", "pressure-sensor-1-processor"]
        );
        assert_eq!(
            h.candidates("deploy --layer l3-", 18).1,
            vec!["l3-archive", "l3-cold", "l3-hot"]
        );
        assert_eq!(h.candidates("deploy --l", 10).1, vec!["--layer"]);
        assert_eq!(h.candidates("help lambda_i", 13).1, vec!["lambda_invoke"]);
    }
}
