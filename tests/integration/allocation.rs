//! Per-key cost allocation end to end: the same simulated Anthropic orgs
//! synced into two databases, as billed (`allocate_cost = false`) and
//! allocated (`true`). The allocated database must hold exactly the bill per
//! account, day, workspace and bill row, as the simulator's truth says, with
//! the parts spread over API keys, never beside their bill row, and a
//! re-sync must write nothing.

use chrono::{Duration, Utc};
use tokentra_sync::simulator::SimHandle;

use crate::support::{self, TestConfig};

const ORGS: [(&str, &str); 2] = [("org-1", "legacy"), ("org-2", "analytics")];

fn accounts(sim: &SimHandle, allocate: bool) -> String {
    ORGS.iter()
        .map(|(org, api)| {
            format!(
                "[[accounts]]\nid = \"anthropic-{org}\"\nprovider = \"anthropic\"\nbase_url = \"{base}\"\n\
                 backfill_days = 7\napi = \"{api}\"\nallocate_cost = {allocate}\n\
                 [accounts.credentials]\napi_key = \"{key}\"\n\n",
                base = sim.anthropic_base_url(org),
                key = tokentra_sync::simulator::anthropic_api_key(org),
            )
        })
        .collect()
}

async fn cli_sync(config: &TestConfig, since: &str, until: &str) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(config.write())
        .args(["--since", since, "--until", until])
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "sync failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Net billed money per (account, day, workspace, bill line) from the raw
/// rows, as sorted TSV lines (money aggregated, never grouped by).
async fn per_bill_row(client: &tokentra_sync::store::ClickhouseClient) -> Vec<String> {
    support::query_tsv(
        client,
        "SELECT connection_id, toDate(bucket_start, 'UTC') AS d, workspace_id, line_item, \
                toString(sum(cost * sign)), toString(sum(amount_original * sign)) \
         FROM {db}.usage_records WHERE record_type = 'cost' \
         GROUP BY connection_id, d, workspace_id, line_item \
         ORDER BY connection_id, d, workspace_id, line_item",
    )
    .await
    .lines()
    .map(str::to_string)
    .collect()
}

#[actix_rt::test]
async fn allocation_sums_exactly_to_the_bill_per_day_and_workspace_and_a_resync_writes_nothing() {
    let sim = support::start_sim(17, 2).await;
    let billed = TestConfig::new("alloc_billed", &accounts(&sim, false));
    let allocated = TestConfig::new("alloc_parts", &accounts(&sim, true));
    let (billed_db, parts_db) = (billed.client(), allocated.client());
    let today = Utc::now().date_naive();
    let (since, until) = ((today - Duration::days(6)).to_string(), today.to_string());
    cli_sync(&billed, &since, &until).await;
    cli_sync(&allocated, &since, &until).await;

    // 1. Exact per bill row (and so per account, day and workspace): the
    //    parts of each (day, workspace, line) sum to what the provider billed.
    let bill = per_bill_row(&billed_db).await;
    assert!(bill.len() > 50, "the simulator bills every day: {}", bill.len());
    assert_eq!(per_bill_row(&parts_db).await, bill);
    let per_day_workspace = "SELECT connection_id, toString(day), workspace_id, toString(sum(cost)) \
         FROM {db}.usage_daily GROUP BY connection_id, day, workspace_id \
         ORDER BY connection_id, day, workspace_id";
    assert_eq!(
        support::query_tsv(&parts_db, per_day_workspace).await,
        support::query_tsv(&billed_db, per_day_workspace).await,
        "the rollup (what the dashboards read) agrees"
    );

    // 2. ... and to the simulator's truth per account and day.
    for (org, api) in ORGS {
        let rows = support::truth_days(&sim, "anthropic", org, &since, &until).await;
        let mut want: std::collections::BTreeMap<String, rust_decimal::Decimal> = Default::default();
        for r in rows {
            *want.entry(r.day.clone()).or_default() += r.cost.parse::<rust_decimal::Decimal>().unwrap();
        }
        let got = support::query_tsv(
            &parts_db,
            &format!(
                "SELECT toString(day), toString(sum(cost)) FROM {{db}}.usage_daily \
                 WHERE connection_id = 'anthropic-{org}' GROUP BY day ORDER BY day"
            ),
        )
        .await;
        let got: std::collections::BTreeMap<String, rust_decimal::Decimal> = got
            .lines()
            .map(|l| {
                let (d, c) = l.split_once('\t').unwrap();
                (d.to_string(), c.parse().unwrap())
            })
            .filter(|(_, c): &(String, rust_decimal::Decimal)| !c.is_zero())
            .collect();
        let want: std::collections::BTreeMap<_, _> = want.into_iter().filter(|(_, c)| !c.is_zero()).collect();
        assert_eq!(got, want, "anthropic {org} ({api}): cost per day against the truth");
    }

    // 3. The bill really is spread over keys (and web search over models),
    //    and no bill row is stored beside its parts.
    let parts = support::count(
        &parts_db,
        "SELECT count() FROM {db}.usage_records WHERE cost_source = 'allocated' AND sign = 1",
    )
    .await;
    let keys = support::count(
        &parts_db,
        "SELECT uniqExact(api_key_id) FROM {db}.usage_records WHERE cost_source = 'allocated' AND api_key_id != ''",
    )
    .await;
    assert!(parts > 0 && keys >= 3, "parts {parts}, keys {keys}");
    let web_search_models = support::count(
        &parts_db,
        "SELECT count() FROM {db}.usage_records WHERE cost_source = 'allocated' AND service = 'web_search' \
         AND model != '' AND position(attributes, 'allocation_basis=quantity') > 0",
    )
    .await;
    assert!(
        web_search_models > 0,
        "web search cost goes to the models that searched"
    );
    let beside = support::count(
        &parts_db,
        "SELECT count() FROM (SELECT connection_id, toDate(bucket_start, 'UTC') AS d, workspace_id, line_item \
         FROM {db}.usage_records WHERE record_type = 'cost' \
         GROUP BY connection_id, d, workspace_id, line_item \
         HAVING sumIf(sign, cost_source = 'billed') != 0 AND sumIf(sign, cost_source = 'allocated') != 0)",
    )
    .await;
    assert_eq!(beside, 0, "a bill row and its parts are never both live");
    let unallocated = support::count(
        &parts_db,
        "SELECT sum(sign) FROM {db}.usage_records WHERE cost_source = 'billed'",
    )
    .await;
    let billed_rows = support::count(
        &billed_db,
        "SELECT sum(sign) FROM {db}.usage_records WHERE cost_source = 'billed'",
    )
    .await;
    assert!(
        unallocated * 10 < billed_rows,
        "most bill rows have usage to allocate to: {unallocated} of {billed_rows} kept"
    );

    // 4. A re-sync of the same window writes nothing.
    let written = "SELECT sum(rows_written) + sum(rows_cancelled) FROM {db}.sync_runs";
    let rows_before = support::count(&parts_db, "SELECT count() FROM {db}.usage_records").await;
    let written_before = support::count(&parts_db, written).await;
    cli_sync(&allocated, &since, &until).await;
    assert_eq!(
        support::count(&parts_db, "SELECT count() FROM {db}.usage_records").await,
        rows_before
    );
    assert_eq!(
        support::count(&parts_db, written).await,
        written_before,
        "the re-sync wrote rows"
    );

    // 5. Turning allocation off again replaces the parts by the bill rows:
    //    the same delta machinery, still exact.
    let off = TestConfig {
        text: allocated.text.replace("allocate_cost = true", "allocate_cost = false"),
        dir: tempfile::tempdir().unwrap(),
    };
    cli_sync(&off, &since, &until).await;
    assert_eq!(per_bill_row(&parts_db).await, bill);
    assert_eq!(
        support::count(
            &parts_db,
            "SELECT sum(sign) FROM {db}.usage_records WHERE cost_source = 'allocated'"
        )
        .await,
        0
    );
    sim.stop().await;
}
