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

/// Replaces `${VAR}` in every string value. A variable that is not set is
/// a problem naming it and the key, and stands for an empty string, so
/// that loading goes on and reports every other problem with it. Returns
/// the keys (`sources.a.secret`, `sources.a.deliver[0].to`) whose values
/// are therefore not what the operator meant: see [`follows_from`].
pub(super) fn expand_vars(
    value: &mut toml::Value,
    env: &dyn Env,
    problems: &mut Vec<String>,
) -> Vec<String> {
    let mut tainted = Vec::new();
    expand_at(value, "", env, problems, &mut tainted);
    tainted
}

fn expand_at(
    value: &mut toml::Value,
    path: &str,
    env: &dyn Env,
    problems: &mut Vec<String>,
    tainted: &mut Vec<String>,
) {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            let before = problems.len();
            *s = expand_str(s, path, env, problems);
            if problems.len() > before {
                tainted.push(path.to_string());
            }
        }
        // Tables in an array are told apart by index, as the checks name
        // them (`deliver[0].to`); strings in an array are reported under
        // the array's key (`deliver[0].actions`), as the checks do too.
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let at = match item {
                    toml::Value::Table(_) => format!("{path}[{i}]"),
                    _ => path.to_string(),
                };
                expand_at(item, &at, env, problems, tainted);
            }
        }
        toml::Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                let at = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                expand_at(item, &at, env, problems, tainted);
            }
        }
        _ => {}
    }
}

/// `s` with every set variable replaced by its value and every unset one
/// by nothing, each unset one a problem. An unterminated `${` leaves the
/// rest of the text as it is.
fn expand_str(s: &str, path: &str, env: &dyn Env, problems: &mut Vec<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            problems.push(format!("{path}: unterminated ${{ in the value"));
            out.push_str(&rest[start..]);
            return out;
        };
        let name = &after[..end];
        match env.var(name) {
            Some(v) => out.push_str(&v),
            None => problems.push(format!("{path}: environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether a problem found after expansion is about a key whose value an
/// unset variable emptied (`sources.a.secret is empty`, `….url is not a
/// URL`): it follows from the variable already reported, and would only
/// send the operator looking for a second mistake. The checks name a key
/// first, then a space, `:` or a deeper key, which is what is matched.
pub(super) fn follows_from(problem: &str, tainted: &[String]) -> bool {
    tainted.iter().any(|key| {
        problem
            .strip_prefix(key.as_str())
            .is_some_and(|rest| rest.starts_with([' ', ':', '.', '[']))
    })
}
