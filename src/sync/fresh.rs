//! Which buckets of a new account are known to hold no rows, so that its
//! first sync diffs them without reading ClickHouse.
//!
//! A first sync (the backfill) diffs every fetched bucket against what is
//! stored, and for an account never synced before nothing is. Reading that
//! back was most of a backfill's wait: each endpoint queued for a store
//! slot held by reads that linger for fuller batches (1,000 accounts x 12
//! days: a mean of ~230 ms waiting for a slot and ~80 ms reading, against
//! ~90 ms fetching).
//!
//! The process-wide read made when the first syncs start (`StoredStates`)
//! also finds the accounts with neither a watermark nor any usage row. Such
//! an account locked before that read began had nothing stored then, and
//! the lock has made this process its only writer since. So a bucket this
//! process has not written to still holds nothing. Every bucket an endpoint
//! writes to is noted before its rows are queued (a failed or uncertain
//! write may still have landed), and those buckets are read as usual.
//!
//! The knowledge expires with the settled buckets' time to live (and is
//! never taken when that is zero), which bounds how long a change made
//! behind the daemon's back (rows restored from a backup) can go unseen.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::normalize::schema::RecordType;

type EndpointKey = (RecordType, &'static str);

/// Per endpoint, the first and last bucket this process wrote to. Backfill
/// chunks and later syncs touch adjacent ranges, so one hull per endpoint
/// is as good as a list and never grows.
type Written = HashMap<EndpointKey, (u32, u32)>;

struct Empty {
    /// When the read that found the account empty began.
    read_at: Instant,
    written: Written,
}

/// One account's buckets known to hold nothing.
pub struct FreshBuckets {
    ttl: Duration,
    empty: Mutex<Option<Empty>>,
}

impl Default for FreshBuckets {
    /// Knows nothing and never will: every sync reads what it diffs.
    fn default() -> Self {
        Self::new(Duration::ZERO)
    }
}

impl FreshBuckets {
    /// `ttl` of zero turns the knowledge off.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            empty: Mutex::new(None),
        }
    }

    /// The account had no rows at all when a read begun at `read_at` (after
    /// this process locked the account) looked.
    pub fn found_empty(&self, read_at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        *self.lock() = Some(Empty {
            read_at,
            written: HashMap::new(),
        });
    }

    /// Whether every bucket of `scope` is known to hold no rows of the
    /// endpoint `key`: the account was found empty within the time to live,
    /// and this process has written nothing between the scope's first and
    /// last bucket.
    pub fn holds_nothing(&self, key: EndpointKey, scope: &BTreeSet<u32>) -> bool {
        let (Some(first), Some(last)) = (scope.first().copied(), scope.last().copied()) else {
            return false;
        };
        let mut empty = self.lock();
        let Some(known) = empty.as_ref() else {
            return false;
        };
        if known.read_at.elapsed() >= self.ttl {
            *empty = None;
            return false;
        }
        match known.written.get(&key) {
            Some(&(low, high)) => last < low || first > high,
            None => true,
        }
    }

    /// Rows of `key` are about to be queued for buckets in `scope`: from
    /// now on those buckets may hold rows.
    pub fn writing(&self, key: EndpointKey, scope: &BTreeSet<u32>) {
        let (Some(first), Some(last)) = (scope.first().copied(), scope.last().copied()) else {
            return;
        };
        if let Some(known) = self.lock().as_mut() {
            let hull = known.written.entry(key).or_insert((first, last));
            *hull = (hull.0.min(first), hull.1.max(last));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Empty>> {
        self.empty.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USAGE: EndpointKey = (RecordType::Usage, "completions");
    const COST: EndpointKey = (RecordType::Cost, "costs");
    const HOUR: u32 = 3_600;

    fn hours(from: u32, to: u32) -> BTreeSet<u32> {
        (from..=to).map(|h| h * HOUR).collect()
    }

    fn fresh() -> FreshBuckets {
        let fresh = FreshBuckets::new(Duration::from_secs(3_600));
        fresh.found_empty(Instant::now());
        fresh
    }

    #[test]
    fn nothing_is_known_until_the_account_is_found_empty() {
        let buckets = FreshBuckets::new(Duration::from_secs(3_600));
        assert!(!buckets.holds_nothing(USAGE, &hours(0, 5)));
        buckets.found_empty(Instant::now());
        assert!(buckets.holds_nothing(USAGE, &hours(0, 5)));
        assert!(
            !buckets.holds_nothing(USAGE, &BTreeSet::new()),
            "an empty scope needs no answer"
        );
    }

    #[test]
    fn written_buckets_are_read_again_and_others_stay_known() {
        let fresh = fresh();
        fresh.writing(USAGE, &hours(10, 20));
        assert!(!fresh.holds_nothing(USAGE, &hours(10, 20)));
        assert!(
            !fresh.holds_nothing(USAGE, &hours(20, 30)),
            "one shared bucket is enough"
        );
        assert!(!fresh.holds_nothing(USAGE, &hours(0, 10)));
        assert!(!fresh.holds_nothing(USAGE, &hours(12, 12)));
        assert!(
            !fresh.holds_nothing(USAGE, &BTreeSet::from([0, 30 * HOUR])),
            "a scope is judged by its first and last bucket"
        );
        assert!(fresh.holds_nothing(USAGE, &hours(0, 9)));
        assert!(fresh.holds_nothing(USAGE, &hours(21, 40)));
        assert!(
            fresh.holds_nothing(COST, &hours(10, 20)),
            "another endpoint wrote nothing"
        );
        fresh.writing(USAGE, &hours(30, 31));
        assert!(
            !fresh.holds_nothing(USAGE, &hours(25, 25)),
            "between two written ranges counts as written"
        );
    }

    #[test]
    fn the_knowledge_is_off_with_a_zero_ttl_and_expires_after_it() {
        let off = FreshBuckets::default();
        off.found_empty(Instant::now());
        assert!(!off.holds_nothing(USAGE, &hours(0, 1)));

        let ttl = Duration::from_secs(60);
        let old = FreshBuckets::new(ttl);
        let read_at = Instant::now()
            .checked_sub(ttl)
            .expect("the monotonic clock has run a minute");
        old.found_empty(read_at);
        assert!(!old.holds_nothing(USAGE, &hours(0, 1)));
        old.found_empty(Instant::now());
        old.writing(USAGE, &hours(0, 1));
        assert!(old.holds_nothing(USAGE, &hours(5, 6)));
    }
}
