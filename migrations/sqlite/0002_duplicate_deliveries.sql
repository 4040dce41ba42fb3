-- Duplicate deliveries, as ingest records them: one narrow row per key and
-- group-commit batch, appended, instead of an update of the wide ledger row
-- (a random page, and an index entry moved, per re-delivery). They are folded
-- into events.duplicates / last_duplicate_at / payload_differs in the
-- background and before every admin read, and deleted in the same
-- transaction. No index: ingest only appends, the fold reads the table whole.
CREATE TABLE duplicate_deliveries (
    event_id INTEGER NOT NULL,
    copies   INTEGER NOT NULL CHECK (copies > 0),
    last_at  INTEGER NOT NULL,
    -- Some copy's canonical body hash differs from the ledger row's.
    differs  BOOLEAN NOT NULL CHECK (differs IN (0, 1))
);
