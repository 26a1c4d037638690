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
