//! hookledger: an idempotent webhook receiver.
#![forbid(unsafe_code)]

pub mod config;
pub mod dedup;
pub mod sources;
