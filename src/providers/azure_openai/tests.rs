//! Azure parsers, config and throttling against the documented formats.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::json;

use super::auth::{azure_wait, AzureClassifier, LoginClassifier};
use super::parse::{self, CognitiveAccount};
use super::*;
use crate::config::secret::Secret;
use crate::providers::platform::{RetryClassifier, Verdict};
use crate::providers::{AccountView, FailureKind};

fn day(d: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, d, 0, 0, 0).unwrap()
}

const SECRET: &str = "FAKE8Q~sim0123456789abcdefghijklmnopqrstuv";

fn read(secret: &str, settings: &[(&str, &str)], rg: Option<&str>) -> Result<AzureConfig, Vec<String>> {
    let mut creds = BTreeMap::from([
        (
            "tenant_id".to_string(),
            Secret::new("72f988bf-86f1-41af-91ab-2d7cd011db47"),
        ),
        (
            "client_id".to_string(),
            Secret::new("00000000-1111-2222-3333-444444444444"),
        ),
        ("client_secret".to_string(), Secret::new(secret)),
        (
            "subscription_id".to_string(),
            Secret::new("12345678-aaaa-bbbb-cccc-1234567890ab"),
        ),
    ]);
    if let Some(rg) = rg {
        creds.insert("resource_group".into(), Secret::new(rg));
    }
    let settings: BTreeMap<String, String> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    AzureConfig::read(AccountView {
        id: "az",
        base_url: "https://management.azure.com/",
        credentials: &creds,
        settings: &settings,
    })
}

#[test]
fn azure_config_reads_a_service_principal_and_its_scope() {
    let c = read(SECRET, &[], None).unwrap();
    assert_eq!(c.scope(), "subscriptions/12345678-aaaa-bbbb-cccc-1234567890ab");
    assert_eq!(c.login_url, DEFAULT_LOGIN_URL);
    assert_eq!(c.management_url, "https://management.azure.com");
    let c = read(SECRET, &[(LOGIN_URL, "http://127.0.0.1:9/login/")], Some("rg-ai")).unwrap();
    assert_eq!(
        c.scope(),
        "subscriptions/12345678-aaaa-bbbb-cccc-1234567890ab/resourceGroups/rg-ai"
    );
    assert_eq!(c.login_url, "http://127.0.0.1:9/login");
    assert!(!format!("{c:?}").contains(SECRET), "the secret leaked into Debug");
}

#[test]
fn azure_cost_page_size_defaults_to_the_largest_page_and_is_bounded() {
    assert_eq!(read(SECRET, &[], None).unwrap().cost_page_size, 5000);
    assert_eq!(read(SECRET, &[(COST_PAGE_SIZE, "5")], None).unwrap().cost_page_size, 5);
    for bad in ["0", "5001", "many"] {
        let problems = read(SECRET, &[(COST_PAGE_SIZE, bad)], None).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("account 'az'") && p.contains(COST_PAGE_SIZE)),
            "{bad}: {problems:?}"
        );
    }
}

#[test]
fn azure_config_names_the_fix_for_the_wrong_credential_types() {
    // An Azure OpenAI resource key (32 hex) instead of a client secret.
    let api_key = "0123456789abcdef0123456789ABCDEF";
    let problems = read(api_key, &[], None).unwrap_err();
    assert!(
        problems[0].contains("account 'az'")
            && problems[0].contains("credentials.client_secret")
            && problems[0].contains("Azure OpenAI resource key")
            && problems[0].contains("service principal"),
        "{problems:?}"
    );
    assert!(!problems[0].contains(api_key), "the key leaked: {problems:?}");
    // The secret's ID instead of its value.
    let problems = read("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", &[], None).unwrap_err();
    assert!(
        problems[0].contains("Secret ID") && problems[0].contains("Value"),
        "{problems:?}"
    );
    // Plain-http login off loopback, a bad resource group.
    let problems = read(SECRET, &[(LOGIN_URL, "http://login.example.com")], Some("a/b")).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems
        .iter()
        .any(|p| p.contains("login_url") && p.contains("plain http")));
    assert!(problems.iter().any(|p| p.contains("resource_group")));
}

#[test]
fn azure_token_expires_in_may_be_a_number_or_a_string() {
    let v2 = json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "eyJ0"});
    let t = parse::token(&Json::from(v2.clone())).unwrap();
    assert_eq!((t.value.as_str(), t.expires_in), ("eyJ0", Duration::from_secs(3599)));
    let v1 = json!({"token_type": "Bearer", "expires_in": "3600", "expires_on": "1700000000", "access_token": "x"});
    assert_eq!(
        parse::token(&Json::from(v1.clone())).unwrap().expires_in,
        Duration::from_secs(3600)
    );
    assert!(parse::token(&Json::from(json!({"expires_in": 10}))).is_err());
    assert!(parse::token(&Json::from(json!({"access_token": "x", "expires_in": 0}))).is_err());
    assert!(!format!("{t:?}").contains("eyJ0"));
}

fn cost_answer(columns: &[&str], rows: serde_json::Value, next: Option<&str>) -> serde_json::Value {
    let columns: Vec<_> = columns
        .iter()
        .map(|c| json!({"name": c, "type": if *c == "ResourceId" || *c == "Meter" || *c == "Currency" {"String"} else {"Number"}}))
        .collect();
    json!({"id": "x", "name": "x", "type": "Microsoft.CostManagement/query",
           "properties": {"nextLink": next, "columns": columns, "rows": rows}})
}

#[test]
fn azure_cost_rows_are_mapped_by_column_name_in_any_order_exactly() {
    let window = TimeWindow::new(day(14), day(17));
    let a = cost_answer(
        &["Cost", "CostUSD", "UsageDate", "ResourceId", "Meter", "Currency"],
        json!([[
            12.4307000000001,
            12.4307000000001,
            20240115,
            "/subs/r1",
            "gpt-4o-0806-Inp-glbl 1M Tokens",
            "USD"
        ]]),
        Some("https://management.azure.com/next?$skiptoken=abc"),
    );
    let b = cost_answer(
        &["Meter", "UsageDate", "Currency", "CostUSD", "ResourceId", "Cost"],
        json!([[
            "gpt-4o-0806-Inp-glbl 1M Tokens",
            20240115,
            "USD",
            12.4307000000001,
            "/subs/r1",
            12.4307000000001
        ]]),
        None,
    );
    let pa = parse::cost_page(&Json::from(a.clone()), window).unwrap();
    let pb = parse::cost_page(&Json::from(b.clone()), window).unwrap();
    assert_eq!(
        pa.next.as_deref(),
        Some("https://management.azure.com/next?$skiptoken=abc")
    );
    assert_eq!(pb.next, None);
    assert_eq!(pa.records, pb.records, "column order must not matter");
    let r = &pa.records[0];
    assert_eq!(r.identity.bucket_start, day(15));
    assert_eq!(r.measures.cost, Decimal::from_str("12.4307000000001").unwrap());
    assert_eq!(r.dims.model_raw, "gpt-4o");
    assert_eq!(r.dims.line_item, "gpt-4o-0806-Inp-glbl 1M Tokens");
    assert_eq!(r.dims.resource_id, "/subs/r1");
    // 204: no rows.
    assert!(parse::cost_page(&crate::providers::json::Json::Null, window)
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn azure_cost_in_another_currency_uses_cost_usd_and_refunds_become_credits() {
    let window = TimeWindow::new(day(14), day(17));
    let page = cost_answer(
        &["UsageDate", "Cost", "ResourceId", "CostUSD", "Meter", "Currency"],
        json!([
            [
                20240116,
                10.5,
                "/r",
                11.55,
                "gpt-4o-mini-0718-Outp-glbl 1M Tokens",
                "EUR"
            ],
            [20240116, -2.25, "/r", -2.475, "Service credit", "EUR"]
        ]),
        None,
    );
    let records = parse::cost_page(&Json::from(page.clone()), window).unwrap().records;
    let (usage, refund) = (&records[0], &records[1]);
    assert_eq!(usage.measures.cost, Decimal::from_str("11.55").unwrap());
    assert_eq!(usage.measures.amount_original, Decimal::from_str("10.5").unwrap());
    assert_eq!(usage.measures.currency, "EUR");
    assert_eq!(usage.dims.model_raw, "gpt-4o-mini");
    assert_eq!(refund.measures.cost, Decimal::ZERO);
    assert_eq!(refund.measures.credits, Decimal::from_str("2.475").unwrap());
    assert_eq!(refund.measures.amount_original, Decimal::from_str("-2.25").unwrap());
    assert_eq!(refund.dims.model_raw, "");
    // Without CostUSD a non-USD amount cannot be stored as USD.
    let no_usd = cost_answer(
        &["UsageDate", "Cost", "Currency"],
        json!([[20240116, 10.5, "EUR"]]),
        None,
    );
    assert!(parse::cost_page(&Json::from(no_usd.clone()), window)
        .unwrap_err()
        .0
        .contains("CostUSD"));
}

#[test]
fn azure_cost_pages_that_break_the_format_are_errors() {
    let window = TimeWindow::new(day(14), day(17));
    let cols = ["Cost", "UsageDate", "Currency"];
    let outside = cost_answer(&cols, json!([[1.0, 20240120, "USD"]]), None);
    assert!(parse::cost_page(&Json::from(outside.clone()), window)
        .unwrap_err()
        .0
        .contains("outside"));
    let short = cost_answer(&cols, json!([[1.0, 20240115]]), None);
    assert!(parse::cost_page(&Json::from(short.clone()), window).is_err());
    let bad_date = cost_answer(&cols, json!([[1.0, 2024011, "USD"]]), None);
    assert!(parse::cost_page(&Json::from(bad_date.clone()), window).is_err());
    let no_date = cost_answer(&["Cost", "Currency"], json!([]), None);
    assert!(parse::cost_page(&Json::from(no_date.clone()), window)
        .unwrap_err()
        .0
        .contains("UsageDate"));
    let iso = cost_answer(&cols, json!([[1.0, "2024-01-15T00:00:00", "USD"]]), None);
    assert_eq!(
        parse::cost_page(&Json::from(iso.clone()), window).unwrap().records[0]
            .identity
            .bucket_start,
        day(15)
    );
}

#[test]
fn azure_meter_names_give_the_model_or_nothing() {
    assert_eq!(meter_model("gpt-4o-0806-Inp-glbl 1M Tokens"), "gpt-4o");
    assert_eq!(meter_model("gpt 4o mini 0718 Input global Tokens"), "gpt-4o-mini");
    assert_eq!(meter_model("text-embedding-3-small Tokens"), "text-embedding-3-small");
    assert_eq!(meter_model("o3-mini-0131-cchd-Inp-regnl 1M Tokens"), "o3-mini");
    assert_eq!(meter_model("Service credit"), "");
    assert_eq!(meter_model(""), "");
}

fn account() -> CognitiveAccount {
    CognitiveAccount {
        id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/aoai".into(),
        name: "aoai".into(),
        kind: "OpenAI".into(),
        location: "eastus".into(),
    }
}

#[test]
fn azure_listings_keep_openai_accounts_and_map_deployments_to_models() {
    let body = json!({"value": [
        {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/aoai", "name": "aoai", "kind": "OpenAI", "location": "eastus"},
        {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/speech", "name": "speech", "kind": "SpeechServices", "location": "eastus"},
        {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.CognitiveServices/accounts/hub", "name": "hub", "kind": "AIServices", "location": "swedencentral"}
    ], "nextLink": "https://management.azure.com/x?$skiptoken=1"});
    let page = parse::listing(&Json::from(body.clone())).unwrap();
    assert!(page.next.is_some());
    let accounts = parse::accounts(&page.items).unwrap();
    assert_eq!(
        accounts.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["aoai", "hub"]
    );
    assert!(parse::accounts(&[json!({"id": "https://evil.example/x", "kind": "OpenAI"}).into()]).is_err());
    let deployments = json!({"value": [
        {"name": "prod-4o", "properties": {"model": {"format": "OpenAI", "name": "gpt-4o", "version": "2024-08-06"}}},
        {"name": "bare"}
    ]});
    let map = parse::deployments(&parse::listing(&Json::from(deployments.clone())).unwrap().items).unwrap();
    assert_eq!(map["prod-4o"], "gpt-4o");
    assert_eq!(map["bare"], "");
}

#[test]
fn azure_metrics_merge_prompt_and_generated_tokens_per_deployment_and_hour() {
    let window = TimeWindow::new(day(15), day(16));
    let series = |name: &str, points: serde_json::Value| {
        json!({"name": {"value": name, "localizedValue": name}, "unit": "Count", "errorCode": "Success",
               "timeseries": [{"metadatavalues": [{"name": {"value": "modeldeploymentname"}, "value": "prod-4o"}],
                               "data": points}]})
    };
    let body = json!({"cost": 59, "timespan": "x", "interval": "PT1H", "value": [
        series("ProcessedPromptTokens", json!([{"timeStamp": "2024-01-15T00:00:00Z", "total": 18234.0},
                                               {"timeStamp": "2024-01-15T01:00:00Z"}])),
        series("GeneratedTokens", json!([{"timeStamp": "2024-01-15T00:00:00Z", "total": 901},
                                         {"timeStamp": "2024-01-15T01:00:00Z"}]))
    ]});
    let models = BTreeMap::from([("prod-4o".to_string(), "gpt-4o".to_string())]);
    let records = parse::metrics(&Json::from(body.clone()), &account(), &models, window).unwrap();
    assert_eq!(records.len(), 1, "a point without total is no data");
    let r = &records[0];
    assert_eq!((r.measures.input_tokens, r.measures.output_tokens), (18234, 901));
    assert_eq!(r.dims.model_raw, "gpt-4o");
    assert_eq!(r.dims.region, "eastus");
    assert_eq!(r.identity.granularity, Granularity::Hour);
    // The query cost is not money, fractions are not tokens, other grains are refused.
    let fraction =
        json!({"value": [series("GeneratedTokens", json!([{"timeStamp": "2024-01-15T00:00:00Z", "total": 1.5}]))]});
    assert!(parse::metrics(&Json::from(fraction.clone()), &account(), &models, window).is_err());
    let coarse = json!({"interval": "PT6H", "value": []});
    assert!(parse::metrics(&Json::from(coarse.clone()), &account(), &models, window)
        .unwrap_err()
        .0
        .contains("PT6H"));
    let outside =
        json!({"value": [series("GeneratedTokens", json!([{"timeStamp": "2024-01-17T00:00:00Z", "total": 1}]))]});
    assert!(parse::metrics(&Json::from(outside.clone()), &account(), &models, window).is_err());
}

#[test]
fn azure_throttling_waits_for_the_longest_ms_ratelimit_header() {
    let mut h = HeaderMap::new();
    h.insert(
        "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
        HeaderValue::from_static("7"),
    );
    h.insert(
        "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
        HeaderValue::from_static("12"),
    );
    h.insert("retry-after", HeaderValue::from_static("3"));
    assert_eq!(azure_wait(&h), Some(Duration::from_secs(12)));
    assert_eq!(
        AzureClassifier.classify(StatusCode::TOO_MANY_REQUESTS, &h, ""),
        Verdict::Retry {
            kind: FailureKind::Throttled,
            wait: Some(Duration::from_secs(12))
        }
    );
    let mut only = HeaderMap::new();
    only.insert(
        "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
        HeaderValue::from_static("5"),
    );
    assert_eq!(azure_wait(&only), Some(Duration::from_secs(5)));
    assert_eq!(azure_wait(&HeaderMap::new()), None);
    // Entra ID's 400 (bad secret, unknown tenant) is a credential failure.
    assert_eq!(
        LoginClassifier.classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), ""),
        Verdict::Fail(FailureKind::Auth)
    );
}

#[test]
fn azure_cost_query_body_asks_for_the_whole_days_of_the_window() {
    let body = cost_query_body(TimeWindow::new(day(14), day(17)));
    assert_eq!(body["type"], "ActualCost");
    assert_eq!(body["timePeriod"]["from"], "2024-01-14T00:00:00Z");
    assert_eq!(body["timePeriod"]["to"], "2024-01-16T23:59:59Z");
    assert_eq!(body["dataset"]["granularity"], "Daily");
    assert_eq!(body["dataset"]["grouping"][0]["name"], "ResourceId");
    assert_eq!(body["dataset"]["grouping"][1]["name"], "Meter");
}

#[test]
fn azure_fuzz_parse_never_panics_on_odd_input() {
    for which in 0u8..5 {
        for body in [
            &b""[..],
            b"null",
            b"[]",
            b"{\"properties\": {\"columns\": [{\"name\": \"Cost\"}], \"rows\": [[1]]}}",
            b"{\"value\": [{\"timeseries\": [{\"data\": [{\"timeStamp\": 1}]}]}]}",
            b"{\"value\": [{\"name\": {\"value\": \"GeneratedTokens\"}, \"timeseries\": [{\"metadatavalues\": [{\"name\": {\"value\": \"modeldeploymentname\"}, \"value\": \"d\"}], \"data\": [{\"timeStamp\": \"2025-01-02T00:00:00Z\", \"total\": 1e400}]}]}]}",
        ] {
            let mut data = vec![which];
            data.extend_from_slice(body);
            fuzz_parse(&data);
        }
    }
}
