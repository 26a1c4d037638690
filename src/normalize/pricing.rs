//! Pricing registry (placeholder until the registry lands).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::schema::Measures;
use crate::providers::Provider;

#[derive(Debug, Default)]
pub struct PricingRegistry {}

impl PricingRegistry {
    pub fn estimate(
        &self,
        _provider: Provider,
        _model: &str,
        _at: DateTime<Utc>,
        _m: &Measures,
    ) -> Option<Decimal> {
        None
    }
}

/// A price entry (placeholder until the registry lands).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PriceEntry {}

impl PricingRegistry {
    pub fn builtin() -> Result<Self, String> {
        Ok(Self::default())
    }

    pub fn with_overrides(self, _overrides: Vec<PriceEntry>) -> Self {
        self
    }
}
