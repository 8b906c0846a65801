//! Tokens already verified: the hot path's shortcut.
//!
//! Verifying a JWT costs tens to hundreds of microseconds in wasm; a client sends the same token
//! on every request until it expires. So a token whose signature and static claims (`typ`,
//! `iss`, `aud`) passed is remembered with the claims the configuration reads: by each worker
//! under a keyed 128-bit PRF of the token ([`VerifiedCache`], which keeps no copy of the token;
//! a hit hashes it with SipHash, several times cheaper than SHA-256), and in shared data under
//! 16 bytes of its SHA-256 ([`TokenKey`]). A hit skips parsing and the signature, never the
//! clock: `exp`, `nbf` and `iat` are checked again on every request. An entry is tied to the
//! provider's key-set generation, so a key removed from the JWKS stops every token it signed at
//! the next refresh.
//!
//! Memory is bounded: per worker, in entries and in bytes (`token_cache_entries`,
//! `token_cache_bytes`), each entry holding only the claims the configuration can read
//! ([`project`]); a compact encoding ([`VerifiedIdentity::encode`]) lets one worker's
//! verification serve the others through shared data.

use crate::audit::Fingerprint;
use crate::claims::{Claims, Dates};
use crate::config::{Config, LimitKey, ProviderId};
use crate::crypto::siphash::{siphash128, SipKey};
use crate::json;
use crate::ratelimit::BudgetKey;
use crate::request::HeaderEdit;
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::rc::Rc;

/// The cache key of a token: 16 bytes of its SHA-256 (collisions need 2^64 work).
pub type TokenKey = [u8; 16];

pub fn token_key(token: &str) -> TokenKey {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    key_of(&digest)
}

/// The cache key from a token's SHA-256 (computed once per request).
pub fn key_of(digest: &[u8; 32]) -> TokenKey {
    let mut key = [0u8; 16];
    for (k, d) in key.iter_mut().zip(digest.iter()) {
        *k = *d;
    }
    key
}

/// A verified token's identity, as remembered.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedIdentity {
    pub provider: ProviderId,
    /// The provider's key-set generation that verified it.
    pub keys_generation: u64,
    /// `exp`, `nbf` and `iat`, checked again on every request.
    pub dates: Dates,
    /// The claims the configuration reads, and the dates (shared with each decision's audit
    /// facts).
    pub claims: Rc<Claims>,
    /// The payload segment, when the configuration forwards it.
    pub payload_segment: Option<String>,
    /// The token's SHA-256 prefix, for audit events (so a hit need not hash the token).
    pub fingerprint: Fingerprint,
    /// What the configuration derives from these claims, once derived.
    pub derived: Derived,
}

/// What a gate derives from a remembered identity's claims alone: its identity headers, its
/// policy and whose budgets its requests spend.
#[derive(Debug, Clone)]
pub struct Derivation {
    /// The identity headers (none for an anonymous request).
    pub headers: Option<Rc<[HeaderEdit]>>,
    /// The policy the claims select, by index.
    pub policy: Option<usize>,
    /// For each limit of that policy: whose budget a request spends.
    pub charges: Rc<[BudgetKey]>,
}

/// A remembered identity's [`Derivation`], kept with it so that its later requests derive
/// (look up, convert, check, copy, select, hash) nothing. A cache, not part of the identity's
/// value: it compares equal whatever it holds, and is tagged with the gate that derived it, so
/// a gate with another configuration derives its own.
#[derive(Clone, Default)]
pub struct Derived(RefCell<Option<(u64, Derivation)>>);

impl Derived {
    /// What `gate` derived, deriving it now if it has not.
    pub fn get_or_derive(&self, gate: u64, derive: impl FnOnce() -> Derivation) -> Derivation {
        if let Ok(kept) = self.0.try_borrow() {
            if let Some((tag, derived)) = &*kept {
                if *tag == gate {
                    return derived.clone();
                }
            }
        }
        let derived = derive();
        if let Ok(mut kept) = self.0.try_borrow_mut() {
            *kept = Some((gate, derived.clone()));
        }
        derived
    }
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Derived")
    }
}

/// A token the engine verified for a decision, for the host to remember.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub token: String,
    /// The shared-data key (from the token's SHA-256).
    pub key: TokenKey,
    pub identity: VerifiedIdentity,
}

/// Largest encoded identity kept in shared data.
pub const MAX_ENCODED_BYTES: usize = 4096;

/// The layout of an encoded identity, its first byte. Another module sharing the workers' data
/// (an upgrade or a rollback under the same configuration) files its identities under the same
/// keys; one of another layout is nobody's.
const FORMAT: u8 = 2;

/// A `u64` off the front of `bytes`, little-endian (wasm's order: a plain load). Out of line:
/// one copy for the four numbers of an encoded identity.
#[inline(never)]
fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (number, rest) = bytes.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*number), rest))
}

impl VerifiedIdentity {
    /// A format byte, the token's key, provider, generation and dates, then the claims and the
    /// payload segment as JSON. The key holds the fingerprint.
    pub fn encode(&self, key: &TokenKey) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(256);
        out.push(FORMAT);
        out.extend_from_slice(key);
        out.extend_from_slice(&(self.provider as u32).to_le_bytes());
        let [exp, nbf, iat] = self.dates.words();
        for number in [self.keys_generation, exp, nbf, iat] {
            out.extend_from_slice(&number.to_le_bytes());
        }
        // Written from the fields as they are, not through a `Value` (a copy of the claims).
        let mut body = String::with_capacity(192);
        let mut o = crate::json::Object::new(&mut body);
        o.object("c", |c| self.claims.write_members(c));
        o.opt_str("p", self.payload_segment.as_deref());
        o.end();
        out.extend_from_slice(body.as_bytes());
        (out.len() <= MAX_ENCODED_BYTES).then_some(out)
    }

    /// Whether an encoded identity is the one of `key`'s token (its slot may be rewritten
    /// with it), without decoding the rest.
    pub fn is_for(bytes: &[u8], key: &TokenKey) -> bool {
        match bytes.split_first() {
            Some((&FORMAT, rest)) => rest.starts_with(key),
            _ => false,
        }
    }

    /// The identity stored for `key`; `None` for another token or anything malformed.
    pub fn decode(bytes: &[u8], key: &TokenKey) -> Option<VerifiedIdentity> {
        if bytes.len() > MAX_ENCODED_BYTES {
            return None;
        }
        if !VerifiedIdentity::is_for(bytes, key) {
            return None;
        }
        let (_, rest) = bytes.split_at_checked(1 + key.len())?;
        let (provider, rest) = rest.split_first_chunk::<4>()?;
        let (generation, rest) = take_u64(rest)?;
        let (exp, rest) = take_u64(rest)?;
        let (nbf, rest) = take_u64(rest)?;
        let (iat, rest) = take_u64(rest)?;
        let body = json::parse_object(rest, json::MAX_DEPTH).ok()?;
        // Taken apart in one pass rather than with `remove`, which would bring the map's
        // rebalancing code into the module for three lookups.
        let (mut claims, mut payload_segment) = (None, None);
        for (name, value) in body {
            match (name.as_str(), value) {
                ("c", Value::Object(c)) => claims = Some(c),
                ("p", Value::String(p)) => payload_segment = Some(p),
                _ => {}
            }
        }
        let claims = claims?;
        Some(VerifiedIdentity {
            provider: u32::from_le_bytes(*provider) as usize,
            keys_generation: generation,
            dates: Dates::from_words([exp, nbf, iat]),
            claims: Rc::new(Claims::from(claims)),
            payload_segment,
            fingerprint: Fingerprint::of(key),
            derived: Derived::default(),
        })
    }
}

/// The claims a configuration can read: identity for the audit, scopes, and every claim named
/// by headers, rules, policies and limit keys (whole top-level members). The decision that
/// verifies a token reads these too, so a remembered token decides exactly as it did.
///
/// The dates and `iss` are kept only when the configuration names them: the identity holds the
/// dates already ([`Dates`]), and a verified `iss` is its provider's `issuer`, which the audit
/// takes from the configuration. Each kept member costs every remembered token ~64 bytes in each
/// worker.
pub fn project(claims: Map<String, Value>, config: &Config) -> Claims {
    let mut paths: Vec<&str> = vec!["sub", "client_id", "azp", "scope", "scp"];
    paths.extend(config.headers.claims.iter().map(|(_, p)| p.as_str()));
    for rule in &config.rules {
        paths.extend(rule.claims.iter().map(|(p, _)| p.as_str()));
    }
    for policy in &config.policies {
        paths.extend(policy.when.iter().map(|c| c.claim.as_str()));
        for limit in &policy.limits {
            if let LimitKey::Claim(p) = &limit.key {
                paths.push(p);
            }
        }
    }
    Claims::from_ordered(claims.into_iter().filter(|(name, _)| {
        paths.iter().any(|p| {
            p == name
                || p.strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        })
    }))
}

/// What a worker files a token under: 128 bits that only that token gives (a keyed PRF of a
/// JWT, [`VerifiedCache`]; the SHA-256 prefix of an opaque token, [`digest_key`]).
pub type CacheKey = u128;

/// The [`CacheKey`] of an opaque token, from its SHA-256 (which its audit needs anyway).
pub fn digest_key(digest: &[u8; 32]) -> CacheKey {
    CacheKey::from_le_bytes(key_of(digest))
}

/// A [`CacheKey`] as a [`TokenCache`] holds it: four 32-bit words, so that a table slot (the
/// key and a pointer) is 20 bytes in wasm32, where `u128`'s 16-byte alignment makes it 32.
#[derive(Debug, Eq)]
struct Slot([u32; 4]);

impl From<CacheKey> for Slot {
    fn from(key: CacheKey) -> Slot {
        Slot([
            key as u32,
            (key >> 32) as u32,
            (key >> 64) as u32,
            (key >> 96) as u32,
        ])
    }
}

impl PartialEq for Slot {
    /// Word by word: a derived comparison of the array is a call to `memcmp` in the size build.
    fn eq(&self, other: &Slot) -> bool {
        let ([a, b, c, d], [e, f, g, h]) = (self.0, other.0);
        a == e && b == f && c == g && d == h
    }
}

impl std::hash::Hash for Slot {
    /// 64 of the key's bits: it is a PRF's or SHA-256's output already, uniform and not chosen
    /// by a client.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let [low, high, ..] = self.0;
        state.write_u64(u64::from(low) | u64::from(high) << 32);
    }
}

/// A worker's bounded map of what it knows of tokens, by a [`CacheKey`]: a verified JWT by a
/// keyed PRF of its text ([`VerifiedCache`]), an introspection answer by its token's SHA-256
/// (an opaque token is nothing but a bearer secret: no cache keeps one, as SECURITY.md asks).
/// Neither keeps the token: a key is 16 bytes where a token is ~0.65 KB, and a hit reads one
/// cache line of it rather than ten. Only tokens an issuer made go in (verified ones, or ones the
/// introspection endpoint called active), so a client cannot choose what is remembered.
///
/// Bounded in entries and in bytes: what the values [`Weigh`], and a table slot each. The
/// entry bound alone let tokens of an IdP that puts every group in them (16 KiB each, and
/// their claims) take hundreds of MiB per worker; the byte bound keeps that predictable, and
/// an entry heavier than an eighth of it is not kept at all (its token is verified each time).
#[derive(Debug)]
pub struct TokenCache<T> {
    by_key: FxHashMap<Slot, Rc<T>>,
    capacity: usize,
    /// The entries' weights ([`Weigh`]), summed.
    bytes: usize,
    max_bytes: usize,
}

/// What a remembered value keeps in a worker's memory, estimated (wasm32 sizes, allocation
/// overhead included).
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl<T: Weigh> Weigh for Rc<T> {
    fn weight(&self) -> usize {
        T::weight(self)
    }
}

/// A table slot (the key, the value's pointer, a control byte, at most half the table free)
/// and the value's reference counts.
const ENTRY_BYTES: usize = 48;

/// What an entry counts against a [`TokenCache`]'s byte bound.
fn entry_weight<T: Weigh>(value: &T) -> usize {
    ENTRY_BYTES + value.weight()
}

/// A remembered identity's fixed part: the identity, what is derived from its claims (identity
/// headers, policy, budget keys) and what its claims hold beyond [`Claims::weight`]. With the
/// bench's RS256 tokens this puts an entry at ~0.47 KB (~0.46 KB measured in wasm32).
const IDENTITY_BYTES: usize = 264;

impl Weigh for VerifiedIdentity {
    fn weight(&self) -> usize {
        IDENTITY_BYTES + self.claims.weight() + self.payload_segment.as_ref().map_or(0, String::len)
    }
}

impl<T: Weigh> TokenCache<T> {
    /// A cache of at most `capacity` entries weighing at most `max_bytes` together.
    pub fn new(capacity: usize, max_bytes: usize) -> TokenCache<T> {
        TokenCache {
            by_key: FxHashMap::default(),
            capacity,
            bytes: 0,
            max_bytes,
        }
    }

    pub fn get(&self, key: CacheKey) -> Option<Rc<T>> {
        self.by_key.get(&Slot::from(key)).cloned()
    }

    /// Remembers a value; when full (in entries or bytes), an eighth of the entries (arbitrary
    /// ones) make room, so inserting stays cheap and a flood of new tokens only evicts.
    pub fn insert(&mut self, key: CacheKey, value: Rc<T>) {
        if self.capacity == 0 {
            return;
        }
        // A value learned again replaces the old one (which is stale even if this one is not
        // kept).
        let key = Slot::from(key);
        if let Some(old) = self.by_key.remove(&key) {
            self.bytes = self.bytes.saturating_sub(entry_weight(&old));
        }
        let weight = entry_weight(&value);
        if weight > self.max_bytes / 8 {
            return;
        }
        while !self.by_key.is_empty()
            && (self.by_key.len() >= self.capacity
                || self.bytes.saturating_add(weight) > self.max_bytes)
        {
            self.evict_an_eighth();
        }
        self.by_key.insert(key, value);
        self.bytes += weight;
    }

    /// Drops an eighth of the entries (at least one), arbitrary ones.
    fn evict_an_eighth(&mut self) {
        let wanted = (self.by_key.len() / 8).max(1);
        let (mut freed, mut freed_bytes) = (0, 0);
        self.by_key.retain(|_, value| {
            let evict = freed < wanted;
            if evict {
                freed += 1;
                freed_bytes += entry_weight(value);
            }
            !evict
        });
        self.bytes = self.bytes.saturating_sub(freed_bytes);
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The entries' weight: what the byte bound counts.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// Verified JWTs' identities, each filed under SipHash-2-4-128 of the token's text
/// ([`crate::crypto::siphash`]) with this cache's own secret key.
///
/// A hit is a token whose PRF value is a remembered one's: without the key, another token
/// does so with a chance of about 2^-128 for each remembered token, a forgery harder than the
/// signature it would skip. The key must come from a CSPRNG and stay in the worker; the host
/// draws a new one for every cache, so a value learned in one (by timing, say) is worth
/// nothing in another.
#[derive(Debug)]
pub struct VerifiedCache {
    tokens: TokenCache<VerifiedIdentity>,
    key: SipKey,
}

impl VerifiedCache {
    /// A cache of at most `capacity` tokens weighing at most `max_bytes`, keyed by `secret`
    /// (16 bytes from a CSPRNG).
    pub fn new(capacity: usize, max_bytes: usize, secret: [u8; 16]) -> VerifiedCache {
        VerifiedCache {
            tokens: TokenCache::new(capacity, max_bytes),
            key: SipKey::new(secret),
        }
    }

    /// A cache that keeps nothing (no key to file tokens under, or a configuration that turns
    /// the cache off).
    pub fn off() -> VerifiedCache {
        VerifiedCache::new(0, 0, [0; 16])
    }

    /// Where `token` is filed: `None` when this cache keeps nothing (then nothing hashes it).
    pub fn file_of(&self, token: &str) -> Option<CacheKey> {
        (self.tokens.capacity > 0).then(|| siphash128(&self.key, token.as_bytes()))
    }

    pub fn get(&self, filed: CacheKey) -> Option<Rc<VerifiedIdentity>> {
        self.tokens.get(filed)
    }

    /// Remembers the identity of the token filed at `filed` ([`VerifiedCache::file_of`]).
    pub fn insert(&mut self, filed: CacheKey, identity: Rc<VerifiedIdentity>) {
        self.tokens.insert(filed, identity);
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        let c = json!({
            "providers": {"p": {"issuer": "https://idp", "audiences": ["a"],
                                "jwks": {"uri": "https://idp/jwks", "cluster": "idp"}}},
            "rules": [{"match": {"prefix": "/admin"}, "claims": {"realm_access.roles": "admin"}}],
            "headers": {"claims": {"x-plan": "tenant.plan"}},
            "policies": [{"name": "p", "when": [{"claim": "groups", "contains": "g"}],
                          "rate_limits": [{"requests": 1, "per": "1s", "key": "claim:org"}]}]
        });
        Config::from_json(c.to_string().as_bytes()).unwrap()
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("object expected"),
        }
    }

    #[test]
    fn only_the_claims_the_configuration_reads_are_kept() {
        let all = claims(json!({
            "iss": "i", "sub": "s", "exp": 1, "jti": "drop", "scope": "a b",
            "realm_access": {"roles": ["admin"]}, "tenant": {"plan": "gold"}, "groups": ["g"],
            "org": "acme", "profile": {"big": "drop"}, "tenantx": "drop"
        }));
        let kept = project(all.clone(), &config());
        let names: Vec<&str> = kept.iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            vec!["groups", "org", "realm_access", "scope", "sub", "tenant"],
            "the dates and iss are the identity's own fields"
        );
        // Named by the configuration, they are kept like any claim.
        let mut named = config();
        named
            .headers
            .claims
            .push(("x-expires".into(), "exp".into()));
        named.headers.claims.push(("x-issuer".into(), "iss".into()));
        let kept = project(all, &named);
        assert_eq!(kept.get("exp"), Some(&json!(1)));
        assert_eq!(kept.get("iss"), Some(&json!("i")));
    }

    #[test]
    fn identities_round_trip_only_for_their_own_token() {
        let key = token_key("a.b.c");
        let id = VerifiedIdentity {
            provider: 2,
            keys_generation: 77,
            dates: Dates::new(Some(10), Some(0), Some(u64::MAX - 1)),
            claims: Rc::new(claims(json!({"sub": "alice"})).into()),
            payload_segment: Some("eyJ9".into()),
            fingerprint: Fingerprint::of(&key),
            derived: Derived::default(),
        };
        let bytes = id.encode(&key).unwrap();
        assert_eq!(VerifiedIdentity::decode(&bytes, &key), Some(id.clone()));
        assert_eq!(VerifiedIdentity::decode(&bytes, &token_key("x.y.z")), None);
        assert_eq!(VerifiedIdentity::decode(&bytes[..20], &key), None);
        assert_eq!(VerifiedIdentity::decode(b"garbage", &key), None);
        assert!(VerifiedIdentity::is_for(&bytes, &key));
        assert!(!VerifiedIdentity::is_for(&bytes, &token_key("x.y.z")));
        assert!(!VerifiedIdentity::is_for(&bytes[..16], &key));
        // Another layout is nobody's: this one's, or the one before it (no format byte).
        let mut other = bytes.clone();
        other[0] = FORMAT + 1;
        assert!(!VerifiedIdentity::is_for(&other, &key));
        assert_eq!(VerifiedIdentity::decode(&other, &key), None);
        assert!(!VerifiedIdentity::is_for(&bytes[1..], &key));
        let no_dates = VerifiedIdentity {
            dates: Dates::default(),
            ..id.clone()
        };
        assert_eq!(
            VerifiedIdentity::decode(&no_dates.encode(&key).unwrap(), &key),
            Some(no_dates)
        );
    }

    impl Weigh for u32 {
        fn weight(&self) -> usize {
            *self as usize
        }
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = VerifiedCache::new(64, 1 << 20, SECRET);
        let id = Rc::new(VerifiedIdentity {
            provider: 0,
            keys_generation: 0,
            dates: Dates::default(),
            claims: Rc::default(),
            payload_segment: None,
            fingerprint: Fingerprint::of(&[]),
            derived: Derived::default(),
        });
        for i in 0..1000 {
            remember(&mut cache, &format!("t{i}"), Rc::clone(&id));
            assert!(cache.len() <= 64);
        }
        assert!(find(&cache, "t999").is_some(), "the newest entry is kept");
        let mut off = VerifiedCache::new(0, 1 << 20, SECRET);
        remember(&mut off, "t", id);
        assert!(off.is_empty());
    }

    #[test]
    fn every_bit_of_a_key_tells_entries_apart() {
        let mut cache: TokenCache<u32> = TokenCache::new(100, 1 << 20);
        let keys: Vec<CacheKey> = [0, 31, 32, 63, 64, 95, 96, 127]
            .iter()
            .map(|bit| 1 << bit)
            .chain([(1 << 96) | 1, u128::MAX])
            .collect();
        for (i, key) in keys.iter().enumerate() {
            cache.insert(*key, Rc::new(i as u32));
        }
        assert_eq!(cache.len(), keys.len());
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(cache.get(*key).as_deref(), Some(&(i as u32)), "{key:x}");
        }
        assert!(cache.get(1 << 100).is_none());
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_too() {
        // Here a value weighs its number: each entry is 48 + 100 = 148 bytes.
        let (budget, each) = (8 * 1024, 148);
        let mut cache: TokenCache<u32> = TokenCache::new(1000, budget);
        for i in 0..200u32 {
            cache.insert(CacheKey::from(i), Rc::new(100));
            assert!(cache.bytes() <= budget, "{} bytes", cache.bytes());
            assert_eq!(cache.bytes(), cache.len() * each);
        }
        assert!(
            (40..=budget / each).contains(&cache.len()),
            "{}",
            cache.len()
        );
        assert!(cache.get(199).is_some(), "the newest entry is kept");
        // Heavier than an eighth of the budget: not kept, and the token's old value goes too.
        cache.insert(199, Rc::new(2000));
        assert!(cache.get(199).is_none());
        assert_eq!(cache.bytes(), cache.len() * each);
        // A value learned again is weighed again.
        cache.insert(198, Rc::new(50));
        assert_eq!(cache.get(198).as_deref(), Some(&50));
        assert_eq!(cache.bytes(), (cache.len() - 1) * each + 98);
    }

    #[test]
    fn an_identity_weighs_its_claims() {
        // What the bench's RS256 tokens keep, whose entries measure ~0.46 KB each in wasm32.
        let claims = claims(json!({
            "sub": "many-user-1234", "client_id": "bench-client", "scope": "orders:read"
        }));
        let id = VerifiedIdentity {
            provider: 0,
            keys_generation: 1,
            dates: Dates::new(Some(1_700_003_600), None, Some(1_700_000_000)),
            claims: Rc::new(Claims::from(claims)),
            payload_segment: None,
            fingerprint: Fingerprint::of(&[0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]),
            derived: Derived::default(),
        };
        assert!(
            (450..600).contains(&entry_weight(&id)),
            "{}",
            entry_weight(&id)
        );
        let mut more = id.clone();
        more.payload_segment = Some("p".repeat(300));
        assert_eq!(more.weight(), id.weight() + 300);
    }

    const SECRET: [u8; 16] = *b"a per-cache key!";

    fn remember(cache: &mut VerifiedCache, token: &str, identity: Rc<VerifiedIdentity>) {
        if let Some(filed) = cache.file_of(token) {
            cache.insert(filed, identity);
        }
    }

    fn find(cache: &VerifiedCache, token: &str) -> Option<Rc<VerifiedIdentity>> {
        cache.file_of(token).and_then(|filed| cache.get(filed))
    }

    fn identity(sub: &str) -> Rc<VerifiedIdentity> {
        Rc::new(VerifiedIdentity {
            provider: 0,
            keys_generation: 0,
            dates: Dates::default(),
            claims: Rc::new(Claims::from(claims(json!({ "sub": sub })))),
            payload_segment: None,
            fingerprint: Fingerprint::of(&[]),
            derived: Derived::default(),
        })
    }

    fn sub(found: Option<Rc<VerifiedIdentity>>) -> Option<String> {
        found.and_then(|id| {
            id.claims
                .get("sub")
                .and_then(|s| s.as_str())
                .map(String::from)
        })
    }

    #[test]
    fn a_token_finds_its_own_identity_and_no_other_does() {
        let mut cache = VerifiedCache::new(8, 1 << 20, SECRET);
        let tail = "s".repeat(64);
        let (a, b) = (format!("header.one.{tail}"), format!("header.two.{tail}"));
        remember(&mut cache, &a, identity("alice"));
        assert_eq!(sub(find(&cache, &a)), Some("alice".into()));
        // Tokens that differ in one byte anywhere, or in length, find nothing.
        for other in [
            b.clone(),
            format!("{a}x"),
            a[..a.len() - 1].to_string(),
            String::new(),
        ] {
            assert_eq!(sub(find(&cache, &other)), None, "{other}");
        }
        for at in 0..a.len() {
            let mut other = a.clone().into_bytes();
            other[at] ^= 0x01;
            let other = String::from_utf8(other).unwrap();
            assert_eq!(sub(find(&cache, &other)), None, "changed at {at}");
        }
        remember(&mut cache, &b, identity("bob"));
        assert_eq!(
            (sub(find(&cache, &a)), sub(find(&cache, &b))),
            (Some("alice".into()), Some("bob".into()))
        );
        // A value learned again replaces the old one; the count stays.
        remember(&mut cache, &a, identity("alice again"));
        assert_eq!(sub(find(&cache, &a)), Some("alice again".into()));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn another_cache_files_the_same_token_elsewhere() {
        let (one, other) = (
            VerifiedCache::new(8, 1 << 20, SECRET),
            VerifiedCache::new(8, 1 << 20, *b"another key, too"),
        );
        let token = "header.payload.signature";
        assert_ne!(one.file_of(token), other.file_of(token));
        assert_eq!(one.file_of(token), one.file_of(token));
        // The key is the PRF's: the reference vector's key gives the reference value.
        let reference = VerifiedCache::new(8, 1 << 20, std::array::from_fn(|i| i as u8));
        assert_eq!(
            reference
                .file_of("")
                .map(|filed| filed.to_le_bytes()[..4].to_vec()),
            Some(vec![0xa3, 0x81, 0x7f, 0x04])
        );
    }

    #[test]
    fn a_cache_without_a_key_keeps_nothing() {
        let mut off = VerifiedCache::off();
        remember(&mut off, "a.b.c", identity("alice"));
        assert_eq!(off.file_of("a.b.c"), None, "nothing hashes the token");
        assert!(off.is_empty());
        assert_eq!(sub(find(&off, "a.b.c")), None);
    }

    #[test]
    fn an_opaque_token_is_filed_under_its_digest() {
        let digest: [u8; 32] = Sha256::digest(b"opaque").into();
        let mut cache: TokenCache<u32> = TokenCache::new(8, 1 << 20);
        cache.insert(digest_key(&digest), Rc::new(1));
        assert_eq!(cache.get(digest_key(&digest)).as_deref(), Some(&1));
        assert_eq!(
            digest_key(&digest).to_le_bytes(),
            token_key("opaque"),
            "the shared-data key's bytes"
        );
    }
}
