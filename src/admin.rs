//! The admin HTTP API (loopback by default): `/metrics`, `/healthz`,
//! `/readyz`, and `POST /v1/accounts/{id}/sync`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::Addr;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;
use serde_json::json;

use crate::actors::supervisor::{GetStatus, SupervisorActor, Trigger, TriggerError};
use crate::store::ClickhouseClient;
use crate::sync::window::SyncKind;

#[derive(Clone)]
pub struct AdminState {
    pub supervisor: Addr<SupervisorActor>,
    pub store: ClickhouseClient,
    /// Set once the schema is migrated; cleared while shutting down.
    pub ready: Arc<AtomicBool>,
}

/// Binds and spawns the server; returns its handle for a graceful stop.
pub fn serve(listen: SocketAddr, state: AdminState) -> std::io::Result<ServerHandle> {
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/v1/accounts/{id}/sync", web::post().to(trigger_sync))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .bind(listen)?
    .run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Ok(handle)
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    if !state.ready.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().body("not ready: schema not migrated yet (or shutting down)\n");
    }
    if let Err(err) = state.store.ping().await {
        return HttpResponse::ServiceUnavailable().body(format!("not ready: {err}\n"));
    }
    let status = state.supervisor.send(GetStatus).await.unwrap_or_default();
    if status.start_failures.is_empty() {
        return HttpResponse::Ok().body(format!("ready: {} accounts running\n", status.running.len()));
    }
    // An account that cannot start is not being synced: say which and why.
    let mut body = format!(
        "not ready: {} accounts running, {} cannot start (retried with backoff):\n",
        status.running.len(),
        status.start_failures.len()
    );
    for (account, attempts, error) in &status.start_failures {
        body.push_str(&format!("  account '{account}' (attempt {attempts}): {error}\n"));
    }
    HttpResponse::ServiceUnavailable().body(body)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncQuery {
    since: Option<String>,
    until: Option<String>,
    #[serde(default)]
    deep: bool,
}

async fn trigger_sync(
    state: web::Data<AdminState>,
    path: web::Path<String>,
    query: web::Query<SyncQuery>,
) -> HttpResponse {
    let account = path.into_inner();
    let kind = match (&query.since, &query.until, query.deep) {
        (None, None, false) => SyncKind::Incremental,
        (None, None, true) => SyncKind::Deep,
        (Some(since), until, false) => {
            let since = match crate::sync::window::parse_time(since) {
                Ok(t) => t,
                Err(e) => return HttpResponse::BadRequest().json(json!({ "error": format!("since: {e}") })),
            };
            let until = match until.as_deref().map(crate::sync::window::parse_time).transpose() {
                Ok(t) => t,
                Err(e) => return HttpResponse::BadRequest().json(json!({ "error": format!("until: {e}") })),
            };
            SyncKind::Explicit { since, until }
        }
        _ => {
            return HttpResponse::BadRequest()
                .json(json!({ "error": "use either deep=true or since[/until], and until only with since" }))
        }
    };
    match state
        .supervisor
        .send(Trigger {
            account: account.clone(),
            kind,
        })
        .await
    {
        Ok(Ok(started)) => HttpResponse::Accepted().json(json!({
            "account": account,
            "status": if started { "started" } else { "queued after the running sync" },
        })),
        Ok(Err(err @ TriggerError::UnknownAccount(_))) => {
            HttpResponse::NotFound().json(json!({ "error": err.to_string() }))
        }
        Ok(Err(err)) => HttpResponse::ServiceUnavailable().json(json!({ "error": err.to_string() })),
        Err(_) => HttpResponse::ServiceUnavailable().json(json!({ "error": "supervisor is not running" })),
    }
}
