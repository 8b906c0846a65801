//! Counters and gauges through the proxy-wasm metrics ABI.
//!
//! The ABI has no labels, so each series is its own metric whose name carries the labels as
//! `.name.value` pairs (`tollgate.requests.provider.corp.decision.allow`); Envoy adds the
//! `wasmcustom.` prefix, and the `stats_tags` of the example bootstraps turn the pairs back into
//! Prometheus labels. Metrics are defined on first use and remembered per worker.

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;
use std::collections::HashMap;

/// Distinct series a worker defines at most; beyond, new ones are dropped, not defined.
const MAX_SERIES: usize = 4096;

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
}

/// Keeps a label value to characters that survive stat names and Prometheus: `[A-Za-z0-9_-]`.
fn label(value: &str) -> String {
    value
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Metrics {
    fn id(&mut self, kind: MetricType, name: String) -> Option<u32> {
        if let Some(id) = self.ids.get(&name) {
            return Some(*id);
        }
        if self.ids.len() >= MAX_SERIES {
            return None;
        }
        let id = hostcalls::define_metric(kind, &name).ok()?;
        self.ids.insert(name, id);
        Some(id)
    }

    fn count(&mut self, name: String) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            let _ = hostcalls::increment_metric(id, 1);
        }
    }

    pub fn request(&mut self, provider: Option<&str>, decision: &str) {
        let provider = label(provider.unwrap_or("none"));
        self.count(format!(
            "tollgate.requests.provider.{provider}.decision.{decision}"
        ));
    }

    pub fn denial(&mut self, reason: &str) {
        self.count(format!("tollgate.denials.reason.{}", label(reason)));
    }

    pub fn jwks_fetch(&mut self, provider: &str, ok: bool) {
        let outcome = if ok { "fetches" } else { "failures" };
        self.count(format!(
            "tollgate.jwks.{outcome}.provider.{}",
            label(provider)
        ));
    }

    pub fn jwks_age(&mut self, provider: &str, age_seconds: u64) {
        let name = format!("tollgate.jwks.age_seconds.provider.{}", label(provider));
        if let Some(id) = self.id(MetricType::Gauge, name) {
            let _ = hostcalls::record_metric(id, age_seconds);
        }
    }

    /// A JWT signature verified (not a remembered one).
    pub fn jwt_verified(&mut self, provider: &str) {
        self.count(format!(
            "tollgate.jwt.verifications.provider.{}",
            label(provider)
        ));
    }

    pub fn introspection_call(&mut self, provider: &str, ok: bool) {
        let outcome = if ok { "calls" } else { "failures" };
        self.count(format!(
            "tollgate.introspection.{outcome}.provider.{}",
            label(provider)
        ));
    }

    pub fn introspection_cache(&mut self, provider: &str, hit: bool) {
        let outcome = if hit { "hits" } else { "misses" };
        self.count(format!(
            "tollgate.introspection.cache_{outcome}.provider.{}",
            label(provider)
        ));
    }

    pub fn rate_limited(&mut self, policy: &str, limit: &str) {
        self.count(format!(
            "tollgate.ratelimited.policy.{}.limit.{}",
            label(policy),
            label(limit)
        ));
    }
}
