//! All SQL lives here. One [`Store`] talks to either SQLite or PostgreSQL; each
//! function holds both dialects side by side (most statements are the same
//! text, as both accept `$N` parameters, `ON CONFLICT DO NOTHING` and
//! `RETURNING`), so a change to one backend is seen next to the other.
//!
//! House rules, which the rest of the crate relies on:
//! - outcomes come from `RETURNING` / `rows_affected`, never read-then-write;
//! - transactions are short and never wait on the network;
//! - state changes are guarded in the `WHERE` clause (status, lease token);
//! - on SQLite every write transaction starts with `BEGIN IMMEDIATE`, so it
//!   takes the write lock up front instead of failing half-way on a stale
//!   read snapshot; and every write of this process first takes the store's
//!   [`write gate`](Store::write_gate), so writers queue fairly in memory
//!   instead of polling SQLite's busy handler (whose sleeps of up to 100 ms
//!   would land in ingest latency). A webhook's ledger write waits for the
//!   gate and SQLite's lock together no longer than SQLite's busy timeout
//!   ([`sqlite_write_deadline`]): the gate's holder may itself be spending
//!   that timeout on another process's lock, and the two waits must not add.

pub mod admin;
mod batch;
pub mod complete;
pub mod console;
pub mod deliveries;
pub mod deliveries_admin;
pub mod deliveries_settle;
pub mod domain;
pub mod domain_data;
pub mod duplicates;
pub mod feed;
pub mod feed_budget;
pub mod lease;
pub mod ledger;
pub mod outbox;
pub mod queue;
pub mod reconcile;
pub mod retention;
mod sqlite_ledger;
mod tokens;
pub mod variants;

use std::future::Future;
use std::pin::pin;
use std::str::FromStr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use sqlx::{PgPool, SqlitePool};

pub use ledger::{NewEvent, RecordOutcome};
pub use sqlite_ledger::GroupCommit;
use sqlite_ledger::SqliteLedger;
use variants::VariantLimit;

use crate::config::MAX_BATCH_WRITERS;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a request waits for a pooled connection before answering 503.
const POOL_ACQUIRE_TIMEOUT_SECS: u64 = 5;
/// How long SQLite waits on another writer's lock before reporting busy;
/// also how long a webhook's ledger write waits in all.
const SQLITE_BUSY_TIMEOUT_SECS: u64 = 5;
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(SQLITE_BUSY_TIMEOUT_SECS);

/// Sets SQLite's busy timeout on one pooled connection (at least 1 ms, so
/// a passed deadline still tries the lock once rather than waiting forever).
async fn set_busy_timeout(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>,
    timeout: Duration,
) -> Result<(), StoreError> {
    let ms = timeout.as_millis().clamp(1, u128::from(u32::MAX));
    sqlx::query(&format!("PRAGMA busy_timeout = {ms}"))
        .execute(&mut **conn)
        .await?;
    Ok(())
}

/// When a SQLite ledger write handed over now must be answered at the
/// latest: its waits for the write gate and for SQLite's lock share one
/// busy timeout.
pub(crate) fn sqlite_write_deadline() -> Instant {
    Instant::now() + Duration::from_secs(SQLITE_BUSY_TIMEOUT_SECS)
}

/// Wakes the thread that parked on a future (below).
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// The write gate, entered from a plain thread (the SQLite ledger's), in its
/// FIFO turn, waiting until `deadline` at most; `None` when the turn did not
/// come by then. It is tried once even when the deadline has passed. (Like
/// `Mutex::blocking_lock`, which has no deadline: the lock future is polled
/// on this thread and unparks it; dropped on time-out, it leaves the queue.)
impl SqliteStore {
    /// This process's write gate, waited for until `deadline` at most; past
    /// it, the database counts as busy (503 with `Retry-After`).
    async fn gate_until(&self, deadline: Instant) -> Result<MutexGuard<'_, ()>, StoreError> {
        tokio::time::timeout_at(deadline.into(), self.gate.lock())
            .await
            .map_err(|_| {
                StoreError::Unavailable(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "another write of this process held the database past the busy timeout",
                )))
            })
    }
}

pub(crate) fn enter_gate_until(gate: &Mutex<()>, deadline: Instant) -> Option<MutexGuard<'_, ()>> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut turn = pin!(gate.lock());
    loop {
        if let Poll::Ready(guard) = turn.as_mut().poll(&mut context) {
            return Some(guard);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

/// The database behind the ledger.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// PostgreSQL: two pools on one database.
#[derive(Clone, Debug)]
pub struct PgStore {
    /// Everything but ledger batches. Custom plans every time: the ledger
    /// grows from empty, and a generic plan of the claim query cached while
    /// it was small (seq scans, hash joins) would stay in use once it holds
    /// millions of rows.
    pub pool: PgPool,
    /// Ledger batches: each writer task holds one connection at a time.
    /// Generic plans: every statement here looks keys up in a unique index,
    /// written so that the index is the plan whatever the table's size
    /// (`batch.rs`), and planning the batch statement for each batch cost
    /// more PostgreSQL CPU than running it.
    ledger: PgPool,
    /// The last ledger batch was nearly all re-deliveries: look the next
    /// one's keys up before inserting (`batch.rs`).
    copies_first: Arc<AtomicBool>,
    /// The largest body kept as a divergent copy (`variants.rs`).
    variant_limit: VariantLimit,
}

/// SQLite: two pools on one file, and one write gate for both.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// `synchronous=FULL`: what it commits survives a power loss. Reads,
    /// migrations, replays and prunes; ledger batches are written by
    /// `ledger`, with the same setting.
    pub pool: SqlitePool,
    /// `synchronous=NORMAL`: commits survive a process crash but may be lost
    /// with the machine's power. Used for the workers' claims and
    /// completions only: losing one puts an event back to be processed again
    /// (and the domain write goes with it, in the same transaction), never
    /// loses an accepted event. It saves an fsync per processed event, which
    /// would otherwise sit in front of ingest commits.
    pub work: SqlitePool,
    /// Records ledger batches (on a connection of its own; see
    /// `sqlite_ledger.rs`), also `synchronous=FULL`.
    ledger: SqliteLedger,
    gate: Arc<Mutex<()>>,
    /// The largest body kept as a divergent copy, shared with `ledger`.
    variant_limit: VariantLimit,
}

/// Runs `$body` with `$pool` bound to whichever pool the store holds. The body
/// is compiled once per backend, so generic sqlx calls work unchanged.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(sqlite) => {
                let $pool = &sqlite.pool;
                $body
            }
            $crate::store::Store::Postgres(pg) => {
                let $pool = &pg.pool;
                $body
            }
        }
    };
}
pub(crate) use with_pool;

/// Like `with_pool!`, with the workers' pool on SQLite.
macro_rules! with_work_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite(sqlite) => {
                let $pool = &sqlite.work;
                $body
            }
            $crate::store::Store::Postgres(pg) => {
                let $pool = &pg.pool;
                $body
            }
        }
    };
}
pub(crate) use with_work_pool;

/// Why the store could not do what was asked. Every variant means "not done":
/// callers answer 503 and the provider retries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable, locked, read-only or out of connections.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else the database reported.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A group-commit transaction this write was part of failed (its cause
    /// is logged once by the writer).
    #[error("ledger write failed: {0}")]
    BatchFailed(String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// PostgreSQL could not be reached at start-up (refused, unknown host,
    /// no such database, bad password): said with its cause, not as the
    /// pool's "timed out" that a lazy pool would report after retrying.
    #[error("cannot connect to PostgreSQL at {target}: {source}")]
    Connect {
        /// `host:port` (or the socket path), never the password.
        target: String,
        source: sqlx::Error,
    },
    /// The SQLite ledger writer's connection reported an error (busy and
    /// locked included: another process held the write lock too long).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            StoreError::Unavailable(e)
        } else {
            StoreError::Database(e)
        }
    }
}

impl StoreError {
    /// A unique index refused a write: the state it would create already
    /// exists, made by a concurrent transaction (not a storage fault).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(db)) => db.is_unique_violation(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            }
            _ => false,
        }
    }
}

/// Busy, locked, read-only, I/O, pool and connection failures are transient
/// from the caller's point of view.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite primary result codes (extended codes keep them in the low byte).
            if let Ok(n) = code.parse::<i64>() {
                return matches!(n & 0xff, 5 | 6 | 8 | 10 | 13 | 14);
            }
            // PostgreSQL: connection exceptions, insufficient resources,
            // operator intervention (shutdown), read-only transaction.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "25006"
        }
        _ => false,
    }
}

/// Which database a URL names.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// No JIT compilation on hookledger's connections: every query is a short
/// indexed one, and a plan whose estimate crosses `jit_above_cost` (a
/// claim's over a large backlog does) spent 112 ms compiling a query that
/// runs in 5 ms (measured on PostgreSQL 15).
const NO_JIT: (&str, &str) = ("jit", "off");

impl Store {
    /// Connects without touching the schema.
    pub async fn connect(database_url: &str) -> Result<Store, StoreError> {
        if is_postgres_url(database_url) {
            let options = PgConnectOptions::from_str(database_url)?;
            // No ping before each use: it is a round trip per ledger batch and
            // per claim. A connection that died meanwhile fails its one batch
            // (503, the provider retries) and is dropped from the pool. (Every
            // connection is opened on the application's runtime, never an
            // HTTP worker's, which stops first at shutdown: `AppState::on_main`.)
            let pool = PgPoolOptions::new()
                .max_connections(32)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(POOL_ACQUIRE_TIMEOUT_SECS))
                .connect_lazy_with(
                    options
                        .clone()
                        .options([("plan_cache_mode", "force_custom_plan"), NO_JIT]),
                );
            let ledger = PgPoolOptions::new()
                .max_connections(MAX_BATCH_WRITERS as u32)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(POOL_ACQUIRE_TIMEOUT_SECS))
                .connect_lazy_with(
                    options.options([("plan_cache_mode", "force_generic_plan"), NO_JIT]),
                );
            Ok(Store::Postgres(PgStore {
                pool,
                ledger,
                copies_first: Arc::new(AtomicBool::new(false)),
                variant_limit: VariantLimit::default(),
            }))
        } else {
            // WAL for concurrent readers; synchronous=FULL so a commit that was
            // acknowledged survives a power loss, not only a process crash.
            let options = SqliteConnectOptions::from_str(database_url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(SQLITE_BUSY_TIMEOUT_SECS))
                .foreign_keys(true);
            // A ping before each use would be a round trip to the
            // connection's thread per ledger batch, for a file that cannot
            // hang up.
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(POOL_ACQUIRE_TIMEOUT_SECS))
                .connect_lazy_with(options.clone());
            let path = options.get_filename().to_path_buf();
            let work = SqlitePoolOptions::new()
                .max_connections(4)
                .test_before_acquire(false)
                .acquire_timeout(Duration::from_secs(POOL_ACQUIRE_TIMEOUT_SECS))
                .connect_lazy_with(options.synchronous(SqliteSynchronous::Normal));
            let gate = Arc::new(Mutex::new(()));
            let variant_limit = VariantLimit::default();
            let ledger = SqliteLedger::start(path, gate.clone(), variant_limit.clone())
                .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
            Ok(Store::Sqlite(SqliteStore {
                pool,
                work,
                ledger,
                gate,
                variant_limit,
            }))
        }
    }

    /// Connects and applies pending migrations.
    pub async fn open(database_url: &str) -> Result<Store, StoreError> {
        let store = Store::connect(database_url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// SQLite: the ledger thread gathers group-commit batches itself, from
    /// single deliveries (`record_one`); returns false on PostgreSQL, whose
    /// batches writer tasks gather (`ingest.rs`).
    pub fn gather_sqlite_batches(&self, settings: GroupCommit) -> bool {
        match self {
            Store::Sqlite(sqlite) => {
                sqlite.ledger.gather_batches(settings);
                true
            }
            Store::Postgres(_) => false,
        }
    }

    /// SQLite: held for the length of every write of this process (FIFO).
    /// PostgreSQL needs none: its row locks are fine-grained.
    pub async fn write_gate(&self) -> Option<MutexGuard<'_, ()>> {
        match self {
            Store::Sqlite(sqlite) => Some(sqlite.gate.lock().await),
            Store::Postgres(_) => None,
        }
    }

    /// SQLite: whether a write of this process holds the write gate right
    /// now (for tests that must order writes; always false on PostgreSQL).
    pub fn write_gate_is_held(&self) -> bool {
        match self {
            Store::Sqlite(sqlite) => sqlite.gate.try_lock().is_err(),
            Store::Postgres(_) => false,
        }
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(sqlite) => SQLITE_MIGRATIONS.run(&sqlite.pool).await?,
            Store::Postgres(pg) => {
                // On a connection of its own rather than from the lazy pool,
                // which retries a refused connection until its acquire
                // timeout and then reports only "pool timed out".
                let options = pg.pool.connect_options();
                let mut conn = options.connect().await.map_err(|source| {
                    let target = match options.get_socket() {
                        Some(socket) => socket.display().to_string(),
                        None => format!("{}:{}", options.get_host(), options.get_port()),
                    };
                    StoreError::Connect { target, source }
                })?;
                POSTGRES_MIGRATIONS.run(&mut conn).await?;
                conn.close().await?;
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(sqlite) => {
                sqlite.pool.close().await;
                sqlite.work.close().await;
            }
            Store::Postgres(pg) => {
                pg.ledger.close().await;
                pg.pool.close().await;
            }
        }
    }
}

/// The migration files of both backends, for the test that checks they pair up.
pub fn migration_names() -> (Vec<String>, Vec<String>) {
    let names = |m: &sqlx::migrate::Migrator| {
        m.iter()
            .map(|m| format!("{:04}_{}", m.version, m.description.replace(' ', "_")))
            .collect()
    };
    (names(&SQLITE_MIGRATIONS), names(&POSTGRES_MIGRATIONS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_pair_up_across_backends() {
        let (sqlite, postgres) = migration_names();
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, postgres, "same numbers and names in both folders");
    }

    #[test]
    fn busy_and_connection_failures_are_classified_unavailable() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::other(
            "refused"
        ))));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
    }
}
