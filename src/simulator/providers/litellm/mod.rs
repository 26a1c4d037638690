//! LiteLLM proxy: `GET /user/daily/activity` as current proxies serve it.
//!
//! The proxy pages its daily spend rows (one per date x key x model here),
//! sorted by date descending with a stable tiebreaker, `page_size` rows a
//! page (default 50, 1..=1000), and then groups each page's rows by date, so
//! a date is cut across pages. `start_date`/`end_date` are required UTC dates,
//! `end_date` inclusive. `metadata.total_*` are totals of the page only.
//!
//! Auth: `Authorization: Bearer <litellm_api_key(org)>`; anything else is the
//! proxy's 401 `auth_error`. Spend is the proxy's price-map estimate with long
//! decimal tails.

use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{json, Map, Number, Value};

use super::{SimRequest, SimulatedProvider, TruthOptions};
use crate::simulator::data::{
    day_of, days_of, floor, money, object, round9, traffic, OrgDraw, Row, TruthBook, TruthRow, World, DAY, HOUR,
};
use crate::simulator::litellm_api_key;
use crate::simulator::query::Params;
use crate::simulator::server::Reply;

pub(crate) const NAME: &str = "litellm";

pub(crate) struct LiteLlm;

/// (key index, model, team, USD per million input/output, base tokens).
struct Stream {
    key: usize,
    model: &'static str,
    team: Option<&'static str>,
    price: (i64, i64),
    base: i64,
}

const STREAMS: [Stream; 6] = [
    Stream {
        key: 0,
        model: "gpt-4o-mini",
        team: Some("team-ml"),
        price: (15, 60),
        base: 800_000,
    },
    Stream {
        key: 0,
        model: "claude-sonnet-4-20250514",
        team: Some("team-ml"),
        price: (300, 1500),
        base: 300_000,
    },
    Stream {
        key: 1,
        model: "gpt-4o-mini",
        team: Some("team-web"),
        price: (15, 60),
        base: 500_000,
    },
    Stream {
        key: 1,
        model: "text-embedding-3-small",
        team: Some("team-web"),
        price: (2, 0),
        base: 2_000_000,
    },
    Stream {
        key: 2,
        model: "claude-sonnet-4-20250514",
        team: None,
        price: (300, 1500),
        base: 150_000,
    },
    Stream {
        key: 2,
        model: "gpt-4o",
        team: None,
        price: (250, 1000),
        base: 90_000,
    },
];

/// One day's rows: `vals = [prompt (all input), cache reads, completion,
/// requests]`, `dims = [stream index]`, `amount` = spend.
fn rows(world: &World<'_>, org: &str, day: i64) -> Vec<(usize, Row)> {
    if !world.has_data(day) || day + DAY > world.now {
        return Vec::new();
    }
    let draw = OrgDraw::new(world.seed, NAME, org);
    let rate = draw.rate();
    let mut index = Vec::new();
    let mut out = Vec::new();
    for (i, s) in STREAMS.iter().enumerate() {
        let r = |field: i64| draw.at(&[day, i as i64, field]);
        if r(0) % 100 >= 85 {
            continue;
        }
        let prompt = s.base * traffic(day + 13 * HOUR) / 100 * (50 + (r(1) % 100) as i64) / 100;
        let cached = prompt * (r(2) % 40) as i64 / 100;
        let completion = if s.price.1 == 0 {
            0
        } else {
            prompt * (3 + (r(3) % 20) as i64) / 100
        };
        let requests = 1 + prompt / (1000 + (r(4) % 3000) as i64);
        index.push(i);
        out.push(Row::usage(
            vec![Value::from(i as i64)],
            vec![prompt, cached, completion, requests],
        ));
    }
    let out = world.restate(NAME, org, day, out);
    index
        .into_iter()
        .zip(out)
        .map(|(i, mut row)| {
            let s = &STREAMS[i];
            row.amount = money(row.vals[0], Decimal::new(s.price.0, 2), rate, 6)
                + money(row.vals[2], Decimal::new(s.price.1, 2), rate, 6);
            (i, row)
        })
        .collect()
}

fn key_hash(org: &str, key: usize) -> String {
    format!(
        "{:016x}{:04x}",
        xxhash_rust::xxh3::xxh3_64(format!("{org}/{key}").as_bytes()),
        key
    )
}

fn exact(d: Decimal) -> Value {
    Number::from_str(&d.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn metrics(row: &Row) -> Value {
    json!({
        "spend": exact(row.amount),
        "prompt_tokens": row.vals[0],
        "completion_tokens": row.vals[2],
        "total_tokens": row.vals[0] + row.vals[2],
        "cache_read_input_tokens": row.vals[1],
        "cache_creation_input_tokens": 0,
        "api_requests": row.vals[3],
        "successful_requests": row.vals[3],
        "failed_requests": 0,
    })
}

fn add(into: &mut Row, row: &Row) {
    for (a, b) in into.vals.iter_mut().zip(&row.vals) {
        *a += b;
    }
    into.amount += row.amount;
}

fn error(status: u16, message: &str, kind: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": message, "type": kind, "param": "None", "code": status.to_string()}}),
    )
}

fn date_param(params: &Params, name: &str) -> Result<i64, Reply> {
    let text = params
        .get(name)
        .ok_or_else(|| error(400, "Please provide start_date and end_date", "bad_request_error"))?;
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(Default::default()).and_utc().timestamp())
        .map_err(|_| error(400, &format!("{name} must be YYYY-MM-DD"), "bad_request_error"))
}

/// One date's rows on a page, grouped as the proxy does.
#[derive(Default)]
struct DayGroup {
    sum: Option<Row>,
    /// model -> (model total, key hash -> (metrics, metadata))
    models: std::collections::BTreeMap<String, (Option<Row>, Map<String, Value>)>,
    keys: Map<String, Value>,
}

fn accumulate(total: &mut Option<Row>, row: &Row) {
    match total {
        Some(t) => add(t, row),
        None => *total = Some(row.clone()),
    }
}

fn activity(world: &World<'_>, org: &str, params: &Params) -> Result<Reply, Reply> {
    let bad = |m: &str| error(400, m, "bad_request_error");
    let start = date_param(params, "start_date")?;
    let end = date_param(params, "end_date")?; // inclusive
    let page: usize = match params.get("page").unwrap_or("1").parse() {
        Ok(p) if p >= 1 => p,
        _ => return Err(bad("page must be >= 1")),
    };
    let size: usize = match params.get("page_size").unwrap_or("50").parse() {
        Ok(n) if (1..=1000).contains(&n) => n,
        _ => return Err(bad("page_size must be between 1 and 1000")),
    };
    // Date descending, stream index as the stable tiebreaker.
    let mut all = Vec::new();
    let mut day = floor(end, DAY);
    while day >= start {
        all.extend(rows(world, org, day).into_iter().map(|(i, row)| (day, i, row)));
        day -= DAY;
    }
    let total = all.len();
    let total_pages = total.div_ceil(size).max(1);
    let from = ((page - 1) * size).min(total);
    let slice = &all[from..(from + size).min(total)];
    let mut groups: Vec<(i64, DayGroup)> = Vec::new();
    let mut page_total = Decimal::ZERO;
    for (day, i, row) in slice {
        if groups.last().is_none_or(|g| g.0 != *day) {
            groups.push((*day, DayGroup::default()));
        }
        let group = &mut groups.last_mut().expect("just pushed").1;
        page_total += row.amount;
        accumulate(&mut group.sum, row);
        let s = &STREAMS[*i];
        let key = key_hash(org, s.key);
        let meta = json!({"key_alias": format!("key-{}", s.key), "team_id": s.team});
        let model = group.models.entry(s.model.to_string()).or_default();
        accumulate(&mut model.0, row);
        model
            .1
            .insert(key.clone(), json!({"metrics": metrics(row), "metadata": meta}));
        group
            .keys
            .insert(key, json!({"metrics": {"spend": exact(row.amount)}, "metadata": meta}));
    }
    let results: Vec<Value> = groups
        .into_iter()
        .map(|(day, g)| {
            let models: Map<String, Value> = g
                .models
                .into_iter()
                .map(|(name, (sum, keys))| {
                    let sum = sum.expect("a model has a row");
                    (
                        name,
                        object([
                            ("metrics", metrics(&sum)),
                            ("metadata", json!({})),
                            ("api_key_breakdown", Value::Object(keys)),
                        ]),
                    )
                })
                .collect();
            let empty = || Value::Object(Map::new());
            object([
                ("date", Value::from(day_of(day).to_string())),
                ("metrics", metrics(&g.sum.expect("a day has a row"))),
                (
                    "breakdown",
                    object([
                        ("models", Value::Object(models)),
                        ("model_groups", empty()),
                        ("providers", empty()),
                        ("api_keys", Value::Object(g.keys)),
                        ("endpoints", empty()),
                        ("mcp_servers", empty()),
                        ("entities", empty()),
                    ]),
                ),
            ])
        })
        .collect();
    Ok(Reply::json(
        200,
        object([
            ("results", Value::Array(results)),
            (
                "metadata",
                json!({"total_spend": exact(page_total), "page": page, "total_pages": total_pages,
                       "has_more": page < total_pages}),
            ),
        ]),
    ))
}

impl SimulatedProvider for LiteLlm {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_path(&self, org: &str) -> String {
        format!("/{NAME}/{org}")
    }

    fn account_credentials(&self, org: &str) -> Vec<(&'static str, String)> {
        vec![("api_key", super::super::litellm_api_key(org))]
    }

    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply> {
        match request.header("authorization") {
            Some(h) if request.org_known && h == format!("Bearer {}", litellm_api_key(request.org)) => Ok(()),
            _ => Err(error(
                401,
                "Authentication Error, Invalid proxy server token passed. Received API Key = sk-...****",
                "auth_error",
            )),
        }
    }

    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply {
        if request.method != "GET" || request.tail != "user/daily/activity" {
            return error(404, "Not Found", "not_found_error");
        }
        activity(world, request.org, &Params::parse(request.query)).unwrap_or_else(|r| r)
    }

    fn rate_limited(&self, retry_after: u64) -> Reply {
        let mut reply = error(429, "Rate limit exceeded for this key", "throttling_error");
        reply.retry_after = Some(retry_after);
        reply
    }

    fn server_error(&self) -> Reply {
        error(500, "Internal Server Error", "internal_server_error")
    }

    /// Per (UTC day, normalized model, unit ""): tokens (input with cache
    /// reads), cache reads, requests, and `estimated_cost` = spend, each
    /// (day, key, model) rounded to 9 places; `cost` is 0 (not a bill).
    fn truth(
        &self,
        world: &World<'_>,
        org: &str,
        start: i64,
        end: i64,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        if let Some(api) = &options.api {
            return Err(format!("litellm has one API; api '{api}' does not apply"));
        }
        let mut book = TruthBook::default();
        for day in days_of(start, end) {
            for (i, row) in rows(world, org, day) {
                let t = book.entry(day_of(day), STREAMS[i].model, "");
                t.input_tokens += row.vals[0];
                t.cached_input_tokens += row.vals[1];
                t.output_tokens += row.vals[2];
                t.requests += row.vals[3];
                t.estimated_cost += round9(row.amount);
            }
        }
        Ok(book.finish())
    }
}
