//! The per-request decision: rule, token, provider, key, signature, claims, headers.
//!
//! [`Gate::decide`] is the only entry point the filter calls for a request. It takes the request,
//! a [`Keyring`] (what the host knows of each provider's keys right now) and `now`, and returns a
//! [`Verdict`]: allow with header edits, deny with a [`Denial`], or wait for keys. Waiting is a
//! value, not a callback: the filter pauses the request, fetches, and calls `decide` again.
//! The order of the checks is the order of trust: nothing in the token is believed before its
//! signature is verified with a key chosen by the configured provider for the claimed issuer.

use crate::audit::{token_fingerprint, AuditFacts};
use crate::claims;
use crate::config::{Config, Provider, ProviderId, Rule, TokenSource};
use crate::denial::Denial;
use crate::jwk::{JwkSet, KeySelection};
use crate::jws::{UntrustedToken, VerifiedToken};
use crate::request::{find_tokens, normalize_path, strip_token, HeaderEdit, Request};
use serde_json::Value;

/// What the host knows of one provider's keys.
pub enum KeysView<'a> {
    Ready(&'a JwkSet),
    /// Not fetched yet, or being fetched: worth waiting for.
    Pending,
    /// Fetching failed and no usable keys are left.
    Unavailable,
}

/// The host's view of every provider's keys.
pub trait Keyring {
    fn keys(&self, provider: ProviderId) -> KeysView<'_>;
    /// Whether a token with an unknown `kid` may cause a refetch now (cooldown).
    fn may_refetch(&self, provider: ProviderId) -> bool;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the request on after applying these edits, in order. The first edits always remove
    /// every header the filter owns.
    Allow(Vec<HeaderEdit>),
    Deny(Denial),
    /// Pause until the provider's keys change (`refetch`: ask for a refetch first), then decide
    /// again.
    Wait {
        provider: ProviderId,
        refetch: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub facts: AuditFacts,
}

/// The compiled configuration and the decision logic over it.
#[derive(Debug)]
pub struct Gate {
    pub config: Config,
}

/// Longest header value forwarded upstream from a claim.
const MAX_HEADER_VALUE: usize = 4096;

impl Gate {
    pub fn new(config: Config) -> Gate {
        Gate { config }
    }

    /// Decides one request at time `now` (seconds since the epoch).
    pub fn decide(&self, req: &Request, keys: &dyn Keyring, now: u64) -> Decision {
        let mut facts = AuditFacts::default();
        let verdict = match self.check(req, keys, now, &mut facts) {
            Ok(edits) => Verdict::Allow(edits),
            Err(Step::Deny(d)) => Verdict::Deny(d),
            Err(Step::Wait(provider, refetch)) => Verdict::Wait { provider, refetch },
        };
        Decision { verdict, facts }
    }

    /// Removal of every header the filter may set: the start of every allowed request's edits.
    fn removals(&self) -> Vec<HeaderEdit> {
        self.config
            .headers
            .owned_headers()
            .map(|h| HeaderEdit::Remove(h.to_string()))
            .collect()
    }

    fn rule_for(&self, req: &Request, path: &str) -> Option<(usize, &Rule)> {
        self.config
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.matches(req.method, path, req.authority))
    }

    fn check(
        &self,
        req: &Request,
        keys: &dyn Keyring,
        now: u64,
        facts: &mut AuditFacts,
    ) -> Result<Vec<HeaderEdit>, Step> {
        let path = normalize_path(req.path)?;
        let rule = self.rule_for(req, &path);
        facts.rule = rule.map(|(i, _)| i);
        let rule = rule.map(|(_, r)| r);
        if rule.is_some_and(|r| r.anonymous) {
            return Ok(self.removals());
        }
        let accepted: Vec<ProviderId> = match rule {
            Some(r) if !r.providers.is_empty() => r.providers.clone(),
            _ => (0..self.config.providers.len()).collect(),
        };
        let mut sources: Vec<&TokenSource> = Vec::new();
        for &id in &accepted {
            for s in self.provider(id)?.sources.iter() {
                if !sources.contains(&s) {
                    sources.push(s);
                }
            }
        }
        let found = find_tokens(req, &sources);
        let token = match found.as_slice() {
            [] => return Err(Denial::MissingToken.into()),
            [one] => one,
            _ => return Err(Denial::MultipleTokens.into()),
        };
        facts.token_sha256 = Some(token_fingerprint(&token.token));
        let untrusted = UntrustedToken::parse(&token.token)?;
        let (id, provider) = self.provider_for(&untrusted, &accepted)?;
        facts.provider = Some(provider.name.clone());
        if !provider.sources.contains(&token.source) {
            return Err(Denial::ProviderNotAccepted.into());
        }
        if !provider.algorithms.contains(&untrusted.header.alg) {
            return Err(Denial::AlgorithmNotAllowed.into());
        }
        let set = match keys.keys(id) {
            KeysView::Ready(set) => set,
            KeysView::Pending => return Err(Step::Wait(id, false)),
            KeysView::Unavailable => return Err(Denial::KeysUnavailable.into()),
        };
        let key = match set.select(untrusted.header.kid.as_deref(), untrusted.header.alg) {
            KeySelection::Found(key) => key,
            KeySelection::UnknownKid if keys.may_refetch(id) => return Err(Step::Wait(id, true)),
            KeySelection::UnknownKid => return Err(Denial::UnknownKid.into()),
            KeySelection::AmbiguousKid => return Err(Denial::AmbiguousKid.into()),
            KeySelection::KidRequired => return Err(Denial::KidRequired.into()),
            KeySelection::NoKeyForAlgorithm => return Err(Denial::KeyMismatch.into()),
        };
        let verified = untrusted.verify(key)?;
        facts.identity_from(&verified.claims);
        claims::validate(&verified, provider, now)?;
        if let Some(rule) = rule {
            let missing = claims::missing_scopes(&verified.claims, &rule.scopes);
            if !missing.is_empty() {
                return Err(Denial::InsufficientScope(missing).into());
            }
            if let Some((claim, _)) = rule
                .claims
                .iter()
                .find(|(claim, accepted)| !claims::claim_matches(&verified.claims, claim, accepted))
            {
                return Err(Denial::ClaimMismatch(claim.clone()).into());
            }
        }
        let mut edits = self.removals();
        if self.config.headers.strip_token {
            edits.extend(strip_token(req, &token.source));
        }
        edits.extend(self.identity_headers(&verified));
        Ok(edits)
    }

    fn provider(&self, id: ProviderId) -> Result<&Provider, Step> {
        self.config
            .provider(id)
            .ok_or(Step::Deny(Denial::UnknownIssuer))
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
    fn identity_headers(&self, token: &VerifiedToken) -> Vec<HeaderEdit> {
        let mut edits = Vec::new();
        for (header, path) in &self.config.headers.claims {
            let value = match claims::lookup(&token.claims, path) {
                Some(Value::Array(items)) => {
                    let parts: Option<Vec<String>> =
                        items.iter().map(claims::scalar_text).collect();
                    parts.map(|p| p.join(","))
                }
                Some(v) => claims::scalar_text(v),
                None => None,
            };
            if let Some(value) = value.filter(|v| is_safe_header_value(v)) {
                edits.push(HeaderEdit::Set(header.clone(), value));
            }
        }
        if let Some(header) = &self.config.headers.payload {
            edits.push(HeaderEdit::Set(
                header.clone(),
                token.payload_segment.to_string(),
            ));
        }
        edits
    }
}

/// No control characters (CR, LF, NUL, DEL...), not empty, not huge.
fn is_safe_header_value(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_HEADER_VALUE && !v.chars().any(char::is_control)
}

enum Step {
    Deny(Denial),
    Wait(ProviderId, bool),
}

impl From<Denial> for Step {
    fn from(d: Denial) -> Step {
        Step::Deny(d)
    }
}

#[cfg(test)]
mod tests;
