-- The outbox (SPEC §7). A completion of an event (the first, and each
-- replay) writes one row per matching destination in the transaction that
-- marks the event done, so no processed event can miss a destination and
-- none is delivered whose processing did not commit. Relays claim rows per
-- destination with a lease, like events. Twin of
-- migrations/sqlite/0004_deliveries.sql.

-- How many times the event completed: the n-th completion's deliveries are
-- replay n - 1 (delivery id hl_<id>, then hl_<id>-r1, -r2, …).
ALTER TABLE events ADD COLUMN completions INTEGER NOT NULL DEFAULT 0
    CHECK (completions >= 0);

CREATE TABLE deliveries (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        BIGINT  NOT NULL,
    destination     TEXT    NOT NULL,
    replay          INTEGER NOT NULL CHECK (replay >= 0),
    source          TEXT    NOT NULL,
    action          TEXT,
    -- The event's object: one object's deliveries to one destination go
    -- one at a time, in id order.
    object_type     TEXT,
    object_id       TEXT,
    status          TEXT    NOT NULL
        CHECK (status IN ('pending', 'delivering', 'delivered', 'failed', 'dead')),
    -- The envelope, JSON text: the same bytes on every attempt.
    body            TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at BIGINT  NOT NULL,
    lease_token     BIGINT,
    lease_until     BIGINT,
    last_error      TEXT,
    last_status     INTEGER,
    created_at      BIGINT  NOT NULL,
    delivered_at    BIGINT,
    CHECK ((status = 'delivering') = (lease_token IS NOT NULL AND lease_until IS NOT NULL)),
    CHECK ((object_type IS NULL) = (object_id IS NULL)),
    CHECK (status <> 'delivered' OR delivered_at IS NOT NULL)
)
WITH (fillfactor = 85, autovacuum_vacuum_scale_factor = 0.02,
      autovacuum_vacuum_insert_scale_factor = 0.05);

-- A relay's claim walks its destination's due rows in id order, and its
-- expired leases; the per-object checks probe the open and in-flight rows
-- of one object.
CREATE INDEX deliveries_due ON deliveries (destination, id)
    WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_leased ON deliveries (destination, lease_until)
    WHERE status = 'delivering';
CREATE INDEX deliveries_object_open
    ON deliveries (destination, source, object_type, object_id, id)
    WHERE status IN ('pending', 'delivering', 'failed');
CREATE INDEX deliveries_object_in_flight
    ON deliveries (destination, source, object_type, object_id)
    WHERE status = 'delivering';
-- An event's deliveries (prune, the admin API's event_id filter).
CREATE INDEX deliveries_event ON deliveries (event_id);

-- What every process must see alike about a destination: paused or not.
CREATE TABLE destination_state (
    name       TEXT    PRIMARY KEY,
    paused     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT  NOT NULL
);
