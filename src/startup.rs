//! Building and running the application: open the store, start the ledger
//! writers, bind the HTTP server, start the workers. Tests use the same path
//! (`Application::build` on port 0), so what they exercise is what runs.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use anyhow::Context;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::ingest::{BatchSettings, Ingestor};
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use crate::relay::Relay;
use crate::sources::Source;
use crate::state::AppState;
use crate::store::Store;
use crate::telemetry::{Throttle, SIGNATURE_WARNING_INTERVAL};
use crate::worker::Worker;

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    worker: Worker,
    relays: Vec<Relay>,
    reconcilers: Vec<Reconciler>,
    shutdown: CancellationToken,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Opens (and migrates) the database and binds the server. Workers run
    /// only when `run_workers` is set and `server.workers > 0`.
    pub async fn build(
        config: Config,
        clock: Arc<dyn Clock>,
        run_workers: bool,
    ) -> anyhow::Result<Application> {
        // Before anything is bound or created: a refused start leaves nothing.
        crate::dev_values::check_bind(&config)?;
        let listener = TcpListener::bind(&config.server.bind)
            .with_context(|| format!("binding {}", config.server.bind))?;
        let store = Store::open(&config.server.database_url)
            .await
            .with_context(|| {
                let url = crate::config::redact_url(&config.server.database_url);
                format!("opening the database {url}")
            })?;
        Application::with_parts(config, clock, store, listener, run_workers)
    }

    pub fn with_parts(
        config: Config,
        clock: Arc<dyn Clock>,
        store: Store,
        listener: TcpListener,
        run_workers: bool,
    ) -> anyhow::Result<Application> {
        let address = listener.local_addr()?;
        crate::dev_values::check_address(&config, address)?;
        let port = address.port();
        let config = Arc::new(config);
        let sources: Arc<HashMap<String, Arc<Source>>> = Arc::new(
            config
                .sources
                .iter()
                .map(|(name, c)| (name.clone(), Arc::new(Source::new(c.clone()))))
                .collect(),
        );
        let metrics = Arc::new(Metrics::new());
        // A divergent copy is kept up to the size a webhook body may have.
        store.keep_variants_up_to(config.server.max_body_bytes);
        let max_in_flight = config.server.max_in_flight;
        let (ingestor, writers) = Ingestor::start(
            store.clone(),
            BatchSettings {
                max_rows: config.server.batch_max_rows,
                linger: Duration::from_micros(config.server.batch_linger_us),
                writers: if matches!(store, Store::Postgres(_)) {
                    config.server.batch_writers
                } else {
                    1
                },
                queue: max_in_flight,
            },
            metrics.clone(),
        );
        let state = web::Data::new(AppState {
            config: config.clone(),
            sources: (*sources).clone(),
            store: store.clone(),
            ingestor,
            metrics: metrics.clone(),
            clock: clock.clone(),
            in_flight: Arc::new(Semaphore::new(max_in_flight)),
            signature_warnings: Throttle::new(SIGNATURE_WARNING_INTERVAL),
            runtime: tokio::runtime::Handle::current(),
        });
        let relays = Relay::for_config(&store, &config, &clock, &metrics);
        let reconcilers = crate::reconcile::for_sources(sources.values(), &store, &clock, &metrics);
        let worker = Worker::new(
            store.clone(),
            config.clone(),
            sources,
            clock.clone(),
            metrics,
        );
        let relays: Vec<Relay> = relays
            .into_iter()
            .map(|relay| relay.woken_by(worker.deliveries_written()))
            .collect();
        let shutdown = CancellationToken::new();
        let mut background = writers;
        background.push(tokio::spawn(fold_duplicates_until(
            store.clone(),
            shutdown.clone(),
        )));
        let feed_wake = web::Data::new(crate::routes::feed::FeedWake {
            signal: worker.feed_signal(),
        });
        if config.feed.is_some() {
            if let Store::Postgres(_) = &store {
                background.push(tokio::spawn(listen_for_feed_items(
                    store.clone(),
                    worker.feed_signal(),
                    shutdown.clone(),
                )));
            }
        }
        if run_workers && config.server.workers > 0 {
            background.push(tokio::spawn(
                worker.clone().run(config.server.workers, shutdown.clone()),
            ));
            if let Some(feed) = &config.feed {
                background.push(tokio::spawn(retain_feed(
                    store.clone(),
                    clock.clone(),
                    feed.retention_secs,
                    shutdown.clone(),
                )));
            }
            for relay in &relays {
                background.push(tokio::spawn(relay.clone().run(shutdown.clone())));
            }
            // Gap-fill (SPEC §10): a pass now, then one every interval.
            for reconciler in &reconcilers {
                background.push(tokio::spawn(reconciler.clone().run(shutdown.clone())));
            }
        }
        let app_state = state.clone();
        let source_names: Vec<String> = config.sources.keys().cloned().collect();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    crate::routes::unread_body::close_after_unread_chunked_body,
                ))
                .app_data(app_state.clone())
                .app_data(feed_wake.clone())
                .configure(crate::console::configure)
                .configure(|cfg| crate::routes::configure(cfg, &source_names))
        })
        .listen(listener)?
        .shutdown_timeout(config.server.shutdown_grace_secs)
        .disable_signals()
        .run();
        Ok(Application {
            port,
            server,
            state,
            worker,
            relays,
            reconcilers,
            shutdown,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// A worker sharing this application's store, clock and metrics, for
    /// driving processing by hand.
    pub fn worker(&self) -> Worker {
        self.worker.clone()
    }

    /// The relay of destination `name`, sharing this application's store,
    /// clock and metrics, for driving deliveries by hand.
    pub fn relay(&self, name: &str) -> Option<Relay> {
        self.relays.iter().find(|r| r.name() == name).cloned()
    }

    /// Every destination's relay (see [`relay`](Application::relay)).
    pub fn relays(&self) -> Vec<Relay> {
        self.relays.clone()
    }

    /// The gap-fill reconciler of source `name` (sharing this
    /// application's store, clock and metrics), for running passes by hand.
    pub fn reconciler(&self, name: &str) -> Option<Reconciler> {
        self.reconcilers
            .iter()
            .find(|r| r.source_name() == name)
            .cloned()
    }

    /// Serves until SIGINT/SIGTERM, then stops accepting, lets in-flight
    /// requests and workers finish (up to the grace period) and returns.
    pub async fn run_until_signal(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let shutdown = self.shutdown.clone();
        let grace = Duration::from_secs(self.state.config.server.shutdown_grace_secs);
        // One grace period from the signal covers requests and workers
        // together: the server may use all of it, the workers what is left.
        let (signalled_tx, mut signalled) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: no new requests; finishing in-flight work");
            let _ = signalled_tx.send(tokio::time::Instant::now());
            shutdown.cancel();
            handle.stop(true).await;
        });
        self.server.await?;
        // Sent before the server was told to stop, so it is there by now.
        let deadline = signalled
            .try_recv()
            .unwrap_or_else(|_| tokio::time::Instant::now())
            + grace;
        let Application {
            background, state, ..
        } = self;
        // Workers watch the token; ledger writers end once the server (and
        // with it every Ingestor handle) is gone.
        drop(state);
        if tokio::time::timeout_at(deadline, futures_util::future::join_all(background))
            .await
            .is_err()
        {
            tracing::warn!(
                "grace period over; exiting with work still running (leases will expire)"
            );
        }
        Ok(())
    }

    /// Serves until the returned future is dropped (tests spawn this).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// How often recorded duplicate copies are folded into their ledger rows
/// when no admin read asks for it sooner (see `store::duplicates`).
const FOLD_INTERVAL: Duration = Duration::from_secs(1);

async fn fold_duplicates_until(store: Store, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(FOLD_INTERVAL) => {}
        }
        if let Err(e) = store.fold_pending_duplicates().await {
            // Nothing is lost: the copies stay recorded for the next fold.
            tracing::warn!(error = %e, "folding duplicate counts failed; will retry");
        }
    }
}

/// How often the server drops feed items past `feed.retention_secs`.
const FEED_RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// Drops feed items older than `retention_secs`, in bounded batches
/// (`Store::prune_feed`), at start-up and then every
/// [`FEED_RETENTION_INTERVAL`].
async fn retain_feed(
    store: Store,
    clock: Arc<dyn Clock>,
    retention_secs: u64,
    shutdown: CancellationToken,
) {
    let retention_ms = i64::try_from(retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    loop {
        let before = clock.now_ms().saturating_sub(retention_ms);
        match store.prune_feed(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(dropped = n, "dropped feed items past retention"),
            // Nothing is lost: the items are dropped at the next pass.
            Err(e) => tracing::warn!(error = %e, "dropping old feed items failed; will retry"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(FEED_RETENTION_INTERVAL) => {}
        }
    }
}

/// How long the feed listener waits before reconnecting after an error.
const FEED_LISTEN_RETRY: Duration = Duration::from_secs(1);

/// PostgreSQL: wakes this process's feed readers on every notification of
/// the feed channel, so that another process's completions end their waits
/// too. After a (re)connection it wakes them once: a notification may have
/// been missed while the connection was down.
async fn listen_for_feed_items(
    store: Store,
    signal: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let mut listener = tokio::select! {
            () = shutdown.cancelled() => return,
            listener = store.feed_listener() => match listener {
                Ok(Some(listener)) => listener,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for feed items; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(FEED_LISTEN_RETRY) => {}
                    }
                    continue;
                }
            },
        };
        signal.notify_waiters();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(_) => signal.notify_waiters(),
                    Err(e) => {
                        tracing::warn!(error = %e, "the feed listener lost its connection; reconnecting");
                        break;
                    }
                },
            }
        }
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
