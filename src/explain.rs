//! The step-by-step account of one decision, for people: what `tollgate explain` prints.
//!
//! [`explain`] walks the checks of [`Gate::decide`] in the same order, each by the same engine
//! function the gate calls ([`normalize_path`], [`RouteMatch::matches`], [`find_tokens`],
//! [`UntrustedToken::parse`], [`JwkSet::select`], [`UntrustedToken::verify`], the `claims`,
//! `introspection` and `policy` checks), and records every check that ran with its result and
//! why, in words (`aud "api://a" not in ["api://b"]`, `expired 3m12s ago`). Nothing here decides
//! anything the gate does not: the rules live in those functions, this module only calls them
//! and describes their answers.
//!
//! The gate's own decision is then taken for the same inputs and kept beside the account
//! ([`Explanation::decision`]): the answer shown to a person is always the gate's, and
//! [`Explanation::agrees`] says whether the account reached the same verdict (a disagreement
//! is a bug, which the CLI reports as such; the tests assert agreement on a table of tokens).
//!
//! Like the rest of the engine this does no I/O: the keys and introspection answers come from
//! the [`Host`], and `now` is an argument.

use crate::audit::{rfc3339, token_fingerprint};
use crate::claims;
use crate::config::{Config, Provider, ProviderId, RouteMatch, TokenSource, VerifyMode};
use crate::denial::Denial;
use crate::gate::{Decision, Gate, Host, IntrospectionView, KeysView, TokenDigest, Verdict};
use crate::introspection;
use crate::jwk::{JwkSet, KeySelection};
use crate::jws::UntrustedToken;
use crate::policy;
use crate::request::{find_tokens, normalize_path, FoundToken, Request};
use crate::{b64, json};
use serde_json::{Map, Value};

/// A [`Host`] that can also say where each provider's keys came from, for the account.
pub trait ExplainHost: Host {
    /// Where the keys of `provider` came from, or why there are none (e.g. "fetched from
    /// https://idp/jwks", "not given: pass --jwks FILE or --fetch").
    fn keys_origin(&self, _provider: ProviderId) -> Option<String> {
        None
    }
}

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    Pass,
    Fail,
    /// The decision needs I/O first (keys, introspection): the filter would pause the request.
    Pending,
}

impl CheckResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Pass => "pass",
            CheckResult::Fail => "fail",
            CheckResult::Pending => "pending",
        }
    }
}

/// One check that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short, stable name: `path`, `rule`, `token`, `format`, `provider`, `algorithm`, `keys`,
    /// `key`, `signature`, `typ`, `iss`, `aud`, `time`, `introspection`, `scopes`, `claim`,
    /// `policy`.
    pub name: &'static str,
    pub result: CheckResult,
    pub detail: String,
}

/// Where the walk ended: the verdict of the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed, under this policy (index into `Config::policies`).
    Allow {
        policy: Option<usize>,
    },
    Deny(Denial),
    /// The filter would wait for the provider's keys (`refetch`: after asking for a refetch).
    Wait {
        provider: ProviderId,
        refetch: bool,
    },
    /// The filter would ask the provider's introspection endpoint first.
    Introspect {
        provider: ProviderId,
    },
}

/// The token the request carried, decoded for reading: nothing here is trusted unless
/// `signature_verified` (or `introspected`) says so.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenView {
    /// Where it was found.
    pub source: TokenSource,
    /// First 16 hex digits of its SHA-256, as in the audit line.
    pub sha256: String,
    /// The JOSE header, decoded, when it is a JWT whose header decodes.
    pub header: Option<Map<String, Value>>,
    /// The payload, decoded, when it is a JWT whose payload decodes.
    pub claims: Option<Map<String, Value>>,
    /// Why the header or the payload could not be decoded (or that it is not a JWT).
    pub decode_error: Option<String>,
    /// The signature was verified with a key of the provider the token's `iss` names.
    pub signature_verified: bool,
    /// The provider's introspection endpoint's answer, when the host had an active one.
    pub introspected: Option<Map<String, Value>>,
}

/// The account of one decision and the gate's own decision for the same inputs.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub now: u64,
    /// The path the rules were matched against (`None` when it could not be normalized).
    pub normalized_path: Option<String>,
    /// Index of the rule that matched; `None` when none did (the default: any valid token).
    pub rule: Option<usize>,
    pub anonymous: bool,
    /// The provider chosen by the token's `iss` (or the introspecting one).
    pub provider: Option<String>,
    /// The policy that applied.
    pub policy: Option<String>,
    pub token: Option<TokenView>,
    /// Every check that ran, in order; the last one decided unless all passed.
    pub checks: Vec<Check>,
    /// The verdict the account reached.
    pub outcome: Outcome,
    /// What [`Gate::decide`] answered for the same request, host and time.
    pub decision: Decision,
}

impl Explanation {
    /// Whether the account reached the gate's verdict (always, unless there is a bug).
    pub fn agrees(&self) -> bool {
        let same_verdict = match (&self.outcome, &self.decision.verdict) {
            (Outcome::Allow { policy }, Verdict::Allow(allowed)) => *policy == allowed.policy,
            (Outcome::Deny(a), Verdict::Deny(b)) => a == b,
            (
                Outcome::Wait { provider, refetch },
                Verdict::Wait {
                    provider: p,
                    refetch: r,
                },
            ) => provider == p && refetch == r,
            (Outcome::Introspect { provider }, Verdict::Introspect { provider: p, .. }) => {
                provider == p
            }
            _ => false,
        };
        same_verdict
            && self.rule == self.decision.facts.rule
            && self.policy.as_deref() == self.decision.facts.policy.as_deref()
    }
}

/// Explains how `gate` decides `req` at `now` with what `host` knows.
pub fn explain(gate: &Gate, req: &Request, host: &dyn ExplainHost, now: u64) -> Explanation {
    let mut walk = Walk {
        config: &gate.config,
        req,
        host,
        now,
        checks: Vec::new(),
        normalized_path: None,
        rule: None,
        anonymous: false,
        provider: None,
        policy: None,
        token: None,
    };
    let outcome = match walk.run() {
        Ok(policy) => Outcome::Allow { policy },
        Err(stop) => stop,
    };
    let plain_host: &dyn Host = host;
    let decision = gate.decide(req, plain_host, now);
    Explanation {
        now,
        normalized_path: walk.normalized_path,
        rule: walk.rule,
        anonymous: walk.anonymous,
        provider: walk.provider,
        policy: walk.policy,
        token: walk.token,
        checks: walk.checks,
        outcome,
        decision,
    }
}

/// Where a token given on its own (`tollgate explain TOKEN`) goes in the request: the first
/// place read by the provider whose issuer the token claims, else by the first provider that
/// reads the Authorization bearer header, else by the first provider.
pub fn default_token_source(config: &Config, token: &str) -> Option<TokenSource> {
    let claimed = UntrustedToken::parse(token)
        .ok()
        .and_then(|t| t.claimed_issuer().map(str::to_owned));
    let by_issuer = claimed.and_then(|iss| config.providers.iter().find(|p| p.issuer == iss));
    let bearer = TokenSource::Header {
        name: "authorization".into(),
        prefix: Some("Bearer ".into()),
    };
    let reads_bearer = config
        .providers
        .iter()
        .find(|p| p.sources.contains(&bearer));
    by_issuer
        .or(reads_bearer)
        .or(config.providers.first())
        .and_then(|p| p.sources.first())
        .cloned()
}

/// Puts `token` into a request's path or headers, the way a client sends it in `source`.
pub fn put_token(
    source: &TokenSource,
    token: &str,
    path: &mut String,
    headers: &mut Vec<(String, String)>,
) {
    match source {
        TokenSource::Header { name, prefix } => headers.push((
            name.to_string(),
            format!("{}{token}", prefix.as_deref().unwrap_or("")),
        )),
        TokenSource::Cookie(name) => {
            let pair = format!("{name}={token}");
            match headers
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case("cookie"))
            {
                Some((_, value)) => {
                    value.push_str("; ");
                    value.push_str(&pair);
                }
                None => headers.push(("cookie".into(), pair)),
            }
        }
        TokenSource::Query(name) => {
            path.push(if path.contains('?') { '&' } else { '?' });
            path.push_str(&crate::request::percent_encode(name));
            path.push('=');
            path.push_str(&crate::request::percent_encode(token));
        }
    }
}

/// How a place a token is read from is named in the account.
pub fn describe_source(source: &TokenSource) -> String {
    match source {
        TokenSource::Header {
            name,
            prefix: Some(prefix),
        } => format!("header {name} (prefix {})", quote(prefix)),
        TokenSource::Header { name, prefix: None } => format!("header {name}"),
        TokenSource::Cookie(name) => format!("cookie {name}"),
        TokenSource::Query(name) => format!("query parameter {name}"),
    }
}

/// A route match in words: `prefix "/orders", methods POST`.
pub fn describe_match(m: &RouteMatch) -> String {
    let mut parts = Vec::new();
    if let Some(prefix) = &m.prefix {
        parts.push(format!("prefix {}", quote(prefix)));
    }
    if let Some(path) = &m.path {
        parts.push(format!("path {}", quote(path)));
    }
    if !m.methods.is_empty() {
        parts.push(format!("methods {}", m.methods.join(",")));
    }
    if let Some(host) = &m.host {
        parts.push(format!("host {}", quote(host)));
    }
    if parts.is_empty() {
        "every request".to_string()
    } else {
        parts.join(", ")
    }
}

/// A duration in seconds as `3m12s`, `1h5m`, `2d3h`, `45s`, `0s`: the largest unit and the next
/// one (the rest is cut off).
pub fn human_duration(secs: u64) -> String {
    let parts = [
        (secs / 86_400, "d"),
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
    ];
    let Some(first) = parts.iter().position(|(n, _)| *n > 0) else {
        return "0s".to_string();
    };
    parts
        .iter()
        .skip(first)
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// Seconds since the epoch as `2026-11-26T07:24:09Z`.
pub fn human_time(secs: u64) -> String {
    let full = rfc3339(secs.saturating_mul(1000));
    match full.strip_suffix(".000Z") {
        Some(base) => format!("{base}Z"),
        None => full,
    }
}

/// A string as JSON text, with an over-long one cut (values come from untrusted tokens).
fn quote(s: &str) -> String {
    const MAX_CHARS: usize = 120;
    let cut: String = s.chars().take(MAX_CHARS).collect();
    let mut text = String::with_capacity(cut.len() + 2);
    json::write_str(&mut text, &cut);
    if s.chars().nth(MAX_CHARS).is_some() {
        text.push_str("...");
    }
    text
}

/// A claim value as compact JSON, cut when long.
fn show_value(v: &Value) -> String {
    const MAX_CHARS: usize = 160;
    let text = json::to_text(v);
    if text.chars().nth(MAX_CHARS).is_some() {
        let cut: String = text.chars().take(MAX_CHARS).collect();
        format!("{cut}...")
    } else {
        text
    }
}

fn quoted_list<S: AsRef<str>>(items: &[S]) -> String {
    let inner: Vec<String> = items.iter().map(|s| quote(s.as_ref())).collect();
    format!("[{}]", inner.join(", "))
}

/// The keys of a set in words: `keys: k1, k2` (and how many have no `kid`).
fn describe_keys(set: &JwkSet) -> String {
    let kids = set.kids();
    let without = set.len().saturating_sub(kids.len());
    let mut parts: Vec<String> = kids.iter().map(|k| k.to_string()).collect();
    if without > 0 {
        parts.push(format!("{without} without kid"));
    }
    format!("keys: {}", parts.join(", "))
}

/// A token's header and payload as decoded for reading.
struct Decoded {
    header: Option<Map<String, Value>>,
    claims: Option<Map<String, Value>>,
    error: Option<String>,
}

/// Decodes a JWT's header and payload for reading, without believing any of it.
fn decode_jwt(token: &str) -> Decoded {
    if !token.contains('.') {
        return Decoded {
            header: None,
            claims: None,
            error: Some("not a JWT: an opaque token".to_string()),
        };
    }
    let mut parts = token.split('.');
    let decode = |segment: Option<&str>, what: &str| -> Result<Map<String, Value>, String> {
        let segment = segment.unwrap_or("");
        let bytes = b64::decode(segment).map_err(|e| format!("{what} is not base64url: {e}"))?;
        json::parse_object(&bytes, json::MAX_DEPTH)
            .map_err(|e| format!("{what} is not a JSON object: {e}"))
    };
    let header = decode(parts.next(), "header");
    let claims = decode(parts.next(), "payload");
    let error = match (&header, &claims) {
        (Err(e), _) | (Ok(_), Err(e)) => Some(e.clone()),
        _ => None,
    };
    Decoded {
        header: header.ok(),
        claims: claims.ok(),
        error,
    }
}

/// The walk: the gate's checks in the gate's order, each recorded. `Err` is where it stopped.
struct Walk<'a> {
    config: &'a Config,
    req: &'a Request<'a>,
    host: &'a dyn ExplainHost,
    now: u64,
    checks: Vec<Check>,
    normalized_path: Option<String>,
    rule: Option<usize>,
    anonymous: bool,
    provider: Option<String>,
    policy: Option<String>,
    token: Option<TokenView>,
}

impl<'a> Walk<'a> {
    fn record(&mut self, name: &'static str, result: CheckResult, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            result,
            detail: detail.into(),
        });
    }

    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.record(name, CheckResult::Pass, detail);
    }

    /// Records a failed check and returns the denial it leads to.
    fn fail(&mut self, name: &'static str, denial: Denial, detail: impl Into<String>) -> Outcome {
        self.record(name, CheckResult::Fail, detail);
        Outcome::Deny(denial)
    }

    /// A failed check described by the denial's own text.
    fn fail_plain(&mut self, name: &'static str, denial: Denial) -> Outcome {
        let detail = denial.description();
        self.fail(name, denial, detail)
    }

    fn provider_ref(&self, id: ProviderId) -> Result<&'a Provider, Outcome> {
        self.config
            .provider(id)
            .ok_or(Outcome::Deny(Denial::UnknownIssuer))
    }

    fn provider_name(&self, id: ProviderId) -> String {
        self.config
            .provider(id)
            .map_or_else(|| format!("#{id}"), |p| p.name.clone())
    }

    /// As `Gate::check`: path, rule, token, identity, rule scopes and claims, then the policy.
    fn run(&mut self) -> Result<Option<usize>, Outcome> {
        let path = match normalize_path(self.req.path) {
            Ok(path) => path.into_owned(),
            Err(d) => {
                let detail = format!("{}: {}", quote(self.req.path), d.description());
                return Err(self.fail("path", d, detail));
            }
        };
        let shown = if path == self.req.path {
            path.clone()
        } else {
            format!("{} is read as {path}", quote(self.req.path))
        };
        self.pass("path", shown);
        self.normalized_path = Some(path.clone());

        let config = self.config;
        let req = self.req;
        let rule = config
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matcher.matches(req.method, &path, req.authority));
        self.rule = rule.map(|(i, _)| i);
        match rule {
            Some((i, r)) if r.anonymous => {
                self.anonymous = true;
                self.pass(
                    "rule",
                    format!(
                        "rules[{i}] ({}) is anonymous: the token is not looked at",
                        describe_match(&r.matcher)
                    ),
                );
                return self.allow(&path, None);
            }
            Some((i, r)) => {
                let mut needs = Vec::new();
                if !r.providers.is_empty() {
                    let names: Vec<String> =
                        r.providers.iter().map(|&p| self.provider_name(p)).collect();
                    needs.push(format!("providers {}", names.join(", ")));
                }
                if !r.scopes.is_empty() {
                    needs.push(format!("scopes {}", r.scopes.join(" ")));
                }
                if !r.claims.is_empty() {
                    let names: Vec<&str> = r.claims.iter().map(|(c, _)| c.as_str()).collect();
                    needs.push(format!("claims {}", names.join(", ")));
                }
                let needs = if needs.is_empty() {
                    "a valid token".to_string()
                } else {
                    needs.join("; ")
                };
                self.pass(
                    "rule",
                    format!(
                        "rules[{i}] ({}) matches; needs {needs}",
                        describe_match(&r.matcher)
                    ),
                );
            }
            None => self.pass(
                "rule",
                "no rule matches: the default needs a valid token from any provider",
            ),
        }
        let rule = rule.map(|(_, r)| r);

        let accepted: Vec<ProviderId> = match rule {
            Some(r) if !r.providers.is_empty() => r.providers.clone(),
            _ => (0..config.providers.len()).collect(),
        };
        let mut sources: Vec<&TokenSource> = Vec::new();
        for &id in &accepted {
            for s in self.provider_ref(id)?.sources.iter() {
                if !sources.contains(&s) {
                    sources.push(s);
                }
            }
        }
        let places: Vec<String> = sources.iter().map(|s| describe_source(s)).collect();
        let found = find_tokens(req, sources.iter().copied());
        let token = match found.as_slice() {
            [] => {
                let detail = format!("no token in {}", places.join(", "));
                return Err(self.fail("token", Denial::MissingToken, detail));
            }
            [one] => one.clone(),
            several => {
                let wheres: Vec<String> =
                    several.iter().map(|f| describe_source(f.source)).collect();
                let detail = format!(
                    "{} different tokens, in {}",
                    several.len(),
                    wheres.join(", ")
                );
                return Err(self.fail("token", Denial::MultipleTokens, detail));
            }
        };
        let decoded = decode_jwt(&token.token);
        self.token = Some(TokenView {
            source: token.source.clone(),
            sha256: token_fingerprint(&token.token).as_str().to_owned(),
            header: decoded.header,
            claims: decoded.claims,
            decode_error: decoded.error,
            signature_verified: false,
            introspected: None,
        });
        self.pass(
            "token",
            format!("one token, in {}", describe_source(token.source)),
        );

        // As the gate: the same classification of the token's shape.
        let is_jws = match crate::jws::classify(&token.token) {
            Ok(shape) => shape == crate::jws::TokenShape::Jose,
            Err(d) => return Err(self.fail_plain("format", d)),
        };
        let identity = match (is_jws, self.introspecting_provider(&accepted)) {
            (false, Ok(id)) => {
                self.pass(
                    "format",
                    format!(
                        "not a compact JWS: introspected by {}",
                        self.provider_name(id)
                    ),
                );
                self.verify_by_introspection(&token, id)?
            }
            (false, Err(d)) if !token.token.contains('.') => {
                return Err(self.fail_plain("format", d))
            }
            _ => self.verify_jwt(&token, &accepted)?,
        };

        if let Some(r) = rule {
            let missing = claims::missing_scopes(&identity, &r.scopes);
            let have = claims::scopes(&identity);
            if !missing.is_empty() {
                let detail = format!(
                    "missing {} (token has: {})",
                    missing.join(" "),
                    if have.is_empty() {
                        "no scopes".to_string()
                    } else {
                        have.join(" ")
                    }
                );
                return Err(self.fail("scopes", Denial::InsufficientScope(missing), detail));
            }
            if !r.scopes.is_empty() {
                self.pass("scopes", format!("has {}", r.scopes.join(" ")));
            }
            for (claim, accepted_values) in &r.claims {
                let value = claims::lookup(&identity, claim).map(show_value);
                if claims::claim_matches(&identity, claim, accepted_values) {
                    self.pass(
                        "claim",
                        format!(
                            "{claim} is {}, which has one of {}",
                            value.unwrap_or_default(),
                            quoted_list(accepted_values)
                        ),
                    );
                } else {
                    let detail = match value {
                        Some(v) => format!(
                            "{claim} is {v}, not one of {}",
                            quoted_list(accepted_values)
                        ),
                        None => format!(
                            "no {claim} claim (needs one of {})",
                            quoted_list(accepted_values)
                        ),
                    };
                    return Err(self.fail("claim", Denial::ClaimMismatch(claim.clone()), detail));
                }
            }
        }
        self.allow(&path, Some(&identity))
    }

    /// As `Gate::allow`: the policy and whether it lets the request use this route.
    fn allow(
        &mut self,
        path: &str,
        identity: Option<&Map<String, Value>>,
    ) -> Result<Option<usize>, Outcome> {
        let selected = policy::select(self.config, identity);
        self.policy = selected.map(|(_, p)| p.name.clone());
        let Some((index, p)) = selected else {
            if !self.config.policies.is_empty() {
                self.pass(
                    "policy",
                    "no policy's conditions hold, and there is no default",
                );
            }
            return Ok(None);
        };
        let why = if self.config.default_policy == Some(index)
            && identity.is_none_or(|c| !p.when.iter().all(|cond| policy::holds(c, cond)))
        {
            "the default policy".to_string()
        } else if p.when.is_empty() {
            "the first policy without conditions".to_string()
        } else {
            "the first policy whose conditions hold".to_string()
        };
        let req = self.req;
        if !policy::route_allowed(p, req.method, path, req.authority) {
            let denied_by = if p
                .deny
                .iter()
                .any(|m| m.matches(req.method, path, req.authority))
            {
                "its deny list names"
            } else {
                "its allow list does not name"
            };
            let detail = format!("{} ({why}): {denied_by} {} {path}", p.name, req.method);
            return Err(self.fail("policy", Denial::PolicyDenied(p.name.clone()), detail));
        }
        let limits = if p.limits.is_empty() {
            String::new()
        } else {
            let names: Vec<&str> = p.limits.iter().map(|l| l.name.as_str()).collect();
            format!("; limits {}", names.join(", "))
        };
        self.pass(
            "policy",
            format!("{} ({why}) allows this route{limits}", p.name),
        );
        Ok(Some(index))
    }

    /// As `Gate::verify_jwt`: parse, provider by `iss`, algorithm, keys, key, signature, then
    /// the provider's checks (and introspection when the provider asks for it).
    fn verify_jwt(
        &mut self,
        token: &FoundToken,
        accepted: &[ProviderId],
    ) -> Result<Map<String, Value>, Outcome> {
        let untrusted = match UntrustedToken::parse(&token.token) {
            Ok(t) => t,
            Err(d) => return Err(self.fail_plain("format", d)),
        };
        let mut shape = format!("compact JWS, alg {}", untrusted.header.alg.name());
        if let Some(kid) = &untrusted.header.kid {
            shape.push_str(&format!(", kid {}", quote(kid)));
        }
        if let Some(typ) = &untrusted.header.typ {
            shape.push_str(&format!(", typ {}", quote(typ)));
        }
        self.pass("format", shape);

        let (id, provider) = self.provider_for(&untrusted, accepted)?;
        self.provider = Some(provider.name.clone());
        if !provider.sources.contains(token.source) {
            let detail = format!(
                "the token came in {}, which provider {} does not read",
                describe_source(token.source),
                provider.name
            );
            return Err(self.fail("provider", Denial::ProviderNotAccepted, detail));
        }
        self.pass(
            "provider",
            format!(
                "{} (issuer {}), accepted on this route",
                provider.name,
                quote(&provider.issuer)
            ),
        );
        if provider.verify == VerifyMode::Introspection {
            return self.verify_by_introspection(token, id);
        }

        let alg = untrusted.header.alg;
        if !provider.algorithms.contains(&alg) {
            let allowed: Vec<&str> = provider.algorithms.iter().map(|a| a.name()).collect();
            let detail = format!(
                "{} is not allowed for {} (allowed: {})",
                alg.name(),
                provider.name,
                allowed.join(", ")
            );
            return Err(self.fail("algorithm", Denial::AlgorithmNotAllowed, detail));
        }
        self.pass("algorithm", format!("{} is allowed", alg.name()));

        let host = self.host;
        let view = host.keys(id);
        // Asked after the keys: a host that fetches them on demand knows only then.
        let origin = host.keys_origin(id);
        let from = origin
            .as_deref()
            .map(|o| format!(" ({o})"))
            .unwrap_or_default();
        let set = match view {
            KeysView::Ready(set) => set,
            KeysView::Pending => {
                self.record(
                    "keys",
                    CheckResult::Pending,
                    format!(
                        "the keys of {} are not loaded yet{from}: the filter waits for them",
                        provider.name
                    ),
                );
                return Err(Outcome::Wait {
                    provider: id,
                    refetch: false,
                });
            }
            KeysView::Unavailable => {
                let detail = format!("the keys of {} are unavailable{from}", provider.name);
                return Err(self.fail("keys", Denial::KeysUnavailable, detail));
            }
        };
        self.pass(
            "keys",
            format!("{} has {}{from}", provider.name, describe_keys(set)),
        );

        let kid = untrusted.header.kid.clone();
        let kid_text = kid.as_deref().map(quote).unwrap_or_default();
        let key = match set.select(kid.as_deref(), alg) {
            KeySelection::Found(key) => key,
            KeySelection::UnknownKid if self.host.may_refetch(id) => {
                self.record(
                    "key",
                    CheckResult::Pending,
                    format!(
                        "kid {kid_text} not in JWKS ({}): the filter refetches the keys once, \
                         then decides again",
                        describe_keys(set)
                    ),
                );
                return Err(Outcome::Wait {
                    provider: id,
                    refetch: true,
                });
            }
            KeySelection::UnknownKid => {
                let detail = format!("kid {kid_text} not in JWKS ({})", describe_keys(set));
                return Err(self.fail("key", Denial::UnknownKid, detail));
            }
            KeySelection::AmbiguousKid => {
                let detail = format!(
                    "kid {kid_text} names several {} keys, so none is used",
                    alg.kty()
                );
                return Err(self.fail("key", Denial::AmbiguousKid, detail));
            }
            KeySelection::KidRequired => {
                let detail = format!(
                    "the token has no kid, and several keys could verify {} ({})",
                    alg.name(),
                    describe_keys(set)
                );
                return Err(self.fail("key", Denial::KidRequired, detail));
            }
            KeySelection::NoKeyForAlgorithm => {
                let detail = match &kid {
                    Some(_) => format!("no key under kid {kid_text} fits {}", alg.name()),
                    None => format!("no key fits {} ({})", alg.name(), describe_keys(set)),
                };
                return Err(self.fail("key", Denial::KeyMismatch, detail));
            }
        };
        let key_name = match &key.kid {
            Some(k) => format!("kid {}", quote(k)),
            None => "the key without kid".to_string(),
        };
        self.pass("key", format!("{key_name} ({})", key.key.describe()));

        let verified = match untrusted.verify(key) {
            Ok(v) => v,
            Err(Denial::BadSignature) => {
                let detail = format!("does not verify with {key_name} ({})", alg.name());
                return Err(self.fail("signature", Denial::BadSignature, detail));
            }
            Err(d) => return Err(self.fail_plain("signature", d)),
        };
        if let Some(view) = self.token.as_mut() {
            view.signature_verified = true;
        }
        self.pass("signature", format!("valid ({}, {key_name})", alg.name()));

        self.provider_checks(&verified, provider)?;

        if provider
            .introspection
            .as_ref()
            .is_some_and(|i| i.introspect_jwts)
        {
            self.verify_by_introspection(token, id)?;
        }
        Ok(verified.claims)
    }

    /// `claims::validate` one check at a time (`typ`, `iss`, `aud`, time), each described. The
    /// verdict is `validate`'s own: should the two ever differ, `validate` wins.
    fn provider_checks(
        &mut self,
        verified: &crate::jws::VerifiedToken,
        provider: &Provider,
    ) -> Result<(), Outcome> {
        let c = &verified.claims;
        let first_failure = 'checks: {
            let typ = verified.header.typ.as_deref();
            let want = provider.token_type.as_deref();
            match claims::check_type(typ, want) {
                Ok(()) => {
                    let detail = match (typ, want) {
                        (Some(t), Some(_)) => format!("typ {}, as required", quote(t)),
                        _ => "not checked (no token_type configured)".to_string(),
                    };
                    self.pass("typ", detail);
                }
                Err(d) => {
                    let want = want.map(quote).unwrap_or_default();
                    let detail = match typ {
                        Some(t) => format!("typ {} is not {want}", quote(t)),
                        None => format!("no typ; {want} is required"),
                    };
                    self.record("typ", CheckResult::Fail, detail);
                    break 'checks Some(d);
                }
            }
            match claims::check_issuer(c, &provider.issuer) {
                Ok(()) => self.pass(
                    "iss",
                    format!(
                        "iss {} is {}'s issuer",
                        quote(&provider.issuer),
                        provider.name
                    ),
                ),
                Err(d) => {
                    let detail = match c.get("iss") {
                        Some(v) => {
                            format!("iss {} is not {}", show_value(v), quote(&provider.issuer))
                        }
                        None => "no iss claim".to_string(),
                    };
                    let detail = match &d {
                        Denial::InvalidClaim(why) => (*why).to_string(),
                        _ => detail,
                    };
                    self.record("iss", CheckResult::Fail, detail);
                    break 'checks Some(d);
                }
            }
            match claims::check_audience(c, &provider.audiences) {
                Ok(()) => {
                    let aud = c.get("aud").map(show_value).unwrap_or_default();
                    self.pass(
                        "aud",
                        format!("aud {aud} is in {}", quoted_list(&provider.audiences)),
                    );
                }
                Err(d) => {
                    let detail = match (&d, c.get("aud")) {
                        (Denial::InvalidClaim(why), _) => (*why).to_string(),
                        (_, Some(Value::Array(items))) => format!(
                            "aud {} has none of {}",
                            show_value(&Value::Array(items.clone())),
                            quoted_list(&provider.audiences)
                        ),
                        (_, Some(v)) => format!(
                            "aud {} not in {}",
                            show_value(v),
                            quoted_list(&provider.audiences)
                        ),
                        (_, None) => format!(
                            "no aud claim (accepted: {})",
                            quoted_list(&provider.audiences)
                        ),
                    };
                    self.record("aud", CheckResult::Fail, detail);
                    break 'checks Some(d);
                }
            }
            let time = claims::check_dates(
                c,
                provider.clock_skew,
                provider.require_exp,
                provider.max_lifetime,
                self.now,
            );
            let detail = describe_time(c, provider, self.now, time.as_ref().err());
            match time {
                Ok(()) => {
                    self.pass("time", detail);
                    None
                }
                Err(d) => {
                    self.record("time", CheckResult::Fail, detail);
                    Some(d)
                }
            }
        };
        match (
            first_failure,
            claims::validate(verified, provider, self.now).map(|_| ()),
        ) {
            (None, Ok(())) => Ok(()),
            (Some(a), Err(b)) if a == b => Err(Outcome::Deny(a)),
            (_, Err(b)) => Err(self.fail_plain("claims", b)),
            (Some(_), Ok(())) => {
                self.pass("claims", "the provider's checks as a whole pass");
                Ok(())
            }
        }
    }

    /// As `Gate::provider_for`: the provider whose issuer the token claims, if the route accepts
    /// it.
    fn provider_for(
        &mut self,
        token: &UntrustedToken,
        accepted: &[ProviderId],
    ) -> Result<(ProviderId, &'a Provider), Outcome> {
        let Some(iss) = token.claimed_issuer() else {
            let detail = match token.unverified_claims.get("iss") {
                Some(v) => format!("iss {} is not a string", show_value(v)),
                None => "the token has no iss claim".to_string(),
            };
            return Err(self.fail("provider", Denial::UnknownIssuer, detail));
        };
        let config = self.config;
        let Some(id) = config.providers.iter().position(|p| p.issuer == iss) else {
            let issuers: Vec<String> = config
                .providers
                .iter()
                .map(|p| format!("{} {}", p.name, quote(&p.issuer)))
                .collect();
            let detail = format!(
                "iss {} is no provider's issuer ({})",
                quote(iss),
                issuers.join(", ")
            );
            return Err(self.fail("provider", Denial::UnknownIssuer, detail));
        };
        if !accepted.contains(&id) {
            let names: Vec<String> = accepted.iter().map(|&p| self.provider_name(p)).collect();
            let detail = format!(
                "provider {} (iss {}) is not accepted on this route (accepted: {})",
                self.provider_name(id),
                quote(iss),
                names.join(", ")
            );
            return Err(self.fail("provider", Denial::ProviderNotAccepted, detail));
        }
        Ok((id, self.provider_ref(id)?))
    }

    /// As `Gate::introspecting_provider`: the route's one provider that introspects.
    fn introspecting_provider(&self, accepted: &[ProviderId]) -> Result<ProviderId, Denial> {
        let config = self.config;
        let mut introspecting = accepted.iter().copied().filter(|&id| {
            config
                .provider(id)
                .is_some_and(|p| p.verify != VerifyMode::Jwt)
        });
        match (introspecting.next(), introspecting.next()) {
            (Some(id), None) => Ok(id),
            (None, _) => Err(Denial::Malformed(
                "not a JWT, and no provider here introspects tokens",
            )),
            (Some(_), Some(_)) => Err(Denial::Malformed(
                "not a JWT, and several providers here introspect: name one in the rule",
            )),
        }
    }

    /// As `Gate::verify_by_introspection`.
    fn verify_by_introspection(
        &mut self,
        token: &FoundToken,
        id: ProviderId,
    ) -> Result<Map<String, Value>, Outcome> {
        let provider = self.provider_ref(id)?;
        self.provider = Some(provider.name.clone());
        if !provider.sources.contains(token.source) {
            let detail = format!(
                "the token came in {}, which provider {} does not read",
                describe_source(token.source),
                provider.name
            );
            return Err(self.fail("provider", Denial::ProviderNotAccepted, detail));
        }
        let Some(cfg) = &provider.introspection else {
            return Err(self.fail_plain(
                "introspection",
                Denial::Malformed("this provider does not introspect tokens"),
            ));
        };
        let endpoint = cfg.endpoint.as_ref().map_or_else(
            || "the discovery document's introspection_endpoint".to_string(),
            ToString::to_string,
        );
        let host = self.host;
        match host.introspection(id, &TokenDigest::new(&token.token)) {
            IntrospectionView::Unknown => {
                self.record(
                    "introspection",
                    CheckResult::Pending,
                    format!(
                        "{}: the filter asks {endpoint} whether the token is active, then \
                         decides again",
                        provider.name
                    ),
                );
                Err(Outcome::Introspect { provider: id })
            }
            IntrospectionView::Failed(why) => {
                let detail = format!("{endpoint} gave no usable answer: {why}");
                Err(self.fail("introspection", Denial::IntrospectionFailed(why), detail))
            }
            IntrospectionView::Inactive => {
                let detail = format!("{endpoint} answered active: false");
                Err(self.fail("introspection", Denial::TokenInactive, detail))
            }
            // Explaining checks the answer afresh, whatever the host kept with it.
            IntrospectionView::Active { claims, cached, .. } => {
                if let Err(d) = introspection::check_active(&*claims, provider, cfg, self.now) {
                    let detail = format!("active, but {}", d.description());
                    return Err(self.fail("introspection", d, detail));
                }
                let claims = claims.to_map();
                if let Some(view) = self.token.as_mut() {
                    view.introspected = Some(claims.clone());
                }
                self.pass(
                    "introspection",
                    format!(
                        "{endpoint} answered active: true{}",
                        if cached { " (cached answer)" } else { "" }
                    ),
                );
                Ok(claims.clone())
            }
        }
    }
}

/// The dates of a token against `now`, in words; `failure` is what `check_dates` refused.
fn describe_time(
    c: &Map<String, Value>,
    provider: &Provider,
    now: u64,
    failure: Option<&Denial>,
) -> String {
    let date = |name| claims::numeric_date(c, name).ok().flatten();
    let (exp, nbf, iat) = (date("exp"), date("nbf"), date("iat"));
    let skew = provider.clock_skew;
    let skew_text = format!("clock skew {}", human_duration(skew));
    let relative = |t: u64| {
        if t > now {
            format!("in {}", human_duration(t - now))
        } else if t < now {
            format!("{} ago", human_duration(now - t))
        } else {
            "now".to_string()
        }
    };
    match failure {
        Some(Denial::Expired) => {
            let exp = exp.unwrap_or_default();
            format!(
                "expired {} ago (exp {}, {skew_text})",
                human_duration(now.saturating_sub(exp)),
                human_time(exp)
            )
        }
        Some(Denial::MissingExp) if exp.is_none() => {
            "no exp claim, and the provider requires one".to_string()
        }
        Some(Denial::NotYetValid) => {
            let nbf = nbf.unwrap_or_default();
            format!(
                "not valid before {} ({}, {skew_text})",
                human_time(nbf),
                relative(nbf)
            )
        }
        Some(Denial::IssuedInFuture) => {
            let iat = iat.unwrap_or_default();
            format!(
                "issued in the future: iat {} ({}, {skew_text})",
                human_time(iat),
                relative(iat)
            )
        }
        Some(Denial::LifetimeTooLong) => {
            let lifetime = exp
                .unwrap_or_default()
                .saturating_sub(iat.unwrap_or_default());
            format!(
                "lifetime {} (exp - iat) is over the maximum {}",
                human_duration(lifetime),
                human_duration(provider.max_lifetime.unwrap_or_default())
            )
        }
        Some(other) => other.description(),
        None => {
            let mut parts = Vec::new();
            if let Some(exp) = exp {
                parts.push(format!("expires {} ({})", relative(exp), human_time(exp)));
            }
            if let Some(nbf) = nbf {
                parts.push(format!("nbf {}", relative(nbf)));
            }
            if let Some(iat) = iat {
                parts.push(format!("issued {}", relative(iat)));
            }
            if parts.is_empty() {
                parts.push("no dates".to_string());
            }
            parts.push(skew_text);
            parts.join("; ")
        }
    }
}

#[cfg(test)]
mod tests;
