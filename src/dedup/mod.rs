//! Dedup key derivation (SPEC §3): which ledger key a delivery claims, and by
//! which rule. Pure: no IO, no clock — the caller passes the arrival time.
//!
//! The rules, first that applies wins: an action whose rule is `ignore` is
//! ignored whatever ids the delivery carries; else the provider's event id
//! (`id:`); else action + object for actions in the source's table (`act:`,
//! `co:`); else the SHA-256 of the body's canonical form plus the arrival
//! time bucket (`hash:`), where the previous bucket's key is looked up too so
//! that a copy arriving less than one window later is always a duplicate.
//!
//! - `strategy.rs`: the [`Strategy`] enum and its wire names.
//! - `canonical.rs`: canonical JSON and [`body_hash`].
//! - `bucket.rs`: time buckets for payload-hash keys.
//! - `key.rs`: [`plan`], the rules themselves, and [`KeyPlan`].
//! - `diff.rs`: [`json_diff`], the JSON-pointer paths at which a divergent
//!   copy differs from the first body (SPEC §9).

mod bucket;
mod canonical;
mod diff;
mod key;
mod strategy;

pub use bucket::bucket;
pub use canonical::{body_hash, canonical_body, canonical_json, sha256_hex};
pub use diff::{json_diff, Change, PathChange};
pub use key::{plan, KeyPlan};
pub use strategy::Strategy;

#[cfg(test)]
mod tests;
