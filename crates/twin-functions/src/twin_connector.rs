//! The twin connector (L4 → L3 hot): TwinMaker's Lambda data connector over the hot store.
//!
//! Two request shapes, told apart by the presence of a time range:
//! - data reader (`DataReaderByEntity` / `DataReaderByComponentType`): `startTime`/`endTime`
//!   (ISO-8601) or `startDateTime`/`endDateTime` (epoch seconds), `selectedProperties`,
//!   `maxResults`, `orderByTime`, `nextToken` → `{"propertyValues":[{"entityPropertyReference":..,
//!   "values":[{"time":..,"value":{"doubleValue":..}}]}],"nextToken":..}`;
//! - last-value reader (`AttributePropertyValueReaderByEntity`): no time range →
//!   `{"propertyValues":{"<name>":{"propertyReference":..,"propertyValue":{"doubleValue":..}}}}`.
//!
//! By entity (`entityId` + `componentName`), the device comes from the component's `iotDeviceId`
//! property (its value, else its default value). By component type (`componentTypeId` and no
//! entity: a query across every component of the type), a [`ComponentDirectory`] says which
//! entities carry the type and which device each component reads; the answer names each value's
//! `entityId`, `componentName` and `externalIdProperty` (`{"iotDeviceId": ..}`). Both are paged:
//! `maxResults` records per answer (across components when by type), `nextToken` to go on.
//!
//! Each value is coerced to the property's declared dataType and keyed by TwinMaker's exact
//! camelCase name (`doubleValue`, `integerValue`, `longValue`, `booleanValue`, `stringValue`).

use crate::data_type::DataType;
use crate::error::CloudError;
use crate::hot_reader::{decode_token, encode_token};
use crate::hot_store::{DeviceQuery, HotStore, Order, TimeRange};
use crate::record::{HotItem, FIELD_DEVICE_ID};
use crate::timestamp::Timestamp;
use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Default page size when the request names none.
pub const DEFAULT_MAX_RESULTS: u32 = 100;
/// The most values per property in one answer.
pub const MAX_MAX_RESULTS: u32 = 1000;
/// How many recent records the last-value reader looks through for properties missing from newer
/// records.
const LAST_VALUE_SCAN_LIMIT: usize = 1000;

/// A connector request, both shapes (fields TwinMaker sends that are not needed are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorRequest {
    /// The workspace.
    pub workspace_id: Option<String>,
    /// The entity (by-entity requests).
    pub entity_id: Option<String>,
    /// The component (by-entity requests).
    pub component_name: Option<String>,
    /// The component type (by-component-type requests).
    pub component_type_id: Option<String>,
    /// Properties whose values are wanted.
    #[serde(default)]
    pub selected_properties: Vec<String>,
    /// ISO-8601 start (inclusive).
    pub start_time: Option<String>,
    /// ISO-8601 end (inclusive).
    pub end_time: Option<String>,
    /// Deprecated epoch-seconds start.
    pub start_date_time: Option<i64>,
    /// Deprecated epoch-seconds end.
    pub end_date_time: Option<i64>,
    /// Page size.
    pub max_results: Option<u32>,
    /// `ASCENDING` (default) or `DESCENDING`.
    pub order_by_time: Option<String>,
    /// Continuation from a previous answer.
    pub next_token: Option<String>,
    /// The component's properties: definitions (dataType) and values.
    #[serde(default)]
    pub properties: BTreeMap<String, PropertyEntry>,
}

/// One property of the component in a request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyEntry {
    /// The property's definition.
    pub definition: Option<PropertyDefinition>,
    /// The property's current value (a `DataValue`).
    pub value: Option<Map<String, Value>>,
}

/// A property definition (only what the connector needs).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyDefinition {
    /// The dataType.
    pub data_type: Option<DataTypeRef>,
    /// The default value (a `DataValue`).
    pub default_value: Option<Map<String, Value>>,
}

/// `{"type": "DOUBLE"}`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DataTypeRef {
    /// The type's name.
    #[serde(rename = "type")]
    pub type_name: Option<String>,
}

/// Which property a value belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EntityPropertyReference {
    /// The entity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    /// The component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component_name: Option<String>,
    /// The device, for by-component-type requests that name no entity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id_property: Option<BTreeMap<String, String>>,
    /// The property.
    pub property_name: String,
}

/// One timestamped value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimedValue {
    /// ISO-8601 time.
    pub time: String,
    /// A `DataValue`: one key like `doubleValue`.
    pub value: Map<String, Value>,
}

/// A property's values in a data-reader answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyValues {
    /// Which property.
    pub entity_property_reference: EntityPropertyReference,
    /// Its values.
    pub values: Vec<TimedValue>,
}

/// The data-reader answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DataReaderResponse {
    /// One entry per selected property.
    pub property_values: Vec<PropertyValues>,
    /// Continuation, when more values remain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// A property's latest value in a last-value answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LatestValue {
    /// Which property.
    pub property_reference: EntityPropertyReference,
    /// The value.
    pub property_value: Map<String, Value>,
}

/// The last-value answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastValueResponse {
    /// Latest value by property name.
    pub property_values: BTreeMap<String, LatestValue>,
}

/// Why a request cannot be answered (TwinMaker shows the message).
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The request is not a connector request this function understands.
    #[error("bad twin connector request: {0}")]
    BadRequest(String),
    /// Reading the hot store failed.
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// One component of a component type: the entity that carries it and the device it reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ComponentRef {
    /// The entity.
    pub entity_id: String,
    /// The component's name in that entity.
    pub component_name: String,
    /// The device whose records it shows (its `iotDeviceId` value).
    pub device_id: String,
}

/// Which components carry a component type: what a by-component-type request needs, since it
/// names no entity (on AWS, TwinMaker's ListEntities and GetEntity).
#[async_trait]
pub trait ComponentDirectory: Send + Sync {
    /// Every component of `component_type_id` in `workspace`, in any order.
    async fn components_of_type(
        &self,
        workspace: &str,
        component_type_id: &str,
    ) -> Result<Vec<ComponentRef>, CloudError>;
}

/// The directory of a connector built without one: by-component-type requests then fall back to
/// the device the request's own properties name.
pub struct NoDirectory;

#[async_trait]
impl ComponentDirectory for NoDirectory {
    async fn components_of_type(
        &self,
        _workspace: &str,
        _component_type_id: &str,
    ) -> Result<Vec<ComponentRef>, CloudError> {
        Ok(Vec::new())
    }
}

/// A component directory that is a fixed list (tests, the local data plane).
#[async_trait]
impl ComponentDirectory for Vec<(String, ComponentRef)> {
    async fn components_of_type(
        &self,
        _workspace: &str,
        component_type_id: &str,
    ) -> Result<Vec<ComponentRef>, CloudError> {
        Ok(self
            .iter()
            .filter(|(t, _)| t == component_type_id)
            .map(|(_, c)| c.clone())
            .collect())
    }
}

/// Where a by-component-type page stopped: the component (by entity and name, so a changed
/// directory cannot silently shift it) and the last record returned from it (`None`: none yet).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TypeCursor {
    entity_id: String,
    component_name: String,
    after: Option<String>,
}

const TYPE_TOKEN_VERSION: &str = "t1";

fn encode_type_token(component_type_id: &str, c: &TypeCursor) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{TYPE_TOKEN_VERSION}\n{component_type_id}\n{}\n{}\n{}",
        c.entity_id,
        c.component_name,
        c.after.as_deref().unwrap_or_default()
    ))
}

fn decode_type_token(token: &str, component_type_id: &str) -> Result<TypeCursor, ConnectorError> {
    let bad = || ConnectorError::BadRequest("nextToken is not a token this reader issued".into());
    let raw = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<&str> = raw.splitn(5, '\n').collect();
    let [version, type_id, entity, component, after] = parts[..] else {
        return Err(bad());
    };
    if version != TYPE_TOKEN_VERSION {
        return Err(bad());
    }
    if type_id != component_type_id {
        return Err(ConnectorError::BadRequest(format!(
            "nextToken was issued for component type {type_id}, not {component_type_id}"
        )));
    }
    Ok(TypeCursor {
        entity_id: entity.to_string(),
        component_name: component.to_string(),
        after: (!after.is_empty()).then(|| after.to_string()),
    })
}

/// A value in TwinMaker's `DataValue` form, or `None` if it does not fit the type.
pub fn data_value(data_type: DataType, value: &Value) -> Option<Map<String, Value>> {
    let coerced = data_type.coerce(value).ok()?;
    let mut map = Map::with_capacity(1);
    map.insert(data_type.twinmaker_key().to_string(), coerced);
    Some(map)
}

/// The type to report a value under when the request declares none.
fn inferred_type(value: &Value) -> Option<DataType> {
    match value {
        Value::Bool(_) => Some(DataType::Boolean),
        Value::String(_) => Some(DataType::String),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(DataType::Long),
        Value::Number(_) => Some(DataType::Double),
        _ => None,
    }
}

/// The twin connector's logic.
pub struct TwinConnector<S, D = NoDirectory> {
    store: S,
    directory: Option<D>,
}

/// Records of one device in a time range, one page: what both request kinds read.
struct DevicePage {
    records: Vec<HotItem>,
    /// More records follow the last one returned.
    more: bool,
}

impl ConnectorRequest {
    fn device_id(&self) -> Result<String, ConnectorError> {
        let entry = self.properties.get(FIELD_DEVICE_ID);
        let from = |m: Option<&Map<String, Value>>| {
            m.and_then(|m| m.get("stringValue"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        entry
            .and_then(|e| from(e.value.as_ref()).or_else(|| from(e.definition.as_ref().and_then(|d| d.default_value.as_ref()))))
            .filter(|d| !d.is_empty())
            .ok_or_else(|| {
                ConnectorError::BadRequest(
                    "the component has no iotDeviceId property value; the component type must define iotDeviceId".into(),
                )
            })
    }

    fn declared_type(&self, property: &str) -> Option<DataType> {
        self.properties
            .get(property)?
            .definition
            .as_ref()?
            .data_type
            .as_ref()?
            .type_name
            .as_deref()
            .and_then(DataType::from_name)
    }

    fn selected(&self) -> Vec<String> {
        if !self.selected_properties.is_empty() {
            return self.selected_properties.clone();
        }
        self.properties
            .keys()
            .filter(|k| k.as_str() != FIELD_DEVICE_ID && self.declared_type(k).is_some())
            .cloned()
            .collect()
    }

    fn reference(&self, device_id: &str, property: &str) -> EntityPropertyReference {
        let by_type = self.entity_id.is_none();
        EntityPropertyReference {
            entity_id: self.entity_id.clone(),
            component_name: self.component_name.clone(),
            external_id_property: by_type
                .then(|| BTreeMap::from([(FIELD_DEVICE_ID.to_string(), device_id.to_string())])),
            property_name: property.to_string(),
        }
    }

    fn type_reference(&self, c: &ComponentRef, property: &str) -> EntityPropertyReference {
        EntityPropertyReference {
            entity_id: Some(c.entity_id.clone()),
            component_name: Some(c.component_name.clone()),
            external_id_property: Some(BTreeMap::from([(
                FIELD_DEVICE_ID.to_string(),
                c.device_id.clone(),
            )])),
            property_name: property.to_string(),
        }
    }

    fn order(&self) -> Result<Order, ConnectorError> {
        match self.order_by_time.as_deref() {
            None | Some("ASCENDING") => Ok(Order::Ascending),
            Some("DESCENDING") => Ok(Order::Descending),
            Some(other) => Err(ConnectorError::BadRequest(format!(
                "orderByTime {other} is not ASCENDING or DESCENDING"
            ))),
        }
    }

    fn page_size(&self) -> usize {
        self.max_results
            .unwrap_or(DEFAULT_MAX_RESULTS)
            .clamp(1, MAX_MAX_RESULTS) as usize
    }

    /// The property values of `records` for each selected property, one entry per property.
    fn values_of(
        &self,
        records: &[HotItem],
        reference: impl Fn(&str) -> EntityPropertyReference,
    ) -> Vec<PropertyValues> {
        self.selected()
            .into_iter()
            .map(|name| {
                let declared = self.declared_type(&name);
                let values = records
                    .iter()
                    .filter_map(|r| {
                        let raw = r.properties.get(&name)?;
                        let value = data_value(declared.or_else(|| inferred_type(raw))?, raw)?;
                        Some(TimedValue {
                            time: r.id.canonical(),
                            value,
                        })
                    })
                    .collect();
                PropertyValues {
                    entity_property_reference: reference(&name),
                    values,
                }
            })
            .collect()
    }

    /// A by-component-type request: a component type and no entity.
    pub fn is_by_component_type(&self) -> bool {
        self.entity_id.is_none() && self.component_type_id.is_some()
    }

    fn bound(
        &self,
        iso: &Option<String>,
        epoch: Option<i64>,
        name: &str,
    ) -> Result<Option<Timestamp>, ConnectorError> {
        if let Some(text) = iso {
            return Timestamp::parse(text)
                .map(Some)
                .map_err(|e| ConnectorError::BadRequest(format!("{name}: {e}")));
        }
        epoch
            .map(|s| {
                s.checked_mul(1000)
                    .ok_or_else(|| {
                        ConnectorError::BadRequest(format!("{name}: {s} is out of range"))
                    })
                    .and_then(|ms| {
                        Timestamp::from_millis(ms)
                            .map_err(|e| ConnectorError::BadRequest(format!("{name}: {e}")))
                    })
            })
            .transpose()
    }

    /// Whether this is a data-reader (time range) request rather than a last-value request.
    pub fn is_data_reader(&self) -> bool {
        self.start_time.is_some()
            || self.end_time.is_some()
            || self.start_date_time.is_some()
            || self.end_date_time.is_some()
    }
}

impl<S: HotStore> TwinConnector<S> {
    /// A connector over `store` that answers by-component-type requests only for the device
    /// the request's own properties name (see [`TwinConnector::with_directory`]).
    pub fn new(store: S) -> Self {
        Self {
            store,
            directory: None,
        }
    }

    /// This connector, finding the components of a type through `directory`.
    pub fn with_directory<D: ComponentDirectory>(self, directory: D) -> TwinConnector<S, D> {
        TwinConnector {
            store: self.store,
            directory: Some(directory),
        }
    }
}

impl<S: HotStore, D: ComponentDirectory> TwinConnector<S, D> {
    /// Handles one event in either shape, returning the answer as JSON.
    pub async fn handle(&self, event: Value) -> Result<Value, ConnectorError> {
        let request: ConnectorRequest =
            serde_json::from_value(event).map_err(|e| ConnectorError::BadRequest(e.to_string()))?;
        let answer = if request.is_data_reader() {
            serde_json::to_value(self.read_values(&request).await?)
        } else {
            serde_json::to_value(self.read_latest(&request).await?)
        };
        answer.map_err(|e| ConnectorError::BadRequest(e.to_string()))
    }

    /// The data reader: values of the selected properties in the time range, one page; by
    /// component type across the type's components when the connector has a directory.
    pub async fn read_values(
        &self,
        request: &ConnectorRequest,
    ) -> Result<DataReaderResponse, ConnectorError> {
        match (&self.directory, &request.component_type_id) {
            (Some(directory), Some(type_id)) if request.is_by_component_type() => {
                self.read_values_by_type(request, directory, type_id).await
            }
            _ => self.read_values_by_entity(request).await,
        }
    }

    /// One page of `device_id`'s records in the request's range, after `after`.
    async fn device_page(
        &self,
        request: &ConnectorRequest,
        device_id: &str,
        mut after: Option<String>,
        max: usize,
    ) -> Result<DevicePage, ConnectorError> {
        let start = request.bound(&request.start_time, request.start_date_time, "startTime")?;
        let end = request.bound(&request.end_time, request.end_date_time, "endTime")?;
        let order = request.order()?;
        let mut records: Vec<HotItem> = Vec::new();
        loop {
            let query = DeviceQuery {
                device_id: device_id.to_string(),
                range: TimeRange::inclusive(start, end),
                after: after.take(),
                order,
                limit: Some((max - records.len() + 1) as u32),
            };
            let page = self.store.query_page(&query).await?;
            records.extend(page.items);
            if records.len() > max {
                records.truncate(max);
                return Ok(DevicePage {
                    records,
                    more: true,
                });
            }
            match page.next {
                Some(next) if records.len() < max => after = Some(next),
                // Exactly full with more pages: the next page may be empty, but a token that
                // leads to an empty page is allowed by the contract.
                Some(_) => {
                    return Ok(DevicePage {
                        records,
                        more: true,
                    })
                }
                None => {
                    return Ok(DevicePage {
                        records,
                        more: false,
                    })
                }
            }
        }
    }

    async fn read_values_by_entity(
        &self,
        request: &ConnectorRequest,
    ) -> Result<DataReaderResponse, ConnectorError> {
        let device_id = request.device_id()?;
        let after = request
            .next_token
            .as_deref()
            .map(|t| decode_token(t, &device_id).map_err(|e| ConnectorError::BadRequest(e.0)))
            .transpose()?;
        let page = self
            .device_page(request, &device_id, after, request.page_size())
            .await?;
        let next_token = if page.more {
            page.records
                .last()
                .map(|r| encode_token(&device_id, &r.id.canonical()))
        } else {
            None
        };
        Ok(DataReaderResponse {
            property_values: request
                .values_of(&page.records, |name| request.reference(&device_id, name)),
            next_token,
        })
    }

    /// By component type: the type's components in (entity, component) order, each device's
    /// records in the request's order, `maxResults` records in all per page.
    async fn read_values_by_type(
        &self,
        request: &ConnectorRequest,
        directory: &D,
        type_id: &str,
    ) -> Result<DataReaderResponse, ConnectorError> {
        let workspace = request.workspace_id.as_deref().ok_or_else(|| {
            ConnectorError::BadRequest(
                "a by-component-type request must name its workspaceId".into(),
            )
        })?;
        let mut components = directory.components_of_type(workspace, type_id).await?;
        components.sort();
        components.dedup();
        let (mut index, mut after) = match request.next_token.as_deref() {
            None => (0, None),
            Some(t) => {
                let cursor = decode_type_token(t, type_id)?;
                let at = components
                    .iter()
                    .position(|c| {
                        c.entity_id == cursor.entity_id && c.component_name == cursor.component_name
                    })
                    .ok_or_else(|| {
                        ConnectorError::BadRequest(format!(
                            "nextToken continues at component {} of entity {}, which no longer \
                             has component type {type_id}; start the query again",
                            cursor.component_name, cursor.entity_id
                        ))
                    })?;
                (at, cursor.after)
            }
        };
        let mut left = request.page_size();
        let mut property_values = Vec::new();
        let mut next_token = None;
        while let Some(c) = components.get(index) {
            let page = self
                .device_page(request, &c.device_id, after.take(), left)
                .await?;
            left -= page.records.len();
            property_values
                .extend(request.values_of(&page.records, |name| request.type_reference(c, name)));
            if page.more {
                next_token = Some(TypeCursor {
                    entity_id: c.entity_id.clone(),
                    component_name: c.component_name.clone(),
                    after: page.records.last().map(|r| r.id.canonical()),
                });
                break;
            }
            index += 1;
            if left == 0 {
                // Full at a component boundary: go on with the next component, if any.
                next_token = components.get(index).map(|n| TypeCursor {
                    entity_id: n.entity_id.clone(),
                    component_name: n.component_name.clone(),
                    after: None,
                });
                break;
            }
        }
        Ok(DataReaderResponse {
            property_values,
            next_token: next_token.map(|c| encode_type_token(type_id, &c)),
        })
    }

    /// The last-value reader: each selected property's most recent value.
    pub async fn read_latest(
        &self,
        request: &ConnectorRequest,
    ) -> Result<LastValueResponse, ConnectorError> {
        let device_id = request.device_id()?;
        let wanted = request.selected();
        let mut found: BTreeMap<String, LatestValue> = BTreeMap::new();
        let mut after = None;
        let mut scanned = 0;
        while found.len() < wanted.len() && scanned < LAST_VALUE_SCAN_LIMIT {
            let query = DeviceQuery {
                device_id: device_id.clone(),
                range: TimeRange::All,
                after: after.take(),
                order: Order::Descending,
                limit: Some(100),
            };
            let page = self.store.query_page(&query).await?;
            scanned += page.items.len();
            for record in &page.items {
                for name in &wanted {
                    if found.contains_key(name) {
                        continue;
                    }
                    let Some(raw) = record.properties.get(name) else {
                        continue;
                    };
                    let Some(value) = request
                        .declared_type(name)
                        .or_else(|| inferred_type(raw))
                        .and_then(|t| data_value(t, raw))
                    else {
                        continue;
                    };
                    found.insert(
                        name.clone(),
                        LatestValue {
                            property_reference: request.reference(&device_id, name),
                            property_value: value,
                        },
                    );
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        Ok(LastValueResponse {
            property_values: found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::in_memory::InMemoryHotStore;
    use serde_json::json;

    async fn store() -> InMemoryHotStore {
        let store = InMemoryHotStore::new(3);
        for i in 0..10i64 {
            let mut props = json!({"temperature": 20 + i, "count": i, "big": 3_000_000_000i64 + i, "on": i % 2 == 0, "mode": "eco"});
            if i == 9 {
                props = json!({"temperature": 29.5});
            }
            let item = HotItem {
                device_id: "s-1".into(),
                id: Timestamp::from_millis(1_700_000_000_000 + i * 60_000).unwrap(),
                properties: props.as_object().cloned().unwrap_or_default(),
            };
            store.put_item(&item).await.unwrap();
        }
        store
    }

    fn properties() -> Value {
        json!({
            "iotDeviceId": {"definition": {"dataType": {"type": "STRING"}}, "value": {"stringValue": "s-1"}},
            "temperature": {"definition": {"dataType": {"type": "DOUBLE"}, "isTimeSeries": true}},
            "count": {"definition": {"dataType": {"type": "INTEGER"}, "isTimeSeries": true}},
            "big": {"definition": {"dataType": {"type": "LONG"}, "isTimeSeries": true}},
            "on": {"definition": {"dataType": {"type": "BOOLEAN"}, "isTimeSeries": true}},
            "mode": {"definition": {"dataType": {"type": "STRING"}, "isTimeSeries": true}}
        })
    }

    #[tokio::test]
    async fn data_reader_answers_with_twinmaker_value_keys() {
        let c = TwinConnector::new(store().await);
        let out = c
            .handle(json!({
                "workspaceId": "w", "entityId": "room", "componentName": "sensor",
                "selectedProperties": ["temperature", "count", "big", "on", "mode"],
                "startTime": "2023-11-14T22:13:20.000Z", "endTime": "2023-11-14T22:14:20.000Z",
                "properties": properties()
            }))
            .await
            .unwrap();
        assert_eq!(
            out,
            json!({"propertyValues": [
                {"entityPropertyReference": {"entityId": "room", "componentName": "sensor", "propertyName": "temperature"},
                 "values": [{"time": "2023-11-14T22:13:20.000Z", "value": {"doubleValue": 20.0}},
                            {"time": "2023-11-14T22:14:20.000Z", "value": {"doubleValue": 21.0}}]},
                {"entityPropertyReference": {"entityId": "room", "componentName": "sensor", "propertyName": "count"},
                 "values": [{"time": "2023-11-14T22:13:20.000Z", "value": {"integerValue": 0}},
                            {"time": "2023-11-14T22:14:20.000Z", "value": {"integerValue": 1}}]},
                {"entityPropertyReference": {"entityId": "room", "componentName": "sensor", "propertyName": "big"},
                 "values": [{"time": "2023-11-14T22:13:20.000Z", "value": {"longValue": 3000000000i64}},
                            {"time": "2023-11-14T22:14:20.000Z", "value": {"longValue": 3000000001i64}}]},
                {"entityPropertyReference": {"entityId": "room", "componentName": "sensor", "propertyName": "on"},
                 "values": [{"time": "2023-11-14T22:13:20.000Z", "value": {"booleanValue": true}},
                            {"time": "2023-11-14T22:14:20.000Z", "value": {"booleanValue": false}}]},
                {"entityPropertyReference": {"entityId": "room", "componentName": "sensor", "propertyName": "mode"},
                 "values": [{"time": "2023-11-14T22:13:20.000Z", "value": {"stringValue": "eco"}},
                            {"time": "2023-11-14T22:14:20.000Z", "value": {"stringValue": "eco"}}]}
            ]})
        );
    }

    #[tokio::test]
    async fn next_token_pages_through_without_gaps_in_both_orders() {
        let c = TwinConnector::new(store().await);
        for (order, expected_first) in [("ASCENDING", 20.0), ("DESCENDING", 29.5)] {
            let mut token: Option<String> = None;
            let mut seen = Vec::new();
            loop {
                let mut req = json!({
                    "componentTypeId": "twin-s-1", "selectedProperties": ["temperature"],
                    "startDateTime": 1_600_000_000, "endDateTime": 1_800_000_000,
                    "maxResults": 4, "orderByTime": order, "properties": properties()
                });
                if let Some(t) = &token {
                    req["nextToken"] = json!(t);
                }
                let out = c.handle(req).await.unwrap();
                let entry = &out["propertyValues"][0];
                assert_eq!(
                    entry["entityPropertyReference"]["externalIdProperty"],
                    json!({"iotDeviceId": "s-1"})
                );
                assert!(entry["entityPropertyReference"].get("entityId").is_none());
                for v in entry["values"].as_array().unwrap() {
                    seen.push(v["value"]["doubleValue"].as_f64().unwrap());
                }
                match out.get("nextToken").and_then(Value::as_str) {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
            assert_eq!(seen.len(), 10, "{order}");
            assert_eq!(seen[0], expected_first, "{order}");
        }
    }

    #[tokio::test]
    async fn last_value_reader_returns_each_property_latest_value() {
        let c = TwinConnector::new(store().await);
        let out = c
            .handle(json!({"workspaceId": "w", "entityId": "room", "componentName": "sensor",
                           "selectedProperties": ["temperature", "count"], "properties": properties()}))
            .await
            .unwrap();
        assert_eq!(
            out,
            json!({"propertyValues": {
                "count": {"propertyReference": {"entityId": "room", "componentName": "sensor", "propertyName": "count"},
                          "propertyValue": {"integerValue": 8}},
                "temperature": {"propertyReference": {"entityId": "room", "componentName": "sensor", "propertyName": "temperature"},
                                "propertyValue": {"doubleValue": 29.5}}
            }})
        );
    }

    fn component(entity: &str, device: &str) -> ComponentRef {
        ComponentRef {
            entity_id: entity.into(),
            component_name: "sensor".into(),
            device_id: device.into(),
        }
    }

    /// `s-1` has 10 records (from `store`), `s-2` three more; both carry type `dt-s`, held by
    /// room-2 (s-2) and room-1 (s-1); `other` is a type of its own.
    async fn two_device_connector() -> TwinConnector<InMemoryHotStore, Vec<(String, ComponentRef)>>
    {
        let store = store().await;
        for i in 0..3i64 {
            let item = HotItem {
                device_id: "s-2".into(),
                id: Timestamp::from_millis(1_700_000_000_000 + i * 60_000).unwrap(),
                properties: json!({"temperature": 100 + i})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            };
            store.put_item(&item).await.unwrap();
        }
        TwinConnector::new(store).with_directory(vec![
            ("dt-s".to_string(), component("room-2", "s-2")),
            ("other".to_string(), component("yard", "s-9")),
            ("dt-s".to_string(), component("room-1", "s-1")),
        ])
    }

    fn by_type(order: &str, token: &Option<String>) -> Value {
        let mut req = json!({
            "workspaceId": "w", "componentTypeId": "dt-s", "selectedProperties": ["temperature"],
            "startTime": "2023-01-01T00:00:00Z", "endTime": "2025-01-01T00:00:00Z",
            "maxResults": 4, "orderByTime": order,
            "properties": {"temperature": {"definition": {"dataType": {"type": "DOUBLE"}, "isTimeSeries": true}},
                           "iotDeviceId": {"definition": {"dataType": {"type": "STRING"}, "isExternalId": true}}}
        });
        if let Some(t) = token {
            req["nextToken"] = json!(t);
        }
        req
    }

    #[tokio::test]
    async fn by_component_type_pages_through_every_component_of_the_type() {
        let c = two_device_connector().await;
        for (order, first) in [("ASCENDING", 20.0), ("DESCENDING", 29.5)] {
            let mut token = None;
            let mut seen: Vec<(String, f64)> = Vec::new();
            let mut pages = 0;
            loop {
                let out = c.handle(by_type(order, &token)).await.unwrap();
                pages += 1;
                let mut in_page = 0;
                for entry in out["propertyValues"].as_array().unwrap() {
                    let r = &entry["entityPropertyReference"];
                    let entity = r["entityId"].as_str().unwrap().to_string();
                    let device = if entity == "room-1" { "s-1" } else { "s-2" };
                    assert_eq!(r["componentName"], "sensor");
                    assert_eq!(r["externalIdProperty"], json!({"iotDeviceId": device}));
                    assert_eq!(r["propertyName"], "temperature");
                    for v in entry["values"].as_array().unwrap() {
                        seen.push((entity.clone(), v["value"]["doubleValue"].as_f64().unwrap()));
                        in_page += 1;
                    }
                }
                assert!(in_page <= 4, "{order}: maxResults is per answer");
                match out.get("nextToken").and_then(Value::as_str) {
                    Some(t) => token = Some(t.to_string()),
                    None => break,
                }
            }
            // 13 records in pages of 4; room-1 (s-1) before room-2 (s-2), the other type unread.
            assert_eq!(pages, 4, "{order}");
            assert_eq!(seen.len(), 13, "{order}: {seen:?}");
            assert_eq!(seen[0], ("room-1".to_string(), first), "{order}");
            assert!(seen[..10].iter().all(|(e, _)| e == "room-1"), "{order}");
            assert!(seen[10..].iter().all(|(e, _)| e == "room-2"), "{order}");
        }
    }

    #[tokio::test]
    async fn by_component_type_tokens_are_bound_to_their_type_and_workspace_is_needed() {
        let c = two_device_connector().await;
        let out = c.handle(by_type("ASCENDING", &None)).await.unwrap();
        let token = out["nextToken"].as_str().map(str::to_string);
        let mut other = by_type("ASCENDING", &token);
        other["componentTypeId"] = json!("other");
        let err = c.handle(other).await.unwrap_err();
        assert!(
            err.to_string().contains("issued for component type dt-s"),
            "{err}"
        );
        let mut no_ws = by_type("ASCENDING", &None);
        no_ws.as_object_mut().unwrap().remove("workspaceId");
        let err = c.handle(no_ws).await.unwrap_err();
        assert!(err.to_string().contains("workspaceId"), "{err}");
        // A type no entity carries answers with no values and no token.
        let mut unused = by_type("ASCENDING", &None);
        unused["componentTypeId"] = json!("dt-unused");
        let out = c.handle(unused).await.unwrap();
        assert_eq!(out, json!({"propertyValues": []}));
    }

    #[tokio::test]
    async fn a_component_without_device_is_a_clear_error() {
        let c = TwinConnector::new(store().await);
        let err = c
            .handle(json!({"entityId": "room", "startTime": "2023-11-14T22:13:20Z"}))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("iotDeviceId"), "{err}");
    }
}
