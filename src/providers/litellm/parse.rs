//! One page of LiteLLM's `GET /user/daily/activity` read into records.
//!
//! Page: `{results: [{date, metrics, breakdown}], metadata: {page,
//! total_pages, has_more, ...}}`. The proxy pages its daily spend rows (one
//! per date x key x model x provider x ...), then groups each page's rows by
//! date, so one date can appear on several pages with part of its rows each:
//! records are per (date, model, key) from `breakdown.models[m]
//! .api_key_breakdown[k]`, and the shared pager merges pages by date (a
//! (date, model, key) on two pages is refused, never summed twice).
//! `metadata.total_*` are totals of the page only and are never used.
//!
//! Spend is LiteLLM's own estimate from its price map, not a bill: it is
//! stored as `estimated_cost` only; `cost` stays 0.

use std::collections::BTreeMap;

use crate::providers::json::{Json, Object};
use chrono::{DateTime, NaiveDate, Utc};

use crate::normalize::schema::{
    Dimensions, FetchedRecord, Granularity, Measures, RawField, RawGroup, RecordIdentity, RecordType,
};
use crate::providers::json::{self, JsonError};

/// What one page contributed.
#[derive(Debug)]
pub(super) struct Page {
    pub records: Vec<FetchedRecord>,
    /// Whether the proxy says there are more pages.
    pub more: bool,
}

pub(super) fn page(body: &Json) -> Result<Page, JsonError> {
    let page = json::object(body, "the response")?;
    let results = json::array(page, "results")?;
    let mut records = Vec::new();
    for (i, result) in results.iter().enumerate() {
        let place = format!("results[{i}]");
        let result = json::object(result, &place)?;
        day_records(result, &mut records).map_err(|e| JsonError(format!("{place}: {}", e.0)))?;
    }
    let more = match page.get("metadata").and_then(Json::as_object) {
        Some(meta) => match meta.get("has_more").and_then(Json::as_bool) {
            Some(more) => more,
            None => json::int_field(meta, "page")? < json::int_field(meta, "total_pages")?,
        },
        None => false,
    };
    Ok(Page { records, more })
}

fn day_records(result: &Object, out: &mut Vec<FetchedRecord>) -> Result<(), JsonError> {
    let text = result
        .get("date")
        .and_then(Json::as_str)
        .ok_or_else(|| JsonError("field 'date' should be a YYYY-MM-DD date".into()))?;
    let day = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| JsonError(format!("field 'date' is not a YYYY-MM-DD date ({text})")))?;
    let start = day.and_time(Default::default()).and_utc();
    let breakdown = result.get("breakdown").and_then(Json::as_object);
    let empty = Object::default();
    let models = breakdown
        .and_then(|b| b.get("models"))
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    let keys = breakdown
        .and_then(|b| b.get("api_keys"))
        .and_then(Json::as_object)
        .unwrap_or(&empty);
    if models.is_empty() {
        // No per-model breakdown (an older proxy): the day's metrics as one
        // record without model and key, unless there is nothing.
        let metrics = result.get("metrics").and_then(Json::as_object).unwrap_or(&empty);
        let m = measures(metrics).map_err(|e| JsonError(format!("metrics: {}", e.0)))?;
        let nothing = m.requests == 0
            && m.input_tokens == 0
            && m.output_tokens == 0
            && m.provider_estimate.is_none_or(|e| e.is_zero());
        if !nothing {
            out.push(record(start, Json::Null, Json::Null, m, None));
        }
        return Ok(());
    }
    for (model, entry) in models.iter() {
        let place = format!("breakdown.models['{model}']");
        let entry = json::object(entry, &place)?;
        let per_key = entry
            .get("api_key_breakdown")
            .and_then(Json::as_object)
            .filter(|k| !k.is_empty());
        match per_key {
            Some(per_key) => {
                for (key, item) in per_key.iter() {
                    let item = json::object(item, &format!("{place}.api_key_breakdown"))?;
                    let metrics = item.get("metrics").and_then(Json::as_object).unwrap_or(&empty);
                    let m = measures(metrics).map_err(|e| JsonError(format!("{place}.api_key_breakdown: {}", e.0)))?;
                    // Key metadata: on the item, else in breakdown.api_keys.
                    let meta = item
                        .get("metadata")
                        .and_then(Json::as_object)
                        .filter(|m| !m.is_empty())
                        .or_else(|| keys.get(key).and_then(|k| k.get("metadata")).and_then(Json::as_object));
                    out.push(record(start, Json::from(model), Json::from(key), m, meta));
                }
            }
            None => {
                let metrics = entry.get("metrics").and_then(Json::as_object).unwrap_or(&empty);
                let m = measures(metrics).map_err(|e| JsonError(format!("{place}: {}", e.0)))?;
                out.push(record(start, Json::from(model), Json::Null, m, None));
            }
        }
    }
    Ok(())
}

/// `prompt_tokens` counts all input, cache reads and writes included (the
/// OpenAI convention LiteLLM follows); spend is the proxy's estimate.
fn measures(metrics: &Object) -> Result<Measures, JsonError> {
    Ok(Measures {
        input_tokens: json::int_field(metrics, "prompt_tokens")?,
        output_tokens: json::int_field(metrics, "completion_tokens")?,
        cached_input_tokens: json::int_field(metrics, "cache_read_input_tokens")?,
        cache_creation_tokens: json::int_field(metrics, "cache_creation_input_tokens")?,
        requests: json::int_field(metrics, "api_requests")?,
        requests_reported: true,
        provider_estimate: Some(json::optional_decimal(metrics, "spend")?),
        ..Measures::default()
    })
}

fn record(start: DateTime<Utc>, model: Json, key: Json, measures: Measures, meta: Option<&Object>) -> FetchedRecord {
    // The identity is what the proxy groups by: model and key. Key metadata
    // (alias, team, user) describes the key and can be renamed: not identity.
    let raw_group: RawGroup = [("api_key", &key), ("model", &model)]
        .into_iter()
        .filter_map(|(name, v)| RawField::from_json(v).map(|f| (name.to_string(), f)))
        .collect();
    let meta_text = |name: &str| meta.map(|m| json::str_field(m, name)).unwrap_or_default();
    let mut attributes = BTreeMap::new();
    let alias = meta_text("key_alias");
    if !alias.is_empty() {
        attributes.insert("key_alias".into(), alias.into());
    }
    FetchedRecord {
        identity: RecordIdentity {
            record_type: RecordType::Usage,
            endpoint: super::ENDPOINT.into(),
            granularity: Granularity::Day,
            bucket_start: start,
            bucket_end: start + chrono::Duration::days(1),
            raw_group,
        },
        dims: Dimensions {
            model_raw: model.as_str().unwrap_or_default().into(),
            api_key_id: key.as_str().unwrap_or_default().into(),
            workspace_id: meta_text("team_id").into(),
            user_id: meta_text("user_id").into(),
            service: "proxy".into(),
            attributes,
            ..Dimensions::default()
        },
        measures,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use super::*;

    const PAGE1: &str = include_str!("../../../tests/fixtures/litellm/daily_activity_page1.json");
    const PAGE2: &str = include_str!("../../../tests/fixtures/litellm/daily_activity_page2.json");

    fn parse(text: &str) -> Page {
        page(&Json::parse(text.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn litellm_records_per_model_and_key_with_spend_as_estimate_only() {
        let p = parse(PAGE1);
        assert!(p.more);
        assert_eq!(p.records.len(), 3);
        let r = &p.records[0];
        assert_eq!(r.identity.bucket_start.date_naive().to_string(), "2025-03-27");
        assert_eq!(r.dims.model_raw, "claude-sonnet-4-20250514");
        assert_eq!(r.dims.api_key_id, "3126b6eaf1c94d3b8f2a");
        assert_eq!(
            (r.dims.workspace_id.as_str(), r.dims.attributes["key_alias"].as_str()),
            ("team-ml", "prod")
        );
        assert_eq!(
            r.measures.provider_estimate,
            Some(Decimal::from_str("0.0177072000000000001").unwrap())
        );
        assert!(r.measures.cost.is_zero(), "spend is never cost");
        assert_eq!(
            (
                r.measures.input_tokens,
                r.measures.cached_input_tokens,
                r.measures.cache_creation_tokens
            ),
            (1111, 500, 100)
        );
        assert_eq!((r.measures.output_tokens, r.measures.requests), (1711, 11));
        let keys: Vec<&str> = r.identity.raw_group.keys().collect();
        assert_eq!(keys, ["api_key", "model"]);
    }

    #[test]
    fn litellm_a_date_split_across_pages_gives_distinct_records() {
        let (a, b) = (parse(PAGE1), parse(PAGE2));
        assert!(!b.more);
        let day = |p: &Page, d: &str| {
            p.records
                .iter()
                .filter(|r| r.identity.bucket_start.date_naive().to_string() == d)
                .map(|r| (r.dims.model_raw.clone(), r.dims.api_key_id.clone()))
                .collect::<Vec<_>>()
        };
        let (first, second) = (day(&a, "2025-03-26"), day(&b, "2025-03-26"));
        assert!(!first.is_empty() && !second.is_empty(), "2025-03-26 is on both pages");
        assert!(first.iter().all(|k| !second.contains(k)));
    }

    #[test]
    fn litellm_nulls_and_missing_breakdowns() {
        let p = parse(PAGE2);
        // A model without api_key_breakdown: one record with a null key.
        let r = p
            .records
            .iter()
            .find(|r| r.dims.model_raw == "text-embedding-3-small")
            .unwrap();
        assert_eq!(r.identity.raw_group["api_key"], RawField::Null);
        assert_eq!(
            (r.measures.output_tokens, r.measures.provider_estimate),
            (0, Some(Decimal::ZERO))
        );
        let bad = PAGE2.replacen(
            "\"completion_tokens\": null, \"api_requests\": 3}",
            "\"completion_tokens\": null, \"api_requests\": 1.5}",
            1,
        );
        let err = page(&serde_json::from_str(&bad).unwrap()).unwrap_err().0;
        assert!(err.contains("results[0]") && err.contains("api_requests"), "{err}");
        assert!(page(&Json::from(serde_json::json!({"metadata": {}})))
            .unwrap_err()
            .0
            .contains("results"));
    }
}
