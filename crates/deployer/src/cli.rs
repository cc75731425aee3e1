//! The command line, parsed the same way one-shot and in the REPL (one parser, not two).

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use twin_config::Layer;

/// Deploys a five-layer digital twin onto AWS and Azure from three JSON files.
#[derive(Debug, Parser)]
#[command(name = "deployer", version = crate::VERSION, disable_help_subcommand = true)]
pub struct Cli {
    /// Directory holding config.json, config_iot_devices.json and config_providers.json.
    #[arg(short = 'C', long = "dir", global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Print one JSON document on stdout per command (progress goes to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Answer yes to confirmations (required by `destroy` without a terminal).
    #[arg(short = 'y', long = "yes", global = true)]
    pub yes: bool,
    /// More output (debug logs); repeat for trace.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Cargo workspace to build every function crate from (default: the packages this binary
    /// carries, see `--version`, and the workspace it runs from for the rest).
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        env = "DEPLOYER_FUNCTIONS_DIR"
    )]
    pub functions_dir: Option<PathBuf>,
    /// What to do; none opens the interactive shell.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands (underscore and hyphen spellings both work).
#[derive(Debug, Subcommand, Clone, PartialEq)]
pub enum Command {
    /// Check the config files; report every problem at once.
    Validate,
    /// Print the JSON Schema of the config files.
    Schema,
    /// Print a shell completion script (e.g. `deployer completions bash > /etc/bash_completion.d/deployer`).
    Completions {
        /// bash, zsh, fish, powershell or elvish.
        shell: clap_complete::Shell,
    },
    /// Show what deploy would create, update, leave alone or delete, and what the twin costs a
    /// month for its expected load.
    Plan {
        /// Only this layer (l1, l2, l3-hot, l3-cold, l3-archive, l4, l5).
        #[arg(long, value_parser = parse_layer)]
        layer: Option<Layer>,
        /// Price every mix of AWS and Azure over the deployed layers and name the cheapest
        /// (prices only: no cloud is called).
        #[arg(long)]
        compare: bool,
        /// Devices the estimate assumes (default: `expected_load`, else the configured devices).
        #[arg(long)]
        devices: Option<u64>,
        /// Messages each device sends a minute (default: `expected_load`, else 1).
        #[arg(long = "messages-per-minute")]
        messages_per_minute: Option<f64>,
        /// Bytes of one message (default: `expected_load`, else the largest example payload).
        #[arg(long)]
        message_bytes: Option<u64>,
        /// People who open the dashboards (default: `expected_load`, else 1).
        #[arg(long)]
        dashboard_users: Option<u64>,
    },
    /// Create or update the twin's resources, layer by layer.
    Deploy {
        /// Only this layer.
        #[arg(long, value_parser = parse_layer)]
        layer: Option<Layer>,
    },
    /// Delete the twin's resources in reverse order, leaving nothing behind.
    Destroy {
        /// Only this layer.
        #[arg(long, value_parser = parse_layer)]
        layer: Option<Layer>,
    },
    /// List every resource with its status as found in the cloud, grouped by layer.
    Info {
        /// Full cloud ids (ARNs, resource ids) instead of short ones; `--json` always has them.
        #[arg(long)]
        wide: bool,
    },
    /// Replay the failed messages waiting in the dead-letter queues: each goes to the function
    /// that failed (or the dispatcher, for the topic rule's), and is deleted once it succeeded.
    Redrive {
        /// Only this layer's queue (l1, l2, l3-hot, l3-cold).
        #[arg(long, value_parser = parse_layer)]
        layer: Option<Layer>,
    },
    /// Rebuild and upload one function; optionally merge environment variables.
    #[command(name = "lambda_update", alias = "lambda-update")]
    LambdaUpdate {
        /// Function: dispatcher, persister, hot-reader, ..., or <device-id>-processor.
        function: String,
        /// Environment variables to merge, as a JSON object.
        env_json: Option<String>,
    },
    /// Show the last N log lines of a function.
    #[command(name = "lambda_logs", alias = "lambda-logs")]
    LambdaLogs {
        /// Function name.
        function: String,
        /// Number of lines.
        #[arg(default_value_t = 30)]
        lines: usize,
        /// Include the platform's START/END/REPORT lines.
        #[arg(long)]
        include_system: bool,
        /// Keep printing new lines until Ctrl-C.
        #[arg(long)]
        follow: bool,
    },
    /// Invoke a function with a JSON payload and print the result.
    #[command(name = "lambda_invoke", alias = "lambda-invoke")]
    LambdaInvoke {
        /// Function name.
        function: String,
        /// Payload (JSON); default `{}`.
        payload: Option<String>,
        /// Fire and forget (Event invocation).
        #[arg(long = "async")]
        asynchronous: bool,
    },
    /// Give devices a new key and certificate; the old certificate is deleted once the new
    /// one is active, attached and on disk.
    #[command(name = "rotate_certificates", alias = "rotate-certificates")]
    RotateCertificates {
        /// Device ids (default: every device of the twin).
        devices: Vec<String>,
    },
    /// Give every cross-cloud boundary a new secret with no failed message: staged on the
    /// receiver (which accepts old and new), the sender switched, then the old one retired.
    #[command(name = "rotate_secrets", alias = "rotate-secrets")]
    RotateSecrets,
    /// The local data plane under the emulator: a mosquitto broker standing in for IoT Core,
    /// configured from what deploy registered, and the deployed functions run for real behind
    /// a Lambda API router.
    Local {
        /// up: start or update it; down: stop it and restore the simulator config; status.
        #[arg(value_enum)]
        action: LocalAction,
        /// With `up`: instances per function, e.g. `persister=4,dispatcher=3` (kept for later
        /// `up`s and deploys; default 2 for the dispatcher, processors and persister, 1 else).
        #[arg(long, value_name = "FUNCTION=N,...")]
        instances: Option<String>,
    },
    /// Send readings with the devices' own credentials and follow them layer by layer (L1
    /// accepted, L2 processed, L3 hot stored and returned by the hot-reader API; with
    /// `--movers`, cold and archive). Exits 0 only when every reading arrived everywhere.
    Verify {
        /// Readings per device.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        messages: u64,
        /// Also run both movers with a cut-off that makes the readings due (this moves every
        /// older hot record too) and check them in cold and archive with their storage classes.
        #[arg(long)]
        movers: bool,
        /// Leave the readings in the stores (they carry `verifyRun`).
        #[arg(long)]
        keep: bool,
        /// Seconds to wait for the readings at every layer.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Write the twin's models from the config alone (no cloud calls): DTDL v3 interfaces for
    /// Azure Digital Twins, or the TwinMaker component types and entities the AWS L4 deploys.
    Model {
        /// dtdl: one interface per device and hierarchy entity; twinmaker: component types and
        /// entities.
        #[arg(long, value_enum, default_value_t = ModelFormat::Dtdl)]
        format: ModelFormat,
        /// Directory to write one file per model into (created if missing); without it, one
        /// JSON document goes to stdout.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// List the commands.
    Help {
        /// Show the full help of one command.
        command: Option<String>,
    },
    /// Leave the interactive shell.
    #[command(alias = "quit")]
    Exit,
}

/// The format `model` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelFormat {
    /// DTDL v3 interfaces (Azure Digital Twins).
    Dtdl,
    /// IoT TwinMaker component types and entities.
    Twinmaker,
}

/// What `local` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LocalAction {
    /// Start the broker, or restart it when what is deployed changed; idempotent.
    Up,
    /// Stop the broker and point the simulator back at the cloud.
    Down,
    /// Running or stopped, port, pid, devices trusted.
    Status,
    /// The local runner itself (started detached by `up`; runs until SIGTERM).
    #[value(hide = true)]
    Serve,
}

fn parse_layer(s: &str) -> Result<Layer, String> {
    s.parse::<Layer>().map_err(|e| e.to_string())
}

/// One line per command for `help`, and the words the REPL completes.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "validate",
        "check the config files; report every problem at once",
    ),
    (
        "plan",
        "show what deploy would create, update, leave alone or delete, and the monthly cost [--layer L] [--compare] [--devices N] [--messages-per-minute R] [--message-bytes B]",
    ),
    (
        "deploy",
        "create or update the twin's resources [--layer L]",
    ),
    (
        "destroy",
        "delete the twin's resources, leaving nothing behind [--layer L]",
    ),
    (
        "info",
        "every resource by layer with its status as found in the cloud [--wide]",
    ),
    (
        "redrive",
        "replay the failed messages of the dead-letter queues [--layer L]",
    ),
    (
        "lambda_update",
        "rebuild and upload a function: lambda_update <fn> [ENV_JSON]",
    ),
    (
        "lambda_logs",
        "show a function's logs: lambda_logs <fn> [N] [--include-system] [--follow]",
    ),
    (
        "lambda_invoke",
        "invoke a function: lambda_invoke <fn> [PAYLOAD] [--async]",
    ),
    (
        "rotate_certificates",
        "give devices a new key and certificate: rotate_certificates [DEVICE...]",
    ),
    (
        "rotate_secrets",
        "give every cross-cloud boundary a new secret, with no failed message",
    ),
    (
        "local",
        "the local data plane under the emulator: local up|down|status",
    ),
    (
        "verify",
        "send readings and follow them through every layer: verify [--messages N] [--movers] [--keep]",
    ),
    (
        "model",
        "write the twin's DTDL or TwinMaker models: model [--format dtdl|twinmaker] [--out DIR]",
    ),
    ("schema", "print the JSON Schema of the config files"),
    (
        "completions",
        "print a shell completion script: completions bash|zsh|fish|powershell",
    ),
    (
        "help",
        "list the commands, or `help <command>` for one in full",
    ),
    ("exit", "leave the shell (Ctrl-D works too)"),
];

/// Parses one command line as typed in the REPL, with the same parser as the one-shot CLI.
pub fn parse_line(line: &str) -> Result<Cli, clap::Error> {
    let words = shlex::split(line).ok_or_else(|| {
        clap::Error::raw(clap::error::ErrorKind::InvalidValue, "unbalanced quotes\n")
    })?;
    Cli::try_parse_from(std::iter::once("deployer".to_string()).chain(words))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn underscore_and_hyphen_spellings_parse_alike() {
        let a = parse_line("lambda_logs persister 50 --include-system").unwrap();
        let b = parse_line("lambda-logs persister 50 --include-system").unwrap();
        assert_eq!(a.command, b.command);
        assert_eq!(
            a.command,
            Some(Command::LambdaLogs {
                function: "persister".into(),
                lines: 50,
                include_system: true,
                follow: false
            })
        );
    }

    #[test]
    fn rotate_certificates_takes_any_number_of_devices_in_either_spelling() {
        let a = parse_line("rotate_certificates sensor-1 sensor-2").unwrap();
        let b = parse_line("rotate-certificates sensor-1 sensor-2").unwrap();
        assert_eq!(a.command, b.command);
        assert_eq!(
            a.command,
            Some(Command::RotateCertificates {
                devices: vec!["sensor-1".into(), "sensor-2".into()]
            })
        );
        let all = parse_line("rotate-certificates").unwrap();
        assert_eq!(
            all.command,
            Some(Command::RotateCertificates { devices: vec![] })
        );
    }

    #[test]
    fn repl_line_and_argv_parse_the_same() {
        let line =
            parse_line(r#"lambda_invoke hot-reader '{"iotDeviceId":"t-1"}' --async"#).unwrap();
        let argv = Cli::try_parse_from([
            "deployer",
            "lambda_invoke",
            "hot-reader",
            r#"{"iotDeviceId":"t-1"}"#,
            "--async",
        ])
        .unwrap();
        assert_eq!(line.command, argv.command);
    }

    #[test]
    fn layers_parse_by_short_name_and_bad_ones_are_usage_errors() {
        let c = parse_line("deploy --layer l3-hot").unwrap();
        assert_eq!(
            c.command,
            Some(Command::Deploy {
                layer: Some(Layer::L3Hot)
            })
        );
        let e = parse_line("deploy --layer l9").unwrap_err();
        assert!(e.to_string().contains("l3-hot"), "{e}");
    }

    #[test]
    fn redrive_takes_an_optional_layer() {
        assert_eq!(
            parse_line("redrive").unwrap().command,
            Some(Command::Redrive { layer: None })
        );
        assert_eq!(
            parse_line("redrive --layer l2").unwrap().command,
            Some(Command::Redrive {
                layer: Some(Layer::L2)
            })
        );
    }

    #[test]
    fn local_takes_up_down_or_status() {
        let c = parse_line("local up").unwrap();
        assert_eq!(
            c.command,
            Some(Command::Local {
                action: LocalAction::Up,
                instances: None
            })
        );
        assert!(parse_line("local sideways").is_err());
    }

    #[test]
    fn global_flags_work_after_the_command() {
        let c = parse_line("destroy -y --json -C /tmp/x").unwrap();
        assert!(c.yes && c.json);
        assert_eq!(c.dir, Some(PathBuf::from("/tmp/x")));
    }

    #[test]
    fn every_command_has_a_help_line() {
        for sub in Cli::command().get_subcommands() {
            assert!(
                COMMANDS.iter().any(|(n, _)| *n == sub.get_name()),
                "{}",
                sub.get_name()
            );
        }
    }
}
