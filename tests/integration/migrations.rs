//! Migrations on the real ClickHouse 18.16 server.

use tokentra_sync::store::migrations::{self, MIGRATIONS};

use crate::support::{self, TestConfig};

#[actix_rt::test]
async fn migrations_apply_once_record_themselves_and_leave_gated_ones_pending() {
    let config = TestConfig::new("migrate", "");
    let client = config.client();
    let version = client.server_version().await.unwrap();
    let first = migrations::migrate(&client).await.unwrap();
    let gated = MIGRATIONS.iter().filter(|m| !m.supported_on(version)).count();
    assert_eq!(first.applied.len() + first.pending_unsupported.len(), MIGRATIONS.len());
    assert_eq!(first.pending_unsupported.len(), gated);
    let recorded = support::count(&client, "SELECT count() FROM {db}.schema_migrations").await;
    assert_eq!(recorded as usize, first.applied.len());

    // A second run applies nothing and records nothing more.
    let second = migrations::migrate(&client).await.unwrap();
    assert!(second.applied.is_empty(), "{second:?}");
    assert_eq!(second.pending_unsupported, first.pending_unsupported);
    let recorded_again = support::count(&client, "SELECT count() FROM {db}.schema_migrations").await;
    assert_eq!(recorded, recorded_again);

    let tables = support::query_tsv(
        &client,
        "SELECT name FROM system.tables WHERE database = '{db}' ORDER BY name",
    )
    .await;
    for table in [
        "sync_runs",
        "sync_state",
        "usage_daily",
        "usage_daily_mv",
        "usage_records",
        "workspace_names",
    ] {
        assert!(tables.lines().any(|t| t == table), "{table} missing in {tables}");
    }
    client.drop_database().await.unwrap();
}

/// Rule 8: a server whose own time zone is not UTC (the test server runs in
/// Asia/Kolkata) still files every bucket under its UTC day.
#[actix_rt::test]
async fn days_are_utc_days_whatever_the_server_time_zone() {
    let config = TestConfig::new("utc", "");
    let client = config.client();
    migrations::migrate(&client).await.unwrap();
    let tz = support::query_tsv(&client, "SELECT timezone()").await;
    assert_ne!(
        tz.trim(),
        "UTC",
        "the test server must not run in UTC for this test to mean anything"
    );
    // 2025-01-15 20:00 UTC is already the 16th in Kolkata.
    support::query_tsv(
        &client,
        "INSERT INTO {db}.usage_records (connection_id, record_type, endpoint, bucket_start, bucket_end, granularity, \
         record_key, input_tokens, sign, version, synced_at) VALUES \
         ('c', 'usage', 'completions', 1736971200, 1736974800, '1h', 1, 5, 1, 1, 0)",
    )
    .await;
    let day = support::query_tsv(&client, "SELECT toString(day) FROM {db}.usage_daily").await;
    assert_eq!(day.trim(), "2025-01-15");
    client.drop_database().await.unwrap();
}

/// ClickHouse 18.16 has no TTL: the daemon drops day partitions of
/// `sync_runs` older than 30 days instead.
#[actix_rt::test]
async fn old_sync_runs_partitions_are_dropped_and_recent_ones_kept() {
    let config = TestConfig::new("prune", "");
    let client = config.client();
    migrations::migrate(&client).await.unwrap();
    let now = chrono::Utc::now();
    for days_ago in [45i64, 31, 29, 0] {
        let t = (now - chrono::Duration::days(days_ago)).timestamp();
        support::query_tsv(
            &client,
            &format!(
                "INSERT INTO {{db}}.sync_runs (run_id, connection_id, started_at) VALUES ('r{days_ago}', 'c', {t})"
            ),
        )
        .await;
    }
    let dropped = tokentra_sync::store::state::prune_sync_runs(&client, 30, now)
        .await
        .unwrap();
    assert_eq!(dropped, 2);
    let left = support::query_tsv(&client, "SELECT run_id FROM {db}.sync_runs ORDER BY started_at").await;
    assert_eq!(left.split_whitespace().collect::<Vec<_>>(), vec!["r29", "r0"]);
    client.drop_database().await.unwrap();
}
