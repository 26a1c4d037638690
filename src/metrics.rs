//! Prometheus metrics, all prefixed `tokentra_sync_`, registered once.
//!
//! Label values are bounded: account ids, provider names, statuses and HTTP
//! status codes, never model names or key ids. Each emitting function below is
//! the one place its metric is touched, so names live here only.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::provider::Provider;

const PREFIX: &str = "tokentra_sync";

struct Metrics {
    registry: Registry,
    sync_runs: IntCounterVec,
    sync_failures: IntCounterVec,
    sync_duration: HistogramVec,
    last_success: GaugeVec,
    account_status: IntGaugeVec,
    rows_fetched: IntCounterVec,
    rows_written: IntCounterVec,
    provider_responses: IntCounterVec,
    provider_retries: IntCounterVec,
    billed_requests: IntCounterVec,
    rate_limit_waits: IntCounterVec,
    rate_limit_wait_seconds: prometheus::CounterVec,
    writer_queue_rows: IntGauge,
    writer_flush_duration: Histogram,
    writer_insert_errors: IntCounter,
    writer_rows_written: IntCounter,
    names_refreshes: IntCounterVec,
    build_info: IntGaugeVec,
    up_since: Gauge,
    connection_starts: IntCounterVec,
    config_reloads: IntCounterVec,
    config_generation: IntGauge,
    webhook_deliveries: IntCounterVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(PREFIX)
}

fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let account = &["account", "provider"];
    let duration_buckets = vec![
        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
    ];
    let m = Metrics {
        sync_runs: register(
            &r,
            IntCounterVec::new(
                opts("sync_runs_total", "Sync attempts by final status."),
                &["account", "provider", "status"],
            )
            .unwrap(),
        ),
        sync_failures: register(
            &r,
            IntCounterVec::new(
                opts(
                    "sync_failures_total",
                    "Failed syncs by typed reason (auth, throttled, provider_5xx, timeout, network, malformed, request, config, store).",
                ),
                &["account", "provider", "kind"],
            )
            .unwrap(),
        ),
        sync_duration: register(
            &r,
            HistogramVec::new(
                HistogramOpts::new("sync_duration_seconds", "Wall time of one sync, fetch to stored.")
                    .namespace(PREFIX)
                    .buckets(duration_buckets.clone()),
                account,
            )
            .unwrap(),
        ),
        last_success: register(
            &r,
            GaugeVec::new(
                opts(
                    "last_success_timestamp_seconds",
                    "Unix time the account's last successful sync finished.",
                ),
                account,
            )
            .unwrap(),
        ),
        account_status: register(
            &r,
            IntGaugeVec::new(
                opts(
                    "account_status",
                    "1 for the account's current status (pending, connected, syncing, error, disconnected, stopped, start_failed).",
                ),
                &["account", "provider", "status"],
            )
            .unwrap(),
        ),
        rows_fetched: register(
            &r,
            IntCounterVec::new(
                opts("rows_fetched_total", "Records fetched from the provider."),
                account,
            )
            .unwrap(),
        ),
        rows_written: register(
            &r,
            IntCounterVec::new(
                opts(
                    "rows_written_total",
                    "Delta rows (new and cancel) stored for the account.",
                ),
                account,
            )
            .unwrap(),
        ),
        provider_responses: register(
            &r,
            IntCounterVec::new(
                opts(
                    "provider_http_responses_total",
                    "Provider HTTP responses by status code ('error' = no response).",
                ),
                &["account", "provider", "code"],
            )
            .unwrap(),
        ),
        provider_retries: register(
            &r,
            IntCounterVec::new(opts("provider_retries_total", "Provider requests retried."), account).unwrap(),
        ),
        billed_requests: register(
            &r,
            IntCounterVec::new(
                opts(
                    "provider_billed_requests_total",
                    "Provider API requests the provider charges for (AWS Cost Explorer: $0.01 each), by API.",
                ),
                &["account", "provider", "api"],
            )
            .unwrap(),
        ),
        rate_limit_waits: register(
            &r,
            IntCounterVec::new(
                opts(
                    "rate_limit_waits_total",
                    "Waits imposed by a provider's 429 Retry-After.",
                ),
                account,
            )
            .unwrap(),
        ),
        rate_limit_wait_seconds: register(
            &r,
            prometheus::CounterVec::new(
                opts(
                    "rate_limit_wait_seconds_total",
                    "Seconds spent waiting for provider rate limits.",
                ),
                account,
            )
            .unwrap(),
        ),
        writer_queue_rows: register(
            &r,
            IntGauge::with_opts(opts("writer_queue_rows", "Rows waiting in the writer for ClickHouse.")).unwrap(),
        ),
        writer_flush_duration: register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "writer_flush_duration_seconds",
                    "Time to insert one batch into ClickHouse.",
                )
                .namespace(PREFIX)
                .buckets(duration_buckets),
            )
            .unwrap(),
        ),
        writer_insert_errors: register(
            &r,
            IntCounter::with_opts(opts(
                "writer_insert_errors_total",
                "Failed ClickHouse inserts (each retried).",
            ))
            .unwrap(),
        ),
        writer_rows_written: register(
            &r,
            IntCounter::with_opts(opts("writer_rows_written_total", "Rows inserted into usage_records.")).unwrap(),
        ),
        names_refreshes: register(
            &r,
            IntCounterVec::new(
                opts(
                    "names_refreshes_total",
                    "Reads of the provider's workspace and key names by status (success, failed).",
                ),
                &["account", "provider", "status"],
            )
            .unwrap(),
        ),
        build_info: register(
            &r,
            IntGaugeVec::new(
                opts("build_info", "Build information; the value is always 1."),
                &["version"],
            )
            .unwrap(),
        ),
        up_since: register(
            &r,
            Gauge::with_opts(opts("start_time_seconds", "Unix time the process started.")).unwrap(),
        ),
        connection_starts: register(
            &r,
            IntCounterVec::new(
                opts(
                    "connection_starts_total",
                    "Connection actors started per account (first start, reload restarts, crash restarts).",
                ),
                account,
            )
            .unwrap(),
        ),
        config_reloads: register(
            &r,
            IntCounterVec::new(
                opts(
                    "config_reloads_total",
                    "Config reloads (SIGHUP, POST /v1/reload) by result: success, invalid, restart_required.",
                ),
                &["result"],
            )
            .unwrap(),
        ),
        config_generation: register(
            &r,
            IntGauge::with_opts(opts(
                "config_generation",
                "The running config's generation: 1 at start, +1 per applied reload.",
            ))
            .unwrap(),
        ),
        webhook_deliveries: register(
            &r,
            IntCounterVec::new(
                opts(
                    "webhook_deliveries_total",
                    "Webhook events by outcome: delivered, retried (an attempt failed, another follows), \
                     failed (given up), dropped (queue full).",
                ),
                &["webhook", "event", "outcome"],
            )
            .unwrap(),
        ),
        registry: r,
    };
    m.build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    m.up_since.set(chrono::Utc::now().timestamp() as f64);
    m
});

/// The text exposition of every metric, for `/metrics`.
pub fn render() -> String {
    let families = METRICS.registry.gather();
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&families, &mut out)
        .expect("text encoding into a Vec cannot fail");
    String::from_utf8(out).expect("prometheus text is UTF-8")
}

pub fn sync_finished(account: &str, provider: Provider, status: &str, duration: Duration) {
    let m = &*METRICS;
    m.sync_runs
        .with_label_values(&[account, provider.as_str(), status])
        .inc();
    m.sync_duration
        .with_label_values(&[account, provider.as_str()])
        .observe(duration.as_secs_f64());
    if status == "success" {
        m.last_success
            .with_label_values(&[account, provider.as_str()])
            .set(chrono::Utc::now().timestamp() as f64);
    }
}

/// One failed sync, by the kind of its first failure.
pub fn sync_failure(account: &str, provider: Provider, kind: &str) {
    METRICS
        .sync_failures
        .with_label_values(&[account, provider.as_str(), kind])
        .inc();
}

/// One read of an account's workspace and key names (`success` or `failed`).
pub fn names_refresh(account: &str, provider: Provider, status: &str) {
    METRICS
        .names_refreshes
        .with_label_values(&[account, provider.as_str(), status])
        .inc();
}

/// Each account's current status, for `/readyz` detail (the gauges hold the
/// same, one-hot, for Prometheus).
static CURRENT_STATUS: LazyLock<std::sync::Mutex<std::collections::BTreeMap<String, String>>> =
    LazyLock::new(Default::default);

/// Accounts by current status.
pub fn account_statuses() -> std::collections::BTreeMap<String, String> {
    CURRENT_STATUS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// One series per account: its current status, value 1. The previous
/// status's series is removed rather than set to 0: each series carries its
/// own label pairs and description, and six zeros per account were a visible
/// share of the daemon's per-account memory (heaptrack, BENCHMARKS.md).
pub fn account_status(account: &str, provider: Provider, status: &str) {
    let mut current = CURRENT_STATUS.lock().unwrap_or_else(|p| p.into_inner());
    let previous = current.insert(account.to_string(), status.to_string());
    let m = &*METRICS;
    if let Some(previous) = previous.filter(|p| p != status) {
        // Absent if the account's provider changed with a reload; nothing to remove then.
        let _ = m
            .account_status
            .remove_label_values(&[account, provider.as_str(), &previous]);
    }
    m.account_status
        .with_label_values(&[account, provider.as_str(), status])
        .set(1);
}

pub fn rows(account: &str, provider: Provider, fetched: u64, written: u64) {
    let m = &*METRICS;
    m.rows_fetched
        .with_label_values(&[account, provider.as_str()])
        .inc_by(fetched);
    m.rows_written
        .with_label_values(&[account, provider.as_str()])
        .inc_by(written);
}

pub fn provider_response(account: &str, provider: Provider, code: &str) {
    METRICS
        .provider_responses
        .with_label_values(&[account, provider.as_str(), code])
        .inc();
}

pub fn provider_retry(account: &str, provider: Provider) {
    METRICS
        .provider_retries
        .with_label_values(&[account, provider.as_str()])
        .inc();
}

/// One request to an API that bills per request (every page counts).
pub fn billed_request(account: &str, provider: Provider, api: &str) {
    METRICS
        .billed_requests
        .with_label_values(&[account, provider.as_str(), api])
        .inc();
}

pub fn rate_limit_wait(account: &str, provider: Provider, wait: Duration) {
    let m = &*METRICS;
    m.rate_limit_waits
        .with_label_values(&[account, provider.as_str()])
        .inc();
    m.rate_limit_wait_seconds
        .with_label_values(&[account, provider.as_str()])
        .inc_by(wait.as_secs_f64());
}

pub fn writer_queue(rows: usize) {
    METRICS.writer_queue_rows.set(rows as i64);
}

pub fn writer_flushed(rows: usize, duration: Duration) {
    let m = &*METRICS;
    m.writer_flush_duration.observe(duration.as_secs_f64());
    m.writer_rows_written.inc_by(rows as u64);
}

pub fn writer_insert_error() {
    METRICS.writer_insert_errors.inc();
}

/// A connection actor of `account` started (or was restarted).
pub fn connection_started(account: &str, provider: Provider) {
    METRICS
        .connection_starts
        .with_label_values(&[account, provider.as_str()])
        .inc();
}

/// One reload attempt; `generation` is the config now running.
pub fn config_reload(result: &str, generation: u64) {
    METRICS.config_reloads.with_label_values(&[result]).inc();
    config_generation(generation);
}

pub fn config_generation(generation: u64) {
    METRICS.config_generation.set(generation as i64);
}

pub fn webhook_delivery(webhook: &str, event: &str, outcome: &str) {
    METRICS
        .webhook_deliveries
        .with_label_values(&[webhook, event, outcome])
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_metrics_carry_prefix_and_bounded_labels() {
        provider_response("acct-a", Provider::OpenAi, "429");
        account_status("acct-a", Provider::OpenAi, "connected");
        account_status("acct-a", Provider::OpenAi, "syncing");
        let text = render();
        assert!(text
            .contains(r#"tokentra_sync_provider_http_responses_total{account="acct-a",code="429",provider="openai"}"#));
        assert!(text.contains(r#"tokentra_sync_account_status{account="acct-a",provider="openai",status="syncing"} 1"#));
        assert!(
            !text.contains(r#"tokentra_sync_account_status{account="acct-a",provider="openai",status="connected"}"#),
            "only the current status has a series"
        );
        assert!(text.contains("tokentra_sync_build_info{version="));
    }
}
