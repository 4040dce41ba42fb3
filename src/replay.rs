//! `hookledger replay`: sends fixtures to a running hookledger, each signed
//! the way its source's provider signs (fresh timestamp, the secret from the
//! config). Provider ids in the fixture (`webhook-id`, `X-GitHub-Delivery`,
//! …) are kept, so `--times N` sends true duplicates. Redirects are never
//! followed: a signed body goes only where it was sent.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::config::Config;
use crate::sources::Source;

/// `fixtures/<source>/<name>.json`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    pub source: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    pub body: Option<serde_json::Value>,
    pub body_text: Option<String>,
    /// A file beside the fixture holding the private key (`whsk_…`) its
    /// source's asymmetric scheme signs with (the `standard` preset with
    /// `public_key`, SPEC §11): a development key, public like the
    /// shipped secrets.
    pub signing_key: Option<String>,
}

impl Fixture {
    pub fn load(path: &Path) -> anyhow::Result<Fixture> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let fixture: Fixture = serde_json::from_str(&text)
            .with_context(|| format!("parsing fixture {}", path.display()))?;
        if fixture.body.is_some() == fixture.body_text.is_some() {
            bail!(
                "{}: a fixture has exactly one of body and body_text",
                path.display()
            );
        }
        Ok(fixture)
    }

    /// The bytes sent: `body` as compact JSON, or `body_text` as is.
    pub fn body_bytes(&self) -> Vec<u8> {
        match (&self.body, &self.body_text) {
            (Some(json), _) => serde_json::to_vec(json).expect("a JSON value serializes"),
            (None, Some(text)) => text.clone().into_bytes(),
            (None, None) => Vec::new(),
        }
    }

    /// The fixture's headers with the source's signature headers put in
    /// (replacing any of the same name), signed at `now_secs`.
    pub fn signed_headers(
        &self,
        source: &Source,
        body: &[u8],
        now_secs: i64,
    ) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, value) in source.sign(&headers, body, now_secs) {
            headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name));
            headers.push((name, value));
        }
        headers
    }
}

/// Where `replay` sends without `--url`: the server of the same config, at
/// its `bind` (an unspecified address such as `0.0.0.0` is reached on
/// loopback).
pub fn default_url(bind: &str) -> String {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(mut addr) => {
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            format!("http://{addr}")
        }
        // A host name: as written.
        Err(_) => format!("http://{bind}"),
    }
}

/// Every `*.json` under the given files and directories, sorted per argument.
pub fn collect_paths(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out)?;
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut out)?;
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub sent: usize,
    pub accepted: usize,
    pub duplicate: usize,
    pub ignored: usize,
    pub errors: usize,
}

impl Summary {
    pub fn all_succeeded(&self) -> bool {
        self.errors == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sent: {} accepted, {} duplicate, {} ignored, {} errors",
            self.sent, self.accepted, self.duplicate, self.ignored, self.errors
        )
    }
}

struct Prepared {
    path: PathBuf,
    fixture: Fixture,
    source: Arc<Source>,
    body: Vec<u8>,
}

/// Sends every fixture `times` times, `concurrency` at once, printing one
/// line per delivery.
pub async fn run(
    config: &Config,
    paths: &[PathBuf],
    url: &str,
    times: u32,
    concurrency: u32,
) -> anyhow::Result<Summary> {
    let mut prepared = Vec::new();
    for path in collect_paths(paths)? {
        let mut fixture = Fixture::load(&path)?;
        let source_config = config.sources.get(&fixture.source).with_context(|| {
            format!(
                "{}: source {:?} is not in the config",
                path.display(),
                fixture.source
            )
        })?;
        let mut source = Source::new(source_config.clone());
        if let Some(file) = &fixture.signing_key {
            let key_path = path.parent().unwrap_or(Path::new(".")).join(file);
            let text = std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            source = source
                .with_signing_key(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", key_path.display()))?;
        }
        let source = Arc::new(source);
        let body = fixture.body_bytes();
        // An id the signer had to make up (Standard Webhooks without
        // `webhook-id`) is kept for every copy, so copies are duplicates.
        let now = chrono::Utc::now().timestamp();
        for (name, value) in source.sign(&fixture_headers(&fixture), &body, now) {
            if name.eq_ignore_ascii_case("webhook-id")
                && !fixture
                    .headers
                    .keys()
                    .any(|k| k.eq_ignore_ascii_case(&name))
            {
                fixture.headers.insert(name, value);
            }
        }
        prepared.push(Prepared {
            path,
            fixture,
            source,
            body,
        });
    }
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let base = url.trim_end_matches('/').to_string();
    let deliveries = (0..times).flat_map(|_| prepared.iter());
    let mut results = futures_util::stream::iter(deliveries.map(|p| send(&client, &base, p)))
        .buffer_unordered(concurrency as usize);
    let mut summary = Summary::default();
    while let Some((status, outcome, p)) = results.next().await {
        summary.sent += 1;
        match outcome.as_str() {
            "accepted" if (200..300).contains(&status) => summary.accepted += 1,
            "duplicate" if (200..300).contains(&status) => summary.duplicate += 1,
            "ignored" if (200..300).contains(&status) => summary.ignored += 1,
            _ => summary.errors += 1,
        }
        println!(
            "{status} {outcome} {} {}",
            p.fixture.source,
            p.path.display()
        );
    }
    Ok(summary)
}

fn fixture_headers(fixture: &Fixture) -> Vec<(String, String)> {
    fixture
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One delivery: (HTTP status or 0, outcome word, the fixture).
async fn send<'a>(
    client: &reqwest::Client,
    base: &str,
    p: &'a Prepared,
) -> (u16, String, &'a Prepared) {
    let now = chrono::Utc::now().timestamp();
    // A timestamp or signature inside the body is made fresh first.
    let body = p
        .source
        .restamp(&p.body, now)
        .unwrap_or_else(|| p.body.clone());
    let headers = p.fixture.signed_headers(&p.source, &body, now);
    let mut request = client
        .post(format!("{base}/webhooks/{}", p.fixture.source))
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            if response.status().is_redirection() {
                return (status, "redirect_not_followed".to_string(), p);
            }
            let bytes = response.bytes().await.unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let outcome = body["status"]
                .as_str()
                .or_else(|| body["error"]["code"].as_str())
                .unwrap_or("unreadable_answer")
                .to_string();
            (status, outcome, p)
        }
        Err(e) => (0, format!("connection_error({e})"), p),
    }
}
