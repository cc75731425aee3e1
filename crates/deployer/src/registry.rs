//! Which providers this build implements, and building them for a twin.

use crate::cli::Cli;
use crate::error::CliError;
use std::sync::Arc;
use twin_config::{Diagnostic, Layer, ProviderName, TwinConfig};
use twin_engine::Provider;

/// Whether this version of deployer can deploy `layer` on `provider` (`none` needs nothing).
pub fn implemented(provider: ProviderName, layer: Layer) -> bool {
    match provider {
        ProviderName::None | ProviderName::Aws => true,
        ProviderName::Azure => twin_azure::provider::IMPLEMENTED.contains(&layer),
    }
}

/// A diagnostic for every layer whose provider is not implemented in this version, and for
/// every cross-cloud boundary (SPEC §2) this version cannot build, naming what is missing: an
/// honest error at validate time instead of a provider that pretends.
pub fn unimplemented_layers(config: &TwinConfig) -> Vec<Diagnostic> {
    let text =
        std::fs::read_to_string(config.dir.join("config_providers.json")).unwrap_or_default();
    let diagnostic = |layer: Layer, message: String| {
        let (line, column) = value_position(&text, layer.key());
        Diagnostic {
            file: "config_providers.json".into(),
            path: format!("$.{}", layer.key()),
            line,
            column,
            message,
            item: None,
        }
    };
    let mut found: Vec<Diagnostic> = Layer::IN_FILE_ORDER
        .iter()
        .filter_map(|layer| {
            let p = config.providers.get(*layer);
            if implemented(p, *layer) {
                return None;
            }
            let allowed: Vec<&str> = ProviderName::ALL
                .iter()
                .filter(|q| implemented(**q, *layer))
                .map(|q| q.as_str())
                .collect();
            Some(diagnostic(
                *layer,
                format!(
                    "provider `{}` is not implemented yet for {} in this version of deployer; allowed here: {}",
                    p.as_str(),
                    layer.key(),
                    allowed.join(", ")
                ),
            ))
        })
        .collect();
    found.extend(azure_function_host(config, &diagnostic));
    found.extend(aws_grafana_source(config, &diagnostic));
    for status in crate::boundaries::statuses(config) {
        if status.deployable() {
            continue;
        }
        let b = &status.boundary;
        found.push(diagnostic(
            b.receiver.layer,
            format!(
                "{} on `{}` receives from {} on `{}` across clouds (boundary {}: {}); this version of deployer does not build yet {}; put both layers on the same provider",
                b.receiver.layer.key(),
                b.receiver.provider.as_str(),
                b.sender.layer.key(),
                b.sender.provider.as_str(),
                b.hop.slug(),
                b.describe(),
                status.missing.join(", nor ")
            ),
        ));
    }
    found
}

/// On Azure every function of a twin runs in one custom handler inside one Function App, which
/// belongs to the first of layers 2, 3 hot and 3 cold on Azure (`twin_azure::l2::app_layer`),
/// so L3 hot and cold on Azure need no L2 there. Grafana on Azure (L5) still reads the hot
/// reader through layer 2's app (`twin_azure::l5` depends on L2's site), so it needs L2 and
/// L3 hot there.
fn azure_function_host(
    config: &TwinConfig,
    diagnostic: &dyn Fn(Layer, String) -> Diagnostic,
) -> Vec<Diagnostic> {
    let on = |l: Layer| config.providers.get(l) == ProviderName::Azure;
    let mut found = Vec::new();
    if on(Layer::L5) {
        for needed in [Layer::L2, Layer::L3Hot] {
            if !on(needed) {
                found.push(diagnostic(
                    Layer::L5,
                    format!(
                        "layer_5_provider is `azure` but {} is not: Grafana on Azure shows the hot data through the hot reader in layer 2's Function App; put {} on azure too",
                        needed.key(),
                        needed.key()
                    ),
                ));
            }
        }
    }
    found
}

/// Managed Grafana on AWS shows the twin through its TwinMaker data source, which needs layer
/// 4 on AWS: with layer 4 elsewhere it would deploy a Grafana with nothing to show, since
/// reading another cloud's twin or hot reader from it (the L5 → L4 boundary) is not built.
fn aws_grafana_source(
    config: &TwinConfig,
    diagnostic: &dyn Fn(Layer, String) -> Diagnostic,
) -> Vec<Diagnostic> {
    let l4 = config.providers.get(Layer::L4);
    if config.providers.get(Layer::L5) != ProviderName::Aws || l4 == ProviderName::Aws {
        return Vec::new();
    }
    vec![diagnostic(
        Layer::L5,
        format!(
            "layer_5_provider is `aws` but layer_4_provider is `{}`: Grafana on AWS shows the twin through TwinMaker, and this version of deployer does not build a data source reading another cloud's twin (the L5 → L4 boundary); put layer_4_provider on aws, or layer_5_provider on `{}`",
            l4.as_str(),
            l4.as_str()
        ),
    )]
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
    for p in [ProviderName::Aws, ProviderName::Azure] {
        if uses(p) {
            providers.push(provider(config, cli, p).await?);
        }
    }
    Ok(providers)
}

/// The one provider `name`: what a command about one cloud's part needs (a function command
/// on an AWS function of a twin that also spans Azure loads no Azure credentials).
pub async fn provider(
    config: &TwinConfig,
    cli: &Cli,
    name: ProviderName,
) -> Result<Arc<dyn Provider>, CliError> {
    match name {
        ProviderName::Aws => Ok(Arc::new(
            twin_aws::AwsProvider::new(config, cli.functions_dir.clone()).await?,
        )),
        ProviderName::Azure => Ok(Arc::new(
            twin_azure::AzureProvider::for_deployer(
                &config.providers.azure,
                cli.functions_dir.clone(),
            )
            .await?,
        )),
        ProviderName::None => Err(CliError::Usage(
            "provider `none` deploys nothing and has no commands".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{unimplemented_layers, value_position};
    use twin_config::{Layer, ProviderName};

    /// The example twin of the repository with each layer on the provider `pick` gives it.
    fn example_with(pick: impl Fn(Layer) -> ProviderName) -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut config = twin_config::load_dir(&root).expect("the example twin is valid");
        for l in Layer::ALL {
            config.providers.set(l, pick(l));
        }
        unimplemented_layers(&config)
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn an_all_azure_twin_up_to_storage_is_accepted() {
        let found = example_with(|l| match l {
            Layer::L4 | Layer::L5 => ProviderName::None,
            _ => ProviderName::Azure,
        });
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn an_all_azure_twin_with_digital_twins_and_grafana_is_accepted() {
        let found = example_with(|_| ProviderName::Azure);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn azure_grafana_is_accepted_with_the_hot_reader_on_azure_and_refused_without() {
        let found = example_with(|l| match l {
            Layer::L4 => ProviderName::None,
            _ => ProviderName::Azure,
        });
        assert!(found.is_empty(), "{found:?}");
        let found = example_with(|l| match l {
            Layer::L5 => ProviderName::Azure,
            Layer::L4 => ProviderName::None,
            _ => ProviderName::Aws,
        });
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("layer_5_provider is `azure` but layer_2_provider is not"),
            "{found:?}"
        );
    }

    #[test]
    fn azure_storage_functions_run_in_their_own_function_app_without_layer_2() {
        // L3 hot's and cold's functions get the app when L2 is not on Azure.
        let found = example_with(|l| match l {
            Layer::L3Hot | Layer::L3Cold | Layer::L3Archive => ProviderName::Azure,
            _ => ProviderName::None,
        });
        assert!(found.is_empty(), "{found:?}");
        // Hot on AWS, cold and archive on Azure: both sides of the hot → cold boundary are
        // built (the Azure ingress in the cold layer's app, the AWS mover's signed sender).
        let found = example_with(|l| match l {
            Layer::L3Cold | Layer::L3Archive => ProviderName::Azure,
            Layer::L4 | Layer::L5 => ProviderName::None,
            _ => ProviderName::Aws,
        });
        assert!(found.is_empty(), "{found:?}");
        // Archive alone runs no function.
        let found = example_with(|l| match l {
            Layer::L3Archive => ProviderName::Azure,
            _ => ProviderName::None,
        });
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_hop_between_clouds_is_refused_at_its_receiver() {
        let found = example_with(|l| match l {
            Layer::L1 => ProviderName::Aws,
            Layer::L4 | Layer::L5 => ProviderName::None,
            _ => ProviderName::Azure,
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0]
                .starts_with("layer_2_provider on `azure` receives from layer_1_provider on `aws`"),
            "{found:?}"
        );
        let found = example_with(|l| match l {
            Layer::L3Archive => ProviderName::Azure,
            Layer::L4 | Layer::L5 => ProviderName::None,
            _ => ProviderName::Aws,
        });
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("layer_3_archive_provider"), "{found:?}");
    }

    #[test]
    fn finds_the_value_of_a_key() {
        let t = "{\n  \"a\": 1,\n  \"layer_4_provider\":   \"azure\"\n}";
        assert_eq!(value_position(t, "layer_4_provider"), (3, 25));
        assert_eq!(value_position(t, "missing"), (1, 1));
    }
}
