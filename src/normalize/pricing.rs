//! The pricing registry: list prices per model over time, for `estimated_cost`.
//!
//! Usage APIs report tokens, not money, and the billed cost comes at a coarser
//! grain (docs/DESIGN.md rule 3). So usage rows carry an *estimate*: tokens times the
//! model's public list price on the bucket's day. Estimates never enter `cost`.
//!
//! Prices come from the bundled `config/pricing.toml` (compiled in with
//! `include_str!`, so the binary never depends on a file at run time), and users
//! override or extend them with `[[pricing.overrides]]` entries in the daemon
//! config ([`PricingRegistry::with_overrides`]).
//!
//! Decisions worth knowing:
//! - Prices are USD per 1M tokens, written as quoted decimal strings and kept
//!   as exact [`Decimal`]s. A bare TOML float (`input = 0.15`) is rejected:
//!   floats are binary approximations, and the registry never guesses. Integers
//!   are exact and accepted (`output = 10`).
//! - `effective_from` is a UTC date, inclusive. For a bucket starting at `at`, the
//!   entry with the newest `effective_from` on or before `at`'s UTC date wins;
//!   before the first entry a model has no price.
//! - Entry models are normalized with [`models::normalize`] when loaded, so an
//!   override may name a snapshot (`gpt-4o-2024-08-06`) and still match rows.
//! - `cached_input` and `cache_write` default to `input`: without a known
//!   discount the estimate assumes none, which errs towards the higher figure.
//! - Standard-tier list prices only: batch, flex and priority tiers, long-context
//!   surcharges and negotiated discounts are not modelled. That is why the column
//!   is called an estimate; the bill is `cost`.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::models;
use super::schema::Measures;
use crate::provider::Provider;

/// The bundled price list (see the comment at its top).
const BUILTIN_TOML: &str = include_str!("../../config/pricing.toml");

/// Prices are quoted per this many tokens.
pub const TOKENS_PER_PRICE_UNIT: i64 = 1_000_000;

/// One `[[price]]` entry of the data file, or one `[[pricing.overrides]]` entry
/// of the daemon config. Fields are validated while deserializing, so a value of
/// this type is always usable.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceEntry {
    #[serde(deserialize_with = "de::provider")]
    pub provider: Provider,
    /// A model name; normalized when the entry is loaded.
    #[serde(deserialize_with = "de::model")]
    pub model: String,
    /// First UTC day (inclusive) these prices apply.
    #[serde(deserialize_with = "de::date")]
    pub effective_from: NaiveDate,
    /// USD per 1M uncached input tokens.
    #[serde(deserialize_with = "de::money")]
    pub input: Decimal,
    /// USD per 1M cache-read input tokens; `None` = `input`.
    #[serde(default, deserialize_with = "de::optional_money")]
    pub cached_input: Option<Decimal>,
    /// USD per 1M cache-write input tokens; `None` = `input`.
    #[serde(default, deserialize_with = "de::optional_money")]
    pub cache_write: Option<Decimal>,
    /// USD per 1M output tokens (reasoning tokens included, as providers bill them).
    #[serde(deserialize_with = "de::money")]
    pub output: Decimal,
}

/// The resolved prices of one model from one date, USD per 1M tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Price {
    pub input: Decimal,
    pub cached_input: Decimal,
    pub cache_write: Decimal,
    pub output: Decimal,
}

impl Price {
    fn of(entry: &PriceEntry) -> Self {
        Self {
            input: entry.input,
            cached_input: entry.cached_input.unwrap_or(entry.input),
            cache_write: entry.cache_write.unwrap_or(entry.input),
            output: entry.output,
        }
    }

    /// Exact USD for `m`'s tokens; `None` only if the arithmetic overflows.
    ///
    /// `input_tokens` includes cache reads and writes (docs/DESIGN.md rule 4), so the
    /// uncached part is what remains after both. If a provider reports subsets
    /// larger than the total, the uncached part is clamped at 0 rather than
    /// going negative, so inconsistent counts never lower the estimate below
    /// what the cache tokens alone cost.
    pub fn cost_of(&self, m: &Measures) -> Option<Decimal> {
        let uncached = m
            .input_tokens
            .saturating_sub(m.cached_input_tokens)
            .saturating_sub(m.cache_creation_tokens)
            .max(0);
        let parts = [
            (uncached, self.input),
            (m.cached_input_tokens, self.cached_input),
            (m.cache_creation_tokens, self.cache_write),
            (m.output_tokens, self.output),
        ];
        let mut total = Decimal::ZERO;
        for (tokens, price) in parts {
            total = total.checked_add(Decimal::from(tokens).checked_mul(price)?)?;
        }
        total.checked_div(Decimal::from(TOKENS_PER_PRICE_UNIT))
    }
}

/// Why a price list was rejected. Entry numbers count `[[price]]` entries from 1
/// in file order.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("{origin}: not valid TOML: {detail}")]
    Syntax { origin: &'static str, detail: String },
    #[error("{origin}: {detail}")]
    Shape { origin: &'static str, detail: String },
    #[error("{origin}: [[price]] entry #{index}{model}: {detail}")]
    Entry {
        origin: &'static str,
        index: usize,
        /// ` (model "x")` when the entry names one, for finding it in the file.
        model: String,
        detail: String,
    },
    #[error(
        "{origin}: [[price]] entries #{first} and #{second} both price {provider} model \"{model}\" from \
         {effective_from}; delete one, or give one a different effective_from"
    )]
    Duplicate {
        origin: &'static str,
        first: usize,
        second: usize,
        provider: Provider,
        model: String,
        effective_from: NaiveDate,
    },
}

const BUILTIN_ORIGIN: &str = "bundled pricing data (config/pricing.toml)";
const TEXT_ORIGIN: &str = "pricing data";

type Timeline = BTreeMap<NaiveDate, Price>;

type Prices = HashMap<Provider, HashMap<String, Timeline>>;

/// Adds `entry` under its normalized model; returns the price it replaced.
fn insert(prices: &mut Prices, entry: &PriceEntry) -> Option<Price> {
    let model = models::normalize(entry.provider, &entry.model).name;
    prices
        .entry(entry.provider)
        .or_default()
        .entry(model)
        .or_default()
        .insert(entry.effective_from, Price::of(entry))
}

/// Prices by provider, normalized model and effective date.
///
/// User overrides are a timeline of their own that wins from its first
/// effective date on: a negotiated price set "from 2020-01-01" must beat a
/// bundled list price dated 2024, while days before the first override
/// still get the bundled price.
#[derive(Clone, Debug, Default)]
pub struct PricingRegistry {
    prices: Prices,
    overrides: Prices,
}

impl PricingRegistry {
    /// The bundled price list. Failing here is a packaging bug, caught by a unit
    /// test, so callers may treat the error as fatal.
    pub fn builtin() -> Result<Self, PricingError> {
        Self::parse(BUILTIN_TOML, BUILTIN_ORIGIN)
    }

    /// A price list in the data-file format: `[[price]]` entries only.
    pub fn from_toml(text: &str) -> Result<Self, PricingError> {
        Self::parse(text, TEXT_ORIGIN)
    }

    /// These prices with `overrides` on top: an override replaces the entry with
    /// the same provider, normalized model and `effective_from`, and otherwise
    /// adds a new one (a new model, or a price change from a new date). Among
    /// overrides, a later entry for the same key wins.
    pub fn with_overrides(mut self, overrides: Vec<PriceEntry>) -> Self {
        for entry in &overrides {
            insert(&mut self.overrides, entry);
        }
        if !overrides.is_empty() {
            tracing::info!(entries = overrides.len(), "price overrides applied");
        }
        self
    }

    /// The number of (provider, model, date) entries.
    pub fn len(&self) -> usize {
        [&self.prices, &self.overrides]
            .into_iter()
            .flat_map(HashMap::values)
            .flat_map(HashMap::values)
            .map(BTreeMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The prices of a normalized `model` in force on `at`'s UTC day.
    pub fn price_at(&self, provider: Provider, model: &str, at: DateTime<Utc>) -> Option<Price> {
        let in_force = |prices: &Prices| {
            let timeline = prices.get(&provider)?.get(model)?;
            timeline.range(..=at.date_naive()).next_back().map(|(_, price)| *price)
        };
        in_force(&self.overrides).or_else(|| in_force(&self.prices))
    }

    /// The list-price estimate in USD of a usage record's tokens, exact (rounding
    /// happens once, when the row is stored). `model` is the normalized name.
    /// `None` when the record has no tokens, or the model has no price on
    /// `at`'s UTC day (the caller stores 0: an unknown price is not a guess).
    pub fn estimate(&self, provider: Provider, model: &str, at: DateTime<Utc>, m: &Measures) -> Option<Decimal> {
        let tokens = [
            m.input_tokens,
            m.output_tokens,
            m.cached_input_tokens,
            m.cache_creation_tokens,
        ];
        if tokens.iter().all(|&t| t == 0) || model.is_empty() {
            return None;
        }
        let price = self.price_at(provider, model, at)?;
        let estimate = price.cost_of(m);
        if estimate.is_none() {
            tracing::warn!(%provider, model, "token estimate overflowed a decimal; storing no estimate");
        }
        estimate
    }

    /// Inserts `entry` under its normalized model; returns the price it replaced.
    fn insert(&mut self, entry: &PriceEntry) -> Option<Price> {
        insert(&mut self.prices, entry)
    }

    fn parse(text: &str, origin: &'static str) -> Result<Self, PricingError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| PricingError::Syntax {
            origin,
            detail: e.to_string(),
        })?;
        let shape = |detail: String| PricingError::Shape { origin, detail };
        if let Some(key) = table.keys().find(|k| k.as_str() != "price") {
            return Err(shape(format!(
                "unknown top-level key `{key}`; the file holds only [[price]] entries"
            )));
        }
        let items = match table.remove("price") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items,
            Some(other) => {
                return Err(shape(format!(
                    "`price` is a {}, not an array of tables; write each entry as [[price]]",
                    other.type_str()
                )))
            }
        };
        let mut registry = Self::default();
        let mut seen: HashMap<(Provider, String, NaiveDate), usize> = HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            let index = i + 1;
            let model = match item.get("model").and_then(toml::Value::as_str) {
                Some(m) => format!(" (model \"{m}\")"),
                None => String::new(),
            };
            let entry = PriceEntry::deserialize(item).map_err(|e| PricingError::Entry {
                origin,
                index,
                model,
                detail: entry_detail(&e),
            })?;
            let name = models::normalize(entry.provider, &entry.model).name;
            let key = (entry.provider, name, entry.effective_from);
            if let Some(&first) = seen.get(&key) {
                let (provider, model, effective_from) = key;
                return Err(PricingError::Duplicate {
                    origin,
                    first,
                    second: index,
                    provider,
                    model,
                    effective_from,
                });
            }
            seen.insert(key, index);
            registry.insert(&entry);
        }
        Ok(registry)
    }
}

/// toml reports a field's error as "<message>\nin `<field>`"; put the field first
/// so one line reads "field `input`: 0.15 is a TOML float ...".
fn entry_detail(e: &toml::de::Error) -> String {
    let text = e.to_string();
    match text.trim().rsplit_once("\nin `") {
        Some((message, field)) => format!("field `{}`: {}", field.trim_end_matches('`'), message.trim()),
        None if text.starts_with("missing field") => format!(
            "{}; every entry needs provider, model, effective_from, input and output",
            text.trim()
        ),
        None => text.trim().to_string(),
    }
}

/// Field readers for [`PriceEntry`]. Each reads any TOML-shaped value and says
/// what was wrong and how to write it instead; serde adds which field it was.
mod de {
    use chrono::NaiveDate;
    use rust_decimal::Decimal;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    use crate::provider::Provider;

    pub fn provider<'de, D: Deserializer<'de>>(d: D) -> Result<Provider, D::Error> {
        let name = String::deserialize(d)?;
        Provider::parse(name.trim()).ok_or_else(|| {
            let known: Vec<&str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
            D::Error::custom(format!("unknown provider \"{name}\"; use one of: {}", known.join(", ")))
        })
    }

    pub fn model<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let name = String::deserialize(d)?;
        if name.trim().is_empty() {
            return Err(D::Error::custom(
                "model is empty; write the model name, e.g. \"gpt-4o-mini\"",
            ));
        }
        Ok(name)
    }

    /// A `"YYYY-MM-DD"` string or a bare TOML date.
    pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let bad = |got: &str| {
            D::Error::custom(format!(
                "{got} is not a date; write the first UTC day the price applies, e.g. \"2024-07-18\""
            ))
        };
        match toml::Value::deserialize(d)? {
            toml::Value::String(s) => {
                NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| bad(&format!("\"{s}\"")))
            }
            toml::Value::Datetime(dt) => match (dt.date, dt.time, dt.offset) {
                (Some(date), None, None) => {
                    NaiveDate::from_ymd_opt(i32::from(date.year), u32::from(date.month), u32::from(date.day))
                        .ok_or_else(|| bad(&dt.to_string()))
                }
                _ => Err(bad(&format!("{dt} (a date-time)"))),
            },
            other => Err(bad(&format!("{other} (a {})", other.type_str()))),
        }
    }

    /// A non-negative exact decimal: a numeric string or an integer, never a float.
    pub fn money<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let value = match toml::Value::deserialize(d)? {
            toml::Value::String(s) => Decimal::from_str_exact(s.trim()).map_err(|_| {
                D::Error::custom(format!(
                    "\"{s}\" is not a decimal number; write USD per 1M tokens like \"0.15\""
                ))
            })?,
            toml::Value::Integer(i) => Decimal::from(i),
            toml::Value::Float(f) => {
                return Err(D::Error::custom(format!(
                    "{f} is a TOML float, which is not exact; quote it as a string: \"{f}\""
                )))
            }
            other => {
                return Err(D::Error::custom(format!(
                    "{other} is a {}, not a price; write USD per 1M tokens like \"0.15\"",
                    other.type_str()
                )))
            }
        };
        if value.is_sign_negative() && !value.is_zero() {
            return Err(D::Error::custom(format!(
                "{value} is negative; prices are USD per 1M tokens and at least 0"
            )));
        }
        Ok(value.normalize())
    }

    pub fn optional_money<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        money(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn at(y: i32, m: u32, day: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, day, h, 0, 0).unwrap()
    }

    fn tokens(input: i64, cached: i64, creation: i64, output: i64) -> Measures {
        Measures {
            input_tokens: input,
            cached_input_tokens: cached,
            cache_creation_tokens: creation,
            output_tokens: output,
            ..Measures::default()
        }
    }

    const TWO_PRICES: &str = r#"
        [[price]]
        provider = "openai"
        model = "gpt-test"
        effective_from = "2024-05-13"
        input = "5"
        output = "15"

        [[price]]
        provider = "openai"
        model = "gpt-test"
        effective_from = "2024-10-02"
        input = "2.50"
        cached_input = "1.25"
        output = "10.00"
    "#;

    #[test]
    fn builtin_data_parses_and_covers_the_main_models() {
        let registry = PricingRegistry::builtin().expect("bundled pricing.toml must parse");
        let today = at(2025, 12, 1, 0);
        for (provider, model) in [
            (Provider::OpenAi, "gpt-4o"),
            (Provider::OpenAi, "gpt-4o-mini"),
            (Provider::OpenAi, "gpt-4.1"),
            (Provider::OpenAi, "gpt-4.1-mini"),
            (Provider::OpenAi, "gpt-4.1-nano"),
            (Provider::OpenAi, "o1"),
            (Provider::OpenAi, "o3"),
            (Provider::OpenAi, "o3-mini"),
            (Provider::OpenAi, "o4-mini"),
            (Provider::OpenAi, "gpt-5"),
            (Provider::OpenAi, "text-embedding-3-small"),
            (Provider::OpenAi, "text-embedding-3-large"),
            (Provider::Anthropic, "claude-sonnet-4"),
            (Provider::Anthropic, "claude-opus-4"),
            (Provider::Anthropic, "claude-opus-4-1"),
            (Provider::Anthropic, "claude-3-5-sonnet"),
            (Provider::Anthropic, "claude-3-5-haiku"),
            (Provider::Anthropic, "claude-3-7-sonnet"),
            (Provider::Anthropic, "claude-3-haiku"),
            (Provider::Anthropic, "claude-haiku-4-5"),
            (Provider::Anthropic, "claude-sonnet-4-5"),
        ] {
            assert!(
                registry.price_at(provider, model, today).is_some(),
                "{provider} {model} has no price"
            );
        }
        // Spot-check a few well-known list prices against the file.
        let mini = registry.price_at(Provider::OpenAi, "gpt-4o-mini", today).unwrap();
        assert_eq!(
            (mini.input, mini.cached_input, mini.output),
            (d("0.15"), d("0.075"), d("0.6"))
        );
        let sonnet = registry
            .price_at(Provider::Anthropic, "claude-sonnet-4", today)
            .unwrap();
        assert_eq!(
            (sonnet.input, sonnet.cached_input, sonnet.cache_write, sonnet.output),
            (d("3"), d("0.3"), d("3.75"), d("15"))
        );
    }

    #[test]
    fn builtin_models_are_already_normalized() {
        // The file is keyed by normalized names; a raw snapshot name there would
        // still load (it is normalized), but would hide a typo or a collision.
        let raw: toml::Table = toml::from_str(BUILTIN_TOML).unwrap();
        for item in raw["price"].as_array().unwrap() {
            let provider = Provider::parse(item["provider"].as_str().unwrap()).unwrap();
            let model = item["model"].as_str().unwrap();
            assert_eq!(models::normalize(provider, model).name, model);
        }
    }

    #[test]
    fn effective_date_selects_the_newest_entry_not_after_the_bucket() {
        let registry = PricingRegistry::from_toml(TWO_PRICES).unwrap();
        let price = |t| registry.price_at(Provider::OpenAi, "gpt-test", t).map(|p| p.input);
        assert_eq!(price(at(2024, 5, 12, 23)), None, "before the first entry");
        assert_eq!(price(at(2024, 5, 13, 0)), Some(d("5")), "on the first entry's day");
        assert_eq!(
            price(at(2024, 10, 1, 23)),
            Some(d("5")),
            "between two entries: the older"
        );
        assert_eq!(price(at(2024, 10, 2, 0)), Some(d("2.50")), "on the boundary: the newer");
        assert_eq!(price(at(2030, 1, 1, 0)), Some(d("2.50")), "long after: the newest");
        assert_eq!(
            registry.price_at(Provider::Anthropic, "gpt-test", at(2025, 1, 1, 0)),
            None
        );
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn estimate_is_exact_on_a_hand_computed_example() {
        let registry = PricingRegistry::from_toml(
            r#"
            [[price]]
            provider = "anthropic"
            model = "claude-sonnet-4"
            effective_from = "2025-05-14"
            input = "3"
            cached_input = "0.30"
            cache_write = "3.75"
            output = "15"
        "#,
        )
        .unwrap();
        // 1,234,567 input = 1,000,000 cache reads + 100,000 cache writes + 134,567 uncached.
        // 134,567 * 3     = 403,701
        // 1,000,000 * 0.3 = 300,000
        // 100,000 * 3.75  = 375,000
        // 7,891 * 15      = 118,365
        // sum 1,197,066 / 1,000,000 = 1.197066 USD
        let m = tokens(1_234_567, 1_000_000, 100_000, 7_891);
        let estimate = registry.estimate(Provider::Anthropic, "claude-sonnet-4", at(2025, 6, 1, 13), &m);
        assert_eq!(estimate, Some(d("1.197066")));

        // A single token of gpt-4o-mini output: 0.6 / 1e6, no float noise.
        let builtin = PricingRegistry::builtin().unwrap();
        let one = builtin.estimate(Provider::OpenAi, "gpt-4o-mini", at(2025, 1, 1, 0), &tokens(0, 0, 0, 1));
        assert_eq!(one, Some(d("0.0000006")));
    }

    #[test]
    fn uncached_input_is_clamped_at_zero() {
        let registry = PricingRegistry::from_toml(TWO_PRICES).unwrap();
        // Inconsistent counts: cache reads exceed the total. Only the reads are priced.
        let m = tokens(10, 1_000_000, 0, 0);
        let estimate = registry.estimate(Provider::OpenAi, "gpt-test", at(2025, 1, 1, 0), &m);
        assert_eq!(estimate, Some(d("1.25")));
    }

    #[test]
    fn estimate_is_none_without_tokens_or_price() {
        let registry = PricingRegistry::from_toml(TWO_PRICES).unwrap();
        let t = at(2025, 1, 1, 0);
        assert_eq!(
            registry.estimate(Provider::OpenAi, "gpt-test", t, &tokens(0, 0, 0, 0)),
            None
        );
        assert_eq!(
            registry.estimate(Provider::OpenAi, "unknown-model", t, &tokens(5, 0, 0, 5)),
            None
        );
        assert_eq!(
            registry.estimate(Provider::OpenAi, "gpt-test", at(2020, 1, 1, 0), &tokens(5, 0, 0, 5)),
            None
        );
        assert_eq!(
            PricingRegistry::default().estimate(Provider::OpenAi, "gpt-test", t, &tokens(5, 0, 0, 5)),
            None
        );
        assert!(PricingRegistry::default().is_empty());
    }

    #[test]
    fn defaults_cached_and_cache_write_to_input() {
        let registry = PricingRegistry::from_toml(TWO_PRICES).unwrap();
        let old = registry
            .price_at(Provider::OpenAi, "gpt-test", at(2024, 6, 1, 0))
            .unwrap();
        assert_eq!((old.cached_input, old.cache_write), (d("5"), d("5")));
        let new = registry
            .price_at(Provider::OpenAi, "gpt-test", at(2024, 11, 1, 0))
            .unwrap();
        assert_eq!((new.cached_input, new.cache_write), (d("1.25"), d("2.50")));
    }

    fn overrides(text: &str) -> Vec<PriceEntry> {
        #[derive(Deserialize)]
        struct File {
            overrides: Vec<PriceEntry>,
        }
        toml::from_str::<File>(text).unwrap().overrides
    }

    #[test]
    fn an_override_beats_newer_bundled_prices_from_its_own_date_on() {
        let registry = PricingRegistry::from_toml(TWO_PRICES)
            .unwrap()
            .with_overrides(overrides(
                r#"
            [[overrides]]
            provider = "openai"
            model = "gpt-test"
            effective_from = "2020-01-01"
            input = "0.5"
            output = "1"
        "#,
            ));
        for day in [at(2020, 1, 1, 0), at(2024, 6, 1, 0), at(2025, 6, 1, 0)] {
            assert_eq!(
                registry.price_at(Provider::OpenAi, "gpt-test", day).map(|p| p.input),
                Some(d("0.5"))
            );
        }
        assert_eq!(registry.price_at(Provider::OpenAi, "gpt-test", at(2019, 6, 1, 0)), None);
    }

    #[test]
    fn overrides_win_for_the_same_key_and_add_new_ones() {
        let registry = PricingRegistry::from_toml(TWO_PRICES)
            .unwrap()
            .with_overrides(overrides(
                r#"
            [[overrides]]
            provider = "openai"
            model = "GPT-Test-2024-10-02"   # normalized to gpt-test
            effective_from = "2024-10-02"
            input = "2"
            output = "8"

            [[overrides]]
            provider = "openai"
            model = "gpt-test"
            effective_from = 2025-01-01     # a bare TOML date works too
            input = "1"
            output = "4"

            [[overrides]]
            provider = "anthropic"
            model = "claude-private"
            effective_from = "2025-01-01"
            input = "7"
            output = "9"
        "#,
            ));
        let price = |p, m, t| registry.price_at(p, m, t).map(|p| p.input);
        assert_eq!(
            price(Provider::OpenAi, "gpt-test", at(2024, 6, 1, 0)),
            Some(d("5")),
            "untouched"
        );
        assert_eq!(
            price(Provider::OpenAi, "gpt-test", at(2024, 10, 2, 0)),
            Some(d("2")),
            "replaced"
        );
        assert_eq!(
            price(Provider::OpenAi, "gpt-test", at(2025, 1, 1, 0)),
            Some(d("1")),
            "added date"
        );
        assert_eq!(
            price(Provider::Anthropic, "claude-private", at(2025, 2, 1, 0)),
            Some(d("7")),
            "added model"
        );
        // 2 bundled entries + 3 overrides, kept in their own timeline.
        assert_eq!(registry.len(), 5);
        // The replaced entry's defaults come from the override, not the old entry.
        let replaced = registry
            .price_at(Provider::OpenAi, "gpt-test", at(2024, 10, 2, 0))
            .unwrap();
        assert_eq!(replaced.cached_input, d("2"));
    }

    #[test]
    fn later_override_wins_over_an_earlier_one() {
        let registry = PricingRegistry::default().with_overrides(overrides(
            r#"
            [[overrides]]
            provider = "openai"
            model = "m"
            effective_from = "2025-01-01"
            input = "1"
            output = "1"
            [[overrides]]
            provider = "openai"
            model = "m"
            effective_from = "2025-01-01"
            input = "2"
            output = "2"
        "#,
        ));
        assert_eq!(
            registry
                .price_at(Provider::OpenAi, "m", at(2025, 1, 1, 0))
                .unwrap()
                .input,
            d("2")
        );
    }

    fn error_of(text: &str) -> String {
        PricingRegistry::from_toml(text).unwrap_err().to_string()
    }

    fn entry_with(field_line: &str) -> String {
        let mut lines = vec![
            "provider = \"openai\"",
            "model = \"gpt-x\"",
            "effective_from = \"2025-01-01\"",
            "input = \"1\"",
            "output = \"2\"",
        ];
        let key = field_line.split('=').next().unwrap().trim();
        lines.retain(|l| !l.starts_with(&format!("{key} ")));
        if !field_line.ends_with("= <absent>") {
            lines.push(field_line);
        }
        format!(
            "[[price]]\nprovider = \"openai\"\nmodel = \"ok\"\neffective_from = \"2025-01-01\"\ninput = \"1\"\noutput = \"1\"\n\n[[price]]\n{}\n",
            lines.join("\n")
        )
    }

    #[test]
    fn bad_data_files_name_the_entry_the_field_and_the_fix() {
        let cases: &[(&str, &[&str])] = &[
            (
                "input = 0.15",
                &["entry #2", "model \"gpt-x\"", "input", "float", "\"0.15\""],
            ),
            (
                "output = \"1,50\"",
                &["entry #2", "output", "\"1,50\"", "like \"0.15\""],
            ),
            ("cached_input = \"-1\"", &["entry #2", "cached_input", "negative"]),
            ("cache_write = true", &["entry #2", "cache_write", "boolean"]),
            (
                "provider = \"openia\"",
                &["entry #2", "provider", "\"openia\"", "openai, anthropic"],
            ),
            (
                "effective_from = \"18/07/2024\"",
                &["entry #2", "effective_from", "\"2024-07-18\""],
            ),
            (
                "effective_from = 2024-07-18T00:00:00Z",
                &["entry #2", "effective_from", "is not a date"],
            ),
            ("model = \" \"", &["entry #2", "model", "empty"]),
            (
                "output = <absent>",
                &["entry #2", "missing field `output`", "every entry needs"],
            ),
            ("inptu = \"1\"", &["entry #2", "inptu", "unknown field"]),
        ];
        for (line, needles) in cases {
            let err = error_of(&entry_with(line));
            for needle in *needles {
                assert!(err.contains(needle), "{line:?}: {err:?} lacks {needle:?}");
            }
        }
    }

    #[test]
    fn bad_file_shapes_are_rejected() {
        assert!(error_of("[[price]\n").contains("not valid TOML"));
        assert!(error_of("price = 3").contains("write each entry as [[price]]"));
        assert!(error_of("[[prices]]\nmodel = \"x\"").contains("unknown top-level key `prices`"));
        let dup = error_of(
            r#"
            [[price]]
            provider = "openai"
            model = "gpt-4o"
            effective_from = "2024-10-02"
            input = "2.5"
            output = "10"
            [[price]]
            provider = "openai"
            model = "gpt-4o-2024-08-06"
            effective_from = "2024-10-02"
            input = "2.5"
            output = "10"
        "#,
        );
        assert!(dup.contains("entries #1 and #2") && dup.contains("\"gpt-4o\""), "{dup}");
        assert!(PricingRegistry::from_toml("").unwrap().is_empty());
    }
}
