//! The adapter against a mock Runway on 127.0.0.1: request shape, the 90-day
//! split, refunds, covered days and the wrong-key message.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const KEY: &str = "key_FAKE_TEST_0123456789abcdef0123456789";
const USAGE_BODY: &str = include_str!("../../../tests/fixtures/runway/usage.json");

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..RetryPolicy::default()
    }
}

async fn setup() -> (MockServer, RunwayAdapter) {
    let server = MockServer::start().await;
    let adapter = RunwayAdapter::new(
        "runway-test",
        &server.uri(),
        KEY.to_string(),
        Decimal::new(1, 2),
        policy(),
    )
    .unwrap();
    (server, adapter)
}

fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn day(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

#[tokio::test]
async fn one_post_per_window_with_version_header_utc_dates_and_refunds_kept() {
    let (server, adapter) = setup().await;
    Mock::given(method("POST"))
        .and(path("/v1/organization/usage"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("x-runway-version", "2024-11-06"))
        .and(body_json(
            serde_json::json!({"startDate": "2025-01-14", "beforeDate": "2025-01-18"}),
        ))
        .respond_with(json(USAGE_BODY))
        .expect(1)
        .mount(&server)
        .await;
    // A ragged window is widened to whole UTC days.
    let window = TimeWindow::new(
        day(2025, 1, 14) + chrono::Duration::hours(5),
        day(2025, 1, 17) + chrono::Duration::hours(1),
    );
    let fetch = adapter.fetch(&USAGE, window).await.unwrap();
    assert_eq!(fetch.records.len(), 4);
    // Every asked day is covered, the 14th too (no usage: stored rows vanish).
    assert_eq!(fetch.covered_buckets.len(), 4);
    assert!(fetch.covered_buckets.contains(&day(2025, 1, 14)));
    let credits: Decimal = fetch.records.iter().map(|r| r.measures.quantity).sum();
    assert_eq!(credits, Decimal::from(653));
    assert!(fetch.records.iter().any(|r| r.measures.quantity == Decimal::from(-50)));
}

#[tokio::test]
async fn windows_longer_than_90_days_are_asked_in_pieces() {
    let (server, adapter) = setup().await;
    let empty = r#"{"models":[],"results":[]}"#;
    let pieces = [
        ("2024-01-01", "2024-03-31"),
        ("2024-03-31", "2024-06-29"),
        ("2024-06-29", "2024-07-10"),
    ];
    for (start, before) in pieces {
        Mock::given(method("POST"))
            .and(path("/v1/organization/usage"))
            .and(body_json(serde_json::json!({"startDate": start, "beforeDate": before})))
            .respond_with(json(empty))
            .expect(1)
            .mount(&server)
            .await;
    }
    let window = TimeWindow::new(day(2024, 1, 1), day(2024, 7, 10));
    assert_eq!(
        RunwayAdapter::pieces(window)
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>(),
        pieces.map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let fetch = adapter.fetch(&USAGE, window).await.unwrap();
    assert_eq!(fetch.covered_buckets.len(), 191);
    assert!(fetch.records.is_empty());
}

#[tokio::test]
async fn a_day_outside_the_piece_fails_the_endpoint() {
    let (server, adapter) = setup().await;
    Mock::given(path("/v1/organization/usage"))
        .respond_with(json(USAGE_BODY))
        .mount(&server)
        .await;
    let err = adapter
        .fetch(&USAGE, TimeWindow::new(day(2025, 1, 15), day(2025, 1, 17)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), crate::providers::FailureKind::Malformed);
    assert!(err.to_string().contains("outside the asked days"), "{err}");
}

#[tokio::test]
async fn a_rejected_secret_names_the_developer_portal_and_never_the_key() {
    let (server, adapter) = setup().await;
    Mock::given(path("/v1/organization/usage"))
        .respond_with(ResponseTemplate::new(401).set_body_string(r#"{"error":"Invalid API key"}"#))
        .expect(1)
        .mount(&server)
        .await;
    let err = adapter
        .fetch(&USAGE, TimeWindow::new(day(2025, 1, 15), day(2025, 1, 17)))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), crate::providers::FailureKind::Auth);
    assert!(text.contains("dev.runwayml.com"), "{text}");
    assert!(!text.contains("0123456789abcdef0123456789"), "{text}");
}
