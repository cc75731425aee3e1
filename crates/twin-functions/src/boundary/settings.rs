//! The environment of a storage boundary's ingress function.

use crate::env_vars::{
    BOUNDARY_HOP, BOUNDARY_NONCE_TABLE, BOUNDARY_SECRET_NAME, BOUNDARY_TARGET_BUCKET,
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
}
