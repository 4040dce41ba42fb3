//! Rule precedence: `ignore` beats the event id, the event id beats the
//! action table, and missing or `hash`-ruled action keys fall through to the
//! payload hash.

use serde_json::json;

use super::*;
use crate::config::ActionRule;

#[test]
fn an_ignored_action_beats_the_event_id() {
    let t = table(&[("customer.created", ActionRule::Ignore)]);
    let d = delivery(
        json!({}),
        Some("evt_1"),
        Some("customer.created"),
        Some(("customer", "cus_9")),
    );
    assert_eq!(
        plan_at(&d, Some(&t), T0),
        KeyPlan::Ignore {
            key: "ign:customer.created:cus_9".into()
        }
    );
}

#[test]
fn an_ignored_action_without_an_object_has_an_empty_object_part() {
    let t = table(&[("ping", ActionRule::Ignore)]);
    let d = delivery(json!({}), None, Some("ping"), None);
    let p = plan_at(&d, Some(&t), T0);
    assert_eq!(
        p,
        KeyPlan::Ignore {
            key: "ign:ping:".into()
        }
    );
    assert_eq!(p.strategy(), Strategy::ActionObject);
    assert_eq!(p.key(), "ign:ping:");
}

#[test]
fn the_event_id_beats_the_action_table() {
    let t = acuity_table();
    let d = delivery(
        json!({}),
        Some("e-1"),
        Some("scheduled"),
        Some(("appointment", "7")),
    );
    assert_eq!(
        plan_at(&d, Some(&t), T0),
        insert(Strategy::EventId, "id:e-1")
    );
}

#[test]
fn the_event_id_is_used_without_an_action_table() {
    let d = delivery(json!({}), Some("abc"), None, None);
    let p = plan_at(&d, None, T0);
    assert_eq!(p, insert(Strategy::EventId, "id:abc"));
    assert_eq!(p.key(), "id:abc");
    assert_eq!(p.strategy(), Strategy::EventId);
}

#[test]
fn a_unique_action_keys_on_action_and_object() {
    let t = acuity_table();
    let d = delivery(
        json!({}),
        None,
        Some("scheduled"),
        Some(("appointment", "7")),
    );
    assert_eq!(
        plan_at(&d, Some(&t), T0),
        insert(Strategy::ActionObject, "act:scheduled:7")
    );
}

#[test]
fn a_coalesce_action_keys_on_action_and_object_with_its_own_strategy() {
    let t = acuity_table();
    let d = delivery(json!({}), None, Some("changed"), Some(("appointment", "7")));
    let p = plan_at(&d, Some(&t), T0);
    assert_eq!(p, insert(Strategy::Coalesce, "co:changed:7"));
    assert_eq!(p.strategy(), Strategy::Coalesce);
}

#[test]
fn a_missing_object_id_falls_through_to_the_payload_hash() {
    let t = acuity_table();
    for action in ["scheduled", "changed"] {
        let d = delivery(json!({"action": action}), None, Some(action), None);
        assert_eq!(
            plan_at(&d, Some(&t), T0),
            hash_plan(T0 / 300_000),
            "{action}"
        );
    }
}

#[test]
fn a_hash_rule_goes_on_to_the_payload_hash() {
    let t = table(&[("updated", ActionRule::Hash)]);
    let d = delivery(json!({}), None, Some("updated"), Some(("thing", "1")));
    assert_eq!(plan_at(&d, Some(&t), T0), hash_plan(T0 / 300_000));
}

#[test]
fn an_action_missing_from_the_table_goes_on_to_the_payload_hash() {
    let t = acuity_table();
    let d = delivery(json!({}), None, Some("order.updated"), Some(("order", "5")));
    assert_eq!(plan_at(&d, Some(&t), T0), hash_plan(T0 / 300_000));
}

#[test]
fn without_an_action_table_action_and_object_are_not_a_key() {
    let d = delivery(
        json!({}),
        None,
        Some("scheduled"),
        Some(("appointment", "7")),
    );
    assert_eq!(plan_at(&d, None, T0), hash_plan(T0 / 300_000));
}

#[test]
fn without_an_action_a_table_changes_nothing() {
    let t = table(&[("", ActionRule::Ignore)]);
    let d = delivery(json!({}), Some("x"), None, Some(("o", "1")));
    assert_eq!(plan_at(&d, Some(&t), T0), insert(Strategy::EventId, "id:x"));
}

#[test]
fn empty_ids_and_actions_count_as_absent() {
    let t = table(&[("", ActionRule::Ignore), ("scheduled", ActionRule::Unique)]);
    let d = delivery(json!({}), Some(""), Some(""), Some(("appointment", "7")));
    assert_eq!(plan_at(&d, Some(&t), T0), hash_plan(T0 / 300_000));
    let d = delivery(
        json!({}),
        Some(""),
        Some("scheduled"),
        Some(("appointment", "")),
    );
    assert_eq!(plan_at(&d, Some(&t), T0), hash_plan(T0 / 300_000));
}
