//! The per-request decision: rule, token, provider, verification, claims, policy, headers.
//!
//! [`Gate::decide`] is the only entry point the filter calls for a request. It takes the request,
//! a [`Host`] (what the gateway knows right now: each provider's keys, cached introspection
//! answers) and `now`, and returns a [`Verdict`]: allow (with header edits and the rate-limit
//! budgets to charge), deny with a [`Denial`], wait for keys, or introspect a token first.
//! Waiting and introspecting are values, not callbacks: the filter pauses the request, does the
//! I/O, and calls `decide` again with what it learned.
//!
//! The order of the checks is the order of trust: nothing in a token is believed before its
//! signature is verified with a key chosen by the configured provider for the claimed issuer,
//! or before the provider's introspection endpoint said it is active.

use crate::audit::{AuditFacts, Fingerprint};
use crate::claims::{self, Claims};
use crate::config::{Config, Policy, Provider, ProviderId, Rule, TokenSource, VerifyMode};
use crate::denial::Denial;
use crate::introspection::{self, token_hash};
use crate::jwk::{JwkSet, KeySelection};
use crate::jws::{classify, TokenShape, UntrustedToken, MAX_TOKEN_LEN};
use crate::policy;
use crate::ratelimit::{self, BudgetKey};
use crate::request::{
    normalize_path, strip_token, the_token, FoundToken, HeaderEdit, HeaderEdits, Request,
};
use crate::verified::{key_of, project, Derivation, Derived, Learned, VerifiedIdentity};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What the host knows of one provider's keys.
pub enum KeysView<'a> {
    Ready(&'a JwkSet),
    /// Not fetched yet, or being fetched: worth waiting for.
    Pending,
    /// Fetching failed and no usable keys are left.
    Unavailable,
}

/// What the host knows of one token's introspection.
pub enum IntrospectionView {
    /// Nothing yet: the token must be introspected.
    Unknown,
    Active {
        /// Shared: the decision's identity is these very claims.
        claims: Rc<Claims>,
        /// From the shared cache rather than a call made for this request.
        cached: bool,
        /// [`introspection::check_answer`] of these claims for this provider, when the host
        /// kept its result with the answer: the decision then checks only the dates.
        checked: Option<Result<introspection::CheckedAnswer, Denial>>,
    },
    Inactive,
    /// The call failed (timeout, non-200, malformed answer): refuse.
    Failed(&'static str),
}

/// The gateway's view of what decisions need beyond the request.
pub trait Host {
    fn keys(&self, provider: ProviderId) -> KeysView<'_>;
    /// Whether a token with an unknown `kid` may cause a refetch now (cooldown).
    fn may_refetch(&self, provider: ProviderId) -> bool;
    /// What the host knows of a token's introspection, by the token's SHA-256 (`digest`,
    /// computed when first asked for): every cache of answers and every call in flight is keyed
    /// by it, never by the token, an opaque token being nothing but a bearer secret.
    fn introspection(&self, _provider: ProviderId, _digest: &TokenDigest) -> IntrospectionView {
        IntrospectionView::Unknown
    }
    /// Which key set the provider has now: remembered verifications of another generation are
    /// not used (a key removed from the JWKS stops the tokens it signed).
    fn keys_generation(&self, _provider: ProviderId) -> u64 {
        0
    }
    /// A token verified before (by this worker or another). `digest` is the token's SHA-256,
    /// computed only if asked for (a host that looks beyond its own memory keys by it).
    fn verified(&self, _token: &str, _digest: &TokenDigest) -> Option<Rc<VerifiedIdentity>> {
        None
    }
}

/// An allowed request: edits for its headers, and the budgets it spends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// Applied in order; the first ones always remove every header the filter owns.
    pub edits: HeaderEdits,
    /// Index into `Config::policies`.
    pub policy: Option<usize>,
    /// For each limit of the policy, in order: whose budget is charged.
    pub charges: Rc<[BudgetKey]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(Allowed),
    Deny(Denial),
    /// Pause until the provider's keys change (`refetch`: ask for a refetch first), then decide
    /// again.
    Wait {
        provider: ProviderId,
        refetch: bool,
    },
    /// Pause until the token's introspection answer is known, then decide again.
    Introspect {
        provider: ProviderId,
        token: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub verdict: Verdict,
    pub facts: AuditFacts,
    /// A token whose signature and claims were verified for this decision: the host remembers
    /// it, so the next request with it skips the signature.
    pub learned: Option<Learned>,
}

/// The compiled configuration and the decision logic over it.
#[derive(Debug)]
pub struct Gate {
    pub config: Config,
    /// What every request reads from the configuration, prepared once so that deciding for a
    /// remembered token copies nothing: names shared with the decision's edits and audit facts,
    /// and the token sources of each rule.
    prepared: Prepared,
    /// This gate among all made in this process: the identity headers a remembered identity
    /// keeps are this gate's only if tagged so.
    tag: u64,
}

/// The tag of the next gate.
static NEXT_GATE: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, Default)]
struct Prepared {
    provider_names: Vec<Arc<str>>,
    /// Each provider's `issuer`: the `iss` of the tokens it verifies, for the audit.
    provider_issuers: Vec<Arc<str>>,
    policy_names: Vec<Arc<str>>,
    /// Per policy, the names of its headers.
    policy_headers: Vec<Vec<Arc<str>>>,
    /// Per policy, its `RateLimit-Policy` field value (empty without limits).
    rate_limit_policies: Vec<String>,
    owned_headers: Vec<Arc<str>>,
    /// Parallel to `config.headers.claims`.
    claim_headers: Vec<Arc<str>>,
    payload_header: Option<Arc<str>>,
    /// Every provider, for rules that do not name theirs.
    all_providers: Vec<ProviderId>,
    /// Per rule, then for requests no rule matches: where its providers read tokens, each
    /// place once, as (provider, index into its `sources`). A token found there holds a
    /// reference into that provider's own list, which `reads` recognizes without comparing.
    rule_sources: Vec<Vec<(ProviderId, usize)>>,
    default_sources: Vec<(ProviderId, usize)>,
}

/// A text of each item, shared. A function pointer rather than a closure, so that one copy of
/// this code serves each type of item.
fn shared_texts<T>(items: &[T], text: fn(&T) -> &str) -> Vec<Arc<str>> {
    items.iter().map(|item| Arc::from(text(item))).collect()
}

/// Longest header value forwarded upstream from a claim.
const MAX_HEADER_VALUE: usize = 4096;

/// A verified identity: its claims, and the JWT payload segment when it came from a JWT.
enum Identity<'t> {
    Fresh {
        claims: Rc<Claims>,
        payload_segment: Option<&'t str>,
    },
    Remembered(Rc<VerifiedIdentity>),
}

impl Identity<'_> {
    fn claims(&self) -> &Claims {
        match self {
            Identity::Fresh { claims, .. } => claims,
            Identity::Remembered(v) => &v.claims,
        }
    }

    /// The claims, shared (for the audit facts).
    fn shared_claims(&self) -> Rc<Claims> {
        match self {
            Identity::Fresh { claims, .. } => Rc::clone(claims),
            Identity::Remembered(v) => Rc::clone(&v.claims),
        }
    }

    fn payload_segment(&self) -> Option<&str> {
        match self {
            Identity::Fresh {
                payload_segment, ..
            } => *payload_segment,
            Identity::Remembered(v) => v.payload_segment.as_deref(),
        }
    }
}

enum Step {
    Deny(Denial),
    Wait(ProviderId, bool),
    Introspect(ProviderId),
}

impl From<Denial> for Step {
    fn from(d: Denial) -> Step {
        Step::Deny(d)
    }
}

impl Gate {
    pub fn new(config: Config) -> Gate {
        let name = |n: &str| Arc::<str>::from(n);
        let all_providers: Vec<ProviderId> = (0..config.providers.len()).collect();
        let sources_of = |ids: &[ProviderId]| {
            let mut seen: Vec<&TokenSource> = Vec::new();
            let mut sources: Vec<(ProviderId, usize)> = Vec::new();
            for (id, p) in ids
                .iter()
                .filter_map(|&id| Some((id, config.provider(id)?)))
            {
                for (at, s) in p.sources.iter().enumerate() {
                    if !seen.contains(&s) {
                        seen.push(s);
                        sources.push((id, at));
                    }
                }
            }
            sources
        };
        let prepared = Prepared {
            provider_names: shared_texts(&config.providers, |p| &p.name),
            provider_issuers: shared_texts(&config.providers, |p| &p.issuer),
            policy_names: shared_texts(&config.policies, |p| &p.name),
            policy_headers: config
                .policies
                .iter()
                .map(|p| p.headers.iter().map(|(n, _)| name(n)).collect())
                .collect(),
            rate_limit_policies: config
                .policies
                .iter()
                .map(|p| ratelimit::policy_header(&p.limits.iter().collect::<Vec<_>>()))
                .collect(),
            owned_headers: config.owned_headers.iter().map(|h| name(h)).collect(),
            claim_headers: config.headers.claims.iter().map(|(h, _)| name(h)).collect(),
            payload_header: config.headers.payload.as_deref().map(name),
            rule_sources: config
                .rules
                .iter()
                .map(|r| match r.providers.is_empty() {
                    true => sources_of(&all_providers),
                    false => sources_of(&r.providers),
                })
                .collect(),
            default_sources: sources_of(&all_providers),
            all_providers,
        };
        Gate {
            config,
            prepared,
            tag: NEXT_GATE.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Decides one request at time `now` (seconds since the epoch).
    pub fn decide(&self, req: &Request, host: &dyn Host, now: u64) -> Decision {
        let mut facts = AuditFacts::default();
        let mut token = None;
        let mut learned = None;
        let verdict = match self.check(req, host, now, &mut facts, &mut token, &mut learned) {
            Ok(allowed) => Verdict::Allow(allowed),
            Err(Step::Deny(d)) => Verdict::Deny(d),
            Err(Step::Wait(provider, refetch)) => Verdict::Wait { provider, refetch },
            Err(Step::Introspect(provider)) => match token {
                Some(found) => Verdict::Introspect {
                    provider,
                    token: found.token.into_owned(),
                },
                None => Verdict::Deny(Denial::MissingToken),
            },
        };
        Decision {
            verdict,
            facts,
            learned,
        }
    }

    fn rule_for(&self, req: &Request, path: &str) -> Option<(usize, &Rule)> {
        self.config
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.matches(req.method, path, req.authority))
    }

    fn check<'a>(
        &'a self,
        req: &Request<'a>,
        host: &dyn Host,
        now: u64,
        facts: &mut AuditFacts,
        found_token: &mut Option<FoundToken<'a>>,
        learned: &mut Option<Learned>,
    ) -> Result<Allowed, Step> {
        let path = normalize_path(req.path)?;
        let rule = self.rule_for(req, &path);
        facts.rule = rule.map(|(i, _)| i);
        let (accepted, sources) = match rule {
            Some((i, r)) => (
                match r.providers.is_empty() {
                    true => &self.prepared.all_providers,
                    false => &r.providers,
                },
                self.prepared.rule_sources.get(i),
            ),
            None => (
                &self.prepared.all_providers,
                Some(&self.prepared.default_sources),
            ),
        };
        let rule = rule.map(|(_, r)| r);
        if rule.is_some_and(|r| r.anonymous) {
            return self.allow(req, &path, None, None, None, facts);
        }
        let sources = sources.map_or(&[][..], Vec::as_slice).iter();
        let places = sources.filter_map(|&(p, at)| self.config.provider(p)?.sources.get(at));
        let token = match the_token(req, places) {
            Ok(Some(one)) => one,
            Ok(None) => return Err(Denial::MissingToken.into()),
            Err(_) => return Err(Denial::MultipleTokens.into()),
        };
        let token = &*found_token.insert(token);
        // One SHA-256 of the token serves the audit, the shared caches and introspection; a token
        // this worker remembers needs none.
        let digest = TokenDigest::new(&token.token);
        // A token verified before (this very string) was classified then: the hot path.
        let identity = match self.remembered(&digest, token, accepted, host, now, facts)? {
            Some(identity) => identity,
            None => {
                let (identity, learnt) =
                    self.first_sight(token, &digest, accepted, host, now, facts)?;
                *learned = learnt;
                identity
            }
        };
        facts.claims = Some(identity.shared_claims());
        if let Some(rule) = rule {
            let missing = claims::missing_scopes(identity.claims(), &rule.scopes);
            if !missing.is_empty() {
                return Err(Denial::InsufficientScope(missing).into());
            }
            if let Some((claim, _)) = rule.claims.iter().find(|(claim, accepted)| {
                !claims::claim_matches(identity.claims(), claim, accepted)
            }) {
                return Err(Denial::ClaimMismatch(claim.clone()).into());
            }
        }
        // What a token verified just now derives goes with the identity the worker remembers,
        // so that its next request (not only the ones after) derives nothing.
        let keep = learned.as_ref().map(|l| &l.identity.derived);
        self.allow(req, &path, Some(&identity), Some(token), keep, facts)
    }

    /// A token this worker does not remember: classified, then verified by signature or by
    /// introspection. The hot path never calls it.
    // Out of line: see "Function size" in the crate docs.
    #[inline(never)]
    fn first_sight<'t>(
        &self,
        token: &'t FoundToken<'_>,
        digest: &TokenDigest,
        accepted: &[ProviderId],
        host: &dyn Host,
        now: u64,
        facts: &mut AuditFacts,
    ) -> Result<(Identity<'t>, Option<Learned>), Step> {
        // Before anything hashes, parses or forwards it.
        let shape = classify(&token.token)?;
        // Opaque tokens (they may hold dots) go to the route's introspecting provider, and are
        // refused as malformed where there is none.
        let is_jws = shape == TokenShape::Jose;
        match (is_jws, self.introspecting_provider(accepted)) {
            (false, Ok(id)) => {
                let identity = self.verify_by_introspection(token, digest, id, host, now, facts)?;
                Ok((identity, None))
            }
            (false, Err(step)) if !token.token.contains('.') => Err(step),
            _ => self.verify_jwt(token, digest, accepted, host, now, facts),
        }
    }

    /// The verdict for a request that passed authentication (or needs none): its policy's
    /// routes, then the edits and the budgets to charge.
    fn allow(
        &self,
        req: &Request,
        path: &str,
        identity: Option<&Identity>,
        token: Option<&FoundToken<'_>>,
        keep: Option<&Derived>,
        facts: &mut AuditFacts,
    ) -> Result<Allowed, Step> {
        let derived = self.derivation(identity, keep);
        let selected = derived
            .policy
            .and_then(|i| Some((i, self.config.policies.get(i)?)));
        facts.policy = selected.and_then(|(i, _)| self.prepared.policy_names.get(i).cloned());
        if let Some((_, p)) = selected {
            if !policy::route_allowed(p, req.method, path, req.authority) {
                return Err(Denial::PolicyDenied(p.name.clone()).into());
            }
        }
        // Owned headers the request carries are removed (a client must not speak for the
        // gateway); the request's headers are all here, so absent ones need no edit.
        let mut edits = HeaderEdits {
            removals: self
                .prepared
                .owned_headers
                .iter()
                .filter(|h| req.header_values(h).next().is_some())
                .map(|h| HeaderEdit::Remove(Arc::clone(h)))
                .collect(),
            ..HeaderEdits::default()
        };
        if let (true, Some(token)) = (self.config.headers.strip_token, token) {
            edits.token = Some(strip_token(req, token.source));
        }
        edits.identity = derived.headers;
        // Most policies set no headers: no iterator to build and drop then.
        if let Some((i, p)) = selected.filter(|(_, p)| !p.headers.is_empty()) {
            let names = self.prepared.policy_headers.get(i).into_iter().flatten();
            edits.policy.extend(
                names
                    .zip(&p.headers)
                    .map(|(n, (_, v))| HeaderEdit::Set(Arc::clone(n), v.clone())),
            );
        }
        Ok(Allowed {
            edits,
            policy: derived.policy,
            charges: derived.charges,
        })
    }

    /// What this gate derives from an identity's claims: kept with a remembered identity, and
    /// in `keep` for one verified just now (the identity the worker will remember); made anew
    /// otherwise (an anonymous request, an introspected token).
    fn derivation(&self, identity: Option<&Identity>, keep: Option<&Derived>) -> Derivation {
        let derive = || {
            let selected = policy::select(&self.config, identity.map(Identity::claims));
            Derivation {
                headers: identity.map(|i| self.identity_headers(i)),
                policy: selected.map(|(i, _)| i),
                charges: selected.map_or_else(no_charges, |(_, p)| charges(p, identity)),
            }
        };
        match (identity, keep) {
            (Some(Identity::Remembered(kept)), _) => kept.derived.get_or_derive(self.tag, derive),
            (Some(Identity::Fresh { .. }), Some(keep)) => keep.get_or_derive(self.tag, derive),
            _ => derive(),
        }
    }

    /// The `RateLimit-Policy` field value of a policy's limits (prepared once).
    pub fn rate_limit_policy(&self, policy: usize) -> &str {
        self.prepared
            .rate_limit_policies
            .get(policy)
            .map_or("", String::as_str)
    }

    fn provider_name(&self, id: ProviderId) -> Option<Arc<str>> {
        self.prepared.provider_names.get(id).cloned()
    }

    /// The audit's facts of a JWT `id` verified (now, or when it was remembered).
    fn verified_jwt(&self, id: ProviderId, facts: &mut AuditFacts) {
        facts.source = Some("jwt");
        facts.issuer = self.prepared.provider_issuers.get(id).cloned();
    }

    fn provider(&self, id: ProviderId) -> Result<&Provider, Step> {
        self.config
            .provider(id)
            .ok_or(Step::Deny(Denial::UnknownIssuer))
    }

    /// A JWT: verified by signature, unless its provider verifies everything by introspection.
    // Out of line: see "Function size" in the crate docs.
    #[inline(never)]
    fn verify_jwt<'t>(
        &self,
        token: &'t FoundToken<'_>,
        digest: &TokenDigest,
        accepted: &[ProviderId],
        host: &dyn Host,
        now: u64,
        facts: &mut AuditFacts,
    ) -> Result<(Identity<'t>, Option<Learned>), Step> {
        let untrusted = UntrustedToken::parse(&token.token);
        // A signing input hashed with SHA-256 is the token's first bytes: the token's own
        // SHA-256 (for the audit and the shared cache) hashes it on the way.
        let input_sha256 = untrusted
            .as_ref()
            .ok()
            .filter(|u| u.header.alg.signs_a_sha256_digest())
            .and_then(|u| digest.prefix_sha256(u.signing_input().len()));
        let fingerprint = digest.fingerprint();
        facts.token_sha256 = Some(fingerprint);
        let untrusted = untrusted?;
        let (id, provider) = self.provider_for(&untrusted, accepted)?;
        facts.provider = self.provider_name(id);
        if !reads(provider, token.source) {
            return Err(Denial::ProviderNotAccepted.into());
        }
        if provider.verify == VerifyMode::Introspection {
            let identity = self.verify_by_introspection(token, digest, id, host, now, facts)?;
            return Ok((identity, None));
        }
        if !provider.algorithms.contains(&untrusted.header.alg) {
            return Err(Denial::AlgorithmNotAllowed.into());
        }
        let set = match host.keys(id) {
            KeysView::Ready(set) => set,
            KeysView::Pending => return Err(Step::Wait(id, false)),
            KeysView::Unavailable => return Err(Denial::KeysUnavailable.into()),
        };
        let key = match set.select(untrusted.header.kid.as_deref(), untrusted.header.alg) {
            KeySelection::Found(key) => key,
            KeySelection::UnknownKid if host.may_refetch(id) => return Err(Step::Wait(id, true)),
            KeySelection::UnknownKid => return Err(Denial::UnknownKid.into()),
            KeySelection::AmbiguousKid => return Err(Denial::AmbiguousKid.into()),
            KeySelection::KidRequired => return Err(Denial::KidRequired.into()),
            KeySelection::NoKeyForAlgorithm => return Err(Denial::KeyMismatch.into()),
        };
        let verified = untrusted.verify_signed(key, input_sha256.as_ref())?;
        let dates = claims::validate(&verified, provider, now)?;
        self.verified_jwt(id, facts);
        let payload_segment = self
            .config
            .headers
            .payload
            .as_ref()
            .map(|_| verified.payload_segment.to_string());
        // This decision reads the same claims as the token's later, remembered ones.
        let claims = Rc::new(project(verified.claims, &self.config));
        let learnt = Some(Learned {
            token: token.token.to_string(),
            key: key_of(digest.get()),
            identity: VerifiedIdentity {
                provider: id,
                keys_generation: host.keys_generation(id),
                dates,
                claims: Rc::clone(&claims),
                payload_segment,
                fingerprint,
                derived: Derived::default(),
            },
        });
        if provider
            .introspection
            .as_ref()
            .is_some_and(|i| i.introspect_jwts)
        {
            // Signature and claims hold; the provider must also still call it active.
            self.verify_by_introspection(token, digest, id, host, now, facts)?;
            facts.source = Some("jwt");
        }
        let identity = Identity::Fresh {
            claims,
            payload_segment: Some(verified.payload_segment),
        };
        Ok((identity, learnt))
    }

    /// A token verified before, still good: same provider key set, the route accepts its
    /// provider, and its dates hold now. `Ok(None)`: not remembered, verify it.
    fn remembered<'t>(
        &self,
        digest: &TokenDigest,
        token: &FoundToken<'_>,
        accepted: &[ProviderId],
        host: &dyn Host,
        now: u64,
        facts: &mut AuditFacts,
    ) -> Result<Option<Identity<'t>>, Step> {
        if token.token.len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        let Some(identity) = host.verified(&token.token, digest) else {
            return Ok(None);
        };
        let id = identity.provider;
        let provider = self.provider(id)?;
        let usable = accepted.contains(&id)
            && reads(provider, token.source)
            && provider.verify != VerifyMode::Introspection
            && matches!(host.keys(id), KeysView::Ready(_))
            && host.keys_generation(id) == identity.keys_generation;
        if !usable {
            return Ok(None);
        }
        facts.provider = self.provider_name(id);
        facts.token_sha256 = Some(identity.fingerprint);
        identity.dates.check_for(provider, now)?;
        self.verified_jwt(id, facts);
        if provider
            .introspection
            .as_ref()
            .is_some_and(|i| i.introspect_jwts)
        {
            self.verify_by_introspection(token, digest, id, host, now, facts)?;
            facts.source = Some("jwt");
        }
        Ok(Some(Identity::Remembered(identity)))
    }

    /// The one provider of the route that can introspect a token that is not a JWT.
    fn introspecting_provider(&self, accepted: &[ProviderId]) -> Result<ProviderId, Step> {
        let mut introspecting = accepted.iter().copied().filter(|&id| {
            self.config
                .provider(id)
                .is_some_and(|p| p.verify != VerifyMode::Jwt)
        });
        match (introspecting.next(), introspecting.next()) {
            (Some(id), None) => Ok(id),
            (None, _) => {
                Err(Denial::Malformed("not a JWT, and no provider here introspects tokens").into())
            }
            (Some(_), Some(_)) => Err(Denial::Malformed(
                "not a JWT, and several providers here introspect: name one in the rule",
            )
            .into()),
        }
    }

    // Out of line: see "Function size" in the crate docs.
    #[inline(never)]
    fn verify_by_introspection<'t>(
        &self,
        token: &'t FoundToken<'_>,
        digest: &TokenDigest,
        id: ProviderId,
        host: &dyn Host,
        now: u64,
        facts: &mut AuditFacts,
    ) -> Result<Identity<'t>, Step> {
        let provider = self.provider(id)?;
        facts.provider = self.provider_name(id);
        if !reads(provider, token.source) {
            return Err(Denial::ProviderNotAccepted.into());
        }
        let Some(cfg) = &provider.introspection else {
            return Err(Denial::Malformed("this provider does not introspect tokens").into());
        };
        // The host finds a kept answer by the token's SHA-256; the audit's fingerprint reuses it.
        let view = host.introspection(id, digest);
        facts.token_sha256 = Some(digest.fingerprint());
        match view {
            IntrospectionView::Unknown => Err(Step::Introspect(id)),
            IntrospectionView::Failed(why) => Err(Denial::IntrospectionFailed(why).into()),
            IntrospectionView::Inactive => Err(Denial::TokenInactive.into()),
            IntrospectionView::Active {
                claims,
                cached,
                checked,
            } => {
                match checked {
                    Some(answer) => answer?.check(provider, now)?,
                    None => introspection::check_active(&*claims, provider, cfg, now)?,
                }
                facts.source = Some(if cached {
                    "introspection_cache"
                } else {
                    "introspection"
                });
                Ok(Identity::Fresh {
                    claims,
                    payload_segment: None,
                })
            }
        }
    }

    /// The provider whose issuer the token claims, if this route accepts it. The claim is only
    /// used to choose the verifier; it is checked again after verification.
    fn provider_for(
        &self,
        token: &UntrustedToken,
        accepted: &[ProviderId],
    ) -> Result<(ProviderId, &Provider), Step> {
        let iss = token.claimed_issuer().ok_or(Denial::UnknownIssuer)?;
        let id = self
            .config
            .providers
            .iter()
            .position(|p| p.issuer == iss)
            .ok_or(Denial::UnknownIssuer)?;
        if !accepted.contains(&id) {
            return Err(Denial::ProviderNotAccepted.into());
        }
        Ok((id, self.provider(id)?))
    }

    /// The mapped claims as headers; values that cannot be sent safely are left out.
    fn identity_headers(&self, identity: &Identity) -> Rc<[HeaderEdit]> {
        let mut edits = Vec::new();
        let names = self.prepared.claim_headers.iter();
        for (header, (_, path)) in names.zip(&self.config.headers.claims) {
            let value = match claims::lookup(identity.claims(), path) {
                Some(Value::Array(items)) => {
                    let parts: Option<Vec<String>> =
                        items.iter().map(claims::scalar_text).collect();
                    parts.map(|p| p.join(","))
                }
                Some(v) => claims::scalar_text(v),
                None => None,
            };
            if let Some(value) = value.filter(|v| is_safe_header_value(v)) {
                edits.push(HeaderEdit::Set(Arc::clone(header), value));
            }
        }
        if let (Some(header), Some(segment)) =
            (&self.prepared.payload_header, identity.payload_segment())
        {
            edits.push(HeaderEdit::Set(Arc::clone(header), segment.to_string()));
        }
        edits.into()
    }
}

/// Whether `provider` reads tokens at `source`: by reference first (the gate hands out places
/// from the providers' own lists), then by value (the same place, listed by another provider).
fn reads(provider: &Provider, source: &TokenSource) -> bool {
    provider.sources.iter().any(|s| std::ptr::eq(s, source)) || provider.sources.contains(source)
}

/// No budget to charge, shared: an anonymous request without a policy allocates nothing (an
/// empty `Rc<[T]>` is an allocation of its own).
fn no_charges() -> Rc<[BudgetKey]> {
    thread_local! {
        static NONE: Rc<[BudgetKey]> = Rc::from([]);
    }
    NONE.with(Rc::clone)
}

/// For each limit of the policy: whose budget this request spends.
fn charges(policy: &Policy, identity: Option<&Identity>) -> Rc<[BudgetKey]> {
    policy
        .limits
        .iter()
        .map(|l| ratelimit::budget_key(&l.key, identity.map(Identity::claims)))
        .collect()
}

/// A token's SHA-256, computed the first time something needs it (the engine and the host share
/// it: a token is hashed at most once per decision).
pub struct TokenDigest<'t> {
    token: &'t str,
    digest: OnceCell<[u8; 32]>,
}

impl<'t> TokenDigest<'t> {
    pub fn new(token: &'t str) -> TokenDigest<'t> {
        TokenDigest {
            token,
            digest: OnceCell::new(),
        }
    }

    pub fn get(&self) -> &[u8; 32] {
        self.digest.get_or_init(|| token_hash(self.token))
    }

    /// The SHA-256 of the token's first `len` bytes (`None` past its end). When the token's
    /// own is not known yet, one pass over those bytes serves both: SHA-256 reads its input in
    /// order, so the state after the prefix is copied, finished for the prefix, and carried on
    /// over the rest for the token.
    pub fn prefix_sha256(&self, len: usize) -> Option<[u8; 32]> {
        let (prefix, rest) = self.token.as_bytes().split_at_checked(len)?;
        if self.digest.get().is_some() {
            return Some(Sha256::digest(prefix).into());
        }
        let mut hasher = Sha256::new();
        hasher.update(prefix);
        let of_prefix = hasher.clone().finalize().into();
        hasher.update(rest);
        let _ = self.digest.set(hasher.finalize().into());
        Some(of_prefix)
    }

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.get())
    }
}

/// No control characters (CR, LF, NUL, DEL...), not empty, not huge.
fn is_safe_header_value(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_HEADER_VALUE && !v.chars().any(char::is_control)
}

#[cfg(test)]
mod tests;
