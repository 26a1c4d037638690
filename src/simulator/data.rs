//! What every simulated provider shares: the seeded world, the record shape
//! endpoints aggregate, restatements and the ground-truth rows.
//!
//! Every number is a pure function of (seed, provider, org, hour) plus the
//! restatements in force, so two requests, two processes or a test computing the
//! truth all see the same data. Randomness comes from xxh3 of that tuple (never a
//! thread RNG), and money from exact decimals.
//!
//! Rows are kept at the providers' finest grain (the grain with every `group_by`
//! field set); endpoints aggregate them on request. An hour has data once it is
//! complete (`hour + 1h <= now`) and no earlier than `history_days` days before
//! the current UTC day, so the current hour is empty and the current day partial.
//! Each provider's own streams, prices and truth live in its folder under
//! `providers/`.

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64_with_seed;

pub(crate) const MINUTE: i64 = 60;
pub(crate) const HOUR: i64 = 3600;
pub(crate) const DAY: i64 = 86_400;

/// A restated bill: every usage measure of (provider, org, day) is multiplied by
/// `factor` (rounded half-even to whole units) and costs are recomputed from the
/// scaled usage. A later restatement of the same day replaces an earlier one
/// (factors apply to the original data, they do not compound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restatement {
    /// A registered simulated provider's name (`openai`, `anthropic`, ...).
    pub provider: String,
    pub org: String,
    pub day: NaiveDate,
    pub factor: Decimal,
}

/// Ground truth for one UTC day, normalized model and unit: what
/// `sum(...) GROUP BY day, model, unit` over `usage_daily` must give for the
/// account. `unit` is the unit of `quantity` ("" where a row has none, e.g.
/// token usage; "calls", "requests", "tokens", ... otherwise), so quantities of
/// different units are never added up. Money is USD: `cost` is the sum of the
/// billed records' amounts, each rounded half-even to 9 places (as stored);
/// `credits` is a positive amount at the grain of `cost`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRow {
    pub day: NaiveDate,
    pub model: String,
    #[serde(default)]
    pub unit: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_creation_tokens: i64,
    pub requests: i64,
    #[serde(with = "rust_decimal::serde::str", default)]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub cost: Decimal,
    #[serde(with = "rust_decimal::serde::str", default)]
    pub credits: Decimal,
    /// Money that is not the provider's bill (a proxy's own estimate,
    /// OpenRouter BYOK spend), as `estimated_cost` stores it.
    #[serde(with = "rust_decimal::serde::str", default)]
    pub estimated_cost: Decimal,
}

impl TruthRow {
    fn empty(day: NaiveDate, model: String, unit: String) -> Self {
        TruthRow {
            day,
            model,
            unit,
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            cache_creation_tokens: 0,
            requests: 0,
            quantity: Decimal::ZERO,
            cost: Decimal::ZERO,
            credits: Decimal::ZERO,
            estimated_cost: Decimal::ZERO,
        }
    }

    fn is_zero(&self) -> bool {
        self.input_tokens == 0
            && self.output_tokens == 0
            && self.cached_input_tokens == 0
            && self.cache_creation_tokens == 0
            && self.requests == 0
            && self.quantity.is_zero()
            && self.cost.is_zero()
            && self.credits.is_zero()
            && self.estimated_cost.is_zero()
    }
}

/// Collects truth rows keyed by (day, model, unit) while a provider walks its
/// records; [`TruthBook::finish`] drops all-zero rows and writes money and
/// quantities with 9 places, as `usage_daily` stores them.
#[derive(Default)]
pub(crate) struct TruthBook {
    rows: BTreeMap<(NaiveDate, String, String), TruthRow>,
}

impl TruthBook {
    /// The row of (day, model, unit); `model` is normalized here.
    pub fn entry(&mut self, day: NaiveDate, raw_model: &str, unit: &str) -> &mut TruthRow {
        let model = normalize_model(raw_model);
        self.rows
            .entry((day, model.clone(), unit.to_string()))
            .or_insert_with(|| TruthRow::empty(day, model, unit.to_string()))
    }

    pub fn finish(self) -> Vec<TruthRow> {
        self.rows
            .into_values()
            .filter(|t| !t.is_zero())
            .map(|mut t| {
                t.cost.rescale(9);
                t.quantity.rescale(9);
                t.credits.rescale(9);
                t.estimated_cost.rescale(9);
                t
            })
            .collect()
    }
}

/// Rounds a record's money the way `Decimal(38, 9)` stores it.
pub(crate) fn round9(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(9, RoundingStrategy::MidpointNearestEven)
}

/// One record at the provider's finest grain. `dims` follow the endpoint's
/// dimension list (JSON values so that `null` and booleans stay what the
/// provider sends), `vals` its integer measures, `amount` the money of a cost
/// record (USD for OpenAI, cents for Anthropic; zero for usage) and `list` the
/// same money at list price, before the org's discount (where a provider
/// reports it).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub dims: Vec<Value>,
    pub vals: Vec<i64>,
    pub amount: Decimal,
    pub list: Decimal,
}

impl Row {
    /// A usage row: measures, no money.
    pub fn usage(dims: Vec<Value>, vals: Vec<i64>) -> Self {
        Row {
            dims,
            vals,
            amount: Decimal::ZERO,
            list: Decimal::ZERO,
        }
    }
}

/// Relative traffic per UTC hour of day (percent), so days look like days.
const DIURNAL: [i64; 24] = [
    30, 25, 20, 20, 25, 35, 50, 70, 90, 100, 100, 95, 90, 95, 100, 100, 95, 85, 70, 60, 50, 45, 40, 35,
];

/// The simulated world as of `now`: configuration, clock and restatements.
pub(crate) struct World<'a> {
    pub seed: u64,
    pub history_days: u32,
    pub now: i64,
    pub restatements: &'a [Restatement],
    /// Provider-side renames and the name endpoints' outage switch.
    pub names: &'a super::names::NameControls,
}

/// Per-(seed, provider, org) randomness and identities.
pub(crate) struct OrgDraw {
    base: u64,
}

impl OrgDraw {
    pub fn new(seed: u64, provider: &str, org: &str) -> Self {
        let text = format!("{provider}\u{0}{org}");
        OrgDraw {
            base: xxh3_64_with_seed(text.as_bytes(), seed),
        }
    }

    pub fn at(&self, parts: &[i64]) -> u64 {
        let mut bytes = Vec::with_capacity(parts.len() * 8);
        for part in parts {
            bytes.extend_from_slice(&part.to_le_bytes());
        }
        xxh3_64_with_seed(&bytes, self.base)
    }

    pub fn ident(&self, prefix: &str, kind: i64, index: usize, len: usize) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut out = String::from(prefix);
        let mut h = 0;
        for i in 0..len {
            if i % 8 == 0 {
                h = self.at(&[kind, index as i64, i as i64]);
            }
            out.push(ALPHABET[(h % 62) as usize] as char);
            h /= 62;
        }
        out
    }

    /// A per-org negotiated rate (0.96001..=1.00000) so amounts carry long
    /// decimal tails, as real bills do.
    pub fn rate(&self) -> Decimal {
        Decimal::new(100_000 - (self.at(&[-1]) % 4000) as i64, 5)
    }

    pub fn streams(&self, min: usize, spread: u64) -> usize {
        min + (self.at(&[-2]) % spread) as usize
    }
}

/// A JSON object of `entries`, each value moved in. Pages are built with this
/// rather than `json!`, which serializes its operands: a page's buckets and
/// results embedded with `json!` were deep-copied once per level, and copying
/// and dropping those trees was most of the simulator's CPU.
pub(crate) fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    )
}

pub(crate) fn text(value: Option<String>) -> Value {
    value.map(Value::String).unwrap_or(Value::Null)
}

pub(crate) fn floor(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width
}

pub(crate) fn day_of(t: i64) -> NaiveDate {
    Utc.timestamp_opt(floor(t, DAY), 0)
        .single()
        .map(|d| d.date_naive())
        .unwrap_or_default()
}

/// Aligned hour starts of the hours that start in `[start, end)` (snapped
/// outward to whole hours).
pub(crate) fn hours_of(start: i64, end: i64) -> impl Iterator<Item = i64> {
    let first = floor(start, HOUR);
    (first..end.max(first)).step_by(HOUR as usize)
}

/// Day starts of every UTC day `[start, end)` touches.
pub(crate) fn days_of(start: i64, end: i64) -> impl Iterator<Item = i64> {
    let first = floor(start, DAY);
    (first..end.max(first)).step_by(DAY as usize)
}

/// Diurnal and weekend-shaped scale for an hour, in percent.
pub(crate) fn traffic(hour: i64) -> i64 {
    let hour_of_day = (hour.rem_euclid(DAY) / HOUR) as usize;
    let weekday = (hour.div_euclid(DAY) + 4).rem_euclid(7); // 0 = Sunday
    let weekend = if weekday == 0 || weekday == 6 { 50 } else { 100 };
    DIURNAL[hour_of_day] * weekend / 100
}

fn scaled(value: i64, factor: Decimal) -> i64 {
    (Decimal::from(value) * factor)
        .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
        .to_i64()
        .unwrap_or(i64::MAX)
}

/// `tokens * price * rate / 10^shift`. Exact: prices have 2 places and rates
/// 5, so dividing by a power of ten stays far inside Decimal's 28 places.
pub(crate) fn money(tokens: i64, price: Decimal, rate: Decimal, shift: u32) -> Decimal {
    Decimal::from(tokens) * price * rate / Decimal::from(10_i64.pow(shift))
}

/// The normalized model name: lower case, trailing date suffix removed
/// (`-2024-07-18` or `-20250514`).
pub fn normalize_model(raw: &str) -> String {
    let lower = raw.to_ascii_lowercase();
    let digits = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit());
    let n = lower.len();
    if let (Some(head), Some(tail)) = (lower.get(..n.saturating_sub(11)), lower.get(n.saturating_sub(11)..)) {
        let parts: Vec<&str> = tail.split('-').collect();
        if n > 11
            && parts.len() == 4
            && parts[0].is_empty()
            && digits(parts[1], 4)
            && digits(parts[2], 2)
            && digits(parts[3], 2)
        {
            return head.to_string();
        }
    }
    if let Some((head, tail)) = lower.rsplit_once('-') {
        if !head.is_empty() && digits(tail, 8) {
            return head.to_string();
        }
    }
    lower
}

impl World<'_> {
    fn history_start(&self) -> i64 {
        floor(self.now, DAY) - i64::from(self.history_days) * DAY
    }

    /// Whether `hour` (aligned) has data: complete and inside the history.
    pub fn has_data(&self, hour: i64) -> bool {
        hour >= self.history_start() && hour + HOUR <= self.now
    }

    fn factor(&self, provider: &str, org: &str, hour: i64) -> Option<Decimal> {
        let day = day_of(hour);
        self.restatements
            .iter()
            .rev()
            .find(|r| r.provider == provider && r.org == org && r.day == day)
            .map(|r| r.factor)
    }

    /// Applies the restatement of (provider, org, day of `hour`), if any, to
    /// every measure of `rows`.
    pub fn restate(&self, provider: &str, org: &str, hour: i64, mut rows: Vec<Row>) -> Vec<Row> {
        if let Some(factor) = self.factor(provider, org, hour) {
            for row in &mut rows {
                for v in &mut row.vals {
                    *v = scaled(*v, factor);
                }
            }
        }
        rows
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn world(now: i64) -> World<'static> {
        World {
            seed: 7,
            history_days: 10,
            now,
            restatements: &[],
            names: &crate::simulator::names::NO_NAMES,
        }
    }

    pub const NOW: i64 = 1_736_985_600 + 13 * HOUR + 17 * MINUTE; // 2025-01-16 13:17 UTC

    #[test]
    fn model_names_lose_their_date_suffix_only() {
        assert_eq!(normalize_model("gpt-4o-mini-2024-07-18"), "gpt-4o-mini");
        assert_eq!(normalize_model("claude-sonnet-4-20250514"), "claude-sonnet-4");
        assert_eq!(normalize_model("claude-3-5-haiku-20241022"), "claude-3-5-haiku");
        assert_eq!(normalize_model("text-embedding-3-small"), "text-embedding-3-small");
        assert_eq!(normalize_model("o3-mini-2025-01-31"), "o3-mini");
        assert_eq!(normalize_model("GPT-4o"), "gpt-4o");
    }

    #[test]
    fn truth_book_keys_by_day_model_and_unit_and_drops_zero_rows() {
        let day = day_of(NOW);
        let mut book = TruthBook::default();
        book.entry(day, "gpt-4o-2024-08-06", "").input_tokens += 5;
        book.entry(day, "gpt-4o", "calls").quantity += Decimal::from(3);
        book.entry(day, "gpt-4o", "tokens").cost += Decimal::new(15, 1);
        book.entry(day, "o3-mini", "");
        let rows = book.finish();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert!(rows.iter().all(|r| r.model == "gpt-4o"));
        assert_eq!(rows[1].quantity.to_string(), "3.000000000");
        assert_eq!(rows[2].cost.to_string(), "1.500000000");
    }
}
