//! An account's `sync_state` as this process last read or wrote it.
//!
//! The account lock makes this process the only writer of the account's
//! watermark, so after the first read a sync never asks ClickHouse for it.
//! A new watermark is queued behind the rows it covers (the writer stores in
//! queue order and only after every earlier row is stored), so a sync need
//! not wait for that write while it holds its slot: it is settled once the
//! slot is released (or at the start of the next sync). A write that failed
//! leaves the state unknown, and the next sync reads it back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::store::sink::{SinkError, StoredAck};
use crate::store::state::{read_all_watermarks, Watermark};
use crate::store::ClickhouseClient;

/// Every account's stored watermark, read in one query by the first sync
/// that needs its own: 10,000 accounts starting made 10,000 one-row reads.
/// An account takes its entry only if the read started after it was
/// locked (`owned_since`): from then on this process was the only writer of
/// its state, so the entry is still true. Others read their own.
#[derive(Default)]
pub struct StoredStates {
    read: tokio::sync::OnceCell<(Instant, Arc<HashMap<String, Watermark>>)>,
}

impl StoredStates {
    /// The account's stored state (`Some(None)`: it has none), or `None`
    /// when it must read its own: the shared read failed (the account's
    /// own read then reports why) or is older than the account's lock.
    pub async fn get(
        &self,
        client: &ClickhouseClient,
        account: &str,
        owned_since: Instant,
    ) -> Option<Option<Watermark>> {
        let read = self
            .read
            .get_or_try_init(|| async {
                let at = Instant::now();
                read_all_watermarks(client).await.map(|all| (at, Arc::new(all)))
            })
            .await;
        match read {
            Ok((at, all)) if *at >= owned_since => Some(all.get(account).cloned()),
            Ok(_) => None,
            Err(err) => {
                tracing::debug!(account, error = %err, "the shared watermark read failed; reading the account's own");
                None
            }
        }
    }
}

#[derive(Default)]
enum Known {
    /// Not read yet, or a write's outcome is unknown: read it from ClickHouse.
    #[default]
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
        let taken = std::mem::take(&mut *self.lock());
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
