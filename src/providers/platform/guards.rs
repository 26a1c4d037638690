//! Checks on the numbers a provider sends, before they can reach a sum.
//!
//! A provider's JSON is hostile until checked: a count of `i64::MAX` would
//! wrap the daily sum, a negative token count would silently cancel real
//! usage, a 10^27-dollar amount would overflow the rollup. Each is an error
//! of the endpoint that names the field; nothing is clamped or dropped.

use rust_decimal::Decimal;

use crate::normalize::schema::Measures;

/// The largest count accepted: 2^53, beyond which a count is not a real
/// measurement (and JSON consumers lose integer precision).
pub const MAX_COUNT: i64 = 1 << 53;

/// The largest amount (in the provider's unit) or quantity one record may
/// carry: far above any real bill, far below where `Decimal(38, 9)` sums of
/// a day's rows could overflow.
pub fn max_amount() -> Decimal {
    Decimal::from(1_000_000_000_000_i64)
}

/// What a provider documents about signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct MeasurePolicy {
    /// Money may be negative (refunds, billing adjustments). Token and
    /// request counts never are.
    pub negative_money: bool,
    /// Quantities may be negative (Runway credit refunds).
    pub negative_quantities: bool,
}

/// Checks one record's measures; the error names the field and the value.
pub fn check_measures(m: &Measures, policy: MeasurePolicy) -> Result<(), String> {
    let counts = [
        ("input_tokens", m.input_tokens),
        ("output_tokens", m.output_tokens),
        ("cached_input_tokens", m.cached_input_tokens),
        ("cache_creation_tokens", m.cache_creation_tokens),
        ("requests", m.requests),
    ];
    for (field, value) in counts {
        if value < 0 {
            return Err(format!(
                "{field} is negative ({value}); the provider never documents negative counts"
            ));
        }
        if value > MAX_COUNT {
            return Err(format!("{field} is {value}, above 2^53: not a real count"));
        }
    }
    let limit = max_amount();
    let amounts = [
        ("quantity", Some(m.quantity), policy.negative_quantities),
        ("cost", Some(m.cost), policy.negative_money),
        ("credits", Some(m.credits), policy.negative_money),
        ("amount", Some(m.amount_original), policy.negative_money),
        ("estimated cost", m.provider_estimate, policy.negative_money),
    ];
    for (field, value, negative_ok) in amounts {
        let Some(value) = value else { continue };
        if value.abs() > limit {
            return Err(format!("{field} is {value}, beyond any real bill (limit {limit})"));
        }
        if value.is_sign_negative() && !value.is_zero() && !negative_ok {
            return Err(format!(
                "{field} is negative ({value}); this provider documents no refunds or negative amounts"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn refuses_negative_huge_and_absurd_values_naming_the_field() {
        let ok = Measures {
            input_tokens: 10,
            cost: Decimal::from_str("1.25").unwrap(),
            ..Measures::default()
        };
        assert!(check_measures(&ok, MeasurePolicy::default()).is_ok());
        let neg = Measures {
            output_tokens: -1,
            ..Measures::default()
        };
        assert!(check_measures(&neg, MeasurePolicy::default())
            .unwrap_err()
            .contains("output_tokens is negative"));
        let huge = Measures {
            input_tokens: i64::MAX,
            ..Measures::default()
        };
        assert!(check_measures(&huge, MeasurePolicy::default())
            .unwrap_err()
            .contains("2^53"));
        let absurd = Measures {
            cost: Decimal::MAX,
            ..Measures::default()
        };
        assert!(check_measures(&absurd, MeasurePolicy::default())
            .unwrap_err()
            .contains("cost"));
        let refund = Measures {
            quantity: Decimal::from(-5),
            ..Measures::default()
        };
        assert!(check_measures(&refund, MeasurePolicy::default()).is_err());
        let refunds = MeasurePolicy {
            negative_money: true,
            negative_quantities: true,
        };
        assert!(check_measures(&refund, refunds).is_ok());
        let neg_tokens_even_with_refunds = Measures {
            requests: -1,
            ..Measures::default()
        };
        assert!(check_measures(&neg_tokens_even_with_refunds, refunds).is_err());
    }
}
