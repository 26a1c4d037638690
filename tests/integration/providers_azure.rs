//! Azure OpenAI end to end: simulated tenants (Entra ID login, Cost
//! Management query with nextLink paging, account and deployment listings,
//! Azure Monitor metrics) -> one-shot `sync` (the real binary) ->
//! ClickHouse -> `usage_daily`, compared with the simulator's truth to the
//! last decimal: tokens, USD cost (one org bills in EUR), credits and net
//! cost; a restated day; a re-sync that writes nothing; an expired token
//! refreshed once; wrong credentials that fail only their account, naming
//! the fix.

use std::str::FromStr;

use chrono::{Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use tokentra_sync::simulator::{azure_credentials, FaultPlan, SimHandle};
use tokentra_sync::store::ClickhouseClient;

use crate::support::{self, TestConfig};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Daily {
    day: String,
    model: String,
    input: i64,
    output: i64,
    cost: Decimal,
    credits: Decimal,
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("decimal").normalize()
}

/// An `[[accounts]]` block for `org`'s simulated service principal;
/// `secret` overrides the client secret. org-1 asks for 5-row cost pages, so
/// its cost query is paged; the others for the default (one page).
fn azure_account(sim: &SimHandle, id: &str, org: &str, secret: Option<&str>) -> String {
    let c = azure_credentials(org);
    let base = sim.provider_base_url("azure", org).expect("the simulator serves azure");
    let page_size = if org == "org-1" { "cost_page_size = 5\n" } else { "" };
    format!(
        "[[accounts]]\nid = \"{id}\"\nprovider = \"azure_openai\"\nbase_url = \"{base}\"\nlogin_url = \"{base}/login\"\n\
         {page_size}backfill_days = 7\n[accounts.credentials]\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
         subscription_id = \"{}\"\n\n",
        c.tenant_id,
        c.client_id,
        secret.unwrap_or(&c.client_secret),
        c.subscription_id,
    )
}

async fn stored(client: &ClickhouseClient, account: &str, since: &str, until: &str) -> Vec<Daily> {
    let tsv = support::query_tsv(
        client,
        &format!(
            "SELECT toString(day), model, sum(input_tokens), sum(output_tokens), toString(sum(cost)), \
                    toString(sum(credits)) \
             FROM {{db}}.usage_daily \
             WHERE connection_id = '{account}' AND day >= toDate('{since}') AND day < toDate('{until}') \
             GROUP BY day, model ORDER BY day, model"
        ),
    )
    .await;
    let mut rows: Vec<Daily> = tsv
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Daily {
                day: f[0].to_string(),
                model: f[1].to_string(),
                input: f[2].parse().unwrap(),
                output: f[3].parse().unwrap(),
                cost: dec(f[4]),
                credits: dec(f[5]),
            }
        })
        .filter(|d| d.input != 0 || d.output != 0 || !d.cost.is_zero() || !d.credits.is_zero())
        .collect();
    rows.sort();
    rows
}

fn truth(sim: &SimHandle, org: &str, since: &str, until: &str) -> Vec<Daily> {
    let midnight = |d: &str| {
        NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_time(Default::default())
            .and_utc()
    };
    let mut rows: Vec<Daily> = sim
        .truth_with("azure", org, midnight(since), midnight(until), &Default::default())
        .unwrap()
        .into_iter()
        .map(|r| Daily {
            day: r.day.to_string(),
            model: r.model,
            input: r.input_tokens,
            output: r.output_tokens,
            cost: r.cost.normalize(),
            credits: r.credits.normalize(),
        })
        .collect();
    rows.sort();
    rows
}

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

fn requests(sim: &SimHandle, ends_with: &str, status: u16) -> u64 {
    sim.stats()
        .iter()
        .filter(|e| e.path.ends_with(ends_with) && e.status == status)
        .map(|e| e.count)
        .sum()
}

#[actix_rt::test]
async fn providers_azure_cost_tokens_credits_and_a_restated_day_match_truth_and_resyncs_write_nothing() {
    let sim = support::start_sim(41, 2).await;
    let accounts = ["org-1", "org-2"]
        .iter()
        .map(|org| azure_account(&sim, &format!("azure-{org}"), org, None))
        .collect::<String>();
    let config = TestConfig::new("azure", &accounts);
    let client = config.client();
    let (since, until) = window();

    // Transient faults on the way (a 429 with Retry-After, a 500) change nothing.
    sim.set_faults(FaultPlan {
        rate_limit: 1,
        server_error: 1,
        retry_after_secs: Some(1),
        ..FaultPlan::default()
    });
    let (code, stdout, stderr) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        sim.pending_faults(),
        FaultPlan {
            retry_after_secs: Some(1),
            ..FaultPlan::default()
        }
    );
    assert_eq!(sim.too_early(), 0, "a request came before its Retry-After");
    for org in ["org-1", "org-2"] {
        let want = truth(&sim, org, &since, &until);
        assert!(
            want.iter().any(|r| r.input > 0) && want.iter().any(|r| !r.credits.is_zero()),
            "{want:?}"
        );
        let got = stored(&client, &format!("azure-{org}"), &since, &until).await;
        assert_eq!(got, want, "usage_daily differs from the truth for {org}");
        // Net cost after credits, exactly.
        let net = support::query_tsv(
            &client,
            &format!(
                "SELECT toString(sum(cost) - sum(credits)) FROM {{db}}.usage_daily \
                 WHERE connection_id = 'azure-{org}' AND day >= toDate('{since}') AND day < toDate('{until}')"
            ),
        )
        .await;
        let want_net: Decimal = want.iter().map(|r| r.cost - r.credits).sum();
        assert_eq!(dec(net.trim()), want_net.normalize(), "net cost of {org}");
    }
    // org-2 bills in EUR: the original amounts are kept beside the USD cost.
    let eur = support::query_tsv(
        &client,
        "SELECT currency, toString(sum(cost)), toString(sum(amount_original)) FROM {db}.usage_records \
         WHERE connection_id = 'azure-org-2' AND record_type = 'cost' GROUP BY currency",
    )
    .await;
    let f: Vec<&str> = eur.trim().split('\t').collect();
    assert_eq!(f[0], "EUR", "{eur}");
    assert_ne!(dec(f[1]), dec(f[2]), "USD cost and the EUR amount differ: {eur}");
    // org-1's cost query really was paged (nextLink POSTed, `$top` kept), as
    // were the listings.
    assert!(requests(&sim, "/Microsoft.CostManagement/query", 200) > 4);
    assert!(requests(&sim, "/Microsoft.CognitiveServices/accounts", 200) >= 4);

    // A re-sync writes nothing.
    let written = "SELECT sum(rows_written) + sum(rows_cancelled) FROM {db}.sync_runs";
    let records = "SELECT count() FROM {db}.usage_records";
    let (records_before, written_before) = (
        support::count(&client, records).await,
        support::count(&client, written).await,
    );
    let (code, stdout, _) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(support::count(&client, records).await, records_before);
    assert_eq!(
        support::count(&client, written).await,
        written_before,
        "the re-sync wrote rows"
    );

    // A restated day: tokens and cost both change; the next sync follows exactly.
    let day = (Utc::now().date_naive() - Duration::days(3)).to_string();
    let before = stored(&client, "azure-org-1", &day, &until).await;
    support::restate(&sim, "azure", "org-1", &day, "1.5").await;
    let (code, stdout, _) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(0), "{stdout}");
    let after = stored(&client, "azure-org-1", &since, &until).await;
    assert_eq!(after, truth(&sim, "org-1", &since, &until));
    assert_ne!(
        stored(&client, "azure-org-1", &day, &until).await,
        before,
        "the restatement changed nothing"
    );
    assert!(support::count(&client, written).await > written_before);
    sim.stop().await;
}

#[actix_rt::test]
async fn providers_azure_an_expired_token_is_refreshed_once_and_wrong_credentials_name_the_fix() {
    let sim = support::start_sim(43, 4).await;
    let stale = format!("{}-STALE", azure_credentials("org-1").client_secret);
    let api_key = "FAKEaoaiKey0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab";
    let nocost = format!("{}-NOCOST", azure_credentials("org-3").client_secret);
    let accounts = [
        azure_account(&sim, "azure-stale", "org-1", Some(&stale)),
        azure_account(&sim, "azure-apikey", "org-2", Some(api_key)),
        azure_account(&sim, "azure-nocost", "org-3", Some(&nocost)),
        azure_account(&sim, "azure-ok", "org-4", None),
    ]
    .concat();
    let config = TestConfig::new("azure_auth", &accounts);
    let (since, until) = window();
    let (code, stdout, stderr) = run_cli_sync(&config, &since, &until).await;
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let line = |id: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id}: {stdout}"))
            .to_string()
    };

    // The expired token: ARM's 401, one new token, the sync completes.
    assert!(line("azure-stale").contains("success"), "{stdout}");
    let logins = sim
        .stats()
        .iter()
        .filter(|e| e.path.starts_with("/azure/org-1/login/") && e.status == 200)
        .map(|e| e.count)
        .sum::<u64>();
    assert_eq!(logins, 2, "exactly one refresh after the expired token");
    let expired = sim
        .stats()
        .iter()
        .filter(|e| e.path.starts_with("/azure/org-1/subscriptions/") && e.status == 401)
        .map(|e| e.count)
        .sum::<u64>();
    assert!(expired >= 1, "ARM refused the stale token");
    let client = config.client();
    assert_eq!(
        stored(&client, "azure-stale", &since, &until).await,
        truth(&sim, "org-1", &since, &until)
    );

    // An Azure OpenAI API key where the client secret belongs.
    assert!(line("azure-apikey").contains("failed"), "{stdout}");
    assert!(
        stdout.contains("account 'azure-apikey'")
            && stdout.contains("client secret's Value")
            && stdout.contains("AADSTS7000215"),
        "{stdout}"
    );
    // A principal without Cost Management Reader.
    assert!(line("azure-nocost").contains("failed"), "{stdout}");
    assert!(
        stdout.contains("account 'azure-nocost'") && stdout.contains("Cost Management Reader"),
        "{stdout}"
    );
    for secret in [api_key, stale.as_str(), nocost.as_str()] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "a secret leaked");
    }
    // The other account keeps syncing.
    assert!(line("azure-ok").contains("success"), "{stdout}");
    assert_eq!(
        stored(&client, "azure-ok", &since, &until).await,
        truth(&sim, "org-4", &since, &until)
    );
    let runs = support::query_tsv(
        &client,
        "SELECT connection_id, status, error_kind FROM {db}.sync_runs ORDER BY connection_id LIMIT 1 BY connection_id",
    )
    .await;
    assert_eq!(
        runs.trim_end_matches('\n'),
        "azure-apikey\tfailed\tauth\nazure-nocost\tfailed\tauth\nazure-ok\tsuccess\t\nazure-stale\tsuccess\t",
        "{runs}"
    );
    sim.stop().await;
}
