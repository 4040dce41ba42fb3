//! The black-box test suite: one binary, a file per feature. Every test runs
//! the real application on port 0 — on SQLite always, and on PostgreSQL when
//! `HOOKLEDGER_TEST_POSTGRES_URL` is set (each test in a database of its own,
//! dropped afterwards).

mod helpers;

mod admin;
mod bad_receiver;
mod bodies;
mod busy;
mod config_checks;
mod destinations;
mod faults;
mod hostile;
mod ingest;
mod input_edges;
mod lease_edges;
mod leases;
mod logs;
mod order_races;
mod ordering;
mod processes;
mod processing;
mod relay_faults;
mod relay_load;
mod replay_cli;
mod replays;
mod retries;
mod routes;
mod store;
