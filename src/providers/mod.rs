//! Provider adapters: plain async code that turns one account's usage and cost
//! APIs into [`FetchedRecord`]s. Adapters know nothing about actors or
//! ClickHouse, so each is tested alone against recorded formats.
//!
//! Shared machinery (HTTP with retry, Retry-After, auth classification, request
//! counting) lives once in [`http`]; the JSON helpers every adapter needs live in
//! [`json`].

pub mod anthropic;
pub mod http;
pub mod json;
pub mod openai;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::config::AccountConfig;
use crate::normalize::schema::{FetchedRecord, Granularity, RecordType};

pub use http::{HttpStats, ProviderHttp, RetryPolicy};

/// The providers tokentra-sync knows, by their config name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    OpenAi,
    Anthropic,
    AwsBedrock,
    AzureOpenAi,
    GoogleVertex,
    OpenRouter,
    LiteLlm,
    Fal,
    Runway,
    PiApi,
}

impl Provider {
    pub const ALL: [Provider; 10] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::AwsBedrock,
        Provider::AzureOpenAi,
        Provider::GoogleVertex,
        Provider::OpenRouter,
        Provider::LiteLlm,
        Provider::Fal,
        Provider::Runway,
        Provider::PiApi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::AwsBedrock => "aws_bedrock",
            Provider::AzureOpenAi => "azure_openai",
            Provider::GoogleVertex => "google_vertex",
            Provider::OpenRouter => "openrouter",
            Provider::LiteLlm => "litellm",
            Provider::Fal => "fal",
            Provider::Runway => "runway",
            Provider::PiApi => "piapi",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Usage APIs are cheap and fresh; billing APIs are slow or charge per call.
    pub fn is_billing_api(self) -> bool {
        matches!(
            self,
            Provider::AwsBedrock | Provider::AzureOpenAi | Provider::GoogleVertex | Provider::Runway | Provider::PiApi
        )
    }

    /// The API root the provider's own SDK uses; request paths are appended.
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Provider::OpenAi => Some("https://api.openai.com/v1"),
            Provider::Anthropic => Some("https://api.anthropic.com"),
            Provider::OpenRouter => Some("https://openrouter.ai/api/v1"),
            Provider::Fal => Some("https://api.fal.ai/v1"),
            Provider::Runway => Some("https://api.dev.runwayml.com"),
            Provider::AwsBedrock => Some("https://ce.us-east-1.amazonaws.com"),
            Provider::AzureOpenAi => Some("https://management.azure.com"),
            Provider::GoogleVertex => Some("https://bigquery.googleapis.com/bigquery/v2"),
            Provider::PiApi => Some("https://api.piapi.ai"),
            // A LiteLLM proxy is the user's own server: there is no default.
            Provider::LiteLlm => None,
        }
    }

    /// Whether this release has an adapter for the provider.
    pub fn is_implemented(self) -> bool {
        matches!(self, Provider::OpenAi | Provider::Anthropic)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stream an adapter pulls: a (record type, endpoint) pair with exactly one
/// granularity, which is also the unit of a sync's scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointSpec {
    pub record_type: RecordType,
    pub endpoint: &'static str,
    pub granularity: Granularity,
}

/// A half-open UTC time range `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl TimeWindow {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self { start, end }
    }

    /// The window widened to whole buckets of `granularity`.
    pub fn snapped_out(self, granularity: Granularity) -> Self {
        Self {
            start: granularity.floor(self.start),
            end: granularity.ceil(self.end),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Everything one endpoint returned for one window, all pages included.
#[derive(Clone, Debug, Default)]
pub struct EndpointFetch {
    pub records: Vec<FetchedRecord>,
    /// Start times of every bucket the provider's answer covered, empty ones
    /// included. Only stored records in these buckets may vanish.
    pub covered_buckets: BTreeSet<DateTime<Utc>>,
}

/// Why a fetch failed. Messages name the account and the likely fix, and never
/// carry a credential.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("account '{account}': {provider} rejected the credentials (HTTP {status}): {hint}")]
    Auth {
        account: String,
        provider: Provider,
        status: u16,
        hint: String,
    },
    #[error("account '{account}': {provider} answered HTTP {status} for {endpoint}: {detail}")]
    Http {
        account: String,
        provider: Provider,
        endpoint: String,
        status: u16,
        detail: String,
    },
    #[error("account '{account}': {endpoint}: gave up after {attempts} attempts: {last_error}")]
    RetriesExhausted {
        account: String,
        endpoint: String,
        attempts: u32,
        last_error: String,
    },
    #[error("account '{account}': {endpoint}: malformed response: {detail}")]
    Malformed {
        account: String,
        endpoint: String,
        detail: String,
    },
    #[error("account '{account}': {detail}")]
    Config { account: String, detail: String },
}

/// One provider account's usage and cost API.
#[async_trait]
pub trait ProviderAdapter: Send + Sync + 'static {
    fn provider(&self) -> Provider;

    /// The streams this adapter pulls, each with its one granularity.
    fn endpoints(&self) -> Vec<EndpointSpec>;

    /// Fetches every page of one endpoint for `window` (already snapped to whole
    /// buckets). Fails as a whole: a partial answer is never returned as success.
    async fn fetch(&self, endpoint: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError>;

    /// Counters of the HTTP traffic this adapter made.
    fn http_stats(&self) -> Arc<HttpStats>;
}

/// The adapter for a validated account.
pub fn build_adapter(account: &AccountConfig, policy: RetryPolicy) -> Result<Arc<dyn ProviderAdapter>, ProviderError> {
    let api_key = || {
        account
            .credential("api_key")
            .map(|s| s.expose().to_string())
            .ok_or_else(|| ProviderError::Config {
                account: account.id.clone(),
                detail: "credentials.api_key is missing".into(),
            })
    };
    match account.provider {
        Provider::OpenAi => Ok(Arc::new(openai::OpenAiAdapter::new(
            &account.id,
            &account.base_url,
            api_key()?,
            policy,
        )?)),
        Provider::Anthropic => Ok(Arc::new(anthropic::AnthropicAdapter::new(
            &account.id,
            &account.base_url,
            api_key()?,
            policy,
        )?)),
        other => Err(ProviderError::Config {
            account: account.id.clone(),
            detail: format!("provider '{other}' is not supported by this release yet"),
        }),
    }
}
