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

/// Local (CLI) name of a device's processor: `<device>-processor`.
pub fn processor_local_name(device: &str) -> String {
    format!("{device}-processor")
}

/// Lambda function of a device's processor: `<twin>-<device>-processor`.
pub fn processor_function_name(twin: &str, device: &str) -> String {
    function_name(twin, &processor_local_name(device))
}

/// The first [`BUCKET_HASH_LEN`] hex digits of sha256(`<account_id>/<region>`).
pub fn bucket_hash(account_id: &str, region: &str) -> String {
    short_hash(&format!("{account_id}/{region}"), BUCKET_HASH_LEN)
}

/// S3 bucket of a tier (`cold`, `archive`, `twinmaker`): `<twin>-<tier>-<hash>`, globally unique
/// through the account/region hash.
pub fn bucket_name(twin: &str, tier: &str, account_id: &str, region: &str) -> String {
    bucket_name_with_hash(twin, tier, &bucket_hash(account_id, region))
}

/// `<twin>-<tier>-<hash>` for a hash already computed (or a placeholder of the same length when
/// validating before the account is known).
pub fn bucket_name_with_hash(twin: &str, tier: &str, hash: &str) -> String {
    format!("{twin}-{tier}-{hash}")
}

/// IoT thing of a device: `<twin>-<device>`.
pub fn thing_name(twin: &str, device: &str) -> String {
    format!("{twin}-{device}")
}

/// IoT policy of a device: `<twin>-<device>-policy`.
pub fn iot_policy_name(twin: &str, device: &str) -> String {
    format!("{twin}-{device}-policy")
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

/// IAM role of a function or service (`persister`, `<device>-processor`, `twinmaker`,
/// `grafana`, ...): `<twin>-<role>`.
pub fn role_name(twin: &str, role: &str) -> String {
    format!("{twin}-{role}")
}

/// The topic a device publishes to: `<twin>/iot-data/<device>`.
pub fn telemetry_topic(twin: &str, device: &str) -> String {
    format!("{twin}/iot-data/{device}")
}

/// The topic filter of the telemetry rule: `<twin>/iot-data/+`.
pub fn telemetry_topic_filter(twin: &str) -> String {
    format!("{twin}/iot-data/+")
}

/// EventBridge rule that runs a mover daily: `<twin>-<mover>-schedule`.
pub fn schedule_rule_name(twin: &str, mover: &str) -> String {
    format!("{twin}-{mover}-schedule")
}

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
    fn function_names() {
        assert_eq!(
            function_name("digital-twin", "dispatcher"),
            "digital-twin-dispatcher"
        );
        assert_eq!(
            processor_function_name("digital-twin", "temperature-sensor-1"),
            "digital-twin-temperature-sensor-1-processor"
        );
        assert_eq!(processor_local_name("p-1"), "p-1-processor");
        for role in FUNCTION_ROLES {
            assert!(LAMBDA_FUNCTION
                .check(&function_name("digital-twin", role))
                .is_ok());
        }
    }

    #[test]
    fn bucket_names_hash_account_and_region() {
        // sha256("123456789012/us-east-1") starts with these digits (computed independently
        // with `printf %s 123456789012/us-east-1 | sha256sum`).
        assert_eq!(bucket_hash("123456789012", "us-east-1"), "eb805c6c");
        let name = bucket_name("digital-twin", "cold", "123456789012", "us-east-1");
        assert_eq!(name, "digital-twin-cold-eb805c6c");
        assert!(S3_BUCKET.check(&name).is_ok());
        assert_ne!(
            bucket_hash("123456789012", "us-east-1"),
            bucket_hash("123456789012", "eu-west-1")
        );
        assert_eq!(bucket_hash("a", "b").len(), BUCKET_HASH_LEN);
    }

    #[test]
    fn iot_names() {
        assert_eq!(thing_name("t", "d"), "t-d");
        assert_eq!(iot_policy_name("t", "d"), "t-d-policy");
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
