//! Google Vertex AI end to end: simulated orgs (a USD and a EUR billing
//! account) with service-account keys made for this run -> one-shot `sync`
//! (the real binary) -> ClickHouse -> `usage_daily`, compared with the
//! simulator's truth to the last decimal (tokens, gross cost, credits, net),
//! through transient faults, a polled query job and paged results; a restated
//! day is re-read; a re-sync writes nothing; an expired token is refreshed
//! once; a service account without BigQuery roles or with a wrong key fails
//! only its account, naming the fix.

use std::str::FromStr;

use chrono::{Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokentra_sync::simulator::{self, FaultPlan, SimHandle};
use tokentra_sync::store::ClickhouseClient;

use crate::support::{self, TestConfig};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Daily {
    day: String,
    model: String,
    tokens: [i64; 2],
    cost: String,
    credits: String,
}

/// A throwaway RSA key made by openssl for this run (never stored).
fn key_pem() -> String {
    let out = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .expect("openssl is installed");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// A service account of `org` whose key the simulator knows; returns the
/// key file's path (in `dir`) and the email.
fn service_account(sim: &SimHandle, dir: &std::path::Path, org: &str, name: &str) -> (std::path::PathBuf, String) {
    let email = format!(
        "{name}-{:08x}@{org}-vertex.iam.gserviceaccount.com",
        rand::random::<u32>()
    );
    let json = simulator::google_service_account_json(&sim.base_url(), org, &email, "key-1", &key_pem());
    simulator::register_google_service_account(&json).expect("the key registers");
    let path = dir.join(format!("{name}-{org}.json"));
    std::fs::write(&path, json).unwrap();
    (path, email)
}

fn account(sim: &SimHandle, id: &str, org: &str, key: &std::path::Path) -> String {
    format!(
        "[[accounts]]\nid = \"{id}\"\nprovider = \"google_vertex\"\nbase_url = \"{base}\"\nbackfill_days = 7\n\
         billing_table = \"{table}\"\nmonitoring_url = \"{monitoring}\"\npage_size = 5\n\
         [accounts.credentials]\nservice_account_file = \"{key}\"\n\n",
        base = sim.google_vertex_base_url(org),
        table = simulator::google_billing_table(org),
        monitoring = sim.google_vertex_monitoring_url(org),
        key = key.display(),
    )
}

async fn stored(client: &ClickhouseClient, account: &str, since: &str, until: &str) -> Vec<Daily> {
    let tsv = support::query_tsv(
        client,
        &format!(
            "SELECT toString(day), model, sum(input_tokens), sum(output_tokens), toString(sum(cost)), \
                    toString(sum(credits)) \
             FROM {{db}}.usage_daily \
             WHERE connection_id = '{account}' AND day >= toDate('{since}') AND day < toDate('{until}') \
             GROUP BY day, model ORDER BY day, model"
        ),
    )
    .await;
    let mut rows: Vec<Daily> = tsv
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Daily {
                day: f[0].to_string(),
                model: f[1].to_string(),
                tokens: [f[2].parse().unwrap(), f[3].parse().unwrap()],
                cost: support::canonical(f[4]),
                credits: support::canonical(f[5]),
            }
        })
        .filter(|r| r.tokens != [0, 0] || r.cost != "0" || r.credits != "0")
        .collect();
    rows.sort();
    rows
}

fn midnight(d: &str) -> chrono::DateTime<Utc> {
    NaiveDate::parse_from_str(d, "%Y-%m-%d")
        .unwrap()
        .and_time(Default::default())
        .and_utc()
}

fn truth(sim: &SimHandle, org: &str, since: &str, until: &str) -> Vec<Daily> {
    let mut rows: Vec<Daily> = sim
        .truth_with(
            "google_vertex",
            org,
            midnight(since),
            midnight(until),
            &Default::default(),
        )
        .unwrap()
        .into_iter()
        .map(|r| Daily {
            day: r.day.to_string(),
            model: r.model,
            tokens: [r.input_tokens, r.output_tokens],
            cost: support::canonical(&r.cost.to_string()),
            credits: support::canonical(&r.credits.to_string()),
        })
        .collect();
    rows.sort();
    rows
}

fn net(rows: &[Daily]) -> Decimal {
    rows.iter()
        .map(|r| Decimal::from_str(&r.cost).unwrap() - Decimal::from_str(&r.credits).unwrap())
        .sum()
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
    ((today - Duration::days(7)).to_string(), today.to_string())
}

/// Requests the simulator answered whose path passes `path`, with `status` (any if `None`).
fn served(sim: &SimHandle, path: impl Fn(&str) -> bool, status: Option<u16>) -> u64 {
    sim.stats()
        .iter()
        .filter(|e| path(&e.path) && status.is_none_or(|s| s == e.status))
        .map(|e| e.count)
        .sum()
}

#[actix_rt::test]
async fn providers_google_vertex_match_truth_with_credits_restatement_and_empty_resync() {
    let sim = support::start_sim(53, 2).await;
    let keys = tempfile::tempdir().unwrap();
    let mut accounts = String::new();
    for org in ["org-1", "org-2"] {
        let (key, _) = service_account(&sim, keys.path(), org, "sync");
        accounts.push_str(&account(&sim, &format!("vertex-{org}"), org, &key));
    }
    let config = TestConfig::new("vertex", &accounts);
    let client = config.client();
    let (since, until) = window();

    // Transient faults on the way change nothing.
    sim.set_faults(FaultPlan {
        rate_limit: 1,
        server_error: 1,
        truncate: 1,
        retry_after_secs: Some(1),
        ..FaultPlan::default()
    });
    let (code, stdout, stderr) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        sim.pending_faults(),
        FaultPlan {
            retry_after_secs: Some(1),
            ..FaultPlan::default()
        }
    );
    assert_eq!(sim.too_early(), 0, "a Retry-After was not obeyed");
    for org in ["org-1", "org-2"] {
        let want = truth(&sim, org, &since, &until);
        assert!(
            want.iter().any(|r| r.credits != "0"),
            "the simulator has credits for {org}"
        );
        assert!(
            want.iter().any(|r| r.model.is_empty() && r.cost != "0"),
            "a non-model SKU for {org}"
        );
        let got = stored(&client, &format!("vertex-{org}"), &since, &until).await;
        assert_eq!(got, want, "usage_daily differs from the truth for {org}");
        assert!(net(&got) > Decimal::ZERO && net(&got) == net(&want));
    }
    // The EUR account kept its original amounts beside the USD cost.
    let currencies = support::query_tsv(
        &client,
        "SELECT connection_id, currency FROM {db}.usage_records WHERE record_type = 'cost' \
         GROUP BY connection_id, currency ORDER BY connection_id",
    )
    .await;
    assert_eq!(currencies.trim(), "vertex-org-1\tUSD\nvertex-org-2\tEUR");
    // The query job was polled (jobComplete false first) and its results paged.
    let polls_and_pages = served(&sim, |p| p.contains("/queries/"), Some(200));
    let queries = served(&sim, |p| p.ends_with("/queries"), Some(200));
    assert!(queries >= 2, "one jobs.query per account: {queries}");
    assert!(
        polls_and_pages > 2 * 4,
        "results of a 5-row page size span pages: {polls_and_pages}"
    );
    assert!(
        served(&sim, |p| p.ends_with("/timeSeries"), Some(200)) >= 4,
        "Monitoring pages"
    );

    // A restated day is re-read: the stored day follows the export.
    let day = (Utc::now().date_naive() - Duration::days(3)).to_string();
    let before = stored(&client, "vertex-org-1", &day, &until).await;
    support::restate(&sim, "google_vertex", "org-1", &day, "1.5").await;
    let (code, stdout, stderr) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let after = stored(&client, "vertex-org-1", &since, &until).await;
    assert_eq!(after, truth(&sim, "org-1", &since, &until));
    assert_ne!(
        stored(&client, "vertex-org-1", &day, &until).await,
        before,
        "the restatement changed the day"
    );

    // A re-sync writes nothing. (Live records by `sum(sign)`: a background
    // merge may collapse the restatement's cancel pairs meanwhile.)
    let live = "SELECT sum(sign) FROM {db}.usage_records";
    let written = "SELECT sum(rows_written) + sum(rows_cancelled) FROM {db}.sync_runs";
    let rows_before = support::count(&client, live).await;
    let written_before = support::count(&client, written).await;
    let (code, stdout, _) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(support::count(&client, live).await, rows_before, "{stdout}");
    assert_eq!(
        support::count(&client, written).await,
        written_before,
        "the re-sync wrote rows"
    );
    sim.stop().await;
}

#[actix_rt::test]
async fn providers_google_vertex_missing_roles_and_wrong_keys_fail_only_their_account_naming_the_fix() {
    let sim = support::start_sim(59, 1).await;
    let keys = tempfile::tempdir().unwrap();
    let (good, _) = service_account(&sim, keys.path(), "org-1", "sync");
    let (no_roles, _) = service_account(&sim, keys.path(), "org-1", "no-bigquery");
    // The key file holds another key than the one Google (the simulator) knows.
    let (forged, email) = service_account(&sim, keys.path(), "org-1", "forged");
    let other_key = simulator::google_service_account_json(&sim.base_url(), "org-1", &email, "key-1", &key_pem());
    std::fs::write(&forged, other_key).unwrap();
    let mut accounts = account(&sim, "vertex-good", "org-1", &good);
    accounts.push_str(&account(&sim, "vertex-no-roles", "org-1", &no_roles));
    accounts.push_str(&account(&sim, "vertex-forged", "org-1", &forged));
    let config = TestConfig::new("vertex_auth", &accounts);
    let (since, until) = window();
    let (code, stdout, stderr) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("a summary line for {id}: {stdout}"))
            .to_string()
    };
    assert!(line("vertex-good").contains("success"), "{stdout}");
    assert!(line("vertex-no-roles").contains("failed"), "{stdout}");
    assert!(
        stdout.contains("roles/bigquery.jobUser") && stdout.contains("roles/bigquery.dataViewer"),
        "the missing roles are named: {stdout}"
    );
    assert!(line("vertex-forged").contains("failed"), "{stdout}");
    assert!(
        stdout.contains("Invalid JWT Signature") && stdout.contains("Create new key"),
        "a refused key names the fix: {stdout}"
    );
    assert!(
        !stdout.contains("PRIVATE KEY") && !stderr.contains("PRIVATE KEY"),
        "a key leaked"
    );
    let client = config.client();
    let runs = support::query_tsv(
        &client,
        "SELECT connection_id, status, error_kind FROM {db}.sync_runs ORDER BY connection_id LIMIT 1 BY connection_id",
    )
    .await;
    assert_eq!(
        runs.trim(),
        "vertex-forged\tfailed\tauth\nvertex-good\tsuccess\t\nvertex-no-roles\tfailed\tauth",
        "{runs}"
    );
    let got = stored(&client, "vertex-good", &since, &until).await;
    assert_eq!(got, truth(&sim, "org-1", &since, &until));
    sim.stop().await;
}

#[actix_rt::test]
async fn providers_google_vertex_an_expired_token_is_refreshed_once() {
    use chrono::DurationRound;
    use tokentra_sync::providers::{build_adapter, BuildContext, Provider, RetryPolicy, TimeWindow};
    let sim = support::start_sim(61, 1).await;
    let keys = tempfile::tempdir().unwrap();
    let (key, _) = service_account(&sim, keys.path(), "org-1", "sync");
    let config = TestConfig::new("vertex_expiry", &account(&sim, "vertex-expiry", "org-1", &key));
    let validated = config.validated();
    let context = BuildContext {
        retry: RetryPolicy {
            base_delay: std::time::Duration::from_millis(10),
            ..RetryPolicy::default()
        },
    };
    let adapter = build_adapter(
        validated.account("vertex-expiry").unwrap().view(),
        Provider::GoogleVertex,
        &context,
    )
    .unwrap();
    let tokens = adapter.endpoints()[1];
    assert_eq!(tokens.endpoint, "token_count");
    let end = Utc::now().duration_trunc(Duration::hours(1)).unwrap();
    let window = TimeWindow::new(end - Duration::hours(6), end);
    let grants = |sim: &SimHandle, status| served(sim, |p| p.ends_with("/token"), status);
    assert!(!adapter.fetch(&tokens, window).await.unwrap().records.is_empty());
    assert!(!adapter.fetch(&tokens, window).await.unwrap().records.is_empty());
    assert_eq!(grants(&sim, None), 1, "the token is cached");
    // Revoked once: one new token, and the fetch succeeds.
    sim.set_faults(FaultPlan {
        expired: 1,
        ..FaultPlan::default()
    });
    assert!(adapter.fetch(&tokens, window).await.is_ok());
    assert_eq!(grants(&sim, Some(200)), 2);
    // Refused again (the refresh itself is refused): an auth error, not a loop.
    sim.set_faults(FaultPlan {
        expired: 2,
        ..FaultPlan::default()
    });
    let err = adapter.fetch(&tokens, window).await.unwrap_err();
    assert_eq!(err.kind().as_str(), "auth", "{err}");
    assert_eq!(grants(&sim, None), 3, "exactly one refresh");
    assert_eq!(grants(&sim, Some(200)), 2);
    sim.stop().await;
}
