//! The names tables in ClickHouse: their rows, and reads of what is current
//! (rows are appended through the writer, `crate::store::sink::RowSink`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::store::{ClickhouseClient, StoreError};

/// One row of `workspace_names`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct WorkspaceNameRow {
    pub connection_id: String,
    pub provider: String,
    pub workspace_id: String,
    pub name: String,
    pub observed_at: u32,
}

/// One row of `api_key_names`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct ApiKeyNameRow {
    pub connection_id: String,
    pub provider: String,
    pub api_key_id: String,
    pub name: String,
    /// Masked, as the provider shows it; never a whole key.
    pub key_hint: String,
    pub workspace_id: String,
    pub observed_at: u32,
}

/// One row of `workspace_display_names`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct DisplayNameRow {
    pub connection_id: String,
    pub provider: String,
    pub workspace_id: String,
    /// `''` = no override (the provider's name shows).
    pub display_name: String,
    pub previous_name: String,
    /// `rename` or `revert`.
    pub action: String,
    pub changed_by: String,
    pub changed_at: u32,
    /// Microseconds, strictly increasing per workspace: orders changes.
    pub seq: u64,
}

/// What is stored now for one workspace: its current name and when that was
/// observed (a new observation must come after it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Current<T> {
    pub value: T,
    pub observed_at: u32,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct CurrentWorkspace {
    workspace_id: String,
    current_name: String,
    last_observed: u32,
}

/// Each workspace's latest provider name for one account.
pub async fn current_workspace_names(
    client: &ClickhouseClient,
    connection_id: &str,
) -> Result<BTreeMap<String, Current<String>>, StoreError> {
    // Aggregates are not named like columns (an 18.16 alias pitfall).
    let query = client
        .query(
            "SELECT workspace_id, argMax(name, observed_at) AS current_name, \
                    toUInt32(max(observed_at)) AS last_observed \
             FROM workspace_names WHERE connection_id = ? GROUP BY workspace_id",
        )
        .bind(connection_id);
    let rows: Vec<CurrentWorkspace> = client.fetch_all("read of workspace names", query).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.workspace_id,
                Current {
                    value: r.current_name,
                    observed_at: r.last_observed,
                },
            )
        })
        .collect())
}

/// What a key's row says besides its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    pub name: String,
    pub hint: String,
    pub workspace_id: String,
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct CurrentKey {
    api_key_id: String,
    current_name: String,
    current_hint: String,
    current_workspace: String,
    last_observed: u32,
}

/// Each key's latest observation for one account.
pub async fn current_key_names(
    client: &ClickhouseClient,
    connection_id: &str,
) -> Result<BTreeMap<String, Current<KeyFacts>>, StoreError> {
    let query = client
        .query(
            "SELECT api_key_id, argMax(name, observed_at) AS current_name, \
                    argMax(key_hint, observed_at) AS current_hint, \
                    argMax(workspace_id, observed_at) AS current_workspace, \
                    toUInt32(max(observed_at)) AS last_observed \
             FROM api_key_names WHERE connection_id = ? GROUP BY api_key_id",
        )
        .bind(connection_id);
    let rows: Vec<CurrentKey> = client.fetch_all("read of API key names", query).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.api_key_id,
                Current {
                    value: KeyFacts {
                        name: r.current_name,
                        hint: r.current_hint,
                        workspace_id: r.current_workspace,
                    },
                    observed_at: r.last_observed,
                },
            )
        })
        .collect())
}

/// Every display-name change of one account (one workspace, when given),
/// oldest first.
pub async fn display_history(
    client: &ClickhouseClient,
    connection_id: Option<&str>,
    workspace_id: Option<&str>,
) -> Result<Vec<DisplayNameRow>, StoreError> {
    let query = client
        .query(
            "SELECT connection_id, provider, workspace_id, display_name, previous_name, action, changed_by, \
                    toUInt32(changed_at) AS changed_at, seq \
             FROM workspace_display_names \
             WHERE (? = '' OR connection_id = ?) AND (? = '' OR workspace_id = ?) \
             ORDER BY connection_id, workspace_id, seq",
        )
        .bind(connection_id.unwrap_or(""))
        .bind(connection_id.unwrap_or(""))
        .bind(workspace_id.unwrap_or(""))
        .bind(workspace_id.unwrap_or(""));
    client.fetch_all("read of display-name history", query).await
}

#[derive(Debug, Deserialize, clickhouse::Row)]
struct Known {
    n: u64,
}

/// Whether the account has seen `workspace_id`: in its usage (as a workspace
/// or an OpenAI project) or among the provider's names.
pub async fn workspace_is_known(
    client: &ClickhouseClient,
    connection_id: &str,
    workspace_id: &str,
) -> Result<bool, StoreError> {
    let query = client
        .query(
            "SELECT toUInt64(count()) AS n FROM ( \
               SELECT 1 FROM usage_daily WHERE connection_id = ? AND (workspace_id = ? OR project_id = ?) LIMIT 1 \
               UNION ALL \
               SELECT 1 FROM workspace_names WHERE connection_id = ? AND workspace_id = ? LIMIT 1)",
        )
        .bind(connection_id)
        .bind(workspace_id)
        .bind(workspace_id)
        .bind(connection_id)
        .bind(workspace_id);
    let known: Option<Known> = client.fetch_optional("lookup of a workspace", query).await?;
    Ok(known.is_some_and(|k| k.n > 0))
}

pub async fn insert_display_name(client: &ClickhouseClient, row: &DisplayNameRow) -> Result<(), StoreError> {
    client
        .insert_rows("workspace_display_names", std::slice::from_ref(row))
        .await
}
