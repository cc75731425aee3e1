//! Ownership on moto: a command in another region is refused and changes nothing, a foreign
//! same-named role is neither adopted nor deleted, and twins whose names used to collide deploy
//! side by side and destroy independently.

mod aws_support;

use aws_support::{clients, engine, leftovers, setup, write_twin};
use twin_engine::{EngineError, InfoStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_region_is_refused_and_the_state_is_unchanged() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "scope-twin";
    write_twin(dir.path(), twin, 1);
    let (engine_a, _) = engine(dir.path(), &moto.endpoint).await;
    engine_a.deploy(None).await.expect("deploy");
    let state = dir.path().join(".deployer/scope-twin.json");
    let before = std::fs::read_to_string(&state).expect("state");
    assert!(before.contains("\"region\": \"us-east-1\""), "{before}");

    // The same config, but the credentials now reach another region.
    let mut config = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(dir.path().join("config_providers.json")).expect("read"),
    )
    .expect("json");
    config["aws"]["region"] = "eu-west-1".into();
    std::fs::write(dir.path().join("config_providers.json"), config.to_string()).expect("write");
    let other = aws_support::engine_in_region(dir.path(), &moto.endpoint, "eu-west-1").await;
    for result in [
        other.deploy(None).await.map(|_| ()),
        other.destroy(None).await.map(|_| ()),
    ] {
        match result {
            Err(e @ EngineError::ScopeMismatch { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("us-east-1") && text.contains("eu-west-1"),
                    "{text}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read_to_string(&state).expect("state"), before);
    let rows = engine_a.info().await.expect("info");
    assert!(rows.iter().all(|r| r.status == InfoStatus::Ok), "{rows:?}");
    engine_a.destroy(None).await.expect("destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_same_named_role_survives_deploy_and_destroy() {
    let moto = setup();
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "own-twin";
    write_twin(dir.path(), twin, 1);
    let c = clients(&moto.endpoint).await;
    let foreign = "own-twin-persister";
    c.iam
        .create_role()
        .role_name(foreign)
        .assume_role_policy_document(
            serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
            .to_string(),
        )
        .send()
        .await
        .expect("someone else's role");
    let (engine, _) = engine(dir.path(), &moto.endpoint).await;
    let err = engine.deploy(None).await.expect_err("deploy must refuse");
    let text = err.to_string();
    assert!(
        text.contains("iam_role own-twin-persister exists, not managed by twin own-twin"),
        "{text}"
    );
    let role = c
        .iam
        .get_role()
        .role_name(foreign)
        .send()
        .await
        .expect("role still there");
    assert!(
        role.role().is_some_and(|r| r.tags().is_empty()),
        "not tagged by us"
    );
    let policies = c
        .iam
        .list_role_policies()
        .role_name(foreign)
        .send()
        .await
        .expect("policies");
    assert!(policies.policy_names().is_empty(), "no policy put on it");
    let report = engine.destroy(None).await.expect("destroy");
    assert_eq!(report.foreign, 1, "{report:?}");
    let left = leftovers(&c, twin).await;
    assert_eq!(
        left,
        vec![format!("iam:{foreign}")],
        "only the foreign role is left"
    );
    c.iam
        .delete_role()
        .role_name(foreign)
        .send()
        .await
        .expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twins_whose_names_used_to_collide_deploy_side_by_side() {
    // Twin `col` with device `b-x` and twin `col-b` with device `x` once shared a thing, a
    // policy and a processor (`col-b-x`).
    let moto = setup();
    let c = clients(&moto.endpoint).await;
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    aws_support::write_twin_with_devices(dir_a.path(), "col", &["b-x"]);
    aws_support::write_twin_with_devices(dir_b.path(), "col-b", &["x"]);
    let (a, _) = engine(dir_a.path(), &moto.endpoint).await;
    let (b, _) = engine(dir_b.path(), &moto.endpoint).await;
    a.deploy(None).await.expect("deploy col");
    b.deploy(None).await.expect("deploy col-b");
    for (name, e) in [("col", &a), ("col-b", &b)] {
        let rows = e.info().await.expect("info");
        assert!(
            rows.iter().all(|r| r.status == InfoStatus::Ok),
            "{name}: {rows:?}"
        );
    }
    a.destroy(None).await.expect("destroy col");
    let rows = b.info().await.expect("info");
    assert!(
        rows.iter().all(|r| r.status == InfoStatus::Ok),
        "col-b untouched by col's destroy: {rows:?}"
    );
    b.destroy(None).await.expect("destroy col-b");
    let left = leftovers(&c, "col").await;
    assert!(left.is_empty(), "left behind: {left:?}");
}
