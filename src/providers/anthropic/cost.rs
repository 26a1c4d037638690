//! `cost_report` results -> billed cost records.
//!
//! `amount` is in the lowest currency unit, i.e. **cents**, as a decimal string
//! (`"123.45"` USD is $1.23). Several integrators shipped 100x bugs by reading
//! it as dollars (anthropics/claude-code#51198, langwatch#6977,
//! CodexBar#1035), so the conversion lives in one function with its own tests.

use crate::providers::json::{Json, Object};
use rust_decimal::Decimal;

use super::report::{self, Bucket};
use crate::normalize::schema::{CostSource, Dimensions, FetchedRecord, Measures, RecordIdentity};
use crate::providers::json::{self, JsonError};
use crate::providers::EndpointSpec;

/// The money and its unit: they describe the measure, not the record, so they
/// stay out of the identity (a corrected amount is the same record, changed).
const MEASURES: &[&str] = &["amount", "currency"];

/// Grouping fields with a column of their own (`cost_type` becomes `service`);
/// the rest (`token_type`, `context_window`, `service_tier`, `inference_geo`,
/// newer ones) go to attributes.
const COLUMNS: &[&str] = &["workspace_id", "description", "model", "cost_type"];

/// The only currency Anthropic bills in; anything else would need a rate we
/// do not have, so it is refused rather than stored as if it were dollars.
pub(super) const CURRENCY: &str = "USD";

/// The record of one cost result.
pub(super) fn record(
    spec: &EndpointSpec,
    bucket: &Bucket<'_>,
    result: &Json,
    path: &str,
) -> Result<FetchedRecord, JsonError> {
    let obj = json::object(result, path)?;
    let cents = amount_cents(obj).map_err(|e| report::at(path, e))?;
    let raw_group = report::raw_group(obj, MEASURES);
    let dims = Dimensions {
        model_raw: report::text(&raw_group, "model"),
        service: service(obj.get("cost_type")).into(),
        workspace_id: report::text(&raw_group, "workspace_id"),
        line_item: report::text(&raw_group, "description"),
        attributes: report::attributes(&raw_group, COLUMNS),
        ..Dimensions::default()
    };
    Ok(FetchedRecord {
        identity: RecordIdentity {
            record_type: spec.record_type,
            endpoint: spec.endpoint.into(),
            granularity: spec.granularity,
            bucket_start: bucket.start,
            bucket_end: bucket.end,
            raw_group,
        },
        dims,
        measures: Measures {
            cost: cents_to_dollars(cents),
            cost_source: CostSource::Billed,
            currency: CURRENCY.into(),
            amount_original: cents,
            requests_reported: false,
            ..Measures::default()
        },
    })
}

/// The billed amount in cents, after checking that it is money we understand.
pub(super) fn amount_cents(obj: &Object) -> Result<Decimal, JsonError> {
    match obj.get("currency").and_then(Json::as_str) {
        Some(currency) if currency.eq_ignore_ascii_case(CURRENCY) => {}
        _ => {
            return Err(JsonError(format!(
                "field 'currency' is {}; only USD cost reports are supported",
                obj.get("currency")
                    .map_or_else(|| "missing".to_string(), Json::to_string)
            )))
        }
    }
    match obj.get("amount") {
        None | Some(Json::Null) => Err(JsonError("field 'amount' is missing".to_string())),
        // A string per the API reference; the official cookbook also accepts a number.
        Some(amount) => json::decimal(amount, "amount"),
    }
}

/// Cents to dollars, exactly: moving the decimal point two places changes no
/// digit. Only when that would exceed Decimal's 28 fractional digits does it
/// fall back to division, which then rounds far below the 9 places stored.
pub(super) fn cents_to_dollars(cents: Decimal) -> Decimal {
    let mut dollars = cents;
    match dollars.set_scale(cents.scale() + 2) {
        Ok(()) => dollars,
        Err(_) => cents / Decimal::ONE_HUNDRED,
    }
}

/// The product line a cost belongs to, named like the usage side's services.
pub(super) fn service(cost_type: Option<&Json>) -> String {
    match cost_type {
        Some(Json::String(kind)) => match kind.as_ref() {
            "tokens" => "messages".to_string(),
            other => other.to_string(),
        },
        // Not grouped by description, or a type we cannot name.
        _ => "other".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::schema::{Granularity, RawField, RecordType};
    use chrono::{TimeZone, Utc};
    use std::str::FromStr;

    const SPEC: EndpointSpec = EndpointSpec {
        record_type: RecordType::Cost,
        endpoint: "cost_report",
        granularity: Granularity::Day,
    };

    fn map(result: &str) -> Result<FetchedRecord, JsonError> {
        let value = Json::parse(result.as_bytes()).unwrap();
        let bucket = Bucket {
            start: Utc.with_ymd_and_hms(2025, 8, 1, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2025, 8, 2, 0, 0, 0).unwrap(),
            results: &[],
            path: "data[0]".to_string(),
        };
        record(&SPEC, &bucket, &value, "data[0].results[0]")
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn amount_is_cents() {
        let record = map(r#"{"currency": "USD", "amount": "41280.000000", "workspace_id": null,
                "description": "Claude Sonnet 4 Usage - Input Tokens", "cost_type": "tokens",
                "context_window": "0-200k", "model": "claude-sonnet-4-20250514", "service_tier": "standard",
                "token_type": "uncached_input_tokens", "inference_geo": null}"#)
        .unwrap();
        assert_eq!(record.measures.cost, dec("412.80"));
        assert_eq!(record.measures.amount_original, dec("41280"));
        assert_eq!(record.measures.currency, "USD");
        assert_eq!(record.measures.cost_source, CostSource::Billed);
        assert!(!record.measures.requests_reported);
        assert_eq!(record.dims.service, "messages");
        assert_eq!(record.dims.line_item, "Claude Sonnet 4 Usage - Input Tokens");
        assert_eq!(record.dims.model_raw, "claude-sonnet-4-20250514");
        assert_eq!(record.dims.workspace_id, "");
        let attrs: Vec<_> = record.dims.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            attrs,
            [
                "context_window=0-200k",
                "service_tier=standard",
                "token_type=uncached_input_tokens"
            ]
        );
        assert_eq!(record.identity.raw_group["workspace_id"], RawField::Null);
        assert_eq!(record.identity.raw_group["inference_geo"], RawField::Null);
        assert!(!record.identity.raw_group.contains_key("amount"));
        assert!(!record.identity.raw_group.contains_key("currency"));
    }

    #[test]
    fn many_decimals_stay_exact() {
        let record = map(r#"{"currency": "USD", "amount": "123.4567890123456789"}"#).unwrap();
        assert_eq!(record.measures.cost.to_string(), "1.234567890123456789");
        assert_eq!(record.measures.amount_original.to_string(), "123.4567890123456789");
        // A JSON number keeps its exact text too (arbitrary_precision).
        let record = map(r#"{"currency": "USD", "amount": 0.30000000000000004}"#).unwrap();
        assert_eq!(record.measures.cost.to_string(), "0.0030000000000000004");
    }

    #[test]
    fn conversion_at_the_precision_limit_stays_within_a_rounding_of_28_places() {
        let cents = dec("0.1234567890123456789012345678");
        assert_eq!(cents.scale(), 28);
        let dollars = cents_to_dollars(cents);
        assert_eq!(dollars, dec("0.0012345678901234567890123457"));
    }

    #[test]
    fn service_follows_cost_type() {
        let of = |cost_type: &str| {
            map(&format!(
                r#"{{"currency": "USD", "amount": "1", "cost_type": {cost_type}}}"#
            ))
        };
        assert_eq!(of(r#""web_search""#).unwrap().dims.service, "web_search");
        assert_eq!(of(r#""code_execution""#).unwrap().dims.service, "code_execution");
        assert_eq!(of(r#""session_usage""#).unwrap().dims.service, "session_usage");
        assert_eq!(of("null").unwrap().dims.service, "other");
    }

    #[test]
    fn other_currencies_and_missing_amounts_are_refused() {
        let err = map(r#"{"currency": "EUR", "amount": "100"}"#).unwrap_err();
        assert!(err.0.contains("'currency'") && err.0.contains("EUR"), "{err}");
        let err = map(r#"{"amount": "100"}"#).unwrap_err();
        assert!(err.0.contains("'currency' is missing"), "{err}");
        let err = map(r#"{"currency": "USD"}"#).unwrap_err();
        assert!(err.0.contains("data[0].results[0]: field 'amount'"), "{err}");
        let err = map(r#"{"currency": "USD", "amount": "12,50"}"#).unwrap_err();
        assert!(err.0.contains("'amount'"), "{err}");
    }
}
