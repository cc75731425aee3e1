//! The environment of a storage boundary's ingress function.

use crate::env_vars::{
    BOUNDARY_HOP, BOUNDARY_INGRESS_URL, BOUNDARY_NONCE_TABLE, BOUNDARY_SECRET_NAME,
    BOUNDARY_TARGET_BUCKET,
};
use crate::settings::{CommonSettings, EnvReader, SettingsError};

/// Settings of a storage boundary's ingress (`hot-to-cold`, `cold-to-archive`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIngressSettings {
    /// Common settings.
    pub common: CommonSettings,
    /// `BOUNDARY_HOP`: `hot-to-cold` or `cold-to-archive`.
    pub hop: String,
    /// `BOUNDARY_SECRET_NAME`: the secret's name in this cloud's store (never its value).
    pub secret_name: String,
    /// `BOUNDARY_NONCE_TABLE`.
    pub nonce_table: String,
    /// `BOUNDARY_TARGET_BUCKET`.
    pub target_bucket: String,
}

impl ObjectIngressSettings {
    /// Reads and checks the ingress's environment.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = EnvReader::new("ingress", lookup);
        let common = env.common();
        let hop = env.required(BOUNDARY_HOP);
        if !hop.is_empty() && hop != "hot-to-cold" && hop != "cold-to-archive" {
            env.invalid(format!(
                "{BOUNDARY_HOP} is `{hop}`; a storage ingress serves hot-to-cold or cold-to-archive"
            ));
        }
        let secret_name = env.required(BOUNDARY_SECRET_NAME);
        let nonce_table = env.required(BOUNDARY_NONCE_TABLE);
        let target_bucket = env.required(BOUNDARY_TARGET_BUCKET);
        env.finish(Self {
            common,
            hop,
            secret_name,
            nonce_table,
            target_bucket,
        })
    }
}

/// A storage boundary's sending side, read from a mover's environment: where the remote
/// ingress is and the name (never the value) of the secret to sign with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSenderSettings {
    /// `BOUNDARY_INGRESS_URL`.
    pub ingress_url: String,
    /// `BOUNDARY_SECRET_NAME`: the secret's name in this cloud's store.
    pub secret_name: String,
}

impl ObjectSenderSettings {
    /// `None` when neither variable is set (the next tier is in this cloud); both or an error
    /// naming the one missing, or a URL that is not `https://` (plain `http://` only to this
    /// machine, for the local data plane).
    pub fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, SettingsError> {
        let set = |n: &str| lookup(n).filter(|v| !v.trim().is_empty());
        if set(BOUNDARY_INGRESS_URL).is_none() && set(BOUNDARY_SECRET_NAME).is_none() {
            return Ok(None);
        }
        let mut env = EnvReader::new("boundary sender", lookup);
        let ingress_url = env.required(BOUNDARY_INGRESS_URL);
        let secret_name = env.required(BOUNDARY_SECRET_NAME);
        let local = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| ingress_url.starts_with(p));
        if !ingress_url.is_empty() && !ingress_url.starts_with("https://") && !local {
            env.invalid(format!(
                "{BOUNDARY_INGRESS_URL} is `{ingress_url}`; a boundary is reached over https://"
            ));
        }
        env.finish(Some(Self {
            ingress_url,
            secret_name,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ingress_environment_and_names_what_is_wrong() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let ok = ObjectIngressSettings::from_lookup(&env(&[
            ("TWIN_NAME", "t"),
            ("BOUNDARY_HOP", "hot-to-cold"),
            ("BOUNDARY_SECRET_NAME", "t-boundary-hot-to-cold"),
            ("BOUNDARY_NONCE_TABLE", "t-boundary-nonces"),
            ("BOUNDARY_TARGET_BUCKET", "t-cold-0000"),
        ]))
        .expect("valid");
        assert_eq!(ok.hop, "hot-to-cold");
        let e = ObjectIngressSettings::from_lookup(&env(&[
            ("TWIN_NAME", "t"),
            ("BOUNDARY_HOP", "dispatch"),
        ]))
        .expect_err("invalid");
        let text = e.to_string();
        assert!(text.contains("BOUNDARY_SECRET_NAME"), "{text}");
        assert!(text.contains("hot-to-cold or cold-to-archive"), "{text}");
    }

    #[test]
    fn a_sender_is_remote_only_with_both_its_url_and_its_secret_name() {
        let none = |_: &str| None;
        assert_eq!(ObjectSenderSettings::from_lookup(&none).expect("ok"), None);
        let both = |k: &str| match k {
            "BOUNDARY_INGRESS_URL" => Some("https://a.azurewebsites.net/api/ingress-cold".into()),
            "BOUNDARY_SECRET_NAME" => Some("t-boundary-hot-to-cold".into()),
            _ => None,
        };
        let s = ObjectSenderSettings::from_lookup(&both)
            .expect("ok")
            .expect("remote");
        assert_eq!(s.secret_name, "t-boundary-hot-to-cold");
        let half = |k: &str| (k == "BOUNDARY_INGRESS_URL").then(|| "https://a/".to_string());
        let e = ObjectSenderSettings::from_lookup(&half).expect_err("half");
        assert!(e.to_string().contains("BOUNDARY_SECRET_NAME"), "{e}");
        let plain = |k: &str| match k {
            "BOUNDARY_INGRESS_URL" => Some("http://a.example/api/ingress-cold".into()),
            "BOUNDARY_SECRET_NAME" => Some("s".into()),
            _ => None,
        };
        let e = ObjectSenderSettings::from_lookup(&plain).expect_err("plain http");
        assert!(e.to_string().contains("https://"), "{e}");
    }
}
