use std::time::Duration;

use super::delivery::{backoff, classify, Verdict};
use super::*;
use crate::config::Secret;

fn hook(id: &str, events: Vec<WebhookEvent>) -> WebhookConfig {
    WebhookConfig {
        id: id.into(),
        url: "http://127.0.0.1:9/hook".into(),
        secret: Secret::new("a-webhook-secret"),
        events,
        timeout: Duration::from_secs(1),
        max_attempts: 3,
    }
}

fn event(kind: WebhookEvent) -> SyncEvent {
    let account = crate::config::load_str(
        "[[accounts]]\nid = \"acme-openai\"\nprovider = \"openai\"\n[accounts.credentials]\n\
         api_key = \"sk-admin-FAKETESTSECRETKEY0123456789\"\n",
        std::path::Path::new("t.toml"),
        &Default::default(),
    )
    .unwrap()
    .accounts
    .remove(0);
    SyncEvent::not_run(
        &account,
        "store",
        "ClickHouse said no to sk-admin-FAKETESTSECRETKEY0123456789\nforged log line",
    )
    .with_kind(kind)
}

impl SyncEvent {
    fn with_kind(mut self, kind: WebhookEvent) -> Self {
        self.kind = kind;
        self
    }
}

#[test]
fn the_signature_is_hex_hmac_sha256_of_the_body() {
    // RFC 4231, test case 2.
    assert_eq!(
        sign(&Secret::new("Jefe"), b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn the_payload_names_the_sync_and_never_carries_a_secret() {
    let encoded = event(WebhookEvent::SyncFailed).encode();
    let body: serde_json::Value = serde_json::from_slice(&encoded.body).unwrap();
    assert_eq!(body["type"], "sync.failed");
    assert_eq!(body["id"], encoded.id.as_str());
    assert!(encoded.id.starts_with("evt_") && encoded.id.len() == 36);
    assert_eq!(body["data"]["account"], "acme-openai");
    assert_eq!(body["data"]["provider"], "openai");
    assert_eq!(body["data"]["error"]["kind"], "store");
    let message = body["data"]["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("<redacted>") && !message.contains("THISISASECRET"),
        "{message}"
    );
    assert!(!message.contains('\n'), "control characters are escaped: {message}");
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'), "UTC");
    // Each event gets its own id.
    assert_ne!(event(WebhookEvent::SyncFailed).encode().id, encoded.id);
}

#[test]
fn retries_only_what_may_succeed_later() {
    assert_eq!(classify(200, None), Verdict::Delivered);
    assert_eq!(classify(204, None), Verdict::Delivered);
    assert_eq!(classify(500, None), Verdict::Retry(None));
    assert_eq!(classify(503, None), Verdict::Retry(None));
    assert_eq!(classify(408, None), Verdict::Retry(None));
    let wait = Some(Duration::from_secs(7));
    assert_eq!(classify(429, wait), Verdict::Retry(wait));
    for refused in [301, 400, 401, 403, 404, 410, 422] {
        assert_eq!(classify(refused, None), Verdict::Refused, "{refused}");
    }
}

#[test]
fn backoff_doubles_and_caps() {
    let base = Duration::from_secs(1);
    assert_eq!(backoff(base, 1), Duration::from_secs(1));
    assert_eq!(backoff(base, 2), Duration::from_secs(2));
    assert_eq!(backoff(base, 4), Duration::from_secs(8));
    assert_eq!(backoff(base, 40), Duration::from_secs(60));
}

/// On a current-thread runtime the workers do not run until the test
/// awaits, so nothing is taken off the queues while events are emitted.
#[tokio::test(flavor = "current_thread")]
async fn a_full_queue_drops_without_waiting_and_counts_it() {
    let notifier = Notifier::with_settings(
        &[
            hook("both", WebhookEvent::ALL.to_vec()),
            hook("failures-only", vec![WebhookEvent::SyncFailed]),
        ],
        2,
        Duration::from_secs(1),
    );
    let completed = event(WebhookEvent::SyncCompleted);
    assert_eq!(notifier.emit(&completed), Emitted { queued: 1, dropped: 0 });
    assert_eq!(notifier.emit(&completed), Emitted { queued: 1, dropped: 0 });
    assert_eq!(notifier.emit(&completed), Emitted { queued: 0, dropped: 1 });
    let failed = event(WebhookEvent::SyncFailed);
    assert_eq!(notifier.emit(&failed), Emitted { queued: 1, dropped: 1 });
    let metrics = crate::metrics::render();
    assert!(
        metrics.contains(
            r#"tokentra_sync_webhook_deliveries_total{event="sync.completed",outcome="dropped",webhook="both"} 1"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn replacing_keeps_unchanged_webhooks_and_their_queues() {
    let a = hook("a", WebhookEvent::ALL.to_vec());
    let notifier = Notifier::with_settings(std::slice::from_ref(&a), 1, Duration::from_secs(1));
    assert_eq!(notifier.emit(&event(WebhookEvent::SyncCompleted)).queued, 1);
    let b = hook("b", WebhookEvent::ALL.to_vec());
    notifier.replace(&[a, b]);
    // `a` kept its (full) queue; `b` is new and empty.
    assert_eq!(
        notifier.emit(&event(WebhookEvent::SyncCompleted)),
        Emitted { queued: 1, dropped: 1 }
    );
    notifier.replace(&[]);
    assert!(notifier.is_empty());
}
