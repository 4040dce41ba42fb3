//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`). Nothing logged anywhere in hookledger carries a secret, a
//! signature or a token: those types print as `[redacted]`. Warnings that a
//! caller can cause at will go through a [`Throttle`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// At most one bad-signature warning per source in this time.
pub const SIGNATURE_WARNING_INTERVAL: Duration = Duration::from_secs(10);

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: not in files, pipes or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter.and(filter_fn(|meta| shown(meta.target(), *meta.level()))));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Whether a line may be logged at all, whatever `RUST_LOG` asks for:
/// async-nats writes each CONNECT it sends at trace level, the NATS
/// destination's password or token in clear, so its trace lines never are.
/// A cap rather than a directive: `async_nats=debug` would also raise it
/// above a quieter `RUST_LOG`.
fn shown(target: &str, level: Level) -> bool {
    !(level == Level::TRACE && (target == "async_nats" || target.starts_with("async_nats::")))
}

/// Lets one occurrence per key through per interval and counts the others,
/// so the next line that is let through can say how many were held back.
/// Keys are configured names (a bounded set), never caller-supplied text.
pub struct Throttle {
    interval: Duration,
    /// Per key: when a line was last let through, and how many since then
    /// were not.
    keys: Mutex<HashMap<String, (Instant, u64)>>,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            keys: Mutex::default(),
        }
    }

    /// `Some(n)`: log this occurrence, and say that `n` before it were not;
    /// `None`: hold it back.
    pub fn admit(&self, key: &str) -> Option<u64> {
        self.admit_at(key, Instant::now())
    }

    /// [`admit`](Throttle::admit) at a given instant (tests).
    pub fn admit_at(&self, key: &str, now: Instant) -> Option<u64> {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        match keys.get_mut(key) {
            Some((last, held)) if now.duration_since(*last) < self.interval => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                *last = now;
                Some(std::mem::take(held))
            }
            None => {
                keys.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_nats_trace_lines_are_never_shown_and_everything_else_is() {
        assert!(!shown("async_nats::connection", Level::TRACE));
        assert!(!shown("async_nats", Level::TRACE));
        assert!(shown("async_nats::connector", Level::DEBUG));
        assert!(shown("async_natsish", Level::TRACE));
        assert!(shown("hookledger::relay", Level::TRACE));
    }

    #[test]
    fn one_line_per_key_and_interval_then_the_count_of_those_held_back() {
        let throttle = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(throttle.admit_at("a", at(0)), Some(0));
        assert_eq!(throttle.admit_at("a", at(1)), None);
        assert_eq!(throttle.admit_at("a", at(9)), None);
        assert_eq!(throttle.admit_at("b", at(9)), Some(0), "keys count apart");
        assert_eq!(throttle.admit_at("a", at(10)), Some(2));
        assert_eq!(throttle.admit_at("a", at(11)), None);
    }
}
