//! Azure's answers read into records: the Entra ID token, Cost Management
//! `query` pages, resource and deployment listings, and Azure Monitor
//! metrics. Every reader takes the parsed JSON and never panics (fuzzed
//! through `fuzz_parse`).

use std::collections::BTreeMap;

use crate::providers::json::{Json, Object};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::normalize::schema::{
    CostSource, Dimensions, FetchedRecord, Granularity, Measures, RawField, RawGroup, RecordIdentity, RecordType,
};
use crate::providers::json::{self, JsonError};
use crate::providers::platform::Token;
use crate::providers::TimeWindow;

pub(super) const COST_ENDPOINT: &str = "cost_query";
pub(super) const METRICS_ENDPOINT: &str = "monitor_metrics";
pub(super) const SERVICE: &str = "azure_openai";

/// REST names of the two token metrics (display names differ: "Processed
/// Prompt Tokens", "Generated Completion Tokens").
pub(super) const PROMPT_METRIC: &str = "ProcessedPromptTokens";
pub(super) const GENERATED_METRIC: &str = "GeneratedTokens";

fn bad(msg: impl Into<String>) -> JsonError {
    JsonError(msg.into())
}

/// The client-credentials token. `expires_in` is a number on the v2
/// endpoint and a string on v1: both are accepted.
pub(super) fn token(body: &Json) -> Result<Token, JsonError> {
    let obj = json::object(body, "the token response")?;
    let value = match obj.get("access_token") {
        Some(Json::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(bad("the token response has no access_token")),
    };
    let secs = json::int_field(obj, "expires_in")?;
    if secs <= 0 {
        return Err(bad(format!("the token response's expires_in is {secs}")));
    }
    Ok(Token {
        value: value.to_string(),
        expires_in: std::time::Duration::from_secs(secs as u64),
    })
}

/// One page of an ARM listing: `{value: [...], nextLink}`.
pub(super) struct Listing {
    pub items: Vec<Json<'static>>,
    pub next: Option<String>,
}

pub(super) fn listing(body: &Json) -> Result<Listing, JsonError> {
    let obj = json::object(body, "the listing")?;
    Ok(Listing {
        items: json::array(obj, "value")?
            .iter()
            .cloned()
            .map(Json::into_owned)
            .collect(),
        next: next_link(obj),
    })
}

fn next_link(obj: &Object) -> Option<String> {
    match obj.get("nextLink") {
        Some(Json::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// An Azure OpenAI or AI Services account (`Microsoft.CognitiveServices/accounts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct CognitiveAccount {
    /// The ARM resource id, `/subscriptions/.../accounts/{name}`.
    pub id: String,
    pub name: String,
    pub kind: String,
    pub location: String,
}

/// Kinds that serve Azure OpenAI deployments.
const TOKEN_KINDS: [&str; 2] = ["OpenAI", "AIServices"];

/// The accounts of a listing page that can have OpenAI deployments; other
/// Cognitive Services kinds (Speech, Vision, ...) are skipped.
pub(super) fn accounts(items: &[Json]) -> Result<Vec<CognitiveAccount>, JsonError> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let obj = json::object(item, &format!("value[{i}]"))?;
        let kind = json::str_field(obj, "kind");
        if !TOKEN_KINDS.iter().any(|k| k.eq_ignore_ascii_case(&kind)) {
            continue;
        }
        let id = json::str_field(obj, "id");
        if !id.starts_with('/') || id.contains("..") || id.contains('?') || id.contains('#') {
            return Err(bad(format!("value[{i}]: 'id' is not an ARM resource id ('{id}')")));
        }
        out.push(CognitiveAccount {
            id,
            name: json::str_field(obj, "name"),
            kind,
            location: json::str_field(obj, "location"),
        });
    }
    Ok(out)
}

/// Deployment name -> model name (`properties.model.name`), from a
/// deployments listing page.
pub(super) fn deployments(items: &[Json]) -> Result<BTreeMap<String, String>, JsonError> {
    let mut out = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let obj = json::object(item, &format!("value[{i}]"))?;
        let name = json::str_field(obj, "name");
        if name.is_empty() {
            return Err(bad(format!("value[{i}]: a deployment without a name")));
        }
        let model = obj
            .get("properties")
            .and_then(|p| p.get("model"))
            .and_then(|m| m.get("name"))
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string();
        out.insert(name, model);
    }
    Ok(out)
}

/// One Cost Management `query` page: its records and the `nextLink`.
#[derive(Debug, Default)]
pub(super) struct CostPage {
    pub records: Vec<FetchedRecord>,
    pub next: Option<String>,
}

/// Column names that hold the cost in the billing currency / in USD
/// (the aggregation's column name, or its alias).
const COST_COLUMNS: [&str; 3] = ["Cost", "PreTaxCost", "totalCost"];
const USD_COLUMNS: [&str; 3] = ["CostUSD", "PreTaxCostUSD", "totalCostUSD"];

/// Reads one `query` page. Rows are mapped by column **name** (the order
/// depends on aggregation and grouping). `body` is `Null` for a 204.
///
/// Each row is one cost record per (day, resource, meter, currency):
/// `cost` is the USD amount (the `CostUSD` column, or `Cost` when the billing
/// currency is USD); a negative amount (a refund or credit charge) becomes
/// positive `credits` with `cost` 0, so `sum(cost) - sum(credits)` is the net.
/// `amount_original` keeps the signed amount in the billing currency.
pub(super) fn cost_page(body: &Json, window: TimeWindow) -> Result<CostPage, JsonError> {
    if body.is_null() {
        return Ok(CostPage::default());
    }
    let obj = json::object(body, "the query result")?;
    let props = match obj.get("properties") {
        Some(p) => json::object(p, "properties")?,
        None => return Err(bad("the query result has no 'properties'")),
    };
    let columns = json::array(props, "columns")?;
    let names: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.get("name")
                .and_then(Json::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(format!("columns[{i}] has no name")))
        })
        .collect::<Result<_, _>>()?;
    let find = |wanted: &[&str]| {
        names
            .iter()
            .position(|n| wanted.iter().any(|w| n.eq_ignore_ascii_case(w)))
    };
    let cost_at = find(&COST_COLUMNS).ok_or_else(|| bad(format!("no Cost column among {names:?}")))?;
    let usd_at = find(&USD_COLUMNS);
    let date_at = find(&["UsageDate"]).ok_or_else(|| bad(format!("no UsageDate column among {names:?}")))?;
    let currency_at = find(&["Currency"]);
    let rows = match props.get("rows") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(rows)) => rows.clone(),
        Some(_) => return Err(bad("'rows' should be an array")),
    };
    let mut records = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let cells = row
            .as_array()
            .filter(|cells| cells.len() == names.len())
            .ok_or_else(|| bad(format!("rows[{i}] does not have one cell per column ({})", names.len())))?;
        let record = cost_row(&names, cells, cost_at, usd_at, date_at, currency_at, window)
            .map_err(|e| bad(format!("rows[{i}]: {}", e.0)))?;
        records.push(record);
    }
    Ok(CostPage {
        records,
        next: next_link(props),
    })
}

fn cost_row(
    names: &[String],
    cells: &[Json],
    cost_at: usize,
    usd_at: Option<usize>,
    date_at: usize,
    currency_at: Option<usize>,
    window: TimeWindow,
) -> Result<FetchedRecord, JsonError> {
    let day = usage_date(&cells[date_at])?;
    if day < window.start || day >= window.end {
        return Err(bad(format!(
            "UsageDate {} is outside the asked days {} .. {}",
            day.date_naive(),
            window.start.date_naive(),
            window.end.date_naive()
        )));
    }
    let amount = json::decimal(&cells[cost_at], &names[cost_at])?;
    let currency = currency_at
        .and_then(|i| cells[i].as_str())
        .unwrap_or("USD")
        .trim()
        .to_ascii_uppercase();
    let usd = match usd_at {
        Some(i) => json::decimal(&cells[i], &names[i])?,
        None if currency == "USD" => amount,
        None => {
            return Err(bad(format!(
                "amounts are in {currency} and the answer has no CostUSD column; the cost in USD is unknown"
            )))
        }
    };
    let mut raw_group = RawGroup::new();
    for (i, name) in names.iter().enumerate() {
        if i == cost_at || Some(i) == usd_at || i == date_at {
            continue;
        }
        if let Some(field) = RawField::from_json(&cells[i]) {
            raw_group.insert(name.as_str(), field);
        }
    }
    let text = |name: &str| {
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(name))
            .and_then(|i| cells[i].as_str())
            .unwrap_or_default()
            .to_string()
    };
    let meter = text("Meter");
    let resource = text("ResourceId");
    let (cost, credits) = if usd.is_sign_negative() && !usd.is_zero() {
        (Decimal::ZERO, -usd)
    } else {
        (usd, Decimal::ZERO)
    };
    let attributes = raw_group
        .iter()
        .filter(|(k, v)| !["Meter", "ResourceId", "Currency"].contains(k) && **v != RawField::Null)
        .map(|(k, v)| (k.into(), v.as_text()))
        .collect();
    Ok(FetchedRecord {
        identity: RecordIdentity {
            record_type: RecordType::Cost,
            endpoint: COST_ENDPOINT.into(),
            granularity: Granularity::Day,
            bucket_start: day,
            bucket_end: day + Duration::days(1),
            raw_group,
        },
        dims: Dimensions {
            model_raw: meter_model(&meter).into(),
            service: SERVICE.into(),
            resource_id: resource.into(),
            line_item: meter.into(),
            attributes,
            ..Dimensions::default()
        },
        measures: Measures {
            cost,
            credits,
            cost_source: CostSource::Billed,
            currency: currency.into(),
            amount_original: amount,
            ..Measures::default()
        },
    })
}

/// `UsageDate`: a `yyyymmdd` number (`20240115`), also accepted as a string
/// of the same digits or an ISO date(-time) at midnight.
fn usage_date(cell: &Json) -> Result<DateTime<Utc>, JsonError> {
    let text = match cell {
        Json::Number(n) => n.to_string(),
        Json::String(s) => s.trim().to_string(),
        other => return Err(bad(format!("UsageDate should be a yyyymmdd number, found {other}"))),
    };
    let date = NaiveDate::parse_from_str(&text, "%Y%m%d")
        .ok()
        .filter(|_| text.len() == 8)
        .or_else(|| NaiveDate::parse_from_str(text.get(..10).unwrap_or(""), "%Y-%m-%d").ok())
        .ok_or_else(|| bad(format!("UsageDate '{text}' is not a yyyymmdd date")))?;
    Ok(date.and_time(Default::default()).and_utc())
}

/// Words of a meter name that are about direction, deployment type or
/// unit, not the model ("gpt-4o-0806-Inp-glbl 1M Tokens").
const METER_STOP_WORDS: [&str; 22] = [
    "inp", "input", "outp", "output", "out", "cached", "cchd", "cache", "glbl", "global", "regnl", "regional", "dzone",
    "data", "batch", "tokens", "token", "1k", "1m", "ft", "training", "hosting",
];

/// Model families Azure OpenAI meters start with.
const METER_FAMILIES: [&str; 10] = [
    "gpt", "o1", "o3", "o4", "text", "dall", "whisper", "tts", "davinci", "babbage",
];

/// The model a Cost Management meter names, as best the meter tells:
/// `gpt-4o-mini-0718-Inp-glbl 1M Tokens` -> `gpt-4o-mini` (the version
/// digits and direction words dropped, so it matches the deployments'
/// model names). Meters that name no model (support, refunds) give "";
/// the meter itself is always kept in `line_item`.
pub fn meter_model(meter: &str) -> String {
    let lower = meter.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(['-', ' ', '_']).filter(|w| !w.is_empty()).collect();
    if !words
        .first()
        .is_some_and(|w| METER_FAMILIES.iter().any(|f| w.starts_with(f)))
    {
        return String::new();
    }
    let mut kept: Vec<&str> = Vec::new();
    for word in words {
        if METER_STOP_WORDS.contains(&word) {
            break;
        }
        kept.push(word);
    }
    // A trailing 4-digit model version (0806, 0718) is not part of the name.
    while kept.len() > 1
        && kept
            .last()
            .is_some_and(|w| w.len() == 4 && w.bytes().all(|b| b.is_ascii_digit()))
    {
        kept.pop();
    }
    kept.join("-")
}

/// One account's Azure Monitor metrics answer (hourly, per deployment) read
/// into usage records: prompt tokens as input, generated tokens as output.
/// A data point without `total` has no data and gives nothing.
pub(super) fn metrics(
    body: &Json,
    account: &CognitiveAccount,
    models: &BTreeMap<String, String>,
    window: TimeWindow,
) -> Result<Vec<FetchedRecord>, JsonError> {
    let obj = json::object(body, "the metrics response")?;
    if let Some(interval) = obj.get("interval").and_then(Json::as_str) {
        if interval != "PT1H" {
            return Err(bad(format!("the metrics interval is {interval}, not the asked PT1H")));
        }
    }
    // (deployment, hour) -> [prompt, generated]
    let mut points: BTreeMap<(String, DateTime<Utc>), [i64; 2]> = BTreeMap::new();
    for (i, metric) in json::array(obj, "value")?.iter().enumerate() {
        let metric = json::object(metric, &format!("value[{i}]"))?;
        let name = metric
            .get("name")
            .and_then(|n| n.get("value"))
            .and_then(Json::as_str)
            .unwrap_or_default();
        let slot = if name.eq_ignore_ascii_case(PROMPT_METRIC) {
            0
        } else if name.eq_ignore_ascii_case(GENERATED_METRIC) {
            1
        } else {
            continue;
        };
        if let Some(code) = metric.get("errorCode").and_then(Json::as_str) {
            if code != "Success" {
                return Err(bad(format!("metric {name}: errorCode {code}")));
            }
        }
        for (j, series) in json::array(metric, "timeseries")?.iter().enumerate() {
            let place = format!("{name} timeseries[{j}]");
            let series = json::object(series, &place)?;
            let deployment = deployment_of(series).ok_or_else(|| {
                bad(format!(
                    "{place}: no ModelDeploymentName dimension (the filter asks for it)"
                ))
            })?;
            for point in json::array(series, "data")? {
                let point = json::object(point, &place)?;
                let at = json::rfc3339(point, "timeStamp")?;
                let Some(total) = point.get("total").filter(|t| !t.is_null()) else {
                    continue;
                };
                let count = whole_count(total).map_err(|e| bad(format!("{place} at {at}: {}", e.0)))?;
                if at < window.start || at >= window.end {
                    return Err(bad(format!(
                        "{place}: a point at {} is outside the asked window",
                        at.to_rfc3339()
                    )));
                }
                let entry = points.entry((deployment.clone(), at)).or_default();
                entry[slot] = entry[slot]
                    .checked_add(count)
                    .ok_or_else(|| bad(format!("{place}: token counts overflow")))?;
            }
        }
    }
    Ok(points
        .into_iter()
        .map(|((deployment, at), [prompt, generated])| {
            let model = models
                .get(&deployment)
                .filter(|m| !m.is_empty())
                .cloned()
                .unwrap_or_else(|| deployment.clone());
            let raw_group = RawGroup::from([
                ("resource_id", RawField::Text(account.id.as_str().into())),
                ("modeldeploymentname", RawField::Text(deployment.as_str().into())),
            ]);
            FetchedRecord {
                identity: RecordIdentity {
                    record_type: RecordType::Usage,
                    endpoint: METRICS_ENDPOINT.into(),
                    granularity: Granularity::Hour,
                    bucket_start: at,
                    bucket_end: at + Duration::hours(1),
                    raw_group,
                },
                dims: Dimensions {
                    model_raw: model.into(),
                    service: SERVICE.into(),
                    resource_id: account.id.as_str().into(),
                    region: account.location.as_str().into(),
                    attributes: BTreeMap::from([
                        ("account".into(), account.name.as_str().into()),
                        ("deployment".into(), deployment.into()),
                    ]),
                    ..Dimensions::default()
                },
                measures: Measures {
                    input_tokens: prompt,
                    output_tokens: generated,
                    requests_reported: false,
                    ..Measures::default()
                },
            }
        })
        .collect())
}

/// The deployment of a time series: `metadatavalues[].name.value` comes back
/// lower-cased (`modeldeploymentname`).
fn deployment_of(series: &Object) -> Option<String> {
    series
        .get("metadatavalues")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("name")
                .and_then(|n| n.get("value"))
                .and_then(Json::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case("ModelDeploymentName"))
        })
        .and_then(|m| m.get("value"))
        .and_then(Json::as_str)
        .map(str::to_string)
}

/// A token total: a JSON number such as `18234.0`; must be whole and
/// non-negative (read exactly, never through f64).
fn whole_count(value: &Json) -> Result<i64, JsonError> {
    let d = json::decimal(value, "total")?;
    if !d.fract().is_zero() || d.is_sign_negative() && !d.is_zero() {
        return Err(bad(format!("total {d} is not a whole token count")));
    }
    d.to_i64().ok_or_else(|| bad(format!("total {d} is out of range")))
}
