//! OAuth 2 token introspection (RFC 7662): the call, the reading of its answer, the checks on an
//! active answer and the shared cache of answers, as pure functions (time is an argument).
//!
//! Why it is shaped so:
//!
//! - **Fail closed.** A timeout, a reset, any status but 200, a body over [`MAX_ANSWER_BYTES`],
//!   anything but one strict JSON object (duplicate members and deep nesting are refused, as for
//!   tokens), or an `active` member that is missing or not a boolean is an error
//!   ([`parse_answer`] → `Err`), which the gate turns into 503, never into "allowed".
//! - **`active: false` reads nothing else.** RFC 7662 section 2.2 lets an inactive answer carry
//!   nothing but `active`; whatever else it says is not evidence of anything, so
//!   [`Answer::Inactive`] holds no claims at all.
//! - **The answer is the IdP's word, the checks are ours.** An active answer is still held to
//!   the provider's issuer, audiences, dates and the configured `token_type`
//!   ([`check_active`], built on the same checks as a JWT's claims in [`crate::claims`]). The
//!   cache keeps *answers*, not decisions, so these checks (and `exp` against the clock) run again
//!   every time a cached answer is used.
//! - **The cache is bounded and keyed by hash.** An answer is stored under the SHA-256 of the
//!   token ([`token_hash`]); the token itself is never stored. Each hash may live in a few of a
//!   fixed number of slots ([`crate::slots`]), each slot holds at most one answer of at most
//!   [`MAX_CACHED_BYTES`], and a slot is trusted only for the exact hash it names
//!   ([`CachedAnswer::fresh_for`]). So memory is bounded in entries and bytes from the start, and
//!   a flood of random tokens can only evict answers (costing a call each), never grow the
//!   cache. An answer lives at most `cache_ttl` and never past the token's `exp`; negative
//!   answers live `negative_ttl` ([`cache_until_ms`]).
//!
//! The glue in `filters/` keys the slots per provider (two providers never share a slot), keeps
//! one call in flight per token hash, and bounds the calls in flight per worker.

use crate::claims::{self, Claims, Members};
use crate::config::{ClientAuth, HttpUrl, Introspection, Provider};
use crate::denial::Denial;
use crate::json;
use crate::request::percent_encode;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::rc::Rc;

/// Largest introspection answer read; a larger one is an error.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Largest encoded [`CachedAnswer`]; an answer whose encoding is larger is not cached (it is
/// still used for the request that asked for it).
pub const MAX_CACHED_BYTES: usize = 8 * 1024;

/// The HTTP call to dispatch: pseudo-headers and headers, and the form body.
#[derive(Clone, PartialEq, Eq)]
pub struct IntrospectionCall {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl std::fmt::Debug for IntrospectionCall {
    // The body holds the token (and, with client_secret_post, the secret); the authorization
    // header holds the secret. Neither reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("IntrospectionCall")
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

/// Builds the POST to `endpoint` (RFC 7662 section 2.1) for `token`, authenticated as the
/// configured client: `client_secret_basic` sends `Authorization: Basic` over the form-encoded id
/// and secret (RFC 6749 section 2.3.1); `client_secret_post` puts them in the body.
pub fn build_call(cfg: &Introspection, endpoint: &HttpUrl, token: &str) -> IntrospectionCall {
    let mut headers: Vec<(String, String)> = [
        (":method", "POST"),
        (":path", endpoint.path.as_str()),
        (":authority", endpoint.authority.as_str()),
        (":scheme", endpoint.scheme.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
        ("accept", "application/json"),
        ("user-agent", "tollgate"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let mut body = format!(
        "token={}&token_type_hint=access_token",
        percent_encode(token)
    );
    match cfg.auth {
        ClientAuth::Basic => {
            let credentials = format!(
                "{}:{}",
                percent_encode(&cfg.client_id),
                percent_encode(&cfg.client_secret)
            );
            headers.push((
                "authorization".to_string(),
                format!(
                    "Basic {}",
                    crate::b64::encode_standard(credentials.as_bytes())
                ),
            ));
        }
        ClientAuth::Post => {
            body.push_str("&client_id=");
            body.push_str(&percent_encode(&cfg.client_id));
            body.push_str("&client_secret=");
            body.push_str(&percent_encode(&cfg.client_secret));
        }
    }
    IntrospectionCall { headers, body }
}

/// SHA-256 of the token: the cache key. The token itself is never stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What an introspection answer says.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `active: true`, with every member of the answer (`active` included).
    Active(Map<String, Value>),
    /// `active: false`; nothing else in the answer is kept.
    Inactive,
}

/// Reads the endpoint's answer. `status` is `None` when there was no answer (timeout, reset).
/// Every failure is an error with a short reason for the log and the 503's detail.
pub fn parse_answer(status: Option<u32>, body: &[u8]) -> Result<Answer, &'static str> {
    match status {
        None => return Err("no answer"),
        Some(200) => {}
        Some(_) => return Err("answer status is not 200"),
    }
    if body.len() > MAX_ANSWER_BYTES {
        return Err("answer too large");
    }
    let mut answer =
        json::parse_object(body, json::MAX_DEPTH).map_err(|_| "answer is not a JSON object")?;
    match answer.get("active") {
        Some(Value::Bool(true)) => Ok(Answer::Active(answer)),
        Some(Value::Bool(false)) => {
            // RFC 7662 section 2.2: nothing else of an inactive answer is read.
            answer.clear();
            Ok(Answer::Inactive)
        }
        Some(_) => Err("active is not a boolean"),
        None => Err("active is missing"),
    }
}

/// Holds an active answer to the provider's rules:
///
/// - `token_type`: when the configuration names one, the answer's must equal it (without case);
/// - `iss`: when present, exactly the provider's issuer. RFC 7662 makes `iss` optional, so an
///   answer without it is accepted: the endpoint is the provider's own, reached through the
///   configured cluster, and answers for its tokens only;
/// - `aud`: required, a string or a non-empty array of strings naming one of `audiences`, as for
///   a JWT (an endpoint that answers for every client's tokens must not let another
///   audience's token in);
/// - `exp`, `nbf`, `iat`: as for a JWT (same skew, `exp == now` is expired, wrong types are
///   errors, `max_lifetime_seconds` applies), except that `exp` may be absent (RFC 7662);
/// - `client_id`: when present, a string (it may reach the audit log and headers).
///
/// Scopes and rule claims are checked afterwards by the gate on the same claims
/// ([`claims::missing_scopes`], [`claims::claim_matches`]).
pub fn check_active(
    claims: &(impl Members + ?Sized),
    provider: &Provider,
    cfg: &Introspection,
    now: u64,
) -> Result<(), Denial> {
    check_answer(claims, provider, cfg)?.check(provider, now)
}

/// The part of [`check_active`] that does not depend on the time, done once for an answer a
/// worker keeps: what is left for each request is [`CheckedAnswer::check`], three comparisons
/// of dates, rather than seven lookups in the answer.
pub fn check_answer(
    claims: &(impl Members + ?Sized),
    provider: &Provider,
    cfg: &Introspection,
) -> Result<CheckedAnswer, Denial> {
    if let Some(required) = &cfg.token_type {
        match claims.member("token_type") {
            Some(Value::String(t)) if t.eq_ignore_ascii_case(required) => {}
            Some(Value::String(_)) | None => return Err(Denial::WrongTokenType),
            Some(_) => return Err(Denial::InvalidClaim("token_type is not a string")),
        }
    }
    if claims.member("iss").is_some() {
        claims::check_issuer(claims, &provider.issuer)?;
    }
    claims::check_audience(claims, &provider.audiences)?;
    let dates = claims::Dates::read(claims)?;
    let client_id = match claims.member("client_id") {
        None | Some(Value::String(_)) => None,
        Some(_) => Some(Denial::InvalidClaim("client_id is not a string")),
    };
    Ok(CheckedAnswer { dates, client_id })
}

/// An active answer as [`check_answer`] found it, for one provider's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedAnswer {
    dates: claims::Dates,
    /// Checked after the dates, as [`check_active`] always did.
    client_id: Option<Denial>,
}

impl CheckedAnswer {
    /// The checks that depend on the time: the dates, with the provider's clock skew and
    /// lifetime bound (`exp` may be absent, RFC 7662).
    pub fn check(&self, provider: &Provider, now: u64) -> Result<(), Denial> {
        (self.dates).check(provider.clock_skew, false, provider.max_lifetime, now)?;
        match &self.client_id {
            Some(denial) => Err(denial.clone()),
            None => Ok(()),
        }
    }
}

/// Until when (ms since the epoch) an answer may be reused. Active: `cache_ttl` from now, never
/// past the token's `exp`; inactive: `negative_ttl` from now. A result not after `now_ms` means
/// "do not cache" (a TTL of 0, an `exp` already passed or unreadable).
pub fn cache_until_ms(answer: &Answer, cfg: &Introspection, now_ms: u64) -> u64 {
    match answer {
        Answer::Inactive => now_ms.saturating_add(cfg.negative_ttl.saturating_mul(1000)),
        Answer::Active(claims) => {
            let until = now_ms.saturating_add(cfg.cache_ttl.saturating_mul(1000));
            match claims::numeric_date(claims, "exp") {
                Ok(Some(exp)) => until.min(exp.saturating_mul(1000)).max(now_ms),
                Ok(None) => until,
                Err(_) => now_ms,
            }
        }
    }
}

/// One cached answer, as the workers share it, one per slot.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    pub token_hash: [u8; 32],
    pub active: bool,
    /// The active answer's members; empty when inactive. Shared: a worker keeps the answers it
    /// reads, and each decision's identity is these claims.
    pub claims: Rc<Claims>,
    /// Reusable while `now_ms < until_ms`.
    pub until_ms: u64,
}

/// Encoding version, first byte of every encoded answer.
const CACHE_FORMAT: u8 = 1;
/// Version, hash, active flag, `until_ms`.
const CACHE_HEADER: usize = 1 + 32 + 1 + 8;

impl CachedAnswer {
    /// The entry for `answer` to `token_hash`, reusable until `until_ms`.
    pub fn new(token_hash: [u8; 32], answer: &Answer, until_ms: u64) -> CachedAnswer {
        let (active, claims) = match answer {
            Answer::Active(claims) => (true, Rc::new(Claims::from(claims.clone()))),
            Answer::Inactive => (false, Rc::default()),
        };
        CachedAnswer {
            token_hash,
            active,
            claims,
            until_ms,
        }
    }

    /// The answer it stands for.
    pub fn answer(&self) -> Answer {
        if self.active {
            Answer::Active(self.claims.to_map())
        } else {
            Answer::Inactive
        }
    }

    /// Version, hash, active flag, `until_ms` (big-endian), then the claims as JSON (nothing
    /// when inactive). `None` when the encoding would exceed [`MAX_CACHED_BYTES`]: such an
    /// answer is not cached.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(CACHE_HEADER + 256);
        out.push(CACHE_FORMAT);
        out.extend_from_slice(&self.token_hash);
        out.push(u8::from(self.active));
        out.extend_from_slice(&self.until_ms.to_be_bytes());
        if self.active {
            out.extend_from_slice(self.claims.to_json().as_bytes());
        }
        (out.len() <= MAX_CACHED_BYTES).then_some(out)
    }

    /// Reads an encoded answer; anything unexpected (other version, short, oversized, claims
    /// that are not a strict JSON object, claims on an inactive answer) is `None`: a miss.
    pub fn decode(bytes: &[u8]) -> Option<CachedAnswer> {
        if bytes.len() > MAX_CACHED_BYTES {
            return None;
        }
        let (header, rest) = bytes.split_first_chunk::<CACHE_HEADER>()?;
        let (version, header) = header.split_first()?;
        if *version != CACHE_FORMAT {
            return None;
        }
        let (token_hash, header) = header.split_first_chunk::<32>()?;
        let (active, until) = header.split_first()?;
        let until_ms = u64::from_be_bytes(*until.first_chunk::<8>()?);
        let (active, claims) = match active {
            1 => (true, json::parse_object(rest, json::MAX_DEPTH).ok()?),
            0 if rest.is_empty() => (false, Map::new()),
            _ => return None,
        };
        if active && claims.get("active") != Some(&Value::Bool(true)) {
            return None;
        }
        Some(CachedAnswer {
            token_hash: *token_hash,
            active,
            claims: Rc::new(Claims::from(claims)),
            until_ms,
        })
    }

    /// Whether this entry answers for `token_hash` at `now_ms`.
    pub fn fresh_for(&self, token_hash: &[u8; 32], now_ms: u64) -> bool {
        self.token_hash == *token_hash && now_ms < self.until_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TokenSource, VerifyMode};
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const NOW_MS: u64 = NOW * 1000;

    fn cfg() -> Introspection {
        Introspection {
            endpoint: None,
            cluster: "idp".into(),
            client_id: "gateway".into(),
            client_secret: "s3cret".into(),
            auth: ClientAuth::Basic,
            timeout_ms: 2000,
            cache_ttl: 60,
            negative_ttl: 5,
            cache_entries: 4096,
            max_in_flight: 64,
            token_type: None,
            introspect_jwts: false,
        }
    }

    fn provider() -> Provider {
        Provider {
            name: "p".into(),
            issuer: "http://127.0.0.1:9000".into(),
            audiences: vec!["api://opaque".into(), "api://other".into()],
            algorithms: vec![],
            sources: vec![TokenSource::Query("t".into())],
            clock_skew: 60,
            require_exp: true,
            max_lifetime: None,
            token_type: Some("at+jwt".into()),
            keys: None,
            verify: VerifyMode::Introspection,
            introspection: Some(cfg()),
        }
    }

    fn endpoint() -> HttpUrl {
        HttpUrl::parse("https://idp.example:8443/token/introspection").unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("object expected"),
        }
    }

    /// The shape oidc-provider 9 answers for an opaque access token.
    fn oidc_provider_answer() -> Value {
        json!({
            "active": true,
            "client_id": "orders-app",
            "exp": NOW + 3600,
            "iat": NOW - 10,
            "iss": "http://127.0.0.1:9000",
            "scope": "orders:read",
            "token_type": "Bearer",
            "aud": "api://opaque"
        })
    }

    fn active(v: Value) -> Map<String, Value> {
        obj(v)
    }

    fn check(v: Value) -> Result<(), Denial> {
        check_active(&active(v), &provider(), &cfg(), NOW)
    }

    fn header<'a>(call: &'a IntrospectionCall, name: &str) -> Option<&'a str> {
        call.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn form(body: &str) -> Vec<(String, String)> {
        body.split('&')
            .map(|pair| {
                let (n, v) = pair.split_once('=').unwrap();
                (n.to_string(), v.to_string())
            })
            .collect()
    }

    // ---- build_call ----

    #[test]
    fn basic_auth_call() {
        let call = build_call(&cfg(), &endpoint(), "abc");
        assert_eq!(header(&call, ":method"), Some("POST"));
        assert_eq!(header(&call, ":path"), Some("/token/introspection"));
        assert_eq!(header(&call, ":authority"), Some("idp.example:8443"));
        assert_eq!(header(&call, ":scheme"), Some("https"));
        assert_eq!(
            header(&call, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(header(&call, "accept"), Some("application/json"));
        assert_eq!(
            header(&call, "authorization"),
            Some("Basic Z2F0ZXdheTpzM2NyZXQ=")
        );
        assert_eq!(call.body, "token=abc&token_type_hint=access_token");
        assert!(!call.body.contains("s3cret"));
    }

    #[test]
    fn post_auth_call_puts_the_client_in_the_body() {
        let mut c = cfg();
        c.auth = ClientAuth::Post;
        c.client_secret = "a:b&c=d".into();
        let call = build_call(&c, &endpoint(), "abc");
        assert_eq!(header(&call, "authorization"), None);
        assert_eq!(
            form(&call.body),
            vec![
                ("token".to_string(), "abc".to_string()),
                ("token_type_hint".into(), "access_token".into()),
                ("client_id".into(), "gateway".into()),
                ("client_secret".into(), "a%3Ab%26c%3Dd".into()),
            ]
        );
    }

    #[test]
    fn token_is_form_encoded() {
        let call = build_call(&cfg(), &endpoint(), "a+b/c=d e&f%~._-Z9");
        assert_eq!(
            form(&call.body).first().map(|(_, v)| v.as_str()),
            Some("a%2Bb%2Fc%3Dd%20e%26f%25~._-Z9")
        );
    }

    #[test]
    fn basic_credentials_are_form_encoded_before_base64() {
        // RFC 6749 section 2.3.1: a ':' in the secret must not split the credentials.
        let mut c = cfg();
        c.client_id = "my app".into();
        c.client_secret = "pa:ss+wörd".into();
        let call = build_call(&c, &endpoint(), "t");
        let value = header(&call, "authorization").unwrap();
        let decoded = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            value.strip_prefix("Basic ").unwrap(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            "my%20app:pa%3Ass%2Bw%C3%B6rd"
        );
    }

    #[test]
    fn the_call_does_not_show_secrets_when_logged() {
        let call = build_call(&cfg(), &endpoint(), "the-token");
        let shown = format!("{call:?}");
        assert!(
            !shown.contains("the-token") && !shown.contains("Basic "),
            "{shown}"
        );
    }

    // ---- token_hash ----

    #[test]
    fn token_hash_is_sha256() {
        let h = token_hash("abc");
        let hex: String = h.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    // ---- parse_answer ----

    #[test]
    fn no_answer_or_another_status_is_an_error() {
        let ok = br#"{"active":true}"#;
        assert_eq!(parse_answer(None, ok), Err("no answer"));
        for status in [500, 404, 401, 204, 301] {
            assert!(parse_answer(Some(status), ok).is_err(), "{status}");
        }
    }

    #[test]
    fn bodies_that_are_not_one_json_object_are_errors() {
        for body in [
            &b""[..],
            b"<html><body>Bad gateway</body></html>",
            b"[]",
            b"\"active\"",
            b"null",
            b"{\"active\":true} {}",
            b"{\"active\":true",
            b"\xff\xfe",
        ] {
            assert!(
                parse_answer(Some(200), body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn active_must_be_a_boolean() {
        for body in [
            r#"{"active":"true"}"#,
            r#"{"active":1}"#,
            r#"{"active":null}"#,
            r#"{"active":[true]}"#,
        ] {
            assert_eq!(
                parse_answer(Some(200), body.as_bytes()),
                Err("active is not a boolean"),
                "{body}"
            );
        }
        assert_eq!(
            parse_answer(Some(200), br#"{"sub":"x","aud":"api://opaque"}"#),
            Err("active is missing")
        );
    }

    #[test]
    fn inactive_reads_nothing_else() {
        assert_eq!(
            parse_answer(Some(200), br#"{"active":false,"sub":"x","scope":"admin"}"#),
            Ok(Answer::Inactive)
        );
        assert_eq!(
            parse_answer(Some(200), br#"{"active":false}"#),
            Ok(Answer::Inactive)
        );
    }

    #[test]
    fn duplicate_members_are_refused() {
        for body in [
            r#"{"active":false,"active":true}"#,
            r#"{"active":true,"sub":"alice","sub":"admin"}"#,
        ] {
            assert!(parse_answer(Some(200), body.as_bytes()).is_err(), "{body}");
        }
    }

    #[test]
    fn huge_or_deep_bodies_are_refused() {
        let pad = "x".repeat(MAX_ANSWER_BYTES);
        let huge = format!(r#"{{"active":true,"pad":"{pad}"}}"#);
        assert_eq!(
            parse_answer(Some(200), huge.as_bytes()),
            Err("answer too large")
        );
        let deep = format!(
            r#"{{"active":true,"x":{}{}}}"#,
            "[".repeat(64),
            "]".repeat(64)
        );
        assert!(parse_answer(Some(200), deep.as_bytes()).is_err());
    }

    #[test]
    fn an_oidc_provider_answer_is_active() {
        let body = oidc_provider_answer().to_string();
        let Ok(Answer::Active(claims)) = parse_answer(Some(200), body.as_bytes()) else {
            panic!("active expected");
        };
        assert_eq!(claims.get("client_id"), Some(&json!("orders-app")));
        assert_eq!(claims::scopes(&claims), vec!["orders:read"]);
        assert_eq!(check_active(&claims, &provider(), &cfg(), NOW), Ok(()));
    }

    // ---- check_active ----

    fn with(member: &str, value: Value) -> Value {
        let mut v = oidc_provider_answer();
        v[member] = value;
        v
    }

    fn without(member: &str) -> Value {
        let mut v = oidc_provider_answer();
        v.as_object_mut().unwrap().remove(member);
        v
    }

    #[test]
    fn token_type_when_configured() {
        let mut c = cfg();
        c.token_type = Some("Bearer".into());
        let run = |v: Value| check_active(&active(v), &provider(), &c, NOW);
        assert_eq!(run(oidc_provider_answer()), Ok(()));
        assert_eq!(run(with("token_type", json!("bearer"))), Ok(()));
        assert_eq!(
            run(with("token_type", json!("DPoP"))),
            Err(Denial::WrongTokenType)
        );
        assert_eq!(run(without("token_type")), Err(Denial::WrongTokenType));
        assert!(matches!(
            run(with("token_type", json!(["Bearer"]))),
            Err(Denial::InvalidClaim(_))
        ));
        // Not configured: not checked.
        assert_eq!(check(with("token_type", json!("DPoP"))), Ok(()));
        assert_eq!(check(without("token_type")), Ok(()));
    }

    #[test]
    fn issuer_when_present_is_exact() {
        assert_eq!(check(without("iss")), Ok(()), "RFC 7662: iss is optional");
        assert_eq!(
            check(with("iss", json!("http://127.0.0.1:9000/"))),
            Err(Denial::UnknownIssuer)
        );
        assert_eq!(
            check(with("iss", json!("https://evil"))),
            Err(Denial::UnknownIssuer)
        );
        assert!(matches!(
            check(with("iss", json!(null))),
            Err(Denial::InvalidClaim(_))
        ));
    }

    #[test]
    fn audience_is_required_and_must_match() {
        assert_eq!(check(without("aud")), Err(Denial::WrongAudience));
        assert_eq!(
            check(with("aud", json!("api://elsewhere"))),
            Err(Denial::WrongAudience)
        );
        assert_eq!(check(with("aud", json!(["x", "api://other"]))), Ok(()));
        assert!(matches!(
            check(with("aud", json!([]))),
            Err(Denial::InvalidClaim(_))
        ));
        assert!(matches!(
            check(with("aud", json!(["api://opaque", 1]))),
            Err(Denial::InvalidClaim(_))
        ));
    }

    #[test]
    fn exp_is_optional_but_enforced_with_the_skew() {
        assert_eq!(check(without("exp")), Ok(()), "RFC 7662: exp is optional");
        assert_eq!(check(with("exp", json!(NOW - 59))), Ok(()));
        assert_eq!(check(with("exp", json!(NOW - 60))), Err(Denial::Expired));
        for bad in [json!("1700003600"), json!(null), json!(-1), json!(1e300)] {
            assert!(
                matches!(
                    check(with("exp", bad.clone())),
                    Err(Denial::InvalidClaim(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn nbf_and_iat_as_for_jwts() {
        assert_eq!(check(with("nbf", json!(NOW + 60))), Ok(()));
        assert_eq!(
            check(with("nbf", json!(NOW + 61))),
            Err(Denial::NotYetValid)
        );
        assert_eq!(
            check(with("iat", json!(NOW + 61))),
            Err(Denial::IssuedInFuture)
        );
        assert!(matches!(
            check(with("iat", json!("now"))),
            Err(Denial::InvalidClaim(_))
        ));
        let mut p = provider();
        p.max_lifetime = Some(600);
        assert_eq!(
            check_active(&active(oidc_provider_answer()), &p, &cfg(), NOW),
            Err(Denial::LifetimeTooLong)
        );
    }

    #[test]
    fn client_id_when_present_is_a_string() {
        assert_eq!(check(without("client_id")), Ok(()));
        assert!(matches!(
            check(with("client_id", json!(7))),
            Err(Denial::InvalidClaim(_))
        ));
    }

    #[test]
    fn scopes_are_read_from_the_answer() {
        let claims = active(with("scope", json!("orders:read orders:write")));
        assert!(claims::missing_scopes(&claims, &["orders:write".into()]).is_empty());
        assert_eq!(
            claims::missing_scopes(&active(oidc_provider_answer()), &["orders:write".into()]),
            vec!["orders:write".to_string()]
        );
    }

    // ---- cache ----

    #[test]
    fn active_answers_live_the_ttl_but_never_past_exp() {
        let c = cfg();
        let long = Answer::Active(active(oidc_provider_answer()));
        assert_eq!(cache_until_ms(&long, &c, NOW_MS), NOW_MS + 60_000);
        let short = Answer::Active(active(with("exp", json!(NOW + 20))));
        assert_eq!(cache_until_ms(&short, &c, NOW_MS), (NOW + 20) * 1000);
        let no_exp = Answer::Active(active(without("exp")));
        assert_eq!(cache_until_ms(&no_exp, &c, NOW_MS), NOW_MS + 60_000);
        let past = Answer::Active(active(with("exp", json!(NOW - 30))));
        assert_eq!(cache_until_ms(&past, &c, NOW_MS), NOW_MS, "not cached");
        let bad = Answer::Active(active(with("exp", json!("soon"))));
        assert_eq!(cache_until_ms(&bad, &c, NOW_MS), NOW_MS, "not cached");
        let mut off = cfg();
        off.cache_ttl = 0;
        assert_eq!(cache_until_ms(&long, &off, NOW_MS), NOW_MS, "not cached");
    }

    #[test]
    fn inactive_answers_live_the_negative_ttl() {
        assert_eq!(
            cache_until_ms(&Answer::Inactive, &cfg(), NOW_MS),
            NOW_MS + 5_000
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        let hash = token_hash("opaque-1");
        let answer = Answer::Active(active(oidc_provider_answer()));
        let entry = CachedAnswer::new(hash, &answer, NOW_MS + 60_000);
        let back = CachedAnswer::decode(&entry.encode().unwrap()).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.answer(), answer);

        let negative = CachedAnswer::new(hash, &Answer::Inactive, NOW_MS + 5_000);
        let back = CachedAnswer::decode(&negative.encode().unwrap()).unwrap();
        assert_eq!(back, negative);
        assert!(back.claims.is_empty());
        assert_eq!(back.answer(), Answer::Inactive);
    }

    #[test]
    fn damaged_entries_are_misses() {
        let entry = CachedAnswer::new(
            token_hash("t"),
            &Answer::Active(active(oidc_provider_answer())),
            NOW_MS + 1,
        );
        let bytes = entry.encode().unwrap();
        assert_eq!(CachedAnswer::decode(&[]), None);
        assert_eq!(CachedAnswer::decode(&bytes[..CACHE_HEADER - 1]), None);
        assert_eq!(CachedAnswer::decode(&bytes[..bytes.len() - 1]), None);
        let mut other_version = bytes.clone();
        other_version[0] = 2;
        assert_eq!(CachedAnswer::decode(&other_version), None);
        let mut odd_flag = bytes.clone();
        odd_flag[33] = 2;
        assert_eq!(CachedAnswer::decode(&odd_flag), None);
        // An inactive entry carrying claims, or an active one whose claims say otherwise.
        let mut inactive_with_claims = bytes.clone();
        inactive_with_claims[33] = 0;
        assert_eq!(CachedAnswer::decode(&inactive_with_claims), None);
        let mut not_active = entry.clone();
        let mut claims = not_active.claims.to_map();
        claims.insert("active".into(), json!(false));
        not_active.claims = Rc::new(claims.into());
        assert_eq!(CachedAnswer::decode(&not_active.encode().unwrap()), None);
    }

    #[test]
    fn fresh_only_for_the_same_hash_and_before_until() {
        let hash = token_hash("opaque-1");
        let entry = CachedAnswer::new(hash, &Answer::Inactive, NOW_MS + 5_000);
        assert!(entry.fresh_for(&hash, NOW_MS));
        assert!(entry.fresh_for(&hash, NOW_MS + 4_999));
        assert!(!entry.fresh_for(&hash, NOW_MS + 5_000), "expired");
        assert!(
            !entry.fresh_for(&token_hash("opaque-2"), NOW_MS),
            "other token"
        );
        let uncached = CachedAnswer::new(hash, &Answer::Inactive, NOW_MS);
        assert!(!uncached.fresh_for(&hash, NOW_MS), "until == now is stale");
    }

    #[test]
    fn oversized_answers_are_not_cached() {
        let big = with("groups", json!(vec!["g".repeat(100); 100]));
        let entry = CachedAnswer::new(token_hash("t"), &Answer::Active(active(big)), NOW_MS + 1);
        assert_eq!(entry.encode(), None);
        let mut forged = vec![CACHE_FORMAT];
        forged.resize(MAX_CACHED_BYTES + 1, b' ');
        assert_eq!(CachedAnswer::decode(&forged), None);
    }
}
