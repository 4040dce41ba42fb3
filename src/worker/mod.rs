//! STUB — to be replaced by the worker module (interface contract below).
use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sources::Source;
use crate::store::Store;

/// Everything a worker needs; cheap to clone.
#[derive(Clone)]
pub struct Worker {
    pub store: Store,
    pub config: Arc<Config>,
    pub sources: Arc<HashMap<String, Arc<Source>>>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

impl Worker {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        sources: Arc<HashMap<String, Arc<Source>>>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Worker {
        Worker { store, config, sources, clock, metrics }
    }

    /// Claims what is due now (up to `limit`) and processes it; returns how many
    /// events it finished an attempt on.
    pub async fn run_once(&self, _limit: usize) -> anyhow::Result<usize> {
        Ok(0)
    }

    /// Processes events until nothing is due at the clock's current time.
    pub async fn drain(&self) -> anyhow::Result<usize> {
        Ok(0)
    }

    /// The background loop of `hookledger serve`: `concurrency` tasks until `shutdown`.
    pub async fn run(self, _concurrency: usize, shutdown: CancellationToken) {
        shutdown.cancelled().await;
    }
}
