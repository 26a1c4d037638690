//! The one paging loop every cursor- or page-based adapter uses, with the
//! guards written once:
//!
//! - a page cap (no provider needs more pages than the window has buckets),
//!   a repeated cursor, and runs of empty pages that still say "more";
//! - every bucket one whole bucket of the endpoint's granularity, inside the
//!   asked window (a bucket outside it would put stored rows of other days in
//!   scope, and an empty one would cancel them);
//! - a bucket seen twice is an error, never summed (for APIs that page by
//!   rows, a record identity seen twice);
//! - every record's numbers checked, and each bucket's totals of its counts
//!   ([`super::guards`]);
//! - `covered_buckets` is exactly the buckets the answer contained.
//!
//! Adapters only fetch and parse one page; they cannot forget a guard.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;

use chrono::{DateTime, Duration, Utc};

use super::guards::{add_to_bucket_totals, check_measures, max_bucket_total, MeasurePolicy};
use super::http::ProviderHttp;
use super::json::JsonError;
use crate::normalize::record_key::record_key;
use crate::normalize::schema::FetchedRecord;
use crate::providers::{EndpointFetch, EndpointSpec, ProviderError, TimeWindow};

/// One time bucket of a page, as the adapter read it.
#[derive(Debug)]
pub struct PageBucket {
    pub start: DateTime<Utc>,
    /// The end the provider stated, when it states one (checked against the
    /// granularity; records always use `start + width`).
    pub end: Option<DateTime<Utc>>,
    pub records: Vec<FetchedRecord>,
}

/// One page: its buckets and the cursor of the next page.
#[derive(Debug, Default)]
pub struct Page {
    pub buckets: Vec<PageBucket>,
    pub next: Option<String>,
}

/// How an API spreads buckets over pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// A bucket is whole on one page (OpenAI, Anthropic): a bucket on two
    /// pages is an error.
    WholeBuckets,
    /// Pages cut through rows, so a bucket may continue on the next page
    /// (LiteLLM): a record identity on two pages is the error instead.
    RowsAcrossPages { max_pages: usize },
}

/// Why a page could not be used.
#[derive(Debug)]
pub enum PageError {
    Provider(ProviderError),
    Parse(String),
}

impl From<ProviderError> for PageError {
    fn from(e: ProviderError) -> Self {
        PageError::Provider(e)
    }
}

impl From<JsonError> for PageError {
    fn from(e: JsonError) -> Self {
        PageError::Parse(e.0)
    }
}

/// Empty pages in a row that still carry a cursor before paging is called
/// endless.
const MAX_EMPTY_PAGES: usize = 2;

/// The loop of one endpoint fetch.
pub struct Pager<'a> {
    pub http: &'a ProviderHttp,
    pub spec: &'a EndpointSpec,
    /// Already snapped to whole buckets.
    pub window: TimeWindow,
    pub spread: Spread,
    pub measures: MeasurePolicy,
}

impl Pager<'_> {
    /// Calls `fetch_page(cursor, page_number)` until there is no next cursor,
    /// applying every guard; fails as a whole (a partial answer is never
    /// returned as success).
    pub async fn collect<F, Fut>(&self, mut fetch_page: F) -> Result<EndpointFetch, ProviderError>
    where
        F: FnMut(Option<String>, usize) -> Fut,
        Fut: Future<Output = Result<Page, PageError>>,
    {
        let width = Duration::seconds(self.spec.granularity.seconds());
        let buckets_in_window = ((self.window.end - self.window.start).num_seconds() / width.num_seconds()).max(1);
        let max_pages = match self.spread {
            Spread::WholeBuckets => usize::try_from(buckets_in_window)
                .unwrap_or(usize::MAX)
                .saturating_add(2),
            Spread::RowsAcrossPages { max_pages } => max_pages,
        };
        let mut fetch = EndpointFetch::default();
        let mut cursors: HashSet<String> = HashSet::new();
        let mut identities = foldhash::HashSet::<u64>::default();
        let bucket_limit = max_bucket_total(width.num_seconds());
        // Per bucket, across pages (a bucket may continue on the next page).
        let mut totals: HashMap<DateTime<Utc>, [i64; 5]> = HashMap::new();
        let mut empty_run = 0;
        let mut cursor: Option<String> = None;
        for number in 1..=max_pages {
            let page = match fetch_page(cursor.take(), number).await {
                Ok(page) => page,
                Err(PageError::Provider(e)) => return Err(e),
                Err(PageError::Parse(detail)) => return Err(self.bad(number, &detail)),
            };
            // Progress: a new bucket, or (rows across pages) a new record:
            // a day with more rows than three pages continues on pages that
            // bring no new bucket.
            let mut new_buckets = 0;
            // Sized once per page: records are hundreds of bytes each, and
            // growing by doubling copied every one of them again.
            fetch
                .records
                .reserve(page.buckets.iter().map(|b| b.records.len()).sum());
            for bucket in page.buckets {
                self.check_bucket(number, &bucket, width)?;
                let first_time = fetch.covered_buckets.insert(bucket.start);
                if first_time {
                    new_buckets += 1;
                } else if self.spread == Spread::WholeBuckets {
                    return Err(self.bad(
                        number,
                        &format!(
                            "bucket {} was already returned on an earlier page; refusing to count it twice",
                            bucket.start.to_rfc3339()
                        ),
                    ));
                }
                let bucket_totals = totals.entry(bucket.start).or_default();
                for record in bucket.records {
                    if record.identity.bucket_start != bucket.start {
                        return Err(self.bad(number, "a record does not lie in its bucket (adapter bug)"));
                    }
                    if let Err(problem) = check_measures(&record.measures, self.measures)
                        .and_then(|()| add_to_bucket_totals(bucket_totals, &record.measures, bucket_limit))
                    {
                        return Err(self.bad(number, &format!("bucket {}: {problem}", bucket.start.to_rfc3339())));
                    }
                    if let Spread::RowsAcrossPages { .. } = self.spread {
                        // The connection id does not matter for telling two records apart.
                        if !identities.insert(record_key("", &record.identity)) {
                            return Err(self.bad(
                                number,
                                &format!(
                                    "a record of bucket {} was already returned; refusing to count it twice",
                                    bucket.start.to_rfc3339()
                                ),
                            ));
                        }
                    }
                    if let Spread::RowsAcrossPages { .. } = self.spread {
                        new_buckets += 1;
                    }
                    fetch.records.push(record);
                }
            }
            let Some(next) = page.next else {
                return Ok(fetch);
            };
            if !cursors.insert(next.clone()) {
                return Err(self.bad(number, "the next-page cursor repeats an earlier one; paging would loop"));
            }
            empty_run = if new_buckets == 0 { empty_run + 1 } else { 0 };
            if empty_run > MAX_EMPTY_PAGES {
                return Err(self.bad(
                    number,
                    &format!(
                        "{empty_run} pages in a row brought no new bucket yet say there is more; paging would not end"
                    ),
                ));
            }
            cursor = Some(next);
        }
        Err(self.bad(
            max_pages,
            &format!("still more pages after {max_pages}, more than the window can hold; paging would not end"),
        ))
    }

    fn check_bucket(&self, page: usize, bucket: &PageBucket, width: Duration) -> Result<(), ProviderError> {
        let start = bucket.start;
        let granularity = self.spec.granularity;
        if granularity.floor(start) != start || bucket.end.is_some_and(|end| end != start + width) {
            return Err(self.bad(
                page,
                &format!(
                    "bucket {} .. {} is not one whole {granularity} bucket",
                    start.to_rfc3339(),
                    bucket.end.map_or_else(|| "?".to_string(), |e| e.to_rfc3339())
                ),
            ));
        }
        if start < self.window.start || start >= self.window.end {
            return Err(self.bad(
                page,
                &format!(
                    "bucket {} is outside the asked window {} .. {}; refusing it (it would put other days' stored rows in scope)",
                    start.to_rfc3339(),
                    self.window.start.to_rfc3339(),
                    self.window.end.to_rfc3339()
                ),
            ));
        }
        Ok(())
    }

    fn bad(&self, page: usize, detail: &str) -> ProviderError {
        self.http
            .malformed(self.spec.endpoint, format!("page {page}: {detail}"))
    }
}

/// The starts of every bucket of `window`, for APIs without an envelope of
/// buckets (one request per window, rows carry their date).
pub fn bucket_starts(window: TimeWindow, spec: &EndpointSpec) -> BTreeSet<DateTime<Utc>> {
    let width = Duration::seconds(spec.granularity.seconds());
    let mut out = BTreeSet::new();
    let mut t = spec.granularity.floor(window.start);
    while t < window.end {
        out.insert(t);
        t += width;
    }
    out
}
