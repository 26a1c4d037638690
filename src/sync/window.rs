//! Which windows a sync covers and how far the watermark may move. Pure.
//!
//! The watermark means "everything before this instant is synced and stored".
//! It only moves forward, and only across time that was actually synced: a
//! chunk that starts after the watermark would leave a gap, so it does not
//! move it (docs/DESIGN.md: an explicit window never moves the watermark backwards
//! or across a gap).

use chrono::{DateTime, Duration, Utc};

use crate::providers::TimeWindow;

/// Why a sync runs; decides its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    /// The normal schedule: from the watermark minus lookback to now, or the
    /// first-run backfill when there is no watermark yet.
    Incremental,
    /// The periodic deep re-sync that catches late restatements.
    Deep,
    /// A window asked for on the command line or the admin API.
    Explicit {
        since: DateTime<Utc>,
        until: Option<DateTime<Utc>>,
    },
}

/// How far back and in what steps to sync.
#[derive(Clone, Copy, Debug)]
pub struct WindowPolicy {
    pub lookback: Duration,
    pub backfill_days: i64,
    pub deep_days: i64,
    pub chunk_days: i64,
}

/// The windows of one sync, oldest first, and whether the first one starts the
/// account's history (a first-run backfill).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncPlan {
    pub chunks: Vec<TimeWindow>,
    pub starts_history: bool,
}

pub fn plan(kind: SyncKind, watermark: Option<DateTime<Utc>>, now: DateTime<Utc>, policy: &WindowPolicy) -> SyncPlan {
    let (start, end, starts_history) = match (kind, watermark) {
        (SyncKind::Incremental, None) => {
            let start = day_floor(now - Duration::days(policy.backfill_days));
            (start, now, true)
        }
        (SyncKind::Incremental, Some(w)) => (w.min(now) - policy.lookback, now, false),
        (SyncKind::Deep, _) => (day_floor(now - Duration::days(policy.deep_days)), now, false),
        (SyncKind::Explicit { since, until }, _) => (since, until.unwrap_or(now).min(now), false),
    };
    SyncPlan {
        chunks: chunk(TimeWindow::new(start, end), Duration::days(policy.chunk_days.max(1))),
        starts_history,
    }
}

/// The watermark after `chunk` was synced and stored.
pub fn advance(watermark: Option<DateTime<Utc>>, chunk: &TimeWindow, starts_history: bool) -> Option<DateTime<Utc>> {
    match watermark {
        None if starts_history => Some(chunk.end),
        None => None,
        Some(w) if chunk.start <= w => Some(w.max(chunk.end)),
        Some(w) => Some(w),
    }
}

fn chunk(window: TimeWindow, size: Duration) -> Vec<TimeWindow> {
    let mut out = Vec::new();
    let mut start = window.start;
    while start < window.end {
        let end = (start + size).min(window.end);
        out.push(TimeWindow::new(start, end));
        start = end;
    }
    out
}

fn day_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    crate::normalize::schema::Granularity::Day.floor(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, d, h, 0, 0).unwrap()
    }

    const POLICY: WindowPolicy = WindowPolicy {
        lookback: Duration::days(2),
        backfill_days: 10,
        deep_days: 35,
        chunk_days: 7,
    };

    #[test]
    fn first_run_backfills_whole_days_in_chunks() {
        let p = plan(SyncKind::Incremental, None, t(20, 13), &POLICY);
        assert!(p.starts_history);
        assert_eq!(p.chunks.first().unwrap().start, t(10, 0));
        assert_eq!(p.chunks.last().unwrap().end, t(20, 13));
        assert_eq!(p.chunks.len(), 2);
        assert_eq!(p.chunks[0].end, p.chunks[1].start);
    }

    #[test]
    fn incremental_rereads_the_lookback() {
        let p = plan(SyncKind::Incremental, Some(t(20, 10)), t(20, 13), &POLICY);
        assert_eq!(p.chunks, vec![TimeWindow::new(t(18, 10), t(20, 13))]);
    }

    #[test]
    fn the_watermark_never_moves_back_or_across_a_gap() {
        let w = Some(t(20, 0));
        // Backwards window: stays.
        assert_eq!(advance(w, &TimeWindow::new(t(1, 0), t(5, 0)), false), w);
        // A window after a gap: stays.
        assert_eq!(advance(w, &TimeWindow::new(t(21, 0), t(22, 0)), false), w);
        // Overlapping: moves to its end.
        assert_eq!(advance(w, &TimeWindow::new(t(19, 0), t(22, 0)), false), Some(t(22, 0)));
        // An explicit window with no history yet sets nothing.
        assert_eq!(advance(None, &TimeWindow::new(t(19, 0), t(22, 0)), false), None);
        assert_eq!(
            advance(None, &TimeWindow::new(t(19, 0), t(22, 0)), true),
            Some(t(22, 0))
        );
    }

    #[test]
    fn explicit_windows_end_no_later_than_now() {
        let p = plan(
            SyncKind::Explicit {
                since: t(1, 0),
                until: Some(t(30, 0)),
            },
            None,
            t(3, 5),
            &POLICY,
        );
        assert_eq!(p.chunks, vec![TimeWindow::new(t(1, 0), t(3, 5))]);
    }
}

/// A time given by a user that is neither a date nor an RFC 3339 time.
#[derive(Debug, thiserror::Error)]
#[error("'{0}' is neither a date (2025-01-31) nor an RFC 3339 time (2025-01-31T12:00:00Z)")]
pub struct BadTime(pub String);

/// A date (00:00 UTC) or an RFC 3339 time, as the CLI and the admin API take them.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, BadTime> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| BadTime(text.to_string()))
}
