//! The analytics adapter against fixtures in the documented row format.

use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::normalize::record_key::record_key;
use crate::providers::anthropic::ApiMode;
use crate::providers::{ProviderAdapter, RetryPolicy};

const KEY: &str = "sk-ant-admin01-FAKE-TEST-analytics-key";
const ACCOUNT: &str = "acme-analytics";
const USAGE_PATH: &str = "/v1/organizations/analytics/usage";
const COST_PATH: &str = "/v1/organizations/analytics/cost";

fn fixture(name: &str) -> String {
    let file = format!("{}/tests/fixtures/anthropic/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn json_body(name: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(fixture(name), "application/json")
}

fn adapter(server: &MockServer) -> AnthropicAdapter {
    let policy = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        request_timeout: Duration::from_secs(10),
        ..RetryPolicy::default()
    };
    let mut adapter = AnthropicAdapter::new(ACCOUNT, &server.uri(), KEY.to_string(), policy)
        .unwrap()
        .with_mode(ApiMode::Analytics);
    // Long after the fixtures' buckets.
    adapter.now = || Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    adapter
}

fn utc(d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, d, h, 0, 0).unwrap()
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn pairs(request: &wiremock::Request) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = request
        .url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    pairs
}

async fn mount_pages(server: &MockServer, at: &str, first: &str, cursor: &str, second: &str) {
    Mock::given(method("GET"))
        .and(path(at))
        .and(header("anthropic-beta", BETA))
        .and(header("anthropic-version", "2023-06-01"))
        .and(header("x-api-key", KEY))
        .and(query_param_is_missing("page"))
        .respond_with(json_body(first))
        .expect(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path(at))
        .and(header("anthropic-beta", BETA))
        .and(query_param("page", cursor))
        .respond_with(json_body(second))
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn usage_pages_follow_the_cursor_with_identical_params_and_the_beta_header() {
    let server = MockServer::start().await;
    mount_pages(
        &server,
        USAGE_PATH,
        "analytics_usage_page1.json",
        "page_cm93OjM=",
        "analytics_usage_page2.json",
    )
    .await;
    let adapter = adapter(&server);
    assert_eq!(adapter.endpoints(), vec![USAGE, COST]);
    let fetch = adapter
        .fetch(&USAGE, TimeWindow::new(utc(1, 0), utc(1, 3)))
        .await
        .unwrap();

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    let first = pairs(&requests[0]);
    let mut second = pairs(&requests[1]);
    second.retain(|(k, _)| k != "page");
    assert_eq!(first, second, "page 2 repeats every other parameter");
    let expected: Vec<(String, String)> = [
        ("ending_at", "2026-09-01T03:00:00Z"),
        ("group_by[]", "api_key_id"),
        ("group_by[]", "context_window"),
        ("group_by[]", "inference_geo"),
        ("group_by[]", "model"),
        ("group_by[]", "service_tier"),
        ("group_by[]", "workspace_id"),
        ("starting_at", "2026-09-01T00:00:00Z"),
        ("time_bucket_width", "1h"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(first, expected, "no limit: the API's default page size");

    // 5 rows, one with web searches -> 6 records, every key distinct.
    assert_eq!(fetch.records.len(), 6);
    let keys: HashSet<u64> = fetch.records.iter().map(|r| record_key(ACCOUNT, &r.identity)).collect();
    assert_eq!(keys.len(), 6);
    let tokens: Vec<_> = fetch.records.iter().filter(|r| r.dims.service == "messages").collect();
    assert!(tokens.iter().all(|r| r.measures.requests_reported));
    assert_eq!(
        tokens.iter().map(|r| r.measures.requests).sum::<i64>(),
        12 + 3 + 1 + 2 + 1
    );
    assert_eq!(
        tokens.iter().map(|r| r.measures.input_tokens).sum::<i64>(),
        3200 + 300 + 137 + 50 + 4
    );
    let first = tokens[0];
    assert_eq!(first.identity.endpoint, "analytics/usage");
    assert_eq!(first.measures.cache_creation_tokens, 1500);
    assert_eq!(first.measures.cached_input_tokens, 200);
    assert_eq!(first.dims.model_raw, "claude-sonnet-4-20250514");
    assert_eq!(first.dims.workspace_id, "wrkspc_01FAKEtestWorkspaceAAAA");
    let attrs: Vec<String> = first.dims.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(
        attrs,
        ["context_window=0-200k", "inference_geo=global", "service_tier=standard"]
    );
    let names: Vec<&str> = first.identity.raw_group.keys().collect();
    let mut asked = USAGE_GROUP_BY.to_vec();
    asked.sort();
    assert_eq!(
        names, asked,
        "identity is the fields asked for; null fields not asked for (product, speed) stay out"
    );
    let search: Vec<_> = fetch
        .records
        .iter()
        .filter(|r| r.dims.service == "web_search")
        .collect();
    assert_eq!(search.len(), 1);
    assert_eq!(search[0].measures.quantity, Decimal::from(10));
    assert_eq!(
        search[0].measures.requests, 0,
        "requests count once, on the token record"
    );

    // Rows without usage are left out, so every asked bucket is covered.
    let covered: Vec<_> = fetch.covered_buckets.iter().copied().collect();
    assert_eq!(covered, [utc(1, 0), utc(1, 1), utc(1, 2)]);
}

#[tokio::test]
async fn null_groups_stay_apart_from_empty_ones_and_from_absent_ones() {
    let server = MockServer::start().await;
    mount_pages(
        &server,
        USAGE_PATH,
        "analytics_usage_page1.json",
        "page_cm93OjM=",
        "analytics_usage_page2.json",
    )
    .await;
    let fetch = adapter(&server)
        .fetch(&USAGE, TimeWindow::new(utc(1, 0), utc(1, 3)))
        .await
        .unwrap();
    let opus: Vec<_> = fetch
        .records
        .iter()
        .filter(|r| r.dims.model_raw == "claude-opus-4-1-20250805")
        .collect();
    assert_eq!(opus.len(), 2);
    let workbench = opus
        .iter()
        .find(|r| r.identity.raw_group["api_key_id"] == RawField::Null)
        .expect("the Workbench row of the default workspace");
    assert_eq!(workbench.identity.raw_group["workspace_id"], RawField::Null);
    assert_eq!(workbench.dims.workspace_id, "");
    assert_eq!(
        workbench.measures.cache_creation_tokens, 0,
        "cache_creation: null is zero"
    );
    let empty = opus
        .iter()
        .find(|r| r.identity.raw_group["api_key_id"] != RawField::Null)
        .unwrap();
    assert_eq!(
        empty.identity.raw_group["api_key_id"],
        RawField::Text(Default::default())
    );
    assert_eq!(
        empty.identity.raw_group["inference_geo"],
        RawField::Null,
        "a field asked for but not sent is null"
    );
    assert!(!empty.identity.raw_group.contains_key("speed"));
    assert_ne!(
        record_key(ACCOUNT, &workbench.identity),
        record_key(ACCOUNT, &empty.identity)
    );
}

#[tokio::test]
async fn cost_cents_convert_exactly_and_the_list_price_is_kept_beside_the_bill() {
    let server = MockServer::start().await;
    mount_pages(
        &server,
        COST_PATH,
        "analytics_cost_page1.json",
        "page_cm93OjI=",
        "analytics_cost_page2.json",
    )
    .await;
    let fetch = adapter(&server)
        .fetch(&COST, TimeWindow::new(utc(1, 0), utc(3, 0)))
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let first = pairs(&requests[0]);
    for expected in [
        ("time_bucket_width", "1d"),
        ("group_by[]", "workspace_id"),
        ("group_by[]", "cost_type"),
        ("group_by[]", "token_type"),
        ("ending_at", "2026-09-03T00:00:00Z"),
    ] {
        assert!(
            first.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} in {first:?}"
        );
    }
    assert!(
        !first.iter().any(|(_, v)| v == "description"),
        "no description in this API"
    );

    assert_eq!(fetch.records.len(), 4);
    let by_type = |t: &str| {
        fetch
            .records
            .iter()
            .find(|r| r.dims.attributes.get("token_type").map(|text| text.as_str()) == Some(t))
            .unwrap()
    };
    let input = by_type("uncached_input_tokens");
    assert_eq!(input.identity.endpoint, "analytics/cost");
    assert_eq!(input.measures.cost, dec("412.80"));
    assert_eq!(input.measures.amount_original, dec("41280"));
    assert_eq!(input.measures.cost_source, CostSource::Billed);
    assert!(!input.measures.requests_reported && input.measures.requests == 0);
    assert_eq!(input.dims.service, "messages");
    assert_eq!(input.dims.model_raw, "claude-sonnet-4-20250514");
    assert_eq!(input.identity.raw_group["workspace_id"], RawField::Null);
    assert_eq!(input.dims.attributes["list_amount_cents"], "43000");
    assert_eq!(input.dims.attributes["discount_cents"], "1720");
    let cache = by_type("cache_creation.ephemeral_1h_input_tokens");
    assert_eq!(cache.measures.cost.to_string(), "1.234567890123456789");
    assert_eq!(cache.dims.attributes["discount_cents"], "1.5432109876543212");
    let search = fetch.records.iter().find(|r| r.dims.service == "web_search").unwrap();
    assert_eq!(search.measures.cost, dec("2.50"), "a JSON number amount is cents too");
    assert_eq!(search.dims.model_raw, "");
    assert!(
        !search.dims.attributes.contains_key("list_amount_cents"),
        "no list price sent"
    );
    let code = fetch
        .records
        .iter()
        .find(|r| r.dims.service == "code_execution")
        .unwrap();
    assert_eq!(code.identity.bucket_start, utc(2, 0));
    assert_eq!(code.measures.requests, 0, "cost requests are usage's to count");
    let total: Decimal = fetch.records.iter().map(|r| r.measures.cost).sum();
    assert_eq!(
        total,
        dec("412.80") + dec("1.234567890123456789") + dec("2.50") + dec("0.05")
    );
    let covered: Vec<_> = fetch.covered_buckets.iter().copied().collect();
    assert_eq!(covered, [utc(1, 0), utc(2, 0)]);
}

#[tokio::test]
async fn a_refused_beta_header_fails_with_the_providers_message() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .respond_with(
            ResponseTemplate::new(400).set_body_raw(fixture("analytics_beta_missing.json"), "application/json"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let err = adapter(&server)
        .fetch(&USAGE, TimeWindow::new(utc(1, 0), utc(1, 3)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Http { status: 400, .. }), "{err:?}");
    let text = err.to_string();
    for needle in [ACCOUNT, "analytics/usage", "analytics-usage-cost-2026-08-24"] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert!(!text.contains(KEY));
}

#[tokio::test]
async fn long_windows_go_in_31_day_parts_ending_on_a_bucket_edge() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(COST_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"data": [], "has_more": false, "next_page": null}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    let mut adapter = adapter(&server);
    adapter.now = || Utc.with_ymd_and_hms(2026, 9, 20, 13, 45, 7).unwrap();
    let start = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
    let fetch = adapter
        .fetch(
            &COST,
            TimeWindow::new(start, Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()),
        )
        .await
        .unwrap();
    let requests = server.received_requests().await.unwrap();
    let ranges: Vec<(String, String)> = requests
        .iter()
        .map(|r| {
            let get = |k: &str| r.url.query_pairs().find(|(n, _)| n == k).unwrap().1.into_owned();
            (get("starting_at"), get("ending_at"))
        })
        .collect();
    assert_eq!(
        ranges,
        [
            ("2026-07-01T00:00:00Z".to_string(), "2026-08-01T00:00:00Z".to_string()),
            ("2026-08-01T00:00:00Z".to_string(), "2026-09-01T00:00:00Z".to_string()),
            ("2026-09-01T00:00:00Z".to_string(), "2026-09-20T00:00:00Z".to_string()),
        ],
        "today is not over, so it is not asked"
    );
    assert_eq!(
        fetch.covered_buckets.len(),
        31 + 31 + 19,
        "every whole day asked is covered"
    );
    assert!(fetch.records.is_empty());
}

#[tokio::test]
async fn a_row_seen_twice_is_refused_rather_than_summed() {
    let server = MockServer::start().await;
    let again = fixture("analytics_usage_page1.json");
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .and(query_param_is_missing("page"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(again.clone(), "application/json"))
        .mount(&server)
        .await;
    let last = again.replace(
        r#""has_more": true,
  "next_page": "page_cm93OjM=""#,
        r#""has_more": false, "next_page": null"#,
    );
    Mock::given(method("GET"))
        .and(path(USAGE_PATH))
        .and(query_param("page", "page_cm93OjM="))
        .respond_with(ResponseTemplate::new(200).set_body_raw(last, "application/json"))
        .mount(&server)
        .await;
    let err = adapter(&server)
        .fetch(&USAGE, TimeWindow::new(utc(1, 0), utc(1, 3)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("already returned"), "{err}");
}

#[test]
fn malformed_rows_name_the_row_and_the_field() {
    let page = |row: &str| format!(r#"{{"data": [{row}], "has_more": false, "next_page": null}}"#);
    let err = |spec: &EndpointSpec, body: &str| {
        let value = Json::parse(body.as_bytes()).unwrap();
        parse_page(spec, USAGE_GROUP_BY, &value).unwrap_err().0
    };
    let no_requests = page(
        r#"{"starting_at": "2026-09-01T00:00:00Z", "ending_at": "2026-09-01T01:00:00Z", "group": {},
            "usage": {"uncached_input_tokens": 1, "cache_creation": null, "cache_read_input_tokens": 0, "output_tokens": 0}}"#,
    );
    let e = err(&USAGE, &no_requests);
    assert!(e.contains("data[0]") && e.contains("'requests'"), "{e}");
    let no_usage = page(r#"{"starting_at": "2026-09-01T00:00:00Z", "ending_at": "2026-09-01T01:00:00Z", "group": {}}"#);
    assert!(err(&USAGE, &no_usage).contains("'usage'"));
    let euro = page(
        r#"{"starting_at": "2026-09-01T00:00:00Z", "ending_at": "2026-09-02T00:00:00Z", "group": {},
            "cost": {"amount": "1", "currency": "EUR"}}"#,
    );
    let e = err(&COST, &euro);
    assert!(e.contains("cost: field 'currency'") && e.contains("EUR"), "{e}");
    let bad_list = page(
        r#"{"starting_at": "2026-09-01T00:00:00Z", "ending_at": "2026-09-02T00:00:00Z", "group": {},
            "cost": {"amount": "1", "list_amount": "x", "currency": "USD"}}"#,
    );
    assert!(err(&COST, &bad_list).contains("list_amount"));
}
