//! The one HTTP path every adapter uses, SDK-based ones included (they count
//! their calls through [`HttpStats`]): one shared connection pool, credentials
//! from an [`Authenticator`], a client-side rate limit per credential, retry
//! decisions from the provider's [`RetryClassifier`], a size cap on every
//! response, redaction of every kept text, and redirects that never carry a
//! credential to another origin.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rand::Rng;
use reqwest::{RequestBuilder, Response};

use super::auth::Authenticator;
use super::redact::Redactor;
use super::retry::{RetryClassifier, Verdict};
use super::tree::JsonBody;
use crate::metrics;
use crate::providers::{FailureKind, Provider, ProviderError};

/// How hard to try, and how much to accept, before a request fails.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this fails the request instead of stalling
    /// the account; the next scheduled sync tries again.
    pub max_retry_after: Duration,
    /// One request, connect to last byte.
    pub request_timeout: Duration,
    /// One endpoint's whole fetch, every page and retry included.
    pub endpoint_deadline: Duration,
    /// A response body larger than this fails the endpoint (a provider does
    /// not send a page this big; a broken one could exhaust memory).
    pub max_response_bytes: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            request_timeout: Duration::from_secs(60),
            endpoint_deadline: Duration::from_secs(600),
            max_response_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Counters of one adapter's traffic, read by the sync that drove it.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    pub rate_limit_waits: AtomicU64,
}

impl HttpStats {
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.retries.load(Ordering::Relaxed),
        )
    }
}

/// An adapter's API root from its account's `base_url`: trimmed, without a
/// trailing slash, and an http(s) URL (the config layer checked it too; an
/// adapter built directly, as tests do, gets the same guard). `example` is
/// the provider's real root, named in the error.
pub fn api_root(account: &str, base_url: &str, example: &str) -> Result<String, ProviderError> {
    let root = base_url.trim().trim_end_matches('/').to_string();
    match url::Url::parse(&root) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(root),
        _ => Err(ProviderError::Config {
            account: account.to_string(),
            detail: format!("base_url '{root}' is not an http(s) URL; use the API root, e.g. {example}"),
        }),
    }
}

/// The process's one HTTP client: one connection pool shared by every
/// account (connections to a provider host are reused across accounts), and
/// a redirect policy that follows only same-origin redirects. reqwest strips
/// `Authorization` on a cross-host redirect but not custom headers such as
/// `x-api-key`, so a cross-origin redirect is refused outright.
pub fn shared_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let Some(first) = attempt.previous().first() else {
                return attempt.follow();
            };
            if attempt.previous().len() > 5 {
                attempt.error("more than 5 redirects")
            } else if attempt.url().origin() != first.origin() {
                let to = attempt.url().origin().ascii_serialization();
                attempt.error(format!(
                    "redirect to another origin ({to}) refused: credentials are never sent across origins; \
                     set base_url to the provider's real API root"
                ))
            } else {
                attempt.follow()
            }
        });
        reqwest::Client::builder()
            .user_agent(concat!("tokentra-sync/", env!("CARGO_PKG_VERSION")))
            .redirect(policy)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(32)
            .build()
            .expect("the HTTP client builds with static settings")
    })
}

/// Everything about an account's HTTP that is not the request itself.
#[derive(Clone)]
pub struct HttpSetup {
    pub account: String,
    pub provider: Provider,
    pub policy: RetryPolicy,
    pub auth: Arc<dyn Authenticator>,
    pub classifier: Arc<dyn RetryClassifier>,
    /// Requests per second this credential may make (client-side limit),
    /// with a burst of [`BURST_SECONDS`] of them.
    pub requests_per_second: u32,
    /// Shown with a 401/403: which key type is needed and where to get it.
    pub auth_hint: String,
    pub redactor: Redactor,
}

/// A provider account's HTTP client.
#[derive(Clone)]
pub struct ProviderHttp {
    inner: Arc<Inner>,
}

struct Inner {
    setup: HttpSetup,
    limiter: DefaultDirectRateLimiter,
    stats: Arc<HttpStats>,
    /// A provider's `Retry-After` throttles the credential, not one request:
    /// every request of the account waits until then.
    paused_until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

/// How many seconds of a credential's rate it may spend at once. A sync
/// asks for one page of each of its endpoints (OpenAI has 11) every few
/// minutes: with no burst, each sync waited for the limiter, holding its
/// sync slot, ~2 s for an OpenAI account (most of a 10,000-account cycle's
/// slot time). The sustained rate is unchanged.
pub const BURST_SECONDS: u32 = 3;

/// A client-side limit: `per_second` sustained, `burst` at once.
#[derive(Clone, Copy, Debug)]
pub struct RequestRate {
    pub per_second: u32,
    pub burst: u32,
}

impl RequestRate {
    /// `per_second` with the usual burst ([`BURST_SECONDS`] of it).
    pub fn per_second(per_second: u32) -> Self {
        Self {
            per_second,
            burst: per_second.saturating_mul(BURST_SECONDS),
        }
    }

    fn quota(self) -> Quota {
        let rate = NonZeroU32::new(self.per_second.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(self.burst.max(1)).expect("at least 1");
        Quota::per_second(rate).allow_burst(burst)
    }
}

impl ProviderHttp {
    pub fn new(setup: HttpSetup) -> Self {
        let rate = RequestRate::per_second(setup.requests_per_second);
        Self::with_limit(setup, Arc::new(HttpStats::default()), rate)
    }

    fn with_limit(setup: HttpSetup, stats: Arc<HttpStats>, rate: RequestRate) -> Self {
        Self {
            inner: Arc::new(Inner {
                limiter: RateLimiter::direct(rate.quota()),
                setup,
                stats,
                paused_until: std::sync::Mutex::new(None),
            }),
        }
    }

    /// The same account's HTTP under a limit of its own, for a part of the
    /// provider's API with a stricter quota than the rest: same credentials,
    /// retry policy and request counts; its own requests per second and
    /// `Retry-After` pause.
    pub fn with_own_limit(&self, rate: RequestRate) -> Self {
        Self::with_limit(self.inner.setup.clone(), self.inner.stats.clone(), rate)
    }

    pub fn client(&self) -> &'static reqwest::Client {
        shared_client()
    }

    pub fn account(&self) -> &str {
        &self.inner.setup.account
    }

    pub fn provider(&self) -> Provider {
        self.inner.setup.provider
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.inner.setup.policy
    }

    pub fn stats(&self) -> Arc<HttpStats> {
        self.inner.stats.clone()
    }

    pub fn redactor(&self) -> &Redactor {
        &self.inner.setup.redactor
    }

    /// An error about the provider's data, redacted, naming account and endpoint.
    pub fn malformed(&self, endpoint: &str, detail: impl AsRef<str>) -> ProviderError {
        ProviderError::Malformed {
            account: self.account().to_string(),
            endpoint: endpoint.to_string(),
            detail: self.redactor().excerpt(detail.as_ref(), 2_000),
        }
    }

    /// Sends the request built by `build` (called again for each attempt),
    /// with credentials, and parses the answer as JSON, retrying as the
    /// provider's classifier says. The body is parsed once into a [`JsonBody`]
    /// (off the async thread when large); numbers keep their exact text, so
    /// money is exact.
    pub async fn get_json<F>(&self, endpoint: &str, build: F) -> Result<JsonBody, ProviderError>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        self.send(endpoint, build, |body| {
            let len = body.len();
            JsonBody::parse(Vec::from(body))
                .map_err(|e| format!("response body is not complete JSON ({len} bytes): {e}"))
        })
        .await
    }

    /// Sends the request and decodes a 2xx body with `decode`. A body that
    /// does not decode is retried like a cut transfer (that is what it
    /// usually is) and is a `Malformed` error after the last attempt.
    pub async fn send<F, T>(
        &self,
        endpoint: &str,
        build: F,
        decode: fn(bytes::Bytes) -> Result<T, String>,
    ) -> Result<T, ProviderError>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
        T: Send + 'static,
    {
        let setup = &self.inner.setup;
        let policy = &setup.policy;
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            self.wait_for_pause().await;
            self.inner.limiter.until_ready().await;
            self.inner.stats.requests.fetch_add(1, Ordering::Relaxed);
            let authorized = setup
                .auth
                .authorize(build(shared_client()).timeout(policy.request_timeout))
                .await
                .map_err(|e| self.with_account(e))?;
            let (kind, wait, reason) = match self.attempt(endpoint, authorized.request).await {
                Outcome::Done(body) => match decode_body(body, decode).await {
                    Ok(value) => return Ok(value),
                    Err(reason) if attempt >= policy.max_attempts => return Err(self.malformed(endpoint, reason)),
                    Err(reason) => (FailureKind::Malformed, None, self.redactor().excerpt(&reason, 300)),
                },
                Outcome::Fail(err) => return Err(err),
                Outcome::Unauthorized(err) => {
                    // A cached token may have expired early: one fresh token, once.
                    if !refreshed && setup.auth.refresh(authorized.credential).await {
                        refreshed = true;
                        (
                            FailureKind::Auth,
                            Some(Duration::ZERO),
                            "HTTP 401, token refreshed".to_string(),
                        )
                    } else {
                        return Err(err);
                    }
                }
                Outcome::Retry { kind, wait, reason } => (kind, wait, reason),
            };
            if attempt >= policy.max_attempts {
                return Err(ProviderError::RetriesExhausted {
                    account: setup.account.clone(),
                    endpoint: endpoint.to_string(),
                    attempts: attempt,
                    kind,
                    last_error: reason,
                });
            }
            let backoff = self.backoff(attempt);
            let delay = match wait {
                Some(asked) if asked > policy.max_retry_after => {
                    return Err(ProviderError::RetriesExhausted {
                        account: setup.account.clone(),
                        endpoint: endpoint.to_string(),
                        attempts: attempt,
                        kind,
                        last_error: format!(
                            "{reason}; Retry-After of {}s exceeds the {}s limit, the next sync will try again",
                            asked.as_secs(),
                            policy.max_retry_after.as_secs()
                        ),
                    });
                }
                // Never earlier than the provider asked.
                Some(asked) => {
                    if kind == FailureKind::Throttled {
                        self.pause_for(asked);
                        self.inner.stats.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
                        metrics::rate_limit_wait(&setup.account, setup.provider, asked);
                    }
                    if refreshed && kind == FailureKind::Auth {
                        asked
                    } else {
                        asked.max(backoff)
                    }
                }
                None => backoff,
            };
            self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
            metrics::provider_retry(&setup.account, setup.provider);
            tracing::warn!(
                account = %setup.account,
                provider = %setup.provider,
                endpoint,
                attempt,
                kind = kind.as_str(),
                delay_ms = delay.as_millis() as u64,
                reason = %reason,
                "provider request failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Holds every request of this credential for `wait`.
    fn pause_for(&self, wait: Duration) {
        let until = tokio::time::Instant::now() + wait;
        let mut paused = self.inner.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    async fn wait_for_pause(&self) {
        let until = *self.inner.paused_until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    fn with_account(&self, err: ProviderError) -> ProviderError {
        match err {
            ProviderError::Malformed {
                account,
                endpoint,
                detail,
            } if account.is_empty() => ProviderError::Malformed {
                account: self.account().to_string(),
                endpoint,
                detail,
            },
            other => other,
        }
    }

    async fn attempt(&self, endpoint: &str, request: RequestBuilder) -> Outcome {
        let setup = &self.inner.setup;
        let redactor = &setup.redactor;
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                metrics::provider_response(&setup.account, setup.provider, "error");
                let reason = redactor.excerpt(&format!("request failed: {}", without_url(&err)), 500);
                if err.is_redirect() {
                    return Outcome::Fail(ProviderError::Http {
                        account: setup.account.clone(),
                        provider: setup.provider,
                        endpoint: endpoint.to_string(),
                        status: 0,
                        detail: reason,
                    });
                }
                let kind = if err.is_timeout() {
                    FailureKind::Timeout
                } else {
                    FailureKind::Network
                };
                return Outcome::Retry {
                    kind,
                    wait: None,
                    reason,
                };
            }
        };
        let status = response.status();
        metrics::provider_response(&setup.account, setup.provider, status.as_str());
        if status.is_redirection() {
            // The policy refused to follow (another origin) or gave up.
            let to = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(no Location)");
            return Outcome::Fail(ProviderError::Http {
                account: setup.account.clone(),
                provider: setup.provider,
                endpoint: endpoint.to_string(),
                status: status.as_u16(),
                detail: redactor.excerpt(
                    &format!("redirected to {to}, which is not followed; set base_url to the final API root"),
                    300,
                ),
            });
        }
        let headers = response.headers().clone();
        let body = read_capped(response, setup.policy.max_response_bytes).await;
        if status.is_success() {
            return match body {
                Ok(body) => Outcome::Done(body),
                Err(BodyError::TooLarge(limit)) => Outcome::Fail(self.malformed(
                    endpoint,
                    format!(
                        "the response is larger than {limit} bytes (max_response_bytes); the provider sent more than \
                         any page should hold"
                    ),
                )),
                Err(BodyError::Cut { reason, timed_out }) => Outcome::Retry {
                    // A body that stalls until the request timeout is a timeout, not a cut line.
                    kind: if timed_out {
                        FailureKind::Timeout
                    } else {
                        FailureKind::Network
                    },
                    wait: None,
                    reason: redactor.excerpt(&reason, 300),
                },
            };
        }
        let text = match &body {
            Ok(bytes) => String::from_utf8_lossy(bytes).into_owned(),
            Err(BodyError::TooLarge(_)) => "(error body too large)".to_string(),
            Err(BodyError::Cut { .. }) => "(error body cut off)".to_string(),
        };
        let detail = if text.trim().is_empty() {
            "(empty body)".to_string()
        } else {
            format!("provider said: \"{}\"", redactor.excerpt(text.trim(), 300))
        };
        match setup.classifier.classify(status, &headers, &text) {
            Verdict::Retry { kind, wait } => Outcome::Retry {
                kind,
                wait: wait.or_else(|| (kind == FailureKind::Throttled).then_some(setup.policy.base_delay)),
                reason: format!("HTTP {}: {detail}", status.as_u16()),
            },
            Verdict::Fail(FailureKind::Auth) => Outcome::Unauthorized(ProviderError::Auth {
                account: setup.account.clone(),
                provider: setup.provider,
                status: status.as_u16(),
                hint: format!("{} ({detail})", setup.auth_hint),
            }),
            Verdict::Fail(kind) => Outcome::Fail(ProviderError::Http {
                account: setup.account.clone(),
                provider: setup.provider,
                endpoint: endpoint.to_string(),
                status: status.as_u16(),
                detail: if kind == FailureKind::Request {
                    detail
                } else {
                    format!("{} ({detail})", kind.as_str())
                },
            }),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let policy = &self.inner.setup.policy;
        let exp = policy
            .base_delay
            .saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        let capped = exp.min(policy.max_delay);
        // Up to 20% jitter so many accounts do not retry in lockstep.
        let jitter = rand::thread_rng().gen_range(0.0..0.2);
        capped + capped.mul_f64(jitter)
    }
}

enum Outcome {
    Done(bytes::Bytes),
    Retry {
        kind: FailureKind,
        wait: Option<Duration>,
        reason: String,
    },
    Unauthorized(ProviderError),
    Fail(ProviderError),
}

enum BodyError {
    TooLarge(usize),
    Cut { reason: String, timed_out: bool },
}

/// Reads the body, refusing to buffer more than `limit` bytes: a declared
/// length over the limit is refused before reading, a streamed one as soon
/// as it passes the limit.
async fn read_capped(mut response: Response, limit: usize) -> Result<bytes::Bytes, BodyError> {
    let declared = response.content_length();
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge(limit));
    }
    // Room for the declared length at once: a body grown by doubling was
    // copied again at each step (a page of 1 MB, five times). Up to a bound:
    // a declared length is only a claim until the bytes arrive.
    let room = declared.map_or(0, |n| n.min(PRESIZE_BYTES as u64) as usize);
    let mut body = bytes::BytesMut::with_capacity(room);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(BodyError::TooLarge(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => {
                return Err(BodyError::Cut {
                    reason: format!("response body cut off: {}", without_url(&e)),
                    timed_out: e.is_timeout(),
                })
            }
        }
    }
}

/// The most a body's buffer is sized to before its bytes arrive.
const PRESIZE_BYTES: usize = 4 * 1024 * 1024;

/// Bodies above this are parsed on the blocking pool: a big page must not
/// stall the arbiter that runs the account's actor (and others).
const PARSE_OFF_THREAD_BYTES: usize = 64 * 1024;

async fn decode_body<T: Send + 'static>(
    body: bytes::Bytes,
    decode: fn(bytes::Bytes) -> Result<T, String>,
) -> Result<T, String> {
    if body.len() > PARSE_OFF_THREAD_BYTES {
        tokio::task::spawn_blocking(move || decode(body))
            .await
            .map_err(|e| format!("parsing the response failed: {e}"))?
    } else {
        decode(body)
    }
}

/// reqwest errors print the URL; ours carry no secrets, but query strings can
/// be long, so keep the message to the cause.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many requests a fresh limiter lets through before it makes one wait.
    fn at_once(rate: RequestRate) -> u32 {
        let limiter = RateLimiter::direct(rate.quota());
        let mut n = 0;
        while limiter.check().is_ok() {
            n += 1;
        }
        n
    }

    #[test]
    fn a_credential_spends_its_burst_at_once_then_is_paced() {
        assert_eq!(at_once(RequestRate::per_second(5)), 5 * BURST_SECONDS);
        assert_eq!(
            at_once(RequestRate {
                per_second: 1,
                burst: 2
            }),
            2
        );
    }
}
