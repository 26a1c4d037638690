//! Scope reads batched across accounts and endpoints.
//!
//! Every sync reads back the stored keys of the buckets that changed, one
//! small scope per endpoint, and the whole stored rows of the records that
//! changed. One SELECT per scope cost ClickHouse ~3.5 ms of CPU each (10,000
//! accounts: 8,888 reads and 32 CPU-s per cycle), nearly all of it per query
//! rather than per row: 400 scopes read one by one took 1.4 s on this
//! project's bench server; the same scopes in four SELECTs of 100
//! `(connection_id, record_type, endpoint) IN (...)` took 0.2 s and read
//! fewer marks (neighbouring scopes share granules). Whole rows cost more
//! still: in a cycle after an hour had passed (every account's current day
//! changed), 4,416 whole-row reads one by one were 64 of ClickHouse's 146
//! CPU-s at 10,000 accounts.
//!
//! So a scope read is queued here, in one queue per kind of read: narrow
//! (keys and digests), measures (the same plus what a cancel copy needs
//! besides the fetched row's dimensions) and whole rows (of a few keys).
//! Up to [`MAX_WORKERS`] workers per queue each take whatever is queued (up
//! to [`MAX_SCOPES`] scopes whose buckets lie within
//! [`MAX_SPAN_SECS`] of each other, and for whole rows up to
//! [`MAX_KEYS_IN_FILTER`] record keys) into one SELECT; while one SELECT is
//! in flight the next batch gathers. A read alone goes at once; while reads
//! arrive together, a worker that finds fewer than [`FULL_BATCH`] queued
//! waits [`LINGER`] once for more. A worker is a task that lives while its
//! queue is not empty.
//!
//! Rows come back for the union of the batch's bucket ranges (and keys);
//! each caller keeps those of its own scope, buckets and keys: exactly what
//! its own SELECT would have returned. A failed batch is not an error: its
//! callers read alone, with the client's retries and error messages.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::client::ClickhouseClient;
use super::diff::{StoredKey, StoredMeasures};
use crate::normalize::schema::UsageRow;

/// SELECTs of batched scopes in flight at once, per kind of read. Few: the
/// fewer in flight, the more each one gathers (with 4 at 1,000 accounts a
/// batch held 2.6 scopes on average).
pub const MAX_WORKERS: usize = 2;
/// Scopes per SELECT (each is ~60 bytes of SQL).
pub const MAX_SCOPES: usize = 256;
/// A scope wider than this is read alone, and a batch's scopes lie within
/// this of each other: every scope of a batch is read over the batch's
/// whole range, so a wide one would make every other read more rows. A
/// week covers every incremental sync's lookback; rows cost far less than
/// queries (a batch of 2.6 scopes read 1,400 rows per scope in ~4 ms).
pub const MAX_SPAN_SECS: u32 = 7 * 86_400;
/// A worker that finds fewer scopes than this queued, while reads are
/// arriving together (its queue's last batch held more than one), waits
/// [`LINGER`] once for more before it reads. A SELECT costs ClickHouse about
/// the same for 1 scope as for 16 (4.2 vs 12.9 ms of CPU on this project's
/// bench server), and without waiting a 10,000-account cycle's batches held
/// about 10 scopes: the state reads were half of ClickHouse's CPU.
pub const FULL_BATCH: usize = 64;
/// How long a worker waits for a fuller batch (see [`FULL_BATCH`]). Reads
/// arriving one at a time (a single sync) never wait.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(100);
/// Record keys in one SELECT's key filter, and the most a scope may ask
/// for to be read with others: ClickHouse's default `max_query_size` is
/// 256 KiB, and a key is at most 20 digits and a comma.
pub const MAX_KEYS_IN_FILTER: usize = 2_000;

/// The endpoint a scope belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScopeOwner {
    pub connection_id: String,
    pub record_type: &'static str,
    pub endpoint: String,
}

/// A row a batched read returns: enough to tell whose scope it belongs to.
pub trait ScopeRow: clickhouse::RowOwned + clickhouse::RowRead + Clone + Send + 'static {
    /// The SELECT list.
    fn columns() -> String;
    /// What the read is called in errors.
    const WHAT: &'static str;
    /// The queue its batched reads wait in.
    fn queue(reads: &ScopeReads) -> &Shared<Self>;
    /// Whether its reads are of some record keys only (whole rows); a
    /// queue holds reads of one kind, since a batch filters by the union of
    /// its reads' keys.
    const KEYED: bool;
    /// Its scope's (connection_id, record_type, endpoint), bucket start and
    /// record key.
    fn place(&self) -> ((&str, &str, &str), u32, u64);
}

/// A stored row's narrow columns, with its scope.
#[derive(Clone, Debug, Deserialize, clickhouse::Row)]
pub struct OwnedKey {
    connection_id: String,
    record_type: String,
    endpoint: String,
    bucket_start: u32,
    record_key: u64,
    version: u64,
    sign: i8,
    content_hash: u64,
}

impl OwnedKey {
    pub fn key(&self) -> StoredKey {
        super::diff::stored_key!(self)
    }
}

/// A [`ScopeRow`] whose fields `connection_id`, `record_type`, `endpoint`,
/// `bucket_start` and `record_key` say where it belongs.
macro_rules! scope_row {
    ($row:ty, $queue:ident, $keyed:literal, $what:literal, $columns:expr) => {
        impl ScopeRow for $row {
            const KEYED: bool = $keyed;
            fn columns() -> String {
                $columns
            }
            const WHAT: &'static str = $what;
            fn queue(reads: &ScopeReads) -> &Shared<Self> {
                &reads.$queue
            }
            fn place(&self) -> ((&str, &str, &str), u32, u64) {
                let owner = (
                    self.connection_id.as_str(),
                    self.record_type.as_str(),
                    self.endpoint.as_str(),
                );
                (owner, self.bucket_start, self.record_key)
            }
        }
    };
}

scope_row!(
    OwnedKey,
    keys,
    false,
    "read of stored row keys",
    format!(
        "connection_id, record_type, endpoint, {}",
        StoredKey::COLUMNS.join(", ")
    )
);
scope_row!(
    StoredMeasures,
    measures,
    false,
    "read of stored measures",
    StoredMeasures::COLUMNS.join(", ")
);
scope_row!(
    UsageRow,
    rows,
    true,
    "read of stored rows",
    UsageRow::COLUMNS.join(", ")
);

struct Pending<T> {
    owner: ScopeOwner,
    first: u32,
    last: u32,
    /// Only these record keys (whole-row reads), or every key.
    keys: Option<Arc<BTreeSet<u64>>>,
    reply: tokio::sync::oneshot::Sender<Vec<T>>,
}

/// One kind of read's queue (see the module doc).
pub struct Queue<T> {
    pending: VecDeque<Pending<T>>,
    workers: usize,
    /// Batched SELECTs sent, and the scopes they read.
    selects: u64,
    scopes: u64,
    /// Scopes in the last batch taken.
    last_batch: usize,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            pending: VecDeque::new(),
            workers: 0,
            selects: 0,
            scopes: 0,
            last_batch: 0,
        }
    }
}

pub type Shared<T> = Arc<Mutex<Queue<T>>>;

/// The queues shared by every clone of one [`ClickhouseClient`].
#[derive(Clone, Default)]
pub struct ScopeReads {
    keys: Shared<OwnedKey>,
    measures: Shared<StoredMeasures>,
    rows: Shared<UsageRow>,
}

/// Batched SELECTs sent so far and the scopes they read, per kind of read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCounts {
    pub keys: (u64, u64),
    pub measures: (u64, u64),
    pub rows: (u64, u64),
}

impl ScopeReads {
    /// Whether a scope from `first` to `last` is read in a batch.
    pub fn batches(first: u32, last: u32) -> bool {
        last.saturating_sub(first) <= MAX_SPAN_SECS
    }

    /// (batched SELECTs sent, scopes they read) so far, per kind of read.
    pub fn counts(&self) -> ReadCounts {
        fn of<T>(queue: &Shared<T>) -> (u64, u64) {
            let queue = queue.lock().expect("scope read queue lock");
            (queue.selects, queue.scopes)
        }
        ReadCounts {
            keys: of(&self.keys),
            measures: of(&self.measures),
            rows: of(&self.rows),
        }
    }

    /// The stored rows of `owner` from `first` to `last` (maybe more:
    /// filter by bucket), only those of `keys` (given exactly when
    /// `T::KEYED`, at most [`MAX_KEYS_IN_FILTER`]), read in a batch; `None`
    /// if the batch failed.
    pub async fn read<T: ScopeRow>(
        &self,
        client: &ClickhouseClient,
        owner: ScopeOwner,
        first: u32,
        last: u32,
        keys: Option<Arc<BTreeSet<u64>>>,
    ) -> Option<Vec<T>> {
        debug_assert_eq!(keys.is_some(), T::KEYED);
        debug_assert!(keys.as_ref().is_none_or(|k| k.len() <= MAX_KEYS_IN_FILTER));
        enqueue(T::queue(self), client, owner, first, last, keys).await
    }
}

async fn enqueue<T: ScopeRow>(
    queue: &Shared<T>,
    client: &ClickhouseClient,
    owner: ScopeOwner,
    first: u32,
    last: u32,
    keys: Option<Arc<BTreeSet<u64>>>,
) -> Option<Vec<T>> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let start_worker = {
        let mut queue = queue.lock().expect("scope read queue lock");
        queue.pending.push_back(Pending {
            owner,
            first,
            last,
            keys,
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
        tokio::spawn(work(client.clone(), queue.clone()));
    }
    answer.await.ok()
}

/// Reads batches until the queue is empty. The check for "empty" and the
/// worker's exit happen under the lock a caller takes to enqueue, so a
/// queued scope always has a worker to read it.
async fn work<T: ScopeRow>(client: ClickhouseClient, queue: Shared<T>) {
    let mut worker = Worker { queue, exited: false };
    let mut lingered = false;
    loop {
        let batch = {
            let mut queue = worker.queue.lock().expect("scope read queue lock");
            if queue.pending.is_empty() {
                queue.workers -= 1;
                worker.exited = true;
                return;
            }
            if !lingered && lingers(queue.pending.len(), queue.last_batch) {
                None
            } else {
                let batch = take_batch(&mut queue.pending);
                queue.selects += 1;
                queue.scopes += batch.len() as u64;
                queue.last_batch = batch.len();
                Some(batch)
            }
        };
        let Some(batch) = batch else {
            lingered = true;
            tokio::time::sleep(LINGER).await;
            continue;
        };
        lingered = false;
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

/// Whether a worker that finds `queued` scopes waits for more first: only
/// while reads arrive together (see [`FULL_BATCH`]).
fn lingers(queued: usize, last_batch: usize) -> bool {
    last_batch > 1 && queued < FULL_BATCH
}

/// A worker's place in the count. A worker dropped mid-batch (its runtime
/// shut down) gives its place back, and the last one to go sends every
/// queued caller to read alone: nothing waits for a worker that is gone.
struct Worker<T> {
    queue: Shared<T>,
    exited: bool,
}

impl<T> Drop for Worker<T> {
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
/// [`MAX_SPAN_SECS`] and [`MAX_KEYS_IN_FILTER`], up to [`MAX_SCOPES`].
fn take_batch<T>(pending: &mut VecDeque<Pending<T>>) -> Vec<Pending<T>> {
    let first = pending
        .pop_front()
        .expect("a worker takes a batch only from a non-empty queue");
    let key_count = |p: &Pending<T>| p.keys.as_ref().map_or(0, |k| k.len());
    let (mut low, mut high, mut keys) = (first.first, first.last, key_count(&first));
    let mut batch = vec![first];
    let mut at = 0;
    while at < pending.len() && batch.len() < MAX_SCOPES {
        let candidate = &pending[at];
        let (candidate_low, candidate_high) = (low.min(candidate.first), high.max(candidate.last));
        let candidate_keys = keys + key_count(candidate);
        if ScopeReads::batches(candidate_low, candidate_high) && candidate_keys <= MAX_KEYS_IN_FILTER {
            (low, high, keys) = (candidate_low, candidate_high, candidate_keys);
            batch.push(pending.remove(at).expect("index checked"));
        } else {
            at += 1;
        }
    }
    batch
}

/// One SELECT for every scope of `batch`; the rows of each, in batch order.
/// A queue holds either reads of every key (narrow, measures) or whole-row
/// reads (each with its keys), never both.
async fn read_batch<T: ScopeRow>(
    client: &ClickhouseClient,
    batch: &[Pending<T>],
) -> Result<Vec<Vec<T>>, super::StoreError> {
    let low = batch.iter().map(|p| p.first).min().unwrap_or_default();
    let high = batch.iter().map(|p| p.last).max().unwrap_or_default();
    let placeholders = vec!["?"; batch.len()].join(", ");
    let keys: BTreeSet<u64> = batch
        .iter()
        .flat_map(|p| p.keys.iter().flat_map(|k| k.iter().copied()))
        .collect();
    let key_filter = if keys.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = keys.iter().map(u64::to_string).collect();
        format!(" AND record_key IN ({})", list.join(", "))
    };
    let sql = format!(
        "SELECT {} FROM usage_records \
         WHERE (connection_id, record_type, endpoint) IN ({placeholders}) \
           AND bucket_start >= toDateTime(?) AND bucket_start <= toDateTime(?){key_filter}",
        T::columns()
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
    let rows: Vec<T> = client.fetch_all(T::WHAT, query).await?;
    let mut out: Vec<Vec<T>> = (0..batch.len()).map(|_| Vec::new()).collect();
    for row in rows {
        let (owner, bucket, key) = row.place();
        let Some(owners) = index.get(&owner) else {
            continue;
        };
        let wanted = |at: &&usize| {
            let pending = &batch[**at];
            (pending.first..=pending.last).contains(&bucket) && pending.keys.as_ref().is_none_or(|k| k.contains(&key))
        };
        let takers: Vec<usize> = owners.iter().filter(wanted).copied().collect();
        // One sync per account at a time: a row has one taker, but two
        // scopes of one endpoint would each get their copy.
        if let Some((&last, others)) = takers.split_last() {
            for &at in others {
                out[at].push(row.clone());
            }
            out[last].push(row);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(connection: &str, first: u32, last: u32) -> Pending<OwnedKey> {
        Pending {
            owner: ScopeOwner {
                connection_id: connection.into(),
                record_type: "usage",
                endpoint: "completions".into(),
            },
            first,
            last,
            keys: None,
            reply: tokio::sync::oneshot::channel().0,
        }
    }

    #[test]
    fn a_batch_takes_the_oldest_scope_and_those_within_its_span() {
        let span = MAX_SPAN_SECS;
        let mut queue: VecDeque<Pending<OwnedKey>> = [
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
        let mut queue: VecDeque<Pending<OwnedKey>> = (0..MAX_SCOPES + 5)
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
            let mut queue = reads.keys.lock().unwrap();
            queue.workers = 1;
            queue.pending.push_back(Pending {
                reply,
                ..pending("a", 0, 0)
            });
        }
        drop(Worker {
            queue: reads.keys.clone(),
            exited: false,
        });
        let queue = reads.keys.lock().unwrap();
        assert_eq!(queue.workers, 0);
        assert!(queue.pending.is_empty());
        assert!(matches!(
            answer.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed)
        ));
    }

    #[test]
    fn a_batch_of_whole_rows_holds_at_most_max_keys() {
        let with_keys = |name: &str, count: u64| Pending {
            keys: Some(Arc::new((0..count).collect())),
            ..pending(name, 100, 100)
        };
        let half = (MAX_KEYS_IN_FILTER / 2) as u64;
        let mut queue: VecDeque<Pending<OwnedKey>> =
            [with_keys("a", half), with_keys("big", half + 1), with_keys("b", half)].into();
        let batch = take_batch(&mut queue);
        let names: Vec<&str> = batch.iter().map(|p| p.owner.connection_id.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(take_batch(&mut queue).len(), 1);
    }

    #[test]
    fn a_worker_waits_for_a_fuller_batch_only_while_reads_arrive_together() {
        assert!(!lingers(1, 1), "a read alone goes at once");
        assert!(!lingers(3, 0), "the first batch goes at once");
        assert!(lingers(3, 2), "reads arriving together wait for more");
        assert!(lingers(FULL_BATCH - 1, 40));
        assert!(!lingers(FULL_BATCH, 40), "a full batch goes at once");
    }

    #[test]
    fn wide_scopes_are_read_alone() {
        assert!(ScopeReads::batches(0, MAX_SPAN_SECS));
        assert!(!ScopeReads::batches(0, MAX_SPAN_SECS + 1));
    }
}
