//! The price table: `prices.json` in this crate, one dated, sourced figure per line.

use serde::Deserialize;

/// The table compiled into the binary.
const TABLE: &str = include_str!("../prices.json");

/// One figure: `usd` for every `per` units.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct Price {
    /// Stable id the model asks for, e.g. `aws.lambda.request`.
    pub id: String,
    /// `aws` or `azure`.
    pub provider: String,
    /// The region the figure is for.
    pub region: String,
    /// US dollars for `per` units.
    pub usd: f64,
    /// How many units `usd` buys.
    pub per: f64,
    /// What a unit is.
    pub unit: String,
    /// The page the figure was read from.
    pub source: String,
    /// When it was read (year-month).
    pub as_of: String,
}

impl Price {
    /// Dollars for `quantity` units.
    pub fn cost(&self, quantity: f64) -> f64 {
        quantity * self.usd / self.per
    }
}

/// Every figure the model uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PriceTable {
    /// The currency of every figure.
    pub currency: String,
    /// What the figures are (list prices, no free tier) and how to update them.
    pub note: String,
    /// The figures.
    pub prices: Vec<Price>,
}

/// A table that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PriceError {
    /// The embedded table does not parse (a bug in `prices.json`).
    #[error("the price table (crates/twin-cost/prices.json) is not valid: {0}")]
    Invalid(String),
    /// The model asked for a figure the table lacks.
    #[error("the price table (crates/twin-cost/prices.json) has no figure `{0}`")]
    Missing(String),
}

impl PriceTable {
    /// The table compiled into this binary.
    pub fn builtin() -> Result<Self, PriceError> {
        Self::parse(TABLE)
    }

    /// A table from JSON text.
    pub fn parse(text: &str) -> Result<Self, PriceError> {
        let table: PriceTable =
            serde_json::from_str(text).map_err(|e| PriceError::Invalid(e.to_string()))?;
        for p in &table.prices {
            if !(p.usd.is_finite() && p.usd >= 0.0 && p.per > 0.0) {
                return Err(PriceError::Invalid(format!(
                    "{}: usd {} per {}",
                    p.id, p.usd, p.per
                )));
            }
            if p.source.trim().is_empty() || p.as_of.trim().is_empty() || p.region.trim().is_empty()
            {
                return Err(PriceError::Invalid(format!(
                    "{}: needs a source, a date and a region",
                    p.id
                )));
            }
        }
        Ok(table)
    }

    /// The figure `id`.
    pub fn get(&self, id: &str) -> Result<&Price, PriceError> {
        self.prices
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| PriceError::Missing(id.to_string()))
    }

    /// The oldest date among the figures (what a reader should know about their age).
    pub fn oldest(&self) -> Option<&str> {
        self.prices.iter().map(|p| p.as_of.as_str()).min()
    }

    /// The regions the figures are for, per provider (`aws us-east-1`, ...), once each.
    pub fn regions(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .prices
            .iter()
            .map(|p| format!("{} {}", p.provider, p.region))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_table_is_complete_and_each_figure_is_dated_and_sourced() {
        let t = PriceTable::builtin().unwrap();
        assert_eq!(t.currency, "USD");
        assert!(t.prices.len() > 20);
        for p in &t.prices {
            assert!(p.source.starts_with("https://"), "{}", p.id);
            assert_eq!(p.as_of.len(), 7, "{}: year-month", p.id);
        }
        let mut ids: Vec<&str> = t.prices.iter().map(|p| p.id.as_str()).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "an id appears twice");
        assert_eq!(t.get("aws.lambda.request").unwrap().cost(2_000_000.0), 0.4);
        assert!(matches!(t.get("nope"), Err(PriceError::Missing(_))));
    }

    #[test]
    fn a_figure_without_source_or_with_a_bad_price_is_refused() {
        let bad = r#"{"currency":"USD","note":"","prices":[{"id":"x","provider":"aws","region":"r","usd":-1,"per":1,"unit":"u","source":"s","as_of":"2025-01"}]}"#;
        assert!(matches!(
            PriceTable::parse(bad),
            Err(PriceError::Invalid(_))
        ));
        let unsourced = r#"{"currency":"USD","note":"","prices":[{"id":"x","provider":"aws","region":"r","usd":1,"per":1,"unit":"u","source":" ","as_of":"2025-01"}]}"#;
        assert!(matches!(
            PriceTable::parse(unsourced),
            Err(PriceError::Invalid(_))
        ));
    }
}
