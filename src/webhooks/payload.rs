//! The event payload and its signature.
//!
//! The body is serialized once per event and every webhook gets the same
//! bytes; each is signed with that webhook's secret as
//! `X-TokenTra-Signature: sha256=<hex HMAC-SHA256(secret, body)>`, so a
//! receiver verifies the exact bytes it read before parsing them.

use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::json;
use sha2::Sha256;

use crate::config::{AccountConfig, Secret, WebhookEvent};
use crate::providers::platform::Redactor;
use crate::providers::{Provider, TimeWindow};
use crate::sync::SyncReport;

pub const SIGNATURE_HEADER: &str = "X-TokenTra-Signature";
/// Unix seconds the event was created (the body's `created_at`).
pub const TIMESTAMP_HEADER: &str = "X-TokenTra-Timestamp";

/// The longest failure message a payload carries.
const MAX_MESSAGE_CHARS: usize = 2_000;

/// One sync outcome, as the payload describes it.
#[derive(Debug, Clone)]
pub struct SyncEvent {
    pub kind: WebhookEvent,
    pub account: String,
    pub provider: Provider,
    /// The `sync_runs.run_id` of the attempt (none when the sync could not
    /// start, e.g. ClickHouse was unreachable).
    pub run_id: Option<String>,
    pub trigger: Option<String>,
    pub window: Option<TimeWindow>,
    pub rows_fetched: u64,
    pub rows_written: u64,
    pub rows_cancelled: u64,
    pub duration_ms: u64,
    /// `FailureKind` name (or `store`, `crash`) of a failed sync.
    pub error_kind: Option<String>,
    /// Redacted, truncated failure text.
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl SyncEvent {
    /// The event of one recorded sync attempt (one `sync_runs` row).
    pub fn from_report(account: &AccountConfig, report: &SyncReport) -> Self {
        let failed = !report.succeeded;
        Self {
            kind: WebhookEvent::for_outcome(report.succeeded),
            account: report.account.clone(),
            provider: report.provider,
            run_id: Some(report.run_id.clone()),
            trigger: Some(report.trigger.to_string()),
            window: Some(report.window),
            rows_fetched: report.rows_fetched,
            rows_written: report.rows_added,
            rows_cancelled: report.rows_cancelled,
            duration_ms: report.duration.as_millis() as u64,
            error_kind: failed.then(|| report.error_kind.map_or("unknown", |k| k.as_str()).to_string()),
            error_message: failed.then(|| redact(account, &report.errors.join("\n"))),
            created_at: Utc::now(),
        }
    }

    /// A sync that could not run at all (no `sync_runs` row).
    pub fn not_run(account: &AccountConfig, kind: &str, message: &str) -> Self {
        Self {
            kind: WebhookEvent::SyncFailed,
            account: account.id.clone(),
            provider: account.provider,
            run_id: None,
            trigger: None,
            window: None,
            rows_fetched: 0,
            rows_written: 0,
            rows_cancelled: 0,
            duration_ms: 0,
            error_kind: Some(kind.to_string()),
            error_message: Some(redact(account, message)),
            created_at: Utc::now(),
        }
    }

    /// The JSON body, serialized once, with a fresh event id.
    pub(super) fn encode(&self) -> Encoded {
        let id = format!("evt_{:032x}", rand::thread_rng().gen::<u128>());
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut data = json!({
            "account": self.account,
            "provider": self.provider.as_str(),
            "run_id": self.run_id,
            "trigger": self.trigger,
            "window": self.window.map(|w| json!({ "start": time(w.start), "end": time(w.end) })),
            "rows_fetched": self.rows_fetched,
            "rows_written": self.rows_written,
            "rows_cancelled": self.rows_cancelled,
            "duration_ms": self.duration_ms,
        });
        if let Some(kind) = &self.error_kind {
            data["error"] = json!({ "kind": kind, "message": self.error_message });
        }
        let body = json!({
            "id": id,
            "type": self.kind.as_str(),
            "created_at": self.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": data,
        });
        Encoded {
            id,
            kind: self.kind,
            timestamp: self.created_at.timestamp(),
            body: serde_json::to_vec(&body).expect("a JSON value serializes"),
        }
    }
}

/// Failure text as a payload may carry it: the account's secrets cut out
/// (again: adapters already redact), control characters escaped, bounded.
fn redact(account: &AccountConfig, text: &str) -> String {
    Redactor::new(account.credentials.values().map(Secret::expose)).excerpt(text, MAX_MESSAGE_CHARS)
}

/// One event ready to send to every webhook.
#[derive(Debug)]
pub(super) struct Encoded {
    pub id: String,
    pub kind: WebhookEvent,
    pub timestamp: i64,
    pub body: Vec<u8>,
}

/// `sha256=<lower-case hex HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &Secret, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}
