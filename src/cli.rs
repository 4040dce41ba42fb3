//! The command line: `serve` (default), `migrate`, `prune`, `replay`,
//! `reconcile`, `openapi`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "hookledger", version, about = "Idempotent webhook receiver")]
pub struct Cli {
    /// Config file (default: $HOOKLEDGER_CONFIG, else ./hookledger.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the receiver and its workers (the default).
    Serve,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Drop finished ledger rows received before a given age, and feed
    /// items older than `feed.retention_secs`. Rows younger than their
    /// source's resend horizon, and dead rows, are kept unless told.
    Prune {
        /// Age such as 30d, 12h, 15m or 45s.
        #[arg(long, value_parser = parse_age)]
        older_than: u64,
        /// Also drop rows younger than their source's resend horizon (a
        /// resend of one of them would then be processed again).
        #[arg(long)]
        force: bool,
        /// Also drop dead rows (dead letters).
        #[arg(long)]
        dead: bool,
    },
    /// Look for events a provider sent but hookledger never received
    /// (gap-fill, for sources with a `reconcile` table), once.
    Reconcile {
        /// Only this source (default: every source with a `reconcile` table).
        #[arg(long)]
        source: Option<String>,
        /// Read back this far (30d, 72h, …) instead of from the cursor.
        #[arg(long, value_parser = parse_age)]
        since: Option<u64>,
        /// List and count only: record, request and move nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Send fixtures to a running hookledger, signed as their providers would.
    Replay {
        /// Fixture files or directories (searched recursively for *.json).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Where the server is (default: http:// and the config's `bind`).
        #[arg(long)]
        url: Option<String>,
        /// Send every fixture this many times.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        times: u32,
        /// Deliveries in flight at once.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        concurrency: u32,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (as served at
    /// /openapi.json): `hookledger openapi > openapi.json`.
    Openapi,
}

/// `30d`, `12h`, `15m`, `45s` → seconds.
pub fn parse_age(text: &str) -> Result<u64, String> {
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let factor = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => {
            return Err(format!(
                "{text:?}: expected a number followed by d, h, m or s"
            ))
        }
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?}: expected a number followed by d, h, m or s"
        ));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .ok_or_else(|| format!("{text:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_age;

    #[test]
    fn ages_take_the_four_units() {
        assert_eq!(parse_age("30d"), Ok(30 * 86_400));
        assert_eq!(parse_age("12h"), Ok(12 * 3_600));
        assert_eq!(parse_age("15m"), Ok(900));
        assert_eq!(parse_age("45s"), Ok(45));
        for bad in ["", "d", "30", "30w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
    }
}
