//! What this process knows to be stored, so an unchanged bucket costs
//! ClickHouse nothing.
//!
//! An incremental sync re-reads the provider's last days every few minutes,
//! and most of those buckets did not change since the previous sync. Reading
//! them back from ClickHouse to find that out was most of the server's work
//! per account and cycle. Instead, after a sync leaves a bucket's stored rows
//! equal to what the provider said (the diff found nothing to write, or its
//! delta was acknowledged without a retry), the bucket's digest is kept here:
//! a 128-bit hash of the rows' fingerprints (each covers the record key and
//! every stored field). The next sync diffs only the buckets whose digest
//! differs (or is not known), and reads only those.
//!
//! Knowledge is kept only while nothing else can change the rows: the
//! account lock makes this process the account's only writer; a write whose
//! outcome is uncertain forgets the endpoint; and a digest older than the
//! configured time to live is checked against ClickHouse again, which bounds
//! how long a change made behind the daemon's back (an operator's DELETE, a
//! restored backup) can go unseen. A restart starts with nothing known.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::normalize::schema::{RecordType, UsageRow};

/// The digest of one bucket's rows: the same rows in any order give the same
/// digest; any changed field, missing or extra row gives another.
pub type BucketDigest = u128;

/// Digests of every bucket of `scope`, an empty bucket included (no rows
/// stored there is knowledge too).
pub fn bucket_digests(rows: &[UsageRow], scope: &BTreeSet<u32>) -> BTreeMap<u32, BucketDigest> {
    let mut fingerprints: BTreeMap<u32, Vec<u64>> = scope.iter().map(|b| (*b, Vec::new())).collect();
    for row in rows {
        fingerprints.entry(row.bucket_start).or_default().push(row.digest());
    }
    fingerprints
        .into_iter()
        .map(|(bucket, mut prints)| {
            prints.sort_unstable();
            let mut h = xxhash_rust::xxh3::Xxh3Default::new();
            h.update(&(prints.len() as u64).to_le_bytes());
            for print in prints {
                h.update(&print.to_le_bytes());
            }
            (bucket, h.digest128())
        })
        .collect()
}

type EndpointKey = (RecordType, &'static str);

/// What [`SettledBuckets::recall`] knows of a sync's buckets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recall {
    /// Stored exactly as fetched: nothing to read or write.
    pub unchanged: BTreeSet<u32>,
    /// Some bucket was stored with other rows than fetched now.
    pub revised: bool,
}

/// One known bucket in 24 bytes (a B-tree entry holding an `Instant` took
/// ~55): the known buckets were 6.3 KB of the ~27 KB of live heap per
/// account (heaptrack, 1,000 accounts).
#[derive(Clone, Copy, Debug)]
struct KnownBucket {
    start: u32,
    /// Whole seconds since the cache was made (rounded so that knowledge
    /// expires early, never late).
    confirmed: u32,
    digest: [u64; 2],
}

fn halves(digest: BucketDigest) -> [u64; 2] {
    [digest as u64, (digest >> 64) as u64]
}

/// Per endpoint: its known buckets, sorted by start.
type Known = HashMap<EndpointKey, Vec<KnownBucket>>;

/// One account's known buckets per endpoint.
#[derive(Debug)]
pub struct SettledBuckets {
    ttl: Duration,
    epoch: Instant,
    known: Mutex<Known>,
}

impl Default for SettledBuckets {
    /// Knows nothing and never will: every sync reads what it diffs.
    fn default() -> Self {
        Self::new(Duration::ZERO)
    }
}

impl SettledBuckets {
    /// `ttl` of zero turns the cache off.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            epoch: Instant::now(),
            known: Mutex::new(HashMap::new()),
        }
    }

    fn now(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// What is known of the buckets of `digests`: those whose stored rows
    /// are known to be exactly the rows the digest was made of (confirmed
    /// within the time to live), and whether any other was known with other
    /// rows (the provider revised it, so its records have likely changed).
    pub fn recall(&self, key: EndpointKey, digests: &BTreeMap<u32, BucketDigest>) -> Recall {
        let mut recall = Recall::default();
        if self.ttl.is_zero() {
            return recall;
        }
        let now = self.now();
        let known = self.lock();
        let Some(buckets) = known.get(&key) else {
            return recall;
        };
        for (start, digest) in digests {
            let Ok(at) = buckets.binary_search_by_key(start, |k| k.start) else {
                continue;
            };
            let bucket = buckets[at];
            if bucket.digest != halves(*digest) {
                recall.revised = true;
            } else if u64::from(now - bucket.confirmed) < self.ttl.as_secs() {
                recall.unchanged.insert(*start);
            }
        }
        recall
    }

    /// The stored rows of these buckets were just made (or found) equal to
    /// the rows of their digests. Buckets before `keep_from` (the first
    /// bucket of the sync's scope) are dropped: the next sync's scope starts
    /// no earlier (a deep sync that does just reads them again).
    pub fn confirm(&self, key: EndpointKey, digests: &BTreeMap<u32, BucketDigest>, keep_from: Option<u32>) {
        if self.ttl.is_zero() {
            return;
        }
        let now = self.now();
        let mut known = self.lock();
        let buckets = known.entry(key).or_default();
        for (start, digest) in digests {
            let bucket = KnownBucket {
                start: *start,
                confirmed: now,
                digest: halves(*digest),
            };
            match buckets.binary_search_by_key(start, |k| k.start) {
                Ok(at) => buckets[at] = bucket,
                Err(at) => buckets.insert(at, bucket),
            }
        }
        if let Some(first) = keep_from {
            let before = buckets.partition_point(|k| k.start < first);
            buckets.drain(..before);
        }
        if buckets.capacity() > buckets.len() + buckets.len() / 4 + 4 {
            buckets.shrink_to_fit();
        }
    }

    /// Drops everything known of an endpoint: a write's outcome is uncertain.
    pub fn forget(&self, key: EndpointKey) {
        self.lock().remove(&key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::schema::UsageRow;

    fn row(bucket: u32, key: u64, tokens: i64) -> UsageRow {
        UsageRow::for_test(key, bucket, tokens, 0)
    }

    const KEY: EndpointKey = (RecordType::Usage, "completions");

    #[test]
    fn digests_ignore_order_and_see_every_change() {
        let scope = BTreeSet::from([0, 3600, 7200]);
        let rows = vec![row(0, 1, 10), row(0, 2, 20), row(3600, 3, 30)];
        let base = bucket_digests(&rows, &scope);
        assert_eq!(base.len(), 3, "the empty bucket has a digest too");
        let reversed: Vec<UsageRow> = rows.iter().rev().cloned().collect();
        assert_eq!(bucket_digests(&reversed, &scope), base);
        let changed = bucket_digests(&[row(0, 1, 11), row(0, 2, 20), row(3600, 3, 30)], &scope);
        assert_ne!(changed[&0], base[&0]);
        assert_eq!(changed[&3600], base[&3600]);
        let missing = bucket_digests(&[row(0, 1, 10), row(3600, 3, 30)], &scope);
        assert_ne!(missing[&0], base[&0]);
        let extra = bucket_digests(
            &[row(0, 1, 10), row(0, 2, 20), row(3600, 3, 30), row(7200, 4, 1)],
            &scope,
        );
        assert_ne!(extra[&7200], base[&7200]);
        let doubled = bucket_digests(&[row(0, 1, 10), row(0, 1, 10), row(0, 2, 20), row(3600, 3, 30)], &scope);
        assert_ne!(doubled[&0], base[&0]);
    }

    #[test]
    fn only_confirmed_matching_fresh_buckets_are_unchanged() {
        let settled = SettledBuckets::new(Duration::from_secs(3600));
        let scope = BTreeSet::from([0, 3600]);
        let first = bucket_digests(&[row(0, 1, 10), row(3600, 2, 20)], &scope);
        assert_eq!(settled.recall(KEY, &first), Recall::default(), "nothing known yet");
        settled.confirm(KEY, &first, Some(0));
        assert_eq!(settled.recall(KEY, &first).unchanged, scope);
        assert!(!settled.recall(KEY, &first).revised);
        assert_eq!(
            settled.recall((RecordType::Cost, "completions"), &first),
            Recall::default()
        );
        let grown = bucket_digests(&[row(0, 1, 10), row(3600, 2, 25)], &scope);
        let recall = settled.recall(KEY, &grown);
        assert_eq!(recall.unchanged, BTreeSet::from([0]));
        assert!(recall.revised, "bucket 3600 was known with other rows");
        // Confirming the changed bucket alone keeps what is known before it.
        let only_changed: BTreeMap<u32, BucketDigest> = grown
            .iter()
            .filter(|(b, _)| **b == 3600)
            .map(|(b, d)| (*b, *d))
            .collect();
        settled.confirm(KEY, &only_changed, Some(0));
        assert_eq!(settled.recall(KEY, &grown).unchanged, scope);
        // The window moved on: an older bucket is dropped, a new one unknown.
        let later = BTreeSet::from([3600, 7200]);
        let next = bucket_digests(&[row(3600, 2, 25)], &later);
        settled.confirm(KEY, &next, Some(3600));
        // Bucket 0 was dropped; 3600 is known with other rows than `first`'s.
        assert_eq!(
            settled.recall(KEY, &first),
            Recall {
                unchanged: BTreeSet::new(),
                revised: true
            }
        );
        assert_eq!(settled.recall(KEY, &next).unchanged, later);
        // A bucket never seen is new, not revised.
        let beyond = bucket_digests(&[row(10_800, 3, 1)], &BTreeSet::from([10_800]));
        assert_eq!(settled.recall(KEY, &beyond), Recall::default());
        settled.forget(KEY);
        assert_eq!(settled.recall(KEY, &next), Recall::default());
    }

    #[test]
    fn knowledge_expires_and_a_zero_ttl_keeps_none() {
        let scope = BTreeSet::from([0]);
        let digests = bucket_digests(&[row(0, 1, 10)], &scope);
        let off = SettledBuckets::default();
        off.confirm(KEY, &digests, Some(0));
        assert_eq!(off.recall(KEY, &digests), Recall::default());
        let brief = SettledBuckets::new(Duration::from_nanos(1));
        brief.confirm(KEY, &digests, Some(0));
        // Any measurable time exceeds a nanosecond.
        let start = Instant::now();
        while start.elapsed() < Duration::from_micros(10) {}
        assert!(brief.recall(KEY, &digests).unchanged.is_empty());
    }
}
