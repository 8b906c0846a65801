//! One audit event per decision, as one JSON line.
//!
//! The event names who asked (issuer, subject, client, scopes), what for (route, method, path),
//! and what was decided and why (stable reason code). It never holds the token: a SHA-256 prefix
//! identifies it, enough to correlate with the IdP's logs and useless for replay.

use crate::claims::Claims;
use crate::json::Object;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::rc::Rc;
use std::sync::Arc;

/// What the engine learned while deciding, for the audit event.
///
/// Gathered on every request but read only when an audit line is written (and a gateway may log
/// below info, or sample allowed requests), so the facts are shared, not copied: names are
/// `Arc<str>` from the compiled configuration and the identity is the verified claims themselves;
/// the identity fields are read from them when a line is built.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFacts {
    /// Index of the rule that matched; `None` for the default (no rule matched).
    pub rule: Option<usize>,
    pub provider: Option<Arc<str>>,
    /// The provider's `issuer`, once a JWT is verified: the `iss` it carried, which its kept
    /// claims leave out (`verified::project`).
    pub issuer: Option<Arc<str>>,
    /// The verified claims (or the part of them a remembered token keeps).
    pub claims: Option<Rc<Claims>>,
    /// Names the token: [`Fingerprint`].
    pub token_sha256: Option<Fingerprint>,
    /// How the identity was established: "jwt", "introspection" or "introspection_cache".
    pub source: Option<&'static str>,
    /// The policy that applied.
    pub policy: Option<Arc<str>>,
    /// The limit that refused the request (429).
    pub limit: Option<String>,
}

impl AuditFacts {
    fn text(&self, name: &str) -> Option<&str> {
        self.claims.as_ref()?.get(name).and_then(Value::as_str)
    }

    pub fn issuer(&self) -> Option<&str> {
        self.text("iss").or(self.issuer.as_deref())
    }

    pub fn subject(&self) -> Option<&str> {
        self.text("sub")
    }

    /// `client_id` (RFC 9068), or `azp` (OpenID Connect) when there is none.
    pub fn client_id(&self) -> Option<&str> {
        self.text("client_id").or_else(|| self.text("azp"))
    }

    pub fn scopes(&self) -> Vec<&str> {
        self.claims
            .as_deref()
            .map(crate::claims::scopes)
            .unwrap_or_default()
    }
}

/// Whether an allowed request is audited when a `share` (0.0 to 1.0) of them is: a stable
/// draw from `seed` (the request id), so that one request is sampled the same way everywhere.
pub fn sampled(share: f64, seed: &str) -> bool {
    if share >= 1.0 {
        return true;
    }
    let digest = Sha256::digest(seed.as_bytes());
    let draw = digest
        .iter()
        .take(2)
        .fold(0u32, |acc, b| (acc << 8) | u32::from(*b));
    f64::from(draw) < share * 65_536.0
}

/// A token's name in the audit: the first 8 bytes of its SHA-256, in lowercase hex. Held inline
/// rather than as a string: every remembered token keeps one and every decision copies it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// Of a token's SHA-256 (computed once per request), or any prefix of it of 8 bytes or more.
    pub fn of(digest: &[u8]) -> Fingerprint {
        let digit = |x: u8| char::from_digit(u32::from(x), 16).map_or(b'0', |d| d as u8);
        let mut hex = [b'0'; 16];
        for (pair, &byte) in hex.chunks_exact_mut(2).zip(digest) {
            if let [high, low] = pair {
                (*high, *low) = (digit(byte >> 4), digit(byte & 15));
            }
        }
        Fingerprint(hex)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn token_fingerprint(token: &str) -> Fingerprint {
    Fingerprint::of(&Sha256::digest(token.as_bytes()))
}

/// One decision, ready to be written as a log line.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    pub now_ms: u64,
    pub request_id: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    /// "allow" or "deny".
    pub decision: &'a str,
    pub status: u32,
    pub reason: &'a str,
    pub facts: &'a AuditFacts,
}

impl AuditEvent<'_> {
    /// The event as one JSON object, its members in alphabetical order, written straight from
    /// borrowed values: building a `serde_json::Value` first cost ~5 us a line in wasm, on every
    /// audited request.
    pub fn to_json_line(&self) -> String {
        let f = self.facts;
        // The path without its query: queries may carry tokens or personal data.
        let path = self.path.split('?').next().unwrap_or("");
        let mut line = String::with_capacity(512);
        let mut o = Object::new(&mut line);
        o.opt_str("client_id", f.client_id());
        o.str("decision", self.decision);
        o.str("event", "tollgate.decision");
        o.opt_str("issuer", f.issuer());
        o.opt_str("limit", f.limit.as_deref());
        o.str("method", self.method);
        o.str("path", truncate(path, 512));
        o.opt_str("policy", f.policy.as_deref());
        o.opt_str("provider", f.provider.as_deref());
        o.str("reason", self.reason);
        o.opt_str("request_id", self.request_id);
        match f.rule {
            Some(i) => o.str("route", &format!("rules[{i}]")),
            None => o.str("route", "default"),
        }
        o.strs("scopes", f.scopes());
        o.opt_str("source", f.source);
        o.u64("status", u64::from(self.status));
        o.opt_str("subject", f.subject());
        o.str("time", &rfc3339(self.now_ms));
        o.opt_str(
            "token_sha256",
            f.token_sha256.as_ref().map(Fingerprint::as_str),
        );
        o.end();
        line
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

pub use crate::civil::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The line as it was first built (a `serde_json::Value`, whose keys are sorted): the
    /// format users parse, which the direct writer must keep byte for byte.
    fn through_a_value(e: &AuditEvent) -> String {
        let f = e.facts;
        let path = e.path.split('?').next().unwrap_or("");
        json!({
            "event": "tollgate.decision",
            "time": rfc3339(e.now_ms),
            "request_id": e.request_id,
            "method": e.method,
            "path": truncate(path, 512),
            "route": f.rule.map_or_else(|| "default".to_string(), |i| format!("rules[{i}]")),
            "decision": e.decision,
            "status": e.status,
            "reason": e.reason,
            "provider": f.provider.as_deref(),
            "issuer": f.issuer(),
            "subject": f.subject(),
            "client_id": f.client_id(),
            "scopes": f.scopes(),
            "token_sha256": f.token_sha256.as_ref().map(Fingerprint::as_str),
            "source": f.source,
            "policy": f.policy.as_deref(),
            "limit": f.limit,
        })
        .to_string()
    }

    #[test]
    fn the_line_is_the_documented_json_byte_for_byte() {
        let awkward = "q\"u\\o\nte \u{7f}\u{1} é 😀 </script>";
        let long_path = format!("/{}?access_token=x", "é".repeat(600));
        let claims = |v: Value| {
            Some(Rc::new(Claims::from(
                v.as_object().cloned().unwrap_or_default(),
            )))
        };
        let cases = [
            AuditFacts::default(),
            AuditFacts {
                rule: Some(12),
                provider: Some(Arc::from("corp")),
                issuer: Some(Arc::from("https://idp.example")),
                claims: claims(json!({
                    "sub": awkward, "client_id": "app", "scope": "orders:read orders:write",
                })),
                token_sha256: Some(Fingerprint::of(&[
                    0x2a, 0x8e, 0xc9, 0x87, 0x09, 0x97, 0x95, 0x80,
                ])),
                source: Some("jwt"),
                policy: Some(Arc::from("standard")),
                limit: Some("per-minute".to_string()),
            },
            AuditFacts {
                rule: Some(0),
                claims: claims(json!({"azp": "spa", "scp": ["a", "b"], "sub": 7})),
                source: Some("introspection_cache"),
                ..Default::default()
            },
        ];
        for (i, facts) in cases.iter().enumerate() {
            for (path, request_id) in [
                (
                    "/orders/7?x=1",
                    Some("d93cc1d8-46c7-4e37-91b8-1a0762b31de5"),
                ),
                (long_path.as_str(), None),
                (awkward, Some(awkward)),
            ] {
                let event = AuditEvent {
                    now_ms: 1_764_143_454_361 + i as u64,
                    request_id,
                    method: "POST",
                    path,
                    decision: if i == 1 { "deny" } else { "allow" },
                    status: if i == 1 { 429 } else { 200 },
                    reason: if i == 1 { "rate_limited" } else { "ok" },
                    facts,
                };
                assert_eq!(event.to_json_line(), through_a_value(&event));
            }
        }
    }

    #[test]
    fn the_issuer_is_the_claimed_one_else_the_verifying_providers() {
        let with = |claims: Value, issuer: Option<&str>| AuditFacts {
            claims: Some(Rc::new(Claims::from(
                claims.as_object().cloned().unwrap_or_default(),
            ))),
            issuer: issuer.map(Arc::from),
            ..Default::default()
        };
        let jwt = with(json!({"sub": "a"}), Some("https://idp.example"));
        assert_eq!(jwt.issuer(), Some("https://idp.example"));
        let answer = with(json!({"iss": "https://as.example"}), None);
        assert_eq!(answer.issuer(), Some("https://as.example"), "introspected");
        assert_eq!(with(json!({"sub": "a"}), None).issuer(), None);
    }

    #[test]
    fn sampling_keeps_about_the_share_asked_for() {
        let kept = (0..10_000)
            .filter(|i| sampled(0.25, &format!("req-{i}")))
            .count();
        assert!((2_300..2_700).contains(&kept), "{kept}");
        assert!((0..100).all(|i| sampled(1.0, &i.to_string())));
        assert!((0..100).all(|i| !sampled(0.0, &i.to_string())));
        assert_eq!(sampled(0.5, "same"), sampled(0.5, "same"));
    }

    #[test]
    fn the_event_identifies_the_token_without_holding_it() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        let facts = AuditFacts {
            rule: Some(1),
            claims: Some(Rc::new(Claims::from(
                json!({"sub": "alice"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ))),
            token_sha256: Some(token_fingerprint(token)),
            ..Default::default()
        };
        let line = AuditEvent {
            now_ms: 0,
            request_id: Some("r1"),
            method: "GET",
            path: "/orders?access_token=secret",
            decision: "deny",
            status: 401,
            reason: "token_expired",
            facts: &facts,
        }
        .to_json_line();
        assert!(!line.contains(token) && !line.contains("secret"), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["route"], "rules[1]");
        assert_eq!(v["path"], "/orders");
        assert_eq!(v["token_sha256"].as_str().unwrap().len(), 16);
        assert_eq!(v["reason"], "token_expired");
    }

    #[test]
    fn the_fingerprint_is_the_first_eight_bytes_of_the_sha256_in_lowercase_hex() {
        // SHA-256("abc") = ba7816bf 8f01cfea 414140de ...
        assert_eq!(token_fingerprint("abc").as_str(), "ba7816bf8f01cfea");
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&[0x00, 0x0f, 0xf0, 0xff, 0x09, 0x0a, 0xa9, 0x5c]);
        digest[8] = 0xff;
        assert_eq!(Fingerprint::of(&digest).as_str(), "000ff0ff090aa95c");
        assert_eq!(
            Fingerprint::of(&digest[..16]),
            Fingerprint::of(&digest),
            "a shared cache's key (16 bytes of the digest) names the token too"
        );
        assert_eq!(
            format!("{:?}", Fingerprint::of(&digest)),
            "000ff0ff090aa95c"
        );
    }
}
