//! The outbox as a work queue for the relays (SPEC §7), built like the
//! events queue (`queue.rs`): a relay claims its destination's due
//! deliveries with a lease (a random token and an expiry), and every later
//! change to a claimed delivery — renewal, delivered, retry, dead, release —
//! is guarded by `id`, `status = 'delivering'`, that token and a lease still
//! running, so a relay whose lease ran out or was taken over changes nothing.
//!
//! Order: a delivery is claimable only when no earlier delivery of the same
//! object to the same destination is unfinished (`pending`, `delivering`,
//! `failed`) and no other one of them holds a live lease (an older delivery
//! an operator sent again), so one object's deliveries go one at a time, in
//! row order, across every relay of every process. Rows of one object are
//! created in the order their events completed, which per-object processing
//! already serialises, so a row's id never becomes visible before a smaller
//! id of its object. A paused destination (`destination_state`) claims
//! nothing: its rows wait as `pending` and spend no attempts.

use sqlx::FromRow;

pub use super::deliveries_settle::Settlement;
use super::outbox::delivery_id;
use super::queue::QueueError;
use super::{with_pool, with_work_pool, Store, StoreError};

/// A delivery a relay holds a lease on.
#[derive(Debug, Clone, FromRow)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub event_id: i64,
    pub destination: String,
    pub replay: i32,
    pub source: String,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// The envelope (JSON text).
    pub body: String,
    /// Including this claim.
    pub attempts: i32,
    pub lease_token: i64,
}

impl ClaimedDelivery {
    /// `hl_<event id>` or `hl_<event id>-r<n>`.
    pub fn delivery_id(&self) -> String {
        delivery_id(self.event_id, i64::from(self.replay))
    }
}

/// A delivery as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_id: i64,
    pub destination: String,
    pub replay: i32,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub last_status: Option<i32>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub next_attempt_at: i64,
}

impl DeliveryRow {
    pub fn delivery_id(&self) -> String {
        delivery_id(self.event_id, i64::from(self.replay))
    }
}

/// The columns of a [`DeliveryRow`].
pub const DELIVERY_COLUMNS: &str = "id, event_id, destination, replay, status, attempts, \
last_error, last_status, created_at, delivered_at, next_attempt_at";

fn held(delivery: &ClaimedDelivery, rows_affected: u64) -> Result<(), QueueError> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(QueueError::LeaseLost(delivery.id))
    }
}

/// No earlier unfinished delivery of the object to this destination, and no
/// other one of it in flight (`$3` is now). Deliveries of events without an
/// object are unordered.
///
/// The unary `+` on `lease_until` here and on `next_attempt_at` in the walk
/// keeps those comparisons off the indexes (`deliveries_leased`,
/// `deliveries_next_due`): SQLite otherwise range-scans by time and sorts
/// every waiting row by id — 49 ms per claim with 60 000 waiting, 1 ms
/// walking `deliveries_due` in id order as intended. On PostgreSQL the
/// lease index (`deliveries_lease_expiry`) is partial on `lease_token IS
/// NOT NULL`, which this check does not state, so it can only probe
/// `deliveries_object_in_flight` (one object's rows), not every lease entry
/// of the destination (migration 0011); the expired-lease walk and the next
/// due time state it.
const OBJECT_FREE: &str = "\
(d.object_id IS NULL OR (NOT EXISTS ( \
    SELECT 1 FROM deliveries o \
    WHERE o.destination = d.destination AND o.source = d.source \
      AND o.object_type = d.object_type AND o.object_id = d.object_id \
      AND o.status IN ('pending', 'delivering', 'failed') AND o.id < d.id) \
  AND NOT EXISTS ( \
    SELECT 1 FROM deliveries o \
    WHERE o.destination = d.destination AND o.source = d.source \
      AND o.object_type = d.object_type AND o.object_id = d.object_id \
      AND o.status = 'delivering' AND +o.lease_until > $3 AND o.id <> d.id)))";

/// `$5`: the destination. Nothing while it is paused.
const NOT_PAUSED: &str = "\
NOT EXISTS (SELECT 1 FROM destination_state s WHERE s.name = $5 AND s.paused)";

/// The walk over a destination's waiting rows in id order, on SQLite.
const SQLITE_WALK: (&str, &str) = ("d.destination = $5", "d.id");
/// PostgreSQL: the same walk, written so that only `deliveries_due`
/// (destination, id) can give its order. With `destination = $5` the
/// planner may walk the primary key instead, from the first id ever
/// written through every delivered row — its statistics cannot know that
/// those are the oldest ids, and stale ones (taken while the backlog was
/// all pending) make that walk look free: 117 ms per claim after 48 000
/// deliveries, growing with each. A range on the destination (the same
/// rows: text comparison is deterministic) keeps the primary key from
/// giving the order `(destination, id)`.
const POSTGRES_WALK: (&str, &str) = (
    "d.destination >= $5 AND d.destination <= $5",
    "d.destination, d.id",
);

fn claimable_ids((destination, order): (&str, &str)) -> String {
    format!(
        "SELECT id FROM (SELECT d.id FROM deliveries d \
           WHERE {destination} AND d.status IN ('pending', 'failed') \
             AND +d.next_attempt_at <= $3 AND {OBJECT_FREE} \
           ORDER BY {order} LIMIT $4) AS due \
         UNION ALL \
         SELECT id FROM (SELECT d.id FROM deliveries d \
           WHERE d.destination = $5 AND d.status = 'delivering' AND d.lease_token IS NOT NULL \
             AND d.lease_until <= $3 \
             AND {OBJECT_FREE} \
           ORDER BY d.id LIMIT $4) AS expired"
    )
}

const CLAIMABLE: &str = "\
((d.status IN ('pending', 'failed') AND d.next_attempt_at <= $3) \
  OR (d.status = 'delivering' AND d.lease_until <= $3))";

/// PostgreSQL: claims take `(1751937648, 1)` shared, and an operator's
/// retry or pause takes it exclusive — for the reason `queue.rs` gives for
/// replays: a claim's snapshot must not straddle a retry that makes an
/// older delivery of an object due again, and a pause that has answered
/// must be seen by every claim that starts after it.
///
/// Bitmap scans are off for the claim's transaction: they let the planner
/// answer the claim's `id = ANY($6)` by OR-ing the status indexes, reading
/// every open row (185 ms per claim, against 3 ms by primary key, on a
/// table without statistics); the walk and the object checks are plain
/// index scans anyway.
pub(super) const POSTGRES_DELIVERY_CLAIM_BEGINS: &str = concat!(
    "SELECT set_config('synchronous_commit', 'off', true), ",
    "set_config('enable_bitmapscan', 'off', true), ",
    "pg_advisory_xact_lock_shared(1751937648, 1)"
);
pub(super) const POSTGRES_DELIVERY_CHANGE_BEGINS: &str =
    "SELECT pg_advisory_xact_lock(1751937648, 1)";

const RETURNING_CLAIMED: &str = "RETURNING deliveries.id, deliveries.event_id, \
deliveries.destination, deliveries.replay, deliveries.source, deliveries.action, \
deliveries.object_type, deliveries.object_id, deliveries.body, deliveries.attempts, \
deliveries.lease_token";

impl Store {
    /// Claims up to `limit` due deliveries to `destination`, oldest first,
    /// with a lease until `now_ms + lease_ms`; none while it is paused.
    pub async fn claim_deliveries(
        &self,
        destination: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let token: i64 = rand::random::<i64>() & i64::MAX;
        let lease_until = now_ms.saturating_add(lease_ms);
        let sql = match self {
            Store::Sqlite(_) => format!(
                "UPDATE deliveries SET status = 'delivering', lease_token = $1, lease_until = $2, \
                 attempts = attempts + 1 \
                 WHERE id IN (SELECT id FROM ({ids}) ORDER BY id LIMIT $4) AND {NOT_PAUSED} \
                 {RETURNING_CLAIMED}",
                ids = claimable_ids(SQLITE_WALK)
            ),
            // `$6`: the ids the walk found (see below).
            Store::Postgres(_) => format!(
                "WITH picked AS (SELECT d.id FROM deliveries d \
                   WHERE d.id = ANY($6) AND d.destination = $5 AND {CLAIMABLE} AND {OBJECT_FREE} \
                     AND {NOT_PAUSED} \
                   ORDER BY d.id LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 UPDATE deliveries SET status = 'delivering', lease_token = $1, lease_until = $2, \
                   attempts = deliveries.attempts + 1 \
                 FROM picked WHERE deliveries.id = picked.id \
                 {RETURNING_CLAIMED}"
            ),
        };
        // `$1`–`$5` of every claim statement (the walk alone uses `$3`–`$5`).
        macro_rules! claim_args {
            ($query:expr) => {
                $query
                    .bind(token)
                    .bind(lease_until)
                    .bind(now_ms)
                    .bind(limit)
                    .bind(destination)
            };
        }
        let _gate = self.write_gate().await;
        let mut claimed: Vec<ClaimedDelivery> = match self {
            Store::Sqlite(sqlite) => {
                claim_args!(sqlx::query_as(&sql))
                    .fetch_all(&sqlite.work)
                    .await?
            }
            Store::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                sqlx::query(POSTGRES_DELIVERY_CLAIM_BEGINS)
                    .execute(&mut *tx)
                    .await?;
                // The walk first, in a statement of its own, then the rows
                // it found locked and updated by id, every condition checked
                // again. As one statement (`id IN (walk)`), a table without
                // statistics yet (never analysed: the planner guesses one
                // row) was planned inside out — every claimable row of the
                // destination scanned, and the whole walk run again for
                // each: 10 000 walks, 4 s per claim, seen in the bench with
                // small envelopes. An array of ids has one plan, a
                // primary-key probe per id. The shared lock, held across
                // both, keeps a retry or a pause from falling between them.
                let walk = format!("SELECT id FROM ({}) AS ids", claimable_ids(POSTGRES_WALK));
                let ids: Vec<i64> = claim_args!(sqlx::query_scalar(&walk))
                    .fetch_all(&mut *tx)
                    .await?;
                let claimed = if ids.is_empty() {
                    Vec::new()
                } else {
                    claim_args!(sqlx::query_as(&sql))
                        .bind(&ids)
                        .fetch_all(&mut *tx)
                        .await?
                };
                tx.commit().await?;
                claimed
            }
        };
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    /// Extends the lease on a claimed delivery to `until_ms` (never
    /// shortening it), if it is still this claim's and running at `now_ms`.
    pub async fn renew_delivery_lease(
        &self,
        delivery: &ClaimedDelivery,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<(), QueueError> {
        const RENEW: &str = "\
            UPDATE deliveries SET lease_until = CASE WHEN lease_until > $1 THEN lease_until ELSE $1 END \
            WHERE id = $2 AND lease_token = $3 AND status = 'delivering' AND lease_until > $4";
        let _gate = self.write_gate().await;
        let renewed = with_work_pool!(self, pool => {
            sqlx::query(RENEW)
                .bind(until_ms)
                .bind(delivery.id)
                .bind(delivery.lease_token)
                .bind(now_ms)
                .execute(pool)
                .await?
                .rows_affected()
        });
        held(delivery, renewed)
    }

    /// When the next delivery to `destination` falls due, if any waits
    /// (for an idle relay's sleep).
    pub async fn next_delivery_due_at(&self, destination: &str) -> Result<Option<i64>, StoreError> {
        let row: (Option<i64>,) = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT MIN(t) FROM ( \
                   SELECT MIN(next_attempt_at) AS t FROM deliveries \
                     WHERE destination = $1 AND status IN ('pending', 'failed') \
                   UNION ALL \
                   SELECT MIN(lease_until) AS t FROM deliveries \
                     WHERE destination = $1 AND status = 'delivering' \
                       AND lease_token IS NOT NULL) AS due",
            )
            .bind(destination)
            .fetch_one(pool)
            .await?
        });
        Ok(row.0)
    }

    /// One delivery by its id.
    pub async fn delivery(&self, id: i64) -> Result<Option<DeliveryRow>, StoreError> {
        let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1");
        Ok(with_pool!(self, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        }))
    }

    /// An event's deliveries, oldest first.
    pub async fn deliveries_of_event(&self, event_id: i64) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql =
            format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE event_id = $1 ORDER BY id");
        Ok(with_pool!(self, pool => {
            sqlx::query_as(&sql).bind(event_id).fetch_all(pool).await?
        }))
    }

    /// The body (envelope) of one delivery.
    pub async fn delivery_body(&self, id: i64) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT body FROM deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(b,)| b))
    }

    /// How many deliveries to `destination` are unfinished (`pending`,
    /// `delivering`, `failed`): the `hookledger_deliveries_pending` gauge.
    pub async fn unfinished_deliveries(&self, destination: &str) -> Result<i64, StoreError> {
        let (n,): (i64,) = with_pool!(self, pool => {
            sqlx::query_as(
                "SELECT COUNT(*) FROM deliveries WHERE destination = $1 \
                   AND status IN ('pending', 'delivering', 'failed')",
            )
            .bind(destination)
            .fetch_one(pool)
            .await?
        });
        Ok(n)
    }

    /// Whether `destination` is paused (a destination never paused has no row).
    pub async fn destination_paused(&self, destination: &str) -> Result<bool, StoreError> {
        let row: Option<(bool,)> = with_pool!(self, pool => {
            sqlx::query_as("SELECT paused FROM destination_state WHERE name = $1")
                .bind(destination)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.is_some_and(|(paused,)| paused))
    }

    /// Pauses or resumes `destination` for every process. On PostgreSQL it
    /// waits for the claims in progress, so once it has answered no claim
    /// that has not yet taken its snapshot can miss it.
    pub async fn set_destination_paused(
        &self,
        destination: &str,
        paused: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        const UPSERT: &str = "\
            INSERT INTO destination_state (name, paused, updated_at) VALUES ($1, $2, $3) \
            ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at";
        match self {
            Store::Sqlite(sqlite) => {
                let _gate = self.write_gate().await;
                sqlx::query(UPSERT)
                    .bind(destination)
                    .bind(paused)
                    .bind(now_ms)
                    .execute(&sqlite.pool)
                    .await?;
            }
            Store::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                sqlx::query(POSTGRES_DELIVERY_CHANGE_BEGINS)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(UPSERT)
                    .bind(destination)
                    .bind(paused)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }
}
