//! The shipped config's development values (SPEC §1–2). `hookledger.toml`
//! carries an admin token and source secrets that are public in this
//! repository, so that `cargo run --release` starts with an empty
//! environment. With them anyone can forge a signed webhook or read the
//! admin API, so a server that others can reach must not use them: it
//! refuses to start on an address other than loopback while the admin token
//! or any source secret is one of them. The values are read from the shipped
//! file itself (compiled in), so this list cannot fall behind it.
//!
//! A value is compared by what it does, not by its spelling: without the
//! whitespace around it, and a Standard Webhooks secret also by the key it
//! decodes to, since `whsec_…` with or without its base64 padding is the
//! same HMAC key (an unpadded copy of the shipped secret signs exactly as
//! the shipped one does).

use std::collections::BTreeSet;
use std::net::{SocketAddr, ToSocketAddrs};

use crate::config::Config;

const SHIPPED_CONFIG: &str = include_str!("../hookledger.toml");

/// Keys of the shipped config whose literal values are credentials.
/// A shipped `public_key` is one too: its private key is in the repository
/// beside its fixture, so anyone can sign for it.
const CREDENTIAL_KEYS: [&str; 3] = ["admin_token", "secret", "public_key"];

/// The forms a credential takes in use: its bytes without surrounding
/// whitespace, and the HMAC key it decodes to if it is a Standard Webhooks
/// secret.
fn effective_forms(value: &str) -> Vec<Vec<u8>> {
    let trimmed = value.trim();
    let mut forms = vec![trimmed.as_bytes().to_vec()];
    forms.extend(crate::sources::standard_webhooks_key(trimmed));
    forms.extend(
        crate::sources::providers::standard::public_key(trimmed).map(|k| k.to_bytes().to_vec()),
    );
    forms
}

/// Whether `value` is, in effect, one of the shipped values.
fn is_shipped(shipped: &BTreeSet<Vec<u8>>, value: &str) -> bool {
    effective_forms(value)
        .iter()
        .any(|form| shipped.contains(form))
}

/// Every literal admin token and secret of the shipped config, in each of
/// its effective forms.
fn shipped_values() -> BTreeSet<Vec<u8>> {
    fn walk(value: &toml::Value, out: &mut BTreeSet<Vec<u8>>) {
        if let toml::Value::Table(table) = value {
            for (key, value) in table {
                match value {
                    toml::Value::String(s)
                        if CREDENTIAL_KEYS.contains(&key.as_str()) && !s.contains("${") =>
                    {
                        out.extend(effective_forms(s));
                    }
                    _ => walk(value, out),
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    let parsed: toml::Value =
        toml::from_str(SHIPPED_CONFIG).expect("the shipped config is valid TOML (a unit test)");
    walk(&parsed, &mut out);
    out
}

/// The config keys that hold one of the shipped development values.
pub fn keys_in_use(config: &Config) -> Vec<String> {
    let shipped = shipped_values();
    let mut keys = Vec::new();
    if is_shipped(&shipped, config.server.admin_token.expose()) {
        keys.push("server.admin_token".to_string());
    }
    for (name, source) in &config.sources {
        if source
            .secrets
            .iter()
            .any(|s| is_shipped(&shipped, s.expose()))
        {
            keys.push(format!("sources.{name}.secret"));
        }
        if source
            .public_key
            .as_deref()
            .is_some_and(|k| is_shipped(&shipped, k))
        {
            keys.push(format!("sources.{name}.public_key"));
        }
    }
    keys
}

/// Refuses `addr` unless it is loopback or no development value is in use.
pub fn check_address(config: &Config, addr: SocketAddr) -> anyhow::Result<()> {
    let ip = addr.ip().to_canonical();
    if ip.is_loopback() {
        return Ok(());
    }
    let keys = keys_in_use(config);
    if keys.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "refusing to serve on {addr}, which is not a loopback address, while {} still hold the \
         shipped config's development values (public in hookledger's repository, so anyone could \
         sign webhooks or use the admin API with them): set them from the environment, e.g. \
         secret = \"${{STRIPE_WEBHOOK_SECRET}}\" and HOOKLEDGER_ADMIN_TOKEN, or bind 127.0.0.1",
        keys.join(", ")
    )
}

/// [`check_address`] for every address `bind` resolves to, before binding.
pub fn check_bind(config: &Config) -> anyhow::Result<()> {
    let bind = &config.server.bind;
    // An address that does not resolve fails at the bind itself, with the
    // resolver's error.
    for addr in bind.to_socket_addrs().into_iter().flatten() {
        check_address(config, addr)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_admin_token_and_every_shipped_secret_are_known() {
        let no_env = std::collections::BTreeMap::<String, String>::new();
        let config = crate::config::load_str(SHIPPED_CONFIG, &no_env).unwrap();
        let mut expected = vec!["server.admin_token".to_string()];
        for (name, source) in &config.sources {
            if !source.secrets.is_empty() {
                expected.push(format!("sources.{name}.secret"));
            }
            if source.public_key.is_some() {
                expected.push(format!("sources.{name}.public_key"));
            }
        }
        assert!(expected.len() > 2, "{expected:?}");
        assert_eq!(keys_in_use(&config), expected);
    }
}
