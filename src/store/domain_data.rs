//! What `domain_objects.data` can hold. The column is `jsonb` on PostgreSQL,
//! which refuses three things a valid JSON text may carry: the escape
//! `\u0000` (a NUL character in a string), an escaped UTF-16 surrogate
//! without its other half (`"\ud83d"`: JavaScript's `JSON.stringify` writes
//! one for a string cut inside an emoji), and a number beyond `numeric`'s
//! range (more than 16383 decimals or 131072 integer digits, e.g.
//! `1e-20000`, which serde_json reads as 0 and so lets into a payload). Any
//! of them would fail the whole completion batch, again on every retry. So
//! [`storable`] rewrites exactly those — each such escape becomes `\ufffd`
//! (U+FFFD, the replacement character), each such number `null` — and keeps
//! every other byte; it runs on both backends alike, so a row parses to the
//! same value on either. An escape counts only where JSON reads one: the
//! text `\\u0000` (an escaped backslash, then the letters `u0000`) is left
//! as it is. The event's payload in the ledger is never rewritten; nor is the
//! envelope's `object`. `migrations/postgres/0007_domain_data_jsonb.sql`
//! applies the same rewrite to rows written before `data` became `jsonb`.
//!
//! Nesting cannot be rewritten: PostgreSQL's parser runs out of stack some
//! ten thousand levels down. A payload is never deeper than serde_json's
//! 128 levels (it is parsed on arrival); a fetched answer deeper than
//! [`MAX_DEPTH`] ([`too_deep`]) makes its event dead.

use std::borrow::Cow;

/// What an escape PostgreSQL cannot hold becomes: U+FFFD, escaped.
const REPLACEMENT: &str = "\\ufffd";
/// What a number `numeric` cannot hold becomes.
const BEYOND_NUMERIC: &str = "null";
/// `numeric`'s limits (PostgreSQL's `NUMERIC_DSCALE_MAX`, and its largest
/// weight in decimal digits); an exponent from `INT_MAX / 2` on is refused
/// before either is looked at, even for zero.
const MAX_SCALE: i64 = 16_383;
const MAX_INTEGER_DIGITS: i64 = 131_072;
const MAX_EXPONENT: i64 = (i32::MAX / 2) as i64;

/// How deep `data` may nest: serde_json's own limit, which every payload
/// has met.
pub const MAX_DEPTH: usize = 128;

/// Whether the JSON `text` nests arrays and objects deeper than [`MAX_DEPTH`].
pub fn too_deep(text: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in text.as_bytes() {
        match (in_string, b) {
            (true, _) if escaped => escaped = false,
            (true, b'\\') => escaped = true,
            (true, b'"') | (false, b'"') => in_string = !in_string,
            (false, b'[' | b'{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return true;
                }
            }
            (false, b']' | b'}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// `data` as the domain row stores it: the JSON text unchanged, unless it
/// holds what `jsonb` refuses (see the module). `text` is valid JSON (a
/// payload that parsed, an object taken from one, a fetched answer that was
/// checked); anything else passes through as it is.
pub fn storable(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut edits: Vec<(usize, usize, &'static str)> = Vec::new();
    let mut in_string = false;
    let mut i = 0;
    // Every byte looked at is ASCII, so every edit lies on char boundaries.
    while i < bytes.len() {
        match (in_string, bytes[i]) {
            (true, b'"') => {
                in_string = false;
                i += 1;
            }
            (true, b'\\') if bytes.get(i + 1) == Some(&b'u') => match code_unit(bytes, i + 2) {
                Some(0) | Some(0xDC00..=0xDFFF) => {
                    edits.push((i, i + 6, REPLACEMENT));
                    i += 6;
                }
                Some(0xD800..=0xDBFF) => {
                    let low = bytes.get(i + 6..i + 8) == Some(b"\\u".as_slice())
                        && matches!(code_unit(bytes, i + 8), Some(0xDC00..=0xDFFF));
                    if low {
                        i += 12;
                    } else {
                        edits.push((i, i + 6, REPLACEMENT));
                        i += 6;
                    }
                }
                _ => i += 6,
            },
            // Any other escape is two bytes: `\\` and `\"` included.
            (true, b'\\') => i += 2,
            (false, b'"') => {
                in_string = true;
                i += 1;
            }
            (false, b'-' | b'0'..=b'9') => {
                let end = bytes[i..]
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(bytes.len(), |n| i + n);
                if beyond_numeric(&bytes[i..end]) {
                    edits.push((i, end, BEYOND_NUMERIC));
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    if edits.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end, with) in edits {
        out.push_str(&text[at..start]);
        out.push_str(with);
        at = end;
    }
    out.push_str(&text[at..]);
    Cow::Owned(out)
}

/// The four hex digits at `at`, as a UTF-16 code unit.
fn code_unit(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = std::str::from_utf8(bytes.get(at..at + 4)?).ok()?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(digits, 16).ok()
}

/// Whether the JSON number `token` is beyond what `numeric` stores: its
/// scale (decimals, trailing zeros included, less the exponent) over 16383,
/// or its integer part (from the first significant digit) over 131072
/// digits. A token that is not a JSON number is left alone.
fn beyond_numeric(token: &[u8]) -> bool {
    let unsigned = token.strip_prefix(b"-").unwrap_or(token);
    let (mantissa, exponent) = match unsigned.iter().position(|b| matches!(b, b'e' | b'E')) {
        Some(e) => (&unsigned[..e], Some(&unsigned[e + 1..])),
        None => (unsigned, None),
    };
    let (integer, fraction) = match mantissa.iter().position(|&b| b == b'.') {
        Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
        None => (mantissa, &mantissa[mantissa.len()..]),
    };
    let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    if integer.is_empty() || !all_digits(integer) || !all_digits(fraction) {
        return false;
    }
    let exponent = match exponent {
        None => 0,
        Some(text) => {
            let (negative, digits) = match text.first() {
                Some(b'-') => (true, &text[1..]),
                Some(b'+') => (false, &text[1..]),
                _ => (false, text),
            };
            if digits.is_empty() || !all_digits(digits) {
                return false;
            }
            let magnitude = digits.iter().fold(0i64, |n, d| {
                n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
            });
            if negative {
                -magnitude
            } else {
                magnitude
            }
        }
    };
    if exponent.abs() >= MAX_EXPONENT {
        return true;
    }
    let len = |part: &[u8]| i64::try_from(part.len()).unwrap_or(i64::MAX);
    let scale = len(fraction).saturating_sub(exponent);
    // Digits before the first significant one, across the decimal point.
    let leading_zeros = integer
        .iter()
        .chain(fraction)
        .position(|&b| b != b'0')
        .map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let integer_digits = match leading_zeros {
        None => 0, // zero: only its scale counts
        Some(zeros) => len(integer).saturating_sub(zeros).saturating_add(exponent),
    };
    scale > MAX_SCALE || integer_digits > MAX_INTEGER_DIGITS
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;

    fn stored(text: &str) -> Value {
        serde_json::from_str(&storable(text)).expect("still JSON")
    }

    #[test]
    fn text_without_anything_to_rewrite_is_kept_as_it_is() {
        for text in [
            "{ \"a\" : [1, -2.5e3, true, null],\n \"b\": \"x\\n\\\"y\\\" \\u00e9 \\ud83d\\ude00\" }",
            r#"{"lit":"a\\u0000b","also":"\\\\u0000","key\\u0000":"\\ud83d"}"#,
            "[1e-16383, 1000e-16383, 1e131071, 0.001e131074, 0e131072, 0.5]",
            "",
            "\"\\",
        ] {
            assert!(
                matches!(storable(text), Cow::Borrowed(t) if t == text),
                "{text}"
            );
        }
    }

    #[test]
    fn nul_escapes_become_the_replacement_character_in_values_and_keys() {
        assert_eq!(
            storable(r#"{"a\u0000":"x\u0000y\u0000\u0000","n":1}"#),
            r#"{"a\ufffd":"x\ufffdy\ufffd\ufffd","n":1}"#
        );
        assert_eq!(
            stored(r#"["\u0000"]"#),
            json!(["\u{fffd}"]),
            "a NUL alone in a string"
        );
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_not_an_escape() {
        // Two backslashes: one escaped backslash, then the letters u0000.
        let text = r#"["a\\u0000b","\\\u0000","\\\\u0000","\\\\\u0000"]"#;
        assert_eq!(
            storable(text),
            r#"["a\\u0000b","\\\ufffd","\\\\u0000","\\\\\ufffd"]"#
        );
        assert_eq!(
            stored(text),
            json!(["a\\u0000b", "\\\u{fffd}", "\\\\u0000", "\\\\\u{fffd}"])
        );
    }

    #[test]
    fn lone_surrogates_become_the_replacement_character_and_pairs_are_kept() {
        let cases = [
            (r#"["\ud83d\ude00"]"#, r#"["\ud83d\ude00"]"#),
            (r#"["\uD83D\uDE00"]"#, r#"["\uD83D\uDE00"]"#),
            (r#"["x\ud83d"]"#, r#"["x\ufffd"]"#),
            (r#"["\ude00x"]"#, r#"["\ufffdx"]"#),
            (r#"["\ud83d\ud83d\ude00"]"#, r#"["\ufffd\ud83d\ude00"]"#),
            (r#"["\ude00\ude00"]"#, r#"["\ufffd\ufffd"]"#),
            (r#"["\ud83d\\ude00"]"#, r#"["\ufffd\\ude00"]"#),
            (r#"["\\ud83d\ude00"]"#, r#"["\\ud83d\ufffd"]"#),
            (r#"["\ud83d\u0000"]"#, r#"["\ufffd\ufffd"]"#),
        ];
        for (text, expected) in cases {
            assert_eq!(storable(text), expected, "{text}");
            let _: Value = serde_json::from_str(&storable(text)).expect("serde_json reads it");
        }
    }

    #[test]
    fn numbers_beyond_numeric_become_null_and_those_within_are_kept() {
        assert_eq!(
            storable(r#"{"a":1e-16384,"b":[1000e-16384,-1e131072,0e-16384],"c":"1e-99999"}"#),
            r#"{"a":null,"b":[null,null,null],"c":"1e-99999"}"#
        );
        assert_eq!(storable("[0.0001e131076]"), "[null]");
        assert_eq!(
            storable("[0e1073741823, 0e1073741822]"),
            "[null, 0e1073741822]"
        );
        assert_eq!(storable("[1e99999999999999999999999]"), "[null]");
        let long_fraction = format!("[0.{}1]", "0".repeat(16_382));
        assert_eq!(storable(&long_fraction), long_fraction.as_str());
        let too_long = format!("[0.{}1]", "0".repeat(16_383));
        assert_eq!(storable(&too_long), "[null]");
        let long_integer = format!("[{}]", "9".repeat(131_072));
        assert_eq!(storable(&long_integer), long_integer.as_str());
        assert_eq!(storable(&format!("[{}]", "9".repeat(131_073))), "[null]");
    }

    #[test]
    fn nesting_beyond_max_depth_is_too_deep_and_brackets_in_strings_do_not_count() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(!too_deep(&nested(MAX_DEPTH)));
        assert!(too_deep(&nested(MAX_DEPTH + 1)));
        let objects = format!(
            "{}1{}",
            "{\"a\":".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(too_deep(&objects));
        let in_strings = format!("[\"{}\", \"\\\"{}\"]", "[".repeat(500), "{".repeat(500));
        assert!(!too_deep(&in_strings));
        assert!(!too_deep(&format!(
            "{}{}",
            "[[]]".repeat(1000),
            nested(MAX_DEPTH)
        )));
    }

    /// The same replacement, done on the parsed value: every NUL in a
    /// string (key or value) becomes U+FFFD.
    fn replace_nul(value: Value) -> Value {
        let text = |s: String| s.replace('\0', "\u{fffd}");
        match value {
            Value::String(s) => Value::String(text(s)),
            Value::Array(items) => Value::Array(items.into_iter().map(replace_nul).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (text(k), replace_nul(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let piece = prop_oneof![
            Just("\0".to_string()),
            Just("\\".to_string()),
            Just("u0000".to_string()),
            Just("\"".to_string()),
            Just("\u{1F600}".to_string()),
            "[a-z]{0,3}",
        ];
        let text = prop::collection::vec(piece, 0..6).prop_map(|p| p.concat());
        let leaf = prop_oneof![
            text.clone().prop_map(Value::String),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(text.clone(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever mix of NULs, backslashes and the letters `u0000` the
        /// strings hold, the stored text reads as the value with each NUL
        /// replaced — and nothing else changed.
        #[test]
        fn the_stored_text_reads_as_the_value_with_each_nul_replaced(value in json_value()) {
            for text in [value.to_string(), serde_json::to_string_pretty(&value).unwrap()] {
                prop_assert_eq!(stored(&text), replace_nul(value.clone()));
            }
        }
    }
}
