//! Crash trials: ClickHouse killed (`kill -9`) while it stores INSERTs, the
//! daemon killed mid-backfill, the connection to ClickHouse cut inside an
//! INSERT, and ClickHouse down for a while. After the follow-up sync (no
//! manual `verify`), `usage_daily` and the net of `usage_records` equal the
//! simulator's truth exactly, in every trial.
//!
//! Each trial kind runs `TOKENTRA_CRASH_TRIALS` times (default 1, what CI
//! runs) with random timing; `scripts/crash-trials.sh` runs 20 of each, with
//! a 30s outage (`TOKENTRA_CRASH_OUTAGE_SECS`).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokentra_sync::simulator::SimHandle;
use tokentra_sync::store::ClickhouseClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, TestConfig};
use crate::sync_e2e::{stored_in, truth};

fn trials() -> usize {
    std::env::var("TOKENTRA_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn outage() -> Duration {
    let secs = std::env::var("TOKENTRA_CRASH_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    Duration::from_secs(secs)
}

fn free_port() -> u16 {
    // The server's TCP port is HTTP + 1: find two free neighbours.
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 65_000 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

/// A ClickHouse server of this test's own, which it may kill.
struct OwnClickhouse {
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnClickhouse {
    fn script() -> String {
        format!("{}/scripts/clickhouse-server.sh", env!("CARGO_MANIFEST_DIR"))
    }

    fn start() -> Self {
        let ch = OwnClickhouse {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
        };
        ch.run();
        ch
    }

    fn run(&self) {
        let status = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("start")
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .arg("Asia/Kolkata")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "clickhouse did not start");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn kill9(&self) {
        let pid = std::fs::read_to_string(self.dir.path().join("server.pid")).unwrap();
        let status = std::process::Command::new("sh")
            .args(["-c", &format!("kill -9 {}", pid.trim())])
            .status()
            .unwrap();
        assert!(status.success());
        // Wait for the port to close: the process is gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "killed clickhouse still answers");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for OwnClickhouse {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// A TCP relay to ClickHouse that cuts the connection inside the first
/// `cuts` INSERTs into `usage_records`, after a random part of the body.
async fn cutting_relay(upstream: u16, cuts: usize) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let left = Arc::new(AtomicUsize::new(cuts));
    let done = Arc::new(AtomicUsize::new(0));
    let done_out = done.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (left, done) = (left.clone(), done.clone());
            tokio::spawn(async move {
                let addr: SocketAddr = ([127, 0, 0, 1], upstream).into();
                let Ok(server) = TcpStream::connect(addr).await else {
                    return;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                });
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match cr.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &buf[..n];
                    // The statement travels URL-encoded in the request line.
                    let has = |needle: &[u8]| chunk.windows(needle.len()).any(|w| w == needle);
                    // (The writer's: `synced_at` is in its column list, unlike
                    // schema_migrations' insert that records a migration named
                    // usage_records, and it is FORMAT Native, unlike the rebuild's
                    // INSERT ... SELECT of migration 13.)
                    let is_insert = has(b"INSERT") && has(b"usage_records") && has(b"synced_at") && has(b"Native");
                    if is_insert
                        && left
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
                            .is_ok()
                    {
                        // Part of this request goes through, then the line is cut.
                        let part = rand::thread_rng().gen_range(1..n.max(2));
                        let _ = sw.write_all(&chunk[..part.min(n)]).await;
                        done.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    if sw.write_all(chunk).await.is_err() {
                        break;
                    }
                }
                down.abort();
            });
        }
    });
    (port, done_out)
}

/// `[admin]` on a free port: trials run beside other daemons.
fn admin() -> String {
    format!("[admin]\nlisten = \"127.0.0.1:{}\"\n", free_port())
}

fn accounts(sim: &SimHandle) -> String {
    support::sim_accounts(sim, &["org-1"], &["openai", "anthropic"])
}

/// The backfill window's whole days before today.
fn days() -> (String, String) {
    let today = chrono::Utc::now().date_naive();
    ((today - chrono::Duration::days(6)).to_string(), today.to_string())
}

fn start_daemon(config_path: &std::path::Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["run", "-c"])
        .arg(config_path)
        .env("TOKENTRA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until `usage_records` has rows: inserts are under way.
async fn wait_for_inserts(client: &ClickhouseClient) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = support::try_count(client, "SELECT count() FROM {db}.usage_records").await;
        if n.is_some_and(|n| n > 0) {
            return;
        }
        assert!(Instant::now() < deadline, "no insert within 60s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// SIGTERM, then the one-shot follow-up sync (the real binary), which must
/// succeed.
async fn stop_and_follow_up(child: tokio::process::Child, config_path: &std::path::Path) {
    crate::daemon::stop_with_sigterm(child).await;
    follow_up(config_path).await;
}

async fn follow_up(config_path: &std::path::Path) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(config_path)
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "follow-up sync failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Both tables equal the truth, per day, model and unit.
async fn assert_exact(sim: &SimHandle, client: &ClickhouseClient, trial: &str) {
    let (since, until) = days();
    for provider in ["openai", "anthropic"] {
        let truth = truth(sim, provider, "org-1", None, &since, &until);
        assert!(!truth.is_empty());
        let account = format!("{provider}-org-1");
        let daily = stored_in(client, false, &account, &since, &until).await;
        assert_eq!(daily, truth, "{trial}: usage_daily of {account} differs from the truth");
        let records = stored_in(client, true, &account, &since, &until).await;
        assert_eq!(
            records, truth,
            "{trial}: usage_records of {account} differs from the truth"
        );
    }
}

fn client_of(config: &TestConfig, url: &str) -> ClickhouseClient {
    let mut ch = config.validated().clickhouse;
    ch.url = url.to_string();
    ClickhouseClient::new(&ch)
}

#[actix_rt::test]
async fn clickhouse_killed_while_it_stores_inserts_loses_and_doubles_nothing() {
    for trial in 0..trials() {
        let ch = OwnClickhouse::start();
        let sim = support::start_sim(60 + trial as u64, 1).await;
        let config = TestConfig::with_url("crash_ch", &accounts(&sim), &ch.url(), &admin());
        let path = config.write();
        let client = client_of(&config, &ch.url());
        let child = start_daemon(&path);
        wait_for_inserts(&client).await;
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..150))).await;
        ch.kill9();
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..1500))).await;
        ch.run();
        stop_and_follow_up(child, &path).await;
        assert_exact(&sim, &client, &format!("kill -9 clickhouse, trial {trial}")).await;
        sim.stop().await;
    }
}

#[actix_rt::test]
async fn the_daemon_killed_mid_backfill_loses_and_doubles_nothing() {
    for trial in 0..trials() {
        let sim = support::start_sim(80 + trial as u64, 1).await;
        let config = TestConfig::with_url("crash_daemon", &accounts(&sim), &support::clickhouse_url(), &admin());
        let path = config.write();
        let client = config.client();
        let mut child = start_daemon(&path);
        wait_for_inserts(&client).await;
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(0..300))).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        follow_up(&path).await;
        assert_exact(&sim, &client, &format!("kill -9 daemon, trial {trial}")).await;
        sim.stop().await;
    }
}

#[actix_rt::test]
async fn the_connection_cut_inside_an_insert_loses_and_doubles_nothing() {
    for trial in 0..trials() {
        let upstream: u16 = support::clickhouse_url().rsplit(':').next().unwrap().parse().unwrap();
        let (relay, cut) = cutting_relay(upstream, 2).await;
        let sim = support::start_sim(100 + trial as u64, 1).await;
        let config = TestConfig::with_url("crash_cut", &accounts(&sim), &format!("http://127.0.0.1:{relay}"), "");
        let path = config.write();
        follow_up(&path).await;
        assert!(cut.load(Ordering::SeqCst) >= 1, "no insert was cut");
        // The follow-up sync of the trial: nothing left to write.
        follow_up(&path).await;
        assert_exact(&sim, &config.client(), &format!("cut insert, trial {trial}")).await;
        sim.stop().await;
    }
}

#[actix_rt::test]
async fn clickhouse_down_for_a_while_during_a_sync_loses_and_doubles_nothing() {
    for trial in 0..trials() {
        let ch = OwnClickhouse::start();
        let sim = support::start_sim(120 + trial as u64, 1).await;
        let config = TestConfig::with_url("crash_outage", &accounts(&sim), &ch.url(), &admin());
        let path = config.write();
        let client = client_of(&config, &ch.url());
        let child = start_daemon(&path);
        wait_for_inserts(&client).await;
        ch.kill9();
        tokio::time::sleep(outage()).await;
        let back = Instant::now();
        ch.run();
        // The buffered rows land soon after the server is back.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let runs = support::try_count(&client, "SELECT count() FROM {db}.sync_state").await;
            if runs.is_some_and(|n| n >= 2) {
                break;
            }
            assert!(Instant::now() < deadline, "no watermark after the outage");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "trial {trial}: watermarks stored {:?} after the server came back",
            back.elapsed()
        );
        stop_and_follow_up(child, &path).await;
        assert_exact(&sim, &client, &format!("clickhouse down, trial {trial}")).await;
        sim.stop().await;
    }
}
