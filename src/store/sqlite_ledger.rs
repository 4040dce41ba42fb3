//! SQLite's ledger writer: one thread that owns one connection to the
//! database file and records whole group-commit batches on it, one delivery
//! at a time with cached prepared statements, inside one `BEGIN IMMEDIATE`
//! transaction per batch. The thread gathers its batches itself: each
//! request it takes is followed by every request already queued (up to
//! `batch_max_rows` deliveries, after `batch_linger_us` if set), so webhook
//! handlers hand it their delivery directly, and the batch after a commit
//! starts without a hop through another thread.
//!
//! Why not through sqlx like every other statement: sqlx runs each SQLite
//! connection on a worker thread of its own and hands every command (begin,
//! each statement, each row, commit) across threads, which measured about
//! fifty context switches per batch and 40 µs per delivery on this project's
//! 2-core machines. Here a batch crosses threads twice (in and out), and
//! SQLite is called directly. Everything else (migrations, claims,
//! completions, admin reads) still goes through sqlx, and this writer takes
//! the same in-process write gate as the others.
//!
//! The decision is the one `ledger.rs` documents: `INSERT … ON CONFLICT DO
//! NOTHING RETURNING id` decides first-seen; when it inserts nothing, the row
//! holding the key is read (SQLite has one writer, so it is there) and the
//! copy is counted against it in `duplicate_deliveries` (one row per event
//! and batch, see `duplicates.rs`); a copy whose body hash differs from the
//! row's is also kept as a variant (`variants.rs`), in the same transaction.
//! Payload-hash keys look in the previous time bucket first; coalesce keys
//! count only against their `pending` row.
//!
//! Per-object order needs nothing more here (PostgreSQL's writers take
//! object locks, `batch.rs`): deliveries are inserted one by one in the
//! order they were handed over, each drawing its id as it is inserted, so
//! ids follow arrival order within a batch; and every write transaction, of
//! this process or another, holds the database's one write lock from
//! `BEGIN IMMEDIATE` to its commit, so no transaction that drew a smaller id
//! can commit after one that drew a larger id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{oneshot, Mutex};

use super::ledger::{NewEvent, RecordOutcome};
use super::variants::{self, VariantLimit};
use super::StoreError;
use crate::config::DEFAULT_BATCH_MAX_ROWS;
use crate::dedup::Strategy;

const INSERT_EVENT: &str = "\
INSERT INTO events (source, dedup_key, strategy, status, provider_event_id, action, \
    object_type, object_id, event_time, payload, body_hash, received_at, next_attempt_at) \
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12) \
ON CONFLICT DO NOTHING RETURNING id";

/// The row holding a key (each statement can use its partial unique index).
const HOLDER: &str = "\
SELECT id, status, body_hash FROM events \
WHERE source = ?1 AND dedup_key = ?2 AND strategy <> 'coalesce'";

/// A coalesce key names only its pending row: once claimed, the next
/// delivery is first-seen again.
const COALESCE_HOLDER: &str = "\
SELECT id, status, body_hash FROM events \
WHERE source = ?1 AND dedup_key = ?2 AND strategy = 'coalesce' AND status = 'pending'";

const RECORD_COPIES: &str = "\
INSERT INTO duplicate_deliveries (event_id, copies, last_at, differs) VALUES (?1, ?2, ?3, ?4)";

type Reply = oneshot::Sender<Result<Vec<RecordOutcome>, StoreError>>;

struct Request {
    events: Vec<NewEvent>,
    reply: Reply,
    /// When the request must have its answer at the latest: its wait for the
    /// write gate and SQLite's lock together is bounded by this
    /// (`store::sqlite_write_deadline`), however long it queued here.
    deadline: Instant,
}

/// How the thread gathers batches; set once by the ingest path
/// (`Store::gather_sqlite_batches`). Until then: no linger, no row bound
/// beyond the configuration's default, nothing observed.
pub struct GroupCommit {
    pub max_rows: usize,
    pub linger: Duration,
    /// Called after each batch with its deliveries and the time it took.
    pub observe: Box<dyn Fn(usize, Duration) + Send + Sync>,
}

/// The handle; cheap to clone. The thread ends when the last clone is gone.
#[derive(Clone)]
pub struct SqliteLedger {
    requests: mpsc::Sender<Request>,
    group: Arc<OnceLock<GroupCommit>>,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteLedger")
    }
}

impl SqliteLedger {
    /// Starts the thread. It opens `path` at its first batch (the file may
    /// not exist before the migrations ran) and again after a failed open.
    pub fn start(
        path: PathBuf,
        gate: Arc<Mutex<()>>,
        variant_limit: VariantLimit,
    ) -> std::io::Result<SqliteLedger> {
        let (requests, incoming) = mpsc::channel::<Request>();
        let group: Arc<OnceLock<GroupCommit>> = Arc::default();
        let settings = group.clone();
        std::thread::Builder::new()
            .name("hookledger-ledger".into())
            .spawn(move || {
                let mut conn: Option<Connection> = None;
                let mut lookup_first = false;
                while let Ok(first) = incoming.recv() {
                    let requests = gather(first, &incoming, settings.get());
                    let events: Vec<&NewEvent> =
                        requests.iter().flat_map(|r| r.events.iter()).collect();
                    let deadline = requests.iter().map(|r| r.deadline).min();
                    let deadline = deadline.expect("a batch has a first request");
                    let started = Instant::now();
                    let writing = Writing {
                        gate: &gate,
                        lookup_first,
                        deadline,
                        variant_limit: &variant_limit,
                    };
                    let result = match &mut conn {
                        Some(c) => record_batch(c, &writing, &events),
                        None => match open(&path) {
                            Ok(c) => {
                                let c = conn.insert(c);
                                record_batch(c, &writing, &events)
                            }
                            Err(e) => Err(e),
                        },
                    };
                    if let Some(group) = settings.get() {
                        (group.observe)(events.len(), started.elapsed());
                    }
                    if let Ok(outcomes) = &result {
                        lookup_first = mostly_copies(outcomes);
                    }
                    answer(requests, result);
                }
            })?;
        Ok(SqliteLedger { requests, group })
    }

    /// Sets how batches are gathered; the first call wins.
    pub fn gather_batches(&self, settings: GroupCommit) {
        let _ = self.group.set(settings);
    }

    /// Records the deliveries in one transaction; returns once it committed.
    pub async fn record(&self, events: Vec<NewEvent>) -> Result<Vec<RecordOutcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::BatchFailed("the SQLite ledger writer has stopped".into());
        let deadline = super::sqlite_write_deadline();
        self.requests
            .send(Request {
                events,
                reply,
                deadline,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// `first`, then what is queued behind it, up to the row bound (a request is
/// never split, so one larger than the bound is a batch of its own).
fn gather(
    first: Request,
    incoming: &mpsc::Receiver<Request>,
    settings: Option<&GroupCommit>,
) -> Vec<Request> {
    let max_rows = settings.map_or(DEFAULT_BATCH_MAX_ROWS, |s| s.max_rows);
    let mut rows = first.events.len();
    let mut requests = vec![first];
    let mut take = |request: Request, rows: &mut usize| {
        *rows += request.events.len();
        requests.push(request);
    };
    if let Some(linger) = settings.map(|s| s.linger).filter(|l| !l.is_zero()) {
        let deadline = Instant::now() + linger;
        while rows < max_rows {
            let left = deadline.saturating_duration_since(Instant::now());
            match incoming.recv_timeout(left) {
                Ok(request) => take(request, &mut rows),
                Err(_) => break,
            }
        }
    }
    while rows < max_rows {
        match incoming.try_recv() {
            Ok(request) => take(request, &mut rows),
            Err(_) => break,
        }
    }
    requests
}

/// Hands each request its own outcomes, in order; or the failure to all.
fn answer(requests: Vec<Request>, result: rusqlite::Result<Vec<RecordOutcome>>) {
    match result {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for request in requests {
                let mine = outcomes.by_ref().take(request.events.len()).collect();
                // The requester may have gone away; a committed batch stands.
                let _ = request.reply.send(Ok(mine));
            }
        }
        Err(e) if requests.len() == 1 => {
            let request = requests.into_iter().next().expect("one request");
            let _ = request.reply.send(Err(StoreError::from(e)));
        }
        Err(e) => {
            tracing::error!(error = %e, requests = requests.len(), "ledger batch failed");
            let message = e.to_string();
            for request in requests {
                let _ = request
                    .reply
                    .send(Err(StoreError::BatchFailed(message.clone())));
            }
        }
    }
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    // As long as the sqlx pools wait on another process's lock (then 503).
    conn.busy_timeout(Duration::from_secs(super::SQLITE_BUSY_TIMEOUT_SECS))?;
    // As the sqlx pools: WAL, and FULL so an acknowledged row survives a
    // power loss, not only a process crash.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Copies of one event in this batch: how many, the latest arrival, and
/// whether any differs from the original.
#[derive(Default)]
struct Copies {
    count: i64,
    last_at: i64,
    differs: bool,
}

/// Whether most of a batch were copies: then the next batch looks each key
/// up before trying to insert it. Either order decides the same (this is
/// the only writer); this one saves a failed insert per copy during a
/// re-delivery storm, the other a lookup per new event.
fn mostly_copies(outcomes: &[RecordOutcome]) -> bool {
    let copies = outcomes
        .iter()
        .filter(|o| !matches!(o, RecordOutcome::Accepted { .. }))
        .count();
    copies * 2 > outcomes.len()
}

/// How one batch is written.
struct Writing<'a> {
    gate: &'a Mutex<()>,
    /// See [`mostly_copies`].
    lookup_first: bool,
    /// See [`record_batch`].
    deadline: Instant,
    variant_limit: &'a VariantLimit,
}

/// Records one batch in one transaction. The gate and SQLite's lock are
/// waited for until the deadline in all (each is tried once even when it has
/// passed): behind a claim that spent SQLite's whole busy timeout on another
/// process's lock, a second full timeout of our own would double the wait.
fn record_batch(
    conn: &mut Connection,
    writing: &Writing<'_>,
    events: &[&NewEvent],
) -> rusqlite::Result<Vec<RecordOutcome>> {
    let deadline = writing.deadline;
    let Some(_gate) = super::enter_gate_until(writing.gate, deadline) else {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            Some("another write of this process held the database past the busy timeout".into()),
        ));
    };
    conn.busy_timeout(deadline.saturating_duration_since(Instant::now()))?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut copies: HashMap<i64, Copies> = HashMap::new();
    let outcomes = events
        .iter()
        .map(|&event| record_one(&tx, event, writing, &mut copies))
        .collect::<rusqlite::Result<Vec<_>>>()?;
    {
        let mut record = tx.prepare_cached(RECORD_COPIES)?;
        for (id, c) in &copies {
            record.execute(params![id, c.count, c.last_at, c.differs])?;
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

/// The row holding a key: `(id, status, body_hash)`.
type Holder = (i64, String, String);

fn record_one(
    tx: &rusqlite::Transaction<'_>,
    ev: &NewEvent,
    writing: &Writing<'_>,
    copies: &mut HashMap<i64, Copies>,
) -> rusqlite::Result<RecordOutcome> {
    let holder_sql = if ev.strategy == Strategy::Coalesce {
        COALESCE_HOLDER
    } else {
        HOLDER
    };
    let holder = |key: &str| -> rusqlite::Result<Option<Holder>> {
        tx.prepare_cached(holder_sql)?
            .query_row(params![ev.source, key], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()
    };
    let mut counted = |(id, status, body_hash): Holder, previous_bucket: bool| {
        let c = copies.entry(id).or_default();
        c.count += 1;
        c.last_at = c.last_at.max(ev.received_at_ms);
        if body_hash != ev.body_hash {
            c.differs = true;
            variants::keep_sqlite(tx, id, ev, writing.variant_limit)?;
        }
        Ok(if status == "ignored" {
            RecordOutcome::Ignored { id }
        } else {
            RecordOutcome::Duplicate {
                id,
                previous_bucket,
            }
        })
    };
    if let Some(previous) = &ev.previous_key {
        if let Some(found) = holder(previous)? {
            return counted(found, true);
        }
    }
    if writing.lookup_first {
        if let Some(found) = holder(&ev.dedup_key)? {
            return counted(found, false);
        }
    }
    let inserted: Option<i64> = tx
        .prepare_cached(INSERT_EVENT)?
        .query_row(
            params![
                ev.source,
                ev.dedup_key,
                ev.strategy.as_str(),
                if ev.ignored { "ignored" } else { "pending" },
                ev.provider_event_id,
                ev.action,
                ev.object_type,
                ev.object_id,
                ev.event_time_ms,
                ev.payload,
                ev.body_hash,
                ev.received_at_ms,
            ],
            |r| r.get(0),
        )
        .optional()?;
    match inserted {
        Some(id) if ev.ignored => Ok(RecordOutcome::Ignored { id }),
        Some(id) => Ok(RecordOutcome::Accepted { id }),
        // The insert met a unique index, and this transaction is the only
        // writer: the row it met is there to be read.
        None => match holder(&ev.dedup_key)? {
            Some(found) => counted(found, false),
            None => Err(rusqlite::Error::QueryReturnedNoRows),
        },
    }
}

#[cfg(test)]
mod tests;
