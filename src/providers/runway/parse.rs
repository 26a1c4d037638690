//! One answer of Runway's `POST /v1/organization/usage` read into records.
//!
//! Answer: `{models: [..], results: [{date, usedCredits: [{model, amount}]}]}`;
//! `amount` is the net whole number of credits a model used that UTC day,
//! negative when refunds exceeded charges. `apiKeys` / `resultsByApiKey` are
//! "reserved for future use" and ignored.

use crate::providers::json::{Json, Object};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::normalize::schema::{
    CostSource, Dimensions, FetchedRecord, Granularity, Measures, RawGroup, RecordIdentity, RecordType,
};
use crate::providers::json::{self, JsonError};
use crate::providers::platform::identity;

pub(super) const ENDPOINT: &str = "organization/usage";
pub(super) const SERVICE: &str = "api_credits";
pub(super) const UNIT: &str = "credits";

/// Reads the answer for the days `[start, end)`; a date outside them is
/// malformed (it would put stored rows of other days in scope).
pub(super) fn answer(
    body: &Json,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    usd_per_credit: Decimal,
) -> Result<Vec<FetchedRecord>, JsonError> {
    let answer = json::object(body, "the response")?;
    let results = json::array(answer, "results")?;
    let mut records = Vec::new();
    for (i, day) in results.iter().enumerate() {
        let place = format!("results[{i}]");
        let day = json::object(day, &place)?;
        let date = json::str_field(day, "date");
        let bucket = NaiveDate::parse_from_str(&date, "%Y-%m-%d")
            .map_err(|_| JsonError(format!("{place}: field 'date' is not YYYY-MM-DD ('{date}')")))?
            .and_time(Default::default())
            .and_utc();
        if bucket < start || bucket >= end {
            return Err(JsonError(format!(
                "{place}: date {date} is outside the asked days {} .. {} (beforeDate exclusive)",
                start.date_naive(),
                end.date_naive()
            )));
        }
        let used = json::array(day, "usedCredits").map_err(|e| JsonError(format!("{place}: {}", e.0)))?;
        for (j, item) in used.iter().enumerate() {
            let record = json::object(item, "the entry")
                .and_then(|item| record(bucket, item, usd_per_credit))
                .map_err(|e| JsonError(format!("{place} ({date}) usedCredits[{j}]: {}", e.0)))?;
            records.push(record);
        }
    }
    Ok(records)
}

fn record(bucket: DateTime<Utc>, item: &Object, usd_per_credit: Decimal) -> Result<FetchedRecord, JsonError> {
    let credits = match item.get("amount") {
        Some(value) if !value.is_null() => json::decimal(value, "amount")?,
        _ => return Err(JsonError("field 'amount' is missing".into())),
    };
    if !credits.fract().is_zero() {
        return Err(JsonError(format!(
            "field 'amount' is {credits}; Runway documents whole credits"
        )));
    }
    let raw_group: RawGroup = identity::raw_group(item, |name, _| name == "amount");
    let model = identity::text(&raw_group, "model");
    if model.is_empty() {
        return Err(JsonError("field 'model' is missing".into()));
    }
    let cost = credits
        .checked_mul(usd_per_credit)
        .ok_or_else(|| JsonError(format!("field 'amount' ({credits}) overflows when priced")))?;
    Ok(FetchedRecord {
        identity: RecordIdentity {
            record_type: RecordType::Cost,
            endpoint: ENDPOINT.into(),
            granularity: Granularity::Day,
            bucket_start: bucket,
            bucket_end: bucket + Duration::days(1),
            raw_group: raw_group.clone(),
        },
        dims: Dimensions {
            model_raw: model,
            service: SERVICE.into(),
            attributes: identity::attributes(&raw_group, &["model"]),
            ..Dimensions::default()
        },
        measures: Measures {
            quantity: credits,
            unit: UNIT.into(),
            cost,
            cost_source: CostSource::Billed,
            currency: "USD".into(),
            amount_original: credits,
            requests_reported: false,
            ..Measures::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::TimeZone;

    use super::*;

    const USAGE: &str = include_str!("../../../tests/fixtures/runway/usage.json");

    fn day(d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, d, 0, 0, 0).unwrap()
    }

    fn parse(text: &str) -> Result<Vec<FetchedRecord>, JsonError> {
        answer(
            &Json::parse(text.as_bytes()).unwrap(),
            day(15),
            day(18),
            Decimal::new(1, 2),
        )
    }

    #[test]
    fn credits_become_exact_usd_and_refunds_stay_negative() {
        let records = parse(USAGE).unwrap();
        assert_eq!(records.len(), 4);
        let gen4 = &records[0];
        assert_eq!(gen4.dims.model_raw, "gen4_turbo");
        assert_eq!(gen4.identity.bucket_start, day(15));
        assert_eq!(gen4.measures.quantity, Decimal::from(250));
        assert_eq!(gen4.measures.unit, "credits");
        assert_eq!(gen4.measures.cost.to_string(), "2.50");
        assert_eq!(gen4.measures.amount_original, Decimal::from(250));
        assert_eq!(gen4.measures.cost_source, CostSource::Billed);
        let refund = records.iter().find(|r| r.identity.bucket_start == day(16)).unwrap();
        assert_eq!(refund.measures.quantity, Decimal::from(-50));
        assert_eq!(refund.measures.cost, Decimal::from_str("-0.50").unwrap());
        let names: Vec<&str> = refund.identity.raw_group.keys().collect();
        assert_eq!(names, ["model"]);
        let sum: Decimal = records.iter().map(|r| r.measures.cost).sum();
        assert_eq!(sum.to_string(), "6.53");
    }

    #[test]
    fn dates_outside_the_request_and_fractional_credits_are_refused() {
        let outside = r#"{"results":[{"date":"2025-01-18","usedCredits":[{"model":"gen4_turbo","amount":1}]}]}"#;
        assert!(parse(outside).unwrap_err().0.contains("outside the asked days"));
        let fraction = r#"{"results":[{"date":"2025-01-15","usedCredits":[{"model":"gen4_turbo","amount":1.5}]}]}"#;
        assert!(parse(fraction).unwrap_err().0.contains("whole credits"));
        let no_model = r#"{"results":[{"date":"2025-01-15","usedCredits":[{"amount":1}]}]}"#;
        assert!(parse(no_model).unwrap_err().0.contains("usedCredits[0]"));
    }
}
