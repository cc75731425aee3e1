//! The monthly model, layer by layer, and the comparison of every provider mix.

use crate::load::Load;
use crate::prices::{PriceError, PriceTable};
use crate::{DAYS_PER_MONTH, MINUTES_PER_MONTH};
use serde::Serialize;
use twin_config::{Architecture, Layer, ProviderName, Providers, TwinConfig};

/// Average run time of one function invocation on a message (dispatcher, processor, persister):
/// what the local data plane's functions take, rounded up.
pub const FUNCTION_SECONDS: f64 = 0.05;
/// Memory of the AWS message functions (dispatcher, processor, persister: 256 MB).
pub const LAMBDA_GB: f64 = 0.25;
/// Instance memory of the Azure Function App (Flex Consumption, 2048 MB).
pub const FLEX_GB: f64 = 2.0;
/// Log bytes a function writes per message (one JSON line with device and correlation id).
pub const LOG_BYTES_PER_INVOCATION: f64 = 400.0;
/// Request units of one Cosmos write of a record up to 1 KB with the default indexing.
pub const COSMOS_WRITE_RU_PER_KB: f64 = 6.0;
/// Request units to read one record in the mover's query, and to delete it.
pub const COSMOS_MOVE_RU_PER_KB: f64 = 7.0;
/// Largest cold object the mover writes (SPEC: chunks ≤ 1,000,000 bytes).
pub const CHUNK_BYTES: f64 = 1_000_000.0;
/// S3 Standard-IA's minimum billable object size.
pub const IA_MIN_OBJECT_BYTES: f64 = 131_072.0;
/// S3 Standard-IA's and Azure Cool's minimum billable days.
pub const COLD_MIN_DAYS: f64 = 30.0;
/// Glacier Deep Archive's and Azure Archive's minimum billable days.
pub const ARCHIVE_MIN_DAYS: f64 = 180.0;
/// Deep Archive's per-object overhead: 32 KB at the archive rate, 8 KB at Standard.
pub const DEEP_ARCHIVE_OVERHEAD: (f64, f64) = (32_768.0, 8_192.0);
/// Archive storage is priced after a year of data: it keeps everything, so it only grows.
pub const ARCHIVE_MONTHS: f64 = 12.0;
/// IoT Hub S1: messages a day per unit, metered in 4 KB blocks.
pub const IOT_HUB_S1_MESSAGES_PER_DAY: f64 = 400_000.0;

const GB: f64 = 1e9;

/// One priced quantity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostLine {
    /// The figure's id in the price table.
    pub price: String,
    /// How many units a month.
    pub quantity: f64,
    /// Dollars a month.
    pub usd: f64,
}

/// One layer on one provider.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerCost {
    /// The layer.
    pub layer: Layer,
    /// Where it runs.
    pub provider: ProviderName,
    /// Dollars a month.
    pub usd: f64,
    /// What the dollars are for.
    pub lines: Vec<CostLine>,
}

/// Data leaving one cloud for the other at a boundary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransferCost {
    /// The sending layer.
    pub from: Layer,
    /// The receiving layer.
    pub to: Layer,
    /// The sending provider, which bills the egress.
    pub sender: ProviderName,
    /// GB a month.
    pub gb: f64,
    /// Dollars a month.
    pub usd: f64,
}

/// A twin's monthly estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// The load priced.
    pub load: Load,
    /// Messages a month.
    pub messages_per_month: f64,
    /// Per deployed layer.
    pub layers: Vec<LayerCost>,
    /// Per cross-cloud boundary.
    pub transfer: Vec<TransferCost>,
    /// Dollars a month, everything.
    pub total_usd: f64,
}

/// What the twin's settings contribute to the model.
struct Shape<'a> {
    providers: &'a Providers,
    hot_days: f64,
    cold_days: f64,
    arch: Architecture,
    entities: u64,
}

struct Lines<'a> {
    prices: &'a PriceTable,
    lines: Vec<CostLine>,
}

impl Lines<'_> {
    fn add(&mut self, price: &str, quantity: f64) -> Result<(), PriceError> {
        let p = self.prices.get(price)?;
        self.lines.push(CostLine {
            price: price.to_string(),
            quantity,
            usd: p.cost(quantity),
        });
        Ok(())
    }
}

/// The number of `block`-sized pieces `bytes` is metered as (at least one).
fn blocks(bytes: f64, block: f64) -> f64 {
    (bytes / block).ceil().max(1.0)
}

/// Hierarchy entities (the twin's own nodes; devices count separately).
fn entity_count(twin: &TwinConfig) -> u64 {
    fn count(e: &twin_config::HierarchyEntity) -> u64 {
        1 + e
            .children
            .iter()
            .map(|c| match c {
                twin_config::HierarchyNode::Entity(child) => count(child),
                twin_config::HierarchyNode::Component { .. } => 0,
            })
            .sum::<u64>()
    }
    twin.hierarchy
        .as_ref()
        .map(|h| h.iter().map(count).sum())
        .unwrap_or(0)
}

/// The monthly estimate of `twin` as configured, for `load`.
pub fn estimate(
    twin: &TwinConfig,
    load: &Load,
    prices: &PriceTable,
) -> Result<Estimate, PriceError> {
    estimate_for(twin, &twin.providers, load, prices)
}

fn estimate_for(
    twin: &TwinConfig,
    providers: &Providers,
    load: &Load,
    prices: &PriceTable,
) -> Result<Estimate, PriceError> {
    let shape = Shape {
        providers,
        hot_days: f64::from(twin.twin.hot_storage_size_in_days),
        cold_days: f64::from(twin.twin.cold_storage_size_in_days),
        arch: providers.aws.architecture,
        entities: entity_count(twin),
    };
    let mut layers = Vec::new();
    for layer in Layer::IN_FILE_ORDER {
        let provider = providers.get(layer);
        if provider == ProviderName::None {
            continue;
        }
        let mut lines = Lines {
            prices,
            lines: Vec::new(),
        };
        layer_lines(&mut lines, layer, provider, &shape, load)?;
        layers.push(LayerCost {
            layer,
            provider,
            usd: lines.lines.iter().map(|l| l.usd).sum(),
            lines: lines.lines,
        });
    }
    let transfer = transfers(providers, load, prices)?;
    let total_usd =
        layers.iter().map(|l| l.usd).sum::<f64>() + transfer.iter().map(|t| t.usd).sum::<f64>();
    Ok(Estimate {
        load: *load,
        messages_per_month: load.messages_per_month(),
        layers,
        transfer,
        total_usd,
    })
}

/// The cold objects a month: one per device a day, more when a day's data passes a chunk.
fn cold_objects(load: &Load) -> (f64, f64) {
    let per_day = load.bytes_per_device_per_day();
    let chunks = if per_day == 0.0 {
        0.0
    } else {
        blocks(per_day, CHUNK_BYTES)
    };
    let objects = load.devices as f64 * DAYS_PER_MONTH * chunks;
    let object_bytes = if chunks == 0.0 { 0.0 } else { per_day / chunks };
    (objects, object_bytes)
}

fn layer_lines(
    out: &mut Lines<'_>,
    layer: Layer,
    provider: ProviderName,
    shape: &Shape<'_>,
    load: &Load,
) -> Result<(), PriceError> {
    let m = load.messages_per_month();
    let bytes = load.message_bytes as f64;
    let month_gb = m * bytes / GB;
    let gb_second = match shape.arch {
        Architecture::Arm64 => "aws.lambda.gb_second.arm64",
        Architecture::X86_64 => "aws.lambda.gb_second.x86_64",
    };
    // A Lambda function invoked once per message.
    let lambda = |out: &mut Lines<'_>| -> Result<(), PriceError> {
        out.add("aws.lambda.request", m)?;
        out.add(gb_second, m * FUNCTION_SECONDS * LAMBDA_GB)?;
        out.add("aws.logs.ingested_gb", m * LOG_BYTES_PER_INVOCATION / GB)
    };
    // L2 on Azure runs the dispatcher → processor → persister chain in one execution when L1
    // is there too; L1's share is the Event Grid delivery.
    let flex = |out: &mut Lines<'_>, functions: f64| -> Result<(), PriceError> {
        out.add("azure.functions.flex.execution", m)?;
        out.add(
            "azure.functions.flex.gb_second",
            m * FUNCTION_SECONDS * functions * FLEX_GB,
        )?;
        out.add(
            "azure.monitor.ingested_gb",
            m * functions * LOG_BYTES_PER_INVOCATION / GB,
        )
    };
    let hot_gb = m / DAYS_PER_MONTH * shape.hot_days * bytes / GB;
    let (objects, object_bytes) = cold_objects(load);
    // The cold-to-archive mover takes a window once its end is `cold_days` old, and it came from
    // hot at `hot_days`: it stays the difference (billed at least the tier's minimum).
    let cold_months = (shape.cold_days - shape.hot_days).max(COLD_MIN_DAYS) / DAYS_PER_MONTH;
    match (layer, provider) {
        (_, ProviderName::None) => {}
        (Layer::L1, ProviderName::Aws) => {
            out.add(
                "aws.iot.connection_minute",
                load.devices as f64 * MINUTES_PER_MONTH,
            )?;
            out.add("aws.iot.message", m * blocks(bytes, 5120.0))?;
            out.add("aws.iot.rule_triggered", m)?;
            out.add("aws.iot.rule_action", m)?;
            lambda(out)?;
        }
        (Layer::L1, ProviderName::Azure) => {
            let per_day = m / DAYS_PER_MONTH * blocks(bytes, 4096.0);
            let units = (per_day / IOT_HUB_S1_MESSAGES_PER_DAY).ceil().max(1.0);
            out.add("azure.iothub.s1_unit_month", units)?;
            out.add("azure.eventgrid.operation", m * blocks(bytes, 65_536.0))?;
        }
        (Layer::L2, ProviderName::Aws) => {
            // Processor, then persister.
            lambda(out)?;
            lambda(out)?;
        }
        (Layer::L2, ProviderName::Azure) => {
            let functions = if shape.providers.get(Layer::L1) == ProviderName::Azure {
                3.0
            } else {
                2.0
            };
            flex(out, functions)?;
        }
        (Layer::L3Hot, ProviderName::Aws) => {
            let wru = blocks(bytes, 1024.0);
            out.add("aws.dynamodb.write_unit", m * wru)?;
            out.add("aws.dynamodb.storage_gb_month", hot_gb)?;
            // The mover reads each record once (eventually consistent: half a unit per 4 KB)
            // and deletes it (a write unit per KB).
            out.add("aws.dynamodb.read_unit", m * blocks(bytes, 4096.0) * 0.5)?;
            out.add("aws.dynamodb.write_unit", m * wru)?;
        }
        (Layer::L3Hot, ProviderName::Azure) => {
            let kb = blocks(bytes, 1024.0);
            out.add(
                "azure.cosmos.serverless_ru",
                m * kb * (COSMOS_WRITE_RU_PER_KB + COSMOS_MOVE_RU_PER_KB),
            )?;
            out.add("azure.cosmos.storage_gb_month", hot_gb)?;
        }
        (Layer::L3Cold, ProviderName::Aws) => {
            let billed = object_bytes.max(IA_MIN_OBJECT_BYTES);
            out.add("aws.s3.standard_ia.put", objects)?;
            out.add(
                "aws.s3.standard_ia.gb_month",
                objects * billed * cold_months / GB,
            )?;
            // Moving to archive reads each object once.
            out.add("aws.s3.standard_ia.get", objects)?;
            out.add("aws.s3.standard_ia.retrieval_gb", month_gb)?;
        }
        (Layer::L3Cold, ProviderName::Azure) => {
            out.add("azure.blob.cool.write", objects)?;
            out.add("azure.blob.cool.gb_month", month_gb * cold_months)?;
            out.add("azure.blob.cool.read", objects)?;
            out.add("azure.blob.cool.retrieval_gb", month_gb)?;
        }
        (Layer::L3Archive, ProviderName::Aws) => {
            let kept = ARCHIVE_MONTHS.max(ARCHIVE_MIN_DAYS / DAYS_PER_MONTH);
            out.add("aws.s3.deep_archive.put", objects)?;
            out.add(
                "aws.s3.deep_archive.gb_month",
                kept * (month_gb + objects * DEEP_ARCHIVE_OVERHEAD.0 / GB),
            )?;
            out.add(
                "aws.s3.standard.gb_month",
                kept * objects * DEEP_ARCHIVE_OVERHEAD.1 / GB,
            )?;
        }
        (Layer::L3Archive, ProviderName::Azure) => {
            let kept = ARCHIVE_MONTHS.max(ARCHIVE_MIN_DAYS / DAYS_PER_MONTH);
            out.add("azure.blob.archive.write", objects)?;
            out.add("azure.blob.archive.gb_month", kept * month_gb)?;
        }
        (Layer::L4, ProviderName::Aws) => {
            out.add(
                "aws.twinmaker.entity_month",
                (load.devices + shape.entities) as f64,
            )?;
        }
        (Layer::L4, ProviderName::Azure) => {
            // The persister patches the device's twin once per record (1 KB operations).
            out.add("azure.digitaltwins.operation", m * blocks(bytes, 1024.0))?;
        }
        (Layer::L5, ProviderName::Aws) => {
            out.add("aws.grafana.editor_month", load.dashboard_users as f64)?;
        }
        (Layer::L5, ProviderName::Azure) => {
            out.add(
                "azure.grafana.standard_instance_hour",
                crate::HOURS_PER_MONTH,
            )?;
            out.add(
                "azure.grafana.active_user_month",
                load.dashboard_users as f64,
            )?;
        }
    }
    Ok(())
}

/// The boundaries data crosses, each with the bytes a month that cross it.
fn transfers(
    providers: &Providers,
    load: &Load,
    prices: &PriceTable,
) -> Result<Vec<TransferCost>, PriceError> {
    let gb = load.messages_per_month() * load.message_bytes as f64 / GB;
    // Every hop of the data path carries each record once (L2 → L4: one twin update each).
    let hops = [
        (Layer::L1, Layer::L2),
        (Layer::L2, Layer::L3Hot),
        (Layer::L3Hot, Layer::L3Cold),
        (Layer::L3Cold, Layer::L3Archive),
        (Layer::L2, Layer::L4),
    ];
    let mut out = Vec::new();
    for (from, to) in hops {
        let (a, b) = (providers.get(from), providers.get(to));
        if a == ProviderName::None || b == ProviderName::None || a == b {
            continue;
        }
        let price = match a {
            ProviderName::Aws => "aws.transfer.internet_gb",
            _ => "azure.transfer.internet_gb",
        };
        out.push(TransferCost {
            from,
            to,
            sender: a,
            gb,
            usd: prices.get(price)?.cost(gb),
        });
    }
    Ok(out)
}

/// One provider mix and its estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MixCost {
    /// The provider of each deployed layer, in file order.
    pub providers: Vec<(Layer, ProviderName)>,
    /// The estimate.
    pub estimate: Estimate,
}

/// Every mix of AWS and Azure over the layers the twin deploys (its `none` layers stay off),
/// cheapest first.
pub fn compare(
    twin: &TwinConfig,
    load: &Load,
    prices: &PriceTable,
) -> Result<Vec<MixCost>, PriceError> {
    let deployed: Vec<Layer> = Layer::IN_FILE_ORDER
        .into_iter()
        .filter(|l| twin.providers.get(*l) != ProviderName::None)
        .collect();
    let mut mixes = Vec::new();
    for bits in 0..(1u32 << deployed.len()) {
        let mut providers = twin.providers.clone();
        for (i, layer) in deployed.iter().enumerate() {
            let p = if bits & (1 << i) == 0 {
                ProviderName::Aws
            } else {
                ProviderName::Azure
            };
            providers.set(*layer, p);
        }
        let estimate = estimate_for(twin, &providers, load, prices)?;
        mixes.push(MixCost {
            providers: deployed.iter().map(|l| (*l, providers.get(*l))).collect(),
            estimate,
        });
    }
    mixes.sort_by(|a, b| a.estimate.total_usd.total_cmp(&b.estimate.total_usd));
    Ok(mixes)
}
