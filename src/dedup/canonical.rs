//! Canonical body form and its hash (SPEC §3, rule 3). A JSON body's
//! canonical form is the parsed value written compactly with object keys
//! sorted by their UTF-8 bytes, strings and numbers exactly as serde_json
//! writes them; so key order and whitespace never make two copies differ, and
//! a duplicated key keeps its last value (serde_json's parser already does
//! that). The keys are sorted here explicitly, so the result does not depend
//! on whether serde_json's `preserve_order` feature is on somewhere in the
//! build. A form body's canonical form is its raw bytes.

use std::borrow::Cow;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::sources::BodyKind;

/// `value` written compactly with object keys sorted by their UTF-8 bytes.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, value);
    out
}

/// The bytes [`body_hash`] hashes: [`canonical_json`] of `payload` for a JSON
/// body, `raw` itself for a form body.
pub fn canonical_body<'a>(kind: BodyKind, raw: &'a [u8], payload: &Value) -> Cow<'a, [u8]> {
    match kind {
        BodyKind::Json => Cow::Owned(canonical_json(payload)),
        BodyKind::Form => Cow::Borrowed(raw),
    }
}

/// SHA-256 (lower-case hex) of the body's canonical form: sorted-key compact JSON
/// for JSON bodies, the raw bytes for form bodies.
pub fn body_hash(kind: BodyKind, raw: &[u8], payload: &Value) -> String {
    sha256_hex(&canonical_body(kind, raw, payload))
}

/// Lower-case hex SHA-256 of `bytes` (64 characters).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

// Recursion depth is bounded by serde_json's parser (128 levels by default).
fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_serde(out, n),
        Value::String(s) => write_serde(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_serde(out, k);
                out.push(b':');
                write_value(out, v);
            }
            out.push(b'}');
        }
    }
}

/// Strings and numbers are written by serde_json itself, so escaping and
/// number formatting are exactly serde_json's.
fn write_serde<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, scalar: &T) {
    serde_json::to_writer(out, scalar).expect("serializing a JSON scalar into a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        let v: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(canonical_json(&v)).unwrap()
    }

    #[test]
    fn object_keys_are_sorted_and_whitespace_is_dropped() {
        assert_eq!(canon(r#"{ "b": 1,  "a" : 2 }"#), r#"{"a":2,"b":1}"#);
    }

    #[test]
    fn key_order_and_whitespace_never_change_the_hash() {
        let a = r#"{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1","amount_paid":2000}}}"#;
        let b = "{\n  \"type\" : \"invoice.paid\",\n  \"data\": {\"object\": {\"amount_paid\": 2000, \"id\": \"in_1\"}},\n  \"id\":\"evt_1\"\n}\n";
        let (va, vb): (Value, Value) = (
            serde_json::from_str(a).unwrap(),
            serde_json::from_str(b).unwrap(),
        );
        assert_eq!(
            body_hash(BodyKind::Json, a.as_bytes(), &va),
            body_hash(BodyKind::Json, b.as_bytes(), &vb)
        );
        assert_eq!(canonical_json(&va), canonical_json(&vb));
    }

    #[test]
    fn nested_objects_inside_arrays_are_sorted_but_array_order_is_kept() {
        assert_eq!(
            canon(r#"{"z":[{"y":1,"x":[3,2,1]},{"b":{"d":null,"c":true}}],"a":{}}"#),
            r#"{"a":{},"z":[{"x":[3,2,1],"y":1},{"b":{"c":true,"d":null}}]}"#
        );
        assert_ne!(canon("[1,2]"), canon("[2,1]"));
    }

    #[test]
    fn keys_sort_by_utf8_bytes_not_by_chars_or_case() {
        // 'B' (0x42) < 'a' (0x61) < 'é' (0xC3 0xA9) < '中' (0xE4 ...) < '😀' (0xF0 ...);
        // U+FF21 (0xEF 0xBC 0xA1) sorts before U+1F600 in bytes, and after it in UTF-16.
        assert_eq!(
            canon(r#"{"😀":1,"中":2,"é":3,"a":4,"B":5,"Ａ":6}"#),
            r#"{"B":5,"a":4,"é":3,"中":2,"Ａ":6,"😀":1}"#
        );
        // A key that is a prefix of another comes first.
        assert_eq!(canon(r#"{"ab":1,"a":2}"#), r#"{"a":2,"ab":1}"#);
    }

    #[test]
    fn strings_are_escaped_as_serde_json_writes_them() {
        let v = json!({"s": "quote\" back\\ nl\n tab\t ctl\u{1} é 😀 /"});
        let expected = format!("{{\"s\":{}}}", serde_json::to_string(&v["s"]).unwrap());
        assert_eq!(String::from_utf8(canonical_json(&v)).unwrap(), expected);
        assert_eq!(canon(r#"{"s":"\u00e9\/"}"#), "{\"s\":\"é/\"}");
    }

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        assert_eq!(
            canon(
                r#"{"i":-0,"u":18446744073709551615,"n":-9223372036854775808,"f":1.50,"e":1e2,"z":0.0}"#
            ),
            r#"{"e":100.0,"f":1.5,"i":-0.0,"n":-9223372036854775808,"u":18446744073709551615,"z":0.0}"#
        );
        // serde_json parses `-0` as the float -0.0 and writes it so.
        // An integer and a float of equal value stay different documents.
        assert_ne!(canon(r#"{"a":1}"#), canon(r#"{"a":1.0}"#));
    }

    #[test]
    fn duplicate_keys_keep_the_last_value() {
        assert_eq!(canon(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
        assert_eq!(canon(r#"{"a":3,"b":2}"#), canon(r#"{"b":2,"a":1,"a":3}"#));
    }

    #[test]
    fn scalars_and_empty_containers_are_canonical_too() {
        for (text, expected) in [
            ("null", "null"),
            ("true", "true"),
            ("false", "false"),
            (" [ ] ", "[]"),
            (" { } ", "{}"),
            ("\"x\"", "\"x\""),
        ] {
            assert_eq!(canon(text), expected);
        }
    }

    #[test]
    fn a_form_body_hashes_its_raw_bytes() {
        let raw = b"action=scheduled&id=1&calendarID=2&appointmentTypeID=3";
        let parsed =
            json!({"action": "scheduled", "id": "1", "calendarID": "2", "appointmentTypeID": "3"});
        assert_eq!(body_hash(BodyKind::Form, raw, &parsed), sha256_hex(raw));
        assert_eq!(canonical_body(BodyKind::Form, raw, &parsed).as_ref(), raw);
        // Reordered fields are a different form body even though they parse alike.
        let reordered = b"id=1&action=scheduled&calendarID=2&appointmentTypeID=3";
        assert_ne!(
            body_hash(BodyKind::Form, raw, &parsed),
            body_hash(BodyKind::Form, reordered, &parsed)
        );
    }

    #[test]
    fn a_json_body_hashes_its_canonical_form_not_its_raw_bytes() {
        let raw = br#"{"b":1, "a":2}"#;
        let v: Value = serde_json::from_slice(raw).unwrap();
        assert_eq!(
            body_hash(BodyKind::Json, raw, &v),
            sha256_hex(br#"{"a":2,"b":1}"#)
        );
    }

    #[test]
    fn sha256_hex_matches_the_published_test_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
