//! What the `status` command shows: each account's last attempt, last
//! success, last error and how far its data is complete, read from
//! `sync_runs` and `sync_state` (the daemon's own record, so it works whether
//! or not a daemon is running).

use serde::Deserialize;

use super::client::{ClickhouseClient, StoreError};

/// One account's standing, as recorded.
#[derive(Clone, Debug, Deserialize, clickhouse::Row)]
pub struct AccountStanding {
    pub connection_id: String,
    /// After the last attempt: connected, error, disconnected ("" before any).
    pub connection_status: String,
    pub last_attempt: u32,
    /// 0 when no attempt succeeded.
    pub last_success: u32,
    pub last_error_kind: String,
    pub last_error: String,
    /// Everything before this is synced and stored (0: nothing yet).
    pub complete_until: u32,
}

/// Every account with at least one recorded attempt or watermark.
pub async fn read_standings(client: &ClickhouseClient) -> Result<Vec<AccountStanding>, StoreError> {
    // Strings and dates as keys only (18.16 crashes on Decimal keys; none here).
    let sql = "SELECT connection_id, \
                      argMax(connection_status, finished_at) AS connection_status, \
                      toUInt32(max(finished_at)) AS last_attempt, \
                      toUInt32(maxIf(finished_at, status = 'success')) AS last_success, \
                      argMaxIf(error_kind, finished_at, status != 'success') AS last_error_kind, \
                      argMaxIf(error, finished_at, status != 'success') AS last_error, \
                      toUInt32(0) AS complete_until \
               FROM sync_runs GROUP BY connection_id";
    let mut runs: Vec<AccountStanding> = client.fetch_all("read of sync_runs", client.query(sql)).await?;
    #[derive(Deserialize, clickhouse::Row)]
    struct Mark {
        connection_id: String,
        watermark: u32,
    }
    let marks: Vec<Mark> = client
        .fetch_all(
            "read of sync_state",
            client.query(
                "SELECT connection_id, toUInt32(argMax(watermark, updated_at)) AS watermark \
                 FROM sync_state GROUP BY connection_id",
            ),
        )
        .await?;
    for mark in marks {
        match runs.iter_mut().find(|r| r.connection_id == mark.connection_id) {
            Some(run) => run.complete_until = mark.watermark,
            None => runs.push(AccountStanding {
                connection_id: mark.connection_id,
                connection_status: String::new(),
                last_attempt: 0,
                last_success: 0,
                last_error_kind: String::new(),
                last_error: String::new(),
                complete_until: mark.watermark,
            }),
        }
    }
    runs.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
    Ok(runs)
}
