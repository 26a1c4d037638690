//! Many accounts, a tenth of them broken four different ways (a bad key,
//! 500s on every request, hanging responses, malformed pages): every healthy
//! account must sync, and every broken one must show the status and typed
//! error that tells its owner what is wrong, without storing anything. The
//! 1,000-account run with timings is `scripts/scale-bench.sh` (BENCHMARKS.md).

use std::collections::BTreeMap;
use std::time::Duration;

use tokentra_sync::simulator::fleet::{fleet, fleet_org_faults, fleet_toml, Breakage};
use tokentra_sync::simulator::OrgFault;

use crate::daemon::{start_daemon_with, stop_with_sigterm};
use crate::support::{self, eventually, query_tsv};

#[actix_rt::test]
async fn a_tenth_of_the_accounts_broken_four_ways_leaves_every_healthy_account_synced() {
    const ACCOUNTS: u32 = 40;
    let sim = support::start_sim(17, ACCOUNTS).await;
    let accounts = fleet(ACCOUNTS, &tokentra_sync::simulator::provider_names(), 10);
    sim.set_org_faults(fleet_org_faults(&accounts));
    let toml = fleet_toml(&accounts, &sim.base_url(), "backfill_days = 2").unwrap();
    // Short request timeouts and deadline so the hanging account fails in
    // seconds; the rest of the config is the test default.
    let (config, _port, child) = start_daemon_with(
        "fault_mix",
        &toml,
        "[sync]\nrequest_timeout = \"2s\"\nendpoint_deadline = \"60s\"\n",
    );
    let client = config.client();

    // The latest run of every account, once each has finished one.
    let latest = eventually("a finished sync of every account", Duration::from_secs(180), || {
        let client = client.clone();
        async move {
            // The daemon creates the tables as it starts (this column last).
            support::try_count(
                &client,
                "SELECT count() FROM {db}.sync_runs WHERE connection_status = ''",
            )
            .await?;
            let tsv = query_tsv(
                &client,
                "SELECT connection_id, argMax(status, finished_at), argMax(error_kind, finished_at), \
                 argMax(connection_status, finished_at) FROM {db}.sync_runs \
                 WHERE status IN ('success', 'failed') GROUP BY connection_id",
            )
            .await;
            let runs: BTreeMap<String, (String, String, String)> = tsv
                .lines()
                .filter_map(|line| {
                    let f: Vec<&str> = line.split('\t').collect();
                    (f.len() == 4).then(|| (f[0].to_string(), (f[1].to_string(), f[2].to_string(), f[3].to_string())))
                })
                .collect();
            (runs.len() == ACCOUNTS as usize).then_some(runs)
        }
    })
    .await;

    let mut healthy = 0;
    for account in &accounts {
        let (status, kind, connection) = &latest[&account.id];
        let expected = match account.breakage {
            None => ("success", "", "connected"),
            Some(Breakage::BadKey) => ("failed", "auth", "disconnected"),
            Some(Breakage::Org(OrgFault::ServerError)) => ("failed", "provider_5xx", "error"),
            Some(Breakage::Org(OrgFault::Hang)) => ("failed", "timeout", "error"),
            Some(Breakage::Org(OrgFault::Malformed)) => ("failed", "malformed", "error"),
        };
        assert_eq!(
            (status.as_str(), kind.as_str(), connection.as_str()),
            expected,
            "{} ({:?})",
            account.id,
            account.breakage
        );
        healthy += usize::from(account.breakage.is_none());
    }
    assert_eq!(healthy, 36);

    // Healthy accounts stored their usage; broken ones stored nothing and
    // recorded no window as done.
    let stored = query_tsv(
        &client,
        "SELECT DISTINCT connection_id FROM {db}.usage_records ORDER BY connection_id",
    )
    .await;
    let stored: Vec<&str> = stored.lines().collect();
    let mut expected: Vec<&str> = accounts
        .iter()
        .filter(|a| a.breakage.is_none())
        .map(|a| a.id.as_str())
        .collect();
    expected.sort_unstable();
    assert_eq!(stored, expected);
    let done = query_tsv(&client, "SELECT DISTINCT connection_id FROM {db}.sync_state").await;
    for account in accounts.iter().filter(|a| a.breakage.is_some()) {
        assert!(
            !done.lines().any(|id| id == account.id),
            "{} recorded a window as done",
            account.id
        );
    }
    stop_with_sigterm(child).await;
}
