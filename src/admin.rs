//! The admin HTTP API (loopback by default): `/metrics`, `/healthz`,
//! `/readyz`, `POST /v1/accounts/{id}/sync`, `POST /v1/accounts/{id}/test`
//! and `POST /v1/reload` (re-read the config file, see [`crate::reload`]).
//!
//! Locked down because it can make the daemon spend provider requests (and
//! Cost Explorer money) and shows account errors:
//! - anywhere but loopback it requires a bearer token (config refuses to
//!   start otherwise); with a token, every route but `/healthz` needs it;
//! - POSTs must carry `Content-Type: application/json` or an
//!   `X-Tokentra-Request` header, and any request a browser marks as coming
//!   from another site (`Origin`, `Sec-Fetch-Site: cross-site`) is refused, so
//!   a web page cannot trigger syncs;
//! - manual syncs are rate limited per account and their window is bounded
//!   (`admin.max_manual_window_days`, default the account's backfill depth);
//! - an accepted request answers with the run id `sync_runs` records it
//!   under, and is never dropped silently (a second manual request while one
//!   is queued is refused with 409 and the queued run id).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix::Addr;
use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use crate::actors::connection::{SyncRequest, TriggerOutcome};
use crate::actors::supervisor::{GetStatus, SupervisorActor, Trigger, TriggerError};
use crate::config::Secret;
use crate::store::ClickhouseClient;
use crate::sync::window::SyncKind;

#[derive(Clone)]
pub struct AdminState {
    pub supervisor: Addr<SupervisorActor>,
    pub store: ClickhouseClient,
    /// Set once the schema is migrated; cleared while shutting down.
    pub ready: Arc<AtomicBool>,
    pub access: Arc<AdminAccess>,
    /// `POST /v1/reload`; `None` where the daemon has no config file.
    pub reloader: Option<Arc<crate::reload::Reloader>>,
}

/// Who may do what through the admin API.
pub struct AdminAccess {
    /// Required as `Authorization: Bearer <token>` when set.
    pub token: Option<Secret>,
    /// Largest manual window per account, in days (replaced on reload).
    max_window_days: RwLock<HashMap<String, u32>>,
    pub min_interval: Duration,
    /// When each account's last manual sync (or test) was accepted.
    pub last_manual: Mutex<HashMap<String, Instant>>,
    /// For `POST /v1/accounts/{id}/test` (replaced on reload).
    accounts: RwLock<HashMap<String, std::sync::Arc<crate::config::AccountConfig>>>,
    pub retry: crate::providers::RetryPolicy,
}

impl AdminAccess {
    /// Access rules from the config: `max_days` overrides every account's
    /// backfill depth when set.
    pub fn new(
        config: &crate::config::ValidatedConfig,
        retry: &crate::providers::RetryPolicy,
        token: Option<Secret>,
    ) -> Self {
        Self {
            token,
            max_window_days: RwLock::new(Self::window_days(config)),
            min_interval: config.admin.manual_sync_min_interval,
            last_manual: Mutex::new(HashMap::new()),
            accounts: RwLock::new(config.accounts.iter().map(|a| (a.id.clone(), a.clone())).collect()),
            retry: retry.clone(),
        }
    }

    fn window_days(config: &crate::config::ValidatedConfig) -> HashMap<String, u32> {
        config
            .accounts
            .iter()
            .map(|a| {
                (
                    a.id.clone(),
                    config.admin.max_manual_window_days.unwrap_or(a.backfill_days),
                )
            })
            .collect()
    }

    /// The accounts of a reloaded config (added ones become reachable,
    /// removed ones 404).
    pub fn update_accounts(&self, config: &crate::config::ValidatedConfig) {
        *self.max_window_days.write().unwrap_or_else(|p| p.into_inner()) = Self::window_days(config);
        *self.accounts.write().unwrap_or_else(|p| p.into_inner()) =
            config.accounts.iter().map(|a| (a.id.clone(), a.clone())).collect();
    }

    fn max_days(&self, account: &str) -> Option<u32> {
        self.max_window_days
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(account)
            .copied()
    }

    fn account(&self, id: &str) -> Option<std::sync::Arc<crate::config::AccountConfig>> {
        self.accounts.read().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
    }

    /// `None` when the request may proceed; the refusal otherwise.
    fn check_token(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let token = self.token.as_ref()?;
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            None
        } else {
            Some(
                HttpResponse::Unauthorized()
                    .insert_header(("WWW-Authenticate", "Bearer"))
                    .json(json!({ "error": "a bearer token is required (Authorization: Bearer <admin token>)" })),
            )
        }
    }
}

impl AdminAccess {
    /// 429 when `key` had a manual request accepted too recently.
    fn too_soon(&self, key: &str) -> Option<HttpResponse> {
        let last = self.last_manual.lock().unwrap_or_else(|p| p.into_inner());
        let wait = last
            .get(key)
            .and_then(|at| self.min_interval.checked_sub(at.elapsed()))?;
        Some(
            HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", wait.as_secs().max(1).to_string()))
                .json(json!({ "error": format!("'{key}' was asked less than {}s ago", self.min_interval.as_secs()) })),
        )
    }

    fn accepted(&self, key: &str) {
        self.last_manual
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), Instant::now());
    }
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Refuses what a browser sends on behalf of another site, and POSTs that
/// a plain HTML form could make.
fn check_post(req: &HttpRequest) -> Option<HttpResponse> {
    let headers = req.headers();
    let cross_site = headers.contains_key(actix_web::http::header::ORIGIN)
        || headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v != "same-origin" && v != "none");
    if cross_site {
        return Some(HttpResponse::Forbidden().json(json!({
            "error": "requests from web pages are refused: call the admin API from a script or the CLI"
        })));
    }
    let json_body = headers
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json_body && !headers.contains_key("x-tokentra-request") {
        return Some(HttpResponse::UnsupportedMediaType().json(json!({
            "error": "send Content-Type: application/json (a JSON body, {} is fine) or an X-Tokentra-Request header"
        })));
    }
    None
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
            .route("/v1/accounts/{id}/test", web::post().to(test_account))
            .route("/v1/reload", web::post().to(reload))
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

async fn metrics(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Some(refusal) = state.access.check_token(&req) {
        return refusal;
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::render())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

async fn readyz(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Some(refusal) = state.access.check_token(&req) {
        return refusal;
    }
    if !state.ready.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().body("not ready: schema not migrated yet (or shutting down)\n");
    }
    if let Err(err) = state.store.ping().await {
        return HttpResponse::ServiceUnavailable().body(format!("not ready: {err}\n"));
    }
    let status = state.supervisor.send(GetStatus).await.unwrap_or_default();
    // Accounts that run but whose last sync failed: the daemon is ready, the
    // account is not well; say which (details: `tokentra-sync status`).
    let statuses = crate::metrics::account_statuses();
    let unwell: Vec<String> = status
        .running
        .iter()
        .filter_map(|id| {
            let s = statuses.get(id)?;
            matches!(s.as_str(), "error" | "disconnected").then(|| format!("  account '{id}': {s}\n"))
        })
        .collect();
    if status.start_failures.is_empty() {
        return HttpResponse::Ok().body(format!(
            "ready: {} accounts running, {} with a failed last sync\n{}",
            status.running.len(),
            unwell.len(),
            unwell.concat()
        ));
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

/// What a manual sync asks for: the JSON body and/or query parameters
/// (`since`/`until` as a date or RFC 3339 time, or `deep`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncParams {
    since: Option<String>,
    until: Option<String>,
    #[serde(default)]
    deep: bool,
}

fn bad_request(message: impl Into<String>) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": message.into() }))
}

/// The sync a request asks for, with its window checked against `max_days`.
fn requested_kind(params: &SyncParams, max_days: u32) -> Result<SyncKind, Box<HttpResponse>> {
    let now = Utc::now();
    let max = chrono::Duration::days(i64::from(max_days));
    match (&params.since, &params.until, params.deep) {
        (None, None, false) => Ok(SyncKind::Incremental),
        (None, None, true) => Ok(SyncKind::Deep),
        (Some(since), until, false) => {
            let since =
                crate::sync::window::parse_time(since).map_err(|e| Box::new(bad_request(format!("since: {e}"))))?;
            let until = until
                .as_deref()
                .map(crate::sync::window::parse_time)
                .transpose()
                .map_err(|e| Box::new(bad_request(format!("until: {e}"))))?;
            let end = until.unwrap_or(now);
            if end <= since {
                return Err(Box::new(bad_request(
                    "until must be after since (the window is [since, until))",
                )));
            }
            if end - since > max || since < now - max {
                return Err(Box::new(bad_request(format!(
                    "the window reaches back more than {max_days} days (admin.max_manual_window_days, default the \
                     account's backfill_days); ask for a shorter window or raise the limit"
                ))));
            }
            Ok(SyncKind::Explicit { since, until })
        }
        _ => Err(Box::new(bad_request(
            "use either deep=true or since[/until], and until only with since",
        ))),
    }
}

async fn trigger_sync(
    req: HttpRequest,
    state: web::Data<AdminState>,
    path: web::Path<String>,
    query: web::Query<SyncParams>,
    body: web::Bytes,
) -> HttpResponse {
    if let Some(refusal) = state.access.check_token(&req).or_else(|| check_post(&req)) {
        return refusal;
    }
    let account = path.into_inner();
    let Some(max_days) = state.access.max_days(&account) else {
        return HttpResponse::NotFound().json(json!({ "error": format!("no account '{account}'") }));
    };
    let params = if body.iter().all(u8::is_ascii_whitespace) {
        query.into_inner()
    } else {
        match serde_json::from_slice::<SyncParams>(&body) {
            Ok(params) => params,
            Err(e) => return bad_request(format!("the body is not a sync request: {e}")),
        }
    };
    let kind = match requested_kind(&params, max_days) {
        Ok(kind) => kind,
        Err(response) => return *response,
    };
    if let Some(refusal) = state.access.too_soon(&account) {
        return refusal;
    }
    let run_id = format!("manual-{account}-{}", Utc::now().timestamp_micros());
    let request = SyncRequest {
        kind,
        run_id: Some(run_id.clone()),
    };
    match state
        .supervisor
        .send(Trigger {
            account: account.clone(),
            request,
        })
        .await
    {
        Ok(Ok(outcome @ (TriggerOutcome::Started | TriggerOutcome::Queued))) => {
            state.access.accepted(&account);
            HttpResponse::Accepted().json(json!({
                "account": account,
                "run_id": run_id,
                "status": if outcome.started() { "started" } else { "queued after the running sync" },
                "sync_runs": format!("SELECT * FROM sync_runs WHERE startsWith(run_id, '{run_id}')"),
            }))
        }
        Ok(Ok(TriggerOutcome::AlreadyQueued { run_id: queued })) => HttpResponse::Conflict().json(json!({
            "error": "a manual sync of this account is already queued; this one was not accepted",
            "queued_run_id": queued,
        })),
        Ok(Ok(TriggerOutcome::Stopping)) | Ok(Err(TriggerError::Unavailable(_))) => {
            HttpResponse::ServiceUnavailable().json(json!({ "error": format!("account '{account}' is stopping") }))
        }
        Ok(Err(err @ TriggerError::UnknownAccount(_))) => {
            HttpResponse::NotFound().json(json!({ "error": err.to_string() }))
        }
        Err(_) => HttpResponse::ServiceUnavailable().json(json!({ "error": "supervisor is not running" })),
    }
}

/// Tests an account's credentials (one or two cheap provider calls, 30s at
/// most); rate limited like manual syncs. 200 with the verdict either way:
/// the request worked, the credential may not have.
async fn test_account(req: HttpRequest, state: web::Data<AdminState>, path: web::Path<String>) -> HttpResponse {
    if let Some(refusal) = state.access.check_token(&req).or_else(|| check_post(&req)) {
        return refusal;
    }
    let id = path.into_inner();
    let Some(account) = state.access.account(&id) else {
        return HttpResponse::NotFound().json(json!({ "error": format!("no account '{id}'") }));
    };
    let limiter_key = format!("test:{id}");
    if let Some(refusal) = state.access.too_soon(&limiter_key) {
        return refusal;
    }
    state.access.accepted(&limiter_key);
    let report = crate::connection_test::test_account(&account, &state.access.retry).await;
    HttpResponse::Ok().json(json!({
        "account": report.account,
        "provider": report.provider,
        "verdict": report.verdict.as_str(),
        "latency_ms": report.latency.as_millis() as u64,
        "message": report.to_string(),
    }))
}

/// Re-reads the config file. 200 with what changed; 422 with the reason
/// when the new config is invalid or needs a restart (the running config is
/// kept); 503 while the daemon starts or stops.
async fn reload(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    if let Some(refusal) = state.access.check_token(&req).or_else(|| check_post(&req)) {
        return refusal;
    }
    let Some(reloader) = state.reloader.clone() else {
        return HttpResponse::NotFound().json(json!({ "error": "this process has no config file to reload" }));
    };
    match reloader.reload("admin").await {
        Ok(outcome) => HttpResponse::Ok().json(outcome),
        Err(err @ (crate::reload::ReloadError::Invalid(_) | crate::reload::ReloadError::RestartRequired(_))) => {
            HttpResponse::UnprocessableEntity().json(json!({ "error": err.to_string(), "result": err.result() }))
        }
        Err(err) => {
            HttpResponse::ServiceUnavailable().json(json!({ "error": err.to_string(), "result": err.result() }))
        }
    }
}
