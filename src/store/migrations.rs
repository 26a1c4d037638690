//! Schema migrations: the SQL in `schemas/`, applied in order, each recorded in
//! `schema_migrations`. Every statement is idempotent on its own, so a crash
//! between applying and recording only repeats a harmless statement.
//!
//! Gated migrations use features that Debian's ClickHouse 18.16 lacks (TTL, ...).
//! They are applied only when the server is new enough and stay pending
//! otherwise, so upgrading the server and re-running `migrate` picks them up.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::client::{ClickhouseClient, StoreError};
use crate::normalize::schema::to_ch_seconds;

/// One schema step.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
    /// Lowest server `(major, minor)` that supports it; `None` = every server.
    pub requires: Option<(u32, u32)>,
    /// Set when `sql` creates the replacement of a table to rebuild.
    pub rebuild: Option<&'static Rebuild>,
}

/// A table rebuilt by copy, for what 18.16 cannot change in place (its
/// `index_granularity`): the migration's `sql` creates `<table>_rebuild`,
/// every row is copied and the copy's sums compared with the table's, and
/// one RENAME swaps the two. The view
/// that reads the table is dropped before the copy and created again after:
/// an 18.16 view follows the table it was created on, not its name. Every
/// step is repeated safely after a crash (see [`rebuild`]).
#[derive(Debug)]
pub struct Rebuild {
    pub table: &'static str,
    /// What `system.tables.engine_full` of the table shows once rebuilt.
    pub done_marker: &'static str,
    /// The materialized view reading the table, and its migration.
    pub view: &'static str,
    pub view_sql: &'static str,
    /// Sums the table's merges cannot change, compared between the table
    /// and its copy before the swap: a collapsing merge (which may run in
    /// either table during the copy) changes `count()`, not these.
    pub sums: &'static str,
}

const USAGE_RECORDS_GRANULARITY: Rebuild = Rebuild {
    table: "usage_records",
    done_marker: "index_granularity = 1024",
    view: "usage_daily_mv",
    view_sql: include_str!("../../schemas/0003_usage_daily_mv.sql"),
    sums: "sum(toInt64(sign)), sum(cost * sign), sum(input_tokens * sign), sum(output_tokens * sign)",
};

macro_rules! migration {
    ($version:expr, $name:expr, $file:expr) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../schemas/", $file)),
            requires: None,
            rebuild: None,
        }
    };
    ($version:expr, $name:expr, $file:expr, $requires:expr) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../schemas/", $file)),
            requires: Some($requires),
            rebuild: None,
        }
    };
}

/// Every migration in the order it must run.
pub const MIGRATIONS: &[Migration] = &[
    migration!(0, "schema_migrations", "0000_schema_migrations.sql"),
    migration!(1, "usage_records", "0001_usage_records.sql"),
    migration!(2, "usage_daily", "0002_usage_daily.sql"),
    migration!(3, "usage_daily_mv", "0003_usage_daily_mv.sql"),
    migration!(4, "sync_runs", "0004_sync_runs.sql"),
    migration!(5, "sync_state", "0005_sync_state.sql"),
    migration!(6, "workspace_names", "0006_workspace_names.sql"),
    migration!(7, "sync_runs_error_kind", "0007_sync_runs_error_kind.sql"),
    migration!(8, "api_key_names", "0008_api_key_names.sql"),
    migration!(9, "workspace_display_names", "0009_workspace_display_names.sql"),
    migration!(12, "usage_records_content_hash", "0012_usage_records_content_hash.sql"),
    Migration {
        version: 13,
        name: "usage_records_granularity",
        sql: include_str!("../../schemas/0013_usage_records_granularity.sql"),
        requires: None,
        rebuild: Some(&USAGE_RECORDS_GRANULARITY),
    },
    // TTL: ClickHouse 19.6.
    migration!(1001, "sync_runs_ttl", "gated/1001_sync_runs_ttl.sql", (19, 6)),
];

impl Migration {
    pub fn supported_on(&self, server: (u32, u32)) -> bool {
        self.requires.is_none_or(|needed| server >= needed)
    }

    pub fn checksum(&self) -> String {
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(self.sql.as_bytes()))
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied: Vec<String>,
    /// Gated migrations the server is too old for.
    pub pending_unsupported: Vec<String>,
}

/// The migrations to apply, in order, given what is applied and the server.
pub fn plan(server: (u32, u32), applied: &BTreeSet<u32>) -> (Vec<&'static Migration>, Vec<&'static Migration>) {
    let mut run = Vec::new();
    let mut unsupported = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        if migration.supported_on(server) {
            run.push(migration);
        } else {
            unsupported.push(migration);
        }
    }
    (run, unsupported)
}

#[derive(Debug, Serialize, Deserialize, clickhouse::Row)]
struct AppliedRow {
    version: u32,
    name: String,
    checksum: String,
    applied_at: u32,
}

/// ClickHouse's "column with this name already exists": ILLEGAL_COLUMN (44)
/// on 18.16, DUPLICATE_COLUMN (15) on current servers.
const COLUMN_EXISTS: [u32; 2] = [44, 15];

/// An `ALTER TABLE ... ADD COLUMN` statement (18.16 has no `IF NOT EXISTS` there).
fn is_column_add(sql: &str) -> bool {
    let text = sql.to_ascii_uppercase();
    text.contains("ALTER TABLE") && text.contains("ADD COLUMN")
}

/// Creates the database if needed and applies every pending migration the
/// server supports.
pub async fn migrate(client: &ClickhouseClient) -> Result<MigrationReport, StoreError> {
    client.create_database().await?;
    let server = client.server_version().await?;
    let bootstrap = &MIGRATIONS[0];
    client.execute(bootstrap.sql).await.map_err(|e| wrap(bootstrap, e))?;
    let query =
        client.query("SELECT version, name, checksum, toUInt32(applied_at) AS applied_at FROM schema_migrations");
    let applied: Vec<AppliedRow> = client.fetch_all("read of applied migrations", query).await?;
    for row in &applied {
        if let Some(known) = MIGRATIONS.iter().find(|m| m.version == row.version) {
            if known.checksum() != row.checksum {
                tracing::warn!(
                    version = row.version,
                    name = %row.name,
                    "migration text changed after it was applied; the database keeps the old shape"
                );
            }
        }
    }
    let applied_versions: BTreeSet<u32> = applied.iter().map(|r| r.version).collect();
    let (run, unsupported) = plan(server, &applied_versions);
    let mut report = MigrationReport::default();
    for migration in run {
        let applied = match migration.rebuild {
            Some(spec) => rebuild(client, migration, spec).await,
            None => client.execute(migration.sql).await,
        };
        match applied {
            Ok(()) => {}
            // An ADD COLUMN that ran before a crash kept it from being recorded.
            Err(e) if is_column_add(migration.sql) && e.server_code().is_some_and(|c| COLUMN_EXISTS.contains(&c)) => {}
            Err(e) => return Err(wrap(migration, e)),
        }
        let record = AppliedRow {
            version: migration.version,
            name: migration.name.to_string(),
            checksum: migration.checksum(),
            applied_at: to_ch_seconds(chrono::Utc::now()),
        };
        client
            .insert_rows("schema_migrations", &[record])
            .await
            .map_err(|e| wrap(migration, e))?;
        tracing::info!(version = migration.version, name = migration.name, "applied migration");
        report.applied.push(migration.name.to_string());
    }
    for migration in unsupported {
        tracing::info!(
            version = migration.version,
            name = migration.name,
            server = %format!("{}.{}", server.0, server.1),
            "migration needs a newer ClickHouse; left pending"
        );
        report.pending_unsupported.push(migration.name.to_string());
    }
    Ok(report)
}

/// Runs a [`Rebuild`]. Repeatable at any point of a crash: a table not yet
/// rebuilt is copied again from scratch (the old one is untouched until the
/// RENAME, and the copy is counted before it); a table missing between the
/// two halves of the RENAME is the complete copy's; the view and the old
/// table's removal are idempotent.
async fn rebuild(client: &ClickhouseClient, migration: &Migration, spec: &Rebuild) -> Result<(), StoreError> {
    let table = spec.table;
    let staged = format!("{table}_rebuild");
    let replaced = format!("{table}_before_rebuild");
    match engine_full(client, table).await? {
        None => {
            client
                .execute(&format!("RENAME TABLE {{db}}.{staged} TO {{db}}.{table}"))
                .await?;
        }
        Some(engine) if engine.contains(spec.done_marker) => {}
        Some(_) => {
            client.execute(&format!("DROP TABLE IF EXISTS {{db}}.{staged}")).await?;
            client.execute(migration.sql).await?;
            client
                .execute(&format!("DROP TABLE IF EXISTS {{db}}.{}", spec.view))
                .await?;
            let columns = column_list(client, table).await?;
            client
                .execute_for(
                    &format!("INSERT INTO {{db}}.{staged} ({columns}) SELECT {columns} FROM {{db}}.{table}"),
                    REBUILD_COPY_LIMIT,
                )
                .await?;
            let (before, after) = (sums(client, table, spec).await?, sums(client, &staged, spec).await?);
            if before != after {
                return Err(StoreError::Unexpected {
                    url: client.url().to_string(),
                    detail: format!(
                        "rebuilding {table}: the copy's {} are {after} but the table's {before}; \
                         nothing was swapped, the next start copies again",
                        spec.sums
                    ),
                });
            }
            client
                .execute(&format!("DROP TABLE IF EXISTS {{db}}.{replaced}"))
                .await?;
            client
                .execute(&format!(
                    "RENAME TABLE {{db}}.{table} TO {{db}}.{replaced}, {{db}}.{staged} TO {{db}}.{table}"
                ))
                .await?;
        }
    }
    client.execute(spec.view_sql).await?;
    client
        .execute(&format!("DROP TABLE IF EXISTS {{db}}.{replaced}"))
        .await?;
    tracing::info!(table, "table rebuilt");
    Ok(())
}

/// The copy of a large table takes as long as it takes: an hour covers
/// hundreds of millions of rows on a small server.
const REBUILD_COPY_LIMIT: std::time::Duration = std::time::Duration::from_secs(3_600);

async fn engine_full(client: &ClickhouseClient, table: &str) -> Result<Option<String>, StoreError> {
    #[derive(Deserialize, clickhouse::Row)]
    struct Engine {
        engine_full: String,
    }
    let query = client
        .query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() AND name = ?")
        .bind(table);
    let row: Option<Engine> = client.fetch_optional("read of a table's engine", query).await?;
    Ok(row.map(|r| r.engine_full))
}

async fn column_list(client: &ClickhouseClient, table: &str) -> Result<String, StoreError> {
    #[derive(Deserialize, clickhouse::Row)]
    struct Column {
        name: String,
    }
    let query = client
        .query("SELECT name FROM system.columns WHERE database = currentDatabase() AND table = ?")
        .bind(table);
    let columns: Vec<Column> = client.fetch_all("read of a table's columns", query).await?;
    Ok(columns.into_iter().map(|c| c.name).collect::<Vec<_>>().join(", "))
}

/// The [`Rebuild::sums`] of `table`, as text: equal for a complete copy
/// whatever merges did.
async fn sums(client: &ClickhouseClient, table: &str, spec: &Rebuild) -> Result<String, StoreError> {
    #[derive(Debug, Deserialize, clickhouse::Row)]
    struct Sums {
        sums: String,
    }
    let listed = spec
        .sums
        .split(", ")
        .map(|sum| format!("toString({sum})"))
        .collect::<Vec<_>>()
        .join(", ' ', ");
    let query = client.query(&format!("SELECT concat({listed}) AS sums FROM {table}"));
    let sums: Option<Sums> = client.fetch_optional("sums of a table", query).await?;
    Ok(sums.map(|s| s.sums).unwrap_or_default())
}

fn wrap(migration: &Migration, source: StoreError) -> StoreError {
    StoreError::Migration {
        version: migration.version,
        name: migration.name.to_string(),
        source: Box::new(source),
    }
}

/// The statements a fresh database gets on a server of version `server`, with
/// `{db}` filled in. Used by `migrate --print-sql` and the chdb test.
pub fn fresh_plan_sql(server: (u32, u32), database: &str) -> Vec<String> {
    let (run, _) = plan(server, &BTreeSet::new());
    run.iter()
        .flat_map(|m| match m.rebuild {
            Some(spec) => spec.fresh_statements(m.sql),
            None => vec![m.sql.to_string()],
        })
        .map(|sql| sql.replace("{db}", database))
        .collect()
}

impl Rebuild {
    /// What [`rebuild`] runs on a table that was never rebuilt (the
    /// statements `migrate --print-sql` shows).
    fn fresh_statements(&self, create_staged: &str) -> Vec<String> {
        let (table, view) = (self.table, self.view);
        let columns = crate::normalize::schema::UsageRow::COLUMNS.join(", ");
        vec![
            format!("DROP TABLE IF EXISTS {{db}}.{table}_rebuild"),
            create_staged.to_string(),
            format!("DROP TABLE IF EXISTS {{db}}.{view}"),
            format!("INSERT INTO {{db}}.{table}_rebuild ({columns}) SELECT {columns} FROM {{db}}.{table}"),
            format!("DROP TABLE IF EXISTS {{db}}.{table}_before_rebuild"),
            format!(
                "RENAME TABLE {{db}}.{table} TO {{db}}.{table}_before_rebuild, {{db}}.{table}_rebuild TO {{db}}.{table}"
            ),
            self.view_sql.to_string(),
            format!("DROP TABLE IF EXISTS {{db}}.{table}_before_rebuild"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_unique_and_ordered() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let mut sorted = versions.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(versions, sorted);
    }

    #[test]
    fn each_migration_is_one_statement_against_the_placeholder_database() {
        for m in MIGRATIONS {
            let code: String = m
                .sql
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(!code.contains(';'), "{} must hold exactly one statement", m.name);
            assert!(m.sql.contains("{db}."), "{} must qualify tables with {{db}}", m.name);
        }
    }

    #[test]
    fn gated_migrations_wait_for_a_new_enough_server() {
        let (run, unsupported) = plan((18, 16), &BTreeSet::new());
        assert!(run.iter().all(|m| m.requires.is_none()));
        assert_eq!(
            unsupported.iter().map(|m| m.name).collect::<Vec<_>>(),
            vec!["sync_runs_ttl"]
        );
        let (run, unsupported) = plan((24, 8), &BTreeSet::new());
        assert!(run.iter().any(|m| m.name == "sync_runs_ttl"));
        assert!(unsupported.is_empty());
    }

    #[test]
    fn applied_migrations_are_not_planned_again() {
        let all: BTreeSet<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let (run, unsupported) = plan((24, 8), &all);
        assert!(run.is_empty() && unsupported.is_empty());
    }
}
