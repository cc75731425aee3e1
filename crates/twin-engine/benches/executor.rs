//! Executor efficiency: 200 independent fake resources whose create takes 10 ms, deployed at
//! concurrency 16, against the ideal 200/16 × 10 ms. Prints the ratio (goal ≤ 1.5).
//! Run: `cargo bench -p twin-engine --bench executor`.

#[path = "../tests/support/mod.rs"]
mod support;

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{twin_config, FakeCloud, FakeProvider};
use tokio_util::sync::CancellationToken;
use twin_config::{Layer, ProviderName};
use twin_engine::{Engine, EngineOptions, NoEvents, ResourceId, ResourceSpec, RetryPolicy};

const RESOURCES: usize = 200;
const CONCURRENCY: usize = 16;
const OP: Duration = Duration::from_millis(10);

fn main() {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("no runtime: {e}");
            std::process::exit(1);
        }
    };
    let mut ratios = Vec::new();
    for run in 1..=5 {
        let dir = tempfile::tempdir().expect("temp dir");
        let cloud = FakeCloud::new();
        *cloud.op_delay.lock().unwrap() = OP;
        let model: Vec<ResourceSpec> = (0..RESOURCES)
            .map(|i| {
                ResourceSpec::new(
                    ResourceId(format!("l1/r/{i}")),
                    Layer::L1,
                    ProviderName::Aws,
                    "fake",
                    format!("r-{i}"),
                )
                .desired(json!({"n": i}))
            })
            .collect();
        let provider = FakeProvider::new(cloud.clone(), model);
        let engine = Engine::new(
            twin_config(dir.path()),
            vec![provider],
            EngineOptions {
                concurrency: CONCURRENCY,
                retry: RetryPolicy::default(),
            },
            Arc::new(NoEvents),
            CancellationToken::new(),
        );
        let start = Instant::now();
        let report = rt.block_on(engine.deploy(None)).expect("deploy");
        let wall = start.elapsed();
        assert_eq!(report.created, RESOURCES);
        let ideal = OP.as_secs_f64() * (RESOURCES as f64 / CONCURRENCY as f64);
        let ratio = wall.as_secs_f64() / ideal;
        println!(
            "run {run}: {RESOURCES} resources × {} ms at concurrency {CONCURRENCY}: wall {:.1} ms, ideal {:.1} ms, ratio {ratio:.2}",
            OP.as_millis(),
            wall.as_secs_f64() * 1e3,
            ideal * 1e3
        );
        ratios.push(ratio);
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    println!(
        "executor ratio wall/ideal: median {:.2} (goal <= 1.5)",
        ratios[ratios.len() / 2]
    );
}
