//! Runway API adapter: `POST /v1/organization/usage`, credits per model and
//! UTC day.
//!
//! Request: `{"startDate", "beforeDate"}` as UTC dates (`beforeDate`
//! exclusive) with `X-Runway-Version: 2024-11-06`; at most 90 days per call,
//! so a longer window is asked in consecutive 90-day pieces (the shared pager
//! drives them, with the next piece's start as its cursor, so every guard
//! applies: a day answered twice is an error, never a sum). No pagination
//! within a piece. The days covered are exactly the days asked up to today:
//! Runway lists only days with usage, and a day that disappeared from the
//! answer must cancel what was stored for it.
//!
//! # How money is stored
//!
//! Runway reports whole **credits**, not currency. Each (day, model) is one
//! `cost` record with
//! - `quantity` = the net credits, `unit` = `credits` (refund days are
//!   negative and kept: dropping them would overstate the bill);
//! - `cost` = credits × `usd_per_credit` in USD, exact (`Decimal` from the
//!   setting's text), `cost_source = billed`: credits are what Runway debits
//!   from the prepaid balance, so priced at what the organization paid per
//!   credit, `sum(cost)` over any filter is the spend it was billed for;
//! - `amount_original` = the credits (the provider's own figure in its own
//!   unit, as Anthropic's cents are) and `currency` = `USD`, the currency of
//!   `cost`.
//!
//! Changing `usd_per_credit` re-prices the days the next syncs re-read
//! (lookback, deep re-sync) as a restatement; older days keep the price they
//! were stored with. Set it to the contract price before the first sync.

mod config;
mod parse;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use super::platform::paging::{bucket_starts, Page, PageBucket, Pager, Spread};
use super::platform::{HttpSetup, MeasurePolicy, Redactor, StandardClassifier, StaticHeaders};
use super::registry::{AdapterHooks, CredentialKeys, ProviderDescriptor, BILLING_INTERVAL, DAY};
use super::{
    EndpointFetch, EndpointSpec, HttpStats, Provider, ProviderAdapter, ProviderError, ProviderHttp, RetryPolicy,
    TimeWindow,
};
use crate::normalize::schema::{Granularity, RecordType};
use crate::providers::platform::http::api_root;

pub use config::RunwayConfig;

/// Runway in the registry.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    provider: Provider::Runway,
    default_base_url: Some("https://api.dev.runwayml.com"),
    default_interval: BILLING_INTERVAL,
    // Refunds for failed generations land on later days' nets; 3 days of
    // lookback re-read them, the deep re-sync catches the rest.
    min_lookback: Duration::from_secs(3 * DAY.as_secs()),
    credentials: CredentialKeys::API_KEY,
    settings: &["usd_per_credit"],
    // "May be negative if refunds exceeded charges on this day".
    measures: MeasurePolicy {
        negative_money: true,
        negative_quantities: true,
    },
    requests_per_second: 2,
    key_hints: &[],
    adapter: AdapterHooks {
        check: |account| RunwayConfig::read(account).map(|_| ()),
        build: |account, context| {
            let config = crate::providers::registry::read_config(account, RunwayConfig::read)?;
            Ok(Arc::new(RunwayAdapter::new(
                account.id,
                account.base_url,
                config.api_key.expose().trim().to_string(),
                config.usd_per_credit,
                context.retry.clone(),
            )?))
        },
    },
};

const VERSION: &str = "2024-11-06";

/// The most days one usage request may span.
pub const MAX_DAYS_PER_REQUEST: i64 = 90;

const AUTH_HINT: &str = "Runway's organization usage API needs an API secret of the organization from the Runway \
developer portal (dev.runwayml.com > your organization > API Keys; a web-app login or a key of another \
organization will not do). Put the bare secret in credentials.api_key";

/// The one stream: net credits per model and UTC day.
pub const USAGE: EndpointSpec = EndpointSpec {
    record_type: RecordType::Cost,
    endpoint: parse::ENDPOINT,
    granularity: Granularity::Day,
};

/// One Runway organization (one API secret).
pub struct RunwayAdapter {
    account: String,
    base_url: String,
    usd_per_credit: Decimal,
    http: ProviderHttp,
}

impl fmt::Debug for RunwayAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunwayAdapter")
            .field("account", &self.account)
            .field("base_url", &self.base_url)
            .field("usd_per_credit", &self.usd_per_credit)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl RunwayAdapter {
    /// `base_url` is the API root (`https://api.dev.runwayml.com`).
    pub fn new(
        account_id: &str,
        base_url: &str,
        api_key: String,
        usd_per_credit: Decimal,
        policy: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let config_error = |detail: String| ProviderError::Config {
            account: account_id.to_string(),
            detail,
        };
        let base_url = api_root(account_id, base_url, "https://api.dev.runwayml.com")?;
        if api_key.trim().is_empty() {
            return Err(config_error(format!(
                "credentials.api_key is empty; {}",
                config::WHERE_TO_GET
            )));
        }
        let auth = StaticHeaders::authorization("Bearer", &api_key, "credentials.api_key")
            .map_err(|e| config_error(e.to_string()))?
            .with("x-runway-version", VERSION);
        let http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::Runway,
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
            usd_per_credit,
            http,
        })
    }

    /// The request bodies for `window` (whole days): consecutive pieces of
    /// at most 90 days, `beforeDate` exclusive.
    pub fn pieces(window: TimeWindow) -> Vec<(NaiveDate, NaiveDate)> {
        let mut out = Vec::new();
        let mut start = window.start;
        while start < window.end {
            let end = (start + chrono::Duration::days(MAX_DAYS_PER_REQUEST)).min(window.end);
            out.push((start.date_naive(), end.date_naive()));
            start = end;
        }
        out
    }

    async fn piece(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Page, ProviderError> {
        let url = format!("{}/v1/organization/usage", self.base_url);
        let body = json!({
            "startDate": start.date_naive().to_string(),
            "beforeDate": end.date_naive().to_string(),
        });
        let answer = self
            .http
            .get_json(USAGE.endpoint, |client| client.post(&url).json(&body))
            .await?;
        let records = parse::answer(answer.json(), start, end, self.usd_per_credit)
            .map_err(|e| self.http.malformed(USAGE.endpoint, e.0))?;
        let piece = TimeWindow::new(start, end);
        let mut buckets: Vec<PageBucket> = bucket_starts(piece, &USAGE)
            .into_iter()
            .map(|start| PageBucket {
                start,
                end: None,
                records: Vec::new(),
            })
            .collect();
        for record in records {
            let at = buckets
                .iter()
                .position(|b| b.start == record.identity.bucket_start)
                .expect("parse keeps dates inside the piece");
            buckets[at].records.push(record);
        }
        Ok(Page { buckets, next: None })
    }
}

#[async_trait]
impl ProviderAdapter for RunwayAdapter {
    fn provider(&self) -> Provider {
        Provider::Runway
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        vec![USAGE]
    }

    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        if *endpoint != USAGE {
            return Err(ProviderError::unknown_endpoint(
                self.account.as_str(),
                Provider::Runway,
                endpoint,
            ));
        }
        let window = window.snapped_out(Granularity::Day);
        let end = window.end.min(Granularity::Day.ceil(Utc::now()));
        if end <= window.start {
            return Ok(EndpointFetch::default());
        }
        let window = TimeWindow::new(window.start, end);
        let pager = Pager {
            http: &self.http,
            spec: &USAGE,
            window,
            spread: Spread::WholeBuckets,
            measures: DESCRIPTOR.measures,
        };
        pager
            .collect(|cursor, _number| async move {
                // The cursor is the next piece's first day (RFC 3339).
                let start = match cursor {
                    None => window.start,
                    Some(text) => DateTime::parse_from_rfc3339(&text)
                        .map(|t| t.with_timezone(&Utc))
                        .map_err(|_| super::platform::PageError::Parse("bad piece cursor (adapter bug)".into()))?,
                };
                let piece_end = (start + chrono::Duration::days(MAX_DAYS_PER_REQUEST)).min(window.end);
                let mut page = self.piece(start, piece_end).await?;
                page.next = (piece_end < window.end).then(|| piece_end.to_rfc3339());
                Ok(page)
            })
            .await
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }
}

/// The Runway usage parser on fuzzer input (`fuzz/`): the first byte picks
/// the credit price's scale, the rest is the body. Never panics.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let Some((which, body)) = super::json::fuzz_input(data) else {
        return;
    };
    let day = |d: u32| {
        NaiveDate::from_ymd_opt(2025, 1, d)
            .unwrap_or_default()
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
    };
    let usd_per_credit = Decimal::new(1, u32::from(which % 12));
    drop(parse::answer(&body, day(1), day(31), usd_per_credit));
}

#[cfg(test)]
mod tests;
