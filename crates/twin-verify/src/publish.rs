//! L1: the readings published as the devices would, each with its own certificate and key and
//! on its own topic, QoS 1; a PUBACK is the broker's acceptance.

use crate::readings;
use crate::VerifyError;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use twin_config::Device;
use twin_functions::Timestamp;
use twin_simulator::config::SimulatorConfig;
use twin_simulator::failure::FailureContext;
use twin_simulator::publisher::DeviceLink;
use twin_simulator::tls::{DeviceCredentials, TlsContext};

/// One reading as sent.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The device.
    pub device: String,
    /// Its time (canonical), which becomes the stored record's id.
    pub time: String,
    /// When it was handed to the device's connection.
    pub at: SystemTime,
}

/// What publishing gave.
#[derive(Debug)]
pub struct Published {
    /// Readings by number.
    pub sent: HashMap<u64, Sent>,
    /// Readings the broker acknowledged.
    pub acknowledged: u64,
    /// publish → PUBACK latencies in milliseconds.
    pub ack_latencies_ms: Vec<f64>,
    /// Per device: why its connection failed, if it did.
    pub failures: Vec<String>,
}

/// Publishes `per_device` readings for each device through the broker named in the simulator
/// config at `simulator_config`, waiting up to `within` for every PUBACK.
pub async fn publish(
    simulator_config: &Path,
    devices: &[Device],
    run: &str,
    per_device: u64,
    within: Duration,
) -> Result<Published, VerifyError> {
    let config = SimulatorConfig::load(simulator_config)
        .map_err(|e| VerifyError::Setup(format!("the simulator config: {e}")))?;
    let tls = TlsContext::load(&config.root_ca_cert, config.port)
        .map_err(|e| VerifyError::Setup(e.to_string()))?;
    let deadline = Instant::now() + within;
    // The profile's own options (an IoT Hub profile adds its username).
    let mut options = config.link_options();
    options.buffer = (per_device as usize).max(1);

    let mut links = Vec::with_capacity(devices.len());
    for device in devices {
        let creds = DeviceCredentials::locate(&config.auth_files_dir, &device.id);
        let client = tls
            .client_config(&creds)
            .map_err(|e| VerifyError::Setup(e.to_string()))?;
        let context = FailureContext::for_device(&config, &device.id, &creds);
        let link = DeviceLink::start(
            &device.id,
            config.device_topic(&device.id),
            client,
            &options,
            context,
        );
        links.push((device, link));
    }

    let mut failures = Vec::new();
    for (device, link) in &links {
        if let Err(f) = link.wait_connected(deadline).await {
            failures.push(format!("{}: {f}", device.id));
        }
    }

    let mut sent = HashMap::new();
    let mut last_ms: HashMap<&str, i64> = HashMap::new();
    let mut n = 0u64;
    for seq in 0..per_device {
        for (device, link) in &links {
            let now = SystemTime::now();
            let mut ms = now
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_default();
            // Records are keyed by (device, time): two readings in the same millisecond would be one.
            if let Some(prev) = last_ms.get(device.id.as_str()) {
                ms = ms.max(prev + 1);
            }
            last_ms.insert(device.id.as_str(), ms);
            let time = Timestamp::from_millis(ms)
                .map_err(|e| VerifyError::Setup(format!("clock: {e}")))?
                .canonical();
            let payload = readings::reading(device, run, n, seq, &time);
            if link.try_send(payload).is_ok() {
                sent.insert(
                    n,
                    Sent {
                        device: device.id.clone(),
                        time,
                        at: now,
                    },
                );
            }
            n += 1;
        }
    }

    let mut acknowledged = 0;
    let mut ack_latencies_ms = Vec::new();
    for (device, mut link) in links {
        if let Err(f) = link.wait_idle(deadline).await {
            failures.push(format!("{}: {f}", device.id));
        }
        let stats = link.stats();
        acknowledged += stats.acknowledged;
        for v in stats.latency.iter_recorded() {
            let ms = v.value_iterated_to() as f64 / 1000.0;
            for _ in 0..v.count_at_value() {
                ack_latencies_ms.push(ms);
            }
        }
        link.close(Instant::now() + Duration::from_secs(2)).await;
    }
    failures.dedup();
    Ok(Published {
        sent,
        acknowledged,
        ack_latencies_ms,
        failures,
    })
}
