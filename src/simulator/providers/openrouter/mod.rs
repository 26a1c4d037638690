//! OpenRouter: `GET /api/v1/activity` in the documented format, one row per
//! UTC day x model x endpoint for the last 30 completed UTC days (today
//! excluded), no pagination, optional `date=YYYY-MM-DD`.
//!
//! Auth: `Authorization: Bearer <openrouter_management_key(org)>`. The org's
//! inference key (`openrouter_api_key(org)`) is a valid key but not a
//! management key: `/activity` answers it 403, as OpenRouter does; an
//! unknown key is a 401.
//!
//! Money: `usage` (billed credits) and `byok_usage_inference` (spend on the
//! org's own upstream keys) are USD numbers with long decimal tails, computed
//! exactly from the (restated) token counts.

use std::str::FromStr;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{json, Number, Value};

use super::{SimRequest, SimulatedProvider, TruthOptions};
use crate::simulator::data::{
    day_of, days_of, floor, money, object, round9, traffic, OrgDraw, Row, TruthBook, TruthRow, World, DAY, HOUR,
};
use crate::simulator::query::Params;
use crate::simulator::server::Reply;
use crate::simulator::{openrouter_api_key, openrouter_management_key};

pub(crate) const NAME: &str = "openrouter";

/// Days `/activity` keeps.
const KEPT_DAYS: i64 = 30;

pub(crate) struct OpenRouter;

/// (model, permaslug, endpoint id, provider, BYOK, base tokens, USD per
/// million input, output).
struct Stream {
    model: &'static str,
    permaslug: &'static str,
    endpoint: &'static str,
    provider: &'static str,
    byok: bool,
    base: i64,
    price: (i64, i64),
}

const STREAMS: [Stream; 5] = [
    Stream {
        model: "openai/gpt-4.1",
        permaslug: "openai/gpt-4.1-2025-04-14",
        endpoint: "550e8400-e29b-41d4-a716-446655440000",
        provider: "OpenAI",
        byok: false,
        base: 900_000,
        price: (200, 800),
    },
    Stream {
        model: "openai/gpt-4.1",
        permaslug: "openai/gpt-4.1-2025-04-14",
        endpoint: "7a1d0c4e-3f7b-4e0a-9c55-1f2e3d4c5b6a",
        provider: "Azure",
        byok: true,
        base: 300_000,
        price: (200, 800),
    },
    Stream {
        model: "anthropic/claude-sonnet-4",
        permaslug: "anthropic/claude-4-sonnet-20250522",
        endpoint: "6f1c2a9e-0d3b-4c55-9a7e-2b8d4f1e3c70",
        provider: "Anthropic",
        byok: false,
        base: 600_000,
        price: (300, 1500),
    },
    Stream {
        model: "meta-llama/llama-3.3-70b-instruct",
        permaslug: "meta-llama/llama-3.3-70b-instruct",
        endpoint: "0b7c3e51-93aa-4b1f-8e22-5c0f6d9a1b42",
        provider: "Together",
        byok: false,
        base: 1_500_000,
        price: (12, 30),
    },
    Stream {
        model: "google/gemini-2.5-flash",
        permaslug: "google/gemini-2.5-flash",
        endpoint: "2c9e8f10-55aa-4e11-b3c7-8d6e5f4a3b21",
        provider: "Google",
        byok: true,
        base: 700_000,
        price: (30, 250),
    },
];

/// Whether `day` (aligned) is one `/activity` answers for: complete, within
/// the last 30 completed days and the simulated history.
fn held(world: &World<'_>, day: i64) -> bool {
    let today = floor(world.now, DAY);
    day < today && day >= today - KEPT_DAYS * DAY && world.has_data(day)
}

/// One day's rows: `vals = [prompt, completion, reasoning, requests]`, `dims
/// = [stream index]`, `amount` = billed `usage`, `list` = BYOK spend.
fn rows(world: &World<'_>, org: &str, day: i64) -> Vec<(usize, Row)> {
    if !held(world, day) {
        return Vec::new();
    }
    let draw = OrgDraw::new(world.seed, NAME, org);
    let rate = draw.rate();
    let mut out = Vec::new();
    for (i, s) in STREAMS.iter().enumerate().take(draw.streams(3, 3)) {
        let r = |field: i64| draw.at(&[day, i as i64, field]);
        if r(0) % 100 >= 80 {
            continue; // idle that day
        }
        let weight = traffic(day + 14 * HOUR);
        let prompt = s.base * weight / 100 * (50 + (r(1) % 100) as i64) / 100;
        let completion = prompt * (5 + (r(2) % 25) as i64) / 100;
        let reasoning = completion * (r(3) % 30) as i64 / 100;
        let requests = 1 + prompt / (800 + (r(4) % 2000) as i64);
        let row = Row::usage(
            vec![Value::from(i as i64)],
            vec![prompt, completion, reasoning, requests],
        );
        out.push((i, row));
    }
    // A restatement scales the counts; money follows the restated counts.
    let (index, rows): (Vec<usize>, Vec<Row>) = out.into_iter().unzip();
    let rows = world.restate(NAME, org, day, rows);
    index
        .into_iter()
        .zip(rows)
        .map(|(i, mut row)| {
            let s = &STREAMS[i];
            let spend = money(row.vals[0], Decimal::new(s.price.0, 2), rate, 6)
                + money(row.vals[1], Decimal::new(s.price.1, 2), rate, 6);
            if s.byok {
                row.list = spend;
            } else {
                row.amount = spend;
            }
            (i, row)
        })
        .collect()
}

fn exact(d: Decimal) -> Value {
    Number::from_str(&d.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": status, "message": message}}))
}

impl SimulatedProvider for OpenRouter {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_path(&self, org: &str) -> String {
        format!("/{NAME}/{org}/api/v1")
    }

    fn spoiled_credential(&self) -> &'static str {
        "management_key"
    }

    fn account_credentials(&self, org: &str) -> Vec<(&'static str, String)> {
        vec![
            ("api_key", super::super::openrouter_api_key(org)),
            ("management_key", super::super::openrouter_management_key(org)),
        ]
    }

    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply> {
        let bearer = request.header("authorization").and_then(|h| h.strip_prefix("Bearer "));
        match bearer {
            Some(key) if request.org_known && key == openrouter_management_key(request.org) => Ok(()),
            Some(key) if request.org_known && key == openrouter_api_key(request.org) => {
                Err(error(403, "Only management keys can perform this operation"))
            }
            _ => Err(error(401, "No auth credentials found")),
        }
    }

    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply {
        if request.method != "GET" || request.tail != "api/v1/activity" {
            return error(404, "Not Found");
        }
        let params = Params::parse(request.query);
        let today = floor(world.now, DAY);
        let days: Vec<i64> = match params.get("date") {
            None => ((today - KEPT_DAYS * DAY)..today).step_by(DAY as usize).collect(),
            Some(text) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                Ok(d) => {
                    let day = d.and_time(Default::default()).and_utc().timestamp();
                    if day >= today || day < today - KEPT_DAYS * DAY {
                        return error(400, "date must be within the last 30 completed UTC days");
                    }
                    vec![day]
                }
                Err(_) => return error(400, "date must be YYYY-MM-DD"),
            },
        };
        let mut data = Vec::new();
        for day in days {
            for (i, row) in rows(world, request.org, day) {
                let s = &STREAMS[i];
                data.push(json!({
                    "date": day_of(day).to_string(),
                    "model": s.model,
                    "model_permaslug": s.permaslug,
                    "endpoint_id": s.endpoint,
                    "provider_name": s.provider,
                    "usage": exact(row.amount),
                    "byok_usage_inference": exact(row.list),
                    "requests": row.vals[3],
                    "prompt_tokens": row.vals[0],
                    "completion_tokens": row.vals[1],
                    "reasoning_tokens": row.vals[2],
                }));
            }
        }
        Reply::json(200, object([("data", Value::Array(data))]))
    }

    fn rate_limited(&self, retry_after: u64) -> Reply {
        let mut reply = error(429, "Rate limit exceeded");
        reply.retry_after = Some(retry_after);
        reply
    }

    fn server_error(&self) -> Reply {
        error(502, "Upstream error")
    }

    /// Per (UTC day, model without its vendor prefix, unit ""): prompt and
    /// completion tokens, requests, `cost` = the billed `usage`, and
    /// `estimated_cost` = BYOK spend, each row rounded to 9 places; only days
    /// `/activity` still holds.
    fn truth(
        &self,
        world: &World<'_>,
        org: &str,
        start: i64,
        end: i64,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        if let Some(api) = &options.api {
            return Err(format!("openrouter has one API; api '{api}' does not apply"));
        }
        let mut book = TruthBook::default();
        for day in days_of(start, end) {
            for (i, row) in rows(world, org, day) {
                let model = STREAMS[i].model.rsplit('/').next().unwrap_or_default();
                let t = book.entry(day_of(day), model, "");
                t.input_tokens += row.vals[0];
                t.output_tokens += row.vals[1];
                t.requests += row.vals[3];
                t.cost += round9(row.amount);
                t.estimated_cost += round9(row.list);
            }
        }
        Ok(book.finish())
    }
}
