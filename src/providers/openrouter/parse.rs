//! OpenRouter's `/activity` answer read into records.
//!
//! Answer: `{data: [row]}`, one row per UTC `date` x `model` x `endpoint_id`
//! (plus `workspace_id` with `group_by=workspace`), no pagination. Money
//! (`usage`, `byok_usage_inference`) is USD as JSON numbers, read from the
//! exact text. Each row becomes two records of the same identity:
//!
//! - a **cost** record: `usage`, the OpenRouter credits spent, is the bill
//!   (`cost`, `cost_source = billed`);
//! - a **usage** record: tokens and requests, and `byok_usage_inference` as
//!   `estimated_cost`. BYOK inference is billed by the upstream provider on
//!   the user's own key, not by OpenRouter: putting it in `cost` would make
//!   `sum(cost)` larger than the OpenRouter invoice and count the same money
//!   twice when the upstream account is synced too. `estimated_cost` is where
//!   money that is not this provider's bill lives (DESIGN rule 3); it is set
//!   (0 on non-BYOK rows) rather than left to the price registry, because the
//!   billed figure of those rows is already the cost record.

use crate::providers::json::{Json, Object};
use chrono::{DateTime, NaiveDate, Utc};

use crate::normalize::schema::{
    CostSource, Dimensions, FetchedRecord, Granularity, Measures, RawGroup, RecordIdentity, RecordType,
};
use crate::providers::json::{self, JsonError};
use crate::providers::platform::identity;

/// Grouping fields with a column of their own; the others go to `attributes`.
const COLUMNS: &[&str] = &["model", "workspace_id"];

/// Every record of the answer, with its UTC day, for `record_type`.
pub(super) fn activity(body: &Json, record_type: RecordType) -> Result<Vec<(NaiveDate, FetchedRecord)>, JsonError> {
    let page = json::object(body, "the response")?;
    let data = json::array(page, "data")?;
    data.iter()
        .enumerate()
        .map(|(i, row)| {
            json::object(row, "the row")
                .and_then(|row| record(row, record_type))
                .map_err(|e| JsonError(format!("data[{i}]: {}", e.0)))
        })
        .collect()
}

/// Measures never identify a record: the money and counters the spec lists,
/// and anything numeric (OpenRouter's grouping fields are names and ids).
fn is_measure(field: &str, value: &Json) -> bool {
    field == "date"
        || field == "usage"
        || field == "requests"
        || field.starts_with("byok_")
        || field.ends_with("_tokens")
        || value.is_number()
}

fn record(row: &Object, record_type: RecordType) -> Result<(NaiveDate, FetchedRecord), JsonError> {
    let text = row
        .get("date")
        .and_then(Json::as_str)
        .ok_or_else(|| JsonError("field 'date' should be a YYYY-MM-DD date".into()))?;
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| JsonError(format!("field 'date' is not a YYYY-MM-DD date ({text})")))?;
    let start: DateTime<Utc> = day.and_time(Default::default()).and_utc();
    let raw_group: RawGroup = identity::raw_group(row, is_measure);
    let dims = Dimensions {
        model_raw: identity::text(&raw_group, "model"),
        workspace_id: identity::text(&raw_group, "workspace_id"),
        service: "inference".into(),
        attributes: identity::attributes(&raw_group, COLUMNS),
        ..Dimensions::default()
    };
    let measures = match record_type {
        RecordType::Cost => {
            // Required by the spec; a null bill is an error, never a zero.
            let usage = match row.get("usage") {
                Some(v) => json::decimal(v, "usage")?,
                None => return Err(JsonError("field 'usage' is missing".into())),
            };
            Measures {
                cost: usage,
                amount_original: usage,
                currency: "USD".into(),
                cost_source: CostSource::Billed,
                requests_reported: false,
                ..Measures::default()
            }
        }
        _ => Measures {
            // Prompt tokens as OpenRouter normalizes them; reasoning tokens
            // are part of completion_tokens (not stored apart).
            input_tokens: json::int_field(row, "prompt_tokens")?,
            output_tokens: json::int_field(row, "completion_tokens")?,
            requests: json::int_field(row, "requests")?,
            requests_reported: true,
            provider_estimate: Some(json::optional_decimal(row, "byok_usage_inference")?),
            ..Measures::default()
        },
    };
    let record = FetchedRecord {
        identity: RecordIdentity {
            record_type,
            endpoint: super::ENDPOINT.into(),
            granularity: Granularity::Day,
            bucket_start: start,
            bucket_end: start + chrono::Duration::days(1),
            raw_group,
        },
        dims,
        measures,
    };
    Ok((day, record))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use crate::normalize::schema::RawField;

    use rust_decimal::Decimal;

    use super::*;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/openrouter/activity.json");

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    fn parse(text: &str, record_type: RecordType) -> Result<Vec<(NaiveDate, FetchedRecord)>, JsonError> {
        activity(&Json::parse(text.as_bytes()).unwrap(), record_type)
    }

    #[test]
    fn openrouter_cost_is_the_billed_usage_exactly() {
        let rows = parse(FIXTURE, RecordType::Cost).unwrap();
        assert_eq!(rows.len(), 4);
        let (day, r) = &rows[0];
        assert_eq!(day.to_string(), "2025-08-24");
        assert_eq!(r.measures.cost, d("0.0150000000000000012"));
        assert_eq!(r.measures.cost_source, CostSource::Billed);
        assert_eq!(
            (r.measures.input_tokens, r.measures.requests),
            (0, 0),
            "no tokens on cost rows"
        );
        assert_eq!(r.dims.model_raw, "openai/gpt-4.1");
        assert_eq!(r.dims.attributes["provider_name"], "OpenAI");
        let keys: Vec<&str> = r.identity.raw_group.keys().collect();
        assert_eq!(keys, ["endpoint_id", "model", "model_permaslug", "provider_name"]);
    }

    #[test]
    fn openrouter_byok_goes_to_estimated_cost_never_to_cost() {
        let rows = parse(FIXTURE, RecordType::Usage).unwrap();
        let (_, r) = &rows[0];
        assert_eq!(
            (r.measures.input_tokens, r.measures.output_tokens, r.measures.requests),
            (50, 125, 5)
        );
        assert_eq!(r.measures.provider_estimate, Some(d("0.012")));
        assert!(r.measures.cost.is_zero());
        // A BYOK-only row: no OpenRouter bill, the upstream spend as estimate.
        let byok = &parse(FIXTURE, RecordType::Cost).unwrap()[2].1;
        assert!(byok.measures.cost.is_zero());
        assert_eq!(rows[2].1.measures.provider_estimate, Some(d("0.4375")));
    }

    #[test]
    fn openrouter_nulls_count_as_zero_except_the_bill() {
        let rows = parse(FIXTURE, RecordType::Usage).unwrap();
        // Row 3 has null tokens and a null BYOK amount.
        let (_, r) = &rows[3];
        assert_eq!(r.measures.output_tokens, 0);
        assert_eq!(r.measures.provider_estimate, Some(Decimal::ZERO));
        assert_eq!(
            r.identity.raw_group["workspace_id"],
            RawField::Null,
            "null stays in the identity"
        );
        let bad = FIXTURE.replacen("\"usage\": 0.0150000000000000012", "\"usage\": null", 1);
        let err = parse(&bad, RecordType::Cost).unwrap_err().0;
        assert!(err.contains("data[0]") && err.contains("'usage' is null"), "{err}");
        let bad_date = FIXTURE.replacen("2025-08-24", "24/08/2025", 1);
        assert!(parse(&bad_date, RecordType::Usage).unwrap_err().0.contains("'date'"));
    }
}
