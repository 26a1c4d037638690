//! Google Vertex AI (and Gemini API) adapter: billed cost and credits from
//! the Cloud Billing export in BigQuery, token counts from Cloud Monitoring.
//!
//! - `billing_export` (cost, 1d): `jobs.query` on the account's export table
//!   (`billing_table`), Vertex AI and Gemini API services, one row per UTC
//!   day x service x SKU x project x region x cost type x currency. Dates are
//!   query parameters, the table a checked identifier. Polls
//!   `getQueryResults` until `jobComplete`, then pages with `pageToken`
//!   ([`bigquery`]). Credits (negative in the export) are summed per row with
//!   a scalar subquery, so rows without credits stay, and stored positive.
//! - `token_count` (usage, 1h): `projects.timeSeries.list` of the publisher
//!   models' token-count metric, summed per model and token type per hour
//!   ([`monitoring`]); `monitoring = "off"` skips it.
//!
//! Auth: a service-account JSON key; an RS256 JWT exchanged at the key's
//! `token_uri`, the token cached by the platform and refreshed once on 401
//! ([`auth`]). Late data: the export lags 24-48 h and rewrites past days
//! until the invoice month closes (early in the next month), so every sync
//! re-reads the billing export from the start of the invoice month that was
//! open five days ago, besides the account's lookback (3 days minimum).

mod auth;
mod bigquery;
mod config;
mod monitoring;
mod parse;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::platform::retry::{default_verdict, RetryClassifier, Verdict};
use super::platform::{CachedToken, HttpSetup, MeasurePolicy, Redactor, StaticHeaders};
use super::registry::{AdapterHooks, CredentialKeys, KeyHint, ProviderDescriptor, BILLING_INTERVAL, DAY};
use super::{
    EndpointFetch, EndpointSpec, FailureKind, HttpStats, Provider, ProviderAdapter, ProviderError, ProviderHttp,
    RetryPolicy, TimeWindow,
};
use crate::normalize::schema::{Granularity, RecordType};
use crate::providers::platform::http::api_root;

pub use config::{service_account, ServiceAccount, TableId, VertexConfig, DEFAULT_SERVICES};

/// Google Vertex AI in the registry.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    provider: Provider::GoogleVertex,
    default_base_url: Some("https://bigquery.googleapis.com/bigquery/v2"),
    default_interval: BILLING_INTERVAL,
    // The export lags 24-48 h; the invoice month is re-read by the adapter.
    min_lookback: Duration::from_secs(3 * DAY.as_secs()),
    credentials: CredentialKeys {
        required: &[],
        optional: &[],
        one_of: &["service_account_json", "service_account_file"],
        identity: &["service_account_json", "service_account_file"],
    },
    settings: &[
        "billing_table",
        "query_project",
        "location",
        config::SERVICES,
        "page_size",
        "monitoring",
        "monitoring_url",
        "monitoring_project",
    ],
    // Adjustments and reversed credits can be negative; token counts never.
    measures: MeasurePolicy {
        negative_money: true,
        negative_quantities: false,
    },
    requests_per_second: 5,
    key_hints: &[
        KeyHint {
            credential: "service_account_json",
            prefix: "AIza",
            diagnosis: "a Google API key cannot read the billing export; create a service account JSON key \
                        (IAM & Admin > Service Accounts > Keys > Add key > JSON)",
        },
        KeyHint {
            credential: "service_account_json",
            prefix: "ya29.",
            diagnosis: "an OAuth access token expires within an hour; use a service account JSON key \
                        (IAM & Admin > Service Accounts > Keys > Add key > JSON)",
        },
    ],
    adapter: AdapterHooks {
        check: |account| VertexConfig::read(account).map(|_| ()),
        build: |account, context| {
            let config = crate::providers::registry::read_config(account, VertexConfig::read)?;
            Ok(Arc::new(VertexAdapter::new(
                account.id,
                account.base_url,
                &config,
                context.retry.clone(),
            )?))
        },
    },
};

pub(crate) const BILLING: EndpointSpec = EndpointSpec {
    record_type: RecordType::Cost,
    endpoint: "billing_export",
    granularity: Granularity::Day,
};

pub(crate) const TOKENS: EndpointSpec = EndpointSpec {
    record_type: RecordType::Usage,
    endpoint: "token_count",
    granularity: Granularity::Hour,
};

/// Google APIs answer throttling with 429, and BigQuery also with 403
/// `rateLimitExceeded` / `quotaExceeded`: those are retried, other 403s
/// (`accessDenied`) are missing roles.
#[derive(Clone, Copy, Debug, Default)]
pub struct GoogleClassifier;

impl RetryClassifier for GoogleClassifier {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &str) -> Verdict {
        let throttled = ["rateLimitExceeded", "quotaExceeded", "RESOURCE_EXHAUSTED"]
            .iter()
            .any(|reason| body.contains(reason));
        if status == StatusCode::FORBIDDEN && throttled {
            Verdict::Retry {
                kind: FailureKind::Throttled,
                wait: self.retry_after(headers),
            }
        } else {
            default_verdict(status, headers)
        }
    }
}

/// One Vertex account.
pub struct VertexAdapter {
    account: String,
    bigquery_url: String,
    config: VertexConfig,
    http: ProviderHttp,
    /// Pause between polls of a running query job (getQueryResults also
    /// waits server-side); short in tests.
    poll_delay: Duration,
}

impl fmt::Debug for VertexAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VertexAdapter")
            .field("account", &self.account)
            .field("bigquery_url", &self.bigquery_url)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl VertexAdapter {
    pub fn new(
        account_id: &str,
        base_url: &str,
        config: &VertexConfig,
        policy: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let config_error = |detail: String| ProviderError::Config {
            account: account_id.to_string(),
            detail,
        };
        let bigquery_url = api_root(account_id, base_url, "https://bigquery.googleapis.com/bigquery/v2")?;
        let sa = &config.service_account;
        let key = auth::signing_key(sa.private_key.expose())
            .map_err(|problem| config_error(format!("{}: the private_key {problem}", config.key_field)))?;
        let redactor = Redactor::new([sa.private_key.expose()]);
        let token_http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::GoogleVertex,
            policy: policy.clone(),
            auth: Arc::new(StaticHeaders::new(&[], &[]).map_err(|e| config_error(e.to_string()))?),
            classifier: Arc::new(auth::TokenClassifier),
            requests_per_second: DESCRIPTOR.requests_per_second,
            auth_hint: format!(
                "Google's token endpoint refused the service account key in {}: the key was deleted or disabled, \
                 the service account was deleted, the JSON was edited, or this machine's clock is off; {}",
                config.key_field,
                config::KEYS_HELP
            ),
            redactor: redactor.clone(),
        });
        let source = auth::JwtSource {
            account: sa.clone(),
            key: Arc::new(key),
            http: token_http,
        };
        let monitoring_roles = if config.monitoring_url.is_some() {
            format!(
                ", and roles/monitoring.viewer on project {} for token counts (or set monitoring = \"off\")",
                config.monitoring_project
            )
        } else {
            String::new()
        };
        let http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::GoogleVertex,
            policy,
            auth: Arc::new(CachedToken::new(Arc::new(source))),
            classifier: Arc::new(GoogleClassifier),
            requests_per_second: DESCRIPTOR.requests_per_second,
            auth_hint: format!(
                "the service account {} needs roles/bigquery.jobUser on project {} (to run queries) and \
                 roles/bigquery.dataViewer on the billing export dataset {}.{}{monitoring_roles}; grant them in the \
                 Cloud console under IAM & Admin > IAM",
                sa.client_email, config.query_project, config.billing_table.project, config.billing_table.dataset
            ),
            redactor,
        });
        Ok(Self {
            account: account_id.to_string(),
            bigquery_url,
            config: config.clone(),
            http,
            poll_delay: Duration::from_secs(1),
        })
    }

    /// A shorter pause between job polls (tests).
    pub fn with_poll_delay(mut self, delay: Duration) -> Self {
        self.poll_delay = delay;
        self
    }
}

#[async_trait]
impl ProviderAdapter for VertexAdapter {
    fn provider(&self) -> Provider {
        Provider::GoogleVertex
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        let mut out = vec![BILLING];
        if self.config.monitoring_url.is_some() {
            out.push(TOKENS);
        }
        out
    }

    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        if *endpoint == BILLING {
            bigquery::fetch(self, window).await
        } else if *endpoint == TOKENS && self.config.monitoring_url.is_some() {
            monitoring::fetch(self, window).await
        } else {
            Err(ProviderError::unknown_endpoint(
                self.account.as_str(),
                Provider::GoogleVertex,
                endpoint,
            ))
        }
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }
}

/// The DER public key (PKCS#1 `RSAPublicKey`) of a service account's PEM
/// private key: what Google keeps to verify its JWTs (the simulator does too).
pub fn public_key_der(pem: &str) -> Result<Vec<u8>, String> {
    auth::signing_key(pem)
        .map(|key| ring::signature::KeyPair::public_key(&key).as_ref().to_vec())
        .map_err(|problem| format!("the private key {problem}"))
}

/// Runs each response parser on `data` (the first byte picks the parser, the
/// rest is the body); never panics, ignores errors. For the fuzz targets.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    if which % 4 == 3 {
        let _ = std::str::from_utf8(body).map(config::service_account);
        return;
    }
    let Ok(value) = crate::providers::json::Json::parse(body) else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = parse::query_page(&value, BILLING.endpoint);
        }
        1 => {
            let start = chrono::DateTime::<chrono::Utc>::MIN_UTC;
            let _ = parse::time_series_page(
                &value,
                TOKENS.endpoint,
                (start, chrono::DateTime::<chrono::Utc>::MAX_UTC),
            );
        }
        _ => {
            let _ = auth::token(&value);
        }
    }
}

#[cfg(test)]
mod tests;
