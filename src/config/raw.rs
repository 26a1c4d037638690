//! The config file as written: serde structs with `deny_unknown_fields`, and
//! every default in one place (the `Default` impls and `default_*` functions
//! below). Nothing here is validated; see [`super::validate`].

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    #[serde(default)]
    pub clickhouse: RawClickhouse,
    #[serde(default)]
    pub writer: RawWriter,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub vault: RawVault,
    #[serde(default)]
    pub sync: RawSync,
    #[serde(default)]
    pub pricing: RawPricing,
    #[serde(default)]
    pub accounts: Vec<RawAccount>,
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
}

pub fn default_state_dir() -> String {
    "/var/lib/tokentra-sync".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawClickhouse {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: Option<String>,
    /// How long one INSERT may take before it is retried.
    pub insert_timeout: String,
    /// How long any other call (a read, a state write, verify) may take.
    pub query_timeout: String,
}

impl Default for RawClickhouse {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "tokentra".into(),
            user: "default".into(),
            password: None,
            insert_timeout: "30s".into(),
            query_timeout: "30s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawWriter {
    /// Flush when this many rows are buffered.
    pub max_batch_rows: u64,
    /// Flush when the oldest buffered row is this old.
    pub max_batch_age: String,
    /// Stop accepting deltas (senders wait) when this many rows are buffered.
    pub max_buffer_rows: u64,
    /// Cap of the exponential backoff between failed inserts.
    pub retry_max_delay: String,
}

impl Default for RawWriter {
    fn default() -> Self {
        // The buffer's rows (~670 bytes each, shared with the syncs that
        // wait for them) are most of what a 10,000-account first sync
        // holds; every INSERT is a part ClickHouse merges again. Once
        // records carried inline strings, 100,000 / 50,000 peaked at
        // 263-281 MB at 10,000 accounts (50,000 / 25,000: 225 MB), and a
        // 1,000 x 12-day first sync took ~0.5 s and ~1 ClickHouse CPU s
        // less (BENCHMARKS.md). Lower both to trade that for memory.
        Self {
            max_batch_rows: 50_000,
            max_batch_age: "1s".into(),
            max_buffer_rows: 100_000,
            retry_max_delay: "30s".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Loopback by default: the admin API can trigger syncs.
    pub listen: String,
    /// A file holding the bearer token every request but `/healthz` must
    /// carry; required when `listen` is not loopback.
    pub token_file: Option<String>,
    /// The token itself (`${ENV_VAR}` recommended), instead of a file.
    pub token: Option<String>,
    /// Shortest time between two accepted manual syncs of one account.
    pub manual_sync_min_interval: String,
    /// Longest window a manual sync may ask for, in days (default: the
    /// account's `backfill_days`).
    pub max_manual_window_days: Option<u64>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            token_file: None,
            token: None,
            manual_sync_min_interval: "10s".into(),
            max_manual_window_days: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVault {
    /// File holding the AES-256-GCM key for `enc:v1:` credentials (used when
    /// `$CREDENTIALS_DIRECTORY/master.key` does not exist; see `crate::vault`).
    pub key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSync {
    /// How often the daemon re-reads `deep_resync_days` of history to catch
    /// late restatements.
    pub deep_resync_interval: String,
    pub deep_resync_days: u64,
    /// First-run backfill is fetched in chunks of this many days; the
    /// watermark advances after each stored chunk.
    pub backfill_chunk_days: u64,
    /// Random delay added to each account's interval so accounts spread out.
    pub jitter: String,
    /// How often `verify` runs inside the daemon.
    pub verify_interval: String,
    /// One provider request, connect to last byte.
    pub request_timeout: String,
    /// One endpoint's whole fetch (every page and retry) before it fails.
    pub endpoint_deadline: String,
    /// The largest provider response accepted, in MiB.
    pub max_response_mb: u64,
    /// Syncs in flight across all accounts, provider waits included. Each
    /// holds its provider answers (pages, parsed records, rows) in memory,
    /// so this bounds the daemon's memory beyond what it keeps per account.
    pub max_concurrent_syncs: u64,
    /// ClickHouse reads, diffs and writes in flight across all accounts.
    /// Also how many scope reads can gather into one batched SELECT, whose
    /// cost is mostly per query: 16 kept batches at ~6 scopes.
    pub max_concurrent_store: u64,
    /// How often each account re-reads the provider's workspace and key names.
    pub names_interval: String,
    /// How long known stored rows are trusted without reading them back.
    pub stored_state_ttl: String,
}

impl Default for RawSync {
    fn default() -> Self {
        Self {
            deep_resync_interval: "24h".into(),
            deep_resync_days: 35,
            backfill_chunk_days: 7,
            jitter: "15s".into(),
            verify_interval: "24h".into(),
            request_timeout: "60s".into(),
            endpoint_deadline: "10m".into(),
            max_response_mb: 32,
            max_concurrent_syncs: 64,
            max_concurrent_store: 64,
            names_interval: "1h".into(),
            stored_state_ttl: "1h".into(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPricing {
    #[serde(default)]
    pub overrides: Vec<crate::normalize::pricing::PriceEntry>,
}

/// No `deny_unknown_fields` here: serde cannot combine it with `flatten`, so
/// [`super::validate`] checks `extra` against the provider's own keys instead.
#[derive(Debug, Deserialize)]
pub struct RawAccount {
    pub id: Option<String>,
    pub provider: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    pub interval: Option<String>,
    pub lookback: Option<String>,
    pub backfill_days: Option<u32>,
    pub base_url: Option<String>,
    /// Accept plain http to a non-loopback `base_url` (a trusted network).
    #[serde(default)]
    pub allow_insecure_http: bool,
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// Provider-specific keys (`cloudwatch_url`, `usd_per_credit`, ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, toml::Value>,
}

fn default_true() -> bool {
    true
}

/// One `[[webhooks]]` receiver of `sync.completed` / `sync.failed` events.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    /// Names the webhook in metrics and logs (and binds an `enc:` secret).
    pub id: Option<String>,
    pub url: Option<String>,
    /// The HMAC-SHA256 key of the signature header (`${ENV_VAR}` or `enc:v1:`).
    pub secret: Option<String>,
    /// Default: both events.
    pub events: Option<Vec<String>>,
    /// One delivery attempt, connect to last byte.
    #[serde(default = "default_webhook_timeout")]
    pub timeout: String,
    /// Attempts per event, the first included, before it is given up.
    #[serde(default = "default_webhook_attempts")]
    pub max_attempts: u32,
}

pub fn default_webhook_timeout() -> String {
    "10s".to_string()
}

pub fn default_webhook_attempts() -> u32 {
    5
}
