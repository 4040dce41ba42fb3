//! Divergent copies (SPEC §9): when a duplicate's canonical body hash
//! differs from its ledger row's, its body is kept as a *variant* — one row
//! per distinct hash in `event_variants`, `copies` counting the deliveries
//! with it, at most [`MAX_VARIANTS`] per ledger row, each at most the
//! configured size (`server.max_body_bytes`). A copy with a further hash, or
//! a body too large to keep, is only counted (`event_variant_overflow`).
//!
//! Written by the ledger writers in the transaction that records the
//! duplicate, never elsewhere, so a 2xx for the copy means its variant is
//! committed. The bound and "one row per hash" need the writes for one
//! ledger row to be serialized, and they are: on SQLite by the one writer
//! (`BEGIN IMMEDIATE`), on PostgreSQL by the ledger row's lock, which the
//! duplicate's `UPDATE events` (`ledger.rs`) takes before the variant is
//! written and holds until the commit. (The multi-row fast path of
//! `batch.rs` never writes a variant: it leaves any copy whose hash differs
//! from its row's to that one-at-a-time path.) Two concurrent copies with
//! the same new hash therefore make one variant with `copies` 2.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sqlx::{FromRow, PgConnection};

use super::ledger::NewEvent;
use super::{with_pool, Store, StoreError};
use crate::config::DEFAULT_MAX_BODY_BYTES;

/// Distinct divergent bodies kept per ledger row (the first body not counted).
pub const MAX_VARIANTS: i64 = 5;

/// The largest payload kept as a variant, in bytes; shared by the store's
/// clones and its ledger writer. `server.max_body_bytes` once the
/// application sets it ([`Store::keep_variants_up_to`]).
#[derive(Debug, Clone)]
pub(crate) struct VariantLimit(Arc<AtomicUsize>);

impl Default for VariantLimit {
    fn default() -> Self {
        VariantLimit(Arc::new(AtomicUsize::new(DEFAULT_MAX_BODY_BYTES)))
    }
}

impl VariantLimit {
    pub(crate) fn fits(&self, payload: &str) -> bool {
        payload.len() <= self.0.load(Ordering::Relaxed)
    }
}

/// PostgreSQL, one round trip: adds the copy to its hash's variant, else
/// keeps it as a new variant if it fits and the row has fewer than five,
/// else counts it as overflow. `$1` ledger id, `$2` body hash, `$3` arrival
/// (ms), `$4` payload, `$5` whether the payload fits, `$6`
/// [`MAX_VARIANTS`]. All three parts see
/// one snapshot, which the ledger row's lock keeps current (module doc).
const POSTGRES_KEEP: &str = "\
WITH bumped AS (
    UPDATE event_variants SET copies = copies + 1
    WHERE event_id = $1 AND body_hash = $2 RETURNING 1
), kept AS (
    INSERT INTO event_variants (event_id, body_hash, first_seen_at, copies, payload)
    SELECT $1, $2, $3, 1, $4
    WHERE NOT EXISTS (SELECT 1 FROM bumped) AND $5
      AND (SELECT count(*) FROM event_variants WHERE event_id = $1) < $6
    RETURNING 1
)
INSERT INTO event_variant_overflow (event_id, copies)
SELECT $1, 1 WHERE NOT EXISTS (SELECT 1 FROM bumped) AND NOT EXISTS (SELECT 1 FROM kept)
ON CONFLICT (event_id) DO UPDATE SET copies = event_variant_overflow.copies + 1";

/// SQLite (the ledger thread's rusqlite connection): the same three steps,
/// one statement each, in the writer's one transaction.
const SQLITE_BUMP: &str =
    "UPDATE event_variants SET copies = copies + 1 WHERE event_id = ?1 AND body_hash = ?2";
const SQLITE_KEEP: &str = "\
INSERT INTO event_variants (event_id, body_hash, first_seen_at, copies, payload) \
SELECT ?1, ?2, ?3, 1, ?4 WHERE (SELECT count(*) FROM event_variants WHERE event_id = ?1) < ?5";
const SQLITE_OVERFLOW: &str = "\
INSERT INTO event_variant_overflow (event_id, copies) VALUES (?1, 1) \
ON CONFLICT (event_id) DO UPDATE SET copies = event_variant_overflow.copies + 1";

/// Records `copy`, a duplicate of ledger row `id` whose body hash differs
/// from the row's, in the transaction `conn` is in (which holds the row's
/// lock).
pub(super) async fn keep_postgres(
    conn: &mut PgConnection,
    id: i64,
    copy: &NewEvent,
    limit: &VariantLimit,
) -> Result<(), sqlx::Error> {
    sqlx::query(POSTGRES_KEEP)
        .bind(id)
        .bind(&copy.body_hash)
        .bind(copy.received_at_ms)
        .bind(&copy.payload)
        .bind(limit.fits(&copy.payload))
        .bind(MAX_VARIANTS)
        .execute(conn)
        .await?;
    Ok(())
}

/// [`keep_postgres`] on SQLite's ledger writer.
pub(super) fn keep_sqlite(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
    copy: &NewEvent,
    limit: &VariantLimit,
) -> rusqlite::Result<()> {
    use rusqlite::params;
    if tx
        .prepare_cached(SQLITE_BUMP)?
        .execute(params![id, copy.body_hash])?
        > 0
    {
        return Ok(());
    }
    if limit.fits(&copy.payload)
        && tx.prepare_cached(SQLITE_KEEP)?.execute(params![
            id,
            copy.body_hash,
            copy.received_at_ms,
            copy.payload,
            MAX_VARIANTS
        ])? > 0
    {
        return Ok(());
    }
    tx.prepare_cached(SQLITE_OVERFLOW)?.execute(params![id])?;
    Ok(())
}

/// One kept divergent body.
#[derive(Debug, Clone, FromRow)]
pub struct VariantRow {
    pub body_hash: String,
    /// Arrival of the first copy with this body, Unix ms.
    pub first_seen_at: i64,
    pub copies: i64,
    /// The body as stored (JSON text).
    pub payload: String,
}

/// A ledger row's first body, its variants oldest first, and how many
/// divergent copies were counted without being kept.
#[derive(Debug, Clone)]
pub struct Variants {
    pub first_payload: String,
    pub items: Vec<VariantRow>,
    pub overflow: i64,
}

impl Store {
    /// The largest body kept as a variant (`server.max_body_bytes`).
    pub fn keep_variants_up_to(&self, bytes: usize) {
        let limit = match self {
            Store::Sqlite(sqlite) => &sqlite.variant_limit,
            Store::Postgres(pg) => &pg.variant_limit,
        };
        limit.0.store(bytes, Ordering::Relaxed);
    }

    /// The variants of ledger row `id`; `None` when there is no such row.
    /// One snapshot for the three reads (SQLite's read transaction is one;
    /// PostgreSQL's is asked to be).
    pub async fn variants(&self, id: i64) -> Result<Option<Variants>, StoreError> {
        with_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            if matches!(self, Store::Postgres(_)) {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *tx)
                    .await?;
            }
            let first: Option<(String,)> = sqlx::query_as("SELECT payload FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((first_payload,)) = first else {
                return Ok(None);
            };
            let items: Vec<VariantRow> = sqlx::query_as(
                "SELECT body_hash, first_seen_at, copies, payload FROM event_variants \
                 WHERE event_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let overflow: Option<(i64,)> =
                sqlx::query_as("SELECT copies FROM event_variant_overflow WHERE event_id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok(Some(Variants {
                first_payload,
                items,
                overflow: overflow.map_or(0, |(n,)| n),
            }))
        })
    }
}
