//! Deterministic cloud resource names: the single source of truth for every name the deployer
//! creates, finds again after a lost state file, and validates before any cloud call.

mod rules;

use sha2::{Digest, Sha256};

pub use rules::*;

/// The tag key every taggable resource carries, with the twin name as its value.
pub const TAG_KEY: &str = "twin";

/// The shared (not per-device) functions, by their local name.
pub const FUNCTION_ROLES: [&str; 6] = [
    "dispatcher",
    "persister",
    "hot-reader",
    "hot-to-cold-mover",
    "cold-to-archive-mover",
    "twin-connector",
];

/// The scheduled movers.
pub const MOVERS: [&str; 2] = ["hot-to-cold-mover", "cold-to-archive-mover"];

/// The S3 bucket tiers.
pub const BUCKET_TIERS: [&str; 3] = ["cold", "archive", "twinmaker"];

/// Hex digits of the account/region hash in bucket names.
pub const BUCKET_HASH_LEN: usize = 8;

/// Hex digits of the subscription hash in globally unique Azure names.
pub const AZURE_HASH_LEN: usize = 8;

/// Lambda function of a shared role: `<twin>-<role>` (e.g. `digital-twin-persister`).
pub fn function_name(twin: &str, role: &str) -> String {
    format!("{twin}-{role}")
}

/// The separator between the twin name and the device id in every per-device name.
///
/// Per-device names are `<twin>--<device>[-<suffix>]`, and [`TWIN_NAME`] forbids `--` inside
/// a twin name and a trailing `-`. So, reading a per-device name from the left, the first `--`
/// is always the end of the twin name: any `-` the twin name holds is followed by a character
/// other than `-`, and the twin name cannot end with `-` to form a `--` with the separator.
/// The twin name is therefore everything before the first `--`, the device id is the rest up
/// to the fixed suffix, so no two (twin, device) pairs give the same name. Twin-level names
/// (`<twin>-<role>`) never contain `--` at the twin's end either (roles start with a letter),
/// so they cannot equal a per-device name of any twin.
pub const DEVICE_SEPARATOR: &str = "--";

/// The prefix of every per-device name of a twin (thing, IoT policy, processor function, its
/// role and log group): `<twin>--`. A pattern `<twin>--*` cannot match another twin's names,
/// per-device or shared (see [`DEVICE_SEPARATOR`]), so it is safe in IAM resource ARNs.
pub fn per_device_prefix(twin: &str) -> String {
    format!("{twin}{DEVICE_SEPARATOR}")
}

/// Local (CLI) name of a device's processor: `<device>-processor`.
pub fn processor_local_name(device: &str) -> String {
    format!("{device}-processor")
}

/// Local (CLI) name of the shared processor function.
pub const SHARED_PROCESSOR: &str = "processor";

/// Lambda function of a device's own processor: `<twin>--<device>-processor` (for devices that
/// name a `processor` crate; the others use [`shared_processor_function_name`]).
pub fn processor_function_name(twin: &str, device: &str) -> String {
    format!(
        "{}{}",
        per_device_prefix(twin),
        processor_local_name(device)
    )
}

/// IAM role of a device's own processor function: the function's name,
/// `<twin>--<device>-processor`.
pub fn processor_role_name(twin: &str, device: &str) -> String {
    processor_function_name(twin, device)
}

/// The one processor function shared by every device that does not name its own processor
/// crate: `<twin>-processor`.
pub fn shared_processor_function_name(twin: &str) -> String {
    function_name(twin, SHARED_PROCESSOR)
}

/// The cloud function name of a local (CLI) function name: a shared role in
/// [`FUNCTION_ROLES`] or [`SHARED_PROCESSOR`] gives `<twin>-<role>`, `<device>-processor` gives
/// [`processor_function_name`].
pub fn cloud_function_name(twin: &str, local: &str) -> String {
    if local == SHARED_PROCESSOR
        || FUNCTION_ROLES.contains(&local)
        || local.starts_with(EVENT_FUNCTION_PREFIX)
    {
        return function_name(twin, local);
    }
    match local.strip_suffix("-processor") {
        Some(device) if !device.is_empty() => processor_function_name(twin, device),
        _ => function_name(twin, local),
    }
}

/// The first [`BUCKET_HASH_LEN`] hex digits of sha256(`<account_id>/<region>/<twin>`): the
/// exact twin name is hashed, so twins whose names differ only in case (`MyTwin`, `mytwin`)
/// get different bucket names although the names themselves are lowercased.
pub fn bucket_hash(twin: &str, account_id: &str, region: &str) -> String {
    short_hash(&format!("{account_id}/{region}/{twin}"), BUCKET_HASH_LEN)
}

/// S3 bucket of a tier (`cold`, `archive`, `twinmaker`, [`ARTIFACTS_TIER`]):
/// `<twin, lowercased>-<tier>-<hash>`, globally unique through the account/region/twin hash.
pub fn bucket_name(twin: &str, tier: &str, account_id: &str, region: &str) -> String {
    bucket_name_with_hash(twin, tier, &bucket_hash(twin, account_id, region))
}

/// `<twin, lowercased>-<tier>-<hash>` for a hash already computed (or a placeholder of the same
/// length when validating before the account is known). S3 allows only lowercase letters, so
/// the twin name is lowercased and its `_` become `-`; [`bucket_hash`] keeps such names apart.
pub fn bucket_name_with_hash(twin: &str, tier: &str, hash: &str) -> String {
    format!("{}-{tier}-{hash}", bucket_stem(twin))
}

/// The twin name as S3 allows it: lowercase, `_` turned into `-`.
fn bucket_stem(twin: &str) -> String {
    twin.chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// Bucket "tier" of the twin's function-code (artifacts) bucket.
pub const ARTIFACTS_TIER: &str = "artifacts";

/// IoT thing of a device: `<twin>--<device>`.
pub fn thing_name(twin: &str, device: &str) -> String {
    format!("{}{device}", per_device_prefix(twin))
}

/// MQTT client id of a device: its thing name, `<twin>--<device>`, so that it is unique across
/// every twin in the account (AWS IoT disconnects an older session with the same client id).
pub fn mqtt_client_id(twin: &str, device: &str) -> String {
    thing_name(twin, device)
}

/// IoT policy of a device: `<twin>--<device>-policy`.
pub fn iot_policy_name(twin: &str, device: &str) -> String {
    format!("{}-policy", thing_name(twin, device))
}

/// IoT topic rule forwarding telemetry to the dispatcher: `<twin>_iot_data`, with every `-` of
/// the twin name turned into `_` because rule names allow only `[A-Za-z0-9_]`.
pub fn topic_rule_name(twin: &str) -> String {
    format!("{}_iot_data", twin.replace('-', "_"))
}

/// DynamoDB hot table: `<twin>-hot`.
pub fn table_name(twin: &str) -> String {
    format!("{twin}-hot")
}

/// IAM role of a shared function or service (`persister`, `processor`, `twinmaker`,
/// `grafana`, ...): `<twin>-<role>`. A device's own processor has [`processor_role_name`].
///
/// IAM role names are unique regardless of case: twins `MyTwin` and `mytwin` in one account
/// would share their roles.
pub fn role_name(twin: &str, role: &str) -> String {
    format!("{twin}-{role}")
}

/// The topic a device publishes to: `<twin>/iot-data/<device>`.
pub fn telemetry_topic(twin: &str, device: &str) -> String {
    format!("{twin}/iot-data/{device}")
}

/// The topic a device receives event-rule feedback on, and only it may read:
/// `<twin>/feedback/<device>` (beside the telemetry topic's `<twin>/iot-data/<device>`).
pub fn feedback_topic(twin: &str, device: &str) -> String {
    format!("{twin}/feedback/{device}")
}

/// Prefix of the local name of an event rule's function deployed with the twin.
pub const EVENT_FUNCTION_PREFIX: &str = "event-";

/// Local (CLI) name of an event rule's function deployed with the twin (`autoDeploy`):
/// `event-<crate>`, so it can never take a shared role's or a processor's name.
pub fn event_function_local_name(function: &str) -> String {
    format!("{EVENT_FUNCTION_PREFIX}{function}")
}

/// Lambda function of an event rule's function deployed with the twin: `<twin>-event-<crate>`.
pub fn event_function_name(twin: &str, function: &str) -> String {
    function_name(twin, &event_function_local_name(function))
}

/// SNS topic (AWS) of the twin's event notifications: `<twin>-events`.
pub fn events_topic_name(twin: &str) -> String {
    format!("{twin}-events")
}

/// The topic filter of the telemetry rule: `<twin>/iot-data/+`.
pub fn telemetry_topic_filter(twin: &str) -> String {
    format!("{twin}/iot-data/+")
}

/// EventBridge rule that runs a mover daily: `<twin>-<mover>-schedule`.
pub fn schedule_rule_name(twin: &str, mover: &str) -> String {
    format!("{twin}-{mover}-schedule")
}

/// SQS dead-letter queue of one layer's failed messages (the topic rule's error action and the
/// on-failure destination of the layer's asynchronously invoked functions):
/// `<twin>-<layer>-dead-letters`, e.g. `digital-twin-l2-dead-letters`.
pub fn dead_letter_queue_name(twin: &str, layer_short: &str) -> String {
    format!("{twin}-{layer_short}-dead-letters")
}

/// IAM role the topic rule's error action sends with: `<twin>-iot-rule`.
pub const IOT_RULE_ROLE: &str = "iot-rule";

/// API Gateway HTTP API in front of the hot reader: `<twin>-hot-reader-api`.
pub fn http_api_name(twin: &str) -> String {
    format!("{twin}-hot-reader-api")
}

/// IoT TwinMaker workspace: `<twin>-twinmaker`.
pub fn twinmaker_workspace_id(twin: &str) -> String {
    format!("{twin}-twinmaker")
}

/// TwinMaker component type of a device: `<twin>-<device>` (the established tool's ids, so its
/// hierarchy files that name a `componentTypeId` keep resolving).
pub fn component_type_id(twin: &str, device: &str) -> String {
    format!("{twin}-{device}")
}

/// Amazon Managed Grafana workspace: `<twin>-grafana`.
pub fn grafana_workspace_name(twin: &str) -> String {
    format!("{twin}-grafana")
}

/// Azure resource group owning all of a twin's Azure resources: `<twin>-rg`.
pub fn resource_group(twin: &str) -> String {
    format!("{twin}-rg")
}

/// The twin's user-assigned managed identity: `<twin>-identity` (identity names are unique
/// within their resource group only, so no hash is needed).
pub fn managed_identity_name(twin: &str) -> String {
    format!("{twin}-identity")
}

/// Name of a blob container of the L3 storage account (`cold`, `archive`): fixed, since the
/// account is the twin's own.
pub fn blob_container_name(tier: &str) -> String {
    tier.to_string()
}

/// The first [`AZURE_HASH_LEN`] hex digits of sha256(`<subscription_id>/<twin>`).
pub fn azure_hash(twin: &str, subscription_id: &str) -> String {
    short_hash(&format!("{subscription_id}/{twin}"), AZURE_HASH_LEN)
}

/// Azure storage account (3-24 lowercase letters and digits, globally unique): the twin name's
/// letters and digits, lowercased and cut to 16, followed by the subscription hash.
pub fn storage_account_name(twin: &str, subscription_id: &str) -> String {
    let stem: String = twin
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(24 - AZURE_HASH_LEN)
        .collect();
    format!("{stem}{}", azure_hash(twin, subscription_id))
}

/// The Function App's own host and deployment storage account (apart from L3's, which may be on
/// another cloud): the twin name's letters and digits cut to 14, `fn`, then the subscription
/// hash, so it never equals [`storage_account_name`].
pub fn function_storage_account_name(twin: &str, subscription_id: &str) -> String {
    let stem: String = twin
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(24 - AZURE_HASH_LEN - 2)
        .collect();
    format!("{stem}fn{}", azure_hash(twin, subscription_id))
}

/// A globally unique Azure DNS-label name (IoT Hub `iot`, Function App `func`, Cosmos DB `cosmos`,
/// Digital Twins `adt`, Grafana `graf`): `<twin stem>-<kind>-<hash>` in at most 23 lowercase
/// characters, so it satisfies [`AZURE_DNS_NAME`] for any twin name that starts with a letter.
pub fn azure_unique_name(twin: &str, kind: &str, subscription_id: &str) -> String {
    let room = AZURE_DNS_NAME
        .max
        .saturating_sub(kind.len() + AZURE_HASH_LEN + 2);
    let mut stem: String = twin
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    // DNS labels must start with a letter; the stem is ASCII, so truncating by bytes is safe.
    if !stem.starts_with(|c: char| c.is_ascii_lowercase()) {
        stem.insert(0, 't');
    }
    stem.truncate(room);
    let stem = stem.trim_end_matches('-');
    format!("{stem}-{kind}-{}", azure_hash(twin, subscription_id))
}

fn short_hash(text: &str, len: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(len);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_app_storage_account_is_apart_from_l3s() {
        let sub = "00000000-0000-0000-0000-0000000000aa";
        for twin in ["t", "a-very-long-digital-twin-name"] {
            let name = function_storage_account_name(twin, sub);
            assert!(name.len() <= 24, "{name}");
            assert!(name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
            assert_ne!(name, storage_account_name(twin, sub));
        }
    }

    #[test]
    fn function_names() {
        assert_eq!(
            function_name("digital-twin", "dispatcher"),
            "digital-twin-dispatcher"
        );
        assert_eq!(
            processor_function_name("digital-twin", "temperature-sensor-1"),
            "digital-twin--temperature-sensor-1-processor"
        );
        assert_eq!(
            processor_role_name("digital-twin", "temperature-sensor-1"),
            "digital-twin--temperature-sensor-1-processor"
        );
        assert_eq!(
            shared_processor_function_name("digital-twin"),
            "digital-twin-processor"
        );
        assert_eq!(per_device_prefix("digital-twin"), "digital-twin--");
        assert_eq!(processor_local_name("p-1"), "p-1-processor");
        assert_eq!(cloud_function_name("t", "persister"), "t-persister");
        assert_eq!(cloud_function_name("t", "processor"), "t-processor");
        assert_eq!(
            cloud_function_name("t", "p-1-processor"),
            "t--p-1-processor"
        );
        for role in FUNCTION_ROLES {
            assert!(LAMBDA_FUNCTION
                .check(&function_name("digital-twin", role))
                .is_ok());
            assert_eq!(cloud_function_name("t", role), function_name("t", role));
        }
    }

    /// Every per-device name of each (twin, device) pair, tagged with its kind.
    fn per_device_names(twin: &str, device: &str) -> Vec<(&'static str, String)> {
        vec![
            ("thing", thing_name(twin, device)),
            ("policy", iot_policy_name(twin, device)),
            ("processor", processor_function_name(twin, device)),
            ("role", processor_role_name(twin, device)),
            ("client id", mqtt_client_id(twin, device)),
        ]
    }

    #[test]
    fn per_device_names_never_collide_across_twins() {
        // Pairs that a plain `-` join confuses: a/b-x vs a-b/x, separators at the edges, `_`
        // next to `-`, ids that themselves hold `--`, and twins that prefix each other.
        let twins = ["a", "a-b", "a_", "a_b", "ab", "a-b-c", "A", "a-x"];
        let devices = [
            "b-x",
            "x",
            "-x",
            "_x",
            "b",
            "x-",
            "--x",
            "b--x",
            "-",
            "_",
            "c-x",
            "x-processor",
            "policy",
            "b-x-policy",
            "1",
        ];
        let mut seen: std::collections::HashMap<(&str, String), (&str, &str)> =
            std::collections::HashMap::new();
        for twin in twins {
            assert!(TWIN_NAME.check(twin).is_ok(), "{twin}");
            for device in devices {
                assert!(DEVICE_ID.check(device).is_ok(), "{device}");
                for (kind, name) in per_device_names(twin, device) {
                    assert!(name.starts_with(&per_device_prefix(twin)), "{name}");
                    if let Some(first) = seen.insert((kind, name.clone()), (twin, device)) {
                        panic!("{kind} `{name}` of {twin}/{device} also belongs to {first:?}");
                    }
                }
            }
            // No other twin's per-device names start with this twin's prefix.
            for other in twins.iter().filter(|o| **o != twin) {
                for device in devices {
                    let name = thing_name(other, device);
                    assert!(!name.starts_with(&per_device_prefix(twin)), "{name}");
                }
            }
            // Shared names hold no `--`, so they never equal a per-device name.
            for role in FUNCTION_ROLES.iter().chain(&[SHARED_PROCESSOR]) {
                assert!(!function_name(twin, role).contains(DEVICE_SEPARATOR));
            }
        }
        // The old `-` join made these collide.
        assert_ne!(thing_name("a", "b-x"), thing_name("a-b", "x"));
        assert_eq!(thing_name("a", "b-x"), "a--b-x");
        assert_eq!(thing_name("a-b", "x"), "a-b--x");
    }

    #[test]
    fn twin_names_that_would_break_injectivity_are_rejected() {
        let e = TWIN_NAME.check("a--b").map_err(|e| e.problem);
        assert_eq!(e, Err("contains `--`".to_string()));
        let e = TWIN_NAME.check("a-").map_err(|e| e.problem);
        assert_eq!(e, Err("ends with `-`".to_string()));
        assert!(TWIN_NAME.check("a-b_").is_ok());
    }

    #[test]
    fn bucket_names_hash_account_region_and_exact_twin() {
        // sha256("123456789012/us-east-1/digital-twin") starts with these digits (computed
        // independently with `printf %s 123456789012/us-east-1/digital-twin | sha256sum`).
        assert_eq!(
            bucket_hash("digital-twin", "123456789012", "us-east-1"),
            "0c96d59d"
        );
        let name = bucket_name("digital-twin", "cold", "123456789012", "us-east-1");
        assert_eq!(name, "digital-twin-cold-0c96d59d");
        assert!(S3_BUCKET.check(&name).is_ok());
        assert_ne!(
            bucket_hash("t", "123456789012", "us-east-1"),
            bucket_hash("t", "123456789012", "eu-west-1")
        );
        assert_eq!(bucket_hash("t", "a", "b").len(), BUCKET_HASH_LEN);
        // Mixed case: lowercased name, exact twin in the hash (`printf %s
        // 123456789012/us-east-1/MyTwin | sha256sum` gives 4e2acffe..., `.../mytwin` b712eacf...).
        let upper = bucket_name("MyTwin", "cold", "123456789012", "us-east-1");
        let lower = bucket_name("mytwin", "cold", "123456789012", "us-east-1");
        assert_eq!(upper, "mytwin-cold-4e2acffe");
        assert_eq!(lower, "mytwin-cold-b712eacf");
        assert_eq!(
            bucket_name("My_Twin", ARTIFACTS_TIER, "1", "r"),
            format!("my-twin-artifacts-{}", bucket_hash("My_Twin", "1", "r"))
        );
        for tier in BUCKET_TIERS.iter().chain(&[ARTIFACTS_TIER]) {
            assert!(S3_BUCKET
                .check(&bucket_name("Twin_1", tier, "1", "r"))
                .is_ok());
        }
    }

    #[test]
    fn iot_names() {
        assert_eq!(thing_name("t", "d"), "t--d");
        assert_eq!(mqtt_client_id("t", "d"), "t--d");
        assert_eq!(iot_policy_name("t", "d"), "t--d-policy");
        assert_eq!(topic_rule_name("digital-twin"), "digital_twin_iot_data");
        assert!(IOT_TOPIC_RULE
            .check(&topic_rule_name("digital-twin"))
            .is_ok());
        assert_eq!(
            telemetry_topic("digital-twin", "pressure-sensor-1"),
            "digital-twin/iot-data/pressure-sensor-1"
        );
        assert_eq!(
            telemetry_topic_filter("digital-twin"),
            "digital-twin/iot-data/+"
        );
    }

    #[test]
    fn other_aws_names() {
        assert_eq!(table_name("t"), "t-hot");
        assert_eq!(role_name("t", "persister"), "t-persister");
        assert_eq!(
            schedule_rule_name("t", "hot-to-cold-mover"),
            "t-hot-to-cold-mover-schedule"
        );
        assert_eq!(http_api_name("t"), "t-hot-reader-api");
        assert_eq!(twinmaker_workspace_id("t"), "t-twinmaker");
        assert_eq!(component_type_id("t", "d"), "t-d");
        assert_eq!(grafana_workspace_name("t"), "t-grafana");
    }

    #[test]
    fn azure_names_are_always_valid() {
        assert_eq!(resource_group("digital-twin"), "digital-twin-rg");
        assert_eq!(
            managed_identity_name("digital-twin"),
            "digital-twin-identity"
        );
        assert_eq!(blob_container_name("archive"), "archive");
        for twin in [
            "digital-twin",
            "A",
            "Very-Long_Twin-Name-With-Many-Parts-123",
            "x9",
        ] {
            let sa = storage_account_name(twin, "sub-1");
            assert!(AZURE_STORAGE_ACCOUNT.check(&sa).is_ok(), "{sa}");
            for kind in ["iot", "func", "cosmos", "adt", "graf"] {
                let n = azure_unique_name(twin, kind, "sub-1");
                assert!(AZURE_DNS_NAME.check(&n).is_ok(), "{n}");
            }
        }
        assert_eq!(
            storage_account_name("digital-twin", "sub-1"),
            format!("digitaltwin{}", azure_hash("digital-twin", "sub-1"))
        );
        assert_ne!(
            storage_account_name("digital-twin", "sub-1"),
            storage_account_name("digital-twin", "sub-2")
        );
    }
}
