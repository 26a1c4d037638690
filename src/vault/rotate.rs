//! Key rotation: re-encrypts every `enc:` value under `accounts[*].credentials`
//! of a config file from an old key to a new one, editing the TOML text in
//! place (comments, order and layout survive) and replacing the file
//! atomically.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, TableLike, Value};

use super::{is_encrypted, EncValue, MasterKey, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("the config is not valid TOML: {0}")]
    Syntax(String),
    /// Every value that could not be rotated, each naming the account and field.
    #[error("nothing was changed; these values could not be rotated:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Values { problems: Vec<String> },
    #[error("cannot replace {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RotateReport {
    /// `(account id, field)` of every value re-encrypted with the new key.
    pub rotated: Vec<(String, String)>,
    /// Values that were already under the new key (checked, left as they are).
    pub already_new: Vec<(String, String)>,
}

/// Rotates the config `text` and returns the new text. Values under the old
/// key are re-encrypted with the new one (fresh nonces); values already under
/// the new key must decrypt with it and are kept. Anything else fails the
/// whole rotation, with one problem per value.
pub fn rotate_config_text(text: &str, old: &MasterKey, new: &MasterKey) -> Result<(String, RotateReport), RotateError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| RotateError::Syntax(e.to_string()))?;
    let mut report = RotateReport::default();
    let mut problems = Vec::new();
    if let Some(accounts) = doc.get_mut("accounts") {
        match accounts {
            Item::ArrayOfTables(tables) => {
                for (index, table) in tables.iter_mut().enumerate() {
                    rotate_account(index, table, old, new, &mut report, &mut problems);
                }
            }
            Item::Value(Value::Array(items)) => {
                for (index, item) in items.iter_mut().enumerate() {
                    if let Some(table) = item.as_inline_table_mut() {
                        rotate_account(index, table, old, new, &mut report, &mut problems);
                    }
                }
            }
            _ => {}
        }
    }
    if !problems.is_empty() {
        return Err(RotateError::Values { problems });
    }
    Ok((doc.to_string(), report))
}

fn rotate_account(
    index: usize,
    account: &mut dyn TableLike,
    old: &MasterKey,
    new: &MasterKey,
    report: &mut RotateReport,
    problems: &mut Vec<String>,
) {
    let id = account.get("id").and_then(Item::as_str).map(str::to_string);
    let label = match &id {
        Some(id) => format!("accounts[{index}] (id '{id}')"),
        None => format!("accounts[{index}]"),
    };
    let Some(credentials) = account.get_mut("credentials").and_then(Item::as_table_like_mut) else {
        return;
    };
    for (field, item) in credentials.iter_mut() {
        let Some(Value::String(formatted)) = item.as_value_mut() else {
            continue;
        };
        let value = formatted.value();
        if !is_encrypted(value) {
            continue;
        }
        let field = field.get().to_string();
        let Some(id) = id.as_deref().filter(|id| !id.contains('$')) else {
            problems.push(format!(
                "{label}: credentials.{field} is encrypted, but the account has no literal id to decrypt it with"
            ));
            continue;
        };
        let key_id = EncValue::parse(value).map(|v| v.key_id.to_string());
        let result = match key_id {
            Err(err) => Err(err),
            Ok(k) if k == new.id().as_str() && k != old.id().as_str() => match new.decrypt(id, value) {
                Ok(_) => {
                    report.already_new.push((id.to_string(), field));
                    continue;
                }
                Err(err) => Err(err),
            },
            Ok(k) if k != old.id().as_str() => Err(VaultError::WrongKey {
                value_key: k,
                loaded_key: format!("{} (old) or {} (new)", old.id(), new.id()),
            }),
            Ok(_) => old
                .decrypt(id, value)
                .and_then(|plaintext| new.encrypt(id, plaintext.as_bytes())),
        };
        match result {
            Ok(encrypted) => {
                let decor = formatted.decor().clone();
                let mut replacement = toml_edit::Formatted::new(encrypted);
                *replacement.decor_mut() = decor;
                *formatted = replacement;
                report.rotated.push((id.to_string(), field));
            }
            Err(err) => problems.push(format!("{label}: credentials.{field} {err}")),
        }
    }
}

/// Rotates the config file at `path` in place: on any problem the file is
/// left untouched. Returns what was rotated.
pub fn rotate_config_file(path: &Path, old: &MasterKey, new: &MasterKey) -> Result<RotateReport, RotateError> {
    let io = |source| RotateError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Write through a symlink to its target rather than replacing the link.
    let path = std::fs::canonicalize(path).map_err(io)?;
    let text = std::fs::read_to_string(&path).map_err(io)?;
    let (rotated, report) = rotate_config_text(&text, old, new)?;
    if !report.rotated.is_empty() {
        write_atomically(&path, rotated.as_bytes()).map_err(|source| RotateError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(report)
}

/// Replaces `path` with `contents`: a temporary file in the same directory
/// with the original's mode (and owner, when it differs and we may), fsync,
/// rename over the original, fsync the directory. On error the original is
/// untouched and the temporary file removed.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o7777;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if (meta.uid(), meta.gid()) != (file.metadata()?.uid(), file.metadata()?.gid()) {
            std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))?;
        }
        // Explicitly, since the umask applies to `mode` above.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
