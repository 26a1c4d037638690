//! A new account's backfill (and names refresh) compares against nothing
//! without reading ClickHouse, and stores exactly what a sync that reads
//! would. An account
//! whose rows were stored without a watermark (a crash between a chunk's
//! insert and its watermark) still reads them.

use chrono::Utc;
use tokentra_sync::actors::writer::WriterActor;
use tokentra_sync::app::App;
use tokentra_sync::normalize::schema::UsageRow;
use tokentra_sync::store::{migrations, ClickhouseClient};
use tokentra_sync::sync::window::SyncKind;

use crate::support::{self, TestConfig};

#[actix_rt::test]
async fn a_new_accounts_backfill_reads_nothing_back_and_one_with_rows_reads_them() {
    let sim = support::start_sim(41, 2).await;
    let config = TestConfig::new(
        "first_sync_reads",
        &support::sim_accounts(&sim, &["org-1", "org-2"], &["openai"]),
    );
    let validated = config.validated();
    let app = App::new(validated.clone()).unwrap();
    migrations::migrate(&app.store).await.unwrap();
    let writer = WriterActor::start_with_handle(app.store.clone(), validated.writer.clone());
    let hour = (Utc::now().timestamp() as u32 / 3_600 - 30) * 3_600;
    let stray = UsageRow {
        connection_id: "openai-org-2".into(),
        provider: "openai".into(),
        record_type: "usage".into(),
        endpoint: "completions".into(),
        granularity: "1h".into(),
        bucket_start: hour,
        bucket_end: hour + 3_600,
        record_key: 7,
        input_tokens: 5,
        sign: 1,
        version: 1,
        ..Default::default()
    };
    writer.sink().write_usage(vec![stray]).await.unwrap();

    let mut new = app.account_sync(&validated.accounts[0], writer.sink()).unwrap();
    let mut crashed = app.account_sync(&validated.accounts[1], writer.sink()).unwrap();
    // The one read of every account's state, made while the server is up.
    assert_eq!(new.sync_state().await.unwrap(), None);
    assert_eq!(crashed.sync_state().await.unwrap(), None);
    // From here on, whatever the two syncs read goes to a server that is down.
    let down = {
        let mut down = validated.clickhouse.clone();
        down.url = format!("http://127.0.0.1:{}", support::free_port());
        ClickhouseClient::new(&down)
    };
    new.store = down.clone();
    crashed.store = down;

    let reports = new.run(SyncKind::Incremental, "test").await.unwrap();
    assert!(reports.iter().all(|r| r.succeeded), "{reports:?}");
    let added: u64 = reports.iter().map(|r| r.rows_added).sum();
    assert!(added > 0, "the backfill stored rows: {reports:?}");
    let backfill = (reports[0].window.start, reports[reports.len() - 1].window.end);
    let named = support::count(
        &config.client(),
        "SELECT count() FROM {db}.workspace_names WHERE connection_id = 'openai-org-1'",
    )
    .await;
    assert!(named > 0, "the names refresh stored its rows without a read too");

    let reports = crashed.run(SyncKind::Incremental, "test").await.unwrap();
    assert!(!reports[0].succeeded, "{reports:?}");
    assert!(
        reports[0].errors.iter().any(|e| e.contains("reading stored rows")),
        "rows stored without a watermark are read back: {:?}",
        reports[0].errors
    );

    // A later process, which reads everything it diffs, finds the new
    // account's whole history stored as the provider says it: nothing to write.
    let later = App::new(validated.clone()).unwrap();
    let again = later.account_sync(&validated.accounts[0], writer.sink()).unwrap();
    let (since, until) = backfill;
    let reports = again
        .run(
            SyncKind::Explicit {
                since,
                until: Some(until),
            },
            "test",
        )
        .await
        .unwrap();
    assert!(reports.iter().all(|r| r.succeeded), "{reports:?}");
    let fetched: u64 = reports.iter().map(|r| r.rows_fetched).sum();
    let written: u64 = reports.iter().map(|r| r.rows_added + r.rows_cancelled).sum();
    assert!(fetched >= added, "the re-read covers the backfill: {fetched} < {added}");
    assert_eq!(written, 0, "{reports:?}");
    sim.stop().await;
}
