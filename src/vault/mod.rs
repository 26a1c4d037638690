//! Encrypted credentials: `enc:v1:<key-id>:<base64(nonce || ciphertext+tag)>`.
//!
//! - AES-256-GCM with a random 96-bit nonce per value.
//! - The account id is the associated data: a value copied to another
//!   account does not decrypt.
//! - `<key-id>` is the first 8 hex digits of SHA-256 over the 32 key bytes,
//!   so a value names the key it needs and keys can rotate
//!   ([`rotate`]).
//! - base64 is the standard alphabet with padding.
//!
//! The master key comes from, in this order: `$CREDENTIALS_DIRECTORY/master.key`
//! (systemd `LoadCredential=`), `[vault] key_file`, then the environment
//! variable `TOKENTRA_VAULT_KEY` (the key text itself). A key is 64 hex
//! digits (what `tokentra-sync vault keygen` writes) or the base64 of 32
//! bytes; surrounding whitespace is ignored. See `docs/security.md`.
//!
//! Nothing here panics on any input, and no error message contains a key or
//! a plaintext.

pub mod command;
mod config;
pub mod rotate;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub use command::VaultCommand;
pub use config::{config_key_file, decrypt_config_credentials};

/// Every encrypted value starts with this.
pub const ENC_PREFIX: &str = "enc:";
/// The only version this release writes and reads.
pub const V1_PREFIX: &str = "enc:v1:";
/// The environment variable holding the key text itself.
pub const KEY_ENV: &str = "TOKENTRA_VAULT_KEY";
/// Set by systemd when the unit has `LoadCredential=`.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";
/// The credential name the daemon reads from `$CREDENTIALS_DIRECTORY`.
pub const SYSTEMD_CREDENTIAL: &str = "master.key";
/// How a user can provide the key, for error messages.
pub const KEY_SOURCES_HELP: &str = "provide the vault key as $CREDENTIALS_DIRECTORY/master.key \
     (systemd LoadCredential=master.key:FILE), as [vault] key_file = \"FILE\" in the config, \
     or as the key text in the environment variable TOKENTRA_VAULT_KEY";

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const KEY_ID_LEN: usize = 8;
/// A key file is a line of text; anything longer is not a key.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// Why an `enc:` value cannot be used. Messages follow the field name, as in
/// "credentials.api_key {error}", and never contain the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("is not an encrypted value (expected enc:v1:<key-id>:<base64>)")]
    NotEncrypted,
    #[error("uses encryption format '{version}', but this release only reads enc:v1 values")]
    UnknownVersion { version: String },
    #[error("is not a valid enc:v1 value: {reason} (expected enc:v1:<key-id>:<base64>)")]
    Malformed { reason: &'static str },
    #[error("is not a valid enc:v1 value: its payload is not valid base64 ({detail})")]
    BadBase64 { detail: String },
    #[error("is truncated: its payload has {len} bytes, but a nonce and a tag alone take {min}")]
    Truncated { len: usize, min: usize },
    #[error(
        "was encrypted with vault key {value_key}, but the loaded key is {loaded_key}; \
         provide key {value_key}, or re-encrypt with `tokentra-sync vault rotate`"
    )]
    WrongKey { value_key: String, loaded_key: String },
    #[error(
        "does not decrypt with vault key {key_id}: it was encrypted for another account, \
         or it was altered or truncated"
    )]
    Decrypt { key_id: String },
    #[error("decrypts to bytes that are not UTF-8 text")]
    NotUtf8,
    #[error("cannot be encrypted: the secret is too long")]
    TooLong,
}

/// Why a master key could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read vault key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vault key file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error(
        "vault key file {path} is readable by group or others (mode {mode:04o}); run: chmod 600 {path}",
        path = .path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("{what} is not a vault key: expected 64 hex digits (as `tokentra-sync vault keygen` writes) or the base64 of 32 bytes")]
    Format { what: String },
}

/// The first 8 hex digits of SHA-256 over the key bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// A 256-bit master key. `Debug` shows only its id; the bytes are zeroized
/// on drop.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: KeyId,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id {}, ***)", self.id)
    }
}

impl MasterKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let key = Aes256Gcm::generate_key(&mut OsRng);
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(&key);
        Self::from_bytes(bytes)
    }

    pub fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let digest = Sha256::digest(bytes.as_slice());
        let id = KeyId(hex(&digest[..KEY_ID_LEN / 2]));
        MasterKey { bytes, id }
    }

    /// Parses key text: 64 hex digits or the base64 of 32 bytes, with
    /// surrounding whitespace ignored. `what` names the source in the error.
    pub fn parse(text: &str, what: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        let ok = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            for (i, out) in bytes.iter_mut().enumerate() {
                // The slice is two ASCII hex digits, checked above.
                *out = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
            true
        } else {
            let mut decoded = Zeroizing::new(Vec::new());
            base64::engine::general_purpose::STANDARD
                .decode_vec(text, &mut decoded)
                .is_ok()
                && decoded.len() == KEY_LEN
                && {
                    bytes.copy_from_slice(&decoded);
                    true
                }
        };
        if ok {
            Ok(Self::from_bytes(bytes))
        } else {
            Err(KeyError::Format { what: what.to_string() })
        }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The key as 64 lowercase hex digits (the key file format).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex(self.bytes.as_slice()))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.bytes.as_slice()))
    }

    /// Encrypts `plaintext` for `account_id` with a fresh random nonce.
    pub fn encrypt(&self, account_id: &str, plaintext: &[u8]) -> Result<String, VaultError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: account_id.as_bytes(),
                },
            )
            .map_err(|_| VaultError::TooLong)?;
        let mut payload = Vec::with_capacity(NONCE_LEN + sealed.len());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(&sealed);
        Ok(format!(
            "{V1_PREFIX}{}:{}",
            self.id,
            base64::engine::general_purpose::STANDARD.encode(payload)
        ))
    }

    /// Decrypts an `enc:v1:` value written for `account_id` with this key.
    pub fn decrypt(&self, account_id: &str, value: &str) -> Result<Zeroizing<String>, VaultError> {
        let parsed = EncValue::parse(value)?;
        if parsed.key_id != self.id.as_str() {
            return Err(VaultError::WrongKey {
                value_key: parsed.key_id.to_string(),
                loaded_key: self.id.to_string(),
            });
        }
        let (nonce, sealed) = parsed.payload.split_at(NONCE_LEN);
        let plaintext = Zeroizing::new(
            self.cipher()
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: account_id.as_bytes(),
                    },
                )
                .map_err(|_| VaultError::Decrypt {
                    key_id: self.id.to_string(),
                })?,
        );
        let text = std::str::from_utf8(&plaintext).map_err(|_| VaultError::NotUtf8)?;
        Ok(Zeroizing::new(text.to_string()))
    }
}

/// A syntactically valid `enc:v1:` value, not yet decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncValue<'a> {
    /// 8 lowercase hex digits.
    pub key_id: &'a str,
    /// nonce (12 bytes) || ciphertext || tag (16 bytes).
    pub payload: Vec<u8>,
}

impl<'a> EncValue<'a> {
    pub fn parse(value: &'a str) -> Result<Self, VaultError> {
        let Some(rest) = value.strip_prefix(ENC_PREFIX) else {
            return Err(VaultError::NotEncrypted);
        };
        let Some(rest) = rest.strip_prefix("v1:") else {
            let version: String = rest.split(':').next().unwrap_or("").chars().take(16).collect();
            return Err(VaultError::UnknownVersion {
                version: version.escape_debug().to_string(),
            });
        };
        let Some((key_id, encoded)) = rest.split_once(':') else {
            return Err(VaultError::Malformed {
                reason: "the key id and the payload must be separated by ':'",
            });
        };
        let key_id_ok =
            key_id.len() == KEY_ID_LEN && key_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !key_id_ok {
            return Err(VaultError::Malformed {
                reason: "the key id must be 8 lowercase hex digits",
            });
        }
        let payload = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| VaultError::BadBase64 { detail: e.to_string() })?;
        let min = NONCE_LEN + TAG_LEN;
        if payload.len() < min {
            return Err(VaultError::Truncated {
                len: payload.len(),
                min,
            });
        }
        Ok(EncValue { key_id, payload })
    }
}

/// Whether a config string is meant to be an encrypted value.
pub fn is_encrypted(value: &str) -> bool {
    value.starts_with(ENC_PREFIX)
}

/// Whether `id` is a valid account id (the rule `check-config` applies), so
/// `vault encrypt` refuses a value no account could decrypt.
pub fn valid_account_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Where a master key came from (for messages; never the key itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    SystemdCredential(PathBuf),
    KeyFile(PathBuf),
    Env,
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::SystemdCredential(p) => write!(f, "systemd credential {}", p.display()),
            KeySource::KeyFile(p) => write!(f, "key file {}", p.display()),
            KeySource::Env => write!(f, "environment variable {KEY_ENV}"),
        }
    }
}

/// Finds the master key: `$CREDENTIALS_DIRECTORY/master.key` if that file
/// exists, else `key_file` (from `[vault] key_file`) if set, else
/// `TOKENTRA_VAULT_KEY` if set and not empty. `Ok(None)` when there is none.
pub fn resolve_key(
    key_file: Option<&Path>,
    env: &BTreeMap<String, String>,
) -> Result<Option<(MasterKey, KeySource)>, KeyError> {
    if let Some(dir) = env.get(CREDENTIALS_DIRECTORY_ENV).filter(|d| !d.is_empty()) {
        let path = Path::new(dir).join(SYSTEMD_CREDENTIAL);
        if std::fs::symlink_metadata(&path).is_ok() {
            let key = load_key_file(&path)?;
            return Ok(Some((key, KeySource::SystemdCredential(path))));
        }
    }
    if let Some(path) = key_file {
        let key = load_key_file(path)?;
        return Ok(Some((key, KeySource::KeyFile(path.to_path_buf()))));
    }
    if let Some(text) = env.get(KEY_ENV).filter(|t| !t.trim().is_empty()) {
        let key = MasterKey::parse(text, &format!("the environment variable {KEY_ENV}"))?;
        return Ok(Some((key, KeySource::Env)));
    }
    Ok(None)
}

/// Reads a key file: a regular file, not readable by group or others, of
/// key text.
pub fn load_key_file(path: &Path) -> Result<MasterKey, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    // stat before open: opening a FIFO would block.
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let file = std::fs::File::open(path).map_err(io)?;
    // Checked again on the opened file, in case it was swapped meanwhile.
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
    file.take(MAX_KEY_FILE_LEN + 1).read_to_end(&mut text).map_err(io)?;
    let what = format!("vault key file {}", path.display());
    if text.len() as u64 > MAX_KEY_FILE_LEN {
        return Err(KeyError::Format { what });
    }
    let text = std::str::from_utf8(&text).map_err(|_| KeyError::Format { what: what.clone() })?;
    MasterKey::parse(text, &what)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests;
