//! The event rules' actions on AWS: an async Lambda Invoke and an SNS Publish against moto, an
//! IoT data-plane Publish against the test kit's fake (moto accepts Publish but a test cannot
//! read the messages back), and the persister firing a rule set once per transition.

mod support;

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, Runtime};
use serde_json::{json, Value};
use support::MotoTwin;
use twin_events::Rule;
use twin_functions::event_evaluator::{ActionSink, EventEvaluator};
use twin_functions::CloudErrorKind;
use twin_functions_aws::{
    aws_sdk_config, iot_data_client, lambda_client, sns_client, AwsActionSink, PersisterFunction,
};
use twin_testkit::fake_iot_data::{FakeIotData, Published};

/// The smallest valid zip (an empty archive): moto's Lambda keeps the code without running it.
const EMPTY_ZIP: [u8; 22] = [
    0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn config() -> aws_types::SdkConfig {
    twin_testkit::aws_env_for_moto();
    aws_sdk_config().expect("AWS environment for moto")
}

fn rules(value: Value) -> Vec<Rule> {
    EventEvaluator::<twin_functions_aws::DynamoHotStore, AwsActionSink>::rules_from_json(
        &value.to_string(),
    )
    .expect("rules")
}

async fn create_function(config: &aws_types::SdkConfig, name: &str) {
    let iam = aws_sdk_iam::Client::new(config);
    let role = iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("role");
    let arn = role.role().map(|r| r.arn().to_string()).expect("role arn");
    lambda_client(config)
        .create_function()
        .function_name(name)
        .runtime(Runtime::Providedal2023)
        .handler("bootstrap")
        .role(arn)
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(EMPTY_ZIP.to_vec()))
                .build(),
        )
        .send()
        .await
        .expect("function");
}

/// An SNS topic with an SQS queue subscribed (raw delivery), to read notifications back.
async fn topic_with_queue(config: &aws_types::SdkConfig, name: &str) -> (String, String) {
    let sns = sns_client(config);
    let sqs = aws_sdk_sqs::Client::new(config);
    let topic = sns
        .create_topic()
        .name(name)
        .send()
        .await
        .expect("topic")
        .topic_arn()
        .expect("topic arn")
        .to_string();
    let queue_url = sqs
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue arn")
        .clone();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    (topic, queue_url)
}

/// Every message waiting in the queue (moto delivers SNS to SQS before Publish returns).
async fn drain(config: &aws_types::SdkConfig, queue_url: &str) -> Vec<String> {
    drain_with_ids(config, queue_url)
        .await
        .into_iter()
        .map(|(body, _)| body)
        .collect()
}

/// The queue's messages with their `deliveryId` attribute (raw delivery carries SNS message
/// attributes over as SQS ones).
async fn drain_with_ids(
    config: &aws_types::SdkConfig,
    queue_url: &str,
) -> Vec<(String, Option<String>)> {
    let sqs = aws_sdk_sqs::Client::new(config);
    let mut bodies = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .expect("receive");
        if out.messages().is_empty() {
            return bodies;
        }
        for m in out.messages() {
            let id = m
                .message_attributes()
                .and_then(|a| a.get("deliveryId"))
                .and_then(|v| v.string_value())
                .map(str::to_string);
            bodies.push((m.body().unwrap_or_default().to_string(), id));
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .send()
                .await
                .expect("delete");
        }
    }
}

#[tokio::test]
async fn moto_function_action_is_an_async_invoke_of_the_deployed_name() {
    let config = config();
    let rs = rules(json!([
        {"key": "a", "condition": {"text": "r.s.t > 1", "devices": ["s"]},
         "action": {"type": "lambda", "functionName": "callback", "autoDeploy": true}},
        {"key": "b", "condition": {"text": "r.s.t > 1", "devices": ["s"]},
         "action": {"type": "lambda", "functionName": "act-existing", "autoDeploy": false}}
    ]));
    let sink = AwsActionSink::new("act", &rs, lambda_client(&config));
    assert_eq!(sink.function_for("callback"), Some("act-event-callback"));
    assert_eq!(sink.function_for("act-existing"), Some("act-existing"));

    create_function(&config, "act-event-callback").await;
    create_function(&config, "act-existing").await;
    sink.invoke_function("callback", &json!({"rule": "a"}))
        .await
        .expect("async invoke of the deployed function");
    sink.invoke_function("act-existing", &json!({"rule": "b"}))
        .await
        .expect("async invoke of an existing function");

    // A function no rule names is refused without a call.
    let e = sink
        .invoke_function("other", &json!({}))
        .await
        .expect_err("not a rule's function");
    assert_eq!(e.kind, CloudErrorKind::Rejected);
    // moto's Docker-less Lambda answers every Invoke with success, even of a function that does
    // not exist, so a missing function's ResourceNotFoundException (NotFound, not retried) is
    // covered by error_map's unit test only.
}

#[tokio::test]
async fn moto_notification_is_published_to_the_twin_topic() {
    let config = config();
    let (topic, queue) = topic_with_queue(&config, "notify-events").await;
    let sink = AwsActionSink::new("notify", &[], lambda_client(&config))
        .with_notifications(sns_client(&config), topic);
    sink.notify("hot@s-1@t1", &json!("too hot"))
        .await
        .expect("publish text");
    sink.notify("hot@s-1@t2", &json!({"level": "high"}))
        .await
        .expect("publish json");
    assert_eq!(
        drain_with_ids(&config, &queue).await,
        [
            ("too hot".to_string(), Some("hot@s-1@t1".to_string())),
            (
                r#"{"level":"high"}"#.to_string(),
                Some("hot@s-1@t2".to_string())
            )
        ]
    );
    // A topic that does not exist: not retryable.
    let gone = AwsActionSink::new("notify", &[], lambda_client(&config)).with_notifications(
        sns_client(&config),
        "arn:aws:sns:us-east-1:123456789012:notify-gone",
    );
    let e = gone
        .notify("r@d@t", &json!("x"))
        .await
        .expect_err("no topic");
    assert!(!e.is_retryable(), "{e}");
    // No topic configured at all: refused, saying what is missing.
    let none = AwsActionSink::new("notify", &[], lambda_client(&config));
    let e = none
        .notify("r@d@t", &json!("x"))
        .await
        .expect_err("not configured");
    assert!(e.to_string().contains("EVENTS_TOPIC_ARN"), "{e}");
}

#[tokio::test]
async fn fake_feedback_is_a_qos1_publish_to_the_device_topic() {
    let config = config();
    let fake = FakeIotData::start().await.expect("fake iot data");
    let sink = AwsActionSink::new("fb", &[], lambda_client(&config))
        .with_feedback(iot_data_client(&config, &fake.url));
    sink.send_feedback("sensor-1", &json!("High Temp Warning"))
        .await
        .expect("publish");
    sink.send_feedback("sensor-1", &json!({"led": "red"}))
        .await
        .expect("publish json");
    assert_eq!(
        fake.published(),
        [
            Published {
                topic: "fb/feedback/sensor-1".into(),
                qos: 1,
                payload: b"High Temp Warning".to_vec()
            },
            Published {
                topic: "fb/feedback/sensor-1".into(),
                qos: 1,
                payload: br#"{"led":"red"}"#.to_vec()
            }
        ]
    );
    // Errors are classified: an outage is retryable, a refused identity is not.
    // One 503 is absorbed by the SDK's own retry: the message goes out once.
    fake.fail_next(503, "ServiceUnavailableException");
    sink.send_feedback("sensor-1", &json!("after one 503"))
        .await
        .expect("retried by the SDK");
    assert_eq!(fake.published().len(), 3);
    // A lasting outage fails the call, classified retryable (the invocation is retried).
    for _ in 0..10 {
        fake.fail_next(503, "ServiceUnavailableException");
    }
    let e = sink
        .send_feedback("sensor-1", &json!("x"))
        .await
        .expect_err("503");
    assert!(e.is_retryable(), "{e}");
    fake.clear_faults();
    fake.fail_next(403, "ForbiddenException");
    let e = sink
        .send_feedback("sensor-1", &json!("x"))
        .await
        .expect_err("403");
    assert_eq!(e.kind, CloudErrorKind::AccessDenied, "{e}");
    assert!(e.resource.contains("fb/feedback/sensor-1"), "{e}");
    assert_eq!(fake.published().len(), 3, "failed publishes store nothing");
}

#[tokio::test]
async fn fake_persister_with_rules_fires_each_action_once_per_transition() {
    let config = config();
    let twin = MotoTwin::create("pers-ev").await;
    let fake = FakeIotData::start().await.expect("fake iot data");
    let (topic, queue) = topic_with_queue(&config, "pers-ev-events").await;
    let rs = rules(json!([
        {"key": "hot-feedback", "condition": {"text": "room-1.s.temperature > DOUBLE(30)", "devices": ["s-1"]},
         "action": {"type": "mqtt", "iotDeviceId": "s-1", "payload": "High Temp Warning"}},
        {"key": "hot-notify", "condition": {"text": "room-1.s.temperature > DOUBLE(30)", "devices": ["s-1"]},
         "action": {"type": "notification", "message": "room-1 is hot"}}
    ]));
    let sink = AwsActionSink::new("pers-ev", &rs, lambda_client(&config))
        .with_feedback(iot_data_client(&config, &fake.url))
        .with_notifications(sns_client(&config), topic);
    let function = PersisterFunction::new(
        twin.hot_store(),
        Some(EventEvaluator::new(rs, twin.hot_store(), sink)),
    );
    let mut fired = Vec::new();
    for (second, t) in [(1, 20.0), (2, 31.0), (3, 32.0)] {
        let out = function
            .handle(
                json!({"iotDeviceId": "s-1", "time": format!("2025-11-04T12:00:0{second}.000Z"), "temperature": t}),
                "c",
            )
            .await
            .expect("persist and evaluate");
        assert_eq!(out["outcome"], "stored");
        fired.push(out["fired"].as_array().map_or(0, Vec::len));
    }
    assert_eq!(fired, [0, 2, 0], "both rules fire on the transition only");
    assert_eq!(fake.published().len(), 1);
    assert_eq!(fake.published()[0].topic, "pers-ev/feedback/s-1");
    assert_eq!(drain(&config, &queue).await, ["room-1 is hot".to_string()]);
    assert_eq!(
        twin.hot_items()
            .await
            .iter()
            .filter(|i| i["iotDeviceId"] == "s-1")
            .count(),
        3
    );
}
