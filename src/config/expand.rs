//! `${VAR}` expansion inside string values, and error messages about the
//! raw TOML that never quote a value (it may be a secret).

use super::Env;

/// A type or variant error without the value it quotes. serde writes
/// `invalid type: integer `123…`, expected a string` for an unquoted
/// `secret = 123…`, and the string a misplaced `${VAR}` expanded to
/// (`tolerance_secs = "${STRIPE_WEBHOOK_SECRET}"`): either may be a secret,
/// and the message ends up in logs. The kind of value and what was expected
/// are kept; field names (`unknown field `secrett``) are not values and stay.
pub(super) fn without_value(message: &str) -> String {
    let message = message.trim();
    for lead in ["invalid type: ", "invalid value: ", "unknown variant"] {
        let Some(rest) = message.strip_prefix(lead) else {
            continue;
        };
        // What follows the value is ours (the expected type or variants),
        // so the last separator is the real one even if the value holds it.
        let tail_at = [", expected ", ", there are no variants"]
            .iter()
            .filter_map(|sep| rest.rfind(sep))
            .max()
            .unwrap_or(rest.len());
        let (found, tail) = rest.split_at(tail_at);
        // `integer `5``, `floating point `1.5``, `string "…"`: the kind is
        // what comes before the quoted value; `sequence` or `map` have none.
        let kind = found
            .find(['`', '"'])
            .map_or(found, |at| &found[..at])
            .trim_end();
        let space = if kind.is_empty() || lead.ends_with(' ') {
            ""
        } else {
            " "
        };
        return format!("{lead}{space}{kind}{tail}");
    }
    message.to_string()
}

/// Where a syntax error is and what it is, without the offending line that
/// toml's own message quotes: that line may hold a secret (an unterminated
/// `secret = "…`), and the message ends up in logs.
pub(super) fn toml_syntax_problem(text: &str, error: &toml::de::Error) -> String {
    let what = error.message().trim();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("TOML syntax error at line {line}, column {column}: {what}")
        }
        None => format!("TOML syntax error: {what}"),
    }
}

/// Replaces `${VAR}` in every string value; a missing variable is a problem
/// that names it.
pub(super) fn expand_vars(value: &mut toml::Value, env: &dyn Env, problems: &mut Vec<String>) {
    match value {
        toml::Value::String(s) if s.contains("${") => match expand_str(s, env) {
            Ok(expanded) => *s = expanded,
            Err(p) => problems.push(p),
        },
        toml::Value::Array(items) => items.iter_mut().for_each(|v| expand_vars(v, env, problems)),
        toml::Value::Table(table) => table
            .iter_mut()
            .for_each(|(_, v)| expand_vars(v, env, problems)),
        _ => {}
    }
}

fn expand_str(s: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated ${ in a config value".to_string())?;
        let name = &after[..end];
        match env.var(name) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
