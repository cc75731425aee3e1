//! The example twin at the repository root loads without a single diagnostic.

use std::path::Path;

use twin_config::{DataType, HierarchyNode, Layer, LogMode, ProviderName};

#[test]
fn the_example_twin_loads_cleanly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = match twin_config::load_dir(&root) {
        Ok(c) => c,
        Err(problems) => panic!("the example twin has problems:\n{problems}"),
    };
    assert_eq!(config.twin.digital_twin_name, "digital-twin");
    assert_eq!(config.twin.hot_storage_size_in_days, 30);
    assert_eq!(config.twin.cold_storage_size_in_days, 90);
    assert_eq!(config.twin.mode, LogMode::Debug);
    let ids: Vec<&str> = config.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "temperature-sensor-1",
            "temperature-sensor-2",
            "pressure-sensor-1"
        ]
    );
    let pressure = config
        .device("pressure-sensor-1")
        .map(|d| d.properties.clone());
    assert_eq!(
        pressure.map(|p| p
            .iter()
            .map(|p| (p.name.clone(), p.data_type))
            .collect::<Vec<_>>()),
        Some(vec![
            ("pressure".to_string(), DataType::Double),
            ("density".to_string(), DataType::Double),
            ("hardness".to_string(), DataType::Integer),
        ])
    );
    for layer in [
        Layer::L1,
        Layer::L2,
        Layer::L3Hot,
        Layer::L3Cold,
        Layer::L3Archive,
    ] {
        assert_eq!(config.providers.get(layer), ProviderName::Aws, "{layer}");
    }
    assert_eq!(config.providers.get(Layer::L4), ProviderName::None);
    assert_eq!(config.providers.get(Layer::L5), ProviderName::None);
    assert_eq!(config.providers.aws.region.as_deref(), Some("us-east-1"));
    let tree = config.hierarchy.unwrap_or_default();
    assert_eq!(tree.len(), 1);
    let devices: Vec<&str> = tree[0]
        .children
        .iter()
        .filter_map(|n| match n {
            HierarchyNode::Component { iot_device_id, .. } => Some(iot_device_id.as_str()),
            HierarchyNode::Entity(_) => None,
        })
        .collect();
    assert_eq!(devices, ids);
}
