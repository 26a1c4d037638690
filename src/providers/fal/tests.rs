//! The adapter against a mock fal.ai on 127.0.0.1: request shape, paging,
//! UTC days and the wrong-key message. Page parsing is tested in `parse.rs`.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const KEY: &str = "FAKE-TEST-0000-1111:abcdef0123456789abcdef";
const PAGE1: &str = include_str!("../../../tests/fixtures/fal/usage_page1.json");
const PAGE2: &str = include_str!("../../../tests/fixtures/fal/usage_page2.json");

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

async fn setup() -> (MockServer, FalAdapter) {
    let server = MockServer::start().await;
    let adapter = FalAdapter::new("fal-test", &format!("{}/v1/", server.uri()), KEY.to_string(), policy()).unwrap();
    (server, adapter)
}

fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

/// 2025-01-15 and 2025-01-16 (UTC), long past.
fn two_days() -> TimeWindow {
    TimeWindow::new(
        Utc.with_ymd_and_hms(2025, 1, 15, 0, 0, 0).unwrap(),
        Utc.with_ymd_and_hms(2025, 1, 17, 0, 0, 0).unwrap(),
    )
}

#[tokio::test]
async fn pages_follow_the_cursor_with_utc_days_and_the_key_scheme() {
    let (server, adapter) = setup().await;
    let common = || {
        Mock::given(method("GET"))
            .and(path("/v1/models/usage"))
            .and(header("authorization", format!("Key {KEY}").as_str()))
            .and(query_param("timeframe", "day"))
            .and(query_param("timezone", "UTC"))
            .and(query_param("start", "2025-01-15T00:00:00Z"))
            .and(query_param("end", "2025-01-17T00:00:00Z"))
    };
    common()
        .and(query_param_is_missing("cursor"))
        .respond_with(json(PAGE1))
        .expect(1)
        .mount(&server)
        .await;
    common()
        .and(query_param("cursor", "Mg=="))
        .respond_with(json(PAGE2))
        .expect(1)
        .mount(&server)
        .await;
    let fetch = adapter.fetch(&USAGE, two_days()).await.unwrap();
    assert_eq!(fetch.records.len(), 3);
    let days: Vec<String> = fetch.covered_buckets.iter().map(|d| d.to_rfc3339()).collect();
    assert_eq!(days, ["2025-01-15T00:00:00+00:00", "2025-01-16T00:00:00+00:00"]);
    let total: Decimal = fetch.records.iter().map(|r| r.measures.cost).sum();
    assert_eq!(total.to_string(), "5.1625000000000000055511");
    // The 16th continued on page 2: both of its rows are kept once.
    let sixteenth = fetch
        .records
        .iter()
        .filter(|r| r.identity.bucket_start == two_days().start + chrono::Duration::days(1))
        .count();
    assert_eq!(sixteenth, 1);
}

#[tokio::test]
async fn a_day_listed_again_on_a_later_page_is_refused_not_summed() {
    let (server, adapter) = setup().await;
    let again = PAGE1.replace("\"Mg==\"", "\"Mw==\"");
    Mock::given(path("/v1/models/usage"))
        .and(query_param_is_missing("cursor"))
        .respond_with(json(PAGE1))
        .mount(&server)
        .await;
    Mock::given(path("/v1/models/usage"))
        .and(query_param("cursor", "Mg=="))
        .respond_with(json(&again))
        .mount(&server)
        .await;
    let err = adapter.fetch(&USAGE, two_days()).await.unwrap_err();
    assert_eq!(err.kind(), crate::providers::FailureKind::Malformed);
    assert!(err.to_string().contains("already returned"), "{err}");
}

#[tokio::test]
async fn buckets_of_another_time_zone_are_refused() {
    let (server, adapter) = setup().await;
    let body = r#"{"time_series":[{"bucket":"2025-01-15T00:00:00-05:00","results":[]}],"has_more":false}"#;
    Mock::given(path("/v1/models/usage"))
        .respond_with(json(body))
        .mount(&server)
        .await;
    let err = adapter.fetch(&USAGE, two_days()).await.unwrap_err();
    assert!(err.to_string().contains("not one whole 1d bucket"), "{err}");
}

#[tokio::test]
async fn an_api_scope_key_gets_the_admin_key_hint_without_the_key() {
    let (server, adapter) = setup().await;
    Mock::given(path("/v1/models/usage"))
        .respond_with(ResponseTemplate::new(403).set_body_string(r#"{"detail":"Insufficient scope: ADMIN required"}"#))
        .expect(1)
        .mount(&server)
        .await;
    let err = adapter.fetch(&USAGE, two_days()).await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.kind(), crate::providers::FailureKind::Auth);
    assert!(text.contains("ADMIN") && text.contains("Settings > API Keys"), "{text}");
    assert!(!text.contains("abcdef0123456789"), "{text}");
}

#[tokio::test]
async fn future_windows_ask_nothing() {
    let (_server, adapter) = setup().await;
    let start = Granularity::Day.ceil(Utc::now()) + chrono::Duration::days(1);
    let fetch = adapter
        .fetch(&USAGE, TimeWindow::new(start, start + chrono::Duration::days(2)))
        .await
        .unwrap();
    assert!(fetch.records.is_empty() && fetch.covered_buckets.is_empty());
}
