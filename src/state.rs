//! The one shared state of a running hookledger, handed to every handler as
//! `web::Data<AppState>`.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::config::Config;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::sources::Source;
use crate::store::Store;

pub struct AppState {
    pub config: Arc<Config>,
    /// Configured sources by name.
    pub sources: HashMap<String, Arc<Source>>,
    pub store: Store,
    pub ingestor: Ingestor,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    /// Webhook requests being handled; when none is free the answer is 429.
    pub in_flight: Arc<Semaphore>,
}
