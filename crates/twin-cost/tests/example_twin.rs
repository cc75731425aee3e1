//! The estimate of the repository's example twin (3 devices, AWS L1–L3, x86_64, 30 hot days,
//! 90 cold days) at 1 message a minute of 200 bytes, against a computation by hand from the
//! price table's figures; and the property that cost never falls as load grows.

use proptest::prelude::*;
use std::path::Path;
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_cost::{compare, estimate, Load, LoadOverrides, PriceTable};

fn example() -> TwinConfig {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    twin_config::load_dir(&root).unwrap_or_else(|e| panic!("the example twin: {e:?}"))
}

fn close(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-9 + want.abs() * 1e-9,
        "{what}: got {got}, by hand {want}"
    );
}

#[test]
fn the_example_twin_costs_what_the_hand_computation_says() {
    let twin = example();
    let (load, defaulted) = Load::resolve(
        &twin,
        &LoadOverrides {
            messages_per_device_per_minute: Some(1.0),
            message_bytes: Some(200),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(defaulted.is_empty());
    assert_eq!(load.devices, 3, "the configured devices");
    let e = estimate(&twin, &load, &PriceTable::builtin().unwrap()).unwrap();

    // 3 devices × 1 a minute × 43,800 minutes (730 h) = 131,400 messages.
    let m = 131_400.0;
    close(e.messages_per_month, m, "messages");
    // One Lambda function per message: requests, 0.05 s × 0.25 GB, 400 log bytes.
    let lambda = m * 0.20 / 1e6 + m * 0.05 * 0.25 * 0.0000166667 + m * 400.0 / 1e9 * 0.50;
    // L1: connection minutes, one 5 KB message each, a rule and its action, the dispatcher.
    let l1 = 3.0 * 43_800.0 * 0.08 / 1e6 + m * 1.00 / 1e6 + 2.0 * m * 0.15 / 1e6 + lambda;
    // L2: processor and persister.
    let l2 = 2.0 * lambda;
    // L3 hot: a write unit in, a read half-unit and a write unit out (the mover), 30 days kept.
    let hot_gb = m / (730.0 / 24.0) * 30.0 * 200.0 / 1e9;
    let l3_hot = 2.0 * m * 0.625 / 1e6 + m * 0.5 * 0.125 / 1e6 + hot_gb * 0.25;
    // L3 cold: one object per device a day (288,000 bytes, above the 128 KB minimum) kept
    // 90 - 30 = 60 days; moving it reads it once.
    let objects = 3.0 * 730.0 / 24.0;
    let months = 60.0 / (730.0 / 24.0);
    let month_gb = m * 200.0 / 1e9;
    let l3_cold = objects * 0.01 / 1000.0
        + objects * 288_000.0 * months / 1e9 * 0.0125
        + objects * 0.001 / 1000.0
        + month_gb * 0.01;
    // L3 archive after 12 months: PUTs, data + 32 KB per object at Deep Archive, 8 KB at Standard.
    let l3_archive = objects * 0.05 / 1000.0
        + 12.0 * (month_gb + objects * 32_768.0 / 1e9) * 0.00099
        + 12.0 * objects * 8_192.0 / 1e9 * 0.023;

    let by_layer: Vec<(Layer, ProviderName, f64)> = e
        .layers
        .iter()
        .map(|l| (l.layer, l.provider, l.usd))
        .collect();
    let want = [
        (Layer::L1, l1),
        (Layer::L2, l2),
        (Layer::L3Hot, l3_hot),
        (Layer::L3Cold, l3_cold),
        (Layer::L3Archive, l3_archive),
    ];
    assert_eq!(by_layer.len(), want.len(), "L4/L5 are none: {by_layer:?}");
    for ((layer, provider, usd), (want_layer, want_usd)) in by_layer.iter().zip(want) {
        assert_eq!((*layer, *provider), (want_layer, ProviderName::Aws));
        close(*usd, want_usd, want_layer.key());
    }
    assert!(e.transfer.is_empty(), "one cloud: no transfer");
    close(
        e.total_usd,
        l1 + l2 + l3_hot + l3_cold + l3_archive,
        "total",
    );
}

#[test]
fn compare_prices_every_mix_and_cross_cloud_transfer() {
    let twin = example();
    let (load, _) = Load::resolve(&twin, &LoadOverrides::default()).unwrap();
    let prices = PriceTable::builtin().unwrap();
    let mixes = compare(&twin, &load, &prices).unwrap();
    assert_eq!(mixes.len(), 32, "2^5 mixes of the five deployed layers");
    for w in mixes.windows(2) {
        assert!(
            w[0].estimate.total_usd <= w[1].estimate.total_usd,
            "cheapest first"
        );
    }
    let mixed = mixes
        .iter()
        .find(|m| {
            m.providers.iter().any(|(_, p)| *p == ProviderName::Aws)
                && m.providers.iter().any(|(_, p)| *p == ProviderName::Azure)
        })
        .expect("a mixed mix");
    assert!(
        !mixed.estimate.transfer.is_empty(),
        "a boundary between clouds is priced"
    );
    let all_azure = mixes
        .iter()
        .find(|m| m.providers.iter().all(|(_, p)| *p == ProviderName::Azure))
        .expect("all azure");
    // IoT Hub S1 bills a whole unit a month whatever the load.
    let l1 = all_azure
        .estimate
        .layers
        .iter()
        .find(|l| l.layer == Layer::L1)
        .unwrap();
    assert!(l1.usd >= 25.0, "{l1:?}");
}

proptest! {
    #[test]
    fn cost_never_decreases_as_load_grows(
        devices in 1u64..5_000,
        more_devices in 0u64..5_000,
        rate in 0.0f64..120.0,
        more_rate in 0.0f64..120.0,
        bytes in 1u64..200_000,
        more_bytes in 0u64..60_000,
        users in 0u64..20,
        more_users in 0u64..20,
        mix in 0usize..32,
    ) {
        let twin = example();
        let prices = PriceTable::builtin().unwrap();
        let small = Load { devices, messages_per_device_per_minute: rate, message_bytes: bytes, dashboard_users: users };
        let large = Load {
            devices: devices + more_devices,
            messages_per_device_per_minute: rate + more_rate,
            message_bytes: (bytes + more_bytes).min(262_144),
            dashboard_users: users + more_users,
        };
        let a = compare(&twin, &small, &prices).unwrap();
        let b = compare(&twin, &large, &prices).unwrap();
        // The same provider mix under both loads.
        let mix_of = |m: &twin_cost::MixCost| m.providers.clone();
        let wanted = mix_of(&a[mix]);
        let small_cost = &a[mix].estimate;
        let large_cost = &b.iter().find(|m| mix_of(m) == wanted).unwrap().estimate;
        prop_assert!(large_cost.total_usd + 1e-9 >= small_cost.total_usd,
            "{} < {} for {:?}", large_cost.total_usd, small_cost.total_usd, wanted);
        for (s, l) in small_cost.layers.iter().zip(&large_cost.layers) {
            prop_assert!(l.usd + 1e-9 >= s.usd, "{:?}: {} < {}", s.layer, l.usd, s.usd);
        }
    }
}
