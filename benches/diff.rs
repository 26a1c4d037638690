//! CPU cost of the hot path of a sync, without I/O: normalizing fetched
//! records into rows, diffing them against stored rows, and encoding them
//! for the INSERT.
//!
//! `cargo bench --bench diff` prints rows per second; no assertions (speed
//! targets live here, not in tests).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use compact_str::format_compact;
use rust_decimal::Decimal;
use tokentra_sync::normalize::pricing::PricingRegistry;
use tokentra_sync::normalize::schema::{
    CostSource, Dimensions, FetchedRecord, Granularity, Measures, RawField, RawGroup, RecordIdentity, RecordType,
};
use tokentra_sync::normalize::Normalizer;
use tokentra_sync::providers::Provider;
use tokentra_sync::store::diff::diff;
use tokentra_sync::store::native::{UsageBlocks, BLOCK_ROWS};

const ROWS: usize = 200_000;

fn records(scale: i64) -> Vec<FetchedRecord> {
    let start = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let models = [
        "gpt-4o-2024-08-06",
        "gpt-4o-mini-2024-07-18",
        "o3-mini-2025-01-31",
        "text-embedding-3-small",
    ];
    (0..ROWS)
        .map(|i| {
            let hour = (i / 500) as i64;
            let model = models[i % models.len()];
            let raw_group = RawGroup::from([
                ("model", RawField::Text(model.into())),
                ("project_id", RawField::Text(format_compact!("proj_{}", i % 50))),
                ("api_key_id", RawField::Text(format_compact!("key_{}", i % 500))),
                ("user_id", RawField::Null),
            ]);
            FetchedRecord {
                identity: RecordIdentity {
                    record_type: RecordType::Usage,
                    endpoint: "completions".into(),
                    granularity: Granularity::Hour,
                    bucket_start: start + Duration::hours(hour),
                    bucket_end: start + Duration::hours(hour + 1),
                    raw_group,
                },
                dims: Dimensions {
                    model_raw: model.into(),
                    service: "completions".into(),
                    project_id: format_compact!("proj_{}", i % 50),
                    api_key_id: format_compact!("key_{}", i % 500),
                    ..Default::default()
                },
                measures: Measures {
                    input_tokens: 1_000 + (i as i64 % 7) * scale,
                    output_tokens: 200,
                    cached_input_tokens: 100,
                    requests: 3,
                    requests_reported: true,
                    cost_source: CostSource::None,
                    quantity: Decimal::ZERO,
                    ..Default::default()
                },
            }
        })
        .collect()
}

fn rate(what: &str, rows: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{what:<44} {rows:>8} rows in {secs:>7.3}s = {:>10.0} rows/s",
        rows as f64 / secs
    );
}

fn main() {
    let pricing = Arc::new(PricingRegistry::builtin().expect("bundled prices parse"));
    let normalizer = Normalizer::new("bench", Provider::OpenAi, pricing);

    let fetched = records(1);
    let t = Instant::now();
    let mut stored = normalizer.rows(fetched).expect("bench records sum");
    rate("normalize (key, model, price) ", ROWS, t);
    for row in &mut stored {
        row.version = 1;
    }
    let scope: BTreeSet<u32> = stored.iter().map(|r| r.bucket_start).collect();

    let same = normalizer.rows(records(1)).expect("bench records sum");
    let t = Instant::now();
    let delta = diff(&stored, &same, &scope, 2, 0);
    rate("diff, nothing changed", ROWS, t);
    assert!(delta.is_empty());

    let changed = normalizer.rows(records(2)).expect("bench records sum");
    let t = Instant::now();
    let delta = diff(&stored, &changed, &scope, 2, 0);
    rate("diff, 6 of 7 records changed", ROWS, t);
    println!("{:<44} {:>8} rows (cancel + new)", "delta written", delta.rows.len());

    // What the writer does to every row it sends: Native blocks.
    let rows: Vec<&_> = stored.iter().collect();
    let t = Instant::now();
    let (mut blocks, mut bytes) = (UsageBlocks::default(), 0);
    for block in rows.chunks(BLOCK_ROWS) {
        let mut out = Vec::with_capacity(block.len() * 300);
        blocks.encode(block, &mut out);
        bytes += out.len();
    }
    rate("encode as Native blocks", ROWS, t);
    println!("{:<44} {:>8} bytes per row", "encoded", bytes / ROWS);
}
