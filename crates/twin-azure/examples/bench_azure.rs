//! Benchmark: an Azure deploy's wall time against the fake ARM configured with realistic
//! provisioning times scaled down (IoT Hub 120 s, Cosmos DB 240 s, Function App 60 s, its
//! Flex Consumption plan 30 s, role propagation 60 s; all ÷ BENCH_SCALE, default 60), divided by
//! the longest dependency chain of those times through the specs the deploy made. The goal is
//! ≤ 1.2: the engine keeps independent resources moving while slow ones provision.
//! Every layer the Azure provider implements when it runs is deployed (L1, L2 and L3 on Azure).
//!   cargo run -p twin-azure --example bench_azure
//!   BENCH_SCALE=30 BENCH_RUNS=5 cargo run -p twin-azure --example bench_azure
//! Exits 1 when the median ratio misses the goal.

// The Azure engine tests' setup: twin files, client, stand-in package, fakes.
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use twin_azure::l2::StaticPackage;
use twin_azure::AzureProvider;
use twin_config::Layer;
use twin_engine::{Engine, EngineOptions, NoEvents, Provider, RetryPolicy, StateFile};
use twin_testkit::fake_arm::{arm_type_of, longest_chain, ChainNode, FakeArm, FakeArmConfig};

/// The functions of an all-Azure L1–L3 twin, in the stand-in package.
const FUNCTIONS: [&str; 6] = [
    "dispatcher",
    "processor",
    "persister",
    "hot-reader",
    "hot-to-cold-mover",
    "cold-to-archive-mover",
];

/// The goal of the issue: deploy wall time ÷ longest chain.
const GOAL: f64 = 1.2;

/// Real provisioning times in seconds, by ARM type.
const REAL_TIMES: [(&str, u64); 4] = [
    ("Microsoft.Devices/IotHubs", 120),
    ("Microsoft.DocumentDB/databaseAccounts", 240),
    ("Microsoft.Web/sites", 60),
    ("Microsoft.Web/serverfarms", 30),
];
/// Real role propagation time in seconds.
const REAL_PROPAGATION: u64 = 60;

fn env_number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{name} must be a whole number > 0, got `{v}`")),
        _ => Ok(default),
    }
}

struct Run {
    wall: Duration,
    chain: Duration,
    path: Vec<String>,
    types: BTreeMap<String, usize>,
}

async fn run_once(fake_config: &FakeArmConfig, twin: &str) -> Result<Run, String> {
    let fake = FakeArm::start(fake_config.clone())
        .await
        .map_err(|e| format!("fake ARM: {e}"))?;
    let _hub = support::try_serve_iot_hub(&fake).await?;
    let _kudu = support::serve_kudu(&fake, 1);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Every layer the Azure provider implements goes on Azure.
    let azure = [
        Layer::L1,
        Layer::L2,
        Layer::L3Hot,
        Layer::L3Cold,
        Layer::L3Archive,
    ];
    let config = support::try_write_twin(dir.path(), twin, &["sensor-0"], &azure)?;
    let deadline = Duration::from_secs(120);
    let arm = support::try_client(&fake, support::arm_options(deadline))?;
    let package = support::try_package("bench", &FUNCTIONS, Some(br#"{"version":"2.0"}"#))?;
    let provider = Arc::new(
        AzureProvider::with_client(arm, &config.providers.azure)
            .await
            .map_err(|e| e.to_string())?
            .with_app_package(
                Arc::new(StaticPackage(package)),
                support::polling_until(deadline),
            ),
    );
    let engine = Engine::new(
        config.clone(),
        vec![provider as Arc<dyn Provider>],
        EngineOptions {
            concurrency: 16,
            retry: RetryPolicy {
                base: Duration::from_millis(20),
                cap: Duration::from_millis(100),
                deadline,
            },
        },
        Arc::new(NoEvents),
        CancellationToken::new(),
    );
    let started = Instant::now();
    engine
        .deploy(None)
        .await
        .map_err(|e| format!("deploy: {e}"))?;
    let wall = started.elapsed();

    // The chain through what was deployed: each spec's ARM type from the id ARM gave it.
    let state = StateFile::peek(dir.path(), twin).map_err(|e| e.to_string())?;
    let mut types = BTreeMap::new();
    let mut nodes = Vec::new();
    for (id, record) in &state.resources {
        let cloud_id = record
            .observed
            .as_ref()
            .map(|o| o.cloud_id.clone())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("{id} has no cloud id recorded"))?;
        let ty = arm_type_of(&cloud_id);
        *types.entry(ty.clone()).or_insert(0) += 1;
        nodes.push(ChainNode {
            key: id.0.clone(),
            arm_type: ty,
            depends_on: record.spec.depends_on.iter().map(|d| d.0.clone()).collect(),
        });
    }
    let (chain, path) = longest_chain(&nodes, fake_config);
    engine
        .destroy(None)
        .await
        .map_err(|e| format!("destroy: {e}"))?;
    Ok(Run {
        wall,
        chain,
        path,
        types,
    })
}

async fn bench() -> Result<bool, String> {
    let scale = env_number("BENCH_SCALE", 60)?;
    let runs = env_number("BENCH_RUNS", 3)?;
    let scaled = |secs: u64| Duration::from_millis(secs * 1000 / scale);
    let fake_config = FakeArmConfig {
        // Types not in the table answer at once (their real times are seconds, not minutes).
        polls: 0,
        provisioning: REAL_TIMES
            .iter()
            .map(|(t, s)| (t.to_string(), scaled(*s)))
            .collect::<HashMap<_, _>>(),
        principal_propagation: scaled(REAL_PROPAGATION),
        ..FakeArmConfig::default()
    };
    println!("provisioning times (real ÷ {scale}):");
    for (t, s) in REAL_TIMES {
        println!("  {t:<45} {s:>4} s -> {:>6} ms", scaled(s).as_millis());
    }
    println!(
        "  {:<45} {REAL_PROPAGATION:>4} s -> {:>6} ms",
        "role propagation",
        scaled(REAL_PROPAGATION).as_millis()
    );
    let mut ratios = Vec::new();
    for i in 1..=runs {
        let r = run_once(&fake_config, &format!("bench{i}")).await?;
        if i == 1 {
            println!("deployed ARM types:");
            for (t, n) in &r.types {
                println!("  {t:<60} x{n}");
            }
            println!("longest chain: {}", r.path.join(" -> "));
        }
        let ratio = r.wall.as_secs_f64() / r.chain.as_secs_f64().max(f64::EPSILON);
        println!(
            "run {i}: wall {:>6} ms, longest chain {:>6} ms, ratio {ratio:.3}",
            r.wall.as_millis(),
            r.chain.as_millis()
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let ok = median <= GOAL;
    println!(
        "median ratio {median:.3} (goal ≤ {GOAL}): {}",
        if ok { "met" } else { "MISSED" }
    );
    Ok(ok)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    match bench().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("bench-azure: {e}");
            std::process::exit(2);
        }
    }
}
