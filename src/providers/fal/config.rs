//! A fal.ai account's typed config, read purely from the account.

use crate::config::secret::Secret;
use crate::providers::platform::settings::SettingsReader;
use crate::providers::AccountView;

/// What a fal.ai account needs: one ADMIN-scoped key.
#[derive(Debug)]
pub struct FalConfig {
    /// An ADMIN-scoped key (`<key id>:<key secret>`), sent as `Key <key>`.
    pub api_key: Secret,
}

/// How a fal key is fixed when it is not the bare ADMIN key.
pub(super) const WHERE_TO_GET: &str = "create a key with the ADMIN scope in the fal dashboard under \
     Settings > API Keys (scope: ADMIN) and put the bare key (key_id:key_secret) in credentials.api_key";

impl FalConfig {
    pub fn read(account: AccountView<'_>) -> Result<Self, Vec<String>> {
        let mut reader = SettingsReader::new(&account);
        let api_key = reader.credential("api_key");
        let text = api_key.expose().trim();
        // fal keys carry no scope marker, so an API-scope key can only be
        // told apart by the 401/403 (see AUTH_HINT). What the format does
        // tell: a pasted header value, which would be sent as `Key Key ...`.
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("key ") || lower.starts_with("bearer ") {
            reader.problems.push(format!(
                "account '{}': credentials.api_key ({}) includes an HTTP auth scheme; fal.ai needs the bare ADMIN \
                 key (the `Key ` prefix is added by tokentra-sync); {WHERE_TO_GET}",
                account.id,
                api_key.hint()
            ));
        } else if !text.is_empty() && !text.contains(':') {
            reader.problems.push(format!(
                "account '{}': credentials.api_key ({}) is not a fal.ai key (fal keys are key_id:key_secret); \
                 {WHERE_TO_GET}",
                account.id,
                api_key.hint()
            ));
        }
        reader.finish(Self { api_key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn read(key: &str) -> Result<FalConfig, Vec<String>> {
        let creds = BTreeMap::from([("api_key".to_string(), Secret::new(key))]);
        let settings = BTreeMap::new();
        FalConfig::read(AccountView {
            id: "fal-acme",
            base_url: "https://api.fal.ai/v1",
            credentials: &creds,
            settings: &settings,
        })
    }

    #[test]
    fn a_pasted_header_or_a_foreign_key_is_named_with_the_fix_and_never_printed() {
        let key = "Key FAKE-TEST-1234:abcdefabcdefabcdef";
        let problems = read(key).unwrap_err();
        assert!(
            problems[0].contains("fal-acme") && problems[0].contains("ADMIN"),
            "{problems:?}"
        );
        assert!(!problems[0].contains("abcdefabcdefabcdef"));
        let problems = read("sk-admin-FAKE-TEST-0123456789").unwrap_err();
        assert!(problems[0].contains("key_id:key_secret"), "{problems:?}");
        assert!(read("FAKE-TEST-1234:abcdefabcdefabcdef").is_ok());
        assert!(read("").unwrap_err()[0].contains("missing or empty"));
    }
}
