//! Tokens already verified: the hot path's shortcut.
//!
//! Verifying a JWT costs tens to hundreds of microseconds in wasm; a client sends the same token
//! on every request until it expires. So a token whose signature and static claims (`typ`,
//! `iss`, `aud`) passed is remembered with the claims the configuration reads: by each worker
//! under the token itself ([`TokenCache`]: a hit hashes its last bytes and compares it whole,
//! with no SHA-256), and in shared data under 16 bytes of its SHA-256 ([`TokenKey`]). A hit
//! skips parsing and the signature, never the clock: `exp`, `nbf` and `iat` are checked again
//! on every request. An entry is tied to the provider's key-set generation, so a key removed
//! from the JWKS stops every token it signed at the next refresh.
//!
//! Memory is bounded: per worker, in entries and in bytes (`token_cache_entries`,
//! `token_cache_bytes`), each entry holding only the claims the configuration can read
//! ([`project`]); a compact encoding ([`VerifiedIdentity::encode`]) lets one worker's
//! verification serve the others through shared data.

use crate::claims::{Claims, Dates};
use crate::config::{Config, LimitKey, ProviderId};
use crate::json;
use crate::ratelimit::BudgetKey;
use crate::request::HeaderEdit;
use crate::scan::same_bytes;
use rustc_hash::FxHashMap;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

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
    pub fingerprint: Arc<str>,
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

impl VerifiedIdentity {
    /// Provider, generation, then the claims and the payload segment as JSON.
    pub fn encode(&self, key: &TokenKey) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(key);
        out.extend_from_slice(&(self.provider as u32).to_be_bytes());
        out.extend_from_slice(&self.keys_generation.to_be_bytes());
        // Written from the fields as they are, not through a `Value` (a copy of the claims).
        let mut body = String::with_capacity(192);
        let mut o = crate::json::Object::new(&mut body);
        o.object("c", |c| self.claims.write_members(c));
        o.opt_str("p", self.payload_segment.as_deref());
        o.str("f", &self.fingerprint);
        o.end();
        out.extend_from_slice(body.as_bytes());
        (out.len() <= MAX_ENCODED_BYTES).then_some(out)
    }

    /// Whether an encoded identity is the one of `key`'s token (its slot may be rewritten
    /// with it), without decoding the rest.
    pub fn is_for(bytes: &[u8], key: &TokenKey) -> bool {
        bytes
            .split_first_chunk::<16>()
            .is_some_and(|(stored, _)| stored == key)
    }

    /// The identity stored for `key`; `None` for another token or anything malformed.
    pub fn decode(bytes: &[u8], key: &TokenKey) -> Option<VerifiedIdentity> {
        if bytes.len() > MAX_ENCODED_BYTES {
            return None;
        }
        if !VerifiedIdentity::is_for(bytes, key) {
            return None;
        }
        let (_, rest) = bytes.split_first_chunk::<16>()?;
        let (provider, rest) = rest.split_first_chunk::<4>()?;
        let (generation, rest) = rest.split_first_chunk::<8>()?;
        let mut body = json::parse_object(rest, json::MAX_DEPTH).ok()?;
        let claims = match body.remove("c")? {
            Value::Object(c) => c,
            _ => return None,
        };
        let payload_segment = match body.remove("p") {
            Some(Value::String(p)) => Some(p),
            _ => None,
        };
        let fingerprint = match body.remove("f") {
            Some(Value::String(f)) => f,
            _ => return None,
        };
        Some(VerifiedIdentity {
            provider: u32::from_be_bytes(*provider) as usize,
            keys_generation: u64::from_be_bytes(*generation),
            dates: Dates::read(&claims).ok()?,
            claims: Rc::new(Claims::from(claims)),
            payload_segment,
            fingerprint: fingerprint.into(),
            derived: Derived::default(),
        })
    }
}

/// The claims a configuration can read: dates, identity for the audit, scopes, and every claim
/// named by headers, rules, policies and limit keys (whole top-level members). The decision
/// that verifies a token reads these too, so a remembered token decides exactly as it did.
pub fn project(claims: Map<String, Value>, config: &Config) -> Claims {
    let mut paths: Vec<&str> = vec![
        "exp",
        "nbf",
        "iat",
        "iss",
        "sub",
        "client_id",
        "azp",
        "scope",
        "scp",
    ];
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

/// A worker's bounded map of what it knows of tokens, by a key of bytes: a verified JWT by its
/// text (a hit costs one fast hash and one comparison of the whole token, no SHA-256), an
/// introspection answer by its token's SHA-256 (an opaque token is nothing but a bearer secret:
/// no cache keeps one, as SECURITY.md asks). Only tokens an issuer made go in (verified ones,
/// or ones the introspection endpoint called active), so a client cannot choose the keys: a
/// crafted colliding token can slow a lookup, never pass for another.
///
/// Bounded in entries and in bytes: the keys plus what their values [`Weigh`]. The
/// entry bound alone let tokens of an IdP that puts every group in them (16 KiB each, and
/// their claims) take hundreds of MiB per worker; the byte bound keeps that predictable, and
/// an entry heavier than an eighth of it is not kept at all (its token is verified each time).
///
/// Why not `HashMap<Box<str>, _>`: its key comparison is `memcmp`, which in wasm32-wasip1 is
/// wasi-libc's byte loop, and for a 700-byte token that loop was a quarter of a cache hit under
/// V8. Entries are grouped by the key's hash instead, and compared by
/// [`crate::scan::same_bytes`]: every byte, no early exit, 64 bytes a step.
#[derive(Debug)]
pub struct TokenCache<T> {
    by_hash: FxHashMap<u64, Entries<T>>,
    len: usize,
    capacity: usize,
    /// The entries' weights ([`Weigh`]), summed.
    bytes: usize,
    max_bytes: usize,
}

/// What a remembered value keeps in a worker's memory beyond its token's text, estimated
/// (wasm32 sizes, allocation overhead included).
pub trait Weigh {
    fn weight(&self) -> usize;
}

impl<T: Weigh> Weigh for Rc<T> {
    fn weight(&self) -> usize {
        T::weight(self)
    }
}

/// A table slot and the allocation headers of an entry's token and value.
const ENTRY_BYTES: usize = 64;

/// What an entry counts against a [`TokenCache`]'s byte bound.
fn entry_weight<T: Weigh>(key: &[u8], value: &T) -> usize {
    ENTRY_BYTES + key.len() + value.weight()
}

/// A remembered identity's fixed part: the identity, its fingerprint and what is derived from
/// its claims (identity headers, policy, budget keys), over its claims' own weight. With the
/// bench's RS256 tokens this puts an entry at ~1.2 KB, as measured in Envoy.
const IDENTITY_BYTES: usize = 256;

impl Weigh for VerifiedIdentity {
    fn weight(&self) -> usize {
        IDENTITY_BYTES + self.claims.weight() + self.payload_segment.as_ref().map_or(0, String::len)
    }
}

/// The tokens sharing one hash: almost always exactly one, kept without a second allocation.
#[derive(Debug)]
struct Entries<T> {
    first: (Box<[u8]>, Rc<T>),
    more: Vec<(Box<[u8]>, Rc<T>)>,
}

impl<T: Weigh> Entries<T> {
    fn weight(&self) -> usize {
        std::iter::once(&self.first)
            .chain(&self.more)
            .map(|(key, value)| entry_weight(key, value))
            .sum()
    }

    fn find(&self, key: &[u8]) -> Option<&Rc<T>> {
        std::iter::once(&self.first)
            .chain(&self.more)
            .find(|(known, _)| same_bytes(known, key))
            .map(|(_, value)| value)
    }

    fn len(&self) -> usize {
        1 + self.more.len()
    }
}

/// Bytes at the end of a key that its hash reads.
const HASHED_TAIL: usize = 64;

/// The hash a key is filed under: its length and its last [`HASHED_TAIL`] bytes. A JWT ends
/// with its signature (and a digest is 32 bytes), so the keys differ there; hashing all of a
/// 0.5-2 KB token cost as much as the rest of a cache hit. A token that shares a key's tail
/// costs one comparison more, and is still not that key.
fn key_hash(bytes: &[u8]) -> u64 {
    use std::hash::Hasher;
    let tail = bytes
        .get(bytes.len().saturating_sub(HASHED_TAIL)..)
        .unwrap_or(bytes);
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write_usize(bytes.len());
    hasher.write(tail);
    hasher.finish()
}

/// Verified tokens' identities.
pub type VerifiedCache = TokenCache<VerifiedIdentity>;

impl<T: Weigh> TokenCache<T> {
    /// A cache of at most `capacity` entries weighing at most `max_bytes` together.
    pub fn new(capacity: usize, max_bytes: usize) -> TokenCache<T> {
        TokenCache {
            by_hash: FxHashMap::default(),
            len: 0,
            capacity,
            bytes: 0,
            max_bytes,
        }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<Rc<T>> {
        let key = key.as_ref();
        self.get_hashed(key_hash(key), key)
    }

    fn get_hashed(&self, hash: u64, key: &[u8]) -> Option<Rc<T>> {
        self.by_hash.get(&hash)?.find(key).cloned()
    }

    /// Remembers a value; when full (in entries or bytes), an eighth of the entries (arbitrary
    /// ones) make room, so inserting stays cheap and a flood of new tokens only evicts.
    pub fn insert(&mut self, key: impl AsRef<[u8]>, value: Rc<T>) {
        if self.capacity == 0 {
            return;
        }
        let key = key.as_ref();
        self.insert_hashed(key_hash(key), key, value);
    }

    /// [`TokenCache::insert`] with the hash given (tests force collisions with it).
    fn insert_hashed(&mut self, hash: u64, key: &[u8], value: Rc<T>) {
        // A value learned again replaces the old one (which is stale even if this one is not
        // kept).
        self.remove_hashed(hash, key);
        let weight = entry_weight(key, &value);
        if weight > self.max_bytes / 8 {
            return;
        }
        while self.len > 0
            && (self.len >= self.capacity || self.bytes.saturating_add(weight) > self.max_bytes)
        {
            self.evict_an_eighth();
        }
        let entry = (key.into(), value);
        match self.by_hash.entry(hash) {
            std::collections::hash_map::Entry::Occupied(mut same_hash) => {
                same_hash.get_mut().more.push(entry)
            }
            std::collections::hash_map::Entry::Vacant(free) => {
                free.insert(Entries {
                    first: entry,
                    more: Vec::new(),
                });
            }
        }
        self.len += 1;
        self.bytes += weight;
    }

    /// Drops an eighth of the entries (at least one), arbitrary ones.
    fn evict_an_eighth(&mut self) {
        let wanted = (self.len / 8).max(1);
        let (mut freed, mut freed_bytes) = (0, 0);
        self.by_hash.retain(|_, entries| {
            let evict = freed < wanted;
            if evict {
                freed += entries.len();
                freed_bytes += entries.weight();
            }
            !evict
        });
        self.len = self.len.saturating_sub(freed);
        self.bytes = self.bytes.saturating_sub(freed_bytes);
    }

    /// Forgets `key`, filed under `hash`, if it is there.
    fn remove_hashed(&mut self, hash: u64, key: &[u8]) {
        let std::collections::hash_map::Entry::Occupied(mut group) = self.by_hash.entry(hash)
        else {
            return;
        };
        let entries = group.get_mut();
        let removed = if same_bytes(&entries.first.0, key) {
            match entries.more.pop() {
                Some(last) => std::mem::replace(&mut entries.first, last),
                None => group.remove().first,
            }
        } else {
            let Some(at) = entries
                .more
                .iter()
                .position(|(known, _)| same_bytes(known, key))
            else {
                return;
            };
            entries.more.swap_remove(at)
        };
        self.len = self.len.saturating_sub(1);
        self.bytes = self
            .bytes
            .saturating_sub(entry_weight(&removed.0, &removed.1));
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The entries' weight: what the byte bound counts.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
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
        let kept = project(all, &config());
        let names: Vec<&str> = kept.iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            vec![
                "exp",
                "groups",
                "iss",
                "org",
                "realm_access",
                "scope",
                "sub",
                "tenant"
            ]
        );
    }

    #[test]
    fn identities_round_trip_only_for_their_own_token() {
        let id = VerifiedIdentity {
            provider: 2,
            keys_generation: 77,
            dates: Dates {
                exp: Some(10),
                ..Dates::default()
            },
            claims: Rc::new(claims(json!({"sub": "alice", "exp": 10})).into()),
            payload_segment: Some("eyJ9".into()),
            fingerprint: "0011223344556677".into(),
            derived: Derived::default(),
        };
        let key = token_key("a.b.c");
        let bytes = id.encode(&key).unwrap();
        assert_eq!(VerifiedIdentity::decode(&bytes, &key), Some(id.clone()));
        assert_eq!(VerifiedIdentity::decode(&bytes, &token_key("x.y.z")), None);
        assert_eq!(VerifiedIdentity::decode(&bytes[..20], &key), None);
        assert_eq!(VerifiedIdentity::decode(b"garbage", &key), None);
        assert!(VerifiedIdentity::is_for(&bytes, &key));
        assert!(!VerifiedIdentity::is_for(&bytes, &token_key("x.y.z")));
        assert!(!VerifiedIdentity::is_for(&bytes[..15], &key));
        // The dates are read again from the claims; a record whose dates do not read is none.
        let mut odd = id.clone();
        let mut claims = odd.claims.to_map();
        claims.insert("exp".into(), json!("soon"));
        odd.claims = Rc::new(claims.into());
        assert_eq!(
            VerifiedIdentity::decode(&odd.encode(&key).unwrap(), &key),
            None
        );
    }

    impl Weigh for u32 {
        fn weight(&self) -> usize {
            *self as usize
        }
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = VerifiedCache::new(64, 1 << 20);
        let id = Rc::new(VerifiedIdentity {
            provider: 0,
            keys_generation: 0,
            dates: Dates::default(),
            claims: Rc::default(),
            payload_segment: None,
            fingerprint: "".into(),
            derived: Derived::default(),
        });
        for i in 0..1000 {
            cache.insert(format!("t{i}"), Rc::clone(&id));
            assert!(cache.len() <= 64);
        }
        assert!(cache.get("t999").is_some(), "the newest entry is kept");
        let mut off = VerifiedCache::new(0, 1 << 20);
        off.insert("t", id);
        assert!(off.is_empty());
    }

    #[test]
    fn the_cache_is_bounded_in_bytes_too() {
        // Here a value weighs its number: each entry is 64 + 10 + 100 = 174 bytes.
        let (budget, each) = (8 * 1024, 174);
        let mut cache: TokenCache<u32> = TokenCache::new(1000, budget);
        for i in 0..200u32 {
            cache.insert(format!("token-{i:04}"), Rc::new(100));
            assert!(cache.bytes() <= budget, "{} bytes", cache.bytes());
            assert_eq!(cache.bytes(), cache.len() * each);
        }
        assert!(
            (40..=budget / each).contains(&cache.len()),
            "{}",
            cache.len()
        );
        assert!(
            cache.get("token-0199").is_some(),
            "the newest entry is kept"
        );
        // Heavier than an eighth of the budget: not kept, and the token's old value goes too.
        cache.insert("token-0199", Rc::new(2000));
        assert!(cache.get("token-0199").is_none());
        assert_eq!(cache.bytes(), cache.len() * each);
        // A value learned again is weighed again.
        cache.insert("token-0198", Rc::new(50));
        assert_eq!(cache.get("token-0198").as_deref(), Some(&50));
        assert_eq!(cache.bytes(), (cache.len() - 1) * each + 124);
    }

    #[test]
    fn an_identity_weighs_its_token_and_claims() {
        // Shaped like the bench's RS256 tokens, whose entries measure ~1.2 KB each in Envoy.
        let claims = claims(json!({
            "iss": "https://idp.bench.local", "sub": "many-user-1234", "client_id": "bench-client",
            "scope": "orders:read", "iat": 1_700_000_000, "exp": 1_700_003_600
        }));
        let id = VerifiedIdentity {
            provider: 0,
            keys_generation: 1,
            dates: Dates::read(&claims).unwrap(),
            claims: Rc::new(Claims::from(claims)),
            payload_segment: None,
            fingerprint: "0011223344556677".into(),
            derived: Derived::default(),
        };
        let token = "t".repeat(650);
        assert!(
            (1100..1300).contains(&entry_weight(token.as_bytes(), &id)),
            "{}",
            entry_weight(token.as_bytes(), &id)
        );
        let mut more = id.clone();
        more.payload_segment = Some("p".repeat(300));
        assert_eq!(more.weight(), id.weight() + 300);
    }

    #[test]
    fn tokens_that_end_alike_are_told_apart_by_the_whole_text() {
        let tail = "s".repeat(HASHED_TAIL);
        let (a, b) = (format!("header.one.{tail}"), format!("header.two.{tail}"));
        assert_eq!(
            key_hash(a.as_bytes()),
            key_hash(b.as_bytes()),
            "only the tail is hashed"
        );
        assert_ne!(
            key_hash(a.as_bytes()),
            key_hash(format!("header.one.{tail}x").as_bytes())
        );
        let mut cache: TokenCache<u32> = TokenCache::new(8, 1 << 20);
        cache.insert(&a, Rc::new(1));
        assert!(cache.get(&b).is_none(), "same tail, another token");
        cache.insert(&b, Rc::new(2));
        assert_eq!(
            (cache.get(&a).as_deref(), cache.get(&b).as_deref()),
            (Some(&1), Some(&2))
        );
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn tokens_with_the_same_hash_stay_apart() {
        let mut cache: TokenCache<u32> = TokenCache::new(8, 1 << 20);
        for (i, token) in ["a.b.c", "a.b.d", "x"].into_iter().enumerate() {
            cache.insert_hashed(7, token.as_bytes(), Rc::new(i as u32));
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get_hashed(7, b"a.b.d").as_deref(), Some(&1));
        assert_eq!(cache.get_hashed(7, b"x").as_deref(), Some(&2));
        assert_eq!(cache.get_hashed(7, b"a.b.e"), None);
        assert_eq!(cache.get_hashed(8, b"x"), None);
        // A value learned again replaces the old one; the count stays.
        cache.insert_hashed(7, b"x", Rc::new(9));
        assert_eq!(cache.get_hashed(7, b"x").as_deref(), Some(&9));
        assert_eq!(cache.len(), 3);
        // Full: a group of colliding tokens leaves together, and the count follows.
        for i in 0..20u32 {
            cache.insert(format!("t{i}"), Rc::new(i));
            assert!(cache.len() <= 8, "{}", cache.len());
        }
        assert_eq!(cache.get("t19").as_deref(), Some(&19));
    }
}
