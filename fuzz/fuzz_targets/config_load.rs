//! `config::load_str` on arbitrary text: every input gives a config or a
//! list of problems, never a panic. The environment has a vault key, so
//! `enc:` credentials in the input reach the decrypt hook.

#![no_main]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A fixture key (base64 of 32 bytes; FAKE, never used anywhere real).
const KEY_TEXT: &str = "FAKETESTvaultKEYforTESTSonlyFAKEFAKEFAKE000=";

fn env() -> &'static BTreeMap<String, String> {
    static ENV: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        [
            ("TOKENTRA_VAULT_KEY", KEY_TEXT),
            ("OPENAI_ADMIN_KEY", "sk-admin-FAKE-fuzz"),
            ("ANTHROPIC_ADMIN_KEY", "sk-ant-admin01-FAKE-fuzz"),
            ("CLICKHOUSE_PASSWORD", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(err) = tokentra_sync::config::load_str(text, Path::new("fuzz.toml"), env()) {
            // Errors must render.
            let _ = err.to_string();
        }
    }
});
