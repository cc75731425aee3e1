//! The broken-config corpus: each case writes a base config that loads cleanly, overrides some
//! files, and asserts the exact diagnostics (file, line:column, JSON path, message) it must give.

use std::path::Path;

use twin_config::{load_dir, Diagnostic};

const CONFIG: &str = r#"{
  "digital_twin_name": "t",
  "hot_storage_size_in_days": 1,
  "cold_storage_size_in_days": 2
}"#;

const DEVICES: &str = r#"[
  {"id": "d1", "properties": [{"name": "p", "dataType": "DOUBLE"}]}
]"#;

const PROVIDERS_AWS: &str = r#"{
  "layer_1_provider": "aws",
  "layer_2_provider": "aws",
  "layer_3_hot_provider": "aws",
  "layer_3_cold_provider": "aws",
  "layer_3_archive_provider": "aws",
  "layer_4_provider": "aws",
  "layer_5_provider": "aws"
}"#;

/// What a file of the case holds: text, raw bytes, or nothing at all.
enum File<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
    Absent,
}

/// Loads the base config with `overrides` applied and returns the rendered diagnostics, with
/// the temp directory's path replaced by `{dir}`.
fn diagnostics(overrides: &[(&str, File<'_>)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    write_case(dir.path(), overrides);
    match load_dir(dir.path()) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .iter()
            .map(|d| {
                d.to_string()
                    .replace(&dir.path().display().to_string(), "{dir}")
            })
            .collect(),
    }
}

fn write_case(dir: &Path, overrides: &[(&str, File<'_>)]) {
    let base = [
        ("config.json", CONFIG),
        ("config_iot_devices.json", DEVICES),
        ("config_providers.json", PROVIDERS_AWS),
    ];
    for (name, text) in base {
        std::fs::write(dir.join(name), text).expect("write base file");
    }
    for (name, file) in overrides {
        let path = dir.join(name);
        match file {
            File::Text(t) => std::fs::write(&path, t).expect("write file"),
            File::Bytes(b) => std::fs::write(&path, b).expect("write file"),
            File::Absent => std::fs::remove_file(&path).expect("remove file"),
        }
    }
}

#[track_caller]
fn check(overrides: &[(&str, File<'_>)], expected: &[&str]) {
    let got = diagnostics(overrides);
    assert_eq!(got, expected, "\n--- got ---\n{}\n", got.join("\n"));
}

use File::{Absent, Bytes, Text};

#[test]
fn the_base_config_loads() {
    check(&[], &[]);
}

#[test]
fn diagnostics_carry_file_path_position_and_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_case(dir.path(), &[("config.json", Text("{\"digital_twin_name\": 7,\n \"hot_storage_size_in_days\": 1, \"cold_storage_size_in_days\": 2}"))]);
    let problems = load_dir(dir.path()).expect_err("must fail");
    assert_eq!(
        problems.0,
        vec![Diagnostic {
            file: "config.json".to_string(),
            path: "$.digital_twin_name".to_string(),
            line: 1,
            column: 23,
            message: "expected the twin's name, a string, found a number".to_string(),
            item: None,
        }]
    );
    assert_eq!(
        problems.to_string(),
        "config.json:1:23: $.digital_twin_name: expected the twin's name, a string, found a number"
    );
}

// ---- files ----

#[test]
fn missing_required_file() {
    check(
        &[("config.json", Absent)],
        &["config.json: $: required file is missing: expected {dir}/config.json"],
    );
}

#[test]
fn every_missing_file_is_reported_at_once() {
    check(
        &[
            ("config.json", Absent),
            ("config_iot_devices.json", Absent),
            ("config_providers.json", Absent),
        ],
        &[
            "config.json: $: required file is missing: expected {dir}/config.json",
            "config_iot_devices.json: $: required file is missing: expected {dir}/config_iot_devices.json",
            "config_providers.json: $: required file is missing: expected {dir}/config_providers.json",
        ],
    );
}

#[test]
fn not_utf8() {
    check(
        &[("config.json", Bytes(b"{\"digital_twin_name\": \"\xff\"}"))],
        &["config.json: $: the file is not UTF-8 text (invalid byte at offset 23)"],
    );
}

#[test]
fn syntax_error_trailing_comma() {
    check(
        &[("config.json", Text(r#"{"digital_twin_name": "t",}"#))],
        &["config.json:1:27: $: invalid JSON: trailing comma"],
    );
}

#[test]
fn syntax_error_unexpected_end() {
    check(
        &[("config_iot_devices.json", Text("[\n  {\"id\": \"d1\""))],
        &["config_iot_devices.json:2:13: $: invalid JSON: EOF while parsing an object"],
    );
}

#[test]
fn syntax_error_column_counts_characters() {
    check(
        &[("config.json", Text(r#"{"x": "äöü" "y"}"#))],
        &["config.json:1:13: $: invalid JSON: expected `,` or `}`"],
    );
}

#[test]
fn duplicate_json_key() {
    check(
        &[(
            "config.json",
            Text(
                r#"{
  "digital_twin_name": "t",
  "digital_twin_name": "u",
  "hot_storage_size_in_days": 1,
  "cold_storage_size_in_days": 2
}"#,
            ),
        )],
        &["config.json:3:3: $.digital_twin_name: duplicate key `digital_twin_name` (first at 2:3); each key may appear once per object"],
    );
}

#[test]
fn problems_in_several_files_are_reported_together_in_file_order() {
    check(
        &[
            ("config_providers.json", Text(r#"{"layer_1_provider": "gcp"}"#)),
            ("config.json", Text("{")),
            ("config_iot_devices.json", Absent),
        ],
        &[
            "config.json:1:1: $: invalid JSON: EOF while parsing an object",
            "config_iot_devices.json: $: required file is missing: expected {dir}/config_iot_devices.json",
            "config_providers.json:1:1: $.layer_2_provider: missing required key `layer_2_provider` (one of aws, azure, none)",
            "config_providers.json:1:1: $.layer_3_hot_provider: missing required key `layer_3_hot_provider` (one of aws, azure, none)",
            "config_providers.json:1:1: $.layer_3_cold_provider: missing required key `layer_3_cold_provider` (one of aws, azure, none)",
            "config_providers.json:1:1: $.layer_3_archive_provider: missing required key `layer_3_archive_provider` (one of aws, azure, none)",
            "config_providers.json:1:1: $.layer_4_provider: missing required key `layer_4_provider` (one of aws, azure, none)",
            "config_providers.json:1:1: $.layer_5_provider: missing required key `layer_5_provider` (one of aws, azure, none)",
            "config_providers.json:1:22: $.layer_1_provider: unknown provider `gcp`; allowed: aws, azure, none",
        ],
    );
}

// ---- config.json ----

#[test]
fn config_root_is_not_an_object() {
    check(
        &[("config.json", Text("[]"))],
        &["config.json:1:1: $: expected an object with the twin settings, found an array"],
    );
}

#[test]
fn config_unknown_key() {
    check(
        &[(
            "config.json",
            Text(
                r#"{"digital_twin_name": "t", "hot_storage_size_in_days": 1, "cold_storage_size_in_days": 2,
 "aws_region": "us-east-1"}"#,
            ),
        )],
        &["config.json:2:2: $.aws_region: unknown key `aws_region`; allowed keys: `digital_twin_name`, `hot_storage_size_in_days`, `cold_storage_size_in_days`, `mode`, `expected_load`"],
    );
}

#[test]
fn config_missing_twin_name() {
    check(
        &[(
            "config.json",
            Text(r#"{"hot_storage_size_in_days": 1, "cold_storage_size_in_days": 2}"#),
        )],
        &["config.json:1:1: $.digital_twin_name: missing required key `digital_twin_name` (the twin's name, a string)"],
    );
}

#[test]
fn config_twin_name_with_a_space() {
    check(
        &[(
            "config.json",
            Text(
                r#"{
  "digital_twin_name": "my twin",
  "hot_storage_size_in_days": 1,
  "cold_storage_size_in_days": 2
}"#,
            ),
        )],
        &["config.json:2:24: $.digital_twin_name: the twin name `my twin` contains ' '; twin names are 1-63 characters of A-Z a-z 0-9 - _ starting with a letter, not ending with - and without -- (which separates twin and device in per-device names)"],
    );
}

#[test]
fn config_days_of_wrong_type_and_range() {
    check(
        &[(
            "config.json",
            Text(
                r#"{"digital_twin_name": "t",
 "hot_storage_size_in_days": 0,
 "cold_storage_size_in_days": "90"}"#,
            ),
        )],
        &[
            "config.json:2:30: $.hot_storage_size_in_days: expected a whole number of days from 1 to 4294967295, found 0",
            "config.json:3:31: $.cold_storage_size_in_days: expected a whole number of days from 1 to 4294967295, found a string",
        ],
    );
}

#[test]
fn config_fractional_days() {
    check(
        &[(
            "config.json",
            Text(
                r#"{"digital_twin_name": "t",
 "hot_storage_size_in_days": 1.5,
 "cold_storage_size_in_days": 2}"#,
            ),
        )],
        &["config.json:2:30: $.hot_storage_size_in_days: expected a whole number of days from 1 to 4294967295, found 1.5"],
    );
}

#[test]
fn config_hot_not_less_than_cold() {
    check(
        &[(
            "config.json",
            Text(
                r#"{"digital_twin_name": "t", "hot_storage_size_in_days": 90, "cold_storage_size_in_days": 30}"#,
            ),
        )],
        &["config.json:1:56: $.hot_storage_size_in_days: hot_storage_size_in_days (90) must not be greater than cold_storage_size_in_days (30): data leaves hot storage before it leaves cold storage"],
    );
}

#[test]
fn config_mode_is_case_sensitive() {
    check(
        &[(
            "config.json",
            Text(
                r#"{
  "digital_twin_name": "t",
  "hot_storage_size_in_days": 1,
  "cold_storage_size_in_days": 2,
  "mode": "debug"
}"#,
            ),
        )],
        &["config.json:5:11: $.mode: unknown mode `debug` (did you mean `DEBUG`? values are case-sensitive); allowed: DEBUG, INFO"],
    );
}

#[test]
fn config_twin_name_with_a_double_dash_or_a_trailing_dash() {
    let twin = |name: &str| {
        format!(
            "{{\"digital_twin_name\": \"{name}\", \"hot_storage_size_in_days\": 1, \"cold_storage_size_in_days\": 2}}"
        )
    };
    check(
        &[("config.json", Text(&twin("plant--a")))],
        &["config.json:1:23: $.digital_twin_name: the twin name `plant--a` contains `--`; twin names are 1-63 characters of A-Z a-z 0-9 - _ starting with a letter, not ending with - and without -- (which separates twin and device in per-device names)"],
    );
    check(
        &[("config.json", Text(&twin("plant-")))],
        &["config.json:1:23: $.digital_twin_name: the twin name `plant-` ends with `-`; twin names are 1-63 characters of A-Z a-z 0-9 - _ starting with a letter, not ending with - and without -- (which separates twin and device in per-device names)"],
    );
}

#[test]
fn config_long_twin_name_breaks_every_rule_it_breaks() {
    let twin = "t".repeat(50);
    let config = format!(
        "{{\n  \"digital_twin_name\": \"{twin}\",\n  \"hot_storage_size_in_days\": 1,\n  \"cold_storage_size_in_days\": 2\n}}"
    );
    let at = "config.json:2:24: $.digital_twin_name:";
    check(
        &[("config.json", Text(&config))],
        &[
            &format!("{at} the Lambda function name `{twin}-hot-to-cold-mover` is 68 characters long; Lambda function names are 1-64 characters of A-Z a-z 0-9 - _ (needed by layer l3-hot on aws)"),
            &format!("{at} the EventBridge rule name `{twin}-hot-to-cold-mover-schedule` is 77 characters long; EventBridge rule names are 1-64 characters of A-Z a-z 0-9 . - _ (needed by layer l3-hot on aws)"),
            &format!("{at} the S3 bucket name `{twin}-cold-00000000` is 64 characters long; S3 bucket names are 3-63 characters of a-z 0-9 -, starting and ending with a letter or digit (needed by layer l3-cold on aws)"),
            &format!("{at} the IAM role name `{twin}-cold-to-archive-mover` is 72 characters long; IAM role names are 1-64 characters of A-Z a-z 0-9 + = , . @ - _ (needed by layer l3-cold on aws)"),
        ],
    );
}

#[test]
fn names_are_not_checked_for_layers_that_are_not_deployed() {
    let twin = "T".repeat(50);
    let config = format!(
        "{{\"digital_twin_name\": \"{twin}\", \"hot_storage_size_in_days\": 1, \"cold_storage_size_in_days\": 2}}"
    );
    let none = PROVIDERS_AWS.replace("\"aws\"", "\"none\"");
    check(
        &[
            ("config.json", Text(&config)),
            ("config_providers.json", Text(&none)),
        ],
        &[],
    );
}

// ---- config_iot_devices.json ----

#[test]
fn devices_root_is_not_an_array() {
    check(
        &[("config_iot_devices.json", Text("{}"))],
        &["config_iot_devices.json:1:1: $: expected an array of devices, found an object"],
    );
}

#[test]
fn devices_empty() {
    check(
        &[("config_iot_devices.json", Text("[]"))],
        &["config_iot_devices.json:1:1: $: at least one device is required"],
    );
}

#[test]
fn device_is_not_an_object() {
    check(
        &[("config_iot_devices.json", Text(r#"["d1"]"#))],
        &["config_iot_devices.json:1:2: $[0]: expected a device object, found a string"],
    );
}

#[test]
fn device_missing_id_and_properties() {
    check(
        &[("config_iot_devices.json", Text("[\n  {\"constProperties\": []}\n]"))],
        &[
            "config_iot_devices.json:2:3: $[0].id: missing required key `id` (the device id, a string)",
            "config_iot_devices.json:2:3: $[0].properties: missing required key `properties` (an array of {\"name\", \"dataType\"} objects, at least one)",
        ],
    );
}

#[test]
fn device_duplicate_ids() {
    check(
        &[(
            "config_iot_devices.json",
            Text(
                r#"[
  {"id": "d1", "properties": [{"name": "p", "dataType": "DOUBLE"}]},
  {"id": "d1", "properties": [{"name": "p", "dataType": "DOUBLE"}]}
]"#,
            ),
        )],
        &["config_iot_devices.json:3:10: $[1].id (device `d1`): duplicate device id `d1` (first defined at 2:10); device ids must be unique"],
    );
}

#[test]
fn device_id_with_a_slash() {
    check(
        &[(
            "config_iot_devices.json",
            Text(r#"[{"id": "room/d1", "properties": [{"name": "p", "dataType": "DOUBLE"}]}]"#),
        )],
        &["config_iot_devices.json:1:9: $[0].id (device `room/d1`): the device id `room/d1` contains `/`; device ids are 1-128 characters of A-Z a-z 0-9 - _"],
    );
}

#[test]
fn device_id_too_long_for_its_processor_function() {
    let id = "d".repeat(52);
    let devices = format!(
        r#"[{{"id": "{id}", "processor": "custom", "properties": [{{"name": "p", "dataType": "DOUBLE"}}]}}]"#
    );
    check(
        &[("config_iot_devices.json", Text(&devices))],
        &[&format!("config_iot_devices.json:1:9: $[0].id (device `{}...`): the Lambda function name `t--{id}-processor` is 65 characters long; Lambda function names are 1-64 characters of A-Z a-z 0-9 - _ (needed by layer l2 on aws)", "d".repeat(37))],
    );
    // Without a processor crate of its own the device uses the shared processor function.
    let shared =
        format!(r#"[{{"id": "{id}", "properties": [{{"name": "p", "dataType": "DOUBLE"}}]}}]"#);
    check(&[("config_iot_devices.json", Text(&shared))], &[]);
}

#[test]
fn device_unknown_keys() {
    check(
        &[(
            "config_iot_devices.json",
            Text(
                r#"[
  {"id": "d1", "location": "hall",
   "properties": [{"name": "p", "dataType": "DOUBLE", "unit": "C"}]}
]"#,
            ),
        )],
        &[
            "config_iot_devices.json:2:16: $[0].location (device `d1`): unknown key `location`; allowed keys: `id`, `properties`, `constProperties`, `processor`",
            "config_iot_devices.json:3:55: $[0].properties[0].unit (device `d1`, property `p`): unknown key `unit`; allowed keys: `name`, `dataType`, `initValue`",
        ],
    );
}

#[test]
fn device_empty_properties() {
    check(
        &[(
            "config_iot_devices.json",
            Text("[\n  {\"id\": \"d1\",\n   \"properties\": []}\n]"),
        )],
        &["config_iot_devices.json:3:18: $[0].properties (device `d1`): a device needs at least one property: an empty list leaves nothing to record"],
    );
}

#[test]
fn device_properties_not_an_array() {
    check(
        &[(
            "config_iot_devices.json",
            Text(r#"[{"id": "d1", "properties": {"name": "p"}}]"#),
        )],
        &["config_iot_devices.json:1:29: $[0].properties (device `d1`): expected an array of {\"name\", \"dataType\"} objects, found an object"],
    );
}

#[test]
fn device_duplicate_property_names() {
    check(
        &[(
            "config_iot_devices.json",
            Text(
                r#"[
  {"id": "d1",
   "properties": [
     {"name": "p", "dataType": "DOUBLE"},
     {"name": "p", "dataType": "LONG"}
   ],
   "constProperties": [
     {"name": "p", "dataType": "STRING", "value": "x"}
   ]}
]"#,
            ),
        )],
        &[
            "config_iot_devices.json:5:15: $[0].properties[1].name (device `d1`, property `p`): duplicate property name `p` (first defined at 4:15); property and constant property names must be unique within a device",
            "config_iot_devices.json:8:15: $[0].constProperties[0].name (device `d1`, constant property `p`): duplicate property name `p` (first defined at 4:15); property and constant property names must be unique within a device",
        ],
    );
}

#[test]
fn device_unknown_data_types() {
    check(
        &[(
            "config_iot_devices.json",
            Text(
                r#"[
  {"id": "d1",
   "properties": [
     {"name": "a", "dataType": "FLOAT"},
     {"name": "b", "dataType": 3},
     {"name": "c", "dataType": "double"}
   ]}
]"#,
            ),
        )],
        &[
            "config_iot_devices.json:4:32: $[0].properties[0].dataType (device `d1`, property `a`): unknown dataType `FLOAT`; allowed: DOUBLE, INTEGER, LONG, BOOLEAN, STRING",
            "config_iot_devices.json:5:32: $[0].properties[1].dataType (device `d1`, property `b`): expected a string (one of: DOUBLE, INTEGER, LONG, BOOLEAN, STRING), found a number",
            "config_iot_devices.json:6:32: $[0].properties[2].dataType (device `d1`, property `c`): unknown dataType `double` (did you mean `DOUBLE`? values are case-sensitive); allowed: DOUBLE, INTEGER, LONG, BOOLEAN, STRING",
        ],
    );
}

#[test]
fn device_reserved_property_names() {
    check(
        &[(
            "config_iot_devices.json",
            Text(
                r#"[
  {"id": "d1",
   "properties": [
     {"name": "time", "dataType": "STRING"},
     {"name": "iotDeviceId", "dataType": "STRING"},
     {"name": "topicDeviceId", "dataType": "STRING"}
   ],
   "constProperties": [
     {"name": "time", "dataType": "STRING", "value": "x"},
     {"name": "iotDeviceId", "dataType": "STRING", "value": "x"}
   ]}
]"#,
            ),
        )],
        &[
            "config_iot_devices.json:4:15: $[0].properties[0].name (device `d1`, property `time`): property name `time` is reserved: the pipeline writes `iotDeviceId`, `id`, `time`, `correlationId`, `topicDeviceId`, `verifyRun` into records",
            "config_iot_devices.json:5:15: $[0].properties[1].name (device `d1`, property `iotDeviceId`): property name `iotDeviceId` is reserved: the pipeline writes `iotDeviceId`, `id`, `time`, `correlationId`, `topicDeviceId`, `verifyRun` into records",
            "config_iot_devices.json:6:15: $[0].properties[2].name (device `d1`, property `topicDeviceId`): property name `topicDeviceId` is reserved: the pipeline writes `iotDeviceId`, `id`, `time`, `correlationId`, `topicDeviceId`, `verifyRun` into records",
            "config_iot_devices.json:10:15: $[0].constProperties[1].name (device `d1`, constant property `iotDeviceId`): constant property name `iotDeviceId` is reserved: every twin component has an `iotDeviceId` property naming its device",
        ],
    );
}

#[test]
fn device_const_values_must_match_their_data_type() {
    check(
        &[(
            "config_iot_devices.json",
            Text(
                r#"[
  {"id": "d1",
   "properties": [{"name": "p", "dataType": "DOUBLE"}],
   "constProperties": [
     {"name": "a", "dataType": "INTEGER", "value": 1.5},
     {"name": "b", "dataType": "INTEGER", "value": 3000000000},
     {"name": "c", "dataType": "LONG", "value": "7"},
     {"name": "d", "dataType": "BOOLEAN", "value": "true"},
     {"name": "e", "dataType": "DOUBLE", "value": null},
     {"name": "f", "dataType": "STRING", "value": 1232323}
   ]}
]"#,
            ),
        )],
        &[
            "config_iot_devices.json:5:52: $[0].constProperties[0].value (device `d1`, constant property `a`): value 1.5 does not match dataType INTEGER: expected a whole number from -2147483648 to 2147483647",
            "config_iot_devices.json:6:52: $[0].constProperties[1].value (device `d1`, constant property `b`): value 3000000000 does not match dataType INTEGER: expected a whole number from -2147483648 to 2147483647",
            "config_iot_devices.json:7:49: $[0].constProperties[2].value (device `d1`, constant property `c`): value \"7\" does not match dataType LONG: expected a whole number from -9223372036854775808 to 9223372036854775807",
            "config_iot_devices.json:8:52: $[0].constProperties[3].value (device `d1`, constant property `d`): value \"true\" does not match dataType BOOLEAN: expected true or false",
            "config_iot_devices.json:9:51: $[0].constProperties[4].value (device `d1`, constant property `e`): value null does not match dataType DOUBLE: expected a number",
            "config_iot_devices.json:10:51: $[0].constProperties[5].value (device `d1`, constant property `f`): value 1232323 does not match dataType STRING: expected a string",
        ],
    );
}

#[test]
fn device_init_value_must_match_its_data_type() {
    check(
        &[(
            "config_iot_devices.json",
            Text(
                r#"[{"id": "d1", "properties": [
  {"name": "p", "dataType": "DOUBLE", "initValue": "warm"},
  {"name": "q", "dataType": "BOOLEAN", "initValue": false}]}]"#,
            ),
        )],
        &["config_iot_devices.json:2:52: $[0].properties[0].initValue (device `d1`, property `p`): initValue \"warm\" does not match dataType DOUBLE: expected a number"],
    );
}

#[test]
fn device_const_property_missing_value() {
    check(
        &[(
            "config_iot_devices.json",
            Text(
                r#"[{"id": "d1", "properties": [{"name": "p", "dataType": "DOUBLE"}],
  "constProperties": [{"name": "serial", "dataType": "STRING"}]}]"#,
            ),
        )],
        &["config_iot_devices.json:2:23: $[0].constProperties[0].value (device `d1`, constant property `serial`): missing required key `value` (the property's fixed value)"],
    );
}

#[test]
fn device_processor_name() {
    check(
        &[(
            "config_iot_devices.json",
            Text(
                r#"[{"id": "d1", "processor": "my processor", "properties": [{"name": "p", "dataType": "DOUBLE"}]}]"#,
            ),
        )],
        &["config_iot_devices.json:1:28: $[0].processor (device `d1`): the processor crate name `my processor` contains ' '; processor crate names are 1-64 characters of A-Z a-z 0-9 - _ starting with a letter"],
    );
}

// ---- config_providers.json ----

#[test]
fn providers_root_is_not_an_object() {
    check(
        &[("config_providers.json", Text(r#""aws""#))],
        &["config_providers.json:1:1: $: expected an object with a provider per layer, found a string"],
    );
}

#[test]
fn providers_unknown_missing_and_bad_aws_settings() {
    check(
        &[(
            "config_providers.json",
            Text(
                r#"{
  "layer_1_provider": "gcp",
  "layer_2_provider": "AWS",
  "layer_3_hot_provider": "aws",
  "layer_3_cold_provider": "aws",
  "layer_3_archive_provider": "aws",
  "layer_4_provider": "none",
  "aws": {"region": "US East", "architecture": "amd64", "profile": "x"}
}"#,
            ),
        )],
        &[
            "config_providers.json:1:1: $.layer_5_provider: missing required key `layer_5_provider` (one of aws, azure, none)",
            "config_providers.json:2:23: $.layer_1_provider: unknown provider `gcp`; allowed: aws, azure, none",
            "config_providers.json:3:23: $.layer_2_provider: unknown provider `AWS` (did you mean `aws`? values are case-sensitive); allowed: aws, azure, none",
            "config_providers.json:8:21: $.aws.region: `US East` is not an AWS region name; regions look like `us-east-1` or `eu-central-1`",
            "config_providers.json:8:48: $.aws.architecture: unknown architecture `amd64`; allowed: arm64, x86_64",
            "config_providers.json:8:57: $.aws.profile: unknown key `profile`; allowed keys: `region`, `architecture`, `grafana_authentication_provider`, `processor_per_device`, `grafana_admins`, `grafana_editors`, `grafana_viewers`, `grafana_saml`",
        ],
    );
}

#[test]
fn providers_processor_per_device_must_be_a_boolean() {
    let bad = PROVIDERS_AWS.replace(
        "\"layer_5_provider\": \"aws\"",
        "\"layer_5_provider\": \"aws\",\n  \"aws\": {\"processor_per_device\": \"yes\"}",
    );
    check(
        &[("config_providers.json", Text(&bad))],
        &["config_providers.json:9:35: $.aws.processor_per_device: expected true or false (give every device its own processor function), found a string"],
    );
}

#[test]
fn processor_per_device_checks_every_device_processor_name() {
    let id = "d".repeat(52);
    let devices =
        format!(r#"[{{"id": "{id}", "properties": [{{"name": "p", "dataType": "DOUBLE"}}]}}]"#);
    let per_device = PROVIDERS_AWS.replace(
        "\"layer_5_provider\": \"aws\"",
        "\"layer_5_provider\": \"aws\",\n  \"aws\": {\"processor_per_device\": true}",
    );
    check(
        &[
            ("config_iot_devices.json", Text(&devices)),
            ("config_providers.json", Text(&per_device)),
        ],
        &[&format!("config_iot_devices.json:1:9: $[0].id (device `{}...`): the Lambda function name `t--{id}-processor` is 65 characters long; Lambda function names are 1-64 characters of A-Z a-z 0-9 - _ (needed by layer l2 on aws)", "d".repeat(37))],
    );
}

#[test]
fn providers_unknown_top_level_key() {
    let text = PROVIDERS_AWS.replace("{\n", "{\n  \"gcp\": {},\n");
    check(
        &[("config_providers.json", Text(&text))],
        &["config_providers.json:2:3: $.gcp: unknown key `gcp`; allowed keys: `layer_1_provider`, `layer_2_provider`, `layer_3_hot_provider`, `layer_3_cold_provider`, `layer_3_archive_provider`, `layer_4_provider`, `layer_5_provider`, `aws`, `azure`"],
    );
}

#[test]
fn providers_bad_azure_settings() {
    let text = r#"{
  "layer_1_provider": "azure",
  "layer_2_provider": "azure",
  "layer_3_hot_provider": "azure",
  "layer_3_cold_provider": "azure",
  "layer_3_archive_provider": "azure",
  "layer_4_provider": "azure",
  "layer_5_provider": "azure",
  "azure": {
    "subscription_id": "abc",
    "resource_group": "rg.",
    "location": "West Europe"
  }
}"#;
    check(
        &[("config_providers.json", Text(text))],
        &[
            "config_providers.json:10:24: $.azure.subscription_id: `abc` is not a subscription id; subscription ids are GUIDs like `00000000-0000-0000-0000-000000000000`",
            "config_providers.json:11:23: $.azure.resource_group: the Azure resource group name `rg.` ends with `.`; Azure resource group names are 1-90 letters, digits, - _ . ( ), not ending with .",
            "config_providers.json:12:17: $.azure.location: `West Europe` is not an Azure location name; locations are lowercase letters and digits such as `westeurope` or `eastus2`",
        ],
    );
}

#[test]
fn azure_function_names_need_a_leading_letter() {
    let azure = PROVIDERS_AWS.replace("\"aws\"", "\"azure\"");
    check(
        &[
            ("config_providers.json", Text(&azure)),
            (
                "config_iot_devices.json",
                Text(r#"[{"id": "1-sensor", "properties": [{"name": "p", "dataType": "DOUBLE"}]}]"#),
            ),
        ],
        &[
            "config_iot_devices.json:1:9: $[0].id (device `1-sensor`): the Azure Function name `1-sensor-processor` starts with `1`; Azure Function names are 1-128 characters of A-Z a-z 0-9 - _ starting with a letter (needed by layer l2 on azure)",
            "config_providers.json:2:23: $.layer_1_provider: layer_1_provider is `azure` but no Azure location is set: add \"azure\": {\"location\": \"<region, e.g. westeurope>\"}",
        ],
    );
}

#[test]
fn providers_unknown_grafana_authentication_provider() {
    let text = PROVIDERS_AWS.replace(
        "{\n",
        "{\n  \"aws\": {\"grafana_authentication_provider\": \"OKTA\"},\n",
    );
    check(
        &[("config_providers.json", Text(&text))],
        &["config_providers.json:2:46: $.aws.grafana_authentication_provider: unknown Grafana authentication provider `OKTA`; allowed: AWS_SSO, SAML"],
    );
    let text = PROVIDERS_AWS.replace(
        "{\n",
        "{\n  \"aws\": {\"grafana_authentication_provider\": \"aws_sso\"},\n",
    );
    check(
        &[("config_providers.json", Text(&text))],
        &["config_providers.json:2:46: $.aws.grafana_authentication_provider: unknown Grafana authentication provider `aws_sso` (did you mean `AWS_SSO`? values are case-sensitive); allowed: AWS_SSO, SAML"],
    );
}

/// `config_providers.json` with the given provider per layer, in file order.
fn providers(layers: [&str; 7]) -> String {
    let keys = [
        "layer_1_provider",
        "layer_2_provider",
        "layer_3_hot_provider",
        "layer_3_cold_provider",
        "layer_3_archive_provider",
        "layer_4_provider",
        "layer_5_provider",
    ];
    let body: Vec<String> = keys
        .iter()
        .zip(layers)
        .map(|(k, p)| format!("  \"{k}\": \"{p}\""))
        .collect();
    format!("{{\n{}\n}}", body.join(",\n"))
}

#[test]
fn providers_visualization_without_a_twin_and_a_twin_without_hot_storage() {
    let text = providers(["none", "none", "none", "none", "none", "aws", "aws"]);
    check(
        &[("config_providers.json", Text(&text))],
        &[
            "config_providers.json:7:23: $.layer_4_provider: layer_4_provider is `aws` but layer_3_hot_provider is `none`: the twin connector reads the twin's data from hot storage, so the twin would have no data; allowed: aws or azure for layer_3_hot_provider, or none here",
        ],
    );
    let text = providers(["aws", "aws", "aws", "aws", "aws", "none", "aws"]);
    check(
        &[("config_providers.json", Text(&text))],
        &[
            "config_providers.json:8:23: $.layer_5_provider: layer_5_provider is `aws` but layer_4_provider is `none`: Grafana shows the twin of layer 4, so it would have no twin to show; allowed: aws or azure for layer_4_provider, or none here",
        ],
    );
    // Grafana on Azure reads the hot reader: it needs hot storage, not a twin.
    let text = providers(["none", "none", "none", "none", "none", "none", "azure"]);
    check(
        &[("config_providers.json", Text(&text))],
        &[
            "config_providers.json:8:23: $.layer_5_provider: layer_5_provider is `azure` but layer_3_hot_provider is `none`: Grafana on Azure shows the hot data through the hot reader, so it would have no data to show; allowed: aws or azure for layer_3_hot_provider, or none here",
            "config_providers.json:8:23: $.layer_5_provider: layer_5_provider is `azure` but no Azure location is set: add \"azure\": {\"location\": \"<region, e.g. westeurope>\"}",
        ],
    );
}

#[test]
fn providers_a_layer_whose_receiving_layer_is_not_deployed() {
    let text = providers(["aws", "none", "aws", "none", "none", "none", "none"]);
    check(
        &[("config_providers.json", Text(&text))],
        &[
            "config_providers.json:2:23: $.layer_1_provider: layer_1_provider is `aws` but layer_2_provider is `none`: the dispatcher hands every message to a processor in layer 2, so every message would be dropped; allowed: aws or azure for layer_2_provider, or none here",
            "config_providers.json:4:27: $.layer_3_hot_provider: layer_3_hot_provider is `aws` but layer_3_cold_provider is `none`: the hot-to-cold mover moves older records to cold storage, so it would fail every day; allowed: aws or azure for layer_3_cold_provider, or none here",
        ],
    );
    let text = providers(["none", "aws", "none", "aws", "none", "none", "none"]);
    check(
        &[("config_providers.json", Text(&text))],
        &[
            "config_providers.json:3:23: $.layer_2_provider: layer_2_provider is `aws` but layer_3_hot_provider is `none`: the persister writes every record to hot storage, so every record would be lost; allowed: aws or azure for layer_3_hot_provider, or none here",
            "config_providers.json:5:28: $.layer_3_cold_provider: layer_3_cold_provider is `aws` but layer_3_archive_provider is `none`: the cold-to-archive mover moves older objects to archive storage, so it would fail every day; allowed: aws or azure for layer_3_archive_provider, or none here",
        ],
    );
    // A layer nobody feeds is allowed: storage first, the rest later.
    let text = providers(["none", "none", "none", "none", "aws", "none", "none"]);
    check(&[("config_providers.json", Text(&text))], &[]);
}

#[test]
fn artifacts_bucket_name_on_the_layer_that_hosts_the_functions() {
    // 45 characters: every AWS function name fits, `<twin>-artifacts-00000000` (64) does not.
    let twin = "t".repeat(45);
    let config = format!(
        "{{\"digital_twin_name\": \"{twin}\", \"hot_storage_size_in_days\": 1, \"cold_storage_size_in_days\": 2}}"
    );
    let text = providers(["aws", "aws", "azure", "azure", "azure", "none", "none"]);
    check(
        &[
            ("config.json", Text(&config)),
            ("config_providers.json", Text(&text)),
        ],
        &[
            &format!("config.json:1:23: $.digital_twin_name: the S3 bucket name `{twin}-artifacts-00000000` is 64 characters long; S3 bucket names are 3-63 characters of a-z 0-9 -, starting and ending with a letter or digit (needed by layer l2 on aws)"),
            "config_providers.json:4:27: $.layer_3_hot_provider: layer_3_hot_provider is `azure` but no Azure location is set: add \"azure\": {\"location\": \"<region, e.g. westeurope>\"}",
        ],
    );
}

// ---- config_hierarchy.json ----

#[test]
fn hierarchy_root_is_not_an_array() {
    check(
        &[("config_hierarchy.json", Text("{}"))],
        &["config_hierarchy.json:1:1: $: expected an array of entities, found an object"],
    );
}

#[test]
fn hierarchy_unknown_device() {
    check(
        &[(
            "config_hierarchy.json",
            Text(
                r#"[
  {"type": "entity", "id": "room-1", "children": [
    {"type": "component", "name": "c1", "iotDeviceId": "d9"}
  ]}
]"#,
            ),
        )],
        &["config_hierarchy.json:3:56: $[0].children[0].iotDeviceId: unknown device `d9`; configured devices: `d1`"],
    );
}

#[test]
fn hierarchy_duplicate_entity_ids() {
    check(
        &[(
            "config_hierarchy.json",
            Text(
                r#"[
  {"type": "entity", "id": "room-1", "children": [
    {"type": "entity", "id": "room-1"}
  ]}
]"#,
            ),
        )],
        &["config_hierarchy.json:3:30: $[0].children[0].id: duplicate entity id `room-1` (first defined at 2:28); entity ids must be unique in the hierarchy"],
    );
}

#[test]
fn hierarchy_duplicate_component_names() {
    check(
        &[(
            "config_hierarchy.json",
            Text(
                r#"[
  {"id": "room-1", "children": [
    {"name": "c1", "iotDeviceId": "d1"},
    {"name": "c1", "iotDeviceId": "d1"}
  ]}
]"#,
            ),
        )],
        &["config_hierarchy.json:4:14: $[0].children[1].name: duplicate component name `c1` (first defined at 3:14); component names must be unique within an entity"],
    );
}

#[test]
fn hierarchy_node_of_unknown_kind() {
    check(
        &[(
            "config_hierarchy.json",
            Text(
                r#"[
  {"id": "room-1", "children": [
    {"children": []},
    {"type": "room", "id": "x"}
  ]}
]"#,
            ),
        )],
        &[
            "config_hierarchy.json:3:5: $[0].children[0]: cannot tell an entity (with `id` and `children`) from a component (with `name` and `iotDeviceId`); add \"type\": \"entity\" or \"type\": \"component\"",
            "config_hierarchy.json:4:14: $[0].children[1].type: unknown node type `room`; allowed: entity, component",
        ],
    );
}

#[test]
fn hierarchy_component_at_top_level() {
    check(
        &[(
            "config_hierarchy.json",
            Text("[\n  {\"type\": \"component\", \"name\": \"c\", \"iotDeviceId\": \"d1\"}\n]"),
        )],
        &["config_hierarchy.json:2:3: $[0]: a component cannot stand at the top level; put it in an entity's `children`"],
    );
}

#[test]
fn hierarchy_unknown_key() {
    check(
        &[("config_hierarchy.json", Text(r#"[{"id": "e1", "name": "x"}]"#))],
        &["config_hierarchy.json:1:15: $[0].name: unknown key `name`; allowed keys: `type`, `id`, `children`"],
    );
}

#[test]
fn hierarchy_component_without_a_resolvable_device() {
    check(
        &[(
            "config_hierarchy.json",
            Text(
                r#"[{"id": "e1", "children": [{"type": "component", "name": "c", "componentTypeId": "other"}]}]"#,
            ),
        )],
        &["config_hierarchy.json:1:82: $[0].children[0].componentTypeId: unknown componentTypeId `other`; the configured devices' component types: `t-d1`"],
    );
    check(
        &[(
            "config_hierarchy.json",
            Text(r#"[{"id": "e1", "children": [{"type": "component", "name": "c"}]}]"#),
        )],
        &["config_hierarchy.json:1:28: $[0].children[0].iotDeviceId: missing required key `iotDeviceId` (the id of the configured device whose data this component shows)"],
    );
}

#[test]
fn hierarchy_component_type_of_another_device() {
    check(
        &[(
            "config_hierarchy.json",
            Text(
                r#"[{"id": "e1", "children": [
  {"name": "c", "iotDeviceId": "d1", "componentTypeId": "t-d2"}]}]"#,
            ),
        )],
        &["config_hierarchy.json:2:57: $[0].children[0].componentTypeId: componentTypeId `t-d2` is not the component type of device `d1`; allowed: `t-d1`, or leave componentTypeId out"],
    );
}

#[test]
fn hierarchy_is_not_checked_against_a_broken_device_file() {
    check(
        &[
            ("config_iot_devices.json", Text("[")),
            (
                "config_hierarchy.json",
                Text(r#"[{"id": "e1", "children": [{"name": "c", "iotDeviceId": "d9"}]}]"#),
            ),
        ],
        &["config_iot_devices.json:1:1: $: invalid JSON: EOF while parsing a list"],
    );
}

// ---- config_events.json ----

#[test]
fn events_file_with_a_syntax_error() {
    check(
        &[("config_events.json", Text("[\n  {\"rule\": }\n]"))],
        &["config_events.json:2:12: $: invalid JSON: expected value"],
    );
}

// ---- TwinMaker ids (layer 4 on AWS) ----

#[test]
fn hierarchy_entity_id_breaking_twinmaker_pattern() {
    check(
        &[(
            "config_hierarchy.json",
            Text(
                r#"[
  {"type": "entity", "id": "room 1", "children": [
    {"type": "entity", "id": "shelf-"},
    {"type": "entity", "id": "x"}
  ]}
]"#,
            ),
        )],
        &[
            "config_hierarchy.json:2:28: $[0].id: the TwinMaker entity id `room 1` contains ' '; TwinMaker entity ids are 2-128 characters of A-Z a-z 0-9 _ - . :, starting and ending with a letter or digit (layer_4_provider is aws, so it becomes a TwinMaker id)",
            "config_hierarchy.json:3:30: $[0].children[0].id: the TwinMaker entity id `shelf-` ends with `-`; TwinMaker entity ids are 2-128 characters of A-Z a-z 0-9 _ - . :, starting and ending with a letter or digit (layer_4_provider is aws, so it becomes a TwinMaker id)",
            "config_hierarchy.json:4:30: $[0].children[1].id: the TwinMaker entity id `x` is 1 characters long; TwinMaker entity ids are 2-128 characters of A-Z a-z 0-9 _ - . :, starting and ending with a letter or digit (layer_4_provider is aws, so it becomes a TwinMaker id)",
        ],
    );
}

#[test]
fn hierarchy_component_name_breaking_twinmaker_pattern() {
    check(
        &[(
            "config_hierarchy.json",
            Text(
                r#"[
  {"type": "entity", "id": "room-1", "children": [
    {"type": "component", "name": "temp.sensor", "iotDeviceId": "d1"}
  ]}
]"#,
            ),
        )],
        &["config_hierarchy.json:3:35: $[0].children[0].name: the TwinMaker component name `temp.sensor` contains `.`; TwinMaker component names are 1-256 characters of A-Z a-z 0-9 _ - (layer_4_provider is aws, so it becomes a TwinMaker id)"],
    );
}

#[test]
fn twinmaker_patterns_do_not_apply_without_twinmaker() {
    let providers = PROVIDERS_AWS
        .replace(
            r#""layer_4_provider": "aws""#,
            r#""layer_4_provider": "none""#,
        )
        .replace(
            r#""layer_5_provider": "aws""#,
            r#""layer_5_provider": "none""#,
        );
    check(
        &[
            ("config_providers.json", Text(&providers)),
            (
                "config_hierarchy.json",
                Text(
                    r#"[
  {"type": "entity", "id": "x", "children": [
    {"type": "component", "name": "temp.sensor", "iotDeviceId": "d1"}
  ]}
]"#,
                ),
            ),
        ],
        &[],
    );
}
