-- The change feed (SPEC §8). A completion of an event (the first, and each
-- replay) of a source the feed carries writes one item in the transaction
-- that marks the event done, with the same envelope as its deliveries.
-- Twin of migrations/postgres/0005_feed.sql.
--
-- SQLite has one writer at a time, across processes: ids are drawn and
-- committed in one order, so the feed is ordered by id and a reader never
-- sees a smaller id appear later. `xid` is always 0 here (PostgreSQL's
-- twin orders by transaction id first); it keeps one cursor shape.
-- AUTOINCREMENT: an id is never reused, even after retention has dropped
-- the newest items, so a cursor never names two items.
CREATE TABLE feed_items (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    xid        INTEGER NOT NULL DEFAULT 0,
    event_id   INTEGER NOT NULL,
    replay     INTEGER NOT NULL CHECK (replay >= 0),
    source     TEXT    NOT NULL,
    action     TEXT,
    -- The envelope, JSON text: the bytes its deliveries carry.
    body       TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

-- Where retention has dropped the feed up to (the position of the last
-- item dropped): a cursor before it has missed an item (410).
CREATE TABLE feed_state (
    singleton   INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    dropped_xid INTEGER NOT NULL,
    dropped_id  INTEGER NOT NULL
);
INSERT INTO feed_state (singleton, dropped_xid, dropped_id) VALUES (1, 0, 0);
