//! An OpenAI account's typed config, read purely from the account.

use crate::config::secret::Secret;
use crate::providers::platform::settings::SettingsReader;
use crate::providers::AccountView;

/// What an OpenAI account needs: one Admin key.
#[derive(Debug)]
pub struct OpenAiConfig {
    /// An Admin key (`sk-admin-...`); project keys cannot read usage.
    pub api_key: Secret,
}

impl OpenAiConfig {
    pub fn read(account: AccountView<'_>) -> Result<Self, Vec<String>> {
        let mut reader = SettingsReader::new(&account);
        let api_key = reader.credential("api_key");
        reader.require_prefix(
            "api_key",
            &api_key,
            &["sk-admin-"],
            "an OpenAI Admin key (sk-admin-...); project keys (sk-proj-...) and user keys cannot read organization usage",
            "create a read-only Admin key under Organization settings > Admin keys",
        );
        reader.finish(Self { api_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn view<'a>(creds: &'a BTreeMap<String, Secret>, settings: &'a BTreeMap<String, String>) -> AccountView<'a> {
        AccountView {
            id: "acme",
            base_url: "https://api.openai.com/v1",
            credentials: creds,
            settings,
        }
    }

    #[test]
    fn a_project_key_is_named_with_the_fix_and_never_printed_whole() {
        let key = "sk-proj-FAKE-TEST-0123456789abcdefghijklmnop";
        let creds = BTreeMap::from([("api_key".to_string(), Secret::new(key))]);
        let settings = BTreeMap::new();
        let problems = OpenAiConfig::read(view(&creds, &settings)).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("account 'acme'") && problems[0].contains("Admin key"),
            "{problems:?}"
        );
        assert!(!problems[0].contains(key));
        let creds = BTreeMap::from([("api_key".to_string(), Secret::new("sk-admin-FAKE-TEST-0123456789"))]);
        assert!(OpenAiConfig::read(view(&creds, &settings)).is_ok());
    }
}
