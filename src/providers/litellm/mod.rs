//! LiteLLM proxy adapter: daily spend per model and key from
//! `GET /user/daily/activity`.
//!
//! Request: `start_date`/`end_date` as UTC dates with `end_date` **inclusive**
//! (our window end is exclusive, so it is the window's last day), no
//! `timezone` (current proxies keep historical days as plain UTC buckets; the
//! parameter made older ones widen the range and over-count), `page` from 1
//! and `page_size` (1000 unless the account sets `page_size`). As an admin
//! (master key) without `user_id`, the proxy answers for every user.
//!
//! Pages cut the proxy's rows, not dates: the shared [`Pager`] runs with
//! [`Spread::RowsAcrossPages`] and merges the pages by date; every day of the
//! window is covered (a day with no rows has none). Spend is the proxy's own
//! estimate from its price map: `estimated_cost` only, never `cost` (the bill
//! is the upstream provider's).

mod config;
mod parse;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use super::platform::paging::{bucket_starts, Page, PageBucket, Pager, Spread};
use super::platform::{HttpSetup, MeasurePolicy, Redactor, StandardClassifier, StaticHeaders};
use super::registry::{AdapterHooks, CredentialKeys, ProviderDescriptor, DAY, USAGE_INTERVAL};
use super::{
    EndpointFetch, EndpointSpec, HttpStats, Provider, ProviderAdapter, ProviderError, ProviderHttp, RetryPolicy,
    TimeWindow,
};
use crate::normalize::schema::{Granularity, RecordType};

pub use config::{check_base_url, LiteLlmConfig, ALLOW_PRIVATE, PAGE_SIZE};

const ENDPOINT: &str = "user/daily/activity";

/// The most pages one fetch follows (1000 rows each by default: a million
/// spend rows in one window).
const MAX_PAGES: usize = 1000;

/// LiteLLM in the registry.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    provider: Provider::LiteLlm,
    // The proxy is the user's own server: base_url is required.
    default_base_url: None,
    default_interval: USAGE_INTERVAL,
    // Daily spend tables are written in batches: recent requests land late.
    min_lookback: Duration::from_secs(2 * DAY.as_secs()),
    credentials: CredentialKeys::API_KEY,
    settings: &[ALLOW_PRIVATE, PAGE_SIZE],
    // Spend is an estimate from a price map; it documents no negatives.
    measures: MeasurePolicy {
        negative_money: false,
        negative_quantities: false,
    },
    requests_per_second: 5,
    key_hints: &[],
    adapter: AdapterHooks {
        check: |account| LiteLlmConfig::read(account).map(|_| ()),
        build: |account, context| {
            let config = crate::providers::registry::read_config(account, LiteLlmConfig::read)?;
            Ok(Arc::new(LiteLlmAdapter::new(
                account.id,
                &config,
                context.retry.clone(),
            )?))
        },
    },
};

const AUTH_HINT: &str = "the LiteLLM proxy refused the key for /user/daily/activity; use the proxy's master key \
(LITELLM_MASTER_KEY) or a virtual key of a proxy admin (a key of an internal user only sees its own spend), \
sent as Authorization: Bearer, in credentials.api_key; keys are created with POST /key/generate on your proxy";

const SPEC: EndpointSpec = EndpointSpec {
    record_type: RecordType::Usage,
    endpoint: ENDPOINT,
    granularity: Granularity::Day,
};

/// One LiteLLM proxy.
pub struct LiteLlmAdapter {
    account: String,
    base_url: String,
    page_size: u32,
    http: ProviderHttp,
}

impl fmt::Debug for LiteLlmAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiteLlmAdapter")
            .field("account", &self.account)
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl LiteLlmAdapter {
    pub fn new(account_id: &str, config: &LiteLlmConfig, policy: RetryPolicy) -> Result<Self, ProviderError> {
        let auth =
            StaticHeaders::authorization("Bearer", config.api_key.expose(), "credentials.api_key").map_err(|e| {
                ProviderError::Config {
                    account: account_id.to_string(),
                    detail: e.to_string(),
                }
            })?;
        let http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::LiteLlm,
            policy,
            auth: Arc::new(auth),
            classifier: Arc::new(StandardClassifier),
            requests_per_second: DESCRIPTOR.requests_per_second,
            auth_hint: AUTH_HINT.to_string(),
            redactor: Redactor::new([config.api_key.expose()]),
        });
        Ok(Self {
            account: account_id.to_string(),
            base_url: config.base_url.clone(),
            page_size: config.page_size,
            http,
        })
    }
}

#[async_trait]
impl ProviderAdapter for LiteLlmAdapter {
    fn provider(&self) -> Provider {
        Provider::LiteLlm
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        vec![SPEC]
    }

    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        if *endpoint != SPEC {
            return Err(ProviderError::unknown_endpoint(
                self.account.as_str(),
                Provider::LiteLlm,
                endpoint,
            ));
        }
        let window = window.snapped_out(Granularity::Day);
        // No future days: today (partial) is the last one asked for.
        let window = TimeWindow::new(window.start, window.end.min(Granularity::Day.ceil(Utc::now())));
        if window.is_empty() {
            return Ok(EndpointFetch::default());
        }
        let last_day = window.end - chrono::Duration::days(1);
        let query = [
            ("start_date", window.start.format("%Y-%m-%d").to_string()),
            ("end_date", last_day.format("%Y-%m-%d").to_string()),
            ("page_size", self.page_size.to_string()),
        ];
        let url = format!("{}/user/daily/activity", self.base_url);
        let pager = Pager {
            http: &self.http,
            spec: &SPEC,
            window,
            spread: Spread::RowsAcrossPages { max_pages: MAX_PAGES },
            measures: DESCRIPTOR.measures,
        };
        pager
            .collect(|cursor, number| {
                let (url, query) = (&url, &query);
                async move {
                    let page_number = cursor.unwrap_or_else(|| "1".to_string());
                    let body = self
                        .http
                        .get_json(ENDPOINT, |client| {
                            client.get(url).query(query).query(&[("page", &page_number)])
                        })
                        .await?;
                    let parsed = parse::page(body.json())?;
                    let mut buckets: Vec<PageBucket> = Vec::new();
                    if number == 1 {
                        // Every day of the window is answered, even with no rows.
                        buckets.extend(bucket_starts(window, &SPEC).into_iter().map(|start| PageBucket {
                            start,
                            end: None,
                            records: Vec::new(),
                        }));
                    }
                    for record in parsed.records {
                        let start = record.identity.bucket_start;
                        match buckets.iter_mut().find(|b| b.start == start) {
                            Some(bucket) => bucket.records.push(record),
                            None => buckets.push(PageBucket {
                                start,
                                end: None,
                                records: vec![record],
                            }),
                        }
                    }
                    let next = parsed
                        .more
                        .then(|| (page_number.parse::<u64>().unwrap_or(1) + 1).to_string());
                    Ok(Page { buckets, next })
                }
            })
            .await
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }
}

/// The LiteLLM daily-activity parser on fuzzer input (`fuzz/`): the first
/// byte is ignored, the rest is the body. Never panics.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    if let Some((_, body)) = super::json::fuzz_input(data) {
        drop(parse::page(&body));
    }
}

#[cfg(test)]
mod tests;
