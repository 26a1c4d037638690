//! Wiring shared by the daemon and the one-shot commands: from a validated
//! config to the parts a sync needs.

use std::sync::Arc;

use crate::config::{AccountConfig, ValidatedConfig};
use crate::normalize::pricing::PricingRegistry;
use crate::normalize::Normalizer;
use crate::providers::{self, BuildContext, ProviderError, RetryPolicy};
use crate::store::sink::RowSink;
use crate::store::ClickhouseClient;
use crate::sync::slots::SyncSlots;
use crate::sync::window::WindowPolicy;
use crate::sync::AccountSync;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the bundled pricing registry is invalid: {0}")]
    Pricing(String),
}

/// The long-lived parts built once from the config.
#[derive(Clone)]
pub struct App {
    pub config: ValidatedConfig,
    pub store: ClickhouseClient,
    pub pricing: Arc<PricingRegistry>,
    /// How provider requests are retried (tests shorten the delays).
    pub retry: RetryPolicy,
    /// Syncs in flight across all accounts (`[sync] max_concurrent_syncs`):
    /// a thousand accounts starting at once would open more connections to
    /// the providers than they accept and hold every answer in memory.
    /// The writer watches them to flush as soon as a burst of syncs ends.
    pub sync_slots: Arc<SyncSlots>,
    /// ClickHouse work in flight (`[sync] max_concurrent_store`), taken only
    /// around scope reads, diffs and writes: a sync that waits on a hanging
    /// provider holds a sync slot, never one of these.
    pub store_slots: Arc<tokio::sync::Semaphore>,
    /// Every account's watermark, read once for all (`StoredStates`).
    pub stored_states: Arc<crate::sync::known_state::StoredStates>,
}

impl App {
    pub fn new(config: ValidatedConfig) -> Result<Self, AppError> {
        let pricing = PricingRegistry::builtin()
            .map_err(|e| AppError::Pricing(e.to_string()))?
            .with_overrides(config.price_overrides.clone());
        let store = ClickhouseClient::new(&config.clickhouse);
        Ok(Self {
            store,
            pricing: Arc::new(pricing),
            retry: RetryPolicy {
                request_timeout: config.sync.request_timeout,
                endpoint_deadline: config.sync.endpoint_deadline,
                max_response_bytes: config.sync.max_response_bytes,
                ..RetryPolicy::default()
            },
            sync_slots: SyncSlots::new(config.sync.max_concurrent_syncs),
            store_slots: Arc::new(tokio::sync::Semaphore::new(config.sync.max_concurrent_store)),
            stored_states: Arc::new(crate::sync::known_state::StoredStates::new(
                config.accounts.iter().map(|a| a.id.clone()),
            )),
            config,
        })
    }

    /// For a one-shot command: its syncs are all the work there is, so the
    /// writer flushes whenever none of them holds a slot.
    pub fn one_shot(mut self) -> Self {
        self.sync_slots = SyncSlots::one_shot(self.config.sync.max_concurrent_syncs);
        self
    }

    pub fn window_policy(&self, account: &AccountConfig) -> WindowPolicy {
        WindowPolicy {
            lookback: chrono::Duration::from_std(account.lookback).unwrap_or(chrono::Duration::days(2)),
            backfill_days: i64::from(account.backfill_days),
            deep_days: i64::from(self.config.sync.deep_resync_days),
            chunk_days: i64::from(self.config.sync.backfill_chunk_days),
        }
    }

    /// Everything one account's syncs need, with a fresh adapter.
    pub fn account_sync(
        &self,
        account: &Arc<AccountConfig>,
        writer: Arc<dyn RowSink>,
    ) -> Result<AccountSync, ProviderError> {
        let adapter = providers::build_adapter(
            account.view(),
            account.provider,
            &BuildContext {
                retry: self.retry.clone(),
            },
        )?;
        Ok(AccountSync {
            account: Arc::clone(account),
            adapter,
            normalizer: Normalizer::new(&account.id, account.provider, self.pricing.clone()),
            store: self.store.clone(),
            writer,
            policy: self.window_policy(account),
            endpoint_deadline: self.retry.endpoint_deadline,
            sync_slots: self.sync_slots.clone(),
            store_slots: self.store_slots.clone(),
            known_state: Default::default(),
            stored_states: self.stored_states.clone(),
            owned_since: std::time::Instant::now(),
            names: Arc::new(crate::names::NamesGate::new(self.config.sync.names_interval)),
            settled: Arc::new(crate::sync::settled::SettledBuckets::new(
                self.config.sync.stored_state_ttl,
            )),
            fresh: Arc::new(crate::sync::fresh::FreshBuckets::new(self.config.sync.stored_state_ttl)),
            rollup_to_verify: Arc::new(crate::sync::pending_verify::PendingVerify::load(
                &self.config.state_dir,
                &account.id,
            )),
        })
    }
}
