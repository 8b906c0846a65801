//! One worker's state, and the loop from a request to its answer.
//!
//! A [`Worker`] belongs to one VM (one Envoy worker thread) and is shared by its root context and
//! its HTTP contexts. [`Worker::handle`] reads nothing itself: it asks the engine for a verdict
//! with the worker as the engine's [`Host`] (keys, cached introspection answers), and carries the
//! verdict out: rewrite headers and continue, answer with a refusal, or park the request until
//! keys or an introspection answer arrive. Parked requests are handled again, by the same
//! function, when what they wait for changes or their time is up.

use crate::abi;
use crate::abi::{HeaderMap, LogLevel};
use crate::host::{answer_here, log, OwnedRequest};
use crate::metrics::Metrics;
use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use tollgate::audit::{AuditEvent, AuditFacts};
use tollgate::config::{KeySource, ProviderId, RemoteKeys};
use tollgate::denial::Denial;
use tollgate::gate::{Decision, Gate, Host, IntrospectionView, KeysView, TokenDigest, Verdict};
use tollgate::introspection::{self, token_hash, CachedAnswer, CheckedAnswer};
use tollgate::jwk::JwkSet;
use tollgate::keys::{Availability, KeysRecord};
use tollgate::ratelimit::HeldBatch;
use tollgate::request::HeaderEdit;
use tollgate::slots::CHOICES;
use tollgate::verified::{
    digest_key, key_of, TokenCache, TokenKey, VerifiedCache, VerifiedIdentity, Weigh,
};

/// Requests a worker keeps paused; more are refused with 503.
pub const MAX_WAITING: usize = 4096;

/// Requests decided between two reads of the clock, at most (it is read at each tick too).
const CLOCK_READ_EVERY: u32 = 64;

/// What became of a request after its verdict was carried out.
pub enum Applied {
    Passed,
    Refused,
    Parked,
}

/// What a parked request waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WaitFor {
    /// A change of the provider's keys record (its version).
    Keys {
        provider: ProviderId,
        seen_version: u64,
    },
    /// An introspection answer for this token hash.
    Introspection {
        provider: ProviderId,
        hash: [u8; 32],
    },
}

pub struct Waiter {
    pub wait: WaitFor,
    pub deadline_ms: u64,
    pub request: OwnedRequest,
    /// For an introspection wait: the token, should this worker have to make the call.
    pub token: Option<String>,
}

/// One provider's keys as this worker knows them.
#[derive(Default)]
pub struct ProviderKeys {
    pub record: KeysRecord,
    pub set: Option<JwkSet>,
    /// A call of ours for this provider's keys started at this time and has not answered (we
    /// hold the lease). A call that never answers stops counting after twice its timeout.
    pub fetching_since_ms: Option<u64>,
    /// An unknown kid asked for a refetch that has not started yet.
    pub kid_refetch_wanted: bool,
    /// Introspection calls of this worker in flight.
    pub introspections_in_flight: u32,
    /// A fingerprint of the key set in `set`: remembered verifications are tied to it.
    pub generation: u64,
}

/// A dispatched call, by its token.
#[derive(Clone, Copy)]
pub enum PendingCall {
    Discovery {
        provider: ProviderId,
    },
    Jwks {
        provider: ProviderId,
    },
    Introspection {
        provider: ProviderId,
        hash: [u8; 32],
        started_ms: u64,
    },
}

/// An introspection answer the engine is being shown while it decides.
pub struct Known {
    pub provider: ProviderId,
    pub hash: [u8; 32],
    pub answer: KnownAnswer,
}

pub enum KnownAnswer {
    Answer {
        cached: CachedAnswer,
        from_cache: bool,
    },
    Failed(&'static str),
}

/// Headers to add to a response, by name and value.
pub type ResponseHeaders = Vec<(String, String)>;

pub struct Worker {
    pub root_id: u32,
    pub gate: Option<Rc<Gate>>,
    pub providers: Vec<ProviderKeys>,
    pub waiters: BTreeMap<u32, Waiter>,
    pub calls: HashMap<u32, PendingCall>,
    /// Headers to add to the response of an allowed request (rate-limit budget).
    pub response_headers: HashMap<u32, ResponseHeaders>,
    pub metrics: Metrics,
    pub now_ms: u64,
    /// Requests decided since the clock was last read.
    requests_since_clock: u32,
    /// The context whose callback is running: the effective context to return to.
    pub callback_context: u32,
    /// A request's own callback is running (not the root's): see [`Worker::dispatch_keys`].
    pub in_request_callback: bool,
    /// Set while a parked request gets its last chance: nothing is worth waiting for.
    pub final_attempt: bool,
    /// The host writes info-level lines (audit events): read at each tick, so that a gateway
    /// logging at warning does not pay for building lines it would drop.
    pub logs_info: bool,
    pub known: Option<Known>,
    /// Tokens this worker verified or read from another worker's verification.
    pub verified: RefCell<VerifiedCache>,
    /// Active introspection answers this worker read (by token), each kept until its own
    /// cache time ends; inactive ones stay in the shared cache only, so a client cannot fill
    /// this map with tokens of its choosing. Replaced with the gate, as its checks depend on it.
    pub introspected: RefCell<TokenCache<KeptAnswer>>,
    /// A fingerprint of the configuration, naming its shared entries.
    pub config_tag: u64,
    /// The rate-limit batches this worker holds, by counter (see `limits`). Replaced with
    /// the gate, as the counters' names depend on it.
    pub batches: HashMap<u64, HeldBatch>,
    /// When `batches` was last pruned (ms).
    pub batches_pruned_ms: u64,
}

impl Worker {
    pub fn new(root_id: u32) -> Worker {
        Worker {
            root_id,
            gate: None,
            providers: Vec::new(),
            waiters: BTreeMap::new(),
            calls: HashMap::default(),
            response_headers: HashMap::default(),
            metrics: Metrics::default(),
            now_ms: 0,
            requests_since_clock: 0,
            callback_context: root_id,
            in_request_callback: false,
            final_attempt: false,
            logs_info: true,
            known: None,
            verified: RefCell::new(VerifiedCache::off()),
            introspected: RefCell::new(TokenCache::new(0, 0)),
            config_tag: 0,
            batches: HashMap::default(),
            batches_pruned_ms: 0,
        }
    }

    pub fn set_clock(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.requests_since_clock = 0;
    }

    /// The time a request is decided at: the clock as read at the last tick (every 100 ms), or
    /// read now when it never was or [`CLOCK_READ_EVERY`] requests came since. A host call per
    /// request costs about as much as deciding for a remembered token, and no decision needs
    /// finer time: token dates are whole seconds compared with a clock skew of a minute or
    /// more. Rate limits and quotas, which do, read the clock again (`charge_limits`).
    pub fn clock_for_request(&mut self, read_clock: impl FnOnce() -> u64) {
        self.requests_since_clock += 1;
        if self.now_ms == 0 || self.requests_since_clock >= CLOCK_READ_EVERY {
            self.set_clock(read_clock());
        }
    }

    pub fn remote(&self, id: ProviderId) -> Option<&RemoteKeys> {
        match &self.gate.as_ref()?.config.provider(id)?.keys {
            Some(KeySource::Remote(r)) => Some(r),
            _ => None,
        }
    }

    pub fn provider_name(&self, id: ProviderId) -> String {
        self.gate
            .as_ref()
            .and_then(|g| g.config.provider(id))
            .map_or_else(|| "none".to_string(), |p| p.name.clone())
    }

    pub fn wait_ms(&self) -> u64 {
        self.gate
            .as_ref()
            .map_or(5000, |g| g.config.keys_wait_timeout_ms)
    }

    pub fn realm(&self) -> String {
        self.gate
            .as_ref()
            .map_or_else(|| "tollgate".to_string(), |g| g.config.realm.clone())
    }

    /// Decides a request on the current context and carries the verdict out. `parked_until`
    /// is the deadline of a request that was parked already (it is resumed, deadline kept).
    pub fn handle(
        &mut self,
        context_id: u32,
        request: OwnedRequest,
        parked_until: Option<u64>,
    ) -> Applied {
        let Some(gate) = self.gate.clone() else {
            // Not configured: fail closed.
            self.refuse(&request, Denial::KeysUnavailable, &AuditFacts::default());
            return Applied::Refused;
        };
        let now_s = self.now_ms / 1000;
        let view = request.view();
        let mut decision = gate.decide(&view, self, now_s);
        // Keys missing here may already be shared by another worker.
        if let (Verdict::Wait { provider, .. }, None) = (&decision.verdict, parked_until) {
            let provider = *provider;
            self.sync_keys(provider);
            decision = gate.decide(&view, self, now_s);
        }
        // A cached introspection answer decides without a call.
        let mut cache_counted = false;
        if let Verdict::Introspect { provider, token } = &decision.verdict {
            let (provider, hash) = (*provider, token_hash(token));
            let name = self.provider_name(provider);
            cache_counted = true;
            match self.cached_answer(provider, &hash) {
                Some(cached) => {
                    self.metrics.introspection_cache(&name, true);
                    self.keep_answer(provider, &cached);
                    self.known = Some(Known {
                        provider,
                        hash,
                        answer: KnownAnswer::Answer {
                            cached,
                            from_cache: true,
                        },
                    });
                    decision = gate.decide(&view, self, now_s);
                    self.known = None;
                }
                None => self.metrics.introspection_cache(&name, false),
            }
        }
        // Answered from this worker's own copy of the shared cache: a hit all the same.
        if !cache_counted && decision.facts.source == Some("introspection_cache") {
            if let Some(name) = decision.facts.provider.clone() {
                self.metrics.introspection_cache(&name, true);
            }
        }
        self.remember(&mut decision);
        self.apply(context_id, request, decision, parked_until)
    }

    /// Keeps an active answer, under its token's SHA-256, checked once against its provider's
    /// configuration (what does not depend on the time): a request that finds it checks only
    /// the dates. Inactive answers are not kept (see `introspected`).
    pub fn keep_answer(&self, provider: ProviderId, answer: &CachedAnswer) {
        if !answer.active {
            return;
        }
        let gate = self.gate.as_ref();
        let Some(found) = gate.and_then(|g| g.config.provider(provider)) else {
            return;
        };
        let Some(cfg) = &found.introspection else {
            return;
        };
        let kept = KeptAnswer {
            provider,
            checked: introspection::check_answer(&*answer.claims, found, cfg),
            answer: answer.clone(),
        };
        self.introspected
            .borrow_mut()
            .insert(digest_key(&answer.token_hash), Rc::new(kept));
    }

    /// Keeps a token the engine just verified, for this worker and, through shared data, the
    /// others: the next request with it skips the signature.
    // Out of line: see "Function size" in the tollgate crate docs.
    #[inline(never)]
    fn remember(&mut self, decision: &mut Decision) {
        let Some(learned) = decision.learned.take() else {
            return;
        };
        let name = self.provider_name(learned.identity.provider);
        self.metrics.jwt_verified(&name);
        let capacity = self
            .gate
            .as_ref()
            .map_or(0, |g| g.config.token_cache_entries);
        if capacity == 0 {
            return;
        }
        if let Some(bytes) = learned.identity.encode(&learned.key) {
            let slots = self.verified_slots(&learned.key, capacity);
            crate::shared::place(&slots, &bytes, |old| {
                VerifiedIdentity::is_for(old, &learned.key)
            });
        }
        let mut verified = self.verified.borrow_mut();
        if let Some(filed) = verified.file_of(&learned.token) {
            verified.insert(filed, Rc::new(learned.identity));
        }
    }

    /// The shared slots a token's verification may live in (twice as many slots as tokens
    /// each worker keeps, so the table stays at most half full).
    fn verified_slots(&self, key: &TokenKey, capacity: u32) -> [String; CHOICES] {
        crate::shared::slot_keys('v', self.config_tag, key, capacity.saturating_mul(2))
    }

    fn apply(
        &mut self,
        context_id: u32,
        request: OwnedRequest,
        decision: Decision,
        parked_until: Option<u64>,
    ) -> Applied {
        let mut facts = decision.facts;
        match decision.verdict {
            Verdict::Allow(allowed) => {
                let mut response_headers = None;
                if let Some(policy) = allowed.policy {
                    match self.charge_limits(policy, &allowed.charges) {
                        Ok(headers) => response_headers = headers,
                        Err((limit, denial)) => {
                            facts.limit = Some(limit);
                            self.refuse(&request, denial, &facts);
                            return Applied::Refused;
                        }
                    }
                }
                for edit in &allowed.edits {
                    let result = match edit {
                        HeaderEdit::Remove(name) => {
                            abi::set_map_value(HeaderMap::Request, name, None)
                        }
                        HeaderEdit::Set(name, value) => {
                            abi::set_map_value(HeaderMap::Request, name, Some(value))
                        }
                    };
                    if result.is_err() {
                        // An identity header that could not be set or removed must not pass.
                        self.refuse(
                            &request,
                            Denial::BadRequest("headers could not be rewritten"),
                            &facts,
                        );
                        return Applied::Refused;
                    }
                }
                // Only a configuration that sends the budget has headers here.
                if let Some(headers) = response_headers {
                    self.response_headers.insert(context_id, headers);
                }
                self.metrics.request(facts.provider.as_ref(), true);
                if self.audit_allowed(&request) {
                    audit_line(&request, "allow", 200, "ok", &facts, self.now_ms);
                }
                if parked_until.is_some() {
                    let _ = abi::resume_http_request();
                }
                Applied::Passed
            }
            Verdict::Deny(denial) => {
                self.refuse(&request, denial, &facts);
                Applied::Refused
            }
            Verdict::Wait { provider, refetch } => {
                if let Some(local) = self.providers.get_mut(provider) {
                    local.kid_refetch_wanted |= refetch;
                }
                if !self.in_request_callback {
                    self.maybe_fetch_keys(provider);
                }
                let seen_version = self.providers.get(provider).map_or(0, |k| k.record.version);
                let deadline = parked_until.unwrap_or(self.now_ms + self.wait_ms());
                self.park(
                    context_id,
                    request,
                    WaitFor::Keys {
                        provider,
                        seen_version,
                    },
                    deadline,
                    None,
                    &facts,
                )
            }
            Verdict::Introspect { provider, token } => {
                if self.final_attempt {
                    self.refuse(
                        &request,
                        Denial::IntrospectionFailed("no answer in time"),
                        &facts,
                    );
                    return Applied::Refused;
                }
                if self.awaiting_discovery(provider) {
                    if !self.in_request_callback {
                        self.maybe_fetch_keys(provider);
                    }
                    let seen_version = self.providers.get(provider).map_or(0, |k| k.record.version);
                    let deadline = parked_until.unwrap_or(self.now_ms + self.wait_ms());
                    let wait = WaitFor::Keys {
                        provider,
                        seen_version,
                    };
                    return self.park(context_id, request, wait, deadline, None, &facts);
                }
                let hash = token_hash(&token);
                if let Err(why) = self.start_introspection(provider, &token, hash) {
                    self.refuse(&request, Denial::IntrospectionFailed(why), &facts);
                    return Applied::Refused;
                }
                let timeout = self.introspection_timeout(provider);
                let deadline = parked_until.unwrap_or(self.now_ms + timeout + 1000);
                let wait = WaitFor::Introspection { provider, hash };
                self.park(context_id, request, wait, deadline, Some(token), &facts)
            }
        }
    }

    fn park(
        &mut self,
        context_id: u32,
        request: OwnedRequest,
        wait: WaitFor,
        deadline_ms: u64,
        token: Option<String>,
        facts: &AuditFacts,
    ) -> Applied {
        if self.waiters.len() >= MAX_WAITING {
            self.refuse(&request, Denial::KeysUnavailable, facts);
            return Applied::Refused;
        }
        self.waiters.insert(
            context_id,
            Waiter {
                wait,
                deadline_ms,
                request,
                token,
            },
        );
        Applied::Parked
    }

    fn audit_allowed(&self, request: &OwnedRequest) -> bool {
        let Some(gate) = &self.gate else {
            return self.logs_info;
        };
        if !gate.config.audit || !self.logs_info {
            return false;
        }
        let share = gate.config.audit_sample_allowed;
        share >= 1.0 || {
            let now = self.now_ms.to_string();
            tollgate::audit::sampled(share, request.request_id().unwrap_or(&now))
        }
    }

    /// Answers the current context with a refusal, and counts and audits it.
    pub fn refuse(&mut self, request: &OwnedRequest, denial: Denial, facts: &AuditFacts) {
        let answer = denial.response(&self.realm(), request.request_id());
        self.metrics.request(facts.provider.as_ref(), false);
        self.metrics.denial(denial.code());
        if let (Denial::RateLimited(limited), Some(policy)) = (&denial, &facts.policy) {
            self.metrics.rate_limited(policy, &limited.limit);
        }
        if self.logs_info && self.gate.as_ref().is_none_or(|g| g.config.audit) {
            audit_line(
                request,
                "deny",
                answer.status,
                denial.code(),
                facts,
                self.now_ms,
            );
        }
        let headers: Vec<(&str, &str)> = answer
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        answer_here(answer.status, &headers, answer.body.as_bytes());
    }

    /// Handles parked requests again when what they wait for changed or their time is up.
    pub fn wake_waiters(&mut self) {
        let now = self.now_ms;
        let due: Vec<u32> = self
            .waiters
            .iter()
            .filter(|(_, w)| now >= w.deadline_ms || self.can_proceed(&w.wait))
            .map(|(id, _)| *id)
            .collect();
        for context_id in due {
            self.resume_waiter(context_id);
        }
        // Waiters for an introspection no worker is making any more (its caller gave up or
        // died): take the call over.
        let orphans: Vec<(ProviderId, [u8; 32], String)> = self
            .introspection_waits()
            .filter(|(_, hash, _)| !self.calling(hash))
            .map(|(provider, hash, token)| (provider, hash, token.to_string()))
            .collect();
        for (provider, hash, token) in orphans {
            if !self.calling(&hash) {
                if let Err(why) = self.start_introspection(provider, &token, hash) {
                    self.known = Some(Known {
                        provider,
                        hash,
                        answer: KnownAnswer::Failed(why),
                    });
                    self.wake_hash(&hash);
                    self.known = None;
                }
            }
        }
        let _ = abi::set_effective_context(self.callback_context);
    }

    /// Handles again every request parked for this token hash (with `self.known` set).
    pub fn wake_hash(&mut self, hash: &[u8; 32]) {
        let ids: Vec<u32> = self
            .waiters
            .iter()
            .filter(|(_, w)| matches!(w.wait, WaitFor::Introspection { hash: h, .. } if &h == hash))
            .map(|(id, _)| *id)
            .collect();
        for context_id in ids {
            self.resume_waiter(context_id);
        }
        let _ = abi::set_effective_context(self.callback_context);
    }

    /// The parked requests that wait for an introspection: provider, token hash and token.
    fn introspection_waits(&self) -> impl Iterator<Item = (ProviderId, [u8; 32], &str)> {
        self.waiters
            .values()
            .filter_map(|w| match (w.wait, &w.token) {
                (WaitFor::Introspection { provider, hash }, Some(token)) => {
                    Some((provider, hash, token.as_str()))
                }
                _ => None,
            })
    }

    fn resume_waiter(&mut self, context_id: u32) {
        let Some(waiter) = self.waiters.remove(&context_id) else {
            return;
        };
        if abi::set_effective_context(context_id).is_err() {
            return; // the request is gone
        }
        self.final_attempt = self.now_ms >= waiter.deadline_ms;
        self.handle(context_id, waiter.request, Some(waiter.deadline_ms));
        self.final_attempt = false;
    }

    fn can_proceed(&self, wait: &WaitFor) -> bool {
        match *wait {
            WaitFor::Keys {
                provider,
                seen_version,
            } => self.providers.get(provider).map_or(0, |k| k.record.version) != seen_version,
            WaitFor::Introspection { provider, hash } => {
                !self.calling(&hash) && self.cached_answer(provider, &hash).is_some()
            }
        }
    }
}

impl Host for Worker {
    fn keys(&self, provider: ProviderId) -> KeysView<'_> {
        let Some(p) = self.gate.as_ref().and_then(|g| g.config.provider(provider)) else {
            return KeysView::Unavailable;
        };
        match &p.keys {
            Some(KeySource::Inline(set)) => return KeysView::Ready(set),
            Some(KeySource::Remote(_)) => {}
            None => return KeysView::Unavailable,
        }
        let Some(local) = self.providers.get(provider) else {
            return KeysView::Unavailable;
        };
        let availability = local.record.availability_for_request(
            self.now_ms,
            self.is_fetching_keys(provider),
            self.wait_ms(),
            self.final_attempt,
        );
        match (&local.set, availability) {
            (Some(set), Availability::Ready) => KeysView::Ready(set),
            (_, Availability::Pending) => KeysView::Pending,
            _ => KeysView::Unavailable,
        }
    }

    fn may_refetch(&self, provider: ProviderId) -> bool {
        if self.final_attempt {
            return false;
        }
        match (self.remote(provider), self.providers.get(provider)) {
            (Some(cfg), Some(local)) => local.record.may_refetch_for_kid(self.now_ms, cfg),
            _ => false,
        }
    }

    fn keys_generation(&self, provider: ProviderId) -> u64 {
        self.providers.get(provider).map_or(0, |p| p.generation)
    }

    fn verified(&self, token: &str, digest: &TokenDigest) -> Option<Rc<VerifiedIdentity>> {
        let filed = {
            let cache = self.verified.borrow();
            let filed = cache.file_of(token);
            if let Some(found) = filed.and_then(|filed| cache.get(filed)) {
                return Some(found);
            }
            filed
        };
        // Another worker may have verified it (only on this worker's first sight of the token).
        // Only compact JWS (two dots) are ever verified: an opaque token, sent on every request
        // and never here, must not cost a SHA-256 and two shared-data reads each time.
        let capacity = self
            .gate
            .as_ref()
            .map_or(0, |g| g.config.token_cache_entries);
        if capacity == 0 || !may_be_compact_jws(token) {
            return None;
        }
        let key = key_of(digest.get());
        let slots = self.verified_slots(&key, capacity);
        let identity = crate::shared::find(&slots, |bytes| VerifiedIdentity::decode(&bytes, &key))?;
        let identity = Rc::new(identity);
        if let Some(filed) = filed {
            self.verified
                .borrow_mut()
                .insert(filed, Rc::clone(&identity));
        }
        Some(identity)
    }

    fn introspection(&self, provider: ProviderId, digest: &TokenDigest) -> IntrospectionView {
        match &self.known {
            Some(known) if known.provider == provider && &known.hash == digest.get() => {
                match &known.answer {
                    KnownAnswer::Failed(why) => IntrospectionView::Failed(why),
                    KnownAnswer::Answer { cached, from_cache } => view_of(cached, *from_cache),
                }
            }
            // An active answer this worker read before and that is still fresh: no shared
            // read. Found by the token's SHA-256, which the audit needs anyway.
            _ => match self.introspected.borrow().get(digest_key(digest.get())) {
                Some(kept) if kept.provider == provider && self.now_ms < kept.answer.until_ms => {
                    IntrospectionView::Active {
                        claims: Rc::clone(&kept.answer.claims),
                        cached: true,
                        checked: Some(kept.checked.clone()),
                    }
                }
                _ => IntrospectionView::Unknown,
            },
        }
    }
}

/// An active introspection answer a worker keeps, with [`introspection::check_answer`] of it
/// for the provider's configuration.
pub struct KeptAnswer {
    pub provider: ProviderId,
    pub answer: CachedAnswer,
    pub checked: Result<CheckedAnswer, Denial>,
}

/// A kept answer's fixed part (the answer, its checked dates and the entry), over its claims.
const KEPT_ANSWER_BYTES: usize = 160;

impl Weigh for KeptAnswer {
    fn weight(&self) -> usize {
        KEPT_ANSWER_BYTES + self.answer.claims.weight()
    }
}

/// Whether a token has the two dots of a compact JWS (what the engine verifies and remembers).
fn may_be_compact_jws(token: &str) -> bool {
    token.bytes().filter(|&b| b == b'.').count() == 2
}

fn view_of(answer: &CachedAnswer, cached: bool) -> IntrospectionView {
    if answer.active {
        IntrospectionView::Active {
            claims: Rc::clone(&answer.claims),
            cached,
            checked: None,
        }
    } else {
        IntrospectionView::Inactive
    }
}

pub fn audit_line(
    request: &OwnedRequest,
    decision: &str,
    status: u32,
    reason: &str,
    facts: &AuditFacts,
    now: u64,
) {
    let line = AuditEvent {
        now_ms: now,
        request_id: request.request_id(),
        method: request.method(),
        path: request.path(),
        decision,
        status,
        reason,
        facts,
    }
    .to_json_line();
    log(LogLevel::Info, &line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_compact_jws_are_looked_up_in_the_shared_verified_slots() {
        assert!(may_be_compact_jws(
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"
        ));
        assert!(
            may_be_compact_jws(".."),
            "the engine refuses it; the lookup is harmless"
        );
        for opaque in ["2YotnFZFEjr1zCsicMWpAA", "a.b", "a.b.c.d.e", "v1.a.b.c"] {
            assert!(!may_be_compact_jws(opaque), "{opaque}");
        }
    }

    #[test]
    fn introspection_answers_are_kept_by_the_tokens_sha256_never_by_the_token() {
        let config = tollgate::config::Config::from_json(
            br#"{"providers": {"corp": {"issuer": "https://idp", "audiences": ["api"],
                "verify": "introspection",
                "introspection": {"endpoint": "https://idp/introspect", "cluster": "idp",
                                  "client_id": "gw", "client_secret": "s3cret"}}}}"#,
        )
        .unwrap();
        let mut worker = Worker::new(1);
        worker.gate = Some(Rc::new(Gate::new(config)));
        worker.introspected = RefCell::new(TokenCache::new(8, 1 << 20));
        worker.now_ms = 1_000;
        let token = "2YotnFZFEjr1zCsicMWpAA";
        let claims = serde_json::json!({"active": true, "iss": "https://idp", "sub": "svc"});
        let answer = tollgate::introspection::Answer::Active(claims.as_object().unwrap().clone());
        worker.keep_answer(0, &CachedAnswer::new(token_hash(token), &answer, 60_000));

        let kept = worker.introspected.borrow();
        assert!(kept.get(digest_key(&token_hash(token))).is_some());
        drop(kept);
        let found = |token: &str| worker.introspection(0, &TokenDigest::new(token));
        assert!(matches!(
            found(token),
            IntrospectionView::Active { cached: true, .. }
        ));
        assert!(matches!(found("another-token"), IntrospectionView::Unknown));
    }

    #[test]
    fn the_clock_is_read_first_then_every_so_many_requests_and_at_each_tick() {
        let mut worker = Worker::new(1);
        let mut reads = 0;
        let mut request = |worker: &mut Worker, now: u64| {
            worker.clock_for_request(|| {
                reads += 1;
                now
            });
            reads
        };
        assert_eq!(request(&mut worker, 1_000), 1, "never read: read now");
        for i in 1..CLOCK_READ_EVERY {
            assert_eq!(
                request(&mut worker, 2_000),
                1,
                "request {i} uses the time read"
            );
            assert_eq!(worker.now_ms, 1_000);
        }
        assert_eq!(request(&mut worker, 3_000), 2, "then read again");
        assert_eq!(worker.now_ms, 3_000);
        worker.set_clock(4_000);
        for _ in 1..CLOCK_READ_EVERY {
            request(&mut worker, 5_000);
        }
        assert_eq!(worker.now_ms, 4_000, "a tick starts the count again");
        assert_eq!(request(&mut worker, 5_000), 3);
    }
}
