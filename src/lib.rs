//! hookledger: an idempotent webhook receiver.
//!
//! The path of one webhook: [`routes::webhooks`] reads the body within its
//! limit → [`sources`] verifies the signature and locates ids (pure) →
//! [`dedup`] derives the dedup key (pure) → [`ingest`] hands the write to a
//! group-committing ledger writer → [`store::ledger`] decides first-seen with
//! `INSERT … ON CONFLICT DO NOTHING`. First-seen rows are jobs: [`worker`]
//! claims them with a lease from [`store::queue`], fetches details, and marks
//! them done together with the domain row.
//!
//! Around it: [`config`] (TOML + `${VAR}` + env overrides, validated once),
//! [`dev_values`] (no shipped development secret beyond loopback),
//! [`telemetry`] and [`json_log`] (text or JSON log lines),
//! [`startup`] (wiring), [`routes::admin`] (admin API), [`console`] (the web
//! console at `/console`), [`metrics`],
//! [`replay`] (the fixture sender), [`clock`] (injected time),
//! [`reconcile`] (gap-fill: recording what a provider listed but never
//! delivered, through the same ledger statement and key).
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod dedup;
pub mod dev_values;
pub mod error;
pub mod ingest;
pub mod json_log;
pub mod metrics;
pub mod reconcile;
pub mod relay;
pub mod replay;
pub mod routes;
pub mod sources;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod worker;
