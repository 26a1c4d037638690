//! The seeded dataset and its ground truth.
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

/// The two providers the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimProvider {
    OpenAi,
    Anthropic,
}

impl SimProvider {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "openai" => Some(SimProvider::OpenAi),
            "anthropic" => Some(SimProvider::Anthropic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SimProvider::OpenAi => "openai",
            SimProvider::Anthropic => "anthropic",
        }
    }
}

/// A restated bill: every usage measure of (provider, org, day) is multiplied by
/// `factor` (rounded half-even to whole tokens) and costs are recomputed from the
/// scaled tokens. A later restatement of the same day replaces an earlier one
/// (factors apply to the original data, they do not compound).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restatement {
    pub provider: SimProvider,
    pub org: String,
    pub day: NaiveDate,
    pub factor: Decimal,
}

/// Ground truth for one UTC day and one normalized model. `cost` is the sum of
/// the cost records' USD amounts, each rounded half-even to 9 places.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthRow {
    pub day: NaiveDate,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_creation_tokens: i64,
    pub requests: i64,
    #[serde(with = "rust_decimal::serde::str")]
    pub cost: Decimal,
}

/// One record at the provider's finest grain. `dims` follow the endpoint's
/// dimension list (JSON values so that `null` and booleans stay what the
/// provider sends), `vals` its integer measures, `amount` the money of a cost
/// record (USD for OpenAI, cents for Anthropic; zero for usage).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Row {
    pub dims: Vec<Value>,
    pub vals: Vec<i64>,
    pub amount: Decimal,
}

pub(crate) const OA_COMPLETION_DIMS: &[&str] =
    &["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"];
pub(crate) const OA_COMPLETION_MEASURES: &[&str] = &[
    "input_tokens",
    "input_cached_tokens",
    "output_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "num_model_requests",
];
pub(crate) const OA_EMBEDDING_DIMS: &[&str] = &["project_id", "user_id", "api_key_id", "model"];
pub(crate) const OA_EMBEDDING_MEASURES: &[&str] = &["input_tokens", "num_model_requests"];
pub(crate) const OA_COST_DIMS: &[&str] = &["project_id", "line_item", "api_key_id"];

pub(crate) const AN_USAGE_DIMS: &[&str] = &["api_key_id", "workspace_id", "model", "service_tier", "context_window"];
pub(crate) const AN_USAGE_MEASURES: &[&str] = &[
    "uncached_input_tokens",
    "cache_creation.ephemeral_1h_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "server_tool_use.web_search_requests",
];
pub(crate) const AN_COST_DIMS: &[&str] = &[
    "workspace_id",
    "description",
    "cost_type",
    "token_type",
    "model",
    "service_tier",
    "context_window",
];

// Measure positions, named so the truth and cost code read clearly.
const OA_IN: usize = 0;
const OA_CACHED: usize = 1;
const OA_OUT: usize = 2;
const OA_REQ: usize = 5;
const OA_EMB_IN: usize = 0;
const OA_EMB_REQ: usize = 1;
const AN_UNCACHED: usize = 0;
const AN_1H: usize = 1;
const AN_5M: usize = 2;
const AN_READ: usize = 3;
const AN_OUT: usize = 4;
const AN_WEB: usize = 5;

/// Relative traffic per UTC hour of day (percent), so days look like days.
const DIURNAL: [i64; 24] = [
    30, 25, 20, 20, 25, 35, 50, 70, 90, 100, 100, 95, 90, 95, 100, 100, 95, 85, 70, 60, 50, 45, 40, 35,
];

struct OaStream {
    project: Option<usize>,
    key: Option<usize>,
    user: Option<usize>,
    model: &'static str,
    batch: bool,
    tier: &'static str,
    base: i64,
}

const fn oa(
    project: Option<usize>,
    key: Option<usize>,
    user: Option<usize>,
    model: &'static str,
    batch: bool,
    tier: &'static str,
    base: i64,
) -> OaStream {
    OaStream {
        project,
        key,
        user,
        model,
        batch,
        tier,
        base,
    }
}

const GPT4O: &str = "gpt-4o-2024-08-06";
const GPT4O_MINI: &str = "gpt-4o-mini-2024-07-18";
const O3_MINI: &str = "o3-mini-2025-01-31";
const EMBED_SMALL: &str = "text-embedding-3-small";

/// Completion streams; an org uses the first 6 to 8. The stream without project
/// and key models usage outside any API key (it comes back `null` even when
/// grouped, as OpenAI documents for the default project).
const OA_STREAMS: [OaStream; 8] = [
    oa(Some(0), Some(0), Some(0), GPT4O, false, "default", 60_000),
    oa(Some(0), Some(0), Some(0), GPT4O_MINI, false, "default", 150_000),
    oa(Some(1), Some(1), Some(1), GPT4O_MINI, false, "default", 220_000),
    oa(Some(1), Some(2), None, GPT4O_MINI, true, "default", 400_000),
    oa(Some(2), Some(3), Some(1), O3_MINI, false, "flex", 40_000),
    oa(None, None, Some(0), GPT4O_MINI, false, "default", 20_000),
    oa(Some(2), Some(3), Some(1), GPT4O, false, "priority", 30_000),
    oa(Some(1), Some(2), None, GPT4O, true, "default", 90_000),
];

const OA_EMBED_STREAMS: [OaStream; 2] = [
    oa(Some(0), Some(0), Some(0), EMBED_SMALL, false, "default", 300_000),
    oa(Some(1), Some(1), Some(1), EMBED_SMALL, false, "default", 120_000),
];

/// USD per million tokens: (input, output).
fn openai_price(model: &str) -> (Decimal, Decimal) {
    match model {
        GPT4O => (Decimal::new(250, 2), Decimal::new(1000, 2)),
        GPT4O_MINI => (Decimal::new(15, 2), Decimal::new(60, 2)),
        O3_MINI => (Decimal::new(110, 2), Decimal::new(440, 2)),
        _ => (Decimal::new(2, 2), Decimal::ZERO),
    }
}

struct AnModel {
    raw: &'static str,
    display: &'static str,
    /// USD per million tokens: uncached input, output, cache read, 5m write, 1h write.
    prices: [i64; 5],
    /// Scale of `prices` (number of decimal places).
    scale: u32,
}

const SONNET: usize = 0;
const HAIKU: usize = 1;
const OPUS: usize = 2;
const AN_MODELS: [AnModel; 3] = [
    AnModel {
        raw: "claude-sonnet-4-20250514",
        display: "Claude Sonnet 4",
        prices: [300, 1500, 30, 375, 600],
        scale: 2,
    },
    AnModel {
        raw: "claude-3-5-haiku-20241022",
        display: "Claude Haiku 3.5",
        prices: [80, 400, 8, 100, 160],
        scale: 2,
    },
    AnModel {
        raw: "claude-opus-4-1-20250805",
        display: "Claude Opus 4.1",
        prices: [1500, 7500, 150, 1875, 3000],
        scale: 2,
    },
];

/// Token types of the cost report, in the order of `AnModel::prices`, with the
/// usage measure each one prices and the label used in `description`.
const AN_TOKEN_TYPES: [(&str, usize, &str); 5] = [
    ("uncached_input_tokens", AN_UNCACHED, "Input Tokens"),
    ("output_tokens", AN_OUT, "Output Tokens"),
    ("cache_read_input_tokens", AN_READ, "Input Tokens (Cache Read)"),
    (
        "cache_creation.ephemeral_5m_input_tokens",
        AN_5M,
        "Input Tokens (5m Cache Write)",
    ),
    (
        "cache_creation.ephemeral_1h_input_tokens",
        AN_1H,
        "Input Tokens (1h Cache Write)",
    ),
];

struct AnStream {
    workspace: usize,
    key: Option<usize>,
    model: usize,
    tier: &'static str,
    context: &'static str,
    base: i64,
}

impl AnStream {
    /// Sonnet on the standard tier is the stream that uses 1h cache writes and
    /// web search, so both appear in usage and in the cost report.
    fn agentic(&self) -> bool {
        self.model == SONNET && self.tier == "standard"
    }
}

const fn an(
    workspace: usize,
    key: Option<usize>,
    model: usize,
    tier: &'static str,
    context: &'static str,
    base: i64,
) -> AnStream {
    AnStream {
        workspace,
        key,
        model,
        tier,
        context,
        base,
    }
}

/// Anthropic streams; an org uses the first 5 or 6. `key: None` is Workbench
/// usage (`api_key_id: null`); workspace 0 of `org-1` is the default workspace
/// (`workspace_id: null`).
const AN_STREAMS: [AnStream; 6] = [
    an(0, Some(0), SONNET, "standard", "0-200k", 120_000),
    an(0, Some(1), HAIKU, "standard", "0-200k", 300_000),
    an(1, Some(2), SONNET, "batch", "0-200k", 400_000),
    an(1, None, OPUS, "standard", "0-200k", 25_000),
    an(2, Some(3), SONNET, "standard", "200k-1M", 250_000),
    an(2, Some(3), HAIKU, "batch", "0-200k", 200_000),
];

/// Tokens of one (project, key, model) over a day, for OpenAI's cost records.
struct TokenSums {
    project: Value,
    key: Value,
    model: String,
    input: i64,
    output: i64,
}

/// The simulated world as of `now`: configuration, clock and restatements.
pub(crate) struct World<'a> {
    pub seed: u64,
    pub history_days: u32,
    pub now: i64,
    pub restatements: &'a [Restatement],
}

/// Per-(seed, provider, org) randomness and identities.
struct OrgDraw {
    base: u64,
}

impl OrgDraw {
    fn new(seed: u64, provider: SimProvider, org: &str) -> Self {
        let text = format!("{}\u{0}{}", provider.as_str(), org);
        OrgDraw {
            base: xxh3_64_with_seed(text.as_bytes(), seed),
        }
    }

    fn at(&self, parts: &[i64]) -> u64 {
        let mut bytes = Vec::with_capacity(parts.len() * 8);
        for part in parts {
            bytes.extend_from_slice(&part.to_le_bytes());
        }
        xxh3_64_with_seed(&bytes, self.base)
    }

    fn ident(&self, prefix: &str, kind: i64, index: usize, len: usize) -> String {
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
    fn rate(&self) -> Decimal {
        Decimal::new(100_000 - (self.at(&[-1]) % 4000) as i64, 5)
    }

    fn streams(&self, min: usize, spread: u64) -> usize {
        min + (self.at(&[-2]) % spread) as usize
    }
}

fn text(value: Option<String>) -> Value {
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

/// Diurnal and weekend-shaped scale for an hour, in percent.
fn traffic(hour: i64) -> i64 {
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
fn money(tokens: i64, price: Decimal, rate: Decimal, shift: u32) -> Decimal {
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

    fn factor(&self, provider: SimProvider, org: &str, hour: i64) -> Option<Decimal> {
        let day = day_of(hour);
        self.restatements
            .iter()
            .rev()
            .find(|r| r.provider == provider && r.org == org && r.day == day)
            .map(|r| r.factor)
    }

    fn restate(&self, provider: SimProvider, org: &str, hour: i64, mut rows: Vec<Row>) -> Vec<Row> {
        if let Some(factor) = self.factor(provider, org, hour) {
            for row in &mut rows {
                for v in &mut row.vals {
                    *v = scaled(*v, factor);
                }
            }
        }
        rows
    }

    fn oa_rows(&self, org: &str, hour: i64, embeddings: bool) -> Vec<Row> {
        if !self.has_data(hour) {
            return Vec::new();
        }
        let draw = OrgDraw::new(self.seed, SimProvider::OpenAi, org);
        let project = |i: Option<usize>| text(i.map(|i| draw.ident("proj_", 1, i, 24)));
        let key = |i: Option<usize>| text(i.map(|i| draw.ident("key_", 2, i, 16)));
        let user = |i: Option<usize>| text(i.map(|i| draw.ident("user-", 3, i, 24)));
        let (streams, tag): (&[OaStream], i64) = if embeddings {
            (&OA_EMBED_STREAMS, 100)
        } else {
            (&OA_STREAMS[..draw.streams(6, 3)], 0)
        };
        let weight = traffic(hour);
        let mut rows = Vec::new();
        for (i, s) in streams.iter().enumerate() {
            let r = |field: i64| draw.at(&[hour, tag + i as i64, field]);
            let roll = r(0) % 100;
            if roll >= 72 {
                continue; // absent this hour
            }
            let (input, cached, output, requests) = if roll < 3 {
                (0, 0, 0, 0) // an idle key that still reports a row
            } else {
                let input = s.base * weight / 100 * (50 + (r(1) % 100) as i64) / 100;
                let cached = if embeddings {
                    0
                } else {
                    input * (r(2) % 60) as i64 / 100
                };
                let out_pct = if s.model == O3_MINI { 30 } else { 5 };
                let output = if embeddings {
                    0
                } else {
                    input * (out_pct + (r(3) % 20) as i64) / 100
                };
                let requests = 1 + input / (1500 + (r(4) % 3000) as i64);
                (input, cached, output, requests)
            };
            let mut dims = vec![project(s.project), user(s.user), key(s.key), Value::from(s.model)];
            let vals = if embeddings {
                vec![input, requests]
            } else {
                dims.push(Value::Bool(s.batch));
                dims.push(Value::from(s.tier));
                vec![input, cached, output, 0, 0, requests]
            };
            rows.push(Row {
                dims,
                vals,
                amount: Decimal::ZERO,
            });
        }
        self.restate(SimProvider::OpenAi, org, hour, rows)
    }

    /// `/organization/usage/completions` rows of one hour (dims
    /// [`OA_COMPLETION_DIMS`], measures [`OA_COMPLETION_MEASURES`]).
    pub fn openai_completions(&self, org: &str, hour: i64) -> Vec<Row> {
        self.oa_rows(org, hour, false)
    }

    /// `/organization/usage/embeddings` rows of one hour.
    pub fn openai_embeddings(&self, org: &str, hour: i64) -> Vec<Row> {
        self.oa_rows(org, hour, true)
    }

    /// `/organization/costs` records of one day at full grain (project, line
    /// item, key): input and output tokens of completions and embeddings priced
    /// at the org's rate. `vals = [quantity]`, `amount` in USD.
    pub fn openai_costs(&self, org: &str, day: i64) -> Vec<Row> {
        let rate = OrgDraw::new(self.seed, SimProvider::OpenAi, org).rate();
        // (project, key, model) -> token sums
        let mut sums: BTreeMap<String, TokenSums> = BTreeMap::new();
        for hour in (day..day + DAY).step_by(HOUR as usize) {
            let completions = self.openai_completions(org, hour);
            let embeddings = self.openai_embeddings(org, hour);
            let tokens = completions
                .iter()
                .map(|r| (r, r.vals[OA_IN], r.vals[OA_OUT]))
                .chain(embeddings.iter().map(|r| (r, r.vals[OA_EMB_IN], 0)));
            for (row, input, output) in tokens {
                let key = Value::Array(vec![row.dims[0].clone(), row.dims[2].clone(), row.dims[3].clone()]);
                let e = sums.entry(key.to_string()).or_insert_with(|| TokenSums {
                    project: row.dims[0].clone(),
                    key: row.dims[2].clone(),
                    model: row.dims[3].as_str().unwrap_or_default().to_string(),
                    input: 0,
                    output: 0,
                });
                e.input += input;
                e.output += output;
            }
        }
        let mut out = Vec::new();
        for t in sums.into_values() {
            let (p_in, p_out) = openai_price(&t.model);
            for (kind, tokens, price) in [("input", t.input, p_in), ("output", t.output, p_out)] {
                if tokens == 0 {
                    continue;
                }
                out.push(Row {
                    dims: vec![
                        t.project.clone(),
                        Value::from(format!("{}, {kind}", t.model)),
                        t.key.clone(),
                    ],
                    vals: vec![tokens],
                    amount: money(tokens, price, rate, 6),
                });
            }
        }
        out
    }

    /// `/v1/organizations/usage_report/messages` rows of one hour (dims
    /// [`AN_USAGE_DIMS`], measures [`AN_USAGE_MEASURES`]).
    pub fn anthropic_usage(&self, org: &str, hour: i64) -> Vec<Row> {
        if !self.has_data(hour) {
            return Vec::new();
        }
        let draw = OrgDraw::new(self.seed, SimProvider::Anthropic, org);
        let weight = traffic(hour);
        let mut rows = Vec::new();
        for (i, s) in AN_STREAMS[..draw.streams(5, 2)].iter().enumerate() {
            let r = |field: i64| draw.at(&[hour, i as i64, field]);
            let roll = r(0) % 100;
            if roll >= 70 {
                continue;
            }
            let vals = if roll < 3 {
                vec![0; 6]
            } else {
                let total = s.base * weight / 100 * (50 + (r(1) % 100) as i64) / 100;
                let read = total * (r(2) % 50) as i64 / 100;
                let write_5m = total * (r(3) % 10) as i64 / 100;
                let write_1h = if s.agentic() {
                    total * (r(4) % 6) as i64 / 100
                } else {
                    0
                };
                let uncached = total - read - write_5m - write_1h;
                let output = total * (4 + (r(5) % 16) as i64) / 100;
                let web = if s.agentic() { (r(6) % 6) as i64 } else { 0 };
                vec![uncached, write_1h, write_5m, read, output, web]
            };
            rows.push(Row {
                dims: self.an_dims(&draw, org, s),
                vals,
                amount: Decimal::ZERO,
            });
        }
        self.restate(SimProvider::Anthropic, org, hour, rows)
    }

    fn an_workspace(&self, draw: &OrgDraw, org: &str, index: usize) -> Value {
        if org == "org-1" && index == 0 {
            Value::Null
        } else {
            Value::String(draw.ident("wrkspc_01", 4, index, 22))
        }
    }

    fn an_dims(&self, draw: &OrgDraw, org: &str, s: &AnStream) -> Vec<Value> {
        vec![
            text(s.key.map(|k| draw.ident("apikey_01", 5, k, 22))),
            self.an_workspace(draw, org, s.workspace),
            Value::from(AN_MODELS[s.model].raw),
            Value::from(s.tier),
            Value::from(s.context),
        ]
    }

    /// `/v1/organizations/cost_report` records of one day at full grain
    /// (workspace x description), `amount` in cents. Token costs are priced per
    /// (workspace, model, tier, context window, token type); batch is half
    /// price, long context doubles input and raises output by half; web search
    /// costs one cent per request.
    pub fn anthropic_costs(&self, org: &str, day: i64) -> Vec<Row> {
        let draw = OrgDraw::new(self.seed, SimProvider::Anthropic, org);
        let rate = draw.rate();
        // (workspace, model, tier, context) -> summed usage measures
        let mut sums: BTreeMap<String, (Vec<Value>, Vec<i64>)> = BTreeMap::new();
        let mut web: BTreeMap<String, (Value, i64)> = BTreeMap::new();
        for hour in (day..day + DAY).step_by(HOUR as usize) {
            for row in self.anthropic_usage(org, hour) {
                let k = Value::Array(row.dims[1..].to_vec()).to_string();
                let e = sums.entry(k).or_insert_with(|| (row.dims.clone(), vec![0; 6]));
                for (acc, v) in e.1.iter_mut().zip(&row.vals) {
                    *acc += v;
                }
                let w = web.entry(row.dims[1].to_string()).or_insert((row.dims[1].clone(), 0));
                w.1 += row.vals[AN_WEB];
            }
        }
        let mut out = Vec::new();
        for (dims, vals) in sums.into_values() {
            let raw = dims[2].as_str().unwrap_or_default();
            let Some(model) = AN_MODELS.iter().find(|m| m.raw == raw) else {
                continue;
            };
            let tier = dims[3].as_str().unwrap_or_default();
            let context = dims[4].as_str().unwrap_or_default();
            let batch = tier == "batch";
            let long = context != "0-200k";
            for (i, (token_type, measure, label)) in AN_TOKEN_TYPES.iter().enumerate() {
                let tokens = vals[*measure];
                if tokens == 0 {
                    continue;
                }
                let mut price = Decimal::new(model.prices[i], model.scale);
                if batch {
                    price *= Decimal::new(5, 1);
                }
                if long {
                    price *= if *measure == AN_OUT {
                        Decimal::new(15, 1)
                    } else {
                        Decimal::TWO
                    };
                }
                let description = format!(
                    "{}{}{} Usage - {}",
                    model.display,
                    if batch { " Batch" } else { "" },
                    if long { " Long Context" } else { "" },
                    label
                );
                out.push(Row {
                    dims: vec![
                        dims[1].clone(),
                        Value::from(description),
                        Value::from("tokens"),
                        Value::from(*token_type),
                        dims[2].clone(),
                        dims[3].clone(),
                        dims[4].clone(),
                    ],
                    vals: vec![tokens],
                    // cents = tokens * USD/MTok * 100 / 10^6
                    amount: money(tokens, price, rate, 4),
                });
            }
        }
        for (workspace, requests) in web.into_values() {
            if requests == 0 {
                continue;
            }
            out.push(Row {
                dims: vec![
                    workspace,
                    Value::from("Web Search Usage"),
                    Value::from("web_search"),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ],
                vals: vec![requests],
                amount: money(requests, Decimal::ONE, rate, 0),
            });
        }
        out
    }

    /// Ground truth per UTC day and normalized model over `[start, end)`.
    ///
    /// Usage counts every hour that starts in the window snapped outward to
    /// whole hours; cost counts the daily cost records of every day the window
    /// touches (snapped outward to whole days), each record at the finest cost
    /// grain (OpenAI: project, line item, key; Anthropic: workspace,
    /// description) rounded half-even to 9 places. Rows whose measures and cost
    /// are all zero are omitted.
    pub fn truth(&self, provider: SimProvider, org: &str, start: i64, end: i64) -> Vec<TruthRow> {
        let mut rows: BTreeMap<(NaiveDate, String), TruthRow> = BTreeMap::new();
        fn entry(rows: &mut BTreeMap<(NaiveDate, String), TruthRow>, day: NaiveDate, model: String) -> &mut TruthRow {
            rows.entry((day, model.clone())).or_insert_with(|| TruthRow {
                day,
                model,
                input_tokens: 0,
                output_tokens: 0,
                cached_input_tokens: 0,
                cache_creation_tokens: 0,
                requests: 0,
                cost: Decimal::ZERO,
            })
        }
        let model_of = |v: &Value| normalize_model(v.as_str().unwrap_or_default());
        let mut hour = floor(start, HOUR);
        while hour < end {
            let day = day_of(hour);
            match provider {
                SimProvider::OpenAi => {
                    for row in self.openai_completions(org, hour) {
                        let t = entry(&mut rows, day, model_of(&row.dims[3]));
                        t.input_tokens += row.vals[OA_IN];
                        t.cached_input_tokens += row.vals[OA_CACHED];
                        t.output_tokens += row.vals[OA_OUT];
                        t.requests += row.vals[OA_REQ];
                    }
                    for row in self.openai_embeddings(org, hour) {
                        let t = entry(&mut rows, day, model_of(&row.dims[3]));
                        t.input_tokens += row.vals[OA_EMB_IN];
                        t.requests += row.vals[OA_EMB_REQ];
                    }
                }
                SimProvider::Anthropic => {
                    for row in self.anthropic_usage(org, hour) {
                        let v = &row.vals;
                        let t = entry(&mut rows, day, model_of(&row.dims[2]));
                        t.input_tokens += v[AN_UNCACHED] + v[AN_READ] + v[AN_5M] + v[AN_1H];
                        t.cached_input_tokens += v[AN_READ];
                        t.cache_creation_tokens += v[AN_5M] + v[AN_1H];
                        t.output_tokens += v[AN_OUT];
                    }
                }
            }
            hour += HOUR;
        }
        let round = |d: Decimal| d.round_dp_with_strategy(9, RoundingStrategy::MidpointNearestEven);
        let mut day = floor(start, DAY);
        while day < end {
            let date = day_of(day);
            match provider {
                SimProvider::OpenAi => {
                    for row in self.openai_costs(org, day) {
                        let item = row.dims[1].as_str().unwrap_or_default();
                        let model = item.rsplit_once(", ").map(|(m, _)| m).unwrap_or(item);
                        entry(&mut rows, date, normalize_model(model)).cost += round(row.amount);
                    }
                }
                SimProvider::Anthropic => {
                    for row in self.anthropic_costs(org, day) {
                        let model = model_of(&row.dims[4]);
                        entry(&mut rows, date, model).cost += round(row.amount / Decimal::ONE_HUNDRED);
                    }
                }
            }
            day += DAY;
        }
        rows.into_values()
            .filter(|t| {
                t.input_tokens != 0
                    || t.output_tokens != 0
                    || t.cached_input_tokens != 0
                    || t.cache_creation_tokens != 0
                    || t.requests != 0
                    || !t.cost.is_zero()
            })
            .map(|mut t| {
                t.cost.rescale(9);
                t
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(now: i64) -> World<'static> {
        World {
            seed: 7,
            history_days: 10,
            now,
            restatements: &[],
        }
    }

    const NOW: i64 = 1_736_985_600 + 13 * HOUR + 17 * MINUTE; // 2025-01-16 13:17 UTC

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
    fn data_is_deterministic_and_bounded_by_history_and_now() {
        let w = world(NOW);
        let hour = floor(NOW, HOUR) - 5 * HOUR;
        assert_eq!(w.openai_completions("org-1", hour), w.openai_completions("org-1", hour));
        assert_ne!(w.openai_completions("org-1", hour), w.openai_completions("org-2", hour));
        // the current (incomplete) hour and the future are empty
        assert!(w.openai_completions("org-1", floor(NOW, HOUR)).is_empty());
        assert!(w.anthropic_usage("org-1", floor(NOW, HOUR)).is_empty());
        // before the history there is nothing; inside it there is data
        let first = floor(NOW, DAY) - 10 * DAY;
        assert!(w.openai_completions("org-1", first - HOUR).is_empty());
        let day_rows: usize = (0..24)
            .map(|h| w.openai_completions("org-1", first + h * HOUR).len())
            .sum();
        assert!(day_rows > 50, "{day_rows}");
        let other = World { seed: 8, ..world(NOW) };
        assert_ne!(w.anthropic_usage("org-1", hour), other.anthropic_usage("org-1", hour));
    }

    #[test]
    fn volume_stays_moderate() {
        let w = world(NOW);
        let start = floor(NOW, DAY) - 7 * DAY;
        let rows: usize = (0..7 * 24)
            .map(|h| {
                let hour = start + h * HOUR;
                w.openai_completions("org-1", hour).len() + w.openai_embeddings("org-1", hour).len()
            })
            .sum();
        assert!(rows > 500 && rows < 2000, "{rows}");
    }

    #[test]
    fn org_one_has_default_workspace_and_workbench_rows() {
        let w = world(NOW);
        let start = floor(NOW, DAY) - 2 * DAY;
        let rows: Vec<Row> = (0..24)
            .flat_map(|h| w.anthropic_usage("org-1", start + h * HOUR))
            .collect();
        assert!(rows.iter().any(|r| r.dims[1].is_null()));
        assert!(rows.iter().any(|r| r.dims[0].is_null()));
        let rows2: Vec<Row> = (0..24)
            .flat_map(|h| w.anthropic_usage("org-2", start + h * HOUR))
            .collect();
        assert!(rows2.iter().all(|r| !r.dims[1].is_null()));
    }

    #[test]
    fn costs_price_the_usage_tokens() {
        let w = world(NOW);
        let day = floor(NOW, DAY) - 3 * DAY;
        let usage_in: i64 = (0..24)
            .flat_map(|h| {
                let hour = day + h * HOUR;
                let c = w.openai_completions("org-2", hour).into_iter().map(|r| r.vals[OA_IN]);
                let e = w
                    .openai_embeddings("org-2", hour)
                    .into_iter()
                    .map(|r| r.vals[OA_EMB_IN]);
                c.chain(e).collect::<Vec<_>>()
            })
            .sum();
        let costs = w.openai_costs("org-2", day);
        let cost_in: i64 = costs
            .iter()
            .filter(|r| r.dims[1].as_str().unwrap().ends_with(", input"))
            .map(|r| r.vals[0])
            .sum();
        assert_eq!(usage_in, cost_in);
        assert!(
            costs.iter().any(|r| r.amount.scale() > 9),
            "some amounts need more than 9 places"
        );
    }

    #[test]
    fn restatement_scales_tokens_and_cost() {
        let day = floor(NOW, DAY) - 2 * DAY;
        let restated = [Restatement {
            provider: SimProvider::Anthropic,
            org: "org-1".into(),
            day: day_of(day),
            factor: Decimal::new(15, 1),
        }];
        let before = world(NOW).truth(SimProvider::Anthropic, "org-1", day, day + DAY);
        let w = World {
            restatements: &restated,
            ..world(NOW)
        };
        let after = w.truth(SimProvider::Anthropic, "org-1", day, day + DAY);
        let sum = |rows: &[TruthRow]| rows.iter().map(|r| r.input_tokens).sum::<i64>();
        let cost = |rows: &[TruthRow]| rows.iter().map(|r| r.cost).sum::<Decimal>();
        let ratio = Decimal::from(sum(&after)) / Decimal::from(sum(&before));
        assert!((ratio - Decimal::new(15, 1)).abs() < Decimal::new(1, 3), "{ratio}");
        let ratio = cost(&after) / cost(&before);
        assert!((ratio - Decimal::new(15, 1)).abs() < Decimal::new(1, 3), "{ratio}");
        // other days and providers are untouched
        let prev = World {
            restatements: &restated,
            ..world(NOW)
        }
        .truth(SimProvider::Anthropic, "org-1", day - DAY, day);
        assert_eq!(prev, world(NOW).truth(SimProvider::Anthropic, "org-1", day - DAY, day));
    }

    #[test]
    fn truth_has_web_search_cost_under_empty_model() {
        let day = floor(NOW, DAY) - 2 * DAY;
        let rows = world(NOW).truth(SimProvider::Anthropic, "org-1", day, day + DAY);
        let web = rows.iter().find(|r| r.model.is_empty()).expect("web search row");
        assert!(web.cost > Decimal::ZERO && web.input_tokens == 0);
        assert!(rows.iter().all(|r| r.requests == 0));
        assert!(rows
            .iter()
            .any(|r| r.model == "claude-sonnet-4" && r.cache_creation_tokens > 0));
        assert!(rows.iter().all(|r| r.cost.scale() == 9));
    }
}
