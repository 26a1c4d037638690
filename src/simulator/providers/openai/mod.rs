//! OpenAI Admin API: `/v1/organization/usage/*` and `/v1/organization/costs`
//! in the documented page/bucket/result format.
//!
//! Windows: `start_time` is snapped down to its bucket; `end_time` is exclusive
//! and clamped to now (no future buckets). Hourly data lands in the minute
//! bucket at the top of its hour when `bucket_width=1m`. Costs are daily
//! records computed from the whole day's usage as of now.

mod data;
mod names;

use std::str::FromStr;

use serde_json::{json, Map, Number, Value};

use super::{SimRequest, SimulatedProvider, TruthOptions};
use crate::simulator::data::{floor, object, text, Row, TruthRow, World};
use crate::simulator::openai_api_key;
use crate::simulator::query::{self, Buckets, Group, Params};
use crate::simulator::server::Reply;
use data::{
    COMPLETION_DIMS, COMPLETION_MEASURES, COST_DIMS, EMBEDDING_DIMS, EMBEDDING_MEASURES, FILE_SEARCH_DIMS,
    FILE_SEARCH_MEASURES, WEB_SEARCH_DIMS, WEB_SEARCH_MEASURES,
};

/// The provider's name in URLs, truth queries and seeds.
pub(crate) const NAME: &str = "openai";

/// OpenAI in the simulator's registry.
pub(crate) struct OpenAi;

impl SimulatedProvider for OpenAi {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_path(&self, org: &str) -> String {
        format!("/{NAME}/{org}/v1")
    }

    fn account_credentials(&self, org: &str) -> Vec<(&'static str, String)> {
        vec![("api_key", super::super::openai_api_key(org))]
    }

    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply> {
        match request.header("authorization") {
            None => Err(error(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                "invalid_request_error",
                None,
                None,
            )),
            Some(header) if !request.org_known || header != format!("Bearer {}", openai_api_key(request.org)) => {
                Err(error(
                    401,
                    "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    None,
                    Some("invalid_api_key"),
                ))
            }
            Some(_) => Ok(()),
        }
    }

    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply {
        handle(world, request)
    }

    fn expired_credentials(&self) -> Reply {
        error(
            401,
            "Your API key has expired. Create a new key in your organization settings.",
            "invalid_request_error",
            None,
            Some("api_key_expired"),
        )
    }

    fn rate_limited(&self, retry_after: u64) -> Reply {
        let mut reply = error(
            429,
            "Rate limit reached for requests to the organization usage API. Please try again later.",
            "requests",
            None,
            Some("rate_limit_exceeded"),
        );
        reply.retry_after = Some(retry_after);
        reply
    }

    fn server_error(&self) -> Reply {
        error(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        )
    }

    fn truth(
        &self,
        world: &World<'_>,
        org: &str,
        start: i64,
        end: i64,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        if let Some(api) = &options.api {
            return Err(format!("openai has one API; api '{api}' does not apply"));
        }
        Ok(data::truth(world, org, start, end))
    }
}

enum Source {
    Completions,
    Embeddings,
    FileSearchCalls,
    WebSearchCalls,
    /// Served with valid, empty buckets (the truth counts only the endpoints
    /// above, so minor endpoints stay empty).
    Empty,
}

struct Endpoint {
    name: &'static str,
    object: &'static str,
    dims: &'static [&'static str],
    measures: &'static [&'static str],
    filters: &'static [(&'static str, usize)],
    source: Source,
}

const PER_MODEL: &[(&str, usize)] = &[("project_ids", 0), ("user_ids", 1), ("api_key_ids", 2), ("models", 3)];
const IMAGE_DIMS: &[&str] = &["project_id", "user_id", "api_key_id", "model", "size", "source"];
const IMAGE_FILTERS: &[(&str, usize)] = &[
    ("project_ids", 0),
    ("user_ids", 1),
    ("api_key_ids", 2),
    ("models", 3),
    ("sizes", 4),
    ("sources", 5),
];

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        name: "completions",
        object: "organization.usage.completions.result",
        dims: COMPLETION_DIMS,
        measures: COMPLETION_MEASURES,
        filters: &[
            ("project_ids", 0),
            ("user_ids", 1),
            ("api_key_ids", 2),
            ("models", 3),
            ("batch", 4),
        ],
        source: Source::Completions,
    },
    Endpoint {
        name: "embeddings",
        object: "organization.usage.embeddings.result",
        dims: EMBEDDING_DIMS,
        measures: EMBEDDING_MEASURES,
        filters: PER_MODEL,
        source: Source::Embeddings,
    },
    Endpoint {
        name: "moderations",
        object: "organization.usage.moderations.result",
        dims: EMBEDDING_DIMS,
        measures: &["input_tokens", "num_model_requests"],
        filters: PER_MODEL,
        source: Source::Empty,
    },
    Endpoint {
        name: "images",
        object: "organization.usage.images.result",
        dims: IMAGE_DIMS,
        measures: &["images", "num_model_requests"],
        filters: IMAGE_FILTERS,
        source: Source::Empty,
    },
    Endpoint {
        name: "audio_speeches",
        object: "organization.usage.audio_speeches.result",
        dims: EMBEDDING_DIMS,
        measures: &["characters", "num_model_requests"],
        filters: PER_MODEL,
        source: Source::Empty,
    },
    Endpoint {
        name: "audio_transcriptions",
        object: "organization.usage.audio_transcriptions.result",
        dims: EMBEDDING_DIMS,
        measures: &["seconds", "num_model_requests"],
        filters: PER_MODEL,
        source: Source::Empty,
    },
    Endpoint {
        name: "vector_stores",
        object: "organization.usage.vector_stores.result",
        dims: &["project_id"],
        measures: &["usage_bytes"],
        filters: &[("project_ids", 0)],
        source: Source::Empty,
    },
    Endpoint {
        name: "file_search_calls",
        object: "organization.usage.file_searches.result",
        dims: FILE_SEARCH_DIMS,
        measures: FILE_SEARCH_MEASURES,
        filters: &[
            ("project_ids", 0),
            ("user_ids", 1),
            ("api_key_ids", 2),
            ("vector_store_ids", 3),
        ],
        source: Source::FileSearchCalls,
    },
    Endpoint {
        name: "web_search_calls",
        object: "organization.usage.web_searches.result",
        dims: WEB_SEARCH_DIMS,
        measures: WEB_SEARCH_MEASURES,
        filters: &[
            ("project_ids", 0),
            ("user_ids", 1),
            ("api_key_ids", 2),
            ("models", 3),
            ("context_levels", 4),
        ],
        source: Source::WebSearchCalls,
    },
    Endpoint {
        name: "code_interpreter_sessions",
        object: "organization.usage.code_interpreter_sessions.result",
        dims: &["project_id"],
        measures: &["num_sessions"],
        filters: &[("project_ids", 0)],
        source: Source::Empty,
    },
];

fn error(status: u16, message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Reply {
    Reply::json(
        status,
        json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

fn bad_request(param: &str, message: impl AsRef<str>) -> Reply {
    error(400, message.as_ref(), "invalid_request_error", Some(param), None)
}

/// Answers one authorized request under `/openai/{org}/`.
fn handle(world: &World<'_>, request: &SimRequest<'_>) -> Reply {
    let (org, method) = (request.org, request.method);
    // Everything OpenAI serves is under /v1/; anything else is a 404 too.
    let tail = request.tail.strip_prefix("v1/").unwrap_or("");
    let not_found = || {
        error(
            404,
            &format!("Invalid URL ({method} /{})", request.tail),
            "invalid_request_error",
            None,
            None,
        )
    };
    if method != "GET" {
        return not_found();
    }
    let params = Params::parse(request.query);
    if tail == "organization/projects" {
        return names::projects(world, org, &params);
    }
    if let Some(project) = tail
        .strip_prefix("organization/projects/")
        .and_then(|rest| rest.strip_suffix("/api_keys"))
    {
        return names::project_keys(world, org, project, &params);
    }
    let result = if tail == "organization/costs" {
        costs(world, org, &params)
    } else if let Some(name) = tail.strip_prefix("organization/usage/") {
        match ENDPOINTS.iter().find(|e| e.name == name) {
            Some(endpoint) => usage(world, org, endpoint, &params),
            None => return not_found(),
        }
    } else {
        return not_found();
    };
    result.unwrap_or_else(|reply| reply)
}

/// Checks the window parameters; returns the raw `end_time` (data bound) and the page of buckets.
fn window(
    world: &World<'_>,
    params: &Params,
    width: i64,
    default_limit: i64,
    max_limit: i64,
) -> Result<(Option<i64>, query::Page), Reply> {
    let start = match params.get("start_time") {
        None => return Err(bad_request("start_time", "Missing required parameter: 'start_time'.")),
        Some(text) => text.parse::<i64>().map_err(|_| {
            bad_request(
                "start_time",
                format!("Invalid 'start_time': expected Unix seconds, got '{text}'."),
            )
        })?,
    };
    let end = match params.get("end_time") {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            bad_request(
                "end_time",
                format!("Invalid 'end_time': expected Unix seconds, got '{text}'."),
            )
        })?),
    };
    let limit = query::limit(params, default_limit, max_limit).map_err(|m| bad_request("limit", m))?;
    let first = floor(start, width);
    let last = end.unwrap_or(world.now).min(world.now);
    let count = if last > first {
        (last - first + width - 1) / width
    } else {
        0
    };
    let cursor = match params.get("page") {
        None => None,
        Some(text) => Some(
            query::decode_cursor(text)
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| bad_request("page", "Invalid 'page' cursor."))?,
        ),
    };
    let page = Buckets { first, width, count }
        .page(limit, cursor)
        .map_err(|m| bad_request("page", m))?;
    Ok((end, page))
}

fn envelope(buckets: Vec<Value>, next: Option<i64>) -> Reply {
    Reply::json(
        200,
        object([
            ("object", Value::from("page")),
            ("data", Value::Array(buckets)),
            ("has_more", Value::from(next.is_some())),
            ("next_page", text(next.map(|n| query::encode_cursor(&n.to_string())))),
        ]),
    )
}

fn bucket(start: i64, end: i64, results: Vec<Value>) -> Value {
    object([
        ("object", Value::from("bucket")),
        ("start_time", Value::from(start)),
        ("end_time", Value::from(end)),
        ("results", Value::Array(results)),
    ])
}

fn groups(dims: &'static [&'static str]) -> Vec<Group> {
    const INDEX: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
    dims.iter()
        .enumerate()
        .map(|(i, name)| Group {
            name,
            dims: &INDEX[i..=i],
        })
        .collect()
}

fn usage(world: &World<'_>, org: &str, ep: &Endpoint, params: &Params) -> Result<Reply, Reply> {
    let width_text = params.get("bucket_width").unwrap_or("1d");
    let width = query::width(width_text).ok_or_else(|| {
        bad_request(
            "bucket_width",
            format!("Invalid 'bucket_width': '{width_text}'. Expected one of 1m, 1h, 1d."),
        )
    })?;
    let (default_limit, max_limit) = query::usage_limits(width);
    let mask = query::group_mask(&groups(ep.dims), &params.all("group_by"), ep.dims.len())
        .map_err(|m| bad_request("group_by", m))?;
    let filters = query::filters(params, ep.filters);
    let (end, page) = window(world, params, width, default_limit, max_limit)?;
    let mut buckets = Vec::new();
    for &b in &page.starts {
        let hi = (b + width).min(end.unwrap_or(i64::MAX));
        let rows = query::hours(b, hi).flat_map(|hour| match ep.source {
            Source::Completions => data::completions(world, org, hour),
            Source::Embeddings => data::embeddings(world, org, hour),
            Source::FileSearchCalls => data::file_search_calls(world, org, hour),
            Source::WebSearchCalls => data::web_search_calls(world, org, hour),
            Source::Empty => Vec::new(),
        });
        let rows: Vec<Row> = rows.filter(|r| query::keep(r, &filters)).collect();
        let results: Vec<Value> = query::aggregate(rows, &mask)
            .into_iter()
            .map(|row| {
                let mut m = Map::new();
                m.insert("object".into(), Value::from(ep.object));
                for (name, v) in ep.measures.iter().zip(&row.vals) {
                    m.insert((*name).into(), Value::from(*v));
                }
                for (name, v) in ep.dims.iter().zip(row.dims) {
                    m.insert((*name).into(), v);
                }
                Value::Object(m)
            })
            .collect();
        buckets.push(bucket(b, b + width, results));
    }
    Ok(envelope(buckets, page.next))
}

/// A JSON number with the decimal's exact text (serde_json keeps it verbatim
/// under `arbitrary_precision`), like OpenAI's long-tailed `amount.value`.
fn exact_number(text: &str) -> Value {
    Number::from_str(text).map(Value::Number).unwrap_or(Value::Null)
}

fn costs(world: &World<'_>, org: &str, params: &Params) -> Result<Reply, Reply> {
    let width_text = params.get("bucket_width").unwrap_or("1d");
    if width_text != "1d" {
        return Err(bad_request(
            "bucket_width",
            format!("Invalid 'bucket_width': '{width_text}'. The costs endpoint only supports '1d'."),
        ));
    }
    let mask = query::group_mask(&groups(COST_DIMS), &params.all("group_by"), COST_DIMS.len())
        .map_err(|m| bad_request("group_by", m))?;
    let filters = query::filters(params, &[("project_ids", 0), ("api_key_ids", 2)]);
    let (_, page) = window(world, params, crate::simulator::data::DAY, 7, 180)?;
    let mut buckets = Vec::new();
    for &b in &page.starts {
        let rows: Vec<Row> = data::costs(world, org, b)
            .into_iter()
            .filter(|r| query::keep(r, &filters))
            .collect();
        let results: Vec<Value> = query::aggregate(rows, &mask)
            .into_iter()
            .map(|row| {
                let mut m = Map::new();
                m.insert("object".into(), Value::from("organization.costs.result"));
                m.insert(
                    "amount".into(),
                    object([
                        ("value", exact_number(&row.amount.to_string())),
                        ("currency", Value::from("usd")),
                    ]),
                );
                for (name, v) in COST_DIMS.iter().zip(row.dims) {
                    m.insert((*name).into(), v);
                }
                m.insert("quantity".into(), Value::from(row.vals[0]));
                m.insert("quantity_unit".into(), Value::from(data::COST_UNIT));
                Value::Object(m)
            })
            .collect();
        buckets.push(bucket(b, b + crate::simulator::data::DAY, results));
    }
    Ok(envelope(buckets, page.next))
}
