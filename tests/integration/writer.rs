//! The writer while ClickHouse is down: rows wait, senders are pushed back
//! once the buffer is full, and everything lands when the server returns.

use std::time::{Duration, Instant};

use futures::FutureExt;
use tokentra_sync::actors::writer::WriterActor;
use tokentra_sync::normalize::schema::{Dec9, UsageRow};
use tokentra_sync::store::sink::RowSink;
use tokentra_sync::store::{migrations, ClickhouseClient};
use tokentra_sync::sync::slots::SyncSlots;

use crate::proxy::Proxy;
use crate::support::{self, TestConfig};

fn row(key: u64) -> UsageRow {
    UsageRow {
        connection_id: "w".into(),
        provider: "openai".into(),
        record_type: "usage".into(),
        endpoint: "completions".into(),
        bucket_start: 1_736_899_200,
        bucket_end: 1_736_902_800,
        granularity: "1h".into(),
        record_key: key,
        model: "gpt-4o".into(),
        model_raw: "gpt-4o".into(),
        model_family: "gpt-4o".into(),
        service: "completions".into(),
        input_tokens: 10,
        output_tokens: 1,
        requests: 1,
        requests_reported: 1,
        cost: Dec9(1_000_000_001),
        sign: 1,
        version: 1,
        ..UsageRow::default()
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn rows_wait_for_a_down_server_with_bounded_memory_and_land_when_it_returns() {
    // Nothing listens on `port` yet: ClickHouse is "down".
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = TestConfig::new("writer", "");
    let real = config.client();
    migrations::migrate(&real).await.unwrap();
    let mut validated = config.validated();
    validated.clickhouse.url = format!("http://127.0.0.1:{port}");
    validated.writer.max_buffer_rows = 10;
    validated.writer.max_batch_rows = 10;
    validated.writer.retry_max_delay = Duration::from_millis(200);
    let writer = WriterActor::start_with_handle(ClickhouseClient::new(&validated.clickhouse), validated.writer.clone());

    let first_writer = writer.clone();
    let first = actix_rt::spawn(async move { first_writer.write_usage((0..10).map(row).collect()).await });
    eventually("the first 10 rows to fill the buffer", || writer.buffered_rows() == 10).await;
    let errors_before = support::metric("tokentra_sync_writer_insert_errors_total");
    eventually("the writer to retry the failing insert", || {
        support::metric("tokentra_sync_writer_insert_errors_total") > errors_before
    })
    .await;

    // The buffer is full: a further sender is held back, not buffered.
    let mut second = Box::pin(writer.write_usage(vec![row(10)]));
    assert!((&mut second).now_or_never().is_none(), "a full buffer must push back");
    assert_eq!(writer.buffered_rows(), 10);
    assert!(!first.is_finished(), "rows are not acknowledged before they are stored");

    // The server comes back (a proxy to the real one on the awaited port).
    let proxy = Proxy::start_on(&support::clickhouse_url(), 0, port).await;
    let ack = first.await.unwrap().unwrap();
    assert!(ack.retried, "the ack says an attempt failed, so the sync re-reads");
    second.await.unwrap();
    let stored = support::count(&real, "SELECT count() FROM {db}.usage_records").await;
    assert_eq!(stored, 11);
    let cost = support::query_tsv(&real, "SELECT toString(sum(cost)) FROM {db}.usage_daily").await;
    assert_eq!(cost.trim(), "11.000000011");
    assert_eq!(writer.buffered_rows(), 0);
    proxy.stop().await;
}

/// One sender's rows that ClickHouse refuses must not hold back the others
/// that share its batch.
#[actix_rt::test]
async fn a_rejected_delta_fails_alone_and_its_batch_neighbours_are_stored() {
    let config = TestConfig::new("poison", "");
    let real = config.client();
    migrations::migrate(&real).await.unwrap();
    let proxy = Proxy::start_rejecting(&support::clickhouse_url(), "poison-account").await;
    let mut validated = config.validated();
    validated.clickhouse.url = proxy.url.clone();
    // A long batch age so that both deltas land in one batch.
    validated.writer.max_batch_age = Duration::from_secs(1);
    let writer = WriterActor::start_with_handle(ClickhouseClient::new(&validated.clickhouse), validated.writer.clone());
    let mut poison = row(1);
    poison.connection_id = "poison-account".into();
    let (bad, good) = futures::join!(
        writer.write_usage(vec![poison]),
        writer.write_usage(vec![row(2), row(3)])
    );
    let err = bad.unwrap_err();
    assert!(
        err.to_string().contains("rejected") && err.to_string().contains("Code: 27"),
        "{err}"
    );
    assert!(good.unwrap().retried, "stored again alone, so its sync must re-read");
    let stored = support::query_tsv(
        &real,
        "SELECT connection_id, count() FROM {db}.usage_records GROUP BY connection_id",
    )
    .await;
    assert_eq!(stored.trim(), "w\t2");
    proxy.stop().await;
}

/// At the end of a burst of syncs the batch goes at once, not after
/// `max_batch_age`: nothing more is coming, and every sync waits for it.
#[actix_rt::test]
async fn a_batch_goes_as_soon_as_a_burst_of_syncs_ends() {
    let config = TestConfig::new("burst", "");
    let real = config.client();
    migrations::migrate(&real).await.unwrap();
    let mut validated = config.validated();
    // Far beyond the test's patience: only the burst's end can flush.
    validated.writer.max_batch_age = Duration::from_secs(3600);
    let slots = SyncSlots::new(1);
    let writer = WriterActor::start_watching(
        ClickhouseClient::new(&validated.clickhouse),
        validated.writer.clone(),
        slots.clone(),
    );
    // A burst: a second sync waits for the only slot.
    let first = slots.acquire().await;
    let mut second = Box::pin(slots.acquire());
    assert!(futures::poll!(&mut second).is_pending());
    drop(first);
    let second = second.await;

    // Queued while a sync still holds its slot, the row waits for more.
    let sender = writer.clone();
    let stored = actix_rt::spawn(async move { sender.write_usage(vec![row(1)]).await });
    eventually("the row to be queued", || writer.buffered_rows() == 1).await;
    assert!(!stored.is_finished(), "a slot is held: more rows may come");

    drop(second);
    let ack = tokio::time::timeout(Duration::from_secs(30), stored)
        .await
        .expect("the batch goes once the burst's last slot is let go")
        .unwrap()
        .unwrap();
    assert!(!ack.retried);
    assert_eq!(support::count(&real, "SELECT count() FROM {db}.usage_records").await, 1);
}
