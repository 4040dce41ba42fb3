//! The `hookledger` binary: parses the command line, loads the config and
//! runs a subcommand. The only place that exits on error.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use hookledger::cli::{Cli, Command};
use hookledger::clock::{Clock, SystemClock};
use hookledger::config::{self, ProcessEnv};
use hookledger::reconcile::{self, PassOptions};
use hookledger::sources::providers::DEFAULT_RESEND_HORIZON_SECS;
use hookledger::startup::Application;
use hookledger::store::retention::PrunePolicy;
use hookledger::store::Store;
use hookledger::{replay, telemetry};

use reconcile::cli as reconcile_cli;

/// mimalloc: the ingest path allocates many small, short-lived buffers
/// across threads, where it measurably beats the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every command reads the config first: it says how to log
    // (`server.log_format`), and nothing is logged before it is known.
    let config = match load(&cli) {
        Ok(config) => config,
        Err(e) => {
            // The config did not load, but it may still say `json`: then
            // this line is JSON like every other (SPEC §9).
            let format = config::log_format_hint(cli.config.as_deref(), &ProcessEnv);
            telemetry::fail(format, &hookledger::error::chain(e.as_ref()));
            return ExitCode::FAILURE;
        }
    };
    let format = config.server.log_format;
    telemetry::init(format);
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    match runtime.block_on(run(cli, config)) {
        Ok(code) => code,
        Err(e) => {
            telemetry::fail(format, &hookledger::error::chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> anyhow::Result<config::Config> {
    Ok(match &cli.config {
        Some(path) => config::load_file(path, &ProcessEnv)?,
        None => config::load(&ProcessEnv)?,
    })
}

async fn run(cli: Cli, config: config::Config) -> anyhow::Result<ExitCode> {
    let format = config.server.log_format;
    match cli.command.as_ref().unwrap_or(&Command::Serve) {
        // Needs no config: the document is the same for every deployment.
        Command::Openapi => print!("{}", hookledger::routes::openapi::document_json()),
        Command::Serve => {
            let bind = config.server.bind.clone();
            let app = Application::build(config, Arc::new(SystemClock), true).await?;
            let backend = app.store().backend();
            tracing::info!(%bind, backend, "hookledger listening");
            app.run_until_signal().await?;
        }
        Command::Migrate => {
            Store::open(&config.server.database_url)
                .await
                .with_context(|| {
                    let url = config::redact_url(&config.server.database_url);
                    format!("migrating the database {url}")
                })?;
            telemetry::say(format, "database is up to date");
        }
        Command::Prune {
            older_than,
            force,
            dead,
        } => {
            let store = Store::open(&config.server.database_url).await?;
            let now = SystemClock.now_ms();
            let age_ms = i64::try_from(older_than.saturating_mul(1000)).unwrap_or(i64::MAX);
            let policy = PrunePolicy {
                before_ms: now.saturating_sub(age_ms),
                now_ms: now,
                horizons_secs: config
                    .sources
                    .iter()
                    .map(|(name, s)| (name.clone(), s.horizon_secs))
                    .collect(),
                default_horizon_secs: DEFAULT_RESEND_HORIZON_SECS,
                force: *force,
                dead: *dead,
            };
            let report = store.prune_with(&policy).await?;
            telemetry::say(format, &format!("pruned {} ledger rows", report.dropped));
            telemetry::say(
                format,
                &format!(
                    "kept {} ledger rows younger than their source's resend horizon (--force drops them)",
                    report.kept_for_horizon
                ),
            );
            telemetry::say(
                format,
                &format!(
                    "kept {} dead ledger rows (--dead drops them)",
                    report.kept_dead
                ),
            );
            // The feed keeps its own horizon (SPEC §8), whatever --older-than says.
            if let Some(feed) = &config.feed {
                let retention_ms =
                    i64::try_from(feed.retention_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
                let cut = SystemClock.now_ms().saturating_sub(retention_ms);
                let items = store.prune_feed(cut).await?;
                telemetry::say(
                    format,
                    &format!("pruned {items} feed items older than feed.retention_secs"),
                );
            }
        }
        Command::Reconcile {
            source,
            since,
            dry_run,
        } => {
            let store = Store::open(&config.server.database_url).await?;
            let options = PassOptions {
                since_secs: *since,
                dry_run: *dry_run,
                scheduled: false,
            };
            let all_read =
                reconcile_cli::run(&config, store, source.as_deref(), options, format).await?;
            if !all_read {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Replay {
            paths,
            url,
            times,
            concurrency,
        } => {
            let url = match url {
                Some(url) => url.clone(),
                None => replay::default_url(&config.server.bind),
            };
            let summary = replay::run(&config, paths, &url, *times, *concurrency).await?;
            telemetry::say(format, &summary.to_string());
            if !summary.all_succeeded() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
