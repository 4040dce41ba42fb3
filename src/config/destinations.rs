//! The typed shape of `[destinations.NAME]` and of a source's `deliver`
//! rules (SPEC §7), the action globs those rules match with, and the
//! credential-free form of a destination URL for printing. Parsing and
//! checking the raw TOML happens in `validate_destinations.rs`; what is
//! here is what the relays and the outbox read.

use std::collections::BTreeMap;
use std::fmt;

use super::Secret;

/// The placeholders a NATS subject template may use.
pub const SUBJECT_PLACEHOLDERS: [&str; 4] = ["source", "action", "object_type", "object_id"];

/// Where processed events go.
#[derive(Debug, Clone)]
pub struct DestinationConfig {
    pub name: String,
    pub kind: DestinationKind,
    pub timeout_secs: u64,
    /// Deliveries in flight per process.
    pub concurrency: usize,
    /// Token-bucket rate per process; `None`: unlimited.
    pub rate_per_sec: Option<f64>,
    /// Retry keys; default to `[processing]`'s.
    pub max_attempts: u32,
    pub backoff_base_secs: u64,
    pub backoff_max_secs: u64,
}

#[derive(Debug, Clone)]
pub enum DestinationKind {
    Http(HttpDestination),
    Nats(NatsDestination),
}

impl DestinationKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            DestinationKind::Http(_) => "http",
            DestinationKind::Nats(_) => "nats",
        }
    }
}

#[derive(Clone)]
pub struct HttpDestination {
    /// Fixed by the operator; never built from webhook data. It may carry
    /// credentials (`user:password@`, a key in the query): print it only
    /// through [`printable_url`](Self::printable_url).
    pub url: String,
    /// The `whsec_…` secret (checked to decode); `None` with `sign = "off"`.
    pub secret: Option<Secret>,
    /// Added to every request. The values may be credentials
    /// (`Authorization`), so `Debug` shows only the names.
    pub headers: BTreeMap<String, String>,
}

impl HttpDestination {
    /// The URL without its credentials or query, for logs and errors.
    pub fn printable_url(&self) -> String {
        printable_url(&self.url)
    }
}

impl fmt::Debug for HttpDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpDestination")
            .field("url", &self.printable_url())
            .field("secret", &self.secret)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[derive(Clone)]
pub struct NatsDestination {
    /// May carry `user:password@` or a token (`token@`): print it only
    /// through [`printable_url`](Self::printable_url).
    pub url: Secret,
    /// Template over [`SUBJECT_PLACEHOLDERS`].
    pub subject: String,
    pub stream: String,
    pub create_stream: bool,
}

impl NatsDestination {
    /// The URL without its credentials or query, for logs and errors.
    pub fn printable_url(&self) -> String {
        printable_url(self.url.expose())
    }
}

impl fmt::Debug for NatsDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsDestination")
            .field("url", &self.printable_url())
            .field("subject", &self.subject)
            .field("stream", &self.stream)
            .field("create_stream", &self.create_stream)
            .finish()
    }
}

/// A destination URL for printing: scheme, host, port and path, with any
/// user name (a NATS token is one), password and query replaced.
/// Stricter than [`redact_url`](super::redact_url), which keeps a
/// database URL's user name.
pub fn printable_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            let had_credentials = !url.username().is_empty() || url.password().is_some();
            let _ = url.set_username("");
            let _ = url.set_password(None);
            if url.query().is_some() {
                url.set_query(Some("[redacted]"));
            }
            url.set_fragment(None);
            let printed = url.to_string();
            // Spliced in as text: the URL would percent-encode the brackets.
            match printed.split_once("://") {
                Some((scheme, rest)) if had_credentials => format!("{scheme}://[redacted]@{rest}"),
                _ => printed,
            }
        }
        Err(_) => "[unparseable URL]".to_string(),
    }
}

/// One entry of a source's `deliver` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverRule {
    /// A destination name (checked to exist).
    pub to: String,
    /// Globs on the event's action; `None`: every event, with or without one.
    pub actions: Option<Vec<ActionGlob>>,
}

impl DeliverRule {
    /// Whether an event with this action goes to `to`: every event when the
    /// rule names no actions; otherwise only one whose action matches a glob.
    pub fn matches(&self, action: Option<&str>) -> bool {
        match (&self.actions, action) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(globs), Some(action)) => globs.iter().any(|g| g.matches(action)),
        }
    }
}

/// A glob on an action: `*` matches any run of characters (`.` included,
/// so `**` is just `*`), everything else itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionGlob(String);

/// Characters that other glob dialects give a meaning (`?` one character,
/// `[…]` a class, `{a,b}` alternatives). Here they would match only
/// themselves, and no provider's action holds them: a glob with one was
/// written for a dialect hookledger does not speak and would silently
/// never match, so it is refused instead.
pub(crate) const FOREIGN_GLOB_CHARS: [char; 5] = ['?', '[', ']', '{', '}'];

impl ActionGlob {
    /// A glob from its text. A bad glob is one that can only be a
    /// mistake: empty (it would match only an empty action, which no
    /// provider sends), with whitespace at either end or a control
    /// character (a copy-paste slip: actions have neither), or with one of
    /// [`FOREIGN_GLOB_CHARS`]. Nothing more is refused: any other text is a
    /// plausible action of some generic source.
    pub fn parse(text: &str) -> Result<ActionGlob, String> {
        if text.is_empty() {
            return Err("an action glob may not be empty".into());
        }
        if text.chars().any(char::is_control) {
            return Err(format!("action glob {text:?} has a control character"));
        }
        if text.trim() != text {
            return Err(format!(
                "action glob {text:?} starts or ends with whitespace"
            ));
        }
        if let Some(c) = text.chars().find(|c| FOREIGN_GLOB_CHARS.contains(c)) {
            return Err(format!(
                "action glob {text:?} has {c:?}: only * is a wildcard here (any run of \
                 characters), and no action holds {c:?}"
            ));
        }
        Ok(ActionGlob(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `action` matches: the parts between `*`s must appear in
    /// order, the first at the start and the last at the end.
    pub fn matches(&self, action: &str) -> bool {
        let parts: Vec<&str> = self.0.split('*').collect();
        if parts.len() == 1 {
            return self.0 == action;
        }
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        if action.len() < first.len() + last.len()
            || !action.starts_with(first)
            || !action.ends_with(last)
        {
            return false;
        }
        let mut rest = &action[first.len()..action.len() - last.len()];
        for part in &parts[1..parts.len() - 1] {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(text: &str) -> ActionGlob {
        ActionGlob::parse(text).unwrap()
    }

    #[test]
    fn a_star_matches_any_run_of_characters_dots_included() {
        assert!(glob("invoice.*").matches("invoice.paid"));
        assert!(glob("invoice.*").matches("invoice.payment.failed"));
        assert!(glob("invoice.*").matches("invoice."));
        assert!(!glob("invoice.*").matches("invoice"));
        assert!(!glob("invoice.*").matches("xinvoice.paid"));
        assert!(glob("*").matches("anything.at.all"));
        assert!(glob("*.created").matches("customer.created"));
        assert!(!glob("*.created").matches("customer.created.x"));
        assert!(glob("a*b*c").matches("abc"));
        assert!(glob("a*b*c").matches("a-b-b-c"));
        assert!(!glob("a*b*c").matches("ac"));
        assert!(
            !glob("ab*ba").matches("aba"),
            "the two ends may not overlap"
        );
        assert!(glob("exact").matches("exact"));
        assert!(!glob("exact").matches("exactly"));
    }

    #[test]
    fn a_rule_without_actions_takes_every_event_and_one_with_actions_needs_an_action() {
        let all = DeliverRule {
            to: "app".into(),
            actions: None,
        };
        assert!(all.matches(None));
        assert!(all.matches(Some("x")));
        let some = DeliverRule {
            to: "app".into(),
            actions: Some(vec![glob("invoice.*")]),
        };
        assert!(!some.matches(None));
        assert!(some.matches(Some("invoice.paid")));
        assert!(!some.matches(Some("customer.created")));
    }

    #[test]
    fn a_double_star_is_a_single_one() {
        assert!(glob("invoice.**").matches("invoice.payment.failed"));
        assert!(glob("**").matches(""));
    }

    #[test]
    fn globs_that_can_only_be_mistakes_are_refused() {
        for bad in [
            "",
            "a\nb",
            "invoice.\t*",
            " invoice.*",
            "invoice.* ",
            "invoice.?aid",
            "invoice.[pf]*",
            "{invoice,customer}.*",
            "invoice.paid}",
        ] {
            assert!(ActionGlob::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for good in [
            "*",
            "orders/create",
            "order.completed",
            "pull_request.opened",
            "a b",
        ] {
            assert!(ActionGlob::parse(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn printable_urls_keep_the_host_and_drop_every_credential() {
        for (raw, printed) in [
            (
                "nats://s3cr3t@bus.internal:4222",
                "nats://[redacted]@bus.internal:4222",
            ),
            (
                "nats://u:s3cr3t@bus.internal:4222",
                "nats://[redacted]@bus.internal:4222",
            ),
            (
                "https://app.internal/hooks?key=s3cr3t#x",
                "https://app.internal/hooks?[redacted]",
            ),
            ("tls://bus.internal:4222", "tls://bus.internal:4222"),
            ("not a url s3cr3t", "[unparseable URL]"),
        ] {
            assert_eq!(printable_url(raw), printed, "{raw}");
        }
    }
}
