//! Google's answers read into records: BigQuery query results of the billing
//! export (cost and credits per day) and Cloud Monitoring time series (token
//! counts per hour).
//!
//! BigQuery sends every cell as a string (or null) whatever its type:
//! NUMERIC sums are exact decimal strings, TIMESTAMPs integer microseconds
//! because the adapter asks for `formatOptions.useInt64Timestamp` (the
//! default float-seconds form such as `"1.7369E9"` is lossy and refused).
//! Cells are found by the schema's field names, never by position.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::providers::json::{Json, Object};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;

use crate::normalize::schema::{
    CostSource, Dimensions, FetchedRecord, Granularity, Measures, RawField, RawGroup, RecordIdentity, RecordType,
};
use crate::providers::json::{self, JsonError};

fn err(msg: impl Into<String>) -> JsonError {
    JsonError(msg.into())
}

/// Where a query job runs, from `jobReference`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRef {
    pub project_id: String,
    pub job_id: String,
    pub location: Option<String>,
}

/// One `jobs.query` or `jobs.getQueryResults` answer.
#[derive(Debug)]
pub struct QueryPage {
    pub job: JobRef,
    /// `false`: no rows yet, poll `getQueryResults`.
    pub complete: bool,
    pub records: Vec<FetchedRecord>,
    pub page_token: Option<String>,
}

/// Columns of the billing query (see `bigquery::QUERY`) that identify a
/// record; every one is a raw grouping field.
pub const GROUP_COLUMNS: &[&str] = &[
    "service",
    "sku_id",
    "sku",
    "project_id",
    "region",
    "cost_type",
    "currency",
    "conversion_rate",
];

pub fn query_page(body: &Json, endpoint: &str) -> Result<QueryPage, JsonError> {
    let obj = json::object(body, "the query response")?;
    let job = obj
        .get("jobReference")
        .and_then(Json::as_object)
        .ok_or_else(|| err("field 'jobReference' is missing"))?;
    let job = JobRef {
        project_id: json::str_field(job, "projectId"),
        job_id: json::str_field(job, "jobId"),
        location: job.get("location").and_then(Json::as_str).map(str::to_string),
    };
    let safe = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c));
    if !safe(&job.project_id) || !safe(&job.job_id) {
        return Err(err("jobReference has an empty or unusual projectId/jobId"));
    }
    let complete = obj.get("jobComplete").and_then(Json::as_bool).unwrap_or(false);
    if !complete {
        return Ok(QueryPage {
            job,
            complete,
            records: Vec::new(),
            page_token: None,
        });
    }
    if let Some(errors) = obj.get("errors").and_then(Json::as_array).filter(|e| !e.is_empty()) {
        return Err(err(format!(
            "the query job reported errors: {}",
            Json::Array(errors.to_vec())
        )));
    }
    let fields = schema_fields(obj)?;
    let rows = match obj.get("rows") {
        None | Some(Json::Null) => &Vec::new(),
        Some(Json::Array(rows)) => rows,
        Some(_) => return Err(err("field 'rows' should be an array")),
    };
    let records = rows
        .iter()
        .enumerate()
        .map(|(i, row)| billing_record(&fields, row, endpoint).map_err(|e| err(format!("rows[{i}]: {}", e.0))))
        .collect::<Result<Vec<_>, _>>()?;
    let page_token = obj
        .get("pageToken")
        .and_then(Json::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok(QueryPage {
        job,
        complete,
        records,
        page_token,
    })
}

/// (name, type) of each top-level schema field, in cell order.
fn schema_fields(obj: &Object) -> Result<Vec<(String, String)>, JsonError> {
    let fields = obj
        .get("schema")
        .and_then(|s| s.get("fields"))
        .and_then(Json::as_array)
        .ok_or_else(|| err("a complete query response has no schema.fields"))?;
    Ok(fields
        .iter()
        .map(|f| {
            let text = |k: &str| f.get(k).and_then(Json::as_str).unwrap_or_default().to_string();
            (text("name"), text("type"))
        })
        .collect())
}

/// One result row as name -> cell text (None for null).
fn cells<'a>(
    fields: &'a [(String, String)],
    row: &'a Json<'a>,
) -> Result<BTreeMap<&'a str, Option<&'a str>>, JsonError> {
    let values = row
        .get("f")
        .and_then(Json::as_array)
        .ok_or_else(|| err("a row has no 'f' array"))?;
    if values.len() != fields.len() {
        return Err(err(format!(
            "a row has {} cells but the schema has {} fields",
            values.len(),
            fields.len()
        )));
    }
    let mut out = BTreeMap::new();
    for ((name, _), cell) in fields.iter().zip(values) {
        let text = match cell.get("v") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.as_ref()),
            Some(_) => {
                return Err(err(format!(
                    "cell '{name}' is not a string (BigQuery sends every scalar as one)"
                )))
            }
        };
        out.insert(name.as_str(), text);
    }
    Ok(out)
}

/// A TIMESTAMP cell as integer microseconds.
pub fn timestamp_micros(text: &str, field: &str) -> Result<DateTime<Utc>, JsonError> {
    let micros: i64 = text.parse().map_err(|_| {
        err(format!(
            "cell '{field}' ({text}) is not integer microseconds; the query must ask formatOptions.useInt64Timestamp"
        ))
    })?;
    Utc.timestamp_micros(micros)
        .single()
        .ok_or_else(|| err(format!("cell '{field}' ({text}) is out of range")))
}

fn decimal_cell(cells: &BTreeMap<&str, Option<&str>>, field: &str) -> Result<Decimal, JsonError> {
    let text = cells
        .get(field)
        .ok_or_else(|| err(format!("the result has no column '{field}'")))?
        .ok_or_else(|| err(format!("cell '{field}' is null; a number was expected")))?;
    Decimal::from_str(text.trim())
        .or_else(|_| Decimal::from_scientific(text.trim()))
        .map_err(|_| err(format!("cell '{field}' is not a decimal number ({text})")))
}

/// One row of the billing query: gross cost and credits of a day, service,
/// SKU, project, region, cost type and currency.
fn billing_record(fields: &[(String, String)], row: &Json, endpoint: &str) -> Result<FetchedRecord, JsonError> {
    let cells = cells(fields, row)?;
    let day_text = cells
        .get("day")
        .copied()
        .flatten()
        .ok_or_else(|| err("cell 'day' is missing or null"))?;
    let start = timestamp_micros(day_text, "day")?;
    if start.timestamp().rem_euclid(86_400) != 0 || start.timestamp_subsec_nanos() != 0 {
        return Err(err(format!(
            "cell 'day' ({}) is not a UTC midnight",
            start.to_rfc3339()
        )));
    }
    let mut raw_group = RawGroup::new();
    for column in GROUP_COLUMNS {
        let cell = cells
            .get(column)
            .ok_or_else(|| err(format!("the result has no column '{column}'")))?;
        raw_group.insert(*column, cell.map_or(RawField::Null, |s| RawField::Text(s.into())));
    }
    let text = |name: &str| cells.get(name).copied().flatten().unwrap_or_default().to_string();
    let gross = decimal_cell(&cells, "cost")?;
    // The export's credits are negative; a row without any sums to 0.
    let credits = -decimal_cell(&cells, "credits")?;
    let currency = text("currency").to_ascii_uppercase();
    let rate = if currency == "USD" {
        Decimal::ONE
    } else {
        let rate = decimal_cell(&cells, "conversion_rate")?;
        if rate <= Decimal::ZERO {
            return Err(err(format!(
                "conversion_rate {rate} of a {currency} row is not positive"
            )));
        }
        rate
    };
    let usd = |amount: Decimal| {
        amount
            .checked_div(rate)
            .ok_or_else(|| err(format!("{amount} / {rate} overflows")))
    };
    let sku = text("sku");
    let measures = Measures {
        cost: usd(gross)?,
        credits: usd(credits)?,
        amount_original: gross,
        currency: currency.into(),
        cost_source: CostSource::Billed,
        requests_reported: false,
        ..Measures::default()
    };
    let dims = Dimensions {
        model_raw: model_of_sku(&sku).into(),
        service: text("service").into(),
        project_id: text("project_id").into(),
        region: text("region").into(),
        line_item: sku.into(),
        attributes: [("sku_id", text("sku_id")), ("cost_type", text("cost_type"))]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        ..Dimensions::default()
    };
    Ok(FetchedRecord {
        identity: RecordIdentity {
            record_type: RecordType::Cost,
            endpoint: endpoint.into(),
            granularity: Granularity::Day,
            bucket_start: start,
            bucket_end: start
                .checked_add_signed(Duration::days(1))
                .ok_or_else(|| err("cell 'day' is out of range"))?,
            raw_group,
        },
        dims,
        measures,
    })
}

/// Model families whose SKUs name a model.
const FAMILIES: &[&str] = &[
    "gemini",
    "gemma",
    "claude",
    "llama",
    "mistral",
    "codestral",
    "imagen",
    "veo",
    "chirp",
    "text-embedding",
    "embedding",
];

/// Where a SKU's model name ends: the token direction or modality that
/// follows it ("Gemini 2.5 Flash Text Input - Predictions").
const MODEL_ENDS: &[&str] = &[
    " text input",
    " text output",
    " input",
    " output",
    " image",
    " audio",
    " video",
    " cached",
    " context cache",
    " batch",
    " tokens",
    " token",
    " characters",
    " - ",
    ":",
    " (",
];

/// The model a SKU description names, as Vertex spells model ids
/// (`gemini-2.5-flash`), or "" for SKUs that are not a model's
/// (online prediction nodes, tax). The SKU itself is kept in `line_item`.
pub fn model_of_sku(sku: &str) -> String {
    let lower = sku.to_ascii_lowercase();
    let end = MODEL_ENDS
        .iter()
        .filter_map(|m| lower.find(m))
        .min()
        .unwrap_or(lower.len());
    let head = lower[..end].trim();
    if !FAMILIES.iter().any(|f| head.starts_with(f)) {
        return String::new();
    }
    head.split_whitespace().collect::<Vec<_>>().join("-")
}

/// The token-count metric of Vertex AI's publisher models.
pub const TOKEN_METRIC: &str = "aiplatform.googleapis.com/publisher/online_serving/token_count";

/// One page of `projects.timeSeries.list`: records per (hour, model, token
/// type), and the next page token (`""` or absent: done). Points outside
/// `window` (an alignment period ending at its start) are not this fetch's.
pub fn time_series_page(
    body: &Json,
    endpoint: &str,
    window: (DateTime<Utc>, DateTime<Utc>),
) -> Result<(Vec<FetchedRecord>, Option<String>), JsonError> {
    let obj = json::object(body, "the time series response")?;
    let series = match obj.get("timeSeries") {
        None | Some(Json::Null) => &Vec::new(),
        Some(Json::Array(s)) => s,
        Some(_) => return Err(err("field 'timeSeries' should be an array")),
    };
    let mut records = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let in_series = |e: JsonError| err(format!("timeSeries[{i}]: {}", e.0));
        let s = json::object(s, "a time series").map_err(in_series)?;
        let label = |path: &str, name: &str| {
            s.get(path)
                .and_then(|m| m.get("labels"))
                .and_then(|l| l.get(name))
                .and_then(Json::as_str)
                .map(str::to_string)
        };
        let model = label("resource", "model_user_id").unwrap_or_default();
        let kind = label("metric", "type").unwrap_or_default();
        let points = json::array(s, "points").map_err(in_series)?;
        for (j, p) in points.iter().enumerate() {
            let in_point = |e: JsonError| err(format!("timeSeries[{i}].points[{j}]: {}", e.0));
            let interval = p
                .get("interval")
                .and_then(Json::as_object)
                .ok_or_else(|| in_point(err("no interval")))?;
            let end = json::rfc3339(interval, "endTime").map_err(in_point)?;
            let start = match interval.get("startTime") {
                Some(_) => json::rfc3339(interval, "startTime").map_err(in_point)?,
                None => end - Duration::hours(1),
            };
            if end - start != Duration::hours(1) || Granularity::Hour.floor(start) != start {
                return Err(in_point(err(format!(
                    "interval {} .. {} is not one whole hour (the query aligns to 3600s)",
                    start.to_rfc3339(),
                    end.to_rfc3339()
                ))));
            }
            if start < window.0 || start >= window.1 {
                continue;
            }
            let value = p
                .get("value")
                .and_then(Json::as_object)
                .ok_or_else(|| in_point(err("no value")))?;
            let count = match (value.get("int64Value"), value.get("doubleValue")) {
                (Some(_), _) => json::int_field(value, "int64Value").map_err(in_point)?,
                (None, Some(Json::Number(n))) => n
                    .as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
                    .map(|f| f as i64)
                    .ok_or_else(|| in_point(err(format!("doubleValue {n} is not a whole token count"))))?,
                _ => return Err(in_point(err("value has neither int64Value nor doubleValue"))),
            };
            records.push(token_record(endpoint, start, &model, &kind, count));
        }
    }
    let next = obj
        .get("nextPageToken")
        .and_then(Json::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string);
    Ok((records, next))
}

fn token_record(endpoint: &str, start: DateTime<Utc>, model: &str, kind: &str, count: i64) -> FetchedRecord {
    let raw_group: RawGroup = [
        ("model_user_id", RawField::Text(model.into())),
        ("type", RawField::Text(kind.into())),
    ]
    .into_iter()
    .collect();
    let mut measures = Measures {
        requests_reported: false,
        ..Measures::default()
    };
    match kind {
        "input" => measures.input_tokens = count,
        "output" => measures.output_tokens = count,
        // A token type this adapter does not know is kept, as a quantity.
        other => {
            measures.quantity = Decimal::from(count);
            measures.unit = compact_str::format_compact!("{other} tokens");
        }
    }
    FetchedRecord {
        identity: RecordIdentity {
            record_type: RecordType::Usage,
            endpoint: endpoint.into(),
            granularity: Granularity::Hour,
            bucket_start: start,
            bucket_end: start + Duration::hours(1),
            raw_group,
        },
        dims: Dimensions {
            model_raw: model.into(),
            service: "inference".into(),
            ..Dimensions::default()
        },
        measures,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    const SCHEMA: &str = r#"{"fields": [
        {"name": "day", "type": "TIMESTAMP"}, {"name": "service", "type": "STRING"},
        {"name": "sku_id", "type": "STRING"}, {"name": "sku", "type": "STRING"},
        {"name": "project_id", "type": "STRING"}, {"name": "region", "type": "STRING"},
        {"name": "cost_type", "type": "STRING"}, {"name": "currency", "type": "STRING"},
        {"name": "conversion_rate", "type": "NUMERIC"}, {"name": "cost", "type": "NUMERIC"},
        {"name": "credits", "type": "NUMERIC"}]}"#;

    fn row(day: &str, sku: &str, currency: &str, rate: &str, cost: &str, credits: &str) -> serde_json::Value {
        json!({"f": [{"v": day}, {"v": "Vertex AI"}, {"v": "A1B2-C3D4"}, {"v": sku}, {"v": "proj-ml"},
                     {"v": null}, {"v": "regular"}, {"v": currency}, {"v": rate}, {"v": cost}, {"v": credits}]})
    }

    fn page(rows: Vec<serde_json::Value>, token: Option<&str>) -> serde_json::Value {
        let mut v = json!({
            "kind": "bigquery#queryResponse",
            "schema": serde_json::from_str::<serde_json::Value>(SCHEMA).unwrap(),
            "jobReference": {"projectId": "proj-ml", "jobId": "job_abc", "location": "US"},
            "totalRows": rows.len().to_string(),
            "rows": rows,
            "jobComplete": true
        });
        if let Some(t) = token {
            v["pageToken"] = json!(t);
        }
        v
    }

    #[test]
    fn vertex_billing_rows_net_credits_positive_and_rows_without_credits_are_kept() {
        let body = page(
            vec![
                row(
                    "1736899200000000",
                    "Gemini 2.5 Flash Text Input - Predictions",
                    "USD",
                    "1",
                    "12.345678901",
                    "-1.2",
                ),
                row(
                    "1736899200000000",
                    "Gemini 2.5 Flash Text Output - Predictions",
                    "USD",
                    "1",
                    "3.5",
                    "0",
                ),
            ],
            Some("BGFJ2YQ"),
        );
        let p = query_page(&Json::from(body.clone()), "billing_export").unwrap();
        assert!(p.complete);
        assert_eq!(p.page_token.as_deref(), Some("BGFJ2YQ"));
        assert_eq!(p.records.len(), 2);
        let r = &p.records[0];
        assert_eq!(r.identity.bucket_start.to_rfc3339(), "2025-01-15T00:00:00+00:00");
        assert_eq!(r.measures.cost, d("12.345678901"));
        assert_eq!(r.measures.credits, d("1.2"));
        assert_eq!(r.dims.model_raw, "gemini-2.5-flash");
        assert_eq!(r.identity.raw_group["region"], RawField::Null);
        assert_eq!(p.records[1].measures.credits, Decimal::ZERO);
        assert_eq!(p.records[1].measures.cost, d("3.5"));
    }

    #[test]
    fn vertex_other_currencies_are_converted_exactly_and_keep_the_original() {
        let body = page(
            vec![row(
                "1736899200000000",
                "Gemini 2.5 Pro Text Input",
                "EUR",
                "0.9",
                "9",
                "-0.9",
            )],
            None,
        );
        let r = &query_page(&Json::from(body.clone()), "billing_export").unwrap().records[0];
        assert_eq!((r.measures.cost, r.measures.credits), (d("10"), d("1")));
        assert_eq!(
            (r.measures.amount_original, r.measures.currency.as_str()),
            (d("9"), "EUR")
        );
    }

    #[test]
    fn vertex_float_timestamps_incomplete_jobs_and_bad_cells_are_named() {
        let body = page(vec![row("1.7368992E9", "x", "USD", "1", "1", "0")], None);
        let e = query_page(&Json::from(body.clone()), "b").unwrap_err().0;
        assert!(e.contains("useInt64Timestamp") && e.contains("rows[0]"), "{e}");
        let pending = json!({"jobReference": {"projectId": "p-1", "jobId": "job_1"}, "jobComplete": false});
        let p = query_page(&Json::from(pending.clone()), "b").unwrap();
        assert!(!p.complete && p.records.is_empty());
        let body = page(vec![row("1736899200000000", "x", "USD", "1", "one", "0")], None);
        assert!(query_page(&Json::from(body.clone()), "b")
            .unwrap_err()
            .0
            .contains("'cost'"));
        let body = page(vec![row("1736899200000000", "x", "USD", "1", "1", "0")], None);
        let mut short = body.clone();
        short["rows"][0]["f"].as_array_mut().unwrap().pop();
        assert!(query_page(&Json::from(short.clone()), "b")
            .unwrap_err()
            .0
            .contains("cells"));
        let mut evil = body;
        evil["jobReference"]["jobId"] = json!("../../x?y");
        assert!(query_page(&Json::from(evil.clone()), "b").is_err());
    }

    #[test]
    fn vertex_models_from_skus() {
        assert_eq!(
            model_of_sku("Gemini 2.5 Flash Text Input - Predictions"),
            "gemini-2.5-flash"
        );
        assert_eq!(model_of_sku("Gemini 2.0 Flash Input token count"), "gemini-2.0-flash");
        assert_eq!(model_of_sku("Claude Sonnet 4 Output Tokens"), "claude-sonnet-4");
        assert_eq!(
            model_of_sku("Vertex AI Prediction: Online Prediction n1-standard-4"),
            ""
        );
        assert_eq!(model_of_sku(""), "");
    }

    #[test]
    fn vertex_time_series_hours_and_types() {
        let body = json!({"timeSeries": [{
            "metric": {"type": TOKEN_METRIC, "labels": {"type": "input"}},
            "resource": {"type": "aiplatform.googleapis.com/PublisherModel", "labels": {"model_user_id": "gemini-2.5-flash"}},
            "metricKind": "DELTA", "valueType": "INT64",
            "points": [
                {"interval": {"startTime": "2025-01-15T01:00:00Z", "endTime": "2025-01-15T02:00:00Z"}, "value": {"int64Value": "1834567"}},
                {"interval": {"startTime": "2025-01-15T00:00:00Z", "endTime": "2025-01-15T01:00:00Z"}, "value": {"int64Value": "902311"}},
                {"interval": {"startTime": "2025-01-14T23:00:00Z", "endTime": "2025-01-15T00:00:00Z"}, "value": {"int64Value": "5"}}
            ]}], "nextPageToken": ""});
        let start = Utc.with_ymd_and_hms(2025, 1, 15, 0, 0, 0).unwrap();
        let (records, next) = time_series_page(
            &Json::from(body.clone()),
            "token_count",
            (start, start + Duration::days(1)),
        )
        .unwrap();
        assert_eq!(next, None);
        assert_eq!(records.len(), 2, "the point before the window is not this fetch's");
        assert_eq!(records[0].measures.input_tokens, 1_834_567);
        assert_eq!(records[1].identity.bucket_start, start);
        let mut odd = body.clone();
        odd["timeSeries"][0]["points"][0]["interval"]["startTime"] = json!("2025-01-15T01:30:00Z");
        assert!(
            time_series_page(&Json::from(odd.clone()), "t", (start, start + Duration::days(1)))
                .unwrap_err()
                .0
                .contains("whole hour")
        );
    }
}
