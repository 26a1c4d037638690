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

use std::collections::BTreeSet;

use foldhash::{HashMap, HashMapExt, HashSet};

use serde::{Deserialize, Serialize};

use crate::normalize::schema::{Dec9, Text, UsageRow};

/// The rows to insert for one scope, and what they mean.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Delta {
    /// Rows to insert besides the fresh ones: corrections, and the new rows
    /// of records that were read whole.
    pub rows: Vec<UsageRow>,
    /// Indices into the fetched rows of records that are simply new: they
    /// are written as fetched once stamped ([`Delta::stamp_fresh`]), not
    /// copied here (a first sync's every row is fresh). Only [`finish`]
    /// makes them; [`diff`] copies every row into `rows`.
    pub fresh: Vec<u32>,
    /// The version and `synced_at` of every new row.
    pub version: u64,
    pub synced_at: u32,
    /// New live rows (sign +1, new version), fresh ones included.
    pub added: usize,
    /// Rows that cancel or restore stored rows (verbatim copies).
    pub cancelled: usize,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.fresh.is_empty()
    }

    /// Turns the fresh rows of `fetched` (the rows [`finish`] was given)
    /// into rows as written, in place.
    pub fn stamp_fresh(&self, fetched: &mut [UsageRow]) {
        for &i in &self.fresh {
            stamp(&mut fetched[i as usize], self.version, self.synced_at);
        }
    }

    /// Every row to write, the fresh ones copied out of `fetched` (the rows
    /// [`finish`] was given) and stamped: for a caller that cannot stamp them
    /// in place.
    pub fn into_rows(mut self, fetched: &[UsageRow]) -> Vec<UsageRow> {
        self.rows.reserve_exact(self.fresh.len());
        for &i in &self.fresh {
            self.rows
                .push(new_row(&fetched[i as usize], self.version, self.synced_at));
        }
        self.rows
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
    let stored: Vec<&UsageRow> = stored.iter().collect();
    let fetched: Vec<&UsageRow> = fetched.iter().collect();
    diff_rows(&stored, &fetched, scope_buckets, now_micros, synced_at)
}

fn diff_rows(
    stored: &[&UsageRow],
    fetched: &[&UsageRow],
    scope_buckets: &BTreeSet<u32>,
    now_micros: u64,
    synced_at: u32,
) -> Delta {
    let fetched_buckets: BTreeSet<u32> = fetched.iter().map(|r| r.bucket_start).collect();
    let in_scope = |bucket: &u32| scope_buckets.contains(bucket) || fetched_buckets.contains(bucket);

    // key -> content groups with their net sign.
    let mut groups: HashMap<u64, Vec<Group<'_>>> = HashMap::with_capacity(fetched.len());
    let mut max_version = 0u64;
    for row in stored.iter().copied().filter(|r| in_scope(&r.bucket_start)) {
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

    let mut delta = Delta {
        version,
        synced_at,
        ..Delta::default()
    };
    let fetched_keys: BTreeSet<u64> = fetched.iter().map(|r| r.record_key).collect();
    for wanted in fetched.iter().copied() {
        let groups = groups.remove(&wanted.record_key).unwrap_or_default();
        let keeper = groups.iter().position(|g| g.net >= 1 && g.row.same_content(wanted));
        for (index, group) in groups.iter().enumerate() {
            // Keep exactly one live copy of a stored row equal to what we want.
            let target = i64::from(Some(index) == keeper);
            push_corrections(&mut delta, group.row, group.net - target);
        }
        if keeper.is_none() {
            delta.rows.push(new_row(wanted, version, synced_at));
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

/// A fetched row as written: a new version, stamped, with its digest.
fn new_row(wanted: &UsageRow, version: u64, synced_at: u32) -> UsageRow {
    let mut row = wanted.clone();
    stamp(&mut row, version, synced_at);
    row
}

fn stamp(row: &mut UsageRow, version: u64, synced_at: u32) {
    row.sign = 1;
    row.version = version;
    row.synced_at = synced_at;
    // The fingerprint leaves the three fields above out: the one the row
    // was made with still holds.
    row.content_hash = row.digest();
}

/// The [`StoredKey`] of a row of any type with its five fields.
macro_rules! stored_key {
    ($row:expr) => {
        $crate::store::diff::StoredKey {
            bucket_start: $row.bucket_start,
            record_key: $row.record_key,
            version: $row.version,
            sign: $row.sign,
            content_hash: $row.content_hash,
        }
    };
}
pub(crate) use stored_key;

/// One stored row as the narrow read returns it: enough to net rows and
/// compare contents by digest, five small columns instead of every column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct StoredKey {
    pub bucket_start: u32,
    pub record_key: u64,
    pub version: u64,
    pub sign: i8,
    pub content_hash: u64,
}

impl StoredKey {
    pub const COLUMNS: &'static [&'static str] = &["bucket_start", "record_key", "version", "sign", "content_hash"];

    pub fn of(row: &UsageRow) -> Self {
        stored_key!(row)
    }
}

/// A stored row without the dimensions its record key already fixes: the
/// narrow columns plus `synced_at` and the measures, 23 mostly numeric
/// columns where a whole row is 39 mostly text ones. With the fetched row of
/// the same record key (same identity, hence normally the same dimensions)
/// it rebuilds the stored row verbatim ([`StoredMeasures::rebuild`]), so the
/// cancel copy of a changed record needs no second read. It is what a sync
/// reads when its buckets are known to have changed: a real provider revises
/// the current hour and day all the time, and reading those records whole,
/// one more SELECT per scope, was half of ClickHouse's work in such a cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct StoredMeasures {
    pub connection_id: Text,
    pub record_type: Text,
    pub endpoint: Text,
    pub bucket_start: u32,
    pub record_key: u64,
    pub version: u64,
    pub sign: i8,
    pub content_hash: u64,
    pub synced_at: u32,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_creation_tokens: i64,
    pub requests: i64,
    pub requests_reported: i8,
    pub quantity: Dec9,
    pub unit: Text,
    pub cost: Dec9,
    pub estimated_cost: Dec9,
    pub credits: Dec9,
    pub cost_source: Text,
    pub currency: Text,
    pub amount_original: Dec9,
}

impl StoredMeasures {
    /// Column names in field order (the owner's three first, so that a
    /// batched read can tell whose row it is).
    pub const COLUMNS: &'static [&'static str] = &[
        "connection_id",
        "record_type",
        "endpoint",
        "bucket_start",
        "record_key",
        "version",
        "sign",
        "content_hash",
        "synced_at",
        "input_tokens",
        "output_tokens",
        "cached_input_tokens",
        "cache_creation_tokens",
        "requests",
        "requests_reported",
        "quantity",
        "unit",
        "cost",
        "estimated_cost",
        "credits",
        "cost_source",
        "currency",
        "amount_original",
    ];

    pub fn key(&self) -> StoredKey {
        stored_key!(self)
    }

    /// This stored row in full: `fetched` (a fetched row of the same record
    /// key) with this row's measures and bookkeeping. `None` unless the
    /// result's fingerprint is the stored `content_hash`, which covers every
    /// field the diff compares: a dimension that changed since the row was
    /// written (a new model alias, a renamed key hint) shows up as another
    /// digest, and that row must be read whole. Trusting the digest here is
    /// the trust [`plan`] already puts in it to call a record unchanged.
    pub fn rebuild(&self, fetched: &UsageRow) -> Option<UsageRow> {
        if self.content_hash == 0 || fetched.record_key != self.record_key {
            return None;
        }
        let row = UsageRow {
            bucket_start: self.bucket_start,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            cache_creation_tokens: self.cache_creation_tokens,
            requests: self.requests,
            requests_reported: self.requests_reported,
            quantity: self.quantity,
            unit: self.unit.clone(),
            cost: self.cost,
            estimated_cost: self.estimated_cost,
            credits: self.credits,
            cost_source: self.cost_source.clone(),
            currency: self.currency.clone(),
            amount_original: self.amount_original,
            sign: self.sign,
            version: self.version,
            synced_at: self.synced_at,
            content_hash: self.content_hash,
            ..fetched.clone()
        };
        (row.fingerprint() == self.content_hash).then_some(row)
    }
}

/// The stored rows of the keys a plan must see whole, rebuilt from their
/// measures where that is proven verbatim ([`StoredMeasures::rebuild`]),
/// and the keys left to read whole: those no longer fetched (vanished),
/// written before `content_hash`, or whose dimensions changed. A key is
/// rebuilt entirely or not at all, so a whole read of it stands alone.
pub fn rebuild_needed(plan: &Plan, stored: &[StoredMeasures], fetched: &[UsageRow]) -> (Vec<UsageRow>, BTreeSet<u64>) {
    let wanted: HashMap<u64, &UsageRow> = fetched
        .iter()
        .filter(|r| plan.needs_full.contains(&r.record_key))
        .map(|r| (r.record_key, r))
        .collect();
    let mut rows = Vec::new();
    let mut unresolved = BTreeSet::new();
    for measures in stored.iter().filter(|m| plan.needs_full.contains(&m.record_key)) {
        let rebuilt = wanted
            .get(&measures.record_key)
            .and_then(|fetched| measures.rebuild(fetched));
        match rebuilt {
            Some(row) => rows.push(row),
            None => {
                unresolved.insert(measures.record_key);
            }
        }
    }
    rows.retain(|r| !unresolved.contains(&r.record_key));
    (rows, unresolved)
}

/// The diff's first half, from the narrow read: the version for new rows,
/// the record keys whose stored rows must be read whole (a correction copies
/// them verbatim, or they predate `content_hash`), and the keys that only
/// need a new row. Every key outside both sets is unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub version: u64,
    pub needs_full: BTreeSet<u64>,
    pub new_keys: HashSet<u64>,
}

impl Plan {
    /// Nothing to read whole: [`finish`] needs no full rows.
    pub fn is_settled(&self) -> bool {
        self.needs_full.is_empty()
    }
}

/// Plans the diff of one scope from its narrow rows; the arguments mean what
/// they mean for [`diff`].
pub fn plan(stored: &[StoredKey], fetched: &[UsageRow], scope_buckets: &BTreeSet<u32>, now_micros: u64) -> Plan {
    let fetched_buckets: BTreeSet<u32> = fetched.iter().map(|r| r.bucket_start).collect();
    let in_scope = |bucket: &u32| scope_buckets.contains(bucket) || fetched_buckets.contains(bucket);
    // key -> (version, digest) -> net sign.
    let mut groups: HashMap<u64, HashMap<(u64, u64), i64>> = HashMap::with_capacity(fetched.len());
    let mut max_version = 0u64;
    for row in stored.iter().filter(|r| in_scope(&r.bucket_start)) {
        max_version = max_version.max(row.version);
        *groups
            .entry(row.record_key)
            .or_default()
            .entry((row.version, row.content_hash))
            .or_default() += i64::from(row.sign);
    }
    let mut plan = Plan {
        version: now_micros.max(max_version.saturating_add(1)),
        ..Plan::default()
    };
    // A live row without a digest (written before the column) cannot be
    // compared here; net-zero groups need nothing whatever their content.
    let unknown = |groups: &HashMap<(u64, u64), i64>| groups.iter().any(|((_, hash), net)| *hash == 0 && *net != 0);
    for wanted in fetched {
        let key = wanted.record_key;
        let Some(groups) = groups.remove(&key) else {
            plan.new_keys.insert(key);
            continue;
        };
        if unknown(&groups) {
            plan.needs_full.insert(key);
            continue;
        }
        let digest = wanted.digest();
        let keeper = groups
            .iter()
            .filter(|((_, hash), net)| *hash == digest && **net >= 1)
            .map(|(group, _)| *group)
            .min();
        // Exactly one live copy of the wanted content, nothing else live.
        let settled = groups
            .iter()
            .all(|(group, net)| *net == i64::from(Some(*group) == keeper));
        if !settled {
            plan.needs_full.insert(key);
        } else if keeper.is_none() {
            plan.new_keys.insert(key);
        }
    }
    // Stored and no longer reported: settled only when already net zero.
    for (key, groups) in groups {
        if groups.values().any(|net| *net != 0) {
            plan.needs_full.insert(key);
        }
    }
    plan
}

/// The diff's second half: the same delta [`diff`] computes (once
/// [`Delta::into_rows`] has copied the fresh rows in), from the plan and the
/// full stored rows of `plan.needs_full` (rows of other keys may be passed
/// and are ignored; none are needed when the plan is settled).
pub fn finish(
    plan: &Plan,
    full: &[UsageRow],
    fetched: &[UsageRow],
    scope_buckets: &BTreeSet<u32>,
    synced_at: u32,
) -> Delta {
    let needs = |row: &&UsageRow| plan.needs_full.contains(&row.record_key);
    let stored: Vec<&UsageRow> = full.iter().filter(needs).collect();
    let wanted: Vec<&UsageRow> = fetched.iter().filter(needs).collect();
    // In scope as the plan saw it: every fetched row's bucket counts, not
    // only those of the keys read whole.
    let mut scope = scope_buckets.clone();
    scope.extend(fetched.iter().map(|r| r.bucket_start));
    let mut delta = diff_rows(&stored, &wanted, &scope, plan.version, synced_at);
    delta.fresh = fetched
        .iter()
        .enumerate()
        .filter(|(_, r)| plan.new_keys.contains(&r.record_key))
        .map(|(i, _)| u32::try_from(i).expect("fewer than 2^32 rows in one answer"))
        .collect();
    delta.added += delta.fresh.len();
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
