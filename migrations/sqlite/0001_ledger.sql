-- The dedup ledger. Each row is one first-seen delivery and, while it is
-- `pending`/`failed`/`processing`, the durable job that processes it.
-- Instants are Unix milliseconds.
CREATE TABLE events (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    source            TEXT    NOT NULL,
    dedup_key         TEXT    NOT NULL,
    strategy          TEXT    NOT NULL
        CHECK (strategy IN ('event_id', 'action_object', 'coalesce', 'payload_hash')),
    status            TEXT    NOT NULL
        CHECK (status IN ('pending', 'processing', 'done', 'failed', 'dead', 'ignored')),
    provider_event_id TEXT,
    action            TEXT,
    object_type       TEXT,
    object_id         TEXT,
    event_time        INTEGER NOT NULL,
    payload           TEXT    NOT NULL,
    body_hash         TEXT    NOT NULL,
    received_at       INTEGER NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at   INTEGER NOT NULL,
    lease_token       INTEGER,
    lease_until       INTEGER,
    last_error        TEXT,
    processed_at      INTEGER,
    duplicates        INTEGER NOT NULL DEFAULT 0 CHECK (duplicates >= 0),
    last_duplicate_at INTEGER,
    payload_differs   BOOLEAN NOT NULL DEFAULT FALSE CHECK (payload_differs IN (0, 1)),
    -- A lease exists exactly while the event is being processed.
    CHECK ((status = 'processing') = (lease_token IS NOT NULL AND lease_until IS NOT NULL)),
    -- An object is a type and an id, or nothing.
    CHECK ((object_type IS NULL) = (object_id IS NULL)),
    CHECK ((duplicates = 0) = (last_duplicate_at IS NULL)),
    -- An ignored row is never processed.
    CHECK (status <> 'ignored' OR attempts = 0)
);

-- First-seen is decided by these two indexes through INSERT ... ON CONFLICT DO
-- NOTHING. Coalesce keys are unique only among pending rows: once a worker
-- claims the event, the next delivery of the same action and object is new.
CREATE UNIQUE INDEX events_dedup_key ON events (source, dedup_key)
    WHERE strategy <> 'coalesce';
CREATE UNIQUE INDEX events_coalesce_pending ON events (source, dedup_key)
    WHERE strategy = 'coalesce' AND status = 'pending';
CREATE INDEX events_coalesce_key ON events (source, dedup_key, id)
    WHERE strategy = 'coalesce';

-- The work queue: due events, and unfinished events per object (ordering).
CREATE INDEX events_due ON events (id, next_attempt_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX events_leased ON events (lease_until)
    WHERE status = 'processing';
CREATE INDEX events_object_open ON events (source, object_type, object_id, id)
    WHERE status IN ('pending', 'processing', 'failed');

-- The admin API.
-- The admin API. Lists page newest-first over the primary key; status and
-- source filters scan it, which keeps every ingest write free of indexes
-- that only the admin API would read. Prune scans too (it runs rarely).
CREATE INDEX events_duplicated ON events (last_duplicate_at, id)
    WHERE duplicates > 0;

CREATE TABLE domain_objects (
    source        TEXT    NOT NULL,
    object_type   TEXT    NOT NULL,
    object_id     TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    last_event_id INTEGER NOT NULL,
    event_time    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (source, object_type, object_id)
);
