//! Prometheus metrics, all prefixed `tokentra_sync_`, registered once.
//!
//! Label values are bounded: account ids, provider names, statuses and HTTP
//! status codes, never model names or key ids. Each emitting function below is
//! the one place its metric is touched, so names live here only.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::provider::Provider;

const PREFIX: &str = "tokentra_sync";

mod accounts;

use accounts::{AccountSeries, Field, DURATION_BUCKETS};

struct Metrics {
    registry: Registry,
    /// Every series labeled by account.
    accounts: Arc<AccountSeries>,
    writer_queue_rows: IntGauge,
    writer_flush_duration: Histogram,
    writer_insert_errors: IntCounter,
    writer_rows_written: IntCounter,
    build_info: IntGaugeVec,
    up_since: Gauge,
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

/// The shared series behind an `Arc`, registered as a collector.
struct Shared(Arc<AccountSeries>);

impl prometheus::core::Collector for Shared {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let r = Registry::new();
    let accounts = Arc::new(AccountSeries::new(PREFIX));
    r.register(Box::new(Shared(accounts.clone())))
        .expect("metric names are unique");
    let m = Metrics {
        accounts,
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
                .buckets(DURATION_BUCKETS.to_vec()),
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

fn account(account: &str, provider: Provider, update: impl FnOnce(&mut accounts::Series)) {
    METRICS.accounts.update(account, provider, update);
}

pub fn sync_finished(account_id: &str, provider: Provider, status: &str, duration: Duration) {
    account(account_id, provider, |s| {
        s.add_labeled(Field::SyncRuns, status, 1.0);
        s.observe_duration(duration.as_secs_f64());
        if status == "success" {
            s.set(Field::LastSuccess, chrono::Utc::now().timestamp() as f64);
        }
    });
}

/// One failed sync, by the kind of its first failure.
pub fn sync_failure(account_id: &str, provider: Provider, kind: &str) {
    account(account_id, provider, |s| s.add_labeled(Field::SyncFailures, kind, 1.0));
}

/// One read of an account's workspace and key names (`success` or `failed`).
pub fn names_refresh(account_id: &str, provider: Provider, status: &str) {
    account(account_id, provider, |s| {
        s.add_labeled(Field::NamesRefreshes, status, 1.0)
    });
}

/// Accounts by current status, for `/readyz` detail.
pub fn account_statuses() -> std::collections::BTreeMap<String, String> {
    METRICS.accounts.statuses()
}

/// One series per account: its current status, value 1 (the previous
/// status's series is removed, not set to 0).
pub fn account_status(account_id: &str, provider: Provider, status: &str) {
    METRICS.accounts.set_status(account_id, provider, status);
}

pub fn rows(account_id: &str, provider: Provider, fetched: u64, written: u64) {
    account(account_id, provider, |s| {
        s.add(Field::RowsFetched, fetched as f64);
        s.add(Field::RowsWritten, written as f64);
    });
}

pub fn provider_response(account_id: &str, provider: Provider, code: &str) {
    account(account_id, provider, |s| s.add_labeled(Field::Responses, code, 1.0));
}

pub fn provider_retry(account_id: &str, provider: Provider) {
    account(account_id, provider, |s| s.add(Field::Retries, 1.0));
}

/// One request to an API that bills per request (every page counts).
pub fn billed_request(account_id: &str, provider: Provider, api: &str) {
    account(account_id, provider, |s| s.add_labeled(Field::Billed, api, 1.0));
}

pub fn rate_limit_wait(account_id: &str, provider: Provider, wait: Duration) {
    account(account_id, provider, |s| {
        s.add(Field::RateLimitWaits, 1.0);
        s.add(Field::RateLimitWaitSeconds, wait.as_secs_f64());
    });
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
pub fn connection_started(account_id: &str, provider: Provider) {
    account(account_id, provider, |s| s.add(Field::ConnectionStarts, 1.0));
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
