//! Counters and gauges through the proxy-wasm metrics ABI.
//!
//! The ABI has no labels, so each series is its own metric whose name carries the labels as
//! `.name.value` pairs (`tollgate.requests.provider.corp.decision.allow`); Envoy adds the
//! `wasmcustom.` prefix, and the `stats_tags` of the example bootstraps turn the pairs back into
//! Prometheus labels. Metrics are defined on first use and remembered per worker.
//!
//! Counters are added up in the worker and handed to the host at each tick ([`Metrics::flush`],
//! every 100 ms): a host call costs about as much as the rest of a remembered token's decision,
//! and Envoy publishes its stats every few seconds anyway. What a worker counted in its last tick
//! before it stops is lost.

use crate::abi;
use crate::abi::MetricType;
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

/// Distinct series a worker defines at most; beyond, new ones are dropped, not defined.
const MAX_SERIES: usize = 4096;

#[derive(Default)]
pub struct Metrics {
    ids: HashMap<String, u32>,
    /// The per-request series, found without building their names: by family and provider,
    /// then [first, second] (see [`Pair`]); and by reason code.
    pairs: HashMap<Pair, HashMap<String, [Option<u32>; 2]>>,
    denials: HashMap<&'static str, u32>,
    /// The provider the last request was counted for (the gate's own name, compared by
    /// reference), with its [allow, deny] series: most requests a worker sees name the same.
    last_provider: Option<(Arc<str>, [Option<u32>; 2])>,
    /// Counter increments not handed to the host yet: (metric, count). Few series move within a
    /// tick, so a short list searched in order serves.
    pending: Vec<(u32, u64)>,
}

/// Series counted on the hot path, two per provider.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Pair {
    /// [allow, deny]
    Requests,
    /// [hit, miss]
    IntrospectionCache,
    /// [verified, -]
    JwtVerifications,
}

impl Pair {
    fn name(self, provider: &str, second: bool) -> String {
        let provider = label(provider);
        match self {
            Pair::Requests => {
                let decision = if second { "deny" } else { "allow" };
                format!("tollgate.requests.provider.{provider}.decision.{decision}")
            }
            Pair::IntrospectionCache => {
                let outcome = if second { "misses" } else { "hits" };
                format!("tollgate.introspection.cache_{outcome}.provider.{provider}")
            }
            Pair::JwtVerifications => format!("tollgate.jwt.verifications.provider.{provider}"),
        }
    }
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
        let id = abi::define_metric(kind, &name).ok()?;
        self.ids.insert(name, id);
        Some(id)
    }

    fn count(&mut self, name: String) {
        if let Some(id) = self.id(MetricType::Counter, name) {
            self.add(id);
        }
    }

    fn add(&mut self, id: u32) {
        match self.pending.iter_mut().find(|(pending, _)| *pending == id) {
            Some((_, count)) => *count += 1,
            None => self.pending.push((id, 1)),
        }
    }

    /// Hands the counted increments to the host.
    pub fn flush(&mut self) {
        for (id, count) in self.pending.drain(..) {
            let _ = abi::increment_metric(id, i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// One of a provider's two per-request series of `family`, counted.
    fn pair(&mut self, family: Pair, provider: &str, second: bool) {
        if let Some(id) = self.pair_id(family, provider, second) {
            self.add(id);
        }
    }

    /// One of a provider's two per-request series of `family`, found without building its
    /// name once it is known.
    fn pair_id(&mut self, family: Pair, provider: &str, second: bool) -> Option<u32> {
        let slot = usize::from(second);
        let known = (self.pairs.get(&family))
            .and_then(|by_provider| by_provider.get(provider))
            .and_then(|ids| ids.get(slot).copied().flatten());
        let id = match known {
            Some(id) => Some(id),
            None => {
                let id = self.id(MetricType::Counter, family.name(provider, second));
                let by_provider = self.pairs.entry(family).or_default();
                if let Some(entry) = by_provider
                    .entry(provider.to_string())
                    .or_default()
                    .get_mut(slot)
                {
                    *entry = id;
                }
                id
            }
        };
        id
    }

    pub fn request(&mut self, provider: Option<&Arc<str>>, allowed: bool) {
        let slot = usize::from(!allowed);
        let remembered = match (provider, &self.last_provider) {
            (Some(name), Some((last, ids))) if Arc::ptr_eq(name, last) => {
                ids.get(slot).copied().flatten()
            }
            _ => None,
        };
        let id = match remembered {
            Some(id) => Some(id),
            None => {
                let id = self.pair_id(Pair::Requests, provider.map_or("none", |p| p), !allowed);
                if let Some(name) = provider {
                    let last = match &mut self.last_provider {
                        Some((last, ids)) if Arc::ptr_eq(name, last) => ids,
                        other => &mut other.insert((Arc::clone(name), [None; 2])).1,
                    };
                    if let Some(entry) = last.get_mut(slot) {
                        *entry = id;
                    }
                }
                id
            }
        };
        if let Some(id) = id {
            self.add(id);
        }
    }

    pub fn denial(&mut self, reason: &'static str) {
        let id = match self.denials.get(reason) {
            Some(id) => Some(*id),
            None => {
                let name = format!("tollgate.denials.reason.{}", label(reason));
                let id = self.id(MetricType::Counter, name);
                if let Some(id) = id {
                    self.denials.insert(reason, id);
                }
                id
            }
        };
        if let Some(id) = id {
            self.add(id);
        }
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
            let _ = abi::record_metric(id, age_seconds);
        }
    }

    /// A JWT signature verified (not a remembered one).
    pub fn jwt_verified(&mut self, provider: &str) {
        self.pair(Pair::JwtVerifications, provider, false);
    }

    pub fn introspection_call(&mut self, provider: &str, ok: bool) {
        let outcome = if ok { "calls" } else { "failures" };
        self.count(format!(
            "tollgate.introspection.{outcome}.provider.{}",
            label(provider)
        ));
    }

    pub fn introspection_cache(&mut self, provider: &str, hit: bool) {
        self.pair(Pair::IntrospectionCache, provider, !hit);
    }

    /// A batch (of one request or more) taken from the shared counter of a limit with `batch`
    /// above 1; a refused take is not one.
    pub fn batch_taken(&mut self, policy: &str, limit: &str) {
        self.count(format!(
            "tollgate.ratelimit_batches.policy.{}.limit.{}",
            label(policy),
            label(limit)
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
