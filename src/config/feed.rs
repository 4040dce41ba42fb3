//! `[feed]` (SPEC §8): the change feed's bearer token, how long its items
//! are kept, and which sources it carries. Without the table there is no
//! feed: `/feed` answers 404 and completions write no feed items.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::Secret;

/// `feed.retention_secs` when not set: 7 days.
pub const DEFAULT_FEED_RETENTION_SECS: u64 = 604_800;
/// `feed.recheck_ms` when not set: how often a waiting reader looks again
/// without being woken.
pub const DEFAULT_FEED_RECHECK_MS: u64 = 1_000;

/// The validated `[feed]` table.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// The bearer token of `/feed` and `/feed/stream` (never the admin
    /// token, and the admin token is not accepted there).
    pub token: Secret,
    /// Items older than this are dropped (server and `hookledger prune`).
    pub retention_secs: u64,
    /// The sources whose completed events the feed carries; `None`: all.
    pub sources: Option<BTreeSet<String>>,
    /// How often a waiting reader looks again without being woken (ms):
    /// on SQLite the only way it sees another process's commits.
    pub recheck_ms: u64,
}

impl FeedConfig {
    /// Whether the feed carries the events of `source`.
    pub fn covers(&self, source: &str) -> bool {
        match &self.sources {
            None => true,
            Some(names) => names.contains(source),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeed {
    pub(super) token: Option<Secret>,
    pub(super) retention_secs: Option<u64>,
    pub(super) sources: Option<Vec<String>>,
    pub(super) recheck_ms: Option<u64>,
}

/// Checks `[feed]` against the configured sources: a token is required
/// (and must differ from the admin token, or the two would be
/// interchangeable after all), retention is at least a second, and every
/// source named must exist.
pub(super) fn validate_feed(
    raw: RawFeed,
    source_names: &BTreeSet<String>,
    admin_token: &Secret,
    problems: &mut Vec<String>,
) -> Option<FeedConfig> {
    let before = problems.len();
    let token = match raw.token {
        Some(t) if !t.expose().is_empty() => t,
        _ => {
            problems.push("feed.token is not set: the feed needs a bearer token of its own".into());
            Secret::new("")
        }
    };
    if !token.expose().is_empty() && token == *admin_token {
        problems.push("feed.token must differ from server.admin_token".into());
    }
    let retention_secs = raw.retention_secs.unwrap_or(DEFAULT_FEED_RETENTION_SECS);
    if retention_secs == 0 {
        problems.push("feed.retention_secs must be at least 1".into());
    }
    let recheck_ms = raw.recheck_ms.unwrap_or(DEFAULT_FEED_RECHECK_MS);
    if recheck_ms < 10 {
        problems.push("feed.recheck_ms must be at least 10".into());
    }
    let sources = raw.sources.map(|names| {
        for name in &names {
            // Names the file defines, whether or not their entries passed
            // their own checks: only names defined nowhere are reported.
            if !source_names.contains(name) {
                problems.push(format!("feed.sources: no source named {name:?}"));
            }
        }
        names.into_iter().collect::<BTreeSet<_>>()
    });
    if problems.len() > before {
        return None;
    }
    Some(FeedConfig {
        token,
        retention_secs,
        sources,
        recheck_ms,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::load_str;
    use super::*;

    const BASE: &str = "[server]\nadmin_token = \"admin\"\n\
        [sources.s]\npreset = \"github\"\nsecret = \"x\"\n";

    fn load(feed: &str) -> Result<crate::config::Config, Vec<String>> {
        let no_env: BTreeMap<String, String> = BTreeMap::new();
        load_str(&format!("{BASE}{feed}"), &no_env).map_err(|e| e.0)
    }

    #[test]
    fn without_a_feed_table_there_is_no_feed() {
        assert!(load("").unwrap().feed.is_none());
    }

    #[test]
    fn a_feed_takes_its_defaults_and_covers_every_source() {
        let feed = load("[feed]\ntoken = \"f\"\n").unwrap().feed.unwrap();
        assert_eq!(feed.retention_secs, DEFAULT_FEED_RETENTION_SECS);
        assert_eq!(feed.recheck_ms, DEFAULT_FEED_RECHECK_MS);
        assert!(feed.covers("s") && feed.covers("anything"));
        let feed = load("[feed]\ntoken = \"f\"\nsources = [\"s\"]\nretention_secs = 60\n")
            .unwrap()
            .feed
            .unwrap();
        assert_eq!(feed.retention_secs, 60);
        assert!(feed.covers("s") && !feed.covers("other"));
    }

    #[test]
    fn a_bad_feed_table_is_refused_with_every_problem() {
        let problems =
            load("[feed]\nretention_secs = 0\nrecheck_ms = 0\nsources = [\"s\", \"nope\"]\n")
                .unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("feed.token is not set")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("retention_secs")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("recheck_ms")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("\"nope\"")),
            "{problems:?}"
        );
        let problems = load("[feed]\ntoken = \"admin\"\n").unwrap_err();
        assert!(
            problems.iter().any(|p| p.contains("must differ")),
            "{problems:?}"
        );
        let problems = load("[feed]\ntoken = \"f\"\ntypo = 1\n").unwrap_err();
        assert!(problems.iter().any(|p| p.contains("typo")), "{problems:?}");
    }
}
