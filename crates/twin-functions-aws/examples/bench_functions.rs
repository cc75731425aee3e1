//! Benchmark of the functions; prints figures, asserts nothing about time.
//!
//! 1. persister, hot-to-cold and cold-to-archive movers against moto: records/s;
//! 2. the release zip size of each function;
//! 3. each bootstrap's cold start until it polls the runtime API (a local fake runtime API).
//!
//! The in-process logic figure comes from `twin-functions`' own `bench_logic` example.
//!
//! Run through `scripts/bench-functions.sh`, which builds the zips first and passes their
//! directory: `bench_functions <lambda-dir>`.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use serde_json::json;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twin_functions::cold_to_archive::ColdToArchiveMover;
use twin_functions::hot_to_cold::HotToColdMover;
use twin_functions::persister::Persister;
use twin_functions::settings::*;
use twin_functions::{FixedClock, Timestamp};
use twin_functions_aws::{
    aws_sdk_config, dynamodb_client, s3_client, DynamoHotStore, S3ObjectStore,
};

const FUNCTIONS: [&str; 7] = [
    "dispatcher",
    "processor",
    "persister",
    "hot-reader",
    "hot-to-cold-mover",
    "cold-to-archive-mover",
    "twin-connector",
];

type BenchResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> BenchResult {
    let lambda_dir = std::env::args().nth(1).map(PathBuf::from);
    moto_throughput().await?;
    match lambda_dir {
        Some(dir) => {
            zip_sizes(&dir)?;
            cold_starts(&dir)?;
        }
        None => println!("(no lambda dir given: zip sizes and cold starts skipped)"),
    }
    Ok(())
}

fn common() -> CommonSettings {
    CommonSettings {
        twin_name: "bench".into(),
        log_level: LogLevel::Info,
    }
}

async fn moto_throughput() -> BenchResult {
    const N: i64 = 5_000;
    twin_testkit::aws_env_for_moto();
    let config = aws_sdk_config()?;
    let dynamodb = dynamodb_client(&config);
    let s3 = s3_client(&config);
    let (table, cold, archive) = ("bench-hot", "bench-cold", "bench-archive");
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |n: &str, k: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(k)
            .build()
    };
    dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("iotDeviceId")?)
        .attribute_definitions(attr("id")?)
        .key_schema(key("iotDeviceId", KeyType::Hash)?)
        .key_schema(key("id", KeyType::Range)?)
        .send()
        .await?;
    for b in [cold, archive] {
        s3.create_bucket().bucket(b).send().await?;
    }
    let now = Timestamp::parse("2025-11-04T12:00:00Z")?;
    let persister = Persister::new(DynamoHotStore::new(dynamodb.clone(), table));
    let started = Instant::now();
    for i in 0..N {
        let time = Timestamp::from_millis(now.millis() - 40 * 86_400_000 - i * 60_000)?;
        let m = json!({"iotDeviceId": format!("dev-{}", i % 4), "time": time.canonical(), "temperature": 21.5, "status": "x".repeat(200)});
        persister.handle(m, "bench").await?;
    }
    let elapsed = started.elapsed();
    println!(
        "persister against moto (sequential PutItem): {N} records in {:.2} s = {:.0} records/s",
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64()
    );

    let clock = Arc::new(FixedClock::new(now));
    let hot_settings = HotToColdSettings {
        common: common(),
        hot_table: table.into(),
        cold_bucket: cold.into(),
        hot_storage_days: 30,
        lease_seconds: twin_functions::lease::DEFAULT_LEASE_SECONDS,
    };
    let mover = HotToColdMover::new(
        &hot_settings,
        DynamoHotStore::new(dynamodb.clone(), table),
        S3ObjectStore::new(s3.clone()),
        clock.clone(),
    );
    let started = Instant::now();
    let report = mover.run().await?;
    let elapsed = started.elapsed();
    println!(
        "hot-to-cold mover against moto: {} records ({} objects) in {:.2} s = {:.0} records/s",
        report.records_moved,
        report.objects_written,
        elapsed.as_secs_f64(),
        report.records_moved as f64 / elapsed.as_secs_f64()
    );

    clock.set(now.plus_days(31));
    let archive_settings = ColdToArchiveSettings {
        common: common(),
        cold_bucket: cold.into(),
        archive_bucket: archive.into(),
        cold_storage_days: 60,
        lease_seconds: twin_functions::lease::DEFAULT_LEASE_SECONDS,
    };
    let archiver = ColdToArchiveMover::new(&archive_settings, S3ObjectStore::new(s3), clock);
    let started = Instant::now();
    let archived = archiver.run().await?;
    let elapsed = started.elapsed();
    println!(
        "cold-to-archive mover against moto: {} objects ({} records) in {:.2} s = {:.0} records/s",
        archived.objects_archived,
        report.records_moved,
        elapsed.as_secs_f64(),
        report.records_moved as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn zip_sizes(dir: &Path) -> BenchResult {
    for f in FUNCTIONS {
        let zip = dir.join(f).join("bootstrap.zip");
        let size = std::fs::metadata(&zip)
            .map_err(|e| format!("{}: {e}", zip.display()))?
            .len();
        println!(
            "zip {f:<22} {:>6.2} MB ({size} bytes){}",
            size as f64 / 1e6,
            if size < 6_000_000 {
                ""
            } else {
                "  OVER the 6 MB goal"
            }
        );
    }
    Ok(())
}

/// The environment each function needs to get past its settings check.
fn function_env(f: &str) -> Vec<(&'static str, &'static str)> {
    let mut env = vec![("TWIN_NAME", "bench"), ("LOG_LEVEL", "INFO")];
    env.extend(match f {
        // These two read the device catalogue from S3 before serving: without a reachable
        // S3 (AWS_ENDPOINT_URL) they exit at start instead of reaching the runtime API.
        "dispatcher" => vec![
            ("DEVICE_CATALOGUE_BUCKET", "bench"),
            ("DEVICE_CATALOGUE_KEY", "catalogue/l1/bench.json"),
        ],
        "processor" => vec![
            ("DEVICE_CATALOGUE_BUCKET", "bench"),
            ("DEVICE_CATALOGUE_KEY", "catalogue/l2/bench.json"),
            ("PERSISTER_FUNCTION", "bench-persister"),
        ],
        "hot-to-cold-mover" => vec![
            ("HOT_TABLE", "h"),
            ("COLD_BUCKET", "c"),
            ("HOT_STORAGE_DAYS", "30"),
        ],
        "cold-to-archive-mover" => vec![
            ("COLD_BUCKET", "c"),
            ("ARCHIVE_BUCKET", "a"),
            ("COLD_STORAGE_DAYS", "90"),
        ],
        _ => vec![("HOT_TABLE", "h")],
    });
    env
}

/// Time from spawning `bootstrap` to its first request to the runtime API.
fn cold_start(bootstrap: &Path, f: &str) -> Result<Duration, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let api = listener.local_addr()?.to_string();
    let mut cmd = Command::new(bootstrap);
    cmd.env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("bench-{f}"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .envs(function_env(f))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The fake runtime API answers nothing: the first request line is all that is measured.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let first_request = listener.accept().and_then(|(mut conn, _)| {
            let mut buf = [0u8; 256];
            let n = conn.read(&mut buf)?;
            Ok((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).to_string(),
            ))
        });
        let _ = tx.send(first_request);
    });
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let polled = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    let (at, head) =
        polled.map_err(|_| format!("{f}: no request to the runtime API within 10 s"))??;
    if !head.contains("/runtime/invocation/next") {
        return Err(format!("{f}: first request was {head:?}").into());
    }
    let elapsed = at.duration_since(started);
    Ok(elapsed)
}

fn cold_starts(dir: &Path) -> BenchResult {
    for f in FUNCTIONS {
        let bootstrap = dir.join(f).join("bootstrap");
        let mut runs: Vec<Duration> = (0..7)
            .map(|_| cold_start(&bootstrap, f))
            .collect::<Result<_, _>>()?;
        runs.sort();
        println!(
            "cold start {f:<22} median {:>5.1} ms, min {:>5.1} ms (spawn → first poll of the runtime API, 7 runs)",
            runs[runs.len() / 2].as_secs_f64() * 1e3,
            runs[0].as_secs_f64() * 1e3
        );
    }
    Ok(())
}
