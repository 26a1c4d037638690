//! The supervisor: one connection actor per enabled account, reconciled from
//! config (added / changed / removed accounts start, restart or stop one actor
//! each). The daemon's lifecycle around it lives in [`crate::daemon`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::connection::{ConnectionActor, ConnectionLife, Schedule, Stop, SyncRequest, TriggerOutcome, TriggerSync};
use super::writer::WriterHandle;
use crate::app::App;
use crate::config::AccountConfig;
use crate::lock::AccountLock;

struct Connection {
    addr: Addr<ConnectionActor>,
    account: Arc<AccountConfig>,
    _lock: AccountLock,
}

/// An account that could not start, retried with backoff.
struct StartFailure {
    account: Arc<AccountConfig>,
    attempts: u32,
    error: String,
    next_try: std::time::Instant,
}

pub struct SupervisorActor {
    app: App,
    writer: WriterHandle,
    tick_on_start: bool,
    connections: BTreeMap<String, Connection>,
    start_failures: BTreeMap<String, StartFailure>,
    /// Webhook events of every connection's syncs.
    events: Option<crate::webhooks::Notifier>,
}

/// Wait before the `attempts`-th retry of a start: 2s doubling to 5 min. A
/// lock held by a cron `sync` is usually free within a minute.
pub fn start_backoff(attempts: u32) -> Duration {
    Duration::from_secs(2)
        .saturating_mul(1 << attempts.saturating_sub(1).min(10))
        .min(Duration::from_secs(300))
}

impl SupervisorActor {
    pub fn new(app: App, writer: WriterHandle, tick_on_start: bool) -> Self {
        Self {
            app,
            writer,
            tick_on_start,
            connections: BTreeMap::new(),
            start_failures: BTreeMap::new(),
            events: None,
        }
    }

    /// Connections started from now on emit webhook events through `events`.
    pub fn with_events(mut self, events: crate::webhooks::Notifier) -> Self {
        self.events = Some(events);
        self
    }

    /// Starts `account`, or records the failure and schedules a retry.
    fn try_start(&mut self, account: &Arc<AccountConfig>, ctx: &mut Context<Self>) -> Result<(), String> {
        let id = account.id.clone();
        match self.start_connection(account) {
            Ok(()) => {
                if self.start_failures.remove(&id).is_some() {
                    tracing::info!(account = %id, "connection started after earlier failures");
                }
                Ok(())
            }
            Err(error) => {
                let attempts = self.start_failures.get(&id).map_or(0, |f| f.attempts) + 1;
                let delay = start_backoff(attempts);
                tracing::error!(
                    account = %id,
                    attempts,
                    retry_in_s = delay.as_secs(),
                    error = %error,
                    "connection cannot start; retrying"
                );
                crate::metrics::account_status(&id, account.provider, "start_failed");
                self.start_failures.insert(
                    id.clone(),
                    StartFailure {
                        account: account.clone(),
                        attempts,
                        error: error.clone(),
                        next_try: std::time::Instant::now() + delay,
                    },
                );
                ctx.run_later(delay, move |act, ctx| act.retry_start(&id, ctx));
                Err(error)
            }
        }
    }

    fn retry_start(&mut self, id: &str, ctx: &mut Context<Self>) {
        // Reconciled away, or started by a reconcile meanwhile.
        let Some(failure) = self.start_failures.get(id) else {
            return;
        };
        if self.connections.contains_key(id) || failure.next_try > std::time::Instant::now() {
            return;
        }
        let account = failure.account.clone();
        let _ = self.try_start(&account, ctx);
    }

    fn start_connection(&mut self, account: &Arc<AccountConfig>) -> Result<(), String> {
        let lock = AccountLock::acquire(&self.app.config.state_dir, &account.id).map_err(|e| e.to_string())?;
        let sync = self
            .app
            .account_sync(account, self.writer.sink())
            .map_err(|e| e.to_string())?;
        let schedule = Schedule {
            interval: account.interval,
            jitter: self.app.config.sync.jitter,
            deep_interval: self.app.config.sync.deep_resync_interval,
            verify_interval: self.app.config.sync.verify_interval,
            verify_days: self.app.config.sync.deep_resync_days,
            tick_on_start: self.tick_on_start,
        };
        let life = Arc::new(ConnectionLife::default());
        let events = self.events.clone();
        let addr = actix::Supervisor::start(move |_| {
            let actor = ConnectionActor::new(sync, schedule, life);
            match events {
                Some(events) => actor.with_events(events),
                None => actor,
            }
        });
        tracing::info!(account = %account.id, provider = %account.provider, "connection started");
        self.connections.insert(
            account.id.clone(),
            Connection {
                addr,
                account: account.clone(),
                _lock: lock,
            },
        );
        Ok(())
    }
}

impl Actor for SupervisorActor {
    type Context = Context<Self>;
}

/// What a reconcile did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    /// Accounts that could not start, with the reason.
    pub failed: Vec<(String, String)>,
}

/// Make the running connections match `accounts` (enabled ones only).
#[derive(Message)]
#[rtype(result = "ReconcileReport")]
pub struct Reconcile(pub Vec<Arc<AccountConfig>>);

impl Handler<Reconcile> for SupervisorActor {
    type Result = ResponseActFuture<Self, ReconcileReport>;

    fn handle(&mut self, Reconcile(accounts): Reconcile, _: &mut Self::Context) -> Self::Result {
        let wanted: BTreeMap<String, Arc<AccountConfig>> = accounts
            .into_iter()
            .filter(|a| a.enabled)
            .map(|a| (a.id.clone(), a))
            .collect();
        let mut report = ReconcileReport::default();
        self.start_failures.retain(|id, _| wanted.contains_key(id));
        let mut stopping = Vec::new();
        let ids: Vec<String> = self.connections.keys().cloned().collect();
        for id in ids {
            let changed = match wanted.get(&id) {
                None => {
                    report.stopped.push(id.clone());
                    true
                }
                Some(account) => {
                    // Any field, credentials included (`Secret` compares values).
                    let differs = **account != *self.connections[&id].account;
                    if differs {
                        report.restarted.push(id.clone());
                    }
                    differs
                }
            };
            if changed {
                let connection = self.connections.remove(&id).expect("listed above");
                stopping.push(connection);
            }
        }
        let stop_all = futures::future::join_all(stopping.into_iter().map(|c| async move {
            let _ = c.addr.send(Stop).await;
            // Lock and address are released here, after the sync finished.
            drop(c);
        }));
        Box::pin(stop_all.into_actor(self).map(move |_, act, ctx| {
            for (id, account) in wanted {
                if act.connections.contains_key(&id) {
                    continue;
                }
                match act.try_start(&account, ctx) {
                    Ok(()) => {
                        if !report.restarted.contains(&id) {
                            report.started.push(id);
                        }
                    }
                    Err(err) => report.failed.push((id, err)),
                }
            }
            report
        }))
    }
}

/// What the supervisor runs, for `/readyz`.
#[derive(Debug, Default, Clone, MessageResponse)]
pub struct SupervisorStatus {
    pub running: Vec<String>,
    /// Accounts that cannot start: (account, attempts so far, last error).
    pub start_failures: Vec<(String, u32, String)>,
}

#[derive(Message)]
#[rtype(result = "SupervisorStatus")]
pub struct GetStatus;

impl Handler<GetStatus> for SupervisorActor {
    type Result = SupervisorStatus;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> SupervisorStatus {
        SupervisorStatus {
            running: self.connections.keys().cloned().collect(),
            start_failures: self
                .start_failures
                .iter()
                .map(|(id, f)| (id.clone(), f.attempts, f.error.clone()))
                .collect(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    #[error("no running account '{0}'")]
    UnknownAccount(String),
    #[error("account '{0}' is stopping")]
    Unavailable(String),
}

/// Start a sync of one account now (admin API).
#[derive(Message)]
#[rtype(result = "Result<TriggerOutcome, TriggerError>")]
pub struct Trigger {
    pub account: String,
    pub request: SyncRequest,
}

impl Handler<Trigger> for SupervisorActor {
    type Result = ResponseFuture<Result<TriggerOutcome, TriggerError>>;

    fn handle(&mut self, msg: Trigger, _: &mut Self::Context) -> Self::Result {
        let Some(connection) = self.connections.get(&msg.account) else {
            return Box::pin(async move { Err(TriggerError::UnknownAccount(msg.account)) });
        };
        let addr = connection.addr.clone();
        Box::pin(async move {
            addr.send(TriggerSync(msg.request))
                .await
                .map_err(|_| TriggerError::Unavailable(msg.account))
        })
    }
}

/// Stop every connection, waiting for running syncs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAll;

impl Handler<StopAll> for SupervisorActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopAll, _: &mut Self::Context) -> Self::Result {
        self.start_failures.clear();
        let connections: Vec<Connection> = std::mem::take(&mut self.connections).into_values().collect();
        Box::pin(async move {
            futures::future::join_all(connections.into_iter().map(|c| async move {
                let _ = c.addr.send(Stop).await;
                drop(c);
            }))
            .await;
        })
    }
}
