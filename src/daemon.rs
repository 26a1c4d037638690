//! The daemon's lifecycle: migrate (retrying while ClickHouse is down),
//! start the writer, the supervisor and the admin API, run until SIGTERM or
//! SIGINT, then stop within systemd's default 90s stop timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::supervisor::{StopAll, SupervisorActor};
use crate::actors::writer::WriterActor;
use crate::app::App;
use crate::store::migrations;
use crate::store::sink::RowSink;

/// How long a stopping daemon waits for running syncs before abandoning them
/// (an abandoned sync never moved its watermark, so nothing is lost).
/// With [`FLUSH_GRACE`] it stays under systemd's default 90s stop timeout.
const STOP_GRACE: Duration = Duration::from_secs(45);
/// How long a stopping daemon waits for the writer to store buffered rows.
const FLUSH_GRACE: Duration = Duration::from_secs(25);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    AdminToken(String),
    #[error("admin API cannot listen on {addr}: {source}")]
    Admin {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The daemon: migrate, start the writer, the connections and the admin API,
/// run until SIGTERM/SIGINT (reloading the config from `config_path` on
/// SIGHUP and `POST /v1/reload`), then stop cleanly. Returns the exit code.
pub async fn run_daemon(app: App, config_path: std::path::PathBuf) -> Result<i32, DaemonError> {
    // Installed first: SIGHUP's default action would end the process.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .expect("SIGHUP handler can be installed");
    raise_open_file_limit(app.config.accounts.len());
    if let Err(err) = app.config.check_state_dir() {
        // Not fatal: the accounts show `start_failed` and are retried, so a
        // directory fixed while the daemon runs is picked up.
        tracing::error!(error = %err, "state_dir is not usable; accounts cannot start until it is");
    }
    let admin_token = match app.config.admin.token.as_ref().map(|t| t.resolve()).transpose() {
        Ok(token) => token,
        Err(problem) => return Err(DaemonError::AdminToken(problem)),
    };
    if admin_token.is_some() {
        tracing::info!(listen = %app.config.admin.listen, "admin API requires a bearer token on every route but /healthz");
    }
    let ready = Arc::new(AtomicBool::new(false));
    let writer = WriterActor::start_watching(app.store.clone(), app.config.writer.clone(), app.sync_slots.clone());
    let events = crate::webhooks::Notifier::start(&app.config.webhooks);
    let supervisor = SupervisorActor::new(app.clone(), writer.clone(), true)
        .with_events(events.clone())
        .start();
    let access = Arc::new(crate::admin::AdminAccess::new(&app.config, &app.retry, admin_token));
    let reloader = Arc::new(crate::reload::Reloader::new(
        config_path,
        app.config.clone(),
        supervisor.clone(),
        events,
        access.clone(),
    ));
    let admin = crate::admin::serve(
        app.config.admin.listen,
        crate::admin::AdminState {
            supervisor: supervisor.clone(),
            store: app.store.clone(),
            ready: ready.clone(),
            access,
            reloader: Some(reloader.clone()),
        },
    )
    .map_err(|source| DaemonError::Admin {
        addr: app.config.admin.listen,
        source,
    })?;
    tracing::info!(listen = %app.config.admin.listen, "admin API listening");
    let startup = async {
        wait_for_schema(&app).await;
        ready.store(true, Ordering::SeqCst);
        let report = reloader.start().await;
        tracing::info!(
            started = report.started.len(),
            failed = report.failed.len(),
            "accounts reconciled"
        );
        housekeeping(&app).await;
    };
    let reloads = async {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received; reloading the config");
            // Logged and counted inside; a rejected config keeps the old one.
            let _ = reloader.reload("sighup").await;
        }
    };
    tokio::select! {
        _ = futures::future::join(startup, reloads) => {}
        _ = crate::shutdown::signal() => {}
    }
    ready.store(false, Ordering::SeqCst);
    // No reload after this point (one in progress finishes first).
    let stop_all = async {
        reloader.stop().await;
        supervisor.send(StopAll).await
    };
    if tokio::time::timeout(STOP_GRACE, stop_all).await.is_err() {
        tracing::warn!("running syncs did not finish in time; abandoned (their windows will be synced again)");
    }
    match tokio::time::timeout(FLUSH_GRACE, writer.flush()).await {
        Ok(Ok(())) => tracing::info!("writer flushed"),
        _ => tracing::warn!(
            buffered = writer.buffered_rows(),
            "writer could not flush in time; unstored rows will be synced again"
        ),
    }
    admin.stop(true).await;
    tracing::info!("stopped");
    Ok(0)
}

/// Migrates, retrying while ClickHouse is unreachable.
async fn wait_for_schema(app: &App) {
    let mut delay = Duration::from_secs(1);
    loop {
        match migrations::migrate(&app.store).await {
            Ok(report) => {
                tracing::info!(
                    applied = report.applied.len(),
                    pending = report.pending_unsupported.len(),
                    "schema ready"
                );
                return;
            }
            Err(err) => {
                tracing::error!(error = %err, retry_in_s = delay.as_secs(), "migration failed; is ClickHouse up?");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Daily chores that never end: dropping old `sync_runs` partitions on
/// servers without TTL.
async fn housekeeping(app: &App) {
    loop {
        match app.store.server_version().await {
            Ok(version) if version < (19, 6) => {
                match crate::store::state::prune_sync_runs(&app.store, 30, chrono::Utc::now()).await {
                    Ok(dropped) if dropped > 0 => tracing::info!(dropped, "old sync_runs partitions dropped"),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(error = %err, "pruning sync_runs failed"),
                }
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(86_400)).await;
    }
}

/// Raises the soft open-file limit to the hard one: every account holds its
/// lock file open for the process's life, and connections come on top. A
/// shell's soft limit is often 1,024; the systemd unit sets `LimitNOFILE`.
/// Warns when even the hard limit leaves too little room.
fn raise_open_file_limit(accounts: usize) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    let needed = accounts as u64 + 1_024;
    if limit.rlim_cur < needed {
        tracing::warn!(
            open_file_limit = limit.rlim_cur,
            needed,
            "the open-file limit is low for this many accounts (one lock file each plus connections); raise LimitNOFILE"
        );
    }
}
