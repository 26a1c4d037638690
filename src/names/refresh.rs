//! Pulling the provider's names into `workspace_names` and `api_key_names`:
//! at most once per `sync.names_interval` per account (names change rarely),
//! appending a row only for what changed since the last observation, so the
//! tables hold the history of renames and nothing repeated each sync.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::store::{self, ApiKeyNameRow, Current, KeyFacts, WorkspaceNameRow};
use crate::normalize::schema::to_ch_seconds;
use crate::providers::names::NameSnapshot;
use crate::providers::{Provider, ProviderAdapter, ProviderError};
use crate::store::sink::{NameRows, RowSink, SinkError};
use crate::store::{ClickhouseClient, StoreError};

/// The default of `sync.names_interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3_600);

/// When an account's names are due again, and what this process knows is
/// stored. Marked due on every attempt, failed ones included, so a broken
/// names endpoint is not asked every sync.
#[derive(Debug)]
pub struct NamesGate {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    /// The current names as of the last refresh that stored its rows: the
    /// account's lock makes this process their only writer, so only its
    /// first refresh reads them from ClickHouse. Forgotten on any failure.
    stored: Mutex<Option<StoredNames>>,
}

/// An account's current names, by id.
#[derive(Clone, Debug, Default)]
struct StoredNames {
    workspaces: BTreeMap<String, Current<String>>,
    keys: BTreeMap<String, Current<KeyFacts>>,
}

impl StoredNames {
    /// The names once `rows` are stored on top.
    fn apply(&mut self, rows: &NameRows) {
        for row in &rows.workspaces {
            let current = Current {
                value: row.name.clone(),
                observed_at: row.observed_at,
            };
            self.workspaces.insert(row.workspace_id.clone(), current);
        }
        for row in &rows.keys {
            let facts = KeyFacts {
                name: row.name.clone(),
                hint: row.key_hint.clone(),
                workspace_id: row.workspace_id.clone(),
            };
            let current = Current {
                value: facts,
                observed_at: row.observed_at,
            };
            self.keys.insert(row.api_key_id.clone(), current);
        }
    }
}

impl Default for NamesGate {
    fn default() -> Self {
        Self::new(DEFAULT_INTERVAL)
    }
}

impl NamesGate {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: Mutex::new(None),
            stored: Mutex::new(None),
        }
    }

    /// No names are stored for the account (a read at start found none,
    /// after this process locked it), unless a refresh already knows more.
    pub fn stored_none(&self) {
        self.stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(StoredNames::default);
    }

    fn recall(&self) -> Option<StoredNames> {
        self.stored.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn remember(&self, names: Option<StoredNames>) {
        *self.stored.lock().unwrap_or_else(|p| p.into_inner()) = names;
    }

    /// Whether a refresh is due now; if so, it counts as started.
    pub fn take_due(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|t| t.elapsed() < self.interval) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NamesError {
    #[error("{0}")]
    Provider(#[from] ProviderError),
    #[error("account '{account}': reading stored names failed: {source}")]
    Store {
        account: String,
        #[source]
        source: StoreError,
    },
    #[error("account '{account}': storing names failed: {source}")]
    Write {
        account: String,
        #[source]
        source: SinkError,
    },
    #[error("account '{account}': the names fetch did not finish within {}s", after.as_secs())]
    Timeout { account: String, after: Duration },
}

/// What one refresh did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// False when the provider's API lists no names.
    pub supported: bool,
    pub workspaces_seen: usize,
    pub keys_seen: usize,
    /// Rows appended (new or changed names).
    pub workspace_rows: usize,
    pub key_rows: usize,
}

/// Where a refresh reads and writes.
pub struct NamesStore<'a> {
    pub client: &'a ClickhouseClient,
    /// The reads wait for one of these (the fetch never holds one).
    pub store_slots: &'a tokio::sync::Semaphore,
    /// The writes go through the writer's batches.
    pub sink: &'a dyn RowSink,
    pub gate: &'a NamesGate,
}

/// Fetches the account's names and appends what changed. The stored names
/// are read only when this process does not know them yet. `held` (the
/// sync's slot) is let go once the rows are queued: the wait for their
/// batch holds back no other sync.
pub async fn refresh<H: Send>(
    adapter: &dyn ProviderAdapter,
    store: NamesStore<'_>,
    account: &str,
    deadline: Duration,
    held: H,
) -> Result<RefreshOutcome, NamesError> {
    let refreshed = refresh_with(adapter, &store, account, deadline, held).await;
    if refreshed.is_err() {
        // A write may or may not have landed: read again next time.
        store.gate.remember(None);
    }
    refreshed
}

async fn refresh_with<H: Send>(
    adapter: &dyn ProviderAdapter,
    store: &NamesStore<'_>,
    account: &str,
    deadline: Duration,
    held: H,
) -> Result<RefreshOutcome, NamesError> {
    let fetched = tokio::time::timeout(deadline, adapter.fetch_names())
        .await
        .map_err(|_| NamesError::Timeout {
            account: account.to_string(),
            after: deadline,
        })??;
    let Some(snapshot) = fetched else {
        return Ok(RefreshOutcome::default());
    };
    let store_error = |source| NamesError::Store {
        account: account.to_string(),
        source,
    };
    let mut stored = match store.gate.recall() {
        Some(stored) => stored,
        None => {
            let _slot = store.store_slots.acquire().await.expect("store slots are never closed");
            let client = store.client;
            StoredNames {
                workspaces: store::current_workspace_names(client, account)
                    .await
                    .map_err(store_error)?,
                keys: store::current_key_names(client, account).await.map_err(store_error)?,
            }
        }
    };
    let (workspaces, keys) = changes(
        account,
        adapter.provider(),
        &snapshot,
        &stored.workspaces,
        &stored.keys,
        Utc::now(),
    );
    let rows = NameRows { workspaces, keys };
    let write_error = |source| NamesError::Write {
        account: account.to_string(),
        source,
    };
    let stored_ack = store.sink.queue_names(rows.clone()).await.map_err(write_error)?;
    drop(held);
    stored_ack.await.map_err(write_error)?;
    stored.apply(&rows);
    store.gate.remember(Some(stored));
    Ok(RefreshOutcome {
        supported: true,
        workspaces_seen: snapshot.workspaces.len(),
        keys_seen: snapshot.api_keys.len(),
        workspace_rows: rows.workspaces.len(),
        key_rows: rows.keys.len(),
    })
}

/// The rows to append: one per workspace or key that is new or whose facts
/// differ from the stored ones. Each is observed strictly after the stored
/// observation, so "the latest row" is never a tie. An id listed twice
/// counts once (the first).
pub fn changes(
    account: &str,
    provider: Provider,
    snapshot: &NameSnapshot,
    workspaces: &BTreeMap<String, Current<String>>,
    keys: &BTreeMap<String, Current<KeyFacts>>,
    now: DateTime<Utc>,
) -> (Vec<WorkspaceNameRow>, Vec<ApiKeyNameRow>) {
    let now = to_ch_seconds(now);
    let after = |stored: Option<u32>| stored.map_or(now, |t| now.max(t.saturating_add(1)));
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut workspace_rows: Vec<WorkspaceNameRow> = Vec::new();
    for ws in &snapshot.workspaces {
        if !seen.insert(&ws.id) {
            continue;
        }
        let stored = workspaces.get(&ws.id);
        let unchanged = match stored {
            Some(current) => current.value == ws.name,
            None => ws.name.is_empty(),
        };
        if unchanged {
            continue;
        }
        workspace_rows.push(WorkspaceNameRow {
            connection_id: account.to_string(),
            provider: provider.as_str().to_string(),
            workspace_id: ws.id.clone(),
            name: ws.name.clone(),
            observed_at: after(stored.map(|c| c.observed_at)),
        });
    }
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut key_rows: Vec<ApiKeyNameRow> = Vec::new();
    for key in &snapshot.api_keys {
        if !seen.insert(&key.id) {
            continue;
        }
        let facts = KeyFacts {
            name: key.name.clone(),
            hint: key.hint.clone(),
            workspace_id: key.workspace_id.clone(),
        };
        let stored = keys.get(&key.id);
        let unchanged = match stored {
            Some(current) => current.value == facts,
            None => facts.name.is_empty() && facts.hint.is_empty(),
        };
        if unchanged {
            continue;
        }
        key_rows.push(ApiKeyNameRow {
            connection_id: account.to_string(),
            provider: provider.as_str().to_string(),
            api_key_id: key.id.clone(),
            name: facts.name,
            key_hint: facts.hint,
            workspace_id: facts.workspace_id,
            observed_at: after(stored.map(|c| c.observed_at)),
        });
    }
    (workspace_rows, key_rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::names::{ApiKeyName, WorkspaceName};
    use chrono::TimeZone;

    fn snapshot(ws_name: &str, key_name: &str) -> NameSnapshot {
        NameSnapshot {
            workspaces: vec![
                WorkspaceName {
                    id: "wrkspc_1".into(),
                    name: ws_name.into(),
                },
                WorkspaceName {
                    id: "wrkspc_1".into(),
                    name: "listed twice".into(),
                },
            ],
            api_keys: vec![ApiKeyName {
                id: "apikey_1".into(),
                name: key_name.into(),
                hint: "sk-ant-api03-R2D...igAA".into(),
                workspace_id: "wrkspc_1".into(),
            }],
        }
    }

    #[test]
    fn new_and_changed_names_are_appended_unchanged_ones_are_not() {
        let now = Utc.with_ymd_and_hms(2025, 8, 1, 12, 0, 0).unwrap();
        let (ws, keys) = changes(
            "acct",
            Provider::Anthropic,
            &snapshot("Research", "ci"),
            &BTreeMap::new(),
            &BTreeMap::new(),
            now,
        );
        assert_eq!(ws.len(), 1, "an id listed twice counts once");
        assert_eq!((ws[0].name.as_str(), keys[0].name.as_str()), ("Research", "ci"));
        assert_eq!(keys[0].key_hint, "sk-ant-api03-R2D...igAA");

        // Stored as observed in the same second: unchanged names add nothing.
        let stored_ws: BTreeMap<_, _> = [(
            "wrkspc_1".to_string(),
            Current {
                value: "Research".to_string(),
                observed_at: to_ch_seconds(now),
            },
        )]
        .into();
        let stored_keys: BTreeMap<_, _> = [(
            "apikey_1".to_string(),
            Current {
                value: KeyFacts {
                    name: "ci".into(),
                    hint: "sk-ant-api03-R2D...igAA".into(),
                    workspace_id: "wrkspc_1".into(),
                },
                observed_at: to_ch_seconds(now),
            },
        )]
        .into();
        let (ws, keys) = changes(
            "acct",
            Provider::Anthropic,
            &snapshot("Research", "ci"),
            &stored_ws,
            &stored_keys,
            now,
        );
        assert!(ws.is_empty() && keys.is_empty());

        // A rename in the same second is observed one second later, so the
        // latest row is never a tie.
        let (ws, keys) = changes(
            "acct",
            Provider::Anthropic,
            &snapshot("Research 2", "ci"),
            &stored_ws,
            &stored_keys,
            now,
        );
        assert_eq!(ws[0].observed_at, to_ch_seconds(now) + 1);
        assert!(keys.is_empty());
    }

    #[test]
    fn the_gate_lets_one_refresh_through_per_interval() {
        let gate = NamesGate::new(Duration::from_secs(3600));
        assert!(gate.take_due());
        assert!(!gate.take_due());
        let always = NamesGate::new(Duration::ZERO);
        assert!(always.take_due() && always.take_due());
    }
}
