//! A credential value that never prints.

use std::fmt;

/// A secret string. `Debug` and `Display` show `***`; only [`Secret::expose`]
/// gives the value, at the one place it is sent to its server.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A masked hint such as `sk-ant-api03-Z4C...EQAA`: the prefix up to the
    /// third character after the last `-` of the prefix, and the last 4.
    /// Short values show nothing.
    pub fn hint(&self) -> String {
        mask(&self.0)
    }
}

/// Masks a key for display: keeps the recognisable prefix (up to three
/// characters past its last `-`) and the last four characters, and never shows
/// more than half of the value.
pub fn mask(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() < 12 {
        return "***".to_string();
    }
    let prefix_end = value
        .rfind('-')
        .map(|i| value[..i].chars().count() + 4)
        .unwrap_or(3)
        .min(chars.len() / 2 - 4);
    let head: String = chars[..prefix_end].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail}")
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-admin-FAKE-abcdefghijklmnopqrstuvwxyz");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
    }

    #[test]
    fn hints_keep_prefix_and_last_four_only() {
        let hint = mask("sk-ant-api03-Z4CFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEFAKEEQAA");
        assert_eq!(hint, "sk-ant-api03-Z4C...EQAA");
        assert_eq!(mask("short"), "***");
        let hint = mask("abcdefghijklmnopqrstuvwxyz0123456789");
        assert!(hint.ends_with("...6789") && hint.len() < 16, "{hint}");
    }
}
