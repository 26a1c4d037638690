//! The admin API's lock-down, against the real daemon: bearer token,
//! browser requests refused, manual syncs bounded, rate limited, and
//! recorded under the run id they were accepted with.

use std::time::Duration;

use serde_json::{json, Value};

use crate::daemon::{start_daemon_with, stop_with_sigterm};
use crate::support;
use crate::support::eventually;

const TOKEN: &str = "admin-token-FAKE-TEST-0123456789";

#[actix_rt::test]
async fn the_admin_api_needs_its_token_refuses_browsers_and_bounds_manual_syncs() {
    let sim = support::start_sim(31, 1).await;
    let accounts = support::sim_accounts(&sim, &["org-1"], &["anthropic"]);
    let (config, port, child) = start_daemon_with(
        "admin_lockdown",
        &accounts,
        &format!("token = \"{TOKEN}\"\nmanual_sync_min_interval = \"1h\"\nmax_manual_window_days = 5"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    eventually("/healthz (no token needed)", Duration::from_secs(60), || async {
        let r = http.get(format!("{base}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let sync_url = format!("{base}/v1/accounts/anthropic-org-1/sync");

    // Without the token (or with a wrong one): 401 on everything but /healthz.
    for path in ["/metrics", "/readyz"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http
        .post(&sync_url)
        .bearer_auth("wrong-token-FAKE-0000000000")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let metrics = http
        .get(format!("{base}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(!metrics.text().await.unwrap().contains(TOKEN));

    // A page on another site (Origin) and a plain form POST are refused.
    let r = http
        .post(&sync_url)
        .bearer_auth(TOKEN)
        .header("Origin", "https://evil.example")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http
        .post(&sync_url)
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("deep=true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // Windows: inverted, or reaching back past the limit, are 400s.
    for body in [
        json!({"since": "2026-01-10", "until": "2026-01-09"}),
        json!({"since": "1970-01-01"}),
    ] {
        let r = http
            .post(&sync_url)
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains("until must be after since") || text.contains("more than 5 days"),
            "{text}"
        );
    }

    // An accepted request answers with its run id, and sync_runs records it.
    eventually("/readyz (accounts running)", Duration::from_secs(60), || async {
        let r = http
            .get(format!("{base}/readyz"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let since = (chrono::Utc::now() - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let r = http
        .post(&sync_url)
        .bearer_auth(TOKEN)
        .json(&json!({ "since": since }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let accepted: Value = r.json().await.unwrap();
    let run_id = accepted["run_id"].as_str().unwrap().to_string();
    assert!(run_id.starts_with("manual-anthropic-org-1-"), "{accepted}");

    // A burst right after is rate limited, with Retry-After.
    let r = http
        .post(&sync_url)
        .bearer_auth(TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    let client = config.client();
    let recorded = eventually("the manual run in sync_runs", Duration::from_secs(120), || {
        let client = client.clone();
        let run_id = run_id.clone();
        async move {
            let rows = support::query_tsv(
                &client,
                &format!("SELECT trigger, status FROM {{db}}.sync_runs WHERE startsWith(run_id, '{run_id}')"),
            )
            .await;
            (!rows.trim().is_empty()).then_some(rows)
        }
    })
    .await;
    assert!(recorded.starts_with("manual\t"), "{recorded}");
    stop_with_sigterm(child).await;
    sim.stop().await;
}

#[actix_rt::test]
async fn a_non_loopback_admin_api_without_a_token_does_not_start() {
    let accounts = "[[accounts]]\nid = \"a\"\nprovider = \"anthropic\"\nenabled = false\n[accounts.credentials]\napi_key = \"sk-ant-admin01-FAKE\"\n";
    let config = support::TestConfig::with_url(
        "admin_open",
        accounts,
        &support::clickhouse_url(),
        "[admin]\nlisten = \"0.0.0.0:0\"\n",
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["run", "-c"])
        .arg(config.write())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("admin.listen") && stderr.contains("token_file"),
        "{stderr}"
    );
}

#[actix_rt::test]
async fn readyz_names_accounts_whose_last_sync_failed() {
    let sim = support::start_sim(33, 1).await;
    let mut accounts = support::sim_accounts(&sim, &["org-1"], &["anthropic"]);
    accounts.push_str(&format!(
        "[[accounts]]\nid = \"anthropic-wrong\"\nprovider = \"anthropic\"\nbase_url = \"{}\"\nbackfill_days = 1\n\
         [accounts.credentials]\napi_key = \"sk-ant-admin01-FAKE-TEST-revoked-key\"\n",
        sim.anthropic_base_url("org-1")
    ));
    let (_config, port, child) = start_daemon_with("readyz_detail", &accounts, "");
    let http = reqwest::Client::new();
    let body = eventually(
        "/readyz to name the failing account",
        Duration::from_secs(120),
        || async {
            let r = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await.ok()?;
            let ok = r.status().is_success();
            let body = r.text().await.ok()?;
            (ok && body.contains("account 'anthropic-wrong': disconnected")).then_some(body)
        },
    )
    .await;
    assert!(body.contains("2 accounts running, 1 with a failed last sync"), "{body}");
    assert!(!body.contains("FAKE-TEST-revoked-key"), "{body}");
    stop_with_sigterm(child).await;
    sim.stop().await;
}
