//! A provider server that speaks the documented OpenAI and Anthropic Admin API
//! formats and misbehaves on demand, per account and endpoint.
//!
//! Paths: `/{account}/v1/organization/usage/{endpoint}`,
//! `/{account}/v1/organization/costs` (OpenAI, base_url `/{account}/v1`) and
//! `/{account}/v1/organizations/{usage_report/messages,cost_report}`
//! (Anthropic, base_url `/{account}`). Every request is logged with its
//! headers, also those to unknown accounts (the "other origin" of a redirect).
//!
//! Good answers are deterministic: data only on [`DATA_DAYS`] (days relative
//! to the UTC day the mock started), so what a correct sync stores is known
//! exactly ([`expected_daily`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeZone, Utc};
use futures::StreamExt as _;
use serde_json::{json, Value};

/// Days (relative to the mock's start day) that carry usage and cost.
pub const DATA_DAYS: [i64; 4] = [-6, -4, -2, -1];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    OpenAi,
    Anthropic,
}

impl Api {
    pub fn provider(self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Anthropic => "anthropic",
        }
    }

    /// A fake admin key, long enough to be redacted.
    pub fn key(self, account: &str) -> String {
        match self {
            Api::OpenAi => format!("sk-admin-FAKE-hostile-{account}-0123456789abcdef"),
            Api::Anthropic => format!("sk-ant-admin01-FAKE-hostile-{account}-0123456789abcdef"),
        }
    }

    pub fn endpoints(self) -> &'static [&'static str] {
        match self {
            Api::OpenAi => &[
                "completions",
                "embeddings",
                "moderations",
                "images",
                "audio_speeches",
                "audio_transcriptions",
                "vector_stores",
                "file_search_calls",
                "web_search_calls",
                "code_interpreter_sessions",
                "costs",
            ],
            Api::Anthropic => &["usage_report/messages", "cost_report"],
        }
    }
}

/// How one (account, endpoint) answers.
#[derive(Clone, Debug)]
pub enum Behavior {
    Good,
    /// Two pages, the second repeating the last bucket of the first.
    DuplicateBucket,
    /// The good answer plus an empty bucket starting at this time (floored
    /// to the endpoint's width), before the others on page 1.
    OutsideWindow(DateTime<Utc>),
    /// The good answer with the first bucket's results replaced by these.
    Results(Vec<Value>),
    /// Page n brings the n-th bucket of the window (none once they run out)
    /// and always a fresh cursor.
    EndlessPaging,
    /// 302 to the same path and query under this other origin.
    RedirectTo(String),
    /// Reads the request and never answers.
    Hang,
    /// Answers 200 and the start of a page, then never sends the rest.
    Stall,
    /// A 300 MiB page, generated lazily; with or without Content-Length.
    Huge {
        declared_length: bool,
    },
    /// A fixed answer.
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
}

/// One request the mock received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub account: String,
    pub endpoint: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

struct Account {
    api: Api,
    key: String,
}

pub struct MockState {
    base_day: NaiveDate,
    accounts: Mutex<HashMap<String, Account>>,
    behaviors: Mutex<HashMap<(String, String), Behavior>>,
    seen: Mutex<Vec<Seen>>,
    /// Bytes of huge bodies handed to the server so far.
    pub huge_bytes_sent: AtomicU64,
    cursor_seq: AtomicU64,
}

pub struct Mock {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    server: actix_web::dev::ServerHandle,
}

impl Mock {
    pub async fn start() -> Mock {
        let state = Arc::new(MockState {
            base_day: Utc::now().date_naive(),
            accounts: Mutex::new(HashMap::new()),
            behaviors: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            huge_bytes_sent: AtomicU64::new(0),
            cursor_seq: AtomicU64::new(1),
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(handle)))
            .workers(2)
            .disable_signals()
            .shutdown_timeout(1)
            .bind("127.0.0.1:0")
            .expect("the mock binds");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Mock {
            addr,
            state,
            server: handle,
        }
    }

    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn base_day(&self) -> NaiveDate {
        self.state.base_day
    }

    /// Registers an account; returns its `base_url`.
    pub fn add_account(&self, id: &str, api: Api) -> String {
        self.state
            .accounts
            .lock()
            .unwrap()
            .insert(id.to_string(), Account { api, key: api.key(id) });
        match api {
            Api::OpenAi => format!("{}/{id}/v1", self.origin()),
            Api::Anthropic => format!("{}/{id}", self.origin()),
        }
    }

    /// Sets how `endpoints` of `account` answer from now on (`["*"]`: all).
    pub fn set(&self, account: &str, endpoints: &[&str], behavior: Behavior) {
        let mut map = self.state.behaviors.lock().unwrap();
        for endpoint in endpoints {
            map.insert((account.to_string(), endpoint.to_string()), behavior.clone());
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn clear_seen(&self) {
        self.state.seen.lock().unwrap().clear();
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

/// The start of day `offset` relative to the mock's base day.
pub fn day_start(base_day: NaiveDate, offset: i64) -> DateTime<Utc> {
    (base_day + chrono::Duration::days(offset))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// What `usage_daily` must hold per data day for a correctly synced account:
/// (day, input_tokens, output_tokens, requests, cost).
pub fn expected_daily(api: Api, base_day: NaiveDate) -> Vec<(String, i64, i64, i64, String)> {
    DATA_DAYS
        .iter()
        .map(|offset| {
            let day = (base_day + chrono::Duration::days(*offset)).to_string();
            match api {
                Api::OpenAi => (day, 24 * 1200, 24 * 300, 24 * 4, "1.2345679".to_string()),
                Api::Anthropic => (day, 24 * 1200, 24 * 250, 0, "123.456789".to_string()),
            }
        })
        .collect()
}

fn endpoint_of(api: Api, rest: &str) -> Option<String> {
    match api {
        Api::OpenAi => rest
            .strip_prefix("v1/organization/usage/")
            .map(str::to_string)
            .or_else(|| (rest == "v1/organization/costs").then(|| "costs".to_string())),
        Api::Anthropic => rest.strip_prefix("v1/organizations/").map(str::to_string),
    }
}

fn width_of(api: Api, endpoint: &str) -> i64 {
    let daily = match api {
        Api::OpenAi => matches!(endpoint, "costs" | "vector_stores"),
        Api::Anthropic => endpoint == "cost_report",
    };
    if daily {
        86_400
    } else {
        3_600
    }
}

async fn handle(req: HttpRequest, state: web::Data<MockState>) -> HttpResponse {
    let path = req.path().trim_start_matches('/').to_string();
    let (account_id, rest) = path.split_once('/').unwrap_or((path.as_str(), ""));
    let query: Vec<(String, String)> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let known = state
        .accounts
        .lock()
        .unwrap()
        .get(account_id)
        .map(|a| (a.api, a.key.clone()));
    let endpoint = known.as_ref().and_then(|(api, _)| endpoint_of(*api, rest));
    state.seen.lock().unwrap().push(Seen {
        account: account_id.to_string(),
        endpoint: endpoint.clone().unwrap_or_else(|| rest.to_string()),
        query: query.clone(),
        headers: headers.clone(),
    });
    let (Some((api, key)), Some(endpoint)) = (known, endpoint) else {
        return HttpResponse::NotFound().json(json!({"error": {"message": "no such route"}}));
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let authorized = match api {
        Api::OpenAi => header("authorization") == Some(format!("Bearer {key}").as_str()),
        Api::Anthropic => header("x-api-key") == Some(key.as_str()) && header("anthropic-version").is_some(),
    };
    if !authorized {
        return HttpResponse::Unauthorized().json(json!({"error": {"message": "bad credentials"}}));
    }
    let behavior = {
        let map = state.behaviors.lock().unwrap();
        map.get(&(account_id.to_string(), endpoint.clone()))
            .or_else(|| map.get(&(account_id.to_string(), "*".to_string())))
            .cloned()
            .unwrap_or(Behavior::Good)
    };
    let q = |name: &str| param(&query, name);
    let window = match bucket_starts(api, &endpoint, &query) {
        Ok(w) => w,
        Err(e) => return HttpResponse::BadRequest().json(json!({"error": {"message": e}})),
    };
    let width = width_of(api, &endpoint);
    let base_day = state.base_day;
    let bucket = |start: i64, results: Option<Vec<Value>>| {
        let results = results.unwrap_or_else(|| good_results(api, &endpoint, start, base_day));
        bucket_json(api, start, width, results)
    };
    let page = |buckets: Vec<Value>, next: Option<String>| page_json(buckets, next);
    let page_param = q("page");
    match behavior {
        Behavior::Good => {
            let limit: usize = q("limit").and_then(|l| l.parse().ok()).unwrap_or(7);
            let offset: usize = page_param.and_then(decode_cursor).unwrap_or(0);
            let end = (offset + limit).min(window.len());
            let buckets = window[offset.min(end)..end].iter().map(|s| bucket(*s, None)).collect();
            let next = (end < window.len()).then(|| encode_cursor(end));
            ok(page(buckets, next))
        }
        Behavior::DuplicateBucket if window.is_empty() => ok(page(Vec::new(), None)),
        Behavior::DuplicateBucket => {
            let mid = window.len() / 2;
            if page_param.is_none() {
                let buckets = window[..=mid].iter().map(|s| bucket(*s, None)).collect();
                ok(page(buckets, Some("page_dup_2".to_string())))
            } else {
                let buckets = window[mid..].iter().map(|s| bucket(*s, None)).collect();
                ok(page(buckets, None))
            }
        }
        Behavior::OutsideWindow(at) => {
            let outside = at.timestamp() - at.timestamp().rem_euclid(width);
            let mut buckets = vec![bucket(outside, Some(Vec::new()))];
            buckets.extend(window.iter().map(|s| bucket(*s, None)));
            ok(page(buckets, None))
        }
        Behavior::Results(results) => {
            let buckets = window
                .iter()
                .enumerate()
                .map(|(i, s)| bucket(*s, (i == 0).then(|| results.clone())))
                .collect();
            ok(page(buckets, None))
        }
        Behavior::EndlessPaging => {
            // Page n (1-based) carries bucket n-1 while there is one.
            let n: usize = match page_param {
                None => 1,
                Some(cursor) => cursor.split('_').nth(2).and_then(|n| n.parse().ok()).unwrap_or(1),
            };
            let buckets = window.get(n - 1).map(|s| vec![bucket(*s, None)]).unwrap_or_default();
            let fresh = state.cursor_seq.fetch_add(1, Ordering::Relaxed);
            ok(page(buckets, Some(format!("page_endless_{}_{fresh:016x}", n + 1))))
        }
        Behavior::RedirectTo(origin) => {
            let target = match req.query_string() {
                "" => format!("{origin}{}", req.path()),
                qs => format!("{origin}{}?{qs}", req.path()),
            };
            HttpResponse::Found().insert_header(("location", target)).finish()
        }
        Behavior::Hang => {
            futures::future::pending::<()>().await;
            unreachable!()
        }
        Behavior::Stall => {
            let head = futures::stream::once(async {
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(br#"{"object":"page","data":["#))
            });
            HttpResponse::Ok()
                .content_type("application/json")
                .streaming(head.chain(futures::stream::pending()))
        }
        Behavior::Huge { declared_length } => huge(&state, declared_length),
        Behavior::Status { status, headers, body } => {
            let mut builder = HttpResponse::build(StatusCode::from_u16(status).unwrap());
            for (name, value) in headers {
                builder.insert_header((name, value));
            }
            builder.content_type("application/json").body(body)
        }
    }
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn ok(body: Value) -> HttpResponse {
    HttpResponse::Ok().json(body)
}

/// The bucket starts the request asks for, as the real APIs answer: OpenAI
/// every bucket starting before `end_time`; Anthropic only whole buckets
/// ending by `ending_at`.
fn bucket_starts(api: Api, endpoint: &str, query: &[(String, String)]) -> Result<Vec<i64>, String> {
    let q = |name: &str| param(query, name);
    let width = width_of(api, endpoint);
    let (start, end, whole_only) = match api {
        Api::OpenAi => {
            let start: i64 = q("start_time").and_then(|v| v.parse().ok()).ok_or("start_time")?;
            let end: i64 = q("end_time").and_then(|v| v.parse().ok()).ok_or("end_time")?;
            (start, end, false)
        }
        Api::Anthropic => {
            let parse = |name: &str| {
                q(name)
                    .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                    .map(|t| t.timestamp())
                    .ok_or(format!("{name} is not RFC 3339"))
            };
            (parse("starting_at")?, parse("ending_at")?, true)
        }
    };
    let expected_width = if width == 86_400 { "1d" } else { "1h" };
    if q("bucket_width") != Some(expected_width) {
        return Err(format!("bucket_width must be {expected_width}"));
    }
    let mut out = Vec::new();
    let mut t = start;
    while t < end && (!whole_only || t + width <= end) {
        out.push(t);
        t += width;
    }
    Ok(out)
}

fn rfc3339(secs: i64) -> String {
    Utc.timestamp_opt(secs, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn bucket_json(api: Api, start: i64, width: i64, results: Vec<Value>) -> Value {
    match api {
        Api::OpenAi => json!({"object": "bucket", "start_time": start, "end_time": start + width, "results": results}),
        Api::Anthropic => {
            json!({"starting_at": rfc3339(start), "ending_at": rfc3339(start + width), "results": results})
        }
    }
}

fn page_json(buckets: Vec<Value>, next: Option<String>) -> Value {
    json!({"object": "page", "data": buckets, "has_more": next.is_some(), "next_page": next})
}

fn encode_cursor(offset: usize) -> String {
    format!(
        "page_{}",
        base64::engine::general_purpose::STANDARD.encode(format!("offset:{offset}"))
    )
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(cursor.strip_prefix("page_")?)
        .ok()?;
    String::from_utf8(bytes).ok()?.strip_prefix("offset:")?.parse().ok()
}

fn is_data_day(base_day: NaiveDate, start: i64) -> bool {
    let day = Utc.timestamp_opt(start, 0).unwrap().date_naive();
    DATA_DAYS
        .iter()
        .any(|offset| base_day + chrono::Duration::days(*offset) == day)
}

/// The results of one good bucket.
fn good_results(api: Api, endpoint: &str, start: i64, base_day: NaiveDate) -> Vec<Value> {
    if !is_data_day(base_day, start) {
        return Vec::new();
    }
    match (api, endpoint) {
        (Api::OpenAi, "completions") => vec![openai_completion("gpt-4o-mini-2024-07-18", 1200, 300)],
        (Api::OpenAi, "costs") => vec![
            openai_cost("gpt-4o-mini-2024-07-18, input", json!("1.234567891")),
            openai_cost("gpt-4o-mini-2024-07-18, output", json!("0.000000009")),
        ],
        (Api::Anthropic, "usage_report/messages") => vec![anthropic_usage(1000, 150, 250)],
        (Api::Anthropic, "cost_report") => vec![anthropic_cost(json!("12345.6789"))],
        _ => Vec::new(),
    }
}

pub fn openai_completion(model: &str, input: impl Into<Value>, output: impl Into<Value>) -> Value {
    json!({
        "object": "organization.usage.completions.result",
        "input_tokens": input.into(),
        "output_tokens": output.into(),
        "input_cached_tokens": 200,
        "input_audio_tokens": 0,
        "output_audio_tokens": 0,
        "num_model_requests": 4,
        "project_id": null,
        "user_id": null,
        "api_key_id": null,
        "model": model,
        "batch": false,
        "service_tier": null
    })
}

pub fn openai_cost(line_item: &str, value: Value) -> Value {
    json!({
        "object": "organization.costs.result",
        "amount": {"value": value, "currency": "usd"},
        "line_item": line_item,
        "project_id": null,
        "api_key_id": null
    })
}

/// Input = uncached + cache reads + cache writes (40 + 10).
pub fn anthropic_usage(uncached: impl Into<Value>, cache_read: impl Into<Value>, output: impl Into<Value>) -> Value {
    json!({
        "uncached_input_tokens": uncached.into(),
        "cache_read_input_tokens": cache_read.into(),
        "cache_creation": {"ephemeral_5m_input_tokens": 40, "ephemeral_1h_input_tokens": 10},
        "output_tokens": output.into(),
        "server_tool_use": {"web_search_requests": 0},
        "api_key_id": null,
        "workspace_id": null,
        "model": "claude-sonnet-4-20250514",
        "service_tier": "standard",
        "context_window": "0-200k"
    })
}

/// `amount` is cents.
pub fn anthropic_cost(amount: Value) -> Value {
    json!({
        "currency": "USD",
        "amount": amount,
        "workspace_id": null,
        "description": "Claude Sonnet 4 Usage - Input Tokens",
        "cost_type": "tokens",
        "model": "claude-sonnet-4-20250514",
        "token_type": "uncached_input_tokens",
        "service_tier": "standard",
        "context_window": "0-200k"
    })
}

/// Size of the huge page: far above any `max_response_mb` a test sets.
pub const HUGE_BYTES: u64 = 300 * 1024 * 1024;

fn huge(state: &web::Data<MockState>, declared_length: bool) -> HttpResponse {
    const CHUNK: usize = 64 * 1024;
    let head = bytes::Bytes::from_static(br#"{"object":"page","has_more":false,"next_page":null,"data":["#);
    let one = br#"{"object":"bucket","start_time":0,"end_time":3600,"results":[]},"#;
    let mut chunk = Vec::with_capacity(CHUNK);
    while chunk.len() + one.len() <= CHUNK {
        chunk.extend_from_slice(one);
    }
    chunk.resize(CHUNK, b' ');
    let chunk = bytes::Bytes::from(chunk);
    let tail = bytes::Bytes::from_static(br#"{"object":"bucket","start_time":0,"end_time":3600,"results":[]}]}"#);
    let body_chunks = (HUGE_BYTES - head.len() as u64 - tail.len() as u64) / CHUNK as u64;
    let total = head.len() as u64 + body_chunks * CHUNK as u64 + tail.len() as u64;
    let state = state.clone().into_inner();
    // Lazily: one shared 64 KiB chunk handed out again and again.
    let stream = futures::stream::unfold(0u64, move |i| {
        let (chunk, head, tail, state) = (chunk.clone(), head.clone(), tail.clone(), state.clone());
        async move {
            let next = if i == 0 {
                head
            } else if i <= body_chunks {
                chunk
            } else if i == body_chunks + 1 {
                tail
            } else {
                return None;
            };
            state.huge_bytes_sent.fetch_add(next.len() as u64, Ordering::Relaxed);
            Some((Ok::<_, std::io::Error>(next), i + 1))
        }
    });
    let mut builder = HttpResponse::Ok();
    builder.content_type("application/json");
    if declared_length {
        builder.no_chunking(total);
    }
    builder.streaming(stream)
}
