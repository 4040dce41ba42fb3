//! Unit tests of `[sources.NAME.reconcile]` and `horizon_secs` (SPEC §10).

use super::*;
use crate::sources::providers::GapFill;

const SERVER: &str = "[server]\nadmin_token = \"t\"\n";

fn load(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_str(&format!("{SERVER}{text}"), &env)
}

fn problems(text: &str) -> Vec<String> {
    load(text, &[]).expect_err("should be refused").0
}

#[test]
fn stripe_and_github_tables_load_with_their_defaults_and_expanded_credentials() {
    let config = load(
        r#"
[sources.stripe]
preset = "stripe"
secret = "whsec_x"
reconcile = { api_key = "${STRIPE_API_KEY}", types = ["invoice.*"], account = "acct_123" }
[sources.github]
preset = "github"
secret = "g"
reconcile = { token = "${GITHUB_TOKEN}", hook = "orgs/octo-org/hooks/7", settle_secs = 60 }
"#,
        &[
            ("STRIPE_API_KEY", "rk_live_secret"),
            ("GITHUB_TOKEN", "ghp_secret"),
        ],
    )
    .expect("valid");
    let stripe = config.sources["stripe"].reconcile.as_ref().unwrap();
    assert_eq!(stripe.kind, GapFill::StripeEvents);
    assert_eq!(stripe.credential.expose(), "rk_live_secret");
    assert_eq!(
        (
            stripe.interval_secs,
            stripe.lookback_secs,
            stripe.overlap_secs,
            stripe.settle_secs
        ),
        (300, 259_200, 60, 300)
    );
    assert_eq!(stripe.base_url, "https://api.stripe.com");
    assert_eq!(stripe.account.as_deref(), Some("acct_123"));
    let github = config.sources["github"].reconcile.as_ref().unwrap();
    assert_eq!(github.kind, GapFill::GithubDeliveries);
    assert_eq!(github.hook, "orgs/octo-org/hooks/7");
    assert_eq!(github.base_url, "https://api.github.com");
    assert_eq!(github.settle_secs, 60);
    let printed = format!("{config:?}");
    assert!(!printed.contains("rk_live_secret") && !printed.contains("ghp_secret"));
}

#[test]
fn a_reconcile_table_on_a_provider_that_lists_nothing_is_refused() {
    for preset in ["shopify", "acuity"] {
        let found = problems(&format!(
            "[sources.s]\npreset = \"{preset}\"\nsecret = \"x\"\nreconcile = {{ api_key = \"k\" }}\n"
        ));
        assert!(
            found.iter().any(|p| p.contains("sources.s.reconcile")
                && p.contains(&format!("the {preset} preset cannot be gap-filled"))),
            "{found:?}"
        );
    }
    let generic = problems(
        "[sources.s]\npreset = \"generic\"\nverify = \"off\"\n[sources.s.reconcile]\ntoken = \"k\"\n",
    );
    assert!(
        generic.iter().any(|p| p.contains("cannot be gap-filled")),
        "{generic:?}"
    );
}

#[test]
fn each_provider_needs_its_credential_and_only_its_keys() {
    let stripe = problems(
        "[sources.s]\npreset = \"stripe\"\nsecret = \"x\"\nreconcile = { token = \"t\", interval_secs = 0 }\n",
    );
    for expected in [
        "sources.s.reconcile.token: not a key of the stripe preset",
        "sources.s.reconcile.api_key is required",
        "sources.s.reconcile.interval_secs must be at least 1",
    ] {
        assert!(
            stripe.iter().any(|p| p.contains(expected)),
            "{expected}: {stripe:?}"
        );
    }
    let github = problems(
        "[sources.s]\npreset = \"github\"\nsecret = \"x\"\nreconcile = { token = \"t\", hook = \"repos/a/../hooks/1\" }\n",
    );
    assert!(
        github
            .iter()
            .any(|p| p.contains("sources.s.reconcile.hook")),
        "{github:?}"
    );
    let types: Vec<String> = (0..21).map(|i| format!("\"t{i}\"")).collect();
    let many = problems(&format!(
        "[sources.s]\npreset = \"stripe\"\nsecret = \"x\"\nreconcile = {{ api_key = \"k\", types = [{}] }}\n",
        types.join(", ")
    ));
    assert!(
        many.iter().any(|p| p.contains("at most 20 types")),
        "{many:?}"
    );
    let unknown = problems(
        "[sources.s]\npreset = \"stripe\"\nsecret = \"x\"\nreconcile = { api_key = \"k\", lookback = 1 }\n",
    );
    assert!(
        unknown
            .iter()
            .any(|p| p.contains("unknown field `lookback`")),
        "{unknown:?}"
    );
}

#[test]
fn horizons_come_from_the_preset_unless_set() {
    let config = load(
        r#"
[sources.stripe]
preset = "stripe"
secret = "x"
[sources.shopify]
preset = "shopify"
secret = "x"
[sources.gitlab]
preset = "gitlab"
secret = "x"
[sources.own]
preset = "github"
secret = "x"
horizon_secs = 86400
"#,
        &[],
    )
    .expect("valid");
    let horizon = |name: &str| config.sources[name].horizon_secs;
    assert_eq!(horizon("stripe"), 30 * 86_400);
    assert_eq!(horizon("shopify"), 2 * 86_400);
    assert_eq!(horizon("gitlab"), 3 * 86_400);
    assert_eq!(horizon("own"), 86_400);
    let zero = problems("[sources.s]\npreset = \"stripe\"\nsecret = \"x\"\nhorizon_secs = 0\n");
    assert!(
        zero.iter()
            .any(|p| p.contains("horizon_secs must be at least 1")),
        "{zero:?}"
    );
}
