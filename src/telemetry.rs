//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`). Nothing logged anywhere in hookledger carries a secret, a
//! signature or a token: those types print as `[redacted]`. Warnings that a
//! caller can cause at will go through a [`Throttle`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

/// At most one bad-signature warning per source in this time.
pub const SIGNATURE_WARNING_INTERVAL: Duration = Duration::from_secs(10);

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: not in files, pipes or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
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
