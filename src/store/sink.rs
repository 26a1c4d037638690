//! Where a sync's rows go: a small trait, so that `sync` and `verify` depend
//! on "something that stores rows and says when", not on the writer actor
//! that implements it (and tests can count what was written).

use async_trait::async_trait;

use super::state::{SyncRunRow, SyncStateRow};
use super::verify::DailyRow;
use crate::normalize::schema::UsageRow;

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
    async fn queue_usage(&self, rows: Vec<UsageRow>) -> Result<StoredAck, SinkError>;
    /// Repairs summed into `usage_daily`.
    async fn write_daily(&self, rows: Vec<DailyRow>) -> Result<WriteAck, SinkError>;
    /// A `sync_runs` row, without waiting for it to be stored.
    async fn enqueue_run(&self, run: SyncRunRow) -> Result<(), SinkError>;
    /// A watermark row for `sync_state`, in two steps like `queue_usage`:
    /// rows are stored in queue order, so a watermark queued after its
    /// window's rows were stored never lands before them, and the sender
    /// need not wait for it while it holds anything.
    async fn queue_state(&self, state: SyncStateRow) -> Result<StoredAck, SinkError>;
    /// Stores everything buffered.
    async fn flush(&self) -> Result<(), SinkError>;
}
