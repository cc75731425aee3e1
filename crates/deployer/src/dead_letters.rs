//! The dead-letter queues on the command line: their counts under `info`, and `redrive`
//! (the work is in `twin_aws::dead_letters`; this checks, calls and renders).

use crate::cli::Cli;
use crate::commands::load_config;
use crate::error::CliError;
use crate::output;
use twin_aws::dead_letters::{self, QueueCount, RedriveReport};
use twin_config::{Layer, TwinConfig};

/// The lines `info` prints about the dead-letter queues, or `None` when no layer with one is
/// on AWS. A failed count is a line saying so, not a failed `info`.
pub async fn info_lines(config: &TwinConfig) -> Option<String> {
    if dead_letters::queue_layers(config).is_empty() {
        return None;
    }
    let counted = async {
        let clients = twin_aws::AwsClients::load(Some(&config.providers.aws)).await?;
        dead_letters::counts(&clients, config).await
    }
    .await;
    Some(match counted {
        Ok(counts) => counts_text(&counts),
        Err(e) => format!("dead letters: cannot be counted: {e}"),
    })
}

/// `info`'s text for the counts.
pub fn counts_text(counts: &[QueueCount]) -> String {
    let mut out = String::from("dead letters (failed messages; `deployer redrive` replays them):");
    for q in counts {
        let what = match q.messages {
            None => "not deployed".to_string(),
            Some(n) => format!("{n} waiting"),
        };
        out.push_str(&format!("\n  {} {}: {what}", q.layer, q.queue));
    }
    out
}

/// `redrive [--layer L]`: replays what waits in the queues; exit 1 when some message stays.
pub async fn redrive(cli: &Cli, layer: Option<Layer>) -> Result<(), CliError> {
    let config = load_config(cli)?;
    let layers = dead_letters::queue_layers(&config);
    if layers.is_empty() {
        return Err(CliError::Usage(
            "no layer with a dead-letter queue (l1, l2, l3-hot, l3-cold) is on AWS in this twin"
                .into(),
        ));
    }
    if let Some(l) = layer {
        if !layers.contains(&l) {
            let names: Vec<&str> = layers.iter().map(|l| l.short()).collect();
            return Err(CliError::Usage(format!(
                "layer {} has no dead-letter queue in this twin; layers with one: {}",
                l.short(),
                names.join(", ")
            )));
        }
    }
    let clients = twin_aws::AwsClients::load(Some(&config.providers.aws)).await?;
    check_scope(&config, &clients)?;
    let reports = dead_letters::redrive(&clients, &config, layer).await?;
    let kept: usize = reports.iter().map(|r| r.kept.len()).sum();
    if cli.json {
        output::json(&serde_json::json!({ "queues": reports }));
    } else {
        println!("{}", redrive_text(&reports));
    }
    if kept > 0 {
        return Err(CliError::Reported(format!(
            "{kept} message(s) stay in their dead-letter queue (reasons above)"
        )));
    }
    Ok(())
}

/// Redrive invokes functions: only in the account, region and partition the twin was deployed
/// to (as the state records them), like every other command that changes something.
fn check_scope(config: &TwinConfig, clients: &twin_aws::AwsClients) -> Result<(), CliError> {
    let state = twin_engine::StateFile::peek(&config.dir, &config.twin.digital_twin_name)?;
    let Some(recorded) = state.scopes.get(twin_config::ProviderName::Aws.as_str()) else {
        return Ok(());
    };
    let current: twin_engine::Scope = [
        ("partition", &clients.partition),
        ("account", &clients.account_id),
        ("region", &clients.region),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    if *recorded == current {
        return Ok(());
    }
    let text = |s: &twin_engine::Scope| {
        s.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(twin_engine::EngineError::ScopeMismatch {
        provider: "aws".into(),
        path: config
            .dir
            .join(".deployer")
            .join(format!("{}.json", config.twin.digital_twin_name))
            .display()
            .to_string(),
        recorded: text(recorded),
        current: text(&current),
    }
    .into())
}

/// `redrive`'s text: one line per queue, one per kept message, and the totals.
pub fn redrive_text(reports: &[RedriveReport]) -> String {
    let mut out = Vec::new();
    for r in reports {
        if !r.deployed {
            out.push(format!("{} {}: not deployed", r.layer, r.queue));
            continue;
        }
        out.push(format!(
            "{} {}: {} replayed, {} kept",
            r.layer,
            r.queue,
            r.replayed,
            r.kept.len()
        ));
        for k in &r.kept {
            out.push(format!("  kept {}: {}", k.message_id, k.reason));
        }
    }
    let replayed: u64 = reports.iter().map(|r| r.replayed).sum();
    let kept: usize = reports.iter().map(|r| r.kept.len()).sum();
    out.push(format!("Redrive: {replayed} replayed, {kept} kept"));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use twin_aws::dead_letters::Kept;

    #[test]
    fn the_texts_say_what_waits_and_what_stayed() {
        let counts = vec![
            QueueCount {
                layer: "l1".into(),
                queue: "t-l1-dead-letters".into(),
                messages: Some(3),
            },
            QueueCount {
                layer: "l2".into(),
                queue: "t-l2-dead-letters".into(),
                messages: None,
            },
        ];
        let text = counts_text(&counts);
        assert!(text.contains("l1 t-l1-dead-letters: 3 waiting"), "{text}");
        assert!(
            text.contains("l2 t-l2-dead-letters: not deployed"),
            "{text}"
        );
        let reports = vec![RedriveReport {
            layer: "l2".into(),
            queue: "t-l2-dead-letters".into(),
            deployed: true,
            replayed: 2,
            kept: vec![Kept {
                message_id: "m-1".into(),
                reason: "cannot be parsed: x".into(),
            }],
        }];
        let text = redrive_text(&reports);
        assert!(text.contains("2 replayed, 1 kept"), "{text}");
        assert!(text.contains("kept m-1: cannot be parsed: x"), "{text}");
        assert!(text.ends_with("Redrive: 2 replayed, 1 kept"), "{text}");
    }
}
