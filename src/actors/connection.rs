//! One actor per provider account: schedules its syncs, keeps at most one in
//! flight, coalesces ticks that arrive during a sync, and stops cleanly.
//!
//! The sync itself is plain async code ([`crate::sync::AccountSync`]) spawned
//! on the actor's context, so the arbiter never blocks; CPU-heavy steps run on
//! the blocking pool inside it. A panic inside a sync is caught, reported as a
//! crash, and the actor stops so that its actix `Supervisor` restarts it with
//! backoff.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use futures::FutureExt;
use rand::Rng;
use tokio::sync::oneshot;

use crate::metrics;
use crate::sync::window::SyncKind;
use crate::sync::AccountSync;
use crate::webhooks::{Notifier, SyncEvent};

/// Counters the supervisor (and tests) read to see the actor's life.
#[derive(Debug, Default)]
pub struct ConnectionLife {
    pub starts: AtomicU32,
    pub restarts: AtomicU32,
    pub syncs_started: AtomicU32,
    pub syncs_finished: AtomicU32,
    pub coalesced: AtomicU32,
}

/// Schedule of one account.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub interval: Duration,
    pub jitter: Duration,
    pub deep_interval: Duration,
    /// How often `verify` runs for this account (after a sync, in the same
    /// in-flight slot, so no insert of the account runs concurrently).
    pub verify_interval: Duration,
    /// Days `verify` checks, counted back from today.
    pub verify_days: u32,
    /// Whether the first tick happens right away (the daemon) or waits an
    /// interval (tests that drive syncs by message).
    pub tick_on_start: bool,
}

pub struct ConnectionActor {
    sync: AccountSync,
    schedule: Schedule,
    life: Arc<ConnectionLife>,
    in_flight: bool,
    pending: Option<SyncRequest>,
    /// Consecutive failed syncs or crashes; stretches the next delay.
    failures: u32,
    /// The kind of the last failed sync: the retry repeats it (a deep or
    /// manual sync that failed half-way is retried as itself, not as an
    /// ordinary incremental one).
    retry_kind: Option<SyncKind>,
    /// Set by [`Stop`]: no new syncs; the actor idles until its last address
    /// is dropped (an actix `Supervisor` would restart a stopped actor).
    stopping: bool,
    stop_waiters: Vec<oneshot::Sender<()>>,
    next_tick: Option<SpawnHandle>,
    /// When the periodic `verify` is next due. The first one comes at a
    /// random point of the first interval, not with the first sync: with
    /// thousands of accounts, a restart would otherwise verify them all at
    /// once (uncertain inserts are verified by the sync itself).
    next_verify: std::time::Instant,
    /// Where sync outcomes go as webhook events (never waited for).
    events: Option<Notifier>,
}

impl ConnectionActor {
    pub fn new(sync: AccountSync, schedule: Schedule, life: Arc<ConnectionLife>) -> Self {
        let schedule_verify_interval = schedule.verify_interval;
        Self {
            sync,
            schedule,
            life,
            in_flight: false,
            pending: None,
            failures: 0,
            retry_kind: None,
            stopping: false,
            stop_waiters: Vec::new(),
            next_tick: None,
            next_verify: std::time::Instant::now() + spread(schedule_verify_interval),
            events: None,
        }
    }

    /// Emits a `sync.completed` / `sync.failed` event per recorded attempt.
    pub fn with_events(mut self, events: Notifier) -> Self {
        self.events = Some(events);
        self
    }

    fn emit(&self, event: impl FnOnce(&crate::config::AccountConfig) -> Vec<SyncEvent>) {
        if let Some(events) = &self.events {
            for event in event(&self.sync.account) {
                events.emit(&event);
            }
        }
    }

    fn account(&self) -> &str {
        &self.sync.account.id
    }

    /// Next tick after the interval plus jitter, stretched after failures.
    fn schedule_tick(&mut self, ctx: &mut Context<Self>, delay: Option<Duration>) {
        if self.stopping {
            return;
        }
        if let Some(handle) = self.next_tick.take() {
            ctx.cancel_future(handle);
        }
        let delay = delay.unwrap_or_else(|| {
            let jitter = if self.schedule.jitter.is_zero() {
                Duration::ZERO
            } else {
                rand::thread_rng().gen_range(Duration::ZERO..self.schedule.jitter)
            };
            self.schedule.interval + jitter
        });
        self.next_tick = Some(ctx.run_later(delay, |act, ctx| {
            act.next_tick = None;
            act.on_tick(ctx);
        }));
    }

    fn on_tick(&mut self, ctx: &mut Context<Self>) {
        let kind = self.retry_kind.take().unwrap_or(SyncKind::Incremental);
        self.request(SyncRequest::scheduled(kind), ctx);
        self.schedule_tick(ctx, None);
    }

    /// Starts a sync now, or remembers it for when the running one ends.
    /// Scheduled requests coalesce; a manual request (with a run id) is never
    /// dropped: it is queued, or refused when another manual one is queued.
    fn request(&mut self, request: SyncRequest, ctx: &mut Context<Self>) -> TriggerOutcome {
        if self.stopping {
            return TriggerOutcome::Stopping;
        }
        if self.in_flight {
            self.life.coalesced.fetch_add(1, Ordering::Relaxed);
            if let Some(SyncRequest {
                run_id: Some(queued), ..
            }) = &self.pending
            {
                if request.run_id.is_some() {
                    return TriggerOutcome::AlreadyQueued { run_id: queued.clone() };
                }
                return TriggerOutcome::Queued;
            }
            // A manual, deep or explicit request outranks a scheduled incremental one.
            let keep_existing =
                request.run_id.is_none() && request.kind == SyncKind::Incremental && self.pending.is_some();
            if !keep_existing {
                self.pending = Some(request);
            }
            return TriggerOutcome::Queued;
        }
        let SyncRequest { kind, run_id } = request;
        self.in_flight = true;
        self.life.syncs_started.fetch_add(1, Ordering::Relaxed);
        let sync = self.sync.clone();
        let deep_interval = self.schedule.deep_interval;
        let verify_due = std::time::Instant::now() >= self.next_verify;
        if verify_due {
            self.next_verify = std::time::Instant::now() + self.schedule.verify_interval;
        }
        let verify_days = self.schedule.verify_days;
        // Each step boxed: every account due at once has this future, so it
        // stays small while it waits (see `AccountSync::run_as`).
        let work = async move {
            let kind = match kind {
                SyncKind::Incremental => Box::pin(upgrade_to_deep(&sync, deep_interval)).await,
                other => other,
            };
            let trigger = match kind {
                SyncKind::Incremental => "schedule",
                SyncKind::Deep => "deep",
                SyncKind::Explicit { .. } => "manual",
            };
            let trigger = if run_id.is_some() { "manual" } else { trigger };
            let result = sync.run_as(kind, trigger, run_id).await;
            if verify_due {
                Box::pin(verify(&sync, verify_days)).await;
            }
            (kind, result)
        };
        ctx.spawn(
            AssertUnwindSafe(work)
                .catch_unwind()
                .into_actor(self)
                .map(|outcome, act, ctx| {
                    act.in_flight = false;
                    act.life.syncs_finished.fetch_add(1, Ordering::Relaxed);
                    act.emit(|account| match &outcome {
                        Ok((_, Ok(reports))) => reports.iter().map(|r| SyncEvent::from_report(account, r)).collect(),
                        Ok((_, Err(err))) => vec![SyncEvent::not_run(account, "store", &err.to_string())],
                        Err(_) => vec![SyncEvent::not_run(
                            account,
                            "crash",
                            "the sync panicked; the connection restarts",
                        )],
                    });
                    match outcome {
                        Ok((_, Ok(reports))) if reports.iter().all(|r| r.succeeded) => {
                            act.failures = 0;
                            act.retry_kind = None;
                        }
                        Ok((kind, Ok(_))) => {
                            act.failures += 1;
                            act.retry_kind = Some(kind);
                        }
                        Ok((kind, Err(err))) => {
                            act.failures += 1;
                            act.retry_kind = Some(kind);
                            tracing::warn!(account = %act.account(), error = %err, "sync could not run");
                            metrics::account_status(act.account(), act.sync.account.provider, "error");
                        }
                        Err(_) => {
                            act.failures += 1;
                            tracing::error!(account = %act.account(), "sync panicked; restarting the connection actor");
                            metrics::account_status(act.account(), act.sync.account.provider, "error");
                            ctx.stop();
                            return;
                        }
                    }
                    if act.stopping {
                        for waiter in act.stop_waiters.drain(..) {
                            let _ = waiter.send(());
                        }
                        return;
                    }
                    if act.failures > 0 {
                        // Retry sooner than a full interval, but back off.
                        act.schedule_tick(ctx, Some(failure_backoff(act.failures, act.schedule.interval)));
                    }
                    if let Some(next) = act.pending.take() {
                        act.request(next, ctx);
                    }
                }),
        );
        TriggerOutcome::Started
    }
}

/// Daily consistency check of the account's recent days; repairs are logged
/// and counted, failures only logged (the next day tries again).
async fn verify(sync: &AccountSync, days: u32) {
    // Shares the bound on ClickHouse work: it reads as much as a sync stores.
    let _slot = sync.store_slot().await;
    let until = crate::normalize::schema::Granularity::Day.floor(Utc::now()) + chrono::Duration::days(1);
    let since = until - chrono::Duration::days(i64::from(days) + 1);
    match crate::store::verify::verify_connection(&sync.store, sync.writer.as_ref(), &sync.account.id, since, until)
        .await
    {
        Ok(report) if report.repairs.is_empty() => {
            tracing::info!(account = %sync.account.id, groups = report.groups_checked, "verify: consistent")
        }
        Ok(report) => {
            tracing::warn!(account = %sync.account.id, repaired = report.repairs.len(), "verify repaired usage_daily")
        }
        Err(err) => tracing::warn!(account = %sync.account.id, error = %err, "verify failed"),
    }
}

/// A random point of `[0, interval)`.
fn spread(interval: Duration) -> Duration {
    if interval.is_zero() {
        return Duration::ZERO;
    }
    interval.mul_f64(rand::thread_rng().gen_range(0.0..1.0))
}

/// A scheduled sync becomes the deep re-sync once that is due.
async fn upgrade_to_deep(sync: &AccountSync, deep_interval: Duration) -> SyncKind {
    match sync.sync_state().await {
        Ok(Some(state)) => {
            let since = Utc::now() - state.last_deep_sync_at;
            if since.to_std().unwrap_or(Duration::MAX) >= deep_interval {
                SyncKind::Deep
            } else {
                SyncKind::Incremental
            }
        }
        // No history yet: the incremental plan backfills.
        _ => SyncKind::Incremental,
    }
}

/// 10s, 20s, 40s, ... capped at the interval.
pub fn failure_backoff(failures: u32, interval: Duration) -> Duration {
    let base = Duration::from_secs(10).saturating_mul(1 << failures.saturating_sub(1).min(10));
    base.min(interval.max(Duration::from_secs(10)))
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.life.starts.fetch_add(1, Ordering::Relaxed);
        metrics::connection_started(self.account(), self.sync.account.provider);
        if self.stopping {
            return;
        }
        metrics::account_status(self.account(), self.sync.account.provider, "pending");
        if self.schedule.tick_on_start && self.failures == 0 {
            self.on_tick(ctx);
        } else if self.failures > 0 {
            let delay = failure_backoff(self.failures, self.schedule.interval);
            self.schedule_tick(ctx, Some(delay));
        } else {
            self.schedule_tick(ctx, None);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if self.stopping {
            metrics::account_status(self.account(), self.sync.account.provider, "stopped");
        }
    }
}

impl Supervised for ConnectionActor {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.life.restarts.fetch_add(1, Ordering::Relaxed);
        self.in_flight = false;
        self.next_tick = None;
    }
}

/// One request for a sync: its kind, and the run id a manual request is
/// recorded under in `sync_runs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncRequest {
    pub kind: SyncKind,
    pub run_id: Option<String>,
}

impl SyncRequest {
    pub fn scheduled(kind: SyncKind) -> Self {
        Self { kind, run_id: None }
    }
}

/// What became of a request.
#[derive(Clone, Debug, PartialEq, Eq, MessageResponse)]
pub enum TriggerOutcome {
    /// Started right away.
    Started,
    /// Will run after the running sync (scheduled requests coalesce here).
    Queued,
    /// A manual request is already queued; this one is refused, not dropped.
    AlreadyQueued { run_id: String },
    /// The account is stopping.
    Stopping,
}

impl TriggerOutcome {
    pub fn started(&self) -> bool {
        *self == TriggerOutcome::Started
    }
}

/// Ask for a sync now (admin API, tests).
#[derive(Message)]
#[rtype(result = "TriggerOutcome")]
pub struct TriggerSync(pub SyncRequest);

impl TriggerSync {
    /// A request without a run id (coalesces like a scheduled one).
    pub fn new(kind: SyncKind) -> Self {
        TriggerSync(SyncRequest::scheduled(kind))
    }
}

impl Handler<TriggerSync> for ConnectionActor {
    type Result = TriggerOutcome;

    fn handle(&mut self, TriggerSync(request): TriggerSync, ctx: &mut Self::Context) -> TriggerOutcome {
        self.request(request, ctx)
    }
}

/// Stop scheduling and let a running sync finish. Resolves when no sync is
/// running any more; the actor then ends when its addresses are dropped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for ConnectionActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) -> Self::Result {
        if let Some(handle) = self.next_tick.take() {
            ctx.cancel_future(handle);
        }
        self.pending = None;
        self.stopping = true;
        metrics::account_status(self.account(), self.sync.account.provider, "stopped");
        let (tx, rx) = oneshot::channel();
        if self.in_flight {
            self.stop_waiters.push(tx);
        } else {
            let _ = tx.send(());
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Whether a sync is running (for tests and status).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsSyncing;

impl Handler<IsSyncing> for ConnectionActor {
    type Result = bool;

    fn handle(&mut self, _: IsSyncing, _: &mut Self::Context) -> bool {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_backoff_grows_and_caps_at_the_interval() {
        let interval = Duration::from_secs(300);
        assert_eq!(failure_backoff(1, interval), Duration::from_secs(10));
        assert_eq!(failure_backoff(2, interval), Duration::from_secs(20));
        assert_eq!(failure_backoff(3, interval), Duration::from_secs(40));
        assert_eq!(failure_backoff(30, interval), interval);
    }
}
