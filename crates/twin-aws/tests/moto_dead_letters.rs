//! No silent drops, on moto: deploy makes one dead-letter queue per layer with asynchronous
//! hops, an event invoke config per asynchronously invoked function and the topic rule's error
//! action; a re-deploy changes nothing; drift is fixed; `counts` and `redrive` work on the
//! queues; destroy leaves nothing. moto's simple Lambda backend answers every invoke with
//! success (it echoes the payload), so the replay's invoke always succeeds here.

mod aws_support;

use aws_sdk_sqs::types::QueueAttributeName;
use aws_support::{clients, engine, leftovers, setup, write_twin};
use base64::Engine as _;
use serde_json::{json, Value};
use twin_aws::dead_letters;
use twin_config::Layer;
use twin_engine::InfoStatus;

async fn queue_url(c: &twin_aws::AwsClients, name: &str) -> String {
    c.sqs
        .get_queue_url()
        .queue_name(name)
        .send()
        .await
        .expect("queue exists")
        .queue_url()
        .expect("url")
        .to_string()
}

async fn role_policy(c: &twin_aws::AwsClients, role: &str) -> Value {
    let p = c
        .iam
        .get_role_policy()
        .role_name(role)
        .policy_name(twin_aws::iam::INLINE_POLICY)
        .send()
        .await
        .expect("policy");
    twin_aws::iam::parse_policy_document(p.policy_document())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letter_queues_and_destinations_deploy_converge_heal_redrive_and_go() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "dlq-twin";
    write_twin(dir.path(), twin, 1);
    let (engine, config) = engine(dir.path(), &moto.endpoint).await;
    engine.deploy(None).await.expect("deploy");
    let c = clients(&moto.endpoint).await;

    // One queue per layer with asynchronous hops, tagged as the twin's, kept 14 days.
    for layer in ["l1", "l2", "l3-hot", "l3-cold"] {
        let name = format!("{twin}-{layer}-dead-letters");
        let url = queue_url(&c, &name).await;
        let tags = c
            .sqs
            .list_queue_tags()
            .queue_url(&url)
            .send()
            .await
            .expect("tags");
        assert_eq!(
            tags.tags().and_then(|t| t.get("twin")).map(String::as_str),
            Some(twin),
            "{name}"
        );
        let attrs = c
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::MessageRetentionPeriod)
            .send()
            .await
            .expect("attributes");
        assert_eq!(
            attrs
                .attributes()
                .and_then(|a| a.get(&QueueAttributeName::MessageRetentionPeriod))
                .map(String::as_str),
            Some("1209600")
        );
    }
    // Every asynchronously invoked function sends its failures to its layer's queue.
    for (function, layer) in [
        ("dispatcher", "l1"),
        ("processor", "l2"),
        ("persister", "l2"),
        ("hot-to-cold-mover", "l3-hot"),
        ("cold-to-archive-mover", "l3-cold"),
    ] {
        let cfg = c
            .lambda
            .get_function_event_invoke_config()
            .function_name(format!("{twin}-{function}"))
            .send()
            .await
            .expect("event invoke config");
        assert_eq!(cfg.maximum_retry_attempts(), Some(2));
        assert_eq!(cfg.maximum_event_age_in_seconds(), Some(21600));
        assert_eq!(
            cfg.destination_config()
                .and_then(|d| d.on_failure())
                .and_then(|f| f.destination()),
            Some(
                format!("arn:aws:sqs:us-east-1:123456789012:{twin}-{layer}-dead-letters").as_str()
            ),
            "{function}"
        );
    }
    // The hot reader is called synchronously: no destination.
    assert!(c
        .lambda
        .get_function_event_invoke_config()
        .function_name(format!("{twin}-hot-reader"))
        .send()
        .await
        .is_err());
    // The rule's error action goes to L1's queue, by the URL SQS gave, as a role that may do
    // exactly that.
    let l1_url = queue_url(&c, &format!("{twin}-l1-dead-letters")).await;
    let rule = c
        .iot
        .get_topic_rule()
        .rule_name("dlq_twin_iot_data")
        .send()
        .await
        .expect("rule");
    let sqs = rule
        .rule()
        .and_then(|r| r.error_action())
        .and_then(|a| a.sqs())
        .expect("an SQS error action");
    assert_eq!(sqs.queue_url(), l1_url);
    assert_eq!(sqs.use_base64(), Some(false));
    assert_eq!(
        sqs.role_arn(),
        format!("arn:aws:iam::123456789012:role/{twin}-iot-rule")
    );
    assert_eq!(
        role_policy(&c, &format!("{twin}-iot-rule")).await["Statement"],
        json!([{"Effect": "Allow", "Action": ["sqs:SendMessage"],
            "Resource": [format!("arn:aws:sqs:us-east-1:123456789012:{twin}-l1-dead-letters")]}])
    );
    let persister = role_policy(&c, &format!("{twin}-persister"))
        .await
        .to_string();
    assert!(
        persister.contains("sqs:SendMessage") && persister.contains("l2-dead-letters"),
        "{persister}"
    );

    // Re-deploy: nothing to do.
    let again = engine.deploy(None).await.expect("re-deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");

    // Drift by hand: fewer retries, a short retention, a rule without its error action.
    c.lambda
        .delete_function_event_invoke_config()
        .function_name(format!("{twin}-persister"))
        .send()
        .await
        .expect("drop the config");
    c.lambda
        .put_function_event_invoke_config()
        .function_name(format!("{twin}-persister"))
        .maximum_retry_attempts(1)
        .send()
        .await
        .expect("drift the config");
    let l2_url = queue_url(&c, &format!("{twin}-l2-dead-letters")).await;
    c.sqs
        .set_queue_attributes()
        .queue_url(&l2_url)
        .attributes(QueueAttributeName::MessageRetentionPeriod, "60")
        .send()
        .await
        .expect("drift the queue");
    let bare = aws_sdk_iot::types::TopicRulePayload::builder()
        .sql(twin_aws::l1::topic_rule::rule_sql(twin))
        .actions(
            aws_sdk_iot::types::Action::builder()
                .lambda(
                    aws_sdk_iot::types::LambdaAction::builder()
                        .function_arn(format!(
                            "arn:aws:lambda:us-east-1:123456789012:function:{twin}-dispatcher"
                        ))
                        .build()
                        .expect("action"),
                )
                .build(),
        )
        .build()
        .expect("payload");
    c.iot
        .replace_topic_rule()
        .rule_name("dlq_twin_iot_data")
        .topic_rule_payload(bare)
        .send()
        .await
        .expect("drift the rule");
    let rows = engine.info().await.expect("info");
    let drifted: Vec<&str> = rows
        .iter()
        .filter(|r| matches!(r.status, InfoStatus::Drifted(_)))
        .map(|r| r.kind.as_str())
        .collect();
    assert_eq!(drifted.len(), 3, "{rows:?}");
    for kind in [
        dead_letters::queue::KIND,
        dead_letters::invoke_config::KIND,
        twin_aws::l1::topic_rule::KIND,
    ] {
        assert!(drifted.contains(&kind), "{kind} drifted: {drifted:?}");
    }
    let healed = engine.deploy(None).await.expect("deploy heals");
    assert_eq!((healed.created, healed.updated), (0, 3), "{healed:?}");
    let rows = engine.info().await.expect("info");
    assert!(rows.iter().all(|r| r.status == InfoStatus::Ok), "{rows:?}");

    // Failed messages: an on-failure record of the persister and one that cannot be parsed in
    // L2's queue, a rule error in L1's.
    let record = json!({
        "version": "1.0",
        "requestContext": {
            "functionArn": format!("arn:aws:lambda:us-east-1:123456789012:function:{twin}-persister:$LATEST"),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3
        },
        "requestPayload": {"iotDeviceId": "sensor-0", "temperature": 20.5},
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
    });
    for body in [record.to_string(), "garbage".to_string()] {
        c.sqs
            .send_message()
            .queue_url(&l2_url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }
    let rule_error = json!({
        "ruleName": "dlq_twin_iot_data",
        "topic": format!("{twin}/iot-data/sensor-0"),
        "clientId": format!("{twin}--sensor-0"),
        "base64OriginalPayload": base64::engine::general_purpose::STANDARD.encode(br#"{"temperature": 1}"#),
        "failures": [{"failedAction": "LambdaAction", "failedResource": format!("{twin}-dispatcher"), "errorMessage": "throttled"}],
    });
    c.sqs
        .send_message()
        .queue_url(&l1_url)
        .message_body(rule_error.to_string())
        .send()
        .await
        .expect("send");
    let counts = dead_letters::counts(&c, &config).await.expect("counts");
    let count = |counts: &[dead_letters::QueueCount], layer: &str| {
        counts
            .iter()
            .find(|q| q.layer == layer)
            .and_then(|q| q.messages)
    };
    assert_eq!(count(&counts, "l1"), Some(1), "{counts:?}");
    assert_eq!(count(&counts, "l2"), Some(2), "{counts:?}");
    assert_eq!(count(&counts, "l3-hot"), Some(0), "{counts:?}");

    // Only L2: the record is replayed and deleted, the garbage stays, reported.
    let reports = dead_letters::redrive(&c, &config, Some(Layer::L2))
        .await
        .expect("redrive");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0].replayed, 1, "{reports:?}");
    assert_eq!(reports[0].kept.len(), 1, "{reports:?}");
    assert!(
        reports[0].kept[0].reason.contains("not JSON"),
        "{reports:?}"
    );
    let reports = dead_letters::redrive(&c, &config, None)
        .await
        .expect("redrive");
    let l1 = reports.iter().find(|r| r.layer == "l1").expect("l1");
    assert_eq!((l1.replayed, l1.kept.len()), (1, 0), "{reports:?}");
    let counts = dead_letters::counts(&c, &config).await.expect("counts");
    assert_eq!(count(&counts, "l1"), Some(0), "{counts:?}");
    assert_eq!(
        count(&counts, "l2"),
        Some(1),
        "the garbage stays: {counts:?}"
    );

    engine.destroy(None).await.expect("destroy");
    assert!(
        leftovers(&c, twin).await.is_empty(),
        "{:?}",
        leftovers(&c, twin).await
    );
    let counts = dead_letters::counts(&c, &config).await.expect("counts");
    assert!(counts.iter().all(|q| q.messages.is_none()), "{counts:?}");
}
