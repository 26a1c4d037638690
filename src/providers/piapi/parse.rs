//! PiAPI's `GET /account/info` answer and the derived-spend bookkeeping.
//!
//! Answer (PiAPI wraps results as `{code, data, message}`; a bare object is
//! read too): `{account_name, account_id, credits, equivalent_in_usd}`. Only
//! `equivalent_in_usd` is used as money, read from its exact JSON text.

use crate::providers::json::Json;
use rust_decimal::Decimal;

use crate::providers::json::{self, JsonError};

/// One balance reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Reading {
    pub account_id: String,
    pub balance_usd: Decimal,
}

pub(super) fn reading(body: &Json) -> Result<Reading, JsonError> {
    let top = json::object(body, "the response")?;
    let data = match top.get("data") {
        Some(data @ Json::Object(_)) => json::object(data, "data")?,
        _ => top,
    };
    let balance_usd = match data.get("equivalent_in_usd") {
        Some(value) if !value.is_null() => json::decimal(value, "equivalent_in_usd")?,
        _ => return Err(JsonError("field 'equivalent_in_usd' is missing".into())),
    };
    Ok(Reading {
        account_id: json::str_field(data, "account_id"),
        balance_usd,
    })
}

/// What one process has seen of the balance since its session began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Session {
    /// Minute of the session's first reading: the bucket of its record.
    pub start: chrono::DateTime<chrono::Utc>,
    /// The balance the session's falls are measured from.
    pub first: Decimal,
    pub last: Decimal,
    /// Sum of every fall between consecutive readings: the derived spend.
    pub spent: Decimal,
    /// Sum of every rise (top-ups): never spend, kept for audit.
    pub topped_up: Decimal,
}

impl Session {
    /// A session that begins with `balance` (no spend yet) or, across a
    /// UTC midnight, from the previous session's last reading.
    pub fn begin(start: chrono::DateTime<chrono::Utc>, baseline: Decimal) -> Self {
        Session {
            start,
            first: baseline,
            last: baseline,
            spent: Decimal::ZERO,
            topped_up: Decimal::ZERO,
        }
    }

    /// Adds a reading: a fall is spend, a rise a top-up.
    pub fn observe(&mut self, balance: Decimal) {
        let change = self.last - balance;
        if change.is_sign_positive() {
            self.spent += change;
        } else {
            self.topped_up -= change;
        }
        self.last = balance;
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::{TimeZone, Utc};

    use super::*;

    const INFO: &str = include_str!("../../../tests/fixtures/piapi/account_info.json");

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn the_balance_is_read_exactly_from_the_wrapped_or_bare_answer() {
        let r = reading(&serde_json::from_str(INFO).unwrap()).unwrap();
        assert_eq!(r.balance_usd.to_string(), "41.37000000000000099476");
        assert_eq!(r.account_id, "FAKE-acct-0001");
        let bare = reading(&serde_json::from_str(r#"{"equivalent_in_usd": "12.5"}"#).unwrap()).unwrap();
        assert_eq!(bare.balance_usd, dec("12.5"));
        assert!(reading(&serde_json::from_str(r#"{"data": {"credits": 3}}"#).unwrap())
            .unwrap_err()
            .0
            .contains("equivalent_in_usd"));
    }

    #[test]
    fn falls_are_spend_and_top_ups_are_not() {
        let mut s = Session::begin(Utc.with_ymd_and_hms(2025, 1, 15, 9, 0, 0).unwrap(), dec("100.00"));
        s.observe(dec("97.25")); // spent 2.75
        s.observe(dec("147.25")); // topped up 50
        s.observe(dec("140.00")); // spent 7.25
        s.observe(dec("140.00")); // nothing
        assert_eq!(s.spent, dec("10.00"));
        assert_eq!(s.topped_up, dec("50.00"));
        assert_eq!((s.first, s.last), (dec("100.00"), dec("140.00")));
        // Re-observing the same balance (a re-sync) changes nothing.
        let before = s.clone();
        s.observe(dec("140.00"));
        assert_eq!(s, before);
    }
}
