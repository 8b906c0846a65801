//! Configuration: read in two stages so that every mistake is named by its path.
//!
//! Stage one reads the JSON into `*File` structs that mirror it one to one (`read`: unknown fields
//! are errors, each named by its path). Stage two, [`Config::compile`], checks meaning (URLs,
//! bounds, references between sections) and builds the validated form that the request path
//! uses, so the hot path never re-checks configuration. The `*File` structs also generate the
//! JSON Schema (`make schema`), and the tests read every configuration with serde's derived
//! readers too, so neither the schema nor the reader can drift from the structs.

use crate::crypto::Algorithm;
use crate::jwk::{JwkSet, JwksLimits, KeyOrigin};
use schemars::JsonSchema;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

mod read;

/// The plugin configuration, as JSON.
#[derive(Debug, Default, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// Identity providers by name. A token is verified only by the provider whose `issuer` equals
    /// its `iss` claim.
    pub providers: Named<ProviderFile>,
    /// Ordered route rules; the first whose `match` holds decides. A request that matches no rule
    /// needs a valid token from any provider (fail closed). Default: no rules.
    #[serde(default)]
    pub rules: Vec<RuleFile>,
    /// Headers sent upstream for allowed requests. Default: none.
    #[serde(default)]
    pub headers: HeadersFile,
    /// The realm named in `WWW-Authenticate`. Default: "tollgate".
    #[serde(default)]
    pub realm: Option<String>,
    /// How long a request may wait for a provider's keys to arrive before it is refused with 503.
    /// Default: 5000 ms; at most 60000.
    #[serde(default)]
    pub keys_wait_timeout_ms: Option<u64>,
    /// Audit log settings. Default: one JSON line per decision.
    #[serde(default)]
    pub audit: AuditFile,
    /// Policies in precedence order: the first whose `when` holds for the verified identity
    /// applies. Default: none.
    #[serde(default)]
    pub policies: Vec<PolicyFile>,
    /// The policy for requests that no policy's `when` matches, anonymous ones included.
    /// Default: none (no limits, no policy headers).
    #[serde(default)]
    pub default_policy: Option<String>,
    /// Add `RateLimit-Policy` and `RateLimit` headers to allowed responses too (429 answers
    /// always carry them). Default: false.
    #[serde(default)]
    pub rate_limit_headers: Option<bool>,
    /// Verified JWTs remembered per worker (and shared between workers), so that a token's
    /// signature is checked once, not on every request; dates are checked every time.
    /// Default: 10000; 0 turns the cache off; at most 200000.
    #[serde(default)]
    pub token_cache_entries: Option<u32>,
    /// The memory each worker may spend on remembered tokens, in bytes, for verified JWTs and
    /// for introspection answers each: the tokens' text, the claims kept with them and a few
    /// hundred bytes an entry. A token heavier than an eighth of it is not remembered (it is
    /// verified on every request). Default: 33554432 (32 MiB); from 1048576 (1 MiB) to
    /// 1073741824 (1 GiB).
    #[serde(default)]
    pub token_cache_bytes: Option<u64>,
}

/// A named policy: who it applies to and what it grants and limits.
#[derive(Debug, Default, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// Unique name, shown in audit events, metrics and rate-limit headers. Required.
    pub name: String,
    /// Conditions on the verified identity; all must hold. Default: none (always holds).
    #[serde(default)]
    pub when: Vec<ConditionFile>,
    /// Routes this policy may use; others are refused with 403. Default: every route.
    #[serde(default)]
    pub allow: Option<Vec<MatchFile>>,
    /// Routes refused with 403 even when `allow` names them. Default: none.
    #[serde(default)]
    pub deny: Vec<MatchFile>,
    /// Fixed headers sent upstream, e.g. `{"x-plan": "gold"}`. Default: none.
    #[serde(default)]
    pub headers: Named<String>,
    /// Request-rate limits, all enforced. Default: none.
    #[serde(default)]
    pub rate_limits: Vec<RateLimitFile>,
    /// Long-window quotas (UTC calendar hour, day or month), all enforced. Default: none.
    #[serde(default)]
    pub quotas: Vec<QuotaFile>,
}

/// One condition on a claim: exactly one of `equals`, `contains`, `any_of`.
#[derive(Debug, Default, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct ConditionFile {
    /// Claim path ("roles", "realm_access.roles", "client_id", `https://example.com/groups`).
    /// "scope" reads `scope` and `scp` as a list of scopes. Required.
    pub claim: String,
    /// The claim is this scalar.
    #[serde(default)]
    pub equals: Option<String>,
    /// The claim (an array, or the scopes) holds this value.
    #[serde(default)]
    pub contains: Option<String>,
    /// The claim is, or holds, one of these values.
    #[serde(default)]
    pub any_of: Option<Vec<String>>,
}

/// A rate limit: `requests` per `per`, with bursts up to `burst`.
#[derive(Debug, Default, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Name in headers, audit events and metrics. Default: `rate<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Requests allowed per period. Required, at least 1.
    pub requests: u64,
    /// The period: a number and s, m or h ("1s", "10s", "1m", "1h"). Required.
    pub per: String,
    /// Requests that may arrive at once. Default: `requests`.
    #[serde(default)]
    pub burst: Option<u64>,
    /// Whose budget is counted: "sub", "client_id", `claim:<path>` or "client_address".
    /// Requests without that identity (anonymous routes) are counted by client address.
    /// Default: "sub".
    #[serde(default)]
    pub key: Option<String>,
    /// Identities tracked at once for this limit; more share counters, which can only make
    /// counting stricter. Default: 16384; at most 1048576.
    #[serde(default)]
    pub max_keys: Option<u32>,
    /// Requests a worker may take from the shared counter at once and then count by itself,
    /// at most 1000. Default: 1, every request counted across workers exactly. A larger batch
    /// spares most requests the shared counter under heavy traffic, at the price of counting
    /// that may be off by up to `batch` requests per worker (docs/configuration.md, Batches).
    #[serde(default)]
    pub batch: Option<u32>,
}

/// A quota over a UTC calendar window.
#[derive(Debug, Default, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct QuotaFile {
    /// Name in headers, audit events and metrics. Default: `quota<index>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Requests allowed per window. Required, at least 1.
    pub requests: u64,
    /// "hour", "day" or "month". Required.
    pub per: String,
    /// As for rate limits. Default: "sub".
    #[serde(default)]
    pub key: Option<String>,
    /// As for rate limits. Default: 16384.
    #[serde(default)]
    pub max_keys: Option<u32>,
    /// As for rate limits. Default: 1.
    #[serde(default)]
    pub batch: Option<u32>,
}

/// RFC 7662 token introspection for a provider.
#[derive(Debug, Default, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct IntrospectionFile {
    /// The introspection endpoint. Default: the discovery document's `introspection_endpoint`
    /// (only for a provider with `discovery`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The gateway cluster that reaches the endpoint. Required.
    pub cluster: String,
    /// The client the gateway authenticates as. Required.
    pub client_id: String,
    /// Its secret, inline. One of `client_secret`, `client_secret_env` is required.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The name of an environment variable of the wasm VM that holds the secret (Envoy:
    /// `vm_config.environment_variables`), read at every configuration load.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// "client_secret_basic" or "client_secret_post". Default: "client_secret_basic".
    #[serde(default)]
    pub auth_method: Option<String>,
    /// Timeout of one call. Default: 2000 ms; 100 to 30000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Longest time an active answer is reused, never past the token's `exp`. Default: 60;
    /// at most 3600.
    #[serde(default)]
    pub cache_ttl_seconds: Option<u64>,
    /// How long an inactive answer is reused. Default: 5; at most 60.
    #[serde(default)]
    pub negative_cache_seconds: Option<u64>,
    /// Cached answers kept, shared by all workers. Default: 4096; at most 65536.
    #[serde(default)]
    pub cache_entries: Option<u32>,
    /// Introspection calls in flight at once per worker; requests beyond are refused with 503.
    /// Default: 64; at most 1024.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// Required `token_type` in the answer (e.g. "Bearer"). Default: not checked.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Also introspect JWTs whose signature verified, to see revocations. Default: false.
    #[serde(default)]
    pub introspect_jwts: Option<bool>,
}

/// One OpenID provider or OAuth 2 authorization server.
#[derive(Debug, Default, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct ProviderFile {
    /// The exact `iss` value of its tokens, an absolute http(s) URL. Required.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one. Required, not empty.
    pub audiences: Vec<String>,
    /// JWS algorithms accepted. Default: every asymmetric one (RS*, PS*, ES*, EdDSA). HS* only
    /// with `inline_jwks` holding an `oct` key.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Where the token is read, in order. Default: `[{"header": "authorization", "prefix": "Bearer "}]`.
    #[serde(default)]
    pub token_from: Option<Vec<TokenSourceFile>>,
    /// Allowed clock difference for `exp`, `nbf` and `iat`. Default: 60; at most 600.
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    /// Whether tokens without `exp` are refused. Default: true.
    #[serde(default)]
    pub require_exp: Option<bool>,
    /// Longest accepted `exp - iat`; tokens without `iat` are then refused. Default: no limit.
    #[serde(default)]
    pub max_lifetime_seconds: Option<u64>,
    /// Required JOSE `typ` header, e.g. "at+jwt" for RFC 9068 access tokens (compared without
    /// case and with an optional "application/" prefix). Default: not checked.
    #[serde(default)]
    pub token_type: Option<String>,
    /// Keys fetched from a JWKS URL. One of `jwks`, `discovery`, `inline_jwks` is required.
    #[serde(default)]
    pub jwks: Option<RemoteKeysFile>,
    /// Keys found through the issuer's OpenID configuration (`jwks_uri`).
    #[serde(default)]
    pub discovery: Option<RemoteKeysFile>,
    /// A JWKS given inline (`{"keys": [...]}`); the only place `oct` (HMAC) keys are accepted.
    #[serde(default)]
    #[schemars(with = "serde_json::Value")]
    pub inline_jwks: Option<serde_json::Value>,
    /// How tokens are verified: "jwt" (signature), "introspection" (RFC 7662, every token) or
    /// "jwt_then_introspection" (JWTs by signature, other tokens by introspection).
    /// Default: "jwt", or "jwt_then_introspection" when `introspection` is set.
    #[serde(default)]
    pub verify: Option<String>,
    /// Token introspection (RFC 7662). Default: none.
    #[serde(default)]
    pub introspection: Option<IntrospectionFile>,
}

/// Where a token is read from: exactly one of `header`, `cookie`, `query`.
#[derive(Debug, Default, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct TokenSourceFile {
    /// A request header name.
    #[serde(default)]
    pub header: Option<String>,
    /// With `header`: a prefix the value must start with, removed before use (e.g. "Bearer ",
    /// matched without case). Default: none (the whole value is the token).
    #[serde(default)]
    pub prefix: Option<String>,
    /// A cookie name.
    #[serde(default)]
    pub cookie: Option<String>,
    /// A query parameter name.
    #[serde(default)]
    pub query: Option<String>,
}

/// A remote key source (`jwks`) or a discovery document (`discovery`), fetched through an
/// upstream cluster of the gateway.
#[derive(Debug, Default, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct RemoteKeysFile {
    /// For `jwks`: the JWKS URL (required). For `discovery`: the OpenID configuration URL.
    /// Default for discovery: `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub uri: Option<String>,
    /// The gateway cluster that reaches the URL's host. Required.
    pub cluster: String,
    /// Timeout of one fetch. Default: 5000 ms; 100 to 60000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// How long fetched keys are used before a refresh when the answer has no
    /// `Cache-Control: max-age`. Default: 300.
    #[serde(default)]
    pub default_ttl_seconds: Option<u64>,
    /// Lower bound on the IdP's `max-age`. Default: 30.
    #[serde(default)]
    pub min_ttl_seconds: Option<u64>,
    /// Upper bound on the IdP's `max-age`. Default: 86400.
    #[serde(default)]
    pub max_ttl_seconds: Option<u64>,
    /// How long the last good keys keep serving after refreshes start failing. Default: 86400;
    /// at most 604800.
    #[serde(default)]
    pub stale_seconds: Option<u64>,
    /// At most one refetch per this period is caused by tokens whose `kid` is unknown.
    /// Default: 30.
    #[serde(default)]
    pub unknown_kid_cooldown_seconds: Option<u64>,
}

/// One route rule.
#[derive(Debug, Default, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// When the rule applies. Required.
    #[serde(rename = "match")]
    pub matcher: MatchFile,
    /// Let requests through without a token (identity headers are still removed). Default: false.
    #[serde(default)]
    pub anonymous: Option<bool>,
    /// Providers whose tokens are accepted here. Default: all.
    #[serde(default)]
    pub providers: Option<Vec<String>>,
    /// Scopes the token must all have (from `scope` or `scp`). Default: none; a missing scope is
    /// answered with 403 insufficient_scope.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Claim values required: claim path to a value or a list of accepted values (any of them).
    /// A claim holding an array matches when it contains one of them. Default: none.
    #[serde(default)]
    pub claims: Option<Named<ClaimValuesFile>>,
}

/// One accepted value or a list of accepted values.
#[derive(Debug, JsonSchema)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(untagged)]
pub enum ClaimValuesFile {
    One(String),
    Any(Vec<String>),
}

/// What serde says of an untagged enum when neither form fits (and so the reader says too).
const NOT_CLAIM_VALUES: &str = "data did not match any variant of untagged enum ClaimValuesFile";

/// Request attributes a rule matches; all given ones must hold.
#[derive(Debug, JsonSchema, Default)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct MatchFile {
    /// Normalized path starts with this, on a segment boundary ("/api" matches "/api" and
    /// "/api/x", not "/apix").
    #[serde(default)]
    pub prefix: Option<String>,
    /// Normalized path equals this.
    #[serde(default)]
    pub path: Option<String>,
    /// HTTP methods (upper case). Default: any.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Host (":authority" without port), exact, or "*.example.com". Default: any.
    #[serde(default)]
    pub host: Option<String>,
}

/// What goes upstream with an allowed request.
#[derive(Debug, JsonSchema, Default)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct HeadersFile {
    /// Header name to claim path ("sub", "realm_access.roles", `https://example.com/roles`).
    /// Arrays of scalars are joined with ","; objects and values with control characters are not
    /// sent. Default: none.
    #[serde(default)]
    pub claims: Named<String>,
    /// A header that carries the verified payload (base64url, as in the token). Default: none.
    #[serde(default)]
    pub payload: Option<String>,
    /// Remove the token from the request before it goes upstream. Default: false.
    #[serde(default)]
    pub strip_token: Option<bool>,
}

/// Audit log settings.
#[derive(Debug, JsonSchema, Default)]
#[cfg_attr(test, derive(serde::Deserialize))]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// Write one JSON line per decision to the gateway log. Default: true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Share of allowed requests audited, 0.0 to 1.0; denials are always audited. Default: 1.0.
    #[serde(default)]
    pub sample_allowed: Option<f64>,
}

/// The members of a JSON object, in name order: what the configuration's maps are read into.
/// A list rather than a `BTreeMap`: the parse gives the names sorted and unique already, and each
/// value type of a `BTreeMap` cost the module ~4.5 KB of code to insert with.
#[derive(Debug)]
pub struct Named<T>(pub Vec<(String, T)>);

impl<T> Default for Named<T> {
    fn default() -> Self {
        Named(Vec::new())
    }
}

impl<T> Named<T> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(name, _)| name)
    }
}

impl<'a, T> IntoIterator for &'a Named<T> {
    type Item = &'a (String, T);
    type IntoIter = std::slice::Iter<'a, (String, T)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// In the JSON Schema, an object whose members are all `T`.
impl<T: JsonSchema> JsonSchema for Named<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        BTreeMap::<String, T>::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        BTreeMap::<String, T>::schema_id()
    }
    fn inline_schema() -> bool {
        BTreeMap::<String, T>::inline_schema()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        BTreeMap::<String, T>::json_schema(generator)
    }
}

/// As a JSON object: the schema's defaults (`{}`) are written through it.
impl<T: serde::Serialize> serde::Serialize for Named<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

/// serde's reading, for the tests' reference reader.
#[cfg(test)]
impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Named<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, T>::deserialize(deserializer)?;
        Ok(Named(map.into_iter().collect()))
    }
}

/// A configuration mistake, named by its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every mistake found, so that one load names them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

/// The JSON Schema of [`ConfigFile`], pretty-printed.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(ConfigFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// The validated form.

/// Index of a provider in [`Config::providers`].
pub type ProviderId = usize;

#[derive(Debug)]
pub struct Config {
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    pub headers: HeaderMapping,
    pub realm: String,
    pub keys_wait_timeout_ms: u64,
    pub audit: bool,
    /// Share of allowed requests that are audited (denials always are).
    pub audit_sample_allowed: f64,
    pub policies: Vec<Policy>,
    /// Index into `policies`.
    pub default_policy: Option<usize>,
    pub rate_limit_headers: bool,
    pub token_cache_entries: u32,
    pub token_cache_bytes: u32,
    /// Every header the filter may set (claim, payload and policy headers), lower case: removed
    /// from each incoming request before anything else.
    pub owned_headers: Vec<String>,
}

/// A named policy, validated.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub when: Vec<Condition>,
    /// `None`: every route.
    pub allow: Option<Vec<RouteMatch>>,
    pub deny: Vec<RouteMatch>,
    /// Lower-case name and value.
    pub headers: Vec<(String, String)>,
    pub limits: Vec<Limit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub claim: String,
    pub test: ConditionTest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConditionTest {
    Equals(String),
    Contains(String),
    AnyOf(Vec<String>),
}

/// A rate limit or a quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub name: String,
    pub kind: LimitKind,
    pub key: LimitKey,
    /// Counters kept for this limit; identities beyond share them.
    pub max_keys: u32,
    /// Requests a worker takes from a counter at once at most (1: exact counting).
    pub batch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// `requests` per `period_ms`, at most `burst` at once (GCRA).
    Rate {
        requests: u64,
        period_ms: u64,
        burst: u64,
    },
    /// `requests` per UTC calendar window.
    Quota {
        requests: u64,
        window: CalendarWindow,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarWindow {
    Hour,
    Day,
    Month,
}

/// Whose budget a request spends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    Subject,
    ClientId,
    Claim(String),
    ClientAddress,
}

#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub sources: Vec<TokenSource>,
    pub clock_skew: u64,
    pub require_exp: bool,
    pub max_lifetime: Option<u64>,
    pub token_type: Option<String>,
    /// `None` for a provider that verifies only by introspection.
    pub keys: Option<KeySource>,
    pub verify: VerifyMode,
    pub introspection: Option<Introspection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    Jwt,
    Introspection,
    JwtThenIntrospection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 section 2.3.1).
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Post,
}

/// How a provider's opaque tokens are introspected.
#[derive(Clone, PartialEq, Eq)]
pub struct Introspection {
    /// `None`: the discovery document's `introspection_endpoint`.
    pub endpoint: Option<HttpUrl>,
    pub cluster: String,
    pub client_id: String,
    pub client_secret: String,
    pub auth: ClientAuth,
    pub timeout_ms: u64,
    pub cache_ttl: u64,
    pub negative_ttl: u64,
    pub cache_entries: u32,
    pub max_in_flight: u32,
    pub token_type: Option<String>,
    pub introspect_jwts: bool,
}

impl fmt::Debug for Introspection {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspection")
            .field("endpoint", &self.endpoint)
            .field("cluster", &self.cluster)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Lower-case header name and an optional prefix (compared without case).
    Header {
        name: Arc<str>,
        prefix: Option<String>,
    },
    Cookie(String),
    Query(String),
}

#[derive(Debug)]
pub enum KeySource {
    Inline(JwkSet),
    Remote(RemoteKeys),
}

/// Where and how a provider's keys are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKeys {
    /// Whether `url` is a discovery document (whose `jwks_uri` is then fetched) or the JWKS.
    pub discovery: bool,
    pub url: HttpUrl,
    pub cluster: String,
    pub timeout_ms: u64,
    pub default_ttl: u64,
    pub min_ttl: u64,
    pub max_ttl: u64,
    pub stale: u64,
    pub unknown_kid_cooldown: u64,
}

/// An absolute http(s) URL split the way a dispatched HTTP call needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    pub scheme: String,
    pub authority: String,
    /// Path and query, starting with "/".
    pub path: String,
}

impl HttpUrl {
    /// Parses an absolute http or https URL without userinfo or fragment.
    pub fn parse(input: &str) -> Result<HttpUrl, String> {
        let (scheme, rest) = input
            .split_once("://")
            .ok_or_else(|| "not an absolute URL".to_string())?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err("not an absolute URL".to_string());
        }
        if input.len() > 2048 || input.chars().any(|c| c.is_control() || c == ' ') {
            return Err("not an absolute URL".to_string());
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') || authority.contains('?') {
            return Err("not an absolute URL".to_string());
        }
        if path.contains('#') {
            return Err("a URL with a fragment".to_string());
        }
        Ok(HttpUrl {
            scheme,
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

#[derive(Debug)]
pub struct Rule {
    pub matcher: RouteMatch,
    pub anonymous: bool,
    /// Empty means every provider.
    pub providers: Vec<ProviderId>,
    pub scopes: Vec<String>,
    pub claims: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Default)]
pub struct RouteMatch {
    pub prefix: Option<String>,
    pub path: Option<String>,
    pub methods: Vec<String>,
    pub host: Option<String>,
}

#[derive(Debug, Default)]
pub struct HeaderMapping {
    /// (lower-case header name, claim path), in name order.
    pub claims: Vec<(String, String)>,
    pub payload: Option<String>,
    pub strip_token: bool,
}

impl HeaderMapping {
    /// Every header the filter may set: removed from each incoming request before anything else.
    pub fn owned_headers(&self) -> impl Iterator<Item = &str> {
        self.claims
            .iter()
            .map(|(name, _)| name.as_str())
            .chain(self.payload.as_deref())
    }
}

const DEFAULT_SKEW: u64 = 60;
const MAX_SKEW: u64 = 600;

impl Config {
    /// Parses and validates a configuration, naming every problem with its path.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigErrors> {
        Config::from_json_with_env(bytes, &|name| std::env::var(name).ok())
    }

    /// As [`Config::from_json`], reading `*_env` secrets through `env`.
    pub fn from_json_with_env(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        Config::compile(read::config_file(bytes)?, env)
    }

    /// Stage two: meaning, bounds and references.
    pub fn compile(
        file: ConfigFile,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut errs = Errors::default();
        if file.providers.is_empty() {
            errs.add("providers", "at least one provider is required");
        }
        let mut providers = Vec::new();
        for (name, p) in &file.providers {
            if let Some(provider) = compile_provider(name, p, env, &mut errs) {
                providers.push(provider);
            }
        }
        for (i, a) in providers.iter().enumerate() {
            for b in providers.iter().skip(i + 1) {
                if a.issuer == b.issuer {
                    errs.add(
                        format!("providers.{}.issuer", b.name),
                        format!("same issuer as provider \"{}\"", a.name),
                    );
                }
            }
        }
        let names: Vec<&String> = file.providers.keys().collect();
        let rules = file
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| compile_rule(&format!("rules[{i}]"), r, &names, &mut errs))
            .collect();
        let headers = compile_headers(&file.headers, &mut errs);
        let policies: Vec<Policy> = file
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| compile_policy(&format!("policies[{i}]"), p, &mut errs))
            .collect();
        for (i, a) in policies.iter().enumerate() {
            if policies.iter().skip(i + 1).any(|b| b.name == a.name) {
                errs.add(
                    format!("policies[{i}].name"),
                    format!("\"{}\" is used twice", a.name),
                );
            }
        }
        let default_policy = file.default_policy.as_ref().and_then(|name| {
            let found = policies.iter().position(|p| &p.name == name);
            if found.is_none() {
                errs.add("default_policy", format!("no policy named \"{name}\""));
            }
            found
        });
        let mut owned_headers: Vec<String> = headers.owned_headers().map(str::to_string).collect();
        for (i, policy) in policies.iter().enumerate() {
            for (name, _) in &policy.headers {
                if owned_headers.contains(name) {
                    errs.add(
                        format!("policies[{i}].headers.{name}"),
                        "already set from a claim by headers.claims or headers.payload",
                    );
                }
            }
        }
        for policy in &policies {
            for (name, _) in &policy.headers {
                if !owned_headers.contains(name) {
                    owned_headers.push(name.clone());
                }
            }
        }
        // CGI, WSGI and PHP read `x_user` as `X-User`: a client must not spell its way past.
        let underscored: Vec<String> = owned_headers
            .iter()
            .filter(|h| h.contains('-'))
            .map(|h| h.replace('-', "_"))
            .filter(|h| !owned_headers.contains(h))
            .collect();
        owned_headers.extend(underscored);
        let realm = file.realm.unwrap_or_else(|| "tollgate".to_string());
        if realm.is_empty()
            || !realm.chars().all(|c| c.is_ascii_graphic() || c == ' ')
            || realm.contains('"')
            || realm.contains('\\')
        {
            errs.add(
                "realm",
                "must be printable ASCII without quotes or backslashes",
            );
        }
        if !(0.0..=1.0).contains(&file.audit.sample_allowed.unwrap_or(1.0)) {
            errs.add("audit.sample_allowed", "must be between 0.0 and 1.0");
        }
        let token_cache_entries = bounded(
            &mut errs,
            "token_cache_entries",
            file.token_cache_entries.map(u64::from),
            10_000,
            0,
            200_000,
        );
        let token_cache_bytes = bounded(
            &mut errs,
            "token_cache_bytes",
            file.token_cache_bytes,
            32 << 20,
            1 << 20,
            1 << 30,
        );
        let keys_wait_timeout_ms = bounded(
            &mut errs,
            "keys_wait_timeout_ms",
            file.keys_wait_timeout_ms,
            5000,
            1,
            60_000,
        );
        errs.finish(Config {
            providers,
            rules,
            headers,
            realm,
            keys_wait_timeout_ms,
            audit: file.audit.enabled.unwrap_or(true),
            audit_sample_allowed: file.audit.sample_allowed.unwrap_or(1.0),
            policies,
            default_policy,
            rate_limit_headers: file.rate_limit_headers.unwrap_or(false),
            token_cache_entries: token_cache_entries as u32,
            token_cache_bytes: token_cache_bytes as u32,
            owned_headers,
        })
    }

    pub fn provider(&self, id: ProviderId) -> Option<&Provider> {
        self.providers.get(id)
    }
}

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
    fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.0))
        }
    }
}

fn bounded(
    errs: &mut Errors,
    path: &str,
    value: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> u64 {
    let v = value.unwrap_or(default);
    if v < min || v > max {
        errs.add(path, format!("must be between {min} and {max}"));
        return default;
    }
    v
}

// Out of line: see "Function size" in the crate docs.
#[inline(never)]
fn compile_provider(
    name: &str,
    p: &ProviderFile,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Errors,
) -> Option<Provider> {
    let at = |field: &str| format!("providers.{name}.{field}");
    let before = errs.0.len();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        errs.add(
            format!("providers.{name}"),
            "provider names are 1-64 characters of [A-Za-z0-9_-]",
        );
    }
    if HttpUrl::parse(&p.issuer).is_err() {
        errs.add(at("issuer"), "not an absolute URL");
    }
    if p.audiences.is_empty() {
        errs.add(at("audiences"), "at least one audience is required");
    }
    for (i, a) in p.audiences.iter().enumerate() {
        if a.is_empty() {
            errs.add(at(&format!("audiences[{i}]")), "empty audience");
        }
    }
    let verify = match (p.verify.as_deref(), p.introspection.is_some()) {
        (None, false) | (Some("jwt"), _) => VerifyMode::Jwt,
        (None, true) | (Some("jwt_then_introspection"), _) => VerifyMode::JwtThenIntrospection,
        (Some("introspection"), _) => VerifyMode::Introspection,
        (Some(_), _) => {
            errs.add(
                at("verify"),
                "one of \"jwt\", \"introspection\", \"jwt_then_introspection\"",
            );
            VerifyMode::Jwt
        }
    };
    if verify != VerifyMode::Jwt && p.introspection.is_none() {
        errs.add(at("introspection"), "required to verify by introspection");
    }
    if verify == VerifyMode::Jwt
        && p.introspection
            .as_ref()
            .is_some_and(|i| i.introspect_jwts != Some(true))
    {
        errs.add(
            at("introspection"),
            "never used: verify is \"jwt\" and introspect_jwts is not set",
        );
    }
    let introspection = p.introspection.as_ref().and_then(|i| {
        compile_introspection(&at("introspection"), i, p.discovery.is_some(), env, errs)
    });
    // Outer None: a mistake was reported; inner None: no keys (introspection only).
    let keys: Option<Option<KeySource>> = match (&p.jwks, &p.discovery, &p.inline_jwks) {
        (Some(remote), None, None) => {
            compile_remote(&at("jwks"), remote, false, &p.issuer, errs).map(Some)
        }
        (None, Some(remote), None) => {
            compile_remote(&at("discovery"), remote, true, &p.issuer, errs).map(Some)
        }
        (None, None, Some(inline)) => {
            match JwkSet::from_value(inline, KeyOrigin::Inline, &JwksLimits::default()) {
                Ok(set) => Some(Some(KeySource::Inline(set))),
                Err(e) => {
                    errs.add(at("inline_jwks"), e.to_string());
                    None
                }
            }
        }
        (None, None, None) if verify == VerifyMode::Introspection => Some(None),
        (None, None, None) => {
            errs.add(
                format!("providers.{name}"),
                "needs one key source: jwks, discovery or inline_jwks",
            );
            None
        }
        _ => {
            errs.add(
                format!("providers.{name}"),
                "give only one of jwks, discovery, inline_jwks",
            );
            None
        }
    };
    let has_oct = matches!(&keys, Some(Some(KeySource::Inline(set))) if set.has_symmetric());
    let algorithms = match &p.algorithms {
        None => Algorithm::ALL
            .iter()
            .copied()
            .filter(|a| !a.is_symmetric())
            .collect(),
        Some(list) => {
            let mut algs = Vec::new();
            if list.is_empty() {
                errs.add(at("algorithms"), "at least one algorithm is required");
            }
            for (i, name) in list.iter().enumerate() {
                match Algorithm::from_name(name) {
                    None => errs.add(
                        at(&format!("algorithms[{i}]")),
                        format!("unknown algorithm \"{name}\" (use RS256/384/512, PS256/384/512, ES256/384/512, EdDSA, HS256/384/512)"),
                    ),
                    Some(a) if a.is_symmetric() && !has_oct => errs.add(
                        at(&format!("algorithms[{i}]")),
                        format!("{name} needs an oct key in inline_jwks; HMAC keys are never taken from a remote JWKS"),
                    ),
                    Some(a) => algs.push(a),
                }
            }
            algs
        }
    };
    let sources = match &p.token_from {
        None => vec![TokenSource::Header {
            name: "authorization".into(),
            prefix: Some("Bearer ".to_string()),
        }],
        Some(list) => {
            if list.is_empty() {
                errs.add(at("token_from"), "at least one token source is required");
            }
            list.iter()
                .enumerate()
                .filter_map(|(i, s)| compile_source(&at(&format!("token_from[{i}]")), s, errs))
                .collect()
        }
    };
    let clock_skew = bounded(
        errs,
        &at("clock_skew_seconds"),
        p.clock_skew_seconds,
        DEFAULT_SKEW,
        0,
        MAX_SKEW,
    );
    if p.max_lifetime_seconds == Some(0) {
        errs.add(at("max_lifetime_seconds"), "must be at least 1");
    }
    if let Some(t) = &p.token_type {
        if t.is_empty() || !t.chars().all(|c| c.is_ascii_graphic()) {
            errs.add(at("token_type"), "must be a media type such as \"at+jwt\"");
        }
    }
    let keys = keys?;
    if errs.0.len() > before {
        return None;
    }
    Some(Provider {
        name: name.to_string(),
        issuer: p.issuer.clone(),
        audiences: p.audiences.clone(),
        algorithms,
        sources,
        clock_skew,
        require_exp: p.require_exp.unwrap_or(true),
        max_lifetime: p.max_lifetime_seconds,
        token_type: p.token_type.as_ref().map(|t| normalize_media_type(t)),
        keys,
        verify,
        introspection,
    })
}

// Out of line: see "Function size" in the crate docs.
#[inline(never)]
fn compile_policy(path: &str, p: &PolicyFile, errs: &mut Errors) -> Policy {
    let f = |field: &str| format!("{path}.{field}");
    if p.name.is_empty()
        || p.name.len() > 64
        || !p
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        errs.add(
            f("name"),
            "policy names are 1-64 characters of [A-Za-z0-9_-]",
        );
    }
    let when = p
        .when
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let at = f(&format!("when[{i}]"));
            if c.claim.is_empty() {
                errs.add(format!("{at}.claim"), "required");
            }
            let test = match (&c.equals, &c.contains, &c.any_of) {
                (Some(_), None, None) if c.claim == "scope" => {
                    errs.add(
                        format!("{at}.equals"),
                        "scopes are a list: use contains or any_of",
                    );
                    return None;
                }
                (Some(v), None, None) => ConditionTest::Equals(v.clone()),
                (None, Some(v), None) => ConditionTest::Contains(v.clone()),
                (None, None, Some(vs)) if !vs.is_empty() => ConditionTest::AnyOf(vs.clone()),
                _ => {
                    errs.add(
                        at,
                        "give exactly one of equals, contains, any_of (non-empty)",
                    );
                    return None;
                }
            };
            Some(Condition {
                claim: c.claim.clone(),
                test,
            })
        })
        .collect();
    let routes = |field: &str, list: &[MatchFile], errs: &mut Errors| -> Vec<RouteMatch> {
        list.iter()
            .enumerate()
            .map(|(i, m)| compile_match(&f(&format!("{field}[{i}]")), m, errs))
            .collect()
    };
    let allow = p.allow.as_ref().map(|list| routes("allow", list, errs));
    let deny = routes("deny", &p.deny, errs);
    let mut headers = Vec::new();
    for (name, value) in &p.headers {
        let at = f(&format!("headers.{name}"));
        let lower = name.to_ascii_lowercase();
        if !is_header_name(name) {
            errs.add(at, "not a valid header name");
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            errs.add(at, "a reserved header cannot be set");
        } else if value.chars().any(char::is_control) || value.len() > 1024 {
            errs.add(
                at,
                "values are at most 1024 characters, without control characters",
            );
        } else {
            headers.push((lower, value.clone()));
        }
    }
    let mut limits = Vec::new();
    for (i, r) in p.rate_limits.iter().enumerate() {
        let at = f(&format!("rate_limits[{i}]"));
        let period_ms = match parse_period_ms(&r.per) {
            Some(ms) => ms,
            None => {
                errs.add(
                    format!("{at}.per"),
                    "a number and s, m or h, e.g. \"1s\" or \"1m\" (at most 24h)",
                );
                1000
            }
        };
        if r.requests == 0 || r.requests > 1_000_000_000 {
            errs.add(format!("{at}.requests"), "must be between 1 and 1000000000");
        }
        let burst = r.burst.unwrap_or(r.requests);
        if r.burst.is_some() && (burst == 0 || burst > 1_000_000_000) {
            errs.add(format!("{at}.burst"), "must be between 1 and 1000000000");
        }
        limits.push(Limit {
            name: limit_name(&at, r.name.as_deref(), &format!("rate{i}"), errs),
            kind: LimitKind::Rate {
                requests: r.requests.max(1),
                period_ms,
                burst: burst.max(1),
            },
            key: compile_limit_key(&format!("{at}.key"), r.key.as_deref(), errs),
            max_keys: bounded(
                errs,
                &format!("{at}.max_keys"),
                r.max_keys.map(u64::from),
                16_384,
                1,
                1 << 20,
            ) as u32,
            batch: bounded(
                errs,
                &format!("{at}.batch"),
                r.batch.map(u64::from),
                1,
                1,
                1000,
            ),
        });
    }
    for (i, q) in p.quotas.iter().enumerate() {
        let at = f(&format!("quotas[{i}]"));
        let window = match q.per.as_str() {
            "hour" => CalendarWindow::Hour,
            "day" => CalendarWindow::Day,
            "month" => CalendarWindow::Month,
            _ => {
                errs.add(format!("{at}.per"), "one of \"hour\", \"day\", \"month\"");
                CalendarWindow::Day
            }
        };
        if q.requests == 0 || q.requests > 1_000_000_000_000 {
            errs.add(
                format!("{at}.requests"),
                "must be between 1 and 1000000000000",
            );
        }
        limits.push(Limit {
            name: limit_name(&at, q.name.as_deref(), &format!("quota{i}"), errs),
            kind: LimitKind::Quota {
                requests: q.requests.max(1),
                window,
            },
            key: compile_limit_key(&format!("{at}.key"), q.key.as_deref(), errs),
            max_keys: bounded(
                errs,
                &format!("{at}.max_keys"),
                q.max_keys.map(u64::from),
                16_384,
                1,
                1 << 20,
            ) as u32,
            batch: bounded(
                errs,
                &format!("{at}.batch"),
                q.batch.map(u64::from),
                1,
                1,
                1000,
            ),
        });
    }
    for (i, a) in limits.iter().enumerate() {
        if limits.iter().skip(i + 1).any(|b| b.name == a.name) {
            errs.add(path, format!("limit name \"{}\" is used twice", a.name));
        }
    }
    Policy {
        name: p.name.clone(),
        when,
        allow,
        deny,
        headers,
        limits,
    }
}

fn limit_name(path: &str, name: Option<&str>, default: &str, errs: &mut Errors) -> String {
    let name = name.unwrap_or(default);
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        errs.add(
            format!("{path}.name"),
            "limit names are 1-64 characters of [A-Za-z0-9_-]",
        );
    }
    name.to_string()
}

/// "1s", "10s", "1m", "1h": a period of at most a day.
fn parse_period_ms(per: &str) -> Option<u64> {
    let unit = match per.chars().last()? {
        's' => 1000,
        'm' => 60_000,
        'h' => 3_600_000,
        _ => return None,
    };
    let n: u64 = per.get(..per.len() - 1)?.parse().ok()?;
    let ms = n.checked_mul(unit)?;
    (1..=86_400_000).contains(&ms).then_some(ms)
}

fn compile_limit_key(path: &str, key: Option<&str>, errs: &mut Errors) -> LimitKey {
    match key {
        None | Some("sub") => LimitKey::Subject,
        Some("client_id") => LimitKey::ClientId,
        Some("client_address") => LimitKey::ClientAddress,
        Some(k) => match k.strip_prefix("claim:") {
            Some(claim) if !claim.is_empty() => LimitKey::Claim(claim.to_string()),
            _ => {
                errs.add(
                    path,
                    "one of \"sub\", \"client_id\", \"client_address\", \"claim:<path>\"",
                );
                LimitKey::Subject
            }
        },
    }
}

// Out of line: see "Function size" in the crate docs.
#[inline(never)]
fn compile_introspection(
    path: &str,
    i: &IntrospectionFile,
    has_discovery: bool,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Errors,
) -> Option<Introspection> {
    let before = errs.0.len();
    let f = |field: &str| format!("{path}.{field}");
    let endpoint = match &i.endpoint {
        Some(uri) => match HttpUrl::parse(uri) {
            Ok(u) => Some(u),
            Err(e) => {
                errs.add(f("endpoint"), e);
                None
            }
        },
        None if has_discovery => None,
        None => {
            errs.add(f("endpoint"), "required without discovery");
            None
        }
    };
    if i.cluster.is_empty() {
        errs.add(
            f("cluster"),
            "required: the gateway cluster that reaches the endpoint",
        );
    }
    if i.client_id.is_empty() {
        errs.add(f("client_id"), "required");
    }
    let client_secret = match (&i.client_secret, &i.client_secret_env) {
        (Some(secret), None) => secret.clone(),
        (None, Some(var)) => match env(var) {
            Some(secret) => secret,
            None => {
                errs.add(
                    f("client_secret_env"),
                    format!("the environment has no {var}"),
                );
                String::new()
            }
        },
        _ => {
            errs.add(path, "give one of client_secret, client_secret_env");
            String::new()
        }
    };
    if client_secret.is_empty() && errs.0.len() == before {
        errs.add(path, "the client secret is empty");
    }
    let auth = match i.auth_method.as_deref() {
        None | Some("client_secret_basic") => ClientAuth::Basic,
        Some("client_secret_post") => ClientAuth::Post,
        Some(_) => {
            errs.add(
                f("auth_method"),
                "one of \"client_secret_basic\", \"client_secret_post\"",
            );
            ClientAuth::Basic
        }
    };
    let timeout_ms = bounded(errs, &f("timeout_ms"), i.timeout_ms, 2000, 100, 30_000);
    let cache_ttl = bounded(
        errs,
        &f("cache_ttl_seconds"),
        i.cache_ttl_seconds,
        60,
        0,
        3600,
    );
    let negative_ttl = bounded(
        errs,
        &f("negative_cache_seconds"),
        i.negative_cache_seconds,
        5,
        0,
        60,
    );
    let cache_entries = bounded(
        errs,
        &f("cache_entries"),
        i.cache_entries.map(u64::from),
        4096,
        1,
        65_536,
    );
    let max_in_flight = bounded(
        errs,
        &f("max_in_flight"),
        i.max_in_flight.map(u64::from),
        64,
        1,
        1024,
    );
    if errs.0.len() > before {
        return None;
    }
    Some(Introspection {
        endpoint,
        cluster: i.cluster.clone(),
        client_id: i.client_id.clone(),
        client_secret,
        auth,
        timeout_ms,
        cache_ttl,
        negative_ttl,
        cache_entries: cache_entries as u32,
        max_in_flight: max_in_flight as u32,
        token_type: i.token_type.clone(),
        introspect_jwts: i.introspect_jwts.unwrap_or(false),
    })
}

/// "application/at+JWT" and "at+jwt" name the same type (RFC 7515 section 4.1.9).
pub fn normalize_media_type(t: &str) -> String {
    let lower = t.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_string(),
        None => lower,
    }
}

// Out of line: see "Function size" in the crate docs.
#[inline(never)]
fn compile_remote(
    path: &str,
    r: &RemoteKeysFile,
    discovery: bool,
    issuer: &str,
    errs: &mut Errors,
) -> Option<KeySource> {
    let before = errs.0.len();
    let uri = match (&r.uri, discovery) {
        (Some(u), _) => u.clone(),
        (None, true) => format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ),
        (None, false) => {
            errs.add(format!("{path}.uri"), "required");
            String::new()
        }
    };
    let url = match HttpUrl::parse(&uri) {
        Ok(u) => Some(u),
        Err(e) => {
            if !uri.is_empty() {
                errs.add(format!("{path}.uri"), e);
            }
            None
        }
    };
    if r.cluster.is_empty() {
        errs.add(
            format!("{path}.cluster"),
            "required: the gateway cluster that reaches the URL",
        );
    }
    let f = |field: &str| format!("{path}.{field}");
    let timeout_ms = bounded(errs, &f("timeout_ms"), r.timeout_ms, 5000, 100, 60_000);
    let min_ttl = bounded(
        errs,
        &f("min_ttl_seconds"),
        r.min_ttl_seconds,
        30,
        1,
        86_400 * 7,
    );
    let max_ttl = bounded(
        errs,
        &f("max_ttl_seconds"),
        r.max_ttl_seconds,
        86_400,
        1,
        86_400 * 7,
    );
    let default_ttl = bounded(
        errs,
        &f("default_ttl_seconds"),
        r.default_ttl_seconds,
        300,
        1,
        86_400 * 7,
    );
    if min_ttl > max_ttl {
        errs.add(f("min_ttl_seconds"), "greater than max_ttl_seconds");
    }
    let stale = bounded(
        errs,
        &f("stale_seconds"),
        r.stale_seconds,
        86_400,
        0,
        86_400 * 7,
    );
    let unknown_kid_cooldown = bounded(
        errs,
        &f("unknown_kid_cooldown_seconds"),
        r.unknown_kid_cooldown_seconds,
        30,
        1,
        86_400,
    );
    if errs.0.len() > before {
        return None;
    }
    Some(KeySource::Remote(RemoteKeys {
        discovery,
        url: url?,
        cluster: r.cluster.clone(),
        timeout_ms,
        default_ttl,
        min_ttl,
        max_ttl,
        stale,
        unknown_kid_cooldown,
    }))
}

// Out of line: see "Function size" in the crate docs.
#[inline(never)]
fn compile_source(path: &str, s: &TokenSourceFile, errs: &mut Errors) -> Option<TokenSource> {
    let source = match (&s.header, &s.cookie, &s.query) {
        (Some(h), None, None) => {
            if !is_header_name(h) {
                errs.add(format!("{path}.header"), "not a valid header name");
                return None;
            }
            TokenSource::Header {
                name: h.to_ascii_lowercase().into(),
                prefix: s.prefix.clone(),
            }
        }
        (None, Some(c), None) if !c.is_empty() => TokenSource::Cookie(c.clone()),
        (None, None, Some(q)) if !q.is_empty() => TokenSource::Query(q.clone()),
        _ => {
            errs.add(
                path,
                "give exactly one of header, cookie, query (non-empty)",
            );
            return None;
        }
    };
    if s.prefix.is_some() && s.header.is_none() {
        errs.add(format!("{path}.prefix"), "only with header");
        return None;
    }
    Some(source)
}

/// RFC 9110 token characters, and not an HTTP/2 pseudo-header.
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A route match at `path` (`rules[0].match`, `policies[1].allow[0]`).
// Out of line: see "Function size" in the crate docs.
#[inline(never)]
fn compile_match(path: &str, m: &MatchFile, errs: &mut Errors) -> RouteMatch {
    if m.prefix.is_some() && m.path.is_some() {
        errs.add(path, "give prefix or path, not both");
    }
    for (field, value) in [("prefix", &m.prefix), ("path", &m.path)] {
        if let Some(v) = value {
            if !v.starts_with('/') {
                errs.add(format!("{path}.{field}"), "must start with \"/\"");
            }
        }
    }
    let methods: Vec<String> = m.methods.clone().unwrap_or_default();
    for (i, method) in methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
            errs.add(
                format!("{path}.methods[{i}]"),
                "methods are upper case, e.g. \"GET\"",
            );
        }
    }
    RouteMatch {
        prefix: m.prefix.clone(),
        path: m.path.clone(),
        methods,
        host: m.host.as_ref().map(|h| h.to_ascii_lowercase()),
    }
}

// Out of line: see "Function size" in the crate docs.
#[inline(never)]
fn compile_rule(path: &str, r: &RuleFile, providers: &[&String], errs: &mut Errors) -> Rule {
    let matcher = compile_match(&format!("{path}.match"), &r.matcher, errs);
    let anonymous = r.anonymous.unwrap_or(false);
    if anonymous && (r.providers.is_some() || r.scopes.is_some() || r.claims.is_some()) {
        errs.add(
            path,
            "an anonymous rule cannot also require providers, scopes or claims",
        );
    }
    let mut ids = Vec::new();
    for (i, name) in r.providers.iter().flatten().enumerate() {
        match providers.iter().position(|p| *p == name) {
            Some(id) => ids.push(id),
            None => errs.add(
                format!("{path}.providers[{i}]"),
                format!("no provider named \"{name}\""),
            ),
        }
    }
    if r.providers.as_ref().is_some_and(Vec::is_empty) {
        errs.add(
            format!("{path}.providers"),
            "empty: leave it out to accept every provider",
        );
    }
    let claims = r
        .claims
        .iter()
        .flatten()
        .map(|(claim, values)| {
            let values = match values {
                ClaimValuesFile::One(v) => vec![v.clone()],
                ClaimValuesFile::Any(vs) => vs.clone(),
            };
            if values.is_empty() {
                errs.add(format!("{path}.claims.{claim}"), "no accepted value");
            }
            (claim.clone(), values)
        })
        .collect();
    Rule {
        matcher,
        anonymous,
        providers: ids,
        scopes: r.scopes.clone().unwrap_or_default(),
        claims,
    }
}

/// Headers the filter must never be told to set: they would break HTTP or routing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "x-request-id",
];

// Out of line: see "Function size" in the crate docs.
#[inline(never)]
fn compile_headers(h: &HeadersFile, errs: &mut Errors) -> HeaderMapping {
    fn check(errs: &mut Errors, path: String, name: &str) -> Option<String> {
        let lower = name.to_ascii_lowercase();
        if !is_header_name(name) {
            errs.add(path, "not a valid header name");
            None
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            errs.add(path, "a reserved header cannot carry identity");
            None
        } else {
            Some(lower)
        }
    }
    let mut claims = Vec::new();
    for (name, claim) in &h.claims {
        if let Some(lower) = check(errs, format!("headers.claims.{name}"), name) {
            if claim.is_empty() {
                errs.add(format!("headers.claims.{name}"), "empty claim path");
            }
            claims.push((lower, claim.clone()));
        }
    }
    let payload = h
        .payload
        .as_ref()
        .and_then(|p| check(errs, "headers.payload".to_string(), p));
    // A set, not a sort: the module has no other use for a sort's code (~10 KB of wasm).
    let mut names = BTreeSet::new();
    let named_twice = claims
        .iter()
        .map(|(n, _)| n.as_str())
        .chain(payload.as_deref())
        .any(|name| !names.insert(name));
    if named_twice {
        errs.add("headers", "the same header is named twice");
    }
    HeaderMapping {
        claims,
        payload,
        strip_token: h.strip_token.unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(json: &str) -> Vec<String> {
        match Config::from_json(json.as_bytes()) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    const GOOD: &str = r#"{
        "providers": {"corp": {
            "issuer": "https://idp.example.com",
            "audiences": ["api://orders"],
            "token_type": "at+jwt",
            "jwks": {"uri": "https://idp.example.com/jwks", "cluster": "idp"}
        }},
        "rules": [
            {"match": {"prefix": "/health"}, "anonymous": true},
            {"match": {"prefix": "/orders", "methods": ["POST"]}, "scopes": ["orders:write"], "claims": {"roles": ["admin", "buyer"]}}
        ],
        "headers": {"claims": {"X-User": "sub", "x-roles": "realm_access.roles"}, "payload": "x-jwt-payload"}
    }"#;

    #[test]
    fn a_good_config_compiles_with_defaults() {
        let c = Config::from_json(GOOD.as_bytes()).unwrap();
        let p = &c.providers[0];
        assert_eq!(p.clock_skew, 60);
        assert!(p.require_exp);
        assert_eq!(p.token_type.as_deref(), Some("at+jwt"));
        assert!(!p.algorithms.iter().any(|a| a.is_symmetric()));
        assert_eq!(
            p.sources,
            vec![TokenSource::Header {
                name: "authorization".into(),
                prefix: Some("Bearer ".into())
            }]
        );
        match &p.keys {
            Some(KeySource::Remote(r)) => {
                assert_eq!(r.url.authority, "idp.example.com");
                assert_eq!(r.url.path, "/jwks");
                assert_eq!(r.timeout_ms, 5000);
                assert!(!r.discovery);
            }
            _ => panic!("remote expected"),
        }
        assert_eq!(
            c.rules[1].claims,
            vec![(
                "roles".to_string(),
                vec!["admin".to_string(), "buyer".to_string()]
            )]
        );
        let owned: Vec<&str> = c.headers.owned_headers().collect();
        assert_eq!(owned, vec!["x-user", "x-roles", "x-jwt-payload"]);
        assert_eq!(c.keys_wait_timeout_ms, 5000);
    }

    #[test]
    fn a_header_named_twice_is_refused_whatever_its_case() {
        let twice = "the same header is named twice";
        let by_case = GOOD.replace(r#""x-roles": "realm_access.roles""#, r#""x-USER": "email""#);
        assert!(
            errors(&by_case).iter().any(|e| e.contains(twice)),
            "{by_case}"
        );
        let as_payload = GOOD.replace(r#""payload": "x-jwt-payload""#, r#""payload": "X-Roles""#);
        assert!(errors(&as_payload).iter().any(|e| e.contains(twice)));
        assert!(!errors(GOOD).iter().any(|e| e.contains(twice)));
    }

    #[test]
    fn a_bad_url_is_named_by_its_path() {
        let json = GOOD.replace("https://idp.example.com/jwks", "idp/jwks");
        assert_eq!(
            errors(&json),
            vec!["providers.corp.jwks.uri: not an absolute URL"]
        );
    }

    #[test]
    fn unknown_fields_are_errors_with_their_path() {
        let json = GOOD.replace("\"token_type\"", "\"audience\": \"x\", \"token_type\"");
        let errs = errors(&json);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with("providers.corp.audience: unknown field `audience`"),
            "{errs:?}"
        );
    }

    #[test]
    fn type_errors_name_the_field() {
        let json = GOOD.replace("[\"api://orders\"]", "\"api://orders\"");
        let errs = errors(&json);
        assert!(
            errs[0].starts_with("providers.corp.audiences: invalid type"),
            "{errs:?}"
        );
    }

    #[test]
    fn every_meaning_error_is_reported_at_once() {
        let json = r#"{
            "providers": {"a": {"issuer": "x", "audiences": [], "clock_skew_seconds": 3600,
                                 "algorithms": ["HS256", "none"],
                                 "discovery": {"cluster": ""}}},
            "rules": [{"match": {"prefix": "api"}, "providers": ["b"]}],
            "headers": {"claims": {"authorization": "sub"}}
        }"#;
        let errs = errors(json);
        for expected in [
            "providers.a.issuer: not an absolute URL",
            "providers.a.audiences: at least one audience is required",
            "providers.a.clock_skew_seconds: must be between 0 and 600",
            "providers.a.algorithms[0]: HS256 needs an oct key",
            "providers.a.algorithms[1]: unknown algorithm \"none\"",
            "providers.a.discovery.cluster: required",
            "rules[0].match.prefix: must start with \"/\"",
            "rules[0].providers[0]: no provider named \"b\"",
            "headers.claims.authorization: a reserved header cannot carry identity",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(expected)),
                "missing {expected:?} in {errs:#?}"
            );
        }
    }

    #[test]
    fn one_key_source_exactly() {
        let none = r#"{"providers": {"a": {"issuer": "https://a", "audiences": ["x"]}}}"#;
        assert_eq!(
            errors(none),
            vec!["providers.a: needs one key source: jwks, discovery or inline_jwks"]
        );
        let two = r#"{"providers": {"a": {"issuer": "https://a", "audiences": ["x"],
            "jwks": {"uri": "https://a/k", "cluster": "c"}, "discovery": {"cluster": "c"}}}}"#;
        assert_eq!(
            errors(two),
            vec!["providers.a: give only one of jwks, discovery, inline_jwks"]
        );
    }

    #[test]
    fn the_token_caches_are_bounded_in_entries_and_bytes() {
        let with = |extra: &str| GOOD.replacen('{', &format!("{{{extra},"), 1);
        let c = Config::from_json(GOOD.as_bytes()).unwrap();
        assert_eq!(
            (c.token_cache_entries, c.token_cache_bytes),
            (10_000, 32 << 20)
        );
        let c = Config::from_json(with(r#""token_cache_bytes": 1048576"#).as_bytes()).unwrap();
        assert_eq!(c.token_cache_bytes, 1 << 20);
        for bad in ["1048575", "1073741825"] {
            assert_eq!(
                errors(&with(&format!(r#""token_cache_bytes": {bad}"#))),
                vec!["token_cache_bytes: must be between 1048576 and 1073741824"]
            );
        }
    }

    #[test]
    fn discovery_defaults_to_the_well_known_document() {
        let json = r#"{"providers": {"a": {"issuer": "http://127.0.0.1:9000/", "audiences": ["x"],
            "discovery": {"cluster": "idp"}}}}"#;
        let c = Config::from_json(json.as_bytes()).unwrap();
        match &c.providers[0].keys {
            Some(KeySource::Remote(r)) => {
                assert!(r.discovery);
                assert_eq!(
                    r.url.to_string(),
                    "http://127.0.0.1:9000/.well-known/openid-configuration"
                );
            }
            _ => panic!("remote expected"),
        }
    }

    #[test]
    fn two_providers_cannot_share_an_issuer_and_anonymous_rules_require_nothing() {
        let json = r#"{"providers": {
            "a": {"issuer": "https://a", "audiences": ["x"], "jwks": {"uri": "https://a/k", "cluster": "c"}},
            "b": {"issuer": "https://a", "audiences": ["y"], "jwks": {"uri": "https://a/k", "cluster": "c"}}},
            "rules": [{"match": {"prefix": "/"}, "anonymous": true, "scopes": ["s"]}]}"#;
        let errs = errors(json);
        assert!(
            errs.contains(&"providers.b.issuer: same issuer as provider \"a\"".to_string()),
            "{errs:?}"
        );
        assert!(errs.contains(
            &"rules[0]: an anonymous rule cannot also require providers, scopes or claims"
                .to_string()
        ));
    }

    #[test]
    fn not_json_is_a_clear_error() {
        assert_eq!(errors("{").len(), 1);
        assert_eq!(errors("").len(), 1);
        assert!(errors("{} x").len() == 1);
        assert!(errors("{}")[0].contains("missing field `providers`"));
    }

    #[test]
    fn the_committed_schema_is_current() {
        let committed = include_str!("../docs/config.schema.json");
        assert!(
            committed.trim() == schema_json().trim(),
            "docs/config.schema.json is stale: run `make schema` and commit it"
        );
    }

    #[test]
    fn policy_and_introspection_mistakes_are_named() {
        let json = r#"{
            "providers": {"a": {"issuer": "https://a", "audiences": ["x"], "verify": "jwt",
                "jwks": {"uri": "https://a/k", "cluster": "c"},
                "introspection": {"endpoint": "https://a/i", "cluster": "c", "client_id": "gw", "client_secret": "s"}}},
            "headers": {"claims": {"x-plan": "plan"}},
            "policies": [{"name": "p", "when": [{"claim": "scope", "equals": "read"}],
                          "headers": {"x-plan": "gold"},
                          "rate_limits": [{"requests": 0, "per": "1s"}, {"requests": 1, "per": "1d"}],
                          "quotas": [{"requests": 5, "per": "week"}]}],
            "default_policy": "missing"
        }"#;
        let errs = errors(json);
        for expected in [
            "providers.a.introspection: never used",
            "policies[0].when[0].equals: scopes are a list",
            "policies[0].headers.x-plan: already set from a claim",
            "policies[0].rate_limits[0].requests: must be between 1",
            "policies[0].rate_limits[1].per: a number and s, m or h",
            "policies[0].quotas[0].per: one of",
            "default_policy: no policy named \"missing\"",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(expected)),
                "missing {expected:?} in {errs:#?}"
            );
        }
        assert!(
            !errs.iter().any(|e| e.contains("burst")),
            "no burst error for a defaulted burst: {errs:#?}"
        );
    }

    #[test]
    fn urls_split_for_dispatch() {
        let u = HttpUrl::parse("http://127.0.0.1:9000/jwks?x=1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("127.0.0.1:9000", "/jwks?x=1")
        );
        assert_eq!(HttpUrl::parse("https://idp").unwrap().path, "/");
        for bad in [
            "ftp://x/",
            "//x/",
            "http://",
            "http://u@x/",
            "http://x/#f",
            "http://x/ y",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
