//! Group commit for the ingest path. Webhook handlers hand their ledger write
//! to a writer and wait for its answer; the writer takes every write that is
//! queued (up to `batch_max_rows`), records them in one transaction, and
//! answers each request with its own outcome only after the commit. At low
//! load a batch is a single row and waits for nothing (unless a linger is
//! configured); under load, many requests share one commit and one fsync.
//! On PostgreSQL the writers are tasks here (`batch_writers` of them,
//! sharing one queue); on SQLite the ledger thread is the writer and
//! gathers its own batches (`store::sqlite_ledger`), which saves a hop
//! through another thread per batch.
//!
//! A failed transaction fails exactly the requests in it (each gets 503 and
//! its provider retries); nothing is acknowledged that was not committed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::{GroupCommit, NewEvent, RecordOutcome, Store, StoreError};

type Reply = oneshot::Sender<Result<RecordOutcome, String>>;

struct Job {
    event: NewEvent,
    reply: Reply,
}

/// The handle handlers use; cheap to clone.
#[derive(Clone)]
pub struct Ingestor {
    route: Route,
}

#[derive(Clone)]
enum Route {
    /// PostgreSQL: to the writer tasks' queue.
    Writers(mpsc::Sender<Job>),
    /// SQLite: straight to the ledger thread.
    Ledger(Store),
}

#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub max_rows: usize,
    pub linger: Duration,
    /// Writer tasks on PostgreSQL; each commits its own batches. (SQLite's
    /// one ledger thread is its writer.)
    pub writers: usize,
    /// Writes queued at most; beyond that `record` waits (handlers bound
    /// their own concurrency before they get here).
    pub queue: usize,
}

impl Ingestor {
    /// Starts the writer tasks (none on SQLite). They stop when every
    /// `Ingestor` clone is gone.
    pub fn start(
        store: Store,
        settings: BatchSettings,
        metrics: Arc<Metrics>,
    ) -> (Ingestor, Vec<JoinHandle<()>>) {
        let observer = metrics.clone();
        let gathered_by_the_ledger = store.gather_sqlite_batches(GroupCommit {
            max_rows: settings.max_rows,
            linger: settings.linger,
            observe: Box::new(move |rows, took| observer.observe_batch(rows, took.as_secs_f64())),
        });
        if gathered_by_the_ledger {
            let route = Route::Ledger(store);
            return (Ingestor { route }, Vec::new());
        }
        let (jobs, queue) = mpsc::channel(settings.queue.max(1));
        let queue = Arc::new(Mutex::new(queue));
        let writers = (0..settings.writers.max(1))
            .map(|_| {
                tokio::spawn(write_batches(
                    store.clone(),
                    queue.clone(),
                    settings,
                    metrics.clone(),
                ))
            })
            .collect();
        let route = Route::Writers(jobs);
        (Ingestor { route }, writers)
    }

    /// Records one delivery; returns once its transaction has committed.
    pub async fn record(&self, event: NewEvent) -> Result<RecordOutcome, StoreError> {
        let jobs = match &self.route {
            Route::Writers(jobs) => jobs,
            Route::Ledger(store) => return store.record_one(event).await,
        };
        let (reply, answer) = oneshot::channel();
        jobs.send(Job { event, reply })
            .await
            .map_err(|_| StoreError::BatchFailed("the ledger writer has stopped".into()))?;
        match answer.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(message)) => Err(StoreError::BatchFailed(message)),
            Err(_) => Err(StoreError::BatchFailed(
                "the ledger writer has stopped".into(),
            )),
        }
    }
}

async fn write_batches(
    store: Store,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    settings: BatchSettings,
    metrics: Arc<Metrics>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(settings.max_rows);
    loop {
        {
            // Only the writer holding the queue gathers; the others wait for
            // it here, and commit in parallel once they have their batch.
            let mut queue = queue.lock().await;
            match queue.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            if !settings.linger.is_zero() {
                let deadline = tokio::time::Instant::now() + settings.linger;
                while batch.len() < settings.max_rows {
                    match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some(job)) => batch.push(job),
                        _ => break,
                    }
                }
            }
            while batch.len() < settings.max_rows {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let (events, replies): (Vec<NewEvent>, Vec<Reply>) =
            batch.drain(..).map(|job| (job.event, job.reply)).unzip();
        let started = std::time::Instant::now();
        let recorded = store.record_batch(&events).await;
        metrics.observe_batch(events.len(), started.elapsed().as_secs_f64());
        match recorded {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // The requester may have gone away; its row stands.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, rows = events.len(), "ledger batch failed");
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(message.clone()));
                }
            }
        }
    }
}
