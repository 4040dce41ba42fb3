//! `server.public_origin` (SPEC §9): the origin people reach hookledger at.
//! The console compares a POST's `Origin` header with it (CSRF) and marks
//! its cookie `Secure` when it is `https://`, so it must be an origin and
//! nothing more: a scheme of http or https, a host, perhaps a port — no
//! path, query, fragment or credentials. It is kept in the form a browser
//! sends in `Origin` (lower-case host, default port dropped, no trailing
//! slash), so that comparing the two is comparing strings.

/// The origin of `raw`, serialized as browsers send it, or why it is none.
pub(super) fn normalize(raw: &str) -> Result<String, String> {
    let bad =
        |why: &str| format!("expected an http(s) origin such as https://hooks.example.com ({why})");
    let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("no user name or password"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("no path, query or fragment"));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::normalize;
    use crate::config::load_str;
    use std::collections::BTreeMap;

    #[test]
    fn an_origin_is_kept_as_a_browser_sends_it() {
        for (raw, origin) in [
            ("https://hooks.example.com", "https://hooks.example.com"),
            ("https://hooks.example.com/", "https://hooks.example.com"),
            ("HTTPS://Hooks.Example.COM:443", "https://hooks.example.com"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://[::1]:80", "http://[::1]"),
        ] {
            assert_eq!(normalize(raw).unwrap(), origin, "{raw}");
        }
    }

    #[test]
    fn anything_more_or_less_than_an_http_origin_is_refused() {
        for raw in [
            "hooks.example.com",
            "ftp://hooks.example.com",
            "https://hooks.example.com/console",
            "https://hooks.example.com/?a=1",
            "https://hooks.example.com/#x",
            "https://user:pw@hooks.example.com",
            "file:///etc/passwd",
            "",
        ] {
            assert!(normalize(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn the_config_key_is_read_normalized_and_its_problem_named() {
        let env = BTreeMap::new();
        let config = load_str(
            "[server]\nadmin_token = \"t\"\npublic_origin = \"https://Hooks.example.com/\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(
            config.server.public_origin.as_deref(),
            Some("https://hooks.example.com")
        );
        let problems = load_str(
            "[server]\nadmin_token = \"t\"\npublic_origin = \"https://h.example/console\"\n",
            &env,
        )
        .unwrap_err()
        .0;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("server.public_origin: "),
            "{problems:?}"
        );
        let unset = load_str("[server]\nadmin_token = \"t\"\n", &env).unwrap();
        assert_eq!(unset.server.public_origin, None);
    }
}
