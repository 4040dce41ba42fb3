-- Divergent copies (SPEC §9): a duplicate whose canonical body hash differs
-- from its ledger row's keeps its body here, one row per distinct hash
-- (`copies` counts the deliveries with it), at most 5 per ledger row, each
-- at most server.max_body_bytes. Copies with any further hash, or a body too
-- large, are only counted, in event_variant_overflow. Both are written in
-- the transaction that records the duplicate, by a writer that holds the
-- ledger row's write lock, so the bound of 5 holds under concurrency
-- (src/store/variants.rs). Rows go with their ledger row on prune. `id`
-- orders a row's variants oldest first. Twin of
-- migrations/postgres/0009_variants.sql.
CREATE TABLE event_variants (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      INTEGER NOT NULL,
    body_hash     TEXT    NOT NULL,
    first_seen_at INTEGER NOT NULL,
    copies        INTEGER NOT NULL CHECK (copies > 0),
    payload       TEXT    NOT NULL,
    UNIQUE (event_id, body_hash)
);

CREATE TABLE event_variant_overflow (
    event_id INTEGER PRIMARY KEY,
    copies   INTEGER NOT NULL CHECK (copies > 0)
);
