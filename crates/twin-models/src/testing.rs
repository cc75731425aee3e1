//! Test helpers: a twin config loaded from files written to a temporary directory, so the
//! config is validated exactly as the deployer loads it.

use serde_json::{json, Value};
use twin_config::{ConstProperty, DataType, Device, Property, TwinConfig};

/// A device with DOUBLE telemetry properties and STRING constants (value `"v"`).
pub fn device(id: &str, properties: &[&str], consts: &[&str]) -> Device {
    Device {
        id: id.into(),
        properties: properties
            .iter()
            .map(|p| Property {
                name: p.to_string(),
                data_type: DataType::Double,
                init_value: None,
            })
            .collect(),
        const_properties: consts
            .iter()
            .map(|c| ConstProperty {
                name: c.to_string(),
                data_type: DataType::String,
                value: json!("v"),
            })
            .collect(),
        processor: None,
    }
}

/// The twin `name` with these devices and hierarchy, loaded through `twin_config::load_dir`
/// (layer 4 on no provider, so entity ids are free text, not TwinMaker ids).
pub fn config(name: &str, devices: Vec<Device>, hierarchy: Option<Value>) -> TwinConfig {
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |file: &str, v: &Value| {
        std::fs::write(dir.path().join(file), v.to_string()).expect("write config file")
    };
    write(
        "config.json",
        &json!({"digital_twin_name": name, "hot_storage_size_in_days": 1,
                "cold_storage_size_in_days": 2}),
    );
    write("config_iot_devices.json", &json!(devices));
    write(
        "config_providers.json",
        &json!({"layer_1_provider": "aws", "layer_2_provider": "aws",
                "layer_3_hot_provider": "aws", "layer_3_cold_provider": "aws",
                "layer_3_archive_provider": "aws", "layer_4_provider": "none",
                "layer_5_provider": "none",
                "aws": {"region": "us-east-1", "architecture": "x86_64"}}),
    );
    if let Some(h) = &hierarchy {
        write("config_hierarchy.json", h);
    }
    match twin_config::load_dir(dir.path()) {
        Ok(c) => c,
        Err(problems) => panic!("test config is invalid: {problems}"),
    }
}
