//! L1-L3 on moto behind the fault proxy: deploy→destroy cycles while a share of every request
//! fails (503s, throttling, connections dropped before the call and answers dropped after the
//! cloud applied it).

mod aws_support;

use aws_support::{clients, engine, leftovers, setup, write_twin};
use twin_aws::fault_proxy::{Chaos, FaultProxy};
use twin_engine::InfoStatus;

/// Deploy→destroy cycles at 10 % faults: every cycle must end with each resource `ok` (read
/// from the cloud through a clean connection, not from the state) after deploy, and nothing
/// with the twin's name after destroy. `FAULT_CYCLES` sets the count (default 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deploy_destroy_cycles_at_ten_percent_faults_end_clean() {
    let moto = setup();
    let cycles: u64 = std::env::var("FAULT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let twin = "chaos-twin";
    write_twin(dir.path(), twin, 2);
    let upstream = format!("127.0.0.1:{}", moto.port).parse().expect("addr");
    let proxy = FaultProxy::start(upstream).await.expect("proxy");
    let c = clients(&moto.endpoint).await;
    let mut dropped_after = 0;
    for cycle in 0..cycles {
        proxy.reset_stats();
        proxy.set_chaos(Some(Chaos {
            rate: 0.10,
            seed: 0x5eed + cycle,
        }));
        let (faulty, _) = engine(dir.path(), &proxy.endpoint).await;
        faulty
            .deploy(None)
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: deploy through faults: {e}"));
        proxy.set_chaos(None);
        let (clean, _) = engine(dir.path(), &moto.endpoint).await;
        let rows = clean.info().await.expect("info");
        let bad: Vec<_> = rows
            .iter()
            .filter(|r| r.status != InfoStatus::Ok)
            .map(|r| format!("{} {}: {}", r.kind, r.name, r.status))
            .collect();
        assert!(bad.is_empty(), "cycle {cycle}: after deploy: {bad:?}");
        proxy.set_chaos(Some(Chaos {
            rate: 0.10,
            seed: 0xdead + cycle,
        }));
        faulty
            .destroy(None)
            .await
            .unwrap_or_else(|e| panic!("cycle {cycle}: destroy through faults: {e}"));
        proxy.set_chaos(None);
        let left = leftovers(&c, twin).await;
        assert!(left.is_empty(), "cycle {cycle}: left behind: {left:?}");
        let st = proxy.stats();
        assert!(st.injected > 0, "cycle {cycle}: no fault was injected");
        dropped_after += st.dropped_after;
        eprintln!(
            "cycle {cycle}: {} requests, {} faults, {} answers dropped after the call",
            st.total, st.injected, st.dropped_after
        );
    }
    assert!(dropped_after > 0, "no answer was ever dropped after a call");
}
