//! Hot reload under a running daemon (the real binary): accounts added,
//! changed and removed; untouched accounts keep their actors; an invalid
//! config or one that needs a restart leaves the running one syncing.

use std::time::Duration;

use serde_json::json;

use crate::daemon::{start_daemon, stop_with_sigterm};
use crate::support::{self, eventually};

/// The value of the first `/metrics` line starting with `series`.
pub(crate) fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
}

pub(crate) async fn metrics(http: &reqwest::Client, port: u16) -> String {
    http.get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn starts(text: &str, account: &str) -> f64 {
    let provider = account.split('-').next().unwrap();
    metric_value(
        text,
        &format!("tokentra_sync_connection_starts_total{{account=\"{account}\",provider=\"{provider}\"}}"),
    )
    .unwrap_or(0.0)
}

fn synced(text: &str, account: &str) -> bool {
    let provider = account.split('-').next().unwrap();
    text.contains(&format!(
        "tokentra_sync_sync_runs_total{{account=\"{account}\",provider=\"{provider}\",status=\"success\"}}"
    ))
}

async fn post_reload(http: &reqwest::Client, port: u16) -> (u16, serde_json::Value) {
    let r = http
        .post(format!("http://127.0.0.1:{port}/v1/reload"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn sighup(child: &tokio::process::Child) {
    let pid = child.id().unwrap();
    let status = tokio::process::Command::new("sh")
        .args(["-c", &format!("kill -HUP {pid}")])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

fn sorted(value: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[actix_rt::test]
async fn reload_adds_changes_and_removes_accounts_without_touching_the_others() {
    let sim = support::start_sim(12, 2).await;
    let keep = support::sim_accounts(&sim, &["org-1"], &["openai"]);
    let change = support::sim_accounts(&sim, &["org-1"], &["anthropic"]);
    let remove = support::sim_accounts(&sim, &["org-2"], &["openai"]);
    let add = support::sim_accounts(&sim, &["org-2"], &["anthropic"]);
    let initial = format!("{keep}{change}{remove}");
    let (config, port, mut child) = start_daemon("reload", &initial);
    let path = config.write();
    let http = reqwest::Client::new();
    let all = ["openai-org-1", "anthropic-org-1", "openai-org-2"];
    let before = eventually("every account's first sync", Duration::from_secs(120), || async {
        let text = http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        all.iter().all(|a| synced(&text, a)).then_some(text)
    })
    .await;
    for account in all {
        assert_eq!(starts(&before, account), 1.0, "{account} started once");
    }
    assert_eq!(metric_value(&before, "tokentra_sync_config_generation"), Some(1.0));

    // Change anthropic-org-1's credential (to one the provider rejects, so
    // the new value is visibly in use), remove openai-org-2, add
    // anthropic-org-2, keep openai-org-1 as it is.
    let good_key = tokentra_sync::simulator::anthropic_api_key("org-1");
    let changed = change.replace(&good_key, "sk-ant-admin01-FAKE-sim-revoked");
    assert_ne!(changed, change);
    std::fs::write(&path, config.text.replace(&initial, &format!("{keep}{changed}{add}"))).unwrap();
    let (status, body) = post_reload(&http, port).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["generation"], 2);
    assert_eq!(sorted(&body["started"]), ["anthropic-org-2"]);
    assert_eq!(sorted(&body["stopped"]), ["openai-org-2"]);
    assert_eq!(sorted(&body["restarted"]), ["anthropic-org-1"]);
    assert_eq!(sorted(&body["unchanged"]), ["openai-org-1"]);

    // Actors start on their arbiter after the reload answers: wait until the
    // restarted and the added one have started, then look at the untouched one.
    let after = eventually(
        "the restarted and the added actors started",
        Duration::from_secs(30),
        || async {
            let text = metrics(&http, port).await;
            (starts(&text, "anthropic-org-1") >= 2.0 && starts(&text, "anthropic-org-2") >= 1.0).then_some(text)
        },
    )
    .await;
    assert_eq!(
        starts(&after, "openai-org-1"),
        1.0,
        "the untouched account's actor was not restarted"
    );
    assert_eq!(
        starts(&after, "anthropic-org-1"),
        2.0,
        "the changed account restarted once"
    );
    assert_eq!(starts(&after, "anthropic-org-2"), 1.0, "the added account started");
    assert_eq!(
        starts(&after, "openai-org-2"),
        1.0,
        "the removed account was not started again"
    );
    assert_eq!(metric_value(&after, "tokentra_sync_config_generation"), Some(2.0));
    assert_eq!(
        metric_value(&after, "tokentra_sync_config_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    assert!(after
        .contains("tokentra_sync_account_status{account=\"openai-org-2\",provider=\"openai\",status=\"stopped\"} 1"));

    // The added account syncs; the changed one uses its new credential.
    eventually("the added account's first sync", Duration::from_secs(120), || async {
        synced(&metrics(&http, port).await, "anthropic-org-2").then_some(())
    })
    .await;
    eventually("the changed credential rejected", Duration::from_secs(60), || async {
        let text = metrics(&http, port).await;
        (metric_value(
            &text,
            "tokentra_sync_sync_failures_total{account=\"anthropic-org-1\",kind=\"auth\",provider=\"anthropic\"}",
        )
        .unwrap_or(0.0)
            >= 1.0)
            .then_some(())
    })
    .await;

    // The removed account's lock was released: a one-shot sync may take it.
    let old_config = config.dir.path().join("old.toml");
    std::fs::write(&old_config, &config.text).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(&old_config)
        .args(["--account", "openai-org-2"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "one-shot sync of the removed account: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The kept account is still owned by the daemon.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(&old_config)
        .args(["--account", "openai-org-1"])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("owned by another running tokentra-sync"));

    // An invalid config is rejected with the reason; the old one runs on.
    let valid = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, valid.replace("provider = \"openai\"", "provider = \"openaii\"")).unwrap();
    let (status, body) = post_reload(&http, port).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["result"], "invalid");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("accounts[0] (id 'openai-org-1'): provider 'openaii' is unknown")
            && error.contains("running config is kept"),
        "{error}"
    );
    // SIGHUP with the same invalid file: logged, counted, the daemon runs on.
    sighup(&child).await;
    eventually(
        "the SIGHUP reload counted as invalid",
        Duration::from_secs(30),
        || async {
            let text = metrics(&http, port).await;
            (metric_value(&text, "tokentra_sync_config_reloads_total{result=\"invalid\"}") == Some(2.0)).then_some(())
        },
    )
    .await;
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP must not end the daemon");
    let text = metrics(&http, port).await;
    assert_eq!(metric_value(&text, "tokentra_sync_config_generation"), Some(2.0));
    assert_eq!(starts(&text, "openai-org-1"), 1.0);
    // Still syncing under the old config: a manual sync runs and succeeds.
    let r = http
        .post(format!("http://127.0.0.1:{port}/v1/accounts/anthropic-org-2/sync"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let run_id = r.json::<serde_json::Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let client = config.client();
    eventually(
        "the manual sync after the rejected reload",
        Duration::from_secs(60),
        || async {
            let n = support::count(
                &client,
                &format!("SELECT count() FROM {{db}}.sync_runs WHERE run_id = '{run_id}' AND status = 'success'"),
            )
            .await;
            (n == 1).then_some(())
        },
    )
    .await;

    // A change that needs a restart is rejected as a whole, naming it.
    let moved = valid.replace("[clickhouse]\n", "[clickhouse]\nquery_timeout = \"20s\"\n");
    assert_ne!(moved, valid);
    std::fs::write(&path, moved.replace(&keep, "")).unwrap();
    let (status, body) = post_reload(&http, port).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["result"], "restart_required");
    assert!(
        body["error"].as_str().unwrap().contains("clickhouse timeouts"),
        "{body}"
    );
    let text = metrics(&http, port).await;
    assert!(
        !text.contains("tokentra_sync_account_status{account=\"openai-org-1\",provider=\"openai\",status=\"stopped\"}"),
        "nothing of a rejected reload is applied (openai-org-1 was left out of it)"
    );
    assert_eq!(starts(&text, "openai-org-1"), 1.0);

    // SIGHUP applies a valid config: removing the added account again.
    std::fs::write(&path, valid.replace(&add, "")).unwrap();
    sighup(&child).await;
    eventually("the SIGHUP reload applied", Duration::from_secs(60), || async {
        let text = metrics(&http, port).await;
        (metric_value(&text, "tokentra_sync_config_generation") == Some(3.0)).then_some(text)
    })
    .await;
    let r = http
        .post(format!("http://127.0.0.1:{port}/v1/accounts/anthropic-org-2/sync"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a removed account is gone from the admin API too");
    let text = metrics(&http, port).await;
    assert_eq!(starts(&text, "openai-org-1"), 1.0);
    assert_eq!(starts(&text, "anthropic-org-1"), 2.0);
    stop_with_sigterm(child).await;
    sim.stop().await;
}
