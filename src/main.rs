//! The `tokentra-sync` binary: parses the command line, sets up logging, and
//! hands over to [`tokentra_sync::cli`].

use std::io::IsTerminal as _;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use tokentra_sync::cli::{self, Cli, LogFormat};

/// jemalloc instead of glibc's malloc, for the daemon and the simulator
/// alike. Measured at 1,000 accounts (BENCHMARKS.md): the daemon's CPU per
/// cycle 6.57 -> 4.08 s (glibc's malloc and free were ~40% of its CPU
/// samples) and idle RSS 84.7 -> 70.6 MB without trimming: jemalloc returns
/// freed pages itself after ~10 s, where glibc kept a burst's peak until
/// `malloc_trim`.
/// (mimalloc was tried too: 8% less CPU, but 675 MB of RSS.)
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its start (the `_RJEM_MALLOC_CONF` variable
/// still overrides them). Freed pages go back to the system after ~1 s
/// instead of ~10 s, and at once instead of lingering as "muzzy": a sync's
/// answers are freed in bursts, and pages held for 10 s after each made the
/// peak. Measured at 10,000 accounts: peak RSS in the first sync 364 -> 341
/// MB, in the cycle 319 -> 277 MB, after the cycle 263 -> 187 MB. The daemon's
/// CPU rose 18%, but the simulator's and ClickHouse's rose alike (16%, 25%):
/// the machine's drift, not a cost that could be told apart from it.
///
/// One arena instead of one per thread (8 on 2 cores), and thread caches
/// only for sizes up to 4 KiB: the blocking pool's threads each filled a
/// cache and an arena of their own with rows they then freed. The same
/// build back to back at 10,000 accounts: peak RSS in the first sync 298.9
/// -> 256.7 MB, in the cycle 290.1 -> 236.2 MB, after the cycle 228.8 ->
/// 188.3 MB; daemon CPU 22.0 -> 21.8 s, cycle 31.7 -> 31.9 s.
#[cfg(feature = "jemalloc")]
#[export_name = "_rjem_malloc_conf"]
static JEMALLOC_CONF: &[u8; 63] = b"dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1,tcache_max:4096\0";

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    let code = actix_rt::System::with_tokio_rt(runtime).block_on(async move {
        match cli::run(cli).await {
            Ok(code) => code,
            Err(err) => {
                tracing::error!(error = %format!("{err:#}"), "command failed");
                eprintln!("error: {err:#}");
                1
            }
        }
    });
    std::process::exit(code);
}

/// The arbiter's runtime, whose blocking pool has one thread per core but
/// the arbiter's own.
///
/// Syncs hand their CPU work (parsing big pages, normalizing, diffing) to
/// the blocking pool. Left at tokio's default of 512 threads, 64 syncs in
/// flight ran up to 64 threads on 2 cores, and every hand-off contended for
/// the pool's lock and woke a thread: ~9% of the daemon's CPU went to futex
/// calls. With the arbiter busy parsing pages and talking HTTP, the pool
/// needs no more threads than the cores left.
fn runtime() -> tokio::runtime::Runtime {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(cores.saturating_sub(1).max(1))
        .build()
        .expect("the async runtime could not be built (out of threads or file descriptors?)")
}

/// Logs go to stderr: human text by default, without ANSI colour unless
/// stderr is a terminal (journald, files and pipes get plain text) and
/// NO_COLOR is unset; JSON lines with `--log-format json`.
fn init_logging(cli: &Cli) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directives = cli.log_filter(rust_log.as_deref());
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|err| {
        eprintln!("warning: invalid log filter '{directives}' ({err}); logging at info");
        EnvFilter::new("info")
    });
    let format = cli.effective_log_format();
    let colour = format == LogFormat::Text
        && std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
