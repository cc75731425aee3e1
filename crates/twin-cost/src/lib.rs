//! What a twin costs a month, per layer and provider, for its expected load.
//!
//! The model follows the twin's own data path: every message is metered by L1, passes the
//! processor and the persister (L2), is written to the hot store and kept there for the hot
//! days, moved once a day to one cold object per device (chunks of at most 1 MB), kept there for
//! the cold days, then archived. Each figure comes from [`PriceTable`] (`prices.json`, dated
//! and sourced per figure) and each assumption the model makes is a named constant here, so a
//! reader can redo any line by hand. Free tiers and commitment discounts are left out: the
//! estimate is what the load costs once the free tier is used up.
//!
//! Not counted: reads by people (dashboards, `lambda_invoke`, the hot reader's API), which
//! depend on use rather than load; the deployer's own calls; taxes.

mod estimate;
mod load;
mod prices;

pub use estimate::{compare, estimate, CostLine, Estimate, LayerCost, MixCost, TransferCost};
pub use load::{Load, LoadError, LoadOverrides, DEFAULT_MESSAGES_PER_MINUTE};
pub use prices::{Price, PriceError, PriceTable};

/// Hours in a month as the clouds bill them (AWS and Azure both use 730).
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Days in a month of [`HOURS_PER_MONTH`].
pub const DAYS_PER_MONTH: f64 = HOURS_PER_MONTH / 24.0;
/// Minutes in a month of [`HOURS_PER_MONTH`].
pub const MINUTES_PER_MONTH: f64 = HOURS_PER_MONTH * 60.0;
