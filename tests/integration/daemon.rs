//! The daemon as users run it: the real binary, its admin API, SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{self, eventually, free_port, TestConfig};

/// Starts `tokentra-sync run` on a fresh test config for `accounts`, with
/// its admin API on a free port.
pub(crate) fn start_daemon(test: &str, accounts: &str) -> (TestConfig, u16, tokio::process::Child) {
    start_daemon_with(test, accounts, "")
}

/// [`start_daemon`] with more `[admin]` keys.
pub(crate) fn start_daemon_with(test: &str, accounts: &str, admin: &str) -> (TestConfig, u16, tokio::process::Child) {
    let port = free_port();
    let config = TestConfig::with_url(
        test,
        accounts,
        &support::clickhouse_url(),
        &format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n{admin}\n"),
    );
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["run", "-c"])
        .arg(config.write())
        .env("TOKENTRA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (config, port, child)
}

/// SIGTERM (through the shell's `kill` builtin: no procps needed), then the
/// daemon must exit 0 within its grace periods (45s + 25s).
pub(crate) async fn stop_with_sigterm(mut child: tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let status = tokio::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(80), child.wait())
        .await
        .expect("daemon stops within its grace periods")
        .unwrap();
    assert!(exit.success(), "daemon exit status {exit:?}");
}

#[actix_rt::test]
async fn the_daemon_syncs_serves_metrics_owns_its_accounts_and_stops_on_sigterm() {
    let sim = support::start_sim(3, 1).await;
    let accounts = support::sim_accounts(&sim, &["org-1"], &["openai", "anthropic"]);
    let (config, port, child) = start_daemon("daemon", &accounts);
    let path = config.write();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");

    eventually("/readyz", Duration::from_secs(60), || async {
        let r = http.get(format!("{base}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let metrics = eventually("both accounts' first sync", Duration::from_secs(120), || async {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let done = ["openai-org-1", "anthropic-org-1"].iter().all(|a| {
            text.contains(&format!(
                "tokentra_sync_sync_runs_total{{account=\"{a}\",provider=\"{}\",status=\"success\"}}",
                a.split('-').next().unwrap()
            ))
        });
        done.then_some(text)
    })
    .await;
    for needle in [
        "tokentra_sync_last_success_timestamp_seconds{account=\"openai-org-1\",provider=\"openai\"}",
        "tokentra_sync_rows_written_total{account=\"anthropic-org-1\",provider=\"anthropic\"}",
        "tokentra_sync_provider_http_responses_total{account=\"openai-org-1\",code=\"200\",provider=\"openai\"}",
        "tokentra_sync_sync_duration_seconds_bucket{account=\"openai-org-1\"",
        "tokentra_sync_writer_rows_written_total",
        "tokentra_sync_build_info{version=",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle}:\n{metrics}");
    }
    assert!(!metrics.contains("sk-admin-FAKE"), "a credential leaked into /metrics");
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);

    // The admin API triggers a sync; unknown accounts are a 404.
    let r = http
        .post(format!("{base}/v1/accounts/openai-org-1/sync"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{base}/v1/accounts/nope/sync"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A one-shot sync may not take an account the daemon owns.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(&path)
        .args(["--account", "openai-org-1"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("owned by another running tokentra-sync"), "{stderr}");

    // The first run backfilled and set a watermark per account.
    let client = config.client();
    // The watermark is stored through the writer after each chunk's rows; a
    // finished backfill has moved it to the present for both accounts.
    eventually("a current watermark per account", Duration::from_secs(60), || async {
        let current = support::count(
            &client,
            "SELECT count() FROM (SELECT connection_id, argMax(watermark, updated_at) AS w FROM {db}.sync_state \
             GROUP BY connection_id) WHERE w > now() - 3600",
        )
        .await;
        (current == 2).then_some(())
    })
    .await;
    let days = support::count(
        &client,
        "SELECT uniqExact(day) FROM {db}.usage_daily WHERE connection_id = 'openai-org-1'",
    )
    .await;
    assert!(days >= 7, "a 7-day backfill fills 7 or 8 days, got {days}");

    // SIGTERM: finish or abandon in-flight work, flush, exit 0.
    stop_with_sigterm(child).await;
    sim.stop().await;
}

/// SIGTERM while a sync is in flight (held up by the provider's rate limit):
/// the daemon lets it finish, stores its rows and watermark, and exits 0.
#[actix_rt::test]
async fn sigterm_during_a_sync_finishes_it_and_exits_cleanly() {
    let sim = support::start_sim(4, 1).await;
    // Every request waits out a 429 first: the first sync takes seconds.
    let r = reqwest::Client::new()
        .post(format!("{}/_sim/faults", sim.base_url()))
        .json(&serde_json::json!({"rate_limit": 3, "retry_after_secs": 1}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let accounts = support::sim_accounts(&sim, &["org-1"], &["anthropic"]);
    let (config, port, child) = start_daemon("sigterm", &accounts);
    let http = reqwest::Client::new();
    eventually("the first 429 to hold the sync up", Duration::from_secs(60), || async {
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("code=\"429\"").then_some(())
    })
    .await;
    stop_with_sigterm(child).await;
    let client = config.client();
    let finished = support::count(&client, "SELECT count() FROM {db}.sync_runs WHERE status = 'success'").await;
    assert!(finished >= 1, "the in-flight sync finished and was recorded");
    let watermarks = support::count(&client, "SELECT count() FROM {db}.sync_state").await;
    assert!(watermarks >= 1, "its watermark was stored before exit");
    sim.stop().await;
}
