//! The one schema every provider is normalized into.
//!
//! Adapters produce [`FetchedRecord`]s: the provider's own identity for a record
//! (its raw grouping fields) plus the dimensions and measures read from it.
//! [`crate::normalize::finish`] turns those into [`UsageRow`]s, the exact shape of
//! a `usage_records` row.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// What kind of fact a row is. Token and request measures live only on `Usage`
/// rows; money the provider billed lives only on `Cost` rows (docs/DESIGN.md rule 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    Usage,
    Cost,
    Credit,
}

impl RecordType {
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordType::Usage => "usage",
            RecordType::Cost => "cost",
            RecordType::Credit => "credit",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "usage" => Some(RecordType::Usage),
            "cost" => Some(RecordType::Cost),
            "credit" => Some(RecordType::Credit),
            _ => None,
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Width of a provider time bucket. Buckets are `[start, start + width)` in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
}

impl Granularity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Granularity::Minute => "1m",
            Granularity::Hour => "1h",
            Granularity::Day => "1d",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "1m" => Some(Granularity::Minute),
            "1h" => Some(Granularity::Hour),
            "1d" => Some(Granularity::Day),
            _ => None,
        }
    }

    pub fn seconds(self) -> i64 {
        match self {
            Granularity::Minute => 60,
            Granularity::Hour => 3_600,
            Granularity::Day => 86_400,
        }
    }

    /// The start of the bucket that contains `t`.
    pub fn floor(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let secs = t.timestamp();
        let width = self.seconds();
        let floored = secs.div_euclid(width) * width;
        Utc.timestamp_opt(floored, 0)
            .single()
            .expect("floored timestamp is valid")
    }

    /// The smallest bucket boundary at or after `t`.
    pub fn ceil(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let floored = self.floor(t);
        if floored == t && t.timestamp_subsec_nanos() == 0 {
            floored
        } else {
            floored + chrono::Duration::seconds(self.seconds())
        }
    }
}

impl fmt::Display for Granularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the money in `cost` came from (docs/DESIGN.md rule 3). Usage rows carry `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CostSource {
    #[default]
    None,
    /// Billed by the provider at its own grain.
    Billed,
    /// Allocated from a bill so that the parts sum exactly to it.
    Allocated,
}

impl CostSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            CostSource::None => "",
            CostSource::Billed => "billed",
            CostSource::Allocated => "allocated",
        }
    }
}

/// `text()`, the column text of a small enum, made at compile time: an
/// inline string made at run time is copied byte by byte, and every row
/// takes three of these.
macro_rules! column_text {
    ($name:ident: $($variant:ident),+) => {
        impl $name {
            pub fn text(self) -> Text {
                match self {
                    $($name::$variant => const { Text::const_new($name::$variant.as_str()) },)+
                }
            }
        }
    };
}

column_text!(RecordType: Usage, Cost, Credit);
column_text!(Granularity: Minute, Hour, Day);
column_text!(CostSource: None, Billed, Allocated);

/// A raw grouping field exactly as the provider returned it. `Null` is distinct
/// from an empty string, and numbers keep their exact JSON text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RawField {
    Null,
    Text(Text),
    Number(Text),
    Bool(bool),
}

impl RawField {
    /// The field as display text; `Null` is the empty string.
    pub fn as_text(&self) -> Text {
        match self {
            RawField::Null => Text::default(),
            RawField::Text(s) | RawField::Number(s) => s.clone(),
            // Made at compile time ([`column_text`]).
            RawField::Bool(true) => const { Text::const_new("true") },
            RawField::Bool(false) => const { Text::const_new("false") },
        }
    }

    /// Reads a scalar JSON value; objects and arrays are not grouping fields.
    pub fn from_json(value: &crate::providers::json::Json) -> Option<Self> {
        use crate::providers::json::Json;
        match value {
            Json::Null => Some(RawField::Null),
            Json::String(s) => Some(RawField::Text(Text::new(s))),
            Json::Number(n) => Some(RawField::Number(compact_str::format_compact!("{n}"))),
            Json::Bool(b) => Some(RawField::Bool(*b)),
            _ => None,
        }
    }
}

/// Every raw grouping field of a record, by name: what a map of them would
/// be, held as a vector sorted by name (the record key's canonical order) of
/// inline strings. A record has a dozen fields at most, and a B-tree of heap
/// `String`s built and dropped per record was ~5% of the daemon's CPU in a
/// backfill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RawGroup(Vec<(Text, RawField)>);

impl RawGroup {
    pub fn new() -> Self {
        Self::default()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(field, _)| field.as_str().cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&RawField> {
        self.position(name).ok().map(|at| &self.0[at].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.position(name).is_ok()
    }

    /// Sets `name` to `value`, returning the value it replaces.
    pub fn insert(&mut self, name: impl Into<Text>, value: RawField) -> Option<RawField> {
        let name = name.into();
        match self.position(&name) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                self.0.insert(at, (name, value));
                None
            }
        }
    }

    /// Takes `name` out, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<RawField> {
        self.position(name).ok().map(|at| self.0.remove(at).1)
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(name, _)| name.as_str())
    }

    /// The fields, in order of their names.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawField)> {
        self.into_iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Like collecting into a map: of a name given twice, the last value stays.
impl<K: Into<Text>> FromIterator<(K, RawField)> for RawGroup {
    fn from_iter<I: IntoIterator<Item = (K, RawField)>>(fields: I) -> Self {
        thread_local! {
            /// Sorted and deduplicated here, then moved into a vector of the
            /// exact size: collected from a filter, a record's vector grew
            /// (and moved) two or three times, and kept up to twice the room
            /// it needed until the record was normalized.
            static SCRATCH: std::cell::RefCell<Vec<(Text, RawField)>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // Taken out while `fields` runs, so that nothing it calls can find
        // the scratch borrowed.
        let mut scratch = SCRATCH.take();
        scratch.extend(fields.into_iter().map(|(name, value)| (name.into(), value)));
        // Stable, so a name's values stay in the order given.
        scratch.sort_by(|a, b| a.0.cmp(&b.0));
        scratch.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        let mut exact = Vec::with_capacity(scratch.len());
        exact.append(&mut scratch);
        SCRATCH.set(scratch);
        Self(exact)
    }
}

impl<K: Into<Text>, const N: usize> From<[(K, RawField); N]> for RawGroup {
    fn from(fields: [(K, RawField); N]) -> Self {
        fields.into_iter().collect()
    }
}

impl std::ops::Index<&str> for RawGroup {
    type Output = RawField;

    fn index(&self, name: &str) -> &RawField {
        self.get(name)
            .unwrap_or_else(|| panic!("no raw grouping field {name:?}"))
    }
}

impl<'a> IntoIterator for &'a RawGroup {
    type Item = (&'a str, &'a RawField);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (Text, RawField)>, fn(&'a (Text, RawField)) -> (&'a str, &'a RawField)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }
}

/// What makes a provider record the same record across syncs. Only raw provider
/// data goes in here, never anything derived (normalized model, prices, hints).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecordIdentity {
    pub record_type: RecordType,
    /// The provider endpoint the record came from, e.g. `completions`, `costs`.
    pub endpoint: Text,
    pub granularity: Granularity,
    pub bucket_start: DateTime<Utc>,
    pub bucket_end: DateTime<Utc>,
    /// Every raw grouping field the provider returned, by field name.
    pub raw_group: RawGroup,
}

/// Descriptive columns read from a record (all empty strings when absent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dimensions {
    /// The model name exactly as the provider spelled it.
    pub model_raw: Text,
    /// The product line: `completions`, `embeddings`, `web_search`, ...
    pub service: Text,
    pub workspace_id: Text,
    pub project_id: Text,
    pub api_key_id: Text,
    /// Masked key, never a whole secret.
    pub api_key_hint: Text,
    pub user_id: Text,
    pub region: Text,
    pub resource_id: Text,
    pub line_item: Text,
    /// Raw grouping fields that have no column of their own.
    pub attributes: BTreeMap<Text, Text>,
}

/// The numbers of one record. Money is exact and in USD unless `currency` says
/// otherwise; `amount_original` keeps the provider's own figure (e.g. cents).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Measures {
    /// All input tokens processed: uncached + cache reads + cache writes.
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Cache reads; a subset of `input_tokens`.
    pub cached_input_tokens: i64,
    /// Cache writes; a subset of `input_tokens`.
    pub cache_creation_tokens: i64,
    pub requests: i64,
    /// False where the provider reports no request count (then `requests` is 0).
    pub requests_reported: bool,
    /// A count in `unit` (images, characters, seconds, bytes, searches, ...).
    pub quantity: Decimal,
    pub unit: Text,
    /// Money the provider billed (or allocated from a bill), in USD.
    pub cost: Decimal,
    /// Credits as a positive amount in USD at the grain of `cost`.
    pub credits: Decimal,
    pub cost_source: CostSource,
    /// Upper-case ISO 4217 code of `amount_original`; empty on usage rows.
    pub currency: Text,
    /// The provider's own amount in its own unit (cents for Anthropic).
    pub amount_original: Decimal,
    /// A provider's own estimate (e.g. a proxy's price map). When `None`, the
    /// pricing registry fills `estimated_cost` for usage rows.
    pub provider_estimate: Option<Decimal>,
}

impl Measures {
    /// Adds another record's numbers to these (records with one key are
    /// summed). Checked: a sum that overflows is an error naming the field,
    /// never a wrapped or saturated number.
    pub fn checked_add(&mut self, other: &Measures) -> Result<(), String> {
        fn int(field: &str, a: &mut i64, b: i64) -> Result<(), String> {
            *a = a
                .checked_add(b)
                .ok_or_else(|| format!("{field}: the sum of records with one key overflows"))?;
            Ok(())
        }
        fn dec(field: &str, a: &mut Decimal, b: Decimal) -> Result<(), String> {
            *a = a
                .checked_add(b)
                .ok_or_else(|| format!("{field}: the sum of records with one key overflows"))?;
            Ok(())
        }
        int("input_tokens", &mut self.input_tokens, other.input_tokens)?;
        int("output_tokens", &mut self.output_tokens, other.output_tokens)?;
        int(
            "cached_input_tokens",
            &mut self.cached_input_tokens,
            other.cached_input_tokens,
        )?;
        int(
            "cache_creation_tokens",
            &mut self.cache_creation_tokens,
            other.cache_creation_tokens,
        )?;
        int("requests", &mut self.requests, other.requests)?;
        self.requests_reported |= other.requests_reported;
        dec("quantity", &mut self.quantity, other.quantity)?;
        dec("cost", &mut self.cost, other.cost)?;
        dec("credits", &mut self.credits, other.credits)?;
        dec("amount", &mut self.amount_original, other.amount_original)?;
        self.provider_estimate = match (self.provider_estimate, other.provider_estimate) {
            (None, None) => None,
            (a, b) => Some(
                a.unwrap_or_default()
                    .checked_add(b.unwrap_or_default())
                    .ok_or("estimated cost: the sum of records with one key overflows")?,
            ),
        };
        if self.unit.is_empty() {
            self.unit = other.unit.clone();
        }
        if self.currency.is_empty() {
            self.currency = other.currency.clone();
        }
        if self.cost_source == CostSource::None {
            self.cost_source = other.cost_source;
        }
        Ok(())
    }
}

/// One provider record as an adapter read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedRecord {
    pub identity: RecordIdentity,
    pub dims: Dimensions,
    pub measures: Measures,
}

/// A `Decimal(38, 9)` value as ClickHouse stores it: the amount times 10^9.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Dec9(pub i128);

impl Dec9 {
    pub const SCALE: u32 = 9;

    /// Rounds once, half-even, to 9 decimal places (docs/DESIGN.md rule 2).
    pub fn from_decimal(value: Decimal) -> Self {
        // Most of a row's five amounts are zero (credits, an original
        // currency's amount): no rounding to do.
        if value.is_zero() {
            return Dec9(0);
        }
        let mut rounded = value.round_dp_with_strategy(Self::SCALE, RoundingStrategy::MidpointNearestEven);
        rounded.rescale(Self::SCALE);
        Dec9(rounded.mantissa())
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::from_i128_with_scale(self.0, Self::SCALE)
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Dec9 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_decimal().normalize())
    }
}

/// A text column of [`UsageRow`]: strings of up to 24 bytes (ids, model
/// names, units, currencies: nearly every value) live inline in the row
/// instead of in a heap allocation each. A row has 22 of them and a first
/// sync holds hundreds of thousands of rows, so this halves the rows' memory
/// and their allocations (heaptrack: the rows were most of the daemon's peak).
pub type Text = compact_str::CompactString;

/// Exactly one row of `usage_records`, field for field in column order.
///
/// Times are seconds since the Unix epoch (ClickHouse `DateTime('UTC')`), money
/// is [`Dec9`]. The derived `Row` lets the `clickhouse` crate write and read it as
/// RowBinary, which ClickHouse 18.16 understands; the writer sends it as Native
/// blocks (`store::native`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clickhouse::Row)]
pub struct UsageRow {
    pub connection_id: Text,
    pub provider: Text,
    pub record_type: Text,
    pub endpoint: Text,
    pub bucket_start: u32,
    pub bucket_end: u32,
    pub granularity: Text,
    pub record_key: u64,
    pub model: Text,
    pub model_raw: Text,
    pub model_family: Text,
    pub service: Text,
    pub workspace_id: Text,
    pub project_id: Text,
    pub api_key_id: Text,
    pub api_key_hint: Text,
    pub user_id: Text,
    pub region: Text,
    pub resource_id: Text,
    pub line_item: Text,
    pub attributes: Text,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_creation_tokens: i64,
    pub requests: i64,
    pub requests_reported: i8,
    pub quantity: Dec9,
    pub unit: Text,
    pub cost: Dec9,
    pub estimated_cost: Dec9,
    pub credits: Dec9,
    pub cost_source: Text,
    pub currency: Text,
    pub amount_original: Dec9,
    pub sign: i8,
    pub version: u64,
    pub synced_at: u32,
    /// [`UsageRow::fingerprint`] of the row as written (set by the diff on
    /// new rows, copied verbatim on cancel rows); 0 on rows written before
    /// the column existed.
    pub content_hash: u64,
}

impl UsageRow {
    /// Column names in table order, for SELECT and INSERT statements.
    pub const COLUMNS: &'static [&'static str] = &[
        "connection_id",
        "provider",
        "record_type",
        "endpoint",
        "bucket_start",
        "bucket_end",
        "granularity",
        "record_key",
        "model",
        "model_raw",
        "model_family",
        "service",
        "workspace_id",
        "project_id",
        "api_key_id",
        "api_key_hint",
        "user_id",
        "region",
        "resource_id",
        "line_item",
        "attributes",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_creation_tokens",
        "requests",
        "requests_reported",
        "quantity",
        "unit",
        "cost",
        "estimated_cost",
        "credits",
        "cost_source",
        "currency",
        "amount_original",
        "sign",
        "version",
        "synced_at",
        "content_hash",
    ];

    /// True when both rows say the same thing, ignoring bookkeeping
    /// (`sign`, `version`, `synced_at`). Field by field, without allocating:
    /// the diff calls this for every stored row.
    pub fn same_content(&self, other: &UsageRow) -> bool {
        let UsageRow {
            connection_id,
            provider,
            record_type,
            endpoint,
            bucket_start,
            bucket_end,
            granularity,
            record_key,
            model,
            model_raw,
            model_family,
            service,
            workspace_id,
            project_id,
            api_key_id,
            api_key_hint,
            user_id,
            region,
            resource_id,
            line_item,
            attributes,
            input_tokens,
            output_tokens,
            cached_input_tokens,
            cache_creation_tokens,
            requests,
            requests_reported,
            quantity,
            unit,
            cost,
            estimated_cost,
            credits,
            cost_source,
            currency,
            amount_original,
            sign: _,
            version: _,
            synced_at: _,
            content_hash: _,
        } = self;
        *record_key == other.record_key
            && *bucket_start == other.bucket_start
            && *bucket_end == other.bucket_end
            && *input_tokens == other.input_tokens
            && *output_tokens == other.output_tokens
            && *cached_input_tokens == other.cached_input_tokens
            && *cache_creation_tokens == other.cache_creation_tokens
            && *requests == other.requests
            && *requests_reported == other.requests_reported
            && *quantity == other.quantity
            && *cost == other.cost
            && *estimated_cost == other.estimated_cost
            && *credits == other.credits
            && *amount_original == other.amount_original
            && *connection_id == other.connection_id
            && *provider == other.provider
            && *record_type == other.record_type
            && *endpoint == other.endpoint
            && *granularity == other.granularity
            && *model == other.model
            && *model_raw == other.model_raw
            && *model_family == other.model_family
            && *service == other.service
            && *workspace_id == other.workspace_id
            && *project_id == other.project_id
            && *api_key_id == other.api_key_id
            && *api_key_hint == other.api_key_hint
            && *user_id == other.user_id
            && *region == other.region
            && *resource_id == other.resource_id
            && *line_item == other.line_item
            && *attributes == other.attributes
            && *unit == other.unit
            && *cost_source == other.cost_source
            && *currency == other.currency
    }

    /// The row's fingerprint as a sync uses it: the one the normalizer took
    /// when it made the row (`content_hash`), or computed now for a row made
    /// without one (0; a fingerprint is never 0). A first sync needs every
    /// row's fingerprint twice (bucket digests, then stamping): computing it
    /// twice was ~3% of the daemon's samples. A fetched row never changes after
    /// it is made but for the three fields stamping sets, which the
    /// fingerprint leaves out; debug builds (every test) check that the one
    /// taken still holds.
    pub fn digest(&self) -> u64 {
        if self.content_hash == 0 {
            return self.fingerprint();
        }
        debug_assert_eq!(
            self.content_hash,
            self.fingerprint(),
            "a row changed after its fingerprint was taken"
        );
        self.content_hash
    }

    /// A 64-bit digest of exactly what [`UsageRow::same_content`] compares,
    /// stored as `content_hash` so a sync compares its answer with the stored
    /// rows by reading five narrow columns instead of whole rows. Stable
    /// across releases (xxh3 over a fixed, length-prefixed encoding; changing
    /// it only costs one full read per scope). Never 0, which marks rows
    /// written before the column existed.
    pub fn fingerprint(&self) -> u64 {
        thread_local! {
            /// The encoding's bytes, hashed at once: a streaming hasher per
            /// row copied its 448-byte state (a profile's largest memmove);
            /// one-shot XXH3 of the same bytes is the same value.
            static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        ENCODED.with_borrow_mut(|out| {
            out.clear();
            for text in [
                &self.connection_id,
                &self.provider,
                &self.record_type,
                &self.endpoint,
                &self.granularity,
                &self.model,
                &self.model_raw,
                &self.model_family,
                &self.service,
                &self.workspace_id,
                &self.project_id,
                &self.api_key_id,
                &self.api_key_hint,
                &self.user_id,
                &self.region,
                &self.resource_id,
                &self.line_item,
                &self.attributes,
                &self.unit,
                &self.cost_source,
                &self.currency,
            ] {
                out.extend_from_slice(&(text.len() as u64).to_le_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            out.extend_from_slice(&self.record_key.to_le_bytes());
            out.extend_from_slice(&self.bucket_start.to_le_bytes());
            out.extend_from_slice(&self.bucket_end.to_le_bytes());
            for count in [
                self.input_tokens,
                self.output_tokens,
                self.cached_input_tokens,
                self.cache_creation_tokens,
                self.requests,
            ] {
                out.extend_from_slice(&count.to_le_bytes());
            }
            out.extend_from_slice(&self.requests_reported.to_le_bytes());
            for money in [
                self.quantity,
                self.cost,
                self.estimated_cost,
                self.credits,
                self.amount_original,
            ] {
                out.extend_from_slice(&money.0.to_le_bytes());
            }
            xxhash_rust::xxh3::xxh3_64(out).max(1)
        })
    }

    /// The row with the opposite sign and everything else verbatim: a cancel row.
    pub fn negated(&self) -> UsageRow {
        UsageRow {
            sign: -self.sign,
            ..self.clone()
        }
    }
}

/// Seconds since the epoch as a ClickHouse `DateTime`, which is a `UInt32`.
pub fn to_ch_seconds(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp()).unwrap_or(if t.timestamp() < 0 { 0 } else { u32::MAX })
}

pub fn from_ch_seconds(secs: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(i64::from(secs), 0)
        .single()
        .expect("u32 seconds are a valid time")
}

#[cfg(test)]
impl UsageRow {
    /// A minimal hourly row for unit tests: `key` picks one of three models.
    pub(crate) fn for_test(key: u64, bucket: u32, tokens: i64, cost: i128) -> UsageRow {
        UsageRow {
            connection_id: "c".into(),
            provider: "openai".into(),
            record_type: "usage".into(),
            endpoint: "completions".into(),
            bucket_start: bucket,
            bucket_end: bucket + 3600,
            granularity: "1h".into(),
            record_key: key,
            model: compact_str::format_compact!("m{}", key % 3),
            model_raw: Text::default(),
            model_family: Text::default(),
            service: Text::default(),
            workspace_id: Text::default(),
            project_id: Text::default(),
            api_key_id: Text::default(),
            api_key_hint: Text::default(),
            user_id: Text::default(),
            region: Text::default(),
            resource_id: Text::default(),
            line_item: Text::default(),
            attributes: Text::default(),
            input_tokens: tokens,
            output_tokens: 0,
            cached_input_tokens: 0,
            cache_creation_tokens: 0,
            requests: 0,
            requests_reported: 1,
            quantity: Dec9::default(),
            unit: Text::default(),
            cost: Dec9(cost),
            estimated_cost: Dec9::default(),
            credits: Dec9::default(),
            cost_source: Text::default(),
            currency: Text::default(),
            amount_original: Dec9::default(),
            sign: 1,
            version: 0,
            synced_at: 0,
            content_hash: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_column_texts_are_their_names() {
        for t in [RecordType::Usage, RecordType::Cost, RecordType::Credit] {
            assert_eq!(t.text(), t.as_str());
        }
        for g in [Granularity::Minute, Granularity::Hour, Granularity::Day] {
            assert_eq!(g.text(), g.as_str());
        }
        for c in [CostSource::None, CostSource::Billed, CostSource::Allocated] {
            assert_eq!(c.text(), c.as_str());
        }
    }

    #[test]
    fn a_raw_group_reads_like_a_map_of_its_fields() {
        let text = |s: &str| RawField::Text(s.into());
        let mut group: RawGroup = [
            ("model", text("a")),
            ("batch", RawField::Bool(true)),
            ("model", text("b")),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            group.keys().collect::<Vec<_>>(),
            ["batch", "model"],
            "sorted, one per name"
        );
        assert_eq!(group["model"], text("b"), "a name given twice keeps its last value");
        assert_eq!(group.insert("model", text("c")), Some(text("b")));
        assert_eq!(group.insert("api_key_id", RawField::Null), None);
        assert_eq!(group.keys().collect::<Vec<_>>(), ["api_key_id", "batch", "model"]);
        assert_eq!(group.remove("batch"), Some(RawField::Bool(true)));
        assert!(!group.contains_key("batch") && group.get("batch").is_none());
        assert_eq!(
            group.iter().collect::<Vec<_>>(),
            [("api_key_id", &RawField::Null), ("model", &text("c"))]
        );
        let same: RawGroup = [("model", text("c")), ("api_key_id", RawField::Null)].into();
        assert_eq!(group, same, "equal whatever order the fields came in");
    }
    use std::str::FromStr;

    #[test]
    fn dec9_rounds_half_even_once() {
        assert_eq!(Dec9::from_decimal(Decimal::from_str("0.0000000025").unwrap()).0, 2);
        assert_eq!(Dec9::from_decimal(Decimal::from_str("0.0000000035").unwrap()).0, 4);
        assert_eq!(
            Dec9::from_decimal(Decimal::from_str("412.8").unwrap()).0,
            412_800_000_000
        );
        assert_eq!(Dec9::from_decimal(Decimal::from_str("-1.5").unwrap()).0, -1_500_000_000);
        let back = Dec9(412_800_000_001).to_decimal();
        assert_eq!(back, Decimal::from_str("412.800000001").unwrap());
    }

    #[test]
    fn granularity_floor_and_ceil_are_utc_bucket_edges() {
        let t = Utc.with_ymd_and_hms(2025, 1, 15, 13, 45, 10).unwrap();
        assert_eq!(
            Granularity::Day.floor(t),
            Utc.with_ymd_and_hms(2025, 1, 15, 0, 0, 0).unwrap()
        );
        assert_eq!(
            Granularity::Day.ceil(t),
            Utc.with_ymd_and_hms(2025, 1, 16, 0, 0, 0).unwrap()
        );
        assert_eq!(
            Granularity::Hour.floor(t),
            Utc.with_ymd_and_hms(2025, 1, 15, 13, 0, 0).unwrap()
        );
        let edge = Utc.with_ymd_and_hms(2025, 1, 15, 0, 0, 0).unwrap();
        assert_eq!(Granularity::Day.ceil(edge), edge);
    }

    #[test]
    fn a_row_made_without_a_fingerprint_is_digested_when_asked() {
        let mut row = UsageRow::for_test(3, 0, 10, 20);
        let fresh = row.fingerprint();
        assert_eq!(row.digest(), fresh);
        row.content_hash = fresh;
        row.version = 9;
        row.sign = -1;
        assert_eq!(row.digest(), fresh, "stamped fields are not content");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a row changed after its fingerprint was taken")]
    fn a_row_changed_after_its_fingerprint_was_taken_is_caught() {
        let mut row = UsageRow::for_test(3, 0, 10, 20);
        row.content_hash = row.fingerprint();
        row.input_tokens += 1;
        row.digest();
    }

    /// Stored `content_hash` values are compared with fresh fingerprints:
    /// a changed value would make every stored row look changed once.
    #[test]
    fn fingerprints_are_pinned_across_releases() {
        let mut row = UsageRow::for_test(7, 1_736_971_200, 1_234, 5_678_900_000);
        row.attributes = "tier=scale\nregion=us".into();
        row.user_id = "user-ü".into();
        assert_eq!(row.fingerprint(), 7_429_778_547_718_392_633);
        assert_eq!(UsageRow::for_test(1, 0, 0, 0).fingerprint(), 11_065_496_452_857_880_982);
    }
}
