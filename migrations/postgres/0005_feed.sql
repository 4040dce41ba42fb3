-- The change feed (SPEC §8). A completion of an event (the first, and each
-- replay) of a source the feed carries writes one item in the transaction
-- that marks the event done, with the same envelope as its deliveries.
-- Twin of migrations/sqlite/0005_feed.sql.
--
-- Identity values become visible out of commit order: a reader asking for
-- `id > cursor` could pass over a row whose transaction commits a moment
-- later. So each item records its transaction's id (`pg_current_xact_id()`,
-- as a bigint: the 64-bit, epoch-extended xid8, which never wraps), the
-- feed is ordered by (xid, id), and a reader is served only items whose xid
-- is below the xmin of its snapshot: every transaction with a smaller xid
-- has ended by then, so nothing can later appear before a served item.
CREATE TABLE feed_items (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid        BIGINT  NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    event_id   BIGINT  NOT NULL,
    replay     INTEGER NOT NULL CHECK (replay >= 0),
    source     TEXT    NOT NULL,
    action     TEXT,
    -- The envelope, JSON text: the bytes its deliveries carry.
    body       TEXT    NOT NULL,
    created_at BIGINT  NOT NULL
);

-- Feed order: every read is a range scan after a cursor.
CREATE UNIQUE INDEX feed_items_order ON feed_items (xid, id);

-- Where retention has dropped the feed up to (the position of the last
-- item dropped): a cursor before it has missed an item (410).
CREATE TABLE feed_state (
    singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    dropped_xid BIGINT  NOT NULL,
    dropped_id  BIGINT  NOT NULL
);
INSERT INTO feed_state (singleton, dropped_xid, dropped_id) VALUES (TRUE, 0, 0);
