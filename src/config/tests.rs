//! Unit tests of loading and validating configs.

use super::expand::without_value;
use super::*;

const MINIMAL: &str = "[server]\nadmin_token = \"t\"\n";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn problems(text: &str) -> Vec<String> {
    load_str(text, &env(&[])).expect_err("should be refused").0
}

#[test]
fn the_shipped_config_loads_with_an_empty_environment() {
    let text = include_str!("../../hookledger.toml");
    let config = load_str(text, &env(&[])).expect("shipped config is valid");
    assert_eq!(config.server.bind, "127.0.0.1:8080");
    assert_eq!(config.server.database_url, "sqlite://hookledger.db");
    for preset in Preset::all() {
        assert!(
            config.sources.values().any(|s| s.preset == preset),
            "the shipped config has a {} source",
            preset.as_str()
        );
    }
}

#[test]
fn variables_are_expanded_and_env_overrides_win() {
    let text = r#"
[server]
admin_token = "${TOKEN}"
bind = "0.0.0.0:1"
[sources.s]
preset = "github"
secret = "pre-${GH}-post"
"#;
    let config = load_str(
        text,
        &env(&[
            ("TOKEN", "from-var"),
            ("GH", "x"),
            ("HOOKLEDGER_BIND", "127.0.0.1:9"),
            ("DATABASE_URL", "postgres://u@h/db"),
        ]),
    )
    .unwrap();
    assert_eq!(config.server.admin_token.expose(), "from-var");
    assert_eq!(config.server.bind, "127.0.0.1:9");
    assert_eq!(config.server.database_url, "postgres://u@h/db");
    assert_eq!(config.sources["s"].secrets[0].expose(), "pre-x-post");
    let overridden = load_str(
        text,
        &env(&[("TOKEN", "a"), ("GH", "x"), ("HOOKLEDGER_ADMIN_TOKEN", "b")]),
    )
    .unwrap();
    assert_eq!(overridden.server.admin_token.expose(), "b");
}

#[test]
fn a_missing_variable_is_named_with_its_key_and_nothing_that_follows_from_it() {
    let found = problems("[server]\nadmin_token = \"${NOT_SET_ANYWHERE}\"\n");
    assert_eq!(
        found,
        ["server.admin_token: environment variable NOT_SET_ANYWHERE is not set"]
    );
    // Emptied, a secret would also be "empty", "not whsec_", a URL "not a
    // URL", a deliver rule's destination "unknown": each is left out.
    let text = r#"
[server]
admin_token = "t"
[sources.a]
preset = "standard"
secret = "${A_SECRET}"
deliver = [{ to = "${DEST}", actions = ["${GLOB}"] }]
[sources.b]
preset = "github"
secret = "${B_SECRET}"
[sources.c]
preset = "acuity"
secret = "k"
fetch.url = "https://${HOST}/{object_id}"
fetch.basic = "${USER}:${KEY}"
[destinations.app]
kind = "http"
url = "${APP_URL}"
secret = "${APP_SECRET}"
[destinations.bus]
kind = "nats"
url = "nats://${NATS_TOKEN}@bus.internal:4222"
"#;
    let found = problems(text);
    let expected = [
        ("destinations.app.secret", "APP_SECRET"),
        ("destinations.app.url", "APP_URL"),
        ("destinations.bus.url", "NATS_TOKEN"),
        ("sources.a.deliver[0].actions", "GLOB"),
        ("sources.a.deliver[0].to", "DEST"),
        ("sources.a.secret", "A_SECRET"),
        ("sources.b.secret", "B_SECRET"),
        ("sources.c.fetch.basic", "USER"),
        ("sources.c.fetch.basic", "KEY"),
        ("sources.c.fetch.url", "HOST"),
    ]
    .map(|(key, var)| format!("{key}: environment variable {var} is not set"));
    let mut sorted = found.clone();
    sorted.sort();
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(sorted, expected, "{found:?}");
}

#[test]
fn an_unset_variable_is_reported_with_every_other_problem() {
    let text = r#"
[server]
admin_token = "${ADMIN}"
max_body_bytes = 0
[sources.a]
preset = "paypal"
secret = "k"
[sources.b]
preset = "stripe"
secret = "${STRIPE_SECRET}"
tolerance_secs = 300
"#;
    let found = problems(text);
    for expect in [
        "server.admin_token: environment variable ADMIN is not set",
        "sources.b.secret: environment variable STRIPE_SECRET is not set",
        "server.max_body_bytes must be at least 1",
        "sources.a.preset: unknown preset \"paypal\"",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expect)),
            "{expect} in {found:?}"
        );
    }
    assert_eq!(found.len(), 4, "{found:?}");
    // A type error (the one kind that stops the checks) still comes with
    // the variables.
    let found = problems("[server]\nadmin_token = \"${ADMIN}\"\nworkers = \"many\"\n");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].contains("ADMIN") && found[1].contains("invalid type"));
    // An unset variable is a problem even when an override makes it moot:
    // the file names a variable the operator meant to set.
    let found = load_str(
        "[server]\nadmin_token = \"${ADMIN}\"\n",
        &env(&[("HOOKLEDGER_ADMIN_TOKEN", "x")]),
    )
    .expect_err("refused")
    .0;
    assert_eq!(found.len(), 1, "{found:?}");
}

#[test]
fn an_unterminated_variable_is_named_by_its_key() {
    let found = problems("[server]\nadmin_token = \"t\"\nbind = \"${HOST:8080\"\n");
    assert_eq!(found, ["server.bind: unterminated ${ in the value"]);
}

#[test]
fn a_source_without_secret_must_say_verify_off() {
    let found = problems(&format!("{MINIMAL}[sources.a]\npreset = \"stripe\"\n"));
    assert!(found[0].contains("verify = \"off\""), "{found:?}");
    let ok = load_str(
        &format!("{MINIMAL}[sources.a]\npreset = \"generic\"\nverify = \"off\"\n"),
        &env(&[]),
    );
    assert!(ok.is_ok());
}

#[test]
fn bad_templates_are_refused() {
    for (template, expect) in [
        ("https://api.example.com/{nope}", "unknown placeholder"),
        ("https://{object_id}.example.com/x", "after the host"),
        ("https://api.example.com/{object_id", "unclosed"),
        ("ftp://api.example.com/{object_id}", "http"),
        ("not a url {object_id}", "valid URL"),
        ("https:///{object_id}", "host"),
        ("https:///{object_id}/x", "host"),
        ("https://\t/{object_id}", "host"),
        ("https://\\\\/{object_id}", "host"),
    ] {
        let text = format!(
            "{MINIMAL}[sources.a]\npreset = \"acuity\"\nsecret = \"k\"\nfetch.url = \"{template}\"\n"
        );
        let found = problems(&text);
        assert!(
            found.iter().any(|p| p.contains(expect)),
            "{template}: {found:?}"
        );
    }
    assert!(
        check_template("https://api.example.com/v1/{object_type}/{object_id}?x={action}").is_ok()
    );
}

#[test]
fn an_unknown_preset_is_refused() {
    let found = problems(&format!(
        "{MINIMAL}[sources.a]\npreset = \"paypal\"\nsecret = \"k\"\n"
    ));
    assert!(found[0].contains("unknown preset \"paypal\""), "{found:?}");
}

#[test]
fn the_body_timeout_defaults_to_15_s_and_must_be_between_1_s_and_a_day() {
    let config = load_str(MINIMAL, &env(&[])).unwrap();
    assert_eq!(config.server.body_timeout_secs, 15);
    let set = load_str(&format!("{MINIMAL}body_timeout_secs = 2\n"), &env(&[])).unwrap();
    assert_eq!(set.server.body_timeout_secs, 2);
    for bad in [0, MAX_BODY_TIMEOUT_SECS + 1] {
        let found = problems(&format!("{MINIMAL}body_timeout_secs = {bad}\n"));
        assert!(found[0].contains("body_timeout_secs"), "{bad}: {found:?}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = r#"
[server]
max_body_bytes = 0
batch_writers = 0
[sources.a]
preset = "paypal"
secret = "k"
[sources.b]
preset = "stripe"
[sources.c]
preset = "acuity"
secret = "k"
actions = { scheduled = "sometimes" }
fetch.url = "https://x.example/{bad}"
"#;
    let found = problems(text);
    for expect in [
        "admin_token",
        "max_body_bytes",
        "batch_writers",
        "paypal",
        "sources.b",
        "sometimes",
        "{bad}",
    ] {
        assert!(
            found.iter().any(|p| p.contains(expect)),
            "{expect} in {found:?}"
        );
    }
}

#[test]
fn unknown_keys_and_bad_names_are_refused() {
    let found = problems("[server]\nadmin_token = \"t\"\nbnid = \"x\"\n");
    assert!(found[0].contains("bnid"), "{found:?}");
    let found = problems(&format!(
        "{MINIMAL}[sources.\"a/b\"]\npreset = \"generic\"\nverify = \"off\"\n"
    ));
    assert!(found[0].contains("source name"), "{found:?}");
    let found = problems(&format!(
        "{MINIMAL}[sources.a]\npreset = \"standard\"\nsecret = \"not-whsec\"\n"
    ));
    assert!(found[0].contains("whsec_"), "{found:?}");
}

#[test]
fn max_retry_after_secs_defaults_to_an_hour_and_must_be_at_least_one() {
    let config = load_str(MINIMAL, &env(&[])).unwrap();
    assert_eq!(config.processing.max_retry_after_secs, 3600);
    let set = load_str(
        &format!("{MINIMAL}[processing]\nmax_retry_after_secs = 120\n"),
        &env(&[]),
    )
    .unwrap();
    assert_eq!(set.processing.max_retry_after_secs, 120);
    let found = problems(&format!(
        "{MINIMAL}[processing]\nmax_retry_after_secs = 0\n"
    ));
    assert!(found[0].contains("max_retry_after_secs"), "{found:?}");
}

#[test]
fn database_passwords_never_print() {
    let config = load_str(
        &format!("{MINIMAL}database_url = \"postgres://app:pa55word@db.internal/ledger?sslmode=require\"\n"),
        &env(&[]),
    )
    .unwrap();
    let printed = format!("{config:?}");
    assert!(!printed.contains("pa55word"), "{printed}");
    assert!(printed.contains("db.internal"));
}

#[test]
fn type_errors_keep_the_kind_and_drop_the_value() {
    for (message, expected) in [
        (
            "invalid type: integer `12345`, expected a string",
            "invalid type: integer, expected a string",
        ),
        (
            "invalid type: string \"a, expected b\", expected u64",
            "invalid type: string, expected u64",
        ),
        (
            "invalid value: floating point `1.5`, expected usize",
            "invalid value: floating point, expected usize",
        ),
        (
            "invalid type: sequence, expected a string",
            "invalid type: sequence, expected a string",
        ),
        (
            "unknown variant `hunter2`, expected one of `header`, `pointer`",
            "unknown variant, expected one of `header`, `pointer`",
        ),
        (
            "unknown field `secrett`, expected one of `preset`",
            "unknown field `secrett`, expected one of `preset`",
        ),
    ] {
        assert_eq!(without_value(message), expected, "{message}");
    }
}

#[test]
fn secrets_never_print() {
    let text = format!("{MINIMAL}[sources.a]\npreset = \"github\"\nsecret = \"hunter2\"\nfetch.url = \"https://x.example/{{object_id}}\"\nfetch.bearer = \"sk_live_zzz\"\n");
    let config = load_str(&text, &env(&[])).unwrap();
    let printed = format!("{config:?}");
    assert!(!printed.contains("hunter2") && !printed.contains("sk_live_zzz"));
    assert!(printed.contains("[redacted]"));
}

#[test]
fn a_key_of_the_wrong_shape_is_named_by_its_entry_and_hides_nothing_else() {
    let text = r#"
[server]
admin_token = "t"
max_body_bytes = 0
[sources.a]
preset = "github"
secret = "k"
tolerance_secs = "300"
[sources.b]
preset = "paypal"
secret = "k"
[sources.c]
preset = "github"
secret = "k"
deliver = [{ to = "app" }]
[destinations.app]
kind = "http"
subjet = "x"
[serve]
bind = "x"
"#;
    let found = problems(text);
    for expect in [
        "server.max_body_bytes must be at least 1",
        "sources.a: invalid type: string, expected u64",
        "sources.b.preset: unknown preset",
        "destinations.app: unknown field `subjet`",
        "unknown field `serve`, expected one of `server`, `processing`, `sources`, `destinations`",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expect)),
            "{expect} in {found:?}"
        );
    }
    // No "unknown destination app" for the destination that did not read.
    assert_eq!(found.len(), 5, "{found:?}");
    // A section of the wrong shape leaves out the complaints about the
    // defaults standing in for it.
    let found = problems("server = 5\n[processing]\nmax_attempts = 0\n");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("server: invalid type"), "{found:?}");
    assert!(found[1].starts_with("processing.max_attempts"), "{found:?}");
}

#[test]
fn a_secret_may_be_a_list_and_presets_come_from_the_table() {
    let text = format!(
        "{MINIMAL}[sources.s]\npreset = \"github\"\nsecret = [\"new\", \"${{OLD}}\"]\n[sources.z]\npreset = \"zoom\"\nsecret = \"z\"\n"
    );
    let config = load_str(&text, &env(&[("OLD", "old")])).unwrap();
    let secrets: Vec<&str> = config.sources["s"]
        .secrets
        .iter()
        .map(|s| s.expose())
        .collect();
    assert_eq!(secrets, ["new", "old"]);
    // Zoom's default window covers its retries (5, 25 and 85 minutes).
    assert_eq!(config.sources["z"].hash_window_secs, 7200);
    for (secret, problem) in [
        ("[]", "sources.s.secret is an empty list"),
        ("[\"a\", \"\"]", "sources.s.secret is empty"),
    ] {
        let text = format!("{MINIMAL}[sources.s]\npreset = \"github\"\nsecret = {secret}\n");
        assert_eq!(problems(&text), [problem], "{secret}");
    }
    let found = problems(&format!(
        "{MINIMAL}[sources.s]\npreset = \"nope\"\nverify = \"off\"\n"
    ));
    let names: Vec<&str> = Preset::all().map(Preset::as_str).collect();
    assert!(found[0].contains("unknown preset \"nope\""), "{found:?}");
    for name in names {
        assert!(found[0].contains(name), "{name} missing from {found:?}");
    }
}

#[test]
fn a_public_key_stands_in_for_a_secret_only_for_the_standard_preset() {
    let key = "whpk_Veo+KZRz2RJ/3b+IW9TICWGua6m6vCgPR5PwgDjCBSI=";
    let config = load_str(
        &format!("{MINIMAL}[sources.a]\npreset = \"standard\"\npublic_key = \"{key}\"\n"),
        &env(&[]),
    )
    .unwrap();
    assert!(config.sources["a"].secrets.is_empty());
    assert_eq!(config.sources["a"].public_key.as_deref(), Some(key));
    let found = problems(&format!(
        "{MINIMAL}[sources.a]\npreset = \"github\"\nsecret = \"x\"\npublic_key = \"{key}\"\n"
    ));
    assert_eq!(
        found,
        ["sources.a.public_key: the github preset verifies no public-key signature"]
    );
    let found = problems(&format!(
        "{MINIMAL}[sources.a]\npreset = \"standard\"\nverify = \"off\"\npublic_key = \"{key}\"\n"
    ));
    assert_eq!(
        found,
        ["sources.a: has both a public_key and verify = \"off\""]
    );
    let found = problems(&format!(
        "{MINIMAL}[sources.a]\npreset = \"standard\"\npublic_key = \"whpk_aGVsbG8=\"\n"
    ));
    assert!(found[0].starts_with("sources.a.public_key: "), "{found:?}");
}

#[test]
fn square_and_twilio_need_a_public_url_when_signed() {
    for preset in ["square", "twilio"] {
        let found = problems(&format!(
            "{MINIMAL}[sources.a]\npreset = \"{preset}\"\nsecret = \"k\"\n"
        ));
        assert!(
            found[0].starts_with(&format!(
                "sources.a.public_url: required by the {preset} preset"
            )),
            "{found:?}"
        );
        let ok = format!(
            "{MINIMAL}[sources.a]\npreset = \"{preset}\"\nsecret = \"k\"\npublic_url = \"https://h.example/webhooks/a\"\n"
        );
        assert!(load_str(&ok, &env(&[])).is_ok());
        let unsigned = format!("{MINIMAL}[sources.a]\npreset = \"{preset}\"\nverify = \"off\"\n");
        assert!(load_str(&unsigned, &env(&[])).is_ok());
    }
}

#[test]
fn log_format_is_text_by_default_json_when_asked_and_nothing_else() {
    let config = load_str(MINIMAL, &env(&[])).unwrap();
    assert_eq!(config.server.log_format, LogFormat::Text);
    let json = format!("{MINIMAL}log_format = \"json\"\n");
    assert_eq!(
        load_str(&json, &env(&[])).unwrap().server.log_format,
        LogFormat::Json
    );
    let text = format!("{MINIMAL}log_format = \"text\"\n");
    assert_eq!(
        load_str(&text, &env(&[])).unwrap().server.log_format,
        LogFormat::Text
    );
    for bad in ["JSON", "xml", ""] {
        let found = problems(&format!("{MINIMAL}log_format = \"{bad}\"\n"));
        assert_eq!(
            found,
            vec![format!(
                "server.log_format must be \"text\" or \"json\", not {bad:?}"
            )]
        );
    }
}
