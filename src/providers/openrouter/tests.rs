//! The adapter against a mock OpenRouter on 127.0.0.1.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::TimeZone;
use rust_decimal::Decimal;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::config::secret::Secret;
use crate::providers::AccountView;

const API: &str = "sk-or-v1-FAKE-TEST-inference-0123456789";
const MGMT: &str = "sk-or-v1-FAKE-TEST-management-0123456789";
const ACCOUNT: &str = "openrouter-test";
const FIXTURE: &str = include_str!("../../../tests/fixtures/openrouter/activity.json");

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

fn config(creds: &[(&str, &str)]) -> OpenRouterConfig {
    let creds: BTreeMap<String, Secret> = creds.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect();
    let settings = BTreeMap::new();
    OpenRouterConfig::read(AccountView {
        id: ACCOUNT,
        base_url: "",
        credentials: &creds,
        settings: &settings,
    })
    .unwrap()
}

/// An adapter whose "today" is 2025-08-27, so the fixture's days are held.
async fn setup(creds: &[(&str, &str)]) -> (MockServer, OpenRouterAdapter) {
    let server = MockServer::start().await;
    let mut adapter =
        OpenRouterAdapter::new(ACCOUNT, &format!("{}/api/v1/", server.uri()), &config(creds), policy()).unwrap();
    adapter.today = NaiveDate::from_ymd_opt(2025, 8, 27);
    (server, adapter)
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 8, d, 0, 0, 0).unwrap()
}

fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

#[tokio::test]
async fn openrouter_activity_uses_the_management_key_and_covers_the_window_days() {
    let (server, adapter) = setup(&[("api_key", API), ("management_key", MGMT)]).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/activity"))
        .and(header("authorization", format!("Bearer {MGMT}").as_str()))
        .respond_with(json(FIXTURE))
        .expect(2)
        .mount(&server)
        .await;
    // 08-25 .. 08-27: the 08-24 rows are outside the window and left out.
    let window = TimeWindow::new(day(25), day(27));
    let cost = adapter.fetch(&SPECS[0], window).await.unwrap();
    assert_eq!(
        cost.covered_buckets.iter().copied().collect::<Vec<_>>(),
        [day(25), day(26)]
    );
    assert_eq!(cost.records.len(), 2);
    let billed: Decimal = cost.records.iter().map(|r| r.measures.cost).sum();
    assert_eq!(billed, Decimal::from_str("0.000025").unwrap());
    let usage = adapter.fetch(&SPECS[1], window).await.unwrap();
    let byok: Decimal = usage.records.iter().filter_map(|r| r.measures.provider_estimate).sum();
    assert_eq!(byok, Decimal::from_str("0.4375").unwrap());
    assert_eq!(usage.records.iter().map(|r| r.measures.requests).sum::<i64>(), 10);
}

#[tokio::test]
async fn openrouter_window_is_clamped_to_the_30_days_the_api_keeps() {
    let (server, adapter) = setup(&[("api_key", MGMT)]).await;
    Mock::given(method("GET"))
        .respond_with(json(r#"{"data": []}"#))
        .mount(&server)
        .await;
    // Asked for 60 days up to tomorrow: covered are 07-28 ..= 08-26 only.
    let window = TimeWindow::new(day(28) - chrono::Duration::days(59), day(28));
    let fetch = adapter.fetch(&SPECS[1], window).await.unwrap();
    assert_eq!(fetch.covered_buckets.len(), 30);
    assert_eq!(
        fetch.covered_buckets.first(),
        Some(&(day(27) - chrono::Duration::days(30)))
    );
    assert_eq!(fetch.covered_buckets.last(), Some(&day(26)), "today is not complete");
    // A window wholly older than the API's memory makes no request.
    let old = TimeWindow::new(day(1) - chrono::Duration::days(60), day(1) - chrono::Duration::days(40));
    assert!(adapter.fetch(&SPECS[1], old).await.unwrap().covered_buckets.is_empty());
    assert_eq!(adapter.http_stats().snapshot().0, 1);
}

#[tokio::test]
async fn openrouter_an_inference_key_gets_a_hint_naming_the_management_key() {
    let (server, adapter) = setup(&[("api_key", API)]).await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_string(r#"{"error":{"code":403,"message":"Only management keys can fetch activity"}}"#),
        )
        .mount(&server)
        .await;
    let err = adapter
        .fetch(&SPECS[0], TimeWindow::new(day(24), day(26)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth { status: 403, .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(ACCOUNT) && text.contains("credentials.management_key"),
        "{text}"
    );
    assert!(text.contains("openrouter.ai/settings/management-keys"), "{text}");
    assert!(!text.contains(API) && !format!("{adapter:?}").contains(API));
    assert_eq!(adapter.http_stats().snapshot(), (1, 0), "auth failures are not retried");
}

#[tokio::test]
async fn openrouter_429_with_retry_after_then_success_and_guards_apply() {
    let (server, adapter) = setup(&[("api_key", MGMT)]).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json(FIXTURE))
        .mount(&server)
        .await;
    let fetch = adapter
        .fetch(&SPECS[0], TimeWindow::new(day(24), day(26)))
        .await
        .unwrap();
    assert_eq!(fetch.records.len(), 4);
    assert_eq!(adapter.http_stats().snapshot(), (2, 1));

    // A negative bill is refused by the platform's guard, naming the field.
    let (server, adapter) = setup(&[("api_key", MGMT)]).await;
    let negative = FIXTURE.replacen("\"usage\": 0.0150000000000000012", "\"usage\": -3.5", 1);
    Mock::given(method("GET"))
        .respond_with(json(&negative))
        .mount(&server)
        .await;
    let err = adapter
        .fetch(&SPECS[0], TimeWindow::new(day(24), day(26)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cost is negative"), "{err}");
}
