//! The ledger as a work queue. Workers claim due events with a lease (a
//! random token and an expiry); every later change to a claimed event is
//! guarded by `id`, `status = 'processing'`, that token and a lease still
//! running in the `WHERE` clause, so a worker whose lease was taken over or
//! ran out can no longer complete, fail or release it. An expired lease makes the event claimable again by
//! the same claim query.
//!
//! Per-object order: an event is claimable only when no earlier event of the
//! same `(source, object_type, object_id)` is still unfinished (`pending`,
//! `processing` or `failed`) and no other event of it holds a live lease, so
//! one object's events run one at a time, in arrival (ledger id) order,
//! across every worker of every process. The second half is for replays: a
//! replayed older event is the earliest unfinished one again while a newer
//! one may be in flight. (On PostgreSQL, a visible id implies that every
//! smaller id of its object has committed or rolled back: see `batch.rs`;
//! and a replay waits for the claims in progress, and they for it, so no
//! claim's snapshot straddles a replay: see `POSTGRES_CLAIM_BEGINS`.)

use std::time::Instant;

use sqlx::FromRow;

use super::{with_pool, with_work_pool, Store, StoreError};

/// An event a worker holds a lease on.
#[derive(Debug, Clone, FromRow)]
pub struct ClaimedEvent {
    pub id: i64,
    pub source: String,
    pub dedup_key: String,
    pub provider_event_id: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub event_time: i64,
    pub received_at: i64,
    pub payload: String,
    /// Including this claim.
    pub attempts: i32,
    pub lease_token: i64,
}

/// Where a finished event's result goes.
#[derive(Debug, Clone)]
pub struct DomainWrite {
    /// JSON text of the object's new data.
    pub data: String,
}

/// The lease was no longer ours: someone else holds the event now.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the lease on event {0} is no longer held")]
    LeaseLost(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a lease-guarded statement on one claimed event means: it changed
/// its row, or the lease was no longer this claim's (taken over, run out, or
/// the event finished).
pub(super) fn still_held(event: &ClaimedEvent, rows_affected: u64) -> Result<(), QueueError> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(QueueError::LeaseLost(event.id))
    }
}

impl From<sqlx::Error> for QueueError {
    fn from(e: sqlx::Error) -> Self {
        QueueError::Store(e.into())
    }
}

/// No earlier unfinished event of the same object (per-object arrival
/// order), and no other event of it in flight: a replayed older event waits
/// for the newer one being processed. A lease that ran out (`$3` is now)
/// is not in flight: its worker is gone, and when its event is the later
/// one, the earlier runs first (were it in flight, neither could be
/// claimed). Two `NOT EXISTS`, so each is an index probe
/// (`events_object_open` by id, `events_object_in_flight`).
const OBJECT_FREE: &str = "\
(e.object_id IS NULL OR (NOT EXISTS ( \
    SELECT 1 FROM events o \
    WHERE o.source = e.source AND o.object_type = e.object_type AND o.object_id = e.object_id \
      AND o.status IN ('pending', 'processing', 'failed') AND o.id < e.id) \
  AND NOT EXISTS ( \
    SELECT 1 FROM events o \
    WHERE o.source = e.source AND o.object_type = e.object_type AND o.object_id = e.object_id \
      AND o.status = 'processing' AND o.lease_until > $3 AND o.id <> e.id)))";

/// The ids a claim may take, oldest first: due pending/failed events
/// (walked in id order on `events_due`, SQLite's index) and expired leases
/// (on `events_leased`). Two index-friendly halves instead of one `OR`, so a
/// claim reads only the head of the queue however long the backlog is.
/// SQLite's form.
fn claimable_ids() -> String {
    format!(
        "SELECT id FROM (SELECT e.id FROM events e \
           WHERE e.status IN ('pending', 'failed') AND e.next_attempt_at <= $3 AND {OBJECT_FREE} \
           ORDER BY e.id LIMIT $4) AS due \
         UNION ALL \
         {expired}",
        expired = expired_ids()
    )
}

/// PostgreSQL: the due half walks `events_queue` (status, id,
/// next_attempt_at), one status at a time, written so that only that index
/// can give the walk's order. With `ORDER BY e.id` the planner may walk the
/// primary key instead, from the first id ever written through every
/// finished row: its statistics cannot know that the finished rows are the
/// oldest ids, and stale ones (taken while a backlog was all pending) make
/// that walk look free — 74 ms per claim at p50 halfway through a 100 000
/// event backlog, ~55 000 buffers each, the drain slowing from 1 500 to 300
/// events/s. A range on the status (the same rows) ordered by `(status,
/// id)` is an order the primary key cannot give; the walk's `IN` is what
/// lets the partial index serve it, and the due time, the index's third
/// column, is checked inside the index (failed events waiting for their
/// retry are passed over without reading their rows). The outer claim
/// takes the oldest ids of the union, so the order across statuses stays
/// the ledger's.
fn postgres_claimable_ids() -> String {
    let walk = |status: &str| {
        let (waiting, order) = postgres_queue_range("e", status);
        format!(
            "SELECT id FROM (SELECT e.id FROM events e \
               WHERE {waiting} AND e.next_attempt_at <= $3 AND {OBJECT_FREE} \
               ORDER BY {order} LIMIT $4) AS {status}"
        )
    };
    format!(
        "{pending} UNION ALL {failed} UNION ALL {expired}",
        pending = walk("pending"),
        failed = walk("failed"),
        expired = expired_ids()
    )
}

/// PostgreSQL: the condition for the waiting (`pending` or `failed`) rows of
/// `events` aliased `alias` with one `status`, and the order (by id) that
/// only `events_queue` can give them — see [`postgres_claimable_ids`] for
/// why the primary key must not.
pub(super) fn postgres_queue_range(alias: &str, status: &str) -> (String, String) {
    (
        format!(
            "{alias}.status IN ('pending', 'failed') \
             AND {alias}.status >= '{status}' AND {alias}.status <= '{status}'"
        ),
        format!("{alias}.status, {alias}.id"),
    )
}

/// Events whose lease ran out, oldest first, found on `events_leased` and
/// then sorted (a handful). The unary `+` keeps the order off the primary
/// key: given `ORDER BY e.id`, SQLite walked the whole table in id order
/// looking for an expired lease (none, normally) — 29 ms per claim at
/// 100 000 events, ~1 ms of CPU per event processed — and PostgreSQL's
/// planner could take the same walk.
fn expired_ids() -> String {
    format!(
        "SELECT id FROM (SELECT e.id FROM events e \
           WHERE e.status = 'processing' AND e.lease_until <= $3 AND {OBJECT_FREE} \
           ORDER BY +e.id LIMIT $4) AS expired"
    )
}

/// The same conditions on one row, re-checked by PostgreSQL on each row it
/// locks (a row may have changed while the claim waited for it).
const CLAIMABLE: &str = "\
((e.status IN ('pending', 'failed') AND e.next_attempt_at <= $3) \
  OR (e.status = 'processing' AND e.lease_until <= $3))";

/// PostgreSQL: claims and replays exclude each other, with the advisory
/// lock `(1751937648, 0)` ("hlrp") — shared by claims, exclusive for a replay, each
/// held until its transaction ends. A claim statement reads a snapshot: one
/// taken before a replay of an object's older event committed sees that
/// event `done` and may take the newer one, while a claim that starts after
/// the replay committed, but before the first claim committed, sees the
/// newer one still `pending` and would take the replayed one — both would
/// run at once. Under the lock a replay waits for every claim in progress
/// to commit, and a claim that starts meanwhile waits for the replay's
/// commit before its statement takes a snapshot, so every snapshot that
/// sees the replayed event `pending` also sees the claims made before it.
/// (SQLite needs none: a claim is one statement under its one write lock.)
/// The two-key form keeps it apart from the ledger's object locks
/// (`batch.rs`, class "hlob") and from every one-key advisory lock. The
/// claim transaction's first statement: no WAL flush wait at its commit
/// (see `claim`), and the shared side of the lock.
const POSTGRES_CLAIM_BEGINS: &str = concat!(
    "SELECT set_config('synchronous_commit', 'off', true), ",
    "pg_advisory_xact_lock_shared(1751937648, 0)"
);

/// The replay transaction's first statement: the exclusive side.
const POSTGRES_REPLAY_BEGINS: &str = "SELECT pg_advisory_xact_lock(1751937648, 0)";

const RETURNING_CLAIMED: &str = "RETURNING events.id, events.source, events.dedup_key, \
events.provider_event_id, events.action, events.object_type, events.object_id, \
events.event_time, events.received_at, events.payload, events.attempts, events.lease_token";

impl Store {
    /// The claim statement of this backend: `$1` lease token, `$2` lease
    /// end, `$3` now, `$4` limit.
    fn claim_sql(&self) -> String {
        match self {
            // One statement: SQLite runs it under the write lock, so the
            // selection and the update cannot interleave with another claim.
            Store::Sqlite(_) => format!(
                "UPDATE events SET status = 'processing', lease_token = $1, lease_until = $2, \
                 attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM ({ids}) ORDER BY id LIMIT $4) \
                 {RETURNING_CLAIMED}",
                ids = claimable_ids()
            ),
            // SKIP LOCKED lets concurrent claimers pass over each other's rows;
            // a row that changed under us is re-checked against the WHERE.
            Store::Postgres(_) => format!(
                "WITH picked AS (SELECT e.id FROM events e \
                   WHERE e.id IN ({ids}) AND {CLAIMABLE} AND {OBJECT_FREE} \
                   ORDER BY e.id LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 UPDATE events SET status = 'processing', lease_token = $1, lease_until = $2, \
                   attempts = events.attempts + 1 \
                 FROM picked WHERE events.id = picked.id \
                 {RETURNING_CLAIMED}",
                ids = postgres_claimable_ids()
            ),
        }
    }

    /// Claims up to `limit` due events, oldest first, with a lease until
    /// `now_ms + lease_ms`.
    pub async fn claim(
        &self,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let token: i64 = rand::random::<i64>() & i64::MAX;
        // `lease_secs` is unbounded in the config (the worker saturates its
        // milliseconds at `i64::MAX`): a sum that wrapped would be a lease
        // expired long ago, taken over again at the next poll.
        let lease_until = now_ms.saturating_add(lease_ms);
        let sql = self.claim_sql();
        let _gate = self.write_gate().await;
        let mut claimed: Vec<ClaimedEvent> = match self {
            Store::Sqlite(sqlite) => {
                sqlx::query_as(&sql)
                    .bind(token)
                    .bind(lease_until)
                    .bind(now_ms)
                    .bind(limit)
                    .fetch_all(&sqlite.work)
                    .await?
            }
            Store::Postgres(pg) => {
                let pool = &pg.pool;
                // A claim lost with the server's crash leaves the event due,
                // as if never claimed (and WAL order keeps it ahead of the
                // synchronous commits after it): no WAL flush wait, as on
                // SQLite's workers' pool.
                let mut tx = pool.begin().await?;
                sqlx::query(POSTGRES_CLAIM_BEGINS).execute(&mut *tx).await?;
                let claimed = sqlx::query_as(&sql)
                    .bind(token)
                    .bind(lease_until)
                    .bind(now_ms)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                claimed
            }
        };
        claimed.sort_by_key(|e| e.id);
        Ok(claimed)
    }

    /// Marks a claimed event `done` and, when it names an object, upserts the
    /// object's domain row — in one transaction, and only if the lease is
    /// still ours. An older event never overwrites a newer row: rows compare
    /// by `(event_time, ledger id)`. A batch of one of
    /// [`complete_batch`](Store::complete_batch).
    pub async fn complete(
        &self,
        event: &ClaimedEvent,
        write: Option<&DomainWrite>,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        let done = self.complete_batch(&[(event, write)], now_ms).await?;
        if done != [true] {
            return Err(QueueError::LeaseLost(event.id));
        }
        Ok(())
    }

    /// Records a failed attempt: `failed` until `retry_at_ms`, or `dead` when
    /// `retry_at_ms` is `None`. Either way the event has no `processed_at`:
    /// that is when processing completed, and a dead event never did.
    pub async fn fail(
        &self,
        event: &ClaimedEvent,
        error: &str,
        retry_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<(), QueueError> {
        const FAIL: &str = "\
            UPDATE events SET status = $1, next_attempt_at = $2, last_error = $3, \
                processed_at = NULL, lease_token = NULL, lease_until = NULL \
            WHERE id = $4 AND lease_token = $5 AND status = 'processing' AND lease_until > $6";
        let (status, next) = match retry_at_ms {
            Some(at) => ("failed", at),
            None => ("dead", now_ms),
        };
        let _gate = self.write_gate().await;
        let done = with_work_pool!(self, pool => {
            sqlx::query(FAIL)
                .bind(status)
                .bind(next)
                .bind(error)
                .bind(event.id)
                .bind(event.lease_token)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        still_held(event, done)
    }

    /// Gives a claimed event back without counting the attempt (shutdown):
    /// it is due again at once.
    pub async fn release(&self, event: &ClaimedEvent, now_ms: i64) -> Result<(), QueueError> {
        self.defer(
            event,
            now_ms,
            now_ms,
            "released at shutdown before finishing",
        )
        .await
    }

    /// Gives a claimed event back without counting the attempt, due again at
    /// `until_ms` (e.g. when its source's rate limit frees a token), with
    /// `reason` shown as its last error. It becomes `failed`, not `pending`,
    /// because a newer pending row may hold its coalesce key by now.
    pub async fn defer(
        &self,
        event: &ClaimedEvent,
        now_ms: i64,
        until_ms: i64,
        reason: &str,
    ) -> Result<(), QueueError> {
        const DEFER: &str = "\
            UPDATE events SET status = 'failed', next_attempt_at = $1, \
                attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
                last_error = $2, lease_token = NULL, lease_until = NULL \
            WHERE id = $3 AND lease_token = $4 AND status = 'processing' AND lease_until > $5";
        let _gate = self.write_gate().await;
        let done = with_work_pool!(self, pool => {
            sqlx::query(DEFER)
                .bind(until_ms)
                .bind(reason)
                .bind(event.id)
                .bind(event.lease_token)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        still_held(event, done)
    }

    /// Makes an event due again with its attempts starting over. `Ok(false)`:
    /// the event is processing or ignored, or (coalesce) another row with its
    /// key is pending; the caller tells that from "unknown id".
    pub async fn replay(&self, id: i64, now_ms: i64) -> Result<bool, StoreError> {
        const REPLAY: &str = "\
            UPDATE events SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                last_error = NULL, processed_at = NULL \
            WHERE id = $2 AND status NOT IN ('processing', 'ignored', 'pending') \
              AND NOT (strategy = 'coalesce' AND EXISTS ( \
                  SELECT 1 FROM events p WHERE p.source = events.source \
                    AND p.dedup_key = events.dedup_key AND p.strategy = 'coalesce' \
                    AND p.status = 'pending' AND p.id <> events.id))";
        let gate = match self {
            Store::Sqlite(_) => None,
            Store::Postgres(_) => self.write_gate().await,
        };
        let done = match self {
            // Like a webhook's ledger write, an operator's replay waits for
            // this process's write gate and for SQLite's lock within one
            // busy timeout in all (SPEC §3's bound on a request's wait),
            // not a full timeout behind a claim that already spent one.
            Store::Sqlite(sqlite) => {
                let deadline = super::sqlite_write_deadline();
                let _gate = sqlite.gate_until(deadline).await?;
                let mut conn = sqlite.pool.acquire().await?;
                super::set_busy_timeout(
                    &mut conn,
                    deadline.saturating_duration_since(Instant::now()),
                )
                .await?;
                let done = sqlx::query(REPLAY)
                    .bind(now_ms)
                    .bind(id)
                    .execute(&mut *conn)
                    .await;
                // The pooled connection goes back with the usual timeout.
                super::set_busy_timeout(&mut conn, super::SQLITE_BUSY_TIMEOUT).await?;
                done?.rows_affected()
            }
            // After every claim in progress has committed, and before any
            // claim that starts meanwhile takes its snapshot.
            Store::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                sqlx::query(POSTGRES_REPLAY_BEGINS)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query(REPLAY)
                    .bind(now_ms)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                done
            }
        };
        drop(gate);
        if done == 1 {
            return Ok(true);
        }
        // Already pending: replaying it changes nothing, and it will run.
        let status = self.event_status(id).await?;
        Ok(status.as_deref() == Some("pending"))
    }

    /// The status of one event, if it exists.
    pub async fn event_status(&self, id: i64) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT status FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(s,)| s))
    }

    /// When the next event falls due (for an idle worker's sleep), if any is waiting.
    pub async fn next_due_at(&self) -> Result<Option<i64>, StoreError> {
        let row: (Option<i64>,) = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT MIN(t) FROM ( \
                   SELECT MIN(next_attempt_at) AS t FROM events WHERE status IN ('pending', 'failed') \
                   UNION ALL \
                   SELECT MIN(lease_until) AS t FROM events WHERE status = 'processing') AS due",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(row.0)
    }
}

#[cfg(test)]
#[path = "queue_plans.rs"]
mod plans;
