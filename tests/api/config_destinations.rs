//! Start-up errors of `[destinations.NAME]` and `deliver` (SPEC §7),
//! through the real binary: every mistake of the file, an unset `${VAR}`
//! among them, in one refusal that names each key and prints no secret,
//! before any database is created. (Each kind of mistake on its own is
//! tested in `src/config/tests_destinations.rs`.)

use std::time::Duration;

use crate::helpers::*;

const SECRET: &str = "s3cr3t-dest";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_every_destination_mistake_at_once_and_prints_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("ledger.db");
    let database_url = format!("sqlite://{}", db_path.display());
    // A name no environment sets: the refusal must not depend on it alone.
    let unset = format!("HL_TEST_UNSET_{:08x}", rand::random::<u32>());
    let text = format!(
        r#"[server]
admin_token = "t"
[sources.s]
preset = "github"
secret = "k"
deliver = [{{ to = "nowhere" }}, {{ to = "app", actions = [""] }}, {{ to = "bus" }}]
[destinations.app]
kind = "http"
url = "https://user:{SECRET}@app.internal/h"
headers = {{ Authorization = "Bearer {SECRET}" }}
[destinations.files]
kind = "http"
url = "ftp://u:{SECRET}@files.internal/in"
sign = "off"
[destinations.bus]
kind = "nats"
url = "nats://{SECRET}@bus.internal:4222"
subject = "hookledger.{{tenant}}"
[destinations.bus2]
kind = "nats"
url = "nats://u:${{{unset}}}@bus.internal:4222"
"#
    );
    let config_path = dir.path().join("hookledger.toml");
    std::fs::write(&config_path, text).unwrap();
    let log = dir.path().join("refused.log");

    let mut process = Binary::start(
        &config_path,
        &[("DATABASE_URL", database_url.as_str())],
        Some(&log),
    );
    let status = process.wait_exit(Duration::from_secs(20)).await;
    let output = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "it started: {output}");
    for expect in [
        "sources.s.deliver[0].to: unknown destination \"nowhere\"",
        "sources.s.deliver[1].actions: an action glob may not be empty",
        "destinations.app: has no secret",
        "destinations.files.url must start with http:// or https://",
        "destinations.bus.subject: unknown placeholder {tenant}",
        &format!("destinations.bus2.url: environment variable {unset} is not set"),
    ] {
        assert_eq!(output.matches(expect).count(), 1, "{expect:?}: {output}");
    }
    assert!(!output.contains(SECRET), "a secret is printed: {output}");
    assert!(!db_path.exists(), "a refused start created the database");
}
