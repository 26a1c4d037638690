//! An Anthropic account's typed config, read purely from the account.

use crate::config::secret::Secret;
use crate::providers::platform::settings::SettingsReader;
use crate::providers::AccountView;

/// Which Admin API endpoints an account reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ApiMode {
    /// `usage_report/messages` + `cost_report` (the default while the
    /// analytics API is in beta).
    #[default]
    Legacy,
    /// The beta Usage and Cost Analytics API (`analytics/usage`,
    /// `analytics/cost`): adds request counts and list prices.
    Analytics,
}

/// What an Anthropic account needs.
#[derive(Debug)]
pub struct AnthropicConfig {
    /// An Admin API key (`sk-ant-admin01-...`), or another key that is not
    /// tied to a workspace; workspace keys are refused by the API.
    pub api_key: Secret,
    pub mode: ApiMode,
    /// `allocate_cost = true`: share each cost row out to the API keys (and,
    /// for server tools, models) of its day's usage (`crate::allocate`).
    /// Off by default: see docs/DESIGN.md, "Cost allocation".
    pub allocate_cost: bool,
}

impl AnthropicConfig {
    pub fn read(account: AccountView<'_>) -> Result<Self, Vec<String>> {
        let mut reader = SettingsReader::new(&account);
        let api_key = reader.credential("api_key");
        let mode = match reader.choice("api", "legacy", &["legacy", "analytics"]) {
            "analytics" => ApiMode::Analytics,
            _ => ApiMode::Legacy,
        };
        let allocate_cost = reader.choice("allocate_cost", "false", &["true", "false"]) == "true";
        reader.finish(Self {
            api_key,
            mode,
            allocate_cost,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn api_mode_defaults_to_legacy_and_rejects_unknown_values() {
        let creds = BTreeMap::from([("api_key".to_string(), Secret::new("sk-ant-admin01-FAKE-TEST"))]);
        let read = |api: Option<&str>| {
            let settings: BTreeMap<String, String> =
                api.map(|v| ("api".to_string(), v.to_string())).into_iter().collect();
            AnthropicConfig::read(AccountView {
                id: "acme",
                base_url: "https://api.anthropic.com",
                credentials: &creds,
                settings: &settings,
            })
        };
        assert_eq!(read(None).unwrap().mode, ApiMode::Legacy);
        assert!(!read(None).unwrap().allocate_cost, "allocation is opt-in");
        assert_eq!(read(Some("analytics")).unwrap().mode, ApiMode::Analytics);
        let problems = read(Some("v2")).unwrap_err();
        assert!(
            problems[0].contains("api = 'v2'") && problems[0].contains("legacy, analytics"),
            "{problems:?}"
        );
    }
}

#[cfg(test)]
mod allocate_cost_tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn allocate_cost_is_a_boolean() {
        let creds = BTreeMap::from([("api_key".to_string(), Secret::new("sk-ant-admin01-FAKE-TEST"))]);
        let read = |value: &str| {
            let settings = BTreeMap::from([("allocate_cost".to_string(), value.to_string())]);
            AnthropicConfig::read(AccountView {
                id: "acme",
                base_url: "https://api.anthropic.com",
                credentials: &creds,
                settings: &settings,
            })
        };
        assert!(read("true").unwrap().allocate_cost);
        assert!(!read("false").unwrap().allocate_cost);
        let problems = read("yes").unwrap_err();
        assert!(
            problems[0].contains("account 'acme'") && problems[0].contains("allocate_cost = 'yes'"),
            "{problems:?}"
        );
    }
}
