//! PiAPI adapter: spend derived from the account balance.
//!
//! PiAPI documents no usage or cost endpoint, only `GET /account/info`
//! (`x-api-key`), whose `equivalent_in_usd` is the remaining prepaid balance.
//! Spend is derived from its **falls**; a rise is a top-up and never
//! negative spend (netting it would hide usage).
//!
//! # Where the readings live and why re-syncs never double count
//!
//! The adapter keeps one *session* in memory: the readings this process has
//! taken on the current UTC day (first and last balance, the sum of falls =
//! derived spend, the sum of rises = top-ups). Each sync whose window
//! contains now takes one reading and returns **one** record for the
//! session: a `cost` record in the minute bucket of the session's first
//! reading, `service = derived_from_balance`, `line_item = balance_fall`,
//! `cost` = the session's spend so far (USD, exact from the JSON text,
//! `cost_source = billed`: it is what PiAPI debited), and the first/last
//! balance and top-ups in `attributes`. That row in `usage_records` is the
//! snapshot history.
//!
//! The sync's scope is exactly that one minute bucket, so:
//! - a re-sync (same process) rebuilds the same record from the same
//!   session: nothing is written unless the balance moved, and a fall is
//!   counted once, in the session that observed it;
//! - a sync whose write failed is repaired by the next one (the session
//!   still holds the fall);
//! - a new UTC day starts a new session (new bucket) whose baseline is the
//!   previous reading, so a fall across midnight counts on the new day;
//! - a restart starts a new session from its first reading; the old
//!   session's row stays as stored (its bucket is never in scope again).
//!   The fall between the old session's last balance and the new one's
//!   first is not derived (it is visible in both rows' attributes). One-shot
//!   `sync` runs are each such a restart: derived spend needs the daemon.
//!
//! Windows that do not contain now (explicit past windows, backfill chunks)
//! cannot be answered from a balance and return nothing, so nothing stored
//! in them can vanish.

mod config;
mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::platform::guards::check_measures;
use super::platform::{HttpSetup, MeasurePolicy, Redactor, StandardClassifier, StaticHeaders};
use super::registry::{AdapterHooks, CredentialKeys, ProviderDescriptor, BILLING_INTERVAL, DAY};
use super::{
    EndpointFetch, EndpointSpec, HttpStats, Provider, ProviderAdapter, ProviderError, ProviderHttp, RetryPolicy,
    TimeWindow,
};
use crate::normalize::schema::{
    CostSource, Dimensions, FetchedRecord, Granularity, Measures, RawField, RawGroup, RecordIdentity, RecordType,
};
use crate::providers::platform::http::api_root;

pub use config::PiApiConfig;
use parse::Session;

/// PiAPI in the registry.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    provider: Provider::PiApi,
    default_base_url: Some("https://api.piapi.ai"),
    default_interval: BILLING_INTERVAL,
    // A balance is never restated; the lookback only has to keep the
    // current session's bucket (at most one UTC day old) inside the window.
    min_lookback: Duration::from_secs(3 * DAY.as_secs()),
    credentials: CredentialKeys::API_KEY,
    settings: &["environment"],
    // Falls only: derived spend is never negative.
    measures: MeasurePolicy {
        negative_money: false,
        negative_quantities: false,
    },
    requests_per_second: 1,
    key_hints: &[],
    adapter: AdapterHooks {
        check: |account| PiApiConfig::read(account).map(|_| ()),
        build: |account, context| {
            let config = crate::providers::registry::read_config(account, PiApiConfig::read)?;
            Ok(Arc::new(PiApiAdapter::new(
                account.id,
                account.base_url,
                config.api_key.expose().trim().to_string(),
                config.environment,
                context.retry.clone(),
            )?))
        },
    },
};

const AUTH_HINT: &str = "PiAPI rejected the key: use the API key of the PiAPI account whose balance you want \
(piapi.ai > Workspace > API Keys), sent as x-api-key; put the bare key in credentials.api_key";

/// The one stream: the session's derived spend, in the minute bucket of the
/// session's first reading.
pub const BALANCE: EndpointSpec = EndpointSpec {
    record_type: RecordType::Cost,
    endpoint: "account/info",
    granularity: Granularity::Minute,
};

pub const SERVICE: &str = "derived_from_balance";
pub const LINE_ITEM: &str = "balance_fall";

/// One PiAPI account.
pub struct PiApiAdapter {
    account: String,
    base_url: String,
    environment: String,
    http: ProviderHttp,
    session: Mutex<Option<Session>>,
}

impl fmt::Debug for PiApiAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PiApiAdapter")
            .field("account", &self.account)
            .field("base_url", &self.base_url)
            .field("environment", &self.environment)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl PiApiAdapter {
    pub fn new(
        account_id: &str,
        base_url: &str,
        api_key: String,
        environment: String,
        policy: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let config_error = |detail: String| ProviderError::Config {
            account: account_id.to_string(),
            detail,
        };
        let base_url = api_root(account_id, base_url, "https://api.piapi.ai")?;
        if api_key.trim().is_empty() {
            return Err(config_error(format!(
                "credentials.api_key is empty; {}",
                config::WHERE_TO_GET
            )));
        }
        let auth = StaticHeaders::new(&[("x-api-key", api_key.clone(), "credentials.api_key")], &[])
            .map_err(|e| config_error(e.to_string()))?;
        let http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::PiApi,
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
            environment,
            http,
            session: Mutex::new(None),
        })
    }

    /// Adds a reading taken at `at` to the session and returns the session.
    fn observe(&self, at: DateTime<Utc>, balance: rust_decimal::Decimal) -> Session {
        let minute = Granularity::Minute.floor(at);
        let mut slot = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let session = match slot.take() {
            Some(s) if s.start.date_naive() == minute.date_naive() => s,
            // A new UTC day continues from the last reading of the previous one.
            Some(previous) => Session::begin(minute, previous.last),
            None => Session::begin(minute, balance),
        };
        let mut session = session;
        session.observe(balance);
        *slot = Some(session.clone());
        session
    }

    fn record(&self, account_id: &str, session: &Session) -> FetchedRecord {
        let raw_group = RawGroup::from([("account_id", RawField::Text(account_id.into()))]);
        let attributes = BTreeMap::from([
            ("account_id".into(), account_id.into()),
            ("environment".into(), self.environment.as_str().into()),
            ("first_balance_usd".into(), session.first.normalize().to_string().into()),
            ("last_balance_usd".into(), session.last.normalize().to_string().into()),
            ("topped_up_usd".into(), session.topped_up.normalize().to_string().into()),
        ]);
        FetchedRecord {
            identity: RecordIdentity {
                record_type: BALANCE.record_type,
                endpoint: BALANCE.endpoint.into(),
                granularity: BALANCE.granularity,
                bucket_start: session.start,
                bucket_end: session.start + chrono::Duration::minutes(1),
                raw_group,
            },
            dims: Dimensions {
                service: SERVICE.into(),
                line_item: LINE_ITEM.into(),
                workspace_id: account_id.into(),
                attributes,
                ..Dimensions::default()
            },
            measures: Measures {
                cost: session.spent,
                amount_original: session.spent,
                currency: "USD".into(),
                cost_source: CostSource::Billed,
                requests_reported: false,
                ..Measures::default()
            },
        }
    }

    /// One reading at `now`, as the record of its session (tests pass `now`).
    async fn fetch_at(&self, window: TimeWindow, now: DateTime<Utc>) -> Result<EndpointFetch, ProviderError> {
        // The window must reach now. Its end is the sync's "now" rounded up to
        // the minute, so a minute that rolled over during the sync still
        // counts (`minute == end`).
        let minute = Granularity::Minute.floor(now);
        if minute < window.start || minute > window.end {
            return Ok(EndpointFetch::default());
        }
        let url = format!("{}/account/info", self.base_url);
        let body = self.http.get_json(BALANCE.endpoint, |client| client.get(&url)).await?;
        let reading = parse::reading(body.json()).map_err(|e| self.http.malformed(BALANCE.endpoint, e.0))?;
        if reading.balance_usd.abs() > super::platform::guards::max_amount() {
            return Err(self.http.malformed(
                BALANCE.endpoint,
                format!("equivalent_in_usd is {}, beyond any real balance", reading.balance_usd),
            ));
        }
        let session = self.observe(now, reading.balance_usd);
        let record = self.record(&reading.account_id, &session);
        check_measures(&record.measures, DESCRIPTOR.measures).map_err(|e| self.http.malformed(BALANCE.endpoint, e))?;
        Ok(EndpointFetch {
            covered_buckets: BTreeSet::from([session.start]),
            records: vec![record],
        })
    }
}

#[async_trait]
impl ProviderAdapter for PiApiAdapter {
    fn provider(&self) -> Provider {
        Provider::PiApi
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        vec![BALANCE]
    }

    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        if *endpoint != BALANCE {
            return Err(ProviderError::unknown_endpoint(
                self.account.as_str(),
                Provider::PiApi,
                endpoint,
            ));
        }
        self.fetch_at(window.snapped_out(Granularity::Minute), Utc::now()).await
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }
}

/// The PiAPI account-info parser on fuzzer input (`fuzz/`): the first byte
/// is ignored, the rest is the body. Never panics.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    if let Some((_, body)) = super::json::fuzz_input(data) {
        drop(parse::reading(&body));
    }
}

#[cfg(test)]
mod tests;
