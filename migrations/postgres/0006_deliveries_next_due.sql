-- An idle relay sleeps until its destination's next delivery falls due
-- (`MIN(next_attempt_at)` over its waiting rows). Without this index that
-- minimum reads every waiting row: 86 ms at 50 000 waiting on SQLite, under
-- load, each time a relay found fewer due than it had slots for. With it,
-- one index probe. Twin of migrations/sqlite/0006_deliveries_next_due.sql.
CREATE INDEX deliveries_next_due ON deliveries (destination, next_attempt_at)
    WHERE status IN ('pending', 'failed');

-- Statistics that follow the backlog: analysed once 2 % of the rows have
-- changed (the default is 10 %), so a plan is not chosen on counts taken
-- while every row was still pending.
ALTER TABLE deliveries SET (autovacuum_analyze_scale_factor = 0.02);
