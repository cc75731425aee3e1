//! An all-Azure L1–L3 twin through the real `deployer` binary on the fake ARM (with the fake IoT
//! Hub registry and the fake deployment endpoint), then run by the local Azure data plane: the
//! deployed package's real custom handler under the local Functions host, tokens from the local
//! managed identity endpoint, the Cosmos DB emulator and Azurite (https, OAuth) behind the
//! endpoints ARM returned, devices publishing with the simulator's IoT Hub profile to the local
//! hub broker, and the bridge delivering Event Grid telemetry events to the dispatcher.

#[path = "support/local_azure.rs"]
mod local_azure;
mod support;

use local_azure::{http, LocalAzure};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use twin_simulator::config::SimulatorConfig;

const TWIN: &str = "az-local";
const DEVICES: usize = 2;
const MESSAGES: usize = 5;

#[test]
fn fake_arm_local_all_azure_twin_carries_data_end_to_end_and_destroys_to_nothing() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    support::write_twin_with(dir, TWIN, DEVICES, local_azure::providers());
    let mut local = LocalAzure::deploy_and_start(dir, TWIN);
    let (arm, platform, site) = (&local.arm, &local.platform, local.site.clone());
    let plane = local.plane();
    let host = plane.host();
    let site_host = host.host_for(&site).expect("site host");

    // The devices publish with the simulator's IoT Hub profile, pointed at the local hub.
    let sim = SimulatorConfig::load(&dir.join(".deployer/simulator/config.json"))
        .expect("simulator config");
    for d in 0..DEVICES {
        let id = format!("dev-{d}");
        let link = local.device_link(&sim, &id, None);
        local.rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(20);
            for i in 0..MESSAGES {
                let payload = json!({"iotDeviceId": id,
                    "time": format!("2026-11-30T10:00:0{i}.000Z"), "temperature": 20.0 + i as f64});
                link.try_send(payload.to_string().into_bytes())
                    .expect("queued");
            }
            link.wait_idle(deadline).await.expect("acknowledged");
        });
    }

    // Exactly N records per device in the hot container, read back through the hot reader.
    let reader_key = host.key_for(&site, Some("hot-reader")).expect("reader key");
    let read = |device: &str| -> Vec<Value> {
        let (status, body) = http(
            &site_host,
            "GET",
            &format!("/api/hot-reader?iotDeviceId={device}&startDate=2026-01-01T00:00:00.000Z&endDate=2027-01-01T00:00:00.000Z"),
            &[("x-functions-key", &reader_key)],
            "",
        );
        assert_eq!(status, 200, "hot reader: {body}");
        serde_json::from_str::<Vec<Value>>(&body).expect("a JSON array")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delay = Duration::from_millis(100);
    loop {
        let counts: Vec<usize> = (0..DEVICES)
            .map(|d| read(&format!("dev-{d}")).len())
            .collect();
        if counts.iter().all(|c| *c >= MESSAGES) || Instant::now() >= deadline {
            assert_eq!(
                counts,
                vec![MESSAGES; DEVICES],
                "records per device in the hot container; bridge {:?}",
                plane.bridges()
            );
            break;
        }
        std::thread::sleep(delay); // poll backoff
        delay = (delay * 2).min(Duration::from_secs(1));
    }
    let bridge = &plane.bridges()[0];
    assert_eq!(bridge.delivered, (DEVICES * MESSAGES) as u64, "{bridge:?}");
    assert_eq!(bridge.dead_lettered, 0, "{bridge:?}");
    // The function key is checked like the real host checks it.
    let (status, _) = http(
        &site_host,
        "GET",
        "/api/hot-reader?iotDeviceId=dev-0",
        &[("x-functions-key", "wrong")],
        "",
    );
    assert_eq!(status, 401);
    let stored = read("dev-1");
    assert_eq!(stored[0]["iotDeviceId"], "dev-1", "{stored:?}");

    // The hot-to-cold mover on demand (admin API, 202 at once), with a cut-off after the readings.
    let master = host.key_for(&site, None).expect("master key");
    let (status, _) = http(
        &site_host,
        "POST",
        "/admin/functions/hot-to-cold-mover",
        &[
            ("x-functions-key", &master),
            ("content-type", "application/json"),
        ],
        &json!({"input": json!({"cutoff": "2026-12-01T00:00:00.000Z"}).to_string()}).to_string(),
    );
    assert_eq!(status, 202);
    let deadline = Instant::now() + Duration::from_secs(30);
    let run = loop {
        if let Some(r) = host
            .runs(&site)
            .into_iter()
            .find(|r| r.function == "hot-to-cold-mover")
        {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the mover did not finish in time"
        );
        std::thread::sleep(Duration::from_millis(100)); // poll for the run's end
    };
    assert!((200..300).contains(&run.status), "mover failed: {run:?}");
    let cold = local_azure::app_settings(arm)["COLD_BUCKET"]
        .as_str()
        .expect("COLD_BUCKET")
        .to_string();
    let moved: usize = local.rt.block_on(async {
        let mut total = 0;
        for name in plane
            .storage()
            .blob_names(&cold)
            .await
            .expect("cold listing")
        {
            let text = plane
                .storage()
                .blob_text(&cold, &name)
                .await
                .expect("chunk");
            total += serde_json::from_str::<Vec<Value>>(&text)
                .expect("a chunk is a JSON array")
                .len();
        }
        total
    });
    assert_eq!(moved, DEVICES * MESSAGES, "records in the cold container");
    for d in 0..DEVICES {
        assert!(
            read(&format!("dev-{d}")).is_empty(),
            "moved records left hot"
        );
    }

    // The handler reached both emulators with its managed identity's tokens, from the local
    // identity endpoint, for the storage and the Cosmos DB audiences.
    let issued = platform.identity().issued();
    assert!(
        issued
            .iter()
            .any(|(s, r)| s == &site && r == "https://storage.azure.com"),
        "{issued:?}"
    );
    assert!(
        issued
            .iter()
            .any(|(s, r)| s == &site && r == "https://cosmos.azure.com"),
        "{issued:?}"
    );

    // Destroy leaves nothing: not in ARM, not in the registry, not in the emulators.
    local.destroy_leaves_nothing(dir);
    eprintln!(
        "fake_arm_local_azure: deploy {:?}, plane up {:?}, total {:?}",
        local.deployed_in,
        local.planed_in - local.deployed_in,
        started.elapsed()
    );
}
