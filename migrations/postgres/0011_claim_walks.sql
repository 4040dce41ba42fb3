-- Indexes that only the claims' intended walks can use, so that statistics
-- taken while a backlog was all pending (or while nothing was in flight)
-- cannot steer a claim into reading every finished row. See
-- `store/queue.rs` and `store/deliveries.rs`. Twin of
-- migrations/sqlite/0011_claim_walks.sql.

-- The processing claim walks the due events one status at a time in id
-- order, ordered by `(status, id)`: an order the primary key cannot give
-- (with `ORDER BY id` the planner walked the primary key through every
-- `done` row: 74 ms per claim halfway through a 100 000-event backlog).
-- The due time is the third column so that a claim passes over failed
-- events not yet due inside the index, without reading their rows.
CREATE INDEX events_queue ON events (status, id, next_attempt_at)
    WHERE status IN ('pending', 'failed');
-- An idle worker sleeps until the next event falls due:
-- `MIN(next_attempt_at)` over the waiting rows, one probe here (it read
-- every waiting row of `events_due`: 40-160 ms at 100 000 waiting).
CREATE INDEX events_next_due ON events (next_attempt_at)
    WHERE status IN ('pending', 'failed');
-- Its two readers (the claim and the next due time) have the indexes
-- above; the console's oldest waiting event walks `events_queue`.
DROP INDEX events_due;

-- The relay's check "is another delivery of this object in flight?" must
-- probe `deliveries_object_in_flight` (one object's rows). It was planned
-- on `deliveries_leased` instead, by destination alone, reading every
-- lease entry of the destination since the last vacuum: 90 buffers per
-- probe, two thirds of a claim's reads. The expiry index is now partial on
-- a condition the check does not state and the expired-lease walk does
-- (`lease_token IS NOT NULL`: the same rows, by the table's CHECK that a
-- delivering row has a token), so only the walk can use it. (A condition on
-- `lease_until` would not do: the check's `+lease_until > $3` implies it.)
CREATE INDEX deliveries_lease_expiry ON deliveries (destination, lease_until)
    WHERE status = 'delivering' AND lease_token IS NOT NULL;
DROP INDEX deliveries_leased;
