//! `config_providers.json`: the provider of each layer plus AWS and Azure settings.

use serde_json::Value;

use super::reader::FileReader;
use crate::diagnostics::Diagnostic;
use crate::names;
use crate::providers::{
    Architecture, AwsSettings, AzureSettings, GrafanaGrantees, GrafanaSaml, Layer, ProviderName,
    Providers, SamlAssertionAttributes,
};
use crate::spans::member;

/// Whatever of the providers file was readable.
#[derive(Debug, Default)]
pub(crate) struct ProvidersPart {
    /// Provider per layer, in [`Layer::IN_FILE_ORDER`]; `None` where it had a diagnostic.
    pub layers: [Option<ProviderName>; 7],
    pub aws: Option<AwsSettings>,
    pub azure: Option<AzureSettings>,
    /// Legal but doubtful settings (e.g. a Grafana nobody can sign in to).
    pub warnings: Vec<Diagnostic>,
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
    if let Some(aws) = &part.aws {
        if part.get(Layer::L5) == Some(ProviderName::Aws) {
            let path = if map.contains_key("aws") {
                "$.aws"
            } else {
                "$.layer_5_provider"
            };
            if let Some(w) = grafana_sign_in_warning(aws) {
                part.warnings.push(r.diagnostic(path, w));
            }
        }
    }
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
fn requirement_reason(layer: Layer, provider: ProviderName) -> &'static str {
    if (layer, provider) == (Layer::L5, ProviderName::Azure) {
        return "Grafana on Azure shows the hot data through the hot reader, so it would have no data to show";
    }
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
        for needed in layer.requires_on(provider) {
            if part.get(*needed) == Some(ProviderName::None) {
                r.at_value(
                    &member("$", layer.key()),
                    format!(
                        "{} is `{provider}` but {} is `none`: {}; allowed: aws or azure for {}, or none here",
                        layer.key(),
                        needed.key(),
                        requirement_reason(layer, provider),
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
            "grafana_admins",
            "grafana_editors",
            "grafana_viewers",
            "grafana_saml",
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
    for (key, slot) in [
        ("grafana_admins", &mut aws.grafana_admins),
        ("grafana_editors", &mut aws.grafana_editors),
        ("grafana_viewers", &mut aws.grafana_viewers),
    ] {
        if let Some(v) = map.get(key) {
            if let Some(g) = read_grantees(r, v, &format!("$.aws.{key}")) {
                *slot = g;
            }
        }
    }
    if let Some(v) = map.get("grafana_saml") {
        aws.grafana_saml = read_saml(r, v);
    }
    grafana_access_rules(r, map, &aws);
    (r.count() == before).then_some(aws)
}

/// What a user must do to be able to sign in to the Grafana workspace, when the settings grant
/// nobody access (a warning: the workspace works, but nobody can open it).
pub(crate) fn grafana_sign_in_warning(aws: &AwsSettings) -> Option<String> {
    match aws.grafana_authentication_provider.as_str() {
        "AWS_SSO" if !aws.grafana_has_grantees() => Some(
            "nobody can sign in to the Grafana workspace: IAM Identity Center (AWS_SSO) grants no user or group access by itself. \
             Add ids from the IAM Identity Center console (Users / Groups, the `User ID` or `Group ID` field) as \
             \"grafana_admins\": {\"users\": [\"<user id>\"], \"groups\": [\"<group id>\"]} (or grafana_editors / grafana_viewers) \
             and deploy again, or assign them in the Amazon Managed Grafana console under the workspace's Authentication tab"
                .to_string(),
        ),
        "SAML" if aws.grafana_saml.is_none() => Some(
            "nobody can sign in to the Grafana workspace: it has no SAML configuration. \
             Add \"grafana_saml\": {\"idp_metadata_url\": \"https://<your IdP>/metadata\", \"assertion_attributes\": {\"role\": \"<role attribute>\"}, \"admin_role_values\": [\"<admin value>\"]} \
             and deploy again, or set it up in the Amazon Managed Grafana console under the workspace's Authentication tab"
                .to_string(),
        ),
        _ => None,
    }
}

/// The longest user or group id Managed Grafana accepts.
const MAX_GRANTEE_ID: usize = 47;

fn read_grantees(r: &mut FileReader<'_>, value: &Value, path: &str) -> Option<GrafanaGrantees> {
    let map = r.object(
        value,
        path,
        "an object {\"users\": [ids], \"groups\": [ids]} of IAM Identity Center ids",
    )?;
    let before = r.count();
    r.keys(map, path, &["users", "groups"], &[]);
    let mut g = GrafanaGrantees::default();
    for (key, slot) in [("users", &mut g.users), ("groups", &mut g.groups)] {
        let Some(v) = map.get(key) else { continue };
        let p = member(path, key);
        let Some(items) = r.array(v, &p, "a list of IAM Identity Center ids") else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            let Some(id) = r.string(item, &ip, "an IAM Identity Center id, a string") else {
                continue;
            };
            if id.is_empty() || id.len() > MAX_GRANTEE_ID || id.chars().any(|c| c.is_whitespace()) {
                r.at_value(
                    &ip,
                    format!("`{id}` is not an IAM Identity Center id: ids are 1 to {MAX_GRANTEE_ID} characters without spaces, e.g. `90677d4b4a-7fc52c4c-d8b0-4b0c-8e4d-6d4bd2b1e8f3` (copy it from the IAM Identity Center console)"),
                );
            } else if slot.iter().any(|s| s == id) {
                r.at_value(&ip, format!("`{id}` is listed twice"));
            } else {
                slot.push(id.to_string());
            }
        }
    }
    (r.count() == before).then_some(g)
}

fn read_saml(r: &mut FileReader<'_>, value: &Value) -> Option<GrafanaSaml> {
    let path = "$.aws.grafana_saml";
    let map = r.object(
        value,
        path,
        "an object with the workspace's SAML configuration",
    )?;
    let before = r.count();
    r.keys(
        map,
        path,
        &[
            "idp_metadata_url",
            "idp_metadata_xml",
            "assertion_attributes",
            "admin_role_values",
            "editor_role_values",
            "login_validity_minutes",
        ],
        &[
            (
                "assertion_attributes",
                "an object naming at least the `role` attribute",
            ),
            (
                "admin_role_values",
                "the role attribute's values that make a Grafana Admin",
            ),
        ],
    );
    let mut saml = GrafanaSaml::default();
    let text = |r: &mut FileReader<'_>, key: &str, what: &str| -> Option<String> {
        let v = map.get(key)?;
        r.string(v, &member(path, key), what).map(str::to_string)
    };
    saml.idp_metadata_url = text(r, "idp_metadata_url", "an HTTPS URL of the IdP metadata");
    saml.idp_metadata_xml = text(r, "idp_metadata_xml", "the IdP metadata XML, a string");
    match (&saml.idp_metadata_url, &saml.idp_metadata_xml) {
        (Some(u), None) if !u.starts_with("https://") => r.at_value(
            &member(path, "idp_metadata_url"),
            format!("`{u}` is not an HTTPS URL; Managed Grafana fetches the IdP metadata over HTTPS"),
        ),
        (Some(_), None) | (None, Some(_)) => {}
        (Some(_), Some(_)) => r.at_value(
            path,
            "give either `idp_metadata_url` or `idp_metadata_xml`, not both",
        ),
        (None, None) if !map.contains_key("idp_metadata_url") && !map.contains_key("idp_metadata_xml") => {
            r.at_value(
                path,
                "missing the IdP metadata: add `idp_metadata_url` (an HTTPS URL) or `idp_metadata_xml`",
            )
        }
        (None, None) => {}
    }
    if let Some(v) = map.get("assertion_attributes") {
        let ap = member(path, "assertion_attributes");
        if let Some(attrs) = r.object(v, &ap, "an object naming the assertion attributes") {
            let names = ["role", "name", "login", "email", "groups", "org"];
            r.keys(
                attrs,
                &ap,
                &names,
                &[("role", "the attribute that carries the user's role")],
            );
            let mut a = SamlAssertionAttributes::default();
            for key in names {
                let Some(v) = attrs.get(key) else { continue };
                let kp = member(&ap, key);
                let Some(s) = r.string(v, &kp, "an assertion attribute name, a string") else {
                    continue;
                };
                if s.is_empty() {
                    r.at_value(&kp, "an assertion attribute name cannot be empty");
                    continue;
                }
                let s = s.to_string();
                match key {
                    "role" => a.role = s,
                    "name" => a.name = Some(s),
                    "login" => a.login = Some(s),
                    "email" => a.email = Some(s),
                    "groups" => a.groups = Some(s),
                    _ => a.org = Some(s),
                }
            }
            saml.assertion_attributes = a;
        }
    }
    for (key, slot) in [
        ("admin_role_values", &mut saml.admin_role_values),
        ("editor_role_values", &mut saml.editor_role_values),
    ] {
        let Some(v) = map.get(key) else { continue };
        let p = member(path, key);
        let Some(items) = r.array(v, &p, "a list of role values") else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            if let Some(s) = r.string(item, &format!("{p}[{i}]"), "a role value, a string") {
                slot.push(s.to_string());
            }
        }
        if key == "admin_role_values" && slot.is_empty() {
            r.at_value(
                &p,
                "name at least one role value, or nobody can administer the workspace",
            );
        }
    }
    if let Some(v) = map.get("login_validity_minutes") {
        let p = member(path, "login_validity_minutes");
        match v.as_i64() {
            Some(m) if (1..=i64::from(i32::MAX)).contains(&m) => {
                saml.login_validity_minutes = i32::try_from(m).ok();
            }
            _ => r.at_value(&p, "expected a positive number of minutes"),
        }
    }
    (r.count() == before).then_some(saml)
}

/// Grantees only work with IAM Identity Center, a SAML configuration only with SAML, and one id
/// has one role.
fn grafana_access_rules(
    r: &mut FileReader<'_>,
    map: &serde_json::Map<String, Value>,
    aws: &AwsSettings,
) {
    let saml = aws.grafana_authentication_provider == "SAML";
    if saml {
        for (key, g) in [
            ("grafana_admins", &aws.grafana_admins),
            ("grafana_editors", &aws.grafana_editors),
            ("grafana_viewers", &aws.grafana_viewers),
        ] {
            if !g.is_empty() {
                r.at_key(
                    &member("$.aws", key),
                    format!("`{key}` grants IAM Identity Center users, but grafana_authentication_provider is `SAML`: with SAML the role comes from the assertion; use grafana_saml.admin_role_values / editor_role_values instead"),
                );
            }
        }
    } else if map.contains_key("grafana_saml") {
        r.at_key(
            "$.aws.grafana_saml",
            "`grafana_saml` is only used when grafana_authentication_provider is `SAML`; set it to \"SAML\" or remove `grafana_saml`",
        );
    }
    let mut seen: Vec<(&str, &str, &str)> = Vec::new();
    for (key, g) in [
        ("grafana_admins", &aws.grafana_admins),
        ("grafana_editors", &aws.grafana_editors),
        ("grafana_viewers", &aws.grafana_viewers),
    ] {
        for (kind, ids) in [("users", &g.users), ("groups", &g.groups)] {
            for id in ids {
                if let Some((other, _, _)) = seen.iter().find(|(_, k, i)| *k == kind && *i == id) {
                    r.at_value(
                        &member(&member("$.aws", key), kind),
                        format!("`{id}` is also in `{other}`: a user or group has one Grafana role; keep it in one list"),
                    );
                } else {
                    seen.push((key, kind, id));
                }
            }
        }
    }
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
