//! One webhook's worker: takes events off its queue in order and delivers
//! each, retrying what may succeed later.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::payload::{sign, Encoded, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::config::WebhookConfig;
use crate::metrics;

/// Wait before the first retry; doubled per attempt up to [`RETRY_CAP`].
pub(super) const RETRY_BASE: Duration = Duration::from_secs(1);
const RETRY_CAP: Duration = Duration::from_secs(60);

/// What one attempt's answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Delivered,
    /// Worth another attempt, no sooner than the given wait (429 Retry-After).
    Retry(Option<Duration>),
    /// The receiver refused the event (a 4xx other than 408/429, or a 3xx:
    /// redirects are not followed, so a signed body never goes elsewhere).
    Refused,
}

/// 2xx delivered; 408, 429 and 5xx retried; anything else refused.
pub(super) fn classify(status: u16, retry_after: Option<Duration>) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 500..=599 => Verdict::Retry(None),
        429 => Verdict::Retry(retry_after),
        _ => Verdict::Refused,
    }
}

/// Wait before retry number `attempt` (1 = after the first failure).
pub(super) fn backoff(base: Duration, attempt: u32) -> Duration {
    base.saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RETRY_CAP)
}

pub(super) async fn worker(config: WebhookConfig, mut queue: mpsc::Receiver<Arc<Encoded>>, retry_base: Duration) {
    let client = match reqwest::Client::builder()
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tokentra-sync/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(webhook = %config.id, error = %err, "webhook client cannot be built; its events are dropped");
            return;
        }
    };
    while let Some(event) = queue.recv().await {
        deliver(&client, &config, &event, retry_base).await;
    }
}

/// Attempts one event up to `max_attempts` times.
async fn deliver(client: &reqwest::Client, config: &WebhookConfig, event: &Encoded, retry_base: Duration) {
    let name = event.kind.as_str();
    let signature = sign(&config.secret, &event.body);
    for attempt in 1..=config.max_attempts {
        let sent = client
            .post(&config.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &signature)
            .header(TIMESTAMP_HEADER, event.timestamp.to_string())
            .header("X-TokenTra-Event", name)
            .header("X-TokenTra-Delivery", &event.id)
            .header("X-TokenTra-Attempt", attempt.to_string())
            .body(event.body.clone())
            .send()
            .await;
        let (verdict, detail) = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                (classify(status, retry_after), format!("HTTP {status}"))
            }
            // Timeouts and connection errors: the receiver may be back soon.
            // The error text names the URL without its query (reqwest's
            // Display), never a secret of ours.
            Err(err) => (Verdict::Retry(None), error_kind(&err).to_string()),
        };
        match verdict {
            Verdict::Delivered => {
                metrics::webhook_delivery(&config.id, name, "delivered");
                tracing::debug!(webhook = %config.id, event = name, event_id = %event.id, attempt, "webhook delivered");
                return;
            }
            Verdict::Refused => {
                metrics::webhook_delivery(&config.id, name, "failed");
                tracing::warn!(webhook = %config.id, event = name, event_id = %event.id, attempt, answer = %detail,
                    "webhook receiver refused the event; not retried");
                return;
            }
            Verdict::Retry(_) if attempt == config.max_attempts => {
                metrics::webhook_delivery(&config.id, name, "failed");
                tracing::warn!(webhook = %config.id, event = name, event_id = %event.id, attempt, answer = %detail,
                    "webhook delivery failed; attempts exhausted, event given up");
                return;
            }
            Verdict::Retry(at_least) => {
                let wait = backoff(retry_base, attempt).max(at_least.unwrap_or_default().min(RETRY_CAP));
                metrics::webhook_delivery(&config.id, name, "retried");
                tracing::info!(webhook = %config.id, event = name, event_id = %event.id, attempt, answer = %detail,
                    retry_in_ms = wait.as_millis() as u64, "webhook delivery failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn error_kind(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else {
        "request failed"
    }
}
