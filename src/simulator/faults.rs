//! Fault switches: the next provider requests fail in a fixed order (rate
//! limits, then server errors, then truncated bodies, then slow answers,
//! then hanging ones, then expired-credential answers), so tests can drive
//! the daemon's retry path deterministically. Counters are global across
//! orgs.

use serde::{Deserialize, Serialize};

/// What `POST /_sim/faults` accepts (and [`super::SimHandle::set_faults`]).
/// Setting a plan replaces the counters still pending.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// Requests answered 429 with `Retry-After`.
    #[serde(default)]
    pub rate_limit: u32,
    /// Requests answered 500 (after the 429s).
    #[serde(default)]
    pub server_error: u32,
    /// Requests answered 200 with the body cut in half (after the 500s).
    #[serde(default)]
    pub truncate: u32,
    /// The `Retry-After` value in seconds (default 1).
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
    /// Requests answered correctly but only after `slow_ms` (default 2000).
    #[serde(default)]
    pub slow: u32,
    #[serde(default)]
    pub slow_ms: Option<u64>,
    /// Requests never answered: the connection is held for `hang_secs`
    /// (default 3600) without a byte.
    #[serde(default)]
    pub hang: u32,
    #[serde(default)]
    pub hang_secs: Option<u64>,
    /// Requests answered 401 as if the credential had just expired (a
    /// refreshable token gets a new one; a static key fails its account).
    #[serde(default)]
    pub expired: u32,
}

/// A fault one org has on every request, for as long as it is set: the
/// fault-mix benchmark breaks a share of accounts in different ways while the
/// rest must sync as usual (`POST /_sim/org-faults`, `simulate --broken`).
/// A bad key needs no fault: the account is configured with a wrong key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgFault {
    /// Every request answered 500 in the provider's error format.
    ServerError,
    /// Every request held without a byte (until the client gives up).
    Hang,
    /// Every authorized request answered 200 with JSON that is not the
    /// provider's documented page shape.
    Malformed,
}

impl OrgFault {
    /// The fault one request of the org gets.
    pub(crate) fn fault(self) -> Fault {
        match self {
            OrgFault::ServerError => Fault::ServerError,
            OrgFault::Hang => Fault::Hang { secs: 3_600 },
            OrgFault::Malformed => Fault::Malformed,
        }
    }
}

impl std::str::FromStr for OrgFault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        serde_json::from_value(serde_json::Value::String(text.to_string()))
            .map_err(|_| format!("unknown org fault '{text}' (known: server_error, hang, malformed)"))
    }
}

/// The fault to apply to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    RateLimit { retry_after: u64 },
    ServerError,
    Truncate,
    Slow { ms: u64 },
    Hang { secs: u64 },
    Expired,
    Malformed,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    pending: FaultPlan,
}

impl Faults {
    pub fn set(&mut self, plan: FaultPlan) {
        self.pending = plan;
    }

    pub fn pending(&self) -> FaultPlan {
        self.pending.clone()
    }

    /// Takes the next fault, if any is pending.
    pub fn next(&mut self) -> Option<Fault> {
        let p = &mut self.pending;
        if p.rate_limit > 0 {
            p.rate_limit -= 1;
            Some(Fault::RateLimit {
                retry_after: p.retry_after_secs.unwrap_or(1),
            })
        } else if p.server_error > 0 {
            p.server_error -= 1;
            Some(Fault::ServerError)
        } else if p.truncate > 0 {
            p.truncate -= 1;
            Some(Fault::Truncate)
        } else if p.slow > 0 {
            p.slow -= 1;
            Some(Fault::Slow {
                ms: p.slow_ms.unwrap_or(2_000),
            })
        } else if p.hang > 0 {
            p.hang -= 1;
            Some(Fault::Hang {
                secs: p.hang_secs.unwrap_or(3_600),
            })
        } else if p.expired > 0 {
            p.expired -= 1;
            Some(Fault::Expired)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_faults_parse_from_their_names() {
        assert_eq!("hang".parse::<OrgFault>(), Ok(OrgFault::Hang));
        assert_eq!("server_error".parse::<OrgFault>(), Ok(OrgFault::ServerError));
        assert!("bad_key"
            .parse::<OrgFault>()
            .unwrap_err()
            .contains("known: server_error"));
    }

    #[test]
    fn faults_fire_in_order_then_stop() {
        let mut f = Faults::default();
        f.set(FaultPlan {
            rate_limit: 1,
            server_error: 2,
            truncate: 1,
            retry_after_secs: Some(3),
            slow: 1,
            slow_ms: Some(5),
            hang: 1,
            hang_secs: None,
            expired: 1,
        });
        assert_eq!(f.next(), Some(Fault::RateLimit { retry_after: 3 }));
        assert_eq!(f.next(), Some(Fault::ServerError));
        assert_eq!(f.next(), Some(Fault::ServerError));
        assert_eq!(f.next(), Some(Fault::Truncate));
        assert_eq!(f.next(), Some(Fault::Slow { ms: 5 }));
        assert_eq!(f.next(), Some(Fault::Hang { secs: 3_600 }));
        assert_eq!(f.next(), Some(Fault::Expired));
        assert_eq!(f.next(), None);
        assert_eq!(
            f.pending(),
            FaultPlan {
                retry_after_secs: Some(3),
                slow_ms: Some(5),
                ..FaultPlan::default()
            }
        );
    }
}
