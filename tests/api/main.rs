//! The black-box test suite: one binary, a file per feature. Every test runs
//! the real application on port 0 — on SQLite always, and on PostgreSQL when
//! `HOOKLEDGER_TEST_POSTGRES_URL` is set (each test in a database of its own,
//! dropped afterwards).

mod helpers;

mod admin;
mod bodies;
mod break_input;
mod break_leases;
mod break_order;
mod busy;
mod config_checks;
mod faults;
mod hostile;
mod ingest;
mod leases;
mod logs;
mod ordering;
mod processes;
mod processing;
mod replay_cli;
mod replays;
mod retries;
mod routes;
mod store;
