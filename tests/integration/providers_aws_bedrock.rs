//! AWS Bedrock end to end. Two backends:
//!
//! - The bundled simulator, which speaks Cost Explorer (JSON 1.1), CloudWatch
//!   (RPC v2 CBOR) and STS (query/XML) as the SDK does: one-shot `sync` (the
//!   real binary) of an IAM-key account and an assume-role account into
//!   ClickHouse, compared with the simulator's truth to the last decimal
//!   (tokens, cost, credits, the `bedrock-general` bucket, net cost), with
//!   transient faults on the way, a restated day, a re-sync that writes
//!   nothing, expired role credentials refreshed once, and a Bedrock API key
//!   failing only its own account with the fix named.
//! - moto's server mode (a real AWS API emulator, `python3 -m moto.server`):
//!   Cost Explorer results preloaded through moto's queue, paged with
//!   identical parameters; STS AssumeRole; CloudWatch through a test-only
//!   bridge that translates the SDK's CBOR to the JSON protocol moto speaks.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{Duration as Days, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokentra_sync::simulator::{self, FaultPlan, SimHandle};
use tokentra_sync::store::ClickhouseClient;

use crate::support::{self, TestConfig};

/// One `usage_daily` group as the tests compare it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Daily {
    day: String,
    model: String,
    unit: String,
    tokens: [i64; 5],
    quantity: String,
    cost: String,
    credits: String,
}

fn settle(rows: impl IntoIterator<Item = Daily>) -> Vec<Daily> {
    let mut out: Vec<Daily> = rows
        .into_iter()
        .filter(|r| r.tokens != [0; 5] || r.quantity != "0" || r.cost != "0" || r.credits != "0")
        .collect();
    out.sort();
    out
}

async fn stored(client: &ClickhouseClient, account: &str, since: &str, until: &str) -> Vec<Daily> {
    let tsv = support::query_tsv(
        client,
        &format!(
            "SELECT toString(day), model, unit, sum(input_tokens), sum(output_tokens), sum(cached_input_tokens), \
                    sum(cache_creation_tokens), sum(requests), toString(sum(quantity)), toString(sum(cost)), \
                    toString(sum(credits)) \
             FROM {{db}}.usage_daily \
             WHERE connection_id = '{account}' AND day >= toDate('{since}') AND day < toDate('{until}') \
             GROUP BY day, model, unit ORDER BY day, model, unit"
        ),
    )
    .await;
    settle(tsv.lines().map(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        Daily {
            day: f[0].to_string(),
            model: f[1].to_string(),
            unit: f[2].to_string(),
            tokens: [3, 4, 5, 6, 7].map(|i| f[i].parse().unwrap()),
            quantity: support::canonical(f[8]),
            cost: support::canonical(f[9]),
            credits: support::canonical(f[10]),
        }
    }))
}

fn truth(sim: &SimHandle, org: &str, since: &str, until: &str) -> Vec<Daily> {
    let midnight = |d: &str| {
        NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_time(Default::default())
            .and_utc()
    };
    let rows = sim
        .truth_with(
            "aws_bedrock",
            org,
            midnight(since),
            midnight(until),
            &Default::default(),
        )
        .unwrap();
    settle(rows.into_iter().map(|r| Daily {
        day: r.day.to_string(),
        model: r.model,
        unit: r.unit,
        tokens: [
            r.input_tokens,
            r.output_tokens,
            r.cached_input_tokens,
            r.cache_creation_tokens,
            r.requests,
        ],
        quantity: support::canonical(&r.quantity.to_string()),
        cost: support::canonical(&r.cost.to_string()),
        credits: support::canonical(&r.credits.to_string()),
    }))
}

fn sum(rows: &[Daily], pick: fn(&Daily) -> &str) -> Decimal {
    rows.iter().map(|r| Decimal::from_str(pick(r)).unwrap()).sum()
}

/// `[[accounts]]` of a simulated Bedrock org; `role` assumes the org's role.
fn account(sim: &SimHandle, id: &str, org: &str, key_id: &str, role: bool) -> String {
    let root = format!("{}/aws_bedrock/{org}", sim.base_url());
    let role = if role {
        format!(
            "role_arn = \"{}\"\nexternal_id = \"{}\"\n",
            simulator::bedrock_role_arn(org),
            simulator::bedrock_external_id(org)
        )
    } else {
        String::new()
    };
    format!(
        "[[accounts]]\nid = \"{id}\"\nprovider = \"aws_bedrock\"\nbase_url = \"{root}/ce\"\nbackfill_days = 7\n\
         cloudwatch_url = \"{root}/monitoring\"\nsts_url = \"{root}/sts\"\n\
         [accounts.credentials]\naccess_key_id = \"{key_id}\"\nsecret_access_key = \"{secret}\"\nregion = \"us-east-1\"\n{role}\n",
        secret = simulator::bedrock_secret_access_key(org),
    )
}

async fn run_cli_sync(config: &TestConfig, since: &str, until: &str) -> (Option<i32>, String, String) {
    let path = config.write();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(&path)
        .args(["--since", since, "--until", until])
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn window() -> (String, String) {
    let today = Utc::now().date_naive();
    ((today - Days::days(7)).to_string(), today.to_string())
}

fn requests_to(sim: &SimHandle, part: &str, status: u16) -> u64 {
    sim.stats()
        .iter()
        .filter(|e| e.path.contains(part) && e.status == status)
        .map(|e| e.count)
        .sum()
}

#[actix_rt::test]
async fn providers_aws_bedrock_simulated_accounts_match_truth_with_credits_restatements_and_quiet_resyncs() {
    let sim = support::start_sim(41, 2).await;
    let mut accounts = account(
        &sim,
        "bedrock-org-1",
        "org-1",
        &simulator::bedrock_access_key_id("org-1"),
        false,
    );
    accounts.push_str(&account(
        &sim,
        "bedrock-org-2",
        "org-2",
        &simulator::bedrock_access_key_id("org-2"),
        true,
    ));
    let config = TestConfig::new("aws_bedrock", &accounts);
    let client = config.client();
    let (since, until) = window();

    // Transient faults on the way change nothing.
    sim.set_faults(FaultPlan {
        rate_limit: 1,
        server_error: 1,
        truncate: 2,
        retry_after_secs: Some(1),
        ..FaultPlan::default()
    });
    let (code, stdout, stderr) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let pending = sim.pending_faults();
    assert_eq!(pending.rate_limit + pending.server_error + pending.truncate, 0);
    for (org, id) in [("org-1", "bedrock-org-1"), ("org-2", "bedrock-org-2")] {
        let want = truth(&sim, org, &since, &until);
        assert!(
            want.iter().any(|r| r.credits != "0"),
            "the simulator has credits for {org}"
        );
        let got = stored(&client, id, &since, &until).await;
        assert_eq!(got, want, "usage_daily differs from the truth for {org}");
        // Net cost after credits, exactly; the service-wide credits bucket.
        let net = |rows: &[Daily]| sum(rows, |r| &r.cost) - sum(rows, |r| &r.credits);
        assert_eq!(net(&got), net(&want));
        let general = |rows: &[Daily]| {
            sum(
                &rows
                    .iter()
                    .filter(|r| r.model == "bedrock-general")
                    .cloned()
                    .collect::<Vec<_>>(),
                |r| &r.credits,
            )
        };
        assert!(general(&want) > Decimal::ZERO);
        assert_eq!(general(&got), general(&want));
    }
    // Paging ran with identical parameters (the simulator refuses anything else),
    // the role was assumed, and the Marketplace SaaS row of another product is not in.
    assert!(requests_to(&sim, "/ce", 200) >= 6, "{:?}", sim.stats());
    assert_eq!(requests_to(&sim, "/ce", 400), 0, "{:?}", sim.stats());
    assert!(requests_to(&sim, "org-2/sts", 200) >= 1);
    assert!(
        requests_to(&sim, "/operation/GetMetricData", 200) >= 2,
        "CloudWatch paged"
    );
    let acme = support::count(
        &client,
        "SELECT count() FROM {db}.usage_records WHERE service LIKE 'Acme%'",
    )
    .await;
    assert_eq!(acme, 0);

    // A restated day: the next sync brings usage_daily to the new truth.
    let day = (Utc::now().date_naive() - Days::days(3)).to_string();
    support::restate(&sim, "aws_bedrock", "org-1", &day, "1.5").await;
    let (code, stdout, _) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}");
    let want = truth(&sim, "org-1", &since, &until);
    assert_eq!(stored(&client, "bedrock-org-1", &since, &until).await, want);

    // A re-sync writes nothing.
    let written = "SELECT sum(rows_written) + sum(rows_cancelled) FROM {db}.sync_runs";
    let before = support::count(&client, written).await;
    let rows_before = support::count(&client, "SELECT count() FROM {db}.usage_records").await;
    let (code, stdout, _) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(support::count(&client, written).await, before, "the re-sync wrote rows");
    assert_eq!(
        support::count(&client, "SELECT count() FROM {db}.usage_records").await,
        rows_before
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn providers_aws_bedrock_expired_role_credentials_are_refreshed_once_and_a_bedrock_api_key_fails_alone() {
    let sim = support::start_sim(43, 2).await;
    let absk = "ABSK-FAKE-TEST-bedrock-api-key-0123456789";
    let mut accounts = account(
        &sim,
        "bedrock-role",
        "org-1",
        &simulator::bedrock_access_key_id("org-1"),
        true,
    );
    accounts.push_str(&account(&sim, "bedrock-absk", "org-2", absk, false));
    let config = TestConfig::new("aws_bedrock_auth", &accounts);
    let (since, until) = window();
    // The first request (AssumeRole) goes through; the next one, signed
    // with the role's credentials, is answered "expired".
    sim.set_faults(FaultPlan {
        slow: 1,
        slow_ms: Some(1),
        expired: 1,
        ..FaultPlan::default()
    });
    let (code, stdout, stderr) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert_eq!(sim.pending_faults().expired, 0);
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("a summary line for {id}: {stdout}"))
            .to_string()
    };
    assert!(line("bedrock-role").contains("success"), "{stdout}");
    assert!(line("bedrock-absk").contains("failed"), "{stdout}");
    assert!(
        stdout.contains("account 'bedrock-absk'")
            && stdout.contains("Bedrock API key")
            && stdout.contains("IAM access key")
            && stdout.contains("credentials.access_key_id"),
        "{stdout}"
    );
    assert!(!stdout.contains(absk) && !stderr.contains(absk), "the key leaked");
    // The role was assumed again after the expired answer: two AssumeRole calls.
    assert_eq!(requests_to(&sim, "org-1/sts", 200), 2, "{:?}", sim.stats());
    assert_eq!(
        requests_to(&sim, "org-2/", 200) + requests_to(&sim, "org-2/", 400),
        0,
        "no request with the API key"
    );
    let client = config.client();
    let got = stored(&client, "bedrock-role", &since, &until).await;
    assert_eq!(got, truth(&sim, "org-1", &since, &until));
    let runs = support::query_tsv(
        &client,
        "SELECT connection_id, status, error_kind FROM {db}.sync_runs ORDER BY connection_id LIMIT 1 BY connection_id",
    )
    .await;
    assert_eq!(
        runs.trim_end_matches('\n'),
        "bedrock-absk\tfailed\tauth\nbedrock-role\tsuccess\t",
        "{runs}"
    );

    // A static key answered "expired" cannot be refreshed: its account fails as auth.
    let static_only = account(
        &sim,
        "bedrock-static",
        "org-2",
        &simulator::bedrock_access_key_id("org-2"),
        false,
    );
    let config = TestConfig::new("aws_bedrock_static", &static_only);
    sim.set_faults(FaultPlan {
        expired: 1,
        ..FaultPlan::default()
    });
    let (code, stdout, _) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("IAM access key"), "{stdout}");
    sim.stop().await;
}

// ---------------------------------------------------------------- moto ----

/// moto's server on a free port, stopped on drop.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Cost Explorer that answers 500 through every retry, and one that never
/// answers, fail as `provider_5xx` and `timeout`: the AWS SDK must not take
/// a request that waits longer than its five-second stall grace (backoff, a
/// request timeout) for a stalled upload and hide the platform's error as
/// `malformed`. The waits here are longer than that grace on purpose.
#[actix_rt::test]
async fn providers_aws_bedrock_a_failing_or_hanging_api_fails_with_its_own_kind() {
    use tokentra_sync::actors::writer::WriterActor;
    use tokentra_sync::app::App;
    use tokentra_sync::providers::FailureKind;
    use tokentra_sync::simulator::OrgFault;
    use tokentra_sync::sync::window::SyncKind;
    let sim = support::start_sim(47, 2).await;
    let mut accounts = account(
        &sim,
        "bedrock-500",
        "org-1",
        &simulator::bedrock_access_key_id("org-1"),
        false,
    );
    accounts.push_str(&account(
        &sim,
        "bedrock-hang",
        "org-2",
        &simulator::bedrock_access_key_id("org-2"),
        false,
    ));
    sim.set_org_faults(
        [
            ("org-1".to_string(), OrgFault::ServerError),
            ("org-2".to_string(), OrgFault::Hang),
        ]
        .into_iter()
        .collect(),
    );
    let config = TestConfig::new("aws_bedrock_kinds", &accounts).validated();
    let mut app = App::new(config.clone()).unwrap();
    app.retry.max_attempts = 2;
    app.retry.base_delay = Duration::from_secs(7);
    app.retry.max_delay = Duration::from_secs(7);
    app.retry.request_timeout = Duration::from_secs(3);
    tokentra_sync::store::migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), config.writer.clone());
    let runs = config.accounts.iter().map(|account| {
        let sync = app.account_sync(account, writer.sink()).unwrap();
        async move {
            (
                account.id.clone(),
                sync.run(SyncKind::Incremental, "test").await.unwrap(),
            )
        }
    });
    for (id, reports) in futures::future::join_all(runs).await {
        let report = &reports[0];
        let wanted = if id == "bedrock-500" {
            FailureKind::ProviderServer
        } else {
            FailureKind::Timeout
        };
        assert!(!report.succeeded, "{id}: {report:?}");
        assert_eq!(report.error_kind, Some(wanted), "{id}: {:?}", report.errors);
    }
    sim.stop().await;
}

async fn start_moto() -> Moto {
    let port = support::free_port();
    let child = std::process::Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto is installed (scripts/test.sh installs moto[server])");
    let moto = Moto {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let probe = format!("{}/moto-api/data.json", moto.url);
    support::eventually("moto to answer", Duration::from_secs(60), || {
        let probe = probe.clone();
        async move {
            match reqwest::get(&probe).await {
                Ok(r) if r.status().is_success() => Some(()),
                _ => None,
            }
        }
    })
    .await;
    moto
}

/// What the bridge saw of each CloudWatch call: operation, key id, whether
/// a session token was sent.
type Seen = Arc<Mutex<Vec<(String, String, bool)>>>;

/// Test-only bridge: the SDK's CloudWatch RPC v2 CBOR in, moto's JSON 1.0
/// protocol out (the shapes are the same; CBOR tag 1 timestamps are epoch
/// seconds in JSON).
async fn start_bridge(moto: &str) -> (String, Seen, actix_web::dev::ServerHandle) {
    use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
    let seen: Seen = Arc::default();
    let (moto, log) = (moto.to_string(), seen.clone());
    let server = HttpServer::new(move || {
        let (moto, log) = (moto.clone(), log.clone());
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let (moto, log) = (moto.clone(), log.clone());
            async move {
                let operation = req.path().rsplit('/').next().unwrap_or_default().to_string();
                let header = |name: &str| {
                    req.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                };
                let authorization = header("authorization");
                let key = authorization
                    .split("Credential=")
                    .nth(1)
                    .and_then(|c| c.split('/').next())
                    .unwrap_or_default()
                    .to_string();
                log.lock()
                    .unwrap()
                    .push((operation.clone(), key, !header("x-amz-security-token").is_empty()));
                let json = simulator::aws_cbor::to_json(&body).expect("the SDK sends valid CBOR");
                let answer = reqwest::Client::new()
                    .post(format!("{moto}/"))
                    .header("content-type", "application/x-amz-json-1.0")
                    .header("x-amz-target", format!("GraniteServiceVersion20100801.{operation}"))
                    .header("authorization", authorization)
                    .body(json.to_string())
                    .send()
                    .await
                    .expect("moto answers");
                let status = answer.status().as_u16();
                let text = answer.text().await.unwrap();
                if status != 200 {
                    return HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body(text);
                }
                let value: serde_json::Value = serde_json::from_str(&text).expect("moto answers JSON");
                HttpResponse::Ok()
                    .content_type("application/cbor")
                    .insert_header(("smithy-protocol", "rpc-v2-cbor"))
                    .body(simulator::aws_cbor::from_json(&value))
            }
        }))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    (format!("http://127.0.0.1:{port}"), seen, handle)
}

/// Seeds moto's CloudWatch with hourly Bedrock datapoints (JSON protocol).
async fn put_metrics(moto: &str, points: &[(&str, &str, i64, f64)]) {
    let data: Vec<serde_json::Value> = points
        .iter()
        .map(|(model, metric, at, value)| {
            serde_json::json!({"MetricName": metric, "Dimensions": [{"Name": "ModelId", "Value": model}],
                               "Timestamp": at, "Value": value, "Unit": "Count"})
        })
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{moto}/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", "GraniteServiceVersion20100801.PutMetricData")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAFAKEMOTO/20261101/us-east-1/monitoring/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(serde_json::json!({"Namespace": "AWS/Bedrock", "MetricData": data}).to_string())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
}

fn ce_result(day: &str, groups: serde_json::Value, next: Option<&str>) -> serde_json::Value {
    let end = (NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap() + Days::days(1)).to_string();
    let mut result = serde_json::json!({
        "ResultsByTime": [{"TimePeriod": {"Start": day, "End": end}, "Total": {}, "Groups": groups, "Estimated": false}],
        "DimensionValueAttributes": [],
        "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "DIMENSION", "Key": "USAGE_TYPE"}]
    });
    if let Some(next) = next {
        result["NextPageToken"] = next.into();
    }
    result
}

#[actix_rt::test]
async fn providers_aws_bedrock_against_moto_pages_cost_explorer_assumes_the_role_and_reads_cloudwatch() {
    use tokentra_sync::config::Secret;
    use tokentra_sync::normalize::schema::{Granularity, RecordType};
    use tokentra_sync::providers::{AccountView, BuildContext, EndpointSpec, Provider, TimeWindow};

    let moto = start_moto().await;
    let (bridge, seen, bridge_handle) = start_bridge(&moto.url).await;
    let day = |d: &str| {
        NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_time(Default::default())
            .and_utc()
    };
    // Cost Explorer: the usage query takes two pages (a queue entry each; the
    // second request differs only by its NextPageToken), the credit query one.
    let nova = |amount: &str| {
        serde_json::json!([{"Keys": ["Amazon Bedrock", "USE1-NovaLite-input-tokens"],
            "Metrics": {"UnblendedCost": {"Amount": amount, "Unit": "USD"}, "UsageQuantity": {"Amount": "12", "Unit": "N/A"}}}])
    };
    let credit = serde_json::json!([{"Keys": ["Amazon Bedrock", "NoUsageType"],
        "Metrics": {"UnblendedCost": {"Amount": "-2.000000001", "Unit": "USD"}, "UsageQuantity": {"Amount": "0", "Unit": "N/A"}}}]);
    let queue = serde_json::json!({"results": [
        ce_result("2026-11-01", nova("1.100000001"), Some("moto-page-2")),
        ce_result("2026-11-02", nova("0.25"), None),
        ce_result("2026-11-01", credit, None),
    ]});
    let response = reqwest::Client::new()
        .post(format!("{}/moto-api/static/ce/cost-and-usage-results", moto.url))
        .json(&queue)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let t0 = day("2026-11-01").timestamp();
    put_metrics(
        &moto.url,
        &[
            ("amazon.nova-lite-v1:0", "InputTokenCount", t0 + 600, 1000.0),
            ("amazon.nova-lite-v1:0", "InputTokenCount", t0 + 1200, 234.0),
            ("amazon.nova-lite-v1:0", "OutputTokenCount", t0 + 600, 77.0),
            ("amazon.nova-lite-v1:0", "Invocations", t0 + 3_700, 3.0),
        ],
    )
    .await;

    let creds: BTreeMap<String, Secret> = [
        ("access_key_id", "AKIAFAKEMOTOKEY00001"),
        ("secret_access_key", "fakeMotoSecret/0123456789abcdefghijklmnop"),
        ("region", "us-east-1"),
        ("role_arn", "arn:aws:iam::123456789012:role/tokentra-read"),
        ("external_id", "moto-external"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), Secret::new(*v)))
    .collect();
    let settings = BTreeMap::from([
        ("cloudwatch_url".to_string(), bridge.clone()),
        ("sts_url".to_string(), moto.url.clone()),
    ]);
    let view = AccountView {
        id: "bedrock-moto",
        base_url: &moto.url,
        credentials: &creds,
        settings: &settings,
    };
    let adapter =
        tokentra_sync::providers::build_adapter(view, Provider::AwsBedrock, &BuildContext::default()).unwrap();
    let window = TimeWindow::new(day("2026-11-01"), day("2026-11-03"));
    let specs = adapter.endpoints();
    let spec = |t: RecordType| *specs.iter().find(|s| s.record_type == t).unwrap();

    let costs = adapter.fetch(&spec(RecordType::Cost), window).await.unwrap();
    let amounts: Vec<String> = costs.records.iter().map(|r| r.measures.cost.to_string()).collect();
    assert_eq!(amounts, ["1.100000001", "0.25"], "both pages, exactly");
    assert_eq!(costs.covered_buckets.len(), 2);
    let credits = adapter.fetch(&spec(RecordType::Credit), window).await.unwrap();
    assert_eq!(credits.records.len(), 1);
    assert_eq!(credits.records[0].dims.model_raw, "bedrock-general");
    assert_eq!(credits.records[0].measures.credits.to_string(), "2.000000001");

    let usage: EndpointSpec = spec(RecordType::Usage);
    assert_eq!(usage.granularity, Granularity::Hour);
    let metrics = adapter.fetch(&usage, window).await.unwrap();
    let mut by_metric: BTreeMap<String, i64> = BTreeMap::new();
    for r in &metrics.records {
        assert_eq!(r.dims.model_raw, "amazon.nova-lite-v1:0");
        let m = &r.measures;
        *by_metric.entry("input".into()).or_default() += m.input_tokens;
        *by_metric.entry("output".into()).or_default() += m.output_tokens;
        *by_metric.entry("requests".into()).or_default() += m.requests;
    }
    assert_eq!(by_metric["input"], 1234, "{:#?}", metrics.records);
    assert_eq!(by_metric["output"], 77);
    assert_eq!(by_metric["requests"], 3);
    assert_eq!(
        metrics.covered_buckets.len(),
        48,
        "every hour of the window is in scope"
    );

    // CloudWatch was called with the role's temporary credentials (moto hands out ASIA... keys).
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().any(|(op, _, _)| op == "ListMetrics"), "{seen:?}");
    assert!(seen.iter().any(|(op, _, _)| op == "GetMetricData"), "{seen:?}");
    assert!(
        seen.iter().all(|(_, key, token)| key.starts_with("ASIA") && *token),
        "{seen:?}"
    );
    // 3 Cost Explorer pages + AssumeRole + ListMetrics + GetMetricData.
    let (requests, retries) = adapter.http_stats().snapshot();
    assert_eq!((requests, retries), (6, 0));
    bridge_handle.stop(true).await;
}
