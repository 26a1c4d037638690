//! Raw config -> [`ValidatedConfig`]: pure, with one message per problem that
//! names the account, the field and the fix.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::raw::{RawAccount, RawConfig};
use super::*;

/// What a provider's account needs in the config.
pub struct ProviderSpec {
    pub required_credentials: &'static [&'static str],
    pub optional_credentials: &'static [&'static str],
    /// Exactly one of these must be set (e.g. a key inline or a key file).
    pub one_of_credentials: &'static [&'static str],
    /// Extra account keys besides the common ones.
    pub settings: &'static [&'static str],
    /// Credentials that identify the billed organization: two accounts with
    /// the same values would count one bill twice (DESIGN.md rule 9).
    pub identity: &'static [&'static str],
    /// Shortest lookback that still catches the provider's late data.
    pub min_lookback: Duration,
    /// Default interval between syncs.
    pub default_interval: Duration,
}

const DAY: u64 = 86_400;
const USAGE_INTERVAL: Duration = Duration::from_secs(300);
const BILLING_INTERVAL: Duration = Duration::from_secs(3_600);

pub fn provider_spec(provider: Provider) -> ProviderSpec {
    let api_key_only = |min_lookback_days: u64, interval| ProviderSpec {
        required_credentials: &["api_key"],
        optional_credentials: &[],
        one_of_credentials: &[],
        settings: &[],
        identity: &["api_key"],
        min_lookback: Duration::from_secs(min_lookback_days * DAY),
        default_interval: interval,
    };
    match provider {
        Provider::OpenAi => api_key_only(2, USAGE_INTERVAL),
        // cost_report restates up to 3 days back.
        Provider::Anthropic => api_key_only(3, USAGE_INTERVAL),
        Provider::Fal => api_key_only(2, USAGE_INTERVAL),
        Provider::LiteLlm => api_key_only(2, USAGE_INTERVAL),
        Provider::OpenRouter => ProviderSpec {
            optional_credentials: &["management_key"],
            ..api_key_only(2, USAGE_INTERVAL)
        },
        Provider::Runway => ProviderSpec {
            settings: &["usd_per_credit"],
            ..api_key_only(3, BILLING_INTERVAL)
        },
        Provider::PiApi => ProviderSpec {
            settings: &["environment"],
            ..api_key_only(3, BILLING_INTERVAL)
        },
        Provider::AwsBedrock => ProviderSpec {
            required_credentials: &["access_key_id", "secret_access_key", "region"],
            optional_credentials: &["session_token", "role_arn", "external_id"],
            one_of_credentials: &[],
            settings: &["cloudwatch_url"],
            identity: &["access_key_id", "role_arn"],
            min_lookback: Duration::from_secs(3 * DAY),
            default_interval: BILLING_INTERVAL,
        },
        Provider::AzureOpenAi => ProviderSpec {
            required_credentials: &["tenant_id", "client_id", "client_secret", "subscription_id"],
            optional_credentials: &["resource_group"],
            one_of_credentials: &[],
            settings: &["login_url"],
            identity: &["tenant_id", "subscription_id", "resource_group"],
            min_lookback: Duration::from_secs(3 * DAY),
            default_interval: BILLING_INTERVAL,
        },
        Provider::GoogleVertex => ProviderSpec {
            required_credentials: &[],
            optional_credentials: &[],
            one_of_credentials: &["service_account_json", "service_account_file"],
            settings: &["monitoring_url", "billing_table"],
            identity: &["service_account_json", "service_account_file"],
            min_lookback: Duration::from_secs(3 * DAY),
            default_interval: BILLING_INTERVAL,
        },
    }
}

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
                    accounts.push(account);
                }
            }
            Err(e) => problems.push(format!("{label}: {e}")),
        }
    }
    check_unique_accounts(&accounts, &mut problems);
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
            insert_timeout: duration(
                "clickhouse.insert_timeout",
                &raw.clickhouse.insert_timeout,
                1,
                &mut problems,
            ),
        },
        writer: WriterConfig {
            max_batch_rows: positive("writer.max_batch_rows", raw.writer.max_batch_rows, &mut problems),
            max_batch_age: duration("writer.max_batch_age", &raw.writer.max_batch_age, 0, &mut problems),
            max_buffer_rows: positive("writer.max_buffer_rows", raw.writer.max_buffer_rows, &mut problems),
            retry_max_delay: duration("writer.retry_max_delay", &raw.writer.retry_max_delay, 1, &mut problems),
        },
        admin: AdminConfig {
            listen: raw.admin.listen.parse::<SocketAddr>().unwrap_or_else(|_| {
                problems.push(format!(
                    "admin.listen: '{}' is not an address:port such as 127.0.0.1:9464",
                    raw.admin.listen
                ));
                SocketAddr::from(([127, 0, 0, 1], 9464))
            }),
        },
        sync: SyncConfig {
            deep_resync_interval: duration(
                "sync.deep_resync_interval",
                &raw.sync.deep_resync_interval,
                60,
                &mut problems,
            ),
            deep_resync_days: raw.sync.deep_resync_days,
            backfill_chunk_days: raw.sync.backfill_chunk_days.max(1),
            jitter: duration("sync.jitter", &raw.sync.jitter, 0, &mut problems),
            verify_interval: duration("sync.verify_interval", &raw.sync.verify_interval, 60, &mut problems),
        },
        vault_key_file: raw.vault.key_file.map(PathBuf::from),
        price_overrides: raw.pricing.overrides,
        accounts,
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
    if raw.enabled && !provider.is_implemented() {
        problems.push(format!(
            "{label}: provider '{provider}' is not supported by this release yet; set enabled = false or remove the account"
        ));
    }
    let spec = provider_spec(provider);
    let interval = match &raw.interval {
        Some(text) => duration(&format!("{label}: interval"), text, 60, problems),
        None => spec.default_interval,
    };
    let lookback = match &raw.lookback {
        Some(text) => {
            let value = duration(&format!("{label}: lookback"), text, 0, problems);
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
    let base_url = match (&raw.base_url, provider.default_base_url()) {
        (Some(url), _) => check_url(&format!("{label}: base_url"), url, problems),
        (None, Some(default)) => default.to_string(),
        (None, None) => {
            problems.push(format!(
                "{label}: base_url is required for {provider} (the proxy's own URL)"
            ));
            String::new()
        }
    };
    let credentials = check_credentials(label, provider, &spec, raw.credentials, problems);
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
    (problems.len() == before).then_some(AccountConfig {
        id,
        provider,
        enabled: raw.enabled,
        interval,
        lookback,
        backfill_days,
        base_url,
        credentials,
        settings,
    })
}

fn check_credentials(
    label: &str,
    provider: Provider,
    spec: &ProviderSpec,
    raw: BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> BTreeMap<String, Secret> {
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let known = spec.required_credentials.contains(&key.as_str())
            || spec.optional_credentials.contains(&key.as_str())
            || spec.one_of_credentials.contains(&key.as_str());
        if !known {
            problems.push(format!(
                "{label}: credentials.{key} is not a {provider} credential; expected {}",
                spec.required_credentials
                    .iter()
                    .chain(spec.optional_credentials)
                    .chain(spec.one_of_credentials)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
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
    for required in spec.required_credentials {
        if !out.contains_key(*required) && !problems.iter().any(|p| p.contains(&format!("credentials.{required} "))) {
            problems.push(format!(
                "{label}: credentials.{required} is missing; add it under [accounts.credentials], e.g. {required} = \"${{{}}}\"",
                env_hint(provider, required)
            ));
        }
    }
    if !spec.one_of_credentials.is_empty() {
        let set = spec.one_of_credentials.iter().filter(|k| out.contains_key(**k)).count();
        if set != 1 {
            problems.push(format!(
                "{label}: set exactly one of credentials.{}",
                spec.one_of_credentials.join(" or credentials.")
            ));
        }
    }
    out
}

fn env_hint(provider: Provider, key: &str) -> String {
    format!("{}_{}", provider.as_str(), key).to_ascii_uppercase()
}

/// Two accounts with one id, or one billed organization configured twice.
fn check_unique_accounts(accounts: &[AccountConfig], problems: &mut Vec<String>) {
    let mut ids: std::collections::BTreeSet<&str> = Default::default();
    let mut identities: BTreeMap<(Provider, Vec<&str>), &str> = BTreeMap::new();
    for account in accounts {
        if !ids.insert(&account.id) {
            problems.push(format!(
                "accounts: id '{}' is used twice; ids must be unique",
                account.id
            ));
        }
        let spec = provider_spec(account.provider);
        let identity: Vec<&str> = spec
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

fn valid_id(id: &str) -> bool {
    id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn provider_names() -> String {
    Provider::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
}

fn check_url(field: &str, text: &str, problems: &mut Vec<String>) -> String {
    match url::Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => text.trim_end_matches('/').to_string(),
        _ => {
            problems.push(format!("{field}: '{text}' is not an http(s) URL"));
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

fn duration(field: &str, text: &str, min_secs: u64, problems: &mut Vec<String>) -> Duration {
    match humantime::parse_duration(text) {
        Ok(d) if d.as_secs() >= min_secs => d,
        Ok(_) => {
            problems.push(format!("{field}: '{text}' is too short; the minimum is {min_secs}s"));
            Duration::from_secs(min_secs)
        }
        Err(e) => {
            problems.push(format!("{field}: '{text}' is not a duration such as 30s, 5m, 2d ({e})"));
            Duration::from_secs(min_secs)
        }
    }
}

fn positive(field: &str, value: u64, problems: &mut Vec<String>) -> usize {
    if value == 0 {
        problems.push(format!("{field}: must be at least 1"));
    }
    usize::try_from(value).unwrap_or(usize::MAX)
}
