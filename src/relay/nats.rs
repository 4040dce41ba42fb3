//! NATS JetStream transport (to be built: see the destinations issue).

use super::{Attempt, AttemptResult};
use crate::config::{DestinationConfig, NatsDestination};

/// Publishes deliveries to one JetStream stream.
pub struct NatsTransport {
    _subject: String,
}

impl NatsTransport {
    pub fn new(_destination: &DestinationConfig, nats: &NatsDestination) -> NatsTransport {
        NatsTransport {
            _subject: nats.subject.clone(),
        }
    }

    pub async fn send(&self, _attempt: &Attempt<'_>) -> AttemptResult {
        AttemptResult::Retry {
            error: "the NATS transport is not built yet".into(),
            status: None,
            retry_after_ms: None,
        }
    }
}
