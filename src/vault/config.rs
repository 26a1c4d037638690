//! The config-loading hook: decrypts `enc:` credentials in the parsed TOML
//! before validation, so the rest of the config code only sees plaintext.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{is_encrypted, resolve_key, KEY_SOURCES_HELP};

/// One `enc:` value found under `accounts[*].credentials` or
/// `webhooks[*].secret` (bound to the webhook's id as to an account id).
struct Found {
    /// `accounts` or `webhooks`.
    section: &'static str,
    index: usize,
    id: Option<String>,
    field: String,
}

impl Found {
    /// The same account label `check-config` uses everywhere.
    fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("{}[{}] (id '{id}')", self.section, self.index),
            None => format!("{}[{}]", self.section, self.index),
        }
    }

    /// Where the value sits in its table: `credentials.api_key`, `secret`.
    fn path(&self) -> &[&str] {
        if self.section == "webhooks" {
            &[]
        } else {
            &["credentials"]
        }
    }
}

/// Replaces every `enc:` string under `accounts[*].credentials` with its
/// plaintext, the account id being the associated data. Each failure pushes
/// one problem naming the account and the field. Reads the key (see
/// [`resolve_key`]) only when there is something to decrypt; `[vault]
/// key_file` is taken from `value` itself, after interpolation and overrides.
pub fn decrypt_config_credentials(value: &mut toml::Value, env: &BTreeMap<String, String>, problems: &mut Vec<String>) {
    if let Some(password) = value
        .get("clickhouse")
        .and_then(|c| c.get("password"))
        .and_then(toml::Value::as_str)
    {
        if is_encrypted(password) {
            problems.push(
                "clickhouse.password: enc: values are only read under [accounts.credentials]; \
                 use ${ENV_VAR} for the ClickHouse password"
                    .into(),
            );
        }
    }
    let found = find_encrypted(value);
    if found.is_empty() {
        return;
    }
    let key_file = config_key_file_from_value(value);
    let key = match resolve_key(key_file.as_deref(), env) {
        Ok(Some((key, _source))) => key,
        Ok(None) => {
            for f in &found {
                problems.push(format!(
                    "{}: {} is encrypted, but no vault key was found",
                    f.label(),
                    f.shown()
                ));
            }
            problems.push(format!("vault: {KEY_SOURCES_HELP}"));
            return;
        }
        Err(err) => {
            for f in &found {
                problems.push(format!(
                    "{}: {} is encrypted, but the vault key could not be loaded",
                    f.label(),
                    f.shown()
                ));
            }
            problems.push(format!("vault: {err}"));
            return;
        }
    };
    for f in &found {
        let mut slot = value.get_mut(f.section).and_then(|a| a.get_mut(f.index));
        for part in f.path() {
            slot = slot.and_then(|v| v.get_mut(*part));
        }
        let Some(slot) = slot.and_then(|v| v.get_mut(&f.field)) else {
            continue;
        };
        let Some(id) = &f.id else {
            problems.push(format!(
                "{}: {} is encrypted, but the entry has no id, which is needed to decrypt it",
                f.label(),
                f.shown()
            ));
            continue;
        };
        let toml::Value::String(text) = slot else {
            continue;
        };
        match key.decrypt(id, text) {
            Ok(plaintext) => *text = plaintext.as_str().to_string(),
            Err(err) => problems.push(format!("{}: {} {err}", f.label(), f.shown())),
        }
    }
}

impl Found {
    /// The field as the user wrote it.
    fn shown(&self) -> String {
        self.path().iter().map(|p| format!("{p}.")).collect::<String>() + &self.field
    }
}

fn find_encrypted(value: &toml::Value) -> Vec<Found> {
    let mut found = Vec::new();
    let webhooks = value.get("webhooks").and_then(toml::Value::as_array);
    for (index, hook) in webhooks.into_iter().flatten().enumerate() {
        if hook
            .get("secret")
            .and_then(toml::Value::as_str)
            .is_some_and(is_encrypted)
        {
            found.push(Found {
                section: "webhooks",
                index,
                id: hook.get("id").and_then(toml::Value::as_str).map(str::to_string),
                field: "secret".to_string(),
            });
        }
    }
    let Some(accounts) = value.get("accounts").and_then(toml::Value::as_array) else {
        return found;
    };
    for (index, account) in accounts.iter().enumerate() {
        let Some(credentials) = account.get("credentials").and_then(toml::Value::as_table) else {
            continue;
        };
        let id = account.get("id").and_then(toml::Value::as_str).map(str::to_string);
        for (field, v) in credentials {
            if v.as_str().is_some_and(is_encrypted) {
                found.push(Found {
                    section: "accounts",
                    index,
                    id: id.clone(),
                    field: field.clone(),
                });
            }
        }
    }
    found
}

fn config_key_file_from_value(value: &toml::Value) -> Option<PathBuf> {
    value
        .get("vault")
        .and_then(|v| v.get("key_file"))
        .and_then(toml::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// `[vault] key_file` of a config file's text, for the `vault` commands
/// (which must work while other accounts' `${ENV_VAR}`s are unset), with the
/// `TOKENTRA__VAULT__KEY_FILE` override applied. A path written with
/// `${...}` is refused: pass `--key-file` instead.
pub fn config_key_file(text: &str, path: &Path, env: &BTreeMap<String, String>) -> Result<Option<PathBuf>, String> {
    if let Some(over) = env.get("TOKENTRA__VAULT__KEY_FILE").filter(|s| !s.is_empty()) {
        return Ok(Some(PathBuf::from(over)));
    }
    let value: toml::Value =
        toml::from_str(text).map_err(|e| format!("config file {} is not valid TOML: {e}", path.display()))?;
    match config_key_file_from_value(&value) {
        Some(p) if p.to_string_lossy().contains('$') => Err(format!(
            "{}: [vault] key_file uses '$'; pass the key file with --key-file instead",
            path.display()
        )),
        other => Ok(other),
    }
}
