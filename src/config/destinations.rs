//! The typed shape of `[destinations.NAME]` and of a source's `deliver`
//! rules (SPEC §7), and the action globs those rules match with. Parsing
//! and checking the raw TOML happens in `validate.rs`, like every other
//! section; what is here is what the relays and the outbox read.

use std::collections::BTreeMap;

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

#[derive(Debug, Clone)]
pub struct HttpDestination {
    /// Fixed by the operator; never built from webhook data.
    pub url: String,
    /// The `whsec_…` secret (checked to decode); `None` with `sign = "off"`.
    pub secret: Option<Secret>,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct NatsDestination {
    /// May carry `user:password@` or a token: print it only through
    /// [`redact_url`](super::redact_url).
    pub url: Secret,
    /// Template over [`SUBJECT_PLACEHOLDERS`].
    pub subject: String,
    pub stream: String,
    pub create_stream: bool,
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

/// A glob on an action: `*` matches any run of characters (`.` included),
/// everything else itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionGlob(String);

impl ActionGlob {
    /// A glob from its text; an empty one is refused (it could match only
    /// an empty action, which no provider sends — always a mistake).
    pub fn parse(text: &str) -> Result<ActionGlob, String> {
        if text.is_empty() {
            return Err("an action glob may not be empty".into());
        }
        if text.chars().any(char::is_control) {
            return Err(format!("action glob {text:?} has a control character"));
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
    fn empty_and_control_character_globs_are_refused() {
        assert!(ActionGlob::parse("").is_err());
        assert!(ActionGlob::parse("a\nb").is_err());
    }
}
