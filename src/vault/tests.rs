use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use proptest::prelude::*;
use zeroize::Zeroizing;

use super::rotate::{rotate_config_file, rotate_config_text, write_atomically, RotateError};
use super::*;
use crate::config::{self, ConfigError};

/// Fixture keys: the bytes spell FAKE-TEST.
fn key1() -> MasterKey {
    MasterKey::from_bytes(Zeroizing::new(*b"FAKE-TEST-vault-key-000000000001"))
}

fn key2() -> MasterKey {
    MasterKey::from_bytes(Zeroizing::new(*b"FAKE-TEST-vault-key-000000000002"))
}

/// The base64 text of a fixture key (decodes to 32 bytes).
const KEY_TEXT_B64: &str = "FAKETESTvaultKEYforTESTSonlyFAKEFAKEFAKE000=";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn write_key(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn vault_round_trip_binds_the_account() {
    let key = key1();
    let value = key.encrypt("acme-openai", b"sk-admin-FAKE-123").unwrap();
    assert!(value.starts_with("enc:v1:d4f80fab:"), "{value}");
    assert_eq!(
        key.decrypt("acme-openai", &value).unwrap().as_str(),
        "sk-admin-FAKE-123"
    );
    assert_eq!(
        key.decrypt("acme-anthropic", &value),
        Err(VaultError::Decrypt {
            key_id: "d4f80fab".into()
        })
    );
    // A fresh nonce every time.
    let again = key.encrypt("acme-openai", b"sk-admin-FAKE-123").unwrap();
    assert_ne!(value, again);
    let payload = EncValue::parse(&value).unwrap().payload;
    assert_eq!(payload.len(), 12 + 17 + 16);
}

#[test]
fn vault_key_ids_are_pinned() {
    // First 8 hex digits of SHA-256 over the key bytes (sha256sum agrees).
    assert_eq!(key1().id().as_str(), "d4f80fab");
    assert_eq!(key2().id().as_str(), "60ce3dce");
    assert_eq!(
        MasterKey::parse(KEY_TEXT_B64, "test").unwrap().id().as_str(),
        "43edf2d3"
    );
}

#[test]
fn vault_keys_parse_as_hex_or_base64_and_never_print() {
    let key = key1();
    let hex = key.to_hex();
    assert_eq!(hex.len(), 64);
    let parsed = MasterKey::parse(&format!("  {}\n", hex.as_str()), "test").unwrap();
    assert_eq!(parsed.id(), key.id());
    assert_eq!(
        parsed.decrypt("a", &key.encrypt("a", b"x").unwrap()).unwrap().as_str(),
        "x"
    );
    let debug = format!("{key:?}");
    assert_eq!(debug, "MasterKey(id d4f80fab, ***)");
    for bad in ["", "abc", &hex[..63], "FAKETEST", "zz".repeat(32).as_str(), "QUJD"] {
        let err = MasterKey::parse(bad, "the test key").unwrap_err();
        assert!(err.to_string().contains("the test key is not a vault key"), "{err}");
    }
}

#[test]
fn vault_rejects_tampering_and_every_truncation() {
    let key = key1();
    let value = key.encrypt("acct", b"sk-FAKE-secret").unwrap();
    let prefix = "enc:v1:d4f80fab:";
    let payload = EncValue::parse(&value).unwrap().payload;
    for i in 0..payload.len() {
        let mut tampered = payload.clone();
        tampered[i] ^= 0x01;
        let text = format!(
            "{prefix}{}",
            base64::engine::general_purpose::STANDARD.encode(&tampered)
        );
        assert_eq!(
            key.decrypt("acct", &text),
            Err(VaultError::Decrypt {
                key_id: "d4f80fab".into()
            }),
            "byte {i}"
        );
    }
    // Cut anywhere: always an error, never a panic.
    for end in 0..value.len() {
        assert!(key.decrypt("acct", &value[..end]).is_err(), "cut at {end}");
    }
    // A payload shorter than nonce + tag.
    let short = format!(
        "{prefix}{}",
        base64::engine::general_purpose::STANDARD.encode([0u8; 27])
    );
    assert_eq!(
        key.decrypt("acct", &short),
        Err(VaultError::Truncated { len: 27, min: 28 })
    );
    // Whole blocks dropped from the end: base64 still valid, the tag is gone.
    let dropped = format!(
        "{prefix}{}",
        base64::engine::general_purpose::STANDARD.encode(&payload[..payload.len() - 3])
    );
    assert!(matches!(key.decrypt("acct", &dropped), Err(VaultError::Decrypt { .. })));
}

#[test]
fn vault_errors_name_the_problem() {
    let key = key1();
    let cases: [(&str, &str); 8] = [
        ("sk-plain", "is not an encrypted value"),
        ("enc:v2:d4f80fab:AAAA", "uses encryption format 'v2'"),
        ("enc:", "uses encryption format ''"),
        ("enc:v1:", "separated by ':'"),
        ("enc:v1:D4F80FAB:AAAA", "8 lowercase hex digits"),
        ("enc:v1:d4f80fa:AAAA", "8 lowercase hex digits"),
        ("enc:v1:d4f80fab:not base64!", "not valid base64"),
        ("enc:v1:d4f80fab:", "is truncated"),
    ];
    for (value, expected) in cases {
        let err = key.decrypt("acct", value).unwrap_err().to_string();
        assert!(err.contains(expected), "{value}: {err}");
    }
    let other = key2().encrypt("acct", b"sk-FAKE").unwrap();
    let err = key.decrypt("acct", &other).unwrap_err();
    assert_eq!(
        err,
        VaultError::WrongKey {
            value_key: "60ce3dce".into(),
            loaded_key: "d4f80fab".into()
        }
    );
    assert!(err.to_string().contains("vault rotate"), "{err}");
    // A value made with another key but labelled with this key's id.
    let relabelled = other.replace("60ce3dce", "d4f80fab");
    assert!(matches!(
        key.decrypt("acct", &relabelled),
        Err(VaultError::Decrypt { .. })
    ));
    // Non-UTF-8 plaintext.
    let binary = key.encrypt("acct", &[0xff, 0xfe]).unwrap();
    assert_eq!(key.decrypt("acct", &binary), Err(VaultError::NotUtf8));
    // An unknown version is shown escaped and short.
    let err = key
        .decrypt("acct", "enc:v\u{7}9999999999999999999999:x")
        .unwrap_err()
        .to_string();
    // 16 characters: 'v', BEL and 14 nines.
    assert!(err.contains(&format!("'v\\u{{7}}{}'", "9".repeat(14))), "{err}");
}

proptest! {
    #[test]
    fn vault_never_panics_on_any_value(value in ".{0,200}", account in "[a-z-]{0,12}") {
        let key = key1();
        let _ = key.decrypt(&account, &value);
        let _ = key.decrypt(&account, &format!("enc:v1:d4f80fab:{value}"));
    }

    #[test]
    fn vault_round_trips_any_text(secret in ".{0,300}", account in "[a-z0-9_-]{1,64}") {
        let key = key1();
        let value = key.encrypt(&account, secret.as_bytes()).unwrap();
        let plain = key.decrypt(&account, &value).unwrap();
        prop_assert_eq!(plain.as_str(), secret.as_str());
    }
}

#[test]
fn vault_key_files_must_be_private_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let open = write_key(dir.path(), "open.key", KEY_TEXT_B64, 0o644);
    let err = load_key_file(&open).unwrap_err().to_string();
    assert!(err.contains(&format!("chmod 600 {}", open.display())), "{err}");
    assert!(err.contains("mode 0644"), "{err}");
    let group = write_key(dir.path(), "group.key", KEY_TEXT_B64, 0o640);
    assert!(matches!(
        load_key_file(&group),
        Err(KeyError::Permissions { mode: 0o640, .. })
    ));
    let private = write_key(dir.path(), "private.key", &format!("{KEY_TEXT_B64}\n"), 0o600);
    assert_eq!(load_key_file(&private).unwrap().id().as_str(), "43edf2d3");
    let readonly = write_key(dir.path(), "readonly.key", KEY_TEXT_B64, 0o400);
    assert!(load_key_file(&readonly).is_ok());
    assert!(matches!(load_key_file(dir.path()), Err(KeyError::NotAFile { .. })));
    assert!(matches!(
        load_key_file(&dir.path().join("missing.key")),
        Err(KeyError::Io { .. })
    ));
    let garbage = write_key(dir.path(), "garbage.key", "FAKE not a key", 0o600);
    let err = load_key_file(&garbage).unwrap_err().to_string();
    assert!(err.contains("is not a vault key") && !err.contains("FAKE"), "{err}");
    let huge = write_key(dir.path(), "huge.key", &"a".repeat(10_000), 0o600);
    assert!(matches!(load_key_file(&huge), Err(KeyError::Format { .. })));
}

#[test]
fn vault_key_sources_apply_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let creds = tempfile::tempdir().unwrap();
    let file = write_key(dir.path(), "vault.key", &key1().to_hex(), 0o600);
    let env_key = key2().to_hex();
    let systemd = write_key(creds.path(), "master.key", KEY_TEXT_B64, 0o400);
    let cred_dir = creds.path().to_str().unwrap();
    let all = env(&[(CREDENTIALS_DIRECTORY_ENV, cred_dir), (KEY_ENV, &env_key)]);
    let (key, source) = resolve_key(Some(&file), &all).unwrap().unwrap();
    assert_eq!(
        (key.id().as_str(), source),
        ("43edf2d3", KeySource::SystemdCredential(systemd))
    );
    // A credentials directory without master.key is skipped.
    let empty = tempfile::tempdir().unwrap();
    let no_master = env(&[
        (CREDENTIALS_DIRECTORY_ENV, empty.path().to_str().unwrap()),
        (KEY_ENV, &env_key),
    ]);
    let (key, source) = resolve_key(Some(&file), &no_master).unwrap().unwrap();
    assert_eq!(
        (key.id().as_str(), source),
        ("d4f80fab", KeySource::KeyFile(file.clone()))
    );
    let (key, source) = resolve_key(None, &no_master).unwrap().unwrap();
    assert_eq!((key.id().as_str(), source), ("60ce3dce", KeySource::Env));
    assert!(resolve_key(None, &env(&[(KEY_ENV, " ")])).unwrap().is_none());
    let err = resolve_key(None, &env(&[(KEY_ENV, "FAKE")])).unwrap_err().to_string();
    assert!(err.contains("TOKENTRA_VAULT_KEY is not a vault key"), "{err}");
}

fn openai_config(value: &str, extra: &str) -> String {
    format!(
        r#"
{extra}
[[accounts]]
id = "acme-openai"
provider = "openai"
[accounts.credentials]
api_key = "{value}"

[[accounts]]
id = "acme-anthropic"
provider = "anthropic"
[accounts.credentials]
api_key = "sk-ant-admin01-FAKE-plain"
"#
    )
}

fn load(text: &str, vars: &[(&str, &str)]) -> Result<config::ValidatedConfig, ConfigError> {
    config::load_str(text, Path::new("test.toml"), &env(vars))
}

fn problems(text: &str, vars: &[(&str, &str)]) -> Vec<String> {
    match load(text, vars) {
        Err(ConfigError::Invalid { problems }) => problems,
        other => panic!("expected invalid config, got {other:?}"),
    }
}

#[test]
fn vault_config_credentials_decrypt_on_load() {
    let key = MasterKey::parse(KEY_TEXT_B64, "test").unwrap();
    let value = key.encrypt("acme-openai", b"sk-admin-FAKE-vault").unwrap();
    let config = load(&openai_config(&value, ""), &[(KEY_ENV, KEY_TEXT_B64)]).unwrap();
    let account = config.account("acme-openai").unwrap();
    assert_eq!(account.credential("api_key").unwrap().expose(), "sk-admin-FAKE-vault");
    assert!(!format!("{config:?}").contains("sk-admin-FAKE-vault"));
    // Through ${ENV_VAR} too, and with [vault] key_file.
    let dir = tempfile::tempdir().unwrap();
    let file = write_key(dir.path(), "vault.key", KEY_TEXT_B64, 0o600);
    let text = openai_config("${OPENAI_ENC}", &format!("[vault]\nkey_file = \"{}\"", file.display()));
    let config = load(&text, &[("OPENAI_ENC", &value)]).unwrap();
    assert_eq!(
        config
            .account("acme-openai")
            .unwrap()
            .credential("api_key")
            .unwrap()
            .expose(),
        "sk-admin-FAKE-vault"
    );
}

#[test]
fn vault_config_without_a_key_names_the_field_and_the_ways() {
    let value = key1().encrypt("acme-openai", b"sk-admin-FAKE").unwrap();
    let p = problems(&openai_config(&value, ""), &[]);
    assert_eq!(p.len(), 2, "{p:?}");
    assert_eq!(
        p[0],
        "accounts[0] (id 'acme-openai'): credentials.api_key is encrypted, but no vault key was found"
    );
    for way in [
        "CREDENTIALS_DIRECTORY/master.key",
        "[vault] key_file",
        "TOKENTRA_VAULT_KEY",
    ] {
        assert!(p[1].contains(way), "{p:?}");
    }
}

#[test]
fn vault_config_decrypt_failures_name_account_and_field() {
    let key = key1();
    let hex = key.to_hex();
    // Copied from another account.
    let copied = key.encrypt("acme-anthropic", b"sk-admin-FAKE").unwrap();
    let p = problems(&openai_config(&copied, ""), &[(KEY_ENV, &hex)]);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("accounts[0] (id 'acme-openai'): credentials.api_key does not decrypt"),
        "{p:?}"
    );
    // Under another key.
    let other = key2().encrypt("acme-openai", b"sk-admin-FAKE").unwrap();
    let p = problems(&openai_config(&other, ""), &[(KEY_ENV, &hex)]);
    assert!(
        p[0].contains("credentials.api_key was encrypted with vault key 60ce3dce"),
        "{p:?}"
    );
    // A world-readable key file.
    let dir = tempfile::tempdir().unwrap();
    let file = write_key(dir.path(), "vault.key", &hex, 0o604);
    let value = key.encrypt("acme-openai", b"sk-admin-FAKE").unwrap();
    let text = openai_config(&value, &format!("[vault]\nkey_file = \"{}\"", file.display()));
    let p = problems(&text, &[]);
    assert!(p.iter().any(|p| p.contains("chmod 600")), "{p:?}");
    assert!(
        p.iter().any(|p| p.contains("credentials.api_key is encrypted")),
        "{p:?}"
    );
    // Unknown versions and garbage.
    let p = problems(&openai_config("enc:v9:whatever", ""), &[(KEY_ENV, &hex)]);
    assert!(
        p[0].contains("credentials.api_key uses encryption format 'v9'"),
        "{p:?}"
    );
    // Only account credentials are read encrypted.
    let text = openai_config(&value, "[clickhouse]\npassword = \"enc:v1:d4f80fab:AAAA\"");
    let p = problems(&text, &[(KEY_ENV, &hex)]);
    assert!(
        p.iter().any(|p| p.starts_with("clickhouse.password: enc: values")),
        "{p:?}"
    );
}

#[test]
fn vault_no_key_is_read_without_enc_values() {
    // A broken key file does not matter until something is encrypted.
    let text = openai_config(
        "sk-admin-FAKE-plain-openai",
        "[vault]\nkey_file = \"/nonexistent/FAKE.key\"",
    );
    assert!(load(&text, &[]).is_ok());
}

const ROTATE_CONFIG: &str = r#"# top comment
[vault]
key_file = "/etc/tokentra-sync/vault.key"  # kept

[[accounts]]
id = "acme-openai"   # first
provider = "openai"
[accounts.credentials]
api_key = "OPENAI"   # trailing comment

[[accounts]]
id = "acme-anthropic"
provider = "anthropic"
credentials = { api_key = "ANTHROPIC" }

[[accounts]]
id = "plain"
provider = "openai"
[accounts.credentials]
api_key = "${PLAIN_KEY}"
"#;

fn rotate_fixture(old: &MasterKey) -> String {
    ROTATE_CONFIG
        .replace("OPENAI", &old.encrypt("acme-openai", b"sk-admin-FAKE-1").unwrap())
        .replace("ANTHROPIC", &old.encrypt("acme-anthropic", b"sk-ant-FAKE-2").unwrap())
}

#[test]
fn vault_rotation_keeps_layout_and_reencrypts() {
    let (old, new) = (key1(), key2());
    let before = rotate_fixture(&old);
    let (after, report) = rotate_config_text(&before, &old, &new).unwrap();
    assert_eq!(
        report.rotated,
        vec![
            ("acme-openai".to_string(), "api_key".to_string()),
            ("acme-anthropic".to_string(), "api_key".to_string())
        ]
    );
    for comment in [
        "# top comment",
        "# kept",
        "# first",
        "# trailing comment",
        "${PLAIN_KEY}",
    ] {
        assert!(after.contains(comment), "{comment} lost:\n{after}");
    }
    // Only the two values changed, line for line.
    let changed: Vec<_> = before.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert_eq!(before.lines().count(), after.lines().count());
    let doc: toml::Value = toml::from_str(&after).unwrap();
    let accounts = doc["accounts"].as_array().unwrap();
    let v0 = accounts[0]["credentials"]["api_key"].as_str().unwrap();
    let v1 = accounts[1]["credentials"]["api_key"].as_str().unwrap();
    assert_eq!(new.decrypt("acme-openai", v0).unwrap().as_str(), "sk-admin-FAKE-1");
    assert_eq!(new.decrypt("acme-anthropic", v1).unwrap().as_str(), "sk-ant-FAKE-2");
    assert!(old.decrypt("acme-openai", v0).is_err());
    // Running it again finds everything already under the new key.
    let (again, report) = rotate_config_text(&after, &old, &new).unwrap();
    assert_eq!((again, report.rotated.len(), report.already_new.len()), (after, 0, 2));
}

#[test]
fn vault_rotation_fails_whole_and_names_every_bad_value() {
    let (old, new) = (key1(), key2());
    let third = MasterKey::parse(KEY_TEXT_B64, "test").unwrap();
    let text = ROTATE_CONFIG
        .replace("OPENAI", &third.encrypt("acme-openai", b"sk-FAKE").unwrap())
        .replace("ANTHROPIC", &old.encrypt("acme-openai", b"sk-FAKE").unwrap());
    let Err(RotateError::Values { problems }) = rotate_config_text(&text, &old, &new) else {
        panic!("rotation should fail");
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0]
            .starts_with("accounts[0] (id 'acme-openai'): credentials.api_key was encrypted with vault key 43edf2d3"),
        "{problems:?}"
    );
    assert!(
        problems[1].starts_with("accounts[1] (id 'acme-anthropic'): credentials.api_key does not decrypt"),
        "{problems:?}"
    );
}

#[test]
fn vault_rotating_a_file_keeps_its_mode_or_leaves_it_untouched() {
    let (old, new) = (key1(), key2());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokentra-sync.toml");
    std::fs::write(&path, rotate_fixture(&old)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let report = rotate_config_file(&path, &old, &new).unwrap();
    assert_eq!(report.rotated.len(), 2);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o640);
    let after = std::fs::read(&path).unwrap();
    // Rotating with the wrong old key fails and changes nothing.
    let third = MasterKey::parse(KEY_TEXT_B64, "test").unwrap();
    assert!(rotate_config_file(&path, &new, &third).is_ok());
    let rotated_again = std::fs::read(&path).unwrap();
    assert_ne!(rotated_again, after);
    assert!(rotate_config_file(&path, &old, &new).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), rotated_again);
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("tokentra-sync.toml")]);
}

#[test]
fn vault_atomic_write_keeps_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.toml");
    std::fs::write(&path, "a = 1\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    write_atomically(&path, b"a = 2\n").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = 2\n");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777, 0o600);
    assert!(write_atomically(&dir.path().join("missing.toml"), b"x").is_err());
}

#[test]
fn vault_webhook_secrets_decrypt_bound_to_the_webhook_id() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_key(dir.path(), "vault.key", KEY_TEXT_B64, 0o600);
    let key = load_key_file(&file).unwrap();
    let value = key.encrypt("finops", b"whsec-FAKE-vault").unwrap();
    let hook = |id: &str| {
        format!(
            "[vault]\nkey_file = \"{}\"\n[[webhooks]]\nid = \"{id}\"\nurl = \"https://h.example\"\nsecret = \"{value}\"\n",
            file.display()
        )
    };
    let config = load(&hook("finops"), &[]).unwrap();
    assert_eq!(config.webhooks[0].secret.expose(), "whsec-FAKE-vault");
    // Moved to another webhook, the value does not decrypt.
    let p = problems(&hook("other"), &[]);
    assert!(
        p[0].starts_with("webhooks[0] (id 'other'): secret does not decrypt"),
        "{p:?}"
    );
}
