//! Command-line grammar, shared by one-shot use and the REPL so both accept the same commands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

/// `simulator [-c CONFIG] [--payloads FILE] [COMMAND]`; no command starts the REPL.
#[derive(Debug, Parser)]
#[command(
    name = "simulator",
    version,
    about = "IoT device simulator: publishes a digital twin's telemetry over MQTT with mutual TLS",
    disable_help_subcommand = true,
    after_help = "Without a command, starts an interactive session (send, load, help, exit).\n\
                  Exit codes: 0 ok, 1 connection or publish failure, 2 bad usage or config."
)]
pub struct Cli {
    /// Simulator config written by `deployer deploy`
    #[arg(short = 'c', long = "config", env = "SIMULATOR_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Payloads file (default: `payload_file_path` from the config)
    #[arg(long, value_name = "FILE")]
    pub payloads: Option<PathBuf>,
    /// More log output on stderr (-v, -vv)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// What to do; none starts the REPL
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// One line typed at the REPL prompt.
#[derive(Debug, Parser)]
#[command(
    name = "simulator>",
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_version_flag = true
)]
pub struct ReplLine {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The simulator's commands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Send the next payload(s) from payloads.json (cycling) and wait for each PUBACK
    Send(SendArgs),
    /// Load test: one connection per device at a steady total rate, then a report
    Load(LoadArgs),
    /// List the commands
    Help,
    /// Leave the interactive session
    #[command(alias = "quit")]
    Exit,
}

/// Arguments of `send`.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// How many payloads to send
    #[arg(default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Give up on a message after this long (connecting included), e.g. 30s
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// Arguments of `load`.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Devices to simulate, one MQTT connection each (default: every device in payloads.json)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub devices: Option<u64>,
    /// Total messages per second over all devices, or `max` (each device keeps its in-flight
    /// window full: the broker's capacity)
    #[arg(long, value_parser = parse_rate)]
    pub rate: Rate,
    /// How long to generate messages, e.g. 30s, 5m
    #[arg(long, value_parser = parse_duration)]
    pub duration: Duration,
    /// Messages each device keeps while the broker is unreachable; more are dropped and counted
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub buffer: u64,
    /// Unacknowledged messages each device may have on the wire (AWS IoT allows 100)
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,
    /// How long the devices may take to connect before the run starts
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// How long to wait for outstanding PUBACKs after the last message
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// A load run's total message rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    /// Messages per second over all devices.
    PerSecond(f64),
    /// As fast as the broker acknowledges.
    Max,
}

/// Parses `max` or a positive number of messages per second (`20000`, `20000/s`, `0.5`).
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("max") {
        return Ok(Rate::Max);
    }
    let number = t.strip_suffix("/s").unwrap_or(t);
    match number.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(Rate::PerSecond(r)),
        _ => Err(format!(
            "`{text}` is not a rate: give messages per second (e.g. 1000) or `max`"
        )),
    }
}

/// Parses `500ms`, `10s`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a duration: use e.g. 500ms, 10s, 5m, 1h"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use ms, s, m or h)"
            ))
        }
    };
    if !seconds.is_finite() || seconds <= 0.0 || seconds > 30.0 * 24.0 * 3600.0 {
        return Err(format!(
            "`{text}`: a duration must be positive and at most 30 days"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
        ReplLine::command().debug_assert();
    }

    #[test]
    fn durations_and_rates() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_rate("max").unwrap(), Rate::Max);
        assert_eq!(parse_rate("2000/s").unwrap(), Rate::PerSecond(2000.0));
        assert!(parse_rate("-1").is_err());
    }

    #[test]
    fn repl_and_one_shot_share_commands() {
        let line = ReplLine::try_parse_from(["send", "3"]).unwrap();
        assert!(matches!(
            line.command,
            Command::Send(SendArgs { count: 3, .. })
        ));
        let cli = Cli::try_parse_from([
            "simulator",
            "-c",
            "x.json",
            "load",
            "--devices",
            "2",
            "--rate",
            "max",
            "--duration",
            "1s",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Load(LoadArgs {
                rate: Rate::Max,
                ..
            }))
        ));
        assert!(ReplLine::try_parse_from(["quit"]).is_ok());
        assert!(ReplLine::try_parse_from(["send", "0"]).is_err());
    }
}
