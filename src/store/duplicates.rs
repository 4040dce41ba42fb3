//! Duplicate counts, kept in two places. Ingest appends each batch's copies
//! of a key to `duplicate_deliveries` (a narrow row, no index) rather than
//! updating the ledger row: on PostgreSQL that update is not HOT
//! (`last_duplicate_at` is indexed) and gives every index of the row a new
//! entry, and on SQLite it rewrites a random page; either way a re-delivery
//! would cost about as much as a new event. The *fold* moves those rows into
//! `events.duplicates` / `last_duplicate_at` / `payload_differs` and deletes
//! them in one transaction, so a copy is counted exactly once whether or not
//! it has been folded yet, and many copies of one event cost one update.
//!
//! It runs in the background about once a second, and before every read
//! that shows duplicate counts (the admin API) and before a prune, so what
//! those show includes every delivery answered before the read began.

use super::{with_pool, Store, StoreError};

/// Folds on SQLite; the write gate and `BEGIN IMMEDIATE` make it the only
/// writer, so "every row" in both statements is the same set.
const SQLITE_FOLD: &str = "\
UPDATE events SET duplicates = events.duplicates + f.copies, \
    last_duplicate_at = max(coalesce(events.last_duplicate_at, f.last_at), f.last_at), \
    payload_differs = (events.payload_differs OR f.differs) \
FROM (SELECT event_id, sum(copies) AS copies, max(last_at) AS last_at, max(differs) AS differs \
      FROM duplicate_deliveries GROUP BY event_id) AS f \
WHERE events.id = f.event_id";

/// Folds on PostgreSQL in one statement: the rows it deletes are exactly the
/// rows it counts, while ingest goes on appending. It locks many ledger rows
/// (in id order); other writers lock theirs in other orders, so the fold
/// runs under a short `lock_timeout` and, rather than deadlock with one of
/// them, gives up and is tried again.
const POSTGRES_FOLD: &str = "\
WITH moved AS (DELETE FROM duplicate_deliveries RETURNING event_id, copies, last_at, differs), \
    f AS (SELECT event_id, CAST(sum(copies) AS BIGINT) AS copies, max(last_at) AS last_at, \
          bool_or(differs) AS differs FROM moved GROUP BY event_id), \
    locked AS (SELECT e.id, f.copies, f.last_at, f.differs FROM events e JOIN f ON e.id = f.event_id \
          ORDER BY e.id FOR UPDATE OF e) \
UPDATE events SET duplicates = events.duplicates + locked.copies, \
    last_duplicate_at = GREATEST(events.last_duplicate_at, locked.last_at), \
    payload_differs = (events.payload_differs OR locked.differs) \
FROM locked WHERE events.id = locked.id";

/// One fold at a time across processes: a reader waits for a fold in
/// progress (whose rows it could not see yet) instead of racing it.
const POSTGRES_FOLD_LOCK: &str = "SELECT pg_advisory_xact_lock(7396825127064158001)";

/// Below PostgreSQL's `deadlock_timeout` (1 s), so in a lock cycle it is
/// always the fold that yields, never an ingest or completion transaction.
const POSTGRES_FOLD_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '100ms'";

/// Tries before a fold that keeps meeting locked rows reports the error.
const FOLD_TRIES: usize = 5;

impl Store {
    /// Moves recorded duplicate copies into their ledger rows; returns how
    /// many ledger rows it updated.
    pub async fn fold_duplicates(&self) -> Result<u64, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.fold_once().await {
                Err(StoreError::Database(e)) if tries < FOLD_TRIES && is_lock_timeout(&e) => {}
                done => return done,
            }
        }
    }

    /// Folds if any copies are waiting; a read (no write lock) when none are.
    /// A copy answered before this call began is committed, so it is seen.
    pub async fn fold_pending_duplicates(&self) -> Result<(), StoreError> {
        let waiting: bool = with_pool!(self, pool => {
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM duplicate_deliveries)")
                .fetch_one(pool)
                .await?
        });
        if waiting {
            self.fold_duplicates().await?;
        }
        Ok(())
    }

    async fn fold_once(&self) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(sqlite) => {
                let _gate = self.write_gate().await;
                // Losing this commit with the machine's power loses the
                // delete with the update: the copies are folded again later.
                let mut tx = sqlite.work.begin_with("BEGIN IMMEDIATE").await?;
                let folded = sqlx::query(SQLITE_FOLD)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("DELETE FROM duplicate_deliveries")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(folded)
            }
            Store::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                sqlx::query(POSTGRES_FOLD_LOCK).execute(&mut *tx).await?;
                sqlx::query(POSTGRES_FOLD_LOCK_TIMEOUT)
                    .execute(&mut *tx)
                    .await?;
                let folded = sqlx::query(POSTGRES_FOLD)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(folded)
            }
        }
    }
}

/// PostgreSQL's `lock_not_available` (55P03): the `lock_timeout` passed.
fn is_lock_timeout(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("55P03"))
}
