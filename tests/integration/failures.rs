//! Provider failures: retried when transient, fatal for one account only when
//! not, and never recorded as a finished window.

use std::time::Duration;

use tokentra_sync::actors::writer::WriterActor;
use tokentra_sync::app::App;
use tokentra_sync::providers::RetryPolicy;
use tokentra_sync::store::migrations;
use tokentra_sync::store::sink::RowSink;
use tokentra_sync::sync::window::SyncKind;
use tokentra_sync::sync::AccountSync;

use crate::support::{self, TestConfig};

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        // More than the 6 faults one test injects, all of which may hit the
        // same request.
        max_attempts: 8,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..RetryPolicy::default()
    }
}

async fn account_sync(config: &TestConfig, index: usize) -> AccountSync {
    let validated = config.validated();
    let mut app = App::new(validated.clone()).unwrap();
    app.retry = fast_retries();
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), validated.writer.clone());
    app.account_sync(&validated.accounts[index], writer.sink()).unwrap()
}

async fn set_faults(sim: &tokentra_sync::simulator::SimHandle, plan: serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&plan)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

fn last_days(days: i64) -> (String, String, SyncKind) {
    let today = chrono::Utc::now().date_naive();
    let since = today - chrono::Duration::days(days);
    let kind = SyncKind::Explicit {
        since: since.and_hms_opt(0, 0, 0).unwrap().and_utc(),
        until: Some(today.and_hms_opt(0, 0, 0).unwrap().and_utc()),
    };
    (since.to_string(), today.to_string(), kind)
}

#[actix_rt::test]
async fn rate_limits_server_errors_and_cut_bodies_are_retried_without_changing_a_cent() {
    let sim = support::start_sim(21, 1).await;
    let config = TestConfig::new("faults", &support::sim_accounts(&sim, &["org-1"], &["openai"]));
    let sync = account_sync(&config, 0).await;
    let (since, until, kind) = last_days(3);
    set_faults(
        &sim,
        serde_json::json!({"rate_limit": 2, "server_error": 2, "truncate": 2, "retry_after_secs": 1}),
    )
    .await;

    let reports = sync.run(kind, "test").await.unwrap();
    assert!(reports.iter().all(|r| r.succeeded), "{reports:?}");
    let retries: u64 = reports.iter().map(|r| r.retries).sum();
    assert_eq!(retries, 6, "each injected fault costs exactly one retry");
    sync.writer.flush().await.unwrap();
    let recorded = support::count(&config.client(), "SELECT sum(retries) FROM {db}.sync_runs").await;
    assert_eq!(recorded, 6);
    let metrics = tokentra_sync::metrics::render();
    assert!(
        metrics.contains("tokentra_sync_rate_limit_waits_total{account=\"openai-org-1\",provider=\"openai\"} 2"),
        "{metrics}"
    );

    let got = support::query_tsv(
        &config.client(),
        &format!(
            "SELECT toString(sum(cost)), sum(input_tokens) FROM {{db}}.usage_daily \
             WHERE day >= toDate('{since}') AND day < toDate('{until}')"
        ),
    )
    .await;
    let truth = support::truth_days(&sim, "openai", "org-1", &since, &until).await;
    let cost: rust_decimal::Decimal = truth
        .iter()
        .map(|r| r.cost.parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    let tokens: i64 = truth.iter().map(|r| r.input_tokens).sum();
    let fields: Vec<&str> = got.trim().split('\t').collect();
    assert_eq!(fields[0].parse::<rust_decimal::Decimal>().unwrap(), cost);
    assert_eq!(fields[1].parse::<i64>().unwrap(), tokens);
    sim.stop().await;
}

#[actix_rt::test]
async fn a_failing_endpoint_keeps_the_watermark_and_the_next_sync_completes_the_window() {
    let sim = support::start_sim(22, 1).await;
    let config = TestConfig::new("partial", &support::sim_accounts(&sim, &["org-1"], &["openai"]));
    let sync = account_sync(&config, 0).await;
    let client = config.client();
    // Enough 500s to exhaust the attempts of every endpoint that runs at
    // once with the first (completions): 3 x 8 attempts.
    set_faults(&sim, serde_json::json!({"server_error": 30})).await;
    let reports = sync.run(SyncKind::Incremental, "test").await.unwrap();
    let first = &reports[0];
    assert!(!first.succeeded, "{first:?}");
    assert_eq!(reports.len(), 1, "the backfill stops at the first failed chunk");
    assert!(
        first
            .errors
            .iter()
            .any(|e| e.contains("openai-org-1") && e.contains("completions") && e.contains("HTTP 500")),
        "{:?}",
        first.errors
    );
    let state_rows = support::count(&client, "SELECT count() FROM {db}.sync_state").await;
    assert_eq!(state_rows, 0, "a failed window is never recorded as done");
    sync.writer.flush().await.unwrap();
    let failed_runs = support::count(
        &client,
        "SELECT count() FROM {db}.sync_runs WHERE status = 'failed' AND error != ''",
    )
    .await;
    assert_eq!(failed_runs, 1);

    // The faults are used up: the next sync finishes the backfill.
    let reports = sync.run(SyncKind::Incremental, "test").await.unwrap();
    assert!(reports.iter().all(|r| r.succeeded), "{reports:?}");
    let current = support::count(
        &client,
        "SELECT count() FROM (SELECT argMax(watermark, updated_at) AS w FROM {db}.sync_state GROUP BY connection_id) \
         WHERE w > now() - 3600",
    )
    .await;
    assert_eq!(current, 1);
    sim.stop().await;
}

#[actix_rt::test]
async fn a_rejected_key_fails_its_account_with_a_fix_and_the_others_sync() {
    let sim = support::start_sim(23, 1).await;
    let mut accounts = support::sim_accounts(&sim, &["org-1"], &["openai"]);
    accounts.push_str(&format!(
        "[[accounts]]\nid = \"anthropic-wrong\"\nprovider = \"anthropic\"\nbase_url = \"{}\"\nbackfill_days = 2\n\
         [accounts.credentials]\napi_key = \"sk-ant-api03-FAKE-not-an-admin-key\"\n",
        sim.anthropic_base_url("org-1")
    ));
    let config = TestConfig::new("auth", &accounts);
    let path = config.write();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(&path)
        .env("TOKENTRA_LOG", "error")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let failed = stdout
        .lines()
        .find(|l| l.starts_with("anthropic-wrong"))
        .expect("a summary line");
    assert!(failed.contains("failed"), "{stdout}");
    assert!(
        stdout.contains("account 'anthropic-wrong'") && stdout.contains("Admin API key"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("FAKE-not-an-admin-key") && !stderr.contains("FAKE-not-an-admin-key"),
        "the key leaked"
    );
    let ok = stdout.lines().find(|l| l.starts_with("openai-org-1")).unwrap();
    assert!(ok.contains("success"), "{stdout}");
    let client = config.client();
    let watermarks = support::query_tsv(&client, "SELECT DISTINCT connection_id FROM {db}.sync_state").await;
    assert_eq!(watermarks.trim(), "openai-org-1");
    // The typed reason and the connection status are recorded per attempt.
    let runs = support::query_tsv(
        &client,
        "SELECT connection_id, status, error_kind, connection_status FROM {db}.sync_runs \
         ORDER BY connection_id, started_at LIMIT 1 BY connection_id",
    )
    .await;
    assert_eq!(
        runs.trim(),
        "anthropic-wrong\tfailed\tauth\tdisconnected\nopenai-org-1\tsuccess\t\tconnected",
        "{runs}"
    );
    // `status` says the same, names the reason, and exits 1 for the broken account.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["status", "-c"])
        .arg(&path)
        .env("TOKENTRA_LOG", "error")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let wrong = stdout.lines().find(|l| l.starts_with("anthropic-wrong")).unwrap();
    assert!(wrong.contains("disconnected") && wrong.contains("[auth]"), "{stdout}");
    assert!(!stdout.contains("FAKE-not-an-admin-key"), "the key leaked: {stdout}");
    let ok = stdout.lines().find(|l| l.starts_with("openai-org-1")).unwrap();
    assert!(ok.contains("connected") && !ok.contains("[auth]"), "{stdout}");
    let times = ok
        .split_whitespace()
        .filter(|w| w.ends_with('Z') && w.contains(':'))
        .count();
    assert_eq!(times, 2, "last success and complete-until shown: {ok}");
    sim.stop().await;
}

/// `usage_daily` cost and input tokens of one account over `[since, until)`,
/// against the simulator's truth.
async fn assert_matches_truth(
    config: &TestConfig,
    sim: &tokentra_sync::simulator::SimHandle,
    provider: &str,
    since: &str,
    until: &str,
) {
    let got = support::query_tsv(
        &config.client(),
        &format!(
            "SELECT toString(sum(cost)), sum(input_tokens) FROM {{db}}.usage_daily \
             WHERE provider = '{provider}' AND day >= toDate('{since}') AND day < toDate('{until}')"
        ),
    )
    .await;
    let truth = support::truth_days(sim, provider, "org-1", since, until).await;
    let cost: rust_decimal::Decimal = truth
        .iter()
        .map(|r| r.cost.parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    let tokens: i64 = truth.iter().map(|r| r.input_tokens).sum();
    let fields: Vec<&str> = got.trim().split('\t').collect();
    assert_eq!(fields[0].parse::<rust_decimal::Decimal>().unwrap(), cost, "{provider}");
    assert_eq!(fields[1].parse::<i64>().unwrap(), tokens, "{provider}");
}

#[actix_rt::test]
async fn a_429_storm_is_obeyed_slow_and_hanging_answers_are_survived_and_nothing_changes() {
    let sim = support::start_sim(24, 1).await;
    let config = TestConfig::new(
        "storm",
        &support::sim_accounts(&sim, &["org-1"], &["openai", "anthropic"]),
    );
    let validated = config.validated();
    let mut app = App::new(validated.clone()).unwrap();
    app.retry = RetryPolicy {
        max_attempts: 10,
        // A hung request is cut at 1s and retried.
        request_timeout: Duration::from_secs(1),
        ..fast_retries()
    };
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), validated.writer.clone());
    let syncs: Vec<AccountSync> = validated
        .accounts
        .iter()
        .map(|a| app.account_sync(a, writer.sink()).unwrap())
        .collect();
    let (since, until, kind) = last_days(2);
    set_faults(
        &sim,
        serde_json::json!({
            "rate_limit": 12, "retry_after_secs": 1,
            "slow": 3, "slow_ms": 300,
            "hang": 2, "hang_secs": 30
        }),
    )
    .await;
    let (openai, anthropic) = futures::join!(syncs[0].run(kind, "test"), syncs[1].run(kind, "test"));
    for reports in [openai.unwrap(), anthropic.unwrap()] {
        assert!(reports.iter().all(|r| r.succeeded), "{reports:?}");
    }
    assert_eq!(
        sim.pending_faults().rate_limit + sim.pending_faults().hang,
        0,
        "every fault was served"
    );
    // Every request after a 429 waited its Retry-After (the credential is
    // paused, not only the request that got the 429).
    assert_eq!(sim.too_early(), 0, "requests came before the provider's Retry-After");
    writer.flush().await.unwrap();
    assert_matches_truth(&config, &sim, "openai", &since, &until).await;
    assert_matches_truth(&config, &sim, "anthropic", &since, &until).await;
    sim.stop().await;
}
