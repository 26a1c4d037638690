//! The `enc:` value parser and decrypt path on arbitrary input: never a
//! panic, never a forged value accepted, and encrypt/decrypt round trips.
//!
//! Input: first byte = account id length (mod 17), then the account id,
//! then the value text or payload bytes.

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use tokentra_sync::vault::{EncValue, MasterKey, VaultError};

/// A fixture key (base64 of 32 bytes; FAKE, never used anywhere real).
const KEY_TEXT: &str = "FAKETESTvaultKEYforTESTSonlyFAKEFAKEFAKE000=";

fn key() -> &'static MasterKey {
    static KEY: OnceLock<MasterKey> = OnceLock::new();
    KEY.get_or_init(|| MasterKey::parse(KEY_TEXT, "the fuzz key").expect("fixture key parses"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 17).min(rest.len());
    let (account, body) = rest.split_at(n);
    let account = String::from_utf8_lossy(account);
    let key = key();

    // As text: the parser and the whole decrypt path.
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = EncValue::parse(text);
        let _ = key.decrypt(&account, text);
        let _ = key.decrypt(&account, &format!("enc:v1:{}:{text}", key.id()));
    }

    // As a payload under the right key id: AES-GCM must reject every forgery.
    let forged = format!(
        "enc:v1:{}:{}",
        key.id(),
        base64::engine::general_purpose::STANDARD.encode(body)
    );
    assert!(key.decrypt(&account, &forged).is_err(), "a forged value decrypted");

    // Round trip of arbitrary bytes, bound to the account.
    let value = key.encrypt(&account, body).expect("encrypts");
    match key.decrypt(&account, &value) {
        Ok(plain) => assert_eq!(plain.as_bytes(), body),
        Err(VaultError::NotUtf8) => assert!(std::str::from_utf8(body).is_err()),
        Err(e) => panic!("round trip failed: {e}"),
    }
    let other = format!("{account}x");
    assert!(key.decrypt(&other, &value).is_err(), "decrypted for another account");
});
