//! Files exactly as the established Python deployer writes them load unchanged: no `mode`, no
//! provider settings, `constProperties` on some devices, a nested hierarchy, and a component
//! that names only its `componentTypeId` (`<twin>-<device>`) instead of an `iotDeviceId`.

use twin_config::{load_dir, HierarchyNode, Layer, LogMode, ProviderName};

const CONFIG: &str = r#"{
    "digital_twin_name": "factory-twin",
    "hot_storage_size_in_days": 7,
    "cold_storage_size_in_days": 60
}"#;

const DEVICES: &str = r#"[
  {
    "id": "temperature-sensor-1",
    "properties": [
      { "name": "temperature", "dataType": "DOUBLE" }
    ],
    "constProperties": [
      { "name": "serial-number", "dataType": "STRING", "value": "A-17" }
    ]
  },
  {
    "id": "temperature-sensor-2",
    "constProperties": [
      { "name": "serial-number", "dataType": "STRING", "value": "A-18" }
    ],
    "properties": [
      { "name": "temperature", "dataType": "DOUBLE" }
    ]
  },
  {
    "id": "pressure-sensor-1",
    "properties": [
      { "name": "pressure", "dataType": "DOUBLE" },
      { "name": "density", "dataType": "DOUBLE" },
      { "name": "hardness", "dataType": "DOUBLE" }
    ]
  }
]"#;

const PROVIDERS: &str = r#"{
  "layer_1_provider": "aws",
  "layer_2_provider": "aws",
  "layer_3_hot_provider": "aws",
  "layer_3_cold_provider": "aws",
  "layer_3_archive_provider": "aws",
  "layer_4_provider": "aws",
  "layer_5_provider": "aws"
}
"#;

const HIERARCHY: &str = r#"[
  {
    "type": "entity",
    "id": "hall-1",
    "children": [
      {
        "type": "entity",
        "id": "press-1",
        "children": [
          {
            "type": "component",
            "name": "temperature-sensor-1",
            "componentTypeId": "factory-twin-temperature-sensor-1"
          }
        ]
      },
      {
        "type": "component",
        "name": "temperature-sensor-2",
        "iotDeviceId": "temperature-sensor-2"
      }
    ]
  },
  {
    "type": "entity",
    "id": "hall-2",
    "children": [
      {
        "type": "component",
        "name": "pressure-sensor-1",
        "iotDeviceId": "pressure-sensor-1"
      }
    ]
  }
]"#;

#[test]
fn the_python_tools_files_load_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in [
        ("config.json", CONFIG),
        ("config_iot_devices.json", DEVICES),
        ("config_providers.json", PROVIDERS),
        ("config_hierarchy.json", HIERARCHY),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let config = match load_dir(dir.path()) {
        Ok(c) => c,
        Err(problems) => panic!("{problems}"),
    };
    assert_eq!(config.dir, dir.path());
    assert_eq!(config.twin.mode, LogMode::Info);
    assert_eq!(config.devices.len(), 3);
    let t2 = config.device("temperature-sensor-2").expect("device");
    assert_eq!(t2.const_properties.len(), 1);
    assert_eq!(t2.const_properties[0].value, serde_json::json!("A-18"));
    assert_eq!(t2.processor, None);
    assert!(Layer::ALL
        .iter()
        .all(|l| config.providers.get(*l) == ProviderName::Aws));
    assert_eq!(config.providers.aws.region, None);
    assert_eq!(
        config.providers.aws.grafana_authentication_provider,
        "AWS_SSO"
    );

    let tree = config.hierarchy.expect("hierarchy");
    let ids: Vec<&str> = tree.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["hall-1", "hall-2"]);
    let HierarchyNode::Entity(press) = &tree[0].children[0] else {
        panic!("press-1 is an entity: {:?}", tree[0].children[0]);
    };
    assert_eq!(
        press.children,
        [HierarchyNode::Component {
            name: "temperature-sensor-1".to_string(),
            iot_device_id: "temperature-sensor-1".to_string(),
            component_type_id: Some("factory-twin-temperature-sensor-1".to_string()),
        }]
    );
}

/// The established tool's other accepted spellings: a mixed-case twin name, `initValue` on a
/// property, a component naming only `componentTypeId`, hot days equal to cold days and a
/// `config_events.json` beside the other files.
#[test]
fn mixed_case_init_values_equal_retention_and_events_load() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = r#"{
    "digital_twin_name": "MyTwin",
    "hot_storage_size_in_days": 30,
    "cold_storage_size_in_days": 30
}"#;
    let devices = r#"[
  {
    "id": "temperature-sensor-1",
    "properties": [
      { "name": "temperature", "dataType": "DOUBLE", "initValue": 20.5 },
      { "name": "alarm", "dataType": "BOOLEAN", "initValue": false },
      { "name": "status", "dataType": "STRING" }
    ]
  }
]"#;
    let hierarchy = r#"[
  { "type": "entity", "id": "hall-1", "children": [
      { "type": "component", "name": "sensor", "componentTypeId": "MyTwin-temperature-sensor-1" }
  ] }
]"#;
    // The established tool's rule shapes: a function with feedback, and a workflow (which this
    // version checks but does not deploy, and says so).
    let events = r#"[
  {
    "condition": "hall-1.sensor.temperature == DOUBLE(30)",
    "action": {
      "type": "lambda",
      "functionName": "high-temperature-callback",
      "autoDeploy": true,
      "feedback": {
        "type": "mqtt",
        "iotDeviceId": "temperature-sensor-1",
        "payload": "High Temp Warning"
      }
    }
  },
  {
    "condition": "hall-1.sensor.temperature > DOUBLE(999)",
    "action": { "type": "step_function" }
  }
]"#;
    let crate_dir = dir.path().join("lambdas").join("high-temperature-callback");
    std::fs::create_dir_all(&crate_dir).expect("mkdir");
    std::fs::write(crate_dir.join("Cargo.toml"), "[package]\n").expect("write");
    for (name, text) in [
        ("config.json", config),
        ("config_iot_devices.json", devices),
        ("config_providers.json", PROVIDERS),
        ("config_hierarchy.json", hierarchy),
        ("config_events.json", events),
    ] {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    let config = match load_dir(dir.path()) {
        Ok(c) => c,
        Err(problems) => panic!("{problems}"),
    };
    assert_eq!(config.name(), "MyTwin");
    let props = &config.devices[0].properties;
    assert_eq!(props[0].init_value, Some(serde_json::json!(20.5)));
    assert_eq!(props[1].init_value, Some(serde_json::json!(false)));
    assert_eq!(props[2].init_value, None);
    let tree = config.hierarchy.as_deref().unwrap_or_default();
    assert_eq!(
        tree[0].children,
        [HierarchyNode::Component {
            name: "sensor".to_string(),
            iot_device_id: "temperature-sensor-1".to_string(),
            component_type_id: Some("MyTwin-temperature-sensor-1".to_string()),
        }]
    );
    assert_eq!(config.events.len(), 2);
    // Unnamed rules are keyed by what they are: `rule-` and 12 hex digits.
    let key = &config.events[0].key;
    assert!(
        key.len() == 17
            && key.starts_with("rule-")
            && key[5..].chars().all(|c| c.is_ascii_hexdigit()),
        "{key}"
    );
    assert_eq!(config.events[0].action.kind(), "lambda");
    assert_eq!(
        config.events[0].condition.devices(),
        ["temperature-sensor-1"]
    );
    let warnings: Vec<String> = config.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        warnings,
        [
            "config.json:3:33: $.hot_storage_size_in_days: hot_storage_size_in_days equals \
             cold_storage_size_in_days (30): data passes through cold storage the same day it \
             arrives there and goes on to archive",
            "config.json:4:34: $.cold_storage_size_in_days: objects move from cold storage to \
             the archive the day they arrive in cold (cold_storage_size_in_days 30 - \
             hot_storage_size_in_days 30), but S3 STANDARD_IA bills at least 30 days per \
             object: each one is billed 30 days of STANDARD_IA, 30 days more than it is stored; \
             keep cold_storage_size_in_days at least 60 to avoid it",
            "config_iot_devices.json:4:19: $[0].properties: S3 STANDARD_IA bills every cold \
             object as at least 128 KB, and the daily hot-to-cold move writes one object per \
             device per day: a record of device `temperature-sensor-1` is about 131 bytes, so \
             unless it sends at least 1001 messages a day (one every 86 s) each of its cold \
             objects is billed as 128 KB, more than it holds; the same small objects each carry \
             40 KB of billed overhead once archived",
            "config_providers.json:8:23: $.layer_5_provider: nobody can sign in to the Grafana \
             workspace: IAM Identity Center (AWS_SSO) grants no user or group access by itself. \
             Add ids from the IAM Identity Center console (Users / Groups, the `User ID` or \
             `Group ID` field) as \"grafana_admins\": {\"users\": [\"<user id>\"], \"groups\": \
             [\"<group id>\"]} (or grafana_editors / grafana_viewers) and deploy again, or assign \
             them in the Amazon Managed Grafana console under the workspace's Authentication tab",
            "config_events.json:17:25: $[1].action.type (rule 2): `step_function` actions are \
             not deployed by this version; the rule is checked but does nothing",
        ]
    );
    assert_eq!(
        twin_config::names::bucket_name(config.name(), "cold", "123456789012", "us-east-1"),
        "mytwin-cold-4e2acffe"
    );
}
