//! OpenRouter adapter: daily activity from `GET /activity`.
//!
//! `/activity` answers one row per UTC day x model x endpoint for the **last
//! 30 completed UTC days** (today excluded), without pagination, and needs a
//! management key. One request per fetch (no `date`: the whole rolling window
//! at once); rows outside the asked window are left out, and the window is
//! clamped to what the API holds, so `covered_buckets` is exactly the days it
//! answered for (an older day is never "vanished"). OpenRouter keeps nothing
//! older than 30 days: the daemon's own history in ClickHouse is the record,
//! so an account must sync at least every few weeks to keep every day.
//!
//! Each row yields a billed cost record (`usage`) and a usage record (tokens,
//! requests, BYOK upstream spend as `estimated_cost`); see [`parse`].

mod config;
mod parse;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use super::platform::paging::{bucket_starts, Page, PageBucket, Pager, Spread};
use super::platform::{HttpSetup, MeasurePolicy, Redactor, StandardClassifier, StaticHeaders};
use super::registry::{AdapterHooks, CredentialKeys, ProviderDescriptor, DAY, USAGE_INTERVAL};
use super::{
    EndpointFetch, EndpointSpec, HttpStats, Provider, ProviderAdapter, ProviderError, ProviderHttp, RetryPolicy,
    TimeWindow,
};
use crate::normalize::schema::{Granularity, RecordType};
use crate::providers::platform::http::api_root;

pub use config::{OpenRouterConfig, MANAGEMENT_KEYS_URL};

/// The endpoint name of both streams in `usage_records`.
const ENDPOINT: &str = "activity";

/// Days `/activity` keeps, ending with yesterday (UTC).
pub const ACTIVITY_DAYS: i64 = 30;

/// OpenRouter in the registry.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    provider: Provider::OpenRouter,
    default_base_url: Some("https://openrouter.ai/api/v1"),
    default_interval: USAGE_INTERVAL,
    // A day appears once complete; generation stats land asynchronously, so
    // re-read the last two days.
    min_lookback: Duration::from_secs(2 * DAY.as_secs()),
    credentials: CredentialKeys {
        required: &["api_key"],
        // Unlocks /activity when api_key is an inference key.
        optional: &["management_key"],
        one_of: &[],
        identity: &["api_key"],
    },
    settings: &[],
    // The activity API documents no refunds or negative amounts.
    measures: MeasurePolicy {
        negative_money: false,
        negative_quantities: false,
    },
    requests_per_second: 2,
    key_hints: &[],
    adapter: AdapterHooks {
        check: |account| OpenRouterConfig::read(account).map(|_| ()),
        build: |account, context| {
            let config = crate::providers::registry::read_config(account, OpenRouterConfig::read)?;
            Ok(Arc::new(OpenRouterAdapter::new(
                account.id,
                account.base_url,
                &config,
                context.retry.clone(),
            )?))
        },
    },
};

/// Shown with a 401/403 of `/activity`.
const AUTH_HINT: &str = "OpenRouter's /activity (daily usage and cost) needs a management key (formerly \
\"provisioning key\"); an inference API key is refused. Create one at https://openrouter.ai/settings/management-keys \
and put it in credentials.management_key (or paste {\"apiKey\": ..., \"provisioningKey\": ...} as credentials.api_key)";

const SPECS: [EndpointSpec; 2] = [
    EndpointSpec {
        record_type: RecordType::Cost,
        endpoint: ENDPOINT,
        granularity: Granularity::Day,
    },
    EndpointSpec {
        record_type: RecordType::Usage,
        endpoint: ENDPOINT,
        granularity: Granularity::Day,
    },
];

/// One OpenRouter account.
pub struct OpenRouterAdapter {
    account: String,
    base_url: String,
    http: ProviderHttp,
    /// The current UTC day; fixed in tests.
    today: Option<NaiveDate>,
}

impl fmt::Debug for OpenRouterAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenRouterAdapter")
            .field("account", &self.account)
            .field("base_url", &self.base_url)
            .field("keys", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl OpenRouterAdapter {
    pub fn new(
        account_id: &str,
        base_url: &str,
        config: &OpenRouterConfig,
        policy: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let config_error = |detail: String| ProviderError::Config {
            account: account_id.to_string(),
            detail,
        };
        let base_url = api_root(account_id, base_url, "https://openrouter.ai/api/v1")?;
        let field = if config.management_key.is_some() {
            "credentials.management_key"
        } else {
            "credentials.api_key"
        };
        let auth = StaticHeaders::authorization("Bearer", config.activity_key().expose(), field)
            .map_err(|e| config_error(e.to_string()))?;
        let mut redactor = Redactor::new([config.api_key.expose()]);
        if let Some(m) = &config.management_key {
            redactor.add(m.expose());
        }
        let http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::OpenRouter,
            policy,
            auth: Arc::new(auth),
            classifier: Arc::new(StandardClassifier),
            requests_per_second: DESCRIPTOR.requests_per_second,
            auth_hint: AUTH_HINT.to_string(),
            redactor,
        });
        Ok(Self {
            account: account_id.to_string(),
            base_url,
            http,
            today: None,
        })
    }

    /// The days `/activity` holds, as a window: `[today - 30, today)`.
    fn held(&self) -> TimeWindow {
        let today = self.today.unwrap_or_else(|| Utc::now().date_naive());
        let end: DateTime<Utc> = today.and_time(Default::default()).and_utc();
        TimeWindow::new(end - chrono::Duration::days(ACTIVITY_DAYS), end)
    }
}

#[async_trait]
impl ProviderAdapter for OpenRouterAdapter {
    fn provider(&self) -> Provider {
        Provider::OpenRouter
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        SPECS.to_vec()
    }

    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        if !SPECS.contains(endpoint) {
            return Err(ProviderError::unknown_endpoint(
                self.account.as_str(),
                Provider::OpenRouter,
                endpoint,
            ));
        }
        let window = window.snapped_out(Granularity::Day);
        let held = self.held();
        let window = TimeWindow::new(window.start.max(held.start), window.end.min(held.end));
        if window.is_empty() {
            return Ok(EndpointFetch::default());
        }
        let url = format!("{}/activity", self.base_url);
        let pager = Pager {
            http: &self.http,
            spec: endpoint,
            window,
            spread: Spread::WholeBuckets,
            measures: DESCRIPTOR.measures,
        };
        pager
            .collect(|_, _| {
                let url = &url;
                async move {
                    let body = self.http.get_json(ENDPOINT, |client| client.get(url)).await?;
                    let rows = parse::activity(body.json(), endpoint.record_type)?;
                    // Every day of the (clamped) window is answered, empty or not.
                    let mut buckets: Vec<PageBucket> = bucket_starts(window, endpoint)
                        .into_iter()
                        .map(|start| PageBucket {
                            start,
                            end: None,
                            records: Vec::new(),
                        })
                        .collect();
                    for (_, record) in rows {
                        if let Some(bucket) = buckets.iter_mut().find(|b| b.start == record.identity.bucket_start) {
                            bucket.records.push(record);
                        }
                        // Rows of other days are the API's rolling window, not this fetch's.
                    }
                    Ok(Page { buckets, next: None })
                }
            })
            .await
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }
}

/// The OpenRouter activity parser on fuzzer input (`fuzz/`): the first byte
/// picks the record type, the rest is the body. Never panics.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    if let Some((which, body)) = super::json::fuzz_input(data) {
        let record_type = if which % 2 == 0 {
            RecordType::Usage
        } else {
            RecordType::Cost
        };
        drop(parse::activity(&body, record_type));
    }
}

#[cfg(test)]
mod tests;
