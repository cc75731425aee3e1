//! The event rules' actions on AWS ([`ActionSink`]): a function is started with an asynchronous
//! Lambda Invoke, feedback is an IoT data-plane Publish (QoS 1) to the device's own feedback
//! topic, a notification is an SNS Publish to the twin's topic.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::Value;
use twin_config::names;
use twin_events::{Action, Rule};
use twin_functions::event_evaluator::ActionSink;
use twin_functions::{CloudError, CloudErrorKind};

use crate::error_map::cloud_error;

/// The SNS message attribute a notification's delivery id travels in.
pub const DELIVERY_ID_ATTRIBUTE: &str = "deliveryId";

/// The AWS clients and names the actions need. Feedback and notification are optional: a twin
/// whose rules never send feedback has no data-plane endpoint, one that never notifies no topic.
#[derive(Debug, Clone)]
pub struct AwsActionSink {
    twin: String,
    lambda: aws_sdk_lambda::Client,
    iot_data: Option<aws_sdk_iotdataplane::Client>,
    sns: Option<(aws_sdk_sns::Client, String)>,
    /// A rule's `functionName` → the Lambda function to invoke.
    functions: BTreeMap<String, String>,
}

impl AwsActionSink {
    /// A sink for `rules` of `twin`, invoking functions through `lambda`. A function the
    /// deployer deploys (`autoDeploy`) is invoked by the name it gives it
    /// ([`names::event_function_name`]); another is invoked by its `functionName` as written.
    pub fn new(twin: impl Into<String>, rules: &[Rule], lambda: aws_sdk_lambda::Client) -> Self {
        let twin = twin.into();
        let functions = rules
            .iter()
            .filter_map(|r| match &r.action {
                Action::Function {
                    function_name,
                    auto_deploy,
                    ..
                } => {
                    let cloud = if *auto_deploy {
                        names::event_function_name(&twin, function_name)
                    } else {
                        function_name.clone()
                    };
                    Some((function_name.clone(), cloud))
                }
                _ => None,
            })
            .collect();
        Self {
            twin,
            lambda,
            iot_data: None,
            sns: None,
            functions,
        }
    }

    /// Sends feedback through `client` (its endpoint: the account's `iot:Data-ATS` one).
    pub fn with_feedback(mut self, client: aws_sdk_iotdataplane::Client) -> Self {
        self.iot_data = Some(client);
        self
    }

    /// Publishes notifications to `topic_arn` through `client`.
    pub fn with_notifications(
        mut self,
        client: aws_sdk_sns::Client,
        topic_arn: impl Into<String>,
    ) -> Self {
        self.sns = Some((client, topic_arn.into()));
        self
    }

    /// The Lambda function a rule's `functionName` invokes.
    pub fn function_for(&self, function: &str) -> Option<&str> {
        self.functions.get(function).map(String::as_str)
    }
}

/// An action the deployment did not set up for: the deployer sets the endpoint and topic when a
/// rule needs them, so this is a mismatch between the rules and the function's environment.
fn not_configured(operation: &'static str, resource: String, what: &str) -> CloudError {
    CloudError::new(
        operation,
        resource,
        "NotConfigured",
        format!("the persister has no {what}; deploy the twin again so its environment matches its event rules"),
        CloudErrorKind::Rejected,
    )
}

fn body(operation: &'static str, resource: &str, value: &Value) -> Result<Vec<u8>, CloudError> {
    serde_json::to_vec(value).map_err(|e| {
        CloudError::new(
            operation,
            resource.to_string(),
            "InvalidPayload",
            format!("the payload cannot be serialized: {e}"),
            CloudErrorKind::Rejected,
        )
    })
}

#[async_trait]
impl ActionSink for AwsActionSink {
    async fn invoke_function(&self, function: &str, event: &Value) -> Result<(), CloudError> {
        // A function no rule names cannot come from the evaluator; invoking it by its own name
        // would reach outside the twin, so it is refused.
        let Some(cloud) = self.function_for(function) else {
            return Err(not_configured(
                "Invoke",
                format!("function {function}"),
                "rule naming this function",
            ));
        };
        let resource = format!("function {cloud}");
        let payload = body("Invoke", &resource, event)?;
        let out = self
            .lambda
            .invoke()
            .function_name(cloud)
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| cloud_error("Invoke", resource.clone(), e))?;
        if let Some(error) = out.function_error() {
            return Err(CloudError::new(
                "Invoke",
                resource,
                error,
                "the function reported an error",
                CloudErrorKind::Rejected,
            ));
        }
        Ok(())
    }

    async fn send_feedback(&self, device: &str, payload: &Value) -> Result<(), CloudError> {
        let topic = names::feedback_topic(&self.twin, device);
        let resource = format!("IoT topic {topic}");
        let Some(client) = &self.iot_data else {
            return Err(not_configured(
                "Publish",
                resource,
                "IoT data-plane endpoint (IOT_DATA_ENDPOINT)",
            ));
        };
        // A string payload goes out as its text (what the device prints), anything else as JSON.
        let bytes = match payload {
            Value::String(s) => s.clone().into_bytes(),
            other => body("Publish", &resource, other)?,
        };
        client
            .publish()
            .topic(&topic)
            .qos(1)
            .payload(aws_sdk_iotdataplane::primitives::Blob::new(bytes))
            .send()
            .await
            .map_err(|e| cloud_error("Publish", resource, e))?;
        Ok(())
    }

    /// The firing's delivery id travels as the `deliveryId` message attribute (SNS standard
    /// topics deliver at least once and keep no id of ours), for subscribers to deduplicate on.
    async fn notify(&self, delivery_id: &str, message: &Value) -> Result<(), CloudError> {
        let Some((client, topic_arn)) = &self.sns else {
            return Err(not_configured(
                "Publish",
                format!("SNS topic {}", names::events_topic_name(&self.twin)),
                "notification topic (EVENTS_TOPIC_ARN)",
            ));
        };
        let resource = format!("SNS topic {topic_arn}");
        let text = match message {
            Value::String(s) => s.clone(),
            other => serde_json::to_string(other).map_err(|e| {
                CloudError::new(
                    "Publish",
                    resource.clone(),
                    "InvalidPayload",
                    format!("the message cannot be serialized: {e}"),
                    CloudErrorKind::Rejected,
                )
            })?,
        };
        let id = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(delivery_id)
            .build()
            .map_err(|e| {
                CloudError::new(
                    "Publish",
                    resource.clone(),
                    "InvalidParameter",
                    format!("the deliveryId attribute cannot be built: {e}"),
                    CloudErrorKind::Rejected,
                )
            })?;
        client
            .publish()
            .topic_arn(topic_arn)
            .message(text)
            .message_attributes(DELIVERY_ID_ATTRIBUTE, id)
            .send()
            .await
            .map_err(|e| cloud_error("Publish", resource, e))?;
        Ok(())
    }
}
