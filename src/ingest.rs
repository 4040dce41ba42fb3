//! Group commit for the ingest path. Webhook handlers hand their ledger write
//! to a writer and wait for its answer; the writer takes every write that is
//! queued (up to `batch_max_rows`), records them in one transaction, and
//! answers each request with its own outcome only after the commit. At low
//! load a batch is a single row and waits for nothing (unless a linger is
//! configured); under load, many requests share one commit and one fsync.
//! On PostgreSQL the writers are tasks here (`batch_writers` of them, each
//! with a queue of its own); on SQLite the ledger thread is the writer and
//! gathers its own batches (`store::sqlite_ledger`), which saves a hop
//! through another thread per batch.
//!
//! Arrival order per object: every delivery of one object goes to the same
//! writer (chosen by a hash of source, type and id), whose batches commit
//! one after another, so ledger ids of one object follow the order in which
//! its deliveries were handed over, also with several writers. (Parallel
//! writers sharing one queue drew ids in the order their statements reached
//! the server, so a later delivery could get the smaller id.) Deliveries
//! without an object have no order to keep and go to the writers in turn.
//!
//! A failed transaction fails exactly the requests in it (each gets 503 and
//! its provider retries); nothing is acknowledged that was not committed.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::dedup::{self, KeyPlan, Strategy};
use crate::metrics::Metrics;
use crate::sources::{BodyKind, Delivery, Source};
use crate::store::{GroupCommit, NewEvent, RecordOutcome, Store, StoreError};

/// The ledger row a verified, parsed delivery claims: its dedup key by the
/// rules of SPEC §3 and what the row holds. The one place a key is made,
/// for webhooks and for events gap-fill found (`reconcile`), so that the
/// two meet on the same key and whichever comes second is not new.
pub fn ledger_event(
    source: &Source,
    kind: BodyKind,
    body: &[u8],
    delivery: Delivery,
    body_hash: String,
    received_at_ms: i64,
) -> (NewEvent, Strategy) {
    let plan = dedup::plan(
        &delivery,
        source.actions(),
        source.config.hash_window_secs,
        &body_hash,
        received_at_ms,
    );
    let (key, previous_key, strategy, ignored) = match plan {
        KeyPlan::Insert {
            strategy,
            key,
            previous_key,
        } => (key, previous_key, strategy, false),
        KeyPlan::Ignore { key } => (key, None, Strategy::ActionObject, true),
    };
    let event = NewEvent {
        source: source.name().to_string(),
        dedup_key: key,
        previous_key,
        strategy,
        ignored,
        event_time_ms: source.event_time_ms(delivery.event_time_ms, received_at_ms),
        // A JSON body is stored as received (it parsed, so it is valid JSON
        // and UTF-8); a form body as its flat JSON object.
        payload: match kind {
            BodyKind::Json => String::from_utf8_lossy(body).into_owned(),
            BodyKind::Form => delivery.payload.to_string(),
        },
        provider_event_id: delivery.event_id,
        action: delivery.action,
        object_type: delivery.object_type,
        object_id: delivery.object_id,
        body_hash,
        received_at_ms,
    };
    (event, strategy)
}

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
    /// PostgreSQL: to the writer tasks' queues, one per writer.
    Writers(Arc<WriterQueues>),
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
        let count = settings.writers.max(1);
        let per_writer = (settings.queue / count).max(1);
        let (queues, writers) = (0..count)
            .map(|_| {
                let (jobs, queue) = mpsc::channel(per_writer);
                let writer = tokio::spawn(write_batches(
                    store.clone(),
                    queue,
                    settings,
                    metrics.clone(),
                ));
                (jobs, writer)
            })
            .unzip();
        let route = Route::Writers(Arc::new(WriterQueues {
            queues,
            next: AtomicUsize::new(0),
        }));
        (Ingestor { route }, writers)
    }

    /// Records one delivery; returns once its transaction has committed.
    pub async fn record(&self, event: NewEvent) -> Result<RecordOutcome, StoreError> {
        let jobs = match &self.route {
            Route::Writers(queues) => queues.for_event(&event),
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

/// The PostgreSQL writers' queues, and which one a delivery goes to.
struct WriterQueues {
    queues: Vec<mpsc::Sender<Job>>,
    /// Round robin for deliveries without an object.
    next: AtomicUsize,
}

impl WriterQueues {
    /// The queue of the writer that records every delivery of this event's
    /// object; any writer, in turn, for an event without one.
    fn for_event(&self, event: &NewEvent) -> &mpsc::Sender<Job> {
        let index = match (&event.object_type, &event.object_id) {
            (Some(object_type), Some(object_id)) => {
                let mut hasher = DefaultHasher::new();
                (&event.source, object_type, object_id).hash(&mut hasher);
                hasher.finish() as usize
            }
            _ => self.next.fetch_add(1, Ordering::Relaxed),
        };
        &self.queues[index % self.queues.len()]
    }
}

async fn write_batches(
    store: Store,
    mut queue: mpsc::Receiver<Job>,
    settings: BatchSettings,
    metrics: Arc<Metrics>,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(settings.max_rows);
    loop {
        {
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
