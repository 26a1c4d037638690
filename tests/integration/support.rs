//! Shared test harness: the real ClickHouse server started by
//! `scripts/test.sh` (URL in `TOKENTRA_TEST_CLICKHOUSE_URL`), a fresh
//! database per test, the bundled simulator on an ephemeral port, and
//! configs pointing at both.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use tokentra_sync::config::{self, ValidatedConfig};
use tokentra_sync::store::ClickhouseClient;

pub const URL_VAR: &str = "TOKENTRA_TEST_CLICKHOUSE_URL";

pub fn clickhouse_url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| {
        panic!("{URL_VAR} is not set: run the tests with scripts/test.sh, which starts a ClickHouse server")
    })
}

/// A database name unique to this test.
pub fn fresh_database(test: &str) -> String {
    let suffix: u32 = rand::random();
    format!(
        "t_{}_{suffix:08x}",
        test.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    )
}

/// A test's config: TOML text against the test server and a fresh
/// database, with its own state dir.
pub struct TestConfig {
    pub text: String,
    pub dir: tempfile::TempDir,
}

impl TestConfig {
    pub fn new(test: &str, accounts: &str) -> Self {
        Self::with_url(test, accounts, &clickhouse_url(), "")
    }

    /// `url` may be a proxy in front of the server; `extra` is more TOML.
    pub fn with_url(test: &str, accounts: &str, url: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = fresh_database(test);
        let text = format!(
            r#"
state_dir = "{state}"
[clickhouse]
url = "{url}"
database = "{database}"
insert_timeout = "10s"
[writer]
max_batch_rows = 5000
max_batch_age = "50ms"
max_buffer_rows = 100000
retry_max_delay = "1s"
{extra}
{accounts}
"#,
            state = dir.path().display(),
        );
        Self { text, dir }
    }

    pub fn validated(&self) -> ValidatedConfig {
        config::load_str(&self.text, Path::new("test.toml"), &BTreeMap::new()).expect("test config is valid")
    }

    /// Writes the config file for the binary and returns its path.
    pub fn write(&self) -> std::path::PathBuf {
        let path = self.dir.path().join("tokentra-sync.toml");
        std::fs::write(&path, &self.text).unwrap();
        path
    }

    /// A client on the test database (through the real server, not a proxy).
    pub fn client(&self) -> ClickhouseClient {
        let mut config = self.validated().clickhouse;
        config.url = clickhouse_url();
        ClickhouseClient::new(&config)
    }
}

/// `[[accounts]]` blocks for simulated orgs, with a 7-day backfill.
pub fn sim_accounts(sim: &tokentra_sync::simulator::SimHandle, orgs: &[&str], providers: &[&str]) -> String {
    let options = tokentra_sync::simulator::AccountOptions {
        extra: "backfill_days = 7",
        ..Default::default()
    };
    let mut out = String::new();
    for org in orgs {
        for provider in providers {
            let id = format!("{provider}-{org}");
            out.push_str(
                &tokentra_sync::simulator::account_toml(&sim.base_url(), provider, org, &id, &options)
                    .unwrap_or_else(|e| panic!("{e}")),
            );
        }
    }
    out
}

pub async fn start_sim(seed: u64, orgs: u32) -> tokentra_sync::simulator::SimHandle {
    tokentra_sync::simulator::start(tokentra_sync::simulator::SimConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        seed,
        orgs,
        history_days: 40,
        workers: 1,
        record_requests: false,
    })
    .await
    .expect("simulator starts")
}

/// Runs a statement; a SELECT returns its TSV output (for assertions).
pub async fn query_tsv(client: &ClickhouseClient, sql: &str) -> String {
    let sql = sql.replace("{db}", client.database());
    let http = reqwest::Client::new();
    let response = http
        .post(client.url())
        .query(&[("database", client.database())])
        .body(if sql.trim_start().starts_with("SELECT") {
            format!("{sql} FORMAT TabSeparated")
        } else {
            sql.clone()
        })
        .send()
        .await
        .expect("ClickHouse answers");
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "query failed ({status}): {body}\n{sql}");
    body
}

pub async fn count(client: &ClickhouseClient, sql: &str) -> u64 {
    query_tsv(client, sql).await.trim().parse().expect("a count")
}

/// A count, or `None` while the server is down or the table not there yet.
pub async fn try_count(client: &ClickhouseClient, sql: &str) -> Option<u64> {
    let sql = sql.replace("{db}", client.database());
    let response = reqwest::Client::new()
        .post(client.url())
        .query(&[("database", client.database())])
        .body(format!("{sql} FORMAT TabSeparated"))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()?.trim().parse().ok()
}

/// One row of the simulator's ground truth.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct TruthRow {
    pub day: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_creation_tokens: i64,
    pub requests: i64,
    pub cost: String,
}

#[derive(Deserialize)]
struct Truth {
    rows: Vec<TruthRow>,
}

/// The simulator's truth for one org over whole UTC days `[since, until)`.
pub async fn truth_days(
    sim: &tokentra_sync::simulator::SimHandle,
    provider: &str,
    org: &str,
    since: &str,
    until: &str,
) -> Vec<TruthRow> {
    truth(
        sim,
        provider,
        org,
        &format!("{since}T00:00:00Z"),
        &format!("{until}T00:00:00Z"),
    )
    .await
}

/// The simulator's truth for one org over a window, over real HTTP.
pub async fn truth(
    sim: &tokentra_sync::simulator::SimHandle,
    provider: &str,
    org: &str,
    start: &str,
    end: &str,
) -> Vec<TruthRow> {
    let url = format!("{}/_sim/truth", sim.base_url());
    let t: Truth = reqwest::Client::new()
        .get(url)
        .query(&[("provider", provider), ("org", org), ("start", start), ("end", end)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut rows = t.rows;
    rows.sort();
    rows
}

/// Restates one simulated day over the simulator's HTTP switch.
pub async fn restate(sim: &tokentra_sync::simulator::SimHandle, provider: &str, org: &str, day: &str, factor: &str) {
    let response = reqwest::Client::new()
        .post(format!("{}/_sim/restate", sim.base_url()))
        .json(&serde_json::json!({ "provider": provider, "org": org, "day": day, "factor": factor }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "restate failed: {}",
        response.text().await.unwrap()
    );
}

/// The current value of an unlabelled metric of this process.
pub fn metric(name: &str) -> f64 {
    tokentra_sync::metrics::render()
        .lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// A free port on 127.0.0.1 (for an admin API or a mock).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `probe` until it returns `Some`, failing after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: std::time::Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A decimal as ClickHouse prints it, in one canonical text (trailing zeros
/// dropped), so stored sums compare with the simulator's truth as text.
pub fn canonical(text: &str) -> String {
    use std::str::FromStr;
    rust_decimal::Decimal::from_str(text)
        .expect("decimal")
        .normalize()
        .to_string()
}
