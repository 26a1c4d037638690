//! Google Vertex AI: the service-account token endpoint, BigQuery
//! `jobs.query` / `jobs.getQueryResults` over a simulated billing export, and
//! Cloud Monitoring's token-count time series.
//!
//! Routes under `/google_vertex/{org}/`:
//! - `POST token`: the `jwt-bearer` grant. The assertion's RS256 signature is
//!   verified with the public key of a service account registered with
//!   [`register_service_account`] (keys are made at test or demo time, never
//!   stored in the repository); `iss`, `aud` (the key's `token_uri`), `kid`,
//!   `scope` and the one-hour lifetime are checked. Errors are Google's
//!   `{"error": "invalid_grant", ...}`. Tokens are `ya29.FAKE-sim-{org}-...`.
//! - `POST bigquery/v2/projects/{org}-vertex/queries`: the query must name
//!   the org's export table ([`billing_table`]); the first answer is always
//!   `jobComplete: false` (the job id encodes its parameters).
//! - `GET bigquery/v2/projects/{org}-vertex/queries/{job}`: complete results,
//!   `maxResults` rows a page with `pageToken`; TIMESTAMP cells as integer
//!   microseconds only with `formatOptions.useInt64Timestamp=true` (else
//!   BigQuery's lossy float seconds).
//! - `GET monitoring/v3/projects/{org}-vertex/timeSeries`: hourly token
//!   counts per model and type, at most 3 series a page.
//!
//! A service account whose email starts with `no-bigquery` gets tokens but
//! 403 `accessDenied` from BigQuery and Monitoring (missing roles).
//!
//! Data: per hour and SKU a usage amount (tokens, or node hours); the export
//! rows are per UTC day and SKU with cost in the org's billing currency
//! (org-1 USD, others EUR at a fixed conversion rate) and credits (free tier
//! on one SKU, promotions on some days), negative as in the export.

mod keys;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::{SimRequest, SimulatedProvider, TruthOptions};
use crate::simulator::data::{
    day_of, days_of, hours_of, round9, traffic, OrgDraw, Row, TruthBook, TruthRow, World, DAY, HOUR,
};
use crate::simulator::query::{decode_cursor, encode_cursor, Params};
use crate::simulator::server::Reply;

pub use keys::{register_service_account, service_account_json};

pub(crate) const NAME: &str = "google_vertex";

pub(crate) struct GoogleVertex;

/// The services the export holds for Vertex and Gemini spend.
const SERVICES: [&str; 2] = ["Vertex AI", "Gemini API"];

/// A SKU of the export: service (index into [`SERVICES`]), id, description,
/// the model it is billed for (as the truth names it), the Monitoring series
/// it shows in (Vertex publisher models only), project, region, price per
/// unit (`price / 10^shift` USD) and hourly base units (0: one unit an hour).
struct Sku {
    service: usize,
    id: &'static str,
    description: &'static str,
    model: &'static str,
    series: Option<(&'static str, &'static str)>,
    project: &'static str,
    region: Option<&'static str>,
    price: i64,
    shift: u32,
    base: i64,
}

const SKUS: [Sku; 6] = [
    Sku {
        service: 0,
        id: "FDB0-A1C2-0001",
        description: "Gemini 2.5 Flash Text Input - Predictions",
        model: "gemini-2.5-flash",
        series: Some(("gemini-2.5-flash", "input")),
        project: "ml",
        region: Some("us-central1"),
        price: 30,
        shift: 8,
        base: 900_000,
    },
    Sku {
        service: 0,
        id: "FDB0-A1C2-0002",
        description: "Gemini 2.5 Flash Text Output - Predictions",
        model: "gemini-2.5-flash",
        series: Some(("gemini-2.5-flash", "output")),
        project: "ml",
        region: Some("us-central1"),
        price: 250,
        shift: 8,
        base: 120_000,
    },
    Sku {
        service: 0,
        id: "FDB0-A1C2-0003",
        description: "Gemini 2.5 Pro Text Input - Predictions",
        model: "gemini-2.5-pro",
        series: Some(("gemini-2.5-pro", "input")),
        project: "web",
        region: Some("europe-west4"),
        price: 125,
        shift: 8,
        base: 200_000,
    },
    Sku {
        service: 0,
        id: "FDB0-A1C2-0004",
        description: "Gemini 2.5 Pro Text Output - Predictions",
        model: "gemini-2.5-pro",
        series: Some(("gemini-2.5-pro", "output")),
        project: "web",
        region: Some("europe-west4"),
        price: 1000,
        shift: 8,
        base: 30_000,
    },
    Sku {
        service: 1,
        id: "GA00-B7E1-0001",
        description: "Gemini 2.0 Flash Input token count",
        model: "gemini-2.0-flash",
        series: None,
        project: "ml",
        region: None,
        price: 10,
        shift: 8,
        base: 500_000,
    },
    Sku {
        service: 0,
        id: "FDB0-A1C2-0099",
        description: "Vertex AI Prediction: Online Prediction n1-standard-4 Node Hours",
        model: "",
        series: None,
        project: "ml",
        region: Some("us-central1"),
        price: 21_850,
        shift: 5,
        base: 0,
    },
];

/// The project id of the org's Vertex workloads (queries and Monitoring).
pub fn project(org: &str) -> String {
    format!("{org}-vertex")
}

/// The org's billing export table, as `billing_table` names it.
pub fn billing_table(org: &str) -> String {
    format!("{org}-billing.billing_export.gcp_billing_export_v1_0A1B2C_3D4E5F_6A7B8C")
}

/// The org's billing currency and its rate per USD.
fn currency(org: &str) -> (&'static str, Decimal) {
    if org == "org-1" {
        ("USD", Decimal::ONE)
    } else {
        ("EUR", Decimal::new(912_345, 6))
    }
}

/// Units of every SKU in `hour` (restated), or nothing before the history
/// or for an incomplete hour.
fn hour_units(world: &World<'_>, org: &str, hour: i64) -> Vec<i64> {
    if !world.has_data(hour) {
        return Vec::new();
    }
    let draw = OrgDraw::new(world.seed, NAME, org);
    let rows: Vec<Row> = SKUS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let r = draw.at(&[hour, i as i64]);
            let units = if s.base == 0 {
                1
            } else {
                s.base * traffic(hour) / 100 * (50 + (r % 100) as i64) / 100
            };
            Row::usage(vec![], vec![units])
        })
        .collect();
    world
        .restate(NAME, org, hour, rows)
        .into_iter()
        .map(|r| r.vals[0])
        .collect()
}

/// One export row of a day: (SKU index, cost and credits in the billing
/// currency as BigQuery's NUMERIC sums give them).
struct DayRow {
    sku: usize,
    cost: Decimal,
    credits: Decimal,
}

fn day_rows(world: &World<'_>, org: &str, day: i64) -> Vec<DayRow> {
    let mut units = [0_i64; SKUS.len()];
    let mut any = false;
    for hour in hours_of(day, day + DAY) {
        for (i, u) in hour_units(world, org, hour).into_iter().enumerate() {
            units[i] += u;
            any = true;
        }
    }
    if !any {
        return Vec::new();
    }
    let draw = OrgDraw::new(world.seed, NAME, org);
    let (_, conversion) = currency(org);
    let rate = draw.rate();
    SKUS.iter()
        .enumerate()
        .map(|(i, s)| {
            let usd = Decimal::from(units[i]) * Decimal::from(s.price) * rate / Decimal::from(10_i64.pow(s.shift));
            let cost = round9(usd * conversion);
            let credits = match i {
                // Free tier: the first 0.25 (billing currency) of Flash input each day.
                0 => -cost.min(Decimal::new(25, 2)),
                // A promotion on some days: 10% off Pro.
                2 | 3 if draw.at(&[day, -7]).is_multiple_of(3) => -round9(cost / Decimal::from(10)),
                _ => Decimal::ZERO,
            };
            DayRow { sku: i, cost, credits }
        })
        .collect()
}

fn error(status: u16, reason: &str, state: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {"code": status, "message": message,
                         "errors": [{"message": message, "domain": "global", "reason": reason}],
                         "status": state}}),
    )
}

fn denied(message: &str) -> Reply {
    error(403, "accessDenied", "PERMISSION_DENIED", message)
}

fn bad(message: &str) -> Reply {
    error(400, "invalid", "INVALID_ARGUMENT", message)
}

fn bearer<'a>(request: &'a SimRequest<'_>) -> Option<&'a str> {
    request.header("authorization").and_then(|h| h.strip_prefix("Bearer "))
}

fn decimal_text(d: Decimal) -> String {
    d.normalize().to_string()
}

/// A job id that carries its query: window in microseconds and services.
fn job_id(start: i64, end: i64, mask: u8) -> String {
    format!("job_{start}_{end}_{mask}")
}

fn parse_job(id: &str) -> Option<(i64, i64, u8)> {
    let mut parts = id.strip_prefix("job_")?.split('_');
    let start = parts.next()?.parse().ok()?;
    let end = parts.next()?.parse().ok()?;
    let mask = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((start, end, mask))
}

fn timestamp_param(value: &Value) -> Option<i64> {
    let text = value.get("parameterValue")?.get("value")?.as_str()?;
    DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z")
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)))
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").map(|t| t.and_utc()))
        .ok()
        .map(|t| t.timestamp_micros())
}

fn jobs_query(org: &str, body: &[u8]) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return bad("Invalid JSON payload received.");
    };
    if body.get("useLegacySql").and_then(Value::as_bool) != Some(false) {
        return bad("This simulator answers Standard SQL only (useLegacySql: false).");
    }
    let location = body.get("location").and_then(Value::as_str).unwrap_or("US");
    let query = body.get("query").and_then(Value::as_str).unwrap_or_default();
    let table = billing_table(org);
    let quoted: String = table.split('.').map(|p| format!("`{p}`")).collect::<Vec<_>>().join(".");
    if !query.contains(&quoted) {
        return error(
            404,
            "notFound",
            "NOT_FOUND",
            "Not found: Table was not found in location US (the query must read the org's billing export table)",
        );
    }
    if location != "US" {
        return error(
            404,
            "notFound",
            "NOT_FOUND",
            &format!("Not found: Dataset {org}-billing:billing_export was not found in location {location}"),
        );
    }
    let params = body
        .get("queryParameters")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let param = |name: &str| {
        params
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
    };
    let (Some(start), Some(end)) = (
        param("start").and_then(timestamp_param),
        param("end").and_then(timestamp_param),
    ) else {
        return bad("Query parameter 'start' and 'end' must be TIMESTAMP parameters.");
    };
    let mut mask = 0_u8;
    for value in param("services")
        .and_then(|p| p.pointer("/parameterValue/arrayValues"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(i) = SERVICES
            .iter()
            .position(|s| Some(*s) == value.get("value").and_then(Value::as_str))
        {
            mask |= 1 << i;
        }
    }
    Reply::json(
        200,
        json!({
            "kind": "bigquery#queryResponse",
            "jobReference": {"projectId": project(org), "jobId": job_id(start, end, mask), "location": "US"},
            "jobComplete": false,
        }),
    )
}

const SCHEMA: [(&str, &str); 11] = [
    ("day", "TIMESTAMP"),
    ("service", "STRING"),
    ("sku_id", "STRING"),
    ("sku", "STRING"),
    ("project_id", "STRING"),
    ("region", "STRING"),
    ("cost_type", "STRING"),
    ("currency", "STRING"),
    ("conversion_rate", "NUMERIC"),
    ("cost", "NUMERIC"),
    ("credits", "NUMERIC"),
];

fn query_results(world: &World<'_>, org: &str, job: &str, params: &Params) -> Reply {
    let Some((start, end, mask)) = parse_job(job) else {
        return error(
            404,
            "notFound",
            "NOT_FOUND",
            &format!("Not found: Job {}:US.{job}", project(org)),
        );
    };
    let size: usize = match params.get("maxResults").map(str::parse) {
        None => 1000,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return bad("maxResults must be a positive integer"),
    };
    let offset: usize = match params.get("pageToken") {
        None => 0,
        Some(token) => match decode_cursor(token).and_then(|t| t.parse().ok()) {
            Some(n) => n,
            None => return bad("Invalid page token."),
        },
    };
    let int64 = params.get("formatOptions.useInt64Timestamp") == Some("true");
    let (code, conversion) = currency(org);
    let mut rows = Vec::new();
    for day in days_of(start.div_euclid(1_000_000), end.div_euclid(1_000_000)) {
        if day * 1_000_000 < start {
            continue;
        }
        for row in day_rows(world, org, day) {
            let s = &SKUS[row.sku];
            if mask & (1 << s.service) == 0 {
                continue;
            }
            let day_cell = if int64 {
                (day * 1_000_000).to_string()
            } else {
                format!("{:E}", day as f64)
            };
            rows.push(json!({"f": [
                {"v": day_cell}, {"v": SERVICES[s.service]}, {"v": s.id}, {"v": s.description},
                {"v": format!("{org}-{}", s.project)}, {"v": s.region}, {"v": "regular"}, {"v": code},
                {"v": decimal_text(conversion)}, {"v": decimal_text(row.cost)}, {"v": decimal_text(row.credits)},
            ]}));
        }
    }
    let total = rows.len();
    let page: Vec<Value> = rows.into_iter().skip(offset).take(size).collect();
    let fields: Vec<Value> = SCHEMA
        .iter()
        .map(|(name, kind)| json!({"name": name, "type": kind, "mode": "NULLABLE"}))
        .collect();
    let mut body = json!({
        "kind": "bigquery#getQueryResultsResponse",
        "schema": {"fields": fields},
        "jobReference": {"projectId": project(org), "jobId": job, "location": "US"},
        "totalRows": total.to_string(),
        "rows": page,
        "totalBytesProcessed": "1048576",
        "jobComplete": true,
        "cacheHit": false,
    });
    if offset + size < total {
        body["pageToken"] = json!(encode_cursor(&(offset + size).to_string()));
    }
    Reply::json(200, body)
}

/// Series a Monitoring page holds at most (fewer than asked, as Monitoring may).
const SERIES_PER_PAGE: usize = 3;

fn time_series(world: &World<'_>, org: &str, params: &Params) -> Reply {
    let metric = "aiplatform.googleapis.com/publisher/online_serving/token_count";
    if !params.get("filter").is_some_and(|f| f.contains(metric)) {
        return bad("filter must select the token_count metric");
    }
    let time = |name: &str| {
        params
            .get(name)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp())
    };
    let (Some(start), Some(end)) = (time("interval.startTime"), time("interval.endTime")) else {
        return bad("interval.startTime and interval.endTime must be RFC 3339 times");
    };
    if params.get("aggregation.alignmentPeriod") != Some("3600s") || end % HOUR != 0 || start % HOUR != 0 {
        return bad("this simulator serves whole hours: alignmentPeriod 3600s on an hour-aligned interval");
    }
    let groups = params.all("aggregation.groupByFields");
    if !groups.contains(&"resource.label.model_user_id") || !groups.contains(&"metric.label.type") {
        return bad("group by resource.label.model_user_id and metric.label.type");
    }
    let offset: usize = match params.get("pageToken") {
        None | Some("") => 0,
        Some(token) => match decode_cursor(token).and_then(|t| t.parse().ok()) {
            Some(n) => n,
            None => return bad("Invalid page token."),
        },
    };
    let hours: Vec<(i64, Vec<i64>)> = hours_of(start, end).map(|h| (h, hour_units(world, org, h))).collect();
    let mut series = Vec::new();
    for (i, s) in SKUS.iter().enumerate() {
        let Some((model, kind)) = s.series else { continue };
        // Newest first, as Monitoring returns points.
        let points: Vec<Value> = hours
            .iter()
            .rev()
            .filter_map(|(h, units)| units.get(i).filter(|u| **u > 0).map(|u| (*h, *u)))
            .map(|(h, u)| {
                let at = |t: i64| {
                    Utc.timestamp_opt(t, 0)
                        .single()
                        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                };
                json!({"interval": {"startTime": at(h), "endTime": at(h + HOUR)}, "value": {"int64Value": u.to_string()}})
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        series.push(json!({
            "metric": {"type": metric, "labels": {"type": kind}},
            "resource": {"type": "aiplatform.googleapis.com/PublisherModel",
                         "labels": {"project_id": project(org), "model_user_id": model}},
            "metricKind": "DELTA", "valueType": "INT64", "points": points,
        }));
    }
    let total = series.len();
    let page: Vec<Value> = series.into_iter().skip(offset).take(SERIES_PER_PAGE).collect();
    let next = if offset + SERIES_PER_PAGE < total {
        encode_cursor(&(offset + SERIES_PER_PAGE).to_string())
    } else {
        String::new()
    };
    Reply::json(200, json!({"timeSeries": page, "unit": "1", "nextPageToken": next}))
}

impl SimulatedProvider for GoogleVertex {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_path(&self, org: &str) -> String {
        format!("/{NAME}/{org}/bigquery/v2")
    }

    /// The key is made outside (openssl at demo or test time) and registered,
    /// so generated fleets leave Vertex out.
    fn account_credentials(&self, _org: &str) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply> {
        if request.tail == "token" {
            // The grant carries its own proof; checked by the route.
            return Ok(());
        }
        let prefix = format!("ya29.FAKE-sim-{}-", request.org);
        match bearer(request) {
            Some(token) if request.org_known && token.starts_with(&prefix) => Ok(()),
            _ => Err(self.expired_credentials()),
        }
    }

    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply {
        let org = request.org;
        if request.tail == "token" {
            return if request.method == "POST" {
                keys::grant(org, request.body, world.now)
            } else {
                error(405, "notAllowed", "METHOD_NOT_ALLOWED", "POST the grant")
            };
        }
        if bearer(request).is_some_and(|t| t.contains("-no-bigquery")) {
            return denied(&format!(
                "Access Denied: Project {}: User does not have bigquery.jobs.create permission in project {}.",
                project(org),
                project(org)
            ));
        }
        let queries = format!("bigquery/v2/projects/{}/queries", project(org));
        let series = format!("monitoring/v3/projects/{}/timeSeries", project(org));
        let params = Params::parse(request.query);
        match (request.method, request.tail) {
            ("POST", tail) if tail == queries => jobs_query(org, request.body),
            ("GET", tail) if tail.starts_with(&format!("{queries}/")) => {
                query_results(world, org, &tail[queries.len() + 1..], &params)
            }
            ("GET", tail) if tail == series => time_series(world, org, &params),
            (_, tail) if tail.starts_with("bigquery/v2/projects/") || tail.starts_with("monitoring/v3/projects/") => {
                denied("Access Denied: the service account has no role in this project.")
            }
            _ => error(404, "notFound", "NOT_FOUND", "Not found"),
        }
    }

    fn rate_limited(&self, retry_after: u64) -> Reply {
        let mut reply = error(
            429,
            "rateLimitExceeded",
            "RESOURCE_EXHAUSTED",
            "Exceeded rate limits: too many api requests per user per method for this user_method.",
        );
        reply.retry_after = Some(retry_after);
        reply
    }

    fn expired_credentials(&self) -> Reply {
        error(
            401,
            "authError",
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other \
             valid authentication credential.",
        )
    }

    fn server_error(&self) -> Reply {
        error(
            503,
            "backendError",
            "UNAVAILABLE",
            "The service is currently unavailable.",
        )
    }

    /// Per (UTC day, model, unit ""): tokens of the Vertex publisher models
    /// (Monitoring) for hours starting in the window; `cost` and `credits`
    /// of every export row of the days the window touches (both services),
    /// each converted to USD as stored (`round9(amount / rate)`), credits
    /// positive.
    fn truth(
        &self,
        world: &World<'_>,
        org: &str,
        start: i64,
        end: i64,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        if let Some(api) = &options.api {
            return Err(format!("google_vertex has one API; api '{api}' does not apply"));
        }
        let mut book = TruthBook::default();
        for hour in hours_of(start, end) {
            for (i, units) in hour_units(world, org, hour).into_iter().enumerate() {
                let Some((model, kind)) = SKUS[i].series else { continue };
                let t = book.entry(day_of(hour), model, "");
                if kind == "input" {
                    t.input_tokens += units;
                } else {
                    t.output_tokens += units;
                }
            }
        }
        let (_, conversion) = currency(org);
        for day in days_of(start, end) {
            for row in day_rows(world, org, day) {
                let t = book.entry(day_of(day), SKUS[row.sku].model, "");
                t.cost += round9(row.cost / conversion);
                t.credits += round9(-row.credits / conversion);
            }
        }
        Ok(book.finish())
    }
}
