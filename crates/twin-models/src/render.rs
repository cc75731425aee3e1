//! The files `deployer model` writes, as (file name, text) pairs, and the one document it
//! prints without `--out`. Pure: the CLI does the writing.

use crate::dtdl::{self, Interface};
use crate::dtmi::Collision;
use crate::order::{self, OrderError, ADT_MAX_MODELS_PER_CALL};
use crate::twinmaker;
use serde_json::{json, Value};
use sha2::Digest;
use twin_config::TwinConfig;

/// The model format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// DTDL v3 interfaces (Azure Digital Twins).
    Dtdl,
    /// IoT TwinMaker component types and entities.
    TwinMaker,
}

/// One file of the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFile {
    /// File name (no directories), safe on every file system.
    pub name: String,
    /// Its contents (pretty JSON, or text for `upload-order.txt`), ending in a newline.
    pub text: String,
}

/// Why the models cannot be made from this config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Two ids map to the same DTMI or DTDL name.
    #[error("{0}")]
    Collision(#[from] Collision),
    /// The interfaces cannot be ordered for upload.
    #[error("{0}")]
    Order(#[from] OrderError),
    /// An entity has a device's id: the two would be one twin.
    #[error(
        "entity {0:?} has the id of a device, and a twin id names one twin; rename the entity"
    )]
    SharedTwinId(String),
}

/// Name of the file listing the DTDL files in upload order, batch by batch.
pub const UPLOAD_ORDER_FILE: &str = "upload-order.txt";

/// Name of the TwinMaker entities file.
pub const ENTITIES_FILE: &str = "entities.json";

/// The files of `format`: for DTDL one file per interface plus [`UPLOAD_ORDER_FILE`]; for
/// TwinMaker one file per component type plus [`ENTITIES_FILE`].
pub fn render(config: &TwinConfig, format: Format) -> Result<Vec<ModelFile>, ModelError> {
    match format {
        Format::Dtdl => {
            let interfaces = dtdl::interfaces(config)?;
            let batches = order::upload_batches(&interfaces, ADT_MAX_MODELS_PER_CALL)?;
            let mut files = Vec::new();
            let mut listing = String::from(
                "# DTDL files in upload order; each batch is one call (at most 250 models)\n",
            );
            // DTMIs are case-sensitive, file systems often not: `Sensor` and `sensor` must not
            // land in one file.
            let mut taken = std::collections::BTreeSet::new();
            for (n, batch) in batches.iter().enumerate() {
                listing.push_str(&format!("# batch {}\n", n + 1));
                for i in batch {
                    let name = unique_name(&mut taken, interface_file_name(i), &i.id);
                    listing.push_str(&name);
                    listing.push('\n');
                    files.push(ModelFile {
                        name,
                        text: pretty(&json!(i)),
                    });
                }
            }
            files.push(ModelFile {
                name: UPLOAD_ORDER_FILE.to_string(),
                text: listing,
            });
            Ok(files)
        }
        Format::TwinMaker => {
            let mut taken = std::collections::BTreeSet::from([ENTITIES_FILE.to_string()]);
            let mut files: Vec<ModelFile> = twinmaker::component_types(config)
                .iter()
                .map(|ct| ModelFile {
                    name: unique_name(&mut taken, format!("{}.component-type.json", ct.id), &ct.id),
                    text: pretty(&twinmaker::component_type_json(ct)),
                })
                .collect();
            files.push(ModelFile {
                name: ENTITIES_FILE.to_string(),
                text: pretty(&twinmaker::entities_json(&twinmaker::twin_entities(config))),
            });
            Ok(files)
        }
    }
}

/// Everything of `format` as one JSON document: for DTDL an array of every interface in upload
/// order (itself a valid DTDL document), for TwinMaker `{"componentTypes", "entities"}`.
pub fn document(config: &TwinConfig, format: Format) -> Result<Value, ModelError> {
    match format {
        Format::Dtdl => {
            let interfaces = dtdl::interfaces(config)?;
            Ok(json!(order::upload_order(&interfaces)?))
        }
        Format::TwinMaker => Ok(json!({
            "componentTypes": twinmaker::component_types(config)
                .iter()
                .map(twinmaker::component_type_json)
                .collect::<Vec<_>>(),
            "entities": twinmaker::entities_json(&twinmaker::twin_entities(config)),
        })),
    }
}

/// The file an interface is written to: `<kind>-<id segment>.json` from its DTMI (the kind
/// and id segments are already file-name safe), e.g. `device-sensor1.json`, `Device.json`.
pub fn interface_file_name(i: &Interface) -> String {
    let path =
        i.id.strip_prefix("dtmi:")
            .and_then(|r| r.rsplit_once(';'))
            .map_or(i.id.as_str(), |(p, _)| p);
    // dtmi:deployer:<twin>:<rest…>: the file is named after what follows the twin.
    let rest: Vec<&str> = path.split(':').skip(2).collect();
    format!("{}.json", rest.join("-"))
}

/// `name`, or `name` with `-<hash of id>` before `.json` when a file of the same name ignoring
/// case is already taken: ids are case-sensitive, many file systems are not.
fn unique_name(taken: &mut std::collections::BTreeSet<String>, name: String, id: &str) -> String {
    if taken.insert(name.to_ascii_lowercase()) {
        return name;
    }
    let hash = hex::encode(sha2::Sha256::digest(id.as_bytes()));
    let name = format!("{}-{}.json", name.trim_end_matches(".json"), &hash[..8]);
    taken.insert(name.to_ascii_lowercase());
    name
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{config, device};

    #[test]
    fn dtdl_files_are_one_per_interface_in_upload_order() {
        let c = config(
            "dt",
            vec![device("b-1", &["p"], &[]), device("a", &["p"], &[])],
            Some(json!([{"id": "room", "children": [
                {"type": "component", "name": "a", "iotDeviceId": "a"}]}])),
        );
        let files = render(&c, Format::Dtdl).unwrap_or_default();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        let b1 = format!("device-{}.json", crate::dtmi::segment("b-1"));
        assert_eq!(
            names,
            [
                "Device.json",
                &b1,
                "device-a.json",
                "entity-room.json",
                UPLOAD_ORDER_FILE
            ]
        );
        let listing = &files[4].text;
        assert!(listing.contains("# batch 1\nDevice.json\n"), "{listing}");
        let parsed = dtdl::parse(&files[2].text).unwrap_or_default();
        assert_eq!(parsed[0].id, dtdl::device_interface_id("dt", "a"));
    }

    #[test]
    fn more_than_250_interfaces_are_listed_in_two_batches_base_first() {
        let devices = (0..260)
            .map(|i| device(&format!("d-{i}"), &["p"], &[]))
            .collect();
        let c = config("dt", devices, None);
        let files = render(&c, Format::Dtdl).unwrap_or_default();
        let listing = files.last().map(|f| f.text.clone()).unwrap_or_default();
        let batches: Vec<Vec<&str>> = listing
            .split("# batch ")
            .skip(1)
            .map(|b| b.lines().skip(1).collect())
            .collect();
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [250, 11]);
        assert_eq!(batches[0][0], "Device.json");
        let owned = crate::dtdl_upload_batches(&c).unwrap_or_default();
        assert_eq!(owned.iter().map(Vec::len).collect::<Vec<_>>(), [250, 11]);
        assert_eq!(owned[0][0].id, dtdl::device_base_id("dt"));
    }

    #[test]
    fn ids_differing_only_in_case_get_different_file_names_ignoring_case() {
        let c = config(
            "dt",
            vec![device("Sensor", &["p"], &[]), device("sensor", &["p"], &[])],
            None,
        );
        let files = render(&c, Format::Dtdl).unwrap_or_default();
        let names: std::collections::BTreeSet<String> =
            files.iter().map(|f| f.name.to_ascii_lowercase()).collect();
        assert_eq!(names.len(), files.len(), "{names:?}");
        assert_eq!(files[1].name, "device-Sensor.json");
        assert!(
            files[2].name.starts_with("device-sensor-"),
            "{}",
            files[2].name
        );
    }

    #[test]
    fn twinmaker_files_are_the_component_types_and_entities() {
        let c = config(
            "dt",
            vec![device("d-1", &["p"], &[])],
            Some(json!([{"id": "room", "children": [
                {"type": "component", "name": "c", "iotDeviceId": "d-1"}]}])),
        );
        let files = render(&c, Format::TwinMaker).unwrap_or_default();
        assert_eq!(files[0].name, "dt-d-1.component-type.json");
        let ct: Value = serde_json::from_str(&files[0].text).unwrap_or_default();
        assert_eq!(ct["componentTypeId"], json!("dt-d-1"));
        assert_eq!(ct["dataReader"], json!("dt-twin-connector"));
        assert_eq!(ct["properties"]["p"]["timeSeries"], json!(true));
        let es: Value = serde_json::from_str(&files[1].text).unwrap_or_default();
        assert_eq!(
            es,
            json!([{"entityId": "room", "parentEntityId": null, "components": {
                "c": {"componentTypeId": "dt-d-1", "iotDeviceId": "d-1"}}}])
        );
        let doc = document(&c, Format::TwinMaker).unwrap_or_default();
        assert_eq!(doc["componentTypes"][0], ct);
        assert_eq!(doc["entities"], es);
    }
}
