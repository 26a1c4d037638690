//! An OpenRouter account's typed config, read purely from the account.
//!
//! Which key each endpoint needs (OpenRouter's OpenAPI document): `/activity`,
//! `/credits`, `/keys*` and `/analytics/*` need a **management key** (formerly
//! "provisioning key"); `/key` works with any key and only describes that key.
//! Daily usage and cost come only from `/activity`, so syncing needs a
//! management key: `credentials.management_key`, or a management key given
//! as `credentials.api_key`. An inference key alone is accepted by
//! `check-config` (it cannot be told apart by its prefix: both are
//! `sk-or-v1-...`), and the first sync then fails with an auth error that says
//! to add the management key.

use serde_json::Value;

use crate::config::secret::Secret;
use crate::providers::platform::settings::SettingsReader;
use crate::providers::AccountView;

/// Where management keys are created.
pub const MANAGEMENT_KEYS_URL: &str = "https://openrouter.ai/settings/management-keys";

/// What an OpenRouter account has.
#[derive(Debug)]
pub struct OpenRouterConfig {
    /// The API key (`sk-or-v1-...`): an inference key, or a management key.
    pub api_key: Secret,
    /// The management key, when one was given (`management_key`, or
    /// `provisioningKey` in the pasted JSON form of `api_key`).
    pub management_key: Option<Secret>,
}

impl OpenRouterConfig {
    /// The key `/activity` is called with: the management key when there is
    /// one, else the API key (which then must itself be a management key).
    pub fn activity_key(&self) -> &Secret {
        self.management_key.as_ref().unwrap_or(&self.api_key)
    }

    pub fn read(account: AccountView<'_>) -> Result<Self, Vec<String>> {
        let mut reader = SettingsReader::new(&account);
        let raw = reader.credential("api_key");
        let mut management_key = reader.optional_credential("management_key");
        let api_key = if raw.expose().trim_start().starts_with('{') {
            match pasted(raw.expose()) {
                Ok((api, provisioning)) => {
                    if let Some(p) = provisioning {
                        match &management_key {
                            Some(m) if m.expose() != p.expose() => reader.problems.push(format!(
                                "account '{}': credentials.api_key (pasted JSON) has a provisioningKey that differs \
                                 from credentials.management_key; keep one of them",
                                account.id
                            )),
                            _ => management_key = Some(p),
                        }
                    }
                    api
                }
                Err(problem) => {
                    // The problem names JSON fields only, never a value.
                    reader.problems.push(format!(
                        "account '{}': credentials.api_key looks like pasted JSON but {problem}; \
                         use {{\"apiKey\": \"sk-or-v1-...\", \"provisioningKey\": \"sk-or-v1-...\"}} or the bare key",
                        account.id
                    ));
                    Secret::new("")
                }
            }
        } else {
            raw
        };
        let what = "an OpenRouter key (sk-or-v1-...)";
        let fix = format!(
            "create a management key at {MANAGEMENT_KEYS_URL} (it unlocks /activity, the daily usage and cost)"
        );
        reader.require_prefix("api_key", &api_key, &["sk-or-"], what, &fix);
        if let Some(m) = &management_key {
            reader.require_prefix("management_key", m, &["sk-or-"], what, &fix);
        }
        reader.finish(Self {
            api_key,
            management_key,
        })
    }
}

/// The JSON object users paste: `{"apiKey": "...", "provisioningKey": "..."}`
/// (`managementKey` is read too). Errors name fields, never values.
fn pasted(text: &str) -> Result<(Secret, Option<Secret>), String> {
    let value: Value = serde_json::from_str(text).map_err(|_| "it is not valid JSON".to_string())?;
    let obj = value.as_object().ok_or("it is not a JSON object")?;
    let field = |name: &str| -> Result<Option<Secret>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(Secret::new(s.trim()))),
            Some(_) => Err(format!("field '{name}' is not a non-empty string")),
        }
    };
    let api = field("apiKey")?.ok_or("field 'apiKey' is missing")?;
    let provisioning = match field("provisioningKey")? {
        Some(p) => Some(p),
        None => field("managementKey")?,
    };
    Ok((api, provisioning))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const API: &str = "sk-or-v1-FAKE-TEST-api-0123456789abcdef";
    const MGMT: &str = "sk-or-v1-FAKE-TEST-mgmt-0123456789abcdef";

    fn read(creds: &[(&str, &str)]) -> Result<OpenRouterConfig, Vec<String>> {
        let creds: BTreeMap<String, Secret> = creds.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect();
        let settings = BTreeMap::new();
        OpenRouterConfig::read(AccountView {
            id: "router",
            base_url: "https://openrouter.ai/api/v1",
            credentials: &creds,
            settings: &settings,
        })
    }

    #[test]
    fn openrouter_bare_keys_and_which_key_activity_uses() {
        let c = read(&[("api_key", API)]).unwrap();
        assert_eq!(c.activity_key().expose(), API, "a management key given as api_key");
        let c = read(&[("api_key", API), ("management_key", MGMT)]).unwrap();
        assert_eq!(c.api_key.expose(), API);
        assert_eq!(c.activity_key().expose(), MGMT);
    }

    #[test]
    fn openrouter_pasted_json_is_read_and_errors_name_the_field_not_the_key() {
        let json = format!(r#"{{"apiKey": "{API}", "provisioningKey": "{MGMT}"}}"#);
        let c = read(&[("api_key", &json)]).unwrap();
        assert_eq!(c.api_key.expose(), API);
        assert_eq!(c.management_key.as_ref().unwrap().expose(), MGMT);

        let no_api = format!(r#"{{"provisioningKey": "{MGMT}"}}"#);
        let problems = read(&[("api_key", &no_api)]).unwrap_err();
        assert!(problems[0].contains("'apiKey' is missing") && problems[0].contains("credentials.api_key"));
        assert!(!problems[0].contains(MGMT), "{problems:?}");

        let broken = format!(r#"{{"apiKey": "{API}""#);
        let problems = read(&[("api_key", &broken)]).unwrap_err();
        assert!(
            problems[0].contains("not valid JSON") && !problems[0].contains(API),
            "{problems:?}"
        );

        let other = format!(r#"{{"apiKey": "{API}", "provisioningKey": "sk-or-v1-FAKE-TEST-other-999999"}}"#);
        let problems = read(&[("api_key", &other), ("management_key", MGMT)]).unwrap_err();
        assert!(problems[0].contains("differs"), "{problems:?}");
    }

    #[test]
    fn openrouter_a_foreign_key_is_named_with_where_to_get_a_management_key() {
        let key = "sk-proj-FAKE-TEST-0123456789abcdefghijkl";
        let problems = read(&[("api_key", API), ("management_key", key)]).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("credentials.management_key") && problems[0].contains(MANAGEMENT_KEYS_URL),
            "{problems:?}"
        );
        assert!(!problems[0].contains(key));
    }
}
