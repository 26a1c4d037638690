//! The beta Usage and Cost Analytics API, for accounts with `api = "analytics"`:
//! `GET /v1/organizations/analytics/usage` (hourly tokens and requests) and
//! `GET /v1/organizations/analytics/cost` (daily billed USD, in cents).
//!
//! # What was verified, and where
//! Against Anthropic's "Usage and Cost Analytics API" guide and the API
//! reference pages of the SDKs for `beta/organization/analytics/{usage,cost}`
//! (Go, C#, Python), read 2026-11:
//! - both paths; every request carries `anthropic-beta:
//!   analytics-usage-cost-2026-08-24` and `anthropic-version`;
//! - the request takes `starting_at`, `ending_at` (exclusive), `time_bucket_width`
//!   (`1d` in the guide's example), `group_by[]`, `limit` and `page`; `limit`
//!   only sets the page size and pages follow `has_more` / `next_page`;
//! - the answer is a flat list of rows, one per time bucket and group (not
//!   buckets with `results`): `{starting_at, ending_at, group, usage}` or
//!   `{starting_at, ending_at, group, cost}`; `ending_at` is the end of the
//!   row's bucket; `group` fields are null unless grouped by (the guide's
//!   example shows `product`, `model`, `context_window`, `inference_geo`,
//!   `speed`, ... all present); the usage has `total_tokens`;
//! - a cost row's `cost` holds the amount "post-discount, pre-credit, in
//!   fractional cents (minor units)", `currency` ("USD"), a list-price amount
//!   "pre-discount, in fractional cents", and `requests`, which is null when
//!   grouped by `cost_type` or `token_type`;
//! - the cost group includes `cost_type` and `token_type`.
//!
//! # What is assumed (excerpts read were partial)
//! - the list-price field is named `list_amount`; amounts are decimal strings
//!   like the legacy report's (a JSON number is accepted too);
//! - the usage token fields are the legacy report's (`uncached_input_tokens`,
//!   `cache_read_input_tokens`, `cache_creation.ephemeral_{5m,1h}_input_tokens`,
//!   `output_tokens`, `server_tool_use.web_search_requests`) plus `requests`;
//! - `group_by[]` accepts `api_key_id`, `workspace_id`, `model`, `service_tier`,
//!   `context_window`, `inference_geo` for usage and `workspace_id`, `model`,
//!   `service_tier`, `context_window`, `inference_geo`, `cost_type`,
//!   `token_type` for cost (the guide names these dimensions; there is no
//!   `description` in this API);
//! - the range of one request may span at most 31 days (as the Enterprise
//!   analytics reports document), so longer windows are asked in 31-day parts;
//! - buckets that would end after `ending_at` are not answered, so `ending_at`
//!   is sent on a bucket edge and every bucket before it counts as covered
//!   (the API leaves rows without usage out, so an absent row is a zero).
//!
//! # Choices
//! - Pages cut through rows, so the pager runs with
//!   [`Spread::RowsAcrossPages`]: a record identity seen twice is the error.
//!   `limit` is not sent: the API's default page size is always valid.
//! - Identity: the `group` fields asked for (null kept: a null workspace is
//!   the default workspace) plus any other non-null scalar group field, so a
//!   new null field in the answer does not re-key every record.
//! - Usage `requests` is stored with `requests_reported = true`. The cost
//!   row's `requests` is not stored: usage already counts those requests and
//!   `usage_daily` sums both record types (it is null at our grouping anyway).
//! - Cost is billed money only: `cost` = `amount` / 100 exactly, the cents in
//!   `amount_original`. The list price and the discount (list - amount) are
//!   kept as attributes `list_amount_cents` and `discount_cents`, exact text.
//! - Endpoint names for record identity: `analytics/usage`, `analytics/cost`.

use crate::providers::json::{Json, Object};
use chrono::{DateTime, Duration, SecondsFormat, SubsecRound, Utc};

use super::cost::{amount_cents, cents_to_dollars, service};
use super::usage::{required_count, token_records, Tokens};
use super::{AnthropicAdapter, DESCRIPTOR};
use crate::normalize::schema::{
    CostSource, Dimensions, FetchedRecord, Granularity, Measures, RawField, RawGroup, RecordIdentity, RecordType,
};
use crate::providers::json::{self, JsonError};
use crate::providers::platform::identity as platform_identity;
use crate::providers::platform::paging::{bucket_starts, Page, PageBucket, Pager, Spread};
use crate::providers::{EndpointFetch, EndpointSpec, ProviderError, TimeWindow};

/// The beta every analytics request names.
pub(super) const BETA: &str = "analytics-usage-cost-2026-08-24";

pub(super) const USAGE: EndpointSpec = EndpointSpec {
    record_type: RecordType::Usage,
    endpoint: "analytics/usage",
    granularity: Granularity::Hour,
};

pub(super) const COST: EndpointSpec = EndpointSpec {
    record_type: RecordType::Cost,
    endpoint: "analytics/cost",
    granularity: Granularity::Day,
};

/// Every usage dimension we store: records as fine as the API makes them.
pub(super) const USAGE_GROUP_BY: &[&str] = &[
    "api_key_id",
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
];

/// Every cost dimension we store. Grouping by `cost_type`/`token_type` makes
/// `requests` null, which we do not store anyway.
pub(super) const COST_GROUP_BY: &[&str] = &[
    "workspace_id",
    "model",
    "service_tier",
    "context_window",
    "inference_geo",
    "cost_type",
    "token_type",
];

/// The longest range one request may span.
const MAX_RANGE_DAYS: i64 = 31;

/// Pages one fetch may take before paging is called endless: far more than
/// any real window needs at the API's default page size.
const MAX_PAGES: usize = 50_000;

/// Cost grouping fields with a column of their own (`cost_type` becomes
/// `service`); the rest go to attributes.
const COST_COLUMNS: &[&str] = &["workspace_id", "model", "cost_type"];

impl AnthropicAdapter {
    /// Fetches one analytics endpoint over `window`, in parts of at most 31
    /// days, each through the shared pager.
    pub(super) async fn fetch_analytics(
        &self,
        spec: &EndpointSpec,
        window: TimeWindow,
    ) -> Result<EndpointFetch, ProviderError> {
        let window = window.snapped_out(spec.granularity);
        // Only whole buckets that have ended: ending_at on a bucket edge.
        let end = window.end.min(spec.granularity.floor((self.now)().trunc_subsecs(0)));
        let mut fetch = EndpointFetch::default();
        let mut start = window.start;
        while start < end {
            let part = TimeWindow::new(start, end.min(start + Duration::days(MAX_RANGE_DAYS)));
            let got = self.fetch_analytics_part(spec, part).await?;
            fetch.records.extend(got.records);
            fetch.covered_buckets.extend(got.covered_buckets);
            start = part.end;
        }
        Ok(fetch)
    }

    async fn fetch_analytics_part(
        &self,
        spec: &EndpointSpec,
        part: TimeWindow,
    ) -> Result<EndpointFetch, ProviderError> {
        let group_by = match spec.record_type {
            RecordType::Usage => USAGE_GROUP_BY,
            _ => COST_GROUP_BY,
        };
        let mut first_query = vec![
            ("starting_at", part.start.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ("ending_at", part.end.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ("time_bucket_width", spec.granularity.as_str().to_string()),
        ];
        first_query.extend(group_by.iter().map(|field| ("group_by[]", field.to_string())));
        let pager = Pager {
            http: &self.http,
            spec,
            window: part,
            spread: Spread::RowsAcrossPages { max_pages: MAX_PAGES },
            measures: DESCRIPTOR.measures,
        };
        let mut fetch = pager
            .collect(|cursor, number| {
                let first_query = &first_query;
                async move {
                    let mut query = first_query.clone();
                    if let Some(token) = cursor {
                        query.push(("page", token));
                    }
                    let url = self.page_url(spec, &query);
                    let body = self
                        .http
                        .get_json(spec.endpoint, |client| client.get(&url).header("anthropic-beta", BETA))
                        .await?;
                    let page = parse_page(spec, group_by, body.json())?;
                    tracing::debug!(
                        account = %self.http.account(),
                        endpoint = spec.endpoint,
                        page = number,
                        rows = page.buckets.len(),
                        "anthropic analytics page read"
                    );
                    Ok(page)
                }
            })
            .await?;
        // Rows without usage are left out, so every bucket asked is covered,
        // not only those with rows: a stored record of a bucket whose rows
        // are gone now is zero.
        fetch.covered_buckets.extend(bucket_starts(part, spec));
        Ok(fetch)
    }
}

/// One page: each row becomes a bucket of its own with its records (the
/// pager accepts a bucket on several pages under `RowsAcrossPages`).
pub(super) fn parse_page(spec: &EndpointSpec, group_by: &[&str], body: &Json) -> Result<Page, JsonError> {
    let top = json::object(body, "the response")?;
    let data = json::array(top, "data")?;
    let mut buckets = Vec::with_capacity(data.len());
    for (i, row) in data.iter().enumerate() {
        let path = format!("data[{i}]");
        let bucket = parse_row(spec, group_by, row).map_err(|e| JsonError(format!("{path}: {}", e.0)))?;
        buckets.push(bucket);
    }
    let next = json::next_page(top)?;
    Ok(Page { buckets, next })
}

fn parse_row(spec: &EndpointSpec, group_by: &[&str], row: &Json) -> Result<PageBucket, JsonError> {
    let obj = json::object(row, "the row")?;
    let start = json::rfc3339(obj, "starting_at")?;
    let end = json::rfc3339(obj, "ending_at")?;
    let no_group = Object::default();
    let group = match obj.get("group") {
        Some(Json::Object(group)) => group,
        // No dimension at all (the API sends an object; be lenient with null).
        Some(Json::Null) => &no_group,
        _ => return Err(JsonError("field 'group' is missing (expected an object)".into())),
    };
    let raw_group = identity(group, group_by);
    let records = match spec.record_type {
        RecordType::Usage => {
            let usage = measures_object(obj, "usage")?;
            let tokens = Tokens::read(usage).map_err(|e| JsonError(format!("usage: {}", e.0)))?;
            let requests = required_count(usage, "requests").map_err(|e| JsonError(format!("usage: {}", e.0)))?;
            token_records(spec, start, end, raw_group, &tokens, Some(requests))
        }
        _ => vec![
            cost_record(spec, start, end, raw_group, group, measures_object(obj, "cost")?)
                .map_err(|e| JsonError(format!("cost: {}", e.0)))?,
        ],
    };
    Ok(PageBucket {
        start,
        end: Some(end),
        records,
    })
}

/// The grouping fields asked for (null kept), plus any other non-null scalar.
/// The platform's identity rule over the `group` object, where a null means
/// "not grouped by this" unless it was asked for.
fn identity(group: &Object, group_by: &[&str]) -> RawGroup {
    let mut fields = platform_identity::raw_group(group, |name, value| value.is_null() && !group_by.contains(&name));
    // A field asked for but absent is null: same record as when it is sent.
    for name in group_by.iter().filter(|name| !group.contains_key(name)) {
        fields.insert(*name, RawField::Null);
    }
    fields
}

fn measures_object<'v, 'a>(obj: &'v Object<'a>, field: &str) -> Result<&'v Object<'a>, JsonError> {
    match obj.get(field) {
        Some(Json::Object(inner)) => Ok(inner),
        _ => Err(JsonError(format!("field '{field}' is missing (expected an object)"))),
    }
}

/// A billed cost record: `amount` in cents (exact) as cost in USD, the list
/// price and discount as attributes (module doc).
fn cost_record(
    spec: &EndpointSpec,
    bucket_start: DateTime<Utc>,
    bucket_end: DateTime<Utc>,
    raw_group: RawGroup,
    group: &Object,
    cost: &Object,
) -> Result<FetchedRecord, JsonError> {
    let cents = amount_cents(cost)?;
    let text = |name: &str| platform_identity::text(&raw_group, name);
    let mut attributes = platform_identity::attributes(&raw_group, COST_COLUMNS);
    match cost.get("list_amount") {
        None | Some(Json::Null) => {}
        Some(list) => {
            let list = json::decimal(list, "list_amount")?;
            attributes.insert("list_amount_cents".into(), list.normalize().to_string().into());
            attributes.insert("discount_cents".into(), (list - cents).normalize().to_string().into());
        }
    }
    Ok(FetchedRecord {
        identity: RecordIdentity {
            record_type: spec.record_type,
            endpoint: spec.endpoint.into(),
            granularity: spec.granularity,
            bucket_start,
            bucket_end,
            raw_group: raw_group.clone(),
        },
        dims: Dimensions {
            model_raw: text("model"),
            service: service(group.get("cost_type")).into(),
            workspace_id: text("workspace_id"),
            attributes,
            ..Dimensions::default()
        },
        measures: Measures {
            cost: cents_to_dollars(cents),
            cost_source: CostSource::Billed,
            currency: super::cost::CURRENCY.into(),
            amount_original: cents,
            requests_reported: false,
            ..Measures::default()
        },
    })
}

#[cfg(test)]
mod tests;
