//! Hostile providers: one test per guard and per bad input. Each runs the real
//! sync of misbehaving accounts (our own server, [`mock`]) next to healthy
//! ones (a correct account on the same server and a simulated Anthropic org)
//! against a real ClickHouse, after a first good sync stored data for all.
//! Then: the hostile account fails naming itself and the endpoint, with the
//! right `sync_runs.error_kind`; nothing stored for it changes and its
//! watermark stays; the healthy accounts sync exactly and move theirs.

mod mock;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rust_decimal::Decimal;
use tokentra_sync::actors::writer::{WriterActor, WriterHandle};
use tokentra_sync::app::App;
use tokentra_sync::store::migrations;
use tokentra_sync::store::sink::RowSink;
use tokentra_sync::sync::window::SyncKind;
use tokentra_sync::sync::{AccountSync, SyncReport};

use crate::support::{self, eventually, TestConfig};
use mock::{Api, Behavior, Mock};

const SIM_ACCOUNT: &str = "anthropic-org-1";
const HEALTHY: &str = "healthy-openai";

/// Per day: (day, input_tokens, output_tokens, requests, cost).
type Daily = Vec<(String, i64, i64, i64, String)>;

struct Harness {
    config: TestConfig,
    sim: tokentra_sync::simulator::SimHandle,
    mock: Mock,
    syncs: Vec<AccountSync>,
    sink: Arc<dyn RowSink>,
    _writer: WriterHandle,
    hostile: Vec<(String, Api)>,
}

fn account_toml(id: &str, provider: &str, base_url: &str, key: &str) -> String {
    format!(
        "[[accounts]]\nid = \"{id}\"\nprovider = \"{provider}\"\nbase_url = \"{base_url}\"\nbackfill_days = 7\n\
         [accounts.credentials]\napi_key = \"{key}\"\n\n"
    )
}

impl Harness {
    /// The hostile accounts, a healthy account on the same server and a
    /// simulated Anthropic org; `sync` is TOML for the `[sync]` section.
    async fn start(test: &str, hostile: &[(&str, Api)], sync: &str) -> Harness {
        let sim = support::start_sim(31, 1).await;
        let mock = Mock::start().await;
        let mut accounts = support::sim_accounts(&sim, &["org-1"], &["anthropic"]);
        let healthy_url = mock.add_account(HEALTHY, Api::OpenAi);
        accounts.push_str(&account_toml(
            HEALTHY,
            "openai",
            &healthy_url,
            &Api::OpenAi.key(HEALTHY),
        ));
        for (id, api) in hostile {
            let url = mock.add_account(id, *api);
            accounts.push_str(&account_toml(id, api.provider(), &url, &api.key(id)));
        }
        let config = TestConfig::with_url(
            test,
            &accounts,
            &support::clickhouse_url(),
            &format!("[sync]\n{sync}\n"),
        );
        let validated = config.validated();
        let mut app = App::new(validated.clone()).unwrap();
        // Timeouts, deadline and size cap stay as configured; only the waits
        // between retries are cut short.
        app.retry.base_delay = Duration::from_millis(10);
        app.retry.max_delay = Duration::from_millis(100);
        migrations::migrate(&app.store).await.unwrap();
        let writer = WriterActor::start_with_handle(app.store.clone(), validated.writer.clone());
        let sink = writer.sink();
        let syncs = validated
            .accounts
            .iter()
            .map(|a| app.account_sync(a, sink.clone()).unwrap())
            .collect();
        Harness {
            config,
            sim,
            mock,
            syncs,
            sink,
            _writer: writer,
            hostile: hostile.iter().map(|(id, api)| (id.to_string(), *api)).collect(),
        }
    }

    /// One sync of every account at once, as `tokentra-sync sync` runs them.
    async fn sync_all(&self) -> BTreeMap<String, Vec<SyncReport>> {
        let runs = self.syncs.iter().map(|sync| async move {
            let reports = sync
                .run(SyncKind::Incremental, "test")
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", sync.account.id));
            (sync.account.id.clone(), reports)
        });
        let out = futures::future::join_all(runs).await.into_iter().collect();
        self.sink.flush().await.unwrap();
        out
    }

    /// The first sync, all providers good: every account stores its data.
    async fn preload(&self) -> BTreeMap<String, String> {
        let reports = self.sync_all().await;
        for (id, reports) in &reports {
            assert!(reports.iter().all(|r| r.succeeded), "{id}: {reports:?}");
        }
        let expected_openai = mock::expected_daily(Api::OpenAi, self.mock.base_day());
        assert_eq!(self.daily(HEALTHY).await, expected_openai);
        for (id, api) in &self.hostile {
            assert_eq!(
                self.daily(id).await,
                mock::expected_daily(*api, self.mock.base_day()),
                "{id} before turning hostile"
            );
        }
        self.assert_sim_matches_truth().await;
        let mut snapshots = BTreeMap::new();
        for id in self.all_ids() {
            snapshots.insert(id.clone(), self.snapshot(&id).await);
        }
        snapshots
    }

    fn all_ids(&self) -> Vec<String> {
        self.syncs.iter().map(|s| s.account.id.clone()).collect()
    }

    async fn tsv(&self, sql: &str) -> String {
        support::query_tsv(&self.config.client(), sql).await
    }

    /// `usage_daily` of one account per day, all-zero days left out, money
    /// in canonical form.
    async fn daily(&self, account: &str) -> Daily {
        let tsv = self
            .tsv(&format!(
                "SELECT toString(day), sum(input_tokens), sum(output_tokens), sum(requests), toString(sum(cost)) \
                 FROM {{db}}.usage_daily WHERE connection_id = '{account}' GROUP BY day ORDER BY day"
            ))
            .await;
        parse_daily(&tsv)
    }

    /// Everything stored for one account: raw rows, rollup, watermark.
    async fn snapshot(&self, account: &str) -> String {
        let records = self
            .tsv(&format!(
                "SELECT count(), sum(sign), sum(input_tokens * sign), sum(output_tokens * sign), \
                        toString(sum(cost * sign)), toString(sum(quantity * sign)), max(version), \
                        countIf(sign = -1) \
                 FROM {{db}}.usage_records WHERE connection_id = '{account}'"
            ))
            .await;
        let daily = self.daily(account).await;
        let state = self.watermark(account).await;
        format!("usage_records: {records}usage_daily: {daily:?}\nsync_state: {state}")
    }

    /// The newest watermark and when it was written (grows with every write).
    async fn watermark(&self, account: &str) -> String {
        self.tsv(&format!(
            "SELECT toString(argMax(watermark, updated_at)), max(updated_at) FROM {{db}}.sync_state \
             WHERE connection_id = '{account}'"
        ))
        .await
        .trim()
        .to_string()
    }

    async fn assert_sim_matches_truth(&self) {
        let today = self.mock.base_day();
        let since = (today - chrono::Duration::days(7)).to_string();
        let truth = support::truth_days(&self.sim, "anthropic", "org-1", &since, &today.to_string()).await;
        let mut per_day: BTreeMap<String, (i64, i64, i64, Decimal)> = BTreeMap::new();
        for row in truth {
            let e = per_day.entry(row.day.clone()).or_default();
            e.0 += row.input_tokens;
            e.1 += row.output_tokens;
            e.2 += row.requests;
            e.3 += Decimal::from_str(&row.cost).unwrap();
        }
        let expected: Daily = per_day
            .into_iter()
            .map(|(day, (i, o, r, c))| (day, i, o, r, c.normalize().to_string()))
            .filter(|(_, i, o, r, c)| *i != 0 || *o != 0 || *r != 0 || c != "0")
            .collect();
        assert!(!expected.is_empty(), "the simulator has data");
        let stored: Daily = self
            .daily(SIM_ACCOUNT)
            .await
            .into_iter()
            .filter(|(day, ..)| day.as_str() >= since.as_str() && day.as_str() < today.to_string().as_str())
            .collect();
        assert_eq!(
            stored, expected,
            "the simulated Anthropic account differs from the truth"
        );
    }

    /// The second sync, with the hostile accounts misbehaving: checks
    /// everything but the failure's details (see [`Harness::assert_failed`]).
    async fn hostile_sync(&self, before: &BTreeMap<String, String>) -> BTreeMap<String, Vec<SyncReport>> {
        let reports = self.sync_all().await;
        // The healthy accounts synced exactly and moved their watermark: the
        // same check that must find the hostile ones unmoved can see a move.
        for healthy in [HEALTHY, SIM_ACCOUNT] {
            let r = &reports[healthy];
            assert!(r.iter().all(|r| r.succeeded), "{healthy}: {r:?}");
            assert_ne!(
                self.watermark(healthy).await,
                before[healthy].rsplit("sync_state: ").next().unwrap(),
                "{healthy}: a successful sync stores a watermark"
            );
        }
        assert_eq!(
            self.daily(HEALTHY).await,
            mock::expected_daily(Api::OpenAi, self.mock.base_day())
        );
        self.assert_sim_matches_truth().await;
        for (id, _) in &self.hostile {
            assert_eq!(
                &self.snapshot(id).await,
                &before[id],
                "{id}: stored data or watermark changed"
            );
        }
        reports
    }

    /// The hostile account's one report failed with `kind`, each of
    /// `endpoints` failed with a message naming account and endpoint and
    /// containing `needle`; `sync_runs` and the failure metric say the same.
    /// Returns the report's errors, one a line.
    async fn assert_failed(
        &self,
        reports: &BTreeMap<String, Vec<SyncReport>>,
        account: &str,
        kind: &str,
        endpoints: &[&str],
        needle: &str,
    ) -> String {
        let r = &reports[account];
        assert_eq!(r.len(), 1, "{account}: one window, one report: {r:?}");
        let report = &r[0];
        assert!(!report.succeeded, "{account}: {report:?}");
        assert_eq!(
            report.error_kind.map(|k| k.as_str()),
            Some(kind),
            "{account}: {report:?}"
        );
        assert_errors_name(account, &report.errors, endpoints, needle);
        self.assert_recorded(account, kind, endpoints).await;
        let metrics = tokentra_sync::metrics::render();
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("tokentra_sync_sync_failures_total{")
                    && l.contains(&format!("account=\"{account}\""))
                    && l.contains(&format!("kind=\"{kind}\""))
            })
            .unwrap_or_else(|| panic!("no failure metric for {account}/{kind}:\n{metrics}"));
        assert!(line.ends_with(" 1"), "{line}");
        report.errors.join("\n")
    }

    /// Exactly one failed run of `account` in `sync_runs`, of `kind`, whose
    /// error names the account and every endpoint in `endpoints`.
    async fn assert_recorded(&self, account: &str, kind: &str, endpoints: &[&str]) -> String {
        let runs = self
            .tsv(&format!(
                "SELECT status, error_kind, replaceAll(error, '\\n', ' | ') FROM {{db}}.sync_runs \
                 WHERE connection_id = '{account}' AND status != 'success'"
            ))
            .await;
        let rows: Vec<&str> = runs.lines().collect();
        assert_eq!(rows.len(), 1, "{account}: one failed run: {runs}");
        // TabSeparated escapes quotes.
        let row = rows[0].replace("\\'", "'");
        let fields: Vec<&str> = row.splitn(3, '\t').collect();
        assert_eq!(&fields[..2], &["failed", kind], "{runs}");
        for endpoint in endpoints {
            assert!(
                fields[2].contains(&format!("{endpoint}:")) && fields[2].contains(&format!("account '{account}'")),
                "{runs}"
            );
        }
        fields[2].to_string()
    }

    async fn stop(self) {
        self.mock.stop().await;
        self.sim.stop().await;
    }
}

/// Every error names the account; each endpoint has an error of its own
/// that contains `needle`.
fn assert_errors_name(account: &str, errors: &[String], endpoints: &[&str], needle: &str) {
    assert!(!errors.is_empty(), "{account}: no errors");
    for error in errors {
        assert!(error.contains(&format!("account '{account}'")), "{error}");
    }
    for endpoint in endpoints {
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&format!("{endpoint}:")) && e.contains(needle)),
            "{account}: no error names {endpoint} with '{needle}': {errors:#?}"
        );
    }
}

fn parse_daily(tsv: &str) -> Daily {
    tsv.lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                Decimal::from_str(f[4]).unwrap().normalize().to_string(),
            )
        })
        .filter(|(_, i, o, r, c)| *i != 0 || *o != 0 || *r != 0 || c != "0")
        .collect()
}

fn json_number(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[actix_rt::test]
async fn a_bucket_served_on_two_pages_fails_and_is_never_summed() {
    let h = Harness::start(
        "dup",
        &[("dup-openai", Api::OpenAi), ("dup-anthropic", Api::Anthropic)],
        "",
    )
    .await;
    let before = h.preload().await;
    h.mock.set("dup-openai", &["*"], Behavior::DuplicateBucket);
    h.mock.set("dup-anthropic", &["*"], Behavior::DuplicateBucket);
    let reports = h.hostile_sync(&before).await;
    h.assert_failed(
        &reports,
        "dup-openai",
        "malformed",
        &["completions", "costs"],
        "already returned on an earlier page",
    )
    .await;
    h.assert_failed(
        &reports,
        "dup-anthropic",
        "malformed",
        &["usage_report/messages", "cost_report"],
        "already returned on an earlier page",
    )
    .await;
    h.stop().await;
}

#[actix_rt::test]
async fn a_bucket_outside_the_asked_window_fails_and_cancels_nothing_stored_there() {
    let h = Harness::start(
        "outside",
        &[("outside-openai", Api::OpenAi), ("outside-anthropic", Api::Anthropic)],
        "",
    )
    .await;
    let before = h.preload().await;
    // Day -4 holds stored rows; the incremental window (lookback 2-3 days)
    // does not reach it. An empty bucket there would cancel them.
    let outside = mock::day_start(h.mock.base_day(), -4) + chrono::Duration::hours(10);
    let outside_day = outside.date_naive().to_string();
    for (id, api) in [("outside-openai", Api::OpenAi), ("outside-anthropic", Api::Anthropic)] {
        let stored = h.daily(id).await;
        assert!(
            stored.iter().any(|d| d.0 == outside_day),
            "{id} has rows on {outside_day}"
        );
        h.mock.set(id, api.endpoints(), Behavior::OutsideWindow(outside));
    }
    let reports = h.hostile_sync(&before).await;
    h.assert_failed(
        &reports,
        "outside-openai",
        "malformed",
        &["completions", "costs"],
        "is outside the asked window",
    )
    .await;
    h.assert_failed(
        &reports,
        "outside-anthropic",
        "malformed",
        &["usage_report/messages", "cost_report"],
        "is outside the asked window",
    )
    .await;
    let cancels = support::count(
        &h.config.client(),
        "SELECT count() FROM {db}.usage_records WHERE connection_id LIKE 'outside-%' AND sign = -1",
    )
    .await;
    assert_eq!(cancels, 0, "no stored row was cancelled");
    h.stop().await;
}

#[actix_rt::test]
async fn overflowing_negative_and_absurd_numbers_fail_their_endpoint() {
    let h = Harness::start(
        "numbers",
        &[
            ("numbers-openai", Api::OpenAi),
            ("numbers-anthropic", Api::Anthropic),
            ("numbers-sum-openai", Api::OpenAi),
        ],
        "",
    )
    .await;
    let before = h.preload().await;
    let max = i64::MAX;
    let model = "gpt-4o-mini-2024-07-18";
    // Two i64::MAX counts in one bucket (their sum overflows).
    h.mock.set(
        "numbers-openai",
        &["completions"],
        Behavior::Results(vec![
            mock::openai_completion(model, max, 1),
            mock::openai_completion("gpt-4o-2024-08-06", max, 1),
        ]),
    );
    // A negative count.
    h.mock.set(
        "numbers-openai",
        &["embeddings"],
        Behavior::Results(vec![mock::openai_completion("text-embedding-3-small", -5, 0)]),
    );
    // A count beyond 64 bits.
    h.mock.set(
        "numbers-openai",
        &["moderations"],
        Behavior::Results(vec![mock::openai_completion(
            "omni-moderation-latest",
            json_number("18446744073709551616"),
            0,
        )]),
    );
    // 10^30 dollars (beyond Decimal), and two of the largest decimals.
    h.mock.set(
        "numbers-openai",
        &["costs"],
        Behavior::Results(vec![mock::openai_cost("gpt-4o, input", json_number("1e30"))]),
    );
    h.mock.set(
        "numbers-anthropic",
        &["usage_report/messages"],
        Behavior::Results(vec![mock::anthropic_usage(max, max, 1)]),
    );
    let biggest = Decimal::MAX.to_string();
    let mut second = mock::anthropic_cost(serde_json::json!(biggest));
    second["description"] = serde_json::json!("Claude Sonnet 4 Usage - Output Tokens");
    h.mock.set(
        "numbers-anthropic",
        &["cost_report"],
        Behavior::Results(vec![mock::anthropic_cost(serde_json::json!(biggest)), second]),
    );
    // Counts each at the 2^53 limit, 1100 of them in one bucket: their sum
    // does not fit the daily rollup's Int64.
    let at_limit = 1_i64 << 53;
    h.mock.set(
        "numbers-sum-openai",
        &["completions"],
        Behavior::Results(
            (0..1100)
                .map(|i| mock::openai_completion(&format!("gpt-4o-mini-2024-07-18-ft-{i}"), at_limit, 0))
                .collect(),
        ),
    );
    let reports = h.hostile_sync(&before).await;
    h.assert_failed(
        &reports,
        "numbers-sum-openai",
        "malformed",
        &["completions"],
        "add up to",
    )
    .await;
    let openai = h
        .assert_failed(&reports, "numbers-openai", "malformed", &["completions"], "above 2^53")
        .await;
    for needle in [
        "embeddings: malformed response: page 1: bucket",
        "input_tokens is negative (-5)",
        "moderations: malformed response",
        "should be a whole number",
        "costs: malformed response",
        "not a decimal number (1e",
    ] {
        assert!(openai.contains(needle), "'{needle}' in {openai}");
    }
    let anthropic = h
        .assert_failed(
            &reports,
            "numbers-anthropic",
            "malformed",
            &["usage_report/messages"],
            "overflow",
        )
        .await;
    assert!(
        anthropic.contains("cost_report: malformed response") && anthropic.contains("beyond any real bill"),
        "{anthropic}"
    );
    h.stop().await;
}

#[actix_rt::test]
async fn endless_paging_with_fresh_cursors_stops_within_the_windows_buckets() {
    let h = Harness::start(
        "endless",
        &[("endless-openai", Api::OpenAi), ("endless-anthropic", Api::Anthropic)],
        "",
    )
    .await;
    let before = h.preload().await;
    h.mock.set("endless-openai", &["completions"], Behavior::EndlessPaging);
    h.mock
        .set("endless-anthropic", &["usage_report/messages"], Behavior::EndlessPaging);
    h.mock.clear_seen();
    let reports = h.hostile_sync(&before).await;
    h.assert_failed(
        &reports,
        "endless-openai",
        "malformed",
        &["completions"],
        "paging would not end",
    )
    .await;
    h.assert_failed(
        &reports,
        "endless-anthropic",
        "malformed",
        &["usage_report/messages"],
        "paging would not end",
    )
    .await;
    let seen = h.mock.seen();
    for (account, endpoint, start, end) in [
        ("endless-openai", "completions", "start_time", "end_time"),
        ("endless-anthropic", "usage_report/messages", "starting_at", "ending_at"),
    ] {
        let requests: Vec<_> = seen
            .iter()
            .filter(|s| s.account == account && s.endpoint == endpoint)
            .collect();
        let first = requests.first().expect("the endpoint was asked");
        let secs = |name: &str| {
            let v = first.param(name).unwrap();
            v.parse::<i64>()
                .unwrap_or_else(|_| chrono::DateTime::parse_from_rfc3339(v).unwrap().timestamp())
        };
        // Hourly buckets the asked window touches.
        let buckets = (secs(end) - secs(start) + 3_599) / 3_600;
        assert!(buckets >= 48, "{account}: a window of at least the lookback");
        assert!(
            requests.len() as i64 <= buckets + 2,
            "{account}: {} requests for a window of {buckets} buckets",
            requests.len()
        );
        // Every cursor was fresh: the loop stopped on its page guards, not
        // on a repeated cursor.
        let cursors: std::collections::HashSet<_> = requests.iter().filter_map(|s| s.param("page")).collect();
        assert_eq!(cursors.len(), requests.len() - 1);
    }
    h.stop().await;
}

#[actix_rt::test]
async fn a_redirect_to_another_origin_never_carries_the_credential() {
    let h = Harness::start(
        "redirect",
        &[("redirect-openai", Api::OpenAi), ("redirect-anthropic", Api::Anthropic)],
        "",
    )
    .await;
    let before = h.preload().await;
    let other = Mock::start().await;
    assert_ne!(other.origin(), h.mock.origin());
    h.mock
        .set("redirect-openai", &["*"], Behavior::RedirectTo(other.origin()));
    h.mock
        .set("redirect-anthropic", &["*"], Behavior::RedirectTo(other.origin()));
    h.mock.clear_seen();
    let reports = h.hostile_sync(&before).await;
    // The first hop carried the credentials (so their absence below means
    // something); the other origin never received one.
    let first_hops = h.mock.seen();
    for (account, header) in [
        ("redirect-openai", "authorization"),
        ("redirect-anthropic", "x-api-key"),
    ] {
        assert!(
            first_hops
                .iter()
                .any(|s| s.account == account && s.headers.iter().any(|(k, _)| k == header)),
            "{account} sent {header} to its own origin"
        );
    }
    for seen in other.seen() {
        for (name, value) in &seen.headers {
            assert!(
                name != "authorization" && name != "x-api-key" && !value.contains("FAKE-hostile"),
                "the other origin received a credential: {seen:?}"
            );
        }
    }
    h.assert_failed(
        &reports,
        "redirect-openai",
        "request",
        &["completions", "costs"],
        "redirect to another origin",
    )
    .await;
    h.assert_failed(
        &reports,
        "redirect-anthropic",
        "request",
        &["usage_report/messages", "cost_report"],
        "redirect to another origin",
    )
    .await;
    other.stop().await;
    h.stop().await;
}

#[actix_rt::test]
async fn a_provider_that_never_answers_fails_as_a_timeout() {
    let h = Harness::start(
        "hang",
        &[("hang-openai", Api::OpenAi), ("hang-anthropic", Api::Anthropic)],
        "request_timeout = \"1s\"\nendpoint_deadline = \"3s\"",
    )
    .await;
    let before = h.preload().await;
    h.mock.set("hang-openai", &["completions", "costs"], Behavior::Hang);
    h.mock.set("hang-anthropic", &["usage_report/messages"], Behavior::Hang);
    h.mock.clear_seen();
    let reports = h.hostile_sync(&before).await;
    h.assert_failed(&reports, "hang-openai", "timeout", &["completions", "costs"], "")
        .await;
    h.assert_failed(&reports, "hang-anthropic", "timeout", &["usage_report/messages"], "")
        .await;
    // The requests reached the server and were held there.
    let held = h
        .mock
        .seen()
        .iter()
        .filter(|s| s.account == "hang-openai" && s.endpoint == "completions")
        .count();
    assert!(held >= 1);
    h.stop().await;
}

#[actix_rt::test]
async fn a_provider_that_stalls_before_or_inside_the_body_fails_as_a_timeout_after_its_retries() {
    // A deadline long enough for every attempt to time out on its own.
    let h = Harness::start(
        "stall",
        &[("stall-openai", Api::OpenAi), ("silent-openai", Api::OpenAi)],
        "request_timeout = \"1s\"\nendpoint_deadline = \"2m\"",
    )
    .await;
    let before = h.preload().await;
    h.mock.set("stall-openai", &["completions"], Behavior::Stall);
    h.mock.set("silent-openai", &["completions"], Behavior::Hang);
    h.mock.clear_seen();
    let reports = h.hostile_sync(&before).await;
    h.assert_failed(
        &reports,
        "stall-openai",
        "timeout",
        &["completions"],
        "gave up after 6 attempts (timeout)",
    )
    .await;
    h.assert_failed(
        &reports,
        "silent-openai",
        "timeout",
        &["completions"],
        "gave up after 6 attempts (timeout)",
    )
    .await;
    h.stop().await;
}

/// The test process's peak resident memory, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[actix_rt::test]
async fn a_huge_page_fails_as_malformed_and_memory_stays_bounded() {
    let h = Harness::start("huge", &[("huge-openai", Api::OpenAi)], "max_response_mb = 1").await;
    let before = h.preload().await;
    // Every endpoint streams 300 MiB without a length; costs declares it.
    h.mock
        .set("huge-openai", &["*"], Behavior::Huge { declared_length: false });
    h.mock
        .set("huge-openai", &["costs"], Behavior::Huge { declared_length: true });
    let hwm_before = vm_hwm_kib();
    let reports = h.hostile_sync(&before).await;
    let hwm_after = vm_hwm_kib();
    let errors = h
        .assert_failed(
            &reports,
            "huge-openai",
            "malformed",
            &["completions", "costs", "vector_stores"],
            "larger than 1048576 bytes",
        )
        .await;
    assert_eq!(errors.lines().count(), 11, "every endpoint failed: {errors}");
    let growth_mib = (hwm_after - hwm_before) / 1024;
    assert!(growth_mib < 64, "peak memory grew by {growth_mib} MiB");
    let sent = h.mock.state.huge_bytes_sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        sent > 1024 * 1024,
        "the chunked pages were streamed past the cap: {sent}"
    );
    assert!(
        sent < mock::HUGE_BYTES,
        "the client hung up early instead of reading {sent} bytes"
    );
    h.stop().await;
}

#[actix_rt::test]
async fn an_absurd_retry_after_fails_as_throttled_without_panicking() {
    let h = Harness::start("retry-after", &[("throttled-openai", Api::OpenAi)], "").await;
    let before = h.preload().await;
    h.mock.set(
        "throttled-openai",
        &["*"],
        Behavior::Status {
            status: 429,
            headers: vec![("retry-after", "1e20".to_string())],
            body: r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#.to_string(),
        },
    );
    h.mock.clear_seen();
    let reports = h.hostile_sync(&before).await;
    h.assert_failed(
        &reports,
        "throttled-openai",
        "throttled",
        &["completions", "costs"],
        "exceeds the 300s limit",
    )
    .await;
    // Given up at once: one request per endpoint, no wait.
    let requests = h.mock.seen().iter().filter(|s| s.account == "throttled-openai").count();
    assert_eq!(requests, Api::OpenAi.endpoints().len());
    h.stop().await;
}

impl Harness {
    /// `tokentra-sync sync` (the real binary) over every account, logs at
    /// trace level (every crate, HTTP included) captured: (exit code,
    /// stdout, stderr).
    async fn sync_with_binary(&self) -> (Option<i32>, String, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
            .args(["sync", "-c"])
            .arg(self.config.write())
            .env("TOKENTRA_LOG", "trace")
            .output()
            .await
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[actix_rt::test]
async fn a_key_echoed_back_appears_in_no_error_row_or_log() {
    let hostile = [("echo-openai", Api::OpenAi), ("echo-anthropic", Api::Anthropic)];
    let h = Harness::start("echo", &hostile, "").await;
    let (code, stdout, stderr) = h.sync_with_binary().await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    let before = {
        let mut snapshots = BTreeMap::new();
        for id in h.all_ids() {
            snapshots.insert(id.clone(), h.snapshot(&id).await);
        }
        snapshots
    };
    for (id, api) in hostile {
        assert_eq!(h.daily(id).await, mock::expected_daily(api, h.mock.base_day()));
    }
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let openai_key = Api::OpenAi.key("echo-openai");
    let anthropic_key = Api::Anthropic.key("echo-anthropic");
    // The key as an amount, and in error bodies verbatim and base64-encoded.
    h.mock.set(
        "echo-openai",
        &["costs"],
        Behavior::Results(vec![mock::openai_cost("gpt-4o, input", serde_json::json!(openai_key))]),
    );
    h.mock.set(
        "echo-openai",
        &["completions"],
        Behavior::Status {
            status: 400,
            headers: Vec::new(),
            body: format!(
                r#"{{"error":{{"message":"Incorrect API key provided: {openai_key}. Authorization: Bearer {}","type":"invalid_request_error"}}}}"#,
                b64(&openai_key)
            ),
        },
    );
    h.mock.set(
        "echo-anthropic",
        &["cost_report"],
        Behavior::Results(vec![mock::anthropic_cost(serde_json::json!(b64(&anthropic_key)))]),
    );
    h.mock.set(
        "echo-anthropic",
        &["usage_report/messages"],
        Behavior::Status {
            status: 400,
            headers: Vec::new(),
            body: format!(
                r#"{{"type":"error","error":{{"type":"invalid_request_error","message":"bad request for x-api-key {anthropic_key} (Basic {})"}}}}"#,
                b64(&format!("admin:{anthropic_key}"))
            ),
        },
    );
    let (code, stdout, stderr) = h.sync_with_binary().await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let runs = h.tsv("SELECT connection_id, status, error FROM {db}.sync_runs").await;
    // Every row of every table, every column: no String column holds a key.
    let tables = h
        .tsv("SELECT name FROM system.tables WHERE database = '{db}' AND engine NOT LIKE '%View%'")
        .await;
    let mut stored = String::new();
    for table in tables.lines() {
        stored.push_str(&h.tsv(&format!("SELECT * FROM {{db}}.{table}")).await);
    }
    assert!(stored.contains("echo-openai"), "the dump reads the tables");
    let forms = |key: &str| {
        let mut forms = vec![
            key.to_string(),
            b64(key),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key),
        ];
        // Any 16-character run of the key or of its base64 forms.
        let runs: Vec<String> = forms
            .iter()
            .flat_map(|f| {
                let chars: Vec<char> = f.chars().collect();
                chars
                    .windows(16)
                    .step_by(4)
                    .map(|w| w.iter().collect::<String>())
                    .collect::<Vec<_>>()
            })
            .collect();
        forms.extend(runs);
        forms
    };
    for key in [&openai_key, &anthropic_key] {
        for form in forms(key) {
            for (place, text) in [
                ("stdout", &stdout),
                ("stderr (trace logs)", &stderr),
                ("sync_runs", &runs),
                ("a ClickHouse table", &stored),
            ] {
                assert!(!text.contains(&form), "'{form}' of a key leaked into {place}:\n{text}");
            }
        }
    }
    // The echoes did reach the kept texts, redacted.
    assert!(
        stdout.contains("<redacted>") && runs.contains("<redacted>"),
        "{stdout}\n{runs}"
    );
    for (id, kind, endpoints) in [
        ("echo-openai", "request", ["completions", "costs"]),
        ("echo-anthropic", "request", ["usage_report/messages", "cost_report"]),
    ] {
        let errors: Vec<String> = stdout
            .lines()
            .skip_while(|l| !l.starts_with(id))
            .skip(1)
            .take_while(|l| l.starts_with("  error: "))
            .map(str::to_string)
            .collect();
        assert!(
            stdout.lines().any(|l| l.starts_with(id) && l.contains("failed")),
            "{stdout}"
        );
        assert_errors_name(id, &errors, &endpoints, "");
        h.assert_recorded(id, kind, &endpoints).await;
        assert_eq!(
            h.snapshot(id).await,
            before[id],
            "{id}: stored data or watermark changed"
        );
    }
    for healthy in [HEALTHY, SIM_ACCOUNT] {
        assert!(
            stdout.lines().any(|l| l.starts_with(healthy) && l.contains("success")),
            "{stdout}"
        );
        assert_ne!(
            h.snapshot(healthy).await,
            before[healthy],
            "{healthy} stored a new watermark"
        );
    }
    assert_eq!(
        h.daily(HEALTHY).await,
        mock::expected_daily(Api::OpenAi, h.mock.base_day())
    );
    h.assert_sim_matches_truth().await;
    h.stop().await;
}

#[actix_rt::test]
async fn an_account_locked_at_daemon_start_is_not_ready_then_starts_once_the_lock_is_free() {
    let sim = support::start_sim(32, 1).await;
    let mock = Mock::start().await;
    let mut accounts = support::sim_accounts(&sim, &["org-1"], &["anthropic"]);
    let url = mock.add_account(HEALTHY, Api::OpenAi);
    accounts.push_str(&account_toml(HEALTHY, "openai", &url, &Api::OpenAi.key(HEALTHY)));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = TestConfig::with_url(
        "locked",
        &accounts,
        &support::clickhouse_url(),
        &format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let client = config.client();
    // Another owner holds the account when the daemon starts.
    let lock = tokentra_sync::lock::AccountLock::acquire(config.dir.path(), SIM_ACCOUNT).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["run", "-c"])
        .arg(config.write())
        .env("TOKENTRA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let readyz = || async {
        let r = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await.ok()?;
        Some((r.status().as_u16(), r.text().await.ok()?))
    };
    let count = |sql: String| {
        let client = client.clone();
        async move { support::count(&client, &sql).await }
    };
    let successes = |account: &'static str| {
        count(format!(
            "SELECT count() FROM {{db}}.sync_runs WHERE connection_id = '{account}' AND status = 'success'"
        ))
    };
    // Once migrated, /readyz names the locked account; the other one runs
    // and syncs meanwhile.
    eventually(
        "/readyz to name the locked account",
        Duration::from_secs(60),
        || async { readyz().await.filter(|(_, body)| body.contains("cannot start")) },
    )
    .await;
    eventually("the healthy account's first sync", Duration::from_secs(120), || async {
        (successes(HEALTHY).await >= 1).then_some(())
    })
    .await;
    let (status, body) = readyz().await.expect("/readyz answers");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("account '{SIM_ACCOUNT}'")) && body.contains("1 cannot start") && body.contains("lock"),
        "{body}"
    );
    assert!(!body.contains(&format!("account '{HEALTHY}'")), "{body}");
    assert_eq!(
        successes(SIM_ACCOUNT).await
            + count(format!(
                "SELECT count() FROM {{db}}.sync_state WHERE connection_id = '{SIM_ACCOUNT}'"
            ))
            .await,
        0,
        "nothing was synced for the locked account"
    );

    drop(lock);
    eventually("the freed account to sync", Duration::from_secs(120), || async {
        (successes(SIM_ACCOUNT).await >= 1).then_some(())
    })
    .await;
    let body = eventually("/readyz to turn 200", Duration::from_secs(30), || async {
        readyz()
            .await
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    })
    .await;
    assert!(body.contains("2 accounts running"), "{body}");
    eventually("the freed account's watermark", Duration::from_secs(60), || async {
        let stored = count(format!(
            "SELECT count() FROM {{db}}.sync_state WHERE connection_id = '{SIM_ACCOUNT}'"
        ))
        .await;
        (stored >= 1).then_some(())
    })
    .await;
    let days = count(format!(
        "SELECT uniqExact(day) FROM {{db}}.usage_daily WHERE connection_id = '{SIM_ACCOUNT}'"
    ))
    .await;
    assert!(days >= 7, "a 7-day backfill, got {days} days");

    let pid = child.id().unwrap().to_string();
    let status = tokio::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(80), child.wait())
        .await
        .expect("the daemon stops within its grace periods")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    mock.stop().await;
    sim.stop().await;
}
