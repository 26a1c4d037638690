//! The fleet-wide sync slots (`[sync] max_concurrent_syncs`), and the one
//! thing the writer learns from them: that a burst of syncs has ended.
//!
//! The writer batches rows for up to `writer.max_batch_age` so that syncs
//! spread over an interval share INSERTs. At the end of a burst (start-up,
//! every account triggered at once, a one-shot `sync`) that wait is pure
//! delay: no sync holds or awaits a slot, so nothing more is coming, and
//! every sync left is waiting for the writer. A 1,000-account first sync
//! ended with the machine idle for most of a second, twice over (the last
//! rows, then the watermarks behind them). So the writer flushes as soon as
//! the slots go idle after a burst. A burst is a sync having waited for a
//! slot within [`BURST_MEMORY`]: a fleet whose syncs are spread out never
//! waits for one, and keeps its batches (one INSERT per sync would be three
//! small parts for ClickHouse to merge per account).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// How long after a sync last waited for a slot the fleet still counts as
/// in a burst. Longer than one INSERT of a full batch, so the watermarks
/// queued behind a burst's last rows go at once too.
pub const BURST_MEMORY: Duration = Duration::from_secs(10);

/// The semaphore of sync slots, with what the writer watches.
pub struct SyncSlots {
    semaphore: Arc<Semaphore>,
    size: usize,
    /// When a sync last had to wait for a slot.
    contended_at: Mutex<Option<Instant>>,
    /// Every idle moment ends a burst (a one-shot command: no steady state
    /// whose batches an early flush would shrink).
    one_shot: bool,
    /// Bumped each time the last slot is let go.
    idle: watch::Sender<u64>,
}

/// One sync's turn. Letting go of the last one held wakes the writer.
pub struct SyncSlot {
    permit: Option<OwnedSemaphorePermit>,
    slots: Arc<SyncSlots>,
}

impl SyncSlots {
    pub fn new(size: usize) -> Arc<Self> {
        Self::build(size, false)
    }

    /// Slots of a one-shot command: its syncs are all the work there is.
    pub fn one_shot(size: usize) -> Arc<Self> {
        Self::build(size, true)
    }

    fn build(size: usize, one_shot: bool) -> Arc<Self> {
        Arc::new(Self {
            semaphore: Arc::new(Semaphore::new(size)),
            size,
            contended_at: Mutex::new(None),
            one_shot,
            idle: watch::Sender::new(0),
        })
    }

    /// Waits for a slot; a wait is remembered as a burst.
    pub async fn acquire(self: &Arc<Self>) -> SyncSlot {
        let permit = match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                *self.contended_at.lock().expect("not poisoned") = Some(Instant::now());
                self.semaphore
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("sync slots are never closed")
            }
        };
        SyncSlot {
            permit: Some(permit),
            slots: Arc::clone(self),
        }
    }

    pub fn available_permits(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// No sync holds or awaits a slot, right after a burst: whatever the
    /// writer holds is all that is coming.
    pub fn burst_ended(&self) -> bool {
        self.available_permits() == self.size
            && (self.one_shot
                || self
                    .contended_at
                    .lock()
                    .expect("not poisoned")
                    .is_some_and(|at| at.elapsed() < BURST_MEMORY))
    }

    /// Changes each time the slots go idle.
    pub fn watch_idle(&self) -> watch::Receiver<u64> {
        self.idle.subscribe()
    }
}

impl Drop for SyncSlot {
    fn drop(&mut self) {
        // The permit first: a waiting sync takes it over, and then the slots
        // are not idle.
        drop(self.permit.take());
        if self.slots.available_permits() == self.slots.size {
            self.slots.idle.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_ends_when_its_last_slot_is_let_go() {
        let slots = SyncSlots::new(1);
        let mut idle = slots.watch_idle();
        let first = slots.acquire().await;
        let mut second = Box::pin(slots.acquire());
        assert!(
            futures::poll!(&mut second).is_pending(),
            "one slot: the second sync waits"
        );
        drop(first);
        let second = second.await;
        assert!(!slots.burst_ended(), "a slot is still held");
        assert!(!idle.has_changed().unwrap(), "the slot passed to a waiting sync");
        drop(second);
        assert!(idle.has_changed().unwrap(), "the writer is woken");
        idle.borrow_and_update();
        assert!(slots.burst_ended());
    }

    #[tokio::test]
    async fn syncs_that_never_wait_for_a_slot_are_no_burst() {
        let slots = SyncSlots::new(2);
        let mut idle = slots.watch_idle();
        let (a, b) = (slots.acquire().await, slots.acquire().await);
        drop(a);
        assert!(!idle.has_changed().unwrap());
        drop(b);
        assert!(idle.has_changed().unwrap(), "idle, so the writer looks");
        idle.borrow_and_update();
        assert!(!slots.burst_ended(), "but batches as usual: nobody waited");
    }

    #[tokio::test]
    async fn every_idle_moment_of_a_one_shot_command_ends_a_burst() {
        let slots = SyncSlots::one_shot(4);
        let slot = slots.acquire().await;
        assert!(!slots.burst_ended());
        drop(slot);
        assert!(slots.burst_ended());
    }
}
