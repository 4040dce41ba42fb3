//! The server URL of a NATS destination, taken apart once: the address
//! async-nats connects to (without credentials), the credentials as
//! connect options (async-nats 0.46 ignores any in the URL), the text that
//! errors may show, and the secrets that must never appear in them.

use async_nats::ConnectOptions;
use percent_encoding::percent_decode_str;

use crate::config::{redact_url, Secret};

/// Credentials the URL carried.
enum Credentials {
    None,
    /// `nats://user:password@host`.
    UserPassword(String, Secret),
    /// `nats://token@host`.
    Token(Secret),
}

/// Where to connect, and how to speak of it.
pub struct Endpoint {
    /// The URL without its userinfo; what async-nats is given.
    address: String,
    /// `address` through `redact_url`: the only form errors show.
    shown: String,
    credentials: Credentials,
}

impl Endpoint {
    /// `Err` holds a message without the URL (it may hold a password):
    /// configuration checking refuses such a URL before this runs.
    pub fn parse(url: &Secret) -> Result<Endpoint, String> {
        let mut parsed = url::Url::parse(url.expose())
            .map_err(|_| "the NATS destination's url is not a URL".to_string())?;
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let credentials = match (parsed.username(), parsed.password()) {
            ("", None) => Credentials::None,
            (token, None) => Credentials::Token(Secret::new(decode(token))),
            (user, Some(password)) => {
                Credentials::UserPassword(decode(user), Secret::new(decode(password)))
            }
        };
        // Neither fails on a nats:// or tls:// URL with a host.
        let _ = parsed.set_username("");
        let _ = parsed.set_password(None);
        let address = parsed.to_string();
        Ok(Endpoint {
            shown: redact_url(&address),
            address,
            credentials,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// The URL as errors show it: no userinfo, no query.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// `options` with the URL's credentials.
    pub fn authenticate(&self, options: ConnectOptions) -> ConnectOptions {
        match &self.credentials {
            Credentials::None => options,
            Credentials::UserPassword(user, password) => {
                options.user_and_password(user.clone(), password.expose().to_string())
            }
            Credentials::Token(token) => options.token(token.expose().to_string()),
        }
    }

    /// `text` (an error from async-nats or the server) with every secret of
    /// the URL replaced: none is known to be echoed, and this makes sure.
    pub fn scrub(&self, text: String) -> String {
        let secret = match &self.credentials {
            Credentials::None => return text,
            Credentials::UserPassword(_, password) => password.expose(),
            Credentials::Token(token) => token.expose(),
        };
        if secret.is_empty() {
            text
        } else {
            text.replace(secret, "[redacted]")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(&Secret::new(url)).unwrap()
    }

    #[test]
    fn credentials_leave_the_address_and_the_shown_text() {
        let e = endpoint("nats://alice:p%40ss@nats.internal:4222");
        assert_eq!(e.address(), "nats://nats.internal:4222");
        assert_eq!(e.shown(), "nats://nats.internal:4222");
        assert!(matches!(&e.credentials,
            Credentials::UserPassword(user, pass) if user == "alice" && pass.expose() == "p@ss"));
        assert_eq!(
            e.scrub("auth failed for p@ss".into()),
            "auth failed for [redacted]"
        );

        let t = endpoint("tls://s3cr3t-token@127.0.0.1:4443?x=1");
        assert_eq!(t.address(), "tls://127.0.0.1:4443?x=1");
        assert_eq!(t.shown(), "tls://127.0.0.1:4443?[redacted]");
        assert!(
            matches!(&t.credentials, Credentials::Token(tok) if tok.expose() == "s3cr3t-token")
        );
        assert!(!t.scrub("bad s3cr3t-token".into()).contains("s3cr3t"));

        let plain = endpoint("nats://127.0.0.1:4222");
        assert!(matches!(plain.credentials, Credentials::None));
        assert_eq!(plain.scrub("as is".into()), "as is");
    }

    #[test]
    fn an_unparseable_url_is_an_error_without_the_url() {
        let err = Endpoint::parse(&Secret::new("nats://u:hunter2@[::1"))
            .err()
            .unwrap();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
