//! `tokentra-sync vault ...`: keygen, encrypt, rotate.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Read, Write};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use zeroize::Zeroizing;

use super::rotate::{rotate_config_file, RotateError};
use super::{config_key_file, load_key_file, resolve_key, valid_account_id, KeyError, MasterKey, VaultError};

/// The longest secret `vault encrypt` accepts on stdin.
const MAX_SECRET_LEN: u64 = 1 << 20;

#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Write a new random 32-byte key (64 hex digits and a newline) to FILE,
    /// mode 0600; never overwrites.
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Encrypt one credential for one account: reads the secret from stdin
    /// (one trailing newline is dropped) and prints its enc:v1: value.
    Encrypt {
        /// The id of the account the value is for (it is bound to it).
        #[arg(long)]
        account: String,
        /// Take the key as the daemon would with this config
        /// ($CREDENTIALS_DIRECTORY/master.key, [vault] key_file, TOKENTRA_VAULT_KEY).
        #[arg(short, long, conflicts_with = "key_file")]
        config: Option<PathBuf>,
        /// Take the key from this file.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Re-encrypt every enc: value of a config file from the old key to the
    /// new one, in place and atomically; on any failure the file is untouched.
    Rotate {
        #[arg(long, value_name = "KEYFILE")]
        old: PathBuf,
        #[arg(long, value_name = "KEYFILE")]
        new: PathBuf,
        #[arg(short, long)]
        config: PathBuf,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Rotate(#[from] RotateError),
    #[error("cannot encrypt: {0}")]
    Encrypt(#[from] VaultError),
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// Runs a vault command with the given environment; returns the exit code.
pub fn run(command: VaultCommand, env: &BTreeMap<String, String>) -> Result<i32, CommandError> {
    let mut stdout = std::io::stdout().lock();
    let io = |what: String| move |source: std::io::Error| CommandError::Io { what, source };
    match command {
        VaultCommand::Keygen { out } => {
            let key = keygen(&out)?;
            writeln!(stdout, "wrote vault key {} to {}", key.id(), out.display())
                .map_err(io("cannot write to stdout".into()))?;
        }
        VaultCommand::Encrypt {
            account,
            config,
            key_file,
        } => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("type the secret, then Enter and Ctrl-D (it is echoed; prefer a pipe)");
            }
            let value = encrypt(&account, config.as_deref(), key_file.as_deref(), env, &mut stdin.lock())?;
            writeln!(stdout, "{value}").map_err(io("cannot write to stdout".into()))?;
        }
        VaultCommand::Rotate { old, new, config } => {
            let old_key = load_key_file(&old)?;
            let new_key = load_key_file(&new)?;
            let report = rotate_config_file(&config, &old_key, &new_key)?;
            writeln!(
                stdout,
                "{}: {} value(s) re-encrypted from key {} to key {}{}",
                config.display(),
                report.rotated.len(),
                old_key.id(),
                new_key.id(),
                if report.already_new.is_empty() {
                    String::new()
                } else {
                    format!(", {} already under the new key", report.already_new.len())
                }
            )
            .map_err(io("cannot write to stdout".into()))?;
            for (account, field) in &report.rotated {
                writeln!(stdout, "  {account}: credentials.{field}").map_err(io("cannot write to stdout".into()))?;
            }
        }
    }
    Ok(0)
}

/// Writes a new key to `out` (mode 0600, never overwriting) and returns it.
pub fn keygen(out: &Path) -> Result<MasterKey, CommandError> {
    let key = MasterKey::generate();
    let io = |source: std::io::Error| CommandError::Io {
        what: if source.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{} already exists; refusing to overwrite a key file", out.display())
        } else {
            format!("cannot write key file {}", out.display())
        },
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(io)?;
    let written = (|| {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(key.to_hex().as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()
    })();
    if let Err(source) = written {
        let _ = std::fs::remove_file(out);
        return Err(io(source));
    }
    Ok(key)
}

/// Reads the secret from `input` and encrypts it for `account`.
pub fn encrypt(
    account: &str,
    config: Option<&Path>,
    key_file: Option<&Path>,
    env: &BTreeMap<String, String>,
    input: &mut dyn Read,
) -> Result<String, CommandError> {
    if !valid_account_id(account) {
        return Err(CommandError::Usage(format!(
            "--account '{account}' is not an account id (a-z, 0-9, '-' and '_', at most 64 characters)"
        )));
    }
    let key = match key_file {
        Some(path) => load_key_file(path)?,
        None => {
            let from_config = match config {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|source| CommandError::Io {
                        what: format!("cannot read config file {}", path.display()),
                        source,
                    })?;
                    config_key_file(&text, path, env).map_err(CommandError::Usage)?
                }
                None => None,
            };
            match resolve_key(from_config.as_deref(), env)? {
                Some((key, _)) => key,
                None => {
                    return Err(CommandError::Usage(format!(
                        "no vault key: pass --key-file FILE, or {}",
                        super::KEY_SOURCES_HELP
                    )))
                }
            }
        }
    };
    let secret = read_secret(input)?;
    Ok(key.encrypt(account, secret.as_bytes())?)
}

/// All of `input`, less one trailing newline (`\n` or `\r\n`).
fn read_secret(input: &mut dyn Read) -> Result<Zeroizing<String>, CommandError> {
    // Room for any usual secret, so growing does not leave copies behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(8192));
    input
        .take(MAX_SECRET_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| CommandError::Io {
            what: "cannot read the secret from stdin".into(),
            source,
        })?;
    if bytes.len() as u64 > MAX_SECRET_LEN {
        return Err(CommandError::Usage("the secret on stdin is longer than 1 MiB".into()));
    }
    let mut text = Zeroizing::new(
        std::str::from_utf8(&bytes)
            .map_err(|_| CommandError::Usage("the secret on stdin is not UTF-8 text".into()))?
            .to_string(),
    );
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(CommandError::Usage(
            "the secret on stdin is empty; pipe it in, e.g. `printf %s \"$KEY\" | tokentra-sync vault encrypt --account ID ...`"
                .into(),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_read_secret_strips_one_newline_only() {
        let read = |s: &str| read_secret(&mut s.as_bytes()).map(|t| t.as_str().to_string());
        assert_eq!(read("sk-FAKE\n").unwrap(), "sk-FAKE");
        assert_eq!(read("sk-FAKE\r\n").unwrap(), "sk-FAKE");
        assert_eq!(read("sk-FAKE\n\n").unwrap(), "sk-FAKE\n");
        assert_eq!(read("sk-FAKE").unwrap(), "sk-FAKE");
        assert!(read("\n").is_err());
        assert!(read("").is_err());
    }
}
