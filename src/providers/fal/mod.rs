//! fal.ai Platform API adapter: `GET /models/usage`, per endpoint and UTC day.
//!
//! One request shape: `start`/`end` as UTC midnights (end exclusive, clamped
//! to the end of the current UTC day), always `timeframe=day&timezone=UTC`
//! (fal otherwise picks the bucket width from the range and buckets in the
//! given zone), `bound_to_timeframe=true`, `expand=time_series` and
//! `expand=auth_method` (the key alias each charge was made with), then
//! `cursor=<next_cursor>` with otherwise identical parameters until
//! `has_more` is false.
//!
//! Money: each result is a billed line (`cost`, USD, read from the exact JSON
//! text) with its quantity in the endpoint's own unit (`image`,
//! `video_second`, GPU-seconds, ...). Rows are `cost` records with
//! `cost_source = billed`, `quantity` + `unit` beside the money, so
//! `sum(cost)` is the bill and quantities of unlike units are never added
//! (the unit is part of each record's identity).
//!
//! Paging: fal's cursor encodes a page number and its `limit` counts rows, so
//! a day may continue on the next page: the pager refuses a record seen twice
//! instead of refusing a bucket seen twice. Covered days are every day of the
//! asked range up to today, whether or not fal lists it, because the answer
//! is for exactly that range: a day whose charges were all refunded away
//! must cancel what was stored for it.

mod config;
mod parse;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};

use super::platform::paging::{bucket_starts, Pager, Spread};
use super::platform::{HttpSetup, MeasurePolicy, Redactor, StandardClassifier, StaticHeaders};
use super::registry::{AdapterHooks, CredentialKeys, ProviderDescriptor, DAY, USAGE_INTERVAL};
use super::{
    EndpointFetch, EndpointSpec, HttpStats, Provider, ProviderAdapter, ProviderError, ProviderHttp, RetryPolicy,
    TimeWindow,
};
use crate::normalize::schema::{Granularity, RecordType};
use crate::providers::platform::http::api_root;

pub use config::FalConfig;

/// fal.ai in the registry.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    provider: Provider::Fal,
    default_base_url: Some("https://api.fal.ai/v1"),
    default_interval: USAGE_INTERVAL,
    // A usage API: today's bucket fills during the day and yesterday's may
    // still settle (failed requests are not charged, 422s may be).
    min_lookback: Duration::from_secs(2 * DAY.as_secs()),
    credentials: CredentialKeys::API_KEY,
    settings: &[],
    // fal documents no refunds or negative lines.
    measures: MeasurePolicy {
        negative_money: false,
        negative_quantities: false,
    },
    requests_per_second: 5,
    key_hints: &[],
    adapter: AdapterHooks {
        check: |account| FalConfig::read(account).map(|_| ()),
        build: |account, context| {
            let config = crate::providers::registry::read_config(account, FalConfig::read)?;
            Ok(Arc::new(FalAdapter::new(
                account.id,
                account.base_url,
                config.api_key.expose().trim().to_string(),
                context.retry.clone(),
            )?))
        },
    },
};

/// Shown with a 401/403: the usual cause is an API-scope key.
const AUTH_HINT: &str = "fal.ai's usage API needs an ADMIN-scoped key; the standard API scope (the key you run \
models with) cannot read usage or billing. Create a key with scope ADMIN in the fal dashboard under Settings > API \
Keys and put the bare key (key_id:key_secret, without `Key `) in credentials.api_key";

/// The one stream: billed usage per endpoint, unit and key alias, per UTC day.
pub const USAGE: EndpointSpec = EndpointSpec {
    record_type: RecordType::Cost,
    endpoint: parse::ENDPOINT,
    granularity: Granularity::Day,
};

/// fal pages by rows; no real answer needs this many pages for one window.
const MAX_PAGES: usize = 1_000;

/// One fal.ai team (one ADMIN key).
pub struct FalAdapter {
    account: String,
    base_url: String,
    http: ProviderHttp,
}

impl fmt::Debug for FalAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FalAdapter")
            .field("account", &self.account)
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl FalAdapter {
    /// `base_url` is the API root (`https://api.fal.ai/v1`); a trailing slash is fine.
    pub fn new(account_id: &str, base_url: &str, api_key: String, policy: RetryPolicy) -> Result<Self, ProviderError> {
        let config_error = |detail: String| ProviderError::Config {
            account: account_id.to_string(),
            detail,
        };
        let base_url = api_root(account_id, base_url, "https://api.fal.ai/v1")?;
        if api_key.trim().is_empty() {
            return Err(config_error(format!(
                "credentials.api_key is empty; {}",
                config::WHERE_TO_GET
            )));
        }
        let auth = StaticHeaders::authorization("Key", &api_key, "credentials.api_key")
            .map_err(|e| config_error(e.to_string()))?;
        let http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::Fal,
            policy,
            auth: Arc::new(auth),
            classifier: Arc::new(StandardClassifier),
            requests_per_second: DESCRIPTOR.requests_per_second,
            auth_hint: AUTH_HINT.to_string(),
            redactor: Redactor::new([api_key.as_str()]),
        });
        Ok(Self {
            account: account_id.to_string(),
            base_url,
            http,
        })
    }
}

fn utc_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[async_trait]
impl ProviderAdapter for FalAdapter {
    fn provider(&self) -> Provider {
        Provider::Fal
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        vec![USAGE]
    }

    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        if *endpoint != USAGE {
            return Err(ProviderError::unknown_endpoint(
                self.account.as_str(),
                Provider::Fal,
                endpoint,
            ));
        }
        let window = window.snapped_out(Granularity::Day);
        // No future days: today is the last bucket fal can answer for.
        let end = window.end.min(Granularity::Day.ceil(Utc::now()));
        if end <= window.start {
            return Ok(EndpointFetch::default());
        }
        let window = TimeWindow::new(window.start, end);
        let url = format!("{}/models/usage", self.base_url);
        let query: Vec<(&str, String)> = vec![
            ("start", utc_text(window.start)),
            ("end", utc_text(window.end)),
            ("timeframe", "day".into()),
            ("timezone", "UTC".into()),
            ("bound_to_timeframe", "true".into()),
            ("expand", "time_series".into()),
            ("expand", "auth_method".into()),
        ];
        let pager = Pager {
            http: &self.http,
            spec: &USAGE,
            window,
            spread: Spread::RowsAcrossPages { max_pages: MAX_PAGES },
            measures: DESCRIPTOR.measures,
        };
        let mut fetch = pager
            .collect(|cursor, number| {
                let (url, query) = (&url, &query);
                async move {
                    let body = self
                        .http
                        .get_json(USAGE.endpoint, |client| {
                            let request = client.get(url).query(query);
                            match &cursor {
                                Some(cursor) => request.query(&[("cursor", cursor)]),
                                None => request,
                            }
                        })
                        .await?;
                    let page = parse::page(body.json())?;
                    tracing::debug!(account = %self.account, page = number, buckets = page.buckets.len(), "fal page");
                    Ok(page)
                }
            })
            .await?;
        fetch.covered_buckets.extend(bucket_starts(window, &USAGE));
        Ok(fetch)
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }
}

/// The fal.ai usage parser on fuzzer input (`fuzz/`): the first byte is
/// ignored, the rest is the body. Never panics.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    if let Some((_, body)) = super::json::fuzz_input(data) {
        drop(parse::page(&body));
    }
}

#[cfg(test)]
mod tests;
