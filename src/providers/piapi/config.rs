//! A PiAPI account's typed config, read purely from the account.

use crate::config::secret::Secret;
use crate::providers::platform::settings::SettingsReader;
use crate::providers::AccountView;

/// What a PiAPI account needs: its API key and which environment it is.
#[derive(Debug)]
pub struct PiApiConfig {
    /// The account's API key, sent as `x-api-key`.
    pub api_key: Secret,
    /// A label for the account's environment (`production` by default),
    /// kept in `attributes`; PiAPI documents no request parameter for it.
    pub environment: String,
}

pub(super) const WHERE_TO_GET: &str = "copy the API key of the PiAPI account from the PiAPI workspace \
     (piapi.ai > Workspace > API Keys) into credentials.api_key (the bare key, no header name)";

impl PiApiConfig {
    pub fn read(account: AccountView<'_>) -> Result<Self, Vec<String>> {
        let mut reader = SettingsReader::new(&account);
        let api_key = reader.credential("api_key");
        let text = api_key.expose().trim().to_ascii_lowercase();
        if text.starts_with("bearer ") || text.starts_with("x-api-key") {
            reader.problems.push(format!(
                "account '{}': credentials.api_key ({}) includes a header name or scheme; {WHERE_TO_GET}",
                account.id,
                api_key.hint()
            ));
        }
        let environment = reader.string("environment").unwrap_or_else(|| "production".into());
        let environment = environment.trim().to_string();
        if environment.is_empty()
            || environment.len() > 64
            || !environment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            reader.problems.push(format!(
                "account '{}': environment = '{environment}' must be 1-64 letters, digits, '-', '_' or '.' \
                 (e.g. production)",
                account.id
            ));
        }
        reader.finish(Self { api_key, environment })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn read(key: &str, env: Option<&str>) -> Result<PiApiConfig, Vec<String>> {
        let creds = BTreeMap::from([("api_key".to_string(), Secret::new(key))]);
        let settings: BTreeMap<String, String> = env
            .map(|e| BTreeMap::from([("environment".to_string(), e.to_string())]))
            .unwrap_or_default();
        PiApiConfig::read(AccountView {
            id: "piapi-acme",
            base_url: "https://api.piapi.ai",
            credentials: &creds,
            settings: &settings,
        })
    }

    #[test]
    fn environment_defaults_and_is_checked_and_pasted_headers_are_named() {
        let key = "FAKE-TEST-0123456789abcdef0123";
        assert_eq!(read(key, None).unwrap().environment, "production");
        assert_eq!(read(key, Some("staging")).unwrap().environment, "staging");
        assert!(read(key, Some("a b"))
            .unwrap_err()
            .iter()
            .any(|p| p.contains("environment")));
        let problems = read("Bearer FAKE-TEST-0123456789abcdef0123", None).unwrap_err();
        assert!(problems[0].contains("Workspace > API Keys"), "{problems:?}");
        assert!(!problems[0].contains("0123456789abcdef0123"));
    }
}
