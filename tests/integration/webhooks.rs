//! Webhooks from the real daemon to a local receiver that verifies each
//! signature with the shared secret, fails the first delivery with a 500
//! and accepts the retry.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::daemon::{start_daemon_with, stop_with_sigterm};
use crate::reload::{metric_value, metrics};
use crate::support::{self, eventually};

const SECRET: &str = "whsec-FAKE-TEST-0123456789abcdef";

/// One request the receiver saw.
#[derive(Clone, Debug)]
struct Seen {
    delivery: String,
    attempt: String,
    signature_ok: bool,
    timestamp: i64,
    body: serde_json::Value,
}

/// The receiver's own check, independent of the daemon's code.
fn signature_ok(body: &[u8], header: Option<&str>) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    header == Some(format!("sha256={expected}").as_str())
}

async fn receive(req: HttpRequest, body: web::Bytes, seen: web::Data<Arc<Mutex<Vec<Seen>>>>) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ok = signature_ok(&body, header("x-tokentra-signature").as_deref());
    let mut seen = seen.lock().unwrap();
    seen.push(Seen {
        delivery: header("x-tokentra-delivery").unwrap_or_default(),
        attempt: header("x-tokentra-attempt").unwrap_or_default(),
        signature_ok: ok,
        timestamp: header("x-tokentra-timestamp")
            .and_then(|t| t.parse().ok())
            .unwrap_or_default(),
        body: serde_json::from_slice(&body).unwrap_or_default(),
    });
    if !ok {
        return HttpResponse::Unauthorized().finish();
    }
    if seen.len() == 1 {
        return HttpResponse::InternalServerError().finish();
    }
    HttpResponse::Ok().finish()
}

#[actix_rt::test]
async fn signed_events_are_retried_after_a_500_and_failed_syncs_send_sync_failed() {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let data = web::Data::new(seen.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/hook", web::post().to(receive))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let receiver_port = server.addrs()[0].port();
    let server = server.run();
    let server_handle = server.handle();
    actix_rt::spawn(server);

    let sim = support::start_sim(21, 2).await;
    let good = support::sim_accounts(&sim, &["org-1"], &["openai"]);
    let bad_key = "sk-ant-admin01-FAKE-sim-revoked-key";
    let bad = support::sim_accounts(&sim, &["org-2"], &["anthropic"])
        .replace(&tokentra_sync::simulator::anthropic_api_key("org-2"), bad_key);
    let webhook = format!(
        "[[webhooks]]\nid = \"receiver\"\nurl = \"http://127.0.0.1:{receiver_port}/hook\"\nsecret = \"{SECRET}\"\ntimeout = \"5s\"\n"
    );
    let (config, port, child) = start_daemon_with("webhooks", &format!("{good}{bad}"), &webhook);
    let http = reqwest::Client::new();

    let events = eventually(
        "a retried delivery, a sync.completed and a sync.failed",
        Duration::from_secs(120),
        || async {
            let seen = seen.lock().unwrap().clone();
            let first = seen.first()?;
            let retried = seen[1..].iter().any(|s| s.delivery == first.delivery);
            let completed = seen.iter().any(|s| s.body["type"] == "sync.completed");
            let failed = seen.iter().any(|s| s.body["type"] == "sync.failed");
            (retried && completed && failed).then_some(seen)
        },
    )
    .await;
    assert!(
        events.iter().all(|s| s.signature_ok),
        "every signature verifies: {events:?}"
    );

    // The first delivery was answered 500 and sent again, unchanged.
    let first = &events[0];
    assert_eq!(first.attempt, "1");
    let retry = events[1..].iter().find(|s| s.delivery == first.delivery).unwrap();
    assert_eq!(retry.attempt, "2");
    assert_eq!(retry.body, first.body, "a retry sends the same event");
    assert_eq!(first.body["id"], first.delivery.as_str());

    // sync.completed names the recorded attempt, with its row counts.
    let completed = events.iter().find(|s| s.body["type"] == "sync.completed").unwrap();
    let data = &completed.body["data"];
    assert_eq!(data["account"], "openai-org-1");
    assert_eq!(data["provider"], "openai");
    assert!(data.get("error").is_none());
    let created: chrono::DateTime<chrono::Utc> = completed.body["created_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(completed.timestamp, created.timestamp());
    let run_id = data["run_id"].as_str().unwrap();
    let client = config.client();
    let stored = support::query_tsv(
        &client,
        &format!("SELECT status, rows_written, rows_cancelled, toUnixTimestamp(window_start) FROM {{db}}.sync_runs WHERE run_id = '{run_id}'"),
    )
    .await;
    let window_start: chrono::DateTime<chrono::Utc> = data["window"]["start"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        stored.trim(),
        format!(
            "success\t{}\t{}\t{}",
            data["rows_written"],
            data["rows_cancelled"],
            window_start.timestamp()
        )
    );

    // sync.failed carries the typed reason and no credential.
    let failed = events.iter().find(|s| s.body["type"] == "sync.failed").unwrap();
    let data = &failed.body["data"];
    assert_eq!(data["account"], "anthropic-org-2");
    assert_eq!(data["error"]["kind"], "auth");
    assert!(data["run_id"].as_str().is_some());
    assert!(
        !failed.body.to_string().contains(bad_key),
        "the key leaked: {}",
        failed.body
    );

    let text = metrics(&http, port).await;
    let series = |event: &str, outcome: &str| {
        metric_value(
            &text,
            &format!(
                "tokentra_sync_webhook_deliveries_total{{event=\"{event}\",outcome=\"{outcome}\",webhook=\"receiver\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    let first_type = first.body["type"].as_str().unwrap();
    assert!(series(first_type, "retried") >= 1.0, "{text}");
    assert!(series("sync.completed", "delivered") >= 1.0, "{text}");
    assert!(series("sync.failed", "delivered") >= 1.0, "{text}");
    assert!(!text.contains(SECRET));

    stop_with_sigterm(child).await;
    server_handle.stop(true).await;
    sim.stop().await;
}
