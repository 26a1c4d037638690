//! The diff: what to write so that the stored rows of a scope say exactly what
//! the provider just said (docs/DESIGN.md rule 1). Pure: no I/O, no clock.
//!
//! Stored rows are netted by (record key, version, content): the sum of `sign`
//! over identical raw rows. A healthy record has one group with net +1. A
//! duplicated insert shows up as net +2 (or -2 for a duplicated cancel), a lost
//! half of a pair as an unmatched sign; all of them are cancelled or restored
//! here, with rows that copy the stored ones verbatim (same version), so that
//! `VersionedCollapsingMergeTree` folds them and every `sum(x * sign)` is right
//! whether or not merges have happened.

use std::collections::{BTreeSet, HashMap};

use crate::normalize::schema::UsageRow;

/// The rows to insert for one scope, and what they mean.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delta {
    pub rows: Vec<UsageRow>,
    /// New live rows (sign +1, new version).
    pub added: usize,
    /// Rows that cancel or restore stored rows (verbatim copies).
    pub cancelled: usize,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Computes the delta for one scope.
///
/// - `stored`: every raw row read for the scope (both signs, all versions);
///   rows whose bucket is outside `scope_buckets` are ignored.
/// - `fetched`: the provider's records as rows, one per record key (sign +1).
/// - `scope_buckets`: bucket starts the provider's answer covered; records
///   stored there and absent from `fetched` have vanished and are cancelled.
///   Buckets of fetched rows are always in scope.
/// - `now_micros`: the version floor; new rows get
///   `max(now_micros, highest stored version + 1)` so no two contents ever
///   share a (key, version), even after a late insert or a crash.
/// - `synced_at`: stamped on new rows.
pub fn diff(
    stored: &[UsageRow],
    fetched: &[UsageRow],
    scope_buckets: &BTreeSet<u32>,
    now_micros: u64,
    synced_at: u32,
) -> Delta {
    let fetched_buckets: BTreeSet<u32> = fetched.iter().map(|r| r.bucket_start).collect();
    let in_scope = |bucket: &u32| scope_buckets.contains(bucket) || fetched_buckets.contains(bucket);

    // key -> content groups with their net sign.
    let mut groups: HashMap<u64, Vec<Group<'_>>> = HashMap::with_capacity(fetched.len());
    let mut max_version = 0u64;
    for row in stored.iter().filter(|r| in_scope(&r.bucket_start)) {
        max_version = max_version.max(row.version);
        let entry = groups.entry(row.record_key).or_default();
        match entry
            .iter_mut()
            .find(|g| g.row.version == row.version && g.row.same_content(row))
        {
            Some(group) => group.net += i64::from(row.sign),
            None => entry.push(Group {
                row,
                net: i64::from(row.sign),
            }),
        }
    }
    let version = now_micros.max(max_version.saturating_add(1));

    let mut delta = Delta::default();
    let fetched_keys: BTreeSet<u64> = fetched.iter().map(|r| r.record_key).collect();
    for wanted in fetched {
        let groups = groups.remove(&wanted.record_key).unwrap_or_default();
        let keeper = groups.iter().position(|g| g.net >= 1 && g.row.same_content(wanted));
        for (index, group) in groups.iter().enumerate() {
            // Keep exactly one live copy of a stored row equal to what we want.
            let target = i64::from(Some(index) == keeper);
            push_corrections(&mut delta, group.row, group.net - target);
        }
        if keeper.is_none() {
            let mut row = wanted.clone();
            row.sign = 1;
            row.version = version;
            row.synced_at = synced_at;
            delta.rows.push(row);
            delta.added += 1;
        }
    }
    // Whatever is left was stored in scope and is no longer reported: vanished.
    let mut vanished: Vec<(u64, Vec<Group<'_>>)> =
        groups.into_iter().filter(|(k, _)| !fetched_keys.contains(k)).collect();
    vanished.sort_by_key(|(k, _)| *k);
    for (_, groups) in vanished {
        for group in groups {
            push_corrections(&mut delta, group.row, group.net);
        }
    }
    delta
}

/// Identical stored rows (same key, version and content) and their net sign.
struct Group<'a> {
    row: &'a UsageRow,
    net: i64,
}

/// Emits `|excess|` verbatim copies of `row` with the sign that brings its net
/// contribution back by `excess`.
fn push_corrections(delta: &mut Delta, row: &UsageRow, excess: i64) {
    let sign: i8 = if excess > 0 { -1 } else { 1 };
    for _ in 0..excess.unsigned_abs() {
        let mut copy = row.clone();
        copy.sign = sign;
        delta.rows.push(copy);
        delta.cancelled += 1;
    }
}

#[cfg(test)]
mod tests;
