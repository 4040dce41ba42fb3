//! Start-up checks of the configuration (issue 11, item 9): a TOML syntax
//! error is located without quoting the line (it may hold a secret); an
//! empty `signature_header` is refused; and the server refuses to listen
//! beyond loopback while a shipped development value is in use (SPEC §2),
//! which also makes the container image take its credentials from the
//! environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hookledger::config;

use crate::helpers::*;

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn problems(text: &str) -> Vec<String> {
    let no_env: BTreeMap<String, String> = BTreeMap::new();
    config::load_str(text, &no_env)
        .expect_err("the config should be refused")
        .0
}

#[test]
fn a_toml_syntax_error_names_its_line_without_quoting_it() {
    let text = "[server]\nbind = \"127.0.0.1:8080\"\nadmin_token = \"tok-s3cr3t-value\n";
    let found = problems(text);
    let message = found.join("\n");
    assert!(
        !message.contains("s3cr3t"),
        "the error quotes the offending line: {message}"
    );
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("TOML"), "{message}");
}

#[test]
fn an_empty_or_malformed_signature_header_is_a_start_up_error() {
    for header in ["", "X Signature", "X-Sig:"] {
        let text = format!(
            "[server]\nadmin_token = \"t\"\n[sources.billing]\npreset = \"generic\"\n\
             secret = \"k\"\nsignature_header = \"{header}\"\n"
        );
        let found = problems(&text);
        assert!(
            found
                .iter()
                .any(|p| p.contains("sources.billing.signature_header")),
            "{header:?}: {found:?}"
        );
    }
}

/// A config file with the shipped sources but every development value
/// replaced, through `${VAR}`s.
fn env_of_the_file(text: &str) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').unwrap();
        let name = after[..end].to_string();
        let value = if name == "STANDARD_WEBHOOK_SECRET" {
            "whsec_dGVzdC1pbWFnZS1zZWNyZXQ=".to_string()
        } else {
            format!("value-of-{name}-{:08x}", rand::random::<u32>())
        };
        env.insert(name, value);
        rest = &after[end + 1..];
    }
    env
}

/// The real binary with the shipped `hookledger.toml` on a non-loopback
/// address exits with an error naming the keys (not their values) and
/// creates no database; still so when only the admin token comes from the
/// environment; and the same config on loopback starts (`cargo run
/// --release`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_a_public_bind_while_a_shipped_development_value_is_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("ledger.db");
    let database_url = format!("sqlite://{}", db_path.display());
    let shipped = repo_file("hookledger.toml");
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let public = format!("0.0.0.0:{free_port}");
    for (case, token) in [
        ("shipped values", None),
        ("own admin token", Some("a-real-token")),
    ] {
        let log = dir.path().join(format!("{}.log", case.replace(' ', "-")));
        let mut env = vec![
            ("HOOKLEDGER_BIND", public.as_str()),
            ("DATABASE_URL", database_url.as_str()),
        ];
        if let Some(token) = token {
            env.push(("HOOKLEDGER_ADMIN_TOKEN", token));
        }
        let mut process = Binary::start(&shipped, &env, Some(&log));
        let status = process.wait_exit(Duration::from_secs(20)).await;
        let output = std::fs::read_to_string(&log).unwrap();
        assert!(!status.success(), "{case}: it served on {public}: {output}");
        assert!(
            output.contains("not a loopback address"),
            "{case}: {output}"
        );
        assert!(output.contains("sources.stripe.secret"), "{case}: {output}");
        assert_eq!(
            output.contains("server.admin_token"),
            token.is_none(),
            "{case}: {output}"
        );
        for value in [
            "dev-admin-token",
            "whsec_dev_stripe_secret",
            "dev-github-secret",
        ] {
            assert!(!output.contains(value), "{case}: the log shows {value}");
        }
        assert!(
            !db_path.exists(),
            "{case}: a refused start created the database"
        );
    }

    let client = reqwest::Client::new();
    let process = Binary::start(&shipped, &[("DATABASE_URL", database_url.as_str())], None);
    process.wait_ready(&client).await;
}

/// The Dockerfile's image listens on 0.0.0.0: the config it copies in must
/// not start with an empty environment (every credential comes from a
/// `${VAR}`, and a missing one is named), and with the variables set it
/// loads and passes the development-value check on its address.
#[test]
fn the_container_image_takes_every_credential_from_the_environment() {
    let dockerfile = std::fs::read_to_string(repo_file("Dockerfile")).unwrap();
    let copied = dockerfile
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("COPY ")?;
            rest.strip_suffix(" /etc/hookledger/hookledger.toml")
        })
        .expect("the Dockerfile copies a config to /etc/hookledger/hookledger.toml");
    let bind = dockerfile
        .split_whitespace()
        .find_map(|word| word.strip_prefix("HOOKLEDGER_BIND="))
        .expect("the Dockerfile sets HOOKLEDGER_BIND");
    let text = std::fs::read_to_string(repo_file(copied)).unwrap();

    let only_bind: BTreeMap<String, String> =
        [("HOOKLEDGER_BIND".to_string(), bind.to_string())].into();
    let refused = config::load_str(&text, &only_bind);
    let missing = match refused {
        Ok(config) => panic!(
            "{copied} starts with an empty environment on {}, with its literal admin token and secrets",
            config.server.bind
        ),
        Err(e) => e.0,
    };
    assert!(
        missing.iter().any(|p| p.contains("HOOKLEDGER_ADMIN_TOKEN")),
        "{missing:?}"
    );
    assert!(
        missing.iter().any(|p| p.contains("STRIPE_WEBHOOK_SECRET")),
        "{missing:?}"
    );

    let mut env = env_of_the_file(&text);
    env.insert("HOOKLEDGER_BIND".into(), bind.into());
    let config = config::load_str(&text, &env).expect("the image's config with its variables");
    assert_eq!(config.server.bind, "0.0.0.0:8080");
    assert!(config.sources.len() >= 6, "{:?}", config.sources.keys());
    hookledger::dev_values::check_address(&config, bind.parse().unwrap())
        .expect("no development value left");
    // The build stage compiles the shipped config in (the check above).
    assert!(
        dockerfile.contains("hookledger.toml ./"),
        "the build stage copies hookledger.toml"
    );
    // Operating it (issue 14, item 7): dependencies cached in a layer of
    // their own, a health check, and a grace that `docker stop` lets run.
    let stub = dockerfile.find("cargo build").expect("a build");
    let sources = dockerfile
        .find("COPY src ./src")
        .expect("the sources copied");
    assert!(
        stub < sources,
        "dependencies are built before the sources arrive"
    );
    let healthcheck = dockerfile
        .lines()
        .skip_while(|l| !l.starts_with("HEALTHCHECK"))
        .take(2)
        .collect::<String>();
    assert!(healthcheck.contains("/healthz"), "{healthcheck}");
    assert!(dockerfile.contains("\nSTOPSIGNAL SIGTERM\n"));
    assert!(
        config.server.shutdown_grace_secs < DOCKER_DEFAULT_STOP_TIMEOUT_SECS,
        "a grace of {} s is cut short by docker stop's default {DOCKER_DEFAULT_STOP_TIMEOUT_SECS} s",
        config.server.shutdown_grace_secs
    );
    let ignored = std::fs::read_to_string(repo_file(".dockerignore")).unwrap();
    assert!(
        ignored.lines().any(|l| l == "fixtures/**/*.whsk"),
        "{ignored}"
    );
}

/// How long `docker stop` waits after SIGTERM before it kills, unless told.
const DOCKER_DEFAULT_STOP_TIMEOUT_SECS: u64 = 10;
