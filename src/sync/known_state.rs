//! An account's `sync_state` as this process last read or wrote it.
//!
//! The account lock makes this process the only writer of the account's
//! watermark, so after the first read a sync never asks ClickHouse for it.
//! A new watermark is queued behind the rows it covers (the writer stores in
//! queue order and only after every earlier row is stored), so a sync need
//! not wait for that write while it holds its slot: it is settled once the
//! slot is released (or at the start of the next sync). A write that failed
//! leaves the state unknown, and the next sync reads it back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::store::sink::{SinkError, StoredAck};
use crate::store::state::{accounts_without_rows, read_all_watermarks, Watermark};
use crate::store::{ClickhouseClient, StoreError};

/// What the process-wide read found for one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAtStart {
    pub watermark: Option<Watermark>,
    /// The account had no usage row at all (see [`super::fresh`]).
    pub holds_no_rows: bool,
    /// The account had no workspace or key name row either: its first names
    /// refresh compares against none without a read.
    pub holds_no_names: bool,
    /// When the read began.
    pub read_at: Instant,
}

/// What the shared read found: every stored watermark, and which accounts
/// without one have no usage row, and no name row, either.
struct SharedRead {
    at: Instant,
    watermarks: HashMap<String, Watermark>,
    without_rows: HashSet<String>,
    without_names: HashSet<String>,
}

/// Every account's stored watermark, read in one query by the first sync
/// that needs its own: 10,000 accounts starting made 10,000 one-row reads.
/// The accounts configured at start that have no watermark are then asked
/// for in a few reads more: which have no usage row at all (their backfill
/// then reads nothing back, [`super::fresh`]) and which no name row (their
/// first names refresh reads nothing back).
///
/// An account takes its entry only if the read started after it was
/// locked (`owned_since`): from then on this process was the only writer of
/// its state and rows, so the entry is still true. Others read their own.
pub struct StoredStates {
    /// The accounts whose emptiness the read looks up.
    accounts: Vec<String>,
    read: tokio::sync::OnceCell<Arc<SharedRead>>,
}

impl StoredStates {
    /// A read that also looks up which of `accounts` have no rows (any
    /// other account is taken to have some).
    pub fn new(accounts: impl IntoIterator<Item = String>) -> Self {
        Self {
            accounts: accounts.into_iter().collect(),
            read: Default::default(),
        }
    }

    /// The account's stored state, or `None` when it must read its own:
    /// the shared read failed (the account's own read then reports why) or
    /// is older than the account's lock.
    pub async fn get(&self, client: &ClickhouseClient, account: &str, owned_since: Instant) -> Option<StoredAtStart> {
        let read = self.read.get_or_try_init(|| self.read_all(client)).await;
        match read {
            Ok(read) if read.at >= owned_since => Some(StoredAtStart {
                watermark: read.watermarks.get(account).cloned(),
                holds_no_rows: read.without_rows.contains(account),
                holds_no_names: read.without_names.contains(account),
                read_at: read.at,
            }),
            Ok(_) => None,
            Err(err) => {
                tracing::debug!(account, error = %err, "the shared watermark read failed; reading the account's own");
                None
            }
        }
    }

    async fn read_all(&self, client: &ClickhouseClient) -> Result<Arc<SharedRead>, StoreError> {
        let at = Instant::now();
        let watermarks = read_all_watermarks(client).await?;
        let unsynced: Vec<&str> = self
            .accounts
            .iter()
            .map(String::as_str)
            .filter(|id| !watermarks.contains_key(*id))
            .collect();
        let without_rows = accounts_without_rows(client, "usage_records", &unsynced).await?;
        let no_workspaces = accounts_without_rows(client, "workspace_names", &unsynced).await?;
        let no_keys = accounts_without_rows(client, "api_key_names", &unsynced).await?;
        Ok(Arc::new(SharedRead {
            at,
            watermarks,
            without_rows,
            without_names: no_workspaces.intersection(&no_keys).cloned().collect(),
        }))
    }
}

#[derive(Default)]
enum Known {
    /// Not read by this process yet: the shared read at start
    /// ([`StoredStates`]) may answer.
    #[default]
    NotRead,
    /// A write's outcome is unknown: read it from ClickHouse (the shared
    /// read is older than that write).
    Unknown,
    /// Read, or written and acknowledged. `None`: the account has no state.
    Stored(Option<Watermark>),
    /// Queued; `Watermark` holds once the ack says stored.
    Writing(Watermark, StoredAck),
}

/// The account's progress as known to this process (see the module doc).
#[derive(Default)]
pub struct KnownState {
    known: Mutex<Known>,
}

impl KnownState {
    /// The progress if known; `None` when it must be read from ClickHouse.
    /// Waits for a queued write's outcome first.
    pub async fn get(&self, account: &str) -> Option<Option<Watermark>> {
        if let Err(err) = self.settle().await {
            tracing::warn!(account, error = %err, "the last watermark write failed; reading the stored one");
            return None;
        }
        match &*self.lock() {
            Known::Stored(state) => Some(state.clone()),
            _ => None,
        }
    }

    /// Waits for a queued write to be stored; its failure makes the state
    /// unknown (read back next time) and is returned.
    pub async fn settle(&self) -> Result<(), SinkError> {
        let taken = std::mem::replace(&mut *self.lock(), Known::Unknown);
        let settled = match taken {
            Known::Writing(state, ack) => match ack.await {
                Ok(_) => Known::Stored(Some(state)),
                Err(err) => return Err(err),
            },
            other => other,
        };
        *self.lock() = settled;
        Ok(())
    }

    /// Whether nothing was read or written yet: only then may the shared
    /// read at start stand for the account's own (it is older than any
    /// write of this process, and says nothing of what that write did).
    pub fn never_read(&self) -> bool {
        matches!(*self.lock(), Known::NotRead)
    }

    /// What a read from ClickHouse returned.
    pub fn read(&self, state: Option<Watermark>) {
        *self.lock() = Known::Stored(state);
    }

    /// A write of `state` was queued; `ack` resolves once it is stored.
    pub fn writing(&self, state: Watermark, ack: StoredAck) {
        *self.lock() = Known::Writing(state, ack);
    }

    /// A write could not even be queued: the stored state is unknown.
    pub fn forget(&self) {
        *self.lock() = Known::Unknown;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sink::WriteAck;
    use chrono::{TimeZone, Utc};

    fn state(hour: u32) -> Watermark {
        let at = Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap();
        Watermark {
            watermark: at,
            last_success_at: at,
            last_deep_sync_at: at,
        }
    }

    fn ack(outcome: Result<WriteAck, SinkError>) -> StoredAck {
        Box::pin(async move { outcome })
    }

    #[tokio::test]
    async fn unknown_until_read_then_kept() {
        let known = KnownState::default();
        assert_eq!(known.get("a").await, None);
        known.read(None);
        assert_eq!(known.get("a").await, Some(None));
        known.read(Some(state(1)));
        assert_eq!(known.get("a").await, Some(Some(state(1))));
        assert_eq!(known.get("a").await, Some(Some(state(1))));
    }

    #[tokio::test]
    async fn a_stored_write_becomes_the_known_state() {
        let known = KnownState::default();
        known.read(Some(state(1)));
        known.writing(state(2), ack(Ok(WriteAck::default())));
        assert_eq!(known.get("a").await, Some(Some(state(2))));
        assert_eq!(known.get("a").await, Some(Some(state(2))));
    }

    #[tokio::test]
    async fn settling_waits_for_the_write_and_reports_its_failure() {
        let known = KnownState::default();
        known.settle().await.unwrap();
        assert_eq!(known.get("a").await, None, "settling nothing knows nothing");
        known.writing(state(2), ack(Ok(WriteAck::default())));
        known.settle().await.unwrap();
        assert_eq!(known.get("a").await, Some(Some(state(2))));
        known.writing(state(3), ack(Err(SinkError::Stopped)));
        assert!(matches!(known.settle().await, Err(SinkError::Stopped)));
        assert_eq!(known.get("a").await, None, "a failed write is read back");
    }

    #[tokio::test]
    async fn only_a_state_never_read_may_come_from_the_shared_read() {
        let known = KnownState::default();
        assert!(known.never_read());
        known.read(None);
        assert!(!known.never_read());

        let failed = KnownState::default();
        failed.writing(state(2), ack(Err(SinkError::Stopped)));
        assert!(failed.settle().await.is_err());
        assert!(
            !failed.never_read(),
            "a failed write is read back, not taken from the start"
        );

        let forgotten = KnownState::default();
        forgotten.forget();
        assert!(!forgotten.never_read());
    }

    #[tokio::test]
    async fn a_failed_write_makes_the_state_unknown() {
        let known = KnownState::default();
        known.read(Some(state(1)));
        known.writing(state(2), ack(Err(SinkError::Rejected("bad".into()))));
        assert_eq!(
            known.get("a").await,
            None,
            "must be read back, neither 1 nor 2 is certain"
        );
        known.writing(state(3), ack(Err(SinkError::Stopped)));
        known.forget();
        assert_eq!(known.get("a").await, None);
    }
}
