//! Anthropic Admin API adapter. By default (`api = "legacy"`) it reads
//! `usage_report/messages` (hourly tokens) and `cost_report` (daily billed
//! USD, in cents on the wire); with `api = "analytics"` the beta Usage and
//! Cost Analytics API instead ([`analytics`]), which adds request counts and
//! list prices. Both produce the same normalized records.
//!
//! Both legacy reports share one envelope and pagination, so their request
//! loop lives here once; [`usage`] and [`cost`] only map a result to records.

mod analytics;
mod config;
mod cost;
mod names;
mod report;
mod usage;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

use crate::allocate::AllocationSpec;
use crate::normalize::schema::{Granularity, RecordType};
use crate::providers::platform::paging::{Page, PageBucket, Pager, Spread};
use crate::providers::platform::{HttpSetup, MeasurePolicy, Redactor, StandardClassifier, StaticHeaders};
use crate::providers::registry::{AdapterHooks, CredentialKeys, KeyHint, ProviderDescriptor, DAY, USAGE_INTERVAL};
use crate::providers::{
    EndpointFetch, EndpointSpec, HttpStats, Provider, ProviderAdapter, ProviderError, ProviderHttp, RetryPolicy,
    TimeWindow,
};

pub use config::{AnthropicConfig, ApiMode};

/// Anthropic in the registry.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    provider: Provider::Anthropic,
    default_base_url: Some("https://api.anthropic.com"),
    default_interval: USAGE_INTERVAL,
    // cost_report restates up to 3 days back.
    min_lookback: Duration::from_secs(3 * DAY.as_secs()),
    credentials: CredentialKeys::API_KEY,
    settings: &["api", "allocate_cost"],
    // Neither report documents negative values.
    measures: MeasurePolicy {
        negative_money: false,
        negative_quantities: false,
    },
    requests_per_second: 5,
    key_hints: &[KeyHint {
        credential: "api_key",
        prefix: "sk-ant-api",
        diagnosis: "this is a standard (workspace) API key; the usage and cost reports need an Admin API key \
                    (sk-ant-admin01-...), which an organization admin creates in the Claude Console under \
                    Settings > Admin keys",
    }],
    adapter: AdapterHooks {
        check: |account| AnthropicConfig::read(account).map(|_| ()),
        build: |account, context| {
            let config = crate::providers::registry::read_config(account, AnthropicConfig::read)?;
            Ok(Arc::new(
                AnthropicAdapter::new(
                    account.id,
                    account.base_url,
                    config.api_key.expose().to_string(),
                    context.retry.clone(),
                )?
                .with_mode(config.mode)
                .with_allocation(config.allocate_cost),
            ))
        },
    },
};

const API_VERSION: &str = "2023-06-01";

/// Shown on 401/403: the usual cause is a normal API key where an Admin key is needed.
const AUTH_HINT: &str = "an Anthropic Admin API key (sk-ant-admin01-...) is required; standard API keys \
    cannot read usage or cost reports, and individual accounts have no Admin API. An organization admin \
    can create one in the Claude Console under Settings > Admin keys";

const USAGE: EndpointSpec = EndpointSpec {
    record_type: RecordType::Usage,
    endpoint: "usage_report/messages",
    granularity: Granularity::Hour,
};

const COST: EndpointSpec = EndpointSpec {
    record_type: RecordType::Cost,
    endpoint: "cost_report",
    granularity: Granularity::Day,
};

/// Every grouping the API offers that we store, so records are as fine as the
/// report allows. The cost report cannot group by API key (claude-quickstarts#431).
const USAGE_GROUP_BY: &[&str] = &["api_key_id", "workspace_id", "model", "service_tier", "context_window"];
const COST_GROUP_BY: &[&str] = &["workspace_id", "description"];

/// One Anthropic organization, read through its Admin API key.
pub struct AnthropicAdapter {
    http: ProviderHttp,
    /// `base_url` without a trailing slash; paths are appended.
    base_url: String,
    /// Which pair of endpoints this account reads.
    mode: ApiMode,
    /// The clock that bounds `ending_at`; tests pin it.
    now: fn() -> DateTime<Utc>,
    /// Share the cost report out to API keys (`allocate_cost`).
    allocate_cost: bool,
}

impl fmt::Debug for AnthropicAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicAdapter")
            .field("account", &self.http.account())
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

impl AnthropicAdapter {
    pub fn new(account_id: &str, base_url: &str, api_key: String, policy: RetryPolicy) -> Result<Self, ProviderError> {
        let config_error = |detail: String| ProviderError::Config {
            account: account_id.to_string(),
            detail,
        };
        let base_url = crate::providers::platform::http::api_root(account_id, base_url, "https://api.anthropic.com")?;
        if api_key.trim().is_empty() {
            return Err(config_error(
                "credentials.api_key is empty: set it to an Anthropic Admin API key (sk-ant-admin01-...)".to_string(),
            ));
        }
        if !api_key.starts_with("sk-ant-admin") {
            tracing::warn!(
                account = account_id,
                "anthropic api_key does not look like an Admin API key (sk-ant-admin...); usage and cost reports \
                 need one"
            );
        }
        let auth = StaticHeaders::new(
            &[("x-api-key", api_key.clone(), "credentials.api_key")],
            &[("anthropic-version", API_VERSION)],
        )
        .map_err(|e| config_error(e.to_string()))?;
        let http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::Anthropic,
            policy,
            auth: Arc::new(auth),
            // 529 "overloaded" is a 5xx and retried like one.
            classifier: Arc::new(StandardClassifier),
            requests_per_second: DESCRIPTOR.requests_per_second,
            auth_hint: AUTH_HINT.to_string(),
            redactor: Redactor::new([api_key.as_str()]),
        });
        Ok(Self {
            http,
            base_url,
            mode: ApiMode::Legacy,
            now: Utc::now,
            allocate_cost: false,
        })
    }

    /// Shares each cost row out to the usage of its day (`allocate_cost`).
    pub fn with_allocation(mut self, on: bool) -> Self {
        self.allocate_cost = on;
        self
    }

    /// Reads the analytics endpoints instead of the legacy reports.
    pub fn with_mode(mut self, mode: ApiMode) -> Self {
        self.mode = mode;
        self
    }

    /// Query parameters of the first page; later pages add only `page`.
    /// `ending_at` is capped at now: a bucket still in progress is not asked for.
    fn first_page_query(spec: &EndpointSpec, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<(&'static str, String)> {
        let (limit, group_by) = match spec.record_type {
            // Max buckets per page at each width (API reference).
            RecordType::Usage => ("168", USAGE_GROUP_BY),
            _ => ("31", COST_GROUP_BY),
        };
        let mut query = vec![
            ("starting_at", start.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ("ending_at", end.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ("bucket_width", spec.granularity.as_str().to_string()),
            ("limit", limit.to_string()),
        ];
        query.extend(group_by.iter().map(|field| ("group_by[]", field.to_string())));
        query
    }

    /// The URL of one page. Array parameters keep their literal `[]`, as in
    /// Anthropic's own examples; values are form-encoded.
    fn page_url(&self, spec: &EndpointSpec, query: &[(&'static str, String)]) -> String {
        let encoded: Vec<String> = query
            .iter()
            .map(|(name, value)| {
                format!(
                    "{name}={}",
                    url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
                )
            })
            .collect();
        format!(
            "{}/v1/organizations/{}?{}",
            self.base_url,
            spec.endpoint,
            encoded.join("&")
        )
    }
}

#[async_trait]
impl ProviderAdapter for AnthropicAdapter {
    fn provider(&self) -> Provider {
        Provider::Anthropic
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        match self.mode {
            ApiMode::Legacy => vec![USAGE, COST],
            ApiMode::Analytics => vec![analytics::USAGE, analytics::COST],
        }
    }

    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        let spec = self
            .endpoints()
            .into_iter()
            .find(|s| s == endpoint)
            .ok_or_else(|| ProviderError::unknown_endpoint(self.http.account(), Provider::Anthropic, endpoint))?;
        if self.mode == ApiMode::Analytics {
            return self.fetch_analytics(&spec, window).await;
        }
        let end = window.end.min((self.now)().trunc_subsecs(0));
        if end <= window.start {
            return Ok(EndpointFetch::default());
        }
        let first_query = Self::first_page_query(&spec, window.start, end);
        let pager = Pager {
            http: &self.http,
            spec: &spec,
            window,
            spread: Spread::WholeBuckets,
            measures: DESCRIPTOR.measures,
        };
        pager
            .collect(|cursor, number| {
                let first_query = &first_query;
                let spec = &spec;
                async move {
                    let mut query = first_query.clone();
                    if let Some(token) = cursor {
                        query.push(("page", token));
                    }
                    let url = self.page_url(spec, &query);
                    let body = self.http.get_json(spec.endpoint, |client| client.get(&url)).await?;
                    let parsed = report::parse_page(body.json(), spec.granularity)?;
                    let mut buckets = Vec::with_capacity(parsed.buckets.len());
                    for bucket in &parsed.buckets {
                        // At least one record per result; sized once, as
                        // records are hundreds of bytes each.
                        let mut records = Vec::with_capacity(bucket.results.len());
                        for (i, result) in bucket.results.iter().enumerate() {
                            let path = format!("{}.results[{i}]", bucket.path);
                            match spec.record_type {
                                RecordType::Usage => records.extend(usage::records(spec, bucket, result, &path)?),
                                _ => records.push(cost::record(spec, bucket, result, &path)?),
                            }
                        }
                        buckets.push(PageBucket {
                            start: bucket.start,
                            end: Some(bucket.end),
                            records,
                        });
                    }
                    tracing::debug!(
                        account = %self.http.account(),
                        endpoint = spec.endpoint,
                        page = number,
                        buckets = buckets.len(),
                        "anthropic report page read"
                    );
                    Ok(Page {
                        buckets,
                        next: parsed.next_page,
                    })
                }
            })
            .await
    }

    /// The cost report has no API key and no model for server tools, the
    /// usage report has both: with `allocate_cost` the bill is shared out to
    /// them, matching tier, context window and region where both report one.
    fn allocation(&self) -> Option<AllocationSpec> {
        let (bill, basis) = match self.mode {
            ApiMode::Legacy => (COST, USAGE),
            ApiMode::Analytics => (analytics::COST, analytics::USAGE),
        };
        self.allocate_cost.then_some(AllocationSpec {
            bill,
            basis,
            match_attributes: &["service_tier", "context_window", "inference_geo"],
        })
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }

    async fn fetch_names(&self) -> Result<Option<crate::providers::names::NameSnapshot>, ProviderError> {
        names::fetch(&self.http, &self.base_url).await.map(Some)
    }
}

/// Every Anthropic response parser on fuzzer input (`fuzz/`): the first
/// byte picks the API and endpoint (legacy usage or cost report, analytics
/// usage or cost, the names list), the rest is the body. Never panics.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let Some((which, body)) = crate::providers::json::fuzz_input(data) else {
        return;
    };
    match which % 5 {
        0 | 1 => {
            let spec = if which % 5 == 0 { &USAGE } else { &COST };
            let Ok(parsed) = report::parse_page(&body, spec.granularity) else {
                return;
            };
            for bucket in &parsed.buckets {
                for (i, result) in bucket.results.iter().enumerate() {
                    let path = format!("{}.results[{i}]", bucket.path);
                    match spec.record_type {
                        RecordType::Usage => drop(usage::records(spec, bucket, result, &path)),
                        _ => drop(cost::record(spec, bucket, result, &path)),
                    }
                }
            }
        }
        2 => drop(analytics::parse_page(
            &analytics::USAGE,
            analytics::USAGE_GROUP_BY,
            &body,
        )),
        3 => drop(analytics::parse_page(&analytics::COST, analytics::COST_GROUP_BY, &body)),
        _ => {
            if let Ok(page) = crate::providers::names::id_cursor_page(&body) {
                for (i, item) in page.items.iter().enumerate() {
                    let _ = crate::providers::names::item_text(item, i, "partial_key_hint");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::str::FromStr;
    use std::time::Duration;

    use chrono::TimeZone;
    use rust_decimal::Decimal;
    use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use crate::normalize::record_key::record_key;
    use crate::normalize::schema::{CostSource, FetchedRecord, RawField};

    const KEY: &str = "sk-ant-admin01-FAKE-TEST-key-do-not-use";
    const ACCOUNT: &str = "acme-anthropic";
    const USAGE_PATH: &str = "/v1/organizations/usage_report/messages";
    const COST_PATH: &str = "/v1/organizations/cost_report";

    fn fixture(name: &str) -> String {
        let file = format!("{}/tests/fixtures/anthropic/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn json_body(name: &str) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_raw(fixture(name), "application/json")
    }

    fn fast_policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            ..RetryPolicy::default()
        }
    }

    fn adapter(server: &MockServer) -> AnthropicAdapter {
        AnthropicAdapter::new(ACCOUNT, &format!("{}/", server.uri()), KEY.to_string(), fast_policy()).unwrap()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).unwrap()
    }

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    /// Query pairs of a received request, sorted, without `page`.
    fn query_without_page(request: &wiremock::Request) -> Vec<(String, String)> {
        let mut pairs: Vec<_> = request
            .url
            .query_pairs()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        pairs.sort();
        pairs
    }

    fn keys(records: &[FetchedRecord]) -> HashSet<u64> {
        records.iter().map(|r| record_key(ACCOUNT, &r.identity)).collect()
    }

    async fn mount_usage_pages(server: &MockServer) {
        Mock::given(method("GET"))
            .and(path(USAGE_PATH))
            .and(query_param_is_missing("page"))
            .respond_with(json_body("usage_page1.json"))
            .expect(1)
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path(USAGE_PATH))
            .and(query_param("page", "page_MjAyNS0wOC0wMVQwMjowMDowMFo="))
            .respond_with(json_body("usage_page2.json"))
            .expect(1)
            .mount(server)
            .await;
    }

    #[tokio::test]
    async fn usage_pages_are_followed_with_identical_params() {
        let server = MockServer::start().await;
        mount_usage_pages(&server).await;
        let fetch = adapter(&server)
            .fetch(&USAGE, TimeWindow::new(utc(2025, 8, 1, 0), utc(2025, 8, 1, 4)))
            .await
            .unwrap();

        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 2);
        let first = query_without_page(&requests[0]);
        assert_eq!(
            query_without_page(&requests[1]),
            first,
            "page 2 must repeat every other parameter"
        );
        assert!(requests[0].url.query_pairs().all(|(k, _)| k != "page"));
        let expected: Vec<(String, String)> = [
            ("bucket_width", "1h"),
            ("ending_at", "2025-08-01T04:00:00Z"),
            ("group_by[]", "api_key_id"),
            ("group_by[]", "context_window"),
            ("group_by[]", "model"),
            ("group_by[]", "service_tier"),
            ("group_by[]", "workspace_id"),
            ("limit", "168"),
            ("starting_at", "2025-08-01T00:00:00Z"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(first, expected);
        // Brackets go out literally, as in Anthropic's own examples.
        assert!(requests[0].url.query().unwrap().contains("group_by[]=model"));

        // 4 results, one with web searches -> 5 records, every key distinct.
        assert_eq!(fetch.records.len(), 5);
        assert_eq!(keys(&fetch.records).len(), 5);
        let total_input: i64 = fetch.records.iter().map(|r| r.measures.input_tokens).sum();
        assert_eq!(total_input, 3200 + 40 + 137 + 3);
        let cache_writes: i64 = fetch.records.iter().map(|r| r.measures.cache_creation_tokens).sum();
        assert_eq!(cache_writes, 1500 + 30);
        let searches: Vec<_> = fetch
            .records
            .iter()
            .filter(|r| r.dims.service == "web_search")
            .collect();
        assert_eq!(searches.len(), 1);
        assert_eq!(searches[0].measures.quantity, Decimal::from(10));
    }

    #[tokio::test]
    async fn covered_buckets_are_exactly_those_in_the_answer() {
        let server = MockServer::start().await;
        mount_usage_pages(&server).await;
        // The request reaches 04:00, but the answer stops after 02:00: 03:00 is absent, not empty.
        let fetch = adapter(&server)
            .fetch(&USAGE, TimeWindow::new(utc(2025, 8, 1, 0), utc(2025, 8, 1, 4)))
            .await
            .unwrap();
        let covered: Vec<_> = fetch.covered_buckets.iter().copied().collect();
        assert_eq!(covered, [utc(2025, 8, 1, 0), utc(2025, 8, 1, 1), utc(2025, 8, 1, 2)]);
        assert!(fetch
            .records
            .iter()
            .all(|r| r.identity.bucket_start != utc(2025, 8, 1, 1)));
    }

    #[tokio::test]
    async fn default_workspace_and_workbench_nulls_are_their_own_records() {
        let server = MockServer::start().await;
        mount_usage_pages(&server).await;
        let fetch = adapter(&server)
            .fetch(&USAGE, TimeWindow::new(utc(2025, 8, 1, 0), utc(2025, 8, 1, 4)))
            .await
            .unwrap();
        let workbench = fetch
            .records
            .iter()
            .find(|r| r.identity.raw_group.get("api_key_id") == Some(&RawField::Null))
            .expect("the Workbench result");
        assert_eq!(workbench.dims.api_key_id, "");
        assert_eq!(workbench.identity.raw_group["workspace_id"], RawField::Null);
        // In bucket 02:00 one result has workspace null, the other "": two keys.
        let bucket2: Vec<_> = fetch
            .records
            .iter()
            .filter(|r| r.identity.bucket_start == utc(2025, 8, 1, 2))
            .collect();
        assert_eq!(bucket2.len(), 2);
        assert!(bucket2.iter().all(|r| r.dims.workspace_id.is_empty()));
        assert_ne!(
            record_key(ACCOUNT, &bucket2[0].identity),
            record_key(ACCOUNT, &bucket2[1].identity)
        );
    }

    #[tokio::test]
    async fn cost_pages_convert_cents_exactly() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(COST_PATH))
            .and(query_param_is_missing("page"))
            .respond_with(json_body("cost_page1.json"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(COST_PATH))
            .and(query_param("page", "page_MjAyNS0wOC0wMlQwMDowMDowMFo="))
            .respond_with(json_body("cost_page2.json"))
            .mount(&server)
            .await;
        let fetch = adapter(&server)
            .fetch(&COST, TimeWindow::new(utc(2025, 8, 1, 0), utc(2025, 8, 5, 0)))
            .await
            .unwrap();

        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests.len(), 2);
        let first = query_without_page(&requests[0]);
        assert_eq!(query_without_page(&requests[1]), first);
        for expected in [
            ("bucket_width", "1d"),
            ("limit", "31"),
            ("group_by[]", "workspace_id"),
            ("group_by[]", "description"),
        ] {
            assert!(
                first.contains(&(expected.0.to_string(), expected.1.to_string())),
                "{expected:?} in {first:?}"
            );
        }
        assert!(
            !first.iter().any(|(_, v)| v == "api_key_id"),
            "cost cannot group by key"
        );

        assert_eq!(fetch.records.len(), 4);
        let by_line = |line: &str| fetch.records.iter().find(|r| r.dims.line_item == line).unwrap();
        let input = by_line("Claude Sonnet 4 Usage - Input Tokens");
        assert_eq!(input.measures.cost, dec("412.80"));
        assert_eq!(input.measures.amount_original, dec("41280"));
        assert_eq!(input.measures.cost_source, CostSource::Billed);
        let search = by_line("Web Search Usage");
        assert_eq!(search.measures.cost, dec("2.50"), "a JSON number amount is cents too");
        assert_eq!(search.dims.service, "web_search");
        assert_eq!(search.dims.model_raw, "");
        let cache = by_line("Claude Sonnet 4 Usage - Cache Write (1h)");
        assert_eq!(cache.measures.cost.to_string(), "1.234567890123456789");
        assert_eq!(cache.dims.attributes["inference_geo"], "us");
        assert_eq!(by_line("Code Execution Usage").dims.service, "code_execution");
        let total: Decimal = fetch.records.iter().map(|r| r.measures.cost).sum();
        assert_eq!(
            total,
            dec("412.80") + dec("2.50") + dec("1.234567890123456789") + dec("0.05")
        );
        let covered: Vec<_> = fetch.covered_buckets.iter().copied().collect();
        assert_eq!(covered, [utc(2025, 8, 1, 0), utc(2025, 8, 2, 0), utc(2025, 8, 3, 0)]);
    }

    #[tokio::test]
    async fn a_malformed_page_fails_the_whole_fetch() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(COST_PATH))
            .and(query_param_is_missing("page"))
            .respond_with(json_body("cost_page1.json"))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(COST_PATH))
            .and(query_param("page", "page_MjAyNS0wOC0wMlQwMDowMDowMFo="))
            .respond_with(json_body("cost_malformed.json"))
            .mount(&server)
            .await;
        let err = adapter(&server)
            .fetch(&COST, TimeWindow::new(utc(2025, 8, 1, 0), utc(2025, 8, 5, 0)))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Malformed { .. }), "{err:?}");
        let text = err.to_string();
        for needle in [ACCOUNT, "cost_report", "page 2", "data[0].results[0]", "'amount'"] {
            assert!(text.contains(needle), "{needle} in {text}");
        }
    }

    #[tokio::test]
    async fn a_repeated_bucket_is_refused_rather_than_summed() {
        let server = MockServer::start().await;
        let page = fixture("cost_page2.json").replace(
            r#""has_more": false,
  "next_page": null"#,
            r#""has_more": true, "next_page": "page_again""#,
        );
        Mock::given(method("GET"))
            .and(path(COST_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_raw(page, "application/json"))
            .mount(&server)
            .await;
        let err = adapter(&server)
            .fetch(&COST, TimeWindow::new(utc(2025, 8, 2, 0), utc(2025, 8, 4, 0)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("already returned"), "{err}");
    }

    #[tokio::test]
    async fn rate_limit_is_waited_out_then_the_page_is_read() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(COST_PATH))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path(COST_PATH))
            .respond_with(json_body("cost_page2.json"))
            .mount(&server)
            .await;
        let adapter = adapter(&server);
        let fetch = adapter
            .fetch(&COST, TimeWindow::new(utc(2025, 8, 2, 0), utc(2025, 8, 4, 0)))
            .await
            .unwrap();
        assert_eq!(fetch.records.len(), 2);
        let stats = adapter.http_stats();
        assert_eq!(stats.snapshot(), (2, 1));
        assert_eq!(stats.rate_limit_waits.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn unauthorized_names_the_account_and_the_admin_key_but_not_the_key() {
        let server = MockServer::start().await;
        // A body that echoes the key, as a misbehaving proxy might.
        let body = format!(
            r#"{{"type":"error","error":{{"type":"authentication_error","message":"invalid x-api-key {KEY}"}}}}"#
        );
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(401).set_body_raw(body, "application/json"))
            .expect(1)
            .mount(&server)
            .await;
        let err = adapter(&server)
            .fetch(&USAGE, TimeWindow::new(utc(2025, 8, 1, 0), utc(2025, 8, 1, 4)))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Auth { status: 401, .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(ACCOUNT), "{text}");
        assert!(text.contains("Admin API key"), "{text}");
        assert!(!text.contains(KEY), "{text}");
        assert!(!format!("{err:?}").contains(KEY));
    }

    #[tokio::test]
    async fn sends_the_admin_key_and_api_version() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(COST_PATH))
            .and(header("x-api-key", KEY))
            .and(header("anthropic-version", "2023-06-01"))
            .respond_with(json_body("cost_page2.json"))
            .expect(1)
            .mount(&server)
            .await;
        // Anything without both headers falls through to wiremock's 404 and fails.
        adapter(&server)
            .fetch(&COST, TimeWindow::new(utc(2025, 8, 2, 0), utc(2025, 8, 4, 0)))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn ending_at_is_clamped_to_now_and_a_future_window_asks_nothing() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(USAGE_PATH))
            .respond_with(ResponseTemplate::new(200).set_body_raw(
                r#"{"data": [], "has_more": false, "next_page": null}"#,
                "application/json",
            ))
            .expect(1)
            .mount(&server)
            .await;
        let mut adapter = adapter(&server);
        adapter.now = || Utc.with_ymd_and_hms(2025, 8, 1, 5, 30, 12).unwrap() + chrono::Duration::milliseconds(345);

        let fetch = adapter
            .fetch(&USAGE, TimeWindow::new(utc(2025, 8, 1, 0), utc(2025, 8, 2, 0)))
            .await
            .unwrap();
        assert!(fetch.covered_buckets.is_empty());
        let requests = server.received_requests().await.unwrap();
        let ending_at = requests[0]
            .url
            .query_pairs()
            .find(|(k, _)| k == "ending_at")
            .unwrap()
            .1
            .into_owned();
        assert_eq!(ending_at, "2025-08-01T05:30:12Z");

        // Entirely after now: nothing to ask, nothing covered.
        let fetch = adapter
            .fetch(&USAGE, TimeWindow::new(utc(2025, 8, 1, 6), utc(2025, 8, 1, 8)))
            .await
            .unwrap();
        assert!(fetch.records.is_empty() && fetch.covered_buckets.is_empty());
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }

    #[test]
    fn debug_and_config_errors_hide_the_key() {
        let adapter =
            AnthropicAdapter::new(ACCOUNT, "https://api.anthropic.com", KEY.to_string(), fast_policy()).unwrap();
        let debug = format!("{adapter:?}");
        assert!(!debug.contains(KEY) && debug.contains(ACCOUNT), "{debug}");
        assert_eq!(adapter.endpoints(), vec![USAGE, COST]);

        let err = AnthropicAdapter::new(ACCOUNT, "not a url", KEY.to_string(), fast_policy()).unwrap_err();
        assert!(matches!(err, ProviderError::Config { .. }) && !err.to_string().contains(KEY));
        let err =
            AnthropicAdapter::new(ACCOUNT, "https://api.anthropic.com", " ".to_string(), fast_policy()).unwrap_err();
        assert!(err.to_string().contains("api_key is empty"), "{err}");
        let err =
            AnthropicAdapter::new(ACCOUNT, "https://api.anthropic.com", format!("{KEY}\n"), fast_policy()).unwrap_err();
        assert!(!err.to_string().contains(KEY), "{err}");
    }

    #[tokio::test]
    async fn an_unknown_endpoint_is_a_config_error() {
        let server = MockServer::start().await;
        let other = EndpointSpec {
            record_type: RecordType::Usage,
            endpoint: "usage_report/messages",
            granularity: Granularity::Day,
        };
        let err = adapter(&server)
            .fetch(&other, TimeWindow::new(utc(2025, 8, 1, 0), utc(2025, 8, 2, 0)))
            .await
            .unwrap_err();
        assert!(matches!(err, ProviderError::Config { .. }), "{err:?}");
    }
}
