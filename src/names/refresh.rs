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
use crate::store::{ClickhouseClient, StoreError};

/// The default of `sync.names_interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3_600);

/// When an account's names are due again. Marked on every attempt, failed
/// ones included, so a broken names endpoint is not asked every sync.
#[derive(Debug)]
pub struct NamesGate {
    interval: Duration,
    last: Mutex<Option<Instant>>,
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
        }
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
    #[error("account '{account}': storing names failed: {source}")]
    Store {
        account: String,
        #[source]
        source: StoreError,
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

/// Fetches the account's names and appends what changed; the reads and
/// writes wait for one of `store_slots` (the fetch never holds one).
pub async fn refresh(
    adapter: &dyn ProviderAdapter,
    client: &ClickhouseClient,
    store_slots: &tokio::sync::Semaphore,
    account: &str,
    deadline: Duration,
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
    let _store = store_slots.acquire().await.expect("store slots are never closed");
    let workspaces = store::current_workspace_names(client, account)
        .await
        .map_err(store_error)?;
    let keys = store::current_key_names(client, account).await.map_err(store_error)?;
    let (workspace_rows, key_rows) = changes(account, adapter.provider(), &snapshot, &workspaces, &keys, Utc::now());
    store::insert_workspace_names(client, &workspace_rows)
        .await
        .map_err(store_error)?;
    store::insert_key_names(client, &key_rows).await.map_err(store_error)?;
    Ok(RefreshOutcome {
        supported: true,
        workspaces_seen: snapshot.workspaces.len(),
        keys_seen: snapshot.api_keys.len(),
        workspace_rows: workspace_rows.len(),
        key_rows: key_rows.len(),
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
