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
//! The device comes from the component's `iotDeviceId` property (its value, else its default
//! value). Each value is coerced to the property's declared dataType and keyed by TwinMaker's
//! exact camelCase name (`doubleValue`, `integerValue`, `longValue`, `booleanValue`, `stringValue`).

use crate::data_type::DataType;
use crate::error::CloudError;
use crate::hot_reader::{decode_token, encode_token};
use crate::hot_store::{DeviceQuery, HotStore, Order, TimeRange};
use crate::record::{HotItem, FIELD_DEVICE_ID};
use crate::timestamp::Timestamp;
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
pub struct TwinConnector<S> {
    store: S,
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
    /// A connector over `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }

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

    /// The data reader: values of the selected properties in the time range, one page.
    pub async fn read_values(
        &self,
        request: &ConnectorRequest,
    ) -> Result<DataReaderResponse, ConnectorError> {
        let device_id = request.device_id()?;
        let start = request.bound(&request.start_time, request.start_date_time, "startTime")?;
        let end = request.bound(&request.end_time, request.end_date_time, "endTime")?;
        let order = match request.order_by_time.as_deref() {
            None | Some("ASCENDING") => Order::Ascending,
            Some("DESCENDING") => Order::Descending,
            Some(other) => {
                return Err(ConnectorError::BadRequest(format!(
                    "orderByTime {other} is not ASCENDING or DESCENDING"
                )))
            }
        };
        let max = request
            .max_results
            .unwrap_or(DEFAULT_MAX_RESULTS)
            .clamp(1, MAX_MAX_RESULTS) as usize;
        let mut after = request
            .next_token
            .as_deref()
            .map(|t| decode_token(t, &device_id).map_err(|e| ConnectorError::BadRequest(e.0)))
            .transpose()?;
        let mut records: Vec<HotItem> = Vec::new();
        let mut more = false;
        loop {
            let query = DeviceQuery {
                device_id: device_id.clone(),
                range: TimeRange::inclusive(start, end),
                after: after.take(),
                order,
                limit: Some((max - records.len() + 1) as u32),
            };
            let page = self.store.query_page(&query).await?;
            records.extend(page.items);
            if records.len() > max {
                records.truncate(max);
                more = true;
                break;
            }
            match page.next {
                Some(next) if records.len() < max => after = Some(next),
                // Exactly full with more pages: the next page may be empty, but a token that
                // leads to an empty page is allowed by the contract.
                Some(_) => {
                    more = true;
                    break;
                }
                None => break,
            }
        }
        let next_token = if more {
            records
                .last()
                .map(|r| encode_token(&device_id, &r.id.canonical()))
        } else {
            None
        };
        let property_values = request
            .selected()
            .into_iter()
            .map(|name| {
                let declared = request.declared_type(&name);
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
                    entity_property_reference: request.reference(&device_id, &name),
                    values,
                }
            })
            .collect();
        Ok(DataReaderResponse {
            property_values,
            next_token,
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
