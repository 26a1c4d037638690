//! fal.ai Platform API: `GET /v1/models/usage` in the documented
//! `time_series` / `next_cursor` / `has_more` format.
//!
//! Auth: `Authorization: Key <fal_api_key(org)>` (an ADMIN key). The org's
//! API-scope key ([`crate::simulator::fal_api_scope_key`]) is a real key
//! without the ADMIN scope: 403, as fal answers for billing data. Requests
//! must say `timeframe=day` and `timezone=UTC` (the adapter always does;
//! fal would otherwise pick the width from the range).
//!
//! Data: per UTC day, one row per (endpoint, unit, key alias) with usage in
//! the endpoint's unit, summed over the day's complete hours; `cost` is
//! `quantity * unit_price * rate`, a long-tailed exact number. Paging cuts
//! through rows (`limit` rows a page, default 4): a day may continue on the
//! next page, and the cursor is base64 of the page number (`Mg==` = 2).

use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::DateTime;
use rust_decimal::Decimal;
use serde_json::{json, Number, Value};

use super::{SimRequest, SimulatedProvider, TruthOptions};
use crate::simulator::data::{
    day_of, days_of, floor, object, round9, text, OrgDraw, TruthBook, TruthRow, World, DAY, HOUR,
};
use crate::simulator::query::{self, Params};
use crate::simulator::server::Reply;
use crate::simulator::{fal_api_key, fal_api_scope_key};

pub(crate) const NAME: &str = "fal";

/// (endpoint_id, unit, unit price in USD, units per hour at peak; tenths).
const ENDPOINTS: [(&str, &str, &str, i64); 4] = [
    ("fal-ai/flux/dev", "image", "0.025", 400),
    ("fal-ai/kling-video/v2.1/pro", "video_second", "0.5", 55),
    ("fal-ai/flux-pro/v1.1-ultra", "image", "0.06", 90),
    ("fal-ai/fast-sdxl", "gpu_second", "0.00111", 700),
];
const KEYS: [&str; 2] = ["Production Key", "Staging Key"];

/// One usage row of a day.
struct Line {
    endpoint: &'static str,
    unit: &'static str,
    key: &'static str,
    quantity: Decimal,
    unit_price: Decimal,
    cost: Decimal,
}

/// The rows of the UTC day starting at `day`: complete hours only.
fn lines(world: &World<'_>, org: &str, day: i64) -> Vec<Line> {
    let draw = OrgDraw::new(world.seed, NAME, org);
    let rate = draw.rate();
    let mut out = Vec::new();
    for (e, (endpoint, unit, price, base)) in ENDPOINTS.iter().enumerate() {
        for (k, key) in KEYS.iter().enumerate() {
            // Some (endpoint, key) pairs are unused by some orgs.
            if draw.at(&[-10, e as i64, k as i64]).is_multiple_of(4) {
                continue;
            }
            let mut tenths = 0;
            for hour in (day..day + DAY).step_by(HOUR as usize) {
                if world.has_data(hour) {
                    let roll = draw.at(&[hour, e as i64, k as i64]);
                    tenths += base * crate::simulator::data::traffic(hour) / 100 * (roll % 100) as i64 / 100;
                }
            }
            if tenths == 0 {
                continue;
            }
            // Images are whole; seconds come in tenths.
            let quantity = if *unit == "image" {
                Decimal::from(tenths / 10)
            } else {
                Decimal::new(tenths, 1)
            };
            if quantity.is_zero() {
                continue;
            }
            let unit_price = Decimal::from_str(price).expect("static price");
            out.push(Line {
                endpoint,
                unit,
                key,
                quantity,
                unit_price,
                cost: quantity * unit_price * rate,
            });
        }
    }
    out
}

fn exact(d: Decimal) -> Value {
    Number::from_str(&d.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn error(status: u16, detail: &str) -> Reply {
    Reply::json(status, json!({ "detail": detail }))
}

fn parse_time(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp());
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(Default::default()).and_utc().timestamp())
}

fn usage(world: &World<'_>, org: &str, params: &Params) -> Result<Reply, Reply> {
    if params.get("timeframe") != Some("day") || params.get("timezone") != Some("UTC") {
        return Err(error(
            422,
            "this simulator serves timeframe=day with timezone=UTC only (as tokentra-sync asks)",
        ));
    }
    let start = params.get("start").and_then(parse_time);
    let end = params.get("end").and_then(parse_time);
    let (Some(start), Some(end)) = (start, end) else {
        return Err(error(422, "start and end must be ISO 8601 dates or date-times"));
    };
    let limit = query::limit(params, 4, 1000).map_err(|m| error(422, &m))? as usize;
    let page_number = match params.get("cursor") {
        None => 1,
        Some(c) => STANDARD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| error(422, "invalid cursor"))?,
    };
    // Every day of the range up to today, each with its rows; an empty day
    // is one entry with no row, so it still appears in the series.
    let last = end.min(floor(world.now, DAY) + DAY);
    let mut entries: Vec<(i64, Option<Line>)> = Vec::new();
    for day in days_of(floor(start, DAY), last) {
        let rows = lines(world, org, day);
        if rows.is_empty() {
            entries.push((day, None));
        }
        entries.extend(rows.into_iter().map(|l| (day, Some(l))));
    }
    let offset = (page_number - 1) * limit;
    let (from, to, next) =
        query::row_page(entries.len(), limit, (page_number > 1).then_some(offset)).map_err(|m| error(422, &m))?;
    let mut series: Vec<Value> = Vec::new();
    let mut current: Option<(i64, Vec<Value>)> = None;
    for (day, line) in entries.drain(from..to) {
        if current.as_ref().is_some_and(|(d, _)| *d != day) {
            let (d, results) = current.take().expect("checked");
            series.push(bucket(d, results));
        }
        let slot = current.get_or_insert_with(|| (day, Vec::new()));
        if let Some(l) = line {
            slot.1.push(json!({
                "endpoint_id": l.endpoint,
                "unit": l.unit,
                "quantity": exact(l.quantity),
                "unit_price": exact(l.unit_price),
                "cost": exact(l.cost),
                "currency": "USD",
                "auth_method": l.key,
            }));
        }
    }
    if let Some((d, results)) = current {
        series.push(bucket(d, results));
    }
    let next_cursor = next.map(|_| STANDARD.encode((page_number + 1).to_string()));
    Ok(Reply::json(
        200,
        object([
            ("has_more", Value::from(next_cursor.is_some())),
            ("next_cursor", text(next_cursor)),
            ("time_series", Value::Array(series)),
        ]),
    ))
}

fn bucket(day: i64, results: Vec<Value>) -> Value {
    let start = DateTime::from_timestamp(day, 0).expect("valid day");
    object([
        (
            "bucket",
            Value::from(start.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()),
        ),
        ("results", Value::Array(results)),
    ])
}

/// fal.ai in the simulator's registry.
pub(crate) struct Fal;

impl SimulatedProvider for Fal {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_path(&self, org: &str) -> String {
        format!("/{NAME}/{org}/v1")
    }

    fn account_credentials(&self, org: &str) -> Vec<(&'static str, String)> {
        vec![("api_key", super::super::fal_api_key(org))]
    }

    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply> {
        let header = request.header("authorization").unwrap_or_default();
        if request.org_known && header == format!("Key {}", fal_api_key(request.org)) {
            Ok(())
        } else if request.org_known && header == format!("Key {}", fal_api_scope_key(request.org)) {
            Err(error(
                403,
                "This endpoint requires an API key with the ADMIN scope; the key used has scope API",
            ))
        } else {
            Err(error(
                401,
                "Invalid or missing credentials: use 'Authorization: Key <your key>'",
            ))
        }
    }

    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply {
        if request.method != "GET" || request.tail != "v1/models/usage" {
            return error(404, "Not Found");
        }
        usage(world, request.org, &Params::parse(request.query)).unwrap_or_else(|r| r)
    }

    fn rate_limited(&self, retry_after: u64) -> Reply {
        let mut reply = error(429, "Rate limit exceeded, retry later");
        reply.retry_after = Some(retry_after);
        reply
    }

    fn server_error(&self) -> Reply {
        error(500, "Internal Server Error")
    }

    /// Per day, normalized endpoint and unit: the quantities and the billed
    /// cost of every row (each rounded to 9 places as stored), for every day
    /// `[start, end)` touches.
    fn truth(
        &self,
        world: &World<'_>,
        org: &str,
        start: i64,
        end: i64,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        if let Some(api) = &options.api {
            return Err(format!("fal has one API; api '{api}' does not apply"));
        }
        let mut book = TruthBook::default();
        for day in days_of(start, end) {
            for l in lines(world, org, day) {
                let t = book.entry(day_of(day), l.endpoint, l.unit);
                t.quantity += l.quantity;
                t.cost += round9(l.cost);
            }
        }
        Ok(book.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::data::tests::{world, NOW};

    #[test]
    fn pages_cut_through_days_and_cover_every_row_once() {
        let w = world(NOW);
        let start = floor(NOW, DAY) - 3 * DAY;
        let q = |cursor: Option<&str>| {
            let mut text = "timeframe=day&timezone=UTC&start=2025-01-13&end=2025-01-16".to_string();
            if let Some(c) = cursor {
                text.push_str(&format!("&cursor={c}"));
            }
            usage(&w, "org-1", &Params::parse(&text)).unwrap_or_else(|r| r).body
        };
        let mut rows = 0;
        let mut cursor: Option<String> = None;
        for _ in 0..50 {
            let body = q(cursor.as_deref());
            for b in body["time_series"].as_array().unwrap() {
                rows += b["results"].as_array().unwrap().len();
            }
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        let expected: usize = (0..3).map(|d| lines(&w, "org-1", start + d * DAY).len()).sum();
        assert!(expected > 4, "{expected}");
        assert_eq!(rows, expected);
    }
}
