//! Between the config-derived models and TwinMaker's SDK shapes, both ways: requests are built
//! from the models, and responses are turned back into the models so drift compares like with
//! like.

use super::model::{ComponentModel, ComponentTypeModel, PropertyModel, DEVICE_ID_PROPERTY};
use aws_sdk_iottwinmaker::types::{
    ComponentRequest, DataConnector, DataType as TmDataType, DataValue, FunctionRequest,
    LambdaFunction, PropertyDefinitionRequest, PropertyDefinitionResponse, PropertyRequest, Type,
};
use serde_json::{json, Value};
use twin_config::DataType;
use twin_engine::CloudError;

/// TwinMaker's type for a config data type.
pub fn tm_type(t: DataType) -> Type {
    match t {
        DataType::Double => Type::Double,
        DataType::Integer => Type::Integer,
        DataType::Long => Type::Long,
        DataType::Boolean => Type::Boolean,
        DataType::String => Type::String,
    }
}

/// The config data type of a TwinMaker type; `None` for types the deployer never creates.
pub fn config_type(t: &Type) -> Option<DataType> {
    DataType::parse(t.as_str())
}

/// A `DataValue` JSON object (`{"doubleValue": 1.0}`) as the SDK type.
pub fn sdk_value(v: &Value) -> DataValue {
    let b = DataValue::builder();
    let b = match v.as_object().and_then(|o| o.iter().next()) {
        Some((k, x)) if k == "doubleValue" => b.set_double_value(x.as_f64()),
        Some((k, x)) if k == "integerValue" => {
            b.set_integer_value(x.as_i64().and_then(|n| i32::try_from(n).ok()))
        }
        Some((k, x)) if k == "longValue" => b.set_long_value(x.as_i64()),
        Some((k, x)) if k == "booleanValue" => b.set_boolean_value(x.as_bool()),
        Some((k, x)) if k == "stringValue" => b.set_string_value(x.as_str().map(str::to_string)),
        _ => b,
    };
    b.build()
}

/// An SDK `DataValue` as the JSON object the models use; `None` for kinds the deployer never
/// writes (lists, maps, relationships).
pub fn json_value(v: &DataValue) -> Option<Value> {
    if let Some(x) = v.double_value() {
        return Some(json!({"doubleValue": x}));
    }
    if let Some(x) = v.integer_value() {
        return Some(json!({"integerValue": x}));
    }
    if let Some(x) = v.long_value() {
        return Some(json!({"longValue": x}));
    }
    if let Some(x) = v.boolean_value() {
        return Some(json!({"booleanValue": x}));
    }
    v.string_value().map(|x| json!({"stringValue": x}))
}

/// A property definition of the model as a TwinMaker request. Telemetry properties are stored
/// externally: TwinMaker asks the data connector for their values.
pub fn definition_request(p: &PropertyModel) -> Result<PropertyDefinitionRequest, CloudError> {
    Ok(PropertyDefinitionRequest::builder()
        .data_type(data_type(p.data_type)?)
        .is_time_series(p.time_series)
        .is_stored_externally(p.time_series)
        .is_external_id(p.external_id)
        .is_required_in_entity(p.required)
        .set_default_value(p.default_value.as_ref().map(sdk_value))
        .build())
}

/// A property definition as TwinMaker reports it, in the model's terms; `None` for properties
/// the deployer does not define (inherited or of another type).
pub fn definition_model(p: &PropertyDefinitionResponse) -> Option<PropertyModel> {
    if p.is_inherited {
        return None;
    }
    let data_type = p.data_type().map(|d| d.r#type()).and_then(config_type)?;
    Some(PropertyModel {
        data_type,
        time_series: p.is_time_series,
        external_id: p.is_external_id,
        required: p.is_required_in_entity,
        default_value: p.default_value().and_then(json_value),
    })
}

/// The `dataReader` function implemented by the connector Lambda.
pub fn data_reader(connector_arn: &str) -> Result<FunctionRequest, CloudError> {
    let lambda = LambdaFunction::builder()
        .arn(connector_arn)
        .build()
        .map_err(build_error)?;
    Ok(FunctionRequest::builder()
        .implemented_by(
            DataConnector::builder()
                .is_native(false)
                .lambda(lambda)
                .build(),
        )
        .build())
}

/// The request creating one component of an entity: its type and its device id.
pub fn component_request(c: &ComponentModel) -> ComponentRequest {
    ComponentRequest::builder()
        .component_type_id(&c.component_type_id)
        .properties(
            DEVICE_ID_PROPERTY,
            PropertyRequest::builder()
                .value(DataValue::builder().string_value(&c.iot_device_id).build())
                .build(),
        )
        .build()
}

/// The component type's property definitions as requests, by name.
pub fn definitions(
    model: &ComponentTypeModel,
) -> Result<std::collections::HashMap<String, PropertyDefinitionRequest>, CloudError> {
    model
        .properties
        .iter()
        .map(|(name, p)| Ok((name.clone(), definition_request(p)?)))
        .collect()
}

fn data_type(t: DataType) -> Result<TmDataType, CloudError> {
    TmDataType::builder()
        .r#type(tm_type(t))
        .build()
        .map_err(build_error)
}

fn build_error(e: aws_smithy_types::error::operation::BuildError) -> CloudError {
    CloudError::fatal("RequestInvalid", format!("TwinMaker request: {e}"))
        .with_hint("this is a bug in deployer; please report it")
}

/// The last `:`/`/`-separated segment of an ARN (a function's or role's name).
pub fn arn_name(arn: &str) -> &str {
    arn.rsplit([':', '/']).next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        for v in [
            json!({"doubleValue": 1.5}),
            json!({"integerValue": 3}),
            json!({"longValue": 9_000_000_000_i64}),
            json!({"booleanValue": false}),
            json!({"stringValue": "x"}),
        ] {
            assert_eq!(json_value(&sdk_value(&v)), Some(v));
        }
    }

    #[test]
    fn telemetry_properties_are_stored_externally() {
        let p = PropertyModel {
            data_type: DataType::Long,
            time_series: true,
            external_id: false,
            required: false,
            default_value: None,
        };
        let r = definition_request(&p).map_err(|e| e.to_string());
        let r = r.as_ref().ok();
        assert_eq!(r.and_then(|r| r.is_time_series()), Some(true));
        assert_eq!(r.and_then(|r| r.is_stored_externally()), Some(true));
        assert_eq!(
            r.and_then(|r| r.data_type()).map(|d| d.r#type().clone()),
            Some(Type::Long)
        );
    }

    #[test]
    fn arn_names() {
        assert_eq!(
            arn_name("arn:aws:lambda:us-east-1:1:function:dt-twin-connector"),
            "dt-twin-connector"
        );
        assert_eq!(arn_name("arn:aws:iam::1:role/dt-twinmaker"), "dt-twinmaker");
    }
}
