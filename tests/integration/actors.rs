//! The connection actor's life: one sync in flight, ticks coalesced, a
//! panicking sync restarts the actor (counted the way actix's own supervisor
//! tests count: atomics bumped in `started` / `restarting`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::DurationRound;
use tokentra_sync::actors::connection::{ConnectionActor, ConnectionLife, IsSyncing, Schedule, TriggerSync};
use tokentra_sync::actors::writer::WriterActor;
use tokentra_sync::app::App;
use tokentra_sync::normalize::schema::{
    Dimensions, FetchedRecord, Granularity, Measures, RawField, RawGroup, RecordIdentity, RecordType,
};
use tokentra_sync::normalize::Normalizer;
use tokentra_sync::providers::{
    EndpointFetch, EndpointSpec, HttpStats, Provider, ProviderAdapter, ProviderError, TimeWindow,
};
use tokentra_sync::store::migrations;
use tokentra_sync::sync::window::SyncKind;
use tokentra_sync::sync::AccountSync;
use tokio::sync::Semaphore;

use crate::support::TestConfig;

/// An adapter whose fetches wait at a gate the test opens, and that can panic.
struct GatedAdapter {
    gate: Arc<Semaphore>,
    fetches: Arc<AtomicU32>,
    panic_next: Arc<AtomicBool>,
    fail_next: Arc<AtomicBool>,
    /// The window of every fetch, in order.
    windows: Arc<std::sync::Mutex<Vec<TimeWindow>>>,
    stats: Arc<HttpStats>,
    /// Each fetch answers one record for the window's first hour, so the
    /// sync has a delta to write.
    answers_a_record: bool,
}

impl GatedAdapter {
    /// Behind `gate`, counting its fetches in `fetches`, answering nothing.
    fn new(gate: Arc<Semaphore>, fetches: Arc<AtomicU32>) -> Self {
        Self {
            gate,
            fetches,
            panic_next: Arc::new(AtomicBool::new(false)),
            fail_next: Arc::new(AtomicBool::new(false)),
            windows: Arc::new(std::sync::Mutex::new(Vec::new())),
            stats: Arc::new(HttpStats::default()),
            answers_a_record: false,
        }
    }
}

#[async_trait]
impl ProviderAdapter for GatedAdapter {
    fn provider(&self) -> Provider {
        Provider::OpenAi
    }

    fn endpoints(&self) -> Vec<EndpointSpec> {
        vec![EndpointSpec {
            record_type: RecordType::Usage,
            endpoint: "completions",
            granularity: Granularity::Hour,
        }]
    }

    async fn fetch(&self, _: &EndpointSpec, window: TimeWindow) -> Result<EndpointFetch, ProviderError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.windows.lock().unwrap().push(window);
        if self.panic_next.swap(false, Ordering::SeqCst) {
            panic!("adapter bug (injected by the test)");
        }
        if self.fail_next.swap(false, Ordering::SeqCst) {
            return Err(ProviderError::Malformed {
                account: "gated".into(),
                endpoint: "completions".into(),
                detail: "injected by the test".into(),
            });
        }
        self.gate.acquire().await.expect("gate open").forget();
        let mut fetch = EndpointFetch::default();
        if self.answers_a_record {
            fetch.records.push(one_record(window));
        }
        Ok(fetch)
    }

    fn http_stats(&self) -> Arc<HttpStats> {
        self.stats.clone()
    }
}

/// One hour of completions usage at the start of `window`.
fn one_record(window: TimeWindow) -> FetchedRecord {
    let start = window.start.duration_trunc(chrono::Duration::hours(1)).unwrap();
    FetchedRecord {
        identity: RecordIdentity {
            record_type: RecordType::Usage,
            endpoint: "completions".into(),
            granularity: Granularity::Hour,
            bucket_start: start,
            bucket_end: start + chrono::Duration::hours(1),
            raw_group: RawGroup::from([("model", RawField::Text("gpt-4o".into()))]),
        },
        dims: Dimensions {
            model_raw: "gpt-4o".into(),
            service: "completions".into(),
            ..Dimensions::default()
        },
        measures: Measures {
            input_tokens: 100,
            output_tokens: 10,
            requests: 1,
            requests_reported: true,
            ..Measures::default()
        },
    }
}

struct Harness {
    addr: actix::Addr<ConnectionActor>,
    life: Arc<ConnectionLife>,
    gate: Arc<Semaphore>,
    fetches: Arc<AtomicU32>,
    panic_next: Arc<AtomicBool>,
    fail_next: Arc<AtomicBool>,
    windows: Arc<std::sync::Mutex<Vec<TimeWindow>>>,
}

async fn harness(test: &str) -> Harness {
    let accounts = "[[accounts]]\nid = \"gated\"\nprovider = \"openai\"\nbackfill_days = 1\n[accounts.credentials]\napi_key = \"sk-admin-FAKE-gated\"\n";
    let config = TestConfig::new(test, accounts).validated();
    let app = App::new(config.clone()).unwrap();
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), config.writer.clone());
    let gate = Arc::new(Semaphore::new(0));
    let fetches = Arc::new(AtomicU32::new(0));
    let panic_next = Arc::new(AtomicBool::new(false));
    let fail_next = Arc::new(AtomicBool::new(false));
    let windows = Arc::new(std::sync::Mutex::new(Vec::new()));
    let account = config.accounts[0].clone();
    let sync = AccountSync {
        adapter: Arc::new(GatedAdapter {
            gate: gate.clone(),
            fetches: fetches.clone(),
            panic_next: panic_next.clone(),
            fail_next: fail_next.clone(),
            windows: windows.clone(),
            stats: Arc::new(HttpStats::default()),
            answers_a_record: false,
        }),
        normalizer: Normalizer::new(&account.id, account.provider, app.pricing.clone()),
        store: app.store.clone(),
        writer: writer.sink(),
        policy: app.window_policy(&account),
        endpoint_deadline: app.retry.endpoint_deadline,
        rollup_to_verify: Default::default(),
        sync_slots: app.sync_slots.clone(),
        store_slots: app.store_slots.clone(),
        known_state: Default::default(),
        stored_states: app.stored_states.clone(),
        owned_since: std::time::Instant::now(),
        names: Default::default(),
        settled: Default::default(),
        fresh: Default::default(),
        account,
    };
    let schedule = Schedule {
        interval: Duration::from_secs(3600),
        jitter: Duration::ZERO,
        deep_interval: Duration::from_secs(86_400),
        verify_interval: Duration::from_secs(86_400),
        verify_days: 1,
        tick_on_start: false,
    };
    let life = Arc::new(ConnectionLife::default());
    let actor_life = life.clone();
    let addr = actix::Supervisor::start(move |_| ConnectionActor::new(sync, schedule, actor_life));
    Harness {
        addr,
        life,
        gate,
        fetches,
        panic_next,
        fail_next,
        windows,
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[actix_rt::test]
async fn ticks_during_a_sync_are_coalesced_into_one_more_sync() {
    let h = harness("coalesce").await;
    assert!(
        h.addr
            .send(TriggerSync::new(SyncKind::Incremental))
            .await
            .unwrap()
            .started(),
        "idle: starts at once"
    );
    eventually("the first fetch", || h.fetches.load(Ordering::SeqCst) == 1).await;
    assert!(h.addr.send(IsSyncing).await.unwrap());
    // Three more requests while the first sync waits at the gate.
    for _ in 0..3 {
        assert!(
            !h.addr
                .send(TriggerSync::new(SyncKind::Incremental))
                .await
                .unwrap()
                .started(),
            "busy: coalesced"
        );
    }
    assert_eq!(
        h.life.syncs_started.load(Ordering::SeqCst),
        1,
        "never two syncs in flight"
    );
    assert_eq!(h.life.coalesced.load(Ordering::SeqCst), 3);
    h.gate.add_permits(100);
    eventually("the coalesced sync to finish", || {
        h.life.syncs_finished.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(
        h.life.syncs_started.load(Ordering::SeqCst),
        2,
        "three ticks became one sync"
    );
    assert!(!h.addr.send(IsSyncing).await.unwrap());
}

#[actix_rt::test]
async fn a_panicking_sync_restarts_the_actor_which_keeps_working() {
    let h = harness("restart").await;
    eventually("the actor to start", || h.life.starts.load(Ordering::SeqCst) == 1).await;
    h.panic_next.store(true, Ordering::SeqCst);
    assert!(h
        .addr
        .send(TriggerSync::new(SyncKind::Incremental))
        .await
        .unwrap()
        .started());
    eventually("the restart", || h.life.restarts.load(Ordering::SeqCst) == 1).await;
    eventually("started again after restarting", || {
        h.life.starts.load(Ordering::SeqCst) == 2
    })
    .await;
    // The restarted actor syncs normally.
    h.gate.add_permits(100);
    assert!(h
        .addr
        .send(TriggerSync::new(SyncKind::Incremental))
        .await
        .unwrap()
        .started());
    // The crashed sync counts as finished too.
    eventually("a sync after the restart", || {
        h.life.syncs_finished.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(h.fetches.load(Ordering::SeqCst), 2);
}

#[actix_rt::test]
async fn a_failed_deep_sync_is_retried_as_a_deep_sync() {
    let h = harness("deep_retry").await;
    h.gate.add_permits(1000);
    // History first, so the next incremental sync would read only the lookback.
    assert!(h
        .addr
        .send(TriggerSync::new(SyncKind::Incremental))
        .await
        .unwrap()
        .started());
    eventually("the backfill", || h.life.syncs_finished.load(Ordering::SeqCst) == 1).await;
    let width = |w: &TimeWindow| (w.end - w.start).num_days();
    h.fail_next.store(true, Ordering::SeqCst);
    let before = h.windows.lock().unwrap().len();
    assert!(h.addr.send(TriggerSync::new(SyncKind::Deep)).await.unwrap().started());
    // The failure backoff (10s) brings the retry; it must be deep again.
    eventually("the retry after the failed deep sync", || {
        h.life.syncs_finished.load(Ordering::SeqCst) == 3
    })
    .await;
    // A deep sync reads 35 days in 7-day chunks; the first chunk failed.
    let windows = h.windows.lock().unwrap()[before..].to_vec();
    assert_eq!(width(&windows[0]), 7, "{windows:?}");
    let retry = &windows[1..];
    assert_eq!(retry[0], windows[0], "the retry starts again at the failed deep chunk");
    let covered = retry.last().unwrap().end - retry[0].start;
    assert!(
        covered.num_days() >= 34,
        "the retry is deep (an incremental one reads 2 days): {windows:?}"
    );
}

/// The sync of `config.accounts[index]` with a [`GatedAdapter`] behind `gate`.
fn gated_sync(
    app: &App,
    config: &tokentra_sync::config::ValidatedConfig,
    writer: &tokentra_sync::actors::writer::WriterHandle,
    index: usize,
    gate: Arc<Semaphore>,
    fetches: Arc<AtomicU32>,
) -> AccountSync {
    let mut sync = app.account_sync(&config.accounts[index], writer.sink()).unwrap();
    sync.adapter = Arc::new(GatedAdapter::new(gate, fetches));
    sync
}

/// Every account due at once holds a sync's future while it waits for a
/// slot: at 10,000 accounts a 6.8 KB future was 68 MB of the heap's peak.
#[actix_rt::test]
async fn a_sync_waiting_for_its_slot_is_small() {
    let accounts = "[[accounts]]\nid = \"a\"\nprovider = \"openai\"\nbackfill_days = 1\n[accounts.credentials]\napi_key = \"sk-admin-FAKE-a\"\n";
    let config = TestConfig::new("small_future", accounts).validated();
    let app = App::new(config.clone()).unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), config.writer.clone());
    let sync = app.account_sync(&config.accounts[0], writer.sink()).unwrap();
    let waiting = sync.run(SyncKind::Incremental, "test");
    let size = std::mem::size_of_val(&waiting);
    assert!(size <= 512, "a sync's future is {size} bytes");
}

/// With one sync slot, a second account syncs while the first one waits for
/// the writer's batch: the wait holds no slot, so a batch's age does not cap
/// how many syncs run per second. Both are acknowledged only once the batch
/// is stored.
#[actix_rt::test]
async fn a_sync_waiting_for_its_batch_holds_no_sync_slot() {
    let accounts = "[sync]\nmax_concurrent_syncs = 1\n\
        [[accounts]]\nid = \"a\"\nprovider = \"openai\"\nbackfill_days = 1\n[accounts.credentials]\napi_key = \"sk-admin-FAKE-a\"\n\
        [[accounts]]\nid = \"b\"\nprovider = \"openai\"\nbackfill_days = 1\n[accounts.credentials]\napi_key = \"sk-admin-FAKE-b\"\n";
    let mut config = TestConfig::new("slot_batch", accounts).validated();
    // Batches go only when the test flushes.
    config.writer.max_batch_age = Duration::from_secs(600);
    let app = App::new(config.clone()).unwrap();
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), config.writer.clone());
    let open = Arc::new(Semaphore::new(1000));
    let with_records = |index: usize, fetches: Arc<AtomicU32>| {
        let mut sync = gated_sync(&app, &config, &writer, index, open.clone(), fetches.clone());
        sync.adapter = Arc::new(GatedAdapter {
            answers_a_record: true,
            ..GatedAdapter::new(open.clone(), fetches)
        });
        sync
    };
    let (first_fetches, second_fetches) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (first, second) = (
        with_records(0, first_fetches.clone()),
        with_records(1, second_fetches.clone()),
    );
    let first_run = actix_rt::spawn(async move { first.run(SyncKind::Incremental, "test").await });
    eventually("the first sync's rows in the writer's buffer", || {
        writer.buffered_rows() >= 1
    })
    .await;
    let second_run = actix_rt::spawn(async move { second.run(SyncKind::Incremental, "test").await });
    eventually("the second sync's rows beside them", || writer.buffered_rows() >= 2).await;
    assert!(second_fetches.load(Ordering::SeqCst) >= 1);
    assert!(
        !first_run.is_finished() && !second_run.is_finished(),
        "neither is done before its rows are stored"
    );
    // Flushed until both are done: each then queues its watermark, which
    // waits for a batch too.
    let sink = writer.sink();
    while !(first_run.is_finished() && second_run.is_finished()) {
        sink.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for run in [first_run, second_run] {
        let reports = run.await.unwrap().unwrap();
        assert!(
            !reports.is_empty() && reports.iter().all(|r| r.succeeded && r.rows_added == 1),
            "{reports:?}"
        );
    }
    assert_eq!(app.sync_slots.available_permits(), 1);
    let stored = crate::support::count(
        &app.store,
        "SELECT count() FROM {db}.usage_records WHERE connection_id IN ('a', 'b')",
    )
    .await;
    assert_eq!(stored, 2, "each sync's one row, once");
}

/// With one sync slot, a second account's sync waits until the first one
/// ends: `[sync] max_concurrent_syncs` bounds syncs in flight across accounts.
#[actix_rt::test]
async fn syncs_in_flight_are_bounded_across_accounts() {
    use futures::FutureExt;
    let accounts = "[sync]\nmax_concurrent_syncs = 1\n\
        [[accounts]]\nid = \"a\"\nprovider = \"openai\"\nbackfill_days = 1\n[accounts.credentials]\napi_key = \"sk-admin-FAKE-a\"\n\
        [[accounts]]\nid = \"b\"\nprovider = \"openai\"\nbackfill_days = 1\n[accounts.credentials]\napi_key = \"sk-admin-FAKE-b\"\n";
    let config = TestConfig::new("slots", accounts).validated();
    let app = App::new(config.clone()).unwrap();
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), config.writer.clone());
    let gate = Arc::new(Semaphore::new(0));
    let sync_of =
        |index: usize, fetches: Arc<AtomicU32>| gated_sync(&app, &config, &writer, index, gate.clone(), fetches);
    let (first_fetches, second_fetches) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (first, second) = (sync_of(0, first_fetches.clone()), sync_of(1, second_fetches.clone()));
    let first_run = actix_rt::spawn(async move { first.run(SyncKind::Incremental, "test").await });
    eventually("the first sync at its gate", || {
        first_fetches.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut second_run = Box::pin(second.run(SyncKind::Incremental, "test"));
    assert!(
        (&mut second_run).now_or_never().is_none(),
        "the second sync must wait for a slot"
    );
    assert_eq!(second_fetches.load(Ordering::SeqCst), 0);
    assert_eq!(app.sync_slots.available_permits(), 0);
    gate.add_permits(1000);
    assert!(first_run.await.unwrap().unwrap().iter().all(|r| r.succeeded));
    assert!(second_run.await.unwrap().iter().all(|r| r.succeeded));
    assert!(second_fetches.load(Ordering::SeqCst) >= 1);
}

/// A sync waiting on its provider holds a sync slot, never a store slot:
/// with one store slot, another account's sync stores and finishes while
/// the first one's fetch hangs (a hanging provider cannot stall ClickHouse
/// work for the healthy accounts).
#[actix_rt::test]
async fn a_hanging_fetch_does_not_hold_the_store_slot() {
    let accounts = "[sync]\nmax_concurrent_syncs = 2\nmax_concurrent_store = 1\n\
        [[accounts]]\nid = \"hangs\"\nprovider = \"openai\"\nbackfill_days = 1\n[accounts.credentials]\napi_key = \"sk-admin-FAKE-a\"\n\
        [[accounts]]\nid = \"healthy\"\nprovider = \"openai\"\nbackfill_days = 1\n[accounts.credentials]\napi_key = \"sk-admin-FAKE-b\"\n";
    let config = TestConfig::new("store_slots", accounts).validated();
    let app = App::new(config.clone()).unwrap();
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), config.writer.clone());
    let sync_of = |index: usize, gate: Arc<Semaphore>, fetches: Arc<AtomicU32>| {
        gated_sync(&app, &config, &writer, index, gate, fetches)
    };
    let (hang_gate, hang_fetches) = (Arc::new(Semaphore::new(0)), Arc::new(AtomicU32::new(0)));
    let hangs = sync_of(0, hang_gate.clone(), hang_fetches.clone());
    let healthy = sync_of(1, Arc::new(Semaphore::new(1000)), Arc::new(AtomicU32::new(0)));
    let hanging_run = actix_rt::spawn(async move { hangs.run(SyncKind::Incremental, "test").await });
    eventually("the first sync waiting on its provider", || {
        hang_fetches.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(app.store_slots.available_permits(), 1, "a fetch holds no store slot");
    let reports = tokio::time::timeout(Duration::from_secs(60), healthy.run(SyncKind::Incremental, "test"))
        .await
        .expect("the healthy sync must not wait for the hanging one")
        .unwrap();
    assert!(
        !reports.is_empty() && reports.iter().all(|r| r.succeeded),
        "{reports:?}"
    );
    assert_eq!(hang_fetches.load(Ordering::SeqCst), 1, "still hanging");
    hang_gate.add_permits(1000);
    assert!(hanging_run.await.unwrap().unwrap().iter().all(|r| r.succeeded));
    assert_eq!(app.store_slots.available_permits(), 1);
}

/// A starting daemon reads every account's watermark in one query. An
/// account built (locked) before that read takes its entry without a read
/// of its own: its client here points at a server that is down. One built
/// after the read reads its own, so a watermark stored in between (by
/// whoever held its lock until then) is not missed.
#[actix_rt::test]
async fn watermarks_are_read_once_for_the_accounts_locked_before_the_read() {
    use chrono::TimeZone;
    use tokentra_sync::store::state::{SyncStateRow, Watermark};
    use tokentra_sync::store::ClickhouseClient;

    let accounts: String = ["a", "b", "c"]
        .iter()
        .map(|id| {
            format!(
                "[[accounts]]\nid = \"{id}\"\nprovider = \"openai\"\n[accounts.credentials]\napi_key = \"sk-admin-FAKE-{id}\"\n"
            )
        })
        .collect();
    let config = TestConfig::new("shared_watermarks", &accounts).validated();
    let app = App::new(config.clone()).unwrap();
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), config.writer.clone());
    let sink = writer.sink();
    let state = |hour| {
        let at = chrono::Utc.with_ymd_and_hms(2026, 11, 1, hour, 0, 0).unwrap();
        Watermark {
            watermark: at,
            last_success_at: at,
            last_deep_sync_at: at,
        }
    };
    let store_state = |id: &'static str, hour| {
        let sink = sink.clone();
        async move {
            let row = SyncStateRow::new(id, "openai", &state(hour));
            sink.queue_state(row).await.unwrap().await.unwrap();
        }
    };
    store_state("a", 1).await;
    let a = app.account_sync(&config.accounts[0], writer.sink()).unwrap();
    let mut b = app.account_sync(&config.accounts[1], writer.sink()).unwrap();
    b.store = {
        let mut down = config.clickhouse.clone();
        down.url = format!("http://127.0.0.1:{}", crate::support::free_port());
        ClickhouseClient::new(&down)
    };
    assert_eq!(a.sync_state().await.unwrap(), Some(state(1)));
    assert_eq!(
        b.sync_state().await.unwrap(),
        None,
        "b has no state, known without a read of its own"
    );

    store_state("c", 2).await;
    let c = app.account_sync(&config.accounts[2], writer.sink()).unwrap();
    assert_eq!(c.sync_state().await.unwrap(), Some(state(2)));
}
