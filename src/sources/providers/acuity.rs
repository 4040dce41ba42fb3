//! Acuity Scheduling: `X-Acuity-Signature`, base64 HMAC-SHA256 of the
//! (form) body with the account's API key. Deliveries carry no event id:
//! the action and appointment id are form fields, and the default action
//! table dedups by action and object (SPEC §2).

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{Provider, BASE};
use crate::config::ActionRule;
use crate::sources::locate::{field, Defaults, Find, FindType};
use crate::sources::signature::{decode_base64, verify_body_hmac, ToSign};

pub const SIGNATURE: &str = "X-Acuity-Signature";

pub const PROVIDER: Provider = Provider {
    name: "acuity",
    verify: |s| verify_body_hmac(s, SIGNATURE, "", decode_base64),
    sign,
    defaults,
    actions,
    ..BASE
};

fn defaults() -> Defaults {
    Defaults {
        event_id: Vec::new(),
        action: Find::At(field("action")),
        object_id: Find::At(field("id")),
        // `order` for `order.*` actions, else `appointment`.
        object_type: FindType::With(|_, action| {
            Some(match action {
                Some(a) if a.starts_with("order.") => "order".into(),
                _ => "appointment".into(),
            })
        }),
        event_time: None,
    }
}

fn actions() -> Option<BTreeMap<String, ActionRule>> {
    Some(
        [
            ("scheduled", ActionRule::Unique),
            ("canceled", ActionRule::Unique),
            ("order.completed", ActionRule::Unique),
            ("rescheduled", ActionRule::Coalesce),
            ("changed", ActionRule::Coalesce),
        ]
        .into_iter()
        .map(|(action, rule)| (action.to_string(), rule))
        .collect(),
    )
}

fn sign(s: &ToSign<'_>) -> Vec<(String, String)> {
    vec![(
        SIGNATURE.to_string(),
        STANDARD.encode(s.key.tag256(&[s.body])),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Preset;

    #[test]
    fn acuity_default_actions() {
        let table = actions().unwrap();
        assert_eq!(table.len(), 5);
        assert_eq!(table["scheduled"], ActionRule::Unique);
        assert_eq!(table["canceled"], ActionRule::Unique);
        assert_eq!(table["order.completed"], ActionRule::Unique);
        assert_eq!(table["rescheduled"], ActionRule::Coalesce);
        assert_eq!(table["changed"], ActionRule::Coalesce);
        for preset in Preset::all().filter(|p| p.as_str() != "acuity") {
            assert_eq!((preset.provider().actions)(), None, "{preset:?}");
        }
    }
}
