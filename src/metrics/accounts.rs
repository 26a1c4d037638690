//! The series labeled by account, kept as plain numbers per account and turned
//! into Prometheus families only when scraped.
//!
//! Why not `IntCounterVec` and friends: every child of a prometheus vec carries
//! its own copy of the family's description and of its label pairs. With ~10
//! series per account that was ~5 KB per account, 50 MB at 10,000 accounts,
//! for numbers that take a few hundred bytes (heaptrack, BENCHMARKS.md). The
//! exposition is the same: names, help, types, labels (sorted by name, as the
//! prometheus crate writes them) and a series appears once first touched.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};

use crate::provider::Provider;

/// Upper bounds of `sync_duration_seconds`, in seconds.
pub(super) const DURATION_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

/// One per-account family: its name (without the prefix), help, type and the
/// label it has besides `account` and `provider`.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    label: Option<&'static str>,
}

const fn family(name: &'static str, help: &'static str, kind: MetricType, label: Option<&'static str>) -> Family {
    Family {
        name,
        help,
        kind,
        label,
    }
}

use MetricType::{COUNTER, GAUGE, HISTOGRAM};

/// Every family, in the order of [`Field`].
const FAMILIES: [Family; 14] = [
    family("sync_runs_total", "Sync attempts by final status.", COUNTER, Some("status")),
    family(
        "sync_failures_total",
        "Failed syncs by typed reason (auth, throttled, provider_5xx, timeout, network, malformed, request, config, store).",
        COUNTER,
        Some("kind"),
    ),
    family("sync_duration_seconds", "Wall time of one sync, fetch to stored.", HISTOGRAM, None),
    family(
        "last_success_timestamp_seconds",
        "Unix time the account's last successful sync finished.",
        GAUGE,
        None,
    ),
    family(
        "account_status",
        "1 for the account's current status (pending, connected, syncing, error, disconnected, stopped, start_failed).",
        GAUGE,
        Some("status"),
    ),
    family("rows_fetched_total", "Records fetched from the provider.", COUNTER, None),
    family("rows_written_total", "Delta rows (new and cancel) stored for the account.", COUNTER, None),
    family(
        "provider_http_responses_total",
        "Provider HTTP responses by status code ('error' = no response).",
        COUNTER,
        Some("code"),
    ),
    family("provider_retries_total", "Provider requests retried.", COUNTER, None),
    family(
        "provider_billed_requests_total",
        "Provider API requests the provider charges for (AWS Cost Explorer: $0.01 each), by API.",
        COUNTER,
        Some("api"),
    ),
    family("rate_limit_waits_total", "Waits imposed by a provider's 429 Retry-After.", COUNTER, None),
    family("rate_limit_wait_seconds_total", "Seconds spent waiting for provider rate limits.", COUNTER, None),
    family(
        "names_refreshes_total",
        "Reads of the provider's workspace and key names by status (success, failed).",
        COUNTER,
        Some("status"),
    ),
    family(
        "connection_starts_total",
        "Connection actors started per account (first start, reload restarts, crash restarts).",
        COUNTER,
        None,
    ),
];

/// A family's index in [`FAMILIES`].
#[derive(Clone, Copy)]
pub(super) enum Field {
    SyncRuns,
    SyncFailures,
    SyncDuration,
    LastSuccess,
    Status,
    RowsFetched,
    RowsWritten,
    Responses,
    Retries,
    Billed,
    RateLimitWaits,
    RateLimitWaitSeconds,
    NamesRefreshes,
    ConnectionStarts,
}

/// Observations of `sync_duration_seconds`: per-bucket (not cumulative) counts.
#[derive(Default)]
struct Durations {
    counts: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// One (account, provider)'s series. A value exists once its series was
/// touched (a counter incremented by 0 is a series showing 0).
#[derive(Default)]
pub(super) struct Series {
    /// Plain values, by [`Field`] (for the families without an extra label).
    values: [Option<f64>; FAMILIES.len()],
    /// The families with an extra label: (field, label value, value).
    labeled: Vec<(u8, Box<str>, f64)>,
    durations: Option<Box<Durations>>,
}

impl Series {
    pub(super) fn add(&mut self, field: Field, by: f64) {
        *self.values[field as usize].get_or_insert(0.0) += by;
    }

    pub(super) fn set(&mut self, field: Field, value: f64) {
        self.values[field as usize] = Some(value);
    }

    pub(super) fn add_labeled(&mut self, field: Field, label: &str, by: f64) {
        let field = field as u8;
        match self.labeled.iter_mut().find(|(f, l, _)| *f == field && &**l == label) {
            Some((_, _, value)) => *value += by,
            None => self.labeled.push((field, label.into(), by)),
        }
    }

    fn clear_labeled(&mut self, field: Field) {
        self.labeled.retain(|(f, _, _)| *f != field as u8);
    }

    pub(super) fn observe_duration(&mut self, seconds: f64) {
        let durations = self.durations.get_or_insert_with(Default::default);
        if let Some(i) = DURATION_BUCKETS.iter().position(|bound| seconds <= *bound) {
            durations.counts[i] += 1;
        }
        durations.count += 1;
        durations.sum += seconds;
    }
}

/// An account's series, per provider it has had.
type ByProvider = Vec<(Provider, Series)>;

/// Every account's series, one collector registered once.
pub(super) struct AccountSeries {
    descs: Vec<Desc>,
    /// Account -> its series per provider (one, unless a reload changed the
    /// account's provider: the old provider's counters stay).
    accounts: Mutex<BTreeMap<Box<str>, ByProvider>>,
}

impl AccountSeries {
    pub(super) fn new(prefix: &str) -> Self {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                let mut labels = vec!["account".to_string(), "provider".to_string()];
                labels.extend(f.label.map(str::to_string));
                Desc::new(
                    format!("{prefix}_{}", f.name),
                    f.help.to_string(),
                    labels,
                    Default::default(),
                )
                .expect("valid metric description")
            })
            .collect();
        Self {
            descs,
            accounts: Mutex::new(BTreeMap::new()),
        }
    }

    /// Runs `update` on the series of (`account`, `provider`), creating them.
    pub(super) fn update(&self, account: &str, provider: Provider, update: impl FnOnce(&mut Series)) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let providers = match accounts.get_mut(account) {
            Some(providers) => providers,
            None => accounts.entry(account.into()).or_default(),
        };
        let index = match providers.iter().position(|(p, _)| *p == provider) {
            Some(index) => index,
            None => {
                providers.push((provider, Series::default()));
                providers.len() - 1
            }
        };
        update(&mut providers[index].1);
    }

    /// Makes `status` the account's one `account_status` series (value 1),
    /// under any provider it had before too.
    pub(super) fn set_status(&self, account: &str, provider: Provider, status: &str) {
        self.update(account, provider, |_| {});
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        for (p, series) in accounts.get_mut(account).into_iter().flatten() {
            series.clear_labeled(Field::Status);
            if *p == provider {
                series.add_labeled(Field::Status, status, 1.0);
            }
        }
    }

    /// Each account's current status.
    pub(super) fn statuses(&self) -> BTreeMap<String, String> {
        let accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        accounts
            .iter()
            .filter_map(|(account, providers)| {
                let status = providers.iter().find_map(|(_, series)| {
                    series
                        .labeled
                        .iter()
                        .find(|(f, _, _)| *f == Field::Status as u8)
                        .map(|(_, status, _)| status.to_string())
                })?;
                Some((account.to_string(), status))
            })
            .collect()
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_string());
    pair.set_value(value.to_string());
    pair
}

/// The label pairs of one series, sorted by name as the prometheus crate does.
fn labels(account: &str, provider: Provider, extra: Option<(&str, &str)>) -> Vec<LabelPair> {
    let mut pairs = vec![label("account", account), label("provider", provider.as_str())];
    if let Some((name, value)) = extra {
        pairs.push(label(name, value));
    }
    pairs.sort_by(|a, b| a.name().cmp(b.name()));
    pairs
}

fn sample(kind: MetricType, pairs: Vec<LabelPair>, value: f64) -> proto::Metric {
    let mut metric = proto::Metric::from_label(pairs);
    match kind {
        MetricType::GAUGE => {
            let mut gauge = proto::Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        _ => {
            let mut counter = proto::Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        }
    }
    metric
}

fn histogram(pairs: Vec<LabelPair>, durations: &Durations) -> proto::Metric {
    let mut cumulative = 0;
    let buckets = DURATION_BUCKETS
        .iter()
        .zip(durations.counts)
        .map(|(bound, count)| {
            cumulative += count;
            let mut bucket = proto::Bucket::default();
            bucket.set_upper_bound(*bound);
            bucket.set_cumulative_count(cumulative);
            bucket
        })
        .collect();
    let mut histogram = proto::Histogram::default();
    histogram.set_sample_count(durations.count);
    histogram.set_sample_sum(durations.sum);
    histogram.set_bucket(buckets);
    let mut metric = proto::Metric::from_label(pairs);
    metric.set_histogram(histogram);
    metric
}

impl Collector for AccountSeries {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut metrics: Vec<Vec<proto::Metric>> = FAMILIES.iter().map(|_| Vec::new()).collect();
        let accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        for (account, providers) in accounts.iter() {
            for (provider, series) in providers {
                for (i, value) in series.values.iter().enumerate() {
                    if let Some(value) = value {
                        metrics[i].push(sample(FAMILIES[i].kind, labels(account, *provider, None), *value));
                    }
                }
                for (field, value_label, value) in &series.labeled {
                    let family = &FAMILIES[*field as usize];
                    let extra = family.label.map(|name| (name, &**value_label));
                    metrics[*field as usize].push(sample(family.kind, labels(account, *provider, extra), *value));
                }
                if let Some(durations) = &series.durations {
                    metrics[Field::SyncDuration as usize].push(histogram(labels(account, *provider, None), durations));
                }
            }
        }
        FAMILIES
            .iter()
            .zip(&self.descs)
            .zip(metrics)
            .map(|((family, desc), metrics)| {
                let mut out = MetricFamily::default();
                out.set_name(desc.fq_name.clone());
                out.set_help(family.help.to_string());
                out.set_field_type(family.kind);
                out.set_metric(metrics);
                out
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{Encoder, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder};

    use super::*;

    fn text(registry: &Registry) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&registry.gather(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The same observations through the prometheus crate's own vecs (what
    /// this module replaces) and through [`AccountSeries`] give the same
    /// exposition, byte for byte.
    #[test]
    fn exposition_matches_the_prometheus_vecs_it_replaces() {
        let reference = Registry::new();
        let counters: Vec<prometheus::CounterVec> = FAMILIES
            .iter()
            .filter(|f| f.kind == COUNTER)
            .map(|f| {
                let mut labels = vec!["account", "provider"];
                labels.extend(f.label);
                let vec = prometheus::CounterVec::new(Opts::new(f.name, f.help).namespace("t"), &labels).unwrap();
                reference.register(Box::new(vec.clone())).unwrap();
                vec
            })
            .collect();
        let counter = |name: &str| {
            let at = FAMILIES
                .iter()
                .filter(|f| f.kind == COUNTER)
                .position(|f| f.name == name)
                .unwrap();
            counters[at].clone()
        };
        let gauges = |name: &str, labels: &[&str]| {
            let f = FAMILIES.iter().find(|f| f.name == name).unwrap();
            let vec = GaugeVec::new(Opts::new(f.name, f.help).namespace("t"), labels).unwrap();
            reference.register(Box::new(vec.clone())).unwrap();
            vec
        };
        let status = gauges("account_status", &["account", "provider", "status"]);
        let last_success = gauges("last_success_timestamp_seconds", &["account", "provider"]);
        let duration = HistogramVec::new(
            HistogramOpts::new("sync_duration_seconds", FAMILIES[Field::SyncDuration as usize].help)
                .namespace("t")
                .buckets(DURATION_BUCKETS.to_vec()),
            &["account", "provider"],
        )
        .unwrap();
        reference.register(Box::new(duration.clone())).unwrap();

        let compact = Registry::new();
        let shared = std::sync::Arc::new(AccountSeries::new("t"));
        compact
            .register(Box::new(super::super::Shared(shared.clone())))
            .unwrap();

        for (account, provider) in [("b-acct", Provider::OpenAi), ("a-acct", Provider::AwsBedrock)] {
            let p = provider.as_str();
            for (seconds, status_value) in [
                (0.3, "success"),
                (45.0, "failed"),
                (0.05, "success"),
                (2000.0, "success"),
            ] {
                counter("sync_runs_total")
                    .with_label_values(&[account, p, status_value])
                    .inc();
                duration.with_label_values(&[account, p]).observe(seconds);
                shared.update(account, provider, |s| {
                    s.add_labeled(Field::SyncRuns, status_value, 1.0);
                    s.observe_duration(seconds);
                });
            }
            counter("sync_failures_total")
                .with_label_values(&[account, p, "throttled"])
                .inc();
            counter("provider_http_responses_total")
                .with_label_values(&[account, p, "200"])
                .inc_by(3.0);
            counter("provider_http_responses_total")
                .with_label_values(&[account, p, "429"])
                .inc();
            counter("rows_fetched_total")
                .with_label_values(&[account, p])
                .inc_by(0.0);
            counter("rate_limit_wait_seconds_total")
                .with_label_values(&[account, p])
                .inc_by(1.5);
            last_success.with_label_values(&[account, p]).set(1_700_000_000.0);
            shared.update(account, provider, |s| {
                s.add_labeled(Field::SyncFailures, "throttled", 1.0);
                s.add_labeled(Field::Responses, "200", 3.0);
                s.add_labeled(Field::Responses, "429", 1.0);
                s.add(Field::RowsFetched, 0.0);
                s.add(Field::RateLimitWaitSeconds, 1.5);
                s.set(Field::LastSuccess, 1_700_000_000.0);
            });
            status.with_label_values(&[account, p, "syncing"]).set(1.0);
            shared.set_status(account, provider, "connected");
            shared.set_status(account, provider, "syncing");
        }
        assert_eq!(text(&compact), text(&reference));
        assert!(text(&compact)
            .contains(r#"t_sync_duration_seconds_bucket{account="a-acct",provider="aws_bedrock",le="0.05"} 1"#));
    }

    #[test]
    fn a_status_replaces_the_previous_one_even_under_another_provider() {
        let series = AccountSeries::new("t");
        series.set_status("acct", Provider::OpenAi, "connected");
        series.update("acct", Provider::OpenAi, |s| s.add(Field::ConnectionStarts, 1.0));
        series.set_status("acct", Provider::Anthropic, "syncing");
        let families = series.collect();
        let statuses = &families[Field::Status as usize];
        assert_eq!(statuses.get_metric().len(), 1, "one status series per account");
        let pairs: Vec<(&str, &str)> = statuses.get_metric()[0]
            .get_label()
            .iter()
            .map(|l| (l.name(), l.value()))
            .collect();
        assert_eq!(
            pairs,
            [("account", "acct"), ("provider", "anthropic"), ("status", "syncing")]
        );
        // The old provider's counter stays.
        assert_eq!(families[Field::ConnectionStarts as usize].get_metric().len(), 1);
        assert_eq!(
            series.statuses(),
            BTreeMap::from([("acct".to_string(), "syncing".to_string())])
        );
    }
}
