-- The dedup ledger. Each row is one first-seen delivery and, while it is
-- `pending`/`failed`/`processing`, the durable job that processes it.
-- Instants are Unix milliseconds. Twin of migrations/sqlite/0001_ledger.sql.
CREATE TABLE events (
    id                BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
    event_time        BIGINT  NOT NULL,
    payload           TEXT    NOT NULL,
    body_hash         TEXT    NOT NULL,
    received_at       BIGINT  NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at   BIGINT  NOT NULL,
    lease_token       BIGINT,
    lease_until       BIGINT,
    last_error        TEXT,
    processed_at      BIGINT,
    duplicates        BIGINT  NOT NULL DEFAULT 0 CHECK (duplicates >= 0),
    last_duplicate_at BIGINT,
    payload_differs   BOOLEAN NOT NULL DEFAULT FALSE,
    CHECK ((status = 'processing') = (lease_token IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK ((object_type IS NULL) = (object_id IS NULL)),
    CHECK ((duplicates = 0) = (last_duplicate_at IS NULL)),
    CHECK (status <> 'ignored' OR attempts = 0)
)
-- Rows change status a few times right after they arrive (pending →
-- processing → done): vacuum early so the queue's partial indexes do not
-- fill with dead entries that every claim walks past, and leave room on
-- each page so those updates can stay on it (HOT).
WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02,
      autovacuum_vacuum_insert_scale_factor = 0.05);

CREATE UNIQUE INDEX events_dedup_key ON events (source, dedup_key)
    WHERE strategy <> 'coalesce';
CREATE UNIQUE INDEX events_coalesce_pending ON events (source, dedup_key)
    WHERE strategy = 'coalesce' AND status = 'pending';
CREATE INDEX events_coalesce_key ON events (source, dedup_key, id)
    WHERE strategy = 'coalesce';

CREATE INDEX events_due ON events (id, next_attempt_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX events_leased ON events (lease_until)
    WHERE status = 'processing';
CREATE INDEX events_object_open ON events (source, object_type, object_id, id)
    WHERE status IN ('pending', 'processing', 'failed');

-- The admin API. Lists page newest-first over the primary key; status and
-- source filters scan it, which keeps every ingest write free of indexes
-- that only the admin API would read. Prune scans too (it runs rarely).
CREATE INDEX events_duplicated ON events (last_duplicate_at, id)
    WHERE duplicates > 0;

CREATE TABLE domain_objects (
    source        TEXT   NOT NULL,
    object_type   TEXT   NOT NULL,
    object_id     TEXT   NOT NULL,
    data          TEXT   NOT NULL,
    last_event_id BIGINT NOT NULL,
    event_time    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (source, object_type, object_id)
);
