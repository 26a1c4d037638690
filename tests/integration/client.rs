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
