//! Completing processed events, several in one transaction: the background
//! loop's group commit ([`Completer`]) and the hand-driven rounds of
//! `run_once`/`drain` both finish their processed events through
//! [`Worker::complete_processed`], which also counts them. Only completions
//! that took effect are counted as `done`: an event whose lease another
//! worker holds by now changes nothing and comes back as `LeaseLost`.

use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::{log_outcome, Outcome, Worker, COMPLETE_BATCH_MAX};
use crate::store::complete::Completion;
use crate::store::queue::{ClaimedEvent, DomainWrite, QueueError};
use crate::store::StoreError;

impl Worker {
    /// Completes events processed around the same time in one
    /// [`Store::complete_batch`](crate::store::Store::complete_batch)
    /// transaction and counts each completion that took effect. The answer
    /// has one outcome per event, in the order given: `Done`, or `LeaseLost`
    /// for an event whose lease was no longer this worker's (nothing of it
    /// was written, and it is not counted). `Err`: the transaction failed,
    /// and with it every event in the batch; their leases expire and they
    /// are processed again. A commit that appended feed items wakes this
    /// process's feed readers ([`Worker::feed_signal`]).
    pub async fn complete_processed(
        &self,
        batch: &[Completion<'_>],
    ) -> Result<Vec<Outcome>, StoreError> {
        let done = self
            .store
            .complete_batch_with(batch, &self.shared.outbox, self.clock.now_ms())
            .await?;
        if !self.shared.outbox.is_empty() && done.iter().any(|&d| d) {
            self.shared.deliveries_written.send_modify(|n| *n += 1);
        }
        let fed = batch
            .iter()
            .zip(&done)
            .filter(|((event, _), done)| **done && self.shared.outbox.feeds(&event.source))
            .count();
        if fed > 0 {
            // After the commit: a woken reader finds the items (on
            // PostgreSQL, once older transactions have ended too).
            self.metrics.feed_items_appended(fed as u64);
            self.shared.feed_signal.notify_waiters();
        }
        Ok(batch
            .iter()
            .zip(done)
            .map(|(&(event, _), done)| {
                let result = if done {
                    Ok(())
                } else {
                    Err(QueueError::LeaseLost(event.id))
                };
                // `settle` fails only on a store error, which neither is.
                self.settle(event, result, Outcome::Done)
                    .unwrap_or(Outcome::LeaseLost)
            })
            .collect())
    }
}

/// Group commit for completions in the background loop: processing tasks
/// queue their finished event (and its domain write); one task takes
/// whatever is queued (up to [`COMPLETE_BATCH_MAX`]), completes it with
/// [`Worker::complete_processed`], then logs each event's own result (done,
/// or lease lost) and wakes the claiming loop. An event is therefore never
/// done before its domain write is committed, and the next event of its
/// object stays unclaimable until then. A failed transaction fails exactly
/// the events in it; their leases expire and they are processed again.
#[derive(Clone)]
pub(super) struct Completer {
    pub(super) jobs: mpsc::Sender<(ClaimedEvent, Option<DomainWrite>)>,
    /// Notified after each committed batch.
    pub(super) committed: Arc<Notify>,
}

impl Completer {
    /// Starts the completing task; it returns once every `Completer` clone
    /// is gone and what they queued is committed.
    pub(super) fn start(worker: Worker, queue: usize) -> (Completer, JoinHandle<()>) {
        let (jobs, mut queue) = mpsc::channel::<(ClaimedEvent, Option<DomainWrite>)>(queue.max(1));
        let committed = Arc::new(Notify::new());
        let notify = committed.clone();
        let task = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(COMPLETE_BATCH_MAX);
            while let Some(job) = queue.recv().await {
                batch.push(job);
                while batch.len() < COMPLETE_BATCH_MAX {
                    match queue.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let refs: Vec<_> = batch.iter().map(|(e, w)| (e, w.as_ref())).collect();
                match worker.complete_processed(&refs).await {
                    Ok(outcomes) => {
                        for ((event, _), outcome) in batch.iter().zip(outcomes) {
                            log_outcome(event, &Ok(outcome));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, events = batch.len(), "completing a batch of events failed");
                        for (event, _) in &batch {
                            log_outcome(event, &Err(StoreError::BatchFailed(e.to_string())));
                        }
                    }
                }
                batch.clear();
                notify.notify_one();
            }
        });
        (Completer { jobs, committed }, task)
    }
}
