//! The writer: the only component that INSERTs into ClickHouse.
//!
//! Deltas from every account are batched by rows and age and inserted as
//! Native (`usage_records`) or RowBinary (the other tables). A failed insert
//! is retried with capped backoff for as long as it takes (docs/DESIGN.md
//! rule 6: rows wait here while ClickHouse is down), and each
//! sender is answered only once its rows are stored, so a connection's
//! watermark never runs ahead of its data.
//!
//! The INSERTs themselves run on a thread of their own, over connections of
//! their own ([`insert_runtime`]); the actor only batches and answers.
//!
//! Given the sync slots ([`WriterActor::start_watching`]), a batch also goes
//! as soon as a burst of syncs ends ([`crate::sync::slots`]): then nothing
//! more is coming, and every sync left waits for it.
//!
//! Backpressure is a semaphore of `max_buffer_rows` permits held by the
//! [`WriterHandle`]: a sender acquires one permit per row before its rows
//! enter the buffer, and the permits return when the rows are stored. When the
//! buffer is full, senders wait, which holds their syncs in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::config::WriterConfig;
use crate::metrics;
use crate::normalize::schema::UsageRow;
use crate::store::state::{SyncRunRow, SyncStateRow};
use crate::store::verify::DailyRow;
use crate::store::ClickhouseClient;
use crate::sync::slots::SyncSlots;

use crate::store::sink::{NameRows, RowSink, StoredAck, UsageRows};
pub use crate::store::sink::{SinkError as WriterError, WriteAck};

/// Rows bound for one table.
enum Payload {
    Usage(UsageRows),
    /// Repairs from `verify`, summed into `usage_daily`.
    Daily(Vec<DailyRow>),
    Run(SyncRunRow),
    State(SyncStateRow),
    Names(NameRows),
}

impl Payload {
    fn rows(&self) -> usize {
        match self {
            Payload::Usage(rows) => rows.len(),
            Payload::Daily(rows) => rows.len(),
            Payload::Names(rows) => rows.len(),
            Payload::Run(_) | Payload::State(_) => 1,
        }
    }
}

struct Pending {
    payload: Payload,
    reply: oneshot::Sender<Result<WriteAck, WriterError>>,
    _permit: OwnedSemaphorePermit,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Enqueue(Pending);

/// Flush everything buffered now; answers once the buffer is empty.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushNow;

/// The writer actor.
pub struct WriterActor {
    client: ClickhouseClient,
    config: WriterConfig,
    queue: Vec<Pending>,
    queued_rows: usize,
    oldest: Option<Instant>,
    flushing: bool,
    age_timer: Option<SpawnHandle>,
    waiting_for_empty: Vec<oneshot::Sender<()>>,
    slots: Option<Arc<SyncSlots>>,
}

impl WriterActor {
    pub fn new(client: ClickhouseClient, config: WriterConfig) -> Self {
        Self {
            client,
            config,
            queue: Vec::new(),
            queued_rows: 0,
            oldest: None,
            flushing: false,
            age_timer: None,
            waiting_for_empty: Vec::new(),
            slots: None,
        }
    }

    /// Starts the actor on the current arbiter and returns its handle.
    pub fn start_with_handle(client: ClickhouseClient, config: WriterConfig) -> WriterHandle {
        Self::start(Self::new(client.with_own_connections(), config))
    }

    /// Like [`Self::start_with_handle`], for the writer of the syncs that
    /// take `slots`: it also flushes the moment a burst of them ends.
    pub fn start_watching(client: ClickhouseClient, config: WriterConfig, slots: Arc<SyncSlots>) -> WriterHandle {
        let mut writer = Self::new(client.with_own_connections(), config);
        writer.slots = Some(slots);
        Self::start(writer)
    }

    fn start(self) -> WriterHandle {
        let permits = Arc::new(Semaphore::new(self.config.max_buffer_rows));
        let max = self.config.max_buffer_rows;
        let addr = Actor::start(self);
        WriterHandle { addr, permits, max }
    }

    /// Looks at the queue each time the sync slots go idle.
    fn watch_slots(&self, ctx: &mut Context<Self>, mut idle: tokio::sync::watch::Receiver<u64>) {
        ctx.spawn(
            async move {
                let open = idle.changed().await.is_ok();
                (idle, open)
            }
            .into_actor(self)
            .map(|(idle, open), act, ctx| {
                act.maybe_flush(ctx);
                if open {
                    act.watch_slots(ctx, idle);
                }
            }),
        );
    }

    fn maybe_flush(&mut self, ctx: &mut Context<Self>) {
        if self.queue.is_empty() {
            if !self.flushing {
                for waiter in self.waiting_for_empty.drain(..) {
                    let _ = waiter.send(());
                }
            }
            return;
        }
        if self.flushing {
            return;
        }
        let due = if self.queued_rows >= self.config.max_batch_rows {
            Some("full")
        } else if !self.waiting_for_empty.is_empty() {
            Some("flush requested")
        } else if self.slots.as_ref().is_some_and(|slots| slots.burst_ended()) {
            Some("burst ended")
        } else if self.oldest.is_some_and(|t| t.elapsed() >= self.config.max_batch_age) {
            Some("age")
        } else {
            None
        };
        let Some(reason) = due else {
            if self.age_timer.is_none() {
                let wait = self
                    .oldest
                    .map(|t| self.config.max_batch_age.saturating_sub(t.elapsed()))
                    .unwrap_or(self.config.max_batch_age);
                self.age_timer = Some(ctx.run_later(wait, |act, ctx| {
                    act.age_timer = None;
                    act.maybe_flush(ctx);
                }));
            }
            return;
        };
        if let Some(timer) = self.age_timer.take() {
            ctx.cancel_future(timer);
        }
        let batch = self.take_batch();
        self.flushing = true;
        let client = self.client.clone();
        let max_delay = self.config.retry_max_delay;
        let chunk = self.config.max_batch_rows;
        let job = async move {
            let started = Instant::now();
            let outcomes = store_batch(&client, &batch, chunk, max_delay).await;
            tracing::debug!(
                reason,
                items = batch.len(),
                rows = batch.iter().map(|p| p.payload.rows()).sum::<usize>(),
                failed = outcomes.iter().filter(|outcome| outcome.is_err()).count(),
                ms = started.elapsed().as_millis() as u64,
                "batch written"
            );
            (batch, outcomes)
        };
        ctx.spawn(
            async move {
                insert_runtime()
                    .spawn(job)
                    .await
                    .expect("the writer's insert task does not panic")
            }
            .into_actor(self)
            .map(|(batch, outcomes), act, ctx| {
                act.flushing = false;
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = pending.reply.send(outcome);
                }
                metrics::writer_queue(act.queued_rows);
                act.maybe_flush(ctx);
            }),
        );
    }

    /// Takes up to `max_batch_rows` rows (at least one pending item) in order.
    fn take_batch(&mut self) -> Vec<Pending> {
        let mut rows = 0;
        let mut take = 0;
        for pending in &self.queue {
            if take > 0 && rows + pending.payload.rows() > self.config.max_batch_rows {
                break;
            }
            rows += pending.payload.rows();
            take += 1;
        }
        let batch: Vec<Pending> = self.queue.drain(..take).collect();
        self.queued_rows -= rows;
        self.oldest = if self.queue.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        batch
    }
}

impl Actor for WriterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Syncs wait on the writer; its mailbox must never be the bottleneck.
        ctx.set_mailbox_capacity(1024);
        if let Some(slots) = &self.slots {
            self.watch_slots(ctx, slots.watch_idle());
        }
    }
}

impl Handler<Enqueue> for WriterActor {
    type Result = ();

    fn handle(&mut self, Enqueue(pending): Enqueue, ctx: &mut Self::Context) {
        self.queued_rows += pending.payload.rows();
        self.oldest.get_or_insert_with(Instant::now);
        self.queue.push(pending);
        metrics::writer_queue(self.queued_rows);
        self.maybe_flush(ctx);
    }
}

impl Handler<FlushNow> for WriterActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: FlushNow, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.waiting_for_empty.push(tx);
        self.maybe_flush(ctx);
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

/// Where the writer's INSERTs run: one thread of their own. On the actix
/// thread, which also polls every sync, an INSERT's rows reached the socket
/// only between other tasks' turns: in a 1,000-account backfill ClickHouse
/// spent 35-55 ms of CPU on each 25,000-row INSERT and 65-550 ms waiting.
fn insert_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tokentra-writer")
            .enable_all()
            .build()
            .expect("the writer's runtime starts")
    })
}

/// Stores one batch; one outcome per pending item, in order.
///
/// Outages are retried until they end. If ClickHouse rejects the rows
/// themselves, each item is stored alone so that one bad delta cannot hold
/// back every other account: the bad item fails, the rest are stored. Items
/// stored again that way may land twice; they are answered `retried`, which
/// makes their syncs re-read and repair (and `verify` covers rollup rows).
async fn store_batch(
    client: &ClickhouseClient,
    batch: &[Pending],
    chunk: usize,
    max_delay: Duration,
) -> Vec<Result<WriteAck, WriterError>> {
    let all: Vec<&Pending> = batch.iter().collect();
    match store_items(client, &all, chunk, max_delay).await {
        Ok(retried) => return vec![Ok(WriteAck { retried }); batch.len()],
        Err(rejection) if batch.len() == 1 => return vec![Err(rejection)],
        Err(rejection) => {
            tracing::error!(items = batch.len(), error = %rejection, "ClickHouse rejected a batch; storing its items one by one");
        }
    }
    let mut outcomes = Vec::with_capacity(batch.len());
    for pending in batch {
        outcomes.push(
            store_items(client, &[pending], chunk, max_delay)
                .await
                .map(|_| WriteAck { retried: true }),
        );
    }
    outcomes
}

/// Inserts the items' rows, table by table, retrying outages; stops at the
/// first rejection. Returns whether any attempt failed.
async fn store_items(
    client: &ClickhouseClient,
    items: &[&Pending],
    chunk: usize,
    max_delay: Duration,
) -> Result<bool, WriterError> {
    let started = Instant::now();
    // Rows are borrowed from the senders' payloads, never copied.
    let usage = || {
        items
            .iter()
            .filter_map(|p| match &p.payload {
                Payload::Usage(rows) => Some(rows),
                _ => None,
            })
            .flat_map(|rows| rows.iter())
    };
    let daily = || {
        items.iter().flat_map(|p| match &p.payload {
            Payload::Daily(rows) => rows.as_slice(),
            _ => &[],
        })
    };
    let runs = || {
        items.iter().filter_map(|p| match &p.payload {
            Payload::Run(run) => Some(run),
            _ => None,
        })
    };
    let states = || {
        items.iter().filter_map(|p| match &p.payload {
            Payload::State(state) => Some(state),
            _ => None,
        })
    };
    let names = || {
        items.iter().filter_map(|p| match &p.payload {
            Payload::Names(rows) => Some(rows),
            _ => None,
        })
    };
    let mut retried = false;
    let (usage_rows, chunk) = (usage().count(), chunk.max(1));
    for offset in (0..usage_rows).step_by(chunk) {
        let n = chunk.min(usage_rows - offset);
        retried |= with_retry("usage_records", client, max_delay, || {
            client.insert_usage(usage().skip(offset).take(n))
        })
        .await?;
    }
    let count = daily().count();
    retried |= with_retry("usage_daily", client, max_delay, || {
        client.insert_iter("usage_daily", daily(), count)
    })
    .await?;
    let count = names().map(|n| n.workspaces.len()).sum();
    retried |= with_retry("workspace_names", client, max_delay, || {
        client.insert_iter("workspace_names", names().flat_map(|n| &n.workspaces), count)
    })
    .await?;
    let count = names().map(|n| n.keys.len()).sum();
    retried |= with_retry("api_key_names", client, max_delay, || {
        client.insert_iter("api_key_names", names().flat_map(|n| &n.keys), count)
    })
    .await?;
    let count = runs().count();
    retried |= with_retry("sync_runs", client, max_delay, || {
        client.insert_iter("sync_runs", runs(), count)
    })
    .await?;
    let count = states().count();
    retried |= with_retry("sync_state", client, max_delay, || {
        client.insert_iter("sync_state", states(), count)
    })
    .await?;
    metrics::writer_flushed(usage_rows, started.elapsed());
    Ok(retried)
}

/// Runs `insert` until it succeeds (retrying outages with capped backoff) or
/// ClickHouse rejects the rows. `Ok` says whether any attempt failed.
///
/// While waiting out the backoff the server is pinged every [`PROBE_EVERY`]:
/// once it answers again the insert is retried at once, so recovery after an
/// outage takes about a second however long the outage (and so the backoff)
/// grew.
async fn with_retry<F, Fut>(
    table: &str,
    client: &ClickhouseClient,
    max_delay: Duration,
    mut insert: F,
) -> Result<bool, WriterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::store::StoreError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut retried = false;
    loop {
        match insert().await {
            Ok(()) => return Ok(retried),
            Err(err) if err.is_rejection() => {
                metrics::writer_insert_error();
                return Err(WriterError::Rejected(format!("{table}: {err}")));
            }
            Err(err) => {
                retried = true;
                metrics::writer_insert_error();
                tracing::warn!(table, error = %err, delay_ms = delay.as_millis() as u64, "insert failed; rows stay buffered and will be retried");
                if err.server_code().is_none() {
                    // Unreachable rather than refusing: retry once it answers.
                    wait_for_server(client, delay).await;
                } else {
                    tokio::time::sleep(delay).await;
                }
                delay = (delay * 2).min(max_delay);
            }
        }
    }
}

/// How often a failing writer asks whether ClickHouse answers again.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// Waits `delay`, or less: returns as soon as a ping succeeds after a
/// probe interval (the server is back; the insert should be tried now).
async fn wait_for_server(client: &ClickhouseClient, delay: Duration) {
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep(PROBE_EVERY.min(deadline - now)).await;
        let answered = tokio::time::timeout(PROBE_EVERY, client.ping()).await;
        if matches!(answered, Ok(Ok(()))) {
            return;
        }
    }
}

/// How syncs talk to the writer.
#[derive(Clone)]
pub struct WriterHandle {
    addr: Addr<WriterActor>,
    permits: Arc<Semaphore>,
    max: usize,
}

#[async_trait::async_trait]
impl RowSink for WriterHandle {
    async fn write_usage(&self, rows: Vec<UsageRow>) -> Result<WriteAck, WriterError> {
        self.queue_usage(rows.into()).await?.await
    }

    async fn queue_usage(&self, rows: UsageRows) -> Result<StoredAck, WriterError> {
        if rows.is_empty() {
            return Ok(Box::pin(async { Ok(WriteAck::default()) }));
        }
        let ack = self.queue(Payload::Usage(rows)).await?;
        Ok(Box::pin(async move { ack.await.map_err(|_| WriterError::Stopped)? }))
    }

    async fn write_daily(&self, rows: Vec<DailyRow>) -> Result<WriteAck, WriterError> {
        if rows.is_empty() {
            return Ok(WriteAck::default());
        }
        self.send(Payload::Daily(rows)).await
    }

    /// Queues without waiting for the row to be stored: it is bookkeeping,
    /// and a sync should not wait a batch cycle for it. (Still bounded: it
    /// takes a buffer permit like any row.)
    async fn enqueue_run(&self, run: SyncRunRow) -> Result<(), WriterError> {
        let (pending, _ack) = self.pending(Payload::Run(run)).await?;
        self.addr.send(Enqueue(pending)).await.map_err(|_| WriterError::Stopped)
    }

    async fn queue_state(&self, state: SyncStateRow) -> Result<StoredAck, WriterError> {
        let ack = self.queue(Payload::State(state)).await?;
        Ok(Box::pin(async move { ack.await.map_err(|_| WriterError::Stopped)? }))
    }

    async fn queue_names(&self, names: NameRows) -> Result<StoredAck, WriterError> {
        if names.is_empty() {
            return Ok(Box::pin(async { Ok(WriteAck::default()) }));
        }
        let ack = self.queue(Payload::Names(names)).await?;
        Ok(Box::pin(async move { ack.await.map_err(|_| WriterError::Stopped)? }))
    }

    async fn flush(&self) -> Result<(), WriterError> {
        self.addr.send(FlushNow).await.map_err(|_| WriterError::Stopped)
    }
}

impl WriterHandle {
    /// The handle as the sink syncs write to.
    pub fn sink(&self) -> std::sync::Arc<dyn RowSink> {
        std::sync::Arc::new(self.clone())
    }

    async fn send(&self, payload: Payload) -> Result<WriteAck, WriterError> {
        let ack = self.queue(payload).await?;
        ack.await.map_err(|_| WriterError::Stopped)?
    }

    /// Puts `payload` in the buffer (waiting for room); the receiver answers
    /// once it is stored.
    async fn queue(&self, payload: Payload) -> Result<oneshot::Receiver<Result<WriteAck, WriterError>>, WriterError> {
        let (pending, ack) = self.pending(payload).await?;
        self.addr
            .send(Enqueue(pending))
            .await
            .map_err(|_| WriterError::Stopped)?;
        Ok(ack)
    }

    /// Takes buffer permits for `payload` (waiting while the buffer is full).
    async fn pending(
        &self,
        payload: Payload,
    ) -> Result<(Pending, oneshot::Receiver<Result<WriteAck, WriterError>>), WriterError> {
        // A delta larger than the whole buffer takes every permit and waits
        // for an empty buffer rather than deadlocking.
        let wanted = u32::try_from(payload.rows().min(self.max)).unwrap_or(u32::MAX);
        let permit = self
            .permits
            .clone()
            .acquire_many_owned(wanted)
            .await
            .map_err(|_| WriterError::Stopped)?;
        let (reply, ack) = oneshot::channel();
        Ok((
            Pending {
                payload,
                reply,
                _permit: permit,
            },
            ack,
        ))
    }

    /// Rows currently buffered or waiting for room (for tests and /readyz).
    pub fn buffered_rows(&self) -> usize {
        self.max - self.permits.available_permits()
    }
}
