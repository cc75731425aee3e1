//! How the event rules reach the function that evaluates them on AWS: the persister's
//! environment holds the rules' JSON, and Lambda allows 4 KB for all of a function's variables
//! together, so `validate` refuses a rule set that cannot fit instead of the deploy truncating it.

use twin_events::Rule;

use crate::names;

/// Lambda: all environment variables of a function together (keys and values), 4 KB.
pub const LAMBDA_ENV_BYTES: usize = 4 * 1024;

/// The persister's variable holding the rules (`twin_functions::env_vars::EVENT_RULES`).
pub const EVENT_RULES_VAR: &str = "EVENT_RULES";

/// The JSON the persister's `EVENT_RULES` holds: the rules as loaded, compact.
pub fn rules_json(rules: &[Rule]) -> String {
    // A Vec of plain data serializes infallibly; an empty array is the degenerate case.
    serde_json::to_string(rules).unwrap_or_else(|_| "[]".to_string())
}

/// Bytes of the persister's whole environment with `rules_json`, counting the other variables
/// at their longest: the data endpoint (`https://<14 chars>-ats.iot.<region>.amazonaws.com.cn`)
/// and the topic ARN (`arn:aws-us-gov:sns:<region>:<account>:<twin>-events`) with the longest
/// region name, so a rule set that passes here fits in every account and region.
pub fn persister_env_bytes(twin: &str, rules_json: &str) -> usize {
    const LONGEST_REGION: usize = "ap-southeast-99".len();
    let endpoint =
        "https://".len() + 14 + "-ats.iot.".len() + LONGEST_REGION + ".amazonaws.com.cn".len();
    let topic_arn = "arn:aws-us-gov:sns:".len()
        + LONGEST_REGION
        + 1
        + 12
        + 1
        + names::events_topic_name(twin).len();
    let vars = [
        ("TWIN_NAME", twin.len()),
        ("LOG_LEVEL", "DEBUG".len()),
        ("HOT_TABLE", names::table_name(twin).len()),
        ("IOT_DATA_ENDPOINT", endpoint),
        ("EVENTS_TOPIC_ARN", topic_arn),
        (EVENT_RULES_VAR, rules_json.len()),
    ];
    vars.iter().map(|(k, v)| k.len() + v).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_variable_at_its_longest() {
        let base = persister_env_bytes("t", "");
        assert_eq!(persister_env_bytes("t", "[1]"), base + 3);
        // Far below the limit with no rules; the rules get almost all of it.
        assert!(base < 300, "{base}");
        assert!(persister_env_bytes("t", &"x".repeat(LAMBDA_ENV_BYTES)) > LAMBDA_ENV_BYTES);
    }
}
