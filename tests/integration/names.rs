//! Names: the provider's workspace and key names pulled from the simulator
//! into ClickHouse (history kept, nothing repeated), display names with
//! rename / history / revert through the real binary, one dashboard row for
//! one display name across providers, and a names outage that leaves the
//! usage sync alone.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use rust_decimal::Decimal;
use tokentra_sync::actors::writer::WriterActor;
use tokentra_sync::app::App;
use tokentra_sync::providers::RetryPolicy;
use tokentra_sync::simulator::{NameChange, SimHandle};
use tokentra_sync::store::migrations;
use tokentra_sync::store::ClickhouseClient;
use tokentra_sync::sync::window::SyncKind;
use tokentra_sync::sync::AccountSync;

use crate::dashboards::{load_dashboards, run_dashboard, TimeRange, Vars};
use crate::support::{self, TestConfig};

const OPENAI: &str = "openai-org-1";
const ANTHROPIC: &str = "anthropic-org-1";

/// Both simulated providers of org-1, names re-read on every sync.
fn config(test: &str, sim: &SimHandle) -> TestConfig {
    let accounts = support::sim_accounts(sim, &["org-1"], &["openai", "anthropic"]);
    TestConfig::with_url(
        test,
        &accounts,
        &support::clickhouse_url(),
        "[sync]\nnames_interval = \"0s\"\n",
    )
}

/// One `AccountSync` per account (openai first), with quick retries.
async fn syncs(config: &TestConfig) -> Vec<AccountSync> {
    let validated = config.validated();
    let mut app = App::new(validated.clone()).unwrap();
    app.retry = RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        request_timeout: Duration::from_secs(10),
        ..RetryPolicy::default()
    };
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), validated.writer.clone());
    validated
        .accounts
        .iter()
        .map(|a| app.account_sync(a, writer.sink()).unwrap())
        .collect()
}

fn last_two_days() -> SyncKind {
    let today = Utc::now().date_naive();
    SyncKind::Explicit {
        since: (today - chrono::Duration::days(2))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc(),
        until: Some(today.and_hms_opt(0, 0, 0).unwrap().and_utc()),
    }
}

async fn sync_all(syncs: &[AccountSync]) {
    for sync in syncs {
        let reports = sync.run(last_two_days(), "test").await.unwrap();
        assert!(reports.iter().all(|r| r.succeeded), "{reports:?}");
        sync.writer.flush().await.unwrap();
    }
}

async fn lines(client: &ClickhouseClient, sql: &str) -> Vec<String> {
    support::query_tsv(client, sql)
        .await
        .lines()
        .map(str::to_string)
        .collect()
}

/// Workspace ids of an account's usage (OpenAI: projects).
async fn usage_workspaces(client: &ClickhouseClient, account: &str) -> BTreeSet<String> {
    lines(
        client,
        &format!(
            "SELECT DISTINCT if(workspace_id != '', workspace_id, project_id) AS ws FROM {{db}}.usage_daily \
             WHERE connection_id = '{account}' AND ws != ''"
        ),
    )
    .await
    .into_iter()
    .collect()
}

async fn tokentra(config: &TestConfig, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .arg("workspaces")
        .arg(args[0])
        .arg("-c")
        .arg(config.write())
        .args(&args[1..])
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[actix_rt::test]
async fn names_are_pulled_from_the_simulator_for_the_ids_in_the_usage() {
    let sim = support::start_sim(31, 1).await;
    let config = config("names_pull", &sim);
    let client = config.client();
    let syncs = syncs(&config).await;
    sync_all(&syncs).await;

    for account in [OPENAI, ANTHROPIC] {
        let named: BTreeSet<String> = lines(
            &client,
            &format!(
                "SELECT workspace_id FROM {{db}}.workspace_names WHERE connection_id = '{account}' AND name != ''"
            ),
        )
        .await
        .into_iter()
        .collect();
        let used = usage_workspaces(&client, account).await;
        assert!(!used.is_empty(), "{account} has workspaces in its usage");
        assert!(
            used.is_subset(&named),
            "{account}: every workspace in the usage has a name: {used:?} vs {named:?}"
        );

        let keys_used: BTreeSet<String> = lines(
            &client,
            &format!("SELECT DISTINCT api_key_id FROM {{db}}.usage_daily WHERE connection_id = '{account}' AND api_key_id != ''"),
        )
        .await
        .into_iter()
        .collect();
        let keys = lines(
            &client,
            &format!(
                "SELECT api_key_id, name, key_hint, workspace_id FROM {{db}}.api_key_names \
                 WHERE connection_id = '{account}' ORDER BY api_key_id"
            ),
        )
        .await;
        let named_keys: BTreeSet<String> = keys.iter().map(|l| l.split('\t').next().unwrap().to_string()).collect();
        assert!(
            !keys_used.is_empty() && keys_used.is_subset(&named_keys),
            "{account}: {keys_used:?} vs {keys:?}"
        );
        for line in &keys {
            let fields: Vec<&str> = line.split('\t').collect();
            assert!(!fields[1].is_empty(), "a key name: {line}");
            assert!(fields[2].contains("..."), "only a masked hint is stored: {line}");
        }
    }
    let names = lines(
        &client,
        "SELECT name FROM {db}.workspace_names WHERE connection_id = 'openai-org-1' ORDER BY name",
    )
    .await;
    assert_eq!(names, ["Chatbot (org-1)", "Data Platform (org-1)", "Search (org-1)"]);

    // Names unchanged: a second sync appends nothing.
    let before = support::count(&client, "SELECT count() FROM {db}.workspace_names").await
        + support::count(&client, "SELECT count() FROM {db}.api_key_names").await;
    sync_all(&syncs).await;
    let after = support::count(&client, "SELECT count() FROM {db}.workspace_names").await
        + support::count(&client, "SELECT count() FROM {db}.api_key_names").await;
    assert_eq!(before, after, "an identical name is not inserted again");
    sim.stop().await;
}

#[actix_rt::test]
async fn a_rename_at_the_provider_becomes_a_history_row() {
    let sim = support::start_sim(32, 1).await;
    let config = config("names_provider_rename", &sim);
    let client = config.client();
    let syncs = syncs(&config).await;
    sync_all(&syncs[..1]).await;
    let project = usage_workspaces(&client, OPENAI).await.into_iter().next().unwrap();
    let key = lines(
        &client,
        "SELECT api_key_id FROM {db}.api_key_names ORDER BY api_key_id LIMIT 1",
    )
    .await[0]
        .clone();
    for (id, name) in [(&project, "Search v2"), (&key, "prod-backend-rotated")] {
        sim.rename(NameChange {
            provider: "openai".into(),
            org: "org-1".into(),
            id: id.clone(),
            name: name.into(),
        });
    }
    sync_all(&syncs[..1]).await;

    let history = lines(
        &client,
        &format!("SELECT name FROM {{db}}.workspace_names WHERE workspace_id = '{project}' ORDER BY observed_at"),
    )
    .await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[1], "Search v2");
    let current = lines(
        &client,
        &format!("SELECT argMax(name, observed_at) AS n FROM {{db}}.workspace_names WHERE workspace_id = '{project}'"),
    )
    .await;
    assert_eq!(current, ["Search v2"]);
    let key_history = lines(
        &client,
        &format!("SELECT name FROM {{db}}.api_key_names WHERE api_key_id = '{key}' ORDER BY observed_at"),
    )
    .await;
    assert_eq!(key_history.len(), 2, "{key_history:?}");
    assert_eq!(key_history[1], "prod-backend-rotated");
    sim.stop().await;
}

#[actix_rt::test]
async fn a_failing_names_endpoint_does_not_fail_the_sync() {
    let sim = support::start_sim(33, 1).await;
    let config = config("names_down", &sim);
    let client = config.client();
    let syncs = syncs(&config).await;
    sim.set_names_down(true);
    sync_all(&syncs).await; // asserts every report succeeded
    assert!(support::count(&client, "SELECT count() FROM {db}.usage_records").await > 0);
    assert_eq!(
        support::count(&client, "SELECT count() FROM {db}.workspace_names").await,
        0
    );
    let metrics = tokentra_sync::metrics::render();
    for (account, provider) in [(OPENAI, "openai"), (ANTHROPIC, "anthropic")] {
        let line = format!(
            "tokentra_sync_names_refreshes_total{{account=\"{account}\",provider=\"{provider}\",status=\"failed\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    let failed_runs = support::count(&client, "SELECT count() FROM {db}.sync_runs WHERE status != 'success'").await;
    assert_eq!(failed_runs, 0);

    // Back up: the next sync fills the names in.
    sim.set_names_down(false);
    sync_all(&syncs).await;
    assert!(support::count(&client, "SELECT count() FROM {db}.workspace_names").await > 0);
    sim.stop().await;
}

#[actix_rt::test]
async fn rename_history_and_revert_through_the_cli() {
    let sim = support::start_sim(34, 1).await;
    let config = config("names_cli", &sim);
    let client = config.client();
    let syncs = syncs(&config).await;
    sync_all(&syncs[..1]).await;
    let project = usage_workspaces(&client, OPENAI).await.into_iter().next().unwrap();
    let ws = ["--account", OPENAI, "--workspace", project.as_str()];
    let shown = || async {
        lines(
            &client,
            &format!(
                "SELECT argMax(display_name, seq) AS d FROM {{db}}.workspace_display_names WHERE workspace_id = '{project}'"
            ),
        )
        .await
        .concat()
    };

    let (ok, out) = tokentra(
        &config,
        &[&["rename"][..], &ws, &["--name", "Search Team", "--by", "alice"]].concat(),
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = tokentra(
        &config,
        &[&["rename"][..], &ws, &["--name", "Search", "--by", "bob"]].concat(),
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(shown().await, "Search");
    let (ok, out) = tokentra(
        &config,
        &[&["rename"][..], &ws, &["--name", "Search", "--by", "bob"]].concat(),
    )
    .await;
    assert!(!ok && out.contains("already named 'Search'"), "{out}");

    let (ok, out) = tokentra(&config, &[&["revert"][..], &ws, &["--by", "carol"]].concat()).await;
    assert!(ok && out.contains("reverted to 'Search Team'"), "{out}");
    assert_eq!(shown().await, "Search Team");
    let (ok, out) = tokentra(&config, &[&["revert"][..], &ws, &["--by", "carol"]].concat()).await;
    assert!(ok && out.contains("the provider's name"), "{out}");
    assert_eq!(shown().await, "");
    let (ok, out) = tokentra(&config, &[&["revert"][..], &ws].concat()).await;
    assert!(
        !ok && out.contains("nothing to revert") && out.contains(OPENAI),
        "{out}"
    );

    let (ok, out) = tokentra(&config, &["history", "--account", OPENAI]).await;
    assert!(ok, "{out}");
    let history: Vec<&str> = out.lines().collect();
    assert_eq!(history.len(), 4, "two renames and two reverts:\n{out}");
    assert!(
        history[0].contains("rename")
            && history[0].contains("(provider name) -> 'Search Team'")
            && history[0].contains("alice")
    );
    assert!(history[1].contains("'Search Team' -> 'Search'") && history[1].contains("bob"));
    assert!(
        history[2].contains("revert")
            && history[2].contains("'Search' -> 'Search Team'")
            && history[2].contains("carol")
    );
    assert!(history[3].contains("revert") && history[3].contains("'Search Team' -> (provider name)"));

    let (ok, out) = tokentra(
        &config,
        &["rename", "--account", OPENAI, "--workspace", "proj_nope", "--name", "X"],
    )
    .await;
    assert!(!ok && out.contains("no workspace or project 'proj_nope'"), "{out}");
    let (ok, out) = tokentra(&config, &[&["rename"][..], &ws, &["--name", "  "]].concat()).await;
    assert!(!ok && out.contains("empty"), "{out}");
    sim.stop().await;
}

#[actix_rt::test]
async fn one_display_name_across_providers_is_one_dashboard_row() {
    let sim = support::start_sim(35, 1).await;
    let config = config("names_combined", &sim);
    let client = config.client();
    let syncs = syncs(&config).await;
    sync_all(&syncs).await;
    let project = usage_workspaces(&client, OPENAI).await.into_iter().next().unwrap();
    let workspace = usage_workspaces(&client, ANTHROPIC).await.into_iter().next().unwrap();
    for (account, id) in [(OPENAI, &project), (ANTHROPIC, &workspace)] {
        let (ok, out) = tokentra(
            &config,
            &["rename", "--account", account, "--workspace", id, "--name", "Platform"],
        )
        .await;
        assert!(ok, "{out}");
    }

    let today = Utc::now().date_naive();
    let from = today - chrono::Duration::days(2);
    let period = TimeRange {
        from: from.and_hms_opt(0, 0, 0).unwrap().and_utc(),
        to: today.and_hms_opt(0, 0, 0).unwrap().and_utc() - chrono::Duration::seconds(1),
    };
    let dashboard = load_dashboards()
        .into_iter()
        .find(|(_, d)| d["uid"] == "tokentra-workspaces")
        .unwrap()
        .1;
    let vars: Vars = [("database".to_string(), vec![client.database().to_string()])].into();
    let mut failures = Vec::new();
    let results = run_dashboard(&client, &dashboard, period, &vars, &mut failures).await;
    assert!(failures.is_empty(), "{failures:?}");
    let table = &results["Workspaces: this period vs the previous one/A"];
    let rows: Vec<usize> = (0..table.rows.len())
        .filter(|&r| table.get(r, "workspace") == "Platform")
        .collect();
    assert_eq!(rows.len(), 1, "one row for the shared name: {:?}", table.rows);
    let row = rows[0];
    assert_eq!(table.get(row, "provider"), "anthropic, openai");
    assert_eq!(table.get(row, "account"), format!("{ANTHROPIC}, {OPENAI}"));
    let mut ids = [project.as_str(), workspace.as_str()];
    ids.sort_unstable();
    assert_eq!(table.get(row, "workspace_id"), ids.join(", "));

    // Its money is the two workspaces' money, summed independently.
    let expected = support::query_tsv(
        &client,
        &format!(
            "SELECT toString(sum(cost) - sum(credits)) FROM {{db}}.usage_daily \
             WHERE day >= toDate('{from}') AND day < toDate('{today}') \
               AND ((connection_id = '{OPENAI}' AND if(workspace_id != '', workspace_id, project_id) = '{project}') \
                 OR (connection_id = '{ANTHROPIC}' AND workspace_id = '{workspace}'))"
        ),
    )
    .await;
    let expected: Decimal = expected.trim().parse().unwrap();
    assert!(expected > Decimal::ZERO);
    assert_eq!(table.decimal(row, "current_net_usd"), expected);
    // Nothing else is lost or counted twice by the combining.
    let total = support::query_tsv(
        &client,
        &format!(
            "SELECT toString(sum(cost) - sum(credits)) FROM {{db}}.usage_daily \
             WHERE day >= toDate('{from}') AND day < toDate('{today}')"
        ),
    )
    .await;
    assert_eq!(
        table.sum_decimal("current_net_usd"),
        total.trim().parse::<Decimal>().unwrap()
    );
    sim.stop().await;
}

/// Only a process's first refresh reads the stored names: later ones know
/// them from what they wrote (the account lock makes the process their only
/// writer), so their reads go to a server that is down here and the refresh
/// still appends exactly the renamed workspace. A failed write forgets them.
#[actix_rt::test]
async fn a_later_refresh_knows_the_stored_names_without_reading_them() {
    use tokentra_sync::names::refresh::{refresh, NamesStore};

    let sim = support::start_sim(34, 1).await;
    let config = config("names_known", &sim);
    let client = config.client();
    let syncs = syncs(&config).await;
    let sync = &syncs[0];
    let down = {
        let mut ch = config.validated().clickhouse.clone();
        ch.url = format!("http://127.0.0.1:{}", support::free_port());
        ClickhouseClient::new(&ch)
    };
    let slots = tokio::sync::Semaphore::new(1);
    let deadline = Duration::from_secs(30);
    let store = |client| NamesStore {
        client,
        store_slots: &slots,
        sink: sync.writer.as_ref(),
        gate: &sync.names,
    };
    let first = refresh(sync.adapter.as_ref(), store(&client), OPENAI, deadline, ())
        .await
        .unwrap();
    assert!(first.workspace_rows > 0, "{first:?}");
    let stored = || async {
        support::count(
            &client,
            &format!("SELECT count() FROM {{db}}.workspace_names WHERE connection_id = '{OPENAI}'"),
        )
        .await
    };
    let rows_after_first = stored().await;
    assert_eq!(rows_after_first as usize, first.workspace_rows);

    let project = lines(
        &client,
        &format!("SELECT workspace_id FROM {{db}}.workspace_names WHERE connection_id = '{OPENAI}' LIMIT 1"),
    )
    .await[0]
        .clone();
    sim.rename(NameChange {
        provider: "openai".into(),
        org: "org-1".into(),
        id: project.clone(),
        name: "Known v2".into(),
    });
    let second = refresh(sync.adapter.as_ref(), store(&down), OPENAI, deadline, ())
        .await
        .unwrap();
    assert_eq!((second.workspace_rows, second.key_rows), (1, 0), "{second:?}");
    assert_eq!(stored().await, rows_after_first + 1);
    let current = lines(
        &client,
        &format!("SELECT argMax(name, observed_at) AS n FROM {{db}}.workspace_names WHERE workspace_id = '{project}'"),
    )
    .await;
    assert_eq!(current, ["Known v2"]);

    // A refresh that fails forgets what it knew: the next one must read.
    sim.set_names_down(true);
    assert!(refresh(sync.adapter.as_ref(), store(&client), OPENAI, deadline, ())
        .await
        .is_err());
    sim.set_names_down(false);
    let after_failure = refresh(sync.adapter.as_ref(), store(&down), OPENAI, deadline, ()).await;
    assert!(
        matches!(after_failure, Err(tokentra_sync::names::NamesError::Store { .. })),
        "{after_failure:?}"
    );
    sim.stop().await;
}
