//! `verify` finds and repairs a rollup that drifted from `usage_records`.

use crate::support::{self, TestConfig};

async fn run_cli(config: &TestConfig, args: &[&str]) -> String {
    let path = config.write();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .arg(args[0])
        .arg("-c")
        .arg(&path)
        .args(&args[1..])
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// (day, model) -> (cost, input_tokens, records) as seen by each table.
async fn sides(client: &tokentra_sync::store::ClickhouseClient) -> (String, String) {
    let records = support::query_tsv(
        client,
        "SELECT toDate(bucket_start, 'UTC') AS d, model, toString(sum(cost * sign)), sum(input_tokens * sign), sum(toInt64(sign)) \
         FROM {db}.usage_records GROUP BY d, model HAVING sum(toInt64(sign)) != 0 ORDER BY d, model",
    )
    .await;
    let daily = support::query_tsv(
        client,
        "SELECT day AS d, model, toString(sum(cost)), sum(input_tokens), sum(records) \
         FROM {db}.usage_daily GROUP BY d, model HAVING sum(records) != 0 ORDER BY d, model",
    )
    .await;
    (records, daily)
}

#[actix_rt::test]
async fn verify_repairs_a_lost_view_insert_and_a_stray_rollup_row() {
    let sim = support::start_sim(5, 1).await;
    let config = TestConfig::new("verify", &support::sim_accounts(&sim, &["org-1"], &["openai"]));
    let client = config.client();
    let today = chrono::Utc::now().date_naive();
    let since = (today - chrono::Duration::days(3)).to_string();
    let until = today.to_string();
    run_cli(&config, &["sync", "--since", &since, "--until", &until]).await;
    let (records, daily) = sides(&client).await;
    assert_eq!(records, daily, "a clean sync leaves both sides equal");

    // An insert whose view part never landed: the view is detached meanwhile.
    let day = (today - chrono::Duration::days(2))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp();
    support::query_tsv(&client, "DETACH TABLE {db}.usage_daily_mv").await;
    support::query_tsv(
        &client,
        &format!(
            "INSERT INTO {{db}}.usage_records (connection_id, provider, record_type, endpoint, bucket_start, bucket_end, \
             granularity, record_key, model, cost, input_tokens, sign, version, synced_at) VALUES \
             ('openai-org-1', 'openai', 'cost', 'costs', {day}, {}, '1d', 4242, 'gpt-4o', toDecimal128('1.5', 9), 0, 1, 1, 0)",
            day + 86_400
        ),
    )
    .await;
    support::query_tsv(&client, "ATTACH TABLE {db}.usage_daily_mv").await;
    // And a rollup row with nothing behind it.
    support::query_tsv(
        &client,
        &format!(
            "INSERT INTO {{db}}.usage_daily (day, connection_id, provider, record_type, model, cost, records) VALUES \
             (toDate('{since}'), 'openai-org-1', 'openai', 'cost', 'ghost', toDecimal128('2.25', 9), 1)"
        ),
    )
    .await;
    let (records, daily) = sides(&client).await;
    assert_ne!(records, daily);

    let out = run_cli(&config, &["verify", "--since", &since, "--until", &until]).await;
    assert!(out.contains("2 repaired"), "{out}");
    assert!(out.contains("model 'ghost': cost -2.25"), "{out}");
    let (records, daily) = sides(&client).await;
    assert_eq!(
        records, daily,
        "verify makes usage_daily equal the net of usage_records"
    );
    let again = run_cli(&config, &["verify", "--since", &since, "--until", &until]).await;
    assert!(again.contains("0 repaired"), "{again}");
    sim.stop().await;
}
