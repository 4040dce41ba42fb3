//! The subject template of a NATS destination (SPEC §7): parsed once, then
//! filled per attempt with the event's `{source}`, `{action}`,
//! `{object_type}` and `{object_id}`. Each value is sanitised so that it is
//! exactly one subject token: characters outside `A-Za-z0-9_-` become `_`
//! (a `.` would split the token, `*`/`>` would be wildcards, spaces are not
//! allowed), and an absent or empty value is `_`. Also here: the subjects a
//! stream made with `create_stream` captures, derived from the template.

use super::super::Attempt;

/// One placeholder of the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Source,
    Action,
    ObjectType,
    ObjectId,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        match name {
            "source" => Some(Field::Source),
            "action" => Some(Field::Action),
            "object_type" => Some(Field::ObjectType),
            "object_id" => Some(Field::ObjectId),
            _ => None,
        }
    }

    fn value<'a>(self, attempt: &Attempt<'a>) -> Option<&'a str> {
        match self {
            Field::Source => Some(attempt.source),
            Field::Action => attempt.action,
            Field::ObjectType => attempt.object_type,
            Field::ObjectId => attempt.object_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Field),
}

/// A parsed subject template.
#[derive(Debug, Clone)]
pub struct SubjectTemplate {
    text: String,
    parts: Vec<Part>,
}

impl SubjectTemplate {
    /// Parses a template that `config::check_subject` accepted. Anything it
    /// would have refused (an unknown or unclosed placeholder) is kept as
    /// literal text rather than failing: this runs when relays are built,
    /// where nothing may fail.
    pub fn parse(text: &str) -> SubjectTemplate {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let field = rest[open..]
                .find('}')
                .and_then(|close| Field::parse(&rest[open + 1..open + close]).map(|f| (f, close)));
            match field {
                Some((field, close)) => {
                    literal.push_str(&rest[..open]);
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(field));
                    rest = &rest[open + close + 1..];
                }
                None => {
                    literal.push_str(&rest[..=open]);
                    rest = &rest[open + 1..];
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        SubjectTemplate {
            text: text.to_string(),
            parts,
        }
    }

    /// The subject one attempt is published to.
    pub fn render(&self, attempt: &Attempt<'_>) -> String {
        let mut subject = String::with_capacity(self.text.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(text) => subject.push_str(text),
                Part::Field(field) => push_sanitised(&mut subject, field.value(attempt)),
            }
        }
        subject
    }

    /// The subject filter of a stream made by `create_stream`: the literal
    /// tokens before the first placeholder followed by `>` (the default
    /// template gives SPEC's `hookledger.>`), so a template that later grows
    /// a level still lands in the stream. A template without placeholders
    /// captures itself; one that starts with a placeholder has no literal
    /// prefix (a bare `>` would capture every subject of the account), so it
    /// captures its own shape: each token holding a placeholder becomes `*`,
    /// which is exact because a sanitised value never holds a `.`.
    pub fn stream_subject(&self) -> String {
        let tokens: Vec<&str> = self.text.split('.').collect();
        let holds_field = |token: &str| SubjectTemplate::parse(token).has_field();
        match tokens.iter().position(|t| holds_field(t)) {
            None => self.text.clone(),
            Some(0) => tokens
                .iter()
                .map(|t| if holds_field(t) { "*" } else { t })
                .collect::<Vec<_>>()
                .join("."),
            Some(first) => format!("{}.>", tokens[..first].join(".")),
        }
    }

    fn has_field(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Field(_)))
    }
}

/// Appends `value` as one subject token: every character outside
/// `A-Za-z0-9_-` (a multi-byte one included) becomes one `_`; an absent or
/// empty value is `_`, since an empty token is not a valid subject.
fn push_sanitised(subject: &mut String, value: Option<&str>) {
    match value {
        Some(value) if !value.is_empty() => subject.extend(value.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })),
        _ => subject.push('_'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt<'a>(
        action: Option<&'a str>,
        object_type: Option<&'a str>,
        object_id: Option<&'a str>,
    ) -> Attempt<'a> {
        Attempt {
            delivery_id: "hl_1",
            source: "stripe",
            action,
            object_type,
            object_id,
            attempt: 1,
            body: "{}",
        }
    }

    #[test]
    fn placeholders_are_filled_with_sanitised_values_and_absent_ones_are_underscores() {
        let template = SubjectTemplate::parse("hookledger.{source}.{object_type}.{action}");
        assert_eq!(
            template.render(&attempt(Some("invoice.paid"), Some("invoice"), None)),
            "hookledger.stripe.invoice.invoice_paid"
        );
        assert_eq!(
            template.render(&attempt(None, None, None)),
            "hookledger.stripe._._"
        );
        let ids = SubjectTemplate::parse("x.{object_id}");
        assert_eq!(
            ids.render(&attempt(None, None, Some("a b*c>d.é-_Z9"))),
            "x.a_b_c_d__-_Z9",
            "one _ per character, a multi-byte one included"
        );
        assert_eq!(ids.render(&attempt(None, None, Some(""))), "x._");
    }

    #[test]
    fn literal_text_around_placeholders_is_kept_as_written() {
        let template = SubjectTemplate::parse("a-{source}-b.{action}x.c");
        assert_eq!(
            template.render(&attempt(Some("paid"), None, None)),
            "a-stripe-b.paidx.c"
        );
        // Refused by config validation; kept literally rather than failing here.
        let odd = SubjectTemplate::parse("a.{nope}.{source");
        assert_eq!(odd.render(&attempt(None, None, None)), "a.{nope}.{source");
    }

    #[test]
    fn a_created_stream_captures_the_literal_prefix_or_the_template_shape() {
        let subject = |t: &str| SubjectTemplate::parse(t).stream_subject();
        assert_eq!(
            subject("hookledger.{source}.{object_type}.{action}"),
            "hookledger.>"
        );
        assert_eq!(subject("a.b.x{source}y.{action}"), "a.b.>");
        assert_eq!(subject("fixed.subject"), "fixed.subject");
        assert_eq!(subject("{source}.events.{action}"), "*.events.*");
    }
}
