//! A credential value that never prints, and helpers to show credentials
//! safely.

use std::fmt;

use zeroize::Zeroize;

/// A secret string. `Debug` and `Display` show `***`; only [`Secret::expose`]
/// gives the value, at the one place it is sent to its server. Its memory
/// (the whole allocation) is overwritten with zeros when it is dropped.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        self.zeroize();
    }
}

impl Zeroize for Secret {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for Secret {}

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

/// `url` for display: a password in its user info (`user:pass@`) becomes
/// `user:***@`; the rest is kept as written. The user info is taken up to the
/// last `@`, so a password containing `@`, `/`, `#` or `?` is hidden too (an
/// `@` later in the path may hide more than needed, never less).
pub fn strip_url_password(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_string();
    };
    format!("{}{}:***{}", &url[..start], &userinfo[..colon], &rest[at..])
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

    #[test]
    fn secrets_are_zeroized_in_place() {
        let mut s = Secret::new(String::from("sk-admin-FAKE-zeroize-me"));
        let (ptr, cap) = (s.0.as_ptr(), s.0.capacity());
        s.zeroize();
        assert_eq!(s.expose(), "");
        // The allocation is still owned by `s`; every byte of it is now zero.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, cap) };
        assert!(bytes.iter().all(|b| *b == 0), "{bytes:?}");
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        zeroized_on_drop(&s);
    }

    #[test]
    fn url_passwords_are_stripped() {
        let cases = [
            (
                "http://user:FAKEpass@127.0.0.1:8123/db",
                "http://user:***@127.0.0.1:8123/db",
            ),
            ("https://u:p@ss/w#rd@host/x?y=1", "https://u:***@host/x?y=1"),
            ("http://user@host:8123/", "http://user@host:8123/"),
            ("http://host:8123/path", "http://host:8123/path"),
            ("user:TESTpass@host", "user:***@host"),
            ("http://:FAKE@host", "http://:***@host"),
            ("", ""),
        ];
        for (url, shown) in cases {
            assert_eq!(strip_url_password(url), shown, "{url}");
        }
    }
}
