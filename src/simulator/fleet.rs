//! A fleet of simulated accounts for benchmarks and fault-mix runs: one
//! account per org, providers taken round-robin, and a deterministic share of
//! accounts broken in different ways (a wrong key, or an [`OrgFault`]), so
//! the daemon's behaviour with many accounts, some failing, can be measured.

use std::collections::HashMap;

use super::faults::OrgFault;
use super::{account_toml, AccountOptions};

/// How one account of the fleet is broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Breakage {
    /// Configured with credentials the simulator refuses (401).
    BadKey,
    /// Its org fails every request this way.
    Org(OrgFault),
}

impl Breakage {
    /// The kinds a fleet rotates through, in order.
    pub const ROTATION: [Breakage; 4] = [
        Breakage::BadKey,
        Breakage::Org(OrgFault::ServerError),
        Breakage::Org(OrgFault::Hang),
        Breakage::Org(OrgFault::Malformed),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Breakage::BadKey => "bad_key",
            Breakage::Org(OrgFault::ServerError) => "server_error",
            Breakage::Org(OrgFault::Hang) => "hang",
            Breakage::Org(OrgFault::Malformed) => "malformed",
        }
    }
}

/// One account of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetAccount {
    pub id: String,
    pub provider: &'static str,
    pub org: String,
    pub breakage: Option<Breakage>,
}

/// `accounts` accounts on `org-1 ..= org-{accounts}`, providers round-robin
/// over `providers`, and `broken_percent`% of them broken: account `i` is
/// broken when `floor((i+1)·p/100) > floor(i·p/100)`, which spreads them
/// evenly and breaks exactly `floor(accounts·p/100)`, each the next kind of
/// [`Breakage::ROTATION`].
pub fn fleet(accounts: u32, providers: &[&'static str], broken_percent: u32) -> Vec<FleetAccount> {
    let p = u64::from(broken_percent.min(100));
    let mut broken = 0usize;
    (0..u64::from(accounts))
        .map(|i| {
            let provider = providers[(i as usize) % providers.len().max(1)];
            let org = format!("org-{}", i + 1);
            let breakage = ((i + 1) * p / 100 > i * p / 100).then(|| {
                let kind = Breakage::ROTATION[broken % Breakage::ROTATION.len()];
                broken += 1;
                kind
            });
            FleetAccount {
                id: format!("{provider}-{org}"),
                provider,
                org,
                breakage,
            }
        })
        .collect()
}

/// The `[[accounts]]` blocks of the fleet against the simulator at `root`,
/// each with `extra` lines.
pub fn fleet_toml(fleet: &[FleetAccount], root: &str, extra: &str) -> Result<String, String> {
    let mut out = String::new();
    for account in fleet {
        let options = AccountOptions {
            extra,
            wrong_credentials: account.breakage == Some(Breakage::BadKey),
        };
        out.push_str(&account_toml(
            root,
            account.provider,
            &account.org,
            &account.id,
            &options,
        )?);
    }
    Ok(out)
}

/// The org faults the simulator must serve for the fleet.
pub fn fleet_org_faults(fleet: &[FleetAccount]) -> HashMap<String, OrgFault> {
    fleet
        .iter()
        .filter_map(|a| match a.breakage {
            Some(Breakage::Org(fault)) => Some((a.org.clone(), fault)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_percent_of_forty_breaks_four_accounts_one_of_each_kind() {
        let accounts = fleet(40, &["openai", "anthropic"], 10);
        let broken: Vec<_> = accounts.iter().filter_map(|a| a.breakage).collect();
        assert_eq!(broken, Breakage::ROTATION.to_vec());
        assert_eq!(accounts[9].breakage, Some(Breakage::BadKey));
        assert_eq!(accounts[1].provider, "anthropic");
        assert_eq!(accounts[1].id, "anthropic-org-2");
        assert_eq!(fleet_org_faults(&accounts).len(), 3);
    }

    #[test]
    fn a_thousand_at_ten_percent_breaks_exactly_a_hundred() {
        let accounts = fleet(1_000, &["openai"], 10);
        assert_eq!(accounts.iter().filter(|a| a.breakage.is_some()).count(), 100);
        assert!(fleet(1_000, &["openai"], 0).iter().all(|a| a.breakage.is_none()));
    }

    #[test]
    fn bad_key_accounts_get_credentials_the_simulator_refuses() {
        let accounts = fleet(10, &["openai"], 10);
        let toml = fleet_toml(&accounts, "http://127.0.0.1:1", "interval = \"5m\"").unwrap();
        assert!(toml.contains("api_key = \"sk-admin-FAKE-sim-org-10WRONG\""), "{toml}");
        assert!(toml.contains("api_key = \"sk-admin-FAKE-sim-org-9\"\n"), "{toml}");
        assert_eq!(toml.matches("interval = \"5m\"").count(), 10);
    }
}
