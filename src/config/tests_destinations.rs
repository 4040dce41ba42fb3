//! Unit tests of `[destinations.NAME]` and the sources' `deliver` rules
//! (SPEC §7): one per kind of mistake, all of them at once, the defaults,
//! and secrets kept out of errors and `Debug` output.

use super::*;

/// A source that delivers, and room for the destinations of each test.
const HEAD: &str =
    "[server]\nadmin_token = \"t\"\n[sources.s]\npreset = \"github\"\nsecret = \"k\"\n";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(text: &str) -> Config {
    load_str(text, &env(&[])).unwrap_or_else(|e| panic!("{e}"))
}

fn problems(text: &str) -> Vec<String> {
    load_str(text, &env(&[])).expect_err("should be refused").0
}

fn app(extra: &str) -> String {
    format!("[destinations.app]\nkind = \"http\"\nurl = \"https://app.internal/hooks\"\nsecret = \"{WHSEC}\"\n{extra}")
}

fn bus(extra: &str) -> String {
    format!("[destinations.bus]\nkind = \"nats\"\nurl = \"nats://127.0.0.1:4222\"\n{extra}")
}

fn assert_one(found: &[String], expect: &str) {
    assert!(
        found.iter().filter(|p| p.contains(expect)).count() == 1,
        "{expect:?} once in {found:?}"
    );
}

#[test]
fn both_kinds_and_the_deliver_rules_load_as_written() {
    let text = format!(
        "{HEAD}deliver = [{{ to = \"app\", actions = [\"invoice.*\", \"customer.subscription.*\"] }}, {{ to = \"bus\" }}]\n{}{}",
        app("headers = { \"X-Env\" = \"prod\" }\nrate_per_sec = 50\n"),
        bus("stream = \"EVENTS\"\nsubject = \"hookledger.{source}.{object_id}\"\n"),
    );
    let config = load(&text);
    let rules = &config.sources["s"].deliver;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].to, "app");
    assert!(rules[0].matches(Some("customer.subscription.updated")));
    assert!(!rules[0].matches(Some("charge.succeeded")));
    assert!(!rules[0].matches(None));
    assert_eq!(
        (rules[1].to.as_str(), rules[1].actions.is_none()),
        ("bus", true)
    );

    let DestinationKind::Http(http) = &config.destinations["app"].kind else {
        panic!("app is http");
    };
    assert_eq!(http.url, "https://app.internal/hooks");
    assert_eq!(http.secret.as_ref().unwrap().expose(), WHSEC);
    assert_eq!(http.headers["X-Env"], "prod");
    assert_eq!(config.destinations["app"].rate_per_sec, Some(50.0));
    let DestinationKind::Nats(nats) = &config.destinations["bus"].kind else {
        panic!("bus is nats");
    };
    assert_eq!(nats.url.expose(), "nats://127.0.0.1:4222");
    assert_eq!(nats.stream, "EVENTS");
    assert_eq!(nats.subject, "hookledger.{source}.{object_id}");
    assert!(!nats.create_stream);
}

#[test]
fn timeout_and_concurrency_default_to_10_s_and_8_and_the_retry_keys_to_processing() {
    let text = format!(
        "{HEAD}[processing]\nmax_attempts = 5\nbackoff_base_secs = 3\nbackoff_max_secs = 90\n{}{}",
        app(""),
        bus("max_attempts = 2\nbackoff_base_secs = 1\nbackoff_max_secs = 4\ntimeout_secs = 3\nconcurrency = 1\n"),
    );
    let config = load(&text);
    let inherited = &config.destinations["app"];
    assert_eq!((inherited.timeout_secs, inherited.concurrency), (10, 8));
    assert_eq!(inherited.rate_per_sec, None);
    assert_eq!(
        (
            inherited.max_attempts,
            inherited.backoff_base_secs,
            inherited.backoff_max_secs
        ),
        (5, 3, 90)
    );
    let own = &config.destinations["bus"];
    assert_eq!((own.timeout_secs, own.concurrency), (3, 1));
    assert_eq!(
        (
            own.max_attempts,
            own.backoff_base_secs,
            own.backoff_max_secs
        ),
        (2, 1, 4)
    );
    let DestinationKind::Nats(nats) = &own.kind else {
        panic!("bus is nats");
    };
    assert_eq!(nats.subject, "hookledger.{source}.{object_type}.{action}");
    assert_eq!(nats.stream, "HOOKLEDGER");
}

#[test]
fn an_unknown_destination_in_deliver_is_a_start_up_error() {
    let found = problems(&format!("{HEAD}deliver = [{{ to = \"ap\" }}]\n{}", app("")));
    assert_one(
        &found,
        "sources.s.deliver[0].to: unknown destination \"ap\"",
    );
    assert!(found[0].contains("configured: app"), "{found:?}");
    let found = problems(&format!("{HEAD}deliver = [{{ actions = [\"x\"] }}]\n"));
    assert_one(&found, "sources.s.deliver[0].to is not set");
}

#[test]
fn a_bad_glob_is_a_start_up_error() {
    for glob in [
        "",
        " invoice.*",
        "invoice.?aid",
        "{invoice,customer}.*",
        "a\\tb",
    ] {
        let found = problems(&format!(
            "{HEAD}deliver = [{{ to = \"app\", actions = [\"invoice.*\", \"{glob}\"] }}]\n{}",
            app("")
        ));
        assert_eq!(found.len(), 1, "{glob:?}: {found:?}");
        assert!(
            found[0].starts_with("sources.s.deliver[0].actions: "),
            "{glob:?}: {found:?}"
        );
    }
    let found = problems(&format!(
        "{HEAD}deliver = [{{ to = \"app\", actions = [] }}]\n{}",
        app("")
    ));
    assert_one(&found, "sources.s.deliver[0].actions is empty");
}

#[test]
fn a_destination_named_twice_by_one_source_is_refused() {
    let found = problems(&format!(
        "{HEAD}deliver = [{{ to = \"app\", actions = [\"a.*\"] }}, {{ to = \"app\", actions = [\"b.*\"] }}]\n{}",
        app("")
    ));
    assert_one(
        &found,
        "sources.s.deliver[1].to: destination \"app\" is already named",
    );
}

#[test]
fn an_http_destination_without_a_secret_must_say_sign_off() {
    let unsigned = "[destinations.app]\nkind = \"http\"\nurl = \"https://app.internal/h\"\n";
    let found = problems(&format!("{HEAD}{unsigned}"));
    assert_one(&found, "destinations.app: has no secret");
    assert!(found[0].contains("sign = \"off\""), "{found:?}");
    let config = load(&format!("{HEAD}{unsigned}sign = \"off\"\n"));
    let DestinationKind::Http(http) = &config.destinations["app"].kind else {
        panic!("app is http");
    };
    assert!(http.secret.is_none());
    let found = problems(&format!("{HEAD}{}", app("sign = \"off\"\n")));
    assert_one(&found, "has both a secret and sign = \"off\"");
    let found = problems(&format!("{HEAD}{unsigned}secret = \"not-a-whsec\"\n"));
    assert_one(
        &found,
        "destinations.app.secret: a Standard Webhooks secret",
    );
}

#[test]
fn a_url_that_is_not_http_or_https_is_refused_and_any_host_is_accepted() {
    for (url, expect) in [
        (
            "ftp://app.internal/h",
            "destinations.app.url must start with http:// or https://",
        ),
        ("not a url", "destinations.app.url is not a URL"),
        ("app.internal/hooks", "destinations.app.url is not a URL"),
        ("https://", "destinations.app.url is not a URL"),
        ("file:///etc/passwd", "must start with http:// or https://"),
    ] {
        let text =
            format!("{HEAD}[destinations.app]\nkind = \"http\"\nurl = \"{url}\"\nsign = \"off\"\n");
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{url}: {found:?}");
        assert!(found[0].contains(expect), "{url}: {found:?}");
    }
    for url in [
        "http://127.0.0.1:3000/h",
        "http://localhost/h",
        "https://10.1.2.3/h",
        "http://[::1]:8080/",
        "https://app.internal",
    ] {
        load(&format!(
            "{HEAD}[destinations.app]\nkind = \"http\"\nurl = \"{url}\"\nsign = \"off\"\n"
        ));
    }
    for (url, expect) in [
        ("http://127.0.0.1:4222", "must start with nats:// or tls://"),
        ("127.0.0.1:4222", "is not a URL"),
        ("nats://", "names no host"),
    ] {
        let found = problems(&format!(
            "{HEAD}[destinations.bus]\nkind = \"nats\"\nurl = \"{url}\"\n"
        ));
        assert_one(&found, &format!("destinations.bus.url {expect}"));
    }
    load(&format!(
        "{HEAD}[destinations.bus]\nkind = \"nats\"\nurl = \"tls://u:p@10.0.0.9:4222\"\n"
    ));
    let found = problems(&format!("{HEAD}[destinations.bus]\nkind = \"nats\"\n"));
    assert_one(&found, "destinations.bus.url is not set");
}

#[test]
fn an_unknown_subject_placeholder_is_a_start_up_error() {
    let found = problems(&format!(
        "{HEAD}{}",
        bus("subject = \"hookledger.{event_id}\"\n")
    ));
    assert_one(
        &found,
        "destinations.bus.subject: unknown placeholder {event_id}",
    );
    assert!(
        found[0].contains("{object_type}"),
        "lists the known ones: {found:?}"
    );
}

#[test]
fn a_created_stream_must_take_the_subject() {
    let found = problems(&format!(
        "{HEAD}{}",
        bus("create_stream = true\nsubject = \"orders.{source}\"\n")
    ));
    assert_one(
        &found,
        "destinations.bus.subject: create_stream makes a stream",
    );
    load(&format!("{HEAD}{}", bus("create_stream = true\n")));
    load(&format!("{HEAD}{}", bus("subject = \"orders.{source}\"\n")));
}

#[test]
fn keys_of_the_other_kind_and_reserved_headers_are_refused() {
    let found = problems(&format!(
        "{HEAD}{}{}",
        app("subject = \"a.b\"\nheaders = { \"Webhook-Signature\" = \"x\", \"X-Ok\" = \"y\" }\n"),
        bus(&format!("secret = \"{WHSEC}\"\n"))
    ));
    assert_one(
        &found,
        "destinations.app.subject does not apply to a http destination",
    );
    assert_one(&found, "\"Webhook-Signature\" is set by hookledger");
    assert_one(
        &found,
        "destinations.bus.secret does not apply to a nats destination",
    );
    assert_eq!(found.len(), 3, "{found:?}");
}

#[test]
fn an_inherited_bad_retry_key_is_reported_once_under_processing() {
    let found = problems(&format!(
        "{HEAD}[processing]\nmax_attempts = 0\nbackoff_base_secs = 10\nbackoff_max_secs = 5\n{}",
        app("")
    ));
    assert_one(&found, "processing.max_attempts");
    assert_one(&found, "processing.backoff_max_secs");
    assert!(
        !found.iter().any(|p| p.contains("destinations")),
        "{found:?}"
    );
    let found = problems(&format!(
        "{HEAD}{}",
        app("max_attempts = 0\nbackoff_base_secs = 7200\n")
    ));
    assert_one(&found, "destinations.app.max_attempts must be at least 1");
    assert_one(&found, "destinations.app.backoff_max_secs must be >=");
}

/// SPEC §7: every mistake at once, among the other sections' problems.
#[test]
fn every_destination_mistake_is_reported_at_once() {
    let text = format!(
        r#"[server]
admin_token = "t"
[sources.s]
preset = "github"
secret = "k"
deliver = [{{ to = "nowhere" }}, {{ to = "app", actions = ["invoice.?"] }}]
[sources.t]
preset = "paypal"
secret = "k"
deliver = [{{ to = "ftp" }}]
[destinations.app]
kind = "http"
url = "https://app.internal/h"
[destinations.ftp]
kind = "http"
url = "ftp://files.internal/in"
secret = "{WHSEC}"
[destinations.bus]
kind = "nats"
url = "nats://127.0.0.1:4222"
subject = "hookledger.{{tenant}}"
[destinations.odd]
url = "https://x.internal"
[destinations.typo]
kind = "nats"
url = "nats://127.0.0.1:4222"
create_streams = true
"#
    );
    let found = problems(&text);
    for expect in [
        "sources.s.deliver[0].to: unknown destination \"nowhere\"",
        "sources.s.deliver[1].actions: action glob \"invoice.?\"",
        "destinations.app: has no secret",
        "destinations.ftp.url must start with http:// or https://",
        "destinations.bus.subject: unknown placeholder {tenant}",
        "destinations.odd.kind is not set",
        "sources.t.preset: unknown preset \"paypal\"",
        "destinations.typo: unknown field `create_streams`",
    ] {
        assert_one(&found, expect);
    }
    assert_eq!(found.len(), 8, "no follow-on problems: {found:?}");
}

/// The http `secret`, the NATS URL (user, password or token in it) and
/// the http URL's credentials never appear in an error or `Debug` output.
#[test]
fn destination_secrets_never_appear_in_errors_or_debug_output() {
    const S: &str = "s3cr3t";
    let good = format!(
        "{HEAD}[destinations.app]\nkind = \"http\"\nurl = \"https://user:{S}-1@app.internal/h?key={S}-2\"\nsecret = \"whsec_{S}AA\"\nheaders = {{ Authorization = \"Bearer {S}-3\" }}\n\
         [destinations.bus]\nkind = \"nats\"\nurl = \"nats://{S}-4@bus.internal:4222\"\n\
         [destinations.bus2]\nkind = \"nats\"\nurl = \"tls://u:{S}-5@bus.internal:4222\"\n"
    );
    let config = load(&good);
    let printed = format!("{config:?}");
    assert!(!printed.contains(S), "{printed}");
    assert!(printed.contains("app.internal") && printed.contains("bus.internal"));
    assert!(
        printed.contains("Authorization"),
        "header names stay: {printed}"
    );

    let bad = format!(
        "{HEAD}[destinations.app]\nkind = \"http\"\nurl = \"{S}://app.internal/h\"\nsecret = \"whsec_{S}!\"\nheaders = {{ X-Key = \"{S}\\n\" }}\n\
         [destinations.ftp]\nkind = \"http\"\nurl = \"ftp://u:{S}@files.internal\"\nsign = \"off\"\n\
         [destinations.rel]\nkind = \"http\"\nurl = \"{S}-relative\"\nsign = \"off\"\n\
         [destinations.bus]\nkind = \"nats\"\nurl = \"nats://{S}@:x\"\n\
         [destinations.bus2]\nkind = \"nats\"\nurl = \"{S}:4222\"\n\
         [destinations.bus3]\nkind = \"nats\"\nurl = \"nats://{S}@bus.internal\"\nsubject = \"a.{{x}}\"\n"
    );
    let found = problems(&bad);
    assert_eq!(found.len(), 8, "one problem per key: {found:?}");
    let message = ConfigError(found).to_string();
    assert!(!message.contains(S), "{message}");
}

/// The shipped config's commented examples, uncommented: the
/// `[destinations.*]` blocks and the `deliver` line.
fn with_the_examples_uncommented(text: &str) -> String {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        match line.strip_prefix("# ") {
            Some(body) if body.starts_with("[destinations.") => {
                inside = true;
                out.push(body);
            }
            Some(body) if inside || body.starts_with("deliver = ") => out.push(body),
            _ => {
                inside = false;
                out.push(line);
            }
        }
    }
    out.join("\n")
}

#[test]
fn the_shipped_examples_of_both_kinds_load_when_uncommented() {
    let shipped = include_str!("../../hookledger.toml");
    let text = with_the_examples_uncommented(shipped);
    assert_ne!(text, shipped.trim_end(), "the shipped config has examples");
    let config = load_str(&text, &env(&[("APP_WEBHOOK_SECRET", WHSEC)]))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let kinds: Vec<_> = config
        .destinations
        .values()
        .map(|d| (d.name.as_str(), d.kind.as_str()))
        .collect();
    assert_eq!(kinds, [("app", "http"), ("bus", "nats")]);
    let rules = &config.sources["stripe"].deliver;
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules[0].matches(Some("invoice.paid")) && !rules[0].matches(Some("charge.failed")));
    // And as shipped, nothing is delivered anywhere.
    let config = load(shipped);
    assert!(config.destinations.is_empty());
    assert!(config.sources.values().all(|s| s.deliver.is_empty()));
}
