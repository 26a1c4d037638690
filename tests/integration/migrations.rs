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

/// A database as a release before the rebuild left it: every migration up
/// to 12 applied and recorded, `usage_records` in 8,192-row granules, with
/// rows of both signs (one record changed once) and their rollup.
async fn database_before_the_rebuild(client: &tokentra_sync::store::ClickhouseClient) {
    client.create_database().await.unwrap();
    for m in MIGRATIONS.iter().filter(|m| m.version < 13 && m.requires.is_none()) {
        client.execute(m.sql).await.unwrap();
        support::query_tsv(
            client,
            &format!(
                "INSERT INTO {{db}}.schema_migrations (version, name, checksum, applied_at) VALUES ({}, '{}', '{}', 0)",
                m.version,
                m.name,
                m.checksum()
            ),
        )
        .await;
    }
    support::query_tsv(
        client,
        "INSERT INTO {db}.usage_records (connection_id, record_type, endpoint, bucket_start, bucket_end, granularity, \
         record_key, model, input_tokens, cost, sign, version, synced_at, content_hash) VALUES \
         ('a', 'usage', 'completions', 1736971200, 1736974800, '1h', 1, 'm', 5, 1.25, 1, 1, 0, 11), \
         ('a', 'usage', 'completions', 1736971200, 1736974800, '1h', 1, 'm', 5, 1.25, -1, 1, 0, 11), \
         ('a', 'usage', 'completions', 1736971200, 1736974800, '1h', 1, 'm', 7, 1.75, 1, 2, 0, 12), \
         ('b', 'cost', 'costs', 1737043200, 1737129600, '1d', 2, 'n', 0, 0.000000001, 1, 1, 0, 0)",
    )
    .await;
}

const NET_RECORDS: &str = "SELECT connection_id, record_key, version, content_hash, sum(input_tokens * sign), \
     toString(sum(cost * sign)), sum(toInt64(sign)), count() FROM {db}.usage_records \
     GROUP BY connection_id, record_key, version, content_hash ORDER BY connection_id, record_key, version";
const ROLLUP: &str = "SELECT connection_id, toString(day), sum(input_tokens), toString(sum(cost)), sum(records) \
     FROM {db}.usage_daily GROUP BY connection_id, day ORDER BY connection_id, day";

async fn engine(client: &tokentra_sync::store::ClickhouseClient, table: &str) -> String {
    support::query_tsv(
        client,
        &format!("SELECT engine_full FROM system.tables WHERE database = '{{db}}' AND name = '{table}'"),
    )
    .await
}

/// The rebuild keeps every row (both signs, versions, digests) and the
/// rollup, and the view follows the new table: a row inserted afterwards
/// lands in `usage_daily`.
#[actix_rt::test]
async fn usage_records_is_rebuilt_with_small_granules_keeping_every_row() {
    let config = TestConfig::new("rebuild", "");
    let client = config.client();
    database_before_the_rebuild(&client).await;
    assert!(engine(&client, "usage_records")
        .await
        .contains("index_granularity = 8192"));
    let (records, rollup) = (
        support::query_tsv(&client, NET_RECORDS).await,
        support::query_tsv(&client, ROLLUP).await,
    );
    assert_eq!(rollup.lines().count(), 2, "{rollup}");

    let report = migrations::migrate(&client).await.unwrap();
    assert_eq!(report.applied, vec!["usage_records_granularity".to_string()]);
    assert!(engine(&client, "usage_records")
        .await
        .contains("index_granularity = 1024"));
    assert_eq!(support::query_tsv(&client, NET_RECORDS).await, records);
    assert_eq!(support::query_tsv(&client, ROLLUP).await, rollup);
    let tables = support::query_tsv(&client, "SELECT name FROM system.tables WHERE database = '{db}'").await;
    assert!(!tables.contains("_rebuild"), "no staging table is left: {tables}");

    support::query_tsv(
        &client,
        "INSERT INTO {db}.usage_records (connection_id, record_type, endpoint, bucket_start, bucket_end, granularity, \
         record_key, input_tokens, cost, sign, version, synced_at) VALUES \
         ('a', 'usage', 'completions', 1736974800, 1736978400, '1h', 3, 100, 2.5, 1, 1, 0)",
    )
    .await;
    let day_a = support::query_tsv(
        &client,
        "SELECT sum(input_tokens), toString(sum(cost)) FROM {db}.usage_daily WHERE connection_id = 'a'",
    )
    .await;
    assert_eq!(
        day_a.trim(),
        "107\t4.250000000",
        "the view writes from the rebuilt table"
    );
    assert!(migrations::migrate(&client).await.unwrap().applied.is_empty());
    client.drop_database().await.unwrap();
}

/// A crash between the two halves of the swap (old table renamed away, copy
/// not yet renamed in, view dropped) is finished by the next start.
#[actix_rt::test]
async fn a_rebuild_interrupted_inside_the_swap_is_finished_on_the_next_start() {
    let config = TestConfig::new("rebuild_crash", "");
    let client = config.client();
    database_before_the_rebuild(&client).await;
    let records = support::query_tsv(&client, NET_RECORDS).await;
    let rebuild = MIGRATIONS.iter().find(|m| m.version == 13).unwrap();
    client.execute(rebuild.sql).await.unwrap();
    for sql in [
        "DROP TABLE {db}.usage_daily_mv",
        "INSERT INTO {db}.usage_records_rebuild SELECT * FROM {db}.usage_records",
        "RENAME TABLE {db}.usage_records TO {db}.usage_records_before_rebuild",
    ] {
        client.execute(sql).await.unwrap();
    }

    migrations::migrate(&client).await.unwrap();
    assert!(engine(&client, "usage_records")
        .await
        .contains("index_granularity = 1024"));
    assert_eq!(support::query_tsv(&client, NET_RECORDS).await, records);
    let tables = support::query_tsv(&client, "SELECT name FROM system.tables WHERE database = '{db}'").await;
    assert!(tables.lines().any(|t| t == "usage_daily_mv"), "{tables}");
    assert!(!tables.contains("_rebuild"), "{tables}");
    client.drop_database().await.unwrap();
}
