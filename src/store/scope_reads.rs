//! Scope reads batched across accounts and endpoints.
//!
//! Every sync reads back the stored keys of the buckets that changed, one
//! small scope per endpoint. One SELECT per scope cost ClickHouse ~3.5 ms of
//! CPU each (10,000 accounts: 8,888 reads and 32 CPU-s per cycle), nearly
//! all of it per query rather than per row: 400 scopes read one by one took
//! 1.4 s on this project's bench server; the same scopes in four SELECTs of
//! 100 `(connection_id, record_type, endpoint) IN (...)` took 0.2 s and read
//! fewer marks (neighbouring scopes share granules).
//!
//! So a narrow scope read is queued here. Up to [`MAX_WORKERS`] workers each
//! take whatever is queued (up to [`MAX_SCOPES`] scopes whose buckets lie
//! within [`MAX_SPAN_SECS`] of each other) into one SELECT: nothing waits
//! for a batch to fill; while one SELECT is in flight the next batch gathers.
//! A worker is a task that lives while the queue is not empty.
//!
//! Rows come back for the union of the batch's bucket ranges; each caller
//! keeps those of its own buckets, exactly what its own SELECT would have
//! returned. A failed batch is not an error: its callers read alone, with
//! the client's retries and error messages.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::client::ClickhouseClient;
use super::diff::StoredKey;

/// SELECTs of batched scopes in flight at once. Few: the fewer in flight,
/// the more each one gathers (with 4 at 1,000 accounts a batch held 2.6
/// scopes on average).
pub const MAX_WORKERS: usize = 2;
/// Scopes per SELECT (each is ~60 bytes of SQL).
pub const MAX_SCOPES: usize = 256;
/// A scope wider than this is read alone, and a batch's scopes lie within
/// this of each other: every scope of a batch is read over the batch's
/// whole range, so a wide one would make every other read more rows. A
/// week covers every incremental sync's lookback; rows cost far less than
/// queries (a batch of 2.6 scopes read 1,400 rows per scope in ~4 ms).
pub const MAX_SPAN_SECS: u32 = 7 * 86_400;

/// The endpoint a scope belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScopeOwner {
    pub connection_id: String,
    pub record_type: &'static str,
    pub endpoint: String,
}

struct Pending {
    owner: ScopeOwner,
    first: u32,
    last: u32,
    reply: tokio::sync::oneshot::Sender<Vec<StoredKey>>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    workers: usize,
    /// Batched SELECTs sent, and the scopes they read.
    selects: u64,
    scopes: u64,
}

/// The queue shared by every clone of one [`ClickhouseClient`].
#[derive(Clone, Default)]
pub struct ScopeReads {
    queue: Arc<Mutex<Queue>>,
}

impl ScopeReads {
    /// Whether a scope from `first` to `last` is read in a batch.
    pub fn batches(first: u32, last: u32) -> bool {
        last.saturating_sub(first) <= MAX_SPAN_SECS
    }

    /// (batched SELECTs sent, scopes they read) so far.
    pub fn counts(&self) -> (u64, u64) {
        let queue = self.queue.lock().expect("scope read queue lock");
        (queue.selects, queue.scopes)
    }

    /// The stored keys of `owner` from `first` to `last` (maybe more: filter
    /// by bucket), read in a batch; `None` if the batch failed.
    pub async fn read(
        &self,
        client: &ClickhouseClient,
        owner: ScopeOwner,
        first: u32,
        last: u32,
    ) -> Option<Vec<StoredKey>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let start_worker = {
            let mut queue = self.queue.lock().expect("scope read queue lock");
            queue.pending.push_back(Pending {
                owner,
                first,
                last,
                reply,
            });
            let start = queue.workers < MAX_WORKERS;
            if start {
                queue.workers += 1;
            }
            start
        };
        if start_worker {
            // Spawned, not run here: a caller that gives up (its sync timed
            // out) must not take other callers' batch down with it.
            tokio::spawn(work(client.clone(), self.queue.clone()));
        }
        answer.await.ok()
    }
}

/// Reads batches until the queue is empty. The check for "empty" and the
/// worker's exit happen under the lock a caller takes to enqueue, so a
/// queued scope always has a worker to read it.
async fn work(client: ClickhouseClient, queue: Arc<Mutex<Queue>>) {
    let mut worker = Worker { queue, exited: false };
    loop {
        let batch = {
            let mut queue = worker.queue.lock().expect("scope read queue lock");
            if queue.pending.is_empty() {
                queue.workers -= 1;
                worker.exited = true;
                return;
            }
            let batch = take_batch(&mut queue.pending);
            queue.selects += 1;
            queue.scopes += batch.len() as u64;
            batch
        };
        match read_batch(&client, &batch).await {
            Ok(mut rows) => {
                for (index, pending) in batch.into_iter().enumerate() {
                    let _ = pending.reply.send(std::mem::take(&mut rows[index]));
                }
            }
            Err(e) => {
                tracing::debug!(scopes = batch.len(), error = %e, "batched scope read failed; each scope is read alone");
                // Dropping the senders tells every caller to read alone.
            }
        }
    }
}

/// A worker's place in the count. A worker dropped mid-batch (its runtime
/// shut down) gives its place back, and the last one to go sends every
/// queued caller to read alone: nothing waits for a worker that is gone.
struct Worker {
    queue: Arc<Mutex<Queue>>,
    exited: bool,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queue.workers -= 1;
        if queue.workers == 0 {
            queue.pending.clear();
        }
    }
}

/// The oldest queued scope and every other one that keeps the batch within
/// [`MAX_SPAN_SECS`], up to [`MAX_SCOPES`].
fn take_batch(pending: &mut VecDeque<Pending>) -> Vec<Pending> {
    let first = pending
        .pop_front()
        .expect("a worker takes a batch only from a non-empty queue");
    let (mut low, mut high) = (first.first, first.last);
    let mut batch = vec![first];
    let mut at = 0;
    while at < pending.len() && batch.len() < MAX_SCOPES {
        let (candidate_low, candidate_high) = (low.min(pending[at].first), high.max(pending[at].last));
        if ScopeReads::batches(candidate_low, candidate_high) {
            (low, high) = (candidate_low, candidate_high);
            batch.push(pending.remove(at).expect("index checked"));
        } else {
            at += 1;
        }
    }
    batch
}

#[derive(Deserialize, clickhouse::Row)]
struct OwnedKey {
    connection_id: String,
    record_type: String,
    endpoint: String,
    bucket_start: u32,
    record_key: u64,
    version: u64,
    sign: i8,
    content_hash: u64,
}

/// One SELECT for every scope of `batch`; the rows of each, in batch order.
async fn read_batch(client: &ClickhouseClient, batch: &[Pending]) -> Result<Vec<Vec<StoredKey>>, super::StoreError> {
    let low = batch.iter().map(|p| p.first).min().unwrap_or_default();
    let high = batch.iter().map(|p| p.last).max().unwrap_or_default();
    let placeholders = vec!["?"; batch.len()].join(", ");
    let sql = format!(
        "SELECT connection_id, record_type, endpoint, {} FROM usage_records \
         WHERE (connection_id, record_type, endpoint) IN ({placeholders}) \
           AND bucket_start >= toDateTime(?) AND bucket_start <= toDateTime(?)",
        StoredKey::COLUMNS.join(", ")
    );
    let mut query = client.query(&sql);
    let mut index: HashMap<(&str, &str, &str), Vec<usize>> = HashMap::with_capacity(batch.len());
    for (at, pending) in batch.iter().enumerate() {
        let owner = &pending.owner;
        query = query.bind((&owner.connection_id, owner.record_type, &owner.endpoint));
        index
            .entry((&owner.connection_id, owner.record_type, &owner.endpoint))
            .or_default()
            .push(at);
    }
    let query = query.bind(low).bind(high);
    let rows: Vec<OwnedKey> = client.fetch_all("batched read of stored row keys", query).await?;
    let mut out: Vec<Vec<StoredKey>> = (0..batch.len()).map(|_| Vec::new()).collect();
    for row in rows {
        let Some(owners) = index.get(&(
            row.connection_id.as_str(),
            row.record_type.as_str(),
            row.endpoint.as_str(),
        )) else {
            continue;
        };
        let key = StoredKey {
            bucket_start: row.bucket_start,
            record_key: row.record_key,
            version: row.version,
            sign: row.sign,
            content_hash: row.content_hash,
        };
        for &at in owners {
            if (batch[at].first..=batch[at].last).contains(&key.bucket_start) {
                out[at].push(key);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(connection: &str, first: u32, last: u32) -> Pending {
        Pending {
            owner: ScopeOwner {
                connection_id: connection.into(),
                record_type: "usage",
                endpoint: "completions".into(),
            },
            first,
            last,
            reply: tokio::sync::oneshot::channel().0,
        }
    }

    #[test]
    fn a_batch_takes_the_oldest_scope_and_those_within_its_span() {
        let span = MAX_SPAN_SECS;
        let mut queue: VecDeque<Pending> = [
            pending("a", 10 * span, 10 * span + 3_600),
            pending("far", 20 * span, 20 * span),
            pending("b", 10 * span - 7_200, 10 * span),
            pending("c", 11 * span - 7_200, 11 * span - 7_200),
            pending("too-far-now", 11 * span, 11 * span),
        ]
        .into();
        let batch = take_batch(&mut queue);
        let names: Vec<&str> = batch.iter().map(|p| p.owner.connection_id.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let left: Vec<&str> = queue.iter().map(|p| p.owner.connection_id.as_str()).collect();
        assert_eq!(left, ["far", "too-far-now"]);
        let (low, high) = (
            batch.iter().map(|p| p.first).min().unwrap(),
            batch.iter().map(|p| p.last).max().unwrap(),
        );
        assert!(ScopeReads::batches(low, high));
    }

    #[test]
    fn a_batch_holds_at_most_max_scopes() {
        let mut queue: VecDeque<Pending> = (0..MAX_SCOPES + 5)
            .map(|i| pending(&format!("a{i}"), 100, 100))
            .collect();
        assert_eq!(take_batch(&mut queue).len(), MAX_SCOPES);
        assert_eq!(take_batch(&mut queue).len(), 5);
        assert!(queue.is_empty());
    }

    /// A worker dropped mid-batch (its runtime gone) leaves no caller
    /// waiting: the queued ones are told to read alone, and the next read
    /// starts a worker again.
    #[test]
    fn a_dropped_worker_gives_its_place_back_and_releases_the_queue() {
        let reads = ScopeReads::default();
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        {
            let mut queue = reads.queue.lock().unwrap();
            queue.workers = 1;
            queue.pending.push_back(Pending {
                reply,
                ..pending("a", 0, 0)
            });
        }
        drop(Worker {
            queue: reads.queue.clone(),
            exited: false,
        });
        let queue = reads.queue.lock().unwrap();
        assert_eq!(queue.workers, 0);
        assert!(queue.pending.is_empty());
        assert!(matches!(
            answer.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn wide_scopes_are_read_alone() {
        assert!(ScopeReads::batches(0, MAX_SPAN_SECS));
        assert!(!ScopeReads::batches(0, MAX_SPAN_SECS + 1));
    }
}
