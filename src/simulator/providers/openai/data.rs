//! OpenAI's seeded data: usage streams per endpoint, daily cost records, and
//! the ground truth they add up to.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::Value;

use super::NAME;
use crate::simulator::data::{
    day_of, days_of, hours_of, money, round9, text, traffic, OrgDraw, Row, TruthBook, TruthRow, World, DAY, HOUR,
};

pub(crate) const COMPLETION_DIMS: &[&str] = &["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"];
pub(crate) const COMPLETION_MEASURES: &[&str] = &[
    "input_tokens",
    "input_cached_tokens",
    "output_tokens",
    "input_audio_tokens",
    "output_audio_tokens",
    "num_model_requests",
];
pub(crate) const EMBEDDING_DIMS: &[&str] = &["project_id", "user_id", "api_key_id", "model"];
pub(crate) const EMBEDDING_MEASURES: &[&str] = &["input_tokens", "num_model_requests"];
pub(crate) const FILE_SEARCH_DIMS: &[&str] = &["project_id", "user_id", "api_key_id", "vector_store_id"];
pub(crate) const FILE_SEARCH_MEASURES: &[&str] = &["num_requests"];
pub(crate) const WEB_SEARCH_DIMS: &[&str] = &["project_id", "user_id", "api_key_id", "model", "context_level"];
pub(crate) const WEB_SEARCH_MEASURES: &[&str] = &["num_model_requests", "num_requests"];
pub(crate) const COST_DIMS: &[&str] = &["project_id", "line_item", "api_key_id"];

// Measure positions, named so the truth and cost code read clearly.
pub(crate) const IN: usize = 0;
pub(crate) const CACHED: usize = 1;
pub(crate) const OUT: usize = 2;
pub(crate) const REQ: usize = 5;
pub(crate) const EMB_IN: usize = 0;
pub(crate) const EMB_REQ: usize = 1;
pub(crate) const FS_CALLS: usize = 0;
pub(crate) const WS_MODEL_REQ: usize = 0;
pub(crate) const WS_CALLS: usize = 1;

struct Stream {
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
) -> Stream {
    Stream {
        project,
        key,
        user,
        model,
        batch,
        tier,
        base,
    }
}

pub(crate) const GPT4O: &str = "gpt-4o-2024-08-06";
pub(crate) const GPT4O_MINI: &str = "gpt-4o-mini-2024-07-18";
const O3_MINI: &str = "o3-mini-2025-01-31";
const EMBED_SMALL: &str = "text-embedding-3-small";

/// Completion streams; an org uses the first 6 to 8. The stream without project
/// and key models usage outside any API key (it comes back `null` even when
/// grouped, as OpenAI documents for the default project).
const STREAMS: [Stream; 8] = [
    oa(Some(0), Some(0), Some(0), GPT4O, false, "default", 60_000),
    oa(Some(0), Some(0), Some(0), GPT4O_MINI, false, "default", 150_000),
    oa(Some(1), Some(1), Some(1), GPT4O_MINI, false, "default", 220_000),
    oa(Some(1), Some(2), None, GPT4O_MINI, true, "default", 400_000),
    oa(Some(2), Some(3), Some(1), O3_MINI, false, "flex", 40_000),
    oa(None, None, Some(0), GPT4O_MINI, false, "default", 20_000),
    oa(Some(2), Some(3), Some(1), GPT4O, false, "priority", 30_000),
    oa(Some(1), Some(2), None, GPT4O, true, "default", 90_000),
];

const EMBED_STREAMS: [Stream; 2] = [
    oa(Some(0), Some(0), Some(0), EMBED_SMALL, false, "default", 300_000),
    oa(Some(1), Some(1), Some(1), EMBED_SMALL, false, "default", 120_000),
];

/// A stream of tool calls. `model` and `detail` are the web search's model
/// and context level; a file search has no model and searches vector store
/// `store`.
struct ToolStream {
    project: Option<usize>,
    key: Option<usize>,
    user: Option<usize>,
    model: &'static str,
    detail: &'static str,
    store: usize,
    /// Calls at peak traffic.
    base: i64,
}

const fn tool(
    (project, key, user): (Option<usize>, Option<usize>, Option<usize>),
    model: &'static str,
    detail: &'static str,
    store: usize,
    base: i64,
) -> ToolStream {
    ToolStream {
        project,
        key,
        user,
        model,
        detail,
        store,
        base,
    }
}

const FILE_SEARCH_STREAMS: [ToolStream; 3] = [
    tool((Some(0), Some(0), Some(0)), "", "", 0, 40),
    tool((Some(1), Some(1), Some(1)), "", "", 1, 25),
    tool((Some(1), Some(2), None), "", "", 2, 12),
];

const WEB_SEARCH_STREAMS: [ToolStream; 3] = [
    tool((Some(0), Some(0), Some(0)), GPT4O, "medium", 0, 30),
    tool((Some(0), Some(0), Some(0)), GPT4O_MINI, "low", 0, 50),
    tool((Some(2), Some(3), Some(1)), GPT4O, "high", 0, 12),
];

/// USD per million tokens: (input, output).
fn price(model: &str) -> (Decimal, Decimal) {
    match model {
        GPT4O => (Decimal::new(250, 2), Decimal::new(1000, 2)),
        GPT4O_MINI => (Decimal::new(15, 2), Decimal::new(60, 2)),
        O3_MINI => (Decimal::new(110, 2), Decimal::new(440, 2)),
        _ => (Decimal::new(2, 2), Decimal::ZERO),
    }
}

/// The org's identities, shared by every endpoint so one key is one key.
struct Ids<'a>(&'a OrgDraw);

impl Ids<'_> {
    fn project(&self, i: Option<usize>) -> Value {
        text(i.map(|i| self.0.ident("proj_", 1, i, 24)))
    }
    fn key(&self, i: Option<usize>) -> Value {
        text(i.map(|i| self.0.ident("key_", 2, i, 16)))
    }
    fn user(&self, i: Option<usize>) -> Value {
        text(i.map(|i| self.0.ident("user-", 3, i, 24)))
    }
    fn vector_store(&self, i: usize) -> Value {
        Value::String(self.0.ident("vs_", 6, i, 24))
    }
}

/// The org's projects (index order) and keys with their project index, the
/// same ids the usage carries: what the projects and api_keys lists serve.
pub(crate) fn name_ids(world: &World<'_>, org: &str) -> (Vec<String>, Vec<(String, usize)>) {
    let draw = OrgDraw::new(world.seed, NAME, org);
    let ids = Ids(&draw);
    let mut projects: Vec<usize> = Vec::new();
    let mut keys: Vec<(usize, usize)> = Vec::new();
    for s in &STREAMS {
        if let (Some(p), Some(k)) = (s.project, s.key) {
            if !projects.contains(&p) {
                projects.push(p);
            }
            if !keys.iter().any(|(key, _)| *key == k) {
                keys.push((k, p));
            }
        }
    }
    let text = |v: Value| v.as_str().unwrap_or_default().to_string();
    (
        projects.iter().map(|p| text(ids.project(Some(*p)))).collect(),
        keys.iter().map(|(k, p)| (text(ids.key(Some(*k))), *p)).collect(),
    )
}

fn token_rows(world: &World<'_>, org: &str, hour: i64, embeddings: bool) -> Vec<Row> {
    if !world.has_data(hour) {
        return Vec::new();
    }
    let draw = OrgDraw::new(world.seed, NAME, org);
    let ids = Ids(&draw);
    let (streams, tag): (&[Stream], i64) = if embeddings {
        (&EMBED_STREAMS, 100)
    } else {
        (&STREAMS[..draw.streams(6, 3)], 0)
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
        let mut dims = vec![
            ids.project(s.project),
            ids.user(s.user),
            ids.key(s.key),
            Value::from(s.model),
        ];
        let vals = if embeddings {
            vec![input, requests]
        } else {
            dims.push(Value::Bool(s.batch));
            dims.push(Value::from(s.tier));
            vec![input, cached, output, 0, 0, requests]
        };
        rows.push(Row::usage(dims, vals));
    }
    world.restate(NAME, org, hour, rows)
}

/// `/organization/usage/completions` rows of one hour (dims
/// [`COMPLETION_DIMS`], measures [`COMPLETION_MEASURES`]).
pub(crate) fn completions(world: &World<'_>, org: &str, hour: i64) -> Vec<Row> {
    token_rows(world, org, hour, false)
}

/// `/organization/usage/embeddings` rows of one hour.
pub(crate) fn embeddings(world: &World<'_>, org: &str, hour: i64) -> Vec<Row> {
    token_rows(world, org, hour, true)
}

/// Calls at peak scaled by the hour's traffic and a draw; absent in some hours.
fn calls(draw: &OrgDraw, hour: i64, tag: i64, base: i64) -> Option<(i64, u64)> {
    let r = |field: i64| draw.at(&[hour, tag, field]);
    if r(0) % 100 >= 65 {
        return None;
    }
    let calls = base * traffic(hour) * (50 + (r(1) % 100) as i64) / 10_000;
    Some((calls, r(2)))
}

/// `/organization/usage/file_search_calls` rows of one hour (dims
/// [`FILE_SEARCH_DIMS`], measures [`FILE_SEARCH_MEASURES`]).
pub(crate) fn file_search_calls(world: &World<'_>, org: &str, hour: i64) -> Vec<Row> {
    if !world.has_data(hour) {
        return Vec::new();
    }
    let draw = OrgDraw::new(world.seed, NAME, org);
    let ids = Ids(&draw);
    let rows = FILE_SEARCH_STREAMS
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let (calls, _) = calls(&draw, hour, 200 + i as i64, s.base)?;
            let dims = vec![
                ids.project(s.project),
                ids.user(s.user),
                ids.key(s.key),
                ids.vector_store(s.store),
            ];
            Some(Row::usage(dims, vec![calls]))
        })
        .collect();
    world.restate(NAME, org, hour, rows)
}

/// `/organization/usage/web_search_calls` rows of one hour (dims
/// [`WEB_SEARCH_DIMS`], measures [`WEB_SEARCH_MEASURES`]): every model
/// request behind the searches made one or more of them.
pub(crate) fn web_search_calls(world: &World<'_>, org: &str, hour: i64) -> Vec<Row> {
    if !world.has_data(hour) {
        return Vec::new();
    }
    let draw = OrgDraw::new(world.seed, NAME, org);
    let ids = Ids(&draw);
    let rows = WEB_SEARCH_STREAMS
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let (calls, r) = calls(&draw, hour, 300 + i as i64, s.base)?;
            let model_requests = (calls * (40 + (r % 50) as i64) / 100).min(calls);
            let dims = vec![
                ids.project(s.project),
                ids.user(s.user),
                ids.key(s.key),
                Value::from(s.model),
                Value::from(s.detail),
            ];
            Some(Row::usage(dims, vec![model_requests, calls]))
        })
        .collect();
    world.restate(NAME, org, hour, rows)
}

/// Tokens of one (project, key, model) over a day.
struct TokenSums {
    project: Value,
    key: Value,
    model: String,
    input: i64,
    output: i64,
}

/// `/organization/costs` records of one day at full grain (project, line
/// item, key): input and output tokens of completions and embeddings priced
/// at the org's rate. `vals = [quantity]`, `amount` in USD.
pub(crate) fn costs(world: &World<'_>, org: &str, day: i64) -> Vec<Row> {
    let rate = OrgDraw::new(world.seed, NAME, org).rate();
    // (project, key, model) -> token sums
    let mut sums: BTreeMap<String, TokenSums> = BTreeMap::new();
    for hour in (day..day + DAY).step_by(HOUR as usize) {
        let completions = completions(world, org, hour);
        let embeddings = embeddings(world, org, hour);
        let tokens = completions
            .iter()
            .map(|r| (r, r.vals[IN], r.vals[OUT]))
            .chain(embeddings.iter().map(|r| (r, r.vals[EMB_IN], 0)));
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
        let (p_in, p_out) = price(&t.model);
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
                list: money(tokens, price, Decimal::ONE, 6),
            });
        }
    }
    out
}

/// The quantity unit the costs endpoint reports (`quantity_unit`).
pub(crate) const COST_UNIT: &str = "tokens";
/// The unit tool-call counts are stored in (the adapter's choice).
pub(crate) const CALLS_UNIT: &str = "calls";

/// Ground truth per (UTC day, normalized model, unit) over `[start, end)`.
///
/// Usage counts every hour that starts in the window (snapped outward to
/// whole hours):
/// - completions and embeddings: tokens (`input_tokens` holds cache reads)
///   and model requests, unit "";
/// - web-search calls: calls as quantity in unit "calls" under the model,
///   and the model requests behind them as `requests` (they are model
///   requests like any other, so they add to the model's requests per day);
/// - file-search calls: calls in unit "calls" under model "" (the endpoint
///   has no model).
///
/// Cost counts the daily cost records of every day the window touches
/// (snapped outward to whole days), each record (project, line item, key)
/// rounded half-even to 9 places, under unit "tokens" with the billed tokens
/// as quantity.
pub(crate) fn truth(world: &World<'_>, org: &str, start: i64, end: i64) -> Vec<TruthRow> {
    let mut book = TruthBook::default();
    let model_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for hour in hours_of(start, end) {
        let day = day_of(hour);
        for row in completions(world, org, hour) {
            let t = book.entry(day, &model_of(&row.dims[3]), "");
            t.input_tokens += row.vals[IN];
            t.cached_input_tokens += row.vals[CACHED];
            t.output_tokens += row.vals[OUT];
            t.requests += row.vals[REQ];
        }
        for row in embeddings(world, org, hour) {
            let t = book.entry(day, &model_of(&row.dims[3]), "");
            t.input_tokens += row.vals[EMB_IN];
            t.requests += row.vals[EMB_REQ];
        }
        for row in web_search_calls(world, org, hour) {
            let t = book.entry(day, &model_of(&row.dims[3]), CALLS_UNIT);
            t.quantity += Decimal::from(row.vals[WS_CALLS]);
            t.requests += row.vals[WS_MODEL_REQ];
        }
        for row in file_search_calls(world, org, hour) {
            book.entry(day, "", CALLS_UNIT).quantity += Decimal::from(row.vals[FS_CALLS]);
        }
    }
    for day in days_of(start, end) {
        let date = day_of(day);
        for row in costs(world, org, day) {
            let item = row.dims[1].as_str().unwrap_or_default();
            let model = item.rsplit_once(", ").map(|(m, _)| m).unwrap_or(item);
            let t = book.entry(date, model, COST_UNIT);
            t.cost += round9(row.amount);
            t.quantity += Decimal::from(row.vals[0]);
        }
    }
    book.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::data::floor;
    use crate::simulator::data::tests::{world, NOW};

    #[test]
    fn data_is_deterministic_and_bounded_by_history_and_now() {
        let w = world(NOW);
        let hour = floor(NOW, HOUR) - 5 * HOUR;
        assert_eq!(completions(&w, "org-1", hour), completions(&w, "org-1", hour));
        assert_ne!(completions(&w, "org-1", hour), completions(&w, "org-2", hour));
        // the current (incomplete) hour and the future are empty
        assert!(completions(&w, "org-1", floor(NOW, HOUR)).is_empty());
        assert!(web_search_calls(&w, "org-1", floor(NOW, HOUR)).is_empty());
        // before the history there is nothing; inside it there is data
        let first = floor(NOW, DAY) - 10 * DAY;
        assert!(completions(&w, "org-1", first - HOUR).is_empty());
        let day_rows: usize = (0..24).map(|h| completions(&w, "org-1", first + h * HOUR).len()).sum();
        assert!(day_rows > 50, "{day_rows}");
    }

    #[test]
    fn volume_stays_moderate() {
        let w = world(NOW);
        let start = floor(NOW, DAY) - 7 * DAY;
        let rows: usize = (0..7 * 24)
            .map(|h| {
                let hour = start + h * HOUR;
                completions(&w, "org-1", hour).len() + embeddings(&w, "org-1", hour).len()
            })
            .sum();
        assert!(rows > 500 && rows < 2000, "{rows}");
    }

    #[test]
    fn tool_calls_have_calls_and_fewer_model_requests() {
        let w = world(NOW);
        let start = floor(NOW, DAY) - 2 * DAY;
        let web: Vec<Row> = (0..24)
            .flat_map(|h| web_search_calls(&w, "org-1", start + h * HOUR))
            .collect();
        let files: Vec<Row> = (0..24)
            .flat_map(|h| file_search_calls(&w, "org-1", start + h * HOUR))
            .collect();
        assert!(web.len() > 10 && files.len() > 10, "{} {}", web.len(), files.len());
        assert!(web.iter().all(|r| r.vals[WS_MODEL_REQ] <= r.vals[WS_CALLS]));
        assert!(web.iter().any(|r| r.vals[WS_MODEL_REQ] > 0));
        assert!(files.iter().any(|r| r.dims[1].is_null()), "a key without a user");
    }

    #[test]
    fn costs_price_the_usage_tokens() {
        let w = world(NOW);
        let day = floor(NOW, DAY) - 3 * DAY;
        let usage_in: i64 = (0..24)
            .flat_map(|h| {
                let hour = day + h * HOUR;
                let c = completions(&w, "org-2", hour).into_iter().map(|r| r.vals[IN]);
                let e = embeddings(&w, "org-2", hour).into_iter().map(|r| r.vals[EMB_IN]);
                c.chain(e).collect::<Vec<_>>()
            })
            .sum();
        let costs = costs(&w, "org-2", day);
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
        assert!(costs.iter().all(|r| r.amount <= r.list));
    }

    #[test]
    fn truth_splits_units_and_counts_web_search_model_requests() {
        let day = floor(NOW, DAY) - 2 * DAY;
        let rows = truth(&world(NOW), "org-1", day, day + DAY);
        let of = |model: &str, unit: &str| rows.iter().find(|r| r.model == model && r.unit == unit);
        let files = of("", CALLS_UNIT).expect("file search calls under no model");
        assert!(files.quantity > Decimal::ZERO && files.requests == 0);
        let web = of("gpt-4o", CALLS_UNIT).expect("web search calls of gpt-4o");
        assert!(web.quantity > Decimal::ZERO && web.requests > 0 && web.input_tokens == 0);
        let billed = of("gpt-4o", COST_UNIT).expect("gpt-4o costs");
        assert!(billed.cost > Decimal::ZERO && billed.quantity > Decimal::ZERO);
        assert!(of("gpt-4o", "").is_some_and(|t| t.input_tokens > 0 && t.cost.is_zero()));
    }
}
