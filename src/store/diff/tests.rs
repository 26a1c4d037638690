use super::*;
use crate::normalize::schema::{Dec9, UsageRow};
use crate::store::sink::UsageRows;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;

fn row(key: u64, bucket: u32, tokens: i64, cost: i128) -> UsageRow {
    UsageRow::for_test(key, bucket, tokens, cost)
}

fn buckets(list: &[u32]) -> BTreeSet<u32> {
    list.iter().copied().collect()
}

/// Net (tokens, cost) per key, as any `sum(x * sign)` reader sees it.
fn net(table: &[UsageRow]) -> BTreeMap<u64, (i64, i128, i64)> {
    let mut out: BTreeMap<u64, (i64, i128, i64)> = BTreeMap::new();
    for r in table {
        let e = out.entry(r.record_key).or_default();
        e.0 += r.input_tokens * i64::from(r.sign);
        e.1 += r.cost.0 * i128::from(r.sign);
        e.2 += i64::from(r.sign);
    }
    out.retain(|_, v| *v != (0, 0, 0));
    out
}

fn expected(fetched: &[UsageRow]) -> BTreeMap<u64, (i64, i128, i64)> {
    fetched
        .iter()
        .map(|r| (r.record_key, (r.input_tokens, r.cost.0, 1)))
        .collect()
}

#[test]
fn same_content_ignores_only_bookkeeping() {
    let a = row(1, 0, 10, 5);
    let mut b = a.clone();
    b.sign = -1;
    b.version = 99;
    b.synced_at = 7;
    assert!(a.same_content(&b));
    for change in [
        |r: &mut UsageRow| r.attributes = "batch=true".into(),
        |r: &mut UsageRow| r.estimated_cost = Dec9(1),
        |r: &mut UsageRow| r.currency = "USD".into(),
        |r: &mut UsageRow| r.bucket_end += 1,
    ] {
        let mut c = a.clone();
        change(&mut c);
        assert!(!a.same_content(&c), "{c:?}");
    }
}

#[test]
fn first_sync_inserts_everything_with_one_fresh_version() {
    let fetched = vec![row(1, 0, 10, 5), row(2, 0, 20, 7)];
    let d = diff(&[], &fetched, &buckets(&[0]), 1_000, 9);
    assert_eq!((d.added, d.cancelled), (2, 0));
    assert!(d
        .rows
        .iter()
        .all(|r| r.sign == 1 && r.version == 1_000 && r.synced_at == 9));
}

#[test]
fn unchanged_records_write_nothing() {
    let mut stored = row(1, 0, 10, 5);
    stored.version = 500;
    let d = diff(&[stored], &[row(1, 0, 10, 5)], &buckets(&[0]), 1_000, 9);
    assert!(d.is_empty());
}

#[test]
fn a_changed_record_is_a_verbatim_cancel_plus_a_new_version() {
    let mut stored = row(1, 0, 10, 5);
    stored.version = 500;
    stored.synced_at = 3;
    let d = diff(&[stored.clone()], &[row(1, 0, 11, 5)], &buckets(&[0]), 1_000, 9);
    assert_eq!(d.rows.len(), 2);
    let cancel = d.rows.iter().find(|r| r.sign == -1).unwrap();
    assert_eq!(cancel, &stored.negated());
    let new = d.rows.iter().find(|r| r.sign == 1).unwrap();
    assert_eq!((new.input_tokens, new.version), (11, 1_000));
}

#[test]
fn a_vanished_record_is_cancelled_only_inside_the_scope() {
    let mut in_scope = row(1, 0, 10, 5);
    in_scope.version = 5;
    let mut outside = row(2, 3600, 10, 5);
    outside.version = 5;
    let d = diff(&[in_scope.clone(), outside], &[], &buckets(&[0]), 1_000, 9);
    assert_eq!(d.rows, vec![in_scope.negated()]);
}

#[test]
fn a_bucket_absent_from_the_answer_is_not_vanished() {
    let mut stored = row(1, 7200, 10, 5);
    stored.version = 5;
    let d = diff(&[stored], &[row(2, 0, 1, 1)], &buckets(&[0, 3600]), 1_000, 9);
    assert_eq!((d.added, d.cancelled), (1, 0));
}

#[test]
fn new_versions_stay_above_stored_ones_when_the_clock_is_behind() {
    let mut stored = row(1, 0, 10, 5);
    stored.version = 9_000;
    let d = diff(&[stored], &[row(1, 0, 12, 5)], &buckets(&[0]), 1_000, 9);
    let new = d.rows.iter().find(|r| r.sign == 1).unwrap();
    assert_eq!(new.version, 9_001);
}

#[test]
fn a_duplicated_insert_is_repaired_to_one_live_copy() {
    let mut stored = row(1, 0, 10, 5);
    stored.version = 5;
    let d = diff(
        &[stored.clone(), stored.clone()],
        &[row(1, 0, 10, 5)],
        &buckets(&[0]),
        1_000,
        9,
    );
    assert_eq!(d.rows, vec![stored.negated()]);
    let mut table = vec![stored.clone(), stored];
    table.extend(d.rows);
    assert_eq!(net(&table), expected(&[row(1, 0, 10, 5)]));
}

#[test]
fn a_duplicated_cancel_is_restored() {
    let mut old = row(1, 0, 10, 5);
    old.version = 5;
    let mut new = row(1, 0, 12, 5);
    new.version = 6;
    // old +1, old -1 twice (a retried delta), new +1 twice.
    let table = vec![old.clone(), old.negated(), old.negated(), new.clone(), new.clone()];
    let d = diff(&table, &[row(1, 0, 12, 5)], &buckets(&[0]), 1_000, 9);
    let mut after = table.clone();
    after.extend(d.rows.clone());
    assert_eq!(net(&after), expected(&[row(1, 0, 12, 5)]));
    assert_eq!(d.added, 0, "one stored copy of the wanted row is kept");
    // And the repaired state is stable.
    assert!(diff(&after, &[row(1, 0, 12, 5)], &buckets(&[0]), 2_000, 9).is_empty());
}

/// How a delta reached the table.
#[derive(Clone, Debug)]
enum Landing {
    /// Stored once.
    Clean,
    /// Insert failed before it landed.
    Lost,
    /// Insert landed but the client saw a timeout and retried it.
    Duplicated,
    /// The delta spanned several inserts and the process died after `n` rows
    /// (inserts are atomic per batch; batches are this many rows).
    Interrupted { batch: usize, batches_landed: usize },
}

fn landing() -> impl Strategy<Value = Landing> {
    prop_oneof![
        3 => Just(Landing::Clean),
        1 => Just(Landing::Lost),
        1 => Just(Landing::Duplicated),
        1 => (1usize..4, 0usize..4).prop_map(|(batch, batches_landed)| Landing::Interrupted { batch, batches_landed }),
    ]
}

/// A provider answer: up to 6 keys over 2 buckets, each present or not.
/// Now and then a dimension the record key does not fix changes for every
/// record (a release renamed something): rows stored before cannot be
/// rebuilt from their measures then.
fn answer() -> impl Strategy<Value = Vec<UsageRow>> {
    let slots = proptest::collection::vec(proptest::option::of((0i64..4, 0i128..3)), 6);
    (slots, 0..4u8).prop_map(|(slots, label)| {
        slots
            .into_iter()
            .enumerate()
            .filter_map(|(key, v)| v.map(|(tokens, cost)| row(key as u64, (key as u32 % 2) * 3600, tokens, cost)))
            .map(|mut r| {
                if label == 0 {
                    r.model_family = "renamed".into();
                }
                r
            })
            .collect()
    })
}

/// A background merge of VersionedCollapsingMergeTree: removes some (+1, -1)
/// pairs that share record key and version. It never changes any net.
fn merge(table: &mut Vec<UsageRow>, pick: &[bool]) {
    let mut i = 0;
    let mut picks = pick.iter().cycle();
    while i < table.len() {
        let partner = (i + 1..table.len()).find(|&j| {
            table[j].record_key == table[i].record_key
                && table[j].version == table[i].version
                && table[j].sign == -table[i].sign
        });
        match partner {
            Some(j) if *picks.next().unwrap_or(&true) => {
                table.remove(j);
                table.remove(i);
            }
            _ => i += 1,
        }
    }
}

fn land(table: &mut Vec<UsageRow>, delta: &Delta, how: &Landing) {
    match how {
        Landing::Clean => table.extend(delta.rows.iter().cloned()),
        Landing::Lost => {}
        Landing::Duplicated => {
            table.extend(delta.rows.iter().cloned());
            table.extend(delta.rows.iter().cloned());
        }
        Landing::Interrupted { batch, batches_landed } => {
            table.extend(delta.rows.iter().take(batch * batches_landed).cloned());
        }
    }
}

const ALL_BUCKETS: [u32; 2] = [0, 3600];

/// The two-phase diff as a sync runs it: the plan from the narrow rows, then
/// full rows only for the keys the plan asks for.
fn two_phase(table: &[UsageRow], fetched: &[UsageRow], scope: &BTreeSet<u32>, now: u64) -> (Delta, Plan) {
    let narrow: Vec<StoredKey> = table.iter().map(StoredKey::of).collect();
    let plan = plan(&narrow, fetched, scope, now);
    let full: Vec<UsageRow> = table
        .iter()
        .filter(|r| plan.needs_full.contains(&r.record_key))
        .cloned()
        .collect();
    let delta = finish(&plan, &full, fetched, scope, 0);
    // Rebuilt from the measures where provably verbatim, whole for the
    // rest: the same delta.
    let measures: Vec<StoredMeasures> = table.iter().map(measures_of).collect();
    let (mut rebuilt, unresolved) = rebuild_needed(&plan, &measures, fetched);
    assert!(unresolved.is_subset(&plan.needs_full));
    for row in &rebuilt {
        assert!(table.contains(row), "rebuilt {row:?} is not a stored row");
    }
    rebuilt.extend(table.iter().filter(|r| unresolved.contains(&r.record_key)).cloned());
    assert_eq!(finish(&plan, &rebuilt, fetched, scope, 0), delta);
    // The sync stamps the fresh rows in place and shares them with the
    // writer; copying them out must give the same rows in the same order.
    let mut stamped = fetched.to_vec();
    delta.stamp_fresh(&mut stamped);
    let shared = UsageRows::with_picks(delta.rows.clone(), Arc::new(stamped), delta.fresh.clone());
    let written: Vec<UsageRow> = shared.iter().cloned().collect();
    let (added, cancelled) = (delta.added, delta.cancelled);
    let rows = delta.into_rows(fetched);
    assert_eq!(written, rows);
    let delta = Delta {
        rows,
        added,
        cancelled,
        ..Delta::default()
    };
    (delta, plan)
}

/// What the measures read returns for a stored row.
fn measures_of(r: &UsageRow) -> StoredMeasures {
    StoredMeasures {
        connection_id: r.connection_id.clone(),
        record_type: r.record_type.clone(),
        endpoint: r.endpoint.clone(),
        bucket_start: r.bucket_start,
        record_key: r.record_key,
        version: r.version,
        sign: r.sign,
        content_hash: r.content_hash,
        synced_at: r.synced_at,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_input_tokens: r.cached_input_tokens,
        cache_creation_tokens: r.cache_creation_tokens,
        requests: r.requests,
        requests_reported: r.requests_reported,
        quantity: r.quantity,
        unit: r.unit.clone(),
        cost: r.cost,
        estimated_cost: r.estimated_cost,
        credits: r.credits,
        cost_source: r.cost_source.clone(),
        currency: r.currency.clone(),
        amount_original: r.amount_original,
    }
}

#[test]
fn a_changed_record_is_cancelled_from_its_measures_alone() {
    let mut table = Vec::new();
    let (first, _) = two_phase(&table, &[row(1, 0, 5, 7), row(2, 0, 1, 1)], &buckets(&[0]), 10);
    land(&mut table, &first, &Landing::Clean);
    for r in &mut table {
        r.synced_at = 1_700_000_000;
    }
    let changed = vec![row(1, 0, 6, 9), row(2, 0, 1, 1)];
    let narrow: Vec<StoredKey> = table.iter().map(StoredKey::of).collect();
    let p = plan(&narrow, &changed, &buckets(&[0]), 11);
    assert_eq!(p.needs_full, BTreeSet::from([1]));
    let measures: Vec<StoredMeasures> = table.iter().map(measures_of).collect();
    let (rebuilt, unresolved) = rebuild_needed(&p, &measures, &changed);
    assert!(unresolved.is_empty());
    let stored_1: Vec<UsageRow> = table.iter().filter(|r| r.record_key == 1).cloned().collect();
    assert_eq!(rebuilt, stored_1, "the stored row, verbatim (synced_at too)");
    let delta = finish(&p, &rebuilt, &changed, &buckets(&[0]), 0);
    assert_eq!((delta.added, delta.cancelled), (1, 1));
    assert_eq!(
        delta.rows[0],
        UsageRow {
            sign: -1,
            ..stored_1[0].clone()
        }
    );
}

#[test]
fn rows_that_cannot_be_proven_verbatim_are_read_whole() {
    let mut stored = row(1, 0, 5, 7);
    stored.content_hash = stored.fingerprint();
    stored.version = 3;
    let vanished = UsageRow {
        record_key: 2,
        content_hash: 9,
        ..stored.clone()
    };
    let mut legacy = row(3, 0, 5, 7);
    legacy.version = 3;
    let table = [stored.clone(), vanished, legacy];
    // Key 1's fetched row differs in a dimension as well as a measure.
    let mut renamed = row(1, 0, 6, 7);
    renamed.model_family = "renamed".into();
    let fetched = vec![renamed, row(3, 0, 5, 7)];
    let narrow: Vec<StoredKey> = table.iter().map(StoredKey::of).collect();
    let p = plan(&narrow, &fetched, &buckets(&[0]), 11);
    assert_eq!(p.needs_full, BTreeSet::from([1, 2, 3]));
    let measures: Vec<StoredMeasures> = table.iter().map(measures_of).collect();
    assert_eq!(measures[0].rebuild(&fetched[0]), None, "the dimension changed");
    assert_eq!(
        measures[0].rebuild(&row(1, 0, 99, 99)).as_ref(),
        Some(&stored),
        "only the dimensions come from the fetched row"
    );
    assert_eq!(measures[0].rebuild(&row(4, 0, 5, 7)), None, "another record");
    let (rebuilt, unresolved) = rebuild_needed(&p, &measures, &fetched);
    assert!(rebuilt.is_empty());
    assert_eq!(
        unresolved,
        BTreeSet::from([1, 2, 3]),
        "changed dimension, vanished, no digest"
    );
}

fn sorted(rows: &[UsageRow]) -> Vec<String> {
    let mut out: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
    out.sort();
    out
}

#[test]
fn an_unchanged_scope_is_settled_from_the_narrow_read_alone() {
    let fetched = vec![row(1, 0, 5, 7), row(2, 3600, 1, 1)];
    let mut table = Vec::new();
    let (first, planned) = two_phase(&table, &fetched, &buckets(&ALL_BUCKETS), 10);
    assert_eq!(planned.new_keys.len(), 2);
    assert!(first
        .rows
        .iter()
        .all(|r| r.content_hash == r.fingerprint() && r.content_hash != 0));
    land(&mut table, &first, &Landing::Clean);
    let narrow: Vec<StoredKey> = table.iter().map(StoredKey::of).collect();
    let again = plan(&narrow, &fetched, &buckets(&ALL_BUCKETS), 11);
    assert!(again.is_settled() && again.new_keys.is_empty());
    assert!(finish(&again, &[], &fetched, &buckets(&ALL_BUCKETS), 0).is_empty());
    // One changed record: only its key is read whole.
    let changed = vec![row(1, 0, 6, 7), row(2, 3600, 1, 1)];
    let p = plan(&narrow, &changed, &buckets(&ALL_BUCKETS), 12);
    assert_eq!(p.needs_full, BTreeSet::from([1]));
}

#[test]
fn rows_written_before_the_digest_existed_are_read_whole() {
    let mut legacy = row(1, 0, 5, 7);
    legacy.version = 3;
    let narrow = vec![StoredKey::of(&legacy)];
    let p = plan(&narrow, &[row(1, 0, 5, 7)], &buckets(&ALL_BUCKETS), 10);
    assert_eq!(p.needs_full, BTreeSet::from([1]));
    // Read whole, the legacy row is recognized as unchanged.
    assert!(finish(&p, &[legacy], &[row(1, 0, 5, 7)], &buckets(&ALL_BUCKETS), 0).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Any history of syncs, crashes, retries and merges, followed by clean
    /// syncs, leaves exactly the last answer in every sum, and a further sync
    /// writes nothing (docs/DESIGN.md rule 1: a sync is done when a re-read finds
    /// nothing left to write).
    #[test]
    fn any_history_converges_to_the_last_answer(
        history in proptest::collection::vec((answer(), landing(), proptest::collection::vec(any::<bool>(), 4), 0u64..3), 1..8),
        last in answer(),
        clock_start in 0u64..5,
        legacy in proptest::collection::vec(any::<bool>(), 0..6),
    ) {
        let mut table: Vec<UsageRow> = Vec::new();
        let mut clock = clock_start;
        for (fetched, how, merge_pick, tick) in &history {
            // The clock may stand still or even repeat: versions must not rely on it.
            clock += tick;
            let delta = diff(&table, fetched, &buckets(&ALL_BUCKETS), clock, 0);
            // The narrow read + partial full read computes the same delta.
            let (two, _) = two_phase(&table, fetched, &buckets(&ALL_BUCKETS), clock);
            prop_assert_eq!(sorted(&two.rows), sorted(&delta.rows));
            prop_assert_eq!((two.added, two.cancelled), (delta.added, delta.cancelled));
            land(&mut table, &delta, how);
            merge(&mut table, merge_pick);
            // Some rows predate the digest column (read back as 0).
            for (row, old) in table.iter_mut().zip(&legacy) {
                if *old {
                    row.content_hash = 0;
                }
            }
        }
        let first = diff(&table, &last, &buckets(&ALL_BUCKETS), clock, 0);
        land(&mut table, &first, &Landing::Clean);
        prop_assert_eq!(net(&table), expected(&last));
        let second = diff(&table, &last, &buckets(&ALL_BUCKETS), clock, 0);
        prop_assert!(second.is_empty(), "a clean re-sync must write nothing, wrote {:?}", second.rows);
        let (second, planned) = two_phase(&table, &last, &buckets(&ALL_BUCKETS), clock);
        prop_assert!(second.is_empty());
        // Rows with digests settle from the narrow read alone (rows written
        // before the digest are read whole until merges fold them away).
        let digested = table.iter().all(|r| r.content_hash != 0);
        prop_assert!(!digested || planned.is_settled(), "{:?}", planned);
        // After merges too.
        merge(&mut table, &[true]);
        prop_assert_eq!(net(&table), expected(&last));
        // No two different contents ever share a (key, version).
        for a in &table {
            for b in &table {
                if a.record_key == b.record_key && a.version == b.version {
                    prop_assert!(a.same_content(b));
                }
            }
        }
    }

    /// A partly covered answer only touches the buckets it covers.
    #[test]
    fn buckets_outside_the_answer_keep_their_rows(first in answer(), second in answer()) {
        let mut table = Vec::new();
        let d = diff(&table, &first, &buckets(&ALL_BUCKETS), 1, 0);
        land(&mut table, &d, &Landing::Clean);
        let second_in_0: Vec<UsageRow> = second.into_iter().filter(|r| r.bucket_start == 0).collect();
        let d = diff(&table, &second_in_0, &buckets(&[0]), 2, 0);
        land(&mut table, &d, &Landing::Clean);
        let mut want: Vec<UsageRow> = first.into_iter().filter(|r| r.bucket_start == 3600).collect();
        want.extend(second_in_0);
        prop_assert_eq!(net(&table), expected(&want));
    }
}
