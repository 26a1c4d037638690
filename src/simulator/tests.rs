//! End-to-end tests over real HTTP on 127.0.0.1: every expectation is computed
//! from the JSON the server answered, not from the generator.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::*;
use crate::providers::json::{Json, JsonError};

/// The daemon's exact money reader, over a `serde_json` value the test holds.
fn decimal(value: &Value, field: &str) -> Result<Decimal, JsonError> {
    crate::providers::json::decimal(&Json::from(value.clone()), field)
}
use crate::simulator::data::round9;

const DAY: i64 = 86_400;
const HOUR: i64 = 3600;
const ANALYTICS_BETA: &str = "analytics-usage-cost-2026-08-24";
/// Every grouping of the analytics cost endpoint: the finest cost grain.
const ANALYTICS_COST_GROUPS: &str = "group_by[]=workspace_id&group_by[]=model&group_by[]=service_tier&group_by[]=context_window&group_by[]=inference_geo&group_by[]=cost_type&group_by[]=token_type";

struct Sim {
    handle: SimHandle,
    client: reqwest::Client,
}

fn today() -> i64 {
    Utc::now().timestamp().div_euclid(DAY) * DAY
}

fn rfc(t: i64) -> String {
    Utc.timestamp_opt(t, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn at(t: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(t, 0).unwrap()
}

impl Sim {
    async fn start(seed: u64) -> Sim {
        Sim::start_with(seed, false).await
    }

    async fn start_with(seed: u64, record_requests: bool) -> Sim {
        let config = SimConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            seed,
            orgs: 2,
            history_days: 10,
            workers: 1,
            record_requests,
        };
        Sim {
            handle: start(config).await.unwrap(),
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn openai(&self, org: &str, path: &str, query: &str) -> (u16, Value) {
        let url = format!("{}/{path}?{query}", self.handle.openai_base_url(org));
        self.get(self.client.get(url).bearer_auth(openai_api_key(org))).await
    }

    fn anthropic_request(&self, org: &str, path: &str, query: &str) -> reqwest::RequestBuilder {
        let url = format!(
            "{}/v1/organizations/{path}?{query}",
            self.handle.anthropic_base_url(org)
        );
        self.client
            .get(url)
            .header("x-api-key", anthropic_api_key(org))
            .header("anthropic-version", "2023-06-01")
    }

    async fn anthropic(&self, org: &str, path: &str, query: &str) -> (u16, Value) {
        self.get(self.anthropic_request(org, path, query)).await
    }

    /// The analytics API, with its beta header.
    async fn analytics(&self, org: &str, path: &str, query: &str) -> (u16, Value) {
        let req = self
            .anthropic_request(org, &format!("analytics/{path}"), query)
            .header("anthropic-beta", ANALYTICS_BETA);
        self.get(req).await
    }

    /// Every bucket of every page, following `next_page` with identical params.
    async fn pages(&self, provider: &str, org: &str, path: &str, query: &str) -> (Vec<Value>, usize) {
        let mut buckets = Vec::new();
        let mut page: Option<String> = None;
        let mut requests = 0;
        loop {
            let q = match &page {
                Some(p) => format!("{query}&page={p}"),
                None => query.to_string(),
            };
            let (status, body) = match provider {
                "openai" => self.openai(org, path, &q).await,
                "analytics" => self.analytics(org, path, &q).await,
                _ => self.anthropic(org, path, &q).await,
            };
            requests += 1;
            assert_eq!(status, 200, "{body}");
            buckets.extend(body["data"].as_array().unwrap().iter().cloned());
            match body["next_page"].as_str() {
                Some(next) if body["has_more"] == json!(true) => page = Some(next.to_string()),
                _ => {
                    assert_eq!(body["has_more"], json!(false));
                    return (buckets, requests);
                }
            }
            assert!(requests < 1000, "pagination does not terminate");
        }
    }
}

fn results(buckets: &[Value]) -> impl Iterator<Item = &Value> {
    buckets.iter().flat_map(|b| b["results"].as_array().unwrap().iter())
}

fn int(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn total(buckets: &[Value], pointer: &str) -> i64 {
    results(buckets).map(|r| int(r, pointer)).sum()
}

#[tokio::test]
async fn pagination_returns_every_bucket_exactly_once() {
    let sim = Sim::start(42).await;
    let (start, end) = (today() - 3 * DAY, today() - DAY);
    let q = format!("start_time={start}&end_time={end}&bucket_width=1h&limit=5&group_by[]=model");
    let (paged, requests) = sim.pages("openai", "org-1", "organization/usage/completions", &q).await;
    assert_eq!(requests, 10); // 48 buckets, 5 per page
    let starts: Vec<i64> = paged.iter().map(|b| b["start_time"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (0..48).map(|i| start + i * HOUR).collect();
    assert_eq!(starts, expected);
    let q = format!("start_time={start}&end_time={end}&bucket_width=1h&limit=48&group_by[]=model");
    let (one, requests) = sim.pages("openai", "org-1", "organization/usage/completions", &q).await;
    assert_eq!(requests, 1);
    assert_eq!(one, paged);

    // Anthropic: same property with its RFC 3339 cursors.
    let q = format!(
        "starting_at={}&ending_at={}&bucket_width=1h&limit=7",
        rfc(start),
        rfc(end)
    );
    let (paged, requests) = sim.pages("anthropic", "org-2", "usage_report/messages", &q).await;
    assert_eq!(requests, 7);
    let starts: BTreeSet<String> = paged
        .iter()
        .map(|b| b["starting_at"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(starts.len(), 48);
    assert_eq!(paged.len(), 48);
    assert_eq!(paged[0]["starting_at"], json!(rfc(start)));
    assert_eq!(paged[47]["ending_at"], json!(rfc(end)));
    sim.handle.stop().await;
}

#[tokio::test]
async fn group_by_changes_the_grain_but_not_the_totals() {
    let sim = Sim::start(42).await;
    let (start, end) = (today() - 4 * DAY, today() - DAY);
    let path = "organization/usage/completions";
    let base = format!("start_time={start}&end_time={end}&bucket_width=1d");
    let (plain, _) = sim.pages("openai", "org-1", path, &base).await;
    let brackets = format!("{base}&group_by[]=model&group_by[]=project_id");
    let (by_model, _) = sim.pages("openai", "org-1", path, &brackets).await;
    let all = ["project_id", "user_id", "api_key_id", "model", "batch", "service_tier"];
    let repeated: String = all.iter().map(|g| format!("&group_by={g}")).collect();
    let (finest, _) = sim.pages("openai", "org-1", path, &format!("{base}{repeated}")).await;

    let rows = |b: &[Value]| results(b).count();
    assert_eq!(rows(&plain), 3, "one ungrouped row per day");
    assert!(rows(&by_model) > rows(&plain) && rows(&finest) > rows(&by_model));
    for field in [
        "/input_tokens",
        "/input_cached_tokens",
        "/output_tokens",
        "/num_model_requests",
    ] {
        assert_eq!(total(&plain, field), total(&by_model, field), "{field}");
        assert_eq!(total(&plain, field), total(&finest, field), "{field}");
    }
    assert!(total(&plain, "/input_tokens") > 0);
    for r in results(&plain) {
        assert!(all.iter().all(|f| r[f].is_null()), "{r}");
    }
    for r in results(&by_model) {
        assert!(
            r["model"].is_string() && r["user_id"].is_null() && r["batch"].is_null(),
            "{r}"
        );
    }
    assert!(results(&finest).any(|r| r["batch"] == json!(true)));
    assert!(
        results(&finest).any(|r| r["project_id"].is_null()),
        "default-project rows stay null when grouped"
    );

    // Anthropic usage and cost report.
    let base = format!("starting_at={}&ending_at={}&bucket_width=1d", rfc(start), rfc(end));
    let (plain, _) = sim.pages("anthropic", "org-1", "usage_report/messages", &base).await;
    let grouped = format!("{base}&group_by[]=workspace_id&group_by[]=api_key_id&group_by[]=model&group_by[]=service_tier&group_by[]=context_window");
    let (fine, _) = sim.pages("anthropic", "org-1", "usage_report/messages", &grouped).await;
    assert!(rows(&fine) > rows(&plain));
    for field in [
        "/uncached_input_tokens",
        "/cache_read_input_tokens",
        "/cache_creation/ephemeral_5m_input_tokens",
        "/cache_creation/ephemeral_1h_input_tokens",
        "/output_tokens",
        "/server_tool_use/web_search_requests",
    ] {
        assert_eq!(total(&plain, field), total(&fine, field), "{field}");
        assert!(total(&plain, field) > 0, "{field}");
    }
    assert!(
        results(&fine).any(|r| r["workspace_id"].is_null()),
        "org-1 uses the default workspace"
    );
    assert!(
        results(&fine).any(|r| r["api_key_id"].is_null()),
        "Workbench usage has no key"
    );

    let cents = |b: &[Value]| -> Decimal { results(b).map(|r| decimal(&r["amount"], "amount").unwrap()).sum() };
    let (plain, _) = sim
        .pages(
            "anthropic",
            "org-1",
            "cost_report",
            &format!("starting_at={}&ending_at={}", rfc(start), rfc(end)),
        )
        .await;
    let (fine, _) = sim
        .pages(
            "anthropic",
            "org-1",
            "cost_report",
            &format!(
                "starting_at={}&ending_at={}&group_by[]=workspace_id&group_by[]=description",
                rfc(start),
                rfc(end)
            ),
        )
        .await;
    assert_eq!(rows(&plain), 3);
    assert!(rows(&fine) > 10);
    assert_eq!(cents(&plain), cents(&fine));
    assert!(results(&plain).all(|r| r["description"].is_null() && r["model"].is_null()));
    sim.handle.stop().await;
}

#[tokio::test]
async fn daily_totals_equal_the_sum_of_hourly_totals() {
    let sim = Sim::start(7).await;
    let (start, end) = (today() - 3 * DAY, today() - DAY);
    for path in ["organization/usage/completions", "organization/usage/embeddings"] {
        let (daily, _) = sim
            .pages(
                "openai",
                "org-2",
                path,
                &format!("start_time={start}&end_time={end}&bucket_width=1d"),
            )
            .await;
        let (hourly, _) = sim
            .pages(
                "openai",
                "org-2",
                path,
                &format!("start_time={start}&end_time={end}&bucket_width=1h&limit=168"),
            )
            .await;
        assert_eq!(daily.len(), 2);
        assert_eq!(hourly.len(), 48);
        for (i, day) in daily.iter().enumerate() {
            let hours = &hourly[i * 24..(i + 1) * 24];
            for field in ["/input_tokens", "/num_model_requests"] {
                assert_eq!(
                    total(std::slice::from_ref(day), field),
                    total(hours, field),
                    "{path} {field}"
                );
            }
        }
    }
    let q = |w: &str| {
        format!(
            "starting_at={}&ending_at={}&bucket_width={w}&group_by[]=model",
            rfc(start),
            rfc(end)
        )
    };
    let (daily, _) = sim.pages("anthropic", "org-2", "usage_report/messages", &q("1d")).await;
    let (hourly, _) = sim.pages("anthropic", "org-2", "usage_report/messages", &q("1h")).await;
    assert_eq!((daily.len(), hourly.len()), (2, 48));
    for (i, day) in daily.iter().enumerate() {
        let hours = &hourly[i * 24..(i + 1) * 24];
        for field in [
            "/uncached_input_tokens",
            "/output_tokens",
            "/cache_creation/ephemeral_5m_input_tokens",
        ] {
            assert_eq!(total(std::slice::from_ref(day), field), total(hours, field), "{field}");
        }
    }
    // 1m buckets keep the totals too (hourly data sits at the top of its hour).
    let path = "organization/usage/completions";
    let day = |w: &str, limit: u32| {
        format!(
            "start_time={start}&end_time={}&bucket_width={w}&limit={limit}",
            start + DAY
        )
    };
    let (minutes, _) = sim.pages("openai", "org-2", path, &day("1m", 1440)).await;
    let (hours, _) = sim.pages("openai", "org-2", path, &day("1h", 24)).await;
    assert_eq!(minutes.len(), 1440);
    assert_eq!(total(&minutes, "/input_tokens"), total(&hours, "/input_tokens"));
    sim.handle.stop().await;
}

#[tokio::test]
async fn openai_costs_price_exactly_the_usage_tokens() {
    let sim = Sim::start(42).await;
    let (start, end) = (today() - 4 * DAY, today() - DAY);
    let usage_q = format!("start_time={start}&end_time={end}&bucket_width=1d&group_by[]=model");
    let (completions, _) = sim
        .pages("openai", "org-1", "organization/usage/completions", &usage_q)
        .await;
    let (embeddings, _) = sim
        .pages("openai", "org-1", "organization/usage/embeddings", &usage_q)
        .await;
    let mut usage: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in results(&completions).chain(results(&embeddings)) {
        let e = usage.entry(r["model"].as_str().unwrap().to_string()).or_default();
        e.0 += int(r, "/input_tokens");
        e.1 += int(r, "/output_tokens");
    }
    let cost_q = format!("start_time={start}&end_time={end}&bucket_width=1d&group_by=line_item");
    let (costs, _) = sim.pages("openai", "org-1", "organization/costs", &cost_q).await;
    assert_eq!(costs.len(), 3);
    let mut priced: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut long_tail = false;
    for r in results(&costs) {
        let (model, kind) = r["line_item"].as_str().unwrap().rsplit_once(", ").unwrap();
        let e = priced.entry(model.to_string()).or_default();
        match kind {
            "input" => e.0 += int(r, "/quantity"),
            "output" => e.1 += int(r, "/quantity"),
            other => panic!("unexpected line item kind {other}"),
        }
        assert!(r["amount"]["value"].is_number(), "OpenAI amounts are JSON numbers: {r}");
        assert_eq!(r["amount"]["currency"], json!("usd"));
        assert_eq!(r["quantity_unit"], json!("tokens"));
        let text = r["amount"]["value"].to_string();
        long_tail |= text.split_once('.').is_some_and(|(_, frac)| frac.len() > 9);
        let amount = decimal(&r["amount"]["value"], "value").unwrap();
        assert_eq!(amount.to_string(), text, "exact text survives");
        assert!(amount > Decimal::ZERO);
    }
    assert!(long_tail, "some amounts carry more than 9 decimal places");
    assert_eq!(usage, priced);
    // gpt-4o-mini input lists at $0.15/MTok; the org's rate is within 4% below list.
    let mini_in: Decimal = results(&costs)
        .filter(|r| r["line_item"] == json!("gpt-4o-mini-2024-07-18, input"))
        .map(|r| decimal(&r["amount"]["value"], "value").unwrap())
        .sum();
    let list = Decimal::from(priced["gpt-4o-mini-2024-07-18"].0) * Decimal::new(15, 2) / Decimal::from(1_000_000);
    assert!(
        mini_in <= list && mini_in >= list * Decimal::new(96, 2),
        "{mini_in} vs {list}"
    );
    sim.handle.stop().await;
}

#[tokio::test]
async fn anthropic_costs_follow_the_usage() {
    let sim = Sim::start(42).await;
    let (start, end) = (today() - 4 * DAY, today() - DAY);
    let usage_q = format!(
        "starting_at={}&ending_at={}&group_by[]=model&group_by[]=service_tier&group_by[]=context_window",
        rfc(start),
        rfc(end)
    );
    let (usage, _) = sim.pages("anthropic", "org-2", "usage_report/messages", &usage_q).await;
    let types = [
        ("uncached_input_tokens", "/uncached_input_tokens"),
        ("output_tokens", "/output_tokens"),
        ("cache_read_input_tokens", "/cache_read_input_tokens"),
        (
            "cache_creation.ephemeral_5m_input_tokens",
            "/cache_creation/ephemeral_5m_input_tokens",
        ),
        (
            "cache_creation.ephemeral_1h_input_tokens",
            "/cache_creation/ephemeral_1h_input_tokens",
        ),
    ];
    let mut used: BTreeMap<(String, String), i64> = BTreeMap::new();
    for (bucket, r) in usage
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap().iter().map(move |r| (b, r)))
    {
        for (token_type, pointer) in types {
            let key = format!(
                "{} {} {} {}",
                bucket["starting_at"], r["model"], r["service_tier"], r["context_window"]
            );
            *used.entry((key, token_type.to_string())).or_default() += int(r, pointer);
        }
    }
    used.retain(|_, v| *v > 0);
    let cost_q = format!(
        "starting_at={}&ending_at={}&group_by[]=description",
        rfc(start),
        rfc(end)
    );
    let (costs, _) = sim.pages("anthropic", "org-2", "cost_report", &cost_q).await;
    let mut billed: BTreeSet<(String, String)> = BTreeSet::new();
    let mut web_cents = Decimal::ZERO;
    for (bucket, r) in costs
        .iter()
        .flat_map(|b| b["results"].as_array().unwrap().iter().map(move |r| (b, r)))
    {
        let amount = r["amount"].as_str().expect("Anthropic amounts are strings");
        assert!(amount.split_once('.').unwrap().1.len() >= 6, "{amount}");
        assert_eq!(r["currency"], json!("USD"));
        match r["cost_type"].as_str().unwrap() {
            "tokens" => {
                let key = format!(
                    "{} {} {} {}",
                    bucket["starting_at"], r["model"], r["service_tier"], r["context_window"]
                );
                billed.insert((key, r["token_type"].as_str().unwrap().to_string()));
                assert!(r["description"].as_str().unwrap().contains(" Usage - "));
            }
            "web_search" => {
                assert!(r["model"].is_null() && r["token_type"].is_null());
                assert_eq!(r["description"], json!("Web Search Usage"));
                web_cents += Decimal::from_str(amount).unwrap();
            }
            other => panic!("unexpected cost_type {other}"),
        }
    }
    assert_eq!(billed, used.keys().cloned().collect::<BTreeSet<_>>());
    // Web search: $10 per 1000 = 1 cent each, at a rate within 4% below list.
    let searches = Decimal::from(total(&usage, "/server_tool_use/web_search_requests"));
    assert!(searches > Decimal::ZERO);
    assert!(
        web_cents <= searches && web_cents >= searches * Decimal::new(96, 2),
        "{web_cents} vs {searches}"
    );
    sim.handle.stop().await;
}

fn strip_date(raw: &str) -> String {
    match raw {
        "gpt-4o-2024-08-06" => "gpt-4o",
        "gpt-4o-mini-2024-07-18" => "gpt-4o-mini",
        "o3-mini-2025-01-31" => "o3-mini",
        "text-embedding-3-small" => "text-embedding-3-small",
        "claude-sonnet-4-20250514" => "claude-sonnet-4",
        "claude-3-5-haiku-20241022" => "claude-3-5-haiku",
        "claude-opus-4-1-20250805" => "claude-opus-4-1",
        "" => "",
        other => panic!("unexpected model {other}"),
    }
    .to_string()
}

/// Per (model, unit): input, output, cache reads, cache writes, requests,
/// quantity, cost.
type Sums = BTreeMap<(String, String), (i64, i64, i64, i64, i64, Decimal, Decimal)>;

fn entry<'a>(sums: &'a mut Sums, raw_model: &str, unit: &str) -> &'a mut (i64, i64, i64, i64, i64, Decimal, Decimal) {
    sums.entry((strip_date(raw_model), unit.to_string())).or_default()
}

fn nonzero(mut sums: Sums) -> Sums {
    sums.retain(|_, v| *v != (0, 0, 0, 0, 0, Decimal::ZERO, Decimal::ZERO));
    sums
}

fn sums_of(rows: &[TruthRow]) -> Sums {
    rows.iter()
        .map(|r| {
            let v = (
                r.input_tokens,
                r.output_tokens,
                r.cached_input_tokens,
                r.cache_creation_tokens,
                r.requests,
                r.quantity,
                r.cost,
            );
            ((r.model.clone(), r.unit.clone()), v)
        })
        .collect()
}

/// Anthropic usage results (legacy or analytics `usage` object) into sums.
fn add_anthropic_usage(sums: &mut Sums, model: &str, usage: &Value, requests: bool) {
    let read = int(usage, "/cache_read_input_tokens");
    let write = int(usage, "/cache_creation/ephemeral_5m_input_tokens")
        + int(usage, "/cache_creation/ephemeral_1h_input_tokens");
    let e = entry(sums, model, "");
    e.0 += int(usage, "/uncached_input_tokens") + read + write;
    e.1 += int(usage, "/output_tokens");
    e.2 += read;
    e.3 += write;
    if requests {
        e.4 += int(usage, "/requests");
    }
    entry(sums, model, "requests").5 += Decimal::from(int(usage, "/server_tool_use/web_search_requests"));
}

async fn hand_sums(sim: &Sim, provider: &str, org: &str, start: i64, end: i64) -> Sums {
    let mut sums = Sums::new();
    if provider == "openai" {
        let q = format!("start_time={start}&end_time={end}&bucket_width=1h&limit=168&group_by[]=model");
        for path in ["organization/usage/completions", "organization/usage/embeddings"] {
            let (buckets, _) = sim.pages("openai", org, path, &q).await;
            for r in results(&buckets) {
                let e = entry(&mut sums, r["model"].as_str().unwrap(), "");
                e.0 += int(r, "/input_tokens");
                e.1 += int(r, "/output_tokens");
                e.2 += int(r, "/input_cached_tokens");
                e.4 += int(r, "/num_model_requests");
            }
        }
        let (buckets, _) = sim
            .pages("openai", org, "organization/usage/web_search_calls", &q)
            .await;
        for r in results(&buckets) {
            let e = entry(&mut sums, r["model"].as_str().unwrap(), "calls");
            e.4 += int(r, "/num_model_requests");
            e.5 += Decimal::from(int(r, "/num_requests"));
        }
        let q = format!("start_time={start}&end_time={end}&bucket_width=1h&limit=168");
        let (buckets, _) = sim
            .pages("openai", org, "organization/usage/file_search_calls", &q)
            .await;
        for r in results(&buckets) {
            entry(&mut sums, "", "calls").5 += Decimal::from(int(r, "/num_requests"));
        }
        let q = format!(
            "start_time={start}&end_time={end}&group_by[]=project_id&group_by[]=line_item&group_by[]=api_key_id"
        );
        let (buckets, _) = sim.pages("openai", org, "organization/costs", &q).await;
        for r in results(&buckets) {
            let model = r["line_item"].as_str().unwrap().rsplit_once(", ").unwrap().0;
            let e = entry(&mut sums, model, "tokens");
            e.5 += Decimal::from(int(r, "/quantity"));
            e.6 += round9(decimal(&r["amount"]["value"], "value").unwrap());
        }
    } else {
        let q = format!(
            "starting_at={}&ending_at={}&bucket_width=1h&limit=168&group_by[]=model",
            rfc(start),
            rfc(end)
        );
        let (buckets, _) = sim.pages("anthropic", org, "usage_report/messages", &q).await;
        for r in results(&buckets) {
            add_anthropic_usage(&mut sums, r["model"].as_str().unwrap(), r, false);
        }
        let q = format!(
            "starting_at={}&ending_at={}&group_by[]=workspace_id&group_by[]=description",
            rfc(start),
            rfc(end)
        );
        let (buckets, _) = sim.pages("anthropic", org, "cost_report", &q).await;
        for r in results(&buckets) {
            let cents = decimal(&r["amount"], "amount").unwrap();
            entry(&mut sums, r["model"].as_str().unwrap_or(""), "").6 += round9(cents / Decimal::ONE_HUNDRED);
        }
    }
    nonzero(sums)
}

#[tokio::test]
async fn truth_equals_a_hand_sum_of_the_served_json() {
    let sim = Sim::start(42).await;
    let (start, end) = (today() - 2 * DAY, today() - DAY);
    for provider in ["openai", "anthropic"] {
        for org in ["org-1", "org-2"] {
            let expected = hand_sums(&sim, provider, org, start, end).await;
            let url = format!(
                "{}/_sim/truth?provider={provider}&org={org}&start={}&end={}",
                sim.handle.base_url(),
                rfc(start),
                rfc(end)
            );
            let body: Value = sim.client.get(url).send().await.unwrap().json().await.unwrap();
            let rows: Vec<TruthRow> = serde_json::from_value(body["rows"].clone()).unwrap();
            assert!(rows.iter().all(|r| r.day == at(start).date_naive()));
            assert!(body["rows"][0]["cost"].is_string(), "cost is a decimal string");
            assert!(body["rows"][0]["quantity"].is_string() && body["rows"][0]["credits"].is_string());
            let got = sums_of(&rows);
            assert_eq!(got.len(), rows.len(), "one row per (day, model, unit)");
            assert_eq!(got, expected, "{provider} {org}");
            assert!(got.len() >= 3, "{provider} {org}: {got:?}");
            // the same truth without HTTP
            assert_eq!(sim.handle.truth(provider, org, at(start), at(end)), rows);
            assert_eq!(truth(42, 10, provider, org, at(start), at(end), &[]), rows);
        }
    }
    let anthropic = sim.handle.truth("anthropic", "org-1", at(start), at(end));
    assert!(
        anthropic.iter().any(|r| r.model.is_empty() && r.cost > Decimal::ZERO),
        "web search under model \"\""
    );
    assert!(anthropic.iter().all(|r| r.requests == 0));
    let two_days = sim.handle.truth("openai", "org-1", at(start - DAY), at(end));
    assert_eq!(two_days.iter().map(|r| r.day).collect::<BTreeSet<_>>().len(), 2);
    sim.handle.stop().await;
}

#[tokio::test]
async fn anthropic_omits_buckets_that_end_after_ending_at() {
    let sim = Sim::start(42).await;
    let start = today() - 3 * DAY;
    let ending = today() - DAY + 12 * HOUR;
    let q = format!("starting_at={}&ending_at={}&bucket_width=1d", rfc(start), rfc(ending));
    for path in ["usage_report/messages", "cost_report"] {
        let (status, body) = sim.anthropic("org-1", path, &q).await;
        assert_eq!(status, 200);
        let starts: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["starting_at"].as_str().unwrap())
            .collect();
        assert_eq!(starts, vec![rfc(start), rfc(start + DAY)], "{path}");
        assert_eq!(body["has_more"], json!(false));
    }
    let q = format!(
        "starting_at={}&ending_at={}&bucket_width=1h",
        rfc(start),
        rfc(start + 90 * 60)
    );
    let (_, body) = sim.anthropic("org-1", "usage_report/messages", &q).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["ending_at"], json!(rfc(start + HOUR)));
    // starting_at is snapped down to the start of its bucket
    let q = format!(
        "starting_at={}&ending_at={}&bucket_width=1h",
        rfc(start + 600),
        rfc(start + 2 * HOUR)
    );
    let (_, body) = sim.anthropic("org-1", "usage_report/messages", &q).await;
    assert_eq!(body["data"][0]["starting_at"], json!(rfc(start)));
    // OpenAI, by contrast, answers the partial last bucket.
    let q = format!("start_time={start}&end_time={ending}&bucket_width=1d");
    let (_, body) = sim.openai("org-1", "organization/usage/completions", &q).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    sim.handle.stop().await;
}

#[tokio::test]
async fn wrong_credentials_get_the_providers_401() {
    let sim = Sim::start(42).await;
    let q = format!("start_time={}", today() - DAY);
    let url = format!(
        "{}/organization/usage/completions?{q}",
        sim.handle.openai_base_url("org-1")
    );
    for req in [
        sim.client.get(&url).bearer_auth("sk-admin-FAKE-wrong"),
        sim.client.get(&url).bearer_auth(openai_api_key("org-2")),
        sim.client.get(&url),
    ] {
        let (status, body) = sim.get(req).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["type"], json!("invalid_request_error"));
        assert!(!body.to_string().contains("FAKE"), "no key echoed: {body}");
    }
    let (status, body) = sim.get(sim.client.get(&url).bearer_auth("sk-admin-FAKE-wrong")).await;
    assert_eq!((status, body["error"]["code"].clone()), (401, json!("invalid_api_key")));
    // an org the simulator does not serve
    let url3 = format!("{}/organization/costs?{q}", sim.handle.openai_base_url("org-3"));
    let (status, _) = sim.get(sim.client.get(url3).bearer_auth(openai_api_key("org-3"))).await;
    assert_eq!(status, 401);

    let url = format!(
        "{}/v1/organizations/cost_report?starting_at={}",
        sim.handle.anthropic_base_url("org-1"),
        rfc(today() - DAY)
    );
    let (status, body) = sim
        .get(
            sim.client
                .get(&url)
                .header("x-api-key", "sk-ant-admin01-FAKE-wrong")
                .header("anthropic-version", "2023-06-01"),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})
    );
    let (status, body) = sim
        .get(sim.client.get(&url).header("x-api-key", anthropic_api_key("org-1")))
        .await;
    assert_eq!(status, 400, "missing anthropic-version: {body}");
    let (status, _) = sim
        .get(
            sim.client
                .get(&url)
                .header("x-api-key", anthropic_api_key("org-1"))
                .header("anthropic-version", "2023-06-01"),
        )
        .await;
    assert_eq!(status, 200);
    sim.handle.stop().await;
}

#[tokio::test]
async fn faults_fire_in_order_then_stop() {
    let sim = Sim::start(42).await;
    let plan = json!({"rate_limit": 2, "server_error": 1, "truncate": 1, "retry_after_secs": 7});
    let resp = sim
        .client
        .post(format!("{}/_sim/faults", sim.handle.base_url()))
        .json(&plan)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let q = format!("start_time={}&end_time={}", today() - 3 * DAY, today() - DAY);
    let url = format!(
        "{}/organization/usage/completions?{q}",
        sim.handle.openai_base_url("org-1")
    );
    let send = || sim.client.get(&url).bearer_auth(openai_api_key("org-1")).send();

    let r = send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], json!("rate_limit_exceeded"));
    // counters are global: the second 429 goes to an Anthropic request
    let (status, body) = sim
        .anthropic("org-2", "cost_report", &format!("starting_at={}", rfc(today() - DAY)))
        .await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["type"], json!("rate_limit_error"));
    let r = send().await.unwrap();
    assert_eq!(r.status().as_u16(), 500);
    let r = send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cut = r.bytes().await.unwrap();
    assert!(
        serde_json::from_slice::<Value>(&cut).is_err(),
        "truncated body is not valid JSON"
    );
    let r = send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let full = r.bytes().await.unwrap();
    assert!(serde_json::from_slice::<Value>(&full).is_ok());
    assert_eq!(cut.len(), full.len() / 2);
    assert_eq!(full[..cut.len()], cut[..]);
    assert_eq!(
        sim.handle.pending_faults(),
        FaultPlan {
            retry_after_secs: Some(7),
            ..FaultPlan::default()
        }
    );

    let stats: Value = sim
        .client
        .get(format!("{}/_sim/stats", sim.handle.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let count = |status: u16| {
        stats["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["path"] == json!("/openai/org-1/v1/organization/usage/completions") && e["status"] == json!(status)
            })
            .map(|e| e["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!((count(429), count(500), count(200)), (1, 1, 2));
    assert_eq!(stats["total"], json!(5));
    assert_eq!(sim.handle.stats().iter().map(|e| e.count).sum::<u64>(), 5);
    sim.handle.stop().await;
}

/// `/_sim/clock` lets time pass: the current hour and the rest of the day
/// after it, empty while they are not over, are served (and in the truth)
/// once the clock is moved past them. A whole day, because a single quiet
/// hour (a weekend night) can hold no traffic at all.
#[tokio::test]
async fn advancing_the_clock_completes_the_current_hour() {
    let sim = Sim::start(42).await;
    let hour = Utc::now().timestamp().div_euclid(3_600) * 3_600;
    let end = hour + 24 * 3_600;
    let query = format!("start_time={hour}&end_time={end}&bucket_width=1h");
    let tokens = |page: &Value| -> i64 {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["results"].as_array().unwrap().iter())
            .map(|r| r["input_tokens"].as_i64().unwrap())
            .sum()
    };
    let (status, before) = sim.openai("org-1", "organization/usage/completions", &query).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(tokens(&before), 0, "the current hour is not over: {before}");
    let truth_tokens = |rows: Vec<TruthRow>| rows.iter().map(|r| r.input_tokens).sum::<i64>();
    assert_eq!(truth_tokens(sim.handle.truth("openai", "org-1", at(hour), at(end))), 0);

    let url = format!("{}/_sim/clock", sim.handle.base_url());
    let resp = sim
        .client
        .post(&url)
        .json(&json!({"advance_secs": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("'advance_secs'"));
    let resp = sim
        .client
        .post(&url)
        .json(&json!({"advance_secs": 25 * 3_600}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    let (_, after) = sim.openai("org-1", "organization/usage/completions", &query).await;
    assert!(tokens(&after) > 0, "the day is over in simulated time: {after}");
    // The truth counts every endpoint's tokens, completions among them.
    let truth = sim.handle.truth("openai", "org-1", at(hour), at(end));
    assert!(truth_tokens(truth) >= tokens(&after));
    sim.handle.stop().await;
}

#[tokio::test]
async fn restatement_changes_truth_and_answers() {
    let sim = Sim::start(42).await;
    let (start, end) = (today() - 3 * DAY, today() - DAY);
    let restated_day = at(start + DAY).date_naive();
    let before_truth = sim.handle.truth("openai", "org-1", at(start), at(end));
    let before = hand_sums(&sim, "openai", "org-1", start + DAY, end).await;
    let before_other_org = hand_sums(&sim, "openai", "org-2", start, end).await;
    let body = json!({"provider": "openai", "org": "org-1", "day": restated_day.to_string(), "factor": "1.5"});
    let url = format!("{}/_sim/restate", sim.handle.base_url());
    let resp = sim.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let bad = json!({"provider": "openai", "org": "org-9", "day": restated_day.to_string(), "factor": "1.5"});
    let resp = sim.client.post(&url).json(&bad).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("'org'"));

    let after_truth = sim.handle.truth("openai", "org-1", at(start), at(end));
    let after = hand_sums(&sim, "openai", "org-1", start + DAY, end).await;
    // the served answers and the truth moved together
    let day_rows: Vec<TruthRow> = after_truth.iter().filter(|r| r.day == restated_day).cloned().collect();
    assert_eq!(sums_of(&day_rows), after);
    for ((model, unit), b) in before.iter().filter(|((_, unit), _)| unit.is_empty()) {
        let a = &after[&(model.clone(), unit.clone())];
        let ratio = Decimal::from(a.0) / Decimal::from(b.0);
        assert!(
            (ratio - Decimal::new(15, 1)).abs() < Decimal::new(1, 2),
            "{model} {ratio}"
        );
    }
    for ((model, unit), b) in before.iter().filter(|((_, unit), _)| unit == "tokens") {
        assert!(after[&(model.clone(), unit.clone())].6 > b.6, "{model} cost restated");
    }
    let calls = |s: &Sums| s[&(String::new(), "calls".to_string())].5;
    assert!(calls(&after) > calls(&before), "tool calls restated too");
    // other days and orgs are untouched
    let unchanged = |rows: &[TruthRow]| {
        rows.iter()
            .filter(|r| r.day != restated_day)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(unchanged(&before_truth), unchanged(&after_truth));
    assert_eq!(before_other_org, hand_sums(&sim, "openai", "org-2", start, end).await);
    sim.handle.stop().await;
}

#[tokio::test]
async fn invalid_requests_are_rejected_like_the_providers_do() {
    let sim = Sim::start(42).await;
    let s = today() - 3 * DAY;
    for (path, q) in [
        (
            "organization/usage/completions",
            format!("start_time={s}&bucket_width=1d&limit=32"),
        ),
        (
            "organization/usage/completions",
            format!("start_time={s}&bucket_width=1h&limit=169"),
        ),
        (
            "organization/usage/completions",
            format!("start_time={s}&bucket_width=2h"),
        ),
        (
            "organization/usage/completions",
            format!("start_time={s}&group_by[]=color"),
        ),
        ("organization/usage/completions", format!("start_time={s}&page=garbage")),
        ("organization/usage/completions", "bucket_width=1d".to_string()),
        (
            "organization/usage/vector_stores",
            format!("start_time={s}&group_by[]=model"),
        ),
        ("organization/costs", format!("start_time={s}&bucket_width=1h")),
        ("organization/costs", format!("start_time={s}&limit=181")),
    ] {
        let (status, body) = sim.openai("org-1", path, &q).await;
        assert_eq!(status, 400, "{path}?{q}: {body}");
        assert_eq!(body["error"]["type"], json!("invalid_request_error"));
    }
    let (status, _) = sim
        .openai("org-1", "organization/costs", &format!("start_time={s}&limit=180"))
        .await;
    assert_eq!(status, 200);
    let (status, _) = sim
        .openai("org-1", "organization/usage/nothing", &format!("start_time={s}"))
        .await;
    assert_eq!(status, 404);
    for (path, q) in [
        ("cost_report", format!("starting_at={}&group_by[]=api_key_id", rfc(s))),
        ("cost_report", format!("starting_at={}&limit=32", rfc(s))),
        ("cost_report", format!("starting_at={}&bucket_width=1h", rfc(s))),
        ("usage_report/messages", "bucket_width=1d".to_string()),
        (
            "usage_report/messages",
            format!("starting_at={}&page=page_bm9wZQ==", rfc(s)),
        ),
    ] {
        let (status, body) = sim.anthropic("org-1", path, &q).await;
        assert_eq!(status, 400, "{path}?{q}: {body}");
        assert_eq!(body["error"]["type"], json!("invalid_request_error"));
    }
    // a cursor from one query does not fit another
    let (_, body) = sim
        .openai(
            "org-1",
            "organization/usage/completions",
            &format!("start_time={s}&limit=1"),
        )
        .await;
    let cursor = body["next_page"].as_str().unwrap();
    let other = format!("start_time={}&limit=1&page={cursor}", s + 2 * DAY);
    let (status, _) = sim.openai("org-1", "organization/usage/completions", &other).await;
    assert_eq!(status, 400);
    sim.handle.stop().await;
}

#[tokio::test]
async fn empty_and_minor_endpoints_answer_valid_pages() {
    let sim = Sim::start(42).await;
    // before the history: buckets exist but are empty
    let early = today() - 20 * DAY;
    let q = format!("start_time={early}&end_time={}&bucket_width=1d", early + 3 * DAY);
    let (status, body) = sim.openai("org-1", "organization/usage/completions", &q).await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], json!("page"));
    assert_eq!(body["data"].as_array().unwrap().len(), 3);
    assert!(body["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|b| b["results"] == json!([]) && b["object"] == json!("bucket")));
    for endpoint in [
        "moderations",
        "images",
        "audio_speeches",
        "audio_transcriptions",
        "vector_stores",
        "code_interpreter_sessions",
    ] {
        let q = format!("start_time={}&bucket_width=1h&limit=3", today() - DAY);
        let (status, body) = sim.openai("org-2", &format!("organization/usage/{endpoint}"), &q).await;
        assert_eq!(status, 200, "{endpoint}");
        assert_eq!(body["data"].as_array().unwrap().len(), 3, "{endpoint}");
        assert_eq!(body["has_more"], json!(true), "{endpoint}");
    }
    // the future has no buckets; the current hour has no data yet
    let now = Utc::now().timestamp();
    let q = format!(
        "start_time={}&end_time={}&bucket_width=1h",
        now - now % HOUR,
        now + 3 * HOUR
    );
    let (_, body) = sim.openai("org-1", "organization/usage/completions", &q).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["results"], json!([]));
    sim.handle.stop().await;
}

#[tokio::test]
async fn same_seed_same_answers_across_servers() {
    let a = Sim::start(5).await;
    let b = Sim::start(5).await;
    let c = Sim::start(6).await;
    let q = format!(
        "start_time={}&end_time={}&bucket_width=1h&group_by[]=api_key_id",
        today() - 2 * DAY,
        today() - DAY
    );
    let path = "organization/usage/completions";
    let (_, x) = a.openai("org-1", path, &q).await;
    let (_, y) = b.openai("org-1", path, &q).await;
    let (_, z) = c.openai("org-1", path, &q).await;
    assert_eq!(x, y);
    assert_ne!(x, z);
    for sim in [a, b, c] {
        sim.handle.stop().await;
    }
}

#[actix_rt::test]
async fn starts_and_stops_inside_an_actix_runtime() {
    let config = SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        seed: 1,
        orgs: 1,
        history_days: 3,
        workers: 1,
        record_requests: false,
    };
    let handle = start(config).await.unwrap();
    assert!(handle.addr.port() > 0);
    assert_eq!(
        handle.openai_base_url("org-1"),
        format!("http://127.0.0.1:{}/openai/org-1/v1", handle.addr.port())
    );
    let url = format!(
        "{}/v1/organizations/usage_report/messages?starting_at={}",
        handle.anthropic_base_url("org-1"),
        rfc(today() - DAY)
    );
    let resp = reqwest::Client::new()
        .get(url)
        .header("x-api-key", anthropic_api_key("org-1"))
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let addr = handle.addr;
    handle.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped server no longer accepts"
    );
}

#[test]
fn public_helpers_name_orgs_and_fake_keys() {
    assert_eq!(org_ids(3), vec!["org-1", "org-2", "org-3"]);
    assert_eq!(openai_api_key("org-1"), "sk-admin-FAKE-sim-org-1");
    assert_eq!(anthropic_api_key("org-2"), "sk-ant-admin01-FAKE-sim-org-2");
}

#[tokio::test]
async fn openai_tool_call_endpoints_answer_grouped_buckets() {
    let sim = Sim::start(42).await;
    let (start, end) = (today() - 3 * DAY, today() - DAY);
    let base = format!("start_time={start}&end_time={end}&bucket_width=1d");
    for (path, object, groups, measures) in [
        (
            "organization/usage/web_search_calls",
            "organization.usage.web_searches.result",
            vec!["project_id", "user_id", "api_key_id", "model", "context_level"],
            vec!["/num_requests", "/num_model_requests"],
        ),
        (
            "organization/usage/file_search_calls",
            "organization.usage.file_searches.result",
            vec!["project_id", "user_id", "api_key_id", "vector_store_id"],
            vec!["/num_requests"],
        ),
    ] {
        let (plain, _) = sim.pages("openai", "org-1", path, &base).await;
        let all: String = groups.iter().map(|g| format!("&group_by[]={g}")).collect();
        let (fine, _) = sim.pages("openai", "org-1", path, &format!("{base}{all}")).await;
        assert_eq!(plain.len(), 2, "{path}");
        assert_eq!(results(&plain).count(), 2, "{path}: one ungrouped row per day");
        assert!(results(&fine).count() > 4, "{path}");
        for field in &measures {
            assert!(total(&plain, field) > 0, "{path} {field}");
            assert_eq!(total(&plain, field), total(&fine, field), "{path} {field}");
        }
        assert!(results(&fine).all(|r| r["object"] == json!(object)));
        assert!(results(&fine).all(|r| groups.iter().all(|g| r[g].is_string() || r[g].is_null())));
        assert!(results(&plain).all(|r| groups.iter().all(|g| r[g].is_null())));
    }
    // the model requests behind web searches are never more than the searches
    let q = format!("{base}&group_by[]=model&group_by[]=context_level");
    let (web, _) = sim
        .pages("openai", "org-1", "organization/usage/web_search_calls", &q)
        .await;
    assert!(results(&web).all(|r| int(r, "/num_model_requests") <= int(r, "/num_requests")));
    // context_levels filters like the other filters
    let (low, _) = sim
        .pages(
            "openai",
            "org-1",
            "organization/usage/web_search_calls",
            &format!("{q}&context_levels[]=low"),
        )
        .await;
    assert!(results(&low).count() > 0 && results(&low).all(|r| r["context_level"] == json!("low")));
    assert!(total(&low, "/num_requests") < total(&web, "/num_requests"));
    sim.handle.stop().await;
}

#[tokio::test]
async fn analytics_needs_the_beta_header_and_pages_by_rows() {
    let sim = Sim::start(42).await;
    let (start, end) = (today() - 3 * DAY, today() - DAY);
    let q = format!(
        "starting_at={}&ending_at={}&time_bucket_width=1h&group_by[]=model",
        rfc(start),
        rfc(end)
    );
    // without the beta header: a 400 in Anthropic's error format
    let (status, body) = sim.anthropic("org-1", "analytics/usage", &q).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["type"], json!("error"));
    assert_eq!(body["error"]["type"], json!("invalid_request_error"));
    assert!(body["error"]["message"].as_str().unwrap().contains(ANALYTICS_BETA));
    // other betas alongside are fine
    let req = sim
        .anthropic_request("org-1", "analytics/usage", &q)
        .header("anthropic-beta", format!("some-other-beta, {ANALYTICS_BETA}"));
    assert_eq!(sim.get(req).await.0, 200);

    let (rows, requests) = sim.pages("analytics", "org-1", "usage", &format!("{q}&limit=7")).await;
    assert!(requests > 3, "paged by rows: {requests}");
    let (one, requests) = sim
        .pages("analytics", "org-1", "usage", &format!("{q}&limit=1000"))
        .await;
    assert_eq!(requests, 1);
    assert_eq!(rows, one, "every row once, in the same order");
    for row in &rows {
        let starting = DateTime::parse_from_rfc3339(row["starting_at"].as_str().unwrap()).unwrap();
        let ending = DateTime::parse_from_rfc3339(row["ending_at"].as_str().unwrap()).unwrap();
        assert_eq!((ending - starting).num_seconds(), HOUR, "{row}");
        assert!(
            row["group"]["model"].is_string() && row["group"]["workspace_id"].is_null(),
            "{row}"
        );
        assert!(row["group"]["product"].is_null());
        assert!(
            int(row, "/usage/requests") > 0,
            "rows without usage are left out: {row}"
        );
    }
    // the same tokens as the legacy report
    let legacy_q = format!(
        "starting_at={}&ending_at={}&bucket_width=1h&limit=168&group_by[]=model",
        rfc(start),
        rfc(end)
    );
    let (legacy, _) = sim
        .pages("anthropic", "org-1", "usage_report/messages", &legacy_q)
        .await;
    for field in [
        "/uncached_input_tokens",
        "/output_tokens",
        "/cache_creation/ephemeral_1h_input_tokens",
    ] {
        let analytics: i64 = rows.iter().map(|r| int(r, &format!("/usage{field}"))).sum();
        assert_eq!(analytics, total(&legacy, field), "{field}");
    }
    // bad requests
    for bad in [
        format!("starting_at={}&time_bucket_width=2h", rfc(start)),
        format!(
            "starting_at={}&ending_at={}&time_bucket_width=1d",
            rfc(start - 40 * DAY),
            rfc(end)
        ),
        format!("{q}&group_by[]=color"),
        format!("{q}&page=garbage"),
        "time_bucket_width=1h".to_string(),
    ] {
        let (status, body) = sim.analytics("org-1", "usage", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["type"], json!("invalid_request_error"));
    }
    let (status, _) = sim.analytics("org-1", "cost", &q.replace("1h", "1d")).await;
    assert_eq!(status, 200);
    let (status, _) = sim.analytics("org-1", "cost", &q).await;
    assert_eq!(status, 400, "cost is daily");
    sim.handle.stop().await;
}

#[tokio::test]
async fn analytics_cost_bills_what_the_legacy_report_bills() {
    let sim = Sim::start(42).await;
    let (start, end) = (today() - 4 * DAY, today() - DAY);
    let window = format!("starting_at={}&ending_at={}&time_bucket_width=1d", rfc(start), rfc(end));
    let (fine, _) = sim
        .pages(
            "analytics",
            "org-2",
            "cost",
            &format!("{window}&{ANALYTICS_COST_GROUPS}"),
        )
        .await;
    let (plain, _) = sim.pages("analytics", "org-2", "cost", &window).await;
    let legacy_q = format!("starting_at={}&ending_at={}", rfc(start), rfc(end));
    let (legacy, _) = sim.pages("anthropic", "org-2", "cost_report", &legacy_q).await;
    let sum = |rows: &[Value], pointer: &str| -> Decimal {
        rows.iter()
            .map(|r| decimal(r.pointer(pointer).unwrap(), pointer).unwrap())
            .sum()
    };
    let legacy_cents: Decimal = results(&legacy).map(|r| decimal(&r["amount"], "amount").unwrap()).sum();
    assert_eq!(sum(&fine, "/cost/amount"), legacy_cents);
    assert_eq!(sum(&plain, "/cost/amount"), legacy_cents);
    assert_eq!(plain.len(), 3, "one ungrouped row per day");
    assert!(
        sum(&fine, "/cost/list_amount") > sum(&fine, "/cost/amount"),
        "the org has a discount"
    );
    for r in &fine {
        assert!(
            r["cost"]["amount"].is_string() && r["cost"]["list_amount"].is_string(),
            "{r}"
        );
        assert_eq!(r["cost"]["currency"], json!("USD"));
        assert!(r["cost"]["requests"].is_null(), "no requests per cost component: {r}");
        assert!(r["group"].get("description").is_none());
        match r["group"]["cost_type"].as_str().unwrap() {
            "tokens" => assert!(r["group"]["model"].is_string() && r["group"]["token_type"].is_string()),
            "web_search" => assert!(r["group"]["model"].is_null() && r["group"]["token_type"].is_null()),
            other => panic!("unexpected cost_type {other}"),
        }
    }
    // ungrouped by component, requests are the usage's requests
    let usage_q = format!("starting_at={}&ending_at={}&time_bucket_width=1d", rfc(start), rfc(end));
    let (usage, _) = sim.pages("analytics", "org-2", "usage", &usage_q).await;
    let requests: i64 = usage.iter().map(|r| int(r, "/usage/requests")).sum();
    assert!(requests > 0);
    assert_eq!(plain.iter().map(|r| int(r, "/cost/requests")).sum::<i64>(), requests);
    sim.handle.stop().await;
}

#[tokio::test]
async fn analytics_truth_equals_a_hand_sum_of_the_served_json() {
    let sim = Sim::start(42).await;
    let (start, end) = (today() - 2 * DAY, today() - DAY);
    for org in ["org-1", "org-2"] {
        let mut expected = Sums::new();
        let q = format!(
            "starting_at={}&ending_at={}&time_bucket_width=1h&group_by[]=model",
            rfc(start),
            rfc(end)
        );
        let (rows, _) = sim.pages("analytics", org, "usage", &q).await;
        for r in &rows {
            add_anthropic_usage(&mut expected, r["group"]["model"].as_str().unwrap(), &r["usage"], true);
        }
        let q = format!(
            "starting_at={}&ending_at={}&time_bucket_width=1d&{ANALYTICS_COST_GROUPS}",
            rfc(start),
            rfc(end)
        );
        let (rows, _) = sim.pages("analytics", org, "cost", &q).await;
        for r in &rows {
            let cents = decimal(&r["cost"]["amount"], "amount").unwrap();
            entry(&mut expected, r["group"]["model"].as_str().unwrap_or(""), "").6 +=
                round9(cents / Decimal::ONE_HUNDRED);
        }
        let expected = nonzero(expected);
        let options = TruthOptions {
            api: Some("analytics".into()),
        };
        let truth = sim
            .handle
            .truth_with("anthropic", org, at(start), at(end), &options)
            .unwrap();
        assert_eq!(sums_of(&truth), expected, "{org}");
        assert!(truth.iter().any(|r| r.requests > 0));
        // over HTTP, with the same option
        let url = format!(
            "{}/_sim/truth?provider=anthropic&org={org}&start={}&end={}&api=analytics",
            sim.handle.base_url(),
            rfc(start),
            rfc(end)
        );
        let body: Value = sim.client.get(url).send().await.unwrap().json().await.unwrap();
        let rows: Vec<TruthRow> = serde_json::from_value(body["rows"].clone()).unwrap();
        assert_eq!(rows, truth);
    }
    // an option the provider does not take is refused, naming it
    let url = format!(
        "{}/_sim/truth?provider=openai&org=org-1&start={}&end={}&api=analytics",
        sim.handle.base_url(),
        rfc(start),
        rfc(end)
    );
    let resp = sim.client.get(url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("analytics"));
    assert!(sim
        .handle
        .truth_with("nope", "org-1", at(start), at(end), &TruthOptions::default())
        .is_err());
    assert_eq!(
        sim.handle.provider_base_url("anthropic", "org-2"),
        Some(sim.handle.anthropic_base_url("org-2"))
    );
    assert_eq!(
        sim.handle.provider_base_url("openai", "org-2"),
        Some(sim.handle.openai_base_url("org-2"))
    );
    sim.handle.stop().await;
}

/// With `record_requests` every provider request is kept as it came, body
/// and headers included, and a request sent again as recorded gets the same
/// page: what the scale benchmark's replay (the simulator serving a first
/// sync's pages alone) relies on. Without it, the endpoint says how to turn
/// it on.
#[tokio::test]
async fn recorded_requests_are_kept_as_sent_and_replay_to_the_same_page() {
    use base64::Engine as _;
    let sim = Sim::start_with(7, true).await;
    let (start, end) = (today() - 2 * DAY, today() - DAY);
    let query = format!("start_time={start}&end_time={end}&bucket_width=1h&limit=3&group_by[]=model");
    let (status, page) = sim.openai("org-1", "organization/usage/completions", &query).await;
    assert_eq!(status, 200);
    let url = format!("{}/organization/usage/completions", sim.handle.openai_base_url("org-2"));
    let posted = sim
        .client
        .post(url)
        .bearer_auth("FAKE-not-a-key")
        .body(vec![0u8, 159, 146, 150])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 401);

    let listing = |sim: &Sim| {
        sim.client
            .get(format!("{}/_sim/requests", sim.handle.base_url()))
            .send()
    };
    let recorded: Vec<server::RecordedRequest> = listing(&sim).await.unwrap().json().await.unwrap();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    let (get, post) = (&recorded[0], &recorded[1]);
    assert_eq!(get.method, "GET");
    assert_eq!(
        get.path,
        format!("/openai/org-1/v1/organization/usage/completions?{query}")
    );
    let header =
        |r: &server::RecordedRequest, name: &str| r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    assert_eq!(
        header(get, "authorization"),
        Some(format!("Bearer {}", openai_api_key("org-1")))
    );
    assert_eq!((get.body_base64.as_str(), get.status), ("", 200));
    assert_eq!(
        (post.method.as_str(), post.path.as_str()),
        ("POST", "/openai/org-2/v1/organization/usage/completions")
    );
    let body = base64::engine::general_purpose::STANDARD
        .decode(&post.body_base64)
        .unwrap();
    assert_eq!((body, post.status), (vec![0u8, 159, 146, 150], 401));

    // Sent again as recorded: the same page, and recorded once more.
    let mut again = sim.client.get(format!("{}{}", sim.handle.base_url(), get.path));
    for (name, value) in &get.headers {
        again = again.header(name, value);
    }
    let (status, replayed) = sim.get(again).await;
    assert_eq!((status, replayed), (200, page));
    let recorded: Vec<server::RecordedRequest> = listing(&sim).await.unwrap().json().await.unwrap();
    assert_eq!(recorded.len(), 3);
    sim.handle.stop().await;

    let plain = Sim::start(7).await;
    let refused = listing(&plain).await.unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    assert!(refused.text().await.unwrap().contains("--record-requests"));
    plain.handle.stop().await;
}
