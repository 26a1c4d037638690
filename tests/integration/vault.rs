//! The vault as users run it: the real binary's `vault` commands and
//! `check-config` on encrypted credentials. No ClickHouse needed.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tokentra_sync::vault::load_key_file;

/// The binary with an empty environment, so no vault key leaks in from the
/// machine running the tests.
fn bin(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tokentra-sync"));
    cmd.env_clear().env("TOKENTRA_LOG", "warn").args(args);
    cmd
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that refuses before reading stdin closes the pipe early.
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let out = run(&mut bin(&["vault", "keygen", "--out", path.to_str().unwrap()]), b"");
    assert!(out.status.success(), "{}", text(&out.stderr));
    path
}

/// `vault encrypt` of `secret` for `account`; returns the printed value.
fn encrypt(account: &str, key: &Path, secret: &str) -> String {
    let out = run(
        &mut bin(&[
            "vault",
            "encrypt",
            "--account",
            account,
            "--key-file",
            key.to_str().unwrap(),
        ]),
        format!("{secret}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim_end().to_string()
}

#[test]
fn vault_keygen_writes_a_private_key_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = keygen(dir.path(), "vault.key");
    assert_eq!(mode(&path), 0o600);
    let key_text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key_text.len(), 65, "64 hex digits and a newline");
    assert!(key_text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
    let key = load_key_file(&path).unwrap();
    // A second keygen to the same file is refused and changes nothing.
    let out = run(&mut bin(&["vault", "keygen", "--out", path.to_str().unwrap()]), b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("refusing to overwrite"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key_text);
    // Two keys differ; the key itself is never printed.
    let other = load_key_file(&keygen(dir.path(), "other.key")).unwrap();
    assert_ne!(key.id(), other.id());
}

#[test]
fn vault_encrypt_reads_the_secret_from_stdin_only() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = keygen(dir.path(), "vault.key");
    let key = load_key_file(&key_path).unwrap();
    let secret = "sk-admin-FAKE-from-stdin";
    let args = [
        "vault",
        "encrypt",
        "--account",
        "acme-openai",
        "--key-file",
        key_path.to_str().unwrap(),
    ];
    assert!(!args.iter().any(|a| a.contains(secret)));
    let out = run(&mut bin(&args), format!("{secret}\n").as_bytes());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains(secret) && !text(&out.stderr).contains(secret));
    assert!(!stdout.contains(key.to_hex().as_str()));
    let value = stdout.strip_suffix('\n').unwrap();
    assert!(!value.contains('\n'), "one line: {stdout:?}");
    assert!(value.starts_with(&format!("enc:v1:{}:", key.id())), "{value}");
    // One trailing newline was dropped, nothing else.
    assert_eq!(key.decrypt("acme-openai", value).unwrap().as_str(), secret);
    assert!(key.decrypt("acme-anthropic", value).is_err());
    // With the key from a config's [vault] key_file, and from the environment.
    let config = dir.path().join("tokentra-sync.toml");
    std::fs::write(&config, format!("[vault]\nkey_file = \"{}\"\n", key_path.display())).unwrap();
    let out = run(
        &mut bin(&[
            "vault",
            "encrypt",
            "--account",
            "acme-openai",
            "-c",
            config.to_str().unwrap(),
        ]),
        secret.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        key.decrypt("acme-openai", text(&out.stdout).trim_end())
            .unwrap()
            .as_str(),
        secret
    );
    let out = run(
        bin(&["vault", "encrypt", "--account", "acme-openai"]).env("TOKENTRA_VAULT_KEY", key.to_hex().as_str()),
        secret.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        key.decrypt("acme-openai", text(&out.stdout).trim_end())
            .unwrap()
            .as_str(),
        secret
    );
    // No key at all, an empty secret, a bad account id: clear refusals.
    let cases: [(&[&str], &[u8], &str); 3] = [
        (&["--account", "acme-openai"], b"sk-FAKE", "TOKENTRA_VAULT_KEY"),
        (
            &["--account", "acme-openai", "--key-file", key_path.to_str().unwrap()],
            b"\n",
            "is empty",
        ),
        (
            &["--account", "Acme OpenAI", "--key-file", key_path.to_str().unwrap()],
            b"sk-FAKE",
            "not an account id",
        ),
    ];
    for (extra, stdin, expected) in cases {
        let mut args = vec!["vault", "encrypt"];
        args.extend_from_slice(extra);
        let out = run(&mut bin(&args), stdin);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out.stderr).contains(expected), "{args:?}: {}", text(&out.stderr));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn vault_refuses_a_world_readable_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = keygen(dir.path(), "vault.key");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(
        &mut bin(&[
            "vault",
            "encrypt",
            "--account",
            "a",
            "--key-file",
            key_path.to_str().unwrap(),
        ]),
        b"sk-FAKE",
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("chmod 600 {}", key_path.display())),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

const CONFIG: &str = r#"# tokentra-sync test config (FAKE keys only)
[writer]
max_batch_rows = 5000   # small batches

[[accounts]]
id = "acme-openai"      # the first org
provider = "openai"
[accounts.credentials]
api_key = "OPENAI_VALUE"   # encrypted

[[accounts]]
id = "acme-anthropic"
provider = "anthropic"
lookback = "3d"
[accounts.credentials]
api_key = "ANTHROPIC_VALUE"

[[accounts]]
id = "beta-openai"
provider = "openai"
credentials = { api_key = "BETA_VALUE" }  # inline
"#;

/// The test config with each account's key encrypted with `key_path`.
fn encrypted_config(dir: &Path, key_path: &Path) -> PathBuf {
    let text = CONFIG
        .replace(
            "OPENAI_VALUE",
            &encrypt("acme-openai", key_path, "sk-admin-FAKE-openai"),
        )
        .replace(
            "ANTHROPIC_VALUE",
            &encrypt("acme-anthropic", key_path, "sk-ant-admin01-FAKE"),
        )
        .replace("BETA_VALUE", &encrypt("beta-openai", key_path, "sk-admin-FAKE-beta"));
    let path = dir.join("tokentra-sync.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    path
}

fn api_keys(config: &Path) -> Vec<(String, String)> {
    let doc: toml::Value = toml::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    doc["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_string(),
                a["credentials"]["api_key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn vault_rotate_reencrypts_every_account_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let old_path = keygen(dir.path(), "old.key");
    let new_path = keygen(dir.path(), "new.key");
    let (old, new) = (load_key_file(&old_path).unwrap(), load_key_file(&new_path).unwrap());
    let config = encrypted_config(dir.path(), &old_path);
    let before = std::fs::read_to_string(&config).unwrap();
    let rotate = |old: &Path, new: &Path| {
        run(
            &mut bin(&[
                "vault",
                "rotate",
                "--old",
                old.to_str().unwrap(),
                "--new",
                new.to_str().unwrap(),
                "-c",
                config.to_str().unwrap(),
            ]),
            b"",
        )
    };
    let out = rotate(&old_path, &new_path);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("3 value(s) re-encrypted"),
        "{}",
        text(&out.stdout)
    );
    let after = std::fs::read_to_string(&config).unwrap();
    assert_eq!(mode(&config), 0o640);
    for comment in [
        "# tokentra-sync test config",
        "# small batches",
        "# the first org",
        "# encrypted",
        "# inline",
    ] {
        assert!(after.contains(comment), "lost {comment}:\n{after}");
    }
    let changed = before.lines().zip(after.lines()).filter(|(a, b)| a != b).count();
    assert_eq!((changed, before.lines().count()), (3, after.lines().count()));
    let plain = ["sk-admin-FAKE-openai", "sk-ant-admin01-FAKE", "sk-admin-FAKE-beta"];
    for ((id, value), secret) in api_keys(&config).iter().zip(plain) {
        assert!(value.starts_with(&format!("enc:v1:{}:", new.id())), "{value}");
        assert_eq!(new.decrypt(id, value).unwrap().as_str(), secret);
        assert!(old.decrypt(id, value).is_err());
    }
    // Rotating from a key the values are not under fails, names every value,
    // and leaves the file byte for byte.
    let unrelated = keygen(dir.path(), "unrelated.key");
    let out = rotate(&old_path, &unrelated);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    for id in ["acme-openai", "acme-anthropic", "beta-openai"] {
        assert!(
            stderr.contains(&format!(
                "(id '{id}'): credentials.api_key was encrypted with vault key {}",
                new.id()
            )),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&config).unwrap(), after);
    assert_eq!(mode(&config), 0o640);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 4, "3 keys and the config, no temporary file: {names:?}");
}

#[test]
fn vault_check_config_decrypts_with_the_key_and_explains_without() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = keygen(dir.path(), "vault.key");
    let key = load_key_file(&key_path).unwrap();
    let config = encrypted_config(dir.path(), &key_path);
    let check = |cmd: &mut Command| run(cmd, b"");
    let args = ["check-config", "-c", config.to_str().unwrap()];
    // From the environment.
    let out = check(bin(&args).env("TOKENTRA_VAULT_KEY", key.to_hex().as_str()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ok, 3 account(s)") && stdout.contains("acme-anthropic"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAKE"), "{stdout}");
    // From systemd's credentials directory.
    let creds = tempfile::tempdir().unwrap();
    std::fs::copy(&key_path, creds.path().join("master.key")).unwrap();
    let out = check(bin(&args).env("CREDENTIALS_DIRECTORY", creds.path()));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // From [vault] key_file, overridden from the environment.
    let out = check(bin(&args).env("TOKENTRA__VAULT__KEY_FILE", &key_path));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Without a key: every encrypted field is named, and the three ways.
    let out = check(&mut bin(&args));
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for id in ["acme-openai", "acme-anthropic", "beta-openai"] {
        assert!(
            stderr.contains(&format!(
                "(id '{id}'): credentials.api_key is encrypted, but no vault key was found"
            )),
            "{stderr}"
        );
    }
    for way in [
        "$CREDENTIALS_DIRECTORY/master.key",
        "[vault] key_file",
        "TOKENTRA_VAULT_KEY",
    ] {
        assert!(stderr.contains(way), "{stderr}");
    }
    // A world-readable key file is refused.
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = check(bin(&args).env("TOKENTRA__VAULT__KEY_FILE", &key_path));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("chmod 600 {}", key_path.display())),
        "{}",
        text(&out.stderr)
    );
    // The wrong key names the key each value needs.
    let other = load_key_file(&keygen(dir.path(), "other.key")).unwrap();
    let out = check(bin(&args).env("TOKENTRA_VAULT_KEY", other.to_hex().as_str()));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains(&format!("encrypted with vault key {}", key.id())),
        "{}",
        text(&out.stderr)
    );
}
