//! Bodies: which media types are accepted, and how a verified body becomes
//! the JSON object the rest of hookledger works with.
//!
//! JSON bodies must be objects; a form body becomes a flat object of strings
//! (a repeated key keeps its last value). Parsing never panics on hostile
//! input: serde_json's recursion limit turns deep nesting into an error, and
//! form decoding is the `url` crate's.

use serde_json::{Map, Value};
use url::form_urlencoded;

use super::{BodyKind, PayloadError};

/// `application/json`, `application/*+json` (any case, parameters allowed) →
/// Json; `application/x-www-form-urlencoded` → Form; anything else or missing → None (415).
pub fn body_kind(content_type: Option<&str>) -> Option<BodyKind> {
    let essence = content_type?.split(';').next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/')?;
    if kind != "application" || !subtype.bytes().all(is_token_byte) {
        return None;
    }
    match subtype {
        "json" => Some(BodyKind::Json),
        "x-www-form-urlencoded" => Some(BodyKind::Form),
        s if s.len() > "+json".len() && s.ends_with("+json") => Some(BodyKind::Json),
        _ => None,
    }
}

/// An RFC 9110 token character (what a media subtype is made of).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn invalid(message: impl Into<String>) -> PayloadError {
    PayloadError(message.into())
}

/// The body as a JSON object: must be non-empty UTF-8, and for JSON an object.
pub fn parse(kind: BodyKind, body: &[u8]) -> Result<Value, PayloadError> {
    if body.trim_ascii().is_empty() {
        return Err(invalid("the body is empty"));
    }
    let text = std::str::from_utf8(body).map_err(|_| invalid("the body is not valid UTF-8"))?;
    match kind {
        BodyKind::Json => {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| invalid(format!("the body is not valid JSON: {e}")))?;
            if value.is_object() {
                Ok(value)
            } else {
                Err(invalid("the body is not a JSON object"))
            }
        }
        BodyKind::Form => Ok(Value::Object(parse_form(body))),
    }
}

/// A form body as a flat object of strings; a repeated key keeps its last value.
fn parse_form(body: &[u8]) -> Map<String, Value> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn json_media_types() {
        for ct in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            " application/json ",
            "application/vnd.github+json",
            "application/cloudevents+json; charset=utf-8",
            "APPLICATION/LD+JSON",
        ] {
            assert_eq!(body_kind(Some(ct)), Some(BodyKind::Json), "{ct}");
        }
    }

    #[test]
    fn form_media_type() {
        for ct in [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=UTF-8",
            "Application/X-WWW-Form-Urlencoded",
        ] {
            assert_eq!(body_kind(Some(ct)), Some(BodyKind::Form), "{ct}");
        }
    }

    #[test]
    fn other_or_missing_media_types_are_refused() {
        for ct in [
            "",
            "text/plain",
            "text/json",
            "application/xml",
            "application/+json",
            "application/jsonx",
            "application/json-patch",
            "multipart/form-data; boundary=x",
            "application",
            "application/ json",
            "application/x json",
            "json",
        ] {
            assert_eq!(body_kind(Some(ct)), None, "{ct:?}");
        }
        assert_eq!(body_kind(None), None);
    }

    #[test]
    fn json_objects_parse_and_other_values_do_not() {
        let v = parse(BodyKind::Json, br#"{"a": 1, "a": 2, "b": [true]}"#).unwrap();
        assert_eq!(v, json!({"a": 2, "b": [true]}));
        for body in [
            &b"[1,2]"[..],
            b"\"text\"",
            b"42",
            b"null",
            b"{",
            b"{\"a\":1} trailing",
            b"",
            b"  \n",
            b"{\"a\":\"\xff\"}",
        ] {
            assert!(parse(BodyKind::Json, body).is_err(), "{body:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let arrays = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(BodyKind::Json, arrays.as_bytes()).is_err());
        let objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert!(parse(BodyKind::Json, objects.as_bytes()).is_err());
        // Unbalanced too.
        assert!(parse(BodyKind::Json, "[".repeat(100_000).as_bytes()).is_err());
    }

    #[test]
    fn form_bodies_become_flat_objects_of_strings() {
        let v = parse(
            BodyKind::Form,
            b"action=scheduled&id=12345&a=1&a=2&empty=&flag&=anon&&name=Jane+Doe&note=50%25+off%21&utf=caf%C3%A9",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({
                "action": "scheduled",
                "id": "12345",
                "a": "2",
                "empty": "",
                "flag": "",
                "": "anon",
                "name": "Jane Doe",
                "note": "50% off!",
                "utf": "café",
            })
        );
        let v = parse(BodyKind::Form, b"a%20b=c%2Bd&plus=1+1").unwrap();
        assert_eq!(v, json!({"a b": "c+d", "plus": "1 1"}));
    }

    #[test]
    fn form_bodies_must_be_non_empty_utf8() {
        assert!(parse(BodyKind::Form, b"").is_err());
        assert!(parse(BodyKind::Form, b"a=\xff").is_err());
        // A JSON document sent as a form is just a strange key, not an error.
        let v = parse(BodyKind::Form, b"{}").unwrap();
        assert_eq!(v, json!({"{}": ""}));
    }
}
