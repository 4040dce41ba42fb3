//! Gap-fill's state (SPEC §10): the per-source lease that lets one process
//! at a time reconcile a source, the cursor of the last finished pass, the
//! schedule shared by every server, the GitHub deliveries whose redelivery
//! was asked for, and the recording of listed events.
//!
//! A listed event is recorded by the ledger's own statement
//! (`INSERT … ON CONFLICT DO NOTHING RETURNING id`, the same text the
//! ingest path runs, under the same key `ingest::ledger_event` made), so a
//! webhook and gap-fill meet on one unique index and whichever comes second
//! is not new. Unlike a webhook, a listed event that is already there
//! changes nothing (it is no duplicate delivery); a new row is then marked
//! `origin = 'reconcile'` in the same transaction. On PostgreSQL the
//! transaction takes the events' object locks and draws their ids first,
//! exactly as a ledger batch does (`batch::lock_and_draw`), so per-object
//! arrival order holds for these rows too.
//!
//! Every write of a pass is guarded by its lease in the `WHERE` clause, and
//! the cursor moves only in the transaction that records a pass's last page:
//! a pass that crashed or lost its lease re-reads next time, never skips.

use std::collections::HashSet;

use super::batch;
use super::ledger::{bind_new_event, NewEvent};
use super::{with_pool, Store, StoreError};

/// A pass's hold on its source: who holds it (a random token per pass).
#[derive(Debug, Clone)]
pub struct ReconcileLease {
    pub source: String,
    pub holder: String,
}

/// Takes the lease when nobody holds it (or the holder's ran out), and,
/// for a scheduled pass (`$5`), only when the source's pass is due.
/// `RETURNING` the cursor: a row back means the lease is ours.
const TAKE: &str = "\
INSERT INTO reconcile_state (source, cursor_ms, holder, lease_until, next_due_ms) \
VALUES ($1, NULL, $2, $3, NULL) \
ON CONFLICT (source) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until \
WHERE (reconcile_state.lease_until IS NULL OR reconcile_state.lease_until <= $4) \
  AND (NOT $5 OR reconcile_state.next_due_ms IS NULL OR reconcile_state.next_due_ms <= $4) \
RETURNING cursor_ms";

/// Extends a lease that is still this pass's and still running.
const RENEW: &str = "\
UPDATE reconcile_state SET lease_until = $3 \
WHERE source = $1 AND holder = $2 AND lease_until > $4";

const SET_CURSOR: &str = "\
UPDATE reconcile_state SET cursor_ms = CASE \
    WHEN cursor_ms IS NULL OR cursor_ms < $2 THEN $2 ELSE cursor_ms END \
WHERE source = $1";

const MARK_RECONCILED: &str = "UPDATE events SET origin = 'reconcile' WHERE id = $1";

/// Whether a row holds a payload-hash key of the previous bucket.
const HOLDS_KEY: &str = "SELECT id FROM events WHERE source = $1 AND dedup_key = $2";

/// In transaction `$tx`: extends `$lease` to `$until` if it is still the
/// holder's at `$now`; whether it was.
macro_rules! renew_in {
    ($tx:ident, $lease:expr, $until:expr, $now:expr) => {
        sqlx::query(RENEW)
            .bind(&$lease.source)
            .bind(&$lease.holder)
            .bind($until)
            .bind($now)
            .execute(&mut *$tx)
            .await?
            .rows_affected()
            == 1
    };
}

/// In transaction `$tx`: moves `$lease`'s source's cursor, when there is one.
macro_rules! set_cursor_in {
    ($tx:ident, $lease:expr, $cursor:expr) => {
        if let Some(cursor) = $cursor {
            sqlx::query(SET_CURSOR)
                .bind(&$lease.source)
                .bind(cursor)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

/// Records `events` in the transaction `$tx` is in, one at a time in key
/// order (the order ledger batches take row locks in); `$id_of(i)` is the
/// id to insert the i-th with on PostgreSQL (ignored by SQLite's statement).
macro_rules! record_listed {
    ($tx:expr, $events:expr, $insert:expr, $id_of:expr) => {{
        let events: &[NewEvent] = $events;
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by(|&a, &b| events[a].dedup_key.cmp(&events[b].dedup_key));
        let mut ids: Vec<Option<i64>> = vec![None; events.len()];
        for i in order {
            let ev = &events[i];
            if let Some(previous) = &ev.previous_key {
                let held: Option<(i64,)> = sqlx::query_as(HOLDS_KEY)
                    .bind(&ev.source)
                    .bind(previous)
                    .fetch_optional(&mut *$tx)
                    .await?;
                if held.is_some() {
                    continue;
                }
            }
            let mut insert = bind_new_event!(sqlx::query_as($insert), ev);
            if let Some(id) = $id_of(i) {
                insert = insert.bind(id);
            }
            let inserted: Option<(i64,)> = insert.fetch_optional(&mut *$tx).await?;
            if let Some((id,)) = inserted {
                sqlx::query(MARK_RECONCILED)
                    .bind(id)
                    .execute(&mut *$tx)
                    .await?;
                ids[i] = Some(id);
            }
        }
        ids
    }};
}

impl Store {
    /// Takes the lease of `source` for `holder` until `until_ms`, if no
    /// other pass holds it at `now_ms` and (when `scheduled`) the source's
    /// next pass is due. `Some(cursor)` when taken.
    pub async fn take_reconcile_lease(
        &self,
        lease: &ReconcileLease,
        now_ms: i64,
        until_ms: i64,
        scheduled: bool,
    ) -> Result<Option<Option<i64>>, StoreError> {
        let _gate = self.write_gate().await;
        let row: Option<(Option<i64>,)> = with_pool!(self, pool => {
            sqlx::query_as(TAKE)
                .bind(&lease.source)
                .bind(&lease.holder)
                .bind(until_ms)
                .bind(now_ms)
                .bind(scheduled)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(cursor,)| cursor))
    }

    /// Extends the lease to `until_ms`; `false` when it is no longer held.
    pub async fn renew_reconcile_lease(
        &self,
        lease: &ReconcileLease,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let _gate = self.write_gate().await;
        let renewed = with_pool!(self, pool => {
            sqlx::query(RENEW)
                .bind(&lease.source)
                .bind(&lease.holder)
                .bind(until_ms)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(renewed == 1)
    }

    /// Lets the lease go; with `next_due_ms`, the source's next scheduled
    /// pass (of any process) waits until then.
    pub async fn release_reconcile_lease(
        &self,
        lease: &ReconcileLease,
        next_due_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        const RELEASE: &str = "\
            UPDATE reconcile_state SET holder = NULL, lease_until = NULL, \
                next_due_ms = COALESCE($3, next_due_ms) \
            WHERE source = $1 AND holder = $2";
        let _gate = self.write_gate().await;
        with_pool!(self, pool => {
            sqlx::query(RELEASE)
                .bind(&lease.source)
                .bind(&lease.holder)
                .bind(next_due_ms)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The cursor of `source`'s last finished pass (Unix ms), if any.
    pub async fn reconcile_cursor(&self, source: &str) -> Result<Option<i64>, StoreError> {
        let row: Option<(Option<i64>,)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT cursor_ms FROM reconcile_state WHERE source = $1")
                .bind(source)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.and_then(|(c,)| c))
    }

    /// Which of `keys` a ledger row of `source` holds.
    pub async fn present_keys(
        &self,
        source: &str,
        keys: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        self.which_exist("events", "dedup_key", source, keys).await
    }

    /// Records listed events (each an `INSERT … ON CONFLICT DO NOTHING`, as
    /// webhooks are) and, with `cursor_ms`, moves the source's cursor, in
    /// one transaction that also extends the lease to `until_ms`. The id of
    /// each event that was new, `None` for one already in the ledger; the
    /// whole result is `None` (and nothing written) when the lease is no
    /// longer this pass's at `now_ms`.
    pub async fn record_reconciled(
        &self,
        lease: &ReconcileLease,
        now_ms: i64,
        until_ms: i64,
        events: &[NewEvent],
        cursor_ms: Option<i64>,
    ) -> Result<Option<Vec<Option<i64>>>, StoreError> {
        match self {
            Store::Sqlite(sqlite) => {
                let _gate = self.write_gate().await;
                let mut tx = sqlite.pool.begin_with("BEGIN IMMEDIATE").await?;
                if !renew_in!(tx, lease, until_ms, now_ms) {
                    return Ok(None);
                }
                let ids =
                    record_listed!(tx, events, super::sqlite_ledger::INSERT_EVENT, |_| None::<
                        i64,
                    >);
                set_cursor_in!(tx, lease, cursor_ms);
                tx.commit().await?;
                Ok(Some(ids))
            }
            Store::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                if !renew_in!(tx, lease, until_ms, now_ms) {
                    return Ok(None);
                }
                // Object locks, then ids in listed order, as a ledger batch.
                let everyone: Vec<usize> = (0..events.len()).collect();
                let drawn = if events.is_empty() {
                    Vec::new()
                } else {
                    batch::lock_and_draw(&mut tx, events, &everyone).await?
                };
                let ids = record_listed!(tx, events, super::ledger::INSERT_EVENT, |i: usize| {
                    drawn[i]
                });
                set_cursor_in!(tx, lease, cursor_ms);
                tx.commit().await?;
                Ok(Some(ids))
            }
        }
    }

    /// Which of `guids` of `source` had their redelivery asked for already.
    pub async fn requested_guids(
        &self,
        source: &str,
        guids: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        self.which_exist("reconcile_requests", "guid", source, guids)
            .await
    }

    /// Which of `values` a row of `table` holds in `column` for `source`
    /// (`table` and `column` are this module's constants, never input).
    async fn which_exist(
        &self,
        table: &str,
        column: &str,
        source: &str,
        values: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        // Bounded statements: SQLite takes at most 32766 parameters.
        for chunk in values.chunks(500) {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT {column} FROM {table} WHERE source = $1 AND {column} IN ({})",
                list.join(", ")
            );
            let rows: Vec<(String,)> = with_pool!(self, pool => {
                let mut query = sqlx::query_as(&sql).bind(source);
                for value in chunk {
                    query = query.bind(value);
                }
                query.fetch_all(pool).await?
            });
            found.extend(rows.into_iter().map(|(v,)| v));
        }
        Ok(found)
    }

    /// Remembers that the redelivery of `guid` (GitHub's delivery
    /// `delivery_id`) was asked for at `now_ms`; `false` when it already was.
    pub async fn remember_request(
        &self,
        source: &str,
        guid: &str,
        delivery_id: i64,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        const REMEMBER: &str = "\
            INSERT INTO reconcile_requests (source, guid, delivery_id, requested_at) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (source, guid) DO NOTHING";
        let _gate = self.write_gate().await;
        let inserted = with_pool!(self, pool => {
            sqlx::query(REMEMBER)
                .bind(source)
                .bind(guid)
                .bind(delivery_id)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(inserted == 1)
    }

    /// Forgets requests older than `before_ms` (GitHub keeps deliveries for
    /// 3 days; a guid older than what it lists is never met again).
    pub async fn forget_requests(&self, source: &str, before_ms: i64) -> Result<u64, StoreError> {
        let _gate = self.write_gate().await;
        Ok(with_pool!(self, pool => {
            sqlx::query("DELETE FROM reconcile_requests WHERE source = $1 AND requested_at < $2")
                .bind(source)
                .bind(before_ms)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }
}
