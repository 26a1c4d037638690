//! One sync of one account: fetch every endpoint -> normalize -> read stored
//! state -> diff -> writer -> (re-read until nothing is left) -> watermark.
//!
//! Plain async code: the connection actor and the one-shot `sync` command both
//! drive it. Per endpoint it either converges or fails; rows of endpoints that
//! converged stay written (they are idempotent), but the watermark moves only
//! when every endpoint of the chunk converged (docs/DESIGN.md rule 6).

pub mod fresh;
pub mod known_state;
pub mod pending_verify;
pub mod settled;
pub mod slots;
pub mod status;
pub mod window;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::allocate::{self, AllocationSpec};
use crate::config::AccountConfig;
use crate::metrics;
use crate::normalize::schema::{to_ch_seconds, UsageRow};
use crate::normalize::Normalizer;
use crate::providers::{EndpointSpec, FailureKind, Provider, ProviderAdapter, ProviderError, TimeWindow};
use crate::store::diff::{finish, plan, rebuild_needed, Plan, StoredMeasures};
use crate::store::sink::{RowSink, UsageRows};
use crate::store::state::{
    read_scope_rows, read_stored, read_watermark, Scope, StoredRead, SyncRunRow, SyncStateRow, Watermark,
};
use crate::store::ClickhouseClient;
use slots::{SyncSlot, SyncSlots};
use status::ConnectionStatus;
use window::{SyncKind, WindowPolicy};

/// A delta is written, then re-read and diffed again if its insert was
/// retried; after this many rounds without converging the endpoint fails.
const MAX_ROUNDS: usize = 4;

const DAY_SECS: u32 = 86_400;

/// Endpoints of one account fetched at once. Small, to stay well inside the
/// providers' rate limits. Only fetches count: every endpoint's diff and
/// write run together, so one sync's deltas share the writer's batch and the
/// sync waits for one batch, not one per wave of endpoints.
const FETCH_CONCURRENCY: usize = 3;

/// Below this many rows, an endpoint's normalizing and diffing run where the
/// sync runs (at most ~0.5 ms of the arbiter's time): a hand-off to the
/// blocking pool costs two thread wake-ups, more than the work for the ~100
/// rows most endpoints bring. Bigger answers still go off the arbiter.
const INLINE_ROWS: usize = 256;

/// `work` on this thread when it is about `rows` small rows, else on the
/// blocking pool, so that a big answer never stalls the other accounts.
async fn row_work<T: Send + 'static>(
    rows: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if rows < INLINE_ROWS {
        Ok(work())
    } else {
        tokio::task::spawn_blocking(work).await
    }
}

/// What one endpoint fetched and wrote.
#[derive(Debug, Default)]
struct EndpointCounts {
    fetched: u64,
    added: u64,
    cancelled: u64,
    /// Start (UTC seconds) of every day this endpoint wrote rows for.
    days: BTreeSet<u32>,
    phases: Phases,
}

/// Where one endpoint's sync spent its time, logged at debug level
/// (`endpoint phases`): a slow sync says whether it waited on the provider,
/// on ClickHouse, on its own CPU work or on the writer's batch.
#[derive(Debug, Default)]
struct Phases {
    /// Waiting for one of the sync's fetch permits.
    fetch_wait: Duration,
    /// The provider's pages, rate limiter and retries included.
    fetch: Duration,
    normalize: Duration,
    /// Taking out the buckets known to be stored unchanged.
    settled: Duration,
    /// Waiting for a store slot.
    store_wait: Duration,
    /// Reading the stored rows of the scope (the batched read's linger included).
    state_read: Duration,
    /// Planning and computing the delta.
    diff: Duration,
    /// Handing the delta to the writer (its buffer's backpressure).
    queue: Duration,
    /// Waiting for the writer to store the delta.
    stored: Duration,
}

impl Phases {
    fn log(&self, account: &str, endpoint: &str) {
        let ms = |d: Duration| d.as_millis() as u64;
        tracing::debug!(
            account,
            endpoint,
            fetch_wait_ms = ms(self.fetch_wait),
            fetch_ms = ms(self.fetch),
            normalize_ms = ms(self.normalize),
            settled_ms = ms(self.settled),
            store_wait_ms = ms(self.store_wait),
            state_read_ms = ms(self.state_read),
            diff_ms = ms(self.diff),
            queue_ms = ms(self.queue),
            stored_ms = ms(self.stored),
            "endpoint phases"
        );
    }
}

/// Adds the time since `*since` to `phase` and restarts the clock.
fn lap(phase: &mut Duration, since: &mut Instant) {
    let now = Instant::now();
    *phase += now - *since;
    *since = now;
}

/// One endpoint's answer as rows, and the bucket starts it covered.
struct EndpointRows {
    rows: Arc<Vec<UsageRow>>,
    scope: Arc<BTreeSet<u32>>,
}

/// What is left to diff of an endpoint's answer once the buckets known to be
/// stored exactly as fetched are taken out.
struct ChangedBuckets {
    rows: Arc<Vec<UsageRow>>,
    scope: Arc<BTreeSet<u32>>,
    /// Digests of the buckets left: what becomes known once they are stored.
    digests: std::collections::BTreeMap<u32, settled::BucketDigest>,
    /// The first bucket of the whole answer: anything known before it is
    /// dropped (the next sync starts no earlier).
    first: Option<u32>,
    /// A bucket left was stored with other rows: its records have likely
    /// changed, so the stored measures are read along with the keys.
    revised: bool,
}

impl ChangedBuckets {
    fn confirm(&self, settled: &settled::SettledBuckets, key: (crate::normalize::schema::RecordType, &'static str)) {
        settled.confirm(key, &self.digests, self.first);
    }
}

/// One endpoint's hold on its sync's slot. The slot is let go once every
/// endpoint has queued its delta (or finished): the wait for the writer's
/// batch, about `writer.max_batch_age`, was most of an incremental sync's
/// time in the slot, and it holds nothing a slot bounds (the rows are in the
/// writer's bounded buffer).
struct SlotShare(Option<Arc<SyncSlot>>);

impl SlotShare {
    fn release(&mut self) {
        self.0 = None;
    }
}

/// What a bill endpoint receives from its usage endpoint: the usage rows, or
/// the kind of failure that left it without them.
type BasisRows = Result<Arc<Vec<UsageRow>>, FailureKind>;

/// The result of syncing one window of one account.
#[derive(Clone, Debug)]
pub struct SyncReport {
    pub account: String,
    pub provider: Provider,
    pub window: TimeWindow,
    pub trigger: &'static str,
    /// The `sync_runs.run_id` this attempt is recorded under.
    pub run_id: String,
    pub succeeded: bool,
    pub rows_fetched: u64,
    pub rows_added: u64,
    pub rows_cancelled: u64,
    pub http_requests: u64,
    pub retries: u64,
    pub duration: Duration,
    /// One message per failed endpoint, naming account and endpoint.
    pub errors: Vec<String>,
    /// The typed reason of the first failed endpoint.
    pub error_kind: Option<FailureKind>,
    /// `usage_daily` groups repaired because a write of this (or an earlier,
    /// unverified) sync had an uncertain outcome.
    pub rollup_repairs: usize,
    /// The account's status after this sync.
    pub connection_status: ConnectionStatus,
}

/// Why one endpoint of a sync failed.
#[derive(Debug)]
pub struct EndpointFailure {
    pub kind: FailureKind,
    /// Names the account and endpoint; never carries a secret.
    pub message: String,
}

impl From<ProviderError> for EndpointFailure {
    fn from(err: ProviderError) -> Self {
        EndpointFailure {
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

impl SyncReport {
    pub fn status(&self) -> &'static str {
        if self.succeeded {
            "success"
        } else {
            "failed"
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("account '{account}': reading sync state from ClickHouse failed: {source}")]
    State {
        account: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("account '{account}': {source}")]
    Writer {
        account: String,
        #[source]
        source: crate::store::sink::SinkError,
    },
}

/// Everything one account's syncs need.
#[derive(Clone)]
pub struct AccountSync {
    pub account: Arc<AccountConfig>,
    pub adapter: Arc<dyn ProviderAdapter>,
    pub normalizer: Normalizer,
    pub store: ClickhouseClient,
    pub writer: Arc<dyn RowSink>,
    pub policy: WindowPolicy,
    /// One endpoint's whole fetch, pages and retries included: a provider
    /// that never answers fails its endpoint instead of holding the account.
    pub endpoint_deadline: Duration,
    /// Days `[start, end)` (UTC seconds) whose rollup must be verified
    /// before a sync of this account may report success: set when a write's
    /// outcome was uncertain, cleared once verify succeeds.
    pub rollup_to_verify: Arc<pending_verify::PendingVerify>,
    /// Shared by every account: a sync runs only while it holds one.
    pub sync_slots: Arc<SyncSlots>,
    /// Shared by every account: ClickHouse reads, diffs and writes run only
    /// while they hold one, fetches never do.
    pub store_slots: Arc<tokio::sync::Semaphore>,
    /// The account's `sync_state` as last read or written by this process
    /// (the account lock makes it the only writer), so a sync reads it from
    /// ClickHouse once, not on every run.
    pub known_state: Arc<known_state::KnownState>,
    /// Shared by every account: all the stored watermarks, read once.
    pub stored_states: Arc<known_state::StoredStates>,
    /// When this process took the account's lock (its `AccountSync` is
    /// built right after): state read before then may be stale.
    pub owned_since: std::time::Instant,
    /// When the provider's workspace and key names are due again.
    pub names: Arc<crate::names::NamesGate>,
    /// Buckets whose stored rows this process knows, so an unchanged one is
    /// neither read nor diffed again.
    pub settled: Arc<settled::SettledBuckets>,
    /// Buckets known to hold no rows (a new account's), so a backfill
    /// diffs them without reading.
    pub fresh: Arc<fresh::FreshBuckets>,
}

impl AccountSync {
    /// Runs a whole sync of `kind`: every chunk in order, moving the watermark
    /// after each stored chunk, stopping at the first failed chunk.
    pub async fn run(&self, kind: SyncKind, trigger: &'static str) -> Result<Vec<SyncReport>, SyncError> {
        self.run_as(kind, trigger, None).await
    }

    /// [`Self::run`], recording its `sync_runs` rows under `run_id` (the
    /// first chunk as `run_id`, later ones as `run_id.N`) so a manual request
    /// can be followed; without one, ids are made from the account and time.
    pub async fn run_as(
        &self,
        kind: SyncKind,
        trigger: &'static str,
        run_id: Option<String>,
    ) -> Result<Vec<SyncReport>, SyncError> {
        let slot = Arc::new(self.sync_slot().await);
        // Boxed: every account due at once waits for a slot above, and the
        // whole sync inline made each waiting future 6.8 KB (68 MB of a
        // 10,000-account first sync's heap peak, heaptrack).
        Box::pin(self.run_in_slot(slot, kind, trigger, run_id)).await
    }

    /// [`Self::run_as`] once it holds `slot`.
    async fn run_in_slot(
        &self,
        slot: Arc<SyncSlot>,
        kind: SyncKind,
        trigger: &'static str,
        run_id: Option<String>,
    ) -> Result<Vec<SyncReport>, SyncError> {
        let stored = self.sync_state().await?;
        // The names, when due, are read beside the first window, under its slot.
        let names = self.refresh_names(slot.clone());
        let windows = self.sync_windows(kind, slot, stored.as_ref(), trigger, run_id);
        let (reports, ()) = futures::join!(windows, names);
        let reports = reports?;
        // The last watermark is stored with the next batch: waited for
        // without a slot, so the wait holds back no other account, and a
        // caller sees the run's watermark stored when it returns.
        self.known_state.settle().await.map_err(|source| SyncError::Writer {
            account: self.account.id.clone(),
            source,
        })?;
        Ok(reports)
    }

    /// Syncs the chunks of a sync of `kind` from `stored` in order, the
    /// first under `slot`, each later one under a slot of its own, moving the
    /// watermark after each stored chunk and stopping at the first failed one.
    async fn sync_windows(
        &self,
        kind: SyncKind,
        slot: Arc<SyncSlot>,
        stored: Option<&Watermark>,
        trigger: &'static str,
        run_id: Option<String>,
    ) -> Result<Vec<SyncReport>, SyncError> {
        let now = Utc::now();
        let plan = window::plan(kind, stored.map(|s| s.watermark), now, &self.policy);
        let trigger = if plan.starts_history { "backfill" } else { trigger };
        let mut slot = Some(slot);
        let mut watermark = stored.map(|s| s.watermark);
        let mut reports = Vec::new();
        for (index, chunk) in plan.chunks.iter().enumerate() {
            let id = match (&run_id, index) {
                (Some(base), 0) => Some(base.clone()),
                (Some(base), n) => Some(format!("{base}.{n}")),
                (None, _) => None,
            };
            let slot = match slot.take() {
                Some(slot) => slot,
                None => Arc::new(self.sync_slot().await),
            };
            let report = self
                .sync_window(*chunk, slot, trigger, stored.map(|s| s.last_success_at), id)
                .await?;
            let succeeded = report.succeeded;
            reports.push(report);
            if !succeeded {
                break;
            }
            let next = window::advance(watermark, chunk, plan.starts_history);
            // A finished first backfill just read all the history there is, so
            // it counts as the deep re-sync too (no second pass right after).
            let last_chunk = chunk == plan.chunks.last().expect("non-empty");
            let deep_done = last_chunk && (kind == SyncKind::Deep || plan.starts_history);
            if next != watermark || deep_done {
                watermark = next;
                self.store_watermark(stored, watermark, deep_done, now).await?;
            }
        }
        Ok(reports)
    }

    /// The account's sync progress: from memory once known, else read.
    pub async fn sync_state(&self) -> Result<Option<Watermark>, SyncError> {
        if let Some(known) = self.known_state.get(&self.account.id).await {
            return Ok(known);
        }
        let _store = self.store_slot().await;
        // The shared read is older than anything this process wrote: after
        // a failed state write it would hand back a stale watermark, and
        // call an account fresh that now holds rows.
        let shared = if self.known_state.never_read() {
            self.stored_states
                .get(&self.store, &self.account.id, self.owned_since)
                .await
        } else {
            None
        };
        let stored = match shared {
            Some(start) => {
                if start.holds_no_rows {
                    self.fresh.found_empty(start.read_at);
                }
                if start.holds_no_names {
                    self.names.stored_none();
                }
                start.watermark
            }
            None => read_watermark(&self.store, &self.account.id)
                .await
                .map_err(|source| SyncError::State {
                    account: self.account.id.clone(),
                    source,
                })?,
        };
        self.known_state.read(stored.clone());
        Ok(stored)
    }

    /// Waits for a turn to sync.
    async fn sync_slot(&self) -> SyncSlot {
        self.sync_slots.acquire().await
    }

    /// Waits for a turn at ClickHouse; the semaphore is never closed.
    pub async fn store_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.store_slots.acquire().await.expect("store slots are never closed")
    }

    /// Re-reads the provider's workspace and key names when due, holding a
    /// share of `slot`. Never part of the sync's outcome: a failure is
    /// logged and counted, and the usage sync's report stands as it is.
    async fn refresh_names(&self, slot: Arc<SyncSlot>) {
        if !self.names.take_due() {
            return;
        }
        let (account, provider) = (&self.account.id, self.account.provider);
        let store = crate::names::refresh::NamesStore {
            client: &self.store,
            store_slots: &self.store_slots,
            sink: self.writer.as_ref(),
            gate: &self.names,
        };
        let refreshed =
            crate::names::refresh::refresh(self.adapter.as_ref(), store, account, self.endpoint_deadline, slot);
        match refreshed.await {
            Ok(outcome) if !outcome.supported => {}
            Ok(outcome) => {
                metrics::names_refresh(account, provider, "success");
                tracing::info!(
                    account = %account,
                    provider = %provider,
                    workspaces = outcome.workspaces_seen,
                    keys = outcome.keys_seen,
                    workspace_rows = outcome.workspace_rows,
                    key_rows = outcome.key_rows,
                    "names refreshed"
                );
            }
            Err(err) => {
                metrics::names_refresh(account, provider, "failed");
                tracing::warn!(account = %account, provider = %provider, error = %err, "names refresh failed; usage sync unaffected, retried next interval");
            }
        }
    }

    async fn store_watermark(
        &self,
        previous: Option<&Watermark>,
        watermark: Option<DateTime<Utc>>,
        deep_done: bool,
        now: DateTime<Utc>,
    ) -> Result<(), SyncError> {
        let epoch = DateTime::<Utc>::UNIX_EPOCH;
        let state = Watermark {
            watermark: watermark.unwrap_or_else(|| previous.map_or(epoch, |p| p.watermark)),
            last_success_at: Utc::now(),
            last_deep_sync_at: if deep_done {
                now
            } else {
                previous.map_or(epoch, |p| p.last_deep_sync_at)
            },
        };
        let row = SyncStateRow::new(&self.account.id, self.account.provider.as_str(), &state);
        // Queued behind the rows it covers, which are stored already; the
        // next chunk goes on, and the last write is waited for once the sync
        // slot is released (`run_as`).
        match self.writer.queue_state(row).await {
            Ok(ack) => {
                self.known_state.writing(state, ack);
                Ok(())
            }
            Err(source) => {
                self.known_state.forget();
                Err(SyncError::Writer {
                    account: self.account.id.clone(),
                    source,
                })
            }
        }
    }

    /// Syncs every endpoint for one window and records the attempt in
    /// `sync_runs`. Never moves the watermark. `slot` is shared by the
    /// endpoints and let go once each has queued its delta (or finished).
    pub async fn sync_window(
        &self,
        window: TimeWindow,
        slot: Arc<SyncSlot>,
        trigger: &'static str,
        last_success: Option<DateTime<Utc>>,
        run_id: Option<String>,
    ) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let started_at = Utc::now();
        let provider = self.account.provider;
        let run_id = run_id.unwrap_or_else(|| format!("{}-{}", self.account.id, started_at.timestamp_micros()));
        metrics::account_status(&self.account.id, provider, ConnectionStatus::Syncing.as_str());
        let stats = self.adapter.http_stats();
        let (requests_before, retries_before) = stats.snapshot();
        let mut report = SyncReport {
            account: self.account.id.clone(),
            provider,
            window,
            trigger,
            run_id: run_id.clone(),
            succeeded: true,
            rows_fetched: 0,
            rows_added: 0,
            rows_cancelled: 0,
            http_requests: 0,
            retries: 0,
            duration: Duration::ZERO,
            errors: Vec::new(),
            error_kind: None,
            rollup_repairs: 0,
            connection_status: ConnectionStatus::Syncing,
        };
        // Endpoints are independent scopes: all run at once, a few fetching
        // at a time, so their deltas share the writer's batches.
        // With allocation, the bill waits for its usage's rows, so the usage
        // endpoint fetches first (a bill never waits holding a fetch permit).
        let allocation = self.adapter.allocation();
        let mut endpoints = self.adapter.endpoints();
        endpoints.sort_by_key(|e| allocation.is_some_and(|a| a.bill == *e));
        let (basis_tx, basis_rx) = tokio::sync::watch::channel::<Option<BasisRows>>(None);
        let (basis_tx, basis_rx) = (&basis_tx, &basis_rx);
        let fetches = &tokio::sync::Semaphore::new(FETCH_CONCURRENCY);
        let endpoint_syncs: Vec<_> = endpoints
            .into_iter()
            .map(|endpoint| {
                let share = SlotShare(Some(slot.clone()));
                async move {
                    let mut counts = EndpointCounts::default();
                    let result = match allocation {
                        Some(spec) if spec.basis == endpoint => {
                            self.sync_basis(&spec, window, &mut counts, fetches, basis_tx, share)
                                .await
                        }
                        Some(spec) if spec.bill == endpoint => {
                            self.sync_bill(&spec, window, &mut counts, fetches, basis_rx.clone(), share)
                                .await
                        }
                        _ => self.sync_endpoint(&endpoint, window, &mut counts, fetches, share).await,
                    };
                    (endpoint, counts, result)
                }
            })
            .collect();
        // Only the endpoints hold the slot now.
        drop(slot);
        let outcomes: Vec<(EndpointSpec, EndpointCounts, Result<(), EndpointFailure>)> =
            futures::future::join_all(endpoint_syncs).await;
        for (endpoint, counts, result) in outcomes {
            counts.phases.log(&self.account.id, endpoint.endpoint);
            report.rows_fetched += counts.fetched;
            report.rows_added += counts.added;
            report.rows_cancelled += counts.cancelled;
            if let Err(failure) = result {
                tracing::warn!(
                    account = %self.account.id,
                    endpoint = endpoint.endpoint,
                    kind = failure.kind.as_str(),
                    error = %failure.message,
                    "endpoint sync failed"
                );
                report.succeeded = false;
                report.error_kind.get_or_insert(failure.kind);
                report.errors.push(failure.message);
            }
        }
        // The rollup is right when a sync says success (and is repaired even
        // when it does not): 18.16 stores the table part and the view part of
        // an INSERT one after the other, so an insert whose outcome was
        // uncertain may have left `usage_daily` short.
        match self.repair_rollup().await {
            Ok(repairs) => report.rollup_repairs = repairs,
            Err(failure) => {
                report.succeeded = false;
                report.error_kind.get_or_insert(failure.kind);
                report.errors.push(failure.message);
            }
        }
        let (requests_after, retries_after) = stats.snapshot();
        report.http_requests = requests_after - requests_before;
        report.retries = retries_after - retries_before;
        report.duration = started.elapsed();
        metrics::sync_finished(&self.account.id, provider, report.status(), report.duration);
        if let Some(kind) = report.error_kind {
            metrics::sync_failure(&self.account.id, provider, kind.as_str());
        }
        metrics::rows(
            &self.account.id,
            provider,
            report.rows_fetched,
            report.rows_added + report.rows_cancelled,
        );
        // A never-stored epoch watermark is not a success.
        let last_success = last_success.filter(|t| t.timestamp() > 0);
        report.connection_status =
            ConnectionStatus::after_sync(report.error_kind, last_success, Utc::now(), self.account.interval);
        metrics::account_status(&self.account.id, provider, report.connection_status.as_str());
        tracing::info!(
            account = %self.account.id,
            provider = %provider,
            trigger,
            window_start = %window.start,
            window_end = %window.end,
            status = report.status(),
            fetched = report.rows_fetched,
            added = report.rows_added,
            cancelled = report.rows_cancelled,
            requests = report.http_requests,
            duration_ms = report.duration.as_millis() as u64,
            "sync finished"
        );
        let run = SyncRunRow {
            run_id,
            connection_id: self.account.id.clone(),
            provider: provider.as_str().to_string(),
            trigger: trigger.to_string(),
            window_start: to_ch_seconds(window.start),
            window_end: to_ch_seconds(window.end),
            status: report.status().to_string(),
            connection_status: report.connection_status.as_str().to_string(),
            error_kind: report
                .error_kind
                .map(FailureKind::as_str)
                .unwrap_or_default()
                .to_string(),
            rows_fetched: report.rows_fetched,
            rows_written: report.rows_added,
            rows_cancelled: report.rows_cancelled,
            http_requests: report.http_requests,
            retries: report.retries,
            duration_ms: report.duration.as_millis() as u64,
            error: report.errors.join("\n"),
            started_at: to_ch_seconds(started_at),
            finished_at: to_ch_seconds(Utc::now()),
        };
        self.writer.enqueue_run(run).await.map_err(|source| SyncError::Writer {
            account: self.account.id.clone(),
            source,
        })?;
        Ok(report)
    }

    fn note_uncertain(&self, days: &BTreeSet<u32>) {
        if let (Some(first), Some(last)) = (days.first(), days.last()) {
            self.rollup_to_verify.widen((*first, last.saturating_add(DAY_SECS)));
        }
    }

    /// Verifies and repairs `usage_daily` for the days an uncertain write may
    /// have left short; returns the groups repaired. Nothing to do is free.
    async fn repair_rollup(&self) -> Result<usize, EndpointFailure> {
        let Some((start, end)) = self.rollup_to_verify.get() else {
            return Ok(0);
        };
        let _store = self.store_slot().await;
        let account = &self.account.id;
        let report = crate::store::verify::verify_connection(
            &self.store,
            self.writer.as_ref(),
            account,
            crate::normalize::schema::from_ch_seconds(start),
            crate::normalize::schema::from_ch_seconds(end),
        )
        .await
        .map_err(|e| EndpointFailure {
            kind: FailureKind::Store,
            message: format!(
                "account '{account}': an insert's outcome was uncertain and the rollup of its days could not be \
                 verified yet ({e}); the next sync verifies it before it reports success"
            ),
        })?;
        self.rollup_to_verify.clear((start, end));
        if !report.repairs.is_empty() {
            tracing::warn!(
                account = %account,
                repaired = report.repairs.len(),
                "an uncertain insert left usage_daily short; repaired"
            );
        }
        Ok(report.repairs.len())
    }

    /// Fetch, diff and write one endpoint until a re-read finds nothing left.
    async fn sync_endpoint(
        &self,
        endpoint: &EndpointSpec,
        window: TimeWindow,
        counts: &mut EndpointCounts,
        fetches: &tokio::sync::Semaphore,
        share: SlotShare,
    ) -> Result<(), EndpointFailure> {
        let fetched = self.fetch_rows(endpoint, window, counts, fetches).await?;
        self.store_rows(endpoint, fetched, counts, share).await
    }

    /// Syncs an endpoint whose usage is the basis of an allocation: fetched
    /// for whole bill buckets (a part must see its day's whole usage, or its
    /// share would depend on where the window starts), its rows handed to
    /// the bill's endpoint, then stored like any other.
    async fn sync_basis(
        &self,
        spec: &AllocationSpec,
        window: TimeWindow,
        counts: &mut EndpointCounts,
        fetches: &tokio::sync::Semaphore,
        basis: &tokio::sync::watch::Sender<Option<BasisRows>>,
        share: SlotShare,
    ) -> Result<(), EndpointFailure> {
        let window = window.snapped_out(spec.bill.granularity);
        let fetched = self.fetch_rows(&spec.basis, window, counts, fetches).await;
        basis.send_replace(Some(match &fetched {
            Ok(rows) => Ok(rows.rows.clone()),
            Err(failure) => Err(failure.kind),
        }));
        self.store_rows(&spec.basis, fetched?, counts, share).await
    }

    /// Syncs a bill endpoint with allocation on: its rows are replaced by
    /// their parts (`crate::allocate`) before the diff, so the parts replace
    /// the coarse rows in the scope, never beside them. Without its usage
    /// (the basis endpoint failed) nothing is stored: the stored rows stay
    /// as the last complete sync left them.
    async fn sync_bill(
        &self,
        spec: &AllocationSpec,
        window: TimeWindow,
        counts: &mut EndpointCounts,
        fetches: &tokio::sync::Semaphore,
        mut basis: tokio::sync::watch::Receiver<Option<BasisRows>>,
        share: SlotShare,
    ) -> Result<(), EndpointFailure> {
        let account = &self.account.id;
        let fetched = self.fetch_rows(&spec.bill, window, counts, fetches).await?;
        let not_stored = |kind| EndpointFailure {
            kind,
            message: format!(
                "account '{account}': {}: not stored: its cost is allocated to the usage of {}, which failed \
                 in this sync; the next sync stores both",
                spec.bill.endpoint, spec.basis.endpoint
            ),
        };
        let usage = match basis.wait_for(Option::is_some).await {
            Ok(rows) => rows.clone().expect("waited for Some"),
            Err(_) => Err(FailureKind::Store),
        }
        .map_err(not_stored)?;
        let (spec_owned, bill) = (*spec, fetched.rows.clone());
        let outcome = tokio::task::spawn_blocking(move || allocate::allocate(&spec_owned, &bill, &usage))
            .await
            .map_err(|e| EndpointFailure {
                kind: FailureKind::Store,
                message: format!("account '{account}': {}: allocation failed: {e}", spec.bill.endpoint),
            })?;
        tracing::debug!(
            account = %account,
            endpoint = spec.bill.endpoint,
            allocated = outcome.allocated,
            kept = outcome.kept,
            parts = outcome.rows.len() - outcome.kept,
            "cost allocated to usage"
        );
        let rows = EndpointRows {
            rows: Arc::new(outcome.rows),
            scope: fetched.scope,
        };
        self.store_rows(&spec.bill, rows, counts, share).await
    }

    /// Fetches one endpoint (holding one of the sync's `fetches` permits)
    /// and normalizes its answer; the scope is every bucket it covered.
    async fn fetch_rows(
        &self,
        endpoint: &EndpointSpec,
        window: TimeWindow,
        counts: &mut EndpointCounts,
        fetches: &tokio::sync::Semaphore,
    ) -> Result<EndpointRows, EndpointFailure> {
        let mut clock = Instant::now();
        let _fetching = fetches
            .acquire()
            .await
            .expect("the sync's fetch permits are never closed");
        lap(&mut counts.phases.fetch_wait, &mut clock);
        let account = &self.account.id;
        let store_failure = |what: &str, e: &dyn std::fmt::Display| EndpointFailure {
            kind: FailureKind::Store,
            message: format!("account '{account}': {}: {what}: {e}", endpoint.endpoint),
        };
        let snapped = window.snapped_out(endpoint.granularity);
        let fetched = match tokio::time::timeout(self.endpoint_deadline, self.adapter.fetch(endpoint, snapped)).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(ProviderError::Timeout {
                    account: account.clone(),
                    endpoint: endpoint.endpoint.to_string(),
                    after: self.endpoint_deadline,
                }
                .into())
            }
        };
        lap(&mut counts.phases.fetch, &mut clock);
        counts.fetched += fetched.records.len() as u64;
        let normalizer = self.normalizer.clone();
        let covered = fetched.covered_buckets.clone();
        // Parsing is done; normalizing and diffing big answers is CPU work
        // that must not stall the arbiter.
        let rows = row_work(fetched.records.len(), move || normalizer.rows(fetched.records))
            .await
            .map_err(|e| store_failure("normalizing failed", &e))?
            .map_err(|e| EndpointFailure {
                kind: FailureKind::Malformed,
                message: format!("account '{account}': {}: malformed response: {e}", endpoint.endpoint),
            })?;
        lap(&mut counts.phases.normalize, &mut clock);
        let mut scope: BTreeSet<u32> = covered.iter().map(|t| to_ch_seconds(*t)).collect();
        scope.extend(rows.iter().map(|r| r.bucket_start));
        Ok(EndpointRows {
            rows: Arc::new(rows),
            scope: Arc::new(scope),
        })
    }

    /// The rows and scope left to diff once the buckets known to be stored
    /// exactly as fetched are taken out, and the digests of those left (what
    /// becomes known once they are stored).
    async fn changed_buckets(
        &self,
        key: (crate::normalize::schema::RecordType, &'static str),
        rows: Arc<Vec<UsageRow>>,
        scope: Arc<BTreeSet<u32>>,
    ) -> Result<ChangedBuckets, EndpointFailure> {
        let settled = self.settled.clone();
        let account = self.account.id.clone();
        row_work(rows.len(), move || {
            let first = scope.first().copied();
            let mut digests = settled::bucket_digests(&rows, &scope);
            let settled::Recall { unchanged, revised } = settled.recall(key, &digests);
            if unchanged.is_empty() {
                return ChangedBuckets {
                    rows,
                    scope,
                    digests,
                    first,
                    revised,
                };
            }
            digests.retain(|bucket, _| !unchanged.contains(bucket));
            let changed = |r: &UsageRow| !unchanged.contains(&r.bucket_start);
            // Moved, not copied, unless a bill endpoint shares the rows.
            let mut left: Vec<UsageRow> = match Arc::try_unwrap(rows) {
                Ok(rows) => rows.into_iter().filter(changed).collect(),
                Err(shared) => shared.iter().filter(|r| changed(r)).cloned().collect(),
            };
            // The filter reuses the fetched rows' allocation: without this, the
            // few changed rows of a cycle would hold every fetched row's
            // space until the writer stores them.
            left.shrink_to_fit();
            ChangedBuckets {
                rows: Arc::new(left),
                scope: Arc::new(digests.keys().copied().collect()),
                digests,
                first,
                revised,
            }
        })
        .await
        .map_err(|e| EndpointFailure {
            kind: FailureKind::Store,
            message: format!("account '{account}': {}: diff failed: {e}", key.1),
        })
    }

    /// Diffs `fetched` against the stored rows of its scope and writes the
    /// delta until a re-read finds nothing left.
    async fn store_rows(
        &self,
        endpoint: &EndpointSpec,
        fetched: EndpointRows,
        counts: &mut EndpointCounts,
        mut share: SlotShare,
    ) -> Result<(), EndpointFailure> {
        let account = &self.account.id;
        let store_failure = |what: &str, e: &dyn std::fmt::Display| EndpointFailure {
            kind: FailureKind::Store,
            message: format!("account '{account}': {}: {what}: {e}", endpoint.endpoint),
        };
        let EndpointRows { rows, scope } = fetched;
        let known_key = (endpoint.record_type, endpoint.endpoint);
        let mut clock = Instant::now();
        let mut changed = self.changed_buckets(known_key, rows, scope).await?;
        lap(&mut counts.phases.settled, &mut clock);
        // Held here alone, so that the delta's fresh rows can be stamped in
        // place and shared with the writer instead of copied.
        let mut rows = std::mem::take(&mut changed.rows);
        let scope = changed.scope.clone();
        if scope.is_empty() {
            changed.confirm(&self.settled, known_key);
            return Ok(());
        }
        let stored_scope = Scope {
            connection_id: &self.account.id,
            record_type: endpoint.record_type,
            endpoint: endpoint.endpoint,
            buckets: &scope,
        };
        for _round in 0..MAX_ROUNDS {
            // Held until the delta is queued, not until it is stored: the
            // wait for a batch would otherwise cap the writer's batches at
            // this many syncs' deltas. Never held while waiting on a provider.
            lap(&mut counts.phases.diff, &mut clock);
            let store = self.store_slot().await;
            lap(&mut counts.phases.store_wait, &mut clock);
            // Narrow first: an unchanged scope is settled from five small
            // columns. Where the buckets were revised, the stored measures
            // come along, so that the changed records' cancel copies are
            // rebuilt from them; whole rows are read only for the records
            // that cannot be rebuilt. A new account's unwritten buckets
            // are not read at all: they hold nothing.
            let stored = if self.fresh.holds_nothing(known_key, &scope) {
                StoredRead::Keys(Vec::new())
            } else {
                read_stored(&self.store, &stored_scope, changed.revised)
                    .await
                    .map_err(|e| store_failure("reading stored rows", &e))?
            };
            lap(&mut counts.phases.state_read, &mut clock);
            let now = Utc::now();
            let scope_for_diff = scope.clone();
            // One hand-off to the blocking pool when no stored row has to be
            // read whole (always so for a new account's buckets): the plan and
            // the delta, whose fresh rows are stamped in place (a digest each).
            // The rows go in and come back.
            let (diffed, rows_back) = row_work(rows.len().max(stored.rows()), move || {
                let diffed = match plan_against(stored, &rows, &scope_for_diff, now) {
                    (plan, full, unresolved) if unresolved.is_empty() => {
                        Diffed::Done(finish_delta(&plan, &full, &mut rows, &scope_for_diff, now))
                    }
                    (plan, full, unresolved) => Diffed::NeedsWholeRows { plan, full, unresolved },
                };
                (diffed, rows)
            })
            .await
            .map_err(|e| store_failure("diff failed", &e))?;
            rows = rows_back;
            let (batch, added, cancelled) = match diffed {
                Diffed::Done(delta) => delta,
                Diffed::NeedsWholeRows {
                    plan,
                    mut full,
                    unresolved,
                } => {
                    lap(&mut counts.phases.diff, &mut clock);
                    let whole = read_scope_rows(&self.store, &stored_scope, &unresolved)
                        .await
                        .map_err(|e| store_failure("reading stored rows", &e))?;
                    lap(&mut counts.phases.state_read, &mut clock);
                    full.extend(whole);
                    let scope_for_diff = scope.clone();
                    let (delta, rows_back) = tokio::task::spawn_blocking(move || {
                        let delta = finish_delta(&plan, &full, &mut rows, &scope_for_diff, now);
                        (delta, rows)
                    })
                    .await
                    .map_err(|e| store_failure("diff failed", &e))?;
                    rows = rows_back;
                    delta
                }
            };
            if batch.is_empty() {
                changed.confirm(&self.settled, known_key);
                return Ok(());
            }
            counts.added += added as u64;
            counts.cancelled += cancelled as u64;
            counts
                .days
                .extend(batch.iter().map(|r| r.bucket_start - r.bucket_start % DAY_SECS));
            lap(&mut counts.phases.diff, &mut clock);
            // Before queueing: a write that fails may still land.
            self.fresh.writing(known_key, &scope);
            let queued = self.writer.queue_usage(batch).await;
            lap(&mut counts.phases.queue, &mut clock);
            drop(store);
            // The rows are the writer's now (its buffer is bounded on its
            // own): waiting for their batch holds back no other sync.
            share.release();
            let written = match queued {
                Ok(stored) => stored.await,
                Err(e) => Err(e),
            };
            lap(&mut counts.phases.stored, &mut clock);
            let ack = match written {
                Ok(ack) => ack,
                Err(e) => {
                    self.settled.forget(known_key);
                    self.note_uncertain(&counts.days);
                    return Err(store_failure("writing", &e));
                }
            };
            if !ack.retried {
                changed.confirm(&self.settled, known_key);
                return Ok(());
            }
            self.settled.forget(known_key);
            // The outcome was uncertain (a failed attempt may have stored the
            // table part without its rollup part). Written down at once: a process killed before the verify at the
            // end of this sync still repairs these days on its next start.
            self.note_uncertain(&counts.days);
            tracing::info!(account = %self.account.id, endpoint = endpoint.endpoint, "insert was retried; re-reading to confirm");
        }
        Err(EndpointFailure {
            kind: FailureKind::Store,
            message: format!(
                "account '{account}': {}: stored rows did not converge after {MAX_ROUNDS} write rounds; the next sync repairs them",
                endpoint.endpoint
            ),
        })
    }
}

/// Where the first step of a diff left it.
enum Diffed {
    /// The delta to write, with how many rows it adds and cancels.
    Done((UsageRows, usize, usize)),
    /// Some changed records' stored rows could not be rebuilt from their
    /// measures: `unresolved` must be read whole before the delta is known.
    NeedsWholeRows {
        plan: Plan,
        full: Vec<UsageRow>,
        unresolved: BTreeSet<u64>,
    },
}

/// The diff's plan against what was read of the scope, the stored rows
/// rebuilt from their measures, and the keys still to be read whole.
fn plan_against(
    stored: StoredRead,
    rows: &[UsageRow],
    scope: &BTreeSet<u32>,
    now: DateTime<Utc>,
) -> (Plan, Vec<UsageRow>, BTreeSet<u64>) {
    let (keys, measures) = match stored {
        StoredRead::Keys(keys) => (keys, Vec::new()),
        StoredRead::Measures(measures) => (measures.iter().map(StoredMeasures::key).collect(), measures),
    };
    let plan = plan(&keys, rows, scope, now.timestamp_micros().max(0) as u64);
    let (full, unresolved) = if measures.is_empty() {
        (Vec::new(), plan.needs_full.clone())
    } else {
        rebuild_needed(&plan, &measures, rows)
    };
    (plan, full, unresolved)
}

/// The delta as the writer takes it, with its counts of added and
/// cancelled rows.
fn finish_delta(
    plan: &Plan,
    full: &[UsageRow],
    rows: &mut Arc<Vec<UsageRow>>,
    scope: &BTreeSet<u32>,
    now: DateTime<Utc>,
) -> (UsageRows, usize, usize) {
    let delta = finish(plan, full, rows, scope, to_ch_seconds(now));
    let (added, cancelled) = (delta.added, delta.cancelled);
    (UsageRows::of_delta(delta, rows), added, cancelled)
}
