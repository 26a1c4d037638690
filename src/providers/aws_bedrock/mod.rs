//! AWS Bedrock adapter: cost from Cost Explorer, tokens from CloudWatch.
//!
//! Streams:
//! - `cost_and_usage` (cost, daily): `GetCostAndUsage` DAILY, `UnblendedCost`
//!   and `UsageQuantity`, grouped by SERVICE and USAGE_TYPE, for `Amazon
//!   Bedrock` and AWS Marketplace (where third-party models on Bedrock and
//!   Claude Platform on AWS are billed), without credits and refunds.
//! - `credits` (credit, daily): the same query restricted to RECORD_TYPE
//!   Credit and Refund; amounts stored positive.
//! - `bedrock_metrics` (usage, hourly): CloudWatch `AWS/Bedrock` token and
//!   invocation sums per `ModelId` ([`parse::METRICS`]); the models are the
//!   ones `ListMetrics` knows (metrics with data in the last two weeks).
//!
//! Cost Explorer charges $0.01 per request (every page): one request per
//! stream and window plus its pages, nothing else (no GetDimensionValues;
//! the Marketplace services are found by filtering on BILLING_ENTITY). Each
//! is counted in `tokentra_sync_provider_billed_requests_total{api =
//! "GetCostAndUsage"}` (and, like every request, in the HTTP response
//! counters) and logged per fetch.
//!
//! Days Cost Explorer marks `Estimated` are re-read by every later sync until
//! they are final: the adapter widens the next window back to the earliest
//! estimated day (up to [`ESTIMATED_REREAD_DAYS`]).
//!
//! The SDK clients' HTTP runs through the platform ([`transport`]); their own
//! retries and identity cache are off, so retries, counting and the
//! refresh-once of expired role credentials ([`credentials`]) each happen in
//! one place. Their stalled-stream protection is off too: the transport hands
//! the SDK whole answers, so the SDK saw a request that waited more than five
//! seconds (a retried 500, a hang until `request_timeout`, a long
//! `Retry-After`) as a stalled upload and failed it as its own error, which
//! hid the platform's typed error and surfaced as `malformed`.

mod config;
mod credentials;
mod parse;
mod transport;
pub mod usage_type;

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::RetryConfig;
use chrono::{DateTime, Utc};

use super::platform::paging::{bucket_starts, Page, PageBucket, PageError, Pager, Spread};
use super::platform::{HttpSetup, MeasurePolicy, Redactor, StaticHeaders};
use super::registry::{AdapterHooks, CredentialKeys, KeyHint, ProviderDescriptor, BILLING_INTERVAL, DAY};
use super::{
    EndpointFetch, EndpointSpec, FailureKind, HttpStats, Provider, ProviderAdapter, ProviderError, ProviderHttp,
    RetryPolicy, TimeWindow,
};
use crate::normalize::schema::{Granularity, RecordType};
use crate::providers::platform::http::api_root;

pub use config::{BedrockConfig, ABSK_FIX, DEFAULT_CE_URL};
use credentials::AccountCredentials;
pub use parse::{CeDay, MetricSeries, GENERAL_MODEL, METRICS};
use transport::{provider_error, AwsClassifier, PlatformHttpClient};

const COST_ENDPOINT: &str = "cost_and_usage";
const CREDIT_ENDPOINT: &str = "credits";
const METRICS_ENDPOINT: &str = "bedrock_metrics";

/// How far back an estimated day is still re-read (Cost Explorer finalizes
/// a month a few days after it closes).
pub const ESTIMATED_REREAD_DAYS: i64 = 62;

/// Cost Explorer pages one window may take before paging is called endless.
const MAX_CE_PAGES: usize = 200;

/// CloudWatch's limit of queries per GetMetricData call.
const MAX_QUERIES: usize = 500;

/// AWS Bedrock in the registry.
pub static DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    provider: Provider::AwsBedrock,
    default_base_url: Some(DEFAULT_CE_URL),
    // Cost Explorer refreshes about daily and charges per request.
    default_interval: BILLING_INTERVAL,
    // Estimated days are re-read on their own; three days catch the
    // refresh lag of days not yet marked estimated.
    min_lookback: Duration::from_secs(3 * DAY.as_secs()),
    credentials: CredentialKeys {
        required: &["access_key_id", "secret_access_key", "region"],
        optional: &["session_token", "role_arn", "external_id"],
        one_of: &[],
        identity: &["access_key_id", "role_arn"],
    },
    settings: &["cloudwatch_url", "sts_url", "extra_services"],
    // Credits and refunds are negative on the bill; a credit reversal can
    // make a stored credit negative.
    measures: MeasurePolicy {
        negative_money: true,
        negative_quantities: true,
    },
    // Cost Explorer allows a few requests per second per account.
    requests_per_second: 5,
    key_hints: &[
        KeyHint {
            credential: "access_key_id",
            prefix: "ABSK",
            diagnosis: "credentials.access_key_id is an Amazon Bedrock API key (ABSK...), which only calls \
                        bedrock-runtime; use an IAM user's access key (AKIA...) with ce:GetCostAndUsage and \
                        cloudwatch:GetMetricData",
        },
        KeyHint {
            credential: "secret_access_key",
            prefix: "ABSK",
            diagnosis: "credentials.secret_access_key is an Amazon Bedrock API key (ABSK...), which only calls \
                        bedrock-runtime; use an IAM user's access key pair with ce:GetCostAndUsage and \
                        cloudwatch:GetMetricData",
        },
    ],
    adapter: AdapterHooks {
        check: |account| BedrockConfig::read(account).map(|_| ()),
        build: |account, context| {
            let config = crate::providers::registry::read_config(account, BedrockConfig::read)?;
            Ok(Arc::new(BedrockAdapter::new(
                account.id,
                account.base_url,
                &config,
                context.retry.clone(),
            )?))
        },
    },
};

/// Shown with a credential failure.
const AUTH_HINT: &str = "AWS refused the credentials: credentials.access_key_id and secret_access_key must be an \
IAM access key (AKIA..., or ASIA... with session_token), not a Bedrock API key, and the user (or role_arn) needs \
ce:GetCostAndUsage, cloudwatch:GetMetricData and cloudwatch:ListMetrics (and sts:AssumeRole on role_arn); see \
docs/providers/aws_bedrock.md";

const SPECS: [EndpointSpec; 3] = [
    EndpointSpec {
        record_type: RecordType::Cost,
        endpoint: COST_ENDPOINT,
        granularity: Granularity::Day,
    },
    EndpointSpec {
        record_type: RecordType::Credit,
        endpoint: CREDIT_ENDPOINT,
        granularity: Granularity::Day,
    },
    EndpointSpec {
        record_type: RecordType::Usage,
        endpoint: METRICS_ENDPOINT,
        granularity: Granularity::Hour,
    },
];

/// One AWS account's Bedrock cost and usage.
pub struct BedrockAdapter {
    account: String,
    http: ProviderHttp,
    /// The SDK clients' configs; a client is built per fetch and dropped
    /// after it: a built client holds its runtime plugins (~10 KB each),
    /// ~28 KB per idle account for two clients used a few seconds an hour.
    ce: aws_sdk_costexplorer::Config,
    cw: aws_sdk_cloudwatch::Config,
    credentials: AccountCredentials,
    services: parse::Services,
    /// A Bedrock API key where the IAM key belongs: the field, named at sync.
    bedrock_api_key_in: Option<&'static str>,
    /// Per Cost Explorer stream, the earliest day last seen `Estimated`.
    estimated_from: Mutex<HashMap<&'static str, DateTime<Utc>>>,
    /// Cost Explorer requests made (billed per request).
    ce_requests: AtomicU64,
}

impl fmt::Debug for BedrockAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockAdapter")
            .field("account", &self.account)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl BedrockAdapter {
    pub fn new(
        account_id: &str,
        base_url: &str,
        config: &BedrockConfig,
        policy: RetryPolicy,
    ) -> Result<Self, ProviderError> {
        let ce_url = api_root(account_id, base_url, DEFAULT_CE_URL)?;
        let mut redactor = Redactor::new([config.access_key_id.expose(), config.secret_access_key.expose()]);
        for secret in [&config.session_token, &config.external_id].into_iter().flatten() {
            redactor.add(secret.expose());
        }
        let http = ProviderHttp::new(HttpSetup {
            account: account_id.to_string(),
            provider: Provider::AwsBedrock,
            policy,
            // The SDK signs each request (SigV4) before the platform sends it.
            auth: Arc::new(StaticHeaders::new(&[], &[]).expect("no headers")),
            classifier: Arc::new(AwsClassifier),
            requests_per_second: DESCRIPTOR.requests_per_second,
            auth_hint: AUTH_HINT.to_string(),
            redactor,
        });
        let transport = PlatformHttpClient::new(http.clone());
        let base = Credentials::new(
            config.access_key_id.expose().trim(),
            config.secret_access_key.expose().trim(),
            config.session_token.as_ref().map(|t| t.expose().trim().to_string()),
            None,
            "tokentra-account",
        );
        let region = aws_sdk_sts::config::Region::new(config.region.clone());
        let role = config.role_arn.as_ref().map(|arn| {
            let mut sts = aws_sdk_sts::Config::builder()
                .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
                .region(region.clone())
                .credentials_provider(base.clone())
                .http_client(transport.clone())
                .retry_config(RetryConfig::disabled())
                .stalled_stream_protection(aws_sdk_sts::config::StalledStreamProtectionConfig::disabled())
                .identity_cache(aws_sdk_sts::config::IdentityCache::no_cache());
            if let Some(url) = &config.sts_url {
                sts = sts.endpoint_url(url);
            }
            (
                arn.clone(),
                config.external_id.as_ref().map(|e| e.expose().to_string()),
                aws_sdk_sts::Client::from_conf(sts.build()),
            )
        });
        let credentials = AccountCredentials::new(account_id, base, role);
        // Cost Explorer is global, signed for us-east-1.
        let ce = aws_sdk_costexplorer::Config::builder()
            .behavior_version(aws_sdk_costexplorer::config::BehaviorVersion::latest())
            .region(aws_sdk_costexplorer::config::Region::new("us-east-1"))
            .credentials_provider(credentials.clone())
            .http_client(transport.clone())
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(aws_sdk_costexplorer::config::StalledStreamProtectionConfig::disabled())
            .identity_cache(aws_sdk_costexplorer::config::IdentityCache::no_cache())
            .endpoint_url(&ce_url)
            .build();
        let mut cw = aws_sdk_cloudwatch::Config::builder()
            .behavior_version(aws_sdk_cloudwatch::config::BehaviorVersion::latest())
            .region(aws_sdk_cloudwatch::config::Region::new(config.region.clone()))
            .credentials_provider(credentials.clone())
            .http_client(transport)
            .retry_config(RetryConfig::disabled())
            .stalled_stream_protection(aws_sdk_cloudwatch::config::StalledStreamProtectionConfig::disabled())
            .identity_cache(aws_sdk_cloudwatch::config::IdentityCache::no_cache());
        if let Some(url) = &config.cloudwatch_url {
            cw = cw.endpoint_url(url);
        }
        Ok(Self {
            account: account_id.to_string(),
            http,
            ce,
            cw: cw.build(),
            credentials,
            services: parse::Services {
                extra: config.extra_services.clone(),
            },
            bedrock_api_key_in: config.bedrock_api_key_in,
            estimated_from: Mutex::new(HashMap::new()),
            ce_requests: AtomicU64::new(0),
        })
    }

    /// Cost Explorer requests this adapter made (each billed $0.01).
    pub fn cost_explorer_requests(&self) -> u64 {
        self.ce_requests.load(Ordering::Relaxed)
    }

    /// Runs one SDK call; an auth failure with assumed-role credentials
    /// assumes the role again and retries once.
    async fn call<T, E, F, Fut>(&self, operation: &str, f: F) -> Result<T, ProviderError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: StdError + Send + Sync + 'static,
    {
        let mut refreshed = false;
        loop {
            match f().await {
                Ok(value) => return Ok(value),
                Err(e) => {
                    let error = provider_error(&e).unwrap_or_else(|| {
                        self.http.malformed(
                            operation,
                            format!("the AWS SDK refused the answer: {}", DisplayErrorContext(&e)),
                        )
                    });
                    if error.kind() == FailureKind::Auth && !refreshed && self.credentials.invalidate().await {
                        refreshed = true;
                        tracing::info!(account = %self.account, operation, "AWS refused the role credentials; assuming the role again once");
                        continue;
                    }
                    return Err(error);
                }
            }
        }
    }

    /// The Cost Explorer filter of a stream: Bedrock and Marketplace, with
    /// or without credits and refunds.
    fn ce_filter(credits: bool) -> aws_sdk_costexplorer::types::Expression {
        use aws_sdk_costexplorer::types::{Dimension, DimensionValues, Expression};
        let dim = |key: Dimension, values: &[&str]| {
            Expression::builder()
                .dimensions(
                    DimensionValues::builder()
                        .key(key)
                        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
                        .build(),
                )
                .build()
        };
        let services = Expression::builder()
            .or(dim(Dimension::Service, &[parse::BEDROCK_SERVICE]))
            .or(dim(Dimension::BillingEntity, &["AWS Marketplace"]))
            .build();
        let record_types = dim(Dimension::RecordType, &["Credit", "Refund"]);
        let record_types = if credits {
            record_types
        } else {
            Expression::builder().not(record_types).build()
        };
        Expression::builder().and(services).and(record_types).build()
    }

    async fn fetch_costs(&self, spec: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        let ce = &aws_sdk_costexplorer::Client::from_conf(self.ce.clone());
        use aws_sdk_costexplorer::types::{DateInterval, GroupDefinition, GroupDefinitionType};
        let window = self.with_estimated_days(spec.endpoint, window);
        let day = |t: DateTime<Utc>| t.date_naive().format("%Y-%m-%d").to_string();
        let period = DateInterval::builder()
            .start(day(window.start))
            .end(day(window.end))
            .build()
            .map_err(|e| self.http.malformed(spec.endpoint, e.to_string()))?;
        let filter = Self::ce_filter(spec.record_type == RecordType::Credit);
        let group = |key: &str| {
            GroupDefinition::builder()
                .r#type(GroupDefinitionType::Dimension)
                .key(key)
                .build()
        };
        let estimated: Mutex<Vec<DateTime<Utc>>> = Mutex::new(Vec::new());
        let before = self.cost_explorer_requests();
        let pager = Pager {
            http: &self.http,
            spec,
            window,
            spread: Spread::RowsAcrossPages {
                max_pages: MAX_CE_PAGES,
            },
            measures: DESCRIPTOR.measures,
        };
        let fetched = pager
            .collect(|token, number| {
                let (period, filter, estimated) = (period.clone(), filter.clone(), &estimated);
                let group = &group;
                async move {
                    // Identical parameters on every page (else RequestChangedException).
                    let answer = self
                        .call("GetCostAndUsage", || {
                            self.ce_requests.fetch_add(1, Ordering::Relaxed);
                            crate::metrics::billed_request(&self.account, Provider::AwsBedrock, "GetCostAndUsage");
                            ce.get_cost_and_usage()
                                .time_period(period.clone())
                                .granularity(aws_sdk_costexplorer::types::Granularity::Daily)
                                .metrics(parse::COST_METRIC)
                                .metrics(parse::QUANTITY_METRIC)
                                .group_by(group("SERVICE"))
                                .group_by(group("USAGE_TYPE"))
                                .filter(filter.clone())
                                .set_next_page_token(token.clone())
                                .send()
                        })
                        .await?;
                    let days: Vec<CeDay> = answer.results_by_time().iter().map(ce_day).collect();
                    let (mut buckets, marked) =
                        parse::cost_page(&days, spec.record_type, spec.endpoint, &self.services)
                            .map_err(PageError::Parse)?;
                    estimated.lock().unwrap_or_else(|p| p.into_inner()).extend(marked);
                    if number == 1 {
                        // Every day of the window is answered, empty or not.
                        buckets.extend(bucket_starts(window, spec).into_iter().map(|start| PageBucket {
                            start,
                            end: None,
                            records: Vec::new(),
                        }));
                    }
                    Ok(Page {
                        buckets,
                        next: answer.next_page_token().filter(|t| !t.is_empty()).map(str::to_string),
                    })
                }
            })
            .await?;
        let estimated = estimated.into_inner().unwrap_or_else(|p| p.into_inner());
        self.remember_estimated(spec.endpoint, estimated.iter().min().copied());
        tracing::info!(
            account = %self.account,
            endpoint = spec.endpoint,
            cost_explorer_requests = self.cost_explorer_requests() - before,
            estimated_days = estimated.len(),
            "Cost Explorer read (each request is billed $0.01)"
        );
        Ok(fetched)
    }

    /// The window widened back to the earliest day still estimated.
    fn with_estimated_days(&self, endpoint: &'static str, window: TimeWindow) -> TimeWindow {
        let map = self.estimated_from.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(endpoint) {
            Some(from)
                if *from < window.start && *from >= window.start - chrono::Duration::days(ESTIMATED_REREAD_DAYS) =>
            {
                TimeWindow::new(*from, window.end)
            }
            _ => window,
        }
    }

    fn remember_estimated(&self, endpoint: &'static str, earliest: Option<DateTime<Utc>>) {
        let mut map = self.estimated_from.lock().unwrap_or_else(|p| p.into_inner());
        match earliest {
            Some(day) => map.insert(endpoint, day),
            None => map.remove(endpoint),
        };
    }

    /// The `ModelId`s with Bedrock metrics in the region.
    async fn model_ids(&self, cw: &aws_sdk_cloudwatch::Client) -> Result<Vec<String>, ProviderError> {
        use aws_sdk_cloudwatch::types::DimensionFilter;
        let mut models = std::collections::BTreeSet::new();
        let mut seen_tokens = std::collections::HashSet::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_CE_PAGES {
            let answer = self
                .call("ListMetrics", || {
                    cw.list_metrics()
                        .namespace("AWS/Bedrock")
                        .metric_name("Invocations")
                        .dimensions(DimensionFilter::builder().name("ModelId").build())
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            for metric in answer.metrics() {
                for d in metric.dimensions() {
                    if d.name() == Some("ModelId") {
                        if let Some(v) = d.value() {
                            models.insert(v.to_string());
                        }
                    }
                }
            }
            match answer.next_token().filter(|t| !t.is_empty()) {
                None => return Ok(models.into_iter().collect()),
                Some(next) if !seen_tokens.insert(next.to_string()) => {
                    return Err(self
                        .http
                        .malformed("ListMetrics", "the NextToken repeats; paging would loop"))
                }
                Some(next) => token = Some(next.to_string()),
            }
        }
        Err(self
            .http
            .malformed("ListMetrics", "more pages than any account has metrics"))
    }

    async fn fetch_metrics(&self, spec: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        let cw = &aws_sdk_cloudwatch::Client::from_conf(self.cw.clone());
        use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat, ScanBy};
        let models = self.model_ids(cw).await?;
        let mut queries: Vec<(String, String, String)> = Vec::new();
        for (i, model) in models.iter().enumerate() {
            for (j, metric) in METRICS.iter().enumerate() {
                queries.push((format!("m{i}_{j}"), model.clone(), metric.to_string()));
            }
        }
        let chunks: Vec<Vec<(String, String, String)>> = queries.chunks(MAX_QUERIES).map(<[_]>::to_vec).collect();
        let start = aws_smithy_types::DateTime::from_secs(window.start.timestamp());
        let end = aws_smithy_types::DateTime::from_secs(window.end.timestamp());
        let pager = Pager {
            http: &self.http,
            spec,
            window,
            spread: Spread::RowsAcrossPages {
                max_pages: MAX_CE_PAGES,
            },
            measures: DESCRIPTOR.measures,
        };
        // Pages run through the chunks of queries, then each chunk's NextToken:
        // the cursor is "chunk:token".
        pager
            .collect(|cursor, number| {
                let chunks = &chunks;
                async move {
                    let (chunk, token) = match cursor.as_deref().and_then(|c| c.split_once(':')) {
                        Some((i, t)) => (
                            i.parse::<usize>().unwrap_or(usize::MAX),
                            (!t.is_empty()).then(|| t.to_string()),
                        ),
                        None => (0, None),
                    };
                    let mut buckets = if number == 1 {
                        bucket_starts(window, spec)
                            .into_iter()
                            .map(|start| PageBucket {
                                start,
                                end: None,
                                records: Vec::new(),
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    let Some(queries) = chunks.get(chunk) else {
                        return Ok(Page { buckets, next: None });
                    };
                    let built: Vec<MetricDataQuery> = queries
                        .iter()
                        .map(|(id, model, metric)| {
                            MetricDataQuery::builder()
                                .id(id)
                                .metric_stat(
                                    MetricStat::builder()
                                        .metric(
                                            Metric::builder()
                                                .namespace("AWS/Bedrock")
                                                .metric_name(metric)
                                                .dimensions(Dimension::builder().name("ModelId").value(model).build())
                                                .build(),
                                        )
                                        .period(3_600)
                                        .stat("Sum")
                                        .build(),
                                )
                                .return_data(true)
                                .build()
                        })
                        .collect();
                    let answer = self
                        .call("GetMetricData", || {
                            cw.get_metric_data()
                                .set_metric_data_queries(Some(built.clone()))
                                .start_time(start)
                                .end_time(end)
                                .scan_by(ScanBy::TimestampAscending)
                                .set_next_token(token.clone())
                                .send()
                        })
                        .await?;
                    let by_id: HashMap<&str, (&str, &str)> = queries
                        .iter()
                        .map(|(id, model, metric)| (id.as_str(), (model.as_str(), metric.as_str())))
                        .collect();
                    let mut series = Vec::new();
                    for result in answer.metric_data_results() {
                        let id = result.id().unwrap_or_default();
                        let Some((model, metric)) = by_id.get(id) else {
                            return Err(PageError::Parse(format!(
                                "a result for query '{id}', which was not asked"
                            )));
                        };
                        let timestamps = result
                            .timestamps()
                            .iter()
                            .map(|t| {
                                DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())
                                    .ok_or_else(|| PageError::Parse(format!("timestamp {} out of range", t.secs())))
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        series.push(MetricSeries {
                            model_id: model.to_string(),
                            metric: metric.to_string(),
                            timestamps,
                            values: result.values().to_vec(),
                        });
                    }
                    buckets.extend(parse::metric_records(&series, spec.endpoint).map_err(PageError::Parse)?);
                    let next = match answer.next_token().filter(|t| !t.is_empty()) {
                        Some(t) => Some(format!("{chunk}:{t}")),
                        None if chunk + 1 < chunks.len() => Some(format!("{}:", chunk + 1)),
                        None => None,
                    };
                    Ok(Page { buckets, next })
                }
            })
            .await
    }
}

/// The SDK's `ResultByTime` as plain data.
fn ce_day(result: &aws_sdk_costexplorer::types::ResultByTime) -> CeDay {
    let period = result.time_period();
    CeDay {
        time_period: parse::CePeriod {
            start: period.map(|p| p.start().to_string()).unwrap_or_default(),
            end: period.map(|p| p.end().to_string()).unwrap_or_default(),
        },
        estimated: result.estimated(),
        groups: result
            .groups()
            .iter()
            .map(|g| parse::CeGroup {
                keys: g.keys().to_vec(),
                metrics: g
                    .metrics()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            parse::CeMetric {
                                amount: v.amount().map(str::to_string),
                                unit: v.unit().map(str::to_string),
                            },
                        )
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[async_trait]
impl ProviderAdapter for BedrockAdapter {
    fn provider(&self) -> Provider {
        Provider::AwsBedrock
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        SPECS.to_vec()
    }

    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        if !SPECS.contains(endpoint) {
            return Err(ProviderError::unknown_endpoint(
                self.account.as_str(),
                Provider::AwsBedrock,
                endpoint,
            ));
        }
        if let Some(field) = self.bedrock_api_key_in {
            // Refused before any (billed) request.
            return Err(ProviderError::Auth {
                account: self.account.clone(),
                provider: Provider::AwsBedrock,
                status: 0,
                hint: format!("{field} {ABSK_FIX}"),
            });
        }
        let window = window.snapped_out(endpoint.granularity);
        if window.is_empty() {
            return Ok(EndpointFetch::default());
        }
        match endpoint.record_type {
            RecordType::Usage => self.fetch_metrics(endpoint, window).await,
            _ => self.fetch_costs(endpoint, window).await,
        }
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.http.stats()
    }
}

/// Runs the response parsers on arbitrary bytes (for fuzzing): the first
/// byte picks the parser, the rest is the body. Never panics; errors are
/// ignored.
#[doc(hidden)]
pub fn fuzz_parse(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 | 1 => {
            #[derive(serde::Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Answer {
                #[serde(default)]
                results_by_time: Vec<CeDay>,
            }
            if let Ok(answer) = serde_json::from_slice::<Answer>(body) {
                let record_type = if which % 3 == 0 {
                    RecordType::Cost
                } else {
                    RecordType::Credit
                };
                let _ = parse::cost_page(
                    &answer.results_by_time,
                    record_type,
                    COST_ENDPOINT,
                    &parse::Services::default(),
                );
            }
        }
        _ => {
            let text = String::from_utf8_lossy(body);
            let _ = usage_type::parse(&text);
            let values: Vec<f64> = body
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            let timestamps = values
                .iter()
                .enumerate()
                .filter_map(|(i, _)| DateTime::<Utc>::from_timestamp(i as i64 * 3_600, 0))
                .collect();
            let _ = parse::metric_records(
                &[MetricSeries {
                    model_id: text.into_owned(),
                    metric: METRICS[usize::from(which) % METRICS.len()].to_string(),
                    timestamps,
                    values,
                }],
                METRICS_ENDPOINT,
            );
        }
    }
}

#[cfg(test)]
mod tests;
