//! The device catalogue: every configured device, its property types and the processor function
//! that serves it, in one JSON object the deployer uploads next to the function code.
//!
//! Lambda's environment holds at most 4 KB, which a comma-joined device list passes near 200
//! devices. So the dispatcher and the processors get only the object's location
//! (`DEVICE_CATALOGUE_BUCKET`, `DEVICE_CATALOGUE_KEY`) and read the object once at cold start.
//! Its key carries a hash of its content: a changed device list is a new object and a changed
//! environment, so every function restarts with the new catalogue.
//!
//! ```json
//! {"sharedProcessor": "twin-processor",
//!  "devices": {"s-1": {"properties": [{"name": "temperature", "dataType": "DOUBLE"}]},
//!              "s-2": {"properties": [...], "processor": "twin--s-2-processor"}}}
//! ```
//! A device without `processor` is served by `sharedProcessor`.

use crate::data_type::PropertySpec;
use crate::object_store::ObjectStore;
use crate::record::{FIELD_TOPIC_DEVICE_ID, RESERVED_FIELDS};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The catalogue object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceCatalogue {
    /// The processor function of every device that has none of its own.
    pub shared_processor: String,
    /// The configured devices by id.
    pub devices: BTreeMap<String, CatalogueDevice>,
}

/// One device of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogueDevice {
    /// The device's telemetry properties and their types.
    pub properties: Vec<PropertySpec>,
    /// The device's own processor function (on Azure: its processor crate, whose binary the
    /// one handler runs); absent = the shared processor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processor: Option<String>,
}

/// Where the catalogue object is (`DEVICE_CATALOGUE_BUCKET`, `DEVICE_CATALOGUE_KEY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueLocation {
    /// Bucket (AWS) or container (Azure).
    pub bucket: String,
    /// Object key.
    pub key: String,
}

impl std::fmt::Display for CatalogueLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.bucket, self.key)
    }
}

/// A catalogue that cannot be read or does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the device catalogue {location} cannot be used: {problem}. The deployer uploads it: run `deployer deploy` to restore it"
)]
pub struct CatalogueError {
    /// Where the catalogue was read from.
    pub location: String,
    /// What is wrong.
    pub problem: String,
}

impl DeviceCatalogue {
    /// The serialized object (what the deployer uploads).
    pub fn to_json(&self) -> String {
        // A map of strings and plain structs always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and checks the object read from `location`.
    pub fn parse(bytes: &[u8], location: &CatalogueLocation) -> Result<Self, CatalogueError> {
        let error = |problem: String| CatalogueError {
            location: location.to_string(),
            problem,
        };
        let catalogue: DeviceCatalogue = serde_json::from_slice(bytes)
            .map_err(|e| error(format!("not a device catalogue ({e})")))?;
        if catalogue.shared_processor.trim().is_empty() {
            return Err(error("sharedProcessor is empty".into()));
        }
        if catalogue.devices.is_empty() {
            return Err(error("it lists no device".into()));
        }
        for (id, device) in &catalogue.devices {
            if let Some(problem) = property_problem(&device.properties) {
                return Err(error(format!("device {id}: {problem}")));
            }
        }
        Ok(catalogue)
    }

    /// Reads the catalogue from `location` (once, at cold start).
    pub async fn load(
        store: &dyn ObjectStore,
        location: &CatalogueLocation,
    ) -> Result<Self, CatalogueError> {
        let bytes = store
            .get_object(&location.bucket, &location.key)
            .await
            .map_err(|e| CatalogueError {
                location: location.to_string(),
                problem: e.to_string(),
            })?;
        Self::parse(&bytes, location)
    }

    /// The device, if configured.
    pub fn device(&self, id: &str) -> Option<&CatalogueDevice> {
        self.devices.get(id)
    }

    /// The processor function serving a configured device.
    pub fn processor_of(&self, id: &str) -> Option<&str> {
        self.devices
            .get(id)
            .map(|d| d.processor.as_deref().unwrap_or(&self.shared_processor))
    }
}

/// Why a property list is unusable: empty, a blank, reserved or repeated name.
pub fn property_problem(properties: &[PropertySpec]) -> Option<String> {
    if properties.is_empty() {
        return Some("no properties".into());
    }
    let mut seen = BTreeSet::new();
    for p in properties {
        if p.name.is_empty() {
            return Some("a property has an empty name".into());
        }
        if RESERVED_FIELDS.contains(&p.name.as_str()) || p.name == FIELD_TOPIC_DEVICE_ID {
            return Some(format!("property name {} is reserved", p.name));
        }
        if !seen.insert(p.name.as_str()) {
            return Some(format!("property {} is listed twice", p.name));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_type::DataType;
    use serde_json::json;

    fn at() -> CatalogueLocation {
        CatalogueLocation {
            bucket: "b".into(),
            key: "catalogue/l2/abc.json".into(),
        }
    }

    #[test]
    fn round_trips_and_routes_to_the_own_or_the_shared_processor() {
        let text = json!({
            "sharedProcessor": "t-processor",
            "devices": {
                "a": {"properties": [{"name": "x", "dataType": "DOUBLE"}]},
                "b": {"properties": [{"name": "y", "dataType": "LONG"}], "processor": "t--b-processor"},
            }
        })
        .to_string();
        let c = DeviceCatalogue::parse(text.as_bytes(), &at()).unwrap();
        assert_eq!(c.processor_of("a"), Some("t-processor"));
        assert_eq!(c.processor_of("b"), Some("t--b-processor"));
        assert_eq!(c.processor_of("c"), None);
        assert_eq!(
            c.device("b").unwrap().properties[0].data_type,
            DataType::Long
        );
        assert_eq!(DeviceCatalogue::parse(c.to_json().as_bytes(), &at()), Ok(c));
    }

    #[test]
    fn refuses_what_does_not_make_sense_naming_the_object() {
        for bad in [
            json!([]),
            json!({"sharedProcessor": "p", "devices": {}}),
            json!({"sharedProcessor": "", "devices": {"a": {"properties": [{"name": "x", "dataType": "DOUBLE"}]}}}),
            json!({"sharedProcessor": "p", "devices": {"a": {"properties": []}}}),
            json!({"sharedProcessor": "p", "devices": {"a": {"properties": [{"name": "time", "dataType": "DOUBLE"}]}}}),
            json!({"sharedProcessor": "p", "devices": {"a": {"properties": [{"name": "x", "dataType": "FLOAT"}]}}}),
        ] {
            let e = DeviceCatalogue::parse(bad.to_string().as_bytes(), &at()).unwrap_err();
            assert!(e.to_string().contains("b/catalogue/l2/abc.json"), "{e}");
            assert!(e.to_string().contains("deployer deploy"), "{e}");
        }
    }
}
