//! End to end: simulated OpenAI and Anthropic orgs -> one-shot `sync` (the real
//! binary) -> ClickHouse -> `usage_daily`, compared with the simulator's ground
//! truth to the last decimal.

use std::str::FromStr;

use chrono::{Duration, Utc};
use rust_decimal::Decimal;
use tokentra_sync::actors::writer::WriterActor;
use tokentra_sync::app::App;
use tokentra_sync::store::{migrations, ClickhouseClient};
use tokentra_sync::sync::window::SyncKind;

use crate::proxy::Proxy;
use crate::support::{self, TestConfig, TruthRow};

const PROVIDERS: [&str; 2] = ["openai", "anthropic"];
const ORGS: [&str; 2] = ["org-1", "org-2"];

/// Per day and model, what `usage_daily` says for one account.
async fn stored(client: &ClickhouseClient, account: &str, since: &str, until: &str) -> Vec<TruthRow> {
    let tsv = support::query_tsv(
        client,
        &format!(
            "SELECT toString(day), model, sum(input_tokens), sum(output_tokens), sum(cached_input_tokens), \
                    sum(cache_creation_tokens), sum(requests), toString(sum(cost)) \
             FROM {{db}}.usage_daily \
             WHERE connection_id = '{account}' AND day >= toDate('{since}') AND day < toDate('{until}') \
             GROUP BY day, model ORDER BY day, model"
        ),
    )
    .await;
    let rows = tsv
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            TruthRow {
                day: f[0].to_string(),
                model: f[1].to_string(),
                input_tokens: f[2].parse().unwrap(),
                output_tokens: f[3].parse().unwrap(),
                cached_input_tokens: f[4].parse().unwrap(),
                cache_creation_tokens: f[5].parse().unwrap(),
                requests: f[6].parse().unwrap(),
                cost: f[7].to_string(),
            }
        })
        .collect();
    canonical(rows)
}

/// Drops all-zero rows and writes money in one canonical form, so equal
/// decimals compare equal ("1.50" == "1.5").
fn canonical(rows: Vec<TruthRow>) -> Vec<TruthRow> {
    let mut out: Vec<TruthRow> = rows
        .into_iter()
        .map(|mut r| {
            r.cost = Decimal::from_str(&r.cost).expect("decimal").normalize().to_string();
            r
        })
        .filter(|r| {
            r.input_tokens != 0
                || r.output_tokens != 0
                || r.cached_input_tokens != 0
                || r.cache_creation_tokens != 0
                || r.requests != 0
                || r.cost != "0"
        })
        .collect();
    out.sort();
    out
}

async fn assert_matches_truth(
    sim: &tokentra_sync::simulator::SimHandle,
    client: &ClickhouseClient,
    since: &str,
    until: &str,
) {
    for provider in PROVIDERS {
        for org in ORGS {
            let truth = canonical(support::truth_days(sim, provider, org, since, until).await);
            assert!(!truth.is_empty(), "the simulator has data for {provider} {org}");
            let got = stored(client, &format!("{provider}-{org}"), since, until).await;
            assert_eq!(got, truth, "usage_daily differs from the truth for {provider} {org}");
        }
    }
}

async fn cancelled_in_runs(client: &ClickhouseClient) -> u64 {
    support::count(client, "SELECT sum(rows_cancelled) FROM {db}.sync_runs").await
}

async fn run_cli_sync(config: &TestConfig, since: &str, until: &str) -> String {
    let path = config.write();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(&path)
        .args(["--since", since, "--until", until])
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "sync failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn window() -> (String, String) {
    let today = Utc::now().date_naive();
    let since = (today - Duration::days(7)).to_string();
    (since, today.to_string())
}

#[actix_rt::test]
async fn a_week_matches_truth_resyncs_add_nothing_and_restatements_converge() {
    let sim = support::start_sim(7, 2).await;
    let accounts = support::sim_accounts(&sim, &ORGS, &PROVIDERS);
    let config = TestConfig::new("e2e", &accounts);
    let client = config.client();
    let (since, until) = window();

    // (a) one sync of 7 days equals the truth exactly.
    let summary = run_cli_sync(&config, &since, &until).await;
    assert!(
        summary.contains("openai-org-1") && summary.contains("success"),
        "{summary}"
    );
    assert_matches_truth(&sim, &client, &since, &until).await;

    // (b) three more syncs: same totals, not one row added.
    let rows_before = support::count(&client, "SELECT count() FROM {db}.usage_records").await;
    for _ in 0..3 {
        run_cli_sync(&config, &since, &until).await;
    }
    let rows_after = support::count(&client, "SELECT count() FROM {db}.usage_records").await;
    assert_eq!(rows_after, rows_before, "re-syncing the same window added rows");
    assert_matches_truth(&sim, &client, &since, &until).await;
    let runs = support::count(&client, "SELECT count() FROM {db}.sync_runs WHERE status = 'success'").await;
    assert_eq!(runs, 4 * 4, "one sync_runs row per account and attempt");

    // (c) a restated bill: totals follow the new truth.
    let cancelled_before = cancelled_in_runs(&client).await;
    assert_eq!(cancelled_before, 0, "nothing was ever cancelled before the restatement");
    let restated_day = (Utc::now().date_naive() - Duration::days(5)).to_string();
    for provider in PROVIDERS {
        support::restate(&sim, provider, "org-1", &restated_day, "1.5").await;
    }
    let truth_before = support::truth_days(&sim, "openai", "org-2", &since, &until).await;
    run_cli_sync(&config, &since, &until).await;
    assert_matches_truth(&sim, &client, &since, &until).await;
    // The restatement cancelled stored rows (counted in sync_runs: the cancel
    // rows themselves may already be merged away with their pairs).
    let cancelled_after = cancelled_in_runs(&client).await;
    assert!(
        cancelled_after > cancelled_before,
        "the restatement must cancel the stored rows it replaced"
    );
    // Untouched orgs kept their numbers.
    let truth_after = support::truth_days(&sim, "openai", "org-2", &since, &until).await;
    assert_eq!(truth_before, truth_after);
    sim.stop().await;
}

#[actix_rt::test]
async fn an_insert_retried_after_a_timeout_converges() {
    let sim = support::start_sim(11, 1).await;
    let accounts = support::sim_accounts(&sim, &["org-1"], &["openai"]);
    // The first INSERT into usage_records lands but its answer is held: the
    // writer times out after 1s and inserts again, so the rows land twice.
    let proxy = Proxy::start(&support::clickhouse_url(), 1).await;
    let config = TestConfig::with_url("retry", &accounts, &proxy.url, "");
    let mut validated = config.validated();
    validated.clickhouse.insert_timeout = std::time::Duration::from_secs(1);
    let client = config.client();
    let app = App::new(validated.clone()).unwrap();
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), validated.writer.clone());
    let sync = app.account_sync(&validated.accounts[0], writer.sink()).unwrap();
    let (since, until) = window();
    let kind = SyncKind::Explicit {
        since: tokentra_sync::cli::parse_time(&since).unwrap(),
        until: Some(tokentra_sync::cli::parse_time(&until).unwrap()),
    };

    let first = sync.run(kind, "test").await.unwrap();
    assert!(first.iter().all(|r| r.succeeded), "{first:?}");
    assert!(proxy.inserts_seen() >= 2, "the held insert was retried");
    let duplicated = support::count(
        &client,
        "SELECT count() FROM (SELECT record_key, version FROM {db}.usage_records WHERE sign = 1 \
         GROUP BY record_key, version HAVING count() > 1)",
    )
    .await;
    assert!(duplicated > 0, "the retried insert landed a second copy");

    // The next sync finds nothing left to repair, and the totals are exact.
    let second = sync.run(kind, "test").await.unwrap();
    assert!(second.iter().all(|r| r.succeeded));
    assert_eq!(
        second.iter().map(|r| r.rows_added + r.rows_cancelled).sum::<u64>(),
        0,
        "{second:?}"
    );
    let truth = canonical(support::truth_days(&sim, "openai", "org-1", &since, &until).await);
    assert_eq!(stored(&client, "openai-org-1", &since, &until).await, truth);
    proxy.stop().await;
    sim.stop().await;
}
