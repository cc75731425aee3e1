//! Engine behaviour against the in-memory fake cloud (no real cloud is involved): convergence,
//! idempotence, recovery from failures and crashes at every step, and complete destroy.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::{model, twin_config, FakeCloud, FakeProvider, Fault};
use tokio_util::sync::CancellationToken;
use twin_engine::{
    Action, Engine, EngineError, EngineOptions, ErrorClass, Event, EventSink, InfoStatus, NoEvents,
    RetryPolicy, StateFile,
};

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(1),
        cap: Duration::from_millis(4),
        deadline: Duration::from_secs(10),
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    cloud: FakeCloud,
    provider: Arc<FakeProvider>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let cloud = FakeCloud::new();
        let provider = FakeProvider::new(cloud.clone(), model());
        Fixture {
            dir,
            cloud,
            provider,
        }
    }

    fn engine_with(&self, events: Arc<dyn EventSink>, cancel: CancellationToken) -> Engine {
        let config = twin_config(self.dir.path());
        Engine::new(
            config,
            vec![self.provider.clone()],
            EngineOptions {
                concurrency: 4,
                retry: fast_retry(),
            },
            events,
            cancel,
        )
    }

    fn engine(&self) -> Engine {
        self.engine_with(Arc::new(NoEvents), CancellationToken::new())
    }

    fn expected_names(&self) -> Vec<String> {
        let mut v: Vec<String> = model().into_iter().map(|s| s.name).collect();
        v.sort();
        v
    }

    fn state_ids(&self) -> Vec<String> {
        StateFile::peek(self.dir.path(), "t")
            .unwrap()
            .resources
            .keys()
            .map(|k| k.0.clone())
            .collect()
    }

    /// Runs deploy or destroy until the fake cloud "dies", like kill -9, and drops it there.
    async fn crash_during(&self, destroy: bool) -> bool {
        let engine = self.engine();
        let crashed = self.cloud.crashed.clone();
        let fut = async {
            if destroy {
                engine.destroy(None).await.map(|_| ())
            } else {
                engine.deploy(None).await.map(|_| ())
            }
        };
        let died = tokio::select! {
            r = fut => { r.unwrap(); false }
            _ = crashed.notified() => true,
        };
        drop(engine);
        // The dropped command's tasks release the state lock when the runtime next runs them;
        // wait for exactly that instead of a fixed pause.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while twin_engine::StateStore::open(self.dir.path(), "t").is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "state lock never released"
            );
            tokio::task::yield_now().await;
        }
        died
    }
}

async fn deployed() -> Fixture {
    let f = Fixture::new();
    f.engine().deploy(None).await.unwrap();
    f
}

#[tokio::test]
async fn deploy_creates_everything_and_a_second_deploy_changes_nothing() {
    let f = Fixture::new();
    let r = f.engine().deploy(None).await.unwrap();
    assert_eq!(r.created, 12);
    assert_eq!(f.cloud.names(), f.expected_names());
    assert_eq!(f.state_ids().len(), 12);

    f.cloud.clear_calls();
    let plan = f.engine().plan(None).await.unwrap();
    assert!(plan.is_empty_change(), "{plan:?}");
    assert_eq!(plan.count(Action::Unchanged), 12);
    let r = f.engine().deploy(None).await.unwrap();
    assert_eq!(
        (r.created, r.updated, r.unchanged, r.deleted),
        (0, 0, 12, 0)
    );
    assert!(
        f.cloud.mutating_calls().is_empty(),
        "{:?}",
        f.cloud.mutating_calls()
    );
}

#[tokio::test]
async fn dependencies_are_created_before_dependents() {
    let f = deployed().await;
    let creates: Vec<String> = f
        .cloud
        .calls()
        .into_iter()
        .filter(|(op, _)| op == "create")
        .map(|(_, n)| n)
        .collect();
    let pos = |n: &str| creates.iter().position(|c| c == n).unwrap();
    assert!(pos("t-l3-table") < pos("t-l2-fn-persister"));
    assert!(pos("t-l2-fn-persister") < pos("t-l2-fn-processor-a"));
    assert!(pos("t-l2-fn-processor-b") < pos("t-l1-fn-dispatcher"));
    assert!(pos("t-l1-fn-dispatcher") < pos("t-l1-rule"));
}

#[tokio::test]
async fn plan_shows_creates_then_drift_as_update_and_deploy_repairs_it() {
    let f = Fixture::new();
    let plan = f.engine().plan(None).await.unwrap();
    assert_eq!(plan.count(Action::Create), 12);
    assert!(
        f.cloud.mutating_calls().is_empty(),
        "plan must not change the cloud"
    );

    f.engine().deploy(None).await.unwrap();
    f.cloud
        .set_setting("t-l2-fn-persister", "memory", serde_json::json!(1024));
    let plan = f.engine().plan(None).await.unwrap();
    let item = plan
        .items
        .iter()
        .find(|i| i.name == "t-l2-fn-persister")
        .unwrap();
    assert_eq!(item.action, Action::Update);
    assert_eq!(item.drift, vec!["memory"]);
    assert_eq!(plan.count(Action::Update), 1);

    let r = f.engine().deploy(None).await.unwrap();
    assert_eq!(r.updated, 1);
    assert!(f.engine().plan(None).await.unwrap().is_empty_change());
}

#[tokio::test]
async fn info_reports_ok_missing_and_drifted_from_the_cloud() {
    let f = deployed().await;
    f.cloud.remove("t-l1-thing-a");
    f.cloud
        .set_setting("t-l3-table", "billing", serde_json::json!("PROVISIONED"));
    let rows = f.engine().info().await.unwrap();
    assert_eq!(rows.len(), 12);
    let status = |name: &str| rows.iter().find(|r| r.name == name).unwrap().status.clone();
    assert_eq!(status("t-l1-thing-a"), InfoStatus::Missing);
    assert_eq!(
        status("t-l3-table"),
        InfoStatus::Drifted(vec!["billing".into()])
    );
    assert_eq!(status("t-l1-rule"), InfoStatus::Ok);
    assert_eq!(
        rows.iter().find(|r| r.name == "t-l1-rule").unwrap().id,
        "fake:t-l1-rule"
    );
}

#[tokio::test]
async fn a_resource_removed_from_the_config_is_deleted_by_deploy() {
    let f = deployed().await;
    f.provider
        .model
        .lock()
        .unwrap()
        .retain(|s| s.name != "t-l1-thing-b");
    let plan = f.engine().plan(None).await.unwrap();
    assert_eq!(plan.count(Action::Delete), 1);
    let r = f.engine().deploy(None).await.unwrap();
    assert_eq!(r.deleted, 1);
    assert!(!f.cloud.names().contains(&"t-l1-thing-b".to_string()));
    assert!(!f.state_ids().contains(&"l1/thing/b".to_string()));
}

#[tokio::test]
async fn throttling_is_retried_with_events_and_deploy_succeeds() {
    let f = Fixture::new();
    f.cloud.throttle_first(2);
    let retries = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r2 = retries.clone();
    let sink: Arc<dyn EventSink> = Arc::new(move |e: Event| {
        if matches!(e, Event::Retrying { .. }) {
            r2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let r = f
        .engine_with(sink, CancellationToken::new())
        .deploy(None)
        .await
        .unwrap();
    assert_eq!(r.created, 12);
    // Every read and every create was throttled twice before it went through.
    assert_eq!(
        retries.load(std::sync::atomic::Ordering::SeqCst),
        12 * 2 * 2
    );
}

#[tokio::test]
async fn a_fatal_error_fails_fast_naming_the_resource_and_the_code() {
    let f = Fixture::new();
    f.cloud.fault_at(0, Fault::Error(ErrorClass::Fatal));
    let e = f.engine().deploy(None).await.unwrap_err();
    let EngineError::Resources { failures } = &e else {
        panic!("{e}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].attempts, 1, "fatal errors are not retried");
    let msg = e.to_string();
    assert!(
        msg.contains("create ") && msg.contains("InjectedFault"),
        "{msg}"
    );
    assert!(msg.contains(&failures[0].label), "{msg}");
}

#[tokio::test]
async fn a_failure_at_every_step_then_a_rerun_converges() {
    for step in 0..12 {
        let f = Fixture::new();
        f.cloud.fault_at(step, Fault::Error(ErrorClass::Fatal));
        assert!(f.engine().deploy(None).await.is_err(), "step {step}");
        let r = f.engine().deploy(None).await.unwrap();
        assert_eq!(r.created + r.unchanged, 12, "step {step}");
        assert_eq!(f.cloud.names(), f.expected_names(), "step {step}");
        assert!(
            f.engine().plan(None).await.unwrap().is_empty_change(),
            "step {step}"
        );
    }
}

#[tokio::test]
async fn a_crash_at_every_step_of_deploy_then_deploy_converges() {
    for crash in [Fault::CrashBefore, Fault::CrashAfter] {
        for step in 0..12 {
            let f = Fixture::new();
            f.cloud.fault_at(step, crash.clone());
            assert!(f.crash_during(false).await, "step {step} did not crash");
            let r = f.engine().deploy(None).await.unwrap();
            assert_eq!(r.created + r.unchanged, 12, "{crash:?} step {step}");
            assert_eq!(f.cloud.names(), f.expected_names(), "{crash:?} step {step}");
            // The resource created right before the crash was adopted, not created twice.
            let creates = f
                .cloud
                .calls()
                .iter()
                .filter(|(op, _)| op == "create")
                .count();
            assert_eq!(
                creates,
                12 + usize::from(matches!(crash, Fault::CrashBefore)),
                "{crash:?} step {step}"
            );
        }
    }
}

#[tokio::test]
async fn destroy_after_a_crash_at_any_step_of_deploy_leaves_nothing() {
    for step in 0..12 {
        let f = Fixture::new();
        f.cloud.fault_at(step, Fault::CrashAfter);
        assert!(f.crash_during(false).await);
        let existing = f.cloud.names().len();
        assert!(existing > step, "step {step}");
        let r = f.engine().destroy(None).await.unwrap();
        assert_eq!(
            r.deleted, existing,
            "step {step}: the unrecorded resource was found too"
        );
        assert!(
            f.cloud.names().is_empty(),
            "step {step}: left {:?}",
            f.cloud.names()
        );
        assert!(f.state_ids().is_empty());
    }
}

#[tokio::test]
async fn a_crash_at_every_step_of_destroy_then_destroy_completes() {
    for step in 0..12 {
        let f = deployed().await;
        f.cloud.fault_at(step, Fault::CrashAfter);
        assert!(f.crash_during(true).await);
        f.engine().destroy(None).await.unwrap();
        assert!(
            f.cloud.names().is_empty(),
            "step {step}: left {:?}",
            f.cloud.names()
        );
        assert!(f.state_ids().is_empty());
    }
}

#[tokio::test]
async fn destroy_deletes_in_reverse_dependency_order() {
    // The fake cloud refuses to delete anything still used (like IAM's DeleteConflict), so a
    // wrong order fails this test.
    let f = deployed().await;
    let r = f.engine().destroy(None).await.unwrap();
    assert_eq!(r.deleted, 12);
    assert!(f.cloud.names().is_empty());
}

#[tokio::test]
async fn destroy_without_a_state_file_finds_everything_by_name() {
    let f = deployed().await;
    std::fs::remove_file(f.dir.path().join(".deployer/t.json")).unwrap();
    // And a resource the config no longer describes, which only discovery can find.
    f.provider
        .model
        .lock()
        .unwrap()
        .retain(|s| s.name != "t-l1-thing-b");
    f.engine().destroy(None).await.unwrap();
    assert!(f.cloud.names().is_empty(), "left {:?}", f.cloud.names());
}

#[tokio::test]
async fn destroy_of_one_layer_refuses_while_another_layer_depends_on_it() {
    let f = deployed().await;
    let e = f
        .engine()
        .destroy(Some(twin_config::Layer::L3Hot))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("depend on this one"), "{e}");
    assert_eq!(f.cloud.names().len(), 12, "nothing was deleted");
    f.engine()
        .destroy(Some(twin_config::Layer::L1))
        .await
        .unwrap();
    assert_eq!(f.cloud.names().len(), 7);
}

#[tokio::test]
async fn deploy_of_one_layer_needs_its_dependencies_deployed() {
    let f = Fixture::new();
    let e = f
        .engine()
        .deploy(Some(twin_config::Layer::L2))
        .await
        .unwrap_err();
    assert!(matches!(e, EngineError::MissingDependency(_)), "{e}");
    assert!(e.to_string().contains("l3/table"), "{e}");
    f.engine()
        .deploy(Some(twin_config::Layer::L3Hot))
        .await
        .unwrap();
    f.engine()
        .deploy(Some(twin_config::Layer::L2))
        .await
        .unwrap();
    assert_eq!(f.cloud.names().len(), 6);
}

#[tokio::test]
async fn cancellation_stops_new_work_and_the_next_deploy_resumes() {
    let f = Fixture::new();
    *f.cloud.op_delay.lock().unwrap() = Duration::from_millis(20);
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let sink: Arc<dyn EventSink> = Arc::new(move |e: Event| {
        if matches!(
            e,
            Event::Finished {
                action: Action::Create,
                ..
            }
        ) {
            c2.cancel();
        }
    });
    let e = f.engine_with(sink, cancel).deploy(None).await.unwrap_err();
    assert!(matches!(e, EngineError::Cancelled), "{e}");
    let made = f.cloud.names().len();
    assert!(made < 12, "cancel stopped new work ({made} made)");
    // Calls in flight were interrupted too; each left a pending record, so nothing it may
    // have made is unknown to the next command.
    let state = StateFile::peek(f.dir.path(), "t").unwrap();
    for name in f.cloud.names() {
        assert!(
            state.resources.values().any(|r| r.spec.name == name),
            "{name} made but not recorded"
        );
    }
    *f.cloud.op_delay.lock().unwrap() = Duration::ZERO;
    let r = f.engine().deploy(None).await.unwrap();
    assert_eq!(r.created, 12 - made);
}

#[tokio::test]
async fn a_create_that_timed_out_after_succeeding_is_adopted_not_repeated() {
    let f = Fixture::new();
    f.cloud.fault_at(3, Fault::TimeoutAfter);
    let r = f.engine().deploy(None).await.unwrap();
    assert_eq!(r.created, 12);
    let creates = f
        .cloud
        .calls()
        .iter()
        .filter(|(op, _)| op == "create")
        .count();
    assert_eq!(creates, 12, "the retry looked first and found it");
}

#[tokio::test]
async fn a_create_whose_later_steps_never_ran_is_completed_before_it_is_recorded() {
    // Like a schedule rule whose target was never put: the create's answer was lost after its
    // first step, the retry finds the resource by name, and it must not be taken as complete.
    for step in 0..12 {
        let f = Fixture::new();
        f.cloud.fault_at(step, Fault::PartialAfter);
        f.engine().deploy(None).await.unwrap();
        let rows = f.engine().info().await.unwrap();
        assert!(
            rows.iter().all(|r| r.status == InfoStatus::Ok),
            "step {step}: {rows:?}"
        );
        let r = f.engine().deploy(None).await.unwrap();
        assert_eq!(r.unchanged, 12, "step {step}");
    }
}

#[tokio::test]
async fn another_region_or_account_is_refused_and_nothing_changes() {
    let f = deployed().await;
    let state_before = std::fs::read_to_string(f.dir.path().join(".deployer/t.json")).unwrap();
    f.provider.set_region("us-east-1");
    f.cloud.clear_calls();
    for result in [
        f.engine().deploy(None).await.map(|_| ()),
        f.engine().destroy(None).await.map(|_| ()),
        f.engine().plan(None).await.map(|_| ()),
        f.engine().info().await.map(|_| ()),
    ] {
        match result {
            Err(EngineError::ScopeMismatch {
                recorded, current, ..
            }) => {
                assert!(recorded.contains("eu-west-1"), "{recorded}");
                assert!(current.contains("us-east-1"), "{current}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert!(f.cloud.calls().is_empty(), "{:?}", f.cloud.calls());
    assert_eq!(f.cloud.names(), f.expected_names());
    let state_after = std::fs::read_to_string(f.dir.path().join(".deployer/t.json")).unwrap();
    assert_eq!(state_before, state_after);
    // Back in the recorded region everything works again.
    f.provider.set_region("eu-west-1");
    f.engine().destroy(None).await.unwrap();
    assert!(f.cloud.names().is_empty());
}

#[tokio::test]
async fn a_foreign_resource_under_the_twins_name_is_neither_adopted_nor_deleted() {
    let f = Fixture::new();
    f.cloud.put_foreign(
        "t-l2-role-persister",
        "iam_role",
        twin_engine::Owner::Unmarked,
    );
    f.cloud.put_foreign(
        "t-l3-table",
        "dynamodb_table",
        twin_engine::Owner::Twin {
            name: "other".into(),
            id: None,
        },
    );
    let err = f.engine().deploy(None).await.unwrap_err().to_string();
    assert!(
        err.contains("iam_role t-l2-role-persister exists, not managed by twin t"),
        "{err}"
    );
    assert!(err.contains("tagged as twin `other`"), "{err}");
    assert!(!f
        .cloud
        .mutating_calls()
        .iter()
        .any(|(_, n)| n == "t-l2-role-persister" || n == "t-l3-table"));
    let r = f.engine().destroy(None).await.unwrap();
    assert_eq!(r.foreign, 2);
    assert_eq!(
        f.cloud.names(),
        vec!["t-l2-role-persister".to_string(), "t-l3-table".to_string()],
        "only the foreign resources are left"
    );
}

fn set_layer_1(dir: &std::path::Path, provider: &str) {
    std::fs::write(
        dir.join("config_providers.json"),
        format!(
            r#"{{"layer_1_provider": "{provider}", "layer_2_provider": "aws", "layer_3_hot_provider": "aws",
            "layer_3_cold_provider": "aws", "layer_3_archive_provider": "aws",
            "layer_4_provider": "none", "layer_5_provider": "none"}}"#
        ),
    )
    .unwrap();
}

impl Fixture {
    fn engine_on_disk_config(&self) -> Engine {
        let config = Arc::new(twin_config::load_dir(self.dir.path()).unwrap());
        Engine::new(
            config,
            vec![self.provider.clone()],
            EngineOptions {
                concurrency: 4,
                retry: fast_retry(),
            },
            Arc::new(NoEvents),
            CancellationToken::new(),
        )
    }
}

#[tokio::test]
async fn a_layer_switched_to_none_is_deleted_by_the_next_deploy() {
    let f = deployed().await;
    set_layer_1(f.dir.path(), "none");
    let plan = f.engine_on_disk_config().plan(None).await.unwrap();
    assert_eq!(plan.count(Action::Delete), 5, "{plan:?}");
    let r = f.engine_on_disk_config().deploy(None).await.unwrap();
    assert_eq!(r.deleted, 5);
    assert_eq!(r.unchanged, 7);
    assert!(f.cloud.names().iter().all(|n| !n.starts_with("t-l1-")));
    assert!(f.state_ids().iter().all(|id| !id.starts_with("l1/")));
}

#[tokio::test]
async fn destroy_removes_a_layer_that_was_switched_to_none() {
    let f = deployed().await;
    set_layer_1(f.dir.path(), "none");
    f.engine_on_disk_config().destroy(None).await.unwrap();
    assert!(f.cloud.names().is_empty(), "{:?}", f.cloud.names());
    assert!(f.state_ids().is_empty());
}
