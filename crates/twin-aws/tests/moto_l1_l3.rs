//! L1-L3 against moto: deploy creates every resource of SPEC §2 with the settings asked for, a
//! second deploy changes nothing, destroy leaves nothing; classified errors are retried or fail
//! fast; a lost state file orphans nothing.

mod aws_support;

use aws_support::{clients, engine, leftovers, setup, write_twin};
use serde_json::Value;
use twin_aws::fault_proxy::{Fault, FaultProxy};
use twin_aws::iam::parse_policy_document;
use twin_engine::EngineError;

fn policy_text(v: &Value) -> String {
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_creates_l1_to_l3_then_converges_and_destroy_leaves_nothing() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "conv-twin";
    write_twin(dir.path(), twin, 3);
    let upstream = format!("127.0.0.1:{}", moto.port).parse().expect("addr");
    let proxy = FaultProxy::start(upstream).await.expect("proxy");
    let (engine, config) = engine(dir.path(), &proxy.endpoint).await;

    let report = engine.deploy(None).await.expect("first deploy");
    assert!(report.created > 30, "{report:?}");
    let c = clients(&moto.endpoint).await;

    // L1: things, certificates (active, attached), device policies scoped to one client id
    // and one topic, the rule and its permission.
    for d in &config.devices {
        let thing = format!("{twin}--{}", d.id);
        let principals = c
            .iot
            .list_thing_principals()
            .thing_name(&thing)
            .send()
            .await
            .expect("principals");
        assert_eq!(principals.principals().len(), 1, "{thing}");
        let cert_arn = &principals.principals()[0];
        let cert_id = cert_arn.rsplit('/').next().unwrap_or_default();
        let cert = c
            .iot
            .describe_certificate()
            .certificate_id(cert_id)
            .send()
            .await
            .expect("cert");
        assert_eq!(
            cert.certificate_description()
                .and_then(|d| d.status())
                .map(|s| s.as_str()),
            Some("ACTIVE")
        );
        let attached = c
            .iot
            .list_attached_policies()
            .target(cert_arn)
            .send()
            .await
            .expect("attached");
        assert_eq!(
            attached.policies()[0].policy_name(),
            Some(format!("{thing}-policy").as_str())
        );
        let policy = c
            .iot
            .get_policy()
            .policy_name(format!("{thing}-policy"))
            .send()
            .await
            .expect("policy");
        let doc = parse_policy_document(policy.policy_document().unwrap_or_default());
        let text = policy_text(&doc);
        assert!(text.contains(&format!(":client/{thing}\"")), "{text}");
        assert!(
            text.contains(&format!(":topic/{twin}/iot-data/{}\"", d.id)),
            "{text}"
        );
        assert!(
            !text.contains('*'),
            "device policy must not use wildcards: {text}"
        );
        let key = dir
            .path()
            .join(".deployer/devices")
            .join(&d.id)
            .join("private.pem.key");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key)
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
    let rule = c
        .iot
        .get_topic_rule()
        .rule_name("conv_twin_iot_data")
        .send()
        .await
        .expect("rule");
    assert_eq!(
        rule.rule().and_then(|r| r.sql()),
        Some("SELECT *, topic(3) AS topicDeviceId FROM 'conv-twin/iot-data/+'")
    );
    let dispatcher_policy = c
        .lambda
        .get_policy()
        .function_name("conv-twin-dispatcher")
        .send()
        .await
        .expect("policy");
    let p: Value = serde_json::from_str(dispatcher_policy.policy().unwrap_or("{}")).expect("json");
    let st = &p["Statement"][0];
    assert_eq!(st["Principal"]["Service"], "iot.amazonaws.com");
    assert_eq!(
        st["Condition"]["ArnLike"]["AWS:SourceArn"],
        "arn:aws:iot:us-east-1:123456789012:rule/conv_twin_iot_data"
    );
    let sim = std::fs::read_to_string(dir.path().join(".deployer/simulator/config.json"))
        .expect("sim config");
    let sim: Value = serde_json::from_str(&sim).expect("json");
    assert_eq!(sim["topic"], "conv-twin/iot-data");
    assert!(
        sim["endpoint"].as_str().is_some_and(|e| e.contains("iot")),
        "{sim}"
    );
    // Amazon Root CA 1 to 4: the endpoint's chain may end in any of them (ECC chains in 3).
    let cas = std::fs::read_to_string(dir.path().join(".deployer/devices/AmazonRootCAs.pem"))
        .expect("root CA bundle");
    assert_eq!(cas.matches("BEGIN CERTIFICATE").count(), 4);

    // L2: devices without a crate of their own share one processor, which learns every device
    // from the catalogue object; persister has HOT_TABLE.
    let p0 = c
        .lambda
        .get_function_configuration()
        .function_name("conv-twin-processor")
        .send()
        .await
        .expect("processor");
    assert_eq!(p0.runtime().map(|r| r.as_str()), Some("provided.al2023"));
    assert_eq!(p0.architectures()[0].as_str(), "x86_64");
    let env = p0
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    assert_eq!(env.get("DEVICE_ID"), None);
    let bucket = env
        .get("DEVICE_CATALOGUE_BUCKET")
        .cloned()
        .unwrap_or_default();
    let key = env.get("DEVICE_CATALOGUE_KEY").cloned().unwrap_or_default();
    assert!(key.starts_with("catalogue/l2/"), "{key}");
    let body =
        c.s3.get_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .expect("catalogue");
    let body = body.body.collect().await.expect("body").into_bytes();
    let catalogue: Value = serde_json::from_slice(&body).expect("catalogue json");
    assert_eq!(catalogue["sharedProcessor"], "conv-twin-processor");
    assert_eq!(
        catalogue["devices"].as_object().map(|d| d.len()),
        Some(config.devices.len())
    );
    for missing in ["conv-twin--sensor-0-processor"] {
        let gone = c
            .lambda
            .get_function_configuration()
            .function_name(missing)
            .send()
            .await;
        assert!(gone.is_err(), "{missing} exists");
    }
    assert_eq!(
        env.get("PERSISTER_FUNCTION").map(String::as_str),
        Some("conv-twin-persister")
    );
    assert_eq!(env.get("TWIN_NAME").map(String::as_str), Some(twin));
    assert_eq!(env.get("LOG_LEVEL").map(String::as_str), Some("DEBUG"));
    let puts = proxy
        .stats()
        .calls
        .iter()
        .filter(|(k, _)| k.starts_with("PUT /"))
        .map(|(_, v)| *v)
        .sum::<usize>();
    assert!(puts > 0);

    // IAM: one inline policy per role, naming the twin's own ARNs, no managed policies.
    for role in [
        "dispatcher",
        "processor",
        "persister",
        "hot-reader",
        "hot-to-cold-mover",
        "cold-to-archive-mover",
    ] {
        let name = format!("{twin}-{role}");
        let attached = c
            .iam
            .list_attached_role_policies()
            .role_name(&name)
            .send()
            .await
            .expect("attached");
        assert!(
            attached.attached_policies().is_empty(),
            "{name} has managed policies"
        );
        let p = c
            .iam
            .get_role_policy()
            .role_name(&name)
            .policy_name("least-privilege")
            .send()
            .await
            .expect("inline");
        let doc = parse_policy_document(p.policy_document());
        for s in doc["Statement"].as_array().expect("statements") {
            for r in s["Resource"].as_array().expect("resources") {
                let r = r.as_str().unwrap_or_default();
                assert!(r.contains(twin) || r.contains("conv_twin"), "{name}: {r}");
            }
        }
    }

    // L3: table on demand with the right keys; API route requires IAM; daily schedules;
    // buckets private and encrypted.
    let t = c
        .dynamodb
        .describe_table()
        .table_name("conv-twin-hot")
        .send()
        .await
        .expect("table");
    let t = t.table().expect("table");
    assert_eq!(
        t.billing_mode_summary()
            .and_then(|b| b.billing_mode())
            .map(|m| m.as_str()),
        Some("PAY_PER_REQUEST")
    );
    let api = c.apigw.get_apis().send().await.expect("apis");
    let api = api
        .items()
        .iter()
        .find(|a| a.name() == Some("conv-twin-hot-reader-api"))
        .expect("api");
    let routes = c
        .apigw
        .get_routes()
        .api_id(api.api_id().unwrap_or_default())
        .send()
        .await
        .expect("routes");
    assert_eq!(routes.items()[0].route_key(), Some("GET /"));
    assert_eq!(
        routes.items()[0].authorization_type().map(|a| a.as_str()),
        Some("AWS_IAM")
    );
    for mover in ["hot-to-cold-mover", "cold-to-archive-mover"] {
        let r = c
            .events
            .describe_rule()
            .name(format!("{twin}-{mover}-schedule"))
            .send()
            .await
            .expect("rule");
        assert_eq!(r.schedule_expression(), Some("rate(1 day)"));
        let t = c
            .events
            .list_targets_by_rule()
            .rule(format!("{twin}-{mover}-schedule"))
            .send()
            .await
            .expect("targets");
        assert!(t.targets()[0]
            .arn()
            .ends_with(&format!("function:{twin}-{mover}")));
    }
    let buckets = c.s3.list_buckets().send().await.expect("buckets");
    let ours: Vec<&str> = buckets
        .buckets()
        .iter()
        .filter_map(|b| b.name())
        .filter(|n| n.starts_with(twin))
        .collect();
    assert_eq!(ours.len(), 3, "{ours:?}");
    for b in ours {
        let pab =
            c.s3.get_public_access_block()
                .bucket(b)
                .send()
                .await
                .expect("pab");
        let cfg = pab.public_access_block_configuration().expect("config");
        assert_eq!(cfg.block_public_acls(), Some(true));
        assert_eq!(cfg.restrict_public_buckets(), Some(true));
        let enc =
            c.s3.get_bucket_encryption()
                .bucket(b)
                .send()
                .await
                .expect("encryption");
        assert!(enc.server_side_encryption_configuration().is_some());
    }
    let env = c
        .lambda
        .get_function_configuration()
        .function_name("conv-twin-hot-to-cold-mover")
        .send()
        .await
        .expect("mover");
    let vars = env
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    assert_eq!(vars.get("HOT_STORAGE_DAYS").map(String::as_str), Some("30"));
    assert!(vars
        .get("COLD_BUCKET")
        .is_some_and(|b| b.starts_with("conv-twin-cold-")));

    // Idempotence: the second deploy sends no create/update/delete call.
    proxy.reset_stats();
    let again = engine.deploy(None).await.expect("second deploy");
    assert_eq!(
        (again.created, again.updated, again.deleted),
        (0, 0, 0),
        "{again:?}"
    );
    let st = proxy.stats();
    assert_eq!(
        st.mutating, 0,
        "mutating calls on second deploy: {:?}",
        st.calls
    );

    // info reads the cloud: a deleted function shows as missing.
    c.lambda
        .delete_function()
        .function_name("conv-twin-processor")
        .send()
        .await
        .expect("delete");
    let rows = engine.info().await.expect("info");
    let row = rows
        .iter()
        .find(|r| r.name == "conv-twin-processor" && r.kind == "lambda_function")
        .expect("row");
    assert_eq!(row.status, twin_engine::InfoStatus::Missing);

    // A removed device's resources and a lost state file orphan nothing.
    write_twin(dir.path(), twin, 2);
    std::fs::remove_file(dir.path().join(".deployer/conv-twin.json")).expect("state");
    let (engine, _) = aws_support::engine(dir.path(), &proxy.endpoint).await;
    engine.destroy(None).await.expect("destroy");
    let left = leftovers(&c, twin).await;
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!dir
        .path()
        .join(".deployer/devices/sensor-0/private.pem.key")
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_and_eventual_consistency_are_retried() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "fault-twin";
    write_twin(dir.path(), twin, 1);
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", moto.port).parse().expect("addr"))
        .await
        .expect("proxy");
    proxy.inject(Fault::on_path(
        "POST",
        "/2015-03-31/functions",
        2,
        400,
        "InvalidParameterValueException",
        "The role defined for the function cannot be assumed by Lambda.",
    ));
    proxy.inject(Fault::on_path(
        "POST",
        "/rules/fault_twin_iot_data",
        1,
        400,
        "InvalidRequestException",
        "IoT does not have permission to invoke the function yet",
    ));
    proxy.inject(Fault::on_operation(
        "CreateTable",
        2,
        400,
        "ThrottlingException",
        "Rate exceeded",
    ));
    proxy.inject(Fault::on_operation(
        "CreateRole",
        2,
        429,
        "Throttling",
        "Rate exceeded",
    ));
    proxy.inject(Fault::on_operation(
        "PutRule",
        1,
        503,
        "ServiceUnavailable",
        "try again",
    ));
    let (engine, _) = engine(dir.path(), &proxy.endpoint).await;
    let report = engine
        .deploy(None)
        .await
        .expect("deploy succeeds through the faults");
    assert!(report.created > 10);
    assert!(proxy.stats().injected >= 8, "{:?}", proxy.stats());
    engine.destroy(None).await.expect("destroy");
    let left = leftovers(&*clients(&moto.endpoint).await, twin).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fatal_error_fails_fast_naming_the_resource_and_code() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "fatal-twin";
    write_twin(dir.path(), twin, 1);
    let proxy = FaultProxy::start(format!("127.0.0.1:{}", moto.port).parse().expect("addr"))
        .await
        .expect("proxy");
    proxy.inject(Fault::on_operation(
        "CreateTable",
        100,
        400,
        "AccessDeniedException",
        "User is not authorized to perform: dynamodb:CreateTable",
    ));
    let (engine, _) = engine(dir.path(), &proxy.endpoint).await;
    let err = engine.deploy(None).await.expect_err("deploy must fail");
    let EngineError::Resources { failures } = &err else {
        panic!("unexpected {err}");
    };
    let f = failures
        .iter()
        .find(|f| f.label.contains("fatal-twin-hot"))
        .expect("table failure");
    assert_eq!(f.attempts, 1, "fatal errors are not retried");
    assert_eq!(f.error.code, "AccessDeniedException");
    let text = err.to_string();
    assert!(
        text.contains("dynamodb_table fatal-twin-hot") && text.contains("AccessDeniedException"),
        "{text}"
    );
    assert!(proxy.stats().calls.get("DynamoDB_20120810.CreateTable") == Some(&1));
    engine.destroy(None).await.expect("destroy");
    let left = leftovers(&*clients(&moto.endpoint).await, twin).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}
