//! Stored state a sync reads and writes besides the facts themselves: the raw
//! rows of its scope, the watermark, and one `sync_runs` row per attempt.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::client::{ClickhouseClient, StoreError};
use super::diff::{StoredKey, StoredMeasures};
use super::scope_reads::{OwnedKey, ScopeOwner, ScopeReads, ScopeRow, MAX_KEYS_IN_FILTER};
use crate::normalize::schema::{from_ch_seconds, to_ch_seconds, RecordType, UsageRow};

/// One scope of `usage_records`: a (connection, record type, endpoint) and the
/// bucket starts a sync covers.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub connection_id: &'a str,
    pub record_type: RecordType,
    pub endpoint: &'a str,
    pub buckets: &'a BTreeSet<u32>,
}

impl Scope<'_> {
    /// Its owner and bucket range, when it is narrow enough to be read in a
    /// batch with other scopes ([`super::scope_reads`]).
    fn batchable(&self) -> Option<(ScopeOwner, u32, u32)> {
        let (&first, &last) = (self.buckets.first()?, self.buckets.last()?);
        let owner = ScopeOwner {
            connection_id: self.connection_id.to_string(),
            record_type: self.record_type.as_str(),
            endpoint: self.endpoint.to_string(),
        };
        ScopeReads::batches(first, last).then_some((owner, first, last))
    }
}

/// Every raw row (both signs, all versions) of a scope, no `FINAL` (the diff
/// nets rows itself and must see duplicates to repair them), as `T`'s
/// columns, only those of `keys` for a keyed kind (whole rows). Read in one
/// SELECT with other syncs' scopes when it spans a week or less and asks for
/// at most [`MAX_KEYS_IN_FILTER`] keys ([`super::scope_reads`]), alone
/// otherwise or when that batch failed.
async fn read_scope<T: ScopeRow>(
    client: &ClickhouseClient,
    scope: &Scope<'_>,
    keys: Option<&BTreeSet<u64>>,
) -> Result<Vec<T>, StoreError> {
    let (Some(first), Some(last)) = (scope.buckets.first(), scope.buckets.last()) else {
        return Ok(Vec::new());
    };
    let own = |rows: Vec<T>| -> Vec<T> {
        rows.into_iter()
            .filter(|r| scope.buckets.contains(&r.place().1))
            .collect()
    };
    let batch_keys = match keys {
        Some(keys) => T::KEYED && keys.len() <= MAX_KEYS_IN_FILTER,
        None => !T::KEYED,
    };
    if let (Some((owner, first, last)), true) = (scope.batchable(), batch_keys) {
        let wanted = keys.map(|k| Arc::new(k.clone()));
        if let Some(rows) = client.scope_reads().read::<T>(client, owner, first, last, wanted).await {
            return Ok(own(rows));
        }
    }
    let key_filter = match keys {
        Some(keys) if keys.len() <= MAX_KEYS_IN_FILTER => {
            let list: Vec<String> = keys.iter().map(u64::to_string).collect();
            format!(" AND record_key IN ({})", list.join(", "))
        }
        _ => String::new(),
    };
    let sql = format!(
        "SELECT {} FROM usage_records \
         WHERE connection_id = ? AND record_type = ? AND endpoint = ? \
           AND bucket_start >= toDateTime(?) AND bucket_start <= toDateTime(?){key_filter}",
        T::columns()
    );
    let query = client
        .query(&sql)
        .bind(scope.connection_id)
        .bind(scope.record_type.as_str())
        .bind(scope.endpoint)
        .bind(*first)
        .bind(*last);
    Ok(own(client.fetch_all(T::WHAT, query).await?))
}

/// The narrow rows of a scope: five small columns per stored row.
pub async fn read_scope_keys(client: &ClickhouseClient, scope: &Scope<'_>) -> Result<Vec<StoredKey>, StoreError> {
    let rows: Vec<OwnedKey> = read_scope(client, scope, None).await?;
    Ok(rows.iter().map(OwnedKey::key).collect())
}

/// The stored rows of a scope without the dimensions their record keys fix
/// ([`StoredMeasures`]): the narrow read's columns plus what a changed
/// record's cancel copy needs.
pub async fn read_scope_measures(
    client: &ClickhouseClient,
    scope: &Scope<'_>,
) -> Result<Vec<StoredMeasures>, StoreError> {
    read_scope(client, scope, None).await
}

/// What a sync reads of its scope before planning the diff.
#[derive(Debug)]
pub enum StoredRead {
    Keys(Vec<StoredKey>),
    Measures(Vec<StoredMeasures>),
}

impl StoredRead {
    /// How many stored rows were read (the size of a diff's work).
    pub fn rows(&self) -> usize {
        match self {
            StoredRead::Keys(keys) => keys.len(),
            StoredRead::Measures(measures) => measures.len(),
        }
    }
}

/// The narrow rows of a scope, or with `measures` its [`StoredMeasures`].
pub async fn read_stored(
    client: &ClickhouseClient,
    scope: &Scope<'_>,
    measures: bool,
) -> Result<StoredRead, StoreError> {
    Ok(if measures {
        StoredRead::Measures(read_scope_measures(client, scope).await?)
    } else {
        StoredRead::Keys(read_scope_keys(client, scope).await?)
    })
}

/// Whole stored rows of the scope's records of `keys`, and of no other: a
/// caller adds them to rows it rebuilt for other keys. (More keys than
/// [`MAX_KEYS_IN_FILTER`] are read without a key filter, so they are
/// filtered here.)
pub async fn read_scope_rows(
    client: &ClickhouseClient,
    scope: &Scope<'_>,
    keys: &BTreeSet<u64>,
) -> Result<Vec<UsageRow>, StoreError> {
    let mut rows: Vec<UsageRow> = read_scope(client, scope, Some(keys)).await?;
    rows.retain(|r| keys.contains(&r.record_key));
    Ok(rows)
}

/// The sync progress of one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermark {
    /// Everything before this has been synced and stored.
    pub watermark: DateTime<Utc>,
    pub last_success_at: DateTime<Utc>,
    pub last_deep_sync_at: DateTime<Utc>,
}

/// One row of `sync_state`.
#[derive(Clone, Debug, Serialize, Deserialize, clickhouse::Row)]
pub struct SyncStateRow {
    pub connection_id: String,
    pub provider: String,
    pub watermark: u32,
    pub last_success_at: u32,
    pub last_deep_sync_at: u32,
    /// Microseconds; the newest row per connection wins.
    pub updated_at: u64,
}

impl SyncStateRow {
    pub fn new(connection_id: &str, provider: &str, state: &Watermark) -> Self {
        Self {
            connection_id: connection_id.to_string(),
            provider: provider.to_string(),
            watermark: to_ch_seconds(state.watermark),
            last_success_at: to_ch_seconds(state.last_success_at),
            last_deep_sync_at: to_ch_seconds(state.last_deep_sync_at),
            updated_at: Utc::now().timestamp_micros().max(0) as u64,
        }
    }
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct WatermarkRow {
    watermark: u32,
    last_success_at: u32,
    last_deep_sync_at: u32,
}

pub async fn read_watermark(client: &ClickhouseClient, connection_id: &str) -> Result<Option<Watermark>, StoreError> {
    let query = client
        .query(
            "SELECT toUInt32(argMax(watermark, updated_at)) AS watermark, \
                    toUInt32(argMax(last_success_at, updated_at)) AS last_success_at, \
                    toUInt32(argMax(last_deep_sync_at, updated_at)) AS last_deep_sync_at \
             FROM sync_state WHERE connection_id = ? GROUP BY connection_id",
        )
        .bind(connection_id);
    let row: Option<WatermarkRow> = client.fetch_optional("read of the watermark", query).await?;
    Ok(row.map(|r| Watermark {
        watermark: from_ch_seconds(r.watermark),
        last_success_at: from_ch_seconds(r.last_success_at),
        last_deep_sync_at: from_ch_seconds(r.last_deep_sync_at),
    }))
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct AccountWatermarkRow {
    connection_id: String,
    watermark: u32,
    last_success_at: u32,
    last_deep_sync_at: u32,
}

/// Every account's watermark, in one query (`sync_state` holds one row per
/// account once merged, so this reads about as many rows as there are
/// accounts).
pub async fn read_all_watermarks(client: &ClickhouseClient) -> Result<HashMap<String, Watermark>, StoreError> {
    let query = client.query(
        "SELECT connection_id, \
                toUInt32(argMax(watermark, updated_at)) AS watermark, \
                toUInt32(argMax(last_success_at, updated_at)) AS last_success_at, \
                toUInt32(argMax(last_deep_sync_at, updated_at)) AS last_deep_sync_at \
         FROM sync_state GROUP BY connection_id",
    );
    let rows: Vec<AccountWatermarkRow> = client.fetch_all("read of every watermark", query).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let state = Watermark {
                watermark: from_ch_seconds(r.watermark),
                last_success_at: from_ch_seconds(r.last_success_at),
                last_deep_sync_at: from_ch_seconds(r.last_deep_sync_at),
            };
            (r.connection_id, state)
        })
        .collect())
}

/// Account ids per emptiness read: each is one `?` of the IN list, and 500
/// ids of up to 64 bytes stay far below ClickHouse's 256 KiB `max_query_size`.
const ACCOUNTS_PER_READ: usize = 500;

#[derive(Debug, Deserialize, clickhouse::Row)]
struct ConnectionIdRow {
    connection_id: String,
}

/// Those of `accounts` with no row at all in `table` (one of ours, keyed by
/// `connection_id` first, so each read touches only the granules of the
/// accounts it names).
pub async fn accounts_without_rows(
    client: &ClickhouseClient,
    table: &str,
    accounts: &[&str],
) -> Result<HashSet<String>, StoreError> {
    let mut with_rows = HashSet::new();
    for chunk in accounts.chunks(ACCOUNTS_PER_READ) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let mut query = client.query(&format!(
            "SELECT DISTINCT connection_id FROM {table} WHERE connection_id IN ({placeholders})"
        ));
        for id in chunk {
            query = query.bind(*id);
        }
        let what = format!("read of which accounts have rows in {table}");
        let rows: Vec<ConnectionIdRow> = client.fetch_all(&what, query).await?;
        with_rows.extend(rows.into_iter().map(|r| r.connection_id));
    }
    Ok(accounts
        .iter()
        .filter(|id| !with_rows.contains(**id))
        .map(|id| id.to_string())
        .collect())
}

/// One row of `sync_runs`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, clickhouse::Row)]
pub struct SyncRunRow {
    pub run_id: String,
    pub connection_id: String,
    pub provider: String,
    /// `schedule`, `backfill`, `deep`, `manual`, `cli`.
    pub trigger: String,
    pub window_start: u32,
    pub window_end: u32,
    /// `success`, `failed`, `partial`.
    pub status: String,
    /// The typed reason of a failure (`FailureKind::as_str`), empty on success.
    pub error_kind: String,
    /// The account's connection status after this attempt
    /// (`ConnectionStatus::as_str`: connected, error, disconnected).
    pub connection_status: String,
    pub rows_fetched: u64,
    pub rows_written: u64,
    pub rows_cancelled: u64,
    pub http_requests: u64,
    pub retries: u64,
    pub duration_ms: u64,
    pub error: String,
    pub started_at: u32,
    pub finished_at: u32,
}

/// Drops `sync_runs` partitions older than `keep_days` (ClickHouse 18.16 has
/// no TTL). Partitions are days (`toYYYYMMDD(started_at)`).
pub async fn prune_sync_runs(
    client: &ClickhouseClient,
    keep_days: i64,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    #[derive(Deserialize, clickhouse::Row)]
    struct Partition {
        partition: String,
    }
    let cutoff: u32 = (now - chrono::Duration::days(keep_days))
        .format("%Y%m%d")
        .to_string()
        .parse()
        .expect("a date formats as digits");
    let query = client.query(
        "SELECT DISTINCT partition FROM system.parts \
         WHERE database = currentDatabase() AND table = 'sync_runs' AND active",
    );
    let partitions: Vec<Partition> = client.fetch_all("read of sync_runs partitions", query).await?;
    let mut dropped = 0;
    for p in partitions {
        let Ok(day) = p.partition.trim_matches('\'').parse::<u32>() else {
            continue;
        };
        if day < cutoff {
            client
                .execute(&format!("ALTER TABLE {{db}}.sync_runs DROP PARTITION {day}"))
                .await?;
            dropped += 1;
        }
    }
    Ok(dropped)
}
