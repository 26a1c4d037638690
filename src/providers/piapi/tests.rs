//! The adapter against a mock PiAPI: derived spend from falls, top-ups,
//! re-syncs, midnight, past windows and the wrong-key message.

use std::str::FromStr;
use std::time::Duration;

use chrono::TimeZone;
use rust_decimal::Decimal;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const KEY: &str = "FAKE-TEST-piapi-0123456789abcdef";

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        request_timeout: Duration::from_secs(10),
        ..RetryPolicy::default()
    }
}

fn balance(usd: &str) -> ResponseTemplate {
    let body = format!(
        r#"{{"code":200,"data":{{"account_name":"FAKE","account_id":"FAKE-acct-1","credits":1,"equivalent_in_usd":{usd}}},"message":"success"}}"#
    );
    ResponseTemplate::new(200).set_body_raw(body.into_bytes(), "application/json")
}

fn at(d: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, d, h, m, 30).unwrap()
}

fn around(now: DateTime<Utc>) -> TimeWindow {
    TimeWindow::new(now - chrono::Duration::days(3), now + chrono::Duration::minutes(1))
        .snapped_out(Granularity::Minute)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// Takes readings of `balances` at `times`, returning each fetch.
async fn readings(balances: &[&str], times: &[DateTime<Utc>]) -> Vec<EndpointFetch> {
    let server = MockServer::start().await;
    let adapter = PiApiAdapter::new("piapi-test", &server.uri(), KEY.into(), "production".into(), policy()).unwrap();
    let mut out = Vec::new();
    for (usd, now) in balances.iter().zip(times) {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path("/account/info"))
            .and(header("x-api-key", KEY))
            .respond_with(balance(usd))
            .expect(1)
            .mount(&server)
            .await;
        out.push(adapter.fetch_at(around(*now), *now).await.unwrap());
    }
    out
}

#[tokio::test]
async fn falls_are_spend_top_ups_are_not_and_a_resync_rebuilds_the_same_record() {
    let times = [at(15, 9, 0), at(15, 10, 0), at(15, 11, 0), at(15, 12, 0), at(15, 12, 0)];
    let got = readings(&["100.00", "97.25", "147.25", "140.00", "140.00"], &times).await;
    // Every reading of the day lands in the session's one record, in the
    // minute bucket of its first reading: one scope, re-read each sync.
    for fetch in &got {
        assert_eq!(fetch.records.len(), 1);
        assert_eq!(
            fetch.covered_buckets,
            BTreeSet::from([Utc.with_ymd_and_hms(2025, 1, 15, 9, 0, 0).unwrap()])
        );
    }
    let cost = |i: usize| got[i].records[0].measures.cost;
    assert_eq!(cost(0), Decimal::ZERO, "a first reading is a baseline");
    assert_eq!(cost(1), dec("2.75"));
    assert_eq!(cost(2), dec("2.75"), "a top-up is not negative spend");
    assert_eq!(cost(3), dec("10.00"));
    assert_eq!(got[3].records[0], got[4].records[0], "a re-sync reproduces the record");
    let record = &got[3].records[0];
    assert_eq!(record.dims.service, "derived_from_balance");
    assert_eq!(record.measures.cost_source, CostSource::Billed);
    assert_eq!(record.dims.attributes["topped_up_usd"], "50");
    assert_eq!(record.dims.attributes["first_balance_usd"], "100");
    assert_eq!(record.dims.attributes["last_balance_usd"], "140");
}

#[tokio::test]
async fn a_fall_across_midnight_counts_once_on_the_new_day() {
    let times = [at(15, 23, 0), at(16, 1, 0), at(16, 2, 0)];
    let got = readings(&["50", "45.5", "45.5"], &times).await;
    let day2 = Utc.with_ymd_and_hms(2025, 1, 16, 1, 0, 0).unwrap();
    assert_eq!(got[1].covered_buckets, BTreeSet::from([day2]));
    assert_eq!(got[1].records[0].measures.cost, dec("4.5"));
    assert_eq!(got[2].records[0], got[1].records[0]);
    // The first day's record is never in scope again: nothing can cancel it.
    assert!(!got[2]
        .covered_buckets
        .contains(&Utc.with_ymd_and_hms(2025, 1, 15, 23, 0, 0).unwrap()));
}

#[tokio::test]
async fn past_windows_take_no_reading() {
    let server = MockServer::start().await;
    Mock::given(path("/account/info"))
        .respond_with(balance("1"))
        .expect(0)
        .mount(&server)
        .await;
    let adapter = PiApiAdapter::new("piapi-test", &server.uri(), KEY.into(), "production".into(), policy()).unwrap();
    let now = at(15, 9, 0);
    let past = TimeWindow::new(now - chrono::Duration::days(7), now - chrono::Duration::days(1));
    let fetch = adapter.fetch_at(past, now).await.unwrap();
    assert!(fetch.records.is_empty() && fetch.covered_buckets.is_empty());
}

#[tokio::test]
async fn a_rejected_key_names_where_to_get_one_and_never_the_key() {
    let server = MockServer::start().await;
    Mock::given(path("/account/info"))
        .respond_with(ResponseTemplate::new(401).set_body_string(r#"{"code":401,"message":"invalid api key"}"#))
        .mount(&server)
        .await;
    let adapter = PiApiAdapter::new("piapi-test", &server.uri(), KEY.into(), "production".into(), policy()).unwrap();
    let now = at(15, 9, 0);
    let err = adapter.fetch_at(around(now), now).await.unwrap_err();
    assert_eq!(err.kind(), crate::providers::FailureKind::Auth);
    let text = err.to_string();
    assert!(text.contains("Workspace > API Keys"), "{text}");
    assert!(!text.contains("0123456789abcdef"), "{text}");
}
