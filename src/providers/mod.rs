//! Provider adapters: plain async code that turns one account's usage and cost
//! APIs into [`FetchedRecord`]s. Adapters know nothing about actors or
//! ClickHouse, so each is tested alone against documented formats.
//!
//! Layout: one folder per provider (`openai/`, `anthropic/`, ...), each with
//! its descriptor (defaults, credentials, typed config, constructor), client
//! and parser; [`registry`] lists the descriptors, one line each. Shared
//! machinery (HTTP, auth, retry, rate limits, the paging loop and its guards,
//! redaction, JSON readers) lives once in [`platform`].

pub mod anthropic;
pub mod aws_bedrock;
pub mod azure_openai;
pub mod fal;
pub mod google_vertex;
pub mod litellm;
pub mod names;
pub mod openai;
pub mod openrouter;
pub mod piapi;
pub mod platform;
pub mod registry;
pub mod runway;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::config::secret::Secret;
use crate::normalize::schema::{FetchedRecord, Granularity, RecordType};

pub use crate::provider::Provider;
pub use platform::json;
pub use platform::{HttpStats, MeasurePolicy, ProviderHttp, RetryPolicy};
pub use registry::{descriptor, BuildContext, CredentialKeys, ProviderDescriptor};

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

/// Why an endpoint failed, as a small closed set: metrics, `sync_runs` and
/// the connection status tell these apart, and a revoked key is not retried
/// like a 5xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Credentials rejected, expired, or of the wrong type.
    Auth,
    /// 429s (or a Retry-After too long to wait) outlasted the retries.
    Throttled,
    /// The provider's own 5xx outlasted the retries.
    ProviderServer,
    /// A request or the endpoint's deadline timed out.
    Timeout,
    /// Connection failures or cut-off bodies outlasted the retries.
    Network,
    /// The provider's answer broke its format or a guard (bad page, bad
    /// bucket, impossible numbers).
    Malformed,
    /// The provider refused our request (other 4xx, a redirect not followed).
    Request,
    /// The account's config cannot work (caught before any request).
    Config,
    /// ClickHouse failed while reading or writing the sync's rows.
    Store,
}

impl FailureKind {
    pub const ALL: [FailureKind; 9] = [
        FailureKind::Auth,
        FailureKind::Throttled,
        FailureKind::ProviderServer,
        FailureKind::Timeout,
        FailureKind::Network,
        FailureKind::Malformed,
        FailureKind::Request,
        FailureKind::Config,
        FailureKind::Store,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Auth => "auth",
            FailureKind::Throttled => "throttled",
            FailureKind::ProviderServer => "provider_5xx",
            FailureKind::Timeout => "timeout",
            FailureKind::Network => "network",
            FailureKind::Malformed => "malformed",
            FailureKind::Request => "request",
            FailureKind::Config => "config",
            FailureKind::Store => "store",
        }
    }
}

/// Why a fetch failed. Messages name the account and the likely fix, and never
/// carry a credential (provider text is redacted and quoted).
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
    #[error("account '{account}': {endpoint}: gave up after {attempts} attempts ({}): {last_error}", kind.as_str())]
    RetriesExhausted {
        account: String,
        endpoint: String,
        attempts: u32,
        kind: FailureKind,
        last_error: String,
    },
    #[error("account '{account}': {endpoint}: malformed response: {detail}")]
    Malformed {
        account: String,
        endpoint: String,
        detail: String,
    },
    #[error("account '{account}': {endpoint}: no complete answer within the {}s endpoint deadline; the next sync tries again", after.as_secs())]
    Timeout {
        account: String,
        endpoint: String,
        after: Duration,
    },
    #[error("account '{account}': {detail}")]
    Config { account: String, detail: String },
}

impl ProviderError {
    /// A stream the adapter does not serve: a caller bug, named precisely.
    pub fn unknown_endpoint(account: impl Into<String>, provider: Provider, spec: &EndpointSpec) -> Self {
        ProviderError::Config {
            account: account.into(),
            detail: format!(
                "{provider} has no {} endpoint '{}' at {}",
                spec.record_type, spec.endpoint, spec.granularity
            ),
        }
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            ProviderError::Auth { .. } => FailureKind::Auth,
            ProviderError::Http { .. } => FailureKind::Request,
            ProviderError::RetriesExhausted { kind, .. } => *kind,
            ProviderError::Malformed { .. } => FailureKind::Malformed,
            ProviderError::Timeout { .. } => FailureKind::Timeout,
            ProviderError::Config { .. } => FailureKind::Config,
        }
    }
}

/// What an adapter sees of its account: the validated generic keys and the
/// raw credential and setting maps, which the provider reads into its own
/// typed config. (A view, so adapters need nothing from the config layer.)
#[derive(Clone, Copy, Debug)]
pub struct AccountView<'a> {
    pub id: &'a str,
    pub base_url: &'a str,
    pub credentials: &'a BTreeMap<String, Secret>,
    pub settings: &'a BTreeMap<String, String>,
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

    /// How this account's bill is shared out to its usage, when the provider
    /// bills at a coarser grain and the account turned allocation on
    /// (`crate::allocate`). `None`: cost rows are stored as billed.
    fn allocation(&self) -> Option<crate::allocate::AllocationSpec> {
        None
    }

    /// The provider's own names for workspaces (projects) and API keys, for
    /// providers whose APIs list them; `None` (the default) when the API has
    /// no such list. Called rarely (names change rarely) and never part of
    /// a usage sync's success: a failure here is logged and counted only.
    async fn fetch_names(&self) -> Result<Option<names::NameSnapshot>, ProviderError> {
        Ok(None)
    }
}

/// The adapter for an account, through its provider's descriptor.
pub fn build_adapter(
    account: AccountView<'_>,
    provider: Provider,
    context: &BuildContext,
) -> Result<Arc<dyn ProviderAdapter>, ProviderError> {
    (descriptor(provider).adapter.build)(account, context)
}
