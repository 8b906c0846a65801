//! Why a request is refused: one flat enum, and the one place that maps it to HTTP.
//!
//! Every check in the engine ends in a [`Denial`]; [`Denial::response`] alone decides the status,
//! the RFC 6750 `WWW-Authenticate` challenge and the RFC 9457 problem body, so the answers stay
//! consistent and the reason codes stay stable for dashboards and clients.

use crate::json::Object;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    MissingToken,
    MultipleTokens,
    TokenTooLarge,
    Malformed(&'static str),
    AlgNone,
    UnsupportedAlgorithm,
    AlgorithmNotAllowed,
    UnknownIssuer,
    ProviderNotAccepted,
    UnknownKid,
    AmbiguousKid,
    KidRequired,
    KeyMismatch,
    BadSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    LifetimeTooLong,
    MissingExp,
    InvalidClaim(&'static str),
    WrongAudience,
    WrongTokenType,
    InsufficientScope(Vec<String>),
    ClaimMismatch(String),
    KeysUnavailable,
    BadRequest(&'static str),
    /// The introspection endpoint answered `active: false` (RFC 7662 section 2.2).
    TokenInactive,
    /// No usable introspection answer (timeout, non-200, malformed body, too many calls).
    IntrospectionFailed(&'static str),
    /// The identity's policy does not allow this route.
    PolicyDenied(String),
    /// A rate limit or quota of the identity's policy is spent.
    RateLimited(Box<RateLimitDenial>),
}

/// What a 429 says: which budget, when to come back, and the budget headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitDenial {
    pub policy: String,
    pub limit: String,
    /// Seconds until a request would be allowed again.
    pub retry_after: u64,
    /// `RateLimit-Policy` value.
    pub policy_header: String,
    /// `RateLimit` value.
    pub ratelimit_header: String,
}

/// What the gateway answers for a denial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialResponse {
    pub status: u32,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Denial {
    /// The stable, machine-readable reason code (used in the body, audit log and metrics).
    pub fn code(&self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::MultipleTokens => "multiple_tokens",
            Denial::TokenTooLarge => "token_too_large",
            Denial::Malformed(_) => "malformed_token",
            Denial::AlgNone => "alg_none",
            Denial::UnsupportedAlgorithm => "unsupported_algorithm",
            Denial::AlgorithmNotAllowed => "algorithm_not_allowed",
            Denial::UnknownIssuer => "unknown_issuer",
            Denial::ProviderNotAccepted => "provider_not_accepted",
            Denial::UnknownKid => "unknown_kid",
            Denial::AmbiguousKid => "ambiguous_kid",
            Denial::KidRequired => "kid_required",
            Denial::KeyMismatch => "key_mismatch",
            Denial::BadSignature => "bad_signature",
            Denial::Expired => "token_expired",
            Denial::NotYetValid => "token_not_yet_valid",
            Denial::IssuedInFuture => "token_issued_in_future",
            Denial::LifetimeTooLong => "token_lifetime_too_long",
            Denial::MissingExp => "missing_exp",
            Denial::InvalidClaim(_) => "invalid_claim",
            Denial::WrongAudience => "wrong_audience",
            Denial::WrongTokenType => "wrong_token_type",
            Denial::InsufficientScope(_) => "insufficient_scope",
            Denial::ClaimMismatch(_) => "claim_mismatch",
            Denial::KeysUnavailable => "keys_unavailable",
            Denial::BadRequest(_) => "bad_request",
            Denial::TokenInactive => "token_inactive",
            Denial::IntrospectionFailed(_) => "introspection_unavailable",
            Denial::PolicyDenied(_) => "policy_denied",
            Denial::RateLimited(_) => "rate_limited",
        }
    }

    /// A short human explanation, safe for a quoted header parameter (no `"` or `\`).
    pub fn description(&self) -> String {
        match self {
            Denial::MissingToken => "an access token is required".into(),
            Denial::MultipleTokens => "more than one access token was sent".into(),
            Denial::TokenTooLarge => "the token is too large".into(),
            Denial::Malformed(why) => format!("malformed token: {why}"),
            Denial::AlgNone => "unsigned tokens are not accepted".into(),
            Denial::UnsupportedAlgorithm => "the token's algorithm is not supported".into(),
            Denial::AlgorithmNotAllowed => {
                "the token's algorithm is not allowed for its issuer".into()
            }
            Denial::UnknownIssuer => "the token's issuer is not trusted".into(),
            Denial::ProviderNotAccepted => {
                "the token's issuer is not accepted on this route".into()
            }
            Denial::UnknownKid => "the token's signing key is not known".into(),
            Denial::AmbiguousKid => "the token's key id names more than one key".into(),
            Denial::KidRequired => "the token has no key id and several keys could match".into(),
            Denial::KeyMismatch => "the token's algorithm does not fit its key".into(),
            Denial::BadSignature => "the token's signature is invalid".into(),
            Denial::Expired => "the token has expired".into(),
            Denial::NotYetValid => "the token is not valid yet".into(),
            Denial::IssuedInFuture => "the token was issued in the future".into(),
            Denial::LifetimeTooLong => "the token's lifetime is longer than allowed".into(),
            Denial::MissingExp => "the token has no expiry".into(),
            Denial::InvalidClaim(why) => format!("invalid claim: {why}"),
            Denial::WrongAudience => "the token is not meant for this audience".into(),
            Denial::WrongTokenType => {
                "the token is not an access token of the expected type".into()
            }
            Denial::InsufficientScope(_) => "the token lacks a required scope".into(),
            Denial::ClaimMismatch(claim) => {
                format!("the token's {} claim does not allow this", sanitize(claim))
            }
            Denial::KeysUnavailable => "the issuer's keys are unavailable; retry later".into(),
            Denial::BadRequest(why) => format!("bad request: {why}"),
            Denial::TokenInactive => "the token is not active".into(),
            Denial::IntrospectionFailed(why) => {
                format!("the token could not be checked with its issuer ({why}); retry later")
            }
            Denial::PolicyDenied(policy) => {
                format!("the {} policy does not allow this route", sanitize(policy))
            }
            Denial::RateLimited(r) => format!(
                "the {} limit is spent; retry in {}s",
                sanitize(&r.limit),
                r.retry_after
            ),
        }
    }

    pub fn status(&self) -> u32 {
        match self {
            Denial::MultipleTokens | Denial::BadRequest(_) => 400,
            Denial::InsufficientScope(_) | Denial::ClaimMismatch(_) | Denial::PolicyDenied(_) => {
                403
            }
            Denial::RateLimited(_) => 429,
            Denial::KeysUnavailable | Denial::IntrospectionFailed(_) => 503,
            _ => 401,
        }
    }

    /// The RFC 6750 `error` code, if the challenge carries one.
    fn oauth_error(&self) -> Option<&'static str> {
        match self {
            // RFC 6750 section 3.1: no error code when the request had no credentials at all.
            Denial::MissingToken | Denial::KeysUnavailable | Denial::IntrospectionFailed(_) => None,
            Denial::MultipleTokens | Denial::BadRequest(_) => Some("invalid_request"),
            Denial::InsufficientScope(_) | Denial::ClaimMismatch(_) | Denial::PolicyDenied(_) => {
                Some("insufficient_scope")
            }
            // Not an authentication problem: no challenge at all (see `response`).
            Denial::RateLimited(_) => None,
            _ => Some("invalid_token"),
        }
    }

    /// The full answer: status, headers and an `application/problem+json` body.
    pub fn response(&self, realm: &str, request_id: Option<&str>) -> DenialResponse {
        let status = self.status();
        let mut challenge = format!("Bearer realm=\"{realm}\"");
        if let Some(error) = self.oauth_error() {
            challenge.push_str(&format!(
                ", error=\"{error}\", error_description=\"{}\"",
                self.description()
            ));
        }
        if let Denial::InsufficientScope(scopes) = self {
            challenge.push_str(&format!(", scope=\"{}\"", sanitize(&scopes.join(" "))));
        }
        let mut headers = vec![
            (
                "content-type".to_string(),
                "application/problem+json".to_string(),
            ),
            ("cache-control".to_string(), "no-store".to_string()),
        ];
        match self {
            Denial::RateLimited(r) => {
                headers.push(("retry-after".to_string(), r.retry_after.max(1).to_string()));
                headers.push(("ratelimit-policy".to_string(), r.policy_header.clone()));
                headers.push(("ratelimit".to_string(), r.ratelimit_header.clone()));
            }
            _ if status == 503 => headers.push(("retry-after".to_string(), "5".to_string())),
            _ => headers.push(("www-authenticate".to_string(), challenge)),
        }
        // A problem object (RFC 9457), its members in name order.
        let (policy, limit) = match self {
            Denial::RateLimited(r) => (Some(r.policy.as_str()), Some(r.limit.as_str())),
            Denial::PolicyDenied(policy) => (Some(policy.as_str()), None),
            _ => (None, None),
        };
        let mut body = String::with_capacity(256);
        let mut o = Object::new(&mut body);
        o.str("detail", &self.description());
        if let Some(limit) = limit {
            o.str("limit", limit);
        }
        if let Some(policy) = policy {
            o.str("policy", policy);
        }
        o.str("reason", self.code());
        if let Some(id) = request_id {
            o.str("request_id", id);
        }
        o.u64("status", u64::from(status));
        o.str("title", title(status));
        o.str("type", &format!("urn:tollgate:problem:{}", self.code()));
        o.end();
        DenialResponse {
            status,
            headers,
            body,
        }
    }
}

fn title(status: u32) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        429 => "Too Many Requests",
        _ => "Service Unavailable",
    }
}

/// Keeps only characters RFC 6750 allows inside a quoted parameter.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| (' '..='~').contains(c) && *c != '"' && *c != '\\')
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a DenialResponse, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as it was built before it was written out: a `serde_json::Value`, whose members
    /// are in name order.
    fn through_a_value(d: &Denial, request_id: Option<&str>) -> String {
        let status = d.status();
        let mut body = serde_json::json!({
            "type": format!("urn:tollgate:problem:{}", d.code()),
            "title": title(status),
            "status": status,
            "detail": d.description(),
            "reason": d.code(),
        });
        let map = body.as_object_mut().unwrap();
        if let Some(id) = request_id {
            map.insert("request_id".into(), id.into());
        }
        match d {
            Denial::RateLimited(r) => {
                map.insert("policy".into(), r.policy.clone().into());
                map.insert("limit".into(), r.limit.clone().into());
            }
            Denial::PolicyDenied(policy) => {
                map.insert("policy".into(), policy.clone().into());
            }
            _ => {}
        }
        body.to_string()
    }

    #[test]
    fn the_body_is_written_as_the_value_wrote_it() {
        let denials = [
            Denial::MissingToken,
            Denial::Expired,
            Denial::InsufficientScope(vec!["a\"b".into(), "c".into()]),
            Denial::PolicyDenied("gold \u{1} \"tier\"".into()),
            Denial::RateLimited(Box::new(RateLimitDenial {
                policy: "free".into(),
                limit: "per-minute".into(),
                retry_after: 3,
                policy_header: "p".into(),
                ratelimit_header: "r".into(),
            })),
        ];
        for d in &denials {
            for id in [None, Some("req-\u{7f}-é")] {
                assert_eq!(d.response("api", id).body, through_a_value(d, id), "{d:?}");
            }
        }
    }

    #[test]
    fn a_missing_token_is_a_bare_challenge() {
        let r = Denial::MissingToken.response("api", None);
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "www-authenticate"), Some("Bearer realm=\"api\""));
        assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["reason"], "missing_token");
        assert_eq!(body["status"], 401);
    }

    #[test]
    fn an_invalid_token_names_the_error() {
        let r = Denial::Expired.response("api", Some("req-1"));
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token has expired\"")
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["request_id"], "req-1");
        assert_eq!(body["type"], "urn:tollgate:problem:token_expired");
    }

    #[test]
    fn a_missing_scope_is_forbidden_and_says_which() {
        let r = Denial::InsufficientScope(vec!["orders:write".into()]).response("api", None);
        assert_eq!(r.status, 403);
        let challenge = header(&r, "www-authenticate").unwrap();
        assert!(challenge.contains("error=\"insufficient_scope\""));
        assert!(challenge.ends_with("scope=\"orders:write\""));
    }

    #[test]
    fn unavailable_keys_ask_to_retry() {
        let r = Denial::KeysUnavailable.response("api", None);
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("5"));
    }

    #[test]
    fn a_spent_budget_is_429_with_its_headers_and_no_challenge() {
        let r = Denial::RateLimited(Box::new(RateLimitDenial {
            policy: "gold".into(),
            limit: "per-minute".into(),
            retry_after: 7,
            policy_header: "\"per-minute\";q=25;w=60".into(),
            ratelimit_header: "\"per-minute\";r=0;t=7".into(),
        }))
        .response("api", None);
        assert_eq!(r.status, 429);
        assert_eq!(header(&r, "retry-after"), Some("7"));
        assert_eq!(
            header(&r, "ratelimit-policy"),
            Some("\"per-minute\";q=25;w=60")
        );
        assert_eq!(header(&r, "ratelimit"), Some("\"per-minute\";r=0;t=7"));
        assert_eq!(header(&r, "www-authenticate"), None);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (body["reason"].as_str(), body["limit"].as_str()),
            (Some("rate_limited"), Some("per-minute"))
        );
        assert_eq!(body["title"], "Too Many Requests");
    }

    #[test]
    fn a_route_the_policy_forbids_is_403() {
        let r = Denial::PolicyDenied("viewers".into()).response("api", None);
        assert_eq!(r.status, 403);
        assert!(header(&r, "www-authenticate")
            .unwrap()
            .contains("error=\"insufficient_scope\""));
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(
            (body["reason"].as_str(), body["policy"].as_str()),
            (Some("policy_denied"), Some("viewers"))
        );
    }

    #[test]
    fn an_inactive_token_is_an_invalid_token() {
        let r = Denial::TokenInactive.response("api", None);
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"the token is not active\"")
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["reason"], "token_inactive");
    }

    #[test]
    fn failed_introspection_asks_to_retry() {
        let r = Denial::IntrospectionFailed("timeout").response("api", None);
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("5"));
        assert_eq!(header(&r, "www-authenticate"), None);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["reason"], "introspection_unavailable");
        assert_eq!(body["title"], "Service Unavailable");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("timeout"), "{detail}");
        assert!(!detail.contains('"') && !detail.contains('\\'), "{detail}");
    }

    #[test]
    fn descriptions_are_safe_in_a_quoted_parameter() {
        let d = Denial::ClaimMismatch("ro\"les\\\n".into()).description();
        assert!(
            !d.contains('"') && !d.contains('\\') && !d.contains('\n'),
            "{d}"
        );
    }
}
