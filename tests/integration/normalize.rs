//! Derived columns end to end: normalized model names beside the raw ones,
//! and `estimated_cost` from the price registry with a config override.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::support::{self, TestConfig};

#[actix_rt::test]
async fn usage_rows_get_normalized_models_and_estimates_from_overridden_prices() {
    let sim = support::start_sim(31, 1).await;
    let overrides = r#"
[[pricing.overrides]]
provider = "openai"
model = "gpt-4o-mini"
effective_from = "2020-01-01"
input = "1"
cached_input = "0.5"
output = "2"
"#;
    let config = TestConfig::with_url(
        "normalize",
        &support::sim_accounts(&sim, &["org-1"], &["openai"]),
        &support::clickhouse_url(),
        overrides,
    );
    let today = chrono::Utc::now().date_naive();
    let path = config.write();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(&path)
        .args([
            "--since",
            &(today - chrono::Duration::days(2)).to_string(),
            "--until",
            &today.to_string(),
        ])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let client = config.client();

    let names = support::query_tsv(
        &client,
        "SELECT DISTINCT model_raw, model, model_family FROM {db}.usage_records \
         WHERE record_type = 'usage' AND model_raw = 'gpt-4o-mini-2024-07-18'",
    )
    .await;
    assert_eq!(names.trim(), "gpt-4o-mini-2024-07-18\tgpt-4o-mini\tgpt-4o");

    let rows = support::query_tsv(
        &client,
        "SELECT input_tokens, cached_input_tokens, cache_creation_tokens, output_tokens, toString(estimated_cost) \
         FROM {db}.usage_records WHERE record_type = 'usage' AND model = 'gpt-4o-mini' AND sign = 1",
    )
    .await;
    let mut checked = 0;
    for line in rows.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let n = |i: usize| Decimal::from_str(f[i]).unwrap();
        let expected = ((n(0) - n(1) - n(2)) * Decimal::ONE
            + n(1) * Decimal::from_str("0.5").unwrap()
            + n(2) * Decimal::ONE
            + n(3) * Decimal::TWO)
            / Decimal::from(1_000_000);
        assert_eq!(n(4), expected.round_dp(9), "{line}");
        checked += 1;
    }
    assert!(checked > 0, "the simulator serves gpt-4o-mini usage");
    let priced_costs = support::count(
        &client,
        "SELECT count() FROM {db}.usage_records WHERE record_type = 'cost' AND estimated_cost != 0",
    )
    .await;
    assert_eq!(priced_costs, 0, "estimates live on usage rows only");
    let unpriced = support::count(
        &client,
        "SELECT count() FROM {db}.usage_records WHERE record_type = 'usage' AND model = 'gpt-4o' \
         AND input_tokens > 0 AND estimated_cost = 0",
    )
    .await;
    assert_eq!(unpriced, 0, "bundled prices cover gpt-4o");
    sim.stop().await;
}
