//! fal.ai and Runway end to end: simulated accounts -> one-shot `sync` (the
//! real binary) -> ClickHouse -> `usage_daily`, compared with the
//! simulator's truth to the last decimal per day, model and unit; a re-sync
//! writes nothing; an account with the wrong key type fails with a message
//! that says which key to get, while the other accounts keep syncing.

use std::str::FromStr;

use chrono::{Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokentra_sync::simulator::SimHandle;
use tokentra_sync::store::ClickhouseClient;

use crate::support::{self, TestConfig};

const ORGS: [&str; 2] = ["org-1", "org-2"];

/// (day, model, unit, quantity, cost), decimals canonical.
type Daily = (String, String, String, String, String);

async fn stored(client: &ClickhouseClient, account: &str, since: &str, until: &str) -> Vec<Daily> {
    let tsv = support::query_tsv(
        client,
        &format!(
            "SELECT toString(day), model, unit, toString(sum(quantity)), toString(sum(cost)) \
             FROM {{db}}.usage_daily \
             WHERE connection_id = '{account}' AND day >= toDate('{since}') AND day < toDate('{until}') \
             GROUP BY day, model, unit ORDER BY day, model, unit"
        ),
    )
    .await;
    let mut rows: Vec<Daily> = tsv
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (
                f[0].into(),
                f[1].into(),
                f[2].into(),
                support::canonical(f[3]),
                support::canonical(f[4]),
            )
        })
        .filter(|r| !(r.3 == "0" && r.4 == "0"))
        .collect();
    rows.sort();
    rows
}

fn truth(sim: &SimHandle, provider: &str, org: &str, since: &str, until: &str) -> Vec<Daily> {
    let at = |d: &str| {
        NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_time(Default::default())
            .and_utc()
    };
    let mut rows: Vec<Daily> = sim
        .truth(provider, org, at(since), at(until))
        .into_iter()
        .map(|r| {
            (
                r.day.to_string(),
                r.model,
                r.unit,
                support::canonical(&r.quantity.to_string()),
                support::canonical(&r.cost.to_string()),
            )
        })
        .filter(|r| !(r.3 == "0" && r.4 == "0"))
        .collect();
    rows.sort();
    rows
}

/// Runs `sync` once; returns (exit success, stdout + stderr).
async fn run_sync(config: &TestConfig, since: &str, until: &str) -> (bool, String) {
    let path = config.write();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(&path)
        .args(["--since", since, "--until", until])
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn window() -> (String, String) {
    let today = Utc::now().date_naive();
    ((today - Duration::days(7)).to_string(), today.to_string())
}

#[actix_rt::test]
async fn fal_and_runway_match_truth_resync_writes_nothing_and_a_wrong_key_type_is_named() {
    let sim = support::start_sim(23, 2).await;
    let mut accounts = support::sim_accounts(&sim, &ORGS, &["fal", "runway"]);
    // An API-scope fal key: a real key of org-1, without the ADMIN scope.
    accounts.push_str(&format!(
        "[[accounts]]\nid = \"fal-apikey\"\nprovider = \"fal\"\nbase_url = \"{}\"\nbackfill_days = 7\n\
         [accounts.credentials]\napi_key = \"{}\"\n\n",
        sim.fal_base_url("org-1"),
        tokentra_sync::simulator::fal_api_scope_key("org-1"),
    ));
    let config = TestConfig::new("media", &accounts);
    let client = config.client();
    let (since, until) = window();

    let (ok, output) = run_sync(&config, &since, &until).await;
    assert!(!ok, "one account has the wrong key type: {output}");
    for provider in ["fal", "runway"] {
        for org in ORGS {
            let want = truth(&sim, provider, org, &since, &until);
            assert!(!want.is_empty(), "the simulator has data for {provider} {org}");
            let got = stored(&client, &format!("{provider}-{org}"), &since, &until).await;
            assert_eq!(got, want, "usage_daily differs from the truth for {provider} {org}");
            if provider == "runway" {
                assert!(got.iter().all(|r| r.2 == "credits"));
            } else {
                assert!(got.iter().any(|r| r.2 == "video_second") && got.iter().any(|r| r.2 == "image"));
            }
        }
    }
    // Refund days are stored as negative credits and negative money.
    let refunds = support::count(
        &client,
        "SELECT count() FROM {db}.usage_records WHERE provider = 'runway' AND sign = 1 AND quantity < 0 AND cost < 0",
    )
    .await;
    assert!(refunds > 0, "the simulated refund days landed negative");
    // Billed money only, in USD, with Runway's own figure (credits) kept.
    let wrong_source = support::count(
        &client,
        "SELECT count() FROM {db}.usage_records WHERE provider IN ('fal', 'runway') \
         AND (cost_source != 'billed' OR currency != 'USD' OR record_type != 'cost')",
    )
    .await;
    assert_eq!(wrong_source, 0);
    let credits_kept = support::count(
        &client,
        "SELECT count() FROM {db}.usage_records WHERE provider = 'runway' AND amount_original != quantity",
    )
    .await;
    assert_eq!(credits_kept, 0);

    // The wrong key: an auth failure that names the key type and the fix.
    let error = support::query_tsv(
        &client,
        "SELECT error_kind, error FROM {db}.sync_runs WHERE connection_id = 'fal-apikey'",
    )
    .await;
    assert!(
        error.starts_with("auth\t") && error.contains("ADMIN") && error.contains("Settings > API Keys"),
        "{error}"
    );
    assert!(!error.contains("0123456789abcdef"), "the key leaked: {error}");
    assert_eq!(
        support::count(
            &client,
            "SELECT count() FROM {db}.usage_records WHERE connection_id = 'fal-apikey'"
        )
        .await,
        0
    );

    // A re-sync of the same window writes nothing and changes nothing.
    let written = "SELECT sum(rows_written) + sum(rows_cancelled) FROM {db}.sync_runs";
    let rows_before = support::count(&client, "SELECT count() FROM {db}.usage_records").await;
    let written_before = support::count(&client, written).await;
    let (_, output) = run_sync(&config, &since, &until).await;
    assert!(output.contains("runway-org-2"), "{output}");
    assert_eq!(
        support::count(&client, "SELECT count() FROM {db}.usage_records").await,
        rows_before
    );
    assert_eq!(
        support::count(&client, written).await,
        written_before,
        "the re-sync wrote rows"
    );
    let succeeded = support::count(
        &client,
        "SELECT count() FROM {db}.sync_runs WHERE status = 'success' AND connection_id != 'fal-apikey'",
    )
    .await;
    assert_eq!(succeeded, 2 * 4, "every good account succeeded twice");
    for provider in ["fal", "runway"] {
        for org in ORGS {
            let got = stored(&client, &format!("{provider}-{org}"), &since, &until).await;
            assert_eq!(got, truth(&sim, provider, org, &since, &until));
        }
    }
    sim.stop().await;
}

#[actix_rt::test]
async fn throttling_and_server_errors_are_retried_to_the_exact_totals() {
    let sim = support::start_sim(29, 1).await;
    let accounts = support::sim_accounts(&sim, &["org-1"], &["fal", "runway"]);
    let config = TestConfig::new("media_faults", &accounts);
    let client = config.client();
    let (since, until) = window();
    sim.set_faults(tokentra_sync::simulator::FaultPlan {
        rate_limit: 2,
        server_error: 2,
        truncate: 0,
        retry_after_secs: Some(1),
        ..Default::default()
    });
    let (ok, output) = run_sync(&config, &since, &until).await;
    assert!(ok, "{output}");
    let pending = sim.pending_faults();
    assert_eq!(
        (pending.rate_limit, pending.server_error),
        (0, 0),
        "every fault was served"
    );
    for provider in ["fal", "runway"] {
        let got = stored(&client, &format!("{provider}-org-1"), &since, &until).await;
        assert_eq!(got, truth(&sim, provider, "org-1", &since, &until), "{provider}");
    }
    let retries = support::count(&client, "SELECT sum(retries) FROM {db}.sync_runs").await;
    assert!(retries >= 4, "{retries}");
    sim.stop().await;
}

/// The simulated PiAPI balance of `org` right now, read like the adapter does.
async fn piapi_balance(sim: &SimHandle, org: &str) -> Decimal {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/account/info", sim.piapi_base_url(org)))
        .header("x-api-key", tokentra_sync::simulator::piapi_api_key(org))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Decimal::from_str(&body["data"]["equivalent_in_usd"].to_string()).unwrap()
}

#[actix_rt::test]
async fn piapi_spend_is_each_fall_of_the_balance_once_and_top_ups_are_not_spend() {
    use tokentra_sync::actors::writer::WriterActor;
    use tokentra_sync::app::App;
    use tokentra_sync::store::migrations;
    use tokentra_sync::sync::window::SyncKind;

    let sim = support::start_sim(31, 1).await;
    let accounts = support::sim_accounts(&sim, &["org-1"], &["piapi"]);
    let config = TestConfig::new("piapi", &accounts);
    let validated = config.validated();
    let client = config.client();
    let app = App::new(validated.clone()).unwrap();
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), validated.writer.clone());
    // One adapter for every run, as in the daemon: it holds the session.
    let sync = app.account_sync(&validated.accounts[0], writer.sink()).unwrap();
    let today = Utc::now().date_naive();
    let kind = SyncKind::Explicit {
        since: (today - Duration::days(1)).and_time(Default::default()).and_utc(),
        until: None,
    };
    let day = today.to_string();
    let spend = || async {
        let text = support::query_tsv(
            &client,
            "SELECT toString(sum(cost)), sum(records) FROM {db}.usage_daily WHERE connection_id = 'piapi-org-1' \
             AND service = 'derived_from_balance'",
        )
        .await;
        let f: Vec<String> = text.trim().split('\t').map(str::to_string).collect();
        (support::canonical(&f[0]), f[1].clone())
    };
    let run = || async {
        let reports = sync.run(kind, "test").await.unwrap();
        assert!(reports.iter().all(|r| r.succeeded), "{reports:?}");
        reports.iter().map(|r| r.rows_added + r.rows_cancelled).sum::<u64>()
    };

    let b0 = piapi_balance(&sim, "org-1").await;
    assert!(run().await > 0);
    assert_eq!(
        spend().await,
        ("0".to_string(), "1".to_string()),
        "a first reading is a baseline"
    );

    support::restate(&sim, "piapi", "org-1", &day, "0.9").await;
    let b1 = piapi_balance(&sim, "org-1").await;
    assert!(b1 < b0);
    run().await;
    assert_eq!(spend().await.0, support::canonical(&(b0 - b1).to_string()));
    // A re-sync of the same readings writes nothing.
    assert_eq!(run().await, 0, "a re-sync wrote rows");

    // A top-up (the balance rises) is not negative spend.
    support::restate(&sim, "piapi", "org-1", &day, "1.5").await;
    let b2 = piapi_balance(&sim, "org-1").await;
    run().await;
    assert_eq!(spend().await.0, support::canonical(&(b0 - b1).to_string()));
    // Spending after the top-up adds that fall only.
    support::restate(&sim, "piapi", "org-1", &day, "1.2").await;
    let b3 = piapi_balance(&sim, "org-1").await;
    run().await;
    run().await;
    assert_eq!(
        spend().await,
        (
            support::canonical(&((b0 - b1) + (b2 - b3)).to_string()),
            "1".to_string()
        ),
        "each fall counted once, in one live row"
    );
    let attributes = support::query_tsv(
        &client,
        "SELECT attributes FROM {db}.usage_records FINAL WHERE connection_id = 'piapi-org-1' AND sign = 1 \
         ORDER BY version DESC LIMIT 1",
    )
    .await;
    assert!(
        attributes.contains(&format!("topped_up_usd={}", (b2 - b1).normalize())),
        "{attributes}"
    );
    sim.stop().await;
}
