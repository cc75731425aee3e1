//! Benchmark of the processor + persister logic in-process (in-memory hot store): prints
//! records/s, asserts nothing. Run by `scripts/bench-functions.sh` (release build).

use async_trait::async_trait;
use serde_json::{json, Value};
use std::time::Instant;
use twin_functions::catalogue::{CatalogueDevice, CatalogueLocation, DeviceCatalogue};
use twin_functions::data_type::{DataType, PropertySpec};
use twin_functions::in_memory::InMemoryHotStore;
use twin_functions::persister::Persister;
use twin_functions::processor::Processor;
use twin_functions::settings::{CommonSettings, LogLevel, ProcessorSettings};
use twin_functions::{CloudError, FixedClock, FunctionInvoker, Timestamp};

type BenchResult = Result<(), Box<dyn std::error::Error>>;

fn common() -> CommonSettings {
    CommonSettings {
        twin_name: "bench".into(),
        log_level: LogLevel::Info,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> BenchResult {
    logic_throughput().await
}

/// Hands the processor's output straight to the persister, as the async invoke would.
struct InProcessPersister(Persister<InMemoryHotStore>);

#[async_trait]
impl FunctionInvoker for InProcessPersister {
    async fn invoke_async(&self, _function: &str, payload: Vec<u8>) -> Result<(), CloudError> {
        let record: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
        self.0.handle(record, "bench").await.map(|_| ())
    }
}

async fn logic_throughput() -> BenchResult {
    const N: i64 = 200_000;
    let settings = ProcessorSettings {
        common: common(),
        device_id: None,
        catalogue: CatalogueLocation {
            bucket: "bench".into(),
            key: "catalogue.json".into(),
        },
        persister_function: "bench-persister".into(),
    };
    let properties = vec![
        PropertySpec {
            name: "temperature".into(),
            data_type: DataType::Double,
        },
        PropertySpec {
            name: "humidity".into(),
            data_type: DataType::Integer,
        },
        PropertySpec {
            name: "on".into(),
            data_type: DataType::Boolean,
        },
    ];
    let catalogue = DeviceCatalogue {
        shared_processor: "bench-processor".into(),
        devices: [(
            "temperature-sensor-1".to_string(),
            CatalogueDevice {
                properties,
                processor: None,
            },
        )]
        .into_iter()
        .collect(),
    };
    let start_time = Timestamp::parse("2025-11-04T00:00:00Z")?;
    let sink = InProcessPersister(Persister::new(InMemoryHotStore::new(1000)));
    let processor = Processor::new(&settings, catalogue, sink, FixedClock::new(start_time));
    let messages: Vec<Value> = (0..N)
        .map(|i| {
            let time = Timestamp::from_millis(start_time.millis() + i).map(|t| t.canonical()).unwrap_or_default();
            json!({"iotDeviceId": "temperature-sensor-1", "time": time, "temperature": "21.5", "humidity": 40, "on": 1})
        })
        .collect();
    let started = Instant::now();
    for m in messages {
        processor.handle(m, "bench").await?;
    }
    let elapsed = started.elapsed();
    println!(
        "processor+persister logic (in-process, in-memory store): {N} records in {:.2} s = {:.0} records/s",
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}
