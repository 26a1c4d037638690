//! The days whose rollup must be verified before an account's next sync may
//! report success, kept in memory and in a small file under `state_dir`
//! (`rollup-verify/<account>`), so a daemon killed between an uncertain
//! insert and its verify still repairs `usage_daily` on the next start, and
//! a one-shot `sync` after it does too.

use std::path::PathBuf;
use std::sync::Mutex;

/// A pending range of days `[start, end)` in UTC seconds.
pub type DayRange = (u32, u32);

#[derive(Debug, Default)]
pub struct PendingVerify {
    /// `None`: in memory only (tests).
    path: Option<PathBuf>,
    range: Mutex<Option<DayRange>>,
}

impl PendingVerify {
    /// Loads the account's pending range, if a file says there is one.
    pub fn load(state_dir: &std::path::Path, account: &str) -> Self {
        let path = state_dir.join("rollup-verify").join(account);
        let range = std::fs::read_to_string(&path).ok().and_then(|text| {
            let mut parts = text.split_whitespace().map(str::parse::<u32>);
            match (parts.next(), parts.next()) {
                (Some(Ok(start)), Some(Ok(end))) if start < end => Some((start, end)),
                _ => None,
            }
        });
        Self {
            path: Some(path),
            range: Mutex::new(range),
        }
    }

    pub fn get(&self) -> Option<DayRange> {
        *self.range.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds `days` to the pending range and writes it down before returning.
    pub fn widen(&self, days: DayRange) {
        let mut range = self.range.lock().unwrap_or_else(|p| p.into_inner());
        let widened = match *range {
            Some((start, end)) => (start.min(days.0), end.max(days.1)),
            None => days,
        };
        *range = Some(widened);
        if let Some(path) = &self.path {
            let write = || -> std::io::Result<()> {
                if let Some(dir) = path.parent() {
                    crate::lock::private_dir(dir)?;
                }
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, format!("{} {}\n", widened.0, widened.1))?;
                std::fs::rename(&tmp, path)
            };
            if let Err(err) = write() {
                // Memory still holds it: this process verifies it anyway.
                tracing::warn!(path = %path.display(), error = %err, "cannot record days to verify");
            }
        }
    }

    /// Clears the range once `verified` (what was read before verifying) is
    /// done; a range widened meanwhile stays.
    pub fn clear(&self, verified: DayRange) {
        let mut range = self.range.lock().unwrap_or_else(|p| p.into_inner());
        if *range == Some(verified) {
            *range = None;
            if let Some(path) = &self.path {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_range_survives_a_restart_and_clears_once_verified() {
        let dir = tempfile::tempdir().unwrap();
        let pending = PendingVerify::load(dir.path(), "acct");
        assert_eq!(pending.get(), None);
        pending.widen((86_400, 172_800));
        pending.widen((0, 86_400));
        let reloaded = PendingVerify::load(dir.path(), "acct");
        assert_eq!(reloaded.get(), Some((0, 172_800)));
        reloaded.clear((0, 86_400));
        assert_eq!(reloaded.get(), Some((0, 172_800)), "only what was verified is cleared");
        reloaded.clear((0, 172_800));
        assert_eq!(PendingVerify::load(dir.path(), "acct").get(), None);
    }
}
