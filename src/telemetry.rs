//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`), as text or, with `server.log_format = "json"`, one JSON object
//! per line (`json_log.rs`), panics included. Nothing logged anywhere in
//! hookledger carries a secret, a signature or a token: those types print
//! as `[redacted]`. Warnings that a caller can cause at will go through a
//! [`Throttle`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::Level;

use crate::config::LogFormat;
use crate::json_log::{self, JsonFields, JsonLines};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// At most one bad-signature warning per source in this time.
pub const SIGNATURE_WARNING_INTERVAL: Duration = Duration::from_secs(10);

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = filter.and(filter_fn(|meta| shown(meta.target(), *meta.level())));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let layer = match format {
        LogFormat::Text => layer
            // Colour codes only on a terminal: not in files, pipes or journald.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => {
            // A panic's default report is plain text over several lines;
            // as a log event it is one object like every other line.
            std::panic::set_hook(Box::new(|info| {
                let location = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()));
                let payload = info.payload();
                let cause = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_string());
                let thread = std::thread::current()
                    .name()
                    .unwrap_or("unnamed")
                    .to_string();
                tracing::error!(
                    target: "panic",
                    location = location.as_deref(),
                    thread = thread.as_str(),
                    "panicked: {cause}"
                );
            }));
            layer
                .fmt_fields(JsonFields)
                .event_format(JsonLines)
                .with_ansi(false)
                .with_filter(filter)
                .boxed()
        }
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Writes a line that is no log event (a command's result) to stdout, as
/// text or as one JSON object.
pub fn say(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => println!("{message}"),
        LogFormat::Json => println!("{}", json_log::line(Level::INFO, message)),
    }
}

/// Writes the error a command ended with to stderr, as text or as one
/// JSON object.
pub fn fail(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("hookledger: {message}"),
        LogFormat::Json => eprintln!("{}", json_log::line(Level::ERROR, message)),
    }
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
