//! A real Prometheus server (Debian's `prometheus` package, installed by
//! scripts/test.sh) scrapes the running daemon with config/prometheus's alert
//! rules loaded: the account metrics are queryable through its HTTP API, every
//! rule evaluates, every Prometheus panel of the dashboards is a valid query,
//! and `promtool check metrics` accepts the daemon's /metrics.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::dashboards::{self, TimeRange, Vars};
use crate::support::{self, eventually, free_port};

fn tool(name: &str) -> String {
    for candidate in [format!("/usr/bin/{name}"), format!("/usr/local/bin/{name}")] {
        if std::path::Path::new(&candidate).exists() {
            return candidate;
        }
    }
    panic!("{name} is not installed: apt-get install prometheus (scripts/test.sh does)");
}

/// An instant query through Prometheus' HTTP API: (status, result vector);
/// `None` while the server does not answer yet.
async fn try_query(http: &reqwest::Client, base: &str, promql: &str) -> Option<(String, Vec<Value>)> {
    let response = http
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", promql)])
        .send()
        .await
        .ok()?;
    let body: Value = response.json().await.ok()?;
    let status = body["status"].as_str().unwrap_or("").to_string();
    let result = body["data"]["result"].as_array().cloned().unwrap_or_default();
    if status != "success" {
        return Some((format!("{status}: {}", body["error"]), result));
    }
    Some((status, result))
}

async fn query(http: &reqwest::Client, base: &str, promql: &str) -> (String, Vec<Value>) {
    try_query(http, base, promql).await.expect("prometheus answers")
}

#[actix_rt::test]
async fn prometheus_scrapes_the_daemon_and_the_rules_and_panels_evaluate() {
    let prometheus = tool("prometheus");
    let promtool = tool("promtool");
    let sim = support::start_sim(5, 1).await;
    let accounts = support::sim_accounts(&sim, &["org-1"], &["openai", "anthropic"]);
    let (_config, admin_port, daemon) = crate::daemon::start_daemon_with("prometheus", &accounts, "");
    let http = reqwest::Client::new();
    let metrics_url = format!("http://127.0.0.1:{admin_port}/metrics");
    let metrics = eventually("both accounts' first sync", Duration::from_secs(120), || async {
        let text = http.get(&metrics_url).send().await.ok()?.text().await.ok()?;
        let done = ["openai", "anthropic"].iter().all(|p| {
            text.contains(&format!(
                "tokentra_sync_sync_runs_total{{account=\"{p}-org-1\",provider=\"{p}\",status=\"success\"}}"
            ))
        });
        done.then_some(text)
    })
    .await;

    // promtool accepts the exposition (format and naming lint).
    let mut check = tokio::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(metrics.as_bytes()).await.unwrap();
    let checked = check.wait_with_output().await.unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // A real Prometheus scrapes it every second with the shipped alert rules.
    let dir = tempfile::tempdir().unwrap();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus/alerts.yml");
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: tokentra-sync\n    static_configs:\n      - targets: ['127.0.0.1:{admin_port}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let prom_port = free_port();
    let server_log = dir.path().join("prometheus.log");
    let mut server = tokio::process::Command::new(&prometheus)
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&server_log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{prom_port}");

    // Polled by hand (not `eventually`): each round also checks that the
    // server is still running, to show its log if it is not.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(exit)) = server.try_wait() {
            let log = std::fs::read_to_string(&server_log).unwrap_or_default();
            panic!("prometheus exited ({exit}):\n{log}");
        }
        let answer = try_query(
            &http,
            &base,
            "max by (account, provider, status) (tokentra_sync_account_status{job=\"tokentra-sync\"}) == 1",
        )
        .await;
        if let Some((status, result)) = answer {
            if status == "success" && result.len() == 2 {
                break result;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for account metrics in Prometheus"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for series in &status {
        let account = series["metric"]["account"].as_str().unwrap();
        assert!(["openai-org-1", "anthropic-org-1"].contains(&account), "{series}");
        let state = series["metric"]["status"].as_str().unwrap();
        assert!(
            ["connected", "syncing", "pending"].contains(&state),
            "{account} is {state}"
        );
    }
    let (_, up) = query(&http, &base, "up{job=\"tokentra-sync\"}").await;
    assert_eq!(up[0]["value"][1], "1");
    let (_, success) = query(&http, &base, "tokentra_sync_last_success_timestamp_seconds").await;
    assert_eq!(success.len(), 2, "{success:?}");
    for series in &success {
        let t: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
        let age = chrono::Utc::now().timestamp() as f64 - t;
        assert!((0.0..300.0).contains(&age), "last success {age}s ago");
    }
    let (_, rows) = query(&http, &base, "sum(tokentra_sync_rows_written_total)").await;
    let written: f64 = rows[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(written > 0.0, "the first syncs wrote rows");

    // Every alert rule loaded and evaluates cleanly; none fires on a healthy daemon.
    let rules = eventually("every rule evaluated", Duration::from_secs(30), || async {
        let body: Value = http
            .get(format!("{base}/api/v1/rules"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let rules: Vec<Value> = body["data"]["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        (rules.len() == 6 && rules.iter().all(|r| r["health"] == "ok")).then_some(rules)
    })
    .await;
    for rule in &rules {
        assert_ne!(rule["state"], "firing", "{rule}");
    }

    // Every Prometheus panel query of the dashboards is valid PromQL here;
    // the status panels have data.
    let range = TimeRange {
        from: chrono::Utc::now() - chrono::Duration::hours(1),
        to: chrono::Utc::now(),
    };
    let mut checked_panels = 0;
    for (file, dashboard) in dashboards::load_dashboards() {
        for q in dashboards::panel_queries(&dashboard) {
            if q.datasource != "prometheus" {
                continue;
            }
            let promql = q.text.replace("$__rate_interval", "1m").replace("$__interval", "15s");
            let promql = dashboards::expand(&promql, range, &Vars::new())
                .unwrap_or_else(|e| panic!("{file} '{}': {e}", q.panel));
            let (status, result) = query(&http, &base, &promql).await;
            assert_eq!(status, "success", "{file} '{}': {promql}", q.panel);
            if ["Account status", "Daemon up", "Seconds since last success"].contains(&q.panel.as_str()) {
                assert!(!result.is_empty(), "{file} '{}' has no data: {promql}", q.panel);
            }
            checked_panels += 1;
        }
    }
    assert!(checked_panels >= 9, "the sync health dashboard has Prometheus panels");

    server.kill().await.unwrap();
    let pid = daemon.id().unwrap().to_string();
    let status = tokio::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(80), daemon.wait_with_output())
        .await
        .expect("the daemon stops")
        .unwrap();
    assert!(exit.status.success());
    sim.stop().await;
}
