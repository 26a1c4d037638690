//! Anthropic's seeded data: hourly message usage, daily cost records (at the
//! grain both the legacy cost report and the analytics cost endpoint can
//! reach), and the ground truth they add up to.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde_json::Value;

use super::NAME;
use crate::simulator::data::{
    day_of, days_of, hours_of, money, round9, text, traffic, OrgDraw, Row, TruthBook, TruthRow, World, DAY, HOUR,
};

/// Dimensions of a usage row. The legacy report serves the first five;
/// the analytics API also `inference_geo`.
pub(crate) const USAGE_DIMS: &[&str] = &[
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
];
/// Measures of a usage row (nesting as `parent.child`). The legacy report
/// serves the first six; the analytics API also `requests`.
pub(crate) const USAGE_MEASURES: &[&str] = &[
    "uncached_input_tokens",
    "cache_creation.ephemeral_1h_input_tokens",
    "cache_creation.ephemeral_5m_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "server_tool_use.web_search_requests",
    "requests",
];
/// Dimensions of a cost record. The legacy report serves the first seven
/// (`description` stands for cost type, token type, model, tier and context
/// window at once); the analytics API all but `description`.
pub(crate) const COST_DIMS: &[&str] = &[
    "workspace_id",
    "description",
    "cost_type",
    "token_type",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
];

// Measure positions.
pub(crate) const UNCACHED: usize = 0;
pub(crate) const W1H: usize = 1;
pub(crate) const W5M: usize = 2;
pub(crate) const READ: usize = 3;
pub(crate) const OUT: usize = 4;
pub(crate) const WEB: usize = 5;
pub(crate) const REQ: usize = 6;

struct Model {
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
const MODELS: [Model; 3] = [
    Model {
        raw: "claude-sonnet-4-20250514",
        display: "Claude Sonnet 4",
        prices: [300, 1500, 30, 375, 600],
        scale: 2,
    },
    Model {
        raw: "claude-3-5-haiku-20241022",
        display: "Claude Haiku 3.5",
        prices: [80, 400, 8, 100, 160],
        scale: 2,
    },
    Model {
        raw: "claude-opus-4-1-20250805",
        display: "Claude Opus 4.1",
        prices: [1500, 7500, 150, 1875, 3000],
        scale: 2,
    },
];

/// Token types of the cost report, in the order of `Model::prices`, with the
/// usage measure each one prices and the label used in `description`.
const TOKEN_TYPES: [(&str, usize, &str); 5] = [
    ("uncached_input_tokens", UNCACHED, "Input Tokens"),
    ("output_tokens", OUT, "Output Tokens"),
    ("cache_read_input_tokens", READ, "Input Tokens (Cache Read)"),
    (
        "cache_creation.ephemeral_5m_input_tokens",
        W5M,
        "Input Tokens (5m Cache Write)",
    ),
    (
        "cache_creation.ephemeral_1h_input_tokens",
        W1H,
        "Input Tokens (1h Cache Write)",
    ),
];

/// Where each workspace's requests run (`inference_geo`).
const WORKSPACE_GEO: [&str; 3] = ["global", "global", "us"];

struct Stream {
    workspace: usize,
    key: Option<usize>,
    model: usize,
    tier: &'static str,
    context: &'static str,
    base: i64,
}

impl Stream {
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
) -> Stream {
    Stream {
        workspace,
        key,
        model,
        tier,
        context,
        base,
    }
}

/// Streams; an org uses the first 5 or 6. `key: None` is Workbench usage
/// (`api_key_id: null`); workspace 0 of `org-1` is the default workspace
/// (`workspace_id: null`).
const STREAMS: [Stream; 6] = [
    an(0, Some(0), SONNET, "standard", "0-200k", 120_000),
    an(0, Some(1), HAIKU, "standard", "0-200k", 300_000),
    an(1, Some(2), SONNET, "batch", "0-200k", 400_000),
    an(1, None, OPUS, "standard", "0-200k", 25_000),
    an(2, Some(3), SONNET, "standard", "200k-1M", 250_000),
    an(2, Some(3), HAIKU, "batch", "0-200k", 200_000),
];

fn workspace(draw: &OrgDraw, org: &str, index: usize) -> Value {
    if org == "org-1" && index == 0 {
        Value::Null
    } else {
        Value::String(draw.ident("wrkspc_01", 4, index, 22))
    }
}

/// The org's workspaces `(index, id)` (`None` = the default workspace) and
/// keys `(id, masked hint, workspace index)`, the same ids the usage
/// carries: what the workspaces and api_keys lists serve.
#[allow(clippy::type_complexity)]
pub(crate) fn name_ids(world: &World<'_>, org: &str) -> (Vec<(usize, Option<String>)>, Vec<(String, String, usize)>) {
    let draw = OrgDraw::new(world.seed, NAME, org);
    let mut workspaces: Vec<(usize, Option<String>)> = Vec::new();
    let mut keys: Vec<(String, String, usize)> = Vec::new();
    for s in &STREAMS {
        if !workspaces.iter().any(|(w, _)| *w == s.workspace) {
            workspaces.push((
                s.workspace,
                workspace(&draw, org, s.workspace).as_str().map(String::from),
            ));
        }
        if let Some(k) = s.key {
            let id = draw.ident("apikey_01", 5, k, 22);
            if !keys.iter().any(|(key, _, _)| *key == id) {
                let secret = draw.ident("", 10, k, 7);
                keys.push((
                    id,
                    format!("sk-ant-api03-{}...{}", &secret[..3], &secret[3..]),
                    s.workspace,
                ));
            }
        }
    }
    (workspaces, keys)
}

fn dims(draw: &OrgDraw, org: &str, s: &Stream) -> Vec<Value> {
    vec![
        text(s.key.map(|k| draw.ident("apikey_01", 5, k, 22))),
        workspace(draw, org, s.workspace),
        Value::from(MODELS[s.model].raw),
        Value::from(s.tier),
        Value::from(s.context),
        Value::from(WORKSPACE_GEO[s.workspace]),
    ]
}

/// Message usage of one hour at full grain (dims [`USAGE_DIMS`], measures
/// [`USAGE_MEASURES`]).
pub(crate) fn usage(world: &World<'_>, org: &str, hour: i64) -> Vec<Row> {
    if !world.has_data(hour) {
        return Vec::new();
    }
    let draw = OrgDraw::new(world.seed, NAME, org);
    let weight = traffic(hour);
    let mut rows = Vec::new();
    for (i, s) in STREAMS[..draw.streams(5, 2)].iter().enumerate() {
        let r = |field: i64| draw.at(&[hour, i as i64, field]);
        let roll = r(0) % 100;
        if roll >= 70 {
            continue;
        }
        let vals = if roll < 3 {
            vec![0; USAGE_MEASURES.len()]
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
            let requests = 1 + total / (2500 + (r(7) % 3000) as i64);
            vec![uncached, write_1h, write_5m, read, output, web, requests]
        };
        rows.push(Row::usage(dims(&draw, org, s), vals));
    }
    world.restate(NAME, org, hour, rows)
}

/// Cost records of one day at full grain (dims [`COST_DIMS`]): `vals =
/// [tokens or searches, requests]`, `amount` billed cents at the org's rate,
/// `list` cents at list price. Token costs are priced per (workspace, model,
/// tier, context window, token type); batch is half price, long context
/// doubles input and raises output by half; web search costs one cent per
/// request. A group's request count sits on its first token record, so any
/// grouping without token type adds up to the usage's requests.
pub(crate) fn costs(world: &World<'_>, org: &str, day: i64) -> Vec<Row> {
    let draw = OrgDraw::new(world.seed, NAME, org);
    let rate = draw.rate();
    // (workspace, model, tier, context, geo) -> summed usage measures
    let mut sums: BTreeMap<String, (Vec<Value>, Vec<i64>)> = BTreeMap::new();
    let mut web: BTreeMap<String, (Value, Value, i64)> = BTreeMap::new();
    for hour in (day..day + DAY).step_by(HOUR as usize) {
        for row in usage(world, org, hour) {
            let k = Value::Array(row.dims[1..].to_vec()).to_string();
            let e = sums
                .entry(k)
                .or_insert_with(|| (row.dims.clone(), vec![0; USAGE_MEASURES.len()]));
            for (acc, v) in e.1.iter_mut().zip(&row.vals) {
                *acc += v;
            }
            let w = web
                .entry(row.dims[1].to_string())
                .or_insert((row.dims[1].clone(), row.dims[5].clone(), 0));
            w.2 += row.vals[WEB];
        }
    }
    let mut out = Vec::new();
    for (dims, vals) in sums.into_values() {
        let raw = dims[2].as_str().unwrap_or_default();
        let Some(model) = MODELS.iter().find(|m| m.raw == raw) else {
            continue;
        };
        let tier = dims[3].as_str().unwrap_or_default();
        let context = dims[4].as_str().unwrap_or_default();
        let batch = tier == "batch";
        let long = context != "0-200k";
        let mut requests = vals[REQ];
        for (i, (token_type, measure, label)) in TOKEN_TYPES.iter().enumerate() {
            let tokens = vals[*measure];
            if tokens == 0 {
                continue;
            }
            let mut price = Decimal::new(model.prices[i], model.scale);
            if batch {
                price *= Decimal::new(5, 1);
            }
            if long {
                price *= if *measure == OUT {
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
                    dims[5].clone(),
                ],
                vals: vec![tokens, std::mem::take(&mut requests)],
                // cents = tokens * USD/MTok * 100 / 10^6
                amount: money(tokens, price, rate, 4),
                list: money(tokens, price, Decimal::ONE, 4),
            });
        }
    }
    for (workspace, geo, searches) in web.into_values() {
        if searches == 0 {
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
                geo,
            ],
            vals: vec![searches, 0],
            amount: money(searches, Decimal::ONE, rate, 0),
            list: Decimal::from(searches),
        });
    }
    out
}

/// Ground truth per (UTC day, normalized model, unit) over `[start, end)` for
/// an account reading the legacy reports (`analytics = false`) or the
/// analytics API.
///
/// Usage counts every hour that starts in the window (snapped outward to
/// whole hours): tokens under unit "" (`input_tokens` counts all input,
/// cache reads and writes included), web searches as quantity in unit
/// "requests" under the model that made them. Requests: the legacy report
/// has none (0); the analytics API reports them per usage row.
///
/// Cost counts the daily cost records of every day the window touches
/// (snapped outward to whole days), each record at the finest cost grain
/// converted to USD (cents / 100) and rounded half-even to 9 places, under
/// unit ""; non-model costs (web search) are under model "". Both APIs bill
/// the same post-discount amounts at the same grain.
pub(crate) fn truth(world: &World<'_>, org: &str, start: i64, end: i64, analytics: bool) -> Vec<TruthRow> {
    let mut book = TruthBook::default();
    let model_of = |v: &Value| v.as_str().unwrap_or_default().to_string();
    for hour in hours_of(start, end) {
        let day = day_of(hour);
        for row in usage(world, org, hour) {
            let v = &row.vals;
            let model = model_of(&row.dims[2]);
            let t = book.entry(day, &model, "");
            t.input_tokens += v[UNCACHED] + v[READ] + v[W5M] + v[W1H];
            t.cached_input_tokens += v[READ];
            t.cache_creation_tokens += v[W5M] + v[W1H];
            t.output_tokens += v[OUT];
            if analytics {
                t.requests += v[REQ];
            }
            book.entry(day, &model, "requests").quantity += Decimal::from(v[WEB]);
        }
    }
    for day in days_of(start, end) {
        let date = day_of(day);
        for row in costs(world, org, day) {
            let model = model_of(&row.dims[4]);
            book.entry(date, &model, "").cost += round9(row.amount / Decimal::ONE_HUNDRED);
        }
    }
    book.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::data::tests::{world, NOW};
    use crate::simulator::data::{floor, Restatement};

    #[test]
    fn data_is_deterministic_and_seeded() {
        let w = world(NOW);
        let hour = floor(NOW, HOUR) - 5 * HOUR;
        assert_eq!(usage(&w, "org-1", hour), usage(&w, "org-1", hour));
        assert!(usage(&w, "org-1", floor(NOW, HOUR)).is_empty());
        let other = World { seed: 8, ..world(NOW) };
        assert_ne!(usage(&w, "org-1", hour), usage(&other, "org-1", hour));
    }

    #[test]
    fn org_one_has_default_workspace_and_workbench_rows() {
        let w = world(NOW);
        let start = floor(NOW, DAY) - 2 * DAY;
        let rows: Vec<Row> = (0..24).flat_map(|h| usage(&w, "org-1", start + h * HOUR)).collect();
        assert!(rows.iter().any(|r| r.dims[1].is_null()));
        assert!(rows.iter().any(|r| r.dims[0].is_null()));
        let rows2: Vec<Row> = (0..24).flat_map(|h| usage(&w, "org-2", start + h * HOUR)).collect();
        assert!(rows2.iter().all(|r| !r.dims[1].is_null()));
        assert!(rows.iter().all(|r| r.vals[REQ] > 0 || r.vals.iter().all(|v| *v == 0)));
    }

    #[test]
    fn cost_requests_and_list_prices_follow_the_usage() {
        let w = world(NOW);
        let day = floor(NOW, DAY) - 3 * DAY;
        let used: i64 = (0..24)
            .flat_map(|h| usage(&w, "org-2", day + h * HOUR))
            .map(|r| r.vals[REQ])
            .sum();
        let costs = costs(&w, "org-2", day);
        assert_eq!(costs.iter().map(|r| r.vals[1]).sum::<i64>(), used);
        assert!(costs.iter().all(|r| r.amount <= r.list && r.amount > Decimal::ZERO));
        assert!(costs.iter().any(|r| r.amount < r.list), "the org has a discount");
    }

    #[test]
    fn restatement_scales_tokens_and_cost() {
        let day = floor(NOW, DAY) - 2 * DAY;
        let restated = [Restatement {
            provider: NAME.to_string(),
            org: "org-1".into(),
            day: day_of(day),
            factor: Decimal::new(15, 1),
        }];
        let before = truth(&world(NOW), "org-1", day, day + DAY, false);
        let w = World {
            restatements: &restated,
            ..world(NOW)
        };
        let after = truth(&w, "org-1", day, day + DAY, false);
        let sum = |rows: &[TruthRow]| rows.iter().map(|r| r.input_tokens).sum::<i64>();
        let cost = |rows: &[TruthRow]| rows.iter().map(|r| r.cost).sum::<Decimal>();
        let ratio = Decimal::from(sum(&after)) / Decimal::from(sum(&before));
        assert!((ratio - Decimal::new(15, 1)).abs() < Decimal::new(1, 3), "{ratio}");
        let ratio = cost(&after) / cost(&before);
        assert!((ratio - Decimal::new(15, 1)).abs() < Decimal::new(1, 3), "{ratio}");
        // other days are untouched
        let prev = truth(&w, "org-1", day - DAY, day, false);
        assert_eq!(prev, truth(&world(NOW), "org-1", day - DAY, day, false));
    }

    #[test]
    fn truth_has_web_search_cost_under_empty_model_and_requests_only_in_analytics() {
        let day = floor(NOW, DAY) - 2 * DAY;
        let legacy = truth(&world(NOW), "org-1", day, day + DAY, false);
        let web = legacy.iter().find(|r| r.model.is_empty()).expect("web search row");
        assert!(web.cost > Decimal::ZERO && web.input_tokens == 0);
        assert!(legacy.iter().all(|r| r.requests == 0));
        assert!(legacy
            .iter()
            .any(|r| r.model == "claude-sonnet-4" && r.unit == "requests" && r.quantity > Decimal::ZERO));
        assert!(legacy
            .iter()
            .any(|r| r.model == "claude-sonnet-4" && r.cache_creation_tokens > 0));
        assert!(legacy.iter().all(|r| r.cost.scale() == 9));
        let analytics = truth(&world(NOW), "org-1", day, day + DAY, true);
        assert!(analytics.iter().any(|r| r.requests > 0));
        let without_requests: Vec<TruthRow> = analytics
            .into_iter()
            .map(|mut r| {
                r.requests = 0;
                r
            })
            .collect();
        assert_eq!(without_requests, legacy, "only the requests differ");
    }
}
