//! Where a sync's rows go: a small trait, so that `sync` and `verify` depend
//! on "something that stores rows and says when", not on the writer actor
//! that implements it (and tests can count what was written).

use std::sync::Arc;

use async_trait::async_trait;

use super::diff::Delta;
use super::state::{SyncRunRow, SyncStateRow};
use super::verify::DailyRow;
use crate::names::store::{ApiKeyNameRow, WorkspaceNameRow};
use crate::normalize::schema::UsageRow;

/// A delta's rows on their way to `usage_records`: rows of its own, and
/// rows picked out of the sync's fetched rows, which were stamped in place
/// and are shared rather than copied. On a first sync every fetched row is
/// new, and a copy of each was half of the daemon's peak memory (heaptrack).
#[derive(Clone, Debug, Default)]
pub struct UsageRows {
    own: Vec<UsageRow>,
    picked: Option<(Arc<Vec<UsageRow>>, Vec<u32>)>,
}

impl UsageRows {
    /// `own`, then `rows[i]` for every `i` of `picks` (each must be in range).
    pub fn with_picks(own: Vec<UsageRow>, rows: Arc<Vec<UsageRow>>, picks: Vec<u32>) -> Self {
        assert!(
            picks.iter().all(|&i| (i as usize) < rows.len()),
            "picked rows lie within the shared rows"
        );
        Self {
            own,
            picked: (!picks.is_empty()).then_some((rows, picks)),
        }
    }

    /// The rows of `delta` as written, its fresh rows stamped in place in
    /// `fetched` (the rows [`super::diff::finish`] was given) and shared when
    /// this is their only holder, copied otherwise (rows a bill endpoint
    /// shares, or that the writer still holds after a retried round).
    pub fn of_delta(delta: Delta, fetched: &mut Arc<Vec<UsageRow>>) -> Self {
        match Arc::get_mut(fetched) {
            Some(rows) => {
                delta.stamp_fresh(rows);
                Self::with_picks(delta.rows, Arc::clone(fetched), delta.fresh)
            }
            None => Self::from(delta.into_rows(fetched)),
        }
    }

    pub fn len(&self) -> usize {
        self.own.len() + self.picked.as_ref().map_or(0, |(_, picks)| picks.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every row, in order: the own rows first.
    pub fn iter(&self) -> impl Iterator<Item = &UsageRow> + Send + '_ {
        let picked = self
            .picked
            .iter()
            .flat_map(|(rows, picks)| picks.iter().map(move |&i| &rows[i as usize]));
        self.own.iter().chain(picked)
    }
}

impl From<Vec<UsageRow>> for UsageRows {
    fn from(own: Vec<UsageRow>) -> Self {
        Self { own, picked: None }
    }
}

/// How a write went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteAck {
    /// Some insert attempt for these rows failed before one succeeded. A failed
    /// attempt may still have landed (a timeout after the server committed), so
    /// the sender must re-read before it calls its sync done.
    pub retried: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum SinkError {
    #[error("the writer stopped before the rows were stored; they will be synced again")]
    Stopped,
    /// ClickHouse refused these rows themselves (not an outage). Other
    /// senders' rows in the same batch were stored without them.
    #[error("ClickHouse rejected the rows (a bug: please report it): {0}")]
    Rejected(String),
}

/// The names rows of one refresh.
#[derive(Clone, Debug, Default)]
pub struct NameRows {
    pub workspaces: Vec<WorkspaceNameRow>,
    pub keys: Vec<ApiKeyNameRow>,
}

impl NameRows {
    pub fn len(&self) -> usize {
        self.workspaces.len() + self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Resolves once queued rows are stored.
pub type StoredAck = std::pin::Pin<Box<dyn std::future::Future<Output = Result<WriteAck, SinkError>> + Send>>;

/// Stores rows; every method resolves once its rows are stored (or queued,
/// for `enqueue_run`, whose row is bookkeeping).
#[async_trait]
pub trait RowSink: Send + Sync + 'static {
    /// Rows for `usage_records`.
    async fn write_usage(&self, rows: Vec<UsageRow>) -> Result<WriteAck, SinkError>;
    /// Rows for `usage_records` in two steps: resolves once they are queued
    /// (the buffer had room), with what resolves once they are stored. A
    /// sender can let go of what it holds (a store slot) in between, so the
    /// wait for a batch does not hold back other syncs' ClickHouse work.
    async fn queue_usage(&self, rows: UsageRows) -> Result<StoredAck, SinkError>;
    /// Repairs summed into `usage_daily`.
    async fn write_daily(&self, rows: Vec<DailyRow>) -> Result<WriteAck, SinkError>;
    /// A `sync_runs` row, without waiting for it to be stored.
    async fn enqueue_run(&self, run: SyncRunRow) -> Result<(), SinkError>;
    /// A watermark row for `sync_state`, in two steps like `queue_usage`:
    /// rows are stored in queue order, so a watermark queued after its
    /// window's rows were stored never lands before them, and the sender
    /// need not wait for it while it holds anything.
    async fn queue_state(&self, state: SyncStateRow) -> Result<StoredAck, SinkError>;
    /// Rows for `workspace_names` and `api_key_names`, in two steps like
    /// `queue_usage`. Through the writer's batches: one INSERT per account
    /// and table made a 10,000-account first sync send 4,446 tiny INSERTs
    /// (13 s of ClickHouse CPU, then merges).
    async fn queue_names(&self, names: NameRows) -> Result<StoredAck, SinkError>;
    /// Stores everything buffered.
    async fn flush(&self) -> Result<(), SinkError>;
}
