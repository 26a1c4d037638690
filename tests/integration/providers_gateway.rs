//! Gateways end to end: simulated OpenRouter orgs and LiteLLM proxies ->
//! one-shot `sync` (the real binary) -> ClickHouse -> `usage_daily`, compared
//! with the simulator's truth to the last decimal, `estimated_cost` included
//! (OpenRouter BYOK spend, LiteLLM's own estimate), with transient faults on
//! the way; a re-sync writes nothing; a wrong key type fails only its account,
//! with a message that says which key to use.

use chrono::{Duration, NaiveDate, Utc};
use tokentra_sync::simulator::{FaultPlan, SimHandle};
use tokentra_sync::store::ClickhouseClient;

use crate::support::{self, TestConfig};

const ORGS: [&str; 2] = ["org-1", "org-2"];

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Daily {
    day: String,
    model: String,
    unit: String,
    tokens: [i64; 5],
    quantity: String,
    cost: String,
    estimated_cost: String,
}

fn settle(rows: impl IntoIterator<Item = Daily>) -> Vec<Daily> {
    let mut out: Vec<Daily> = rows
        .into_iter()
        .filter(|r| r.tokens != [0; 5] || r.quantity != "0" || r.cost != "0" || r.estimated_cost != "0")
        .collect();
    out.sort();
    out
}

async fn stored(client: &ClickhouseClient, account: &str, since: &str, until: &str) -> Vec<Daily> {
    let tsv = support::query_tsv(
        client,
        &format!(
            "SELECT toString(day), model, unit, sum(input_tokens), sum(output_tokens), sum(cached_input_tokens), \
                    sum(cache_creation_tokens), sum(requests), toString(sum(quantity)), toString(sum(cost)), \
                    toString(sum(estimated_cost)) \
             FROM {{db}}.usage_daily \
             WHERE connection_id = '{account}' AND day >= toDate('{since}') AND day < toDate('{until}') \
             GROUP BY day, model, unit ORDER BY day, model, unit"
        ),
    )
    .await;
    settle(tsv.lines().map(|line| {
        let f: Vec<&str> = line.split('\t').collect();
        Daily {
            day: f[0].to_string(),
            model: f[1].to_string(),
            unit: f[2].to_string(),
            tokens: [3, 4, 5, 6, 7].map(|i| f[i].parse().unwrap()),
            quantity: support::canonical(f[8]),
            cost: support::canonical(f[9]),
            estimated_cost: support::canonical(f[10]),
        }
    }))
}

fn truth(sim: &SimHandle, provider: &str, org: &str, since: &str, until: &str) -> Vec<Daily> {
    let midnight = |d: &str| {
        NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_time(Default::default())
            .and_utc()
    };
    let rows = sim
        .truth_with(provider, org, midnight(since), midnight(until), &Default::default())
        .unwrap();
    settle(rows.into_iter().map(|r| Daily {
        day: r.day.to_string(),
        model: r.model,
        unit: r.unit,
        tokens: [
            r.input_tokens,
            r.output_tokens,
            r.cached_input_tokens,
            r.cache_creation_tokens,
            r.requests,
        ],
        quantity: support::canonical(&r.quantity.to_string()),
        cost: support::canonical(&r.cost.to_string()),
        estimated_cost: support::canonical(&r.estimated_cost.to_string()),
    }))
}

/// The binary's `sync` over `[since, until)`: exit status and stdout.
async fn run_cli_sync(config: &TestConfig, since: &str, until: &str) -> (Option<i32>, String, String) {
    let path = config.write();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tokentra-sync"))
        .args(["sync", "-c"])
        .arg(&path)
        .args(["--since", since, "--until", until])
        .env("TOKENTRA_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn window() -> (String, String) {
    let today = Utc::now().date_naive();
    ((today - Duration::days(7)).to_string(), today.to_string())
}

/// A LiteLLM account with small pages, so days are cut across pages.
fn litellm_account(sim: &SimHandle, org: &str) -> String {
    format!(
        "[[accounts]]\nid = \"litellm-{org}\"\nprovider = \"litellm\"\nbase_url = \"{base}\"\nbackfill_days = 7\n\
         page_size = 7\n[accounts.credentials]\napi_key = \"{key}\"\n\n",
        base = sim.litellm_base_url(org),
        key = tokentra_sync::simulator::litellm_api_key(org),
    )
}

#[actix_rt::test]
async fn providers_gateway_openrouter_and_litellm_match_truth_and_resyncs_write_nothing() {
    let sim = support::start_sim(31, 2).await;
    let mut accounts = support::sim_accounts(&sim, &ORGS, &["openrouter"]);
    for org in ORGS {
        accounts.push_str(&litellm_account(&sim, org));
    }
    let config = TestConfig::new("gateway", &accounts);
    let client = config.client();
    let (since, until) = window();

    // Transient faults on the way change nothing.
    sim.set_faults(FaultPlan {
        rate_limit: 1,
        server_error: 1,
        truncate: 0,
        retry_after_secs: Some(1),
        ..FaultPlan::default()
    });
    let (code, stdout, stderr) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(sim.pending_faults().rate_limit + sim.pending_faults().server_error, 0);
    for provider in ["openrouter", "litellm"] {
        for org in ORGS {
            let want = truth(&sim, provider, org, &since, &until);
            assert!(!want.is_empty(), "the simulator has data for {provider} {org}");
            let got = stored(&client, &format!("{provider}-{org}"), &since, &until).await;
            assert_eq!(got, want, "usage_daily differs from the truth for {provider} {org}");
        }
    }
    // Where the money went: OpenRouter's bill in cost, BYOK beside it;
    // LiteLLM's estimate never in cost.
    let money = |provider: &str| {
        format!(
            "SELECT toString(sum(cost)), toString(sum(estimated_cost)) FROM {{db}}.usage_daily \
             WHERE provider = '{provider}'"
        )
    };
    let openrouter = support::query_tsv(&client, &money("openrouter")).await;
    let (cost, byok) = openrouter.trim().split_once('\t').unwrap();
    assert!(
        support::canonical(cost) != "0" && support::canonical(byok) != "0",
        "{openrouter}"
    );
    let litellm = support::query_tsv(&client, &money("litellm")).await;
    let (cost, estimate) = litellm.trim().split_once('\t').unwrap();
    assert!(
        support::canonical(cost) == "0" && support::canonical(estimate) != "0",
        "{litellm}"
    );
    // LiteLLM's days really were cut across pages.
    let pages = sim
        .stats()
        .iter()
        .filter(|e| e.path.ends_with("/user/daily/activity") && e.status == 200)
        .map(|e| e.count)
        .sum::<u64>();
    assert!(pages > 4, "{pages} LiteLLM pages");

    // A re-sync writes nothing and changes nothing.
    let written = "SELECT sum(rows_written) + sum(rows_cancelled) FROM {db}.sync_runs";
    let rows_before = support::count(&client, "SELECT count() FROM {db}.usage_records").await;
    let written_before = support::count(&client, written).await;
    let (code, stdout, _) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(
        support::count(&client, "SELECT count() FROM {db}.usage_records").await,
        rows_before
    );
    assert_eq!(
        support::count(&client, written).await,
        written_before,
        "the re-sync wrote rows"
    );
    for org in ORGS {
        let got = stored(&client, &format!("openrouter-{org}"), &since, &until).await;
        assert_eq!(got, truth(&sim, "openrouter", org, &since, &until));
    }
    sim.stop().await;
}

#[actix_rt::test]
async fn providers_gateway_an_inference_key_fails_with_the_management_key_fix_and_others_sync() {
    let sim = support::start_sim(37, 1).await;
    let inference = tokentra_sync::simulator::openrouter_api_key("org-1");
    let mut accounts = format!(
        "[[accounts]]\nid = \"openrouter-wrong\"\nprovider = \"openrouter\"\nbase_url = \"{}\"\nbackfill_days = 3\n\
         [accounts.credentials]\napi_key = \"{inference}\"\n\n",
        sim.openrouter_base_url("org-1"),
    );
    accounts.push_str(&support::sim_accounts(&sim, &["org-1"], &["litellm"]));
    let config = TestConfig::new("gateway_auth", &accounts);
    let (since, until) = window();
    let (code, stdout, stderr) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let failed = stdout
        .lines()
        .find(|l| l.starts_with("openrouter-wrong"))
        .expect("a summary line");
    assert!(failed.contains("failed"), "{stdout}");
    assert!(
        stdout.contains("account 'openrouter-wrong'")
            && stdout.contains("management key")
            && stdout.contains("credentials.management_key"),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&inference) && !stderr.contains(&inference),
        "the key leaked"
    );
    let ok = stdout
        .lines()
        .find(|l| l.starts_with("litellm-org-1"))
        .expect("a summary line");
    assert!(ok.contains("success"), "{stdout}");
    let client = config.client();
    let runs = support::query_tsv(
        &client,
        "SELECT connection_id, status, error_kind FROM {db}.sync_runs ORDER BY connection_id LIMIT 1 BY connection_id",
    )
    .await;
    assert_eq!(
        runs.trim(),
        "litellm-org-1\tsuccess\t\nopenrouter-wrong\tfailed\tauth",
        "{runs}"
    );
    let got = stored(&client, "litellm-org-1", &since, &until).await;
    assert_eq!(got, truth(&sim, "litellm", "org-1", &since, &until));
    sim.stop().await;
}
