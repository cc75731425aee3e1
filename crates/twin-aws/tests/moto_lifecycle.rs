//! Lifecycle cases on moto: a resource recreated out of band heals on the next deploy, and a
//! bucket that cannot be emptied fails destroy with a clear error instead of a hang.

mod aws_support;

use aws_support::{clients, engine, leftovers, setup, write_twin};
use twin_aws::fault_proxy::{Fault, FaultProxy};
use twin_engine::InfoStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_api_recreated_out_of_band_gets_its_invoke_permission_back() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "api-twin";
    write_twin(dir.path(), twin, 1);
    let (engine, _) = engine(dir.path(), &moto.endpoint).await;
    engine.deploy(None).await.expect("deploy");
    let c = clients(&moto.endpoint).await;
    let apis = c.apigw.get_apis().send().await.expect("apis");
    let old = apis
        .items()
        .iter()
        .find(|a| a.name() == Some("api-twin-hot-reader-api"))
        .and_then(|a| a.api_id())
        .expect("the twin's API")
        .to_string();
    // Someone deletes the API by hand; the function keeps the old API's permission statement.
    c.apigw
        .delete_api()
        .api_id(&old)
        .send()
        .await
        .expect("delete api");
    let rows = engine.info().await.expect("info");
    let api_row = rows.iter().find(|r| r.kind == "http_api").expect("api row");
    assert_eq!(api_row.status, InfoStatus::Missing);

    engine.deploy(None).await.expect("deploy heals");
    let rows = engine.info().await.expect("info");
    assert!(rows.iter().all(|r| r.status == InfoStatus::Ok), "{rows:?}");
    let apis = c.apigw.get_apis().send().await.expect("apis");
    let new = apis
        .items()
        .iter()
        .find(|a| a.name() == Some("api-twin-hot-reader-api"))
        .and_then(|a| a.api_id())
        .expect("recreated API")
        .to_string();
    assert_ne!(old, new);
    let policy = c
        .lambda
        .get_policy()
        .function_name("api-twin-hot-reader")
        .send()
        .await
        .expect("policy");
    let text = policy.policy().unwrap_or_default().to_string();
    assert!(text.contains(&new), "permission names the new API: {text}");
    assert!(
        !text.contains(&old),
        "the old API's statement is gone: {text}"
    );
    let again = engine.deploy(None).await.expect("third deploy");
    assert_eq!((again.created, again.updated), (0, 0), "{again:?}");
    engine.destroy(None).await.expect("destroy");
    assert!(leftovers(&c, twin).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bucket_that_cannot_be_emptied_fails_destroy_clearly() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "lock-twin";
    write_twin(dir.path(), twin, 1);
    let upstream = format!("127.0.0.1:{}", moto.port).parse().expect("addr");
    let proxy = FaultProxy::start(upstream).await.expect("proxy");
    let (engine, _) = engine(dir.path(), &proxy.endpoint).await;
    engine.deploy(None).await.expect("deploy");
    let c = clients(&moto.endpoint).await;
    let cold =
        c.s3.list_buckets()
            .send()
            .await
            .expect("buckets")
            .buckets()
            .iter()
            .filter_map(|b| b.name())
            .find(|n| n.starts_with("lock-twin-cold-"))
            .expect("cold bucket")
            .to_string();
    c.s3.put_object()
        .bucket(&cold)
        .key("sensor-0/kept.json")
        .body(b"[]".to_vec().into())
        .send()
        .await
        .expect("object");
    // Every delete of objects is refused, as an object lock or a bucket policy would.
    let bucket = cold.clone();
    proxy.inject(Fault {
        matches: Box::new(move |r| {
            r.method == "POST" && r.path.contains(&bucket) && r.path.contains("delete")
        }),
        times: usize::MAX,
        status: 403,
        code: "AccessDenied".into(),
        message: "Access Denied".into(),
    });
    proxy.reset_stats();
    let result = engine.destroy(None).await;
    let calls: Vec<String> = proxy
        .stats()
        .calls
        .keys()
        .filter(|k| k.contains(&cold))
        .cloned()
        .collect();
    let err = result
        .map_err(|e| e.to_string())
        .expect_err(&format!(
            "destroy cannot empty the bucket; bucket calls: {calls:?}"
        ))
        .to_string();
    assert!(err.contains(&format!("s3_bucket {cold}")), "{err}");
    assert!(err.contains("403"), "{err}");
    // The object is still there, and so is the bucket: nothing was lost silently.
    c.s3.head_object()
        .bucket(&cold)
        .key("sensor-0/kept.json")
        .send()
        .await
        .expect("object kept");
    // Once the cause is gone, destroy resumes and finishes.
    let (clean, _) = aws_support::engine(dir.path(), &moto.endpoint).await;
    clean
        .destroy(None)
        .await
        .expect("destroy after the cause is gone");
    assert!(leftovers(&c, twin).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_layer_switched_to_none_is_deleted_by_the_next_deploy() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "none-twin";
    write_twin(dir.path(), twin, 2);
    let (engine_all, _) = engine(dir.path(), &moto.endpoint).await;
    engine_all.deploy(None).await.expect("deploy");
    let c = clients(&moto.endpoint).await;
    let things = |c: std::sync::Arc<twin_aws::AwsClients>| async move {
        c.iot
            .list_things()
            .send()
            .await
            .expect("things")
            .things()
            .iter()
            .filter_map(|t| t.thing_name().map(str::to_string))
            .filter(|n| n.starts_with("none-twin--"))
            .count()
    };
    assert_eq!(things(c.clone()).await, 2);

    // L1 (acquisition) is switched off: its things, certificates, policies, rule and
    // dispatcher must go with the next deploy, and info must say so before.
    let path = dir.path().join("config_providers.json");
    let mut providers: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    providers["layer_1_provider"] = "none".into();
    std::fs::write(&path, providers.to_string()).expect("write");
    let (engine_l2_up, _) = engine(dir.path(), &moto.endpoint).await;
    let rows = engine_l2_up.info().await.expect("info");
    assert!(
        rows.iter()
            .filter(|r| r.layer == twin_config::Layer::L1)
            .all(|r| r.status == InfoStatus::Orphaned),
        "{rows:?}"
    );
    let report = engine_l2_up.deploy(None).await.expect("deploy");
    assert!(report.deleted >= 10, "{report:?}");
    assert_eq!(things(c.clone()).await, 0);
    let left = leftovers(&c, twin).await;
    assert!(
        !left
            .iter()
            .any(|l| l.contains("dispatcher") || l.starts_with("iot")),
        "{left:?}"
    );
    engine_l2_up.destroy(None).await.expect("destroy");
    assert!(leftovers(&c, twin).await.is_empty());
}
