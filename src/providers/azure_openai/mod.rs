//! Azure OpenAI adapter: billed cost from Cost Management and hourly token
//! counts from Azure Monitor, with a service principal.
//!
//! - `cost_query` (cost, 1d): `POST {scope}/providers/Microsoft.CostManagement/query`,
//!   `ActualCost`, `Daily`, a `Custom` time period of the window's days,
//!   `Cost` and `CostUSD` summed, grouped by `ResourceId` and `Meter`,
//!   filtered to the Cognitive Services service (where Azure OpenAI and AI
//!   Services bill). Rows are mapped by column name, `UsageDate` is a
//!   `yyyymmdd` number. `properties.nextLink` is followed by POSTing the same
//!   body (the Pager guards it; a link to another origin is refused). Every
//!   day of the window is covered: a day that drops out of the answer cancels
//!   what was stored for it.
//! - `monitor_metrics` (usage, 1h): the subscription's (or resource group's)
//!   `Microsoft.CognitiveServices/accounts` of kind `OpenAI` / `AIServices`,
//!   each account's deployments (deployment name -> model name), and per
//!   account `ProcessedPromptTokens` and `GeneratedTokens`, `Total`, `PT1H`,
//!   split by `ModelDeploymentName`, at most [`METRICS_CHUNK_DAYS`] per call.
//!
//! # Money
//! `cost` is USD (`CostUSD`; `Cost` when the billing currency is USD),
//! exact from the JSON text; `amount_original` + `currency` keep the amount
//! in the billing currency. A negative row (a refund or credit meter) is
//! stored as positive `credits` with `cost` 0, so net = cost - credits.
//! Azure credits that are applied only on the invoice (sponsorship,
//! prepayment) are not in Cost Management's actual cost and so not here.

mod auth;
mod config;
mod parse;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{json, Value};

use super::platform::json::{Json, JsonBody};

use super::platform::paging::{bucket_starts, Page, PageBucket, PageError, Pager, Spread};
use super::platform::{CachedToken, HttpSetup, MeasurePolicy, Redactor, RequestRate, StaticHeaders};
use super::registry::{AdapterHooks, CredentialKeys, ProviderDescriptor, BILLING_INTERVAL, DAY};
use super::{
    EndpointFetch, EndpointSpec, HttpStats, Provider, ProviderAdapter, ProviderError, ProviderHttp, RetryPolicy,
    TimeWindow,
};
use crate::normalize::schema::{FetchedRecord, Granularity, RecordType};
use crate::providers::platform::http::api_root;

pub use config::{wrong_secret_type, AzureConfig, COST_PAGE_SIZE, DEFAULT_LOGIN_URL, LOGIN_URL};
pub use parse::meter_model;
use parse::CognitiveAccount;

/// Cost Management's api-version.
pub const COST_API_VERSION: &str = "2025-03-01";
/// `Microsoft.CognitiveServices` (accounts, deployments).
pub const COGNITIVE_API_VERSION: &str = "2024-10-01";
/// Azure Monitor metrics.
pub const METRICS_API_VERSION: &str = "2023-10-01";
/// The longest time span asked of the metrics API in one call.
pub const METRICS_CHUNK_DAYS: i64 = 7;
/// Pages of one cost query (5,000 rows each at most on Azure's side).
const MAX_COST_PAGES: usize = 200;
/// Pages of one listing (accounts, deployments).
const MAX_LIST_PAGES: usize = 100;
/// Time series per metrics call: the API returns 10 unless asked.
const METRICS_TOP: &str = "1000";

/// Azure OpenAI in the registry.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    provider: Provider::AzureOpenAi,
    default_base_url: Some("https://management.azure.com"),
    default_interval: BILLING_INTERVAL,
    // Cost data refreshes about every 4 h and recent days are restated for
    // a few days; the deep re-sync re-reads the month.
    min_lookback: Duration::from_secs(5 * DAY.as_secs()),
    credentials: CredentialKeys {
        required: &["tenant_id", "client_id", "client_secret", "subscription_id"],
        optional: &["resource_group"],
        one_of: &[],
        identity: &["tenant_id", "subscription_id", "resource_group"],
    },
    settings: &[LOGIN_URL, COST_PAGE_SIZE],
    // Refunds come as negative amounts (stored as credits; the original
    // amount keeps its sign).
    measures: MeasurePolicy {
        negative_money: true,
        negative_quantities: false,
    },
    // ARM listings and Azure Monitor metrics (thousands of reads an hour per
    // subscription); the cost query has its own, stricter limit
    // (COST_RATE).
    requests_per_second: 5,
    key_hints: &[],
    adapter: AdapterHooks {
        check: |account| AzureConfig::read(account).map(|_| ()),
        build: |account, context| {
            let config = crate::providers::registry::read_config(account, AzureConfig::read)?;
            Ok(Arc::new(AzureAdapter::new(account.id, &config, context.retry.clone())?))
        },
    },
};

/// Cost Management allows about 12 queries per 10 s per scope: its queries
/// are paced apart from the account's other requests, so a sync's listings
/// and metrics do not wait a second each behind them.
/// A burst of 2 keeps any 10 s at 12 queries at most.
const COST_RATE: RequestRate = RequestRate {
    per_second: 1,
    burst: 2,
};

const COST: EndpointSpec = EndpointSpec {
    record_type: RecordType::Cost,
    endpoint: parse::COST_ENDPOINT,
    granularity: Granularity::Day,
};

const METRICS: EndpointSpec = EndpointSpec {
    record_type: RecordType::Usage,
    endpoint: parse::METRICS_ENDPOINT,
    granularity: Granularity::Hour,
};

/// One service principal on one subscription (or resource group).
pub struct AzureAdapter {
    account: String,
    root: String,
    scope: String,
    /// Rows per cost query page (`$top`).
    cost_page_size: u32,
    /// ARM listings and Azure Monitor metrics.
    http: ProviderHttp,
    /// Cost Management queries (the same credentials, their own limit).
    cost_http: ProviderHttp,
}

impl fmt::Debug for AzureAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureAdapter")
            .field("account", &self.account)
            .field("root", &self.root)
            .field("scope", &self.scope)
            .field("client_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl AzureAdapter {
    pub fn new(account_id: &str, config: &AzureConfig, policy: RetryPolicy) -> Result<Self, ProviderError> {
        let root = api_root(account_id, &config.management_url, "https://management.azure.com")?;
        let login_root = api_root(account_id, &config.login_url, DEFAULT_LOGIN_URL)?;
        let redactor = || Redactor::new([config.client_secret.expose()]);
        let no_headers = StaticHeaders::new(&[], &[]).map_err(|e| ProviderError::Config {
            account: account_id.to_string(),
            detail: e.to_string(),
        })?;
        let login = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::AzureOpenAi,
            policy: policy.clone(),
            auth: Arc::new(no_headers),
            classifier: Arc::new(auth::LoginClassifier),
            requests_per_second: 2,
            auth_hint: auth::LOGIN_HINT.to_string(),
            redactor: redactor(),
        });
        let source = auth::EntraLogin {
            http: login,
            url: format!("{login_root}/{}/oauth2/v2.0/token", config.tenant_id),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
        };
        let http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::AzureOpenAi,
            policy,
            auth: Arc::new(CachedToken::new(Arc::new(source))),
            classifier: Arc::new(auth::AzureClassifier),
            requests_per_second: DESCRIPTOR.requests_per_second,
            auth_hint: auth::MANAGEMENT_HINT.to_string(),
            redactor: redactor(),
        });
        Ok(Self {
            account: account_id.to_string(),
            root,
            scope: config.scope(),
            cost_page_size: config.cost_page_size,
            cost_http: http.with_own_limit(COST_RATE),
            http,
        })
    }

    /// A `nextLink` is followed only on the management origin: it carries the
    /// bearer token.
    fn same_origin(&self, link: &str) -> Result<String, PageError> {
        let origin = |text: &str| url::Url::parse(text).ok().map(|u| u.origin());
        match (origin(link), origin(&self.root)) {
            (Some(a), Some(b)) if a == b => Ok(link.to_string()),
            _ => Err(PageError::Parse(format!(
                "nextLink '{}' is not on the management endpoint {}; refusing to send the token there",
                self.http.redactor().excerpt(link, 200),
                self.root
            ))),
        }
    }

    /// The window's days up to today, or `None` when nothing is left.
    fn clamp(window: TimeWindow, granularity: Granularity) -> Option<TimeWindow> {
        let window = window.snapped_out(granularity);
        let window = TimeWindow::new(window.start, window.end.min(granularity.ceil(Utc::now())));
        (!window.is_empty()).then_some(window)
    }

    async fn fetch_cost(&self, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        let Some(window) = Self::clamp(window, Granularity::Day) else {
            return Ok(EndpointFetch::default());
        };
        let url = format!(
            "{}/{}/providers/Microsoft.CostManagement/query?api-version={COST_API_VERSION}&$top={}",
            self.root, self.scope, self.cost_page_size
        );
        let body = cost_query_body(window);
        let pager = Pager {
            http: &self.cost_http,
            spec: &COST,
            window,
            spread: Spread::RowsAcrossPages {
                max_pages: MAX_COST_PAGES,
            },
            measures: DESCRIPTOR.measures,
        };
        pager
            .collect(|cursor, number| {
                let (url, body) = (&url, &body);
                async move {
                    let target = match cursor {
                        None => url.clone(),
                        Some(link) => self.same_origin(&link)?,
                    };
                    let value = self
                        .cost_http
                        .send(COST.endpoint, |client| client.post(&target).json(body), json_or_empty)
                        .await?;
                    let page = parse::cost_page(value.json(), window)?;
                    let first = (number == 1).then(|| bucket_starts(window, &COST));
                    Ok(Page {
                        buckets: into_buckets(first, page.records),
                        next: page.next,
                    })
                }
            })
            .await
    }

    /// Every item of an ARM listing, following `nextLink` (same origin, no
    /// repeats, at most [`MAX_LIST_PAGES`]).
    async fn list(&self, endpoint: &str, url: String) -> Result<Vec<Json<'static>>, ProviderError> {
        let mut items = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_LIST_PAGES || !seen.insert(url.clone()) {
                return Err(self.http.malformed(
                    endpoint,
                    format!("the listing's nextLink repeats or goes past {MAX_LIST_PAGES} pages; paging would not end"),
                ));
            }
            let body = self.http.get_json(endpoint, |client| client.get(&url)).await?;
            let page = parse::listing(body.json()).map_err(|e| self.http.malformed(endpoint, e.0))?;
            items.extend(page.items);
            if let Some(link) = page.next {
                next = Some(self.same_origin(&link).map_err(|e| match e {
                    PageError::Provider(e) => e,
                    PageError::Parse(detail) => self.http.malformed(endpoint, detail),
                })?);
            }
        }
        Ok(items)
    }

    async fn accounts(&self) -> Result<Vec<CognitiveAccount>, ProviderError> {
        const ENDPOINT: &str = "Microsoft.CognitiveServices/accounts";
        let url = format!(
            "{}/{}/providers/Microsoft.CognitiveServices/accounts?api-version={COGNITIVE_API_VERSION}",
            self.root, self.scope
        );
        let items = self.list(ENDPOINT, url).await?;
        parse::accounts(&items).map_err(|e| self.http.malformed(ENDPOINT, e.0))
    }

    async fn deployments(&self, account: &CognitiveAccount) -> Result<BTreeMap<String, String>, ProviderError> {
        const ENDPOINT: &str = "Microsoft.CognitiveServices/accounts/deployments";
        let url = format!(
            "{}{}/deployments?api-version={COGNITIVE_API_VERSION}",
            self.root, account.id
        );
        let items = self.list(ENDPOINT, url).await?;
        parse::deployments(&items).map_err(|e| self.http.malformed(ENDPOINT, e.0))
    }

    async fn fetch_metrics(&self, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        let Some(window) = Self::clamp(window, Granularity::Hour) else {
            return Ok(EndpointFetch::default());
        };
        let mut jobs: Vec<MetricsJob> = Vec::new();
        for account in self.accounts().await? {
            let models = Arc::new(self.deployments(&account).await?);
            let mut start = window.start;
            while start < window.end {
                let end = (start + chrono::Duration::days(METRICS_CHUNK_DAYS)).min(window.end);
                jobs.push((account.clone(), models.clone(), TimeWindow::new(start, end)));
                start = end;
            }
        }
        let pager = Pager {
            http: &self.http,
            spec: &METRICS,
            window,
            spread: Spread::RowsAcrossPages {
                max_pages: jobs.len() + 1,
            },
            measures: DESCRIPTOR.measures,
        };
        let jobs = &jobs;
        pager
            .collect(|cursor, number| async move {
                let index: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
                let first = (number == 1).then(|| bucket_starts(window, &METRICS));
                let Some((account, models, piece)) = jobs.get(index) else {
                    // No OpenAI accounts: every hour is answered, with nothing.
                    return Ok(Page {
                        buckets: into_buckets(first, Vec::new()),
                        next: None,
                    });
                };
                let url = format!("{}{}/providers/Microsoft.Insights/metrics", self.root, account.id);
                let timespan = format!(
                    "{}/{}",
                    piece.start.format("%Y-%m-%dT%H:%M:%SZ"),
                    piece.end.format("%Y-%m-%dT%H:%M:%SZ")
                );
                let query = [
                    ("api-version", METRICS_API_VERSION),
                    ("metricnames", "ProcessedPromptTokens,GeneratedTokens"),
                    ("timespan", timespan.as_str()),
                    ("interval", "PT1H"),
                    ("aggregation", "Total"),
                    ("$filter", "ModelDeploymentName eq '*'"),
                    ("top", METRICS_TOP),
                ];
                let body = self
                    .http
                    .get_json(METRICS.endpoint, |client| client.get(&url).query(&query))
                    .await?;
                let records = parse::metrics(body.json(), account, models, *piece)?;
                Ok(Page {
                    buckets: into_buckets(first, records),
                    next: (index + 1 < jobs.len()).then(|| (index + 1).to_string()),
                })
            })
            .await
    }
}

/// One metrics call: an account, its deployment -> model map, a time span.
type MetricsJob = (CognitiveAccount, Arc<BTreeMap<String, String>>, TimeWindow);

/// The `query` body; the same body is POSTed to every `nextLink`.
fn cost_query_body(window: TimeWindow) -> Value {
    let last_second = window.end - chrono::Duration::seconds(1);
    json!({
        "type": "ActualCost",
        "timeframe": "Custom",
        "timePeriod": {
            "from": window.start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "to": last_second.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        },
        "dataset": {
            "granularity": "Daily",
            "aggregation": {
                "totalCost": {"name": "Cost", "function": "Sum"},
                "totalCostUSD": {"name": "CostUSD", "function": "Sum"},
            },
            "grouping": [
                {"type": "Dimension", "name": "ResourceId"},
                {"type": "Dimension", "name": "Meter"},
            ],
            "filter": {"dimensions": {"name": "ServiceName", "operator": "In", "values": ["Cognitive Services"]}},
        },
    })
}

/// A 2xx body as JSON; an empty body (Cost Management's 204) is `null`.
fn json_or_empty(body: bytes::Bytes) -> Result<JsonBody, String> {
    let len = body.len();
    let text = if body.iter().all(u8::is_ascii_whitespace) {
        b"null".to_vec()
    } else {
        Vec::from(body)
    };
    JsonBody::parse(text).map_err(|e| format!("response body is not complete JSON ({len} bytes): {e}"))
}

/// Records grouped into their buckets; on the first page, every bucket of
/// the window (answered even when empty).
fn into_buckets(
    all: Option<std::collections::BTreeSet<chrono::DateTime<Utc>>>,
    records: Vec<FetchedRecord>,
) -> Vec<PageBucket> {
    let mut buckets: BTreeMap<chrono::DateTime<Utc>, Vec<FetchedRecord>> =
        all.into_iter().flatten().map(|start| (start, Vec::new())).collect();
    for record in records {
        buckets.entry(record.identity.bucket_start).or_default().push(record);
    }
    buckets
        .into_iter()
        .map(|(start, records)| PageBucket {
            start,
            end: None,
            records,
        })
        .collect()
}

#[async_trait]
impl ProviderAdapter for AzureAdapter {
    fn provider(&self) -> Provider {
        Provider::AzureOpenAi
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        vec![COST, METRICS]
    }

    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        if *endpoint == COST {
            self.fetch_cost(window).await
        } else if *endpoint == METRICS {
            self.fetch_metrics(window).await
        } else {
            Err(ProviderError::unknown_endpoint(
                self.account.as_str(),
                Provider::AzureOpenAi,
                endpoint,
            ))
        }
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }
}

/// Runs each response parser on `data` (the first byte chooses it, the rest
/// is the body); never panics, ignores errors. For fuzz targets.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(body) = Json::parse(rest) else {
        return;
    };
    let day = |d: u32| {
        chrono::TimeZone::with_ymd_and_hms(&Utc, 2025, 1, d, 0, 0, 0)
            .single()
            .unwrap_or_default()
    };
    let window = TimeWindow::new(day(1), day(31));
    match which % 5 {
        0 => drop(parse::token(&body)),
        1 => drop(parse::cost_page(&body, window)),
        2 => drop(parse::listing(&body).and_then(|l| parse::accounts(&l.items))),
        3 => drop(parse::listing(&body).and_then(|l| parse::deployments(&l.items))),
        _ => {
            let account = CognitiveAccount {
                id: "/subscriptions/s/resourceGroups/r/providers/Microsoft.CognitiveServices/accounts/a".into(),
                name: "a".into(),
                kind: "OpenAI".into(),
                location: "eastus".into(),
            };
            drop(parse::metrics(&body, &account, &BTreeMap::new(), window));
        }
    }
}

#[cfg(test)]
mod tests;
