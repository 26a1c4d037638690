//! End to end: simulated OpenAI and Anthropic orgs -> one-shot `sync` (the real
//! binary) -> ClickHouse -> `usage_daily`, compared with the simulator's ground
//! truth to the last decimal, per day, model and unit.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use tokentra_sync::actors::writer::WriterActor;
use tokentra_sync::app::App;
use tokentra_sync::normalize::schema::UsageRow;
use tokentra_sync::simulator::{SimHandle, TruthOptions};
use tokentra_sync::store::sink::{NameRows, RowSink, SinkError, StoredAck, UsageRows, WriteAck};
use tokentra_sync::store::state::{SyncRunRow, SyncStateRow};
use tokentra_sync::store::verify::DailyRow;
use tokentra_sync::store::{migrations, ClickhouseClient};
use tokentra_sync::sync::window::SyncKind;

use crate::proxy::Proxy;
use crate::support::{self, TestConfig};

const PROVIDERS: [&str; 2] = ["openai", "anthropic"];
const ORGS: [&str; 2] = ["org-1", "org-2"];

/// What `sum(...) GROUP BY day, model, unit` over `usage_daily` says for one
/// account, and what the truth says it must. Decimals in canonical form, so
/// equal amounts compare equal ("1.50" == "1.5").
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Daily {
    day: String,
    model: String,
    unit: String,
    input_tokens: i64,
    output_tokens: i64,
    cached_input_tokens: i64,
    cache_creation_tokens: i64,
    requests: i64,
    quantity: String,
    cost: String,
    credits: String,
}

impl Daily {
    fn is_zero(&self) -> bool {
        self.input_tokens == 0
            && self.output_tokens == 0
            && self.cached_input_tokens == 0
            && self.cache_creation_tokens == 0
            && self.requests == 0
            && self.quantity == "0"
            && self.cost == "0"
            && self.credits == "0"
    }
}

/// Drops all-zero rows (idle keys) and sorts.
fn settle(rows: impl IntoIterator<Item = Daily>) -> Vec<Daily> {
    let mut out: Vec<Daily> = rows.into_iter().filter(|r| !r.is_zero()).collect();
    out.sort();
    out
}

async fn stored(client: &ClickhouseClient, account: &str, since: &str, until: &str) -> Vec<Daily> {
    stored_in(client, false, account, since, until).await
}

/// [`stored`] from `usage_daily`, or (`records`) from the net of the raw
/// `usage_records` (every measure times `sign`).
pub(crate) async fn stored_in(
    client: &ClickhouseClient,
    records: bool,
    account: &str,
    since: &str,
    until: &str,
) -> Vec<Daily> {
    let (source, day, sign) = if records {
        ("usage_records", "toDate(bucket_start, 'UTC')", " * sign")
    } else {
        ("usage_daily", "day", "")
    };
    let tsv = support::query_tsv(
        client,
        &format!(
            "SELECT toString({day}) AS d, model, unit, sum(input_tokens{sign}), sum(output_tokens{sign}), \
                    sum(cached_input_tokens{sign}), sum(cache_creation_tokens{sign}), sum(requests{sign}), \
                    toString(sum(quantity{sign})), toString(sum(cost{sign})), toString(sum(credits{sign})) \
             FROM {{db}}.{source} \
             WHERE connection_id = '{account}' AND {day} >= toDate('{since}') AND {day} < toDate('{until}') \
             GROUP BY d, model, unit ORDER BY d, model, unit"
        ),
    )
    .await;
    settle(tsv.lines().map(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        Daily {
            day: f[0].to_string(),
            model: f[1].to_string(),
            unit: f[2].to_string(),
            input_tokens: f[3].parse().unwrap(),
            output_tokens: f[4].parse().unwrap(),
            cached_input_tokens: f[5].parse().unwrap(),
            cache_creation_tokens: f[6].parse().unwrap(),
            requests: f[7].parse().unwrap(),
            quantity: support::canonical(f[8]),
            cost: support::canonical(f[9]),
            credits: support::canonical(f[10]),
        }
    }))
}

fn midnight(day: &str) -> DateTime<Utc> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .unwrap()
        .and_time(Default::default())
        .and_utc()
}

/// The simulator's truth for an account over whole UTC days `[since, until)`;
/// `api` as in the account's config.
pub(crate) fn truth(
    sim: &SimHandle,
    provider: &str,
    org: &str,
    api: Option<&str>,
    since: &str,
    until: &str,
) -> Vec<Daily> {
    let options = TruthOptions {
        api: api.map(str::to_string),
    };
    let rows = sim
        .truth_with(provider, org, midnight(since), midnight(until), &options)
        .expect("a known provider and option");
    settle(rows.into_iter().map(|r| Daily {
        day: r.day.to_string(),
        model: r.model,
        unit: r.unit,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_input_tokens: r.cached_input_tokens,
        cache_creation_tokens: r.cache_creation_tokens,
        requests: r.requests,
        quantity: support::canonical(&r.quantity.to_string()),
        cost: support::canonical(&r.cost.to_string()),
        credits: support::canonical(&r.credits.to_string()),
    }))
}

async fn assert_account_matches_truth(
    sim: &SimHandle,
    client: &ClickhouseClient,
    (provider, org, api): (&str, &str, Option<&str>),
    since: &str,
    until: &str,
) -> Vec<Daily> {
    let truth = truth(sim, provider, org, api, since, until);
    assert!(!truth.is_empty(), "the simulator has data for {provider} {org}");
    let got = stored(client, &format!("{provider}-{org}"), since, until).await;
    assert_eq!(
        got, truth,
        "usage_daily differs from the truth for {provider} {org} ({api:?})"
    );
    got
}

async fn assert_matches_truth(sim: &SimHandle, client: &ClickhouseClient, since: &str, until: &str) {
    for provider in PROVIDERS {
        for org in ORGS {
            let got = assert_account_matches_truth(sim, client, (provider, org, None), since, until).await;
            if provider == "openai" {
                // The tool-call endpoints landed, in their own unit.
                assert!(
                    got.iter().any(|r| r.unit == "calls" && r.model.is_empty()),
                    "file search: {got:?}"
                );
                assert!(
                    got.iter().any(|r| r.unit == "calls" && r.requests > 0),
                    "web search: {got:?}"
                );
            }
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
    let truth_before = truth(&sim, "openai", "org-2", None, &since, &until);
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
    let truth_after = truth(&sim, "openai", "org-2", None, &since, &until);
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
    // A background merge may fold the duplicate away before it is counted
    // below (more endpoints, more parts, earlier merges): no merges here.
    support::query_tsv(&client, "SYSTEM STOP MERGES {db}.usage_records").await;
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
    assert_account_matches_truth(&sim, &client, ("openai", "org-1", None), &since, &until).await;
    proxy.stop().await;
    sim.stop().await;
}

/// A re-sync of unchanged buckets reads nothing from ClickHouse: after the
/// first sync, the account's reads go to a closed port and the next sync
/// still succeeds, writing nothing; the same sync without the known buckets
/// fails there (so the first result is not luck). A restated day changes its
/// buckets' digests: only those are read again (with their measures, so the
/// cancel copies need no whole-row read), and with the real server back the
/// stored rows follow the new truth exactly.
#[actix_rt::test]
async fn unchanged_buckets_are_not_read_again_and_changed_ones_are() {
    let sim = support::start_sim(11, 1).await;
    let accounts = support::sim_accounts(&sim, &["org-1"], &["openai"]);
    let config = TestConfig::new("settled", &accounts);
    let validated = config.validated();
    let client = config.client();
    let app = App::new(validated.clone()).unwrap();
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), validated.writer.clone());
    let mut sync = app.account_sync(&validated.accounts[0], writer.sink()).unwrap();
    let (since, until) = window();
    let kind = SyncKind::Explicit {
        since: tokentra_sync::cli::parse_time(&since).unwrap(),
        until: Some(tokentra_sync::cli::parse_time(&until).unwrap()),
    };
    let written = |reports: &[tokentra_sync::sync::SyncReport]| {
        reports.iter().map(|r| r.rows_added + r.rows_cancelled).sum::<u64>()
    };

    // The scheduled sync stores the watermark (so it is known, not read);
    // the explicit one then covers the whole week.
    let backfill = sync.run(SyncKind::Incremental, "test").await.unwrap();
    assert!(backfill.iter().all(|r| r.succeeded), "{backfill:?}");
    let first = sync.run(kind, "test").await.unwrap();
    assert!(first.iter().all(|r| r.succeeded), "{first:?}");
    assert_account_matches_truth(&sim, &client, ("openai", "org-1", None), &since, &until).await;

    let live_store = sync.store.clone();
    let mut unreachable = validated.clickhouse.clone();
    unreachable.url = "http://127.0.0.1:9".into();
    sync.store = ClickhouseClient::new(&unreachable);
    let again = sync.run(kind, "test").await.unwrap();
    assert!(
        again.iter().all(|r| r.succeeded),
        "unchanged buckets need no read: {again:?}"
    );
    assert_eq!(written(&again), 0);

    let mut forgetful = sync.clone();
    forgetful.settled = Default::default();
    let control = forgetful.run(kind, "test").await.unwrap();
    assert!(
        control.iter().any(|r| !r.succeeded),
        "without known buckets the sync must read (and fail on the closed port): {control:?}"
    );

    let restated_day = (Utc::now().date_naive() - Duration::days(3)).to_string();
    support::restate(&sim, "openai", "org-1", &restated_day, "1.5").await;
    let restated = sync.run(kind, "test").await.unwrap();
    assert!(
        restated.iter().any(|r| !r.succeeded),
        "the restated day's buckets must be read: {restated:?}"
    );
    sync.store = live_store;
    let reads_before = sync.store.scope_reads().counts();
    let repaired = sync.run(kind, "test").await.unwrap();
    assert!(
        repaired.iter().all(|r| r.succeeded) && written(&repaired) > 0,
        "{repaired:?}"
    );
    assert!(
        repaired.iter().map(|r| r.rows_cancelled).sum::<u64>() > 0,
        "restated records are cancelled: {repaired:?}"
    );
    // The revised buckets were read with their measures, and every cancel
    // copy was rebuilt from them: no whole row was read.
    let reads_after = sync.store.scope_reads().counts();
    assert!(reads_after.measures.1 > reads_before.measures.1, "{reads_after:?}");
    assert_eq!(reads_after.rows, reads_before.rows, "{reads_after:?}");
    assert_account_matches_truth(&sim, &client, ("openai", "org-1", None), &since, &until).await;
    let settled = sync.run(kind, "test").await.unwrap();
    assert_eq!(written(&settled), 0, "{settled:?}");
    sim.stop().await;
}

/// `[[accounts]]` blocks for simulated Anthropic orgs, with the `api` setting.
fn anthropic_accounts(sim: &SimHandle, orgs: &[(&str, &str)]) -> String {
    orgs.iter()
        .map(|(org, api)| {
            format!(
                "[[accounts]]\nid = \"anthropic-{org}\"\nprovider = \"anthropic\"\nbase_url = \"{base}\"\nbackfill_days = 7\napi = \"{api}\"\n[accounts.credentials]\napi_key = \"{key}\"\n\n",
                base = sim.anthropic_base_url(org),
                key = tokentra_sync::simulator::anthropic_api_key(org),
            )
        })
        .collect()
}

#[actix_rt::test]
async fn anthropic_analytics_and_legacy_accounts_match_truth_and_resyncs_write_nothing() {
    let sim = support::start_sim(13, 3).await;
    let accounts = [("org-1", "analytics"), ("org-2", "analytics"), ("org-3", "legacy")];
    let config = TestConfig::new("analytics", &anthropic_accounts(&sim, &accounts));
    let client = config.client();
    let (since, until) = window();

    let summary = run_cli_sync(&config, &since, &until).await;
    assert!(
        summary.contains("anthropic-org-3") && summary.contains("success"),
        "{summary}"
    );
    for (org, api) in accounts {
        let got = assert_account_matches_truth(&sim, &client, ("anthropic", org, Some(api)), &since, &until).await;
        let requests: i64 = got.iter().map(|r| r.requests).sum();
        if api == "analytics" {
            assert!(requests > 0, "analytics accounts store request counts: {org}");
            assert!(
                got.iter().any(|r| r.model.is_empty() && r.cost != "0"),
                "web search cost"
            );
            assert!(got.iter().any(|r| r.unit == "requests"), "web searches");
        } else {
            assert_eq!(requests, 0, "the legacy report has no request counts");
        }
    }
    // The two APIs store under their own endpoint names.
    let endpoints = support::query_tsv(
        &client,
        "SELECT connection_id, endpoint FROM {db}.usage_records GROUP BY connection_id, endpoint \
         ORDER BY connection_id, endpoint",
    )
    .await;
    assert_eq!(
        endpoints.lines().collect::<Vec<_>>(),
        [
            "anthropic-org-1\tanalytics/cost",
            "anthropic-org-1\tanalytics/usage",
            "anthropic-org-2\tanalytics/cost",
            "anthropic-org-2\tanalytics/usage",
            "anthropic-org-3\tcost_report",
            "anthropic-org-3\tusage_report/messages",
        ]
    );
    // The list price is kept beside the bill, which stays billed money only.
    let discounted = support::count(
        &client,
        "SELECT count() FROM {db}.usage_records WHERE endpoint = 'analytics/cost' \
         AND position(attributes, 'list_amount_cents=') > 0 AND position(attributes, 'discount_cents=') > 0",
    )
    .await;
    assert!(discounted > 0);

    // A re-sync of the same window writes nothing and changes nothing.
    let written = "SELECT sum(rows_written) + sum(rows_cancelled) FROM {db}.sync_runs";
    let rows_before = support::count(&client, "SELECT count() FROM {db}.usage_records").await;
    let written_before = support::count(&client, written).await;
    run_cli_sync(&config, &since, &until).await;
    assert_eq!(
        support::count(&client, "SELECT count() FROM {db}.usage_records").await,
        rows_before
    );
    assert_eq!(
        support::count(&client, written).await,
        written_before,
        "the re-sync wrote rows"
    );
    let runs = support::count(&client, "SELECT count() FROM {db}.sync_runs WHERE status = 'success'").await;
    assert_eq!(runs, 2 * 3, "one sync_runs row per account and attempt");
    for (org, api) in accounts {
        assert_account_matches_truth(&sim, &client, ("anthropic", org, Some(api)), &since, &until).await;
    }
    sim.stop().await;
}

/// A sink in front of the writer that counts the deltas queued and holds
/// back every "stored" answer until the test opens its gate.
struct HeldSink {
    inner: std::sync::Arc<dyn RowSink>,
    queued: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    gate: tokio::sync::watch::Receiver<bool>,
}

#[async_trait::async_trait]
impl RowSink for HeldSink {
    async fn write_usage(&self, rows: Vec<UsageRow>) -> Result<WriteAck, SinkError> {
        self.queue_usage(rows.into()).await?.await
    }

    async fn queue_usage(&self, rows: UsageRows) -> Result<StoredAck, SinkError> {
        if !rows.is_empty() {
            self.queued.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let stored = self.inner.queue_usage(rows).await?;
        let mut gate = self.gate.clone();
        Ok(Box::pin(async move {
            let _ = gate.wait_for(|open| *open).await;
            stored.await
        }))
    }

    async fn write_daily(&self, rows: Vec<DailyRow>) -> Result<WriteAck, SinkError> {
        self.inner.write_daily(rows).await
    }

    async fn enqueue_run(&self, run: SyncRunRow) -> Result<(), SinkError> {
        self.inner.enqueue_run(run).await
    }

    async fn queue_state(&self, state: SyncStateRow) -> Result<StoredAck, SinkError> {
        self.inner.queue_state(state).await
    }

    async fn queue_names(&self, names: NameRows) -> Result<StoredAck, SinkError> {
        self.inner.queue_names(names).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
}

/// Only fetches are limited per sync (three at a time): every endpoint's
/// delta is queued before the sync waits for any of them to be stored, so a
/// sync's deltas share the writer's batch and it waits for one batch, not
/// one per three endpoints.
#[actix_rt::test]
async fn a_sync_queues_every_endpoints_delta_before_waiting_for_one() {
    let sim = support::start_sim(12, 1).await;
    let accounts = support::sim_accounts(&sim, &["org-1"], &["openai"]);
    let queued_by_a_backfill = |name: &'static str, open: bool| {
        let accounts = accounts.clone();
        async move {
            let config = TestConfig::new(name, &accounts);
            let validated = config.validated();
            let app = App::new(validated.clone()).unwrap();
            migrations::migrate(&app.store).await.unwrap();
            let writer = WriterActor::start_with_handle(app.store.clone(), validated.writer.clone());
            let queued = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let (open_gate, gate) = tokio::sync::watch::channel(open);
            let sink = HeldSink {
                inner: writer.sink(),
                queued: queued.clone(),
                gate,
            };
            let sync = app
                .account_sync(&validated.accounts[0], std::sync::Arc::new(sink))
                .unwrap();
            // One window (one chunk): the next chunk would wait for this one's rows.
            let day = |days_back: i64| (Utc::now() - Duration::days(days_back)).date_naive().to_string();
            let kind = SyncKind::Explicit {
                since: tokentra_sync::cli::parse_time(&day(2)).unwrap(),
                until: Some(tokentra_sync::cli::parse_time(&day(0)).unwrap()),
            };
            let run = actix_rt::spawn(async move { sync.run(kind, "test").await });
            (queued, open_gate, run)
        }
    };

    // How many endpoints write rows in this window (nothing held back).
    let (queued, _gate, run) = queued_by_a_backfill("endpoints_control", true).await;
    let reports = run.await.unwrap().unwrap();
    assert!(reports.iter().all(|r| r.succeeded), "{reports:?}");
    let writing = queued.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        writing > 3,
        "the simulated org must have more endpoints with rows than fetch at once: {writing}"
    );

    // The same sync with nothing ever stored: every one of them queues.
    let (queued, open_gate, run) = queued_by_a_backfill("endpoints_held", false).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while queued.load(std::sync::atomic::Ordering::SeqCst) < writing {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {writing} deltas were queued while none was stored",
            queued.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    open_gate.send_replace(true);
    let reports = run.await.unwrap().unwrap();
    assert!(reports.iter().all(|r| r.succeeded), "{reports:?}");
    sim.stop().await;
}
