//! `--fetch`: a provider's keys over HTTP, read by the engine's own code.
//!
//! The answers go through [`KeysRecord::apply_discovery`] and [`KeysRecord::apply_jwks`], the
//! functions the filter uses for what its gateway cluster brings back, so a discovery document
//! or JWKS the filter would refuse is refused here with the same words. Unlike the filter, the
//! CLI reaches the URL directly (not through a gateway cluster). Redirects are not followed,
//! as the filter does not follow them.

use std::time::Duration;
use tollgate::config::{HttpUrl, RemoteKeys};
use tollgate::jwk::JwkSet;
use tollgate::keys::{FetchAnswer, KeysRecord};

/// Largest answer read; the engine applies its own, smaller, limits to what it gets.
const MAX_BODY: u64 = 1024 * 1024;

/// Fetches the keys of a provider; `Ok` holds the keys and where they came from.
pub fn keys(issuer: &str, remote: &RemoteKeys, now_ms: u64) -> Result<(JwkSet, String), String> {
    let mut record = KeysRecord::default();
    let mut origin = String::from("fetched from ");
    let jwks_url = if remote.discovery {
        let answer = get(&remote.url, remote.timeout_ms)?;
        let url = record.apply_discovery(answer.view(), issuer, remote, now_ms, 0)?;
        origin.push_str(&format!("{} via {}", url, remote.url));
        url
    } else {
        origin.push_str(&remote.url.to_string());
        remote.url.clone()
    };
    let answer = get(&jwks_url, remote.timeout_ms)?;
    let set = record.apply_jwks(answer.view(), remote, now_ms, 0)?;
    Ok((set, origin))
}

struct Answer {
    status: u32,
    cache_control: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn view(&self) -> FetchAnswer<'_> {
        FetchAnswer {
            status: Some(self.status),
            cache_control: self.cache_control.as_deref(),
            body: &self.body,
            // A body over MAX_BODY is an error of `get`.
            oversized: false,
        }
    }
}

fn get(url: &HttpUrl, timeout_ms: u64) -> Result<Answer, String> {
    let url = url.to_string();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(timeout_ms)))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut response = agent
        .get(&url)
        .header("accept", "application/json")
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = u32::from(response.status().as_u16());
    let cache_control = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok(Answer {
        status,
        cache_control,
        body,
    })
}
