//! The one shared state of a running hookledger, handed to every handler as
//! `web::Data<AppState>`.

use std::collections::HashMap;
use std::sync::Arc;

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::config::Config;
use crate::error::ApiError;
use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::sources::Source;
use crate::store::{Store, StoreError};
use crate::telemetry::Throttle;

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
    /// The runtime the application was built on (not an HTTP worker's).
    pub runtime: Handle,
    /// Bad-signature warnings, at most one per source per interval: a
    /// misconfigured provider or a flood of forgeries must not fill the log.
    pub signature_warnings: Throttle,
}

impl AppState {
    /// Runs a handler's store call on the application's runtime. A database
    /// connection belongs to the runtime that opened it: opened by a handler,
    /// it would live on that HTTP worker's runtime, wake the ingest writers
    /// and workers across threads, and die with it when the HTTP workers stop
    /// first at shutdown (failing a worker's last completion).
    pub async fn on_main<T, F, Fut>(&self, call: F) -> Result<T, ApiError>
    where
        F: FnOnce(Store) -> Fut,
        Fut: Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        self.runtime
            .spawn(call(self.store.clone()))
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("a store call was cut off: {e}")))?
            .map_err(ApiError::from)
    }
}
