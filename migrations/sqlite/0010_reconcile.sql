-- Gap-fill (SPEC §10). Every ledger row says how it came in: `webhook` (the
-- default, every row before this migration) or `reconcile` (recorded by
-- gap-fill from a provider's list of its events).
ALTER TABLE events ADD COLUMN origin TEXT NOT NULL DEFAULT 'webhook'
    CHECK (origin IN ('webhook', 'reconcile'));

-- One row per reconciled source: its cursor (the newest settled instant a
-- finished pass read, Unix ms), the lease that lets one process at a time
-- reconcile it, and when the next scheduled pass is due (so two servers
-- make one set of provider calls per interval, not one each). A lease
-- exists exactly while a pass runs.
CREATE TABLE reconcile_state (
    source      TEXT    PRIMARY KEY,
    cursor_ms   INTEGER,
    holder      TEXT,
    lease_until INTEGER,
    next_due_ms INTEGER,
    CHECK ((holder IS NULL) = (lease_until IS NULL))
);

-- GitHub deliveries whose redelivery gap-fill asked for: a guid is asked
-- for once, across passes and processes.
CREATE TABLE reconcile_requests (
    source       TEXT    NOT NULL,
    guid         TEXT    NOT NULL,
    delivery_id  INTEGER NOT NULL,
    requested_at INTEGER NOT NULL,
    PRIMARY KEY (source, guid)
);
-- Twin of migrations/postgres/0010_reconcile.sql.
