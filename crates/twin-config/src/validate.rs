//! Cross-file checks: every cloud resource name that the twin name and the device ids produce on
//! the providers in use must satisfy that cloud's naming rules.

use crate::names::{self, NameError, NameRule};
use crate::providers::{Layer, ProviderName};

/// Which config value a derived name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `digital_twin_name` in `config.json`.
    Twin,
    /// The id of the device at this index of `config_iot_devices.json`.
    Device(usize),
}

/// A derived name that breaks its cloud's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameProblem {
    pub source: Source,
    pub layer: Layer,
    pub provider: ProviderName,
    pub error: NameError,
}

impl NameProblem {
    /// The report text: the broken rule and the layer that needs the name.
    pub fn message(&self) -> String {
        format!(
            "{} (needed by layer {} on {})",
            self.error, self.layer, self.provider
        )
    }
}

/// The layers that host AWS Lambda functions, in [`Layer::ALL`] order: the first of them on
/// AWS also hosts the twin's artifacts (function code) bucket.
const FUNCTION_LAYERS: [Layer; 5] = [Layer::L3Cold, Layer::L3Hot, Layer::L4, Layer::L2, Layer::L1];

/// The layer that hosts the artifacts bucket: the first layer of [`Layer::ALL`] that hosts
/// functions on AWS.
fn artifacts_layer(provider_of: &impl Fn(Layer) -> Option<ProviderName>) -> Option<Layer> {
    Layer::ALL
        .into_iter()
        .find(|l| FUNCTION_LAYERS.contains(l) && provider_of(*l) == Some(ProviderName::Aws))
}

/// Placeholder for the account/region hash of bucket names, which is only known at deploy time
/// but always has the same length.
fn bucket_placeholder(twin: &str, tier: &str) -> String {
    names::bucket_name_with_hash(twin, tier, &"0".repeat(names::BUCKET_HASH_LEN))
}

/// The twin-level names a layer creates on a provider.
fn twin_names(
    layer: Layer,
    provider: ProviderName,
    twin: &str,
) -> Vec<(&'static NameRule, String)> {
    use names::*;
    let function = |role: &str| {
        vec![
            (&LAMBDA_FUNCTION, function_name(twin, role)),
            (&IAM_ROLE, role_name(twin, role)),
        ]
    };
    match (provider, layer) {
        (ProviderName::Aws, Layer::L1) => {
            let mut v = vec![(&IOT_TOPIC_RULE, topic_rule_name(twin))];
            v.extend(function("dispatcher"));
            v.push((&IAM_ROLE, role_name(twin, IOT_RULE_ROLE)));
            v.push((&SQS_QUEUE, dead_letter_queue_name(twin, layer.short())));
            v
        }
        (ProviderName::Aws, Layer::L2) => {
            let mut v = function("persister");
            v.extend(function(SHARED_PROCESSOR));
            v.push((&SQS_QUEUE, dead_letter_queue_name(twin, layer.short())));
            v
        }
        (ProviderName::Aws, Layer::L3Hot) => {
            let mut v = vec![(&DYNAMODB_TABLE, table_name(twin))];
            v.extend(function("hot-reader"));
            v.extend(function("hot-to-cold-mover"));
            v.push((
                &EVENTBRIDGE_RULE,
                schedule_rule_name(twin, "hot-to-cold-mover"),
            ));
            v.push((&HTTP_API, http_api_name(twin)));
            v.push((&SQS_QUEUE, dead_letter_queue_name(twin, layer.short())));
            v
        }
        (ProviderName::Aws, Layer::L3Cold) => {
            let mut v = vec![(&S3_BUCKET, bucket_placeholder(twin, "cold"))];
            v.extend(function("cold-to-archive-mover"));
            v.push((
                &EVENTBRIDGE_RULE,
                schedule_rule_name(twin, "cold-to-archive-mover"),
            ));
            v.push((&SQS_QUEUE, dead_letter_queue_name(twin, layer.short())));
            v
        }
        (ProviderName::Aws, Layer::L3Archive) => {
            vec![(&S3_BUCKET, bucket_placeholder(twin, "archive"))]
        }
        (ProviderName::Aws, Layer::L4) => {
            let mut v = vec![
                (&TWINMAKER_WORKSPACE, twinmaker_workspace_id(twin)),
                (&S3_BUCKET, bucket_placeholder(twin, "twinmaker")),
                (&IAM_ROLE, role_name(twin, "twinmaker")),
            ];
            v.extend(function("twin-connector"));
            v
        }
        (ProviderName::Aws, Layer::L5) => vec![
            (&GRAFANA_WORKSPACE, grafana_workspace_name(twin)),
            (&IAM_ROLE, role_name(twin, "grafana")),
            (&IAM_ROLE, role_name(twin, "grafana-dashboard")),
        ],
        _ => Vec::new(),
    }
}

/// A device as the name checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceRef {
    /// Index in `config_iot_devices.json`.
    pub index: usize,
    /// The device id.
    pub id: String,
    /// Whether the device names its own processor crate (and so gets its own function).
    pub own_processor: bool,
}

/// The per-device names a layer creates on a provider.
fn device_names(
    layer: Layer,
    provider: ProviderName,
    twin: &str,
    device: &DeviceRef,
) -> Vec<(&'static NameRule, String)> {
    use names::*;
    let id = device.id.as_str();
    match (provider, layer) {
        (ProviderName::Aws, Layer::L1) => vec![
            (&IOT_THING, thing_name(twin, id)),
            (&IOT_POLICY, iot_policy_name(twin, id)),
            (&MQTT_TOPIC, telemetry_topic(twin, id)),
        ],
        (ProviderName::Aws, Layer::L2) if device.own_processor => vec![
            (&LAMBDA_FUNCTION, processor_function_name(twin, id)),
            (&IAM_ROLE, processor_role_name(twin, id)),
        ],
        (ProviderName::Aws, Layer::L4) => {
            vec![(&TWINMAKER_COMPONENT_TYPE, component_type_id(twin, id))]
        }
        (ProviderName::Azure, Layer::L1) => vec![(&AZURE_IOT_DEVICE, id.to_string())],
        (ProviderName::Azure, Layer::L2) => {
            vec![(&AZURE_FUNCTION, processor_local_name(id))]
        }
        _ => Vec::new(),
    }
}

/// Checks every derived name (Azure's globally unique names are derived to be valid for any twin
/// name, so only names made from the raw ids are checked there); reports at most one problem per source and rule, and skips a
/// device's problems with a rule the twin name already breaks (fixing the twin name comes first).
pub(crate) fn names(
    twin: &str,
    provider_of: impl Fn(Layer) -> Option<ProviderName>,
    devices: &[DeviceRef],
) -> Vec<NameProblem> {
    let mut out: Vec<NameProblem> = Vec::new();
    let push_first = |out: &mut Vec<NameProblem>, p: NameProblem| {
        // A function and its role share one name: one report of it is enough.
        let seen = out.iter().any(|q| {
            q.source == p.source && (q.error.kind == p.error.kind || q.error.name == p.error.name)
        });
        let twin_broke_it = out
            .iter()
            .any(|q| q.source == Source::Twin && q.error.kind == p.error.kind);
        if !seen && !twin_broke_it {
            out.push(p);
        }
    };
    let layers: Vec<(Layer, ProviderName)> = Layer::IN_FILE_ORDER
        .iter()
        .filter_map(|l| provider_of(*l).map(|p| (*l, p)))
        .collect();
    let artifacts = artifacts_layer(&provider_of);
    for (layer, provider) in &layers {
        let mut twin_level = twin_names(*layer, *provider, twin);
        if artifacts == Some(*layer) {
            twin_level.push((
                &names::S3_BUCKET,
                bucket_placeholder(twin, names::ARTIFACTS_TIER),
            ));
        }
        // A cross-cloud boundary received here on AWS adds its ingress function and role.
        for hop in crate::boundaries::Hop::ALL {
            let sender = provider_of(hop.sender_layer());
            if hop.receiver_layer() == *layer
                && *provider == ProviderName::Aws
                && sender.is_some_and(|p| p != ProviderName::None && p != *provider)
            {
                let local = hop.ingress_local_name();
                twin_level.push((&names::LAMBDA_FUNCTION, names::function_name(twin, &local)));
                twin_level.push((&names::IAM_ROLE, names::role_name(twin, &local)));
            }
        }
        for (rule, name) in twin_level {
            if let Err(error) = rule.check(&name) {
                push_first(
                    &mut out,
                    NameProblem {
                        source: Source::Twin,
                        layer: *layer,
                        provider: *provider,
                        error,
                    },
                );
            }
        }
    }
    for device in devices {
        for (layer, provider) in &layers {
            for (rule, name) in device_names(*layer, *provider, twin, device) {
                if let Err(error) = rule.check(&name) {
                    push_first(
                        &mut out,
                        NameProblem {
                            source: Source::Device(device.index),
                            layer: *layer,
                            provider: *provider,
                            error,
                        },
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(p: ProviderName) -> impl Fn(Layer) -> Option<ProviderName> {
        move |_| Some(p)
    }

    fn devices(ids: &[&str]) -> Vec<DeviceRef> {
        ids.iter()
            .enumerate()
            .map(|(i, d)| DeviceRef {
                index: i,
                id: d.to_string(),
                own_processor: true,
            })
            .collect()
    }

    #[test]
    fn the_example_twin_has_valid_names_everywhere() {
        let d = devices(&["temperature-sensor-1", "pressure-sensor-1"]);
        for p in ProviderName::ALL {
            assert_eq!(names("digital-twin", all(p), &d), vec![]);
        }
    }

    #[test]
    fn mixed_case_twin_names_are_lowercased_in_bucket_names() {
        assert_eq!(names("MyTwin", all(ProviderName::Aws), &[]), vec![]);
        assert_eq!(names("My_Twin", all(ProviderName::Aws), &[]), vec![]);
    }

    #[test]
    fn the_artifacts_bucket_is_checked_on_the_first_aws_function_layer() {
        // 45 characters: every function name fits, `<twin>-artifacts-00000000` (64) does not.
        let twin = "t".repeat(45);
        let l1_l2 = |l: Layer| {
            Some(if matches!(l, Layer::L1 | Layer::L2) {
                ProviderName::Aws
            } else {
                ProviderName::None
            })
        };
        let found = names(&twin, l1_l2, &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].layer, Layer::L2);
        assert_eq!(found[0].error.kind, "S3 bucket name");
        assert!(found[0].error.name.contains("-artifacts-"));
    }

    #[test]
    fn devices_without_their_own_processor_have_no_processor_function() {
        let id = "d".repeat(60);
        let mut d = devices(&[&id]);
        d[0].own_processor = false;
        assert_eq!(names("t", all(ProviderName::Aws), &d), vec![]);
    }

    #[test]
    fn long_device_ids_break_the_processor_function_name() {
        let id = "d".repeat(42);
        let found = names("digital-twin", all(ProviderName::Aws), &devices(&[&id]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].source, Source::Device(0));
        assert_eq!(found[0].error.kind, "Lambda function name");
        assert_eq!(found[0].error.problem, "is 66 characters long");
        let none = names("digital-twin", all(ProviderName::None), &devices(&[&id]));
        assert_eq!(none, vec![]);
    }

    #[test]
    fn twin_problems_suppress_the_same_device_problems() {
        let twin = "t".repeat(50);
        let device = "d".repeat(10);
        let found = names(&twin, all(ProviderName::Aws), &devices(&[&device]));
        assert!(found.iter().all(|p| p.source == Source::Twin), "{found:?}");
        assert!(found.iter().any(|p| p.error.kind == "Lambda function name"));
    }

    #[test]
    fn an_aws_ingress_name_counts_against_the_lambda_limit() {
        // 41 characters: the archive bucket alone fits, `<twin>-ingress-cold-to-archive` (65)
        // does not.
        let twin = "t".repeat(41);
        let on = |cold: Option<ProviderName>, archive: ProviderName| {
            move |l: Layer| match l {
                Layer::L3Cold => cold,
                Layer::L3Archive => Some(archive),
                _ => None,
            }
        };
        let alone = names(&twin, on(None, ProviderName::Aws), &[]);
        assert!(alone.is_empty(), "{alone:?}");
        let crossing = names(&twin, on(Some(ProviderName::Azure), ProviderName::Aws), &[]);
        assert_eq!(crossing.len(), 1, "{crossing:?}");
        assert!(
            crossing[0].error.name.contains("ingress-cold-to-archive"),
            "{crossing:?}"
        );
    }

    #[test]
    fn azure_function_names_must_start_with_a_letter() {
        let found = names("twin", all(ProviderName::Azure), &devices(&["1-sensor"]));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].error.kind, "Azure Function name");
    }
}
