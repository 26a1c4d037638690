//! OpenAI Admin API adapter: `/organization/usage/*` and `/organization/costs`.
//!
//! One request shape for every endpoint: `start_time`/`end_time` in Unix
//! seconds (end exclusive, clamped to now because OpenAI has rejected future
//! ends), the widest `limit` the bucket width allows, every `group_by[]` field
//! the endpoint supports (so each record is as fine as the API can make it and
//! its raw grouping fields form its identity), then `page=<next_page>` with
//! otherwise identical parameters until `has_more` is false.
//!
//! Usage comes hourly; costs come daily because that is the only width the
//! Costs endpoint offers, and costs are the bill (usage "may not reconcile").

mod config;
mod line_items;
mod names;
mod parse;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use super::platform::paging::{Pager, Spread};
use super::platform::retry::{default_verdict, RetryClassifier, Verdict};
use super::platform::{HttpSetup, MeasurePolicy, Redactor, StaticHeaders};
use super::registry::{AdapterHooks, CredentialKeys, KeyHint, ProviderDescriptor, DAY, USAGE_INTERVAL};
use super::{
    EndpointFetch, EndpointSpec, FailureKind, HttpStats, Provider, ProviderAdapter, ProviderError, ProviderHttp,
    RetryPolicy, TimeWindow,
};
use crate::normalize::schema::{Granularity, RecordType};
use crate::providers::platform::http::api_root;

pub use config::OpenAiConfig;

/// OpenAI in the registry.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    provider: Provider::OpenAi,
    default_base_url: Some("https://api.openai.com/v1"),
    default_interval: USAGE_INTERVAL,
    // Usage buckets fill in late for up to a day; costs restate a day or two.
    min_lookback: Duration::from_secs(2 * DAY.as_secs()),
    credentials: CredentialKeys::API_KEY,
    settings: &[],
    // The Usage API documents no negative values; the Costs API's line items
    // may carry billing adjustments, which are kept so sum(cost) is the bill.
    measures: MeasurePolicy {
        negative_money: true,
        negative_quantities: false,
    },
    requests_per_second: 5,
    key_hints: &[
        KeyHint {
            credential: "api_key",
            prefix: "sk-proj-",
            diagnosis: "this is a project key; the usage and costs APIs need an Admin key (sk-admin-...), \
                        created under Organization settings > Admin keys (read-only is enough)",
        },
        KeyHint {
            credential: "api_key",
            prefix: "sk-svcacct-",
            diagnosis: "this is a service-account key; the usage and costs APIs need an Admin key (sk-admin-...)",
        },
    ],
    adapter: AdapterHooks {
        check: |account| OpenAiConfig::read(account).map(|_| ()),
        build: |account, context| {
            let config = crate::providers::registry::read_config(account, OpenAiConfig::read)?;
            Ok(Arc::new(OpenAiAdapter::new(
                account.id,
                account.base_url,
                config.api_key.expose().to_string(),
                context.retry.clone(),
            )?))
        },
    },
};

/// OpenAI's 429 means two things: "slow down" (retry after the wait) and
/// `insufficient_quota` (the organization ran out of credit: waiting cannot
/// help, and retrying would only burn the sync's time).
struct OpenAiClassifier;

impl RetryClassifier for OpenAiClassifier {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &str) -> Verdict {
        if status == StatusCode::TOO_MANY_REQUESTS && body.contains("insufficient_quota") {
            return Verdict::Fail(FailureKind::Request);
        }
        default_verdict(status, headers)
    }
}

/// Shown with a 401/403: the usual cause is a project key instead of an Admin key.
const AUTH_HINT: &str = "the OpenAI usage and costs APIs need an Admin key (sk-admin-...); \
project keys cannot read organization usage. Create one under Organization settings > Admin keys \
and put it in credentials.api_key";

/// How the measures of an endpoint's result objects are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Metrics {
    /// Tokens with cache reads/writes, and model requests.
    Completions,
    /// `input_tokens` and model requests (embeddings, moderations).
    InputTokens,
    /// One count in `unit`, read from `field`; `requests` says whether the
    /// endpoint also reports `num_model_requests`.
    Quantity {
        field: &'static str,
        unit: &'static str,
        requests: bool,
    },
    /// Billed money per line item.
    Costs,
}

/// One endpoint: its stream, URL path and request shape.
#[derive(Clone, Copy, Debug)]
struct EndpointDef {
    spec: EndpointSpec,
    /// Appended to the base URL.
    path: &'static str,
    /// Every field the endpoint can group by, sent as `group_by[]`.
    group_by: &'static [&'static str],
    /// Buckets per page: the API's maximum for this width and endpoint.
    limit: u32,
    metrics: Metrics,
}

const KEY_MODEL: &[&str] = &["project_id", "user_id", "api_key_id", "model"];

const fn usage(
    endpoint: &'static str,
    path: &'static str,
    group_by: &'static [&'static str],
    metrics: Metrics,
) -> EndpointDef {
    EndpointDef {
        spec: EndpointSpec {
            record_type: RecordType::Usage,
            endpoint,
            granularity: Granularity::Hour,
        },
        path,
        group_by,
        limit: 168,
        metrics,
    }
}

const fn quantity(field: &'static str, unit: &'static str, requests: bool) -> Metrics {
    Metrics::Quantity { field, unit, requests }
}

/// The streams this adapter pulls: all ten usage endpoints and costs.
const ENDPOINTS: &[EndpointDef] = &[
    usage(
        "completions",
        "/organization/usage/completions",
        &["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"],
        Metrics::Completions,
    ),
    usage(
        "embeddings",
        "/organization/usage/embeddings",
        KEY_MODEL,
        Metrics::InputTokens,
    ),
    usage(
        "moderations",
        "/organization/usage/moderations",
        KEY_MODEL,
        Metrics::InputTokens,
    ),
    usage(
        "images",
        "/organization/usage/images",
        &["project_id", "user_id", "api_key_id", "model", "size", "source"],
        quantity("images", "images", true),
    ),
    usage(
        "audio_speeches",
        "/organization/usage/audio_speeches",
        KEY_MODEL,
        quantity("characters", "characters", true),
    ),
    usage(
        "audio_transcriptions",
        "/organization/usage/audio_transcriptions",
        KEY_MODEL,
        quantity("seconds", "seconds", true),
    ),
    // `usage_bytes` is a storage gauge (bytes held during the bucket), not a
    // flow: 24 hourly readings of 1 GB are not 24 GB, and the daily rollup sums
    // whatever is stored. Daily buckets keep one reading per day, which sums
    // into GB-days, the unit storage is billed in.
    EndpointDef {
        spec: EndpointSpec {
            record_type: RecordType::Usage,
            endpoint: "vector_stores",
            granularity: Granularity::Day,
        },
        path: "/organization/usage/vector_stores",
        group_by: &["project_id"],
        limit: 31,
        metrics: quantity("usage_bytes", "bytes", false),
    },
    // Tool calls: `num_requests` counts calls of the tool (a quantity, not
    // model requests); web search also reports the model requests behind them.
    usage(
        "file_search_calls",
        "/organization/usage/file_search_calls",
        &["project_id", "user_id", "api_key_id", "vector_store_id"],
        quantity("num_requests", "calls", false),
    ),
    usage(
        "web_search_calls",
        "/organization/usage/web_search_calls",
        &["project_id", "user_id", "api_key_id", "model", "context_level"],
        quantity("num_requests", "calls", true),
    ),
    usage(
        "code_interpreter_sessions",
        "/organization/usage/code_interpreter_sessions",
        &["project_id"],
        quantity("num_sessions", "sessions", false),
    ),
    EndpointDef {
        spec: EndpointSpec {
            record_type: RecordType::Cost,
            endpoint: "costs",
            granularity: Granularity::Day,
        },
        path: "/organization/costs",
        group_by: &["project_id", "line_item", "api_key_id"],
        limit: 180,
        metrics: Metrics::Costs,
    },
];

impl EndpointDef {
    /// Every parameter but `page`, in a fixed order so that every page of one
    /// fetch asks the same question.
    fn query(&self, start: i64, end: i64) -> Vec<(&'static str, String)> {
        let mut query = vec![
            ("start_time", start.to_string()),
            ("end_time", end.to_string()),
            ("bucket_width", self.spec.granularity.as_str().to_string()),
            ("limit", self.limit.to_string()),
        ];
        query.extend(self.group_by.iter().map(|field| ("group_by[]", field.to_string())));
        query
    }
}

/// One OpenAI organization (one Admin key).
pub struct OpenAiAdapter {
    account: String,
    /// API root without a trailing slash, e.g. `https://api.openai.com/v1`.
    base_url: String,
    http: ProviderHttp,
}

impl fmt::Debug for OpenAiAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiAdapter")
            .field("account", &self.account)
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl OpenAiAdapter {
    /// `base_url` is the API root as the OpenAI SDK uses it
    /// (`https://api.openai.com/v1`); a trailing slash is fine.
    pub fn new(account_id: &str, base_url: &str, api_key: String, policy: RetryPolicy) -> Result<Self, ProviderError> {
        let config_error = |detail: String| ProviderError::Config {
            account: account_id.to_string(),
            detail,
        };
        let base_url = api_root(account_id, base_url, "https://api.openai.com/v1")?;
        if api_key.trim().is_empty() {
            return Err(config_error(
                "credentials.api_key is empty; set it to an OpenAI Admin key (sk-admin-...)".to_string(),
            ));
        }
        if !api_key.starts_with("sk-admin-") {
            // Not fatal: OpenAI may change key prefixes. A project key fails
            // with 401/403 and the auth hint says what to do.
            tracing::warn!(
                account = account_id,
                "credentials.api_key does not look like an OpenAI Admin key (sk-admin-...)"
            );
        }
        let auth = StaticHeaders::authorization("Bearer", &api_key, "credentials.api_key")
            .map_err(|e| config_error(e.to_string()))?;
        let http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::OpenAi,
            policy,
            auth: Arc::new(auth),
            classifier: Arc::new(OpenAiClassifier),
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

    fn def(&self, spec: &EndpointSpec) -> Result<&'static EndpointDef, ProviderError> {
        ENDPOINTS
            .iter()
            .find(|def| def.spec == *spec)
            .ok_or_else(|| ProviderError::unknown_endpoint(self.account.as_str(), Provider::OpenAi, spec))
    }
}

#[async_trait]
impl ProviderAdapter for OpenAiAdapter {
    fn provider(&self) -> Provider {
        Provider::OpenAi
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        ENDPOINTS.iter().map(|def| def.spec).collect()
    }

    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        let def = self.def(endpoint)?;
        // Snapping is idempotent; it keeps bucket starts (part of every record
        // key) on bucket edges even if a caller passed a ragged window.
        let window = window.snapped_out(def.spec.granularity);
        let start = window.start.timestamp();
        let end = window.end.min(Utc::now()).timestamp();
        if end <= start {
            return Ok(EndpointFetch::default());
        }

        let url = format!("{}{}", self.base_url, def.path);
        let query = def.query(start, end);
        let pager = Pager {
            http: &self.http,
            spec: &def.spec,
            window,
            spread: Spread::WholeBuckets,
            measures: DESCRIPTOR.measures,
        };
        pager
            .collect(|cursor, number| {
                let (url, query) = (&url, &query);
                async move {
                    let body = self
                        .http
                        .get_json(def.spec.endpoint, |client| {
                            let request = client.get(url).query(query);
                            match &cursor {
                                Some(page) => request.query(&[("page", page)]),
                                None => request,
                            }
                        })
                        .await?;
                    let page = parse::page(def, body.json())?;
                    tracing::debug!(
                        account = %self.account,
                        endpoint = def.spec.endpoint,
                        page = number,
                        buckets = page.buckets.len(),
                        records = page.buckets.iter().map(|b| b.records.len()).sum::<usize>(),
                        "openai page"
                    );
                    Ok(page)
                }
            })
            .await
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }

    async fn fetch_names(&self) -> Result<Option<crate::providers::names::NameSnapshot>, ProviderError> {
        names::fetch(&self.http, &self.base_url).await.map(Some)
    }
}

/// Every OpenAI response parser on fuzzer input (`fuzz/`): the first byte
/// picks the endpoint (or the names list), the rest is the body. Never
/// panics; errors are the expected outcome.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let Some((which, body)) = super::json::fuzz_input(data) else {
        return;
    };
    match ENDPOINTS.get(usize::from(which) % (ENDPOINTS.len() + 1)) {
        Some(def) => drop(parse::page(def, &body)),
        None => {
            if let Ok(page) = super::names::id_cursor_page(&body) {
                for (i, item) in page.items.iter().enumerate() {
                    let _ = (super::names::item_id(item, i), super::names::item_text(item, i, "name"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
