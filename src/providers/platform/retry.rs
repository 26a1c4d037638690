//! Retry decisions as data (one classifier per provider, a shared default).
//!
//! Why each answer is or is not retried:
//! - 429: the provider asks us to slow down; wait at least its `Retry-After`
//!   (seconds or an HTTP date, capped), then retry. Some 429s are not about
//!   speed (OpenAI's `insufficient_quota`): a provider classifier says so.
//! - 408, 5xx, connection errors, per-request timeouts: transient on every
//!   provider we know; capped exponential backoff with jitter.
//! - A 200 whose body is not complete JSON (a truncated transfer): transient.
//! - 401/403: the credential is wrong, expired or lacks the scope; retrying
//!   the same credential cannot help (an authenticator with a refreshable
//!   token gets exactly one refresh first).
//! - Other 4xx: our request is wrong; the same request cannot succeed.

use std::time::Duration;

use chrono::Utc;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::providers::FailureKind;

/// What to do with one answer that was not a success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after at least `wait` (when the provider named one).
    Retry { kind: FailureKind, wait: Option<Duration> },
    /// Give up on this endpoint now.
    Fail(FailureKind),
}

/// Per-provider knowledge of which failures are worth retrying.
pub trait RetryClassifier: Send + Sync + 'static {
    /// Classifies a non-2xx answer. `body` is the (size-capped) error body.
    fn classify(&self, status: StatusCode, headers: &HeaderMap, _body: &str) -> Verdict {
        default_verdict(status, headers)
    }

    /// The wait the provider asked for, from whichever headers it documents.
    fn retry_after(&self, headers: &HeaderMap) -> Option<Duration> {
        retry_after(headers)
    }
}

/// The classifier of providers that follow plain HTTP semantics.
#[derive(Clone, Copy, Debug, Default)]
pub struct StandardClassifier;

impl RetryClassifier for StandardClassifier {}

/// The standard verdict; provider classifiers call it for what they do not
/// special-case.
pub fn default_verdict(status: StatusCode, headers: &HeaderMap) -> Verdict {
    match status {
        StatusCode::TOO_MANY_REQUESTS => Verdict::Retry {
            kind: FailureKind::Throttled,
            wait: retry_after(headers),
        },
        StatusCode::REQUEST_TIMEOUT => Verdict::Retry {
            kind: FailureKind::Timeout,
            wait: retry_after(headers),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Verdict::Fail(FailureKind::Auth),
        s if s.is_server_error() => Verdict::Retry {
            kind: FailureKind::ProviderServer,
            wait: retry_after(headers),
        },
        _ => Verdict::Fail(FailureKind::Request),
    }
}

/// Longest wait a header may ask for before it is read as "not soon": a
/// bigger value (even `1e20`) is clamped here, never overflowed.
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(86_400);

/// `Retry-After` as seconds (integer or fraction) or as an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_wait(headers, reqwest::header::RETRY_AFTER.as_str())
}

/// A wait read from header `name`: seconds or an HTTP date, clamped to
/// [`RETRY_AFTER_CEILING`]; garbage, negative and non-finite values are
/// ignored (the caller falls back to its own backoff).
pub fn header_wait(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    parse_wait(value)
}

pub fn parse_wait(value: &str) -> Option<Duration> {
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        return Some(Duration::try_from_secs_f64(secs).map_or(RETRY_AFTER_CEILING, |d| d.min(RETRY_AFTER_CEILING)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&Utc) - Utc::now();
    Some(delta.to_std().unwrap_or(Duration::ZERO).min(RETRY_AFTER_CEILING))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_accepts_seconds_fractions_and_dates_and_never_panics() {
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers("0.5")), Some(Duration::from_millis(500)));
        assert_eq!(retry_after(&headers("1e20")), Some(RETRY_AFTER_CEILING));
        assert_eq!(
            retry_after(&headers("99999999999999999999999")),
            Some(RETRY_AFTER_CEILING)
        );
        assert_eq!(retry_after(&headers("-3")), None);
        assert_eq!(retry_after(&headers("NaN")), None);
        assert_eq!(retry_after(&headers("inf")), None);
        assert_eq!(retry_after(&headers("soon")), None);
        let past = retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(past, Some(Duration::ZERO));
        let future = (Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = retry_after(&headers(&future)).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }

    #[test]
    fn standard_verdicts() {
        let none = HeaderMap::new();
        let c = StandardClassifier;
        assert_eq!(
            c.classify(StatusCode::TOO_MANY_REQUESTS, &headers("3"), ""),
            Verdict::Retry {
                kind: FailureKind::Throttled,
                wait: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(
            c.classify(StatusCode::REQUEST_TIMEOUT, &none, ""),
            Verdict::Retry {
                kind: FailureKind::Timeout,
                ..
            }
        ));
        assert!(matches!(
            c.classify(StatusCode::BAD_GATEWAY, &none, ""),
            Verdict::Retry {
                kind: FailureKind::ProviderServer,
                ..
            }
        ));
        assert_eq!(
            c.classify(StatusCode::UNAUTHORIZED, &none, ""),
            Verdict::Fail(FailureKind::Auth)
        );
        assert_eq!(
            c.classify(StatusCode::NOT_FOUND, &none, ""),
            Verdict::Fail(FailureKind::Request)
        );
    }
}
