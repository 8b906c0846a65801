//! Fetching a provider's keys once for all workers.
//!
//! The record and the fetch lease live in shared data under names derived from the provider and
//! a fingerprint of where its keys come from, so a changed configuration never reads another
//! source's keys. Only the lease holder fetches and writes the record; every worker re-reads the
//! record at each tick (and when a request finds no keys) and re-parses keys when its version
//! changed. Fetches start only from root callbacks: the SDK delivers an answer to the context
//! whose callback made the call, and a request's context may be gone by then.

use crate::abi;
use crate::abi::LogLevel;
use crate::host::{log, CallAnswer};
use crate::shared::{self, Lease};
use crate::worker::{PendingCall, Worker};
use std::time::Duration;
use tollgate::config::{HttpUrl, ProviderId, RemoteKeys};
use tollgate::jwk::JwksLimits;
use tollgate::keys::{FetchAnswer, FetchReason, KeysRecord};

/// The shared names of one provider's keys.
struct KeysShared {
    record: String,
    lease: Lease,
}

impl KeysShared {
    fn new(provider: &str, remote: &RemoteKeys) -> KeysShared {
        let source = format!(
            "{}|{}|{}|{}",
            provider, remote.cluster, remote.url, remote.discovery
        );
        let base = format!(
            "tollgate.keys.{provider}.{:016x}",
            shared::fingerprint(&source)
        );
        KeysShared {
            record: format!("{base}.record"),
            lease: Lease::new(format!("{base}.lease")),
        }
    }

    fn read(&self) -> Option<KeysRecord> {
        match shared::read(&self.record) {
            Some(bytes) => KeysRecord::decode(&bytes),
            None => Some(KeysRecord::default()),
        }
    }
}

impl Worker {
    fn keys_shared(&self, id: ProviderId) -> Option<KeysShared> {
        Some(KeysShared::new(&self.provider_name(id), self.remote(id)?))
    }

    /// Reads the shared record of one provider; re-parses keys when it changed.
    // Out of line: see "Function size" in the tollgate crate docs.
    #[inline(never)]
    pub fn sync_keys(&mut self, id: ProviderId) {
        let Some(record) = self.keys_shared(id).and_then(|s| s.read()) else {
            return;
        };
        let now = self.now_ms;
        if let Some(local) = self.providers.get_mut(id) {
            if record.version != local.record.version
                || (local.set.is_none() && record.has_keys(now))
            {
                local.set = record.key_set(now);
                local.generation = generation(&record);
                local.record = record;
            }
        }
    }

    pub fn is_fetching_keys(&self, id: ProviderId) -> bool {
        let timeout = self.remote(id).map_or(0, |r| r.timeout_ms);
        self.providers
            .get(id)
            .and_then(|k| k.fetching_since_ms)
            .is_some_and(|since| self.now_ms < since + 2 * timeout + 1000)
    }

    /// Starts a fetch if one is due or asked for and no worker is fetching.
    pub fn maybe_fetch_keys(&mut self, id: ProviderId) {
        let Some(cfg) = self.remote(id).cloned() else {
            return;
        };
        if self.is_fetching_keys(id) {
            return;
        }
        let now = self.now_ms;
        let Some(local) = self.providers.get(id) else {
            return;
        };
        let reason = if local.kid_refetch_wanted && local.record.may_refetch_for_kid(now, &cfg) {
            FetchReason::UnknownKid
        } else if let Some(reason) = local.record.fetch_due(now) {
            reason
        } else {
            return;
        };
        let Some(names) = self.keys_shared(id) else {
            return;
        };
        if !names.lease.acquire(now, cfg.timeout_ms * 2 + 1000) {
            return;
        }
        // Under the lease, start from the freshest record.
        self.sync_keys(id);
        let Some(local) = self.providers.get_mut(id) else {
            return;
        };
        local.kid_refetch_wanted = false;
        local.record.start_fetch(reason, now);
        let call = match (
            local.record.needs_discovery(&cfg),
            local.record.jwks_url(&cfg),
        ) {
            (false, Some(url)) => (PendingCall::Jwks { provider: id }, url),
            // Discovery first (also when a discovered jwks_uri went missing).
            _ => (PendingCall::Discovery { provider: id }, cfg.url.clone()),
        };
        self.dispatch_keys(id, call.0, &cfg, &call.1);
    }

    fn dispatch_keys(
        &mut self,
        id: ProviderId,
        call: PendingCall,
        cfg: &RemoteKeys,
        url: &HttpUrl,
    ) {
        let headers = vec![
            (":method", "GET"),
            (":path", url.path.as_str()),
            (":authority", url.authority.as_str()),
            (":scheme", url.scheme.as_str()),
            ("accept", "application/json"),
            ("user-agent", "tollgate"),
        ];
        let timeout = Duration::from_millis(cfg.timeout_ms);
        match abi::dispatch_http_call(&cfg.cluster, &headers, None, timeout) {
            Ok(token) => {
                self.calls.insert(token, call);
                let now = self.now_ms;
                if let Some(local) = self.providers.get_mut(id) {
                    local.fetching_since_ms = Some(now);
                }
            }
            Err(status) => {
                log(
                    LogLevel::Warn,
                    &format!(
                        "tollgate: cannot call cluster {} for {url}: {status:?}",
                        cfg.cluster
                    ),
                );
                self.finish_keys_fetch(call, &CallAnswer::failed());
            }
        }
    }

    /// Applies a discovery or JWKS answer to the shared record; chains discovery to the JWKS.
    pub fn finish_keys_fetch(&mut self, call: PendingCall, answer: &CallAnswer) {
        let (id, discovery) = match call {
            PendingCall::Discovery { provider } => (provider, true),
            PendingCall::Jwks { provider } => (provider, false),
            PendingCall::Introspection { .. } => return,
        };
        let Some(cfg) = self.remote(id).cloned() else {
            return;
        };
        let Some(issuer) = self
            .gate
            .as_ref()
            .and_then(|g| g.config.provider(id))
            .map(|p| p.issuer.clone())
        else {
            return;
        };
        let Some(names) = self.keys_shared(id) else {
            return;
        };
        let (now, jitter, name) = (self.now_ms, self.jitter(), self.provider_name(id));
        let cache_control = answer.header("cache-control");
        // An oversized body is not read: it counts as a failed fetch, and the keys stay.
        let fetch = FetchAnswer {
            status: answer.status,
            cache_control,
            body: &answer.body,
            oversized: answer.oversized,
        };
        let Some(local) = self.providers.get_mut(id) else {
            return;
        };
        local.fetching_since_ms = None;
        let mut record = local.record.clone();
        let (next, ok) = if discovery {
            match record.apply_discovery(fetch, &issuer, &cfg, now, jitter) {
                Ok(url) => (Some(url), true),
                Err(e) => {
                    log(
                        LogLevel::Warn,
                        &format!("tollgate: provider {name}: {e}; keeping the last good keys"),
                    );
                    (None, false)
                }
            }
        } else {
            match record.apply_jwks(fetch, &cfg, now, jitter) {
                Ok(set) => {
                    let kids = set.kids().join(", ");
                    log(
                        LogLevel::Info,
                        &format!(
                            "tollgate: provider {name}: fetched {} key(s) ({kids})",
                            set.len()
                        ),
                    );
                    (None, true)
                }
                Err(e) => {
                    log(
                        LogLevel::Warn,
                        &format!("tollgate: provider {name}: {e}; keeping the last good keys"),
                    );
                    (None, false)
                }
            }
        };
        record.version = record.version.max(local.record.version).wrapping_add(1);
        shared::write(&names.record, &record.encode());
        local.set = record.key_set(now);
        local.generation = generation(&record);
        local.record = record;
        if !discovery || !ok {
            self.metrics.jwks_fetch(&name, ok);
        }
        match next {
            Some(url) => self.dispatch_keys(id, PendingCall::Jwks { provider: id }, &cfg, &url),
            None => names.lease.release(),
        }
    }

    /// Per tick: pick up other workers' fetches, start due ones, report the keys' age.
    pub fn tick_keys(&mut self) {
        for id in 0..self.providers.len() {
            if self.remote(id).is_none() {
                continue;
            }
            self.sync_keys(id);
            self.maybe_fetch_keys(id);
            if let Some(local) = self.providers.get(id) {
                if local.record.fetched_at_ms > 0 {
                    let age = self.now_ms.saturating_sub(local.record.fetched_at_ms) / 1000;
                    let name = self.provider_name(id);
                    self.metrics.jwks_age(&name, age);
                }
            }
        }
    }

    fn jitter(&self) -> u64 {
        // Spread the retries of workers and gateways that failed together.
        self.now_ms
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(u64::from(self.root_id))
            >> 17
    }
}

/// The key set's fingerprint: it changes only when the JWKS document does.
fn generation(record: &KeysRecord) -> u64 {
    record.jwks.as_deref().map_or(0, shared::fingerprint)
}

/// Largest answer read from the IdP for keys or discovery.
pub fn max_keys_answer() -> usize {
    JwksLimits::default().max_bytes
}
