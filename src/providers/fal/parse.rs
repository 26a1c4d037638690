//! One page of fal.ai's `GET /models/usage` read into records.
//!
//! Page: `{time_series: [{bucket, results: [result]}], next_cursor, has_more}`;
//! result: `{endpoint_id, unit, quantity, unit_price, cost, currency,
//! auth_method}`. `bucket` carries the offset of the requested `timezone`;
//! the adapter always asks for `timezone=UTC`, and a bucket that is not a UTC
//! midnight is refused by the pager (never re-bucketed).

use crate::providers::json::{Json, Object};
use chrono::{DateTime, Duration, Utc};

use crate::normalize::schema::{
    CostSource, Dimensions, FetchedRecord, Granularity, Measures, RawGroup, RecordIdentity, RecordType,
};
use crate::providers::json::{self, JsonError};
use crate::providers::platform::identity;
use crate::providers::platform::paging::{Page, PageBucket};

/// The measures of a result. `unit` is not among them: it stays in the
/// identity, so one endpoint billed in two units on one day (per-output and
/// per-second fallback) is two records, never a sum of unlike quantities.
/// `unit_price` is derived (cost / quantity) and `currency` qualifies `cost`.
const MEASURES: &[&str] = &["quantity", "unit_price", "cost", "currency"];

/// Grouping fields with a column of their own; the rest go to `attributes`.
const COLUMNS: &[&str] = &["endpoint_id", "unit"];

pub(super) const ENDPOINT: &str = "models/usage";
pub(super) const SERVICE: &str = "model_apis";

/// Reads a whole page or fails naming where (bucket, row) and which field.
pub(super) fn page(body: &Json) -> Result<Page, JsonError> {
    let page = json::object(body, "the response")?;
    let series = json::array(page, "time_series")?;
    let next = next_cursor(page)?;
    let mut buckets = Vec::with_capacity(series.len());
    for (i, bucket) in series.iter().enumerate() {
        let place = format!("time_series[{i}]");
        let bucket = json::object(bucket, &place)?;
        let start = json::rfc3339(bucket, "bucket").map_err(|e| context(&place, e))?;
        let rows = json::array(bucket, "results").map_err(|e| context(&place, e))?;
        let mut records = Vec::with_capacity(rows.len());
        for (j, row) in rows.iter().enumerate() {
            let record = json::object(row, "the result")
                .and_then(|row| record(start, row))
                .map_err(|e| context(&format!("{place} (bucket {start}) results[{j}]"), e))?;
            records.push(record);
        }
        buckets.push(PageBucket {
            start,
            end: None,
            records,
        });
    }
    Ok(Page { buckets, next })
}

/// `has_more` + `next_cursor`: more without a cursor is malformed.
fn next_cursor(page: &Object) -> Result<Option<String>, JsonError> {
    if !page.get("has_more").and_then(Json::as_bool).unwrap_or(false) {
        return Ok(None);
    }
    match page.get("next_cursor") {
        Some(Json::String(s)) if !s.is_empty() => Ok(Some(s.to_string())),
        _ => Err(JsonError("has_more is true but next_cursor is missing".into())),
    }
}

fn context(place: &str, err: JsonError) -> JsonError {
    JsonError(format!("{place}: {}", err.0))
}

fn record(start: DateTime<Utc>, row: &Object) -> Result<FetchedRecord, JsonError> {
    let raw_group: RawGroup = identity::raw_group(row, |name, _| MEASURES.contains(&name));
    if identity::text(&raw_group, "endpoint_id").is_empty() {
        return Err(JsonError("field 'endpoint_id' is missing".into()));
    }
    let cost = match row.get("cost") {
        Some(value) if !value.is_null() => json::decimal(value, "cost")?,
        _ => return Err(JsonError("field 'cost' is missing".into())),
    };
    let currency = json::str_field(row, "currency").trim().to_ascii_uppercase();
    // The docs show USD only; an absent currency is USD (fal bills in USD).
    if !currency.is_empty() && currency != "USD" {
        return Err(JsonError(format!(
            "field 'currency' is '{currency}': non-USD billing is unsupported (cost is stored in USD and never \
             converted); open an issue with the currency your team is billed in"
        )));
    }
    let dims = Dimensions {
        model_raw: identity::text(&raw_group, "endpoint_id"),
        service: SERVICE.into(),
        attributes: identity::attributes(&raw_group, COLUMNS),
        ..Dimensions::default()
    };
    let measures = Measures {
        quantity: json::optional_decimal(row, "quantity")?,
        unit: identity::text(&raw_group, "unit"),
        cost,
        amount_original: cost,
        currency: "USD".into(),
        cost_source: CostSource::Billed,
        requests_reported: false,
        ..Measures::default()
    };
    Ok(FetchedRecord {
        identity: RecordIdentity {
            record_type: RecordType::Cost,
            endpoint: ENDPOINT.into(),
            granularity: Granularity::Day,
            bucket_start: start,
            bucket_end: start + Duration::days(1),
            raw_group,
        },
        dims,
        measures,
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use super::*;

    const PAGE1: &str = include_str!("../../../tests/fixtures/fal/usage_page1.json");
    const PAGE2: &str = include_str!("../../../tests/fixtures/fal/usage_page2.json");

    fn parse(text: &str) -> Result<Page, JsonError> {
        page(&Json::parse(text.as_bytes()).unwrap())
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn fixture_maps_quantity_unit_cost_and_identity_exactly() {
        let p = parse(PAGE1).unwrap();
        assert_eq!(p.next.as_deref(), Some("Mg=="));
        assert_eq!(p.buckets.len(), 2);
        assert_eq!(p.buckets[0].start.to_rfc3339(), "2025-01-15T00:00:00+00:00");
        let flux = &p.buckets[0].records[0];
        assert_eq!(flux.dims.model_raw, "fal-ai/flux/dev");
        assert_eq!(flux.measures.quantity, dec("4"));
        assert_eq!(flux.measures.unit, "image");
        // The float text is kept to the last digit, never via f64.
        assert_eq!(flux.measures.cost.to_string(), "0.1000000000000000055511");
        assert_eq!(flux.measures.cost_source, CostSource::Billed);
        assert_eq!(flux.measures.currency, "USD");
        assert_eq!(flux.identity.record_type, RecordType::Cost);
        let names: Vec<&str> = flux.identity.raw_group.keys().collect();
        assert_eq!(names, ["auth_method", "endpoint_id", "unit"]);
        assert_eq!(flux.dims.attributes["auth_method"], "Production Key");
        let kling = &p.buckets[0].records[1];
        assert_eq!(kling.measures.unit, "video_second");
        assert_eq!(kling.measures.cost, dec("5.0"));
        let last = parse(PAGE2).unwrap();
        assert_eq!(last.next, None);
    }

    #[test]
    fn a_bucket_in_another_time_zone_stays_at_its_instant_for_the_pager_to_refuse() {
        let text = r#"{"time_series":[{"bucket":"2025-01-15T00:00:00-05:00","results":[]}],"has_more":false}"#;
        let p = parse(text).unwrap();
        // 05:00 UTC: not a whole UTC day, refused by the pager's bucket check.
        assert_eq!(p.buckets[0].start.to_rfc3339(), "2025-01-15T05:00:00+00:00");
    }

    #[test]
    fn broken_rows_are_named() {
        let no_cursor = r#"{"time_series":[],"has_more":true,"next_cursor":null}"#;
        assert!(parse(no_cursor).unwrap_err().0.contains("next_cursor"));
        let eur = r#"{"time_series":[{"bucket":"2025-01-15T00:00:00Z","results":[
            {"endpoint_id":"fal-ai/flux/dev","unit":"image","quantity":1,"cost":0.5,"currency":"EUR"}]}]}"#;
        assert!(parse(eur).unwrap_err().0.contains("EUR"));
        let no_cost = r#"{"time_series":[{"bucket":"2025-01-15T00:00:00Z","results":[
            {"endpoint_id":"fal-ai/flux/dev","unit":"image","quantity":1}]}]}"#;
        let err = parse(no_cost).unwrap_err().0;
        assert!(err.contains("results[0]") && err.contains("'cost'"), "{err}");
    }
}
