//! Introspecting opaque tokens once for all workers.
//!
//! Answers are cached in shared data in a fixed number of slots per provider (an answer may
//! live in any of the few the engine's `slot_choices` names), so memory is bounded however many
//! tokens arrive. One call per token hash: a lease on the first of those slots makes one worker
//! call while the others' requests wait for a slot to hold the answer; within a worker,
//! requests with the same token wait for the one call in flight. A call can start from a
//! request's callback (no tick of delay); its answer then reaches that request's context, which
//! hands it to the worker like the root does. A call whose answer never comes (its context
//! died) is swept at the next tick after its timeout.

use crate::abi;
use crate::host::CallAnswer;
use crate::shared::{self, Lease};
use crate::worker::{Known, KnownAnswer, PendingCall, Worker};
use std::time::Duration;
use tollgate::config::{HttpUrl, Introspection, ProviderId};
use tollgate::introspection::{
    build_call, cache_until_ms, parse_answer, CachedAnswer, MAX_ANSWER_BYTES,
};
use tollgate::slots::CHOICES;
use tollgate::verified::key_of;

impl Worker {
    fn introspection_cfg(&self, id: ProviderId) -> Option<&Introspection> {
        self.gate
            .as_ref()?
            .config
            .provider(id)?
            .introspection
            .as_ref()
    }

    pub fn introspection_timeout(&self, id: ProviderId) -> u64 {
        self.introspection_cfg(id).map_or(2000, |c| c.timeout_ms)
    }

    /// The shared keys of the slots that may hold the answer for this hash.
    fn slot_keys(&self, id: ProviderId, hash: &[u8; 32]) -> Option<[String; CHOICES]> {
        let cfg = self.introspection_cfg(id)?;
        let name = self.provider_name(id);
        let source = format!(
            "{name}|{}|{:?}",
            cfg.cluster,
            cfg.endpoint.as_ref().map(ToString::to_string)
        );
        let tag = shared::fingerprint(&source);
        Some(shared::slot_keys(
            'i',
            tag,
            &key_of(hash),
            cfg.cache_entries,
        ))
    }

    /// A fresh cached answer for this token hash.
    // Out of line: see "Function size" in the tollgate crate docs.
    #[inline(never)]
    pub fn cached_answer(&self, id: ProviderId, hash: &[u8; 32]) -> Option<CachedAnswer> {
        shared::find(&self.slot_keys(id, hash)?, |bytes| {
            CachedAnswer::decode(&bytes).filter(|a| a.fresh_for(hash, self.now_ms))
        })
    }

    /// Whether this worker has a call in flight for this token hash.
    pub fn calling(&self, hash: &[u8; 32]) -> bool {
        self.calls
            .values()
            .any(|c| matches!(c, PendingCall::Introspection { hash: h, .. } if h == hash))
    }

    fn endpoint(&self, id: ProviderId) -> Option<HttpUrl> {
        let cfg = self.introspection_cfg(id)?;
        match &cfg.endpoint {
            Some(url) => Some(url.clone()),
            None => {
                let record = &self.providers.get(id)?.record;
                HttpUrl::parse(record.introspection_uri.as_deref()?).ok()
            }
        }
    }

    /// Whether the introspection endpoint will come from a discovery that has not succeeded yet
    /// (the request then waits for the provider's record like a request waiting for keys).
    pub fn awaiting_discovery(&self, id: ProviderId) -> bool {
        let from_discovery = self
            .introspection_cfg(id)
            .is_some_and(|c| c.endpoint.is_none());
        let record = self.providers.get(id).map(|p| &p.record);
        from_discovery && record.is_some_and(|r| r.jwks_uri.is_none())
    }

    /// Makes sure an introspection of this token is under way somewhere: ours, or another
    /// worker's (it holds the slot's lease). `Err` when none can be made.
    pub fn start_introspection(
        &mut self,
        id: ProviderId,
        token: &str,
        hash: [u8; 32],
    ) -> Result<(), &'static str> {
        if self.calling(&hash) {
            return Ok(());
        }
        let Some(cfg) = self.introspection_cfg(id).cloned() else {
            return Err("no introspection configured");
        };
        let Some([key, ..]) = self.slot_keys(id, &hash) else {
            return Err("no introspection configured");
        };
        let lease = Lease::new(format!("{key}.lease"));
        if !lease.acquire(self.now_ms, cfg.timeout_ms + 1000) {
            return Ok(()); // another worker is calling for this slot
        }
        // Its last holder stores its answer before it lets go: this token's may be there now,
        // after this worker looked. The request then waits a tick for it, with no second call.
        if self.cached_answer(id, &hash).is_some() {
            lease.release();
            return Ok(());
        }
        let in_flight = self
            .providers
            .get(id)
            .map_or(0, |p| p.introspections_in_flight);
        if in_flight >= cfg.max_in_flight {
            lease.release();
            return Err("too many introspection calls in flight");
        }
        let Some(endpoint) = self.endpoint(id) else {
            lease.release();
            return Err("the introspection endpoint is not known yet");
        };
        let call = build_call(&cfg, &endpoint, token);
        let headers: Vec<(&str, &str)> = call
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let timeout = Duration::from_millis(cfg.timeout_ms);
        match abi::dispatch_http_call(&cfg.cluster, &headers, Some(call.body.as_bytes()), timeout) {
            Ok(token_id) => {
                let started_ms = self.now_ms;
                self.calls.insert(
                    token_id,
                    PendingCall::Introspection {
                        provider: id,
                        hash,
                        started_ms,
                    },
                );
                if let Some(p) = self.providers.get_mut(id) {
                    p.introspections_in_flight += 1;
                }
                Ok(())
            }
            Err(_) => {
                lease.release();
                let name = self.provider_name(id);
                self.metrics.introspection_call(&name, false);
                Err("cannot reach the introspection endpoint")
            }
        }
    }

    /// Takes an introspection answer: caches it, releases the slot, and decides every request
    /// of this worker that waits for it.
    pub fn finish_introspection(&mut self, call: PendingCall, answer: Option<&CallAnswer>) {
        let PendingCall::Introspection { provider, hash, .. } = call else {
            return;
        };
        if let Some(p) = self.providers.get_mut(provider) {
            p.introspections_in_flight = p.introspections_in_flight.saturating_sub(1);
        }
        let Some(cfg) = self.introspection_cfg(provider).cloned() else {
            return;
        };
        let Some(slots) = self.slot_keys(provider, &hash) else {
            return;
        };
        let name = self.provider_name(provider);
        let parsed = match answer {
            None => Err("no answer in time"),
            Some(a) if a.oversized => Err("answer too large"),
            Some(a) => parse_answer(a.status, &a.body),
        };
        let known = match parsed {
            Ok(answer) => {
                self.metrics.introspection_call(&name, true);
                let until = cache_until_ms(&answer, &cfg, self.now_ms);
                let cached = CachedAnswer::new(hash, &answer, until);
                if until > self.now_ms {
                    if let Some(bytes) = cached.encode() {
                        let now = self.now_ms;
                        shared::place(&slots, &bytes, |old| {
                            CachedAnswer::decode(old)
                                .is_none_or(|a| a.token_hash == hash || a.until_ms <= now)
                        });
                    }
                    // This worker keeps it too, like an answer it read: were the shared slots
                    // all taken since, its next request would not cost another call.
                    self.keep_answer(provider, &cached);
                }
                KnownAnswer::Answer {
                    cached,
                    from_cache: false,
                }
            }
            Err(why) => {
                self.metrics.introspection_call(&name, false);
                KnownAnswer::Failed(why)
            }
        };
        if let Some(key) = slots.first() {
            Lease::new(format!("{key}.lease")).release();
        }
        self.known = Some(Known {
            provider,
            hash,
            answer: known,
        });
        self.wake_hash(&hash);
        self.known = None;
    }

    /// Per tick: calls whose answer will never come (their context is gone) are failed.
    pub fn sweep_introspections(&mut self) {
        let now = self.now_ms;
        let stale: Vec<u32> = self
            .calls
            .iter()
            .filter(|(_, c)| match c {
                PendingCall::Introspection {
                    provider,
                    started_ms,
                    ..
                } => now > started_ms + self.introspection_timeout(*provider) + 1000,
                _ => false,
            })
            .map(|(token, _)| *token)
            .collect();
        for token in stale {
            if let Some(call) = self.calls.remove(&token) {
                self.finish_introspection(call, None);
            }
        }
    }
}

/// Largest introspection answer read.
pub fn max_introspection_answer() -> usize {
    MAX_ANSWER_BYTES
}
