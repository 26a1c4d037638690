//! Cutting credentials out of provider text before anything keeps it.
//!
//! Provider error bodies and malformed pages can echo a key back (a proxy that
//! prints the request, an amount field that holds the key). Every text an
//! adapter keeps (error messages, `sync_runs.error`, logs) passes through one
//! [`Redactor`] that knows the account's secrets in the forms they travel in:
//! verbatim, base64 (HTTP Basic, JWT segments) and URL-encoded. It runs on the
//! whole text before any truncation, so a cut can never leave half a key.

use base64::Engine as _;

/// Shortest secret worth redacting: shorter values (a region, "default")
/// would blank out ordinary words.
const MIN_SECRET_LEN: usize = 8;

/// Shown instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// Every form of every secret of one account, longest first so that a secret
/// containing another is replaced whole.
#[derive(Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} forms)", self.needles.len())
    }
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut redactor = Self::default();
        for secret in secrets {
            redactor.add(secret);
        }
        redactor
    }

    /// Adds `secret` and its encoded forms.
    pub fn add(&mut self, secret: &str) {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        let mut forms = vec![secret.to_string()];
        forms.extend(engines.iter().map(|e| e.encode(secret)));
        // Base64 of the secret at another offset inside a longer encoded
        // string (e.g. `user:key` in Basic auth) differs in its edges; the
        // middle run of whole 3-byte groups is the same at every offset that
        // is a multiple of 3, so add the encodings of the secret shifted by
        // one and two bytes, trimmed to whole groups.
        for shift in 1..=2usize {
            let padded: Vec<u8> = std::iter::repeat_n(b'\0', shift).chain(secret.bytes()).collect();
            let encoded = engines[1].encode(&padded);
            // Drop the first 4 chars (they mix the padding) and the last 4 (partial group).
            if encoded.len() > 8 + MIN_SECRET_LEN {
                forms.push(encoded[4..encoded.len() - 4].to_string());
            }
        }
        if secret.len() >= 12 {
            // Tail of the plain encoding, for a secret that starts mid-group.
            let plain = engines[1].encode(secret);
            forms.push(plain[4..plain.len().saturating_sub(4)].to_string());
        }
        let url_encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        forms.push(url_encoded);
        for form in forms {
            if form.len() >= MIN_SECRET_LEN && !self.needles.contains(&form) {
                self.needles.push(form);
            }
        }
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// `text` with every known form of every secret replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for needle in &self.needles {
            if out.contains(needle.as_str()) {
                out = out.replace(needle.as_str(), REDACTED);
            }
        }
        out
    }

    /// Scrubs, then keeps at most `max_chars` characters, and escapes
    /// control characters so provider text cannot forge log lines or drive a
    /// terminal. The result is meant to be quoted as the provider's words.
    pub fn excerpt(&self, text: &str, max_chars: usize) -> String {
        let scrubbed = self.scrub(text);
        let mut out = String::with_capacity(scrubbed.len().min(max_chars + 8));
        for (count, c) in scrubbed.chars().enumerate() {
            if count == max_chars {
                out.push_str("...");
                break;
            }
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk-ant-admin01-FAKE-TEST-0123456789abcdefghijklmnop";

    #[test]
    fn removes_plain_base64_and_url_encoded_forms() {
        let r = Redactor::new([KEY]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(KEY);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("user:{KEY}"));
        let basic2 = base64::engine::general_purpose::STANDARD.encode(format!("ab:{KEY}"));
        for text in [
            format!("invalid key {KEY}!"),
            format!("token={b64}"),
            format!("Basic {basic}"),
            format!("Basic {basic2}"),
        ] {
            let out = r.scrub(&text);
            assert!(!out.contains(KEY), "{out}");
            assert!(out.contains(REDACTED), "{text} -> {out}");
            // No 16-character run of the base64 encoding survives either.
            assert!(!out.contains(&b64[8..24]), "{out}");
        }
        let middle = &KEY[10..40];
        let out = r.scrub(&format!("x{KEY}y"));
        assert!(!out.contains(middle), "{out}");
    }

    #[test]
    fn excerpt_redacts_before_it_truncates_and_escapes_controls() {
        let r = Redactor::new([KEY]);
        // The key straddles the cut: truncating first would leave a prefix.
        let text = format!("{}{KEY}", "a".repeat(20));
        let out = r.excerpt(&text, 30);
        assert!(!out.contains(&KEY[..10]), "{out}");
        let forged = "bad\nstatus=\"success\" \u{1b}[31mred";
        let out = r.excerpt(forged, 100);
        assert!(!out.contains('\n') && !out.contains('\u{1b}'), "{out}");
        assert!(out.contains("\\n"), "{out}");
    }

    #[test]
    fn short_values_are_not_needles() {
        let r = Redactor::new(["us-east-1", "abc"]);
        assert_eq!(r.scrub("abc def"), "abc def");
        assert_eq!(r.scrub("in us-east-1"), format!("in {REDACTED}"));
    }
}
