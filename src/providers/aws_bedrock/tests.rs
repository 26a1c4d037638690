//! The adapter against a documented-shape Cost Explorer (wiremock, JSON 1.1
//! as the SDK speaks it): paging with identical parameters, counted
//! requests, AWS throttling codes, and the Bedrock API key refused before any
//! request. CloudWatch (CBOR) and STS run against moto and the simulator in
//! the integration tests.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use rust_decimal::Decimal;
use wiremock::matchers::{body_string_contains, header, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::*;
use crate::config::secret::Secret;
use crate::providers::AccountView;

const AKID: &str = "AKIAFAKETESTKEY00001";
const SECRET: &str = "fakeTestSecretKey/0123456789abcdefghijklmn";

fn adapter(base_url: &str, access_key_id: &str) -> BedrockAdapter {
    adapter_of("bedrock", base_url, access_key_id)
}

fn adapter_of(id: &str, base_url: &str, access_key_id: &str) -> BedrockAdapter {
    let creds: BTreeMap<String, Secret> = [
        ("access_key_id", access_key_id),
        ("secret_access_key", SECRET),
        ("region", "us-east-1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), Secret::new(*v)))
    .collect();
    let settings = BTreeMap::from([("cloudwatch_url".to_string(), format!("{base_url}/cw"))]);
    let view = AccountView {
        id,
        base_url,
        credentials: &creds,
        settings: &settings,
    };
    let config = BedrockConfig::read(view).unwrap();
    let policy = RetryPolicy {
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        ..RetryPolicy::default()
    };
    BedrockAdapter::new(id, base_url, &config, policy).unwrap()
}

fn window() -> TimeWindow {
    let day = |d: &str| {
        NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_time(Default::default())
            .and_utc()
    };
    TimeWindow::new(day("2026-11-01"), day("2026-11-03"))
}

fn page(day: &str, amount: &str, next: Option<&str>) -> serde_json::Value {
    let mut body = serde_json::json!({
        "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "DIMENSION", "Key": "USAGE_TYPE"}],
        "ResultsByTime": [{
            "TimePeriod": {"Start": day, "End": (NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap() + chrono::Duration::days(1)).to_string()},
            "Total": {},
            "Groups": [{"Keys": ["Amazon Bedrock", "USE1-NovaLite-input-tokens"],
                        "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"},
                                    "UsageQuantity": {"Amount": "10", "Unit": "N/A"}}}],
            "Estimated": false
        }],
        "DimensionValueAttributes": []
    });
    if let Some(next) = next {
        body["NextPageToken"] = next.into();
    }
    body
}

fn without_token(request: &Request) -> serde_json::Value {
    let mut body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    body.as_object_mut().unwrap().remove("NextPageToken");
    body
}

#[tokio::test]
async fn aws_bedrock_cost_explorer_pages_with_identical_parameters_and_counts_requests() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", "AWSInsightsIndexService.GetCostAndUsage"))
        .and(body_string_contains("\"NextPageToken\":\"page-2\""))
        .respond_with(ResponseTemplate::new(200).set_body_json(page("2026-11-02", "0.25", None)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(header("x-amz-target", "AWSInsightsIndexService.GetCostAndUsage"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page("2026-11-01", "1.000000001", Some("page-2"))))
        .mount(&server)
        .await;
    let a = adapter_of("bedrock-paging", &server.uri(), AKID);
    let fetched = a.fetch(&SPECS[0], window()).await.unwrap();
    let costs: Vec<Decimal> = fetched.records.iter().map(|r| r.measures.cost).collect();
    assert_eq!(
        costs,
        [
            Decimal::from_str("1.000000001").unwrap(),
            Decimal::from_str("0.25").unwrap()
        ]
    );
    assert_eq!(fetched.covered_buckets.len(), 2, "both days of the window are in scope");
    assert_eq!(a.cost_explorer_requests(), 2, "one request per page, nothing else");
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        without_token(&requests[0]),
        without_token(&requests[1]),
        "page 2 repeats page 1's parameters"
    );
    let body = without_token(&requests[0]);
    assert_eq!(body["Granularity"], "DAILY");
    assert_eq!(body["TimePeriod"]["Start"], "2026-11-01");
    assert_eq!(body["TimePeriod"]["End"], "2026-11-03");
    let filter = body["Filter"].to_string();
    assert!(
        filter.contains("AWS Marketplace") && filter.contains("\"Not\""),
        "{filter}"
    );
    let auth = requests[0].headers.get("authorization").unwrap().to_str().unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIAFAKETESTKEY00001/"),
        "SigV4 signed"
    );
    assert_eq!(a.http_stats().requests.load(Ordering::Relaxed), 2);
    let billed = crate::metrics::render()
        .lines()
        .find(|l| {
            l.starts_with("tokentra_sync_provider_billed_requests_total")
                && l.contains("account=\"bedrock-paging\"")
                && l.contains("api=\"GetCostAndUsage\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap_or_default().to_string());
    assert_eq!(billed.as_deref(), Some("2"), "each page is a billed request, counted");
}

#[tokio::test]
async fn aws_bedrock_throttling_400_is_retried_and_counted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"__type": "LimitExceededException", "Message": "Rate exceeded"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page("2026-11-01", "2", None)))
        .mount(&server)
        .await;
    let a = adapter(&server.uri(), AKID);
    let fetched = a.fetch(&SPECS[1], window()).await.unwrap();
    assert_eq!(
        fetched.records[0].measures.credits,
        Decimal::from(-2),
        "a positive amount on the credit query"
    );
    let (requests, retries) = a.http_stats().snapshot();
    assert_eq!((requests, retries), (2, 1));
}

#[tokio::test]
async fn aws_bedrock_an_expired_static_key_fails_as_auth_with_the_fix() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(403).set_body_json(
            serde_json::json!({"__type": "UnrecognizedClientException", "message": "The security token included in the request is invalid."}),
        ))
        .mount(&server)
        .await;
    let a = adapter(&server.uri(), AKID);
    let err = a.fetch(&SPECS[0], window()).await.unwrap_err();
    assert_eq!(err.kind(), FailureKind::Auth, "{err}");
    let text = err.to_string();
    assert!(text.contains("IAM access key") && !text.contains(SECRET), "{text}");
    assert_eq!(a.http_stats().snapshot().0, 1, "a static key is not retried");
}

#[tokio::test]
async fn aws_bedrock_api_key_is_refused_before_any_request() {
    let server = MockServer::start().await;
    let a = adapter(&server.uri(), "ABSK-FAKE-TEST-bedrock-api-key");
    for spec in &SPECS {
        let err = a.fetch(spec, window()).await.unwrap_err();
        assert_eq!(err.kind(), FailureKind::Auth);
        let text = err.to_string();
        assert!(
            text.contains("credentials.access_key_id")
                && text.contains("Bedrock API key")
                && text.contains("Create access key"),
            "{text}"
        );
    }
    assert!(server.received_requests().await.unwrap().is_empty());
    assert_eq!(
        crate::providers::registry::wrong_key_type(
            Provider::AwsBedrock,
            &BTreeMap::from([("access_key_id".to_string(), Secret::new("ABSKxyz"))])
        )
        .map(|d| d.contains("IAM")),
        Some(true)
    );
}

#[tokio::test]
async fn aws_bedrock_estimated_days_are_read_again_by_the_next_sync() {
    let server = MockServer::start().await;
    let mut estimated = page("2026-11-01", "1", None);
    estimated["ResultsByTime"][0]["Estimated"] = true.into();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(estimated))
        .mount(&server)
        .await;
    let a = adapter(&server.uri(), AKID);
    a.fetch(&SPECS[0], window()).await.unwrap();
    // The next window starts after the estimated day; it is read again.
    let later = TimeWindow::new(window().end, window().end + chrono::Duration::days(1));
    let fetched = a.fetch(&SPECS[0], later).await.unwrap();
    assert!(
        fetched.covered_buckets.contains(&window().start),
        "{:?}",
        fetched.covered_buckets
    );
    let requests = server.received_requests().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(body["TimePeriod"]["Start"], "2026-11-01");
    assert!(Utc::now() > window().end);
}

#[test]
fn aws_bedrock_fuzz_parse_never_panics_on_odd_input() {
    for data in [
        &b""[..],
        b"\x00{\"ResultsByTime\": [{\"TimePeriod\": {\"Start\": \"x\", \"End\": \"y\"}}]}",
        b"\x01{\"ResultsByTime\": [{\"TimePeriod\": {\"Start\": \"2026-01-01\", \"End\": \"2026-01-02\"}, \"Groups\": [{\"Keys\": [\"Amazon Bedrock\", \"\"], \"Metrics\": {\"UnblendedCost\": {\"Amount\": \"1e999999\"}}}]}]}",
        b"\x02USE1-MP:\xff\xff\xff\xff\xff\xff\xf0\x7f",
        b"\x05--MP:_-Units",
    ] {
        fuzz_parse(data);
    }
}
