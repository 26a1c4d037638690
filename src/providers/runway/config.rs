//! A Runway account's typed config, read purely from the account.

use rust_decimal::Decimal;

use crate::config::secret::Secret;
use crate::providers::platform::settings::SettingsReader;
use crate::providers::AccountView;

/// What a Runway account needs: an API secret and the price of a credit.
#[derive(Debug)]
pub struct RunwayConfig {
    /// An API secret of the organization (developer portal), sent as Bearer.
    pub api_key: Secret,
    /// USD per Runway credit: the price the organization buys credits at.
    pub usd_per_credit: Decimal,
}

pub(super) const WHERE_TO_GET: &str = "create an API secret in the Runway developer portal \
     (dev.runwayml.com > your organization > API Keys) and put the bare secret in credentials.api_key";

impl RunwayConfig {
    pub fn read(account: AccountView<'_>) -> Result<Self, Vec<String>> {
        let mut reader = SettingsReader::new(&account);
        let api_key = reader.credential("api_key");
        if api_key.expose().trim().to_ascii_lowercase().starts_with("bearer ") {
            reader.problems.push(format!(
                "account '{}': credentials.api_key ({}) includes the `Bearer ` scheme; {WHERE_TO_GET}",
                account.id,
                api_key.hint()
            ));
        }
        // Exact: read from the setting's text, never through f64. Bounded so a
        // typo (1 instead of 0.01) cannot inflate every bill a hundredfold
        // unnoticed: Runway's API credits have been sold at $0.01.
        let usd_per_credit = reader.number(
            "usd_per_credit",
            Decimal::new(1, 2),
            Decimal::new(1, 4),
            Decimal::new(1, 0),
        );
        reader.finish(Self {
            api_key,
            usd_per_credit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn read(key: &str, settings: &[(&str, &str)]) -> Result<RunwayConfig, Vec<String>> {
        let creds = BTreeMap::from([("api_key".to_string(), Secret::new(key))]);
        let settings: BTreeMap<String, String> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        RunwayConfig::read(AccountView {
            id: "runway-acme",
            base_url: "https://api.dev.runwayml.com",
            credentials: &creds,
            settings: &settings,
        })
    }

    #[test]
    fn the_credit_price_is_exact_defaulted_and_bounded() {
        let key = "key_FAKE_TEST_0123456789abcdef";
        assert_eq!(read(key, &[]).unwrap().usd_per_credit.to_string(), "0.01");
        let exact = read(key, &[("usd_per_credit", "0.0095")]).unwrap();
        assert_eq!(exact.usd_per_credit.to_string(), "0.0095");
        let problems = read(key, &[("usd_per_credit", "5")]).unwrap_err();
        assert!(
            problems[0].contains("usd_per_credit") && problems[0].contains("out of range"),
            "{problems:?}"
        );
        assert!(read(key, &[("usd_per_credit", "cheap")]).is_err());
        let problems = read("Bearer key_FAKE_TEST_0123456789abcdef", &[]).unwrap_err();
        assert!(problems[0].contains("dev.runwayml.com"), "{problems:?}");
        assert!(!problems[0].contains("0123456789abcdef"));
    }
}
