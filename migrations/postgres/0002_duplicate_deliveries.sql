-- Duplicate deliveries, as ingest records them: one narrow row per key and
-- group-commit batch, appended, instead of an update of the wide ledger row
-- (which is not HOT, as last_duplicate_at is indexed, so every index of the
-- row would get a new entry per re-delivery). They are folded into
-- events.duplicates / last_duplicate_at / payload_differs in the background
-- and before every admin read, and deleted in the same statement. No index:
-- ingest only appends, the fold reads the table whole.
CREATE TABLE duplicate_deliveries (
    event_id BIGINT  NOT NULL,
    copies   BIGINT  NOT NULL CHECK (copies > 0),
    last_at  BIGINT  NOT NULL,
    -- Some copy's canonical body hash differs from the ledger row's.
    differs  BOOLEAN NOT NULL
)
-- Emptied every second or so: vacuum it often, it is small.
WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 10000);
