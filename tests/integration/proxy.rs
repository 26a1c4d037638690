//! A fault-injecting HTTP proxy in front of ClickHouse: forwards every
//! request, but can hold the answer to an INSERT that already landed, so the
//! client times out and retries (docs/DESIGN.md rule 1, "a late-committing insert").

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    /// How many INSERTs into usage_records to hold after they landed.
    hold_inserts: Arc<AtomicUsize>,
    /// INSERTs into usage_records seen (held or not).
    pub inserts_seen: Arc<AtomicUsize>,
    release: Arc<Notify>,
    /// INSERT bodies containing these bytes are refused the way ClickHouse
    /// refuses bad data (HTTP 500, `Code: 27`), without reaching the server.
    reject_marker: Option<Vec<u8>>,
}

pub struct Proxy {
    pub url: String,
    pub state: ProxyState,
    handle: actix_web::dev::ServerHandle,
}

impl Proxy {
    pub async fn start(upstream: &str, hold_inserts: usize) -> Proxy {
        Self::start_on(upstream, hold_inserts, 0).await
    }

    /// A proxy that rejects inserts whose rows contain `marker`.
    pub async fn start_rejecting(upstream: &str, marker: &str) -> Proxy {
        Self::start_with(upstream, 0, 0, Some(marker.as_bytes().to_vec())).await
    }

    /// Listens on a given port (0 = any), e.g. to bring a "server" up late.
    pub async fn start_on(upstream: &str, hold_inserts: usize, port: u16) -> Proxy {
        Self::start_with(upstream, hold_inserts, port, None).await
    }

    async fn start_with(upstream: &str, hold_inserts: usize, port: u16, reject_marker: Option<Vec<u8>>) -> Proxy {
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            hold_inserts: Arc::new(AtomicUsize::new(hold_inserts)),
            inserts_seen: Arc::new(AtomicUsize::new(0)),
            release: Arc::new(Notify::new()),
            reject_marker,
        };
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                // Inserts are large; actix-web's default body limit is 256 KiB.
                .app_data(web::PayloadConfig::new(1 << 30))
                .default_service(web::to(forward))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", port))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Proxy {
            url: format!("http://{addr}"),
            state,
            handle,
        }
    }

    pub fn inserts_seen(&self) -> usize {
        self.state.inserts_seen.load(Ordering::SeqCst)
    }

    pub async fn stop(self) {
        self.state.release.notify_waiters();
        self.handle.stop(false).await;
    }
}

async fn forward(req: HttpRequest, body: web::Bytes, state: web::Data<ProxyState>) -> HttpResponse {
    let query = req.uri().query().unwrap_or("").to_string();
    let is_usage_insert = {
        let decoded = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "query")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        decoded.starts_with("INSERT INTO usage_records")
    };
    if let Some(marker) = &state.reject_marker {
        if is_usage_insert && body.windows(marker.len()).any(|w| w == marker.as_slice()) {
            return HttpResponse::InternalServerError().body(
                "Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected ( before: (injected by the test proxy)",
            );
        }
    }
    let url = format!("{}{}", state.upstream, req.uri());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).expect("a valid method");
    let mut upstream = state.http.request(method, url).body(body.to_vec());
    for (name, value) in req.headers() {
        if name != "host" && name != "content-length" {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    let response = match upstream.send().await {
        Ok(r) => r,
        Err(e) => return HttpResponse::BadGateway().body(e.to_string()),
    };
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    if is_usage_insert {
        state.inserts_seen.fetch_add(1, Ordering::SeqCst);
        let hold = state
            .hold_inserts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if hold && status.is_success() {
            // The rows are stored; the client never hears so. It times out
            // and retries, and the retry lands a duplicate.
            state.release.notified().await;
        }
    }
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status.as_u16()).unwrap()).body(bytes)
}
