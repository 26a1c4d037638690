//! The supervisor: one connection actor per enabled account, reconciled from
//! config (added / changed / removed accounts start, restart or stop one actor
//! each). The daemon's lifecycle around it lives in [`crate::daemon`].

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::prelude::*;

use super::connection::{ConnectionActor, ConnectionLife, Schedule, Stop, TriggerSync};
use super::writer::WriterHandle;
use crate::app::App;
use crate::config::AccountConfig;
use crate::lock::AccountLock;
use crate::sync::window::SyncKind;

struct Connection {
    addr: Addr<ConnectionActor>,
    account: AccountConfig,
    _lock: AccountLock,
}

pub struct SupervisorActor {
    app: App,
    writer: WriterHandle,
    tick_on_start: bool,
    connections: BTreeMap<String, Connection>,
}

impl SupervisorActor {
    pub fn new(app: App, writer: WriterHandle, tick_on_start: bool) -> Self {
        Self {
            app,
            writer,
            tick_on_start,
            connections: BTreeMap::new(),
        }
    }

    fn start_connection(&mut self, account: &AccountConfig) -> Result<(), String> {
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
        let addr = actix::Supervisor::start(move |_| ConnectionActor::new(sync, schedule, life));
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
pub struct Reconcile(pub Vec<AccountConfig>);

impl Handler<Reconcile> for SupervisorActor {
    type Result = ResponseActFuture<Self, ReconcileReport>;

    fn handle(&mut self, Reconcile(accounts): Reconcile, _: &mut Self::Context) -> Self::Result {
        let wanted: BTreeMap<String, AccountConfig> = accounts
            .into_iter()
            .filter(|a| a.enabled)
            .map(|a| (a.id.clone(), a))
            .collect();
        let mut report = ReconcileReport::default();
        let mut stopping = Vec::new();
        let ids: Vec<String> = self.connections.keys().cloned().collect();
        for id in ids {
            let changed = match wanted.get(&id) {
                None => {
                    report.stopped.push(id.clone());
                    true
                }
                Some(account) => {
                    let differs = format!("{account:?}") != format!("{:?}", self.connections[&id].account)
                        || account.credentials != self.connections[&id].account.credentials;
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
        Box::pin(stop_all.into_actor(self).map(move |_, act, _| {
            for (id, account) in wanted {
                if act.connections.contains_key(&id) {
                    continue;
                }
                match act.start_connection(&account) {
                    Ok(()) => {
                        if !report.restarted.contains(&id) {
                            report.started.push(id);
                        }
                    }
                    Err(err) => {
                        tracing::error!(account = %id, error = %err, "connection cannot start");
                        crate::metrics::account_status(&id, account.provider, "failed");
                        report.failed.push((id, err));
                    }
                }
            }
            report
        }))
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
#[rtype(result = "Result<bool, TriggerError>")]
pub struct Trigger {
    pub account: String,
    pub kind: SyncKind,
}

impl Handler<Trigger> for SupervisorActor {
    type Result = ResponseFuture<Result<bool, TriggerError>>;

    fn handle(&mut self, msg: Trigger, _: &mut Self::Context) -> Self::Result {
        let Some(connection) = self.connections.get(&msg.account) else {
            return Box::pin(async move { Err(TriggerError::UnknownAccount(msg.account)) });
        };
        let addr = connection.addr.clone();
        Box::pin(async move {
            addr.send(TriggerSync(msg.kind))
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
