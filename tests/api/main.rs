//! The black-box test suite: one binary, a file per feature. Every test runs
//! the real application on port 0 — on SQLite always, and on PostgreSQL when
//! `HOOKLEDGER_TEST_POSTGRES_URL` is set (each test in a database of its own,
//! dropped afterwards).

mod helpers;

mod admin;
mod bad_receiver;
mod bodies;
mod breaks_destinations;
mod breaks_gapfill;
mod busy;
mod config_checks;
mod config_destinations;
mod console;
mod console_browser;
mod console_pages;
mod deliveries_admin;
mod delivery_processes;
mod delivery_settle;
mod destinations;
mod destinations_admin;
mod domain_data;
mod faults;
mod feed;
mod feed_hostile;
mod feed_processes;
mod feed_retention;
mod feed_stream;
mod fuzz_findings;
mod gapfill;
mod gapfill_github;
mod gapfill_mocks;
mod gapfill_processes;
mod gauges;
mod hostile;
mod ingest;
mod input_edges;
mod lease_edges;
mod leases;
mod logs;
mod nats;
mod nats_relay;
mod nats_server;
mod openapi;
mod order_races;
mod ordering;
mod processes;
mod processing;
mod providers;
mod providers_first;
mod providers_more;
mod relay_faults;
mod relay_load;
mod replay_cli;
mod replays;
mod retention;
mod retries;
mod routes;
mod store;
mod variants;
