//! Reading one account's credentials and settings into a provider's typed
//! config, purely (no I/O), with one message per problem naming the account,
//! the field and the fix. `check-config` runs the same code the daemon does.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::config::secret::Secret;
use crate::providers::AccountView;

/// Collects problems while a provider's typed config is read.
pub struct SettingsReader<'a> {
    pub account: &'a AccountView<'a>,
    pub problems: Vec<String>,
}

impl<'a> SettingsReader<'a> {
    pub fn new(account: &'a AccountView<'a>) -> Self {
        Self {
            account,
            problems: Vec::new(),
        }
    }

    fn label(&self) -> String {
        format!("account '{}'", self.account.id)
    }

    /// A credential the descriptor lists as required (presence is checked at
    /// config load; this reads it and rejects blanks).
    pub fn credential(&mut self, key: &str) -> Secret {
        match self.account.credentials.get(key) {
            Some(value) if !value.expose().trim().is_empty() => value.clone(),
            _ => {
                self.problems.push(format!(
                    "{}: credentials.{key} is missing or empty; add it under [accounts.credentials]",
                    self.label()
                ));
                Secret::new("")
            }
        }
    }

    pub fn optional_credential(&self, key: &str) -> Option<Secret> {
        self.account
            .credentials
            .get(key)
            .filter(|v| !v.expose().trim().is_empty())
            .cloned()
    }

    /// A credential that must start with one of `prefixes`: `what` says which
    /// key type that is and `fix` where to get one.
    pub fn require_prefix(&mut self, key: &str, value: &Secret, prefixes: &[&str], what: &str, fix: &str) {
        let text = value.expose();
        if text.is_empty() || prefixes.iter().any(|p| text.starts_with(p)) {
            return;
        }
        self.problems.push(format!(
            "{}: credentials.{key} ({}) is not {what}; {fix}",
            self.label(),
            value.hint()
        ));
    }

    /// A numeric setting with a default, bounded to `[min, max]`.
    pub fn number<T>(&mut self, key: &str, default: T, min: T, max: T) -> T
    where
        T: FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let Some(text) = self.account.settings.get(key) else {
            return default;
        };
        match text.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => v,
            Ok(v) => {
                self.problems.push(format!(
                    "{}: {key} = {v} is out of range; use a value from {min} to {max}",
                    self.label()
                ));
                default
            }
            Err(_) => {
                self.problems.push(format!(
                    "{}: {key} = '{text}' is not a number; use a value from {min} to {max}",
                    self.label()
                ));
                default
            }
        }
    }

    /// A setting restricted to `choices`, with a default.
    pub fn choice(&mut self, key: &str, default: &'static str, choices: &[&'static str]) -> &'static str {
        let Some(text) = self.account.settings.get(key) else {
            return default;
        };
        match choices.iter().find(|c| **c == text.trim()) {
            Some(c) => c,
            None => {
                self.problems.push(format!(
                    "{}: {key} = '{text}' is not one of {}",
                    self.label(),
                    choices.join(", ")
                ));
                default
            }
        }
    }

    pub fn string(&self, key: &str) -> Option<String> {
        self.account.settings.get(key).cloned()
    }

    pub fn finish<T>(self, value: T) -> Result<T, Vec<String>> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(self.problems)
        }
    }
}

/// A map of settings for tests and views.
pub type Settings = BTreeMap<String, String>;
