//! Configuration: TOML with `${ENV_VAR}` in any string value and environment
//! overrides of top-level sections as `TOKENTRA__SECTION__KEY`, validated purely
//! into [`ValidatedConfig`] before anything starts.
//!
//! Loading is three pure steps so each is testable without a process
//! environment: parse the TOML, interpolate and override from an environment
//! map, then validate. Every problem found is reported at once, each naming
//! the account, the field and the fix.
//!
//! The `config` crate is not used: it lower-cases keys and its errors lose the
//! path into `[[accounts]]`, which is what users most need to see.

mod raw;
pub mod secret;
mod validate;
mod webhooks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use raw::RawConfig;
pub use secret::Secret;

use crate::provider::Provider;
use crate::providers::AccountView;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config is invalid:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<String> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClickhouseConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password: Option<Secret>,
    pub insert_timeout: Duration,
    /// Every other call (reads, state, verify, ping).
    pub query_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WriterConfig {
    pub max_batch_rows: usize,
    pub max_batch_age: Duration,
    pub max_buffer_rows: usize,
    pub retry_max_delay: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Where the bearer token comes from; `None`: no token (loopback only).
    pub token: Option<AdminToken>,
    pub manual_sync_min_interval: Duration,
    /// `None`: each account's `backfill_days`.
    pub max_manual_window_days: Option<u32>,
}

/// The admin API's bearer token: given inline, or read from a file when the
/// daemon starts (so the file can be a systemd credential).
#[derive(Debug, Clone, PartialEq)]
pub enum AdminToken {
    Inline(Secret),
    File(PathBuf),
}

impl AdminToken {
    /// The token, reading the file if that is where it lives.
    pub fn resolve(&self) -> Result<Secret, String> {
        match self {
            AdminToken::Inline(secret) => Ok(secret.clone()),
            AdminToken::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("admin.token_file {}: cannot be read ({e})", path.display()))?;
                let token = text.trim();
                if token.len() < 16 {
                    return Err(format!(
                        "admin.token_file {}: the token must be at least 16 characters (e.g. `openssl rand -hex 32`)",
                        path.display()
                    ));
                }
                Ok(Secret::new(token))
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    pub deep_resync_interval: Duration,
    pub deep_resync_days: u32,
    pub backfill_chunk_days: u32,
    pub jitter: Duration,
    pub verify_interval: Duration,
    /// One provider request, connect to last byte.
    pub request_timeout: Duration,
    /// One endpoint's whole fetch, every page and retry included.
    pub endpoint_deadline: Duration,
    /// The largest provider response accepted, in bytes.
    pub max_response_bytes: usize,
    /// Syncs fetching, diffing or queueing across all accounts (provider
    /// waits included; the wait for the writer's batch is not).
    pub max_concurrent_syncs: usize,
    /// ClickHouse work in flight across all accounts: scope reads, diffs and
    /// writes of syncs, names refreshes, and verifies. Separate from `max_concurrent_syncs` so
    /// a sync waiting on a slow provider never holds back another's store.
    pub max_concurrent_store: usize,
    /// How often an account's workspace and key names are re-read (0 = every sync).
    pub names_interval: Duration,
    /// How long a sync trusts what this process knows of an account's stored
    /// rows before reading them back from ClickHouse (0 = read every sync).
    pub stored_state_ttl: Duration,
}

/// One provider account, checked: its provider is known, every required
/// credential is present and no unknown key is set.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountConfig {
    /// Also the `connection_id` in every table.
    pub id: String,
    pub provider: Provider,
    pub enabled: bool,
    pub interval: Duration,
    /// How far back every sync re-reads to catch late data; at least the
    /// provider's minimum.
    pub lookback: Duration,
    pub backfill_days: u32,
    pub base_url: String,
    /// The operator accepts plain http to a non-loopback `base_url`.
    pub allow_insecure_http: bool,
    pub credentials: BTreeMap<String, Secret>,
    /// Provider-specific settings (`cloudwatch_url`, `usd_per_credit`, ...).
    pub settings: BTreeMap<String, String>,
}

impl AccountConfig {
    pub fn credential(&self, key: &str) -> Option<&Secret> {
        self.credentials.get(key)
    }

    /// What the provider's adapter reads.
    pub fn view(&self) -> AccountView<'_> {
        AccountView {
            id: &self.id,
            base_url: &self.base_url,
            credentials: &self.credentials,
            settings: &self.settings,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedConfig {
    pub state_dir: PathBuf,
    pub clickhouse: ClickhouseConfig,
    pub writer: WriterConfig,
    pub admin: AdminConfig,
    pub sync: SyncConfig,
    pub vault_key_file: Option<PathBuf>,
    pub price_overrides: Vec<crate::normalize::pricing::PriceEntry>,
    /// Shared, not copied: the supervisor, each account's sync and the admin
    /// API hold the same account (at 10,000 accounts the copies were ~40 MB).
    pub accounts: Vec<Arc<AccountConfig>>,
    /// Receivers of sync events, in file order.
    pub webhooks: Vec<WebhookConfig>,
}

/// Which sync events a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WebhookEvent {
    SyncCompleted,
    SyncFailed,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 2] = [WebhookEvent::SyncCompleted, WebhookEvent::SyncFailed];

    /// The `type` field of the payload and the name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::SyncCompleted => "sync.completed",
            WebhookEvent::SyncFailed => "sync.failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// One `[[webhooks]]` entry, checked: an http(s) URL, a non-empty secret.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Metric label and log field; binds an `enc:` secret like an account id.
    pub id: String,
    pub url: String,
    /// HMAC-SHA256 key of `X-TokenTra-Signature`; never printed.
    pub secret: Secret,
    pub events: Vec<WebhookEvent>,
    /// One delivery attempt.
    pub timeout: Duration,
    /// Attempts per event, the first included.
    pub max_attempts: u32,
}

impl WebhookConfig {
    pub fn wants(&self, event: WebhookEvent) -> bool {
        self.events.contains(&event)
    }
}

impl ValidatedConfig {
    pub fn account(&self, id: &str) -> Option<&Arc<AccountConfig>> {
        self.accounts.iter().find(|a| a.id == id)
    }

    /// Checks that `state_dir` exists (or can be made) and is writable: the
    /// account locks live there, and a daemon without them cannot own its
    /// accounts. The one check that touches the file system, so it is kept
    /// out of the pure validation and run by `check-config` and at start.
    pub fn check_state_dir(&self) -> Result<(), ConfigError> {
        let dir = &self.state_dir;
        let problem = |what: String| ConfigError::Invalid {
            problems: vec![format!(
                "state_dir: {} {what}; create it and give the daemon's user write access (or set state_dir)",
                dir.display()
            )],
        };
        crate::lock::private_dir(dir)
            .map_err(|e| problem(format!("cannot be created as a private (0700) directory ({e})")))?;
        let probe = dir.join(format!(".write-test-{}", std::process::id()));
        std::fs::write(&probe, b"ok").map_err(|e| problem(format!("is not writable ({e})")))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }
}

/// Loads `path` with the process environment.
pub fn load(path: &Path) -> Result<ValidatedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let env: BTreeMap<String, String> = std::env::vars().collect();
    load_str(&text, path, &env)
}

/// Loads config text against an explicit environment (for tests).
pub fn load_str(text: &str, path: &Path, env: &BTreeMap<String, String>) -> Result<ValidatedConfig, ConfigError> {
    let mut value: toml::Value = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut problems = Vec::new();
    interpolate(&mut value, "", env, &mut problems);
    apply_env_overrides(&mut value, env, &mut problems);
    crate::vault::decrypt_config_credentials(&mut value, env, &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError::Invalid { problems });
    }
    validate::validate(value)
}

/// Replaces `${NAME}` in every string with the variable's value.
fn interpolate(value: &mut toml::Value, path: &str, env: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => match expand(s, env) {
            Ok(expanded) => *s = expanded,
            Err(name) => problems.push(format!(
                "{path}: environment variable {name} is not set (export it, or write the value in the file)"
            )),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{path}[{i}]"), env, problems);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                interpolate(item, &child, env, problems);
            }
        }
        _ => {}
    }
}

/// Expands `${NAME}`; `$$` is a literal `$`. Returns the missing name on error.
fn expand(text: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                out.push('$');
                rest = after;
                continue;
            };
            let name = &body[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                out.push_str(&rest[at..at + 2 + end + 1]);
            } else {
                out.push_str(env.get(name).ok_or_else(|| name.to_string())?);
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Top-level sections that `TOKENTRA__SECTION__KEY` may override.
const OVERRIDABLE: [&str; 6] = ["clickhouse", "writer", "admin", "vault", "sync", "state_dir"];

fn apply_env_overrides(value: &mut toml::Value, env: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    let Some(root) = value.as_table_mut() else {
        return;
    };
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("TOKENTRA__") else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let parsed = parse_env_value(parts.last().map(String::as_str).unwrap_or(""), raw);
        match parts.as_slice() {
            [key] if key == "state_dir" => {
                root.insert(key.clone(), parsed);
            }
            [section, key] if OVERRIDABLE.contains(&section.as_str()) && section != "state_dir" => {
                let entry = root
                    .entry(section.clone())
                    .or_insert_with(|| toml::Value::Table(Default::default()));
                match entry.as_table_mut() {
                    Some(table) => {
                        table.insert(key.clone(), parsed);
                    }
                    None => problems.push(format!("{name}: [{section}] is not a table in the file")),
                }
            }
            _ => problems.push(format!(
                "{name}: not a known override; use TOKENTRA__<SECTION>__<KEY> with a section of {}",
                OVERRIDABLE.join(", ")
            )),
        }
    }
}

/// Keys whose values are whole numbers; every other override stays text, so a
/// numeric password is still a string.
const INTEGER_KEYS: [&str; 7] = [
    "max_concurrent_syncs",
    "max_concurrent_store",
    "max_batch_rows",
    "max_buffer_rows",
    "deep_resync_days",
    "backfill_chunk_days",
    "max_response_mb",
];

/// Environment values are text; known integer keys become TOML integers so
/// `TOKENTRA__WRITER__MAX_BATCH_ROWS=1000` works.
fn parse_env_value(key: &str, raw: &str) -> toml::Value {
    if INTEGER_KEYS.contains(&key) {
        if let Ok(i) = raw.trim().parse::<i64>() {
            return toml::Value::Integer(i);
        }
    }
    toml::Value::String(raw.to_string())
}

#[cfg(test)]
mod tests;
