//! `config_providers.json`: which cloud hosts each layer, and per-cloud settings.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The cloud that hosts a layer, or `None` when the layer is not deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    /// Amazon Web Services.
    Aws,
    /// Microsoft Azure.
    Azure,
    /// The layer is not deployed.
    None,
}

impl ProviderName {
    /// Every provider, in the order error messages list them.
    pub const ALL: [ProviderName; 3] = [ProviderName::Aws, ProviderName::Azure, ProviderName::None];

    /// The spelling used in the config (`"aws"`, `"azure"`, `"none"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderName::Aws => "aws",
            ProviderName::Azure => "azure",
            ProviderName::None => "none",
        }
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderName {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderName::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownName {
                what: "provider",
                given: s.to_string(),
                allowed: "aws, azure, none",
            })
    }
}

/// A name that matched none of the allowed spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{given}`; allowed: {allowed}")]
pub struct UnknownName {
    /// What kind of name was expected.
    pub what: &'static str,
    /// The text that was given.
    pub given: String,
    /// The allowed spellings, comma separated.
    pub allowed: &'static str,
}

/// One of the five layers (layer 3 split in its three tiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Layer {
    /// Acquisition: device identities, MQTT ingestion, dispatcher.
    L1,
    /// Processing: processors and persister.
    L2,
    /// Hot storage, hot reader, hot-to-cold mover.
    L3Hot,
    /// Cold storage and the cold-to-archive mover.
    L3Cold,
    /// Archive storage.
    L3Archive,
    /// Twin management (TwinMaker / Azure Digital Twins).
    L4,
    /// Visualization (Grafana).
    L5,
}

impl Layer {
    /// All layers in dependency order: every layer comes after the layers it sends data to or
    /// reads from (see [`Layer::dependencies`]), so deploying in this order always finds the
    /// receiving side of each hop in place; destroy walks it backwards.
    pub const ALL: [Layer; 7] = [
        Layer::L3Archive,
        Layer::L3Cold,
        Layer::L3Hot,
        Layer::L4,
        Layer::L2,
        Layer::L1,
        Layer::L5,
    ];

    /// The layers this layer calls into and therefore needs deployed first: L1 hands off to L2,
    /// L2 persists to L3 hot and updates the twin in L4, the movers write to the next tier, the
    /// twin connector reads L3 hot, and Grafana reads L4.
    pub fn dependencies(&self) -> &'static [Layer] {
        match self {
            Layer::L1 => &[Layer::L2],
            Layer::L2 => &[Layer::L3Hot, Layer::L4],
            Layer::L3Hot => &[Layer::L3Cold],
            Layer::L3Cold => &[Layer::L3Archive],
            Layer::L3Archive => &[],
            Layer::L4 => &[Layer::L3Hot],
            Layer::L5 => &[Layer::L4],
        }
    }

    /// The layers that must be deployed (not `none`) whenever this layer is, because without
    /// them the deploy would succeed but the twin would lose or never show data:
    ///
    /// - L1 needs L2: the dispatcher hands every message to a processor; none → all dropped.
    /// - L2 needs L3 hot: the persister writes every record there; none → all lost.
    /// - L3 hot needs L3 cold, L3 cold needs L3 archive: each daily mover writes to the next
    ///   tier (and deletes what it moved); with no next tier it fails every day.
    /// - L4 needs L3 hot: the twin connector reads the twin's values from hot storage.
    /// - L5 needs L4: Grafana shows the twin; with no twin it has nothing to show.
    ///
    /// These are [`Layer::dependencies`] except L2 → L4: the persister updates the twin only
    /// when there is one. The other direction is allowed: a layer that nobody feeds
    /// (L2 without L1, L3 cold without L3 hot, ...) loses nothing, and a twin may be deployed
    /// storage-first or fed through `lambda_invoke` or a cross-cloud ingress.
    pub fn requires(&self) -> &'static [Layer] {
        match self {
            Layer::L1 => &[Layer::L2],
            Layer::L2 => &[Layer::L3Hot],
            Layer::L3Hot => &[Layer::L3Cold],
            Layer::L3Cold => &[Layer::L3Archive],
            Layer::L3Archive => &[],
            Layer::L4 => &[Layer::L3Hot],
            Layer::L5 => &[Layer::L4],
        }
    }

    /// [`Layer::requires`] for this layer on `provider`: Grafana on Azure reads the hot
    /// reader (layer 3 hot's data) instead of the twin, so it needs L3 hot, not L4.
    pub fn requires_on(&self, provider: ProviderName) -> &'static [Layer] {
        match (self, provider) {
            (Layer::L5, ProviderName::Azure) => &[Layer::L3Hot],
            _ => self.requires(),
        }
    }

    /// The key of this layer in `config_providers.json`.
    pub fn key(&self) -> &'static str {
        match self {
            Layer::L1 => "layer_1_provider",
            Layer::L2 => "layer_2_provider",
            Layer::L3Hot => "layer_3_hot_provider",
            Layer::L3Cold => "layer_3_cold_provider",
            Layer::L3Archive => "layer_3_archive_provider",
            Layer::L4 => "layer_4_provider",
            Layer::L5 => "layer_5_provider",
        }
    }

    /// The short name used on the command line (`--layer l3-hot`).
    pub fn short(&self) -> &'static str {
        match self {
            Layer::L1 => "l1",
            Layer::L2 => "l2",
            Layer::L3Hot => "l3-hot",
            Layer::L3Cold => "l3-cold",
            Layer::L3Archive => "l3-archive",
            Layer::L4 => "l4",
            Layer::L5 => "l5",
        }
    }

    /// The layers in file order (`layer_1_provider` first), as `config_providers.json` lists them.
    pub const IN_FILE_ORDER: [Layer; 7] = [
        Layer::L1,
        Layer::L2,
        Layer::L3Hot,
        Layer::L3Cold,
        Layer::L3Archive,
        Layer::L4,
        Layer::L5,
    ];
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

impl FromStr for Layer {
    type Err = UnknownName;

    /// Accepts the short names (`l1` ... `l5`, `l3-hot`, `l3-cold`, `l3-archive`), case-insensitively,
    /// with `_` in place of `-` too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.to_ascii_lowercase().replace('_', "-");
        Layer::IN_FILE_ORDER
            .into_iter()
            .find(|l| l.short() == wanted)
            .ok_or_else(|| UnknownName {
                what: "layer",
                given: s.to_string(),
                allowed: "l1, l2, l3-hot, l3-cold, l3-archive, l4, l5",
            })
    }
}

/// CPU architecture of the AWS Lambda functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Graviton; cheaper per millisecond.
    #[default]
    Arm64,
    /// Intel/AMD.
    X86_64,
}

impl Architecture {
    /// The spelling used in the config and by the Lambda API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Architecture::Arm64 => "arm64",
            Architecture::X86_64 => "x86_64",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `"aws"` object of `config_providers.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsSettings {
    /// Region; `None` defers to the standard AWS configuration chain.
    pub region: Option<String>,
    /// Lambda architecture.
    pub architecture: Architecture,
    /// Authentication of the Managed Grafana workspace (`AWS_SSO` or `SAML`).
    pub grafana_authentication_provider: String,
    /// Gives every device its own processor function `<twin>--<device>-processor` (default
    /// `false`: devices without a processor crate of their own share `<twin>-processor`).
    #[serde(default)]
    pub processor_per_device: bool,
    /// IAM Identity Center users and groups granted Grafana Admin (`AWS_SSO` only).
    #[serde(default)]
    pub grafana_admins: GrafanaGrantees,
    /// IAM Identity Center users and groups granted Grafana Editor (`AWS_SSO` only).
    #[serde(default)]
    pub grafana_editors: GrafanaGrantees,
    /// IAM Identity Center users and groups granted Grafana Viewer (`AWS_SSO` only).
    #[serde(default)]
    pub grafana_viewers: GrafanaGrantees,
    /// The workspace's SAML configuration (`SAML` only).
    #[serde(default)]
    pub grafana_saml: Option<GrafanaSaml>,
}

impl AwsSettings {
    /// The grantees of each Grafana role, as (Managed Grafana role name, grantees).
    pub fn grafana_grants(&self) -> [(&'static str, &GrafanaGrantees); 3] {
        [
            ("ADMIN", &self.grafana_admins),
            ("EDITOR", &self.grafana_editors),
            ("VIEWER", &self.grafana_viewers),
        ]
    }

    /// Whether any user or group is granted a Grafana role.
    pub fn grafana_has_grantees(&self) -> bool {
        self.grafana_grants().iter().any(|(_, g)| !g.is_empty())
    }
}

/// Users and groups (IAM Identity Center ids) granted one Grafana role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrafanaGrantees {
    /// User ids.
    #[serde(default)]
    pub users: Vec<String>,
    /// Group ids.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl GrafanaGrantees {
    /// Whether nobody is named.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// The SAML configuration of a Managed Grafana workspace: where the identity provider's
/// metadata is, which assertion attributes carry what, and which role values make an Admin or
/// an Editor (everyone else who signs in is a Viewer).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrafanaSaml {
    /// HTTPS URL of the IdP metadata (exactly one of this and `idp_metadata_xml`).
    pub idp_metadata_url: Option<String>,
    /// The IdP metadata document itself.
    pub idp_metadata_xml: Option<String>,
    /// Names of the assertion attributes.
    pub assertion_attributes: SamlAssertionAttributes,
    /// Values of the role attribute that make a Grafana Admin.
    pub admin_role_values: Vec<String>,
    /// Values of the role attribute that make a Grafana Editor.
    #[serde(default)]
    pub editor_role_values: Vec<String>,
    /// Minutes a SAML login stays valid (Managed Grafana's default when absent).
    #[serde(default)]
    pub login_validity_minutes: Option<i32>,
}

/// Which SAML assertion attribute carries each user field; `role` is required.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SamlAssertionAttributes {
    /// The attribute holding the user's role (compared with the role values).
    pub role: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Login.
    #[serde(default)]
    pub login: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Groups.
    #[serde(default)]
    pub groups: Option<String>,
    /// Organisation.
    #[serde(default)]
    pub org: Option<String>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            architecture: Architecture::default(),
            grafana_authentication_provider: "AWS_SSO".to_string(),
            processor_per_device: false,
            grafana_admins: GrafanaGrantees::default(),
            grafana_editors: GrafanaGrantees::default(),
            grafana_viewers: GrafanaGrantees::default(),
            grafana_saml: None,
        }
    }
}

/// The `"azure"` object of `config_providers.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureSettings {
    /// Subscription; `None` defers to the Azure CLI / environment.
    pub subscription_id: Option<String>,
    /// Resource group; `None` means `<twin>-rg`.
    pub resource_group: Option<String>,
    /// Location (e.g. `westeurope`).
    pub location: Option<String>,
}

/// The contents of `config_providers.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Providers {
    /// `layer_1_provider`.
    pub layer_1: ProviderName,
    /// `layer_2_provider`.
    pub layer_2: ProviderName,
    /// `layer_3_hot_provider`.
    pub layer_3_hot: ProviderName,
    /// `layer_3_cold_provider`.
    pub layer_3_cold: ProviderName,
    /// `layer_3_archive_provider`.
    pub layer_3_archive: ProviderName,
    /// `layer_4_provider`.
    pub layer_4: ProviderName,
    /// `layer_5_provider`.
    pub layer_5: ProviderName,
    /// AWS settings (defaults when the file has no `"aws"` object).
    pub aws: AwsSettings,
    /// Azure settings (defaults when the file has no `"azure"` object).
    pub azure: AzureSettings,
}

impl Providers {
    /// The provider hosting `layer`.
    pub fn get(&self, layer: Layer) -> ProviderName {
        match layer {
            Layer::L1 => self.layer_1,
            Layer::L2 => self.layer_2,
            Layer::L3Hot => self.layer_3_hot,
            Layer::L3Cold => self.layer_3_cold,
            Layer::L3Archive => self.layer_3_archive,
            Layer::L4 => self.layer_4,
            Layer::L5 => self.layer_5,
        }
    }

    /// Sets the provider of `layer`.
    pub fn set(&mut self, layer: Layer, provider: ProviderName) {
        let slot = match layer {
            Layer::L1 => &mut self.layer_1,
            Layer::L2 => &mut self.layer_2,
            Layer::L3Hot => &mut self.layer_3_hot,
            Layer::L3Cold => &mut self.layer_3_cold,
            Layer::L3Archive => &mut self.layer_3_archive,
            Layer::L4 => &mut self.layer_4,
            Layer::L5 => &mut self.layer_5,
        };
        *slot = provider;
    }

    /// Whether any layer is hosted on `provider`.
    pub fn uses(&self, provider: ProviderName) -> bool {
        Layer::ALL.into_iter().any(|l| self.get(l) == provider)
    }

    /// The layers hosted on `provider`, in dependency order.
    pub fn layers_on(&self, provider: ProviderName) -> Vec<Layer> {
        Layer::ALL
            .into_iter()
            .filter(|l| self.get(*l) == provider)
            .collect()
    }

    /// Every layer on `provider` (a config for one cloud, with default settings).
    pub fn all(provider: ProviderName) -> Providers {
        Providers {
            layer_1: provider,
            layer_2: provider,
            layer_3_hot: provider,
            layer_3_cold: provider,
            layer_3_archive: provider,
            layer_4: provider,
            layer_5: provider,
            aws: AwsSettings::default(),
            azure: AzureSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names() {
        assert_eq!(Layer::L3Hot.key(), "layer_3_hot_provider");
        assert_eq!(Layer::L3Archive.short(), "l3-archive");
        assert_eq!(Layer::L4.to_string(), "l4");
        assert_eq!("l3-cold".parse::<Layer>(), Ok(Layer::L3Cold));
        assert_eq!("L3_HOT".parse::<Layer>(), Ok(Layer::L3Hot));
        assert_eq!(
            "l6".parse::<Layer>().map_err(|e| e.to_string()),
            Err(
                "unknown layer `l6`; allowed: l1, l2, l3-hot, l3-cold, l3-archive, l4, l5"
                    .to_string()
            )
        );
        for layer in Layer::IN_FILE_ORDER {
            assert_eq!(layer.short().parse::<Layer>(), Ok(layer));
        }
    }

    #[test]
    fn all_is_in_dependency_order() {
        assert_eq!(Layer::ALL.len(), Layer::IN_FILE_ORDER.len());
        for (i, layer) in Layer::ALL.iter().enumerate() {
            for dep in layer.dependencies() {
                let at = Layer::ALL.iter().position(|l| l == dep);
                assert!(at.is_some_and(|j| j < i), "{layer} must come after {dep}");
            }
        }
    }

    #[test]
    fn required_layers_are_dependencies() {
        for layer in Layer::ALL {
            for r in layer.requires() {
                assert!(layer.dependencies().contains(r), "{layer} requires {r}");
            }
        }
    }

    #[test]
    fn provider_per_layer() {
        let mut p = Providers::all(ProviderName::Aws);
        p.set(Layer::L4, ProviderName::None);
        p.set(Layer::L5, ProviderName::Azure);
        assert_eq!(p.get(Layer::L4), ProviderName::None);
        assert_eq!(p.get(Layer::L5), ProviderName::Azure);
        assert_eq!(p.get(Layer::L1), ProviderName::Aws);
        assert!(p.uses(ProviderName::Azure));
        assert_eq!(p.layers_on(ProviderName::Azure), vec![Layer::L5]);
        assert_eq!("azure".parse::<ProviderName>(), Ok(ProviderName::Azure));
        assert!("Azure".parse::<ProviderName>().is_err());
        assert_eq!(
            AwsSettings::default().grafana_authentication_provider,
            "AWS_SSO"
        );
        assert_eq!(AwsSettings::default().architecture, Architecture::Arm64);
    }
}
