//! Webhooks: `sync.completed` and `sync.failed` events POSTed as signed JSON
//! to the `[[webhooks]]` receivers.
//!
//! A sync only *emits* an event ([`Notifier::emit`] never waits): each
//! webhook has its own worker task and bounded queue, so a slow or dead
//! receiver delays nobody but itself, and a full queue drops the event with
//! a metric and a warning instead of holding a sync. Workers retry 5xx,
//! 408, 429, timeouts and connection errors with capped exponential backoff
//! for a bounded number of attempts; other 4xx are final. The payload and
//! how to verify its signature are documented in docs/webhooks.md.

mod delivery;
mod payload;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{WebhookConfig, WebhookEvent};

pub use payload::{sign, SyncEvent, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// Events waiting per webhook before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 1_000;

/// One webhook's queue, feeding its worker.
struct Target {
    config: WebhookConfig,
    queue: mpsc::Sender<Arc<payload::Encoded>>,
}

/// The handle syncs emit events through; cheap to clone. The set of
/// webhooks can be replaced on reload without touching the connections
/// that hold a clone.
#[derive(Clone)]
pub struct Notifier {
    targets: Arc<RwLock<Vec<Target>>>,
    capacity: usize,
    retry_base: Duration,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Notifier({} webhooks)", self.read().len())
    }
}

/// What became of one emitted event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    pub queued: usize,
    pub dropped: usize,
}

impl Notifier {
    /// Starts one worker per webhook (inside a tokio runtime).
    pub fn start(webhooks: &[WebhookConfig]) -> Self {
        Self::with_settings(webhooks, QUEUE_CAPACITY, delivery::RETRY_BASE)
    }

    /// [`Self::start`] with a queue size and first retry delay of choice.
    pub fn with_settings(webhooks: &[WebhookConfig], capacity: usize, retry_base: Duration) -> Self {
        let notifier = Self {
            targets: Arc::new(RwLock::new(Vec::new())),
            capacity,
            retry_base,
        };
        notifier.replace(webhooks);
        notifier
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Target>> {
        self.targets.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the running webhooks match `webhooks`: an unchanged webhook
    /// keeps its worker and queue; a changed or removed one's worker
    /// finishes what it has queued and ends.
    pub fn replace(&self, webhooks: &[WebhookConfig]) {
        let mut targets = self.targets.write().unwrap_or_else(|p| p.into_inner());
        let mut old: Vec<Target> = std::mem::take(&mut *targets);
        for config in webhooks {
            match old.iter().position(|t| t.config == *config) {
                Some(at) => targets.push(old.swap_remove(at)),
                None => {
                    let (queue, rx) = mpsc::channel(self.capacity);
                    tokio::spawn(delivery::worker(config.clone(), rx, self.retry_base));
                    targets.push(Target {
                        config: config.clone(),
                        queue,
                    });
                }
            }
        }
    }

    /// Queues `event` for every webhook that wants it; never waits.
    pub fn emit(&self, event: &SyncEvent) -> Emitted {
        let targets = self.read();
        let mut emitted = Emitted::default();
        if !targets.iter().any(|t| t.config.wants(event.kind)) {
            return emitted;
        }
        let encoded = Arc::new(event.encode());
        for target in targets.iter().filter(|t| t.config.wants(event.kind)) {
            match target.queue.try_send(encoded.clone()) {
                Ok(()) => emitted.queued += 1,
                Err(_) => {
                    emitted.dropped += 1;
                    crate::metrics::webhook_delivery(&target.config.id, event.kind.as_str(), "dropped");
                    tracing::warn!(
                        webhook = %target.config.id,
                        event = event.kind.as_str(),
                        event_id = %encoded.id,
                        account = %event.account,
                        capacity = self.capacity,
                        "webhook queue is full (the receiver is slow or down); event dropped"
                    );
                }
            }
        }
        emitted
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

impl WebhookEvent {
    /// The event a sync outcome produces.
    pub fn for_outcome(succeeded: bool) -> Self {
        if succeeded {
            WebhookEvent::SyncCompleted
        } else {
            WebhookEvent::SyncFailed
        }
    }
}

#[cfg(test)]
mod tests;
