-- Nothing changes on SQLite. The PostgreSQL twin replaces indexes that its
-- planner, with stale statistics, used for the wrong walk (the primary key
-- for the processing claim, the lease-expiry index for the relay's
-- in-flight check). SQLite's planner keeps the claims on the indexes they
-- were written for (`events_due`, `deliveries_due`, the in-flight indexes;
-- see `store/queue.rs` and `store/deliveries.rs`), and an index it would
-- not use would cost every write. Twin of
-- migrations/postgres/0011_claim_walks.sql.
SELECT 1;
