//! The console's session cookie (SPEC §9): after a login with the admin
//! token, the browser holds `<expires_ms>.<mac>`, where `mac` is the
//! base64url HMAC-SHA256 of the expiry under a key derived from the admin
//! token. Nothing is stored on the server: a cookie is good until its
//! expiry (12 h after the login) and dies as soon as the admin token
//! changes, because the key changes with it. The MAC is checked with
//! `hmac`'s constant-time comparison. Pure: the caller gives the time.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// The cookie's name; its path is `/console`, so no other route sees it.
pub const COOKIE_NAME: &str = "hookledger_console";

/// How long a login lasts.
pub const SESSION_SECS: i64 = 12 * 60 * 60;

/// Separates this use of the admin token from any other HMAC keyed by it,
/// and versions the format.
const KEY_LABEL: &[u8] = b"hookledger console session v1";

type HmacSha256 = Hmac<Sha256>;

/// The session key: the admin token, through HMAC, never the token itself.
fn key(admin_token: &Secret) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(admin_token.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(KEY_LABEL);
    mac.finalize().into_bytes().into()
}

fn mac_of(admin_token: &Secret, expires_ms: i64) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(&key(admin_token)).expect("HMAC takes a key of any length");
    mac.update(expires_ms.to_string().as_bytes());
    mac
}

/// A new session's cookie value, expiring [`SESSION_SECS`] after `now_ms`.
pub fn issue(admin_token: &Secret, now_ms: i64) -> String {
    let expires_ms = now_ms.saturating_add(SESSION_SECS * 1000);
    let tag = mac_of(admin_token, expires_ms).finalize().into_bytes();
    format!("{expires_ms}.{}", URL_SAFE_NO_PAD.encode(tag))
}

/// Whether `value` is a session this admin token issued that has not
/// expired at `now_ms`.
pub fn is_valid(admin_token: &Secret, value: &str, now_ms: i64) -> bool {
    let Some((expires, tag)) = value.split_once('.') else {
        return false;
    };
    // Digits only: `+1` or ` 1` would parse but are not what was signed.
    if expires.is_empty() || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let Ok(expires_ms) = expires.parse::<i64>() else {
        return false;
    };
    let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
        return false;
    };
    if mac_of(admin_token, expires_ms).verify_slice(&tag).is_err() {
        return false;
    }
    // A cookie signed for longer than a session (none is) is refused too.
    now_ms < expires_ms && expires_ms - now_ms <= SESSION_SECS * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn token(t: &str) -> Secret {
        Secret::new(t)
    }

    #[test]
    fn a_cookie_is_good_until_twelve_hours_after_the_login() {
        let cookie = issue(&token("t"), NOW);
        assert!(is_valid(&token("t"), &cookie, NOW));
        assert!(is_valid(
            &token("t"),
            &cookie,
            NOW + SESSION_SECS * 1000 - 1
        ));
        assert!(!is_valid(&token("t"), &cookie, NOW + SESSION_SECS * 1000));
    }

    #[test]
    fn another_admin_token_voids_every_cookie() {
        let cookie = issue(&token("old"), NOW);
        assert!(!is_valid(&token("new"), &cookie, NOW));
    }

    #[test]
    fn a_cookie_whose_expiry_or_mac_was_changed_is_refused() {
        let cookie = issue(&token("t"), NOW);
        let (expires, tag) = cookie.split_once('.').unwrap();
        let later: i64 = expires.parse::<i64>().unwrap() + 1000;
        for forged in [
            format!("{later}.{tag}"),
            format!("+{expires}.{tag}"),
            format!("{expires}.{}", &tag[1..]),
            format!("{expires}.{tag}A"),
            expires.to_string(),
            format!(".{tag}"),
            String::new(),
        ] {
            assert!(!is_valid(&token("t"), &forged, NOW), "{forged:?}");
        }
    }

    #[test]
    fn a_cookie_signed_for_longer_than_a_session_is_refused() {
        // A cookie that claims to expire later than any login grants
        // (as one signed under a clock set far ahead would).
        let cookie = issue(&token("t"), NOW + 1000);
        assert!(!is_valid(&token("t"), &cookie, NOW - 1));
        assert!(is_valid(&token("t"), &cookie, NOW + 1000));
    }
}
