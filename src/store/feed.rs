//! The change feed's table (SPEC §8): items appended by the completion
//! transaction (`complete.rs`, one per completed event of a source the
//! feed carries, with the envelope its deliveries carry), read in feed
//! order after a cursor, and dropped past retention.
//!
//! Completeness is by construction. On SQLite one writer at a time draws
//! and commits ids, so id order is commit order. On PostgreSQL identity
//! values become visible out of commit order, so an item records its
//! transaction's id, the feed is ordered by `(xid, id)`, and a read serves
//! only items whose xid is below its snapshot's xmin: every transaction
//! with a smaller xid has ended, so no item can ever appear before one
//! that was served. A read takes that horizon first and bounds its page
//! by it, so an empty page can hand out "the current end" without racing
//! a commit.
//!
//! Retention drops a prefix of the feed (in feed order, never a servable
//! item out of turn) and records the position of the last item dropped;
//! a cursor before that position has missed an item and is expired.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, SqliteConnection};

use super::feed_budget::{fitting, sizes_of};
use super::queue::ClaimedEvent;
use super::{with_pool, Store, StoreError};

/// The PostgreSQL channel a completion that wrote feed items notifies, so
/// that long polls of every process wake up.
pub const FEED_CHANNEL: &str = "hookledger_feed";

/// Items a retention pass drops per transaction (SQLite's write lock is
/// held for one batch only).
pub const FEED_PRUNE_BATCH: i64 = 1_000;

/// A place in the feed: `(xid, id)` on PostgreSQL, `(0, id)` on SQLite.
/// `(0, 0)` is before every item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub xid: i64,
    pub id: i64,
}

/// Tags a feed cursor so that another list's cursor is refused.
const CURSOR_TAG: &str = "feed";

impl Position {
    /// The opaque cursor of this position (base64url of its parts).
    pub fn cursor(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{CURSOR_TAG}:{}:{}", self.xid, self.id))
    }

    /// The position a cursor names; `None` for anything
    /// [`cursor`](Position::cursor) did not make.
    pub fn from_cursor(cursor: &str) -> Option<Position> {
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
        let mut parts = text.split(':');
        if parts.next()? != CURSOR_TAG {
            return None;
        }
        let number = |part: Option<&str>| -> Option<i64> {
            let part = part?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let xid = number(parts.next())?;
        let id = number(parts.next())?;
        if parts.next().is_some() {
            return None;
        }
        let position = Position { xid, id };
        // Only the one spelling this feed hands out (no leading zeros, no
        // stray trailing bits that a lenient decoder would drop).
        (position.cursor() == cursor).then_some(position)
    }
}

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest item kept.
    Oldest,
    /// The current end: only items that become servable later.
    Now,
    /// Strictly after this position.
    After(Position),
}

/// What a read may keep out.
#[derive(Debug, Clone, Default)]
pub struct FeedFilter {
    pub source: Option<String>,
    /// Action globs (`*` any run of characters); `None`: every item. An
    /// item without an action matches no glob.
    pub actions: Option<Vec<String>>,
}

/// One item as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FeedRow {
    pub xid: i64,
    pub id: i64,
    pub source: String,
    pub action: Option<String>,
    /// The envelope of SPEC §7, JSON text.
    pub body: String,
}

impl FeedRow {
    pub fn position(&self) -> Position {
        Position {
            xid: self.xid,
            id: self.id,
        }
    }

    /// The envelope with its `"cursor"`, as JSON text. The stored body is
    /// a JSON object written by serde_json (no `cursor` key), so the cursor
    /// is spliced in after its opening brace rather than parsing it again.
    pub fn item_json(&self) -> String {
        let cursor = Value::String(self.position().cursor()).to_string();
        match self.body.strip_prefix('{') {
            Some(rest) if rest.trim_start().starts_with('}') => format!("{{\"cursor\":{cursor}}}"),
            Some(rest) => format!("{{\"cursor\":{cursor},{rest}"),
            None => {
                json!({ "cursor": self.position().cursor(), "envelope": self.body }).to_string()
            }
        }
    }
}

/// A page of the feed.
#[derive(Debug, Clone)]
pub struct FeedPage {
    pub rows: Vec<FeedRow>,
    /// Where the next read starts: the last row's position; with no row,
    /// the position asked for (`After`) or the current end (`Oldest`, `Now`).
    pub next: Position,
}

/// Why a read gave no page.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Retention dropped an item after the cursor: the reader missed it.
    #[error("the cursor is older than the feed's retention")]
    Expired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for FeedError {
    fn from(e: sqlx::Error) -> Self {
        FeedError::Store(e.into())
    }
}

/// One feed item to insert, in the completion transaction.
pub(super) struct NewFeedItem<'a> {
    pub event: &'a ClaimedEvent,
    pub replay: i64,
    pub body: String,
}

const SQLITE_INSERT: &str = "\
INSERT INTO feed_items (event_id, replay, source, action, body, created_at) \
SELECT j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4, $1 \
FROM json_each($2) AS j ORDER BY j.key";

const POSTGRES_INSERT: &str = "\
INSERT INTO feed_items (event_id, replay, source, action, body, created_at) \
SELECT f.event_id, f.replay, f.source, f.action, f.body, $1 \
FROM UNNEST($2::bigint[], $3::int[], $4::text[], $5::text[], $6::text[]) \
    WITH ORDINALITY AS f(event_id, replay, source, action, body, ord) \
ORDER BY f.ord";

/// Items are inserted in the order given (the batch's order), so ids
/// follow the order the events completed.
pub(super) async fn insert_sqlite(
    conn: &mut SqliteConnection,
    items: &[NewFeedItem<'_>],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if items.is_empty() {
        return Ok(());
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|f| json!([f.event.id, f.replay, f.event.source, f.event.action, f.body]))
        .collect();
    sqlx::query(SQLITE_INSERT)
        .bind(now_ms)
        .bind(Value::Array(rows).to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Also notifies [`FEED_CHANNEL`]: PostgreSQL delivers it at commit (and
/// not at all on rollback), to every listening process.
pub(super) async fn insert_postgres(
    conn: &mut PgConnection,
    items: &[NewFeedItem<'_>],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if items.is_empty() {
        return Ok(());
    }
    sqlx::query(POSTGRES_INSERT)
        .bind(now_ms)
        .bind(items.iter().map(|f| f.event.id).collect::<Vec<i64>>())
        .bind(
            items
                .iter()
                .map(|f| i32::try_from(f.replay).unwrap_or(i32::MAX))
                .collect::<Vec<i32>>(),
        )
        .bind(
            items
                .iter()
                .map(|f| f.event.source.as_str())
                .collect::<Vec<&str>>(),
        )
        .bind(
            items
                .iter()
                .map(|f| f.event.action.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(items.iter().map(|f| f.body.as_str()).collect::<Vec<&str>>())
        .execute(&mut *conn)
        .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(FEED_CHANNEL)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// An action glob as a PostgreSQL `LIKE` pattern (backslash escapes).
/// SQLite's `GLOB` takes the glob as it is: config and query globs hold no
/// `?`, `[` or `]` (refused when parsed), so `*` is its only wildcard.
fn like_pattern(glob: &str) -> String {
    let mut out = String::with_capacity(glob.len() + 4);
    for c in glob.chars() {
        match c {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

const SQLITE_PAGE: &str = "\
SELECT xid, id, source, action, body FROM feed_items \
WHERE id > $1 AND id <= $2 AND ($3 IS NULL OR source = $3) \
    AND ($4 IS NULL OR EXISTS (SELECT 1 FROM json_each($4) AS g \
        WHERE feed_items.action GLOB g.value)) \
ORDER BY id LIMIT $5";

const POSTGRES_PAGE: &str = "\
SELECT xid, id, source, action, body FROM feed_items \
WHERE (xid, id) > ($1, $2) AND xid < $3 AND ($4::text IS NULL OR source = $4) \
    AND ($5::text[] IS NULL OR action LIKE ANY ($5)) \
ORDER BY xid, id LIMIT $6";

/// The horizon of a read and the retention mark. SQLite: the largest id
/// committed (an item with a larger one commits later). PostgreSQL: the
/// snapshot's xmin.
const SQLITE_HORIZON: &str = "\
SELECT MAX(COALESCE((SELECT MAX(id) FROM feed_items), 0), dropped_id), dropped_xid, dropped_id \
FROM feed_state";
const POSTGRES_HORIZON: &str = "\
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint, dropped_xid, dropped_id \
FROM feed_state";

const DROPPED: &str = "SELECT dropped_xid, dropped_id FROM feed_state";

impl Store {
    /// Up to `limit` items after `start` that pass `filter`, in feed
    /// order. `Expired` when `start` is a position before an item that
    /// retention dropped.
    pub async fn feed_page(
        &self,
        start: Start,
        limit: i64,
        filter: &FeedFilter,
    ) -> Result<FeedPage, FeedError> {
        let (horizon, dropped) = self.feed_horizon().await?;
        let end = match self {
            Store::Sqlite(_) => Position {
                xid: 0,
                id: horizon,
            },
            Store::Postgres(_) => Position {
                xid: horizon,
                id: 0,
            },
        };
        let from = match start {
            Start::Oldest => dropped,
            Start::Now => end,
            Start::After(p) => p,
        };
        // Each page is two reads of one statement, bound alike: its items'
        // sizes, then the bodies of as many as fit (`feed_budget`).
        let rows: Vec<FeedRow> = match self {
            Store::Sqlite(sqlite) => {
                let globs = filter
                    .actions
                    .as_ref()
                    .map(|g| Value::from(g.clone()).to_string());
                macro_rules! page {
                    ($sql:expr, $limit:expr) => {
                        sqlx::query_as($sql)
                            .bind(from.id)
                            .bind(horizon)
                            .bind(filter.source.as_deref())
                            .bind(globs.as_deref())
                            .bind($limit)
                            .fetch_all(&sqlite.pool)
                    };
                }
                let sizes: Vec<(i64,)> = page!(&sizes_of(SQLITE_PAGE), limit).await?;
                page!(SQLITE_PAGE, fitting(&sizes)).await?
            }
            Store::Postgres(pg) => {
                let patterns = filter
                    .actions
                    .as_ref()
                    .map(|g| g.iter().map(|g| like_pattern(g)).collect::<Vec<_>>());
                macro_rules! page {
                    ($sql:expr, $limit:expr) => {
                        sqlx::query_as($sql)
                            .bind(from.xid)
                            .bind(from.id)
                            .bind(horizon)
                            .bind(filter.source.as_deref())
                            .bind(patterns.as_deref())
                            .bind($limit)
                            .fetch_all(&pg.pool)
                    };
                }
                let sizes: Vec<(i64,)> = page!(&sizes_of(POSTGRES_PAGE), limit).await?;
                page!(POSTGRES_PAGE, fitting(&sizes)).await?
            }
        };
        if let Start::After(p) = start {
            // Read after the page: an item after `p` dropped before the
            // page was read has moved the mark past `p` by now.
            let dropped: (i64, i64) = with_pool!(self, pool => {
                sqlx::query_as(DROPPED).fetch_one(pool).await?
            });
            if p < (Position {
                xid: dropped.0,
                id: dropped.1,
            }) {
                return Err(FeedError::Expired);
            }
        }
        let next = match (rows.last(), start) {
            (Some(row), _) => row.position(),
            (None, Start::After(p)) => p,
            (None, Start::Oldest | Start::Now) => end,
        };
        Ok(FeedPage { rows, next })
    }

    /// `(horizon, retention mark)`; see [`SQLITE_HORIZON`].
    async fn feed_horizon(&self) -> Result<(i64, Position), StoreError> {
        let (horizon, xid, id): (i64, i64, i64) = match self {
            Store::Sqlite(sqlite) => {
                sqlx::query_as(SQLITE_HORIZON)
                    .fetch_one(&sqlite.pool)
                    .await?
            }
            Store::Postgres(pg) => sqlx::query_as(POSTGRES_HORIZON).fetch_one(&pg.pool).await?,
        };
        Ok((horizon, Position { xid, id }))
    }

    /// Drops feed items created before `before_ms`, oldest first in feed
    /// order, [`FEED_PRUNE_BATCH`] per transaction; returns how many.
    pub async fn prune_feed(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.prune_feed_in_batches(before_ms, FEED_PRUNE_BATCH)
            .await
    }

    /// [`prune_feed`](Store::prune_feed) with `batch` items per
    /// transaction. Only a prefix of the feed is dropped: the walk stops at
    /// the first item young enough to keep (an item completed by a process
    /// with a slower clock may be a little older than one before it; it
    /// waits for that one), so the retention mark names everything dropped.
    pub async fn prune_feed_in_batches(
        &self,
        before_ms: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let batch = batch.max(1);
        let mut dropped = 0_u64;
        loop {
            let (count, full) = match self {
                Store::Sqlite(sqlite) => {
                    let _gate = self.write_gate().await;
                    let mut tx = sqlite.pool.begin_with("BEGIN IMMEDIATE").await?;
                    let head: Vec<(i64, i64, i64)> = sqlx::query_as(
                        "SELECT xid, id, created_at FROM feed_items ORDER BY id LIMIT $1",
                    )
                    .bind(batch)
                    .fetch_all(&mut *tx)
                    .await?;
                    let outcome = match old_prefix(&head, before_ms) {
                        Some((last, count)) => {
                            sqlx::query("DELETE FROM feed_items WHERE id <= $1")
                                .bind(last.id)
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query("UPDATE feed_state SET dropped_xid = $1, dropped_id = $2")
                                .bind(last.xid)
                                .bind(last.id)
                                .execute(&mut *tx)
                                .await?;
                            (count, count as i64 == batch)
                        }
                        None => (0, false),
                    };
                    tx.commit().await?;
                    outcome
                }
                Store::Postgres(pg) => {
                    let mut tx = pg.pool.begin().await?;
                    // One pruner at a time across processes; readers are
                    // not held up (they read the mark without a lock).
                    sqlx::query("SELECT dropped_id FROM feed_state FOR UPDATE")
                        .execute(&mut *tx)
                        .await?;
                    // Only servable items: one whose transaction is still
                    // behind the horizon would not be a prefix.
                    let head: Vec<(i64, i64, i64)> = sqlx::query_as(
                        "SELECT xid, id, created_at FROM feed_items \
                         WHERE xid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
                         ORDER BY xid, id LIMIT $1",
                    )
                    .bind(batch)
                    .fetch_all(&mut *tx)
                    .await?;
                    let outcome = match old_prefix(&head, before_ms) {
                        Some((last, count)) => {
                            sqlx::query("DELETE FROM feed_items WHERE (xid, id) <= ($1, $2)")
                                .bind(last.xid)
                                .bind(last.id)
                                .execute(&mut *tx)
                                .await?;
                            sqlx::query(
                                "UPDATE feed_state SET dropped_xid = $1, dropped_id = $2 \
                                 WHERE (dropped_xid, dropped_id) < ($1, $2)",
                            )
                            .bind(last.xid)
                            .bind(last.id)
                            .execute(&mut *tx)
                            .await?;
                            (count, count as i64 == batch)
                        }
                        None => (0, false),
                    };
                    tx.commit().await?;
                    outcome
                }
            };
            dropped += count;
            if !full {
                return Ok(dropped);
            }
        }
    }

    /// PostgreSQL: a connection listening on [`FEED_CHANNEL`] (`None` on
    /// SQLite, whose only writer-to-reader path is the reader's re-check).
    pub async fn feed_listener(&self) -> Result<Option<PgListener>, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(None),
            Store::Postgres(pg) => {
                let mut listener = PgListener::connect_with(&pg.pool).await?;
                listener.listen(FEED_CHANNEL).await?;
                Ok(Some(listener))
            }
        }
    }

    /// Items committed but not yet servable: on PostgreSQL, those whose
    /// transaction is not yet below the horizon because an older
    /// transaction — in any database of the cluster — is still running
    /// (always 0 on SQLite).
    pub async fn feed_items_behind_horizon(&self) -> Result<i64, StoreError> {
        match self {
            Store::Sqlite(_) => Ok(0),
            Store::Postgres(pg) => {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM feed_items \
                     WHERE xid >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
                )
                .fetch_one(&pg.pool)
                .await?;
                Ok(n)
            }
        }
    }

    /// Feed items kept (for tests and the admin's curiosity).
    pub async fn feed_len(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = with_pool!(self, pool => {
            sqlx::query_as("SELECT COUNT(*) FROM feed_items").fetch_one(pool).await?
        });
        Ok(n)
    }
}

/// The last position and length of the leading run of `head` (feed
/// order) created before `before_ms`; `None` when the first is young.
fn old_prefix(head: &[(i64, i64, i64)], before_ms: i64) -> Option<(Position, u64)> {
    let count = head
        .iter()
        .take_while(|(_, _, created)| *created < before_ms)
        .count();
    let (xid, id, _) = *head.get(count.checked_sub(1)?)?;
    Some((Position { xid, id }, count as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_names_its_position_and_nothing_else_parses() {
        let p = Position { xid: 7, id: 42 };
        assert_eq!(Position::from_cursor(&p.cursor()), Some(p));
        for bad in [
            "",
            "now",
            "42",
            "!!!",
            &URL_SAFE_NO_PAD.encode("feed:1"),
            &URL_SAFE_NO_PAD.encode("feed:1:2:3"),
            &URL_SAFE_NO_PAD.encode("feed:-1:2"),
            &URL_SAFE_NO_PAD.encode("feed:1:+2"),
            &URL_SAFE_NO_PAD.encode("events:1:2"),
            &URL_SAFE_NO_PAD.encode("feed:01:2"),
            &format!("{}x", p.cursor()),
        ] {
            assert_eq!(Position::from_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_cursor_is_spliced_into_the_envelope() {
        let row = FeedRow {
            xid: 0,
            id: 3,
            source: "s".into(),
            action: None,
            body: json!({"type": "a", "data": {"id": "hl_1"}}).to_string(),
        };
        let item: Value = serde_json::from_str(&row.item_json()).unwrap();
        assert_eq!(item["cursor"], row.position().cursor());
        assert_eq!(item["type"], "a");
        assert_eq!(item["data"]["id"], "hl_1");
    }

    #[test]
    fn globs_become_like_patterns_with_their_wildcards_escaped() {
        assert_eq!(like_pattern("invoice.*"), "invoice.%");
        assert_eq!(like_pattern("a_b%c\\*"), "a\\_b\\%c\\\\%");
    }

    #[test]
    fn only_the_leading_run_of_old_items_is_dropped() {
        let head = [(0, 1, 10), (0, 2, 20), (0, 3, 5), (0, 4, 30)];
        assert_eq!(old_prefix(&head, 25), Some((Position { xid: 0, id: 3 }, 3)));
        assert_eq!(old_prefix(&head, 10), None);
        assert_eq!(old_prefix(&[], 10), None);
    }
}
