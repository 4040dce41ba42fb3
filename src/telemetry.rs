//! Logging set-up: `tracing` to stderr, filtered by `RUST_LOG` (default
//! `info`). Nothing logged anywhere in hookledger carries a secret, a
//! signature or a token: those types print as `[redacted]`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: not in files, pipes or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
