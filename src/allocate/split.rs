//! Splitting an exact amount in proportion to weights so the parts sum to it
//! exactly: the largest remainder method on integer units (1e-9 USD for
//! `Decimal(38, 9)` money).
//!
//! Rule (docs/DESIGN.md, "Cost allocation"): with total `T` and weights
//! `w_i >= 0` summing to `W > 0`, part `i` first gets `floor(|T| * w_i / W)`
//! units; the `R = |T| - sum(floors)` units left over go one each to the `R`
//! parts with the largest remainder `|T| * w_i mod W`, equal remainders in
//! the caller's order (the allocation passes its targets sorted by key, so
//! ties are broken by the lowest key). A negative total is split as its
//! magnitude and every part negated. A zero weight has remainder 0 and never
//! receives a unit (at least `R` parts have a positive remainder), so a part
//! is never non-zero without usage behind it.
//!
//! The products are computed exactly in 256 bits: no amount or weight that
//! fits in `i128` can overflow or lose a unit.

/// The parts of `total` in proportion to `weights`, or `None` when the
/// weights cannot share anything out (empty, a negative one, or all zero).
pub fn split(total: i128, weights: &[i128]) -> Option<Vec<i128>> {
    if weights.iter().any(|w| *w < 0) {
        return None;
    }
    let sum = weights
        .iter()
        .try_fold(0u128, |acc, w| acc.checked_add(*w as u128))
        .filter(|s| *s > 0 && *s <= i128::MAX as u128)?;
    let magnitude = total.unsigned_abs();
    let mut parts: Vec<u128> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(weights.len());
    for (index, weight) in weights.iter().enumerate() {
        let (quotient, remainder) = mul_div_rem(magnitude, *weight as u128, sum);
        parts.push(quotient);
        remainders.push((remainder, index));
    }
    let given: u128 = parts.iter().sum();
    let left = magnitude - given;
    // Largest remainder first; a stable sort keeps equal remainders in input order.
    remainders.sort_by_key(|r| std::cmp::Reverse(r.0));
    for (_, index) in remainders.iter().take(left as usize) {
        parts[*index] += 1;
    }
    let sign: i128 = if total < 0 { -1 } else { 1 };
    Some(parts.into_iter().map(|p| sign * p as i128).collect())
}

/// `floor(a * b / c)` and `a * b mod c`, exact, for `b <= c`, `0 < c < 2^127`
/// and `a < 2^128` (so the quotient fits).
fn mul_div_rem(a: u128, b: u128, c: u128) -> (u128, u128) {
    let (hi, lo) = mul_wide(a, b);
    // Binary long division of the 256-bit product; `rem < c < 2^127`, so
    // shifting it left never overflows.
    let mut quotient: u128 = 0;
    let mut rem: u128 = 0;
    for bit in (0..256).rev() {
        let next = if bit >= 128 {
            (hi >> (bit - 128)) & 1
        } else {
            (lo >> bit) & 1
        };
        rem = (rem << 1) | next;
        quotient <<= 1;
        if rem >= c {
            rem -= c;
            quotient |= 1;
        }
    }
    (quotient, rem)
}

/// The 256-bit product of two `u128`s as (high, low) halves.
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const LOW: u128 = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & LOW);
    let (b1, b0) = (b >> 64, b & LOW);
    let low = a0 * b0;
    let (mid, mid_carry) = (a0 * b1).overflowing_add(a1 * b0);
    let mut high = a1 * b1 + (mid >> 64) + (u128::from(mid_carry) << 64);
    let (low, low_carry) = low.overflowing_add(mid << 64);
    high += u128::from(low_carry);
    (high, low)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn thirds_give_the_spare_unit_to_the_first_of_equal_remainders() {
        assert_eq!(
            split(1_000_000_000, &[1, 1, 1]).unwrap(),
            [333_333_334, 333_333_333, 333_333_333]
        );
        assert_eq!(split(2, &[1, 1, 1]).unwrap(), [1, 1, 0]);
        assert_eq!(split(-2, &[1, 1, 1]).unwrap(), [-1, -1, 0]);
    }

    #[test]
    fn the_largest_remainder_wins_over_input_order() {
        // 10 * [1, 2] / 3 = [3.33, 6.67]: the spare unit goes to the second part.
        assert_eq!(split(10, &[1, 2]).unwrap(), [3, 7]);
    }

    #[test]
    fn zero_weights_get_nothing_and_all_zero_weights_split_nothing() {
        assert_eq!(split(5, &[0, 3, 0, 3]).unwrap(), [0, 3, 0, 2]);
        assert_eq!(split(1, &[0, 1_000_000, 0]).unwrap(), [0, 1, 0]);
        assert_eq!(split(5, &[0, 0]), None);
        assert_eq!(split(5, &[]), None);
        assert_eq!(split(5, &[2, -1]), None);
    }

    #[test]
    fn extreme_amounts_and_weights_stay_exact() {
        let big = i128::MAX / 2;
        let parts = split(big, &[big, big - 1, 1]).unwrap();
        assert_eq!(parts.iter().sum::<i128>(), big);
        let parts = split(i128::MAX, &[1, 1]).unwrap();
        assert_eq!(parts.iter().sum::<i128>(), i128::MAX);
        assert_eq!(mul_wide(u128::MAX, u128::MAX), (u128::MAX - 1, 1));
    }

    proptest! {
        #[test]
        fn parts_always_sum_to_the_total_and_follow_the_weights(
            total in any::<i64>(),
            weights in proptest::collection::vec(0i64..1_000_000_000_000, 1..12),
        ) {
            let weights: Vec<i128> = weights.into_iter().map(i128::from).collect();
            let sum: i128 = weights.iter().sum();
            prop_assume!(sum > 0);
            let total = i128::from(total);
            let parts = split(total, &weights).unwrap();
            prop_assert_eq!(parts.iter().sum::<i128>(), total);
            for (part, weight) in parts.iter().zip(&weights) {
                // Each part is within one unit of its exact share.
                let exact = total * weight;
                let diff = (part * sum - exact).abs();
                prop_assert!(diff < sum, "part {} weight {} of {}", part, weight, sum);
                if *weight == 0 {
                    prop_assert_eq!(*part, 0);
                }
            }
        }
    }
}
