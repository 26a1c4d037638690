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

fn counts(m: &Measures) -> [(&'static str, i64); 5] {
    [
        ("input_tokens", m.input_tokens),
        ("output_tokens", m.output_tokens),
        ("cached_input_tokens", m.cached_input_tokens),
        ("cache_creation_tokens", m.cache_creation_tokens),
        ("requests", m.requests),
    ]
}

/// The most the records of one bucket may add up to in any count:
/// [`MAX_COUNT`] a day, shared by the day's buckets. Each record within its
/// own limit is not enough: 1024 records of 2^53 wrap the daily rollup's
/// Int64 sum; this way an endpoint's day stays within 2^53.
pub fn max_bucket_total(bucket_seconds: i64) -> i64 {
    MAX_COUNT / (86_400 / bucket_seconds.clamp(1, 86_400))
}

/// Adds one (already checked) record's counts to its bucket's `totals`; the
/// error names the field and the total.
pub fn add_to_bucket_totals(totals: &mut [i64; 5], m: &Measures, limit: i64) -> Result<(), String> {
    for (total, (field, value)) in totals.iter_mut().zip(counts(m)) {
        *total = total.saturating_add(value);
        if *total > limit {
            return Err(format!(
                "the {field} of its records add up to {total}, above {limit} (2^53 a day over its buckets): \
                 not a real count, and the daily rollup would overflow"
            ));
        }
    }
    Ok(())
}

/// Checks one record's measures; the error names the field and the value.
pub fn check_measures(m: &Measures, policy: MeasurePolicy) -> Result<(), String> {
    for (field, value) in counts(m) {
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
        // Within its own limit, but 1024 of them would wrap a day's Int64.
        let at_limit = Measures {
            input_tokens: MAX_COUNT,
            ..Measures::default()
        };
        assert!(check_measures(&at_limit, MeasurePolicy::default()).is_ok());
        let mut totals = [0; 5];
        assert!(add_to_bucket_totals(&mut totals, &at_limit, max_bucket_total(86_400)).is_ok());
        assert!(add_to_bucket_totals(&mut totals, &at_limit, max_bucket_total(86_400))
            .unwrap_err()
            .contains("input_tokens of its records add up to"));
        assert_eq!(max_bucket_total(3_600), MAX_COUNT / 24);
        assert_eq!(max_bucket_total(60), MAX_COUNT / 1_440);
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
