//! `hookledger reconcile [--source NAME] [--since 72h] [--dry-run]`: one
//! pass per source with a `reconcile` table (SPEC §10), waiting up to
//! [`LEASE_WAIT`] for a lease a server holds. Prints
//! `<source>: N listed, M missing, K recorded|requested` per source, and a
//! failed pass's reason on stderr; the caller exits non-zero when any
//! provider's API could not be read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{PassOptions, Reconciler};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, LogFormat};
use crate::metrics::Metrics;
use crate::sources::Source;
use crate::store::Store;

/// How long a pass waits for a lease held by another process: a little
/// longer than a lease lasts, so that a lease left by a crashed pass (which
/// nobody renews) runs out while we wait, and `reconcile` run right after a
/// crash does its pass instead of giving up.
pub const LEASE_WAIT: Duration = Duration::from_millis(super::LEASE_MS as u64 + 10_000);
/// How often it asks for the lease meanwhile.
const LEASE_RETRY: Duration = Duration::from_millis(500);

/// Runs the passes; `Ok(false)` when some provider's API could not be read.
pub async fn run(
    config: &Config,
    store: Store,
    only: Option<&str>,
    options: PassOptions,
    format: LogFormat,
) -> anyhow::Result<bool> {
    if let Some(name) = only {
        match config.sources.get(name) {
            None => anyhow::bail!("no source named {name:?}"),
            Some(s) if s.reconcile.is_none() => {
                anyhow::bail!("source {name:?} has no [sources.{name}.reconcile] table")
            }
            Some(_) => {}
        }
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let metrics = Arc::new(Metrics::new());
    let reconcilers: Vec<Reconciler> = config
        .sources
        .values()
        .filter(|s| only.is_none() || only == Some(s.name.as_str()))
        .filter_map(|s| {
            let source = Arc::new(Source::new(s.clone()));
            Reconciler::new(source, store.clone(), clock.clone(), metrics.clone())
        })
        .collect();
    if reconcilers.is_empty() {
        crate::telemetry::say(format, "no source has a reconcile table; nothing to do");
        return Ok(true);
    }
    let mut all_read = true;
    for reconciler in reconcilers {
        let name = reconciler.source_name().to_string();
        let deadline = Instant::now() + LEASE_WAIT;
        loop {
            match reconciler.run_once(options).await {
                Ok(Some(summary)) => crate::telemetry::say(format, &summary.to_string()),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(LEASE_RETRY).await;
                    continue;
                }
                Ok(None) => {
                    all_read = false;
                    crate::telemetry::fail(
                        format,
                        &format!(
                            "{name}: another process held the lease for {LEASE_WAIT:?}; not run"
                        ),
                    );
                }
                Err(e) => {
                    all_read = false;
                    crate::telemetry::fail(format, &format!("{name}: failed: {e}"));
                }
            }
            break;
        }
    }
    Ok(all_read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_left_by_a_crash_runs_out_within_the_wait() {
        let lease = Duration::from_millis(super::super::LEASE_MS as u64);
        assert!(
            LEASE_WAIT > lease + LEASE_RETRY,
            "{LEASE_WAIT:?} against a {lease:?} lease"
        );
    }
}
