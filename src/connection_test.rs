//! `test-connection` and `POST /v1/accounts/{id}/test`: is this account's
//! credential the right kind, does the provider accept it, and what can it
//! read? One or two cheap calls, bounded in time, and an answer that names
//! the exact problem: a key of the wrong type, an expired or revoked key, a
//! missing permission, or a host that cannot be reached.

use std::time::{Duration, Instant};

use chrono::Utc;

use crate::config::AccountConfig;
use crate::providers::registry::{self, BuildContext};
use crate::providers::{FailureKind, ProviderError, RetryPolicy, TimeWindow};

/// How long a whole test may take.
pub const TEST_DEADLINE: Duration = Duration::from_secs(30);

/// What a test found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The provider accepted the credential; `readable` lists what it read.
    Ok { readable: Vec<String> },
    /// The credential is wrong, of the wrong type, expired or lacks access.
    BadCredentials { problem: String },
    /// The provider could not be reached or did not answer in time.
    Unreachable { host: String, problem: String },
    /// The provider answered, but not with usable data.
    ProviderError { problem: String },
}

impl Verdict {
    /// The CLI's exit code: 0 ok, 2 bad credentials, 3 unreachable, 1 other.
    pub fn exit_code(&self) -> i32 {
        match self {
            Verdict::Ok { .. } => 0,
            Verdict::BadCredentials { .. } => 2,
            Verdict::Unreachable { .. } => 3,
            Verdict::ProviderError { .. } => 1,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Ok { .. } => "ok",
            Verdict::BadCredentials { .. } => "bad_credentials",
            Verdict::Unreachable { .. } => "unreachable",
            Verdict::ProviderError { .. } => "provider_error",
        }
    }
}

/// One account's test.
#[derive(Clone, Debug)]
pub struct TestReport {
    pub account: String,
    pub provider: String,
    pub latency: Duration,
    pub verdict: Verdict,
}

impl std::fmt::Display for TestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.latency.as_millis();
        match &self.verdict {
            Verdict::Ok { readable } => write!(
                f,
                "account '{}' ({}): ok in {ms} ms; the key can read {}",
                self.account,
                self.provider,
                readable.join(", ")
            ),
            Verdict::BadCredentials { problem } => {
                write!(
                    f,
                    "account '{}' ({}): bad credentials: {problem}",
                    self.account, self.provider
                )
            }
            Verdict::Unreachable { host, problem } => write!(
                f,
                "account '{}' ({}): cannot reach {host}: {problem}",
                self.account, self.provider
            ),
            Verdict::ProviderError { problem } => {
                write!(
                    f,
                    "account '{}' ({}): provider error: {problem}",
                    self.account, self.provider
                )
            }
        }
    }
}

/// Tests `account`: the key's format first, then one cheap call per kind of
/// record (usage, cost) the provider has, with few retries.
pub async fn test_account(account: &AccountConfig, retry: &RetryPolicy) -> TestReport {
    let started = Instant::now();
    let verdict = match tokio::time::timeout(TEST_DEADLINE, probe(account, retry)).await {
        Ok(verdict) => verdict,
        Err(_) => Verdict::Unreachable {
            host: host_of(&account.base_url),
            problem: format!("no answer within {}s", TEST_DEADLINE.as_secs()),
        },
    };
    TestReport {
        account: account.id.clone(),
        provider: account.provider.as_str().to_string(),
        latency: started.elapsed(),
        verdict,
    }
}

async fn probe(account: &AccountConfig, retry: &RetryPolicy) -> Verdict {
    let wrong_type = registry::wrong_key_type(account.provider, &account.credentials);
    let quick = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(5),
        request_timeout: retry.request_timeout.min(Duration::from_secs(15)),
        ..retry.clone()
    };
    let adapter =
        match crate::providers::build_adapter(account.view(), account.provider, &BuildContext { retry: quick }) {
            Ok(adapter) => adapter,
            Err(err) => {
                return Verdict::BadCredentials {
                    problem: wrong_type.map_or_else(|| err.to_string(), str::to_string),
                }
            }
        };
    // One endpoint of each record type: the cheapest question that shows
    // what the key can read.
    let mut probes = Vec::new();
    for spec in adapter.endpoints() {
        if !probes
            .iter()
            .any(|p: &crate::providers::EndpointSpec| p.record_type == spec.record_type)
        {
            probes.push(spec);
        }
    }
    // Two days: the smallest window every provider answers with a request
    // (daily APIs that leave out today, hourly ones in one page).
    let now = Utc::now();
    let mut readable = Vec::new();
    for spec in probes {
        let window = TimeWindow::new(now - chrono::Duration::days(2), now).snapped_out(spec.granularity);
        match adapter.fetch(&spec, window).await {
            Ok(_) => readable.push(format!("{} ({})", spec.record_type.as_str(), spec.endpoint)),
            Err(err) => return diagnose(account, err, wrong_type),
        }
    }
    if adapter.http_stats().snapshot().0 == 0 {
        // Nothing was asked, so nothing was proven about the credential.
        return Verdict::ProviderError {
            problem: "the adapter made no request for the test window, so the credential is untested".into(),
        };
    }
    Verdict::Ok { readable }
}

fn diagnose(account: &AccountConfig, err: ProviderError, wrong_type: Option<&str>) -> Verdict {
    match err.kind() {
        FailureKind::Auth => Verdict::BadCredentials {
            problem: match wrong_type {
                Some(diagnosis) => format!("{diagnosis} ({err})"),
                None => err.to_string(),
            },
        },
        FailureKind::Network | FailureKind::Timeout => Verdict::Unreachable {
            host: host_of(&account.base_url),
            problem: err.to_string(),
        },
        _ => Verdict::ProviderError {
            problem: err.to_string(),
        },
    }
}

/// `host:port` of a base URL, for "cannot reach" messages.
fn host_of(base_url: &str) -> String {
    url::Url::parse(base_url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or_else(|| h.to_string(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_else(|| base_url.to_string())
}
