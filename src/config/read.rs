//! Stage one of the configuration: the parsed JSON read into the `*File` structs, by hand.
//!
//! serde's derived readers did this in ~70 KB of the filter's wasm (a third of the code that
//! reads the configuration, which runs once per load), and they stop at the first mistake, at a
//! position in the text that `error_path` then had to turn back into a path. Reading the parsed
//! value instead names each mistake by the path it walks, and goes on after one: a load reports
//! every misspelt field, wrong type and missing field at once. The document is parsed strictly
//! ([`crate::json`]): a member named twice is refused, wherever it is.
//!
//! The messages are serde's, word for word, so they read as before: the tests compare this
//! reader with the derived one on every edit of realistic configurations. It differs on purpose
//! in two ways: it reports more than the first mistake, and a struct must be a JSON object (serde
//! also took an array of its fields in order).

use super::{
    AuditFile, ClaimValuesFile, ConditionFile, ConfigError, ConfigErrors, ConfigFile, HeadersFile,
    IntrospectionFile, MatchFile, Named, PolicyFile, ProviderFile, QuotaFile, RateLimitFile,
    RemoteKeysFile, RuleFile, TokenSourceFile, NOT_CLAIM_VALUES,
};
use serde_json::{Map, Value};

/// Nesting the configuration may use (`inline_jwks` is the deepest part, at ~8).
const MAX_DEPTH: usize = 32;

/// Parses `bytes` and reads them as a [`ConfigFile`], naming every mistake.
pub(super) fn config_file(bytes: &[u8]) -> Result<ConfigFile, ConfigErrors> {
    let value = crate::json::parse_strict(bytes, MAX_DEPTH).map_err(|message| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message,
        }])
    })?;
    let mut reader = Reader::default();
    match ConfigFile::read(&value, "", &mut reader) {
        Some(file) if reader.errors.is_empty() => Ok(file),
        _ => Err(ConfigErrors(reader.errors)),
    }
}

/// The mistakes found so far.
#[derive(Default)]
struct Reader {
    errors: Vec<ConfigError>,
}

impl Reader {
    fn error(&mut self, at: &str, message: String) {
        self.errors.push(ConfigError {
            path: at.to_string(),
            message,
        });
    }

    /// serde's "invalid type" message; `None`, for the caller to return.
    fn wrong_type<T>(&mut self, value: &Value, at: &str, expected: &str) -> Option<T> {
        let message = format!("invalid type: {}, expected {expected}", Unexpected(value));
        self.error(at, message);
        None
    }

    /// The members of `value`, a struct's object; unknown members are reported here.
    fn fields<'v>(
        &mut self,
        value: &'v Value,
        at: &'v str,
        name: &str,
        known: &'static [&'static str],
    ) -> Option<Fields<'v>> {
        let Value::Object(members) = value else {
            return self.wrong_type(value, at, &format!("struct {name}"));
        };
        let mut unknown = members
            .keys()
            .filter(|key| !known.contains(&key.as_str()))
            .peekable();
        let complete = unknown.peek().is_none();
        if !complete {
            // serde's list of the fields: "`a` or `b`", or "one of `a`, `b`, `c`".
            let names: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            let expected = match names.as_slice() {
                [one, other] => format!("{one} or {other}"),
                _ => format!("one of {}", names.join(", ")),
            };
            for key in unknown {
                let message = format!("unknown field `{key}`, expected {expected}");
                self.error(&member_path(at, key), message);
            }
        }
        Some(Fields {
            members,
            at,
            complete,
        })
    }
}

/// A value as serde_json's messages name it ("string \"x\"", "integer `5`", "map").
struct Unexpected<'v>(&'v Value);

impl std::fmt::Display for Unexpected<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "boolean `{b}`"),
            Value::Number(n) if n.is_f64() => write!(f, "floating point `{n}`"),
            Value::Number(n) => write!(f, "integer `{n}`"),
            Value::String(s) => write!(f, "string {s:?}"),
            Value::Array(_) => f.write_str("sequence"),
            Value::Object(_) => f.write_str("map"),
        }
    }
}

fn member_path(at: &str, key: &str) -> String {
    match at.is_empty() {
        true => key.to_string(),
        false => format!("{at}.{key}"),
    }
}

/// A struct's members being read; a mistake is reported to the [`Reader`] and leaves the struct
/// incomplete.
struct Fields<'v> {
    members: &'v Map<String, Value>,
    at: &'v str,
    /// No unknown member so far, and no field missing or misread.
    complete: bool,
}

// A field's reading fills its slot in a struct made whole beforehand (`Default`), through one
// `dyn Slot` call: the readers are then not generic, and a mistake unwinds nothing. Returning
// each field instead made the reader 75 KB of wasm (the drop code of every field read so far,
// at every `?`), and generic slots 38 KB.
impl<'v> Fields<'v> {
    /// A field without a default.
    #[inline(never)]
    fn required(&mut self, r: &mut Reader, name: &str, slot: &mut dyn Slot) {
        match self.members.get(name) {
            Some(value) => self.fill(r, name, value, slot),
            None => {
                r.error(self.at, format!("missing field `{name}`"));
                self.complete = false;
            }
        }
    }

    /// A field whose absence leaves the slot's default (an `Option` field also takes `null`).
    #[inline(never)]
    fn optional(&mut self, r: &mut Reader, name: &str, slot: &mut dyn Slot) {
        if let Some(value) = self.members.get(name) {
            self.fill(r, name, value, slot);
        }
    }

    #[inline(never)]
    fn fill(&mut self, r: &mut Reader, name: &str, value: &Value, slot: &mut dyn Slot) {
        if !slot.fill(value, &member_path(self.at, name), r) {
            self.complete = false;
        }
    }

    /// `value`, when every member was known, present where required and read.
    fn done<T>(&self, value: T) -> Option<T> {
        self.complete.then_some(value)
    }
}

/// Where a field's value goes.
trait Slot {
    /// Reads `value` (at path `at`) into the slot; `false` when `r` was told of a mistake.
    fn fill(&mut self, value: &Value, at: &str, r: &mut Reader) -> bool;
}

impl<T: FromJson> Slot for T {
    fn fill(&mut self, value: &Value, at: &str, r: &mut Reader) -> bool {
        match T::read(value, at, r) {
            Some(read) => {
                // The slot still holds its default (each member is read once: the parse refused
                // names given twice), which owns nothing; forgetting it spares this function the
                // drop code of `T`, several KB for the lists of structs.
                std::mem::forget(std::mem::replace(self, read));
                true
            }
            None => false,
        }
    }
}

/// What a configuration value is read into.
trait FromJson: Sized {
    /// `value`, found at path `at`, or `None` with the mistakes reported to `r`.
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self>;
}

impl FromJson for String {
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        match value {
            Value::String(s) => Some(s.clone()),
            _ => r.wrong_type(value, at, "a string"),
        }
    }
}

impl FromJson for bool {
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        match value {
            Value::Bool(b) => Some(*b),
            _ => r.wrong_type(value, at, "a boolean"),
        }
    }
}

impl FromJson for f64 {
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        match value {
            Value::Number(n) => n.as_f64(),
            _ => r.wrong_type(value, at, "f64"),
        }
    }
}

/// An unsigned integer of at most `max`; `expected` is its type's name in messages.
fn unsigned(value: &Value, at: &str, r: &mut Reader, max: u64, expected: &str) -> Option<u64> {
    match value {
        Value::Number(n) if n.is_f64() => r.wrong_type(value, at, expected),
        Value::Number(n) => match n.as_u64().filter(|&v| v <= max) {
            Some(v) => Some(v),
            None => {
                let message = format!("invalid value: integer `{n}`, expected {expected}");
                r.error(at, message);
                None
            }
        },
        _ => r.wrong_type(value, at, expected),
    }
}

impl FromJson for u64 {
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        unsigned(value, at, r, u64::MAX, "u64")
    }
}

impl FromJson for u32 {
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        unsigned(value, at, r, u64::from(u32::MAX), "u32").and_then(|v| u32::try_from(v).ok())
    }
}

/// `null` is `None`, as serde reads an `Option`.
impl<T: FromJson> FromJson for Option<T> {
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            _ => T::read(value, at, r).map(Some),
        }
    }
}

impl FromJson for Value {
    fn read(value: &Value, _: &str, _: &mut Reader) -> Option<Self> {
        Some(value.clone())
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        let Value::Array(items) = value else {
            return r.wrong_type(value, at, "a sequence");
        };
        // Every element is read, so that each mistake in the list is reported.
        let mut read = Vec::with_capacity(items.len());
        let mut complete = true;
        for (i, item) in items.iter().enumerate() {
            match T::read(item, &format!("{at}[{i}]"), r) {
                Some(item) => read.push(item),
                None => complete = false,
            }
        }
        complete.then_some(read)
    }
}

impl<T: FromJson> FromJson for Named<T> {
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        let Value::Object(members) = value else {
            return r.wrong_type(value, at, "a map");
        };
        // In name order, each name once: the parsed object is a map already.
        let mut read = Vec::with_capacity(members.len());
        let mut complete = true;
        for (key, item) in members {
            match T::read(item, &member_path(at, key), r) {
                Some(item) => read.push((key.clone(), item)),
                None => complete = false,
            }
        }
        complete.then_some(Named(read))
    }
}

impl FromJson for ClaimValuesFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        match value {
            Value::String(s) => return Some(ClaimValuesFile::One(s.clone())),
            Value::Array(items) => {
                let strings: Option<Vec<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect();
                if let Some(strings) = strings {
                    return Some(ClaimValuesFile::Any(strings));
                }
            }
            _ => {}
        }
        r.error(at, NOT_CLAIM_VALUES.to_string());
        None
    }
}

impl FromJson for ConfigFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &[
            "providers",
            "rules",
            "headers",
            "realm",
            "keys_wait_timeout_ms",
            "audit",
            "policies",
            "default_policy",
            "rate_limit_headers",
            "token_cache_entries",
            "token_cache_bytes",
        ];
        let mut f = r.fields(value, at, "ConfigFile", KNOWN)?;
        let mut out = ConfigFile::default();
        f.required(r, "providers", &mut out.providers);
        f.optional(r, "rules", &mut out.rules);
        f.optional(r, "headers", &mut out.headers);
        f.optional(r, "realm", &mut out.realm);
        f.optional(r, "keys_wait_timeout_ms", &mut out.keys_wait_timeout_ms);
        f.optional(r, "audit", &mut out.audit);
        f.optional(r, "policies", &mut out.policies);
        f.optional(r, "default_policy", &mut out.default_policy);
        f.optional(r, "rate_limit_headers", &mut out.rate_limit_headers);
        f.optional(r, "token_cache_entries", &mut out.token_cache_entries);
        f.optional(r, "token_cache_bytes", &mut out.token_cache_bytes);
        f.done(out)
    }
}

impl FromJson for PolicyFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &[
            "name",
            "when",
            "allow",
            "deny",
            "headers",
            "rate_limits",
            "quotas",
        ];
        let mut f = r.fields(value, at, "PolicyFile", KNOWN)?;
        let mut out = PolicyFile::default();
        f.required(r, "name", &mut out.name);
        f.optional(r, "when", &mut out.when);
        f.optional(r, "allow", &mut out.allow);
        f.optional(r, "deny", &mut out.deny);
        f.optional(r, "headers", &mut out.headers);
        f.optional(r, "rate_limits", &mut out.rate_limits);
        f.optional(r, "quotas", &mut out.quotas);
        f.done(out)
    }
}

impl FromJson for ConditionFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &["claim", "equals", "contains", "any_of"];
        let mut f = r.fields(value, at, "ConditionFile", KNOWN)?;
        let mut out = ConditionFile::default();
        f.required(r, "claim", &mut out.claim);
        f.optional(r, "equals", &mut out.equals);
        f.optional(r, "contains", &mut out.contains);
        f.optional(r, "any_of", &mut out.any_of);
        f.done(out)
    }
}

impl FromJson for RateLimitFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &[
            "name", "requests", "per", "burst", "key", "max_keys", "batch",
        ];
        let mut f = r.fields(value, at, "RateLimitFile", KNOWN)?;
        let mut out = RateLimitFile::default();
        f.optional(r, "name", &mut out.name);
        f.required(r, "requests", &mut out.requests);
        f.required(r, "per", &mut out.per);
        f.optional(r, "burst", &mut out.burst);
        f.optional(r, "key", &mut out.key);
        f.optional(r, "max_keys", &mut out.max_keys);
        f.optional(r, "batch", &mut out.batch);
        f.done(out)
    }
}

impl FromJson for QuotaFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &["name", "requests", "per", "key", "max_keys", "batch"];
        let mut f = r.fields(value, at, "QuotaFile", KNOWN)?;
        let mut out = QuotaFile::default();
        f.optional(r, "name", &mut out.name);
        f.required(r, "requests", &mut out.requests);
        f.required(r, "per", &mut out.per);
        f.optional(r, "key", &mut out.key);
        f.optional(r, "max_keys", &mut out.max_keys);
        f.optional(r, "batch", &mut out.batch);
        f.done(out)
    }
}

impl FromJson for IntrospectionFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &[
            "endpoint",
            "cluster",
            "client_id",
            "client_secret",
            "client_secret_env",
            "auth_method",
            "timeout_ms",
            "cache_ttl_seconds",
            "negative_cache_seconds",
            "cache_entries",
            "max_in_flight",
            "token_type",
            "introspect_jwts",
        ];
        let mut f = r.fields(value, at, "IntrospectionFile", KNOWN)?;
        let mut out = IntrospectionFile::default();
        f.optional(r, "endpoint", &mut out.endpoint);
        f.required(r, "cluster", &mut out.cluster);
        f.required(r, "client_id", &mut out.client_id);
        f.optional(r, "client_secret", &mut out.client_secret);
        f.optional(r, "client_secret_env", &mut out.client_secret_env);
        f.optional(r, "auth_method", &mut out.auth_method);
        f.optional(r, "timeout_ms", &mut out.timeout_ms);
        f.optional(r, "cache_ttl_seconds", &mut out.cache_ttl_seconds);
        f.optional(r, "negative_cache_seconds", &mut out.negative_cache_seconds);
        f.optional(r, "cache_entries", &mut out.cache_entries);
        f.optional(r, "max_in_flight", &mut out.max_in_flight);
        f.optional(r, "token_type", &mut out.token_type);
        f.optional(r, "introspect_jwts", &mut out.introspect_jwts);
        f.done(out)
    }
}

impl FromJson for ProviderFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &[
            "issuer",
            "audiences",
            "algorithms",
            "token_from",
            "clock_skew_seconds",
            "require_exp",
            "max_lifetime_seconds",
            "token_type",
            "jwks",
            "discovery",
            "inline_jwks",
            "verify",
            "introspection",
        ];
        let mut f = r.fields(value, at, "ProviderFile", KNOWN)?;
        let mut out = ProviderFile::default();
        f.required(r, "issuer", &mut out.issuer);
        f.required(r, "audiences", &mut out.audiences);
        f.optional(r, "algorithms", &mut out.algorithms);
        f.optional(r, "token_from", &mut out.token_from);
        f.optional(r, "clock_skew_seconds", &mut out.clock_skew_seconds);
        f.optional(r, "require_exp", &mut out.require_exp);
        f.optional(r, "max_lifetime_seconds", &mut out.max_lifetime_seconds);
        f.optional(r, "token_type", &mut out.token_type);
        f.optional(r, "jwks", &mut out.jwks);
        f.optional(r, "discovery", &mut out.discovery);
        f.optional(r, "inline_jwks", &mut out.inline_jwks);
        f.optional(r, "verify", &mut out.verify);
        f.optional(r, "introspection", &mut out.introspection);
        f.done(out)
    }
}

impl FromJson for TokenSourceFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &["header", "prefix", "cookie", "query"];
        let mut f = r.fields(value, at, "TokenSourceFile", KNOWN)?;
        let mut out = TokenSourceFile::default();
        f.optional(r, "header", &mut out.header);
        f.optional(r, "prefix", &mut out.prefix);
        f.optional(r, "cookie", &mut out.cookie);
        f.optional(r, "query", &mut out.query);
        f.done(out)
    }
}

impl FromJson for RemoteKeysFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &[
            "uri",
            "cluster",
            "timeout_ms",
            "default_ttl_seconds",
            "min_ttl_seconds",
            "max_ttl_seconds",
            "stale_seconds",
            "unknown_kid_cooldown_seconds",
        ];
        let mut f = r.fields(value, at, "RemoteKeysFile", KNOWN)?;
        let mut out = RemoteKeysFile::default();
        f.optional(r, "uri", &mut out.uri);
        f.required(r, "cluster", &mut out.cluster);
        f.optional(r, "timeout_ms", &mut out.timeout_ms);
        f.optional(r, "default_ttl_seconds", &mut out.default_ttl_seconds);
        f.optional(r, "min_ttl_seconds", &mut out.min_ttl_seconds);
        f.optional(r, "max_ttl_seconds", &mut out.max_ttl_seconds);
        f.optional(r, "stale_seconds", &mut out.stale_seconds);
        f.optional(
            r,
            "unknown_kid_cooldown_seconds",
            &mut out.unknown_kid_cooldown_seconds,
        );
        f.done(out)
    }
}

impl FromJson for RuleFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &["match", "anonymous", "providers", "scopes", "claims"];
        let mut f = r.fields(value, at, "RuleFile", KNOWN)?;
        let mut out = RuleFile::default();
        f.required(r, "match", &mut out.matcher);
        f.optional(r, "anonymous", &mut out.anonymous);
        f.optional(r, "providers", &mut out.providers);
        f.optional(r, "scopes", &mut out.scopes);
        f.optional(r, "claims", &mut out.claims);
        f.done(out)
    }
}

impl FromJson for MatchFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &["prefix", "path", "methods", "host"];
        let mut f = r.fields(value, at, "MatchFile", KNOWN)?;
        let mut out = MatchFile::default();
        f.optional(r, "prefix", &mut out.prefix);
        f.optional(r, "path", &mut out.path);
        f.optional(r, "methods", &mut out.methods);
        f.optional(r, "host", &mut out.host);
        f.done(out)
    }
}

impl FromJson for HeadersFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &["claims", "payload", "strip_token"];
        let mut f = r.fields(value, at, "HeadersFile", KNOWN)?;
        let mut out = HeadersFile::default();
        f.optional(r, "claims", &mut out.claims);
        f.optional(r, "payload", &mut out.payload);
        f.optional(r, "strip_token", &mut out.strip_token);
        f.done(out)
    }
}

impl FromJson for AuditFile {
    #[inline(never)]
    fn read(value: &Value, at: &str, r: &mut Reader) -> Option<Self> {
        const KNOWN: &[&str] = &["enabled", "sample_allowed"];
        let mut f = r.fields(value, at, "AuditFile", KNOWN)?;
        let mut out = AuditFile::default();
        f.optional(r, "enabled", &mut out.enabled);
        f.optional(r, "sample_allowed", &mut out.sample_allowed);
        f.done(out)
    }
}

#[cfg(test)]
mod tests;
