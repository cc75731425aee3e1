//! Which providers this build implements, and building them for a twin.

use crate::cli::Cli;
use crate::error::CliError;
use std::sync::Arc;
use twin_config::{Diagnostic, Layer, ProviderName, TwinConfig};
use twin_engine::Provider;

/// The providers this version of deployer can deploy to (`none` needs no provider).
pub const IMPLEMENTED: &[ProviderName] = &[ProviderName::Aws];

/// A diagnostic for every layer whose provider is not implemented in this version: an honest
/// error at validate time instead of a provider that pretends.
pub fn unimplemented_layers(config: &TwinConfig) -> Vec<Diagnostic> {
    let text =
        std::fs::read_to_string(config.dir.join("config_providers.json")).unwrap_or_default();
    Layer::IN_FILE_ORDER
        .iter()
        .filter_map(|layer| {
            let p = config.providers.get(*layer);
            if p == ProviderName::None || IMPLEMENTED.contains(&p) {
                return None;
            }
            let (line, column) = value_position(&text, layer.key());
            let mut allowed: Vec<&str> = IMPLEMENTED.iter().map(|p| p.as_str()).collect();
            allowed.push("none");
            Some(Diagnostic {
                file: "config_providers.json".into(),
                path: format!("$.{}", layer.key()),
                line,
                column,
                message: format!(
                    "provider `{}` is not implemented yet in this version of deployer; allowed here: {}",
                    p.as_str(),
                    allowed.join(", ")
                ),
                item: None,
            })
        })
        .collect()
}

/// Line and column (1-based) of the value of `"key":` in a JSON text, or 1:1 if not found.
fn value_position(text: &str, key: &str) -> (usize, usize) {
    let needle = format!("\"{key}\"");
    let Some(k) = text.find(&needle) else {
        return (1, 1);
    };
    let after = &text[k + needle.len()..];
    let colon = after.find(':').map(|c| c + 1).unwrap_or(0);
    let ws = after[colon..].len() - after[colon..].trim_start().len();
    let offset = k + needle.len() + colon + ws;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// Builds the providers the twin's layers use (only those: a twin without AWS layers never
/// asks AWS for credentials).
pub async fn providers(config: &TwinConfig, cli: &Cli) -> Result<Vec<Arc<dyn Provider>>, CliError> {
    let problems = unimplemented_layers(config);
    if !problems.is_empty() {
        return Err(CliError::Config(twin_config::Diagnostics(problems)));
    }
    let mut providers: Vec<Arc<dyn Provider>> = Vec::new();
    // A provider the state still records resources on is needed too: the next deploy or
    // destroy deletes what a layer left behind when it moved to `none` or another provider.
    let recorded: Vec<ProviderName> =
        twin_engine::StateFile::peek(&config.dir, &config.twin.digital_twin_name)
            .map(|s| s.resources.values().map(|r| r.spec.provider).collect())
            .unwrap_or_default();
    let uses = |p: ProviderName| {
        Layer::ALL.iter().any(|l| config.providers.get(*l) == p) || recorded.contains(&p)
    };
    if uses(ProviderName::Aws) {
        let aws = twin_aws::AwsProvider::new(config, cli.functions_dir.clone()).await?;
        providers.push(Arc::new(aws));
    }
    Ok(providers)
}

#[cfg(test)]
mod tests {
    use super::value_position;

    #[test]
    fn finds_the_value_of_a_key() {
        let t = "{\n  \"a\": 1,\n  \"layer_4_provider\":   \"azure\"\n}";
        assert_eq!(value_position(t, "layer_4_provider"), (3, 25));
        assert_eq!(value_position(t, "missing"), (1, 1));
    }
}
