//! The legacy Admin API reports: `/v1/organizations/usage_report/messages`
//! and `/v1/organizations/cost_report` in the documented format.
//!
//! Windows: `starting_at` is snapped down to its bucket; buckets that end after
//! `ending_at` are omitted (documented behaviour), and so are buckets that
//! start in the future. Without `ending_at` the current, partial bucket is
//! included. Cost amounts are decimal strings in cents.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value};

use super::bad_request;
use super::data::{self, COST_DIMS, USAGE_DIMS, USAGE_MEASURES};
use crate::simulator::data::{floor, object, text, Row, World, DAY};
use crate::simulator::query::{self, Buckets, Group, Params};
use crate::simulator::server::Reply;

/// The dimensions and measures the legacy reports serve (the analytics API
/// serves more of each).
const LEGACY_USAGE_DIMS: &[&str] = USAGE_DIMS.split_at(5).0;
const LEGACY_USAGE_MEASURES: &[&str] = USAGE_MEASURES.split_at(6).0;
const LEGACY_COST_DIMS: &[&str] = COST_DIMS.split_at(7).0;

/// Answers `usage_report/messages` and `cost_report`; `None` for other paths.
pub(super) fn route(world: &World<'_>, org: &str, method: &str, tail: &str, params: &Params) -> Option<Reply> {
    let result = match (method, tail) {
        ("GET", "v1/organizations/usage_report/messages") => usage(world, org, params),
        ("GET", "v1/organizations/cost_report") => costs(world, org, params),
        _ => return None,
    };
    Some(result.unwrap_or_else(|reply| reply))
}

pub(super) fn rfc3339(t: i64) -> String {
    Utc.timestamp_opt(t, 0)
        .single()
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

pub(super) fn time_param(params: &Params, name: &str) -> Result<Option<i64>, Reply> {
    match params.get(name) {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.timestamp()))
            .map_err(|_| bad_request(format!("{name}: invalid RFC 3339 datetime '{text}'"))),
    }
}

/// The page of bucket starts for this request.
fn window(
    world: &World<'_>,
    params: &Params,
    width: i64,
    default_limit: i64,
    max_limit: i64,
) -> Result<query::Page, Reply> {
    let start = time_param(params, "starting_at")?.ok_or_else(|| bad_request("starting_at: Field required"))?;
    let ending = time_param(params, "ending_at")?;
    let limit = query::limit(params, default_limit, max_limit).map_err(bad_request)?;
    let first = floor(start, width);
    // Buckets that start before now ...
    let mut count = if world.now > first {
        (world.now - first + width - 1) / width
    } else {
        0
    };
    // ... and, with ending_at, only those that end by it.
    if let Some(end) = ending {
        count = count.min(if end > first { (end - first) / width } else { 0 });
    }
    let cursor = match params.get("page") {
        None => None,
        Some(text) => Some(
            query::decode_cursor(text)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.timestamp())
                .ok_or_else(|| bad_request("page: invalid page token"))?,
        ),
    };
    Buckets { first, width, count }
        .page(limit, cursor)
        .map_err(|m| bad_request(format!("page: {m}")))
}

fn envelope(buckets: Vec<Value>, next: Option<i64>) -> Reply {
    Reply::json(
        200,
        object([
            ("data", Value::Array(buckets)),
            ("has_more", Value::from(next.is_some())),
            ("next_page", text(next.map(|n| query::encode_cursor(&rfc3339(n))))),
        ]),
    )
}

fn bucket(start: i64, width: i64, results: Vec<Value>) -> Value {
    object([
        ("starting_at", Value::from(rfc3339(start))),
        ("ending_at", Value::from(rfc3339(start + width))),
        ("results", Value::Array(results)),
    ])
}

const USAGE_GROUPS: [Group; 5] = [
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
];

const COST_GROUPS: [Group; 2] = [
    Group {
        name: "workspace_id",
        dims: &[0],
    },
    Group {
        name: "description",
        dims: &[1, 2, 3, 4, 5, 6],
    },
];

fn usage(world: &World<'_>, org: &str, params: &Params) -> Result<Reply, Reply> {
    let width_text = params.get("bucket_width").unwrap_or("1d");
    let width = query::width(width_text)
        .ok_or_else(|| bad_request(format!("bucket_width: must be one of 1m, 1h, 1d, got '{width_text}'")))?;
    let (default_limit, max_limit) = query::usage_limits(width);
    let mask = query::group_mask(&USAGE_GROUPS, &params.all("group_by"), LEGACY_USAGE_DIMS.len())
        .map_err(|m| bad_request(format!("group_by: {m}")))?;
    let filters = query::filters(
        params,
        &[
            ("api_key_ids", 0),
            ("workspace_ids", 1),
            ("models", 2),
            ("service_tiers", 3),
            ("context_window", 4),
        ],
    );
    let page = window(world, params, width, default_limit, max_limit)?;
    let mut buckets = Vec::new();
    for &b in &page.starts {
        let rows: Vec<Row> = query::hours(b, b + width)
            .flat_map(|hour| data::usage(world, org, hour))
            .filter(|r| query::keep(r, &filters))
            .collect();
        let results = query::aggregate(rows, &mask).into_iter().map(usage_result).collect();
        buckets.push(bucket(b, width, results));
    }
    Ok(envelope(buckets, page.next))
}

/// A usage result with nested `cache_creation` and `server_tool_use` objects
/// (measure names carry the nesting as `parent.child`).
fn usage_result(row: Row) -> Value {
    let mut m = Map::new();
    for (name, v) in LEGACY_USAGE_MEASURES.iter().zip(&row.vals) {
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
    for (name, v) in LEGACY_USAGE_DIMS.iter().zip(row.dims) {
        m.insert((*name).into(), v);
    }
    Value::Object(m)
}

fn costs(world: &World<'_>, org: &str, params: &Params) -> Result<Reply, Reply> {
    let width_text = params.get("bucket_width").unwrap_or("1d");
    if width_text != "1d" {
        return Err(bad_request(format!(
            "bucket_width: the cost report only supports '1d', got '{width_text}'"
        )));
    }
    let mask = query::group_mask(&COST_GROUPS, &params.all("group_by"), LEGACY_COST_DIMS.len())
        .map_err(|m| bad_request(format!("group_by: {m}")))?;
    let page = window(world, params, DAY, 7, 31)?;
    let mut buckets = Vec::new();
    for &b in &page.starts {
        let results = query::aggregate(data::costs(world, org, b), &mask)
            .into_iter()
            .map(|row| {
                let mut amount = row.amount;
                if amount.scale() < 6 {
                    amount.rescale(6);
                }
                let mut m = Map::new();
                m.insert("currency".into(), Value::from("USD"));
                m.insert("amount".into(), Value::from(amount.to_string()));
                for (name, v) in LEGACY_COST_DIMS.iter().zip(row.dims) {
                    m.insert((*name).into(), v);
                }
                Value::Object(m)
            })
            .collect();
        buckets.push(bucket(b, DAY, results));
    }
    Ok(envelope(buckets, page.next))
}
