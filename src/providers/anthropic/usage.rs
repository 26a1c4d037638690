//! `usage_report/messages` results -> usage records.
//!
//! Anthropic nests cache writes (`cache_creation.ephemeral_{5m,1h}_input_tokens`)
//! and has no flat total; an integrator who read a flat field silently got 0
//! (langwatch#6977). So the documented token fields are required: a renamed
//! field fails the sync loudly instead of undercounting.

use crate::providers::json::{Json, Object};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::report::{self, Bucket};
use crate::normalize::schema::{Dimensions, FetchedRecord, Measures, RawField, RawGroup, RecordIdentity};
use crate::providers::json::{self, JsonError};
use crate::providers::EndpointSpec;

/// Fields that are numbers to add up, never part of a record's identity.
const MEASURES: &[&str] = &[
    "uncached_input_tokens",
    "cache_read_input_tokens",
    "cache_creation",
    "output_tokens",
    "server_tool_use",
];

/// Grouping fields with a column of their own; the rest go to attributes.
const COLUMNS: &[&str] = &["workspace_id", "api_key_id", "model"];

/// The records of one result: the token record, plus a web-search record when
/// the result made web searches (a server tool counted in requests, not tokens).
pub(super) fn records(
    spec: &EndpointSpec,
    bucket: &Bucket<'_>,
    result: &Json,
    path: &str,
) -> Result<Vec<FetchedRecord>, JsonError> {
    let obj = json::object(result, path)?;
    let tokens = Tokens::read(obj).map_err(|e| report::at(path, e))?;
    let raw_group = report::raw_group(obj, MEASURES);
    Ok(token_records(spec, bucket.start, bucket.end, raw_group, &tokens, None))
}

/// The token record of one usage result and, when it made web searches, a
/// second record counting them. `requests` is the result's request count
/// where the API reports one (the analytics API), `None` where it does not
/// (the legacy report): then requests are 0 and not reported.
pub(super) fn token_records(
    spec: &EndpointSpec,
    bucket_start: DateTime<Utc>,
    bucket_end: DateTime<Utc>,
    raw_group: RawGroup,
    tokens: &Tokens,
    requests: Option<i64>,
) -> Vec<FetchedRecord> {
    let dims = Dimensions {
        model_raw: report::text(&raw_group, "model"),
        service: "messages".into(),
        workspace_id: report::text(&raw_group, "workspace_id"),
        api_key_id: report::text(&raw_group, "api_key_id"),
        attributes: report::attributes(&raw_group, COLUMNS),
        ..Dimensions::default()
    };
    let identity = RecordIdentity {
        record_type: spec.record_type,
        endpoint: spec.endpoint.into(),
        granularity: spec.granularity,
        bucket_start,
        bucket_end,
        raw_group,
    };

    let token_record = FetchedRecord {
        identity,
        dims,
        measures: Measures {
            input_tokens: tokens.input,
            output_tokens: tokens.output,
            cached_input_tokens: tokens.cache_read,
            cache_creation_tokens: tokens.cache_creation,
            requests: requests.unwrap_or(0),
            requests_reported: requests.is_some(),
            ..Measures::default()
        },
    };
    if tokens.web_search_requests == 0 {
        return vec![token_record];
    }
    // Same result, other measure: the synthetic `_measure` field keeps the two
    // record keys apart.
    let mut search_identity = token_record.identity.clone();
    search_identity
        .raw_group
        .insert("_measure".to_string(), RawField::Text("web_search_requests".into()));
    let search_record = FetchedRecord {
        identity: search_identity,
        dims: Dimensions {
            service: "web_search".into(),
            ..token_record.dims.clone()
        },
        measures: Measures {
            quantity: Decimal::from(tokens.web_search_requests),
            unit: "requests".into(),
            ..Measures::default()
        },
    };
    vec![token_record, search_record]
}

/// The measures of one result, in our definitions (docs/DESIGN.md rule 4).
pub(super) struct Tokens {
    /// Uncached + cache reads + cache writes (5m and 1h).
    input: i64,
    output: i64,
    cache_read: i64,
    /// Cache writes of both lifetimes.
    cache_creation: i64,
    web_search_requests: i64,
}

impl Tokens {
    pub(super) fn read(obj: &Object) -> Result<Self, JsonError> {
        let uncached = required_count(obj, "uncached_input_tokens")?;
        let cache_read = required_count(obj, "cache_read_input_tokens")?;
        let output = required_count(obj, "output_tokens")?;
        let (write_5m, write_1h) = match nested(obj, "cache_creation", true)? {
            Some(creation) => (
                required_count(creation, "ephemeral_5m_input_tokens").map_err(|e| report::at("cache_creation", e))?,
                required_count(creation, "ephemeral_1h_input_tokens").map_err(|e| report::at("cache_creation", e))?,
            ),
            None => (0, 0),
        };
        // Server tools are optional: a result without them made no searches.
        let web_search_requests = match nested(obj, "server_tool_use", false)? {
            Some(tools) => count(tools, "web_search_requests").map_err(|e| report::at("server_tool_use", e))?,
            None => 0,
        };
        let overflow = || JsonError("token counts overflow a 64-bit total".to_string());
        let cache_creation = write_5m.checked_add(write_1h).ok_or_else(overflow)?;
        let input = uncached
            .checked_add(cache_read)
            .and_then(|sum| sum.checked_add(cache_creation))
            .ok_or_else(overflow)?;
        Ok(Self {
            input,
            output,
            cache_read,
            cache_creation,
            web_search_requests,
        })
    }
}

/// A documented count: the field must be there (see the module doc).
pub(super) fn required_count(obj: &Object, field: &str) -> Result<i64, JsonError> {
    match obj.get(field) {
        None | Some(Json::Null) => Err(JsonError(format!(
            "field '{field}' is missing; the report format may have changed"
        ))),
        Some(_) => count(obj, field),
    }
}

/// A count that may be absent (0), but never fractional or negative.
fn count(obj: &Object, field: &str) -> Result<i64, JsonError> {
    let n = json::int_field(obj, field)?;
    if n < 0 {
        return Err(JsonError(format!("field '{field}' is negative ({n})")));
    }
    Ok(n)
}

/// A nested object; null counts as all zeros, absence is allowed unless `required`.
fn nested<'a>(obj: &'a Object<'a>, field: &str, required: bool) -> Result<Option<&'a Object<'a>>, JsonError> {
    match obj.get(field) {
        Some(Json::Object(inner)) => Ok(Some(inner)),
        Some(Json::Null) => Ok(None),
        None if !required => Ok(None),
        None => Err(JsonError(format!(
            "field '{field}' is missing; the report format may have changed"
        ))),
        Some(other) => Err(JsonError(format!("field '{field}' should be an object, found {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::schema::{Granularity, RecordType};
    use chrono::{TimeZone, Utc};

    const SPEC: EndpointSpec = EndpointSpec {
        record_type: RecordType::Usage,
        endpoint: "usage_report/messages",
        granularity: Granularity::Hour,
    };

    fn map(result: &str) -> Result<Vec<FetchedRecord>, JsonError> {
        let value = Json::parse(result.as_bytes()).unwrap();
        let bucket = Bucket {
            start: Utc.with_ymd_and_hms(2025, 8, 1, 0, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2025, 8, 1, 1, 0, 0).unwrap(),
            results: &[],
            path: "data[0]".to_string(),
        };
        records(&SPEC, &bucket, &value, "data[0].results[0]")
    }

    const DOCUMENTED: &str = r#"{
        "uncached_input_tokens": 1500,
        "cache_creation": {"ephemeral_1h_input_tokens": 1000, "ephemeral_5m_input_tokens": 500},
        "cache_read_input_tokens": 200,
        "output_tokens": 500,
        "server_tool_use": {"web_search_requests": 10},
        "api_key_id": "apikey_01Rj2N8SVvo6BePZj99NhmiT",
        "workspace_id": "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ",
        "model": "claude-sonnet-4-20250514",
        "service_tier": "standard",
        "context_window": "0-200k"
    }"#;

    #[test]
    fn documented_result_sums_nested_cache_writes_into_input() {
        let records = map(DOCUMENTED).unwrap();
        let tokens = &records[0];
        assert_eq!(tokens.measures.input_tokens, 1500 + 200 + 500 + 1000);
        assert_eq!(tokens.measures.cached_input_tokens, 200);
        assert_eq!(tokens.measures.cache_creation_tokens, 1500);
        assert_eq!(tokens.measures.output_tokens, 500);
        assert_eq!(tokens.measures.requests, 0);
        assert!(!tokens.measures.requests_reported);
        assert_eq!(tokens.dims.service, "messages");
        assert_eq!(tokens.dims.model_raw, "claude-sonnet-4-20250514");
        assert_eq!(tokens.dims.workspace_id, "wrkspc_01JwQvzr7rXLA5AGx3HKfFUJ");
        assert_eq!(tokens.dims.api_key_id, "apikey_01Rj2N8SVvo6BePZj99NhmiT");
        let attrs: Vec<_> = tokens.dims.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(attrs, ["context_window=0-200k", "service_tier=standard"]);
        // Identity: the five grouping fields, no measures.
        let names: Vec<_> = tokens.identity.raw_group.keys().collect();
        assert_eq!(
            names,
            ["api_key_id", "context_window", "model", "service_tier", "workspace_id"]
        );
    }

    #[test]
    fn web_searches_become_a_second_record_with_its_own_identity() {
        let records = map(DOCUMENTED).unwrap();
        assert_eq!(records.len(), 2);
        let (tokens, search) = (&records[0], &records[1]);
        assert_eq!(search.dims.service, "web_search");
        assert_eq!(search.measures.quantity, Decimal::from(10));
        assert_eq!(search.measures.unit, "requests");
        assert_eq!(search.measures.input_tokens + search.measures.output_tokens, 0);
        assert_ne!(search.identity, tokens.identity);
        assert_eq!(
            search.identity.raw_group["_measure"],
            RawField::Text("web_search_requests".into())
        );
        let mut without_measure = search.identity.raw_group.clone();
        without_measure.remove("_measure");
        assert_eq!(without_measure, tokens.identity.raw_group);
    }

    #[test]
    fn no_searches_no_second_record() {
        let result = r#"{"uncached_input_tokens": 1, "cache_creation": null, "cache_read_input_tokens": 0,
                         "output_tokens": 2, "server_tool_use": {"web_search_requests": 0}}"#;
        let records = map(result).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].measures.input_tokens, 1);
    }

    #[test]
    fn nulls_stay_distinct_from_empty_strings() {
        let null_ws = r#"{"uncached_input_tokens": 1, "cache_creation": null, "cache_read_input_tokens": 0,
                          "output_tokens": 0, "workspace_id": null, "api_key_id": null}"#;
        let empty_ws = r#"{"uncached_input_tokens": 1, "cache_creation": null, "cache_read_input_tokens": 0,
                           "output_tokens": 0, "workspace_id": "", "api_key_id": ""}"#;
        let a = &map(null_ws).unwrap()[0];
        let b = &map(empty_ws).unwrap()[0];
        assert_eq!(a.dims, b.dims, "both read as empty columns");
        assert_eq!(a.identity.raw_group["workspace_id"], RawField::Null);
        assert_ne!(a.identity, b.identity);
    }

    #[test]
    fn unknown_grouping_fields_are_attributes_and_identity() {
        let result = r#"{"uncached_input_tokens": 1, "cache_creation": null, "cache_read_input_tokens": 0,
                         "output_tokens": 0, "inference_geo": "us", "speed": null}"#;
        let record = &map(result).unwrap()[0];
        assert_eq!(
            record.dims.attributes.get("inference_geo").map(|text| text.as_str()),
            Some("us")
        );
        assert!(!record.dims.attributes.contains_key("speed"));
        assert_eq!(record.identity.raw_group["speed"], RawField::Null);
    }

    #[test]
    fn a_flat_or_missing_cache_field_fails_loudly() {
        let flat = r#"{"uncached_input_tokens": 1, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 0,
                       "output_tokens": 0}"#;
        let err = map(flat).unwrap_err();
        assert!(err.0.contains("'cache_creation'"), "{err}");
        let inner = r#"{"uncached_input_tokens": 1, "cache_creation": {"ephemeral_5m_input_tokens": 1},
                        "cache_read_input_tokens": 0, "output_tokens": 0}"#;
        let err = map(inner).unwrap_err();
        assert!(
            err.0
                .contains("data[0].results[0]: cache_creation: field 'ephemeral_1h_input_tokens'"),
            "{err}"
        );
    }

    #[test]
    fn fractional_or_negative_counts_are_malformed() {
        let frac = r#"{"uncached_input_tokens": 1.5, "cache_creation": null, "cache_read_input_tokens": 0,
                       "output_tokens": 0}"#;
        assert!(map(frac).unwrap_err().0.contains("'uncached_input_tokens'"));
        let neg = r#"{"uncached_input_tokens": 1, "cache_creation": null, "cache_read_input_tokens": 0,
                      "output_tokens": -3}"#;
        assert!(map(neg).unwrap_err().0.contains("'output_tokens' is negative"));
    }
}
