//! `config_providers.json`: the provider of each layer plus AWS and Azure settings.

use serde_json::Value;

use super::reader::FileReader;
use crate::names;
use crate::providers::{Architecture, AwsSettings, AzureSettings, Layer, ProviderName, Providers};
use crate::spans::member;

/// Whatever of the providers file was readable.
#[derive(Debug, Default)]
pub(crate) struct ProvidersPart {
    /// Provider per layer, in [`Layer::IN_FILE_ORDER`]; `None` where it had a diagnostic.
    pub layers: [Option<ProviderName>; 7],
    pub aws: Option<AwsSettings>,
    pub azure: Option<AzureSettings>,
}

impl ProvidersPart {
    /// The provider of `layer`, when it was readable.
    pub fn get(&self, layer: Layer) -> Option<ProviderName> {
        let i = Layer::IN_FILE_ORDER.iter().position(|l| *l == layer)?;
        self.layers[i]
    }

    /// The finished settings, when every part was readable.
    pub fn complete(&self) -> Option<Providers> {
        let mut p = Providers::all(ProviderName::None);
        for layer in Layer::IN_FILE_ORDER {
            p.set(layer, self.get(layer)?);
        }
        p.aws = self.aws.clone()?;
        p.azure = self.azure.clone()?;
        Some(p)
    }
}

const PROVIDERS: [(&str, ProviderName); 3] = [
    ("aws", ProviderName::Aws),
    ("azure", ProviderName::Azure),
    ("none", ProviderName::None),
];

pub(crate) fn read(r: &mut FileReader<'_>, root: &Value) -> ProvidersPart {
    let mut part = ProvidersPart::default();
    let Some(map) = r.object(root, "$", "an object with a provider per layer") else {
        return part;
    };
    let mut allowed: Vec<&str> = Layer::IN_FILE_ORDER.iter().map(|l| l.key()).collect();
    allowed.extend(["aws", "azure"]);
    let required: Vec<(&str, &str)> = Layer::IN_FILE_ORDER
        .iter()
        .map(|l| (l.key(), "one of aws, azure, none"))
        .collect();
    r.keys(map, "$", &allowed, &required);
    for (i, layer) in Layer::IN_FILE_ORDER.iter().enumerate() {
        if let Some(v) = map.get(layer.key()) {
            part.layers[i] = r.one_of(v, &member("$", layer.key()), "provider", &PROVIDERS);
        }
    }
    required_layers(r, &part);
    part.aws = match map.get("aws") {
        None => Some(AwsSettings::default()),
        Some(v) => read_aws(r, v),
    };
    part.azure = match map.get("azure") {
        None => Some(AzureSettings::default()),
        Some(v) => read_azure(r, v),
    };
    let on_azure = Layer::IN_FILE_ORDER
        .iter()
        .find(|l| part.get(**l) == Some(ProviderName::Azure));
    if let (Some(layer), Some(azure)) = (on_azure, &part.azure) {
        if azure.location.is_none() {
            // Every Azure resource is created in one region; guessing one would put data
            // somewhere the user did not choose.
            let path = if map.contains_key("azure") {
                "$.azure".to_string()
            } else {
                member("$", layer.key())
            };
            r.at_value(
                &path,
                format!(
                    "{} is `azure` but no Azure location is set: add \"azure\": {{\"location\": \"<region, e.g. westeurope>\"}}",
                    layer.key()
                ),
            );
        }
    }
    part
}

/// Why `layer` cannot be deployed without the layers it requires (see [`Layer::requires`]).
fn requirement_reason(layer: Layer) -> &'static str {
    match layer {
        Layer::L1 => "the dispatcher hands every message to a processor in layer 2, so every message would be dropped",
        Layer::L2 => "the persister writes every record to hot storage, so every record would be lost",
        Layer::L3Hot => "the hot-to-cold mover moves older records to cold storage, so it would fail every day",
        Layer::L3Cold => "the cold-to-archive mover moves older objects to archive storage, so it would fail every day",
        Layer::L4 => "the twin connector reads the twin's data from hot storage, so the twin would have no data",
        Layer::L5 => "Grafana shows the twin of layer 4, so it would have no twin to show",
        Layer::L3Archive => "",
    }
}

/// Reports every deployed layer whose required layers ([`Layer::requires`]) are `none`.
fn required_layers(r: &mut FileReader<'_>, part: &ProvidersPart) {
    for layer in Layer::IN_FILE_ORDER {
        let Some(provider) = part.get(layer).filter(|p| *p != ProviderName::None) else {
            continue;
        };
        for needed in layer.requires() {
            if part.get(*needed) == Some(ProviderName::None) {
                r.at_value(
                    &member("$", layer.key()),
                    format!(
                        "{} is `{provider}` but {} is `none`: {}; allowed: aws or azure for {}, or none here",
                        layer.key(),
                        needed.key(),
                        requirement_reason(layer),
                        needed.key()
                    ),
                );
            }
        }
    }
}

fn read_aws(r: &mut FileReader<'_>, value: &Value) -> Option<AwsSettings> {
    let map = r.object(value, "$.aws", "an object with AWS settings")?;
    let before = r.count();
    r.keys(
        map,
        "$.aws",
        &[
            "region",
            "architecture",
            "grafana_authentication_provider",
            "processor_per_device",
        ],
        &[],
    );
    let mut aws = AwsSettings::default();
    if let Some(v) = map.get("region") {
        let path = "$.aws.region";
        if let Some(region) = r.string(v, path, "an AWS region such as \"us-east-1\"") {
            if looks_like_region(region) {
                aws.region = Some(region.to_string());
            } else {
                r.at_value(
                    path,
                    format!("`{region}` is not an AWS region name; regions look like `us-east-1` or `eu-central-1`"),
                );
            }
        }
    }
    if let Some(v) = map.get("architecture") {
        let arch = [
            ("arm64", Architecture::Arm64),
            ("x86_64", Architecture::X86_64),
        ];
        if let Some(a) = r.one_of(v, "$.aws.architecture", "architecture", &arch) {
            aws.architecture = a;
        }
    }
    if let Some(v) = map.get("grafana_authentication_provider") {
        let auth = [("AWS_SSO", "AWS_SSO"), ("SAML", "SAML")];
        let path = "$.aws.grafana_authentication_provider";
        if let Some(a) = r.one_of(v, path, "Grafana authentication provider", &auth) {
            aws.grafana_authentication_provider = a.to_string();
        }
    }
    if let Some(v) = map.get("processor_per_device") {
        match v {
            Value::Bool(b) => aws.processor_per_device = *b,
            other => r.at_value(
                "$.aws.processor_per_device",
                format!(
                    "expected true or false (give every device its own processor function), found {}",
                    super::reader::kind(other)
                ),
            ),
        }
    }
    (r.count() == before).then_some(aws)
}

fn read_azure(r: &mut FileReader<'_>, value: &Value) -> Option<AzureSettings> {
    let map = r.object(value, "$.azure", "an object with Azure settings")?;
    let before = r.count();
    r.keys(
        map,
        "$.azure",
        &["subscription_id", "resource_group", "location"],
        &[],
    );
    let mut azure = AzureSettings::default();
    if let Some(v) = map.get("subscription_id") {
        let path = "$.azure.subscription_id";
        if let Some(id) = r.string(v, path, "an Azure subscription id, a string") {
            if is_guid(id) {
                azure.subscription_id = Some(id.to_string());
            } else {
                r.at_value(
                    path,
                    format!("`{id}` is not a subscription id; subscription ids are GUIDs like `00000000-0000-0000-0000-000000000000`"),
                );
            }
        }
    }
    if let Some(v) = map.get("resource_group") {
        let path = "$.azure.resource_group";
        if let Some(rg) = r.string(v, path, "an Azure resource group name, a string") {
            match names::AZURE_RESOURCE_GROUP.check(rg) {
                Ok(()) => azure.resource_group = Some(rg.to_string()),
                Err(e) => r.at_value(path, e.to_string()),
            }
        }
    }
    if let Some(v) = map.get("location") {
        let path = "$.azure.location";
        if let Some(loc) = r.string(v, path, "an Azure location such as \"westeurope\"") {
            if !loc.is_empty()
                && loc
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                azure.location = Some(loc.to_string());
            } else {
                r.at_value(
                    path,
                    format!("`{loc}` is not an Azure location name; locations are lowercase letters and digits such as `westeurope` or `eastus2`"),
                );
            }
        }
    }
    (r.count() == before).then_some(azure)
}

/// `xx-name-N` (with optional extra parts, e.g. `us-gov-west-1`): loose on purpose, since new
/// regions appear; it catches typos such as a display name or stray whitespace.
fn looks_like_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        assert!(looks_like_region("us-east-1"));
        assert!(looks_like_region("us-gov-west-1"));
        assert!(!looks_like_region("US East"));
        assert!(!looks_like_region("us-east"));
        assert!(!looks_like_region("us-east-1 "));
    }

    #[test]
    fn guids() {
        assert!(is_guid("0a1b2c3d-0000-4000-8000-00000000abcd"));
        assert!(!is_guid("0a1b2c3d00004000800000000000abcd"));
        assert!(!is_guid("0a1b2c3d-0000-4000-8000-00000000abcg"));
    }
}
