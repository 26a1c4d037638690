//! The one HTTP path every adapter uses: retries, Retry-After, auth errors and
//! request counting are decided here, once.
//!
//! Retry decisions (why each is or is not retryable):
//! - 429: the provider asks us to slow down; wait at least its `Retry-After`
//!   (seconds or an HTTP date), never less, then retry.
//! - 5xx, connection errors, timeouts: transient on every provider we know;
//!   retry with capped exponential backoff and jitter.
//! - A 200 whose body is not complete JSON (a truncated transfer): transient,
//!   retried like a 5xx; after the last attempt it is a `Malformed` error.
//! - 401/403: the credential is wrong or lacks the admin scope; retrying cannot
//!   help, so the account fails at once with a hint.
//! - Other 4xx: our request is wrong; retrying the same request cannot help.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use reqwest::{RequestBuilder, Response, StatusCode};

use super::{Provider, ProviderError};
use crate::metrics;

/// How hard to try before a request fails.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` longer than this fails the request instead of stalling
    /// the account; the next scheduled sync tries again.
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
            request_timeout: Duration::from_secs(60),
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

/// A provider account's HTTP client.
#[derive(Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
    account: String,
    provider: Provider,
    policy: RetryPolicy,
    stats: Arc<HttpStats>,
    /// Shown when the provider answers 401/403, e.g. "use an Admin key".
    auth_hint: String,
    /// Credentials to cut out of any provider text we keep (error bodies can
    /// echo a key back), so no error or log line ever carries one.
    secrets: Vec<String>,
}

impl ProviderHttp {
    pub fn new(account: &str, provider: Provider, policy: RetryPolicy, auth_hint: &str) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .timeout(policy.request_timeout)
            .user_agent(concat!("tokentra-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Config {
                account: account.to_string(),
                detail: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            account: account.to_string(),
            provider,
            policy,
            stats: Arc::new(HttpStats::default()),
            auth_hint: auth_hint.to_string(),
            secrets: Vec::new(),
        })
    }

    /// Redacts `secret` from every error and log line this client produces.
    pub fn redacting(mut self, secret: &str) -> Self {
        if !secret.is_empty() {
            self.secrets.push(secret.to_string());
        }
        self
    }

    fn redact(&self, mut text: String) -> String {
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        text
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn stats(&self) -> Arc<HttpStats> {
        self.stats.clone()
    }

    /// Sends the request built by `build` (called again for each attempt) and
    /// parses the answer as JSON, retrying as the module doc says. Numbers keep
    /// their exact text (serde_json `arbitrary_precision`), so money is exact.
    pub async fn get_json<F>(&self, endpoint: &str, build: F) -> Result<serde_json::Value, ProviderError>
    where
        F: Fn(&reqwest::Client) -> RequestBuilder,
    {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = self.attempt(endpoint, build(&self.client)).await;
            let (wait, last_error) = match outcome {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(err) => return Err(err),
                Attempt::Retry { wait, reason } => (wait, reason),
            };
            if attempt >= self.policy.max_attempts {
                return Err(ProviderError::RetriesExhausted {
                    account: self.account.clone(),
                    endpoint: endpoint.to_string(),
                    attempts: attempt,
                    last_error,
                });
            }
            let backoff = self.backoff(attempt);
            let delay = match wait {
                Some(retry_after) if retry_after > self.policy.max_retry_after => {
                    return Err(ProviderError::RetriesExhausted {
                        account: self.account.clone(),
                        endpoint: endpoint.to_string(),
                        attempts: attempt,
                        last_error: format!(
                            "{last_error}; Retry-After of {}s exceeds the {}s limit, next sync will try again",
                            retry_after.as_secs(),
                            self.policy.max_retry_after.as_secs()
                        ),
                    });
                }
                // Never earlier than the provider asked.
                Some(retry_after) => {
                    self.stats.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
                    metrics::rate_limit_wait(&self.account, self.provider, retry_after);
                    retry_after.max(backoff)
                }
                None => backoff,
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            metrics::provider_retry(&self.account, self.provider);
            tracing::warn!(
                account = %self.account,
                provider = %self.provider,
                endpoint,
                attempt,
                delay_ms = delay.as_millis() as u64,
                reason = %last_error,
                "provider request failed, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, endpoint: &str, request: RequestBuilder) -> Attempt {
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                metrics::provider_response(&self.account, self.provider, "error");
                return Attempt::Retry {
                    wait: None,
                    reason: self.redact(format!("request failed: {}", without_url(&err))),
                };
            }
        };
        let status = response.status();
        metrics::provider_response(&self.account, self.provider, status.as_str());
        if status.is_success() {
            return match read_json(response).await {
                Ok(value) => Attempt::Done(value),
                Err(reason) => Attempt::Retry {
                    wait: None,
                    reason: self.redact(reason),
                },
            };
        }
        let retry_after = retry_after(&response);
        let detail = self.redact(error_excerpt(response).await);
        match status {
            StatusCode::TOO_MANY_REQUESTS => Attempt::Retry {
                wait: Some(retry_after.unwrap_or(self.policy.base_delay)),
                reason: format!("HTTP 429 rate limited: {detail}"),
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Attempt::Fail(ProviderError::Auth {
                account: self.account.clone(),
                provider: self.provider,
                status: status.as_u16(),
                hint: format!("{} (provider said: {detail})", self.auth_hint),
            }),
            s if s.is_server_error() => Attempt::Retry {
                wait: retry_after,
                reason: format!("HTTP {}: {detail}", s.as_u16()),
            },
            s => Attempt::Fail(ProviderError::Http {
                account: self.account.clone(),
                provider: self.provider,
                endpoint: endpoint.to_string(),
                status: s.as_u16(),
                detail,
            }),
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .policy
            .base_delay
            .saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        let capped = exp.min(self.policy.max_delay);
        // Up to 20% jitter so many accounts do not retry in lockstep.
        let jitter = rand::thread_rng().gen_range(0.0..0.2);
        capped + capped.mul_f64(jitter)
    }
}

enum Attempt {
    Done(serde_json::Value),
    Retry { wait: Option<Duration>, reason: String },
    Fail(ProviderError),
}

/// Bodies above this are parsed on the blocking pool: a big page must not
/// stall the arbiter that runs the account's actor (and others).
const PARSE_OFF_THREAD_BYTES: usize = 64 * 1024;

async fn read_json(response: Response) -> Result<serde_json::Value, String> {
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("response body cut off: {}", without_url(&e)))?;
    let large = body.len() > PARSE_OFF_THREAD_BYTES;
    let parse = move || {
        serde_json::from_slice(&body)
            .map_err(|e| format!("response body is not complete JSON ({} bytes): {e}", body.len()))
    };
    if large {
        tokio::task::spawn_blocking(parse)
            .await
            .map_err(|e| format!("parsing the response failed: {e}"))?
    } else {
        parse()
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs));
        }
        return None;
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&Utc) - Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

async fn error_excerpt(response: Response) -> String {
    let text = response.text().await.unwrap_or_default();
    let trimmed: String = text.chars().take(300).collect();
    if trimmed.is_empty() {
        "(empty body)".to_string()
    } else {
        trimmed
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
