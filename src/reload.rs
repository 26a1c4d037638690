//! Hot reload (SIGHUP or `POST /v1/reload`): re-read the config file with
//! the environment and the vault exactly as at start, validate it fully, and
//! only then apply it: the supervisor starts added accounts, stops removed
//! ones, restarts changed ones (any field, credentials included) and leaves
//! every other account's actor alone; the webhooks are replaced likewise.
//!
//! A config that does not validate is rejected with its problems and the
//! running one stays. Settings that cannot change under a running daemon
//! (everything outside `[[accounts]]`, `[[webhooks]]` and `[vault]`: the
//! ClickHouse connection, the admin listener and token, `state_dir`, the
//! writer, `[sync]`, price overrides) reject the whole reload with a message
//! that a restart is needed: applying half a config would leave the file and
//! the daemon disagreeing silently.

use std::path::PathBuf;
use std::sync::Arc;

use actix::Addr;

use crate::actors::supervisor::{Reconcile, SupervisorActor};
use crate::admin::AdminAccess;
use crate::config::{self, ConfigError, ValidatedConfig};
use crate::webhooks::Notifier;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the new config was rejected; the running config is kept. {0}")]
    Invalid(#[source] ConfigError),
    #[error(
        "the new config changes {}, which cannot change while the daemon runs; restart the daemon to apply it \
         (systemctl restart tokentra-sync). The running config is kept.",
        .0.join(", ")
    )]
    RestartRequired(Vec<&'static str>),
    #[error("the daemon is starting or stopping; reload again once it runs")]
    NotRunning,
    #[error("the supervisor is not running")]
    Supervisor,
}

impl ReloadError {
    /// The `result` label of `config_reloads_total`.
    pub fn result(&self) -> &'static str {
        match self {
            ReloadError::Invalid(_) => "invalid",
            ReloadError::RestartRequired(_) => "restart_required",
            ReloadError::NotRunning | ReloadError::Supervisor => "not_running",
        }
    }
}

/// What an applied reload changed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReloadOutcome {
    /// The config generation now running (1 = the one loaded at start).
    pub generation: u64,
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    /// Enabled accounts whose actors were left running as they were.
    pub unchanged: Vec<String>,
    /// Accounts that could not start (retried with backoff), with the reason.
    pub failed: Vec<(String, String)>,
    pub webhooks: usize,
}

enum Phase {
    Starting,
    Running,
    Stopped,
}

struct Current {
    config: ValidatedConfig,
    generation: u64,
    phase: Phase,
}

/// Owns the running config; one reload at a time.
pub struct Reloader {
    path: PathBuf,
    supervisor: Addr<SupervisorActor>,
    notifier: Notifier,
    admin: Arc<AdminAccess>,
    current: tokio::sync::Mutex<Current>,
}

impl Reloader {
    pub fn new(
        path: PathBuf,
        config: ValidatedConfig,
        supervisor: Addr<SupervisorActor>,
        notifier: Notifier,
        admin: Arc<AdminAccess>,
    ) -> Self {
        crate::metrics::config_generation(1);
        Self {
            path,
            supervisor,
            notifier,
            admin,
            current: tokio::sync::Mutex::new(Current {
                config,
                generation: 1,
                phase: Phase::Starting,
            }),
        }
    }

    /// Starts the accounts of the config loaded at start; reloads are
    /// refused until this ran, so they never race the first reconcile.
    pub async fn start(&self) -> ReloadOutcome {
        let mut current = self.current.lock().await;
        let accounts = current.config.accounts.clone();
        let outcome = self.reconcile(accounts, current.generation).await.unwrap_or_default();
        current.phase = Phase::Running;
        outcome
    }

    /// No reload after this (the daemon is stopping); waits for one in progress.
    pub async fn stop(&self) {
        self.current.lock().await.phase = Phase::Stopped;
    }

    /// Re-reads, validates and applies the config file. Logs and counts the
    /// result either way.
    pub async fn reload(&self, source: &'static str) -> Result<ReloadOutcome, ReloadError> {
        let mut current = self.current.lock().await;
        let result = self.apply(&mut current).await;
        match &result {
            Ok(outcome) => {
                crate::metrics::config_reload("success", outcome.generation);
                tracing::info!(
                    source,
                    generation = outcome.generation,
                    started = ?outcome.started,
                    stopped = ?outcome.stopped,
                    restarted = ?outcome.restarted,
                    unchanged = outcome.unchanged.len(),
                    failed = outcome.failed.len(),
                    webhooks = outcome.webhooks,
                    "config reloaded"
                );
            }
            Err(err) => {
                crate::metrics::config_reload(err.result(), current.generation);
                tracing::error!(source, generation = current.generation, error = %err, "config reload rejected");
            }
        }
        result
    }

    async fn apply(&self, current: &mut Current) -> Result<ReloadOutcome, ReloadError> {
        if !matches!(current.phase, Phase::Running) {
            return Err(ReloadError::NotRunning);
        }
        // Same path, environment and vault key lookup as at start.
        let path = self.path.clone();
        let new = tokio::task::spawn_blocking(move || config::load(&path))
            .await
            .map_err(|_| ReloadError::Supervisor)?
            .map_err(ReloadError::Invalid)?;
        let fixed = restart_required(&current.config, &new);
        if !fixed.is_empty() {
            return Err(ReloadError::RestartRequired(fixed));
        }
        self.notifier.replace(&new.webhooks);
        self.admin.update_accounts(&new);
        let generation = current.generation + 1;
        let mut outcome = self.reconcile(new.accounts.clone(), generation).await?;
        outcome.webhooks = new.webhooks.len();
        current.config = new;
        current.generation = generation;
        Ok(outcome)
    }

    async fn reconcile(
        &self,
        accounts: Vec<std::sync::Arc<config::AccountConfig>>,
        generation: u64,
    ) -> Result<ReloadOutcome, ReloadError> {
        let enabled: Vec<String> = accounts.iter().filter(|a| a.enabled).map(|a| a.id.clone()).collect();
        let report = self
            .supervisor
            .send(Reconcile(accounts))
            .await
            .map_err(|_| ReloadError::Supervisor)?;
        let touched = |id: &String| {
            report.started.contains(id) || report.restarted.contains(id) || report.failed.iter().any(|(f, _)| f == id)
        };
        Ok(ReloadOutcome {
            generation,
            unchanged: enabled.iter().filter(|id| !touched(id)).cloned().collect(),
            started: report.started,
            stopped: report.stopped,
            restarted: report.restarted,
            failed: report.failed,
            webhooks: 0,
        })
    }
}

/// The settings that differ and cannot change live, named as in the file.
pub fn restart_required(old: &ValidatedConfig, new: &ValidatedConfig) -> Vec<&'static str> {
    let checks = [
        ("state_dir", old.state_dir != new.state_dir),
        ("clickhouse.url", old.clickhouse.url != new.clickhouse.url),
        (
            "clickhouse.database",
            old.clickhouse.database != new.clickhouse.database,
        ),
        (
            "clickhouse.user/password",
            old.clickhouse.user != new.clickhouse.user || old.clickhouse.password != new.clickhouse.password,
        ),
        (
            "clickhouse timeouts",
            old.clickhouse.insert_timeout != new.clickhouse.insert_timeout
                || old.clickhouse.query_timeout != new.clickhouse.query_timeout,
        ),
        ("admin.listen", old.admin.listen != new.admin.listen),
        ("admin.token", old.admin.token != new.admin.token),
        (
            "admin limits",
            old.admin.manual_sync_min_interval != new.admin.manual_sync_min_interval
                || old.admin.max_manual_window_days != new.admin.max_manual_window_days,
        ),
        ("[writer]", old.writer != new.writer),
        ("[sync]", old.sync != new.sync),
        ("[pricing] overrides", old.price_overrides != new.price_overrides),
    ];
    checks
        .into_iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    fn load(text: &str) -> ValidatedConfig {
        config::load_str(text, Path::new("t.toml"), &BTreeMap::new()).unwrap()
    }

    #[test]
    fn accounts_webhooks_and_the_vault_key_change_live_the_rest_needs_a_restart() {
        let base = "state_dir = \"/tmp/a\"\n[clickhouse]\nurl = \"http://127.0.0.1:8123\"\n";
        let old = load(base);
        let live = load(&format!(
            "{base}[vault]\nkey_file = \"/k\"\n[[webhooks]]\nid = \"h\"\nurl = \"https://h.example\"\nsecret = \"s\"\n\
             [[accounts]]\nid = \"a\"\nprovider = \"openai\"\n[accounts.credentials]\napi_key = \"sk-admin-FAKE-0123456789abcdef\"\n"
        ));
        assert!(restart_required(&old, &live).is_empty());
        let fixed = load(
            "state_dir = \"/tmp/b\"\n[clickhouse]\nurl = \"http://127.0.0.1:9000\"\npassword = \"pw\"\n\
             [admin]\nlisten = \"127.0.0.1:1\"\n[sync]\njitter = \"1s\"\n",
        );
        assert_eq!(
            restart_required(&old, &fixed),
            vec![
                "state_dir",
                "clickhouse.url",
                "clickhouse.user/password",
                "admin.listen",
                "[sync]"
            ]
        );
        let message = ReloadError::RestartRequired(restart_required(&old, &fixed)).to_string();
        assert!(
            message.contains("restart the daemon") && message.contains("state_dir"),
            "{message}"
        );
        assert!(!message.contains("pw"));
    }
}
