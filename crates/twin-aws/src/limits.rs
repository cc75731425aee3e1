//! The AWS service limits every generated document must stay within, for any number of devices.
//! moto enforces none of them, so the unit test below renders every L1–L3 document of a twin
//! with 10,000 devices and measures each.

/// Lambda: all environment variables of a function together, 4 KB (Lambda quotas, "Function
/// environment variables": <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>).
pub const LAMBDA_ENV_BYTES: usize = 4 * 1024;

/// Lambda: a function's resource-based policy, 20 KB (same Lambda quotas page).
pub const LAMBDA_RESOURCE_POLICY_BYTES: usize = 20 * 1024;

/// Lambda: a function name, 64 characters (CreateFunction `FunctionName`, name only:
/// <https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html>).
pub const LAMBDA_FUNCTION_NAME: usize = 64;

/// IAM: the inline policies of one role together, 10,240 characters, whitespace not counted
/// (IAM quotas, "Role policy size": <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html>).
pub const IAM_ROLE_INLINE_POLICY_CHARS: usize = 10_240;

/// IAM: a role's trust policy, 2,048 characters by default (same IAM quotas page).
pub const IAM_TRUST_POLICY_CHARS: usize = 2_048;

/// IAM: a role name, 64 characters (same IAM quotas page).
pub const IAM_ROLE_NAME: usize = 64;

/// IoT Core: a policy document version, 2,048 characters without whitespace (AWS IoT Core
/// quotas, "Policy document size": <https://docs.aws.amazon.com/general/latest/gr/iot-core.html>).
pub const IOT_POLICY_BYTES: usize = 2_048;

/// IoT Core: thing, policy and topic rule names, 128 characters (CreateThing / CreatePolicy /
/// CreateTopicRule length constraints in the AWS IoT API reference).
pub const IOT_NAME: usize = 128;

/// The topic rule's SQL: our own budget, far below any rules-engine quota. The point is that it
/// names a topic filter (`<twin>/iot-data/+`), never a list of devices.
pub const TOPIC_RULE_SQL_BUDGET: usize = 1_024;

/// The device catalogue object: S3 allows 5 TB, so this is our own budget. The dispatcher and the
/// processors read and parse it at cold start in 128–256 MB of memory; 10,000 devices take about
/// 1 MB, so 8 MB leaves room for devices with many properties.
pub const CATALOGUE_BUDGET_BYTES: usize = 8 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AwsProvider;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use twin_config::{Layer, ProviderName, Providers, TwinConfig};
    use twin_engine::{Provider, ResourceSpec};

    /// The twin's name.
    const TWIN: &str = "scale-twin";

    fn twin(devices: usize, per_device: bool) -> TwinConfig {
        let devices: Vec<Value> = (0..devices)
            .map(|i| {
                json!({
                    // Fixed-width ids: the same device has the same name in every twin size.
                    "id": format!("sensor-{i:05}"),
                    "properties": [
                        {"name": "temperature", "dataType": "DOUBLE"},
                        {"name": "humidity", "dataType": "INTEGER"},
                        {"name": "status", "dataType": "STRING"},
                    ],
                })
            })
            .collect();
        let mut providers = Providers::all(ProviderName::Aws);
        providers.aws.processor_per_device = per_device;
        TwinConfig {
            dir: PathBuf::from("/nonexistent/scale-twin"),
            twin: serde_json::from_value(json!({
                "digital_twin_name": TWIN,
                "hot_storage_size_in_days": 30,
                "cold_storage_size_in_days": 90,
                "mode": "INFO"
            }))
            .unwrap(),
            devices: serde_json::from_value(Value::Array(devices)).unwrap(),
            providers,
            hierarchy: None,
            events: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn provider() -> AwsProvider {
        let (clients, artifacts) = crate::testing::offline_clients_and_artifacts();
        AwsProvider::with_clients(clients, artifacts)
    }

    const LAYERS: [Layer; 5] = [
        Layer::L1,
        Layer::L2,
        Layer::L3Hot,
        Layer::L3Cold,
        Layer::L3Archive,
    ];

    async fn specs(config: &TwinConfig) -> Vec<ResourceSpec> {
        let p = provider();
        let mut all = Vec::new();
        for layer in LAYERS {
            all.extend(p.layer_resources(layer, config).await.unwrap());
        }
        all
    }

    fn compact(v: &Value) -> usize {
        // serde_json writes no whitespace, as IAM and IoT count.
        v.to_string().len()
    }

    /// Every limit a spec is subject to, as (what, measured, limit).
    fn measures(spec: &ResourceSpec) -> Vec<(String, usize, usize)> {
        let d = &spec.desired;
        let name = || format!("{} {}", spec.kind, spec.name);
        let mut m = Vec::new();
        match spec.kind.as_str() {
            crate::lambda_fn::KIND => {
                let env = d.get("env").cloned().unwrap_or(Value::Null);
                m.push((format!("{} env", name()), compact(&env), LAMBDA_ENV_BYTES));
                m.push((
                    format!("{} name", name()),
                    spec.name.len(),
                    LAMBDA_FUNCTION_NAME,
                ));
            }
            crate::iam::KIND => {
                m.push((
                    format!("{} inline-policy", name()),
                    compact(&d["policy"]),
                    IAM_ROLE_INLINE_POLICY_CHARS,
                ));
                m.push((
                    format!("{} trust-policy", name()),
                    compact(&d["trust"]),
                    IAM_TRUST_POLICY_CHARS,
                ));
                m.push((format!("{} name", name()), spec.name.len(), IAM_ROLE_NAME));
            }
            crate::l1::iot_policy::KIND => {
                m.push((
                    format!("{} document", name()),
                    compact(&d["document"]),
                    IOT_POLICY_BYTES,
                ));
                m.push((format!("{} name", name()), spec.name.len(), IOT_NAME));
            }
            crate::l1::thing::KIND => {
                m.push((format!("{} name", name()), spec.name.len(), IOT_NAME))
            }
            crate::l1::topic_rule::KIND => {
                let sql = d["sql"].as_str().unwrap_or_default();
                m.push((format!("{} sql", name()), sql.len(), TOPIC_RULE_SQL_BUDGET));
                m.push((format!("{} name", name()), spec.name.len(), IOT_NAME));
            }
            crate::catalogue::KIND => {
                let body = spec.inputs["body"].as_str().unwrap_or_default();
                m.push((
                    format!("{} body", name()),
                    body.len(),
                    CATALOGUE_BUDGET_BYTES,
                ));
            }
            _ => {}
        }
        m
    }

    /// The permission statements each function's resource policy will hold.
    fn resource_policies(specs: &[ResourceSpec]) -> BTreeMap<String, usize> {
        let mut by_function: BTreeMap<String, usize> = BTreeMap::new();
        for s in specs.iter().filter(|s| s.kind == crate::permissions::KIND) {
            let function = s.desired["function"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            // A statement as Lambda stores it is about this size plus its fixed frame.
            *by_function.entry(function).or_default() += compact(&s.desired) + 200;
        }
        by_function
    }

    /// The largest measure of each kind, or every measure over its limit.
    fn check_limits(specs: &[ResourceSpec]) -> Result<BTreeMap<String, usize>, Vec<String>> {
        let mut largest: BTreeMap<String, usize> = BTreeMap::new();
        let mut over = Vec::new();
        for s in specs {
            for (what, size, limit) in measures(s) {
                if size > limit {
                    over.push(format!("{what}: {size} > {limit}"));
                }
                let measure = what.rsplit(' ').next().unwrap_or_default();
                let e = largest.entry(format!("{} {measure}", s.kind)).or_default();
                *e = (*e).max(size);
            }
        }
        for (function, size) in resource_policies(specs) {
            if size > LAMBDA_RESOURCE_POLICY_BYTES {
                over.push(format!(
                    "resource policy of {function}: {size} > {LAMBDA_RESOURCE_POLICY_BYTES}"
                ));
            }
        }
        if over.is_empty() {
            Ok(largest)
        } else {
            Err(over)
        }
    }

    /// The desired documents of the specs both renders have: what is compared with AWS.
    fn documents(specs: &[ResourceSpec]) -> BTreeMap<String, usize> {
        specs
            .iter()
            .map(|s| (s.id.0.clone(), compact(&s.desired)))
            .collect()
    }

    #[tokio::test]
    async fn every_document_of_10000_devices_fits_the_aws_limits_and_none_grows_with_devices() {
        for per_device in [false, true] {
            let small = specs(&twin(10, per_device)).await;
            let large = specs(&twin(10_000, per_device)).await;
            let sizes = check_limits(&large)
                .unwrap_or_else(|over| panic!("over AWS limits:\n{}", over.join("\n")));
            eprintln!("10,000 devices (processor_per_device={per_device}): largest {sizes:#?}");

            // No document grows with the device count: every spec both twins have (all shared
            // resources, and the first ten devices') is exactly as large with 10,000 devices.
            let (a, b) = (documents(&small), documents(&large));
            let grown: Vec<String> = a
                .iter()
                .filter_map(|(id, size)| {
                    let big = b.get(id)?;
                    (big != size)
                        .then(|| format!("{id}: {size} bytes with 10 devices, {big} with 10,000"))
                })
                .collect();
            assert!(
                grown.is_empty(),
                "documents grow with the device count:\n{}",
                grown.join("\n")
            );

            // Only per-device resources multiply: L2 is a fixed set unless every device asked
            // for its own processor.
            let l2 = |s: &[ResourceSpec]| s.iter().filter(|s| s.layer == Layer::L2).count();
            if per_device {
                assert!(l2(&large) > 10_000);
            } else {
                assert_eq!(l2(&small), l2(&large), "L2 grows with the devices");
                let functions: Vec<&str> = large
                    .iter()
                    .filter(|s| s.layer == Layer::L2 && s.kind == crate::lambda_fn::KIND)
                    .map(|s| s.name.as_str())
                    .collect();
                assert_eq!(functions, ["scale-twin-persister", "scale-twin-processor"]);
            }
        }
    }

    #[tokio::test]
    async fn a_device_list_in_an_environment_would_be_caught() {
        // The check above is only worth something if it fails on the old design.
        let mut large = specs(&twin(10_000, false)).await;
        let ids: Vec<String> = (0..10_000).map(|i| format!("sensor-{i:05}")).collect();
        let dispatcher = large
            .iter_mut()
            .find(|s| s.kind == crate::lambda_fn::KIND && s.name.ends_with("-dispatcher"))
            .unwrap();
        dispatcher.desired["env"]["DEVICE_IDS"] = json!(ids.join(","));
        let over = check_limits(&large).unwrap_err();
        assert_eq!(over.len(), 1, "{over:?}");
        assert!(
            over[0].starts_with("lambda_function scale-twin-dispatcher env: "),
            "{over:?}"
        );
    }
}
