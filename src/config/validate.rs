//! Raw config -> [`ValidatedConfig`]: pure, with one message per problem that
//! names the account, the field and the fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::raw::{RawAccount, RawConfig};
use super::*;
use crate::providers::registry::{self, ProviderDescriptor};

pub(super) fn validate(value: toml::Value) -> Result<ValidatedConfig, ConfigError> {
    let mut problems = Vec::new();
    let mut table = match value {
        toml::Value::Table(t) => t,
        _ => {
            return Err(ConfigError::Invalid {
                problems: vec!["the config must be a TOML table".into()],
            })
        }
    };
    // Deserialize accounts one by one so errors carry their index.
    let raw_webhooks = match table.remove("webhooks") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            problems.push("webhooks: must be an array of tables ([[webhooks]])".into());
            Vec::new()
        }
    };
    let raw_accounts = match table.remove("accounts") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            problems.push("accounts: must be an array of tables ([[accounts]])".into());
            Vec::new()
        }
    };
    let raw: Option<RawConfig> = match RawConfig::deserialize(toml::Value::Table(table)) {
        Ok(raw) => Some(raw),
        Err(e) => {
            problems.push(format!("{e}"));
            None
        }
    };
    let mut accounts = Vec::new();
    for (index, item) in raw_accounts.into_iter().enumerate() {
        let label = account_label(index, &item);
        match RawAccount::deserialize(item) {
            Ok(raw_account) => {
                if let Some(account) = validate_account(&label, raw_account, &mut problems) {
                    accounts.push(Arc::new(account));
                }
            }
            Err(e) => problems.push(format!("{label}: {e}")),
        }
    }
    check_unique_accounts(&accounts, &mut problems);
    let webhooks = super::webhooks::validate_webhooks(raw_webhooks, &mut problems);
    let Some(raw) = raw else {
        return Err(ConfigError::Invalid { problems });
    };
    let config = ValidatedConfig {
        state_dir: PathBuf::from(&raw.state_dir),
        clickhouse: ClickhouseConfig {
            url: check_url("clickhouse.url", &raw.clickhouse.url, &mut problems),
            database: check_identifier("clickhouse.database", &raw.clickhouse.database, &mut problems),
            user: raw.clickhouse.user.clone(),
            password: raw
                .clickhouse
                .password
                .as_ref()
                .filter(|p| !p.is_empty())
                .map(Secret::new),
            insert_timeout: bounded_duration(
                "clickhouse.insert_timeout",
                &raw.clickhouse.insert_timeout,
                (1, 3_600),
                &mut problems,
            ),
            query_timeout: bounded_duration(
                "clickhouse.query_timeout",
                &raw.clickhouse.query_timeout,
                (1, 3_600),
                &mut problems,
            ),
        },
        writer: WriterConfig {
            max_batch_rows: bounded(
                "writer.max_batch_rows",
                raw.writer.max_batch_rows,
                (1, 1_000_000),
                &mut problems,
            ) as usize,
            max_batch_age: bounded_duration(
                "writer.max_batch_age",
                &raw.writer.max_batch_age,
                (0, 60),
                &mut problems,
            ),
            max_buffer_rows: bounded(
                "writer.max_buffer_rows",
                raw.writer.max_buffer_rows,
                (1, 20_000_000),
                &mut problems,
            ) as usize,
            retry_max_delay: bounded_duration(
                "writer.retry_max_delay",
                &raw.writer.retry_max_delay,
                (1, 600),
                &mut problems,
            ),
        },
        admin: admin_config(&raw.admin, &mut problems),
        sync: SyncConfig {
            deep_resync_interval: bounded_duration(
                "sync.deep_resync_interval",
                &raw.sync.deep_resync_interval,
                (60, 90 * DAY_SECS),
                &mut problems,
            ),
            deep_resync_days: bounded(
                "sync.deep_resync_days",
                raw.sync.deep_resync_days,
                (1, 3_650),
                &mut problems,
            ) as u32,
            backfill_chunk_days: bounded(
                "sync.backfill_chunk_days",
                raw.sync.backfill_chunk_days,
                (1, 90),
                &mut problems,
            ) as u32,
            jitter: bounded_duration("sync.jitter", &raw.sync.jitter, (0, 3_600), &mut problems),
            verify_interval: bounded_duration(
                "sync.verify_interval",
                &raw.sync.verify_interval,
                (60, 90 * DAY_SECS),
                &mut problems,
            ),
            request_timeout: bounded_duration(
                "sync.request_timeout",
                &raw.sync.request_timeout,
                (1, 600),
                &mut problems,
            ),
            endpoint_deadline: bounded_duration(
                "sync.endpoint_deadline",
                &raw.sync.endpoint_deadline,
                (1, 6 * 3_600),
                &mut problems,
            ),
            max_response_bytes: bounded(
                "sync.max_response_mb",
                raw.sync.max_response_mb,
                (1, 1_024),
                &mut problems,
            ) as usize
                * 1024
                * 1024,
            max_concurrent_syncs: bounded(
                "sync.max_concurrent_syncs",
                raw.sync.max_concurrent_syncs,
                (1, 16_384),
                &mut problems,
            ) as usize,
            max_concurrent_store: bounded(
                "sync.max_concurrent_store",
                raw.sync.max_concurrent_store,
                (1, 1_024),
                &mut problems,
            ) as usize,
            names_interval: bounded_duration(
                "sync.names_interval",
                &raw.sync.names_interval,
                (0, 7 * DAY_SECS),
                &mut problems,
            ),
            stored_state_ttl: bounded_duration(
                "sync.stored_state_ttl",
                &raw.sync.stored_state_ttl,
                (0, DAY_SECS),
                &mut problems,
            ),
        },
        vault_key_file: raw.vault.key_file.map(PathBuf::from),
        price_overrides: raw.pricing.overrides,
        accounts,
        webhooks,
    };
    if config.writer.max_buffer_rows < config.writer.max_batch_rows {
        problems.push(format!(
            "writer.max_buffer_rows ({}) must be at least writer.max_batch_rows ({})",
            config.writer.max_buffer_rows, config.writer.max_batch_rows
        ));
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid { problems })
    }
}

/// The admin API may trigger syncs and shows account errors: anywhere but
/// loopback it must require a bearer token.
fn admin_config(raw: &super::raw::RawAdmin, problems: &mut Vec<String>) -> AdminConfig {
    let listen = raw.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.push(format!(
            "admin.listen: '{}' is not an address:port such as 127.0.0.1:9464",
            raw.listen
        ));
        SocketAddr::from(([127, 0, 0, 1], 9464))
    });
    let token = match (raw.token.as_deref().filter(|t| !t.is_empty()), &raw.token_file) {
        (Some(_), Some(_)) => {
            problems.push("admin: set admin.token or admin.token_file, not both".to_string());
            None
        }
        (Some(token), None) if token.len() < 16 => {
            problems.push("admin.token: must be at least 16 characters (e.g. `openssl rand -hex 32`)".to_string());
            None
        }
        (Some(token), None) => Some(AdminToken::Inline(Secret::new(token))),
        (None, Some(file)) => Some(AdminToken::File(PathBuf::from(file))),
        (None, None) => None,
    };
    if !listen.ip().is_loopback() && token.is_none() {
        problems.push(format!(
            "admin.listen: {listen} is not loopback, so anyone who can reach it could trigger syncs; \
             set admin.token_file (or admin.token) so every request needs a bearer token, or listen on 127.0.0.1"
        ));
    }
    AdminConfig {
        listen,
        token,
        manual_sync_min_interval: bounded_duration(
            "admin.manual_sync_min_interval",
            &raw.manual_sync_min_interval,
            (0, 86_400),
            problems,
        ),
        max_manual_window_days: raw
            .max_manual_window_days
            .map(|days| bounded("admin.max_manual_window_days", days, (1, 3_650), problems) as u32),
    }
}

fn account_label(index: usize, item: &toml::Value) -> String {
    match item.get("id").and_then(toml::Value::as_str) {
        Some(id) => format!("accounts[{index}] (id '{id}')"),
        None => format!("accounts[{index}]"),
    }
}

fn validate_account(label: &str, raw: RawAccount, problems: &mut Vec<String>) -> Option<AccountConfig> {
    let before = problems.len();
    let id = match raw.id.as_deref() {
        None | Some("") => {
            problems.push(format!(
                "{label}: id is missing; give every account a unique id such as id = \"acme-openai\""
            ));
            String::new()
        }
        Some(id) if !valid_id(id) => {
            problems.push(format!(
                "{label}: id '{id}' may only use a-z, 0-9, '-' and '_' (at most 64 characters): it is stored in every row"
            ));
            id.to_string()
        }
        Some(id) => id.to_string(),
    };
    let provider = match raw.provider.as_deref() {
        None => {
            problems.push(format!("{label}: provider is missing; one of {}", provider_names()));
            return None;
        }
        Some(name) => match Provider::parse(name) {
            Some(p) => p,
            None => {
                problems.push(format!(
                    "{label}: provider '{name}' is unknown; use one of {}",
                    provider_names()
                ));
                return None;
            }
        },
    };
    let spec = registry::descriptor(provider);
    let interval = match &raw.interval {
        Some(text) => bounded_duration(&format!("{label}: interval"), text, (60, 7 * DAY_SECS), problems),
        None => spec.default_interval,
    };
    let lookback = match &raw.lookback {
        Some(text) => {
            let value = bounded_duration(&format!("{label}: lookback"), text, (0, 400 * DAY_SECS), problems);
            if value < spec.min_lookback {
                problems.push(format!(
                    "{label}: lookback {text} is shorter than {provider}'s minimum of {}; late and restated data would be missed",
                    humantime::format_duration(spec.min_lookback)
                ));
            }
            value
        }
        None => spec.min_lookback,
    };
    let backfill_days = raw.backfill_days.unwrap_or(30);
    if backfill_days == 0 || backfill_days > 3_650 {
        problems.push(format!(
            "{label}: backfill_days must be between 1 and 3650, got {backfill_days}"
        ));
    }
    let base_url = match (&raw.base_url, spec.default_base_url) {
        (Some(url), _) => {
            let url = check_url(&format!("{label}: base_url"), url, problems);
            check_transport(label, &url, raw.allow_insecure_http, problems);
            url
        }
        (None, Some(default)) => default.to_string(),
        (None, None) => {
            problems.push(format!(
                "{label}: base_url is required for {provider} (the proxy's own URL)"
            ));
            String::new()
        }
    };
    let credentials = check_credentials(label, provider, spec, raw.credentials, problems);
    let mut settings = BTreeMap::new();
    for (key, value) in raw.extra {
        if !spec.settings.contains(&key.as_str()) {
            let allowed: Vec<&str> = [
                "id",
                "provider",
                "enabled",
                "interval",
                "lookback",
                "backfill_days",
                "base_url",
                "allow_insecure_http",
                "credentials",
            ]
            .into_iter()
            .chain(spec.settings.iter().copied())
            .collect();
            problems.push(format!(
                "{label}: unknown key '{key}' for {provider}; allowed keys: {}",
                allowed.join(", ")
            ));
            continue;
        }
        let text = match value {
            toml::Value::String(s) => s,
            other => other.to_string(),
        };
        settings.insert(key, text);
    }
    if problems.len() != before {
        return None;
    }
    let account = AccountConfig {
        id,
        provider,
        enabled: raw.enabled,
        interval,
        lookback,
        backfill_days,
        base_url,
        allow_insecure_http: raw.allow_insecure_http,
        credentials,
        settings,
    };
    // The provider's own typed config: key formats, setting values.
    if let Err(typed) = (spec.adapter.check)(account.view()) {
        problems.extend(typed.into_iter().map(|p| format!("{label}: {p}")));
        return None;
    }
    Some(account)
}

fn check_credentials(
    label: &str,
    provider: Provider,
    spec: &ProviderDescriptor,
    raw: BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Secret> {
    let keys = &spec.credentials;
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        if !keys.all().any(|k| k == key) {
            problems.push(format!(
                "{label}: credentials.{key} is not a {provider} credential; expected {}",
                keys.all().collect::<Vec<_>>().join(", ")
            ));
            continue;
        }
        if value.trim().is_empty() {
            problems.push(format!(
                "{label}: credentials.{key} is empty (is its environment variable set to \"\"?)"
            ));
            continue;
        }
        out.insert(key, Secret::new(value));
    }
    for required in keys.required {
        if !out.contains_key(*required) && !problems.iter().any(|p| p.contains(&format!("credentials.{required} "))) {
            problems.push(format!(
                "{label}: credentials.{required} is missing; add it under [accounts.credentials], e.g. {required} = \"${{{}}}\"",
                env_hint(provider, required)
            ));
        }
    }
    if !keys.one_of.is_empty() {
        let set = keys.one_of.iter().filter(|k| out.contains_key(**k)).count();
        if set != 1 {
            problems.push(format!(
                "{label}: set exactly one of credentials.{}",
                keys.one_of.join(" or credentials.")
            ));
        }
    }
    out
}

fn env_hint(provider: Provider, key: &str) -> String {
    format!("{}_{}", provider.as_str(), key).to_ascii_uppercase()
}

/// Two accounts with one id, or one billed organization configured twice.
fn check_unique_accounts(accounts: &[Arc<AccountConfig>], problems: &mut Vec<String>) {
    let mut ids: std::collections::BTreeSet<&str> = Default::default();
    let mut identities: BTreeMap<(Provider, Vec<&str>), &str> = BTreeMap::new();
    for account in accounts {
        if !ids.insert(&account.id) {
            problems.push(format!(
                "accounts: id '{}' is used twice; ids must be unique",
                account.id
            ));
        }
        let identity: Vec<&str> = registry::descriptor(account.provider)
            .credentials
            .identity
            .iter()
            .map(|k| account.credential(k).map(Secret::expose).unwrap_or(""))
            .collect();
        if identity.iter().all(|v| v.is_empty()) {
            continue;
        }
        if let Some(first) = identities.insert((account.provider, identity), &account.id) {
            problems.push(format!(
                "accounts '{first}' and '{}' use the same {} credentials: they would count the same bill twice; keep one",
                account.id, account.provider
            ));
        }
    }
}

pub(super) fn valid_id(id: &str) -> bool {
    id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn provider_names() -> String {
    Provider::names()
}

/// Provider URLs carry credentials: https only, except on loopback (tests,
/// a local proxy) or where the operator opted in for that account.
fn check_transport(label: &str, url: &str, allowed: bool, problems: &mut Vec<String>) {
    let Ok(parsed) = url::Url::parse(url) else { return };
    if parsed.scheme() != "http" || allowed {
        return;
    }
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !loopback {
        problems.push(format!(
            "{label}: base_url '{url}' is plain http: credentials would travel unencrypted; use https, \
             or set allow_insecure_http = true for this account if the network is trusted"
        ));
    }
}

pub(super) fn check_url(field: &str, text: &str, problems: &mut Vec<String>) -> String {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => text.trim_end_matches('/').to_string(),
        _ => {
            problems.push(format!(
                "{field}: '{}' is not an http(s) URL",
                super::secret::strip_url_password(text)
            ));
            text.to_string()
        }
    }
}

fn check_identifier(field: &str, text: &str, problems: &mut Vec<String>) -> String {
    let ok = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !text.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        problems.push(format!(
            "{field}: '{text}' must be a plain identifier (letters, digits, '_')"
        ));
    }
    text.to_string()
}

const DAY_SECS: u64 = 86_400;

/// A duration within `[min, max]` seconds; every duration in the config has
/// bounds, so no value can overflow a later computation.
pub(super) fn bounded_duration(
    field: &str,
    text: &str,
    (min, max): (u64, u64),
    problems: &mut Vec<String>,
) -> Duration {
    let fallback = Duration::from_secs(min);
    match humantime::parse_duration(text) {
        Ok(d) if d.as_secs() < min => {
            problems.push(format!("{field}: '{text}' is too short; the minimum is {min}s"));
            fallback
        }
        Ok(d) if d > Duration::from_secs(max) => {
            problems.push(format!(
                "{field}: '{text}' is too long; the maximum is {}",
                humantime::format_duration(Duration::from_secs(max))
            ));
            fallback
        }
        Ok(d) => d,
        Err(e) => {
            problems.push(format!("{field}: '{text}' is not a duration such as 30s, 5m, 2d ({e})"));
            fallback
        }
    }
}

/// A whole number within `[min, max]`.
fn bounded(field: &str, value: u64, (min, max): (u64, u64), problems: &mut Vec<String>) -> u64 {
    if value < min || value > max {
        problems.push(format!(
            "{field}: {value} is out of range; use a value from {min} to {max}"
        ));
        return min;
    }
    value
}
