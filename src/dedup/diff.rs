//! The difference between two JSON documents as a list of JSON-pointer
//! paths (RFC 6901), each `changed`, `added` or `removed` (SPEC §9: what a
//! divergent copy changed against the first body). Pure.
//!
//! Objects are compared key by key (in key order, so the list is stable) and
//! arrays element by element, by index: a changed element is named by its
//! index, elements beyond the shorter array are `added` or `removed`. Two
//! values that are not both objects or both arrays and are unequal — a
//! scalar that changed, or a type change such as `1` → `"1"` or `{}` → `[]`
//! — are one `changed` entry at their path. The whole document is the path
//! `""`. Numbers compare as serde_json holds them, as the canonical hash
//! does: `1` and `1.0` differ.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// What happened at a path, from the first body to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Changed,
    Added,
    Removed,
}

/// One difference: a JSON pointer and what happened there. (Fields in
/// sorted order, as the variants answer has always written them.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PathChange {
    pub change: Change,
    /// A JSON pointer (RFC 6901) into the first body; `""` is the whole.
    pub path: String,
}

/// The paths at which `other` differs from `first`; empty when they are equal.
pub fn json_diff(first: &Value, other: &Value) -> Vec<PathChange> {
    let mut out = Vec::new();
    let mut path = String::new();
    walk(first, other, &mut path, &mut out);
    out
}

fn walk(first: &Value, other: &Value, path: &mut String, out: &mut Vec<PathChange>) {
    match (first, other) {
        (Value::Object(a), Value::Object(b)) => {
            // Keys in sorted order, whatever map serde_json is built with.
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                let len = path.len();
                push_token(path, key);
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => walk(x, y, path, out),
                    (Some(_), None) => record(out, path, Change::Removed),
                    (None, Some(_)) => record(out, path, Change::Added),
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for i in 0..a.len().max(b.len()) {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                match (a.get(i), b.get(i)) {
                    (Some(x), Some(y)) => walk(x, y, path, out),
                    (Some(_), None) => record(out, path, Change::Removed),
                    (None, Some(_)) => record(out, path, Change::Added),
                    (None, None) => {}
                }
                path.truncate(len);
            }
        }
        (a, b) if a != b => record(out, path, Change::Changed),
        _ => {}
    }
}

fn record(out: &mut Vec<PathChange>, path: &str, change: Change) {
    out.push(PathChange {
        path: path.to_string(),
        change,
    });
}

/// Appends `/token`, escaped per RFC 6901: `~` as `~0`, `/` as `~1` (in
/// that order, so a `/` never turns into a `~`-escape twice).
fn push_token(path: &mut String, token: &str) {
    path.push('/');
    for c in token.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn diff(a: Value, b: Value) -> Vec<(String, Change)> {
        json_diff(&a, &b)
            .into_iter()
            .map(|p| (p.path, p.change))
            .collect()
    }

    fn at(path: &str, change: Change) -> (String, Change) {
        (path.to_string(), change)
    }

    #[test]
    fn equal_documents_have_no_differences() {
        let doc = json!({"a": [1, {"b": null}], "c": "x"});
        assert!(json_diff(&doc, &doc.clone()).is_empty());
    }

    #[test]
    fn nested_objects_name_the_deepest_changed_value() {
        let a = json!({"data": {"object": {"amount": 100, "currency": "usd"}}, "id": "evt_1"});
        let b = json!({"data": {"object": {"amount": 250, "currency": "usd"}}, "id": "evt_1"});
        assert_eq!(diff(a, b), vec![at("/data/object/amount", Change::Changed)]);
    }

    #[test]
    fn added_and_removed_keys_are_named_in_key_order() {
        let a = json!({"keep": 1, "gone": true, "obj": {"old": 1}});
        let b = json!({"keep": 1, "new": [1], "obj": {"fresh": 2}});
        assert_eq!(
            diff(a, b),
            vec![
                at("/gone", Change::Removed),
                at("/new", Change::Added),
                at("/obj/fresh", Change::Added),
                at("/obj/old", Change::Removed),
            ]
        );
    }

    #[test]
    fn a_changed_array_element_is_named_by_its_index() {
        let a = json!({"items": [{"qty": 1}, {"qty": 2}, "x"]});
        let b = json!({"items": [{"qty": 1}, {"qty": 3}, "x"]});
        assert_eq!(diff(a, b), vec![at("/items/1/qty", Change::Changed)]);
    }

    #[test]
    fn a_longer_array_adds_and_a_shorter_one_removes_its_tail() {
        let short = json!({"tags": ["a", "b"]});
        let long = json!({"tags": ["a", "b", "c", "d"]});
        assert_eq!(
            diff(short.clone(), long.clone()),
            vec![at("/tags/2", Change::Added), at("/tags/3", Change::Added)]
        );
        assert_eq!(
            diff(long, short),
            vec![
                at("/tags/2", Change::Removed),
                at("/tags/3", Change::Removed)
            ]
        );
    }

    #[test]
    fn a_type_change_is_one_change_at_its_path_not_a_walk_inside() {
        assert_eq!(
            diff(json!({"v": 1}), json!({"v": "1"})),
            vec![at("/v", Change::Changed)]
        );
        assert_eq!(
            diff(json!({"v": {"a": 1}}), json!({"v": [1]})),
            vec![at("/v", Change::Changed)]
        );
        assert_eq!(
            diff(json!({"v": null}), json!({"v": false})),
            vec![at("/v", Change::Changed)]
        );
        assert_eq!(
            diff(json!({"v": 1}), json!({"v": 1.0})),
            vec![at("/v", Change::Changed)],
            "as the canonical hash sees them"
        );
    }

    #[test]
    fn the_whole_document_is_the_empty_path() {
        assert_eq!(
            diff(json!({"a": 1}), json!([1])),
            vec![at("", Change::Changed)]
        );
        assert_eq!(diff(json!(1), json!(2)), vec![at("", Change::Changed)]);
    }

    #[test]
    fn keys_with_tilde_and_slash_are_escaped_per_rfc_6901() {
        let a = json!({"a/b": 1, "m~n": {"~/": 1}, "": 0});
        let b = json!({"a/b": 2, "m~n": {"~/": 2}, "": 1});
        assert_eq!(
            diff(a, b),
            vec![
                at("/", Change::Changed),
                at("/a~1b", Change::Changed),
                at("/m~0n/~0~1", Change::Changed),
            ]
        );
    }

    #[test]
    fn the_answer_serializes_with_lowercase_change_names() {
        let d = json_diff(&json!({"a": 1}), &json!({"b": 1}));
        assert_eq!(
            serde_json::to_value(d).unwrap(),
            json!([{"path": "/a", "change": "removed"}, {"path": "/b", "change": "added"}])
        );
    }
}
