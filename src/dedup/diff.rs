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
//! does: `1` and `1.0` differ. The list is bounded ([`Diff`]): a body can
//! differ at more paths than anyone reads or any answer should hold.

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

/// At most this many paths per diff: a person reads the list, and a body
/// of `max_body_bytes` can differ at hundreds of thousands of paths.
pub const MAX_DIFF_PATHS: usize = 1000;

/// At most this many bytes of paths per diff. Without it the answer grows
/// as (path length × paths): a 500 kB key over an array of 250 000
/// changed numbers — one 1 MiB body — would repeat that key 250 000 times.
pub const MAX_DIFF_PATH_BYTES: usize = 64 * 1024;

/// The paths at which one document differs from another, in order, cut at
/// [`MAX_DIFF_PATHS`] paths or [`MAX_DIFF_PATH_BYTES`] bytes of them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diff {
    pub changes: Vec<PathChange>,
    /// Whether more paths differ than `changes` lists.
    pub truncated: bool,
}

/// The paths at which `other` differs from `first` (empty when they are
/// equal), bounded as [`Diff`] says. One walk that stops at the bound, so
/// its time is linear in the documents and its answer bounded.
pub fn json_diff(first: &Value, other: &Value) -> Diff {
    let mut walk = Walk {
        path: String::new(),
        diff: Diff::default(),
        bytes: 0,
    };
    walk.walk(first, other);
    walk.diff
}

struct Walk {
    path: String,
    diff: Diff,
    /// Bytes of paths recorded so far.
    bytes: usize,
}

impl Walk {
    /// Returns false once the bound is reached: the caller stops too.
    fn walk(&mut self, first: &Value, other: &Value) -> bool {
        match (first, other) {
            (Value::Object(a), Value::Object(b)) => {
                // Keys in sorted order, whatever map serde_json is built with.
                let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
                keys.sort_unstable();
                keys.dedup();
                for key in keys {
                    let len = self.path.len();
                    push_token(&mut self.path, key);
                    let go_on = self.step(a.get(key), b.get(key));
                    self.path.truncate(len);
                    if !go_on {
                        return false;
                    }
                }
                true
            }
            (Value::Array(a), Value::Array(b)) => {
                for i in 0..a.len().max(b.len()) {
                    let len = self.path.len();
                    self.path.push('/');
                    self.path.push_str(&i.to_string());
                    let go_on = self.step(a.get(i), b.get(i));
                    self.path.truncate(len);
                    if !go_on {
                        return false;
                    }
                }
                true
            }
            (a, b) if a != b => self.record(Change::Changed),
            _ => true,
        }
    }

    fn step(&mut self, first: Option<&Value>, other: Option<&Value>) -> bool {
        match (first, other) {
            (Some(x), Some(y)) => self.walk(x, y),
            (Some(_), None) => self.record(Change::Removed),
            (None, Some(_)) => self.record(Change::Added),
            (None, None) => true,
        }
    }

    /// Records the current path, or, when it would pass the bound, marks
    /// the diff truncated and says stop.
    fn record(&mut self, change: Change) -> bool {
        if self.diff.changes.len() >= MAX_DIFF_PATHS
            || self.bytes + self.path.len() > MAX_DIFF_PATH_BYTES
        {
            self.diff.truncated = true;
            return false;
        }
        self.bytes += self.path.len();
        self.diff.changes.push(PathChange {
            path: self.path.clone(),
            change,
        });
        true
    }
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
            .changes
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
        assert_eq!(json_diff(&doc, &doc.clone()), Diff::default());
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
            serde_json::to_value(d.changes).unwrap(),
            json!([{"path": "/a", "change": "removed"}, {"path": "/b", "change": "added"}])
        );
    }

    #[test]
    fn a_diff_stops_at_its_path_count() {
        let a = Value::Array(vec![json!(0); MAX_DIFF_PATHS + 5]);
        let b = Value::Array(vec![json!(1); MAX_DIFF_PATHS + 5]);
        let d = json_diff(&a, &b);
        assert_eq!(d.changes.len(), MAX_DIFF_PATHS);
        assert!(d.truncated);
        let exact = json_diff(
            &Value::Array(vec![json!(0); MAX_DIFF_PATHS]),
            &Value::Array(vec![json!(1); MAX_DIFF_PATHS]),
        );
        assert_eq!(exact.changes.len(), MAX_DIFF_PATHS);
        assert!(!exact.truncated, "exactly the bound is not cut");
    }

    #[test]
    fn a_long_key_over_many_changes_stays_within_the_byte_bound() {
        // The shape that made the answer (key length × changes) long.
        let key = "k".repeat(20_000);
        let a = json!({ key.clone(): vec![0; 500] });
        let b = json!({ key: vec![1; 500] });
        let d = json_diff(&a, &b);
        let bytes: usize = d.changes.iter().map(|c| c.path.len()).sum();
        assert!(bytes <= MAX_DIFF_PATH_BYTES, "{bytes}");
        assert_eq!(d.changes.len(), 3, "three 20 kB paths fit in 64 KiB");
        assert!(d.truncated);
        // A single path longer than the bound is not listed at all.
        let huge = "h".repeat(MAX_DIFF_PATH_BYTES + 1);
        let d = json_diff(&json!({ huge.clone(): 1 }), &json!({ huge: 2 }));
        assert!(d.changes.is_empty() && d.truncated);
    }
}
