//! The config-loading hook: decrypts `enc:` credentials in the parsed TOML
//! before validation, so the rest of the config code only sees plaintext.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{is_encrypted, resolve_key, KEY_SOURCES_HELP};

/// One `enc:` value found under `accounts[*].credentials`.
struct Found {
    index: usize,
    id: Option<String>,
    field: String,
}

impl Found {
    /// The same account label `check-config` uses everywhere.
    fn label(&self) -> String {
        match &self.id {
            Some(id) => format!("accounts[{}] (id '{id}')", self.index),
            None => format!("accounts[{}]", self.index),
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
                    "{}: credentials.{} is encrypted, but no vault key was found",
                    f.label(),
                    f.field
                ));
            }
            problems.push(format!("vault: {KEY_SOURCES_HELP}"));
            return;
        }
        Err(err) => {
            for f in &found {
                problems.push(format!(
                    "{}: credentials.{} is encrypted, but the vault key could not be loaded",
                    f.label(),
                    f.field
                ));
            }
            problems.push(format!("vault: {err}"));
            return;
        }
    };
    let Some(accounts) = value.get_mut("accounts").and_then(toml::Value::as_array_mut) else {
        return;
    };
    for f in &found {
        let Some(slot) = accounts
            .get_mut(f.index)
            .and_then(|a| a.get_mut("credentials"))
            .and_then(|c| c.get_mut(&f.field))
        else {
            continue;
        };
        let Some(id) = &f.id else {
            problems.push(format!(
                "{}: credentials.{} is encrypted, but the account has no id, which is needed to decrypt it",
                f.label(),
                f.field
            ));
            continue;
        };
        let toml::Value::String(text) = slot else {
            continue;
        };
        match key.decrypt(id, text) {
            Ok(plaintext) => *text = plaintext.as_str().to_string(),
            Err(err) => problems.push(format!("{}: credentials.{} {err}", f.label(), f.field)),
        }
    }
}

fn find_encrypted(value: &toml::Value) -> Vec<Found> {
    let Some(accounts) = value.get("accounts").and_then(toml::Value::as_array) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (index, account) in accounts.iter().enumerate() {
        let Some(credentials) = account.get("credentials").and_then(toml::Value::as_table) else {
            continue;
        };
        let id = account.get("id").and_then(toml::Value::as_str).map(str::to_string);
        for (field, v) in credentials {
            if v.as_str().is_some_and(is_encrypted) {
                found.push(Found {
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
