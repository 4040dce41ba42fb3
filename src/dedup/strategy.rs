//! [`Strategy`]: which dedup rule produced a key. Its wire names
//! (`event_id`, `action_object`, `coalesce`, `payload_hash`) appear in API
//! answers and are stored in the ledger, so they never change.

use std::fmt;

/// Which dedup rule produced a key (SPEC §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    EventId,
    ActionObject,
    Coalesce,
    PayloadHash,
}

impl Strategy {
    /// Every strategy, in rule order.
    pub const ALL: [Strategy; 4] = [
        Strategy::EventId,
        Strategy::ActionObject,
        Strategy::Coalesce,
        Strategy::PayloadHash,
    ];

    /// `event_id` | `action_object` | `coalesce` | `payload_hash`
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::EventId => "event_id",
            Strategy::ActionObject => "action_object",
            Strategy::Coalesce => "coalesce",
            Strategy::PayloadHash => "payload_hash",
        }
    }

    /// The inverse of [`Strategy::as_str`] (exact, case-sensitive).
    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_strategy_round_trips_through_its_wire_name() {
        for st in Strategy::ALL {
            assert_eq!(Strategy::parse(st.as_str()), Some(st));
            assert_eq!(st.to_string(), st.as_str());
        }
    }

    #[test]
    fn wire_names_are_the_ones_the_spec_lists() {
        let names: Vec<_> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            ["event_id", "action_object", "coalesce", "payload_hash"]
        );
    }

    #[test]
    fn unknown_or_differently_cased_names_do_not_parse() {
        for s in [
            "",
            "EVENT_ID",
            "Event_Id",
            "event-id",
            "hash",
            "ignore",
            " coalesce",
        ] {
            assert_eq!(Strategy::parse(s), None, "{s:?}");
        }
    }
}
