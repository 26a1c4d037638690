//! The adapter against a mock OpenAI on 127.0.0.1: request shape, paging,
//! retries and failures. Page parsing is tested in `parse.rs`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::*;

const KEY: &str = "sk-admin-FAKE-TEST-0123456789abcdefghij";
const ACCOUNT: &str = "openai-test";
const PAGE1: &str = include_str!("../../../tests/fixtures/openai/completions_page1.json");
const PAGE2: &str = include_str!("../../../tests/fixtures/openai/completions_page2.json");
const COSTS: &str = include_str!("../../../tests/fixtures/openai/costs.json");
const EMPTY: &str = r#"{"object":"page","data":[],"has_more":false,"next_page":null}"#;

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

async fn setup() -> (MockServer, OpenAiAdapter) {
    let server = MockServer::start().await;
    let adapter = OpenAiAdapter::new(ACCOUNT, &format!("{}/v1/", server.uri()), KEY.to_string(), policy()).unwrap();
    (server, adapter)
}

fn json(body: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.as_bytes().to_vec(), "application/json")
}

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).unwrap()
}

fn spec(endpoint: &str) -> EndpointSpec {
    ENDPOINTS.iter().find(|def| def.spec.endpoint == endpoint).unwrap().spec
}

/// 2025-01-15 00:00 to 03:00 UTC: three hourly buckets, long past.
fn past_hours() -> TimeWindow {
    TimeWindow::new(t(1_736_899_200), t(1_736_899_200 + 3 * 3600))
}

/// 2025-01-15 and 2025-01-16.
fn past_days() -> TimeWindow {
    TimeWindow::new(t(1_736_899_200), t(1_736_899_200 + 2 * 86_400))
}

fn params(request: &Request) -> Vec<(String, String)> {
    request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(request: &Request, name: &str) -> Option<String> {
    params(request).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

#[test]
fn endpoint_table_is_the_documented_one() {
    let adapter = OpenAiAdapter::new(ACCOUNT, "https://api.openai.com/v1", KEY.to_string(), policy()).unwrap();
    let got: Vec<(RecordType, &str, Granularity)> = adapter
        .endpoints()
        .iter()
        .map(|s| (s.record_type, s.endpoint, s.granularity))
        .collect();
    let hour = |e| (RecordType::Usage, e, Granularity::Hour);
    assert_eq!(
        got,
        vec![
            hour("completions"),
            hour("embeddings"),
            hour("moderations"),
            hour("images"),
            hour("audio_speeches"),
            hour("audio_transcriptions"),
            (RecordType::Usage, "vector_stores", Granularity::Day),
            hour("file_search_calls"),
            hour("web_search_calls"),
            hour("code_interpreter_sessions"),
            (RecordType::Cost, "costs", Granularity::Day),
        ]
    );
}

#[tokio::test]
async fn every_endpoint_sends_its_path_width_limit_and_group_by() {
    let (server, adapter) = setup().await;
    Mock::given(method("GET"))
        .respond_with(json(EMPTY))
        .mount(&server)
        .await;
    let key_model = ["project_id", "user_id", "api_key_id", "model"].as_slice();
    let expected: &[(&str, &str, &str, &str, &[&str])] = &[
        (
            "completions",
            "/v1/organization/usage/completions",
            "1h",
            "168",
            &["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"],
        ),
        (
            "embeddings",
            "/v1/organization/usage/embeddings",
            "1h",
            "168",
            key_model,
        ),
        (
            "moderations",
            "/v1/organization/usage/moderations",
            "1h",
            "168",
            key_model,
        ),
        (
            "images",
            "/v1/organization/usage/images",
            "1h",
            "168",
            &["project_id", "user_id", "api_key_id", "model", "size", "source"],
        ),
        (
            "audio_speeches",
            "/v1/organization/usage/audio_speeches",
            "1h",
            "168",
            key_model,
        ),
        (
            "audio_transcriptions",
            "/v1/organization/usage/audio_transcriptions",
            "1h",
            "168",
            key_model,
        ),
        (
            "vector_stores",
            "/v1/organization/usage/vector_stores",
            "1d",
            "31",
            &["project_id"],
        ),
        (
            "file_search_calls",
            "/v1/organization/usage/file_search_calls",
            "1h",
            "168",
            &["project_id", "user_id", "api_key_id", "vector_store_id"],
        ),
        (
            "web_search_calls",
            "/v1/organization/usage/web_search_calls",
            "1h",
            "168",
            &["project_id", "user_id", "api_key_id", "model", "context_level"],
        ),
        (
            "code_interpreter_sessions",
            "/v1/organization/usage/code_interpreter_sessions",
            "1h",
            "168",
            &["project_id"],
        ),
        (
            "costs",
            "/v1/organization/costs",
            "1d",
            "180",
            &["project_id", "line_item", "api_key_id"],
        ),
    ];
    for spec in adapter.endpoints() {
        adapter.fetch(&spec, past_days()).await.unwrap();
    }
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), expected.len());
    for (request, (endpoint, url_path, width, limit, group_by)) in requests.iter().zip(expected) {
        assert_eq!(request.url.path(), *url_path, "{endpoint}");
        assert_eq!(param(request, "bucket_width").as_deref(), Some(*width), "{endpoint}");
        assert_eq!(param(request, "limit").as_deref(), Some(*limit), "{endpoint}");
        assert_eq!(
            param(request, "start_time").as_deref(),
            Some("1736899200"),
            "{endpoint}"
        );
        assert_eq!(param(request, "end_time").as_deref(), Some("1737072000"), "{endpoint}");
        let sent: Vec<String> = params(request)
            .into_iter()
            .filter(|(k, _)| k == "group_by[]")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(sent, group_by.to_vec(), "{endpoint}");
        assert!(param(request, "group_by").is_none(), "only the bracket form is sent");
        assert_eq!(
            request.headers.get("authorization").unwrap().to_str().unwrap(),
            format!("Bearer {KEY}")
        );
    }
}

#[tokio::test]
async fn pages_are_followed_with_identical_parameters() {
    let (server, adapter) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1/organization/usage/completions"))
        .and(query_param("page", "page_AAAAAGeH1sAAAAAAZ4lYgA=="))
        .respond_with(json(PAGE2))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/organization/usage/completions"))
        .and(query_param_is_missing("page"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(json(PAGE1))
        .mount(&server)
        .await;

    let fetch = adapter.fetch(&spec("completions"), past_hours()).await.unwrap();

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let first = params(&requests[0]);
    let mut second = params(&requests[1]);
    assert_eq!(
        param(&requests[1], "page").as_deref(),
        Some("page_AAAAAGeH1sAAAAAAZ4lYgA==")
    );
    second.retain(|(k, _)| k != "page");
    assert_eq!(first, second, "the second page asks the same question");

    let models: Vec<&str> = fetch.records.iter().map(|r| r.dims.model_raw.as_str()).collect();
    assert_eq!(
        models,
        vec!["gpt-4o-mini-2024-07-18", "gpt-4.1-2025-04-14", "o3-mini-2025-01-31"]
    );
    // The empty bucket (01:00) counts as covered: its stored records may vanish.
    let covered: Vec<DateTime<Utc>> = fetch.covered_buckets.iter().copied().collect();
    assert_eq!(covered, vec![t(1_736_899_200), t(1_736_902_800), t(1_736_906_400)]);
    assert_eq!(adapter.http_stats().snapshot(), (2, 0));
}

#[tokio::test]
async fn costs_money_survives_exactly() {
    let (server, adapter) = setup().await;
    Mock::given(method("GET"))
        .and(path("/v1/organization/costs"))
        .respond_with(json(COSTS))
        .mount(&server)
        .await;
    let fetch = adapter.fetch(&spec("costs"), past_days()).await.unwrap();
    assert_eq!(fetch.records[0].measures.cost.to_string(), "0.8958740000000000123");
    assert_eq!(fetch.records[0].identity.record_type, RecordType::Cost);
    assert_eq!(fetch.covered_buckets.len(), 2);
}

/// Answers `first` once and the costs fixture after that.
async fn costs_after(first: ResponseTemplate) -> (EndpointFetch, Arc<HttpStats>) {
    let (server, adapter) = setup().await;
    Mock::given(method("GET"))
        .respond_with(first)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json(COSTS))
        .mount(&server)
        .await;
    let fetch = adapter.fetch(&spec("costs"), past_days()).await.unwrap();
    (fetch, adapter.http_stats())
}

#[tokio::test]
async fn rate_limit_with_retry_after_then_success() {
    let (fetch, stats) = costs_after(ResponseTemplate::new(429).insert_header("Retry-After", "0")).await;
    assert_eq!(fetch.records.len(), 5);
    assert_eq!(stats.snapshot(), (2, 1));
    assert_eq!(stats.rate_limit_waits.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn server_error_then_success() {
    let (fetch, stats) = costs_after(ResponseTemplate::new(500).set_body_string("upstream hiccup")).await;
    assert_eq!(fetch.records.len(), 5);
    assert_eq!(stats.snapshot(), (2, 1));
    assert_eq!(stats.rate_limit_waits.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn truncated_body_then_success() {
    let (fetch, stats) = costs_after(json(&COSTS[..COSTS.len() / 2])).await;
    assert_eq!(fetch.records.len(), 5);
    assert_eq!(stats.snapshot(), (2, 1));
}

#[tokio::test]
async fn unauthorized_names_the_account_and_the_admin_key_but_not_the_key() {
    let (server, adapter) = setup().await;
    // OpenAI masks the key it echoes; the mock does the same.
    let body = r#"{"error":{"message":"Incorrect API key provided: sk-admin-****ghij.","type":"invalid_request_error","code":"invalid_api_key"}}"#;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_string(body))
        .mount(&server)
        .await;

    let err = adapter.fetch(&spec("completions"), past_hours()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Auth { status: 401, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(ACCOUNT), "{text}");
    assert!(text.contains("Admin key") && text.contains("sk-admin-..."), "{text}");
    assert!(!text.contains(KEY) && !format!("{err:?}").contains(KEY));
    assert_eq!(adapter.http_stats().snapshot(), (1, 0), "auth failures are not retried");
}

#[tokio::test]
async fn a_malformed_page_fails_the_whole_fetch() {
    let (server, adapter) = setup().await;
    let bad = PAGE2.replace(r#""input_tokens": 500"#, r#""input_tokens": "abc""#);
    assert_ne!(bad, PAGE2);
    Mock::given(method("GET"))
        .and(query_param("page", "page_AAAAAGeH1sAAAAAAZ4lYgA=="))
        .respond_with(json(&bad))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json(PAGE1))
        .mount(&server)
        .await;

    let err = adapter.fetch(&spec("completions"), past_hours()).await.unwrap_err();
    let ProviderError::Malformed {
        account,
        endpoint,
        detail,
    } = &err
    else {
        panic!("expected Malformed, got {err:?}");
    };
    assert_eq!((account.as_str(), endpoint.as_str()), (ACCOUNT, "completions"));
    assert!(
        detail.contains("'input_tokens'") && detail.contains("page 2"),
        "{detail}"
    );
}

#[tokio::test]
async fn has_more_without_next_page_is_an_error() {
    let (server, adapter) = setup().await;
    let body = PAGE1.replace(r#""page_AAAAAGeH1sAAAAAAZ4lYgA==""#, "null");
    Mock::given(method("GET"))
        .respond_with(json(&body))
        .mount(&server)
        .await;

    let err = adapter.fetch(&spec("completions"), past_hours()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("next_page"), "{err}");
}

#[tokio::test]
async fn a_repeated_cursor_is_an_error_not_a_loop() {
    let (server, adapter) = setup().await;
    Mock::given(method("GET"))
        .respond_with(json(PAGE1))
        .mount(&server)
        .await;

    let err = adapter.fetch(&spec("completions"), past_hours()).await.unwrap_err();
    // The same page again: its buckets repeat before its cursor does.
    assert!(err.to_string().contains("already returned"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn end_time_is_clamped_to_now() {
    let (server, adapter) = setup().await;
    Mock::given(method("GET"))
        .respond_with(json(EMPTY))
        .mount(&server)
        .await;
    let before = Utc::now().timestamp();
    let window = TimeWindow::new(
        Granularity::Day.floor(Utc::now()) - chrono::Duration::days(1),
        Granularity::Day.floor(Utc::now()) + chrono::Duration::days(3),
    );

    adapter.fetch(&spec("costs"), window).await.unwrap();

    let after = Utc::now().timestamp();
    let requests = server.received_requests().await.unwrap();
    let end: i64 = param(&requests[0], "end_time").unwrap().parse().unwrap();
    assert!(
        before <= end && end <= after,
        "end_time {end} not within [{before}, {after}]"
    );
}

#[tokio::test]
async fn a_window_wholly_in_the_future_makes_no_request() {
    let (server, adapter) = setup().await;
    Mock::given(method("GET"))
        .respond_with(json(EMPTY))
        .mount(&server)
        .await;
    let start = Granularity::Hour.ceil(Utc::now()) + chrono::Duration::hours(1);
    let window = TimeWindow::new(start, start + chrono::Duration::hours(5));

    let fetch = adapter.fetch(&spec("completions"), window).await.unwrap();
    assert!(fetch.records.is_empty() && fetch.covered_buckets.is_empty());
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_endpoint_is_a_config_error() {
    let (_server, adapter) = setup().await;
    let wrong = EndpointSpec {
        record_type: RecordType::Usage,
        endpoint: "completions",
        granularity: Granularity::Day,
    };
    let err = adapter.fetch(&wrong, past_days()).await.unwrap_err();
    assert!(matches!(err, ProviderError::Config { .. }), "{err:?}");
}

#[test]
fn construction_checks_url_and_key_and_hides_the_key() {
    let adapter = OpenAiAdapter::new(ACCOUNT, "https://api.openai.com/v1/", KEY.to_string(), policy()).unwrap();
    assert_eq!(adapter.base_url, "https://api.openai.com/v1");
    let debug = format!("{adapter:?}");
    assert!(!debug.contains(KEY) && debug.contains("<redacted>"), "{debug}");

    let bad_url = OpenAiAdapter::new(ACCOUNT, "api.openai.com/v1", KEY.to_string(), policy()).unwrap_err();
    assert!(matches!(bad_url, ProviderError::Config { .. }) && bad_url.to_string().contains("base_url"));
    let no_key = OpenAiAdapter::new(ACCOUNT, "https://api.openai.com/v1", " ".to_string(), policy()).unwrap_err();
    assert!(no_key.to_string().contains("credentials.api_key"), "{no_key}");
}
