//! The adapter against a mock LiteLLM proxy on 127.0.0.1.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, TimeZone};
use rust_decimal::Decimal;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::config::secret::Secret;
use crate::providers::AccountView;

const KEY: &str = "sk-FAKE-TEST-litellm-master-0123456789";
const ACCOUNT: &str = "litellm-test";
const PAGE1: &str = include_str!("../../../tests/fixtures/litellm/daily_activity_page1.json");
const PAGE2: &str = include_str!("../../../tests/fixtures/litellm/daily_activity_page2.json");

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

async fn setup() -> (MockServer, LiteLlmAdapter) {
    let server = MockServer::start().await;
    let creds = BTreeMap::from([("api_key".to_string(), Secret::new(KEY))]);
    let settings = BTreeMap::new();
    let base = format!("{}/", server.uri());
    let config = LiteLlmConfig::read(AccountView {
        id: ACCOUNT,
        base_url: &base,
        credentials: &creds,
        settings: &settings,
    })
    .unwrap();
    (server, LiteLlmAdapter::new(ACCOUNT, &config, policy()).unwrap())
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, d, 0, 0, 0).unwrap()
}

fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

#[tokio::test]
async fn litellm_pages_are_merged_by_date_with_inclusive_end_and_no_timezone() {
    let (server, adapter) = setup().await;
    for (page, body) in [("1", PAGE1), ("2", PAGE2)] {
        Mock::given(method("GET"))
            .and(path("/user/daily/activity"))
            .and(header("authorization", format!("Bearer {KEY}").as_str()))
            .and(query_param("start_date", "2025-03-25"))
            .and(query_param("end_date", "2025-03-27"))
            .and(query_param("page_size", "1000"))
            .and(query_param("page", page))
            .and(query_param_is_missing("timezone"))
            .respond_with(json(body))
            .expect(1)
            .mount(&server)
            .await;
    }
    let fetch = adapter.fetch(&SPEC, TimeWindow::new(day(25), day(28))).await.unwrap();
    // 03-25 has no rows but is covered; 03-26 came on both pages.
    assert_eq!(
        fetch.covered_buckets.iter().copied().collect::<Vec<_>>(),
        [day(25), day(26), day(27)]
    );
    let on = |d: u32| {
        fetch
            .records
            .iter()
            .filter(|r| r.identity.bucket_start == day(d))
            .count()
    };
    assert_eq!((on(25), on(26), on(27)), (0, 4, 1));
    let estimate: Decimal = fetch.records.iter().filter_map(|r| r.measures.provider_estimate).sum();
    assert_eq!(estimate, Decimal::from_str("0.0177201500000000001").unwrap());
    assert!(
        fetch.records.iter().all(|r| r.measures.cost.is_zero()),
        "spend is never cost"
    );
    let requests: i64 = fetch
        .records
        .iter()
        .filter(|r| r.identity.bucket_start == day(26))
        .map(|r| r.measures.requests)
        .sum();
    assert_eq!(requests, 5, "both pages of 03-26 count, once each");
}

#[tokio::test]
async fn litellm_a_row_repeated_on_the_next_page_is_refused_not_summed() {
    let (server, adapter) = setup().await;
    Mock::given(method("GET"))
        .and(query_param("page", "1"))
        .respond_with(json(PAGE1))
        .mount(&server)
        .await;
    // Page 2 repeats page 1 (a proxy without a stable order, LiteLLM #30164).
    Mock::given(method("GET"))
        .and(query_param("page", "2"))
        .respond_with(json(&PAGE1.replace("\"has_more\": true", "\"has_more\": false")))
        .mount(&server)
        .await;
    let err = adapter
        .fetch(&SPEC, TimeWindow::new(day(25), day(28)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refusing to count it twice"), "{err}");
}

#[tokio::test]
async fn litellm_a_rejected_key_names_the_master_key_and_never_the_key() {
    let (server, adapter) = setup().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_string(
            r#"{"error":{"message":"Authentication Error, Invalid proxy server token passed.","type":"auth_error","param":"None","code":"401"}}"#,
        ))
        .mount(&server)
        .await;
    let err = adapter
        .fetch(&SPEC, TimeWindow::new(day(25), day(28)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Auth { status: 401, .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(ACCOUNT) && text.contains("master key") && text.contains("credentials.api_key"),
        "{text}"
    );
    assert!(!text.contains(KEY) && !format!("{adapter:?}").contains(KEY));
}

#[tokio::test]
async fn litellm_a_server_error_is_retried_and_a_day_outside_the_window_is_refused() {
    let (server, adapter) = setup().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json(PAGE2))
        .mount(&server)
        .await;
    let fetch = adapter.fetch(&SPEC, TimeWindow::new(day(26), day(27))).await.unwrap();
    assert_eq!(fetch.records.len(), 2);
    assert_eq!(adapter.http_stats().snapshot(), (2, 1));
    // 03-26 is not in a window of 03-27 only.
    let err = adapter
        .fetch(&SPEC, TimeWindow::new(day(27), day(28)))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("outside the asked window"), "{err}");
}

/// Page `n` of `of`: one row of 2025-03-26 for key `k{n}`.
fn one_row_page(n: u32, of: u32) -> String {
    format!(
        r#"{{"results": [{{"date": "2025-03-26", "metrics": {{}}, "breakdown": {{"models": {{"gpt-4o-mini": {{"metrics": {{}},
           "api_key_breakdown": {{"k{n}": {{"metrics": {{"spend": 0.5, "prompt_tokens": 10, "api_requests": 1}}, "metadata": {{}}}}}}}}}}}}}}],
           "metadata": {{"page": {n}, "total_pages": {of}, "has_more": {}}}}}"#,
        n < of
    )
}

#[tokio::test]
async fn litellm_one_day_over_many_pages_is_progress_not_endless_paging() {
    let (server, adapter) = setup().await;
    for n in 1..=6 {
        Mock::given(method("GET"))
            .and(query_param("page", n.to_string().as_str()))
            .respond_with(json(&one_row_page(n, 6)))
            .expect(1)
            .mount(&server)
            .await;
    }
    let fetch = adapter.fetch(&SPEC, TimeWindow::new(day(26), day(27))).await.unwrap();
    assert_eq!(fetch.records.len(), 6);
    let estimate: Decimal = fetch.records.iter().filter_map(|r| r.measures.provider_estimate).sum();
    assert_eq!(estimate, Decimal::from(3));
}
