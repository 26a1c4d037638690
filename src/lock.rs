//! One process owns an account at a time: an advisory lock file per account
//! under `state_dir/locks/`. The daemon holds its accounts' locks for its
//! lifetime; a one-shot `sync` takes them for its run and fails clearly when
//! a daemon owns the account. The OS drops the lock when a process dies, so a
//! crash never leaves an account locked.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "account '{account}' is owned by another running tokentra-sync (lock {path} is held); \
         stop it, or ask the daemon with POST /v1/accounts/{account}/sync"
    )]
    Held { account: String, path: PathBuf },
    #[error("cannot create lock {path} (is state_dir writable?): {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates `dir` (and missing parents) as 0700 and tightens it to 0700 if
/// it exists: it holds the account locks, which only the daemon's user may
/// take.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A held account lock; released on drop.
#[derive(Debug)]
pub struct AccountLock {
    file: File,
    path: PathBuf,
}

impl AccountLock {
    pub fn acquire(state_dir: &Path, account: &str) -> Result<Self, LockError> {
        let dir = state_dir.join("locks");
        let path = dir.join(format!("{account}.lock"));
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        private_dir(&dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        // A lock file created by an older release (or by hand) may be
        // readable or writable by others: any local user could take it.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io)?;
        match file.try_lock_exclusive() {
            Ok(true) => Ok(Self { file, path }),
            Ok(false) => Err(LockError::Held {
                account: account.to_string(),
                path,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(LockError::Held {
                account: account.to_string(),
                path,
            }),
            Err(e) => Err(io(e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AccountLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = AccountLock::acquire(dir.path(), "acme").unwrap();
        let err = AccountLock::acquire(dir.path(), "acme").unwrap_err();
        assert!(
            err.to_string()
                .contains("account 'acme' is owned by another running tokentra-sync"),
            "{err}"
        );
        assert!(AccountLock::acquire(dir.path(), "other").is_ok());
        drop(first);
        assert!(AccountLock::acquire(dir.path(), "acme").is_ok());
    }

    #[test]
    fn lock_files_and_their_directory_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // A lock file an older release left readable by everyone is tightened.
        let locks = dir.path().join("locks");
        std::fs::create_dir_all(&locks).unwrap();
        std::fs::set_permissions(&locks, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(locks.join("old.lock"), b"").unwrap();
        std::fs::set_permissions(locks.join("old.lock"), std::fs::Permissions::from_mode(0o666)).unwrap();
        let _new = AccountLock::acquire(dir.path(), "new").unwrap();
        let _old = AccountLock::acquire(dir.path(), "old").unwrap();
        assert_eq!(mode(&locks), 0o700);
        assert_eq!(mode(&locks.join("new.lock")), 0o600);
        assert_eq!(mode(&locks.join("old.lock")), 0o600);
    }
}
