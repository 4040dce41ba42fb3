//! SQLite's ledger writer: one thread that owns one connection to the
//! database file and records whole group-commit batches on it, one delivery
//! at a time with cached prepared statements, inside one `BEGIN IMMEDIATE`
//! transaction per batch.
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
//! and batch, see `duplicates.rs`). Payload-hash keys look in the previous
//! time bucket first; coalesce keys count only against their `pending` row.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{oneshot, Mutex};

use super::ledger::{NewEvent, RecordOutcome};
use super::StoreError;
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

/// How long a write waits on another process's lock before it fails (503).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

type Reply = oneshot::Sender<Result<Vec<RecordOutcome>, StoreError>>;

struct Request {
    events: Vec<NewEvent>,
    reply: Reply,
}

/// The handle; cheap to clone. The thread ends when the last clone is gone.
#[derive(Clone)]
pub struct SqliteLedger {
    requests: mpsc::Sender<Request>,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteLedger")
    }
}

impl SqliteLedger {
    /// Starts the thread. It opens `path` at its first batch (the file may
    /// not exist before the migrations ran) and again after a failed open.
    pub fn start(path: PathBuf, gate: Arc<Mutex<()>>) -> std::io::Result<SqliteLedger> {
        let (requests, incoming) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("hookledger-ledger".into())
            .spawn(move || {
                let mut conn: Option<Connection> = None;
                while let Ok(request) = incoming.recv() {
                    let result = match &mut conn {
                        Some(c) => record_batch(c, &gate, &request.events),
                        None => match open(&path) {
                            Ok(c) => record_batch(conn.insert(c), &gate, &request.events),
                            Err(e) => Err(e),
                        },
                    };
                    // The requester may have gone away; a committed batch stands.
                    let _ = request.reply.send(result.map_err(StoreError::from));
                }
            })?;
        Ok(SqliteLedger { requests })
    }

    /// Records the deliveries in one transaction; returns once it committed.
    pub async fn record(&self, events: Vec<NewEvent>) -> Result<Vec<RecordOutcome>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::BatchFailed("the SQLite ledger writer has stopped".into());
        self.requests
            .send(Request { events, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn open(path: &PathBuf) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
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

fn record_batch(
    conn: &mut Connection,
    gate: &Mutex<()>,
    events: &[NewEvent],
) -> rusqlite::Result<Vec<RecordOutcome>> {
    let _gate = gate.blocking_lock();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut copies: HashMap<i64, Copies> = HashMap::new();
    let outcomes = events
        .iter()
        .map(|event| record_one(&tx, event, &mut copies))
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
        c.differs |= body_hash != ev.body_hash;
        if status == "ignored" {
            RecordOutcome::Ignored { id }
        } else {
            RecordOutcome::Duplicate {
                id,
                previous_bucket,
            }
        }
    };
    if let Some(previous) = &ev.previous_key {
        if let Some(found) = holder(previous)? {
            return Ok(counted(found, true));
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
            Some(found) => Ok(counted(found, false)),
            None => Err(rusqlite::Error::QueryReturnedNoRows),
        },
    }
}
