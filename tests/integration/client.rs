//! The ClickHouse client's own resilience, against the real server: a read
//! whose connection is reset is sent again on a new one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, TestConfig};

/// A TCP relay to `upstream` that resets its first `resets` connections
/// (after reading the start of the request) and relays the rest.
struct ResettingProxy {
    url: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl ResettingProxy {
    async fn start(upstream: &str, resets: usize) -> Self {
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/').to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if n < resets {
                        let mut start = [0u8; 64];
                        let _ = client.read(&mut start).await;
                        // RST instead of FIN: the client sees "connection reset".
                        let _ = client.set_zero_linger();
                        drop(client);
                        return;
                    }
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self { url, connections, task }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for ResettingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_read_whose_connection_is_reset_is_sent_again() {
    let proxy = ResettingProxy::start(&support::clickhouse_url(), 1).await;
    let config = TestConfig::with_url("reset", "", &proxy.url, "");
    let client = tokentra_sync::store::ClickhouseClient::new(&config.validated().clickhouse);

    let version = client.server_version().await.expect("the resent read succeeds");

    assert!(version.0 > 0, "{version:?}");
    assert_eq!(proxy.connections(), 2, "one reset connection, one that answered");
}

#[tokio::test]
async fn a_read_reset_every_time_gives_up_as_a_connection_error() {
    let proxy = ResettingProxy::start(&support::clickhouse_url(), usize::MAX).await;
    let config = TestConfig::with_url("reset_always", "", &proxy.url, "");
    let client = tokentra_sync::store::ClickhouseClient::new(&config.validated().clickhouse);

    let err = client.server_version().await.unwrap_err();

    assert!(err.is_connection_error(), "{err:?}");
    assert_eq!(proxy.connections(), 4, "the first attempt and three resends");
}

/// Scope reads made at once share SELECTs, and each caller still gets
/// exactly the stored keys (or measures, or whole rows of the keys it asked
/// for) of its
/// own buckets: not a neighbour's endpoint, account, bucket or key. A scope
/// wider than a week is read alone.
#[actix_rt::test]
async fn concurrent_scope_reads_share_selects_and_each_gets_exactly_its_own_rows() {
    use std::collections::BTreeSet;
    use tokentra_sync::normalize::schema::RecordType;
    use tokentra_sync::store::state::{read_scope_keys, read_scope_measures, read_scope_rows, Scope};

    let config = TestConfig::new("scope_reads", "");
    let client = config.client();
    tokentra_sync::store::migrations::migrate(&client).await.unwrap();
    let hour = 3_600u32;
    let base = 1_736_899_200u32; // 2025-01-15 00:00 UTC
    let accounts: Vec<String> = (0..40).map(|i| format!("acct-{i:02}")).collect();
    let endpoints = ["completions", "embeddings"];
    // One row per (account, endpoint, hour) for 30 hours; its record key
    // encodes all three so a misrouted row cannot match.
    let key = |a: usize, e: usize, h: u32| (a as u64) * 1_000_000 + (e as u64) * 1_000 + u64::from(h);
    let mut values = Vec::new();
    for (a, account) in accounts.iter().enumerate() {
        for (e, endpoint) in endpoints.iter().enumerate() {
            for h in 0..30 {
                let start = base + h * hour;
                values.push(format!(
                    "('{account}', 'usage', '{endpoint}', {start}, {}, '1h', {}, 1, 1, 0, {})",
                    start + hour,
                    key(a, e, h),
                    key(a, e, h) + 7
                ));
            }
        }
    }
    support::query_tsv(
        &client,
        &format!(
            "INSERT INTO {{db}}.usage_records (connection_id, record_type, endpoint, bucket_start, bucket_end, \
             granularity, record_key, sign, version, synced_at, content_hash) VALUES {}",
            values.join(", ")
        ),
    )
    .await;

    // Narrow scopes (three scattered hours) and, for every fifth account,
    // one wider than a week.
    let scopes: Vec<(usize, usize, BTreeSet<u32>)> = (0..accounts.len())
        .flat_map(|a| {
            (0..endpoints.len()).map(move |e| {
                let hours: Vec<u32> = if a % 5 == 0 {
                    vec![1, 24 * 7 + 2]
                } else {
                    vec![(a % 7) as u32, 9, 12]
                };
                (a, e, hours.iter().map(|h| base + h * hour).collect())
            })
        })
        .collect();
    let as_scopes: Vec<Scope<'_>> = scopes
        .iter()
        .map(|(a, e, buckets)| Scope {
            connection_id: &accounts[*a],
            record_type: RecordType::Usage,
            endpoint: endpoints[*e],
            buckets,
        })
        .collect();
    let reads = as_scopes.iter().map(|scope| {
        let client = &client;
        async move { read_scope_keys(client, scope).await.unwrap() }
    });
    let results = futures::future::join_all(reads).await;

    // (bucket, key, digest) of every row stored in a scope's buckets, sorted.
    let stored_in = |a: usize, e: usize, buckets: &BTreeSet<u32>| -> Vec<(u32, u64, u64)> {
        buckets
            .iter()
            .map(|b| (b - base) / hour)
            .filter(|h| *h < 30)
            .map(|h| (base + h * hour, key(a, e, h), key(a, e, h) + 7))
            .collect()
    };
    for ((a, e, buckets), stored) in scopes.iter().zip(results) {
        let mut got: Vec<(u32, u64, u64)> = stored
            .iter()
            .map(|k| (k.bucket_start, k.record_key, k.content_hash))
            .collect();
        got.sort_unstable();
        assert_eq!(got, stored_in(*a, *e, buckets), "account {a} endpoint {e}");
    }
    let (selects, batched) = client.scope_reads().counts().keys;
    let narrow = scopes.iter().filter(|(a, _, _)| a % 5 != 0).count() as u64;
    assert_eq!(batched, narrow, "every narrow scope was read in a batch, no wide one");
    assert!(selects < batched / 4, "{batched} scopes in {selects} SELECTs");

    // The same scopes with their measures: the same rows, each its own scope's.
    let reads = as_scopes.iter().map(|scope| {
        let client = &client;
        async move { read_scope_measures(client, scope).await.unwrap() }
    });
    let results = futures::future::join_all(reads).await;
    for ((a, e, buckets), stored) in scopes.iter().zip(results) {
        assert!(
            stored
                .iter()
                .all(|m| m.connection_id == accounts[*a] && m.endpoint == endpoints[*e] && m.record_type == "usage"),
            "account {a} endpoint {e}: {stored:?}"
        );
        let mut got: Vec<(u32, u64, u64)> = stored
            .iter()
            .map(|m| (m.bucket_start, m.record_key, m.content_hash))
            .collect();
        got.sort_unstable();
        assert_eq!(got, stored_in(*a, *e, buckets), "measures of account {a} endpoint {e}");
    }
    let (measure_selects, measure_batched) = client.scope_reads().counts().measures;
    assert_eq!(
        measure_batched, narrow,
        "every narrow scope's measures were read in a batch"
    );
    assert!(
        measure_selects < measure_batched / 4,
        "{measure_batched} scopes in {measure_selects} SELECTs"
    );

    // Whole rows of some keys: each scope asks for two of its hours' keys
    // and for a neighbour account's key, which is in the batch's filter but
    // not in this scope, so it must not come back.
    let wanted: Vec<BTreeSet<u64>> = scopes
        .iter()
        .map(|(a, e, buckets)| {
            let mut keys: BTreeSet<u64> = buckets.iter().take(2).map(|b| key(*a, *e, (b - base) / hour)).collect();
            keys.insert(key((a + 1) % accounts.len(), *e, 9));
            keys
        })
        .collect();
    let reads = as_scopes.iter().zip(&wanted).map(|(scope, keys)| {
        let client = &client;
        async move { read_scope_rows(client, scope, keys).await.unwrap() }
    });
    let results = futures::future::join_all(reads).await;
    for (((a, e, buckets), keys), rows) in scopes.iter().zip(&wanted).zip(results) {
        let mut got: Vec<(String, String, u32, u64, u64)> = rows
            .iter()
            .map(|r| {
                (
                    r.connection_id.to_string(),
                    r.endpoint.to_string(),
                    r.bucket_start,
                    r.record_key,
                    r.content_hash,
                )
            })
            .collect();
        got.sort_unstable();
        let want: Vec<(String, String, u32, u64, u64)> = buckets
            .iter()
            .map(|b| (b - base) / hour)
            .filter(|h| *h < 30 && keys.contains(&key(*a, *e, *h)))
            .map(|h| {
                (
                    accounts[*a].clone(),
                    endpoints[*e].to_string(),
                    base + h * hour,
                    key(*a, *e, h),
                    key(*a, *e, h) + 7,
                )
            })
            .collect();
        assert_eq!(got, want, "whole rows of account {a} endpoint {e}");
    }
    let (row_selects, row_batched) = client.scope_reads().counts().rows;
    assert_eq!(
        row_batched, narrow,
        "every narrow scope's whole rows were read in a batch"
    );
    assert!(
        row_selects < row_batched / 4,
        "{row_batched} scopes in {row_selects} SELECTs"
    );
    client.drop_database().await.unwrap();
}

/// The writer sends `usage_records` as Native blocks: the columns must be
/// the table's, name and type, and any row must land exactly as the same
/// row sent as RowBinary does (the format every other table uses).
#[actix_rt::test]
async fn usage_rows_sent_as_native_blocks_land_exactly_as_rowbinary_rows_do() {
    use tokentra_sync::normalize::schema::{Dec9, UsageRow};
    use tokentra_sync::store::native::{BLOCK_ROWS, USAGE_COLUMNS};

    let config = TestConfig::new("native", "");
    let client = config.client();
    tokentra_sync::store::migrations::migrate(&client).await.unwrap();
    let declared = support::query_tsv(
        &client,
        "SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'usage_records'",
    )
    .await
    .replace("\\'", "'");
    let ours: String = USAGE_COLUMNS
        .iter()
        .map(|c| format!("{}\t{}\n", c.name, c.kind))
        .collect();
    assert_eq!(declared, ours);

    let edge = |key: u64| UsageRow {
        connection_id: format!("native-{}", key % 3).into(),
        provider: "openai".into(),
        record_type: "usage".into(),
        endpoint: "completions".into(),
        bucket_start: 1_736_899_200 + (key % 48) as u32 * 3_600,
        bucket_end: 1_736_902_800 + (key % 48) as u32 * 3_600,
        granularity: "1h".into(),
        record_key: u64::MAX - key,
        model: "模型-é\ttab\nline".into(),
        attributes: "x".repeat(200 + key as usize % 300).into(),
        input_tokens: i64::MAX - key as i64,
        output_tokens: i64::MIN + key as i64,
        requests_reported: -1,
        quantity: Dec9(-99_999_999_999_999_999_999_999_999_999_999_999 + key as i128),
        cost: Dec9(99_999_999_999_999_999_999_999_999_999_999_999_999 - key as i128),
        credits: Dec9(-(key as i128)),
        sign: if key.is_multiple_of(2) { 1 } else { -1 },
        version: key,
        synced_at: u32::MAX - 1,
        content_hash: key.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ..UsageRow::default()
    };
    // More than two blocks, so a block boundary falls inside the insert.
    let rows: Vec<UsageRow> = (0..(2 * BLOCK_ROWS + 1_000) as u64).map(edge).collect();
    client.insert_usage(rows.iter()).await.unwrap();
    support::query_tsv(
        &client,
        "CREATE TABLE {db}.usage_records_rowbinary AS {db}.usage_records",
    )
    .await;
    client.insert_rows("usage_records_rowbinary", &rows).await.unwrap();

    // Sorted here: ClickHouse 18.16 segfaults writing `SELECT * ... ORDER BY
    // record_key` of these rows as TabSeparated (9,192 rows; RowBinary output
    // and the unsorted SELECT are fine).
    let all = |table: &'static str| {
        let client = &client;
        async move {
            let text = support::query_tsv(client, &format!("SELECT * FROM {{db}}.{table}")).await;
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            lines.sort_unstable();
            lines
        }
    };
    let native = all("usage_records").await;
    assert_eq!(native.len(), rows.len());
    assert_eq!(native, all("usage_records_rowbinary").await);
    assert_eq!(
        support::count(
            &client,
            "SELECT count() FROM system.parts WHERE database = '{db}' AND table = 'usage_records' AND active"
        )
        .await,
        1,
        "the server squashes one insert's blocks into one part per partition"
    );
}
