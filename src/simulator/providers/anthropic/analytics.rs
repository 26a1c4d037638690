//! The beta Usage and Cost Analytics API: `GET
//! /v1/organizations/analytics/usage` and `GET /v1/organizations/analytics/cost`.
//!
//! Format (see the adapter's `analytics` module for what was verified):
//! `{data: [row], has_more, next_page}` where a row is one time bucket and
//! one group, `{starting_at, ending_at, group: {...}, usage: {...}}` or
//! `{..., group, cost: {amount, list_amount, currency, requests}}`. Group
//! fields are null unless grouped by. Rows without usage are left out; within
//! a bucket the largest rows come first. `limit` counts rows (default 100,
//! at most 1000), and `next_page` is an opaque row cursor.
//!
//! Simulator limits: `time_bucket_width` is required (`1m`/`1h`/`1d` for usage,
//! `1d` for cost, whose data is daily); the range may span at most 31 days.

use std::cmp::Reverse;

use serde_json::{json, Map, Value};

use super::data::{self, COST_DIMS, USAGE_DIMS, USAGE_MEASURES};
use super::legacy::{rfc3339, time_param};
use super::{bad_request, SimRequest};
use crate::simulator::data::{floor, Row, World, DAY};
use crate::simulator::query::{self, Group, Params};
use crate::simulator::server::Reply;

/// The beta the analytics endpoints require in `anthropic-beta`.
pub(crate) const BETA: &str = "analytics-usage-cost-2026-08-24";

/// Group fields the simulated data has no value for; they come back null,
/// as fields of a real answer do for dimensions that do not apply.
const ALWAYS_NULL: &[&str] = &["product", "speed"];

const MAX_RANGE: i64 = 31 * DAY;

/// Answers the analytics paths; `None` for others.
pub(super) fn route(world: &World<'_>, request: &SimRequest<'_>, params: &Params) -> Option<Reply> {
    let cost = match (request.method, request.tail) {
        ("GET", "v1/organizations/analytics/usage") => false,
        ("GET", "v1/organizations/analytics/cost") => true,
        _ => return None,
    };
    let beta_sent = request
        .headers
        .get_all("anthropic-beta")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|b| b.trim() == BETA);
    if !beta_sent {
        return Some(bad_request(format!(
            "anthropic-beta: this endpoint is in beta; send the header 'anthropic-beta: {BETA}'"
        )));
    }
    let result = if cost {
        costs(world, request.org, params)
    } else {
        usage(world, request.org, params)
    };
    Some(result.unwrap_or_else(|reply| reply))
}

/// Indexes into [`USAGE_DIMS`] by group name.
const USAGE_GROUPS: [Group; 8] = [
    Group {
        name: "api_key_id",
        dims: &[0],
    },
    Group {
        name: "workspace_id",
        dims: &[1],
    },
    Group {
        name: "model",
        dims: &[2],
    },
    Group {
        name: "service_tier",
        dims: &[3],
    },
    Group {
        name: "context_window",
        dims: &[4],
    },
    Group {
        name: "inference_geo",
        dims: &[5],
    },
    Group {
        name: "product",
        dims: &[],
    },
    Group {
        name: "speed",
        dims: &[],
    },
];

/// Indexes into [`COST_DIMS`] by group name (no `description`: the
/// analytics API breaks costs out by `cost_type` and `token_type` instead).
const COST_GROUPS: [Group; 9] = [
    Group {
        name: "workspace_id",
        dims: &[0],
    },
    Group {
        name: "cost_type",
        dims: &[2],
    },
    Group {
        name: "token_type",
        dims: &[3],
    },
    Group {
        name: "model",
        dims: &[4],
    },
    Group {
        name: "service_tier",
        dims: &[5],
    },
    Group {
        name: "context_window",
        dims: &[6],
    },
    Group {
        name: "inference_geo",
        dims: &[7],
    },
    Group {
        name: "product",
        dims: &[],
    },
    Group {
        name: "speed",
        dims: &[],
    },
];

/// The bucket starts of the request: `starting_at` snapped down to the
/// width; buckets that start before now and end by the range's end.
fn buckets(world: &World<'_>, params: &Params, width: i64) -> Result<Vec<i64>, Reply> {
    let start = time_param(params, "starting_at")?.ok_or_else(|| bad_request("starting_at: Field required"))?;
    let end = match time_param(params, "ending_at")? {
        Some(end) if end <= start => return Err(bad_request("ending_at: must be after starting_at")),
        Some(end) if end - start > MAX_RANGE => {
            return Err(bad_request("ending_at: the range may span at most 31 days"))
        }
        Some(end) => end,
        None => world.now.min(start + MAX_RANGE),
    };
    let first = floor(start, width);
    let mut out = Vec::new();
    let mut b = first;
    while b < world.now && b + width <= end {
        out.push(b);
        b += width;
    }
    Ok(out)
}

fn width(params: &Params, allowed: &[&str]) -> Result<i64, Reply> {
    match params.get("time_bucket_width") {
        Some(text) if allowed.contains(&text) => Ok(query::width(text).unwrap_or(DAY)),
        Some(text) => Err(bad_request(format!(
            "time_bucket_width: must be one of {}, got '{text}'",
            allowed.join(", ")
        ))),
        None => Err(bad_request(format!(
            "time_bucket_width: required by this simulator (one of {})",
            allowed.join(", ")
        ))),
    }
}

/// The page of `rows` the request asks for, in the envelope.
fn page(rows: Vec<Value>, params: &Params) -> Result<Reply, Reply> {
    let limit = query::limit(params, 100, 1000).map_err(bad_request)?;
    let cursor = match params.get("page") {
        None => None,
        Some(text) => Some(
            query::decode_cursor(text)
                .and_then(|t| t.strip_prefix("row:").and_then(|n| n.parse::<usize>().ok()))
                .ok_or_else(|| bad_request("page: invalid page token"))?,
        ),
    };
    let (from, to, next) =
        query::row_page(rows.len(), limit as usize, cursor).map_err(|m| bad_request(format!("page: {m}")))?;
    Ok(Reply::json(
        200,
        json!({
            "data": rows[from..to],
            "has_more": next.is_some(),
            "next_page": next.map(|n| query::encode_cursor(&format!("row:{n}"))),
        }),
    ))
}

/// The `group` object: every dimension the endpoint knows, null unless grouped.
fn group(dims: &[Value], shown: &[(usize, &str)]) -> Value {
    let mut m = Map::new();
    for &(index, name) in shown {
        m.insert(name.to_string(), dims.get(index).cloned().unwrap_or(Value::Null));
    }
    for name in ALWAYS_NULL {
        m.insert((*name).to_string(), Value::Null);
    }
    Value::Object(m)
}

fn usage(world: &World<'_>, org: &str, params: &Params) -> Result<Reply, Reply> {
    let width = width(params, &["1m", "1h", "1d"])?;
    let mask = query::group_mask(&USAGE_GROUPS, &params.all("group_by"), USAGE_DIMS.len())
        .map_err(|m| bad_request(format!("group_by: {m}")))?;
    let filters = query::filters(
        params,
        &[
            ("api_key_ids", 0),
            ("workspace_ids", 1),
            ("models", 2),
            ("service_tiers", 3),
            ("context_windows", 4),
            ("inference_geos", 5),
        ],
    );
    let shown: Vec<(usize, &str)> = USAGE_DIMS.iter().copied().enumerate().collect();
    let mut out = Vec::new();
    for b in buckets(world, params, width)? {
        let rows: Vec<Row> = query::hours(b, b + width)
            .flat_map(|hour| data::usage(world, org, hour))
            .filter(|r| query::keep(r, &filters))
            .collect();
        let mut rows: Vec<(i64, Value)> = query::aggregate(rows, &mask)
            .into_iter()
            .filter(|r| r.vals.iter().any(|v| *v != 0))
            .map(|r| {
                let total = r.vals[..data::WEB].iter().sum::<i64>();
                let row = json!({
                    "starting_at": rfc3339(b),
                    "ending_at": rfc3339(b + width),
                    "group": group(&r.dims, &shown),
                    "usage": usage_object(&r.vals, total),
                });
                (total, row)
            })
            .collect();
        rows.sort_by_key(|(total, _)| Reverse(*total));
        out.extend(rows.into_iter().map(|(_, row)| row));
    }
    page(out, params)
}

/// The `usage` object, nesting `parent.child` measures.
fn usage_object(vals: &[i64], total: i64) -> Value {
    let mut m = Map::new();
    for (name, v) in USAGE_MEASURES.iter().zip(vals) {
        match name.split_once('.') {
            Some((parent, child)) => {
                let entry = m.entry(parent.to_string()).or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(inner) = entry {
                    inner.insert(child.to_string(), Value::from(*v));
                }
            }
            None => {
                m.insert((*name).into(), Value::from(*v));
            }
        }
    }
    m.insert("total_tokens".into(), Value::from(total));
    Value::Object(m)
}

/// Cents with at least 6 places, as the legacy report writes them.
fn cents(mut amount: rust_decimal::Decimal) -> Value {
    if amount.scale() < 6 {
        amount.rescale(6);
    }
    Value::from(amount.to_string())
}

fn costs(world: &World<'_>, org: &str, params: &Params) -> Result<Reply, Reply> {
    let width = width(params, &["1d"])?;
    let requested = params.all("group_by");
    let mask = query::group_mask(&COST_GROUPS, &requested, COST_DIMS.len())
        .map_err(|m| bad_request(format!("group_by: {m}")))?;
    let by_component = requested.iter().any(|g| *g == "cost_type" || *g == "token_type");
    let filters = query::filters(
        params,
        &[
            ("workspace_ids", 0),
            ("models", 4),
            ("service_tiers", 5),
            ("context_windows", 6),
            ("inference_geos", 7),
        ],
    );
    let shown: Vec<(usize, &str)> = COST_DIMS
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, name)| *name != "description")
        .collect();
    let mut out = Vec::new();
    for b in buckets(world, params, width)? {
        let rows: Vec<Row> = data::costs(world, org, b)
            .into_iter()
            .filter(|r| query::keep(r, &filters))
            .collect();
        let mut rows = query::aggregate(rows, &mask);
        rows.sort_by_key(|r| Reverse(r.amount));
        out.extend(rows.into_iter().map(|r| {
            // Requests have no per-component attribution.
            let requests = if by_component {
                Value::Null
            } else {
                Value::from(r.vals[1])
            };
            json!({
                "starting_at": rfc3339(b),
                "ending_at": rfc3339(b + width),
                "group": group(&r.dims, &shown),
                "cost": {
                    "amount": cents(r.amount),
                    "list_amount": cents(r.list),
                    "currency": "USD",
                    "requests": requests,
                },
            })
        }));
    }
    page(out, params)
}
