//! Relays: the output half (SPEC §7). The outbox rows that a completion
//! writes (`store::deliveries`) are claimed per destination with a lease,
//! handed to that destination's transport — [`http`] (Standard Webhooks
//! signed POST) or [`nats`] (JetStream publish awaiting its PubAck) — and
//! settled with one lease-guarded store call: delivered, retried later, or
//! dead. A transport only answers what became of one attempt
//! ([`AttemptResult`]); retries, order, pause and leases are decided here
//! and in SQL, the same for every kind.

pub mod http;
pub mod nats;
mod runner;
mod settler;

pub use runner::{DeliveryOutcome, Relay};

/// One attempt at one delivery, as a transport sees it.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// `hl_<ledger id>` or `hl_<ledger id>-r<n>`: the `webhook-id`,
    /// `Idempotency-Key` and `Nats-Msg-Id` of every attempt of the delivery.
    pub delivery_id: &'a str,
    pub source: &'a str,
    pub action: Option<&'a str>,
    pub object_type: Option<&'a str>,
    pub object_id: Option<&'a str>,
    /// 1 for the first attempt (`hookledger-attempt`).
    pub attempt: u32,
    /// The envelope, JSON text, the same bytes on every attempt.
    pub body: &'a str,
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// The receiver took it (any 2xx; a PubAck, duplicate or not).
    Delivered { status: Option<u16> },
    /// Try again after the backoff, and no sooner than `retry_after_ms`
    /// (a Unix-ms instant) when the receiver asked.
    Retry {
        error: String,
        status: Option<u16>,
        retry_after_ms: Option<i64>,
    },
    /// Refused for good: never tried again unless an operator retries it.
    Dead { error: String, status: Option<u16> },
}
