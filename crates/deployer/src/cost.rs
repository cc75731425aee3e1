//! `plan`'s monthly estimate and `plan --compare` (the model is `twin_cost`), for people and
//! for `--json`.

use crate::error::CliError;
use crate::output::table;
use serde_json::{json, Value};
use twin_config::{Layer, ProviderName, TwinConfig};
use twin_cost::{Estimate, Load, LoadOverrides, MixCost, PriceTable};

/// What `plan` prints about cost.
pub struct CostReport {
    prices: PriceTable,
    load: Load,
    defaulted: Vec<&'static str>,
    current: Estimate,
    /// Every mix, cheapest first, each with whether this version can deploy it.
    mixes: Option<Vec<(MixCost, bool)>>,
}

fn prices() -> Result<PriceTable, CliError> {
    PriceTable::builtin().map_err(|e| CliError::Io(e.to_string()))
}

fn load(
    config: &TwinConfig,
    overrides: &LoadOverrides,
) -> Result<(Load, Vec<&'static str>), CliError> {
    Load::resolve(config, overrides).map_err(|e| {
        CliError::Usage(format!(
            "the expected load cannot be priced: {e} (set `expected_load` in config.json or pass --devices, --messages-per-minute, --message-bytes)"
        ))
    })
}

/// The estimate of the twin as configured.
pub fn estimate(config: &TwinConfig, overrides: &LoadOverrides) -> Result<CostReport, CliError> {
    let prices = prices()?;
    let (load, defaulted) = load(config, overrides)?;
    let current =
        twin_cost::estimate(config, &load, &prices).map_err(|e| CliError::Io(e.to_string()))?;
    Ok(CostReport {
        prices,
        load,
        defaulted,
        current,
        mixes: None,
    })
}

/// The estimate of the twin as configured and of every other mix of providers.
pub fn compare(config: &TwinConfig, overrides: &LoadOverrides) -> Result<CostReport, CliError> {
    let mut report = estimate(config, overrides)?;
    let mixes = twin_cost::compare(config, &report.load, &report.prices)
        .map_err(|e| CliError::Io(e.to_string()))?;
    let with_deployable = mixes
        .into_iter()
        .map(|m| {
            let mut mixed = config.clone();
            for (layer, provider) in &m.providers {
                mixed.providers.set(*layer, *provider);
            }
            let deployable = crate::registry::unimplemented_layers(&mixed).is_empty();
            (m, deployable)
        })
        .collect();
    report.mixes = Some(with_deployable);
    Ok(report)
}

fn usd(v: f64) -> String {
    if v < 0.01 && v > 0.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    }
}

fn mix_label(providers: &[(Layer, ProviderName)]) -> String {
    providers
        .iter()
        .map(|(l, p)| format!("{}={}", l.short(), p.as_str()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn estimate_json(e: &Estimate) -> Value {
    json!({
        "messages_per_month": e.messages_per_month,
        "total_usd": e.total_usd,
        "layers": e.layers.iter().map(|l| json!({
            "layer": l.layer.short(), "provider": l.provider.as_str(), "usd": l.usd,
            "lines": l.lines.iter().map(|c| json!({"price": c.price, "quantity": c.quantity, "usd": c.usd})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "transfer": e.transfer.iter().map(|t| json!({
            "from": t.from.short(), "to": t.to.short(), "sender": t.sender.as_str(), "gb": t.gb, "usd": t.usd,
        })).collect::<Vec<_>>(),
    })
}

impl CostReport {
    fn load_line(&self) -> String {
        let l = &self.load;
        let mut line = format!(
            "Monthly cost estimate: {} devices × {} messages/min × {} B = {:.0} messages a month",
            l.devices,
            l.messages_per_device_per_minute,
            l.message_bytes,
            self.current.messages_per_month
        );
        if !self.defaulted.is_empty() {
            line.push_str(&format!(
                "\n(assumed: {}; set `expected_load` in config.json or pass --messages-per-minute / --message-bytes)",
                self.defaulted.join(", ")
            ));
        }
        line
    }

    fn sources_line(&self) -> String {
        format!(
            "USD list prices as of {} ({}), no free tier; each figure's source is in crates/twin-cost/prices.json. Not counted: reads by people (dashboards, the hot reader), taxes.",
            self.prices.oldest().unwrap_or("?"),
            self.prices.regions().join(", ")
        )
    }

    /// For people.
    pub fn text(&self) -> String {
        let mut out = self.load_line();
        out.push('\n');
        let mut t = table(&["layer", "provider", "USD / month"]);
        for l in &self.current.layers {
            t.add_row(vec![
                l.layer.to_string(),
                l.provider.as_str().to_string(),
                usd(l.usd),
            ]);
        }
        for tr in &self.current.transfer {
            t.add_row(vec![
                format!("{} → {} transfer", tr.from.short(), tr.to.short()),
                tr.sender.as_str().to_string(),
                usd(tr.usd),
            ]);
        }
        t.add_row(vec![
            "total".to_string(),
            String::new(),
            usd(self.current.total_usd),
        ]);
        out.push_str(&t.to_string());
        if let Some(mixes) = &self.mixes {
            out.push_str("\n\nEvery provider mix, cheapest first:\n");
            let mut t = table(&["#", "mix", "USD / month", "deployable now"]);
            for (i, (m, deployable)) in mixes.iter().enumerate() {
                t.add_row(vec![
                    (i + 1).to_string(),
                    mix_label(&m.providers),
                    usd(m.estimate.total_usd),
                    if *deployable {
                        "yes"
                    } else {
                        "no (not built yet)"
                    }
                    .to_string(),
                ]);
            }
            out.push_str(&t.to_string());
            if let Some((cheapest, _)) = mixes.first() {
                out.push_str(&format!(
                    "\nCheapest: {} at {} USD a month.",
                    mix_label(&cheapest.providers),
                    usd(cheapest.estimate.total_usd)
                ));
            }
            if let Some((m, _)) = mixes.iter().find(|(_, d)| *d) {
                out.push_str(&format!(
                    "\nCheapest this version deploys: {} at {} USD a month.",
                    mix_label(&m.providers),
                    usd(m.estimate.total_usd)
                ));
            }
        }
        out.push('\n');
        out.push_str(&self.sources_line());
        out
    }

    /// For `--json`.
    pub fn json(&self) -> Value {
        let mut doc = json!({
            "currency": self.prices.currency,
            "prices_as_of": self.prices.oldest(),
            "price_regions": self.prices.regions(),
            "load": self.load,
            "assumed": self.defaulted,
            "estimate": estimate_json(&self.current),
        });
        if let Some(mixes) = &self.mixes {
            doc["compare"] = Value::Array(
                mixes
                    .iter()
                    .map(|(m, deployable)| {
                        json!({
                            "providers": m.providers.iter().map(|(l, p)| (l.short().to_string(), json!(p.as_str()))).collect::<serde_json::Map<_, _>>(),
                            "total_usd": m.estimate.total_usd,
                            "deployable": deployable,
                            "estimate": estimate_json(&m.estimate),
                        })
                    })
                    .collect(),
            );
            doc["cheapest"] = mixes
                .first()
                .map(|(m, _)| json!(mix_label(&m.providers)))
                .unwrap_or(Value::Null);
        }
        doc
    }
}
