//! Claim checks on a verified token: time, issuer, audience, type, scopes, required values.
//!
//! Each check is a small function of (claims, provider, now) returning a [`Denial`], so the
//! rules of RFC 7519/8725/9068 read one per function and are tested one per case. A claim of
//! the wrong type is an error, never "absent".

use crate::config::Provider;
use crate::denial::Denial;
use crate::jws::VerifiedToken;
use serde_json::Value;

mod kept;
pub use kept::{Claims, Members};

/// Latest NumericDate accepted (year 5138): later values are refused as absurd, not clamped.
const MAX_NUMERIC_DATE: f64 = 1e11;

/// Runs every provider-level check in the order a reader would: type, issuer, audience, time.
/// The dates it checked come back, for a remembered token to check again.
pub fn validate(token: &VerifiedToken, provider: &Provider, now: u64) -> Result<Dates, Denial> {
    check_type(token.header.typ.as_deref(), provider.token_type.as_deref())?;
    check_issuer(&token.claims, &provider.issuer)?;
    check_audience(&token.claims, &provider.audiences)?;
    let dates = Dates::read(&token.claims)?;
    dates.check_for(provider, now)?;
    Ok(dates)
}

pub(crate) fn check_type(typ: Option<&str>, required: Option<&str>) -> Result<(), Denial> {
    match required {
        Some(required) if typ != Some(required) => Err(Denial::WrongTokenType),
        _ => Ok(()),
    }
}

pub(crate) fn check_issuer(claims: &(impl Members + ?Sized), issuer: &str) -> Result<(), Denial> {
    match claims.member("iss") {
        Some(Value::String(iss)) if iss == issuer => Ok(()),
        Some(Value::String(_)) | None => Err(Denial::UnknownIssuer),
        Some(_) => Err(Denial::InvalidClaim("iss is not a string")),
    }
}

pub(crate) fn check_audience(
    claims: &(impl Members + ?Sized),
    accepted: &[String],
) -> Result<(), Denial> {
    let audiences: Vec<&str> = match claims.member("aud") {
        None => return Err(Denial::WrongAudience),
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(a) => out.push(a.as_str()),
                    _ => return Err(Denial::InvalidClaim("aud holds a non-string")),
                }
            }
            out
        }
        Some(Value::Array(_)) => return Err(Denial::InvalidClaim("aud is an empty array")),
        Some(_) => return Err(Denial::InvalidClaim("aud is not a string or an array")),
    };
    if audiences.iter().any(|a| accepted.iter().any(|x| x == a)) {
        Ok(())
    } else {
        Err(Denial::WrongAudience)
    }
}

/// Reads a NumericDate (RFC 7519 section 2), which may carry a fraction, as whole seconds.
pub(crate) fn numeric_date(
    claims: &(impl Members + ?Sized),
    name: &'static str,
) -> Result<Option<u64>, Denial> {
    let err = match name {
        "exp" => "exp is not a valid date",
        "nbf" => "nbf is not a valid date",
        _ => "iat is not a valid date",
    };
    match claims.member(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                return if (v as f64) <= MAX_NUMERIC_DATE {
                    Ok(Some(v))
                } else {
                    Err(Denial::InvalidClaim(err))
                };
            }
            match n.as_f64() {
                Some(v) if v.is_finite() && (0.0..=MAX_NUMERIC_DATE).contains(&v) => {
                    Ok(Some(v.floor() as u64))
                }
                _ => Err(Denial::InvalidClaim(err)),
            }
        }
        Some(_) => Err(Denial::InvalidClaim(err)),
    }
}

/// The date rules of [`Dates::check_for`] with each policy as an argument, so that an introspection
/// answer (where `exp` is optional, RFC 7662 section 2.2) is held to the same reading of `exp`,
/// `nbf` and `iat` as a JWT.
pub(crate) fn check_dates(
    claims: &(impl Members + ?Sized),
    skew: u64,
    require_exp: bool,
    max_lifetime: Option<u64>,
    now: u64,
) -> Result<(), Denial> {
    Dates::read(claims)?.check(skew, require_exp, max_lifetime, now)
}

/// A token's `exp`, `nbf` and `iat`, read once: a remembered token keeps them, so the check
/// that every request repeats is three comparisons, not three lookups in its claims.
///
/// Each is a `u64`, [`Dates::NONE`] when absent: 24 bytes where three `Option<u64>` take 48,
/// in every remembered token and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dates([u64; 3]);

impl Default for Dates {
    fn default() -> Dates {
        Dates([Dates::NONE; 3])
    }
}

impl Dates {
    /// An absent date: above any date a claim can hold (`MAX_NUMERIC_DATE`, 1e11).
    pub const NONE: u64 = u64::MAX;

    pub fn read(claims: &(impl Members + ?Sized)) -> Result<Dates, Denial> {
        Ok(Dates::new(
            numeric_date(claims, "exp")?,
            numeric_date(claims, "nbf")?,
            numeric_date(claims, "iat")?,
        ))
    }

    pub fn new(exp: Option<u64>, nbf: Option<u64>, iat: Option<u64>) -> Dates {
        let held = |date: Option<u64>| date.unwrap_or(Dates::NONE);
        Dates([held(exp), held(nbf), held(iat)])
    }

    /// `exp`, `nbf` and `iat` as held, [`Dates::NONE`] for an absent one.
    pub fn words(self) -> [u64; 3] {
        self.0
    }

    pub fn from_words(words: [u64; 3]) -> Dates {
        Dates(words)
    }

    pub fn exp(self) -> Option<u64> {
        let [exp, _, _] = self.0;
        (exp != Dates::NONE).then_some(exp)
    }

    pub fn nbf(self) -> Option<u64> {
        let [_, nbf, _] = self.0;
        (nbf != Dates::NONE).then_some(nbf)
    }

    pub fn iat(self) -> Option<u64> {
        let [_, _, iat] = self.0;
        (iat != Dates::NONE).then_some(iat)
    }

    /// The checks with the provider's clock skew, `exp` requirement and lifetime bound.
    pub fn check_for(self, provider: &Provider, now: u64) -> Result<(), Denial> {
        self.check(
            provider.clock_skew,
            provider.require_exp,
            provider.max_lifetime,
            now,
        )
    }

    pub fn check(
        self,
        skew: u64,
        require_exp: bool,
        max_lifetime: Option<u64>,
        now: u64,
    ) -> Result<(), Denial> {
        let (exp, nbf, iat) = (self.exp(), self.nbf(), self.iat());
        match exp {
            // `exp == now` is already expired (RFC 7519: "on or after").
            Some(exp) if now >= exp.saturating_add(skew) => return Err(Denial::Expired),
            None if require_exp => return Err(Denial::MissingExp),
            _ => {}
        }
        if matches!(nbf, Some(nbf) if nbf > now.saturating_add(skew)) {
            return Err(Denial::NotYetValid);
        }
        if matches!(iat, Some(iat) if iat > now.saturating_add(skew)) {
            return Err(Denial::IssuedInFuture);
        }
        if let Some(max) = max_lifetime {
            match (iat, exp) {
                (Some(iat), Some(exp)) if exp.saturating_sub(iat) <= max => {}
                (Some(_), Some(_)) => return Err(Denial::LifetimeTooLong),
                (None, _) => {
                    return Err(Denial::InvalidClaim(
                        "iat is required to bound the lifetime",
                    ))
                }
                (_, None) => return Err(Denial::MissingExp),
            }
        }
        Ok(())
    }
}

/// The token's scopes, from `scope` (space-separated, RFC 8693/9068) or `scp` (array or
/// space-separated string, as Okta and Entra ID send it).
pub fn scopes(claims: &(impl Members + ?Sized)) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.member(name) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// Scopes the rule requires that the token lacks.
pub fn missing_scopes(claims: &(impl Members + ?Sized), required: &[String]) -> Vec<String> {
    if required.is_empty() {
        return Vec::new();
    }
    let have = scopes(claims);
    required
        .iter()
        .filter(|r| !have.contains(&r.as_str()))
        .cloned()
        .collect()
}

/// Finds a claim by path: "sub", "realm_access.roles", `https://example.com/roles`. A member
/// whose name contains dots is found before a nested path of the same spelling.
pub fn lookup<'c>(claims: &'c (impl Members + ?Sized), path: &str) -> Option<&'c Value> {
    if let Some(v) = claims.member(path) {
        return Some(v);
    }
    // Try the longest member name first, then descend into the rest of the path.
    let dots: Vec<usize> = path.match_indices('.').map(|(i, _)| i).collect();
    for &i in dots.iter().rev() {
        let (head, rest) = (path.get(..i)?, path.get(i + 1..)?);
        if let Some(Value::Object(inner)) = claims.member(head) {
            if let Some(v) = lookup(inner, rest) {
                return Some(v);
            }
        }
    }
    None
}

/// A scalar claim as text: strings as they are, numbers and booleans in JSON form.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether the claim at `path` has one of `accepted` (or, for an array, contains one).
pub fn claim_matches(claims: &(impl Members + ?Sized), path: &str, accepted: &[String]) -> bool {
    let is_accepted = |v: &Value| scalar_text(v).is_some_and(|t| accepted.contains(&t));
    match lookup(claims, path) {
        Some(Value::Array(items)) => items.iter().any(is_accepted),
        Some(v) => is_accepted(v),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeySource, TokenSource, VerifyMode};
    use crate::jwk::{JwkSet, JwksLimits, KeyOrigin};
    use serde_json::json;
    use serde_json::Map;

    const NOW: u64 = 1_700_000_000;

    fn provider() -> Provider {
        let keys = JwkSet::from_value(
            &json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}),
            KeyOrigin::Inline,
            &JwksLimits::default(),
        )
        .unwrap();
        Provider {
            name: "p".into(),
            issuer: "https://idp".into(),
            audiences: vec!["api://a".into(), "api://b".into()],
            algorithms: vec![],
            sources: vec![TokenSource::Query("t".into())],
            clock_skew: 60,
            require_exp: true,
            max_lifetime: None,
            token_type: Some("at+jwt".into()),
            keys: Some(KeySource::Inline(keys)),
            verify: VerifyMode::Jwt,
            introspection: None,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("object expected"),
        }
    }

    fn time(claims: Value, p: &Provider) -> Result<(), Denial> {
        Dates::read(&obj(claims))?.check_for(p, NOW)
    }

    #[test]
    fn dates_hold_each_date_or_its_absence_in_24_bytes() {
        let dates = Dates::read(&obj(json!({"exp": 5, "iat": 0}))).unwrap();
        assert_eq!(
            (dates.exp(), dates.nbf(), dates.iat()),
            (Some(5), None, Some(0))
        );
        assert_eq!(dates, Dates::new(Some(5), None, Some(0)));
        assert_eq!(Dates::from_words(dates.words()), dates);
        let none = Dates::default();
        assert_eq!((none.exp(), none.nbf(), none.iat()), (None, None, None));
        assert_eq!(Dates::read(&obj(json!({}))).unwrap(), none);
        // The largest date a claim may hold is still a date.
        let far = Dates::read(&obj(json!({"exp": 100_000_000_000u64}))).unwrap();
        assert_eq!(far.exp(), Some(100_000_000_000));
        assert_eq!(std::mem::size_of::<Dates>(), 24);
    }

    #[test]
    fn expiry_is_exclusive_and_skew_is_bounded() {
        let mut p = provider();
        p.clock_skew = 0;
        assert_eq!(
            time(json!({"exp": NOW}), &p),
            Err(Denial::Expired),
            "exp == now is expired"
        );
        assert_eq!(time(json!({"exp": NOW + 1}), &p), Ok(()));
        p.clock_skew = 60;
        assert_eq!(time(json!({"exp": NOW - 59}), &p), Ok(()));
        assert_eq!(time(json!({"exp": NOW - 60}), &p), Err(Denial::Expired));
        assert_eq!(time(json!({"exp": (NOW + 10) as f64 + 0.5}), &p), Ok(()));
    }

    #[test]
    fn exp_is_required_by_default() {
        let mut p = provider();
        assert_eq!(time(json!({}), &p), Err(Denial::MissingExp));
        p.require_exp = false;
        assert_eq!(time(json!({}), &p), Ok(()));
    }

    #[test]
    fn future_nbf_and_iat_beyond_the_skew_are_refused() {
        let p = provider();
        assert_eq!(
            time(json!({"exp": NOW + 600, "nbf": NOW + 61}), &p),
            Err(Denial::NotYetValid)
        );
        assert_eq!(time(json!({"exp": NOW + 600, "nbf": NOW + 60}), &p), Ok(()));
        assert_eq!(
            time(json!({"exp": NOW + 600, "iat": NOW + 61}), &p),
            Err(Denial::IssuedInFuture)
        );
        assert_eq!(time(json!({"exp": NOW + 600, "iat": NOW - 10}), &p), Ok(()));
    }

    #[test]
    fn dates_of_the_wrong_type_are_errors_not_absent() {
        let p = provider();
        for bad in [
            json!("1700000600"),
            json!(null),
            json!(-1),
            json!(1e300),
            json!(true),
            json!([1]),
        ] {
            assert!(
                matches!(
                    time(json!({"exp": bad.clone()}), &p),
                    Err(Denial::InvalidClaim(_))
                ),
                "exp {bad}"
            );
            assert!(
                matches!(
                    time(json!({"exp": NOW + 60, "nbf": bad.clone()}), &p),
                    Err(Denial::InvalidClaim(_))
                ),
                "nbf {bad}"
            );
            assert!(
                matches!(
                    time(json!({"exp": NOW + 60, "iat": bad.clone()}), &p),
                    Err(Denial::InvalidClaim(_))
                ),
                "iat {bad}"
            );
        }
    }

    #[test]
    fn maximum_lifetime_needs_iat() {
        let mut p = provider();
        p.max_lifetime = Some(3600);
        assert_eq!(time(json!({"exp": NOW + 3600, "iat": NOW}), &p), Ok(()));
        assert_eq!(
            time(json!({"exp": NOW + 3601, "iat": NOW}), &p),
            Err(Denial::LifetimeTooLong)
        );
        assert!(matches!(
            time(json!({"exp": NOW + 60}), &p),
            Err(Denial::InvalidClaim(_))
        ));
    }

    #[test]
    fn issuer_is_an_exact_match() {
        assert_eq!(
            check_issuer(&obj(json!({"iss": "https://idp"})), "https://idp"),
            Ok(())
        );
        for other in [
            json!("https://idp/"),
            json!("https://IDP"),
            json!("https://idp.evil"),
        ] {
            assert_eq!(
                check_issuer(&obj(json!({"iss": other})), "https://idp"),
                Err(Denial::UnknownIssuer)
            );
        }
        assert_eq!(
            check_issuer(&obj(json!({})), "https://idp"),
            Err(Denial::UnknownIssuer)
        );
        assert!(matches!(
            check_issuer(&obj(json!({"iss": ["https://idp"]})), "https://idp"),
            Err(Denial::InvalidClaim(_))
        ));
    }

    #[test]
    fn audience_as_string_or_array_with_exact_membership() {
        let accepted = vec!["api://a".to_string()];
        let aud = |v: Value| check_audience(&obj(json!({"aud": v})), &accepted);
        assert_eq!(aud(json!("api://a")), Ok(()));
        assert_eq!(aud(json!(["x", "api://a"])), Ok(()));
        assert_eq!(aud(json!("api://a/")), Err(Denial::WrongAudience));
        assert_eq!(aud(json!(["api://ab"])), Err(Denial::WrongAudience));
        assert!(matches!(aud(json!([])), Err(Denial::InvalidClaim(_))));
        assert!(matches!(
            aud(json!(["api://a", 7])),
            Err(Denial::InvalidClaim(_))
        ));
        assert!(matches!(
            aud(json!({"api://a": true})),
            Err(Denial::InvalidClaim(_))
        ));
        assert_eq!(
            check_audience(&obj(json!({})), &accepted),
            Err(Denial::WrongAudience)
        );
    }

    #[test]
    fn token_type_when_required() {
        assert_eq!(check_type(Some("at+jwt"), Some("at+jwt")), Ok(()));
        assert_eq!(
            check_type(Some("jwt"), Some("at+jwt")),
            Err(Denial::WrongTokenType)
        );
        assert_eq!(
            check_type(None, Some("at+jwt")),
            Err(Denial::WrongTokenType)
        );
        assert_eq!(check_type(None, None), Ok(()));
    }

    #[test]
    fn scopes_from_scope_or_scp() {
        let c = obj(json!({"scope": "a b  c", "scp": ["d"]}));
        assert_eq!(scopes(&c), vec!["a", "b", "c", "d"]);
        assert_eq!(
            missing_scopes(&c, &["a".into(), "x".into()]),
            vec!["x".to_string()]
        );
        assert_eq!(scopes(&obj(json!({"scp": "e f"}))), vec!["e", "f"]);
        assert!(
            missing_scopes(&obj(json!({"scope": "ab"})), &["a".into()]) == vec!["a".to_string()]
        );
    }

    #[test]
    fn claim_paths_reach_nested_and_url_named_claims() {
        let c = obj(json!({
            "realm_access": {"roles": ["admin", "user"]},
            "https://example.com/roles": ["editor"],
            "https://example.com/org": {"id": 7},
            "a.b": "flat", "a": {"b": "nested"}
        }));
        assert_eq!(
            lookup(&c, "realm_access.roles"),
            Some(&json!(["admin", "user"]))
        );
        assert_eq!(
            lookup(&c, "https://example.com/roles"),
            Some(&json!(["editor"]))
        );
        assert_eq!(lookup(&c, "https://example.com/org.id"), Some(&json!(7)));
        assert_eq!(lookup(&c, "a.b"), Some(&json!("flat")));
        assert_eq!(lookup(&c, "realm_access.nope"), None);
        assert!(claim_matches(&c, "realm_access.roles", &["admin".into()]));
        assert!(claim_matches(
            &c,
            "https://example.com/org.id",
            &["7".into()]
        ));
        assert!(!claim_matches(&c, "realm_access.roles", &["root".into()]));
        assert!(
            !claim_matches(&c, "realm_access", &["admin".into()]),
            "objects never match"
        );
    }
}
