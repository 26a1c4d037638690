//! The envelope both Anthropic reports share (`data[]` time buckets with
//! `results[]`, then `has_more` / `next_page`) and the split of a result into
//! identity and descriptive columns, which usage and cost do alike.

use crate::providers::json::{Json, Object};
use chrono::{DateTime, Duration, Utc};

use crate::normalize::schema::{Granularity, RawGroup};
use crate::providers::json::{self, JsonError};
use crate::providers::platform::identity;

/// One time bucket of a page, borrowed from the parsed body.
#[derive(Debug)]
pub(super) struct Bucket<'a> {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub results: &'a [Json<'a>],
    /// Where the bucket sits in its page (`data[3]`), for error messages.
    pub path: String,
}

/// One page of a report.
#[derive(Debug)]
pub(super) struct Page<'a> {
    pub buckets: Vec<Bucket<'a>>,
    pub next_page: Option<String>,
}

/// Reads the envelope of one page. Every bucket must be exactly one whole
/// bucket of `granularity`: the sync's scope is a set of bucket starts, so a
/// shifted or partial bucket cannot be placed in it and is refused rather than
/// guessed at (Anthropic documents that it omits a bucket that would end after
/// `ending_at` instead of cutting it short).
pub(super) fn parse_page<'a>(body: &'a Json<'a>, granularity: Granularity) -> Result<Page<'a>, JsonError> {
    let top = json::object(body, "the response")?;
    let data = json::array(top, "data")?;
    let mut buckets = Vec::with_capacity(data.len());
    for (i, item) in data.iter().enumerate() {
        let path = format!("data[{i}]");
        let obj = json::object(item, &path)?;
        let start = json::rfc3339(obj, "starting_at").map_err(|e| at(&path, e))?;
        let end = json::rfc3339(obj, "ending_at").map_err(|e| at(&path, e))?;
        if granularity.floor(start) != start || end != start + Duration::seconds(granularity.seconds()) {
            return Err(JsonError(format!(
                "{path}: fields 'starting_at'/'ending_at' ({}, {}) are not one whole {granularity} bucket",
                start.to_rfc3339(),
                end.to_rfc3339()
            )));
        }
        let results = json::array(obj, "results").map_err(|e| at(&path, e))?;
        buckets.push(Bucket {
            start,
            end,
            results,
            path,
        });
    }
    let next_page = json::next_page(top)?;
    Ok(Page { buckets, next_page })
}

/// Prefixes a parse error with where in the page it happened.
pub(super) fn at(path: &str, err: JsonError) -> JsonError {
    JsonError(format!("{path}: {}", err.0))
}

/// The record's identity within its bucket: the platform's one identity rule
/// (every scalar non-measure field as returned, nulls kept).
pub(super) fn raw_group(result: &Object, measures: &[&str]) -> RawGroup {
    identity::raw_group(result, |name, _| measures.contains(&name))
}

pub(super) use identity::{attributes, text};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::schema::RawField;
    use chrono::TimeZone;

    fn page(body: &str) -> Json<'_> {
        Json::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn reads_buckets_and_cursor() {
        let body = page(
            r#"{"data": [
                {"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-01T01:00:00Z", "results": []},
                {"starting_at": "2025-08-01T01:00:00Z", "ending_at": "2025-08-01T02:00:00Z", "results": [{}]}
            ], "has_more": true, "next_page": "page_X"}"#,
        );
        let parsed = parse_page(&body, Granularity::Hour).unwrap();
        assert_eq!(parsed.buckets.len(), 2);
        assert_eq!(
            parsed.buckets[1].start,
            Utc.with_ymd_and_hms(2025, 8, 1, 1, 0, 0).unwrap()
        );
        assert_eq!(parsed.buckets[1].results.len(), 1);
        assert_eq!(parsed.next_page.as_deref(), Some("page_X"));
    }

    #[test]
    fn refuses_a_bucket_of_the_wrong_width() {
        let body = page(
            r#"{"data": [{"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z", "results": []}],
                "has_more": false, "next_page": null}"#,
        );
        let err = parse_page(&body, Granularity::Hour).unwrap_err();
        assert!(err.0.contains("data[0]") && err.0.contains("1h"), "{err}");
    }

    #[test]
    fn refuses_missing_results_and_bad_times() {
        let no_results =
            page(r#"{"data": [{"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z"}]}"#);
        let err = parse_page(&no_results, Granularity::Day).unwrap_err();
        assert!(err.0.contains("data[0]: field 'results'"), "{err}");
        let bad_time = page(r#"{"data": [{"starting_at": "yesterday", "ending_at": "2025-08-02T00:00:00Z"}]}"#);
        let err = parse_page(&bad_time, Granularity::Day).unwrap_err();
        assert!(err.0.contains("'starting_at'"), "{err}");
    }

    #[test]
    fn identity_keeps_nulls_and_skips_measures_and_objects() {
        let result = page(r#"{"workspace_id": null, "model": "m", "amount": "1", "nested": {"a": 1}}"#);
        let group = raw_group(result.as_object().unwrap(), &["amount"]);
        assert_eq!(group.len(), 2);
        assert_eq!(group["workspace_id"], RawField::Null);
        let attrs = attributes(&group, &[]);
        assert_eq!(attrs.len(), 1, "null is not an attribute: {attrs:?}");
        assert_eq!(text(&group, "workspace_id"), "");
    }
}
