//! An account's connection status, derived from facts the sync already has
//! (how its last sync ended, when it last succeeded), so the metric, the
//! `sync_runs` row, `/readyz` and the `status` command all say the same.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::providers::FailureKind;

/// Where an account stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionStatus {
    /// Started, no sync finished yet.
    Pending,
    /// The last sync succeeded.
    Connected,
    /// A sync is running.
    Syncing,
    /// The last sync failed (a typed reason is recorded); retried with backoff.
    Error,
    /// Credentials were rejected, or no sync has succeeded for
    /// [`DISCONNECTED_AFTER_INTERVALS`] intervals: someone has to act.
    Disconnected,
    /// The daemon stopped the account (shutdown, removed from config).
    Stopped,
    /// The account could not start (its lock is held, `state_dir` unusable).
    StartFailed,
}

/// Intervals without a success before an erroring account is disconnected.
pub const DISCONNECTED_AFTER_INTERVALS: u32 = 3;

impl ConnectionStatus {
    pub const ALL: [ConnectionStatus; 7] = [
        ConnectionStatus::Pending,
        ConnectionStatus::Connected,
        ConnectionStatus::Syncing,
        ConnectionStatus::Error,
        ConnectionStatus::Disconnected,
        ConnectionStatus::Stopped,
        ConnectionStatus::StartFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Pending => "pending",
            ConnectionStatus::Connected => "connected",
            ConnectionStatus::Syncing => "syncing",
            ConnectionStatus::Error => "error",
            ConnectionStatus::Disconnected => "disconnected",
            ConnectionStatus::Stopped => "stopped",
            ConnectionStatus::StartFailed => "start_failed",
        }
    }

    /// The status after a sync ended. `last_success` is the previous success
    /// (before this sync), `interval` the account's schedule.
    pub fn after_sync(
        failure: Option<FailureKind>,
        last_success: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        interval: Duration,
    ) -> Self {
        let Some(kind) = failure else {
            return ConnectionStatus::Connected;
        };
        if kind == FailureKind::Auth {
            return ConnectionStatus::Disconnected;
        }
        let limit = interval.saturating_mul(DISCONNECTED_AFTER_INTERVALS);
        match last_success {
            Some(at) if (now - at).to_std().unwrap_or(Duration::ZERO) > limit => ConnectionStatus::Disconnected,
            _ => ConnectionStatus::Error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_after_a_sync() {
        let now = Utc::now();
        let five = Duration::from_secs(300);
        let ago = |mins| Some(now - chrono::Duration::minutes(mins));
        use ConnectionStatus::*;
        assert_eq!(ConnectionStatus::after_sync(None, None, now, five), Connected);
        assert_eq!(
            ConnectionStatus::after_sync(Some(FailureKind::Auth), ago(1), now, five),
            Disconnected
        );
        assert_eq!(
            ConnectionStatus::after_sync(Some(FailureKind::ProviderServer), ago(10), now, five),
            Error
        );
        assert_eq!(
            ConnectionStatus::after_sync(Some(FailureKind::ProviderServer), ago(16), now, five),
            Disconnected
        );
        // Never succeeded: an error until someone looks, not disconnected.
        assert_eq!(
            ConnectionStatus::after_sync(Some(FailureKind::Timeout), None, now, five),
            Error
        );
    }
}
