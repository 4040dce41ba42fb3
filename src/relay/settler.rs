//! One relay's settler: the attempts in flight hand it their outcomes and
//! wait for its answer, and it writes whatever has queued up since its last
//! write in one statement ([`Store::settle_deliveries`]). While one write
//! runs, the next batch gathers, so under load a write carries many
//! outcomes and a commit is no longer paid per delivery; alone, an outcome
//! is written at once, with no timer to wait for.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::store::deliveries_settle::SettleRow;
use crate::store::{Store, StoreError};

/// The most outcomes in one write.
const MAX_BATCH: usize = 256;

/// Whether the lease was held, or why the write failed (logged once here).
type Answer = Result<bool, String>;

struct Job {
    row: SettleRow,
    answer: oneshot::Sender<Answer>,
}

/// The attempts' handle on a settler task; cheap to clone. The task ends
/// when the last handle is dropped, after writing what it was handed.
#[derive(Clone)]
pub(super) struct Settler {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Settler {
    /// Starts the task; it runs until every clone of the handle is dropped.
    pub(super) fn spawn(
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> (Settler, tokio::task::JoinHandle<()>) {
        let (jobs, queue) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(store, clock, queue));
        (Settler { jobs }, task)
    }

    /// Writes one outcome (in some batch); whether the lease was still held.
    pub(super) async fn settle(&self, row: SettleRow) -> Result<bool, StoreError> {
        let stopped = || StoreError::BatchFailed("the relay's settler stopped".into());
        let (answer, answered) = oneshot::channel();
        self.jobs.send(Job { row, answer }).map_err(|_| stopped())?;
        answered
            .await
            .map_err(|_| stopped())?
            .map_err(StoreError::BatchFailed)
    }
}

async fn run(store: Store, clock: Arc<dyn Clock>, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs = std::mem::take(&mut batch);
        let rows: Vec<SettleRow> = jobs.iter().map(|j| j.row.clone()).collect();
        let result = store.settle_deliveries(&rows, clock.now_ms()).await;
        if result.is_err() && rows.len() > 1 {
            // One row the database refuses must not cost the others their
            // outcome: write them one at a time, and fail only that one.
            tracing::warn!(
                outcomes = rows.len(),
                "a batch of delivery outcomes failed; recording them one at a time"
            );
            for (job, row) in jobs.into_iter().zip(rows) {
                let one = store
                    .settle_deliveries(std::slice::from_ref(&row), clock.now_ms())
                    .await;
                let _ = job.answer.send(match one {
                    Ok(held) => Ok(held.first().copied().unwrap_or(false)),
                    Err(e) => {
                        tracing::error!(error = %e, delivery = row.id,
                            "could not record a delivery attempt; it is sent again when its lease expires");
                        Err(e.to_string())
                    }
                });
            }
            continue;
        }
        match result {
            Ok(held) => {
                for (job, held) in jobs.into_iter().zip(held) {
                    let _ = job.answer.send(Ok(held));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, outcomes = jobs.len(),
                    "could not record delivery attempts; they are sent again when their leases expire");
                let cause = e.to_string();
                for job in jobs {
                    let _ = job.answer.send(Err(cause.clone()));
                }
            }
        }
    }
}
