//! JWS compact serialization, read as untrusted input.
//!
//! [`UntrustedToken`] is what a token says about itself before anything is verified; the only
//! way to its claims as trusted data is [`UntrustedToken::verify`], which takes the key the
//! *verifier* chose. The header's `alg` is only a claim to be checked against that key and the
//! provider's allow-list, and keys the token offers (`jwk`, `jku`, `x5u`, `x5c`) are never read.

use crate::crypto::{Algorithm, SignedBytes};
use crate::denial::Denial;
use crate::jwk::Jwk;
use crate::{b64, json};
use serde_json::{Map, Value};

/// Longest token accepted, checked before the token is split or decoded.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest `kid` accepted.
pub const MAX_KID_LEN: usize = 256;

/// What a presented token looks like before anything is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenShape {
    /// Two dots (a JWS) or four (a JWE, refused when parsed): read as a JWT.
    Jose,
    /// Anything else: an opaque token, for introspection.
    Opaque,
}

/// Caps the length (before anything hashes or splits the token), checks RFC 6750's b64token
/// characters, and tells JOSE tokens from opaque ones by their dots.
pub fn classify(token: &str) -> Result<TokenShape, Denial> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Denial::TokenTooLarge);
    }
    let b64token = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    if !token.bytes().all(b64token) {
        return Err(Denial::Malformed("characters outside RFC 6750's b64token"));
    }
    match token.bytes().filter(|b| *b == b'.').count() {
        2 | 4 => Ok(TokenShape::Jose),
        _ => Ok(TokenShape::Opaque),
    }
}

/// The protected header members this filter reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// Normalized (lower case, without "application/").
    pub typ: Option<String>,
}

/// A well-formed JWS whose signature has not been checked.
#[derive(Debug)]
pub struct UntrustedToken<'t> {
    pub header: JoseHeader,
    /// The payload as the token claims it. Read only to pick the provider (`iss`).
    pub unverified_claims: Map<String, Value>,
    signing_input: &'t str,
    /// The base64url payload segment, as sent (forwarded upstream verbatim when asked).
    pub payload_segment: &'t str,
    signature: Vec<u8>,
}

/// Claims whose signature has been verified. Only [`UntrustedToken::verify`] makes one.
#[derive(Debug)]
pub struct VerifiedToken<'t> {
    pub header: JoseHeader,
    pub claims: Map<String, Value>,
    pub payload_segment: &'t str,
}

impl<'t> UntrustedToken<'t> {
    /// Parses a compact JWS, refusing every form this filter does not accept.
    pub fn parse(token: &'t str) -> Result<UntrustedToken<'t>, Denial> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Denial::TokenTooLarge);
        }
        let mut parts = token.splitn(4, '.');
        let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), Some(s), None) => (h, p, s),
            _ if token.bytes().filter(|b| *b == b'.').count() == 4 => {
                return Err(Denial::Malformed("encrypted tokens (JWE) are not accepted"))
            }
            _ => {
                return Err(Denial::Malformed(
                    "not a compact JWS (three dot-separated parts)",
                ))
            }
        };
        if h.is_empty() || p.is_empty() {
            return Err(Denial::Malformed("empty header or payload"));
        }
        let header_bytes =
            b64::decode(h).map_err(|_| Denial::Malformed("header is not base64url"))?;
        let header_json = json::parse_object(&header_bytes, 4)
            .map_err(|_| Denial::Malformed("header is not a JSON object"))?;
        let header = read_header(&header_json)?;
        if s.is_empty() {
            return Err(Denial::Malformed("unsigned token"));
        }
        let payload_bytes =
            b64::decode(p).map_err(|_| Denial::Malformed("payload is not base64url"))?;
        let unverified_claims = json::parse_object(&payload_bytes, json::MAX_DEPTH)
            .map_err(|_| Denial::Malformed("payload is not a JSON object"))?;
        let signature =
            b64::decode(s).map_err(|_| Denial::Malformed("signature is not base64url"))?;
        // h, p and the dot between them: the bytes that were signed.
        let signing_input = token.get(..h.len() + 1 + p.len()).unwrap_or_default();
        Ok(UntrustedToken {
            header,
            unverified_claims,
            signing_input,
            payload_segment: p,
            signature,
        })
    }

    /// The `iss` the token claims, for choosing which provider verifies it.
    pub fn claimed_issuer(&self) -> Option<&str> {
        self.unverified_claims.get("iss").and_then(Value::as_str)
    }

    /// Checks the signature with `key` under `alg`, which the caller has already matched against
    /// the provider's allow-list and the key's type.
    pub fn verify(self, key: &Jwk) -> Result<VerifiedToken<'t>, Denial> {
        self.verify_signed(key, None)
    }

    /// The bytes the signature covers: the token up to its second dot.
    pub fn signing_input(&self) -> &'t str {
        self.signing_input
    }

    /// [`UntrustedToken::verify`], with the SHA-256 of [`UntrustedToken::signing_input`] when
    /// the caller has it (it must be that one's).
    pub fn verify_signed(
        self,
        key: &Jwk,
        signing_input_sha256: Option<&[u8; 32]>,
    ) -> Result<VerifiedToken<'t>, Denial> {
        if !key.fits(self.header.alg) {
            return Err(Denial::KeyMismatch);
        }
        let input = self.signing_input.as_bytes();
        let signed = match signing_input_sha256 {
            Some(sha256) => SignedBytes::with_sha256(input, sha256),
            None => SignedBytes::new(input),
        };
        key.key
            .verify_signed(self.header.alg, signed, &self.signature)
            .map_err(|_| Denial::BadSignature)?;
        Ok(VerifiedToken {
            header: self.header,
            claims: self.unverified_claims,
            payload_segment: self.payload_segment,
        })
    }
}

fn read_header(h: &Map<String, Value>) -> Result<JoseHeader, Denial> {
    let alg = match h.get("alg") {
        Some(Value::String(a)) if a.eq_ignore_ascii_case("none") => return Err(Denial::AlgNone),
        Some(Value::String(a)) => Algorithm::from_name(a).ok_or(Denial::UnsupportedAlgorithm)?,
        _ => return Err(Denial::Malformed("header has no alg")),
    };
    if h.contains_key("enc") {
        return Err(Denial::Malformed("encrypted tokens (JWE) are not accepted"));
    }
    if h.contains_key("crit") {
        return Err(Denial::Malformed(
            "critical header extensions are not supported",
        ));
    }
    if h.contains_key("b64") {
        return Err(Denial::Malformed(
            "unencoded payloads (b64) are not accepted",
        ));
    }
    match h.get("cty") {
        None => {}
        Some(Value::String(c))
            if !c.eq_ignore_ascii_case("jwt") && !c.eq_ignore_ascii_case("application/jwt") => {}
        Some(Value::String(_)) => return Err(Denial::Malformed("nested tokens are not accepted")),
        Some(_) => return Err(Denial::Malformed("cty is not a string")),
    }
    let kid = match h.get("kid") {
        None => None,
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_LEN => Some(k.clone()),
        Some(_) => return Err(Denial::Malformed("kid is not a short string")),
    };
    let typ = match h.get("typ") {
        None => None,
        Some(Value::String(t)) => Some(crate::config::normalize_media_type(t)),
        Some(_) => return Err(Denial::Malformed("typ is not a string")),
    };
    Ok(JoseHeader { alg, kid, typ })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(json: &str) -> String {
        b64::encode(json.as_bytes())
    }

    fn token(header: &str, payload: &str, sig: &str) -> String {
        format!("{}.{}.{}", seg(header), seg(payload), sig)
    }

    #[test]
    fn reads_a_well_formed_token() {
        let t = token(
            r#"{"alg":"RS256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"iss":"https://i"}"#,
            "c2ln",
        );
        let u = UntrustedToken::parse(&t).unwrap();
        assert_eq!(u.header.alg, Algorithm::Rs256);
        assert_eq!(u.header.kid.as_deref(), Some("k1"));
        assert_eq!(u.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(u.claimed_issuer(), Some("https://i"));
        assert_eq!(u.signing_input, &t[..t.rfind('.').unwrap()]);
    }

    fn refused(t: &str) -> Denial {
        UntrustedToken::parse(t).unwrap_err()
    }

    #[test]
    fn refuses_alg_none_and_unsigned_tokens() {
        assert_eq!(
            refused(&token(r#"{"alg":"none"}"#, "{}", "")),
            Denial::AlgNone
        );
        assert_eq!(
            refused(&token(r#"{"alg":"NONE"}"#, "{}", "c2ln")),
            Denial::AlgNone
        );
        assert_eq!(
            refused(&token(r#"{"alg":"RS256"}"#, "{}", "")),
            Denial::Malformed("unsigned token")
        );
        assert_eq!(
            refused(&token(r#"{"alg":"XS999"}"#, "{}", "c2ln")),
            Denial::UnsupportedAlgorithm
        );
        assert_eq!(
            refused(&token(r#"{"typ":"JWT"}"#, "{}", "c2ln")),
            Denial::Malformed("header has no alg")
        );
    }

    #[test]
    fn refuses_other_serializations() {
        let five = format!("{}.a.b.c.d", seg(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#));
        assert_eq!(
            refused(&five),
            Denial::Malformed("encrypted tokens (JWE) are not accepted")
        );
        assert!(matches!(refused("a.b"), Denial::Malformed(_)));
        assert!(matches!(refused("a.b.c.d"), Denial::Malformed(_)));
        assert!(matches!(refused(".e30.c2ln"), Denial::Malformed(_)));
        assert!(matches!(
            refused(r#"{"payload":"x","signatures":[]}"#),
            Denial::Malformed(_)
        ));
        for header in [
            r#"{"alg":"RS256","enc":"A128GCM"}"#,
            r#"{"alg":"RS256","crit":["exp"],"exp":1}"#,
            r#"{"alg":"RS256","b64":false,"crit":["b64"]}"#,
            r#"{"alg":"RS256","b64":false}"#,
            r#"{"alg":"RS256","cty":"JWT"}"#,
            r#"{"alg":"RS256","kid":7}"#,
            r#"{"alg":"RS256","alg":"HS256"}"#,
            r#"["RS256"]"#,
        ] {
            assert!(
                matches!(refused(&token(header, "{}", "c2ln")), Denial::Malformed(_)),
                "{header}"
            );
        }
    }

    #[test]
    fn refuses_non_canonical_encodings_and_bad_json() {
        let good = token(r#"{"alg":"RS256"}"#, r#"{"a":1}"#, "c2ln");
        assert!(UntrustedToken::parse(&good).is_ok());
        assert!(
            matches!(refused(&format!("{good}=")), Denial::Malformed(_)),
            "padding"
        );
        assert!(
            matches!(refused(&good.replace('.', " .")), Denial::Malformed(_)),
            "whitespace"
        );
        assert!(matches!(
            refused(&token(r#"{"alg":"RS256"}"#, r#"{"a":1,"a":2}"#, "c2ln")),
            Denial::Malformed(_)
        ));
        assert!(matches!(
            refused(&token(r#"{"alg":"RS256"}"#, "[1]", "c2ln")),
            Denial::Malformed(_)
        ));
        let not_utf8 = format!(
            "{}.{}.c2ln",
            seg(r#"{"alg":"RS256"}"#),
            b64::encode(b"{\"a\":\"\xff\"}")
        );
        assert!(matches!(refused(&not_utf8), Denial::Malformed(_)));
        let deep = format!(
            "{}{}",
            "{\"a\":".repeat(40),
            "1".to_string() + &"}".repeat(40)
        );
        assert!(matches!(
            refused(&token(r#"{"alg":"RS256"}"#, &deep, "c2ln")),
            Denial::Malformed(_)
        ));
    }

    #[test]
    fn caps_length_before_splitting() {
        let dots = ".".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(refused(&dots), Denial::TokenTooLarge);
        let long_kid = format!(
            r#"{{"alg":"RS256","kid":"{}"}}"#,
            "k".repeat(MAX_KID_LEN + 1)
        );
        assert!(matches!(
            refused(&token(&long_kid, "{}", "c2ln")),
            Denial::Malformed(_)
        ));
    }

    #[test]
    fn ignores_keys_offered_by_the_token() {
        let t = token(
            r#"{"alg":"RS256","jku":"https://evil/jwks","jwk":{"kty":"oct","k":"AAAA"},"x5u":"https://evil","x5c":["AAAA"]}"#,
            "{}",
            "c2ln",
        );
        let u = UntrustedToken::parse(&t).unwrap();
        assert_eq!(
            u.header,
            JoseHeader {
                alg: Algorithm::Rs256,
                kid: None,
                typ: None
            }
        );
    }
}
