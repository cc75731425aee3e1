//! `config_events.json`: rules in the established tool's format load; every broken rule is
//! reported at the line:column of what is wrong (inside the condition string for conditions).

use std::path::Path;

use twin_config::load_dir;
use twin_events::{Action, Fire};

const CONFIG: &str = r#"{
  "digital_twin_name": "t",
  "hot_storage_size_in_days": 1,
  "cold_storage_size_in_days": 2
}"#;

const DEVICES: &str = r#"[
  {"id": "d1", "properties": [{"name": "temperature", "dataType": "DOUBLE"}, {"name": "mode", "dataType": "STRING"}],
   "constProperties": [{"name": "serial", "dataType": "STRING", "value": "x"}]},
  {"id": "d2", "properties": [{"name": "count", "dataType": "INTEGER"}]}
]"#;

const PROVIDERS: &str = r#"{
  "layer_1_provider": "aws",
  "layer_2_provider": "aws",
  "layer_3_hot_provider": "aws",
  "layer_3_cold_provider": "aws",
  "layer_3_archive_provider": "aws",
  "layer_4_provider": "aws",
  "layer_5_provider": "aws"
}"#;

const HIERARCHY: &str = r#"[
  {"type": "entity", "id": "room-1", "children": [
    {"type": "component", "name": "thermo", "iotDeviceId": "d1"},
    {"type": "entity", "id": "shelf", "children": [
      {"type": "component", "name": "counter", "iotDeviceId": "d2"}
    ]}
  ]}
]"#;

fn write(dir: &Path, events: &str, hierarchy: Option<&str>) {
    for (name, text) in [
        ("config.json", CONFIG),
        ("config_iot_devices.json", DEVICES),
        ("config_providers.json", PROVIDERS),
        ("config_events.json", events),
    ] {
        std::fs::write(dir.join(name), text).expect("write");
    }
    if let Some(h) = hierarchy {
        std::fs::write(dir.join("config_hierarchy.json"), h).expect("write");
    }
    let lambda = dir.join("lambdas").join("alarm");
    std::fs::create_dir_all(&lambda).expect("mkdir");
    std::fs::write(lambda.join("Cargo.toml"), "[package]\n").expect("write");
}

/// The rendered errors, with the temp directory shown as `{dir}`.
fn errors(events: &str) -> Vec<String> {
    errors_with(events, Some(HIERARCHY))
}

fn errors_with(events: &str, hierarchy: Option<&str>) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), events, hierarchy);
    match load_dir(dir.path()) {
        Ok(_) => Vec::new(),
        Err(d) => d
            .iter()
            .map(|d| {
                d.to_string()
                    .replace(&dir.path().display().to_string(), "{dir}")
            })
            .collect(),
    }
}

#[test]
fn the_established_formats_rules_load_with_their_actions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = r#"[
  {"condition": "room-1.thermo.temperature > DOUBLE(30) AND room-1.thermo.mode == STRING(\"auto\")",
   "action": {"type": "lambda", "functionName": "alarm", "autoDeploy": true,
              "feedback": {"type": "mqtt", "iotDeviceId": "d1", "payload": {"message": "too hot"}}}},
  {"name": "count-high", "description": "shelf is full", "fire": "every_message",
   "condition": "shelf.counter.count >= 10 OR shelf.d2.count < INTEGER(0)",
   "action": {"type": "mqtt", "iotDeviceId": "d2", "payload": "stop"}},
  {"condition": "room-1.d1.temperature < shelf.counter.count",
   "action": {"type": "notification", "message": "colder than the count"}},
  {"condition": "room-1.thermo.temperature > 0",
   "action": {"type": "lambda", "functionName": "elsewhere", "autoDeploy": false}}
]"#;
    write(dir.path(), events, Some(HIERARCHY));
    let config = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let rules = &config.events;
    assert_eq!(rules.len(), 4);
    assert!(rules[0].key.starts_with("rule-") && rules[0].key.len() == 17);
    assert_eq!(rules[0].fire, Fire::OnChange);
    assert_eq!(rules[0].condition.devices(), ["d1"]);
    assert!(
        matches!(&rules[0].action, Action::Function { function_name, auto_deploy: true, feedback: Some(f) }
        if function_name == "alarm" && f.iot_device_id == "d1")
    );
    assert_eq!(rules[1].key, "count-high");
    assert_eq!(rules[1].fire, Fire::EveryMessage);
    assert_eq!(rules[1].description.as_deref(), Some("shelf is full"));
    assert_eq!(rules[1].condition.devices(), ["d2"]);
    assert_eq!(rules[2].condition.devices(), ["d1", "d2"]);
    assert_eq!(rules[2].action.kind(), "notification");
    assert!(config
        .warnings
        .iter()
        .all(|w| w.file != "config_events.json"));
}

#[test]
fn a_condition_that_does_not_parse_is_placed_at_its_character() {
    // Line 2; the condition string's quote is at column 17, so character n is column 18 + n.
    assert_eq!(
        errors("[\n  {\"condition\": \"room-1.thermo.temperature = DOUBLE(3)\", \"action\": {\"type\": \"notification\", \"message\": \"m\"}}\n]"),
        ["config_events.json:2:44: $[0].condition (rule 1): condition: expected a comparison operator (< <= == != >= >) (equality is `==`), found `=`"]
    );
    // After escaped quotes the column counts the file's characters, not the string's; the end of
    // the condition is its closing quote.
    assert_eq!(
        errors(
            r#"[{"condition": "room-1.thermo.mode == STRING(\"a\") AND", "action": {"type": "notification", "message": "m"}}]"#
        ),
        [
            r#"config_events.json:1:56: $[0].condition (rule 1): condition: expected a property `<entity>.<device>.<property>` or a value such as DOUBLE(43), INTEGER(3), STRING("x"), BOOLEAN(true), found the end of the condition"#
        ]
    );
}

#[test]
fn unknown_names_and_type_mismatches_are_placed_at_the_reference() {
    let events = r#"[
  {"condition": "room-9.thermo.temperature > 1", "action": {"type": "notification", "message": "m"}},
  {"condition": "room-1.nope.temperature > 1", "action": {"type": "notification", "message": "m"}},
  {"condition": "room-1.thermo.humidity > 1", "action": {"type": "notification", "message": "m"}},
  {"condition": "room-1.thermo.serial == \"x\"", "action": {"type": "notification", "message": "m"}},
  {"condition": "room-1.thermo.temperature == STRING(\"hot\")", "action": {"type": "notification", "message": "m"}},
  {"condition": "room-1.thermo.mode > STRING(\"a\")", "action": {"type": "notification", "message": "m"}}
]"#;
    assert_eq!(
        errors(events),
        [
            "config_events.json:2:18: $[0].condition (rule 1): condition: unknown entity `room-9`; the hierarchy's entities are room-1, shelf",
            "config_events.json:3:18: $[1].condition (rule 2): condition: entity `room-1` has no component or device `nope`; its components are thermo",
            "config_events.json:4:18: $[2].condition (rule 3): condition: device `d1` has no property `humidity`; its properties are temperature, mode",
            "config_events.json:5:18: $[3].condition (rule 4): condition: `serial` is a constant property of device `d1`, which never changes; conditions read its telemetry properties: temperature, mode",
            "config_events.json:6:47: $[4].condition (rule 5): condition: `room-1.thermo.temperature` is DOUBLE but `STRING(\"hot\")` is STRING; a DOUBLE compares with DOUBLE(..), INTEGER(..), LONG(..) or a bare number",
            "config_events.json:7:18: $[5].condition (rule 6): condition: `>` orders STRING values; STRING values compare only with == or !=",
        ]
    );
}

#[test]
fn without_a_hierarchy_a_condition_names_nothing() {
    assert_eq!(
        errors_with(
            r#"[{"condition": "room-1.thermo.temperature > 1", "action": {"type": "notification", "message": "m"}}]"#,
            None
        ),
        ["config_events.json:1:17: $[0].condition (rule 1): condition: `room-1.thermo.temperature` names entity `room-1`, but there is no config_hierarchy.json; a condition names `<entity>.<device>.<property>` from the hierarchy"]
    );
}

#[test]
fn bad_actions_say_what_is_allowed() {
    let events = r#"[
  {"condition": "room-1.thermo.temperature > 1", "action": {"type": "email"}},
  {"condition": "room-1.thermo.temperature > 1", "action": {"type": "lambda", "functionName": "missing"}},
  {"condition": "room-1.thermo.temperature > 1", "action": {"type": "mqtt", "iotDeviceId": "d9", "payload": "p"}},
  {"condition": "room-1.thermo.temperature > 1", "action": {"type": "lambda", "functionName": "alarm",
     "feedback": {"type": "mqtt", "topic": "t-d1", "payload": "p"}}},
  {"condition": "room-1.thermo.temperature > 1", "fire": "always", "action": {"type": "notification"}},
  {"name": "a", "condition": "room-1.thermo.temperature > 1", "action": {"type": "notification", "message": 1}},
  {"name": "a", "condition": "room-1.thermo.temperature > 1", "action": {"type": "notification", "message": 1}},
  {"condition": "room-1.thermo.temperature > 1"}
]"#;
    assert_eq!(
        errors(events),
        [
            "config_events.json:2:69: $[0].action.type (rule 1): unknown action type `email`; allowed: lambda, mqtt, notification, step_function, logic_app, workflow",
            "config_events.json:3:95: $[1].action.functionName (rule 2): function crate `missing` not found: {dir}/lambdas/missing/Cargo.toml does not exist; create the crate there, or set \"autoDeploy\": false for a function that exists already",
            "config_events.json:4:92: $[2].action.iotDeviceId (rule 3): unknown device `d9`; config_iot_devices.json defines d1, d2",
            "config_events.json:6:35: $[3].action.feedback.topic (rule 4): feedback goes to the device's own feedback topic, which only it may read: name the device with `iotDeviceId` instead of `topic`",
            "config_events.json:7:58: $[4].fire (rule 5): unknown fire mode `always`; allowed: on_change, every_message",
            "config_events.json:7:78: $[4].action.message (rule 5): missing required key `message` (what the notification says: a string or any JSON value)",
            "config_events.json:9:12: $[6].name (rule `a`): duplicate rule name `a` (first at 8:12); a rule's name keys its stored state",
            "config_events.json:10:3: $[7].action (rule 8): missing required key `action` (an object with a `type`)",
        ]
    );
}

#[test]
fn a_rule_set_too_big_for_the_aws_persisters_environment_is_refused_with_its_size() {
    let rule = |i: usize| {
        format!(
            r#"{{"name": "r{i}", "condition": "room-1.thermo.temperature > DOUBLE({i})",
  "action": {{"type": "notification", "message": "{}"}}}}"#,
            "m".repeat(200)
        )
    };
    let fits: Vec<String> = (0..5).map(rule).collect();
    assert_eq!(
        errors(&format!("[{}]", fits.join(",\n"))),
        Vec::<String>::new()
    );
    let too_many: Vec<String> = (0..20).map(rule).collect();
    let e = errors(&format!("[{}]", too_many.join(",\n")));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("config_events.json:1:1: $: the rules take"),
        "{e:?}"
    );
    assert!(e[0].contains("Lambda allows 4096 in all"), "{e:?}");
    assert!(e[0].contains("environment would be"), "{e:?}");
}

#[test]
fn rules_with_layer_2_on_azure_load_without_a_warning_and_with_no_layer_2_with_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events = r#"[{"condition": "room-1.thermo.temperature > DOUBLE(30)",
   "action": {"type": "mqtt", "iotDeviceId": "d1", "payload": "hot"}}]"#;
    write(dir.path(), events, Some(HIERARCHY));
    let warned = |providers: &str| -> Vec<String> {
        std::fs::write(dir.path().join("config_providers.json"), providers).expect("write");
        let config = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.events.len(),
            1,
            "the rules still load and are checked"
        );
        config
            .warnings
            .iter()
            .filter(|w| w.file == "config_events.json")
            .map(|w| w.to_string())
            .collect()
    };
    let azure = PROVIDERS
        .replace(
            r#""layer_2_provider": "aws""#,
            r#""layer_2_provider": "azure""#,
        )
        .replace(
            r#""layer_5_provider": "aws""#,
            r#""layer_5_provider": "aws", "azure": {"location": "westeurope"}"#,
        );
    // The Azure persister evaluates them (twin-functions-azure).
    assert_eq!(warned(&azure), Vec::<String>::new());
    let none = PROVIDERS
        .replace(
            r#""layer_1_provider": "aws""#,
            r#""layer_1_provider": "none""#,
        )
        .replace(
            r#""layer_2_provider": "aws""#,
            r#""layer_2_provider": "none""#,
        );
    let w = warned(&none);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("checked but not deployed") && w[0].contains("with `none`"),
        "{w:?}"
    );
}

#[test]
fn a_rule_function_whose_lambda_name_would_be_too_long_is_placed_at_its_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let long = format!("a{}", "b".repeat(56));
    let events = format!(
        r#"[{{"condition": "room-1.thermo.temperature > 1", "action": {{"type": "lambda", "functionName": "{long}"}}}}]"#
    );
    write(dir.path(), &events, Some(HIERARCHY));
    let crate_dir = dir.path().join("lambdas").join(&long);
    std::fs::create_dir_all(&crate_dir).expect("mkdir");
    std::fs::write(crate_dir.join("Cargo.toml"), "[package]\n").expect("write");
    let errors: Vec<String> = match load_dir(dir.path()) {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    };
    assert_eq!(
        errors,
        [format!(
            "config_events.json:1:94: $[0].action.functionName (rule 1): the Lambda function name `t-event-{long}` is 65 characters long; Lambda function names are 1-64 characters of A-Z a-z 0-9 - _ (function `{long}` deployed with the twin); shorten the crate name or the twin name"
        )]
    );
    // One character less fits.
    let fits = &long[..long.len() - 1];
    let events = events.replace(&long, fits);
    std::fs::write(dir.path().join("config_events.json"), events).expect("write");
    let fits_dir = dir.path().join("lambdas").join(fits);
    std::fs::create_dir_all(&fits_dir).expect("mkdir");
    std::fs::write(fits_dir.join("Cargo.toml"), "[package]\n").expect("write");
    assert!(load_dir(dir.path()).is_ok());
}

#[test]
fn an_unnamed_rule_keeps_its_state_key_when_the_file_is_reordered_and_gets_a_new_one_when_changed()
{
    let a = r#"{"condition": "room-1.thermo.temperature > 1", "action": {"type": "notification", "message": "a"}}"#;
    let b = r#"{"condition": "room-1.thermo.temperature > 2", "description": "x", "action": {"type": "notification", "message": "b"}}"#;
    let keys = |events: String| {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), &events, Some(HIERARCHY));
        let config = load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        config
            .events
            .iter()
            .map(|r| r.key.clone())
            .collect::<Vec<_>>()
    };
    let forward = keys(format!("[{a},\n{b}]"));
    let backward = keys(format!("[{b},\n{a}]"));
    assert_eq!(forward.len(), 2);
    assert_ne!(forward[0], forward[1]);
    assert_eq!(forward, [backward[1].clone(), backward[0].clone()]);
    // Key order, spacing and the description do not change what a rule is ...
    let a_reworded = r#"{"action": {"message": "a", "type": "notification"},  "condition": "room-1.thermo.temperature > 1", "description": "new words"}"#;
    assert_eq!(keys(format!("[{a_reworded}]")), [forward[0].clone()]);
    // ... its condition does.
    let a_changed = a.replace("> 1", "> 3");
    assert_ne!(keys(format!("[{a_changed}]")), [forward[0].clone()]);
    // The same unnamed rule twice would fire twice: refused at the second.
    assert_eq!(
        errors(&format!("[{a},\n{a}]")),
        ["config_events.json:2:1: $[1] (rule 2): this rule repeats the rule at 1:2 (same condition and action, so both would fire on every match); remove one, or give each a `name`"]
    );
}
