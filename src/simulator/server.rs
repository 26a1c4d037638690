//! The HTTP side: shared state, dispatch to the registered providers, fault
//! injection, request counting and the `/_sim/*` control endpoints.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, RwLock};

use crate::providers::json::Json;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::data::{Restatement, TruthRow, World};
use super::faults::{Fault, FaultPlan, Faults, OrgFault};
use super::providers::{self, SimRequest, SimulatedProvider, TruthOptions};

/// A provider answer before it becomes an HTTP response.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
    /// A body that is not JSON (AWS's CBOR and XML protocols) and its
    /// content type; `body` is ignored when set.
    pub raw: Option<(Vec<u8>, &'static str)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body,
            retry_after: None,
            raw: None,
        }
    }

    pub fn raw(status: u16, body: Vec<u8>, content_type: &'static str) -> Self {
        Reply {
            raw: Some((body, content_type)),
            ..Reply::json(status, Value::Null)
        }
    }
}

/// One provider request as it came, for a client to send again: the scale
/// benchmark replays a first sync's requests to time the simulator serving
/// them alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The body, base64 (AWS's protocols send binary CBOR).
    pub body_base64: String,
    /// The status it was answered with.
    pub status: u16,
}

/// Requests served for one (path, status).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    pub path: String,
    pub status: u16,
    pub count: u64,
}

/// Everything the handlers share. Data itself is not stored: it is
/// regenerated from the seed on every request.
pub(crate) struct SimState {
    pub seed: u64,
    pub orgs: u32,
    pub history_days: u32,
    pub faults: Mutex<Faults>,
    /// Orgs broken on every request (see [`OrgFault`]).
    pub org_faults: RwLock<HashMap<String, OrgFault>>,
    pub restatements: RwLock<Vec<Restatement>>,
    pub stats: Mutex<BTreeMap<(String, u16), u64>>,
    /// Per request path (provider, org and endpoint): the next request to it
    /// should not come before this, since a 429 asked the client to wait
    /// (`Retry-After`). Per path, because requests to other endpoints that
    /// were already in flight when the 429 was sent could not have known.
    pub not_before: Mutex<HashMap<String, std::time::Instant>>,
    /// Requests that came before the `Retry-After` they were given expired.
    pub too_early: std::sync::atomic::AtomicU64,
    pub names: RwLock<super::names::NameControls>,
    /// Seconds the simulated clock runs ahead of the real one (`/_sim/clock`):
    /// a benchmark lets an hour pass without waiting for it.
    pub clock_ahead: std::sync::atomic::AtomicI64,
    /// Every provider request served, when recording (`record_requests`).
    pub recorded: Option<Mutex<Vec<RecordedRequest>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimState {
    pub fn new(seed: u64, orgs: u32, history_days: u32) -> Self {
        SimState {
            seed,
            orgs,
            history_days,
            faults: Mutex::new(Faults::default()),
            org_faults: RwLock::new(HashMap::new()),
            restatements: RwLock::new(Vec::new()),
            stats: Mutex::new(BTreeMap::new()),
            not_before: Mutex::new(HashMap::new()),
            too_early: Default::default(),
            clock_ahead: Default::default(),
            names: RwLock::new(Default::default()),
            recorded: None,
        }
    }

    fn record(&self, req: &HttpRequest, body: &[u8], status: u16) {
        use base64::Engine as _;
        let Some(recorded) = &self.recorded else {
            return;
        };
        let request = RecordedRequest {
            method: req.method().to_string(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.path().to_string(), |p| p.to_string()),
            headers: req
                .headers()
                .iter()
                .map(|(name, value)| (name.to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
                .collect(),
            body_base64: base64::engine::general_purpose::STANDARD.encode(body),
            status,
        };
        lock(recorded).push(request);
    }

    /// Counts a request that ignored a `Retry-After`, and remembers a new one.
    fn watch_retry_after(&self, path: &str, asked: Option<u64>) {
        let key = path.to_string();
        let mut map = lock(&self.not_before);
        let now = std::time::Instant::now();
        if map.get(&key).is_some_and(|until| now < *until) {
            self.too_early.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(secs) = asked {
            map.insert(key, now + std::time::Duration::from_secs(secs));
        }
    }

    /// Whether `org` is one of `org-1 ..= org-{orgs}` (parsed, not listed:
    /// a benchmark serves 10,000 orgs).
    pub fn org_known(&self, org: &str) -> bool {
        org.strip_prefix("org-")
            .filter(|n| !n.starts_with('0'))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=self.orgs).contains(&n))
    }

    /// Replaces the set of broken orgs.
    pub fn set_org_faults(&self, faults: HashMap<String, OrgFault>) {
        *self.org_faults.write().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    fn org_fault(&self, org: &str) -> Option<OrgFault> {
        self.org_faults
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(org)
            .copied()
    }

    fn restatements(&self) -> Vec<Restatement> {
        self.restatements.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn restate(&self, restatement: Restatement) {
        self.restatements
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(restatement);
    }

    pub fn write_names(&self) -> std::sync::RwLockWriteGuard<'_, super::names::NameControls> {
        self.names.write().unwrap_or_else(|p| p.into_inner())
    }

    fn names(&self) -> super::names::NameControls {
        self.names.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set_faults(&self, plan: FaultPlan) {
        lock(&self.faults).set(plan);
    }

    pub fn stats(&self) -> Vec<StatEntry> {
        lock(&self.stats)
            .iter()
            .map(|((path, status), count)| StatEntry {
                path: path.clone(),
                status: *status,
                count: *count,
            })
            .collect()
    }

    pub fn truth(
        &self,
        provider: &dyn SimulatedProvider,
        org: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        let restatements = self.restatements();
        let world = World {
            seed: self.seed,
            history_days: self.history_days,
            now: self.now(),
            restatements: &restatements,
            names: &super::names::NO_NAMES,
        };
        provider.truth(&world, org, start.timestamp(), end.timestamp(), options)
    }

    /// The simulated present, in Unix seconds.
    pub fn now(&self) -> i64 {
        Utc::now().timestamp() + self.clock_ahead.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count(&self, path: &str, status: u16) {
        *lock(&self.stats).entry((path.to_string(), status)).or_insert(0) += 1;
    }
}

pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/_sim/truth", web::get().to(truth))
        .route("/_sim/faults", web::post().to(faults))
        .route("/_sim/org-faults", web::post().to(org_faults))
        .route("/_sim/restate", web::post().to(restate))
        .route("/_sim/stats", web::get().to(stats))
        .route("/_sim/requests", web::get().to(recorded_requests))
        .route("/_sim/clock", web::post().to(clock))
        .service(web::resource("/{provider}/{org}/{tail:.*}").to(provider_route));
}

/// Every provider request: the provider from the registry, then the next
/// pending fault (before auth, like an overloaded gateway), then auth, then
/// the provider's answer; counted once answered.
async fn provider_route(req: HttpRequest, request_body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    let name = req.match_info().get("provider").unwrap_or_default();
    let Some(provider) = providers::find(name) else {
        return control_error(
            404,
            format!("no simulated provider '{name}' (known: {})", providers::names()),
        );
    };
    let org = req.match_info().get("org").unwrap_or_default();
    let tail = req.match_info().get("tail").unwrap_or_default();
    let request = SimRequest {
        org,
        org_known: state.org_known(org),
        method: req.method().as_str(),
        tail,
        query: req.query_string(),
        headers: req.headers(),
        body: &request_body,
    };
    // A credential in its expired form (`expired_api_key`) is answered as
    // the provider answers an expired or revoked key.
    let expired = ["authorization", "x-api-key"]
        .iter()
        .any(|name| request.header(name).is_some_and(|v| v.ends_with(super::EXPIRED_SUFFIX)));
    let fault = if expired {
        Some(Fault::Expired)
    } else {
        lock(&state.faults)
            .next()
            .or_else(|| state.org_fault(org).map(OrgFault::fault))
    };
    match fault {
        Some(Fault::Slow { ms }) => tokio::time::sleep(std::time::Duration::from_millis(ms)).await,
        // Held without a byte until the client gives up (its timeout drops
        // the connection, which ends this handler).
        Some(Fault::Hang { secs }) => tokio::time::sleep(std::time::Duration::from_secs(secs)).await,
        _ => {}
    }
    let reply = match fault {
        Some(Fault::RateLimit { retry_after }) => provider.rate_limited(retry_after),
        Some(Fault::ServerError) => provider.server_error(),
        Some(Fault::Expired) => provider.expired_credentials(),
        None | Some(Fault::Truncate | Fault::Slow { .. } | Fault::Hang { .. } | Fault::Malformed) => {
            match provider.authorize(&request) {
                Err(refused) => refused,
                // Valid JSON, 200, and not any provider's documented page.
                Ok(()) if fault == Some(Fault::Malformed) => Reply::json(
                    200,
                    json!({"object": "page", "data": "malformed", "results": {"oops": true}, "has_more": "maybe"}),
                ),
                Ok(()) => {
                    let restatements = state.restatements();
                    let names = state.names();
                    let world = World {
                        seed: state.seed,
                        history_days: state.history_days,
                        now: state.now(),
                        restatements: &restatements,
                        names: &names,
                    };
                    provider.route(&world, &request)
                }
            }
        }
    };
    let (mut body, content_type) = match reply.raw {
        Some((bytes, content_type)) => (bytes, content_type),
        None => (serde_json::to_vec(&reply.body).unwrap_or_default(), "application/json"),
    };
    if fault == Some(Fault::Truncate) {
        body.truncate(body.len() / 2);
    }
    state.watch_retry_after(req.path(), reply.retry_after);
    state.count(req.path(), reply.status);
    state.record(&req, &request_body, reply.status);
    tracing::debug!(path = req.path(), status = reply.status, fault = ?fault, "simulator request");
    respond_as(reply.status, reply.retry_after, body, content_type)
}

fn respond(status: u16, retry_after: Option<u64>, body: Vec<u8>) -> HttpResponse {
    respond_as(status, retry_after, body, "application/json")
}

fn respond_as(status: u16, retry_after: Option<u64>, body: Vec<u8>, content_type: &str) -> HttpResponse {
    let mut builder = HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    builder.content_type(content_type);
    if let Some(secs) = retry_after {
        builder.insert_header(("retry-after", secs.to_string()));
    }
    builder.body(body)
}

fn control_error(status: u16, message: impl Into<String>) -> HttpResponse {
    let body = json!({"error": message.into()});
    respond(status, None, body.to_string().into_bytes())
}

fn ok(body: Value) -> HttpResponse {
    respond(200, None, body.to_string().into_bytes())
}

/// A time given as RFC 3339 or as a date (00:00 UTC).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .map(|d| d.and_time(Default::default()).and_utc())
}

async fn truth(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let params = super::query::Params::parse(req.query_string());
    let Some(provider) = params.get("provider").and_then(providers::find) else {
        return control_error(400, format!("provider must be one of {}", providers::names()));
    };
    let org = params.get("org").unwrap_or_default();
    if !state.org_known(org) {
        return control_error(
            404,
            format!("unknown org '{org}' (this simulator serves org-1..org-{})", state.orgs),
        );
    }
    let (Some(start), Some(end)) = (
        params.get("start").and_then(parse_time),
        params.get("end").and_then(parse_time),
    ) else {
        return control_error(400, "start and end must be RFC 3339 times or YYYY-MM-DD dates");
    };
    let options = TruthOptions {
        api: params.get("api").map(str::to_string),
    };
    match state.truth(provider, org, start, end, &options) {
        Ok(rows) => ok(json!({"rows": rows})),
        Err(e) => control_error(400, e),
    }
}

/// `{"org-7": "hang", "org-9": "server_error"}` replaces the broken orgs.
async fn org_faults(body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    match serde_json::from_slice::<HashMap<String, OrgFault>>(&body) {
        Ok(faults) => {
            let broken = faults.len();
            state.set_org_faults(faults);
            ok(json!({"broken_orgs": broken}))
        }
        Err(e) => control_error(400, format!("org faults: {e}")),
    }
}

async fn faults(body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    match serde_json::from_slice::<FaultPlan>(&body) {
        Ok(plan) => {
            state.set_faults(plan);
            ok(json!({"pending": lock(&state.faults).pending()}))
        }
        Err(e) => control_error(400, format!("fault plan: {e}")),
    }
}

/// Parses a restatement request body; the error names the field to fix.
pub(crate) fn parse_restatement(body: &[u8], state: &SimState) -> Result<Restatement, String> {
    let value = Json::parse(body).map_err(|e| format!("restatement body is not JSON: {e}"))?;
    let field = |name: &str| value.get(name).and_then(Json::as_str).map(str::to_string);
    let provider = field("provider")
        .filter(|p| providers::find(p).is_some())
        .ok_or_else(|| format!("field 'provider' must be one of {}", providers::names()))?;
    let org = field("org")
        .filter(|o| state.org_known(o))
        .ok_or("field 'org' must name a simulated org (org-1, ...)")?;
    let day = field("day")
        .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
        .ok_or("field 'day' must be a YYYY-MM-DD date")?;
    let factor = value
        .get("factor")
        .and_then(|f| crate::providers::json::decimal(f, "factor").ok())
        .filter(|f| *f >= Decimal::ZERO && value.get("factor") != Some(&Json::Null))
        .ok_or("field 'factor' must be a non-negative decimal (number or string)")?;
    Ok(Restatement {
        provider,
        org,
        day,
        factor,
    })
}

async fn restate(body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    match parse_restatement(&body, &state) {
        Ok(r) => {
            tracing::info!(provider = %r.provider, org = %r.org, day = %r.day, factor = %r.factor, "simulator restatement");
            state.restate(r);
            ok(json!({"ok": true}))
        }
        Err(e) => control_error(400, e),
    }
}

/// `{"advance_secs": N}` moves the simulated clock N seconds further ahead
/// of the real one: hours that were in the future become complete, and the
/// days they belong to change, as if that much time had passed.
async fn clock(body: web::Bytes, state: web::Data<SimState>) -> HttpResponse {
    let advance = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("advance_secs").and_then(Value::as_i64))
        .filter(|secs| *secs >= 0);
    match advance {
        Some(secs) => {
            let ahead = state.clock_ahead.fetch_add(secs, std::sync::atomic::Ordering::Relaxed) + secs;
            ok(json!({"ahead_secs": ahead}))
        }
        None => control_error(
            400,
            "field 'advance_secs' must be a non-negative whole number of seconds",
        ),
    }
}

async fn recorded_requests(state: web::Data<SimState>) -> HttpResponse {
    match &state.recorded {
        Some(recorded) => ok(json!(*lock(recorded))),
        None => control_error(
            409,
            "this simulator does not record requests: start it with `simulate --record-requests`",
        ),
    }
}

async fn stats(state: web::Data<SimState>) -> HttpResponse {
    let entries = state.stats();
    let total: u64 = entries.iter().map(|e| e.count).sum();
    let too_early = state.too_early.load(std::sync::atomic::Ordering::Relaxed);
    ok(json!({"requests": entries, "total": total, "too_early": too_early}))
}
