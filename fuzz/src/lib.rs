//! What the fuzz targets share: one configured source per signature scheme,
//! and a cursor that cuts the fuzzer's bytes into the fields a target needs.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use hookledger::config;
use hookledger::sources::Source;

/// One source of each signature scheme (two generic ones: hex with a prefix,
/// base64 without), plus an unsigned generic one for parsing.
pub const SOURCES: &str = r#"
[server]
admin_token = "t"

[sources.stripe]
preset = "stripe"
secret = "whsec_fuzz_stripe"

[sources.github]
preset = "github"
secret = "fuzz-github"

[sources.shopify]
preset = "shopify"
secret = "fuzz-shopify"

[sources.acuity]
preset = "acuity"
secret = "fuzz-acuity"

[sources.standard]
preset = "standard"
secret = "whsec_ZnV6ei1zdGFuZGFyZC13ZWJob29rcy1rZXk="

[sources.generic_hex]
preset = "generic"
secret = "fuzz-generic-hex"
signature_header = "X-Signature"
signature_prefix = "sha256="

[sources.generic_b64]
preset = "generic"
secret = "fuzz-generic-b64"
signature_header = "X-Sig"
signature_encoding = "base64"

[sources.plain]
preset = "generic"
verify = "off"
"#;

/// The signed sources and the headers each one's signature lives in.
pub const SIGNED: [(&str, &[&str]); 7] = [
    ("stripe", &["Stripe-Signature"]),
    ("github", &["X-Hub-Signature-256"]),
    ("shopify", &["X-Shopify-Hmac-Sha256"]),
    ("acuity", &["X-Acuity-Signature"]),
    (
        "standard",
        &["webhook-id", "webhook-timestamp", "webhook-signature"],
    ),
    ("generic_hex", &["X-Signature"]),
    ("generic_b64", &["X-Sig"]),
];

/// Every source of [`SOURCES`], built once.
pub fn sources() -> &'static HashMap<String, Source> {
    static SOURCES_BUILT: OnceLock<HashMap<String, Source>> = OnceLock::new();
    SOURCES_BUILT.get_or_init(|| {
        let no_env: BTreeMap<String, String> = BTreeMap::new();
        config::load_str(SOURCES, &no_env)
            .expect("the fuzz config is valid")
            .sources
            .into_iter()
            .map(|(name, c)| (name, Source::new(c)))
            .collect()
    })
}

/// Cuts fuzzer input into fields: fixed-size numbers, and byte strings
/// that end at a 0x00 separator (or at the end of the input).
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input(data)
    }

    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        for b in &mut bytes {
            *b = self.byte();
        }
        u64::from_le_bytes(bytes)
    }

    pub fn i64(&mut self) -> i64 {
        self.u64() as i64
    }

    /// The bytes up to the next 0x00 (which is consumed).
    pub fn field(&mut self) -> &'a [u8] {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        let field = &self.0[..end];
        self.0 = self.0.get(end + 1..).unwrap_or(&[]);
        field
    }

    /// The next field as text (invalid UTF-8 replaced).
    pub fn text(&mut self) -> String {
        String::from_utf8_lossy(self.field()).into_owned()
    }

    /// The next field as text; an empty field is `None`.
    pub fn maybe_text(&mut self) -> Option<String> {
        Some(self.text()).filter(|t| !t.is_empty())
    }

    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}
