//! JWK and JWKS import (RFC 7517, RFC 7518 section 6, RFC 8037) into keys fit for verification.
//!
//! A JWKS comes from an identity provider over the network, so each entry is untrusted. The
//! import is shaped so that one bad entry never takes the good ones down and never becomes
//! usable: every key is checked on its own and either becomes a [`Jwk`] (a validated
//! [`PublicKey`] plus its `kid` and optional `alg` restriction) or is skipped with a reason for
//! the logs. Only a document with no usable key at all is an error, so the caller can keep its
//! last good keys (SECURITY.md, "JWKS and discovery").
//!
//! Key selection follows RFC 8725: the token's `kid` is an opaque string compared byte for byte,
//! and the token's `alg` must fit the key (its `kty`/`crv` and its own `alg`), never the other way
//! round. Two entries with the same `kid` and `kty` are ambiguous (even if one of them is
//! unusable for another reason), so neither is used under that `kid`. Symmetric (`oct`) keys are
//! accepted only from local configuration, so a remote JWKS can never hand us an HMAC secret to
//! confuse algorithms with.

use serde_json::{Map, Value};

use crate::crypto::{Algorithm, PublicKey};

/// Where a key set comes from; `oct` keys are accepted only [`KeyOrigin::Inline`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Fetched from an identity provider's JWKS URL.
    Remote,
    /// Written in the local configuration.
    Inline,
}

/// One usable key.
#[derive(Clone, Debug)]
pub struct Jwk {
    /// The key id, if the JWK has one.
    pub kid: Option<String>,
    /// The JWK's own `alg` restriction, if it has one (always fits `key`).
    pub alg: Option<Algorithm>,
    /// The validated key.
    pub key: PublicKey,
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg`.
    pub fn fits(&self, alg: Algorithm) -> bool {
        self.key.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// Bounds on a JWKS document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksLimits {
    /// Largest document accepted, in bytes.
    pub max_bytes: usize,
    /// Most entries in `keys`.
    pub max_keys: usize,
    /// Longest `kid`, in bytes.
    pub max_kid_len: usize,
}

impl Default for JwksLimits {
    fn default() -> Self {
        JwksLimits {
            max_bytes: 256 * 1024,
            max_keys: 64,
            max_kid_len: 256,
        }
    }
}

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// The document is over [`JwksLimits::max_bytes`].
    TooLarge,
    /// Not strict JSON, or not an object with a `keys` array.
    Malformed(String),
    /// No entry gave a usable key; the text summarises why.
    NoUsableKeys(String),
    /// More than [`JwksLimits::max_keys`] entries.
    TooManyKeys,
}

impl std::fmt::Display for JwksError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksError::TooLarge => f.write_str("JWKS document is too large"),
            JwksError::Malformed(why) => write!(f, "JWKS document is malformed: {why}"),
            JwksError::NoUsableKeys(why) => write!(f, "JWKS has no usable key: {why}"),
            JwksError::TooManyKeys => f.write_str("JWKS has too many keys"),
        }
    }
}

impl std::error::Error for JwksError {}

/// The outcome of looking a key up for a token.
#[derive(Debug)]
pub enum KeySelection<'a> {
    /// The one key to verify with.
    Found(&'a Jwk),
    /// The token's `kid` is not in the set (a caller may refetch, within its cooldown).
    UnknownKid,
    /// Several keys of the algorithm's type share the token's `kid`.
    AmbiguousKid,
    /// The token has no `kid` and several keys fit its algorithm.
    KidRequired,
    /// No key (under the token's `kid`, if any) fits the token's algorithm.
    NoKeyForAlgorithm,
}

/// The usable keys of a JWKS, and what was skipped.
#[derive(Clone, Debug)]
pub struct JwkSet {
    keys: Vec<Jwk>,
    /// Keys that were valid on their own but share a `kid` and `kty` with another entry.
    ambiguous: Vec<Jwk>,
    /// The (`kid`, `kty`) pairs declared by more than one entry.
    ambiguous_kids: Vec<(String, String)>,
    skipped: Vec<String>,
}

/// JWK members that hold private key material (RFC 7518 sections 6.2.2 and 6.3.2).
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

/// How many skip reasons [`JwksError::NoUsableKeys`] quotes before summarising the rest.
const MAX_REASONS_QUOTED: usize = 8;

/// Shows an untrusted string in a log line: control characters escaped, length capped.
fn show(text: &str) -> String {
    const MAX_CHARS: usize = 64;
    let mut shown: String = text
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        shown.push_str("...");
    }
    shown
}

/// Reads a required base64url member.
fn b64_member(entry: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    match entry.get(name) {
        None => Err(format!("member \"{name}\" is missing")),
        Some(Value::String(text)) => {
            crate::b64::decode(text).map_err(|e| format!("member \"{name}\": {e}"))
        }
        Some(_) => Err(format!("member \"{name}\" is not a string")),
    }
}

fn str_member<'a>(entry: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match entry.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(format!("member \"{name}\" is not a string")),
    }
}

/// Reads the `kid` of an entry, for labelling and for use.
fn read_kid(entry: &Map<String, Value>, limits: &JwksLimits) -> Result<Option<String>, String> {
    match str_member(entry, "kid").map_err(|_| "kid is not a string".to_string())? {
        None => Ok(None),
        Some(kid) if kid.len() > limits.max_kid_len => Err(format!(
            "kid is {} bytes, over {}",
            kid.len(),
            limits.max_kid_len
        )),
        Some(kid) => Ok(Some(kid.to_string())),
    }
}

/// Turns one JWKS entry into a usable key, or says why not.
// Out of line: see "Function size" in the crate docs.
#[inline(never)]
fn import_key(
    entry: &Map<String, Value>,
    kid: Option<String>,
    origin: KeyOrigin,
) -> Result<Jwk, String> {
    let kty = str_member(entry, "kty")?.ok_or("member \"kty\" is missing")?;
    if !matches!(kty, "RSA" | "EC" | "OKP" | "oct") {
        return Err(format!("unsupported kty \"{}\"", show(kty)));
    }
    if kty == "oct" && origin == KeyOrigin::Remote {
        return Err("oct (symmetric) keys are not accepted from a remote JWKS".to_string());
    }
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| entry.contains_key(**m)) {
        return Err(format!(
            "private key member \"{member}\" present; publish only public keys"
        ));
    }
    match entry.get("use") {
        None => {}
        Some(Value::String(key_use)) if key_use == "sig" => {}
        Some(Value::String(key_use)) => {
            return Err(format!("use is \"{}\", not \"sig\"", show(key_use)))
        }
        Some(_) => return Err("member \"use\" is not a string".to_string()),
    }
    match entry.get("key_ops") {
        None => {}
        Some(Value::Array(ops)) if !ops.iter().any(|op| op.as_str() == Some("verify")) => {
            return Err("key_ops lacks \"verify\"".to_string());
        }
        Some(Value::Array(_)) => {}
        Some(_) => return Err("member \"key_ops\" is not an array".to_string()),
    }
    let alg =
        match str_member(entry, "alg")? {
            None => None,
            Some(name) => Some(Algorithm::from_name(name).ok_or_else(|| {
                format!("alg \"{}\" is not a supported JWS algorithm", show(name))
            })?),
        };
    let key = match kty {
        "RSA" => PublicKey::rsa(&b64_member(entry, "n")?, &b64_member(entry, "e")?)?,
        "EC" => {
            let crv = str_member(entry, "crv")?.ok_or("member \"crv\" is missing")?;
            if !matches!(crv, "P-256" | "P-384" | "P-521") {
                return Err(format!("unsupported EC crv \"{}\"", show(crv)));
            }
            PublicKey::ec(crv, &b64_member(entry, "x")?, &b64_member(entry, "y")?)?
        }
        "OKP" => {
            let crv = str_member(entry, "crv")?.ok_or("member \"crv\" is missing")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported OKP crv \"{}\"", show(crv)));
            }
            PublicKey::ed25519(&b64_member(entry, "x")?)?
        }
        _ => PublicKey::hmac(&b64_member(entry, "k")?)?,
    };
    if let Some(alg) = alg {
        if !key.fits(alg) {
            return Err(format!(
                "alg {alg} does not fit the key ({})",
                key.describe()
            ));
        }
    }
    Ok(Jwk { kid, alg, key })
}

impl JwkSet {
    /// Parses a JWKS document: size cap first, then strict JSON (no duplicate members, bounded
    /// depth), then [`JwkSet::from_value`].
    pub fn parse(
        bytes: &[u8],
        origin: KeyOrigin,
        limits: &JwksLimits,
    ) -> Result<JwkSet, JwksError> {
        if bytes.len() > limits.max_bytes {
            return Err(JwksError::TooLarge);
        }
        let document = crate::json::parse_object(bytes, crate::json::MAX_DEPTH)
            .map_err(JwksError::Malformed)?;
        JwkSet::from_value(&Value::Object(document), origin, limits)
    }

    /// Imports an already parsed JWKS (`{"keys": [...]}`), e.g. from the local configuration.
    pub fn from_value(
        value: &Value,
        origin: KeyOrigin,
        limits: &JwksLimits,
    ) -> Result<JwkSet, JwksError> {
        let entries = match value.get("keys") {
            Some(Value::Array(entries)) => entries,
            Some(_) => return Err(JwksError::Malformed("\"keys\" is not an array".to_string())),
            None if value.is_object() => {
                return Err(JwksError::Malformed("no \"keys\" member".to_string()))
            }
            None => return Err(JwksError::Malformed("not a JSON object".to_string())),
        };
        if entries.len() > limits.max_keys {
            return Err(JwksError::TooManyKeys);
        }
        let mut imported: Vec<Jwk> = Vec::new();
        let mut skipped = Vec::new();
        // (kid, kty) as declared by every entry, usable or not: a JWKS that names two keys with
        // the same kid and type is ambiguous even if one of them is then skipped for another
        // reason, so a broken twin never silently decides which key a kid means.
        let mut declared: Vec<(&str, &str)> = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let Some(entry) = entry.as_object() else {
                skipped.push(format!("key #{index}: not a JSON object"));
                continue;
            };
            let kid = match read_kid(entry, limits) {
                Ok(kid) => kid,
                Err(why) => {
                    skipped.push(format!("key #{index}: {why}"));
                    continue;
                }
            };
            if let (Some(Value::String(kid)), Some(Value::String(kty))) =
                (entry.get("kid"), entry.get("kty"))
            {
                declared.push((kid, kty));
            }
            let label = match &kid {
                Some(kid) => format!("kid {}", show(kid)),
                None => format!("key #{index}"),
            };
            match import_key(entry, kid, origin) {
                Ok(jwk) => imported.push(jwk),
                Err(why) => skipped.push(format!("{label}: {why}")),
            }
        }

        let mut ambiguous_kids: Vec<(String, String)> = Vec::new();
        for (position, &(kid, kty)) in declared.iter().enumerate() {
            let twins = declared
                .iter()
                .filter(|&&other| other == (kid, kty))
                .count();
            let first = declared.iter().position(|&other| other == (kid, kty)) == Some(position);
            if twins > 1 && first {
                skipped.push(format!(
                    "kid {}: {twins} {} keys share this kid; none of them is used",
                    show(kid),
                    show(kty)
                ));
                ambiguous_kids.push((kid.to_string(), kty.to_string()));
            }
        }
        let is_ambiguous = |jwk: &Jwk| {
            jwk.kid.as_deref().is_some_and(|kid| {
                ambiguous_kids
                    .iter()
                    .any(|(k, t)| k == kid && t == jwk.key.kty())
            })
        };
        let (ambiguous, keys): (Vec<Jwk>, Vec<Jwk>) = imported.into_iter().partition(is_ambiguous);

        if keys.is_empty() {
            let why = if skipped.is_empty() {
                "the key set is empty".to_string()
            } else {
                let mut why = skipped
                    .iter()
                    .take(MAX_REASONS_QUOTED)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ");
                if skipped.len() > MAX_REASONS_QUOTED {
                    why.push_str(&format!(
                        "; and {} more",
                        skipped.len() - MAX_REASONS_QUOTED
                    ));
                }
                why
            };
            return Err(JwksError::NoUsableKeys(why));
        }
        Ok(JwkSet {
            keys,
            ambiguous,
            ambiguous_kids,
            skipped,
        })
    }

    /// Picks the key for a token with header `kid` (if any) and `alg`. See [`KeySelection`].
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> KeySelection<'_> {
        match kid {
            Some(kid) => {
                let has_kid = |jwk: &&Jwk| jwk.kid.as_deref() == Some(kid);
                if self
                    .ambiguous_kids
                    .iter()
                    .any(|(k, kty)| k == kid && kty == alg.kty())
                {
                    return KeySelection::AmbiguousKid;
                }
                let known = self.keys.iter().any(|jwk| has_kid(&jwk))
                    || self.ambiguous_kids.iter().any(|(k, _)| k == kid);
                let mut fitting = self.keys.iter().filter(has_kid).filter(|jwk| jwk.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(jwk), None) => KeySelection::Found(jwk),
                    // Cannot happen (same kid and kty are ambiguous); refuse if it ever does.
                    (Some(_), Some(_)) => KeySelection::AmbiguousKid,
                    (None, _) if known => KeySelection::NoKeyForAlgorithm,
                    (None, _) => KeySelection::UnknownKid,
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|jwk| jwk.fits(alg));
                let ambiguous_fit = self.ambiguous.iter().any(|jwk| jwk.fits(alg));
                match (fitting.next(), fitting.next(), ambiguous_fit) {
                    (None, None, false) => KeySelection::NoKeyForAlgorithm,
                    (Some(jwk), None, false) => KeySelection::Found(jwk),
                    _ => KeySelection::KidRequired,
                }
            }
        }
    }

    /// How many usable keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no usable key (never true: `parse` and `from_value` refuse such sets).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The `kid`s of the usable keys, in document order.
    pub fn kids(&self) -> Vec<&str> {
        self.keys
            .iter()
            .filter_map(|jwk| jwk.kid.as_deref())
            .collect()
    }

    /// Why each unusable entry was skipped, one line per key, for logs.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Whether the set holds an HMAC (`oct`) key, which only inline configuration may give.
    pub fn has_symmetric(&self) -> bool {
        self.keys.iter().any(|jwk| jwk.key.kty() == "oct")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64;
    use serde_json::json;

    const JWK_VECTORS: &str = include_str!("../tests/vectors/wycheproof/json_web_key_test.json");

    fn wycheproof(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    /// The first `publicKeyJwk` of a Wycheproof file, with `kid` replaced.
    fn sample_jwk(text: &str, kid: &str) -> Value {
        let mut jwk = wycheproof(text)["testGroups"][0]["publicKeyJwk"].clone();
        jwk["kid"] = json!(kid);
        jwk
    }
    fn rsa_jwk(kid: &str) -> Value {
        let mut jwk = sample_jwk(
            include_str!("../tests/vectors/wycheproof/rsa_pss_2048_sha256_mgf1_32_test.json"),
            kid,
        );
        jwk.as_object_mut().unwrap().remove("alg");
        jwk
    }
    fn p256_jwk(kid: &str) -> Value {
        sample_jwk(
            include_str!("../tests/vectors/wycheproof/ecdsa_secp256r1_sha256_p1363_test.json"),
            kid,
        )
    }
    fn p384_jwk(kid: &str) -> Value {
        sample_jwk(
            include_str!("../tests/vectors/wycheproof/ecdsa_secp384r1_sha384_p1363_test.json"),
            kid,
        )
    }
    fn p521_jwk(kid: &str) -> Value {
        sample_jwk(
            include_str!("../tests/vectors/wycheproof/ecdsa_secp521r1_sha512_p1363_test.json"),
            kid,
        )
    }
    fn ed25519_jwk(kid: &str) -> Value {
        sample_jwk(
            include_str!("../tests/vectors/wycheproof/ed25519_test.json"),
            kid,
        )
    }
    fn oct_jwk(kid: &str, len: usize) -> Value {
        json!({"kty": "oct", "kid": kid, "k": b64::encode(&vec![0x5a; len])})
    }
    fn with(mut jwk: Value, member: &str, value: Value) -> Value {
        jwk[member] = value;
        jwk
    }

    fn import(keys: Vec<Value>, origin: KeyOrigin) -> Result<JwkSet, JwksError> {
        JwkSet::from_value(&json!({ "keys": keys }), origin, &JwksLimits::default())
    }

    /// Imports `entry` next to a good key and returns the one skip reason; also checks that
    /// `entry` alone gives `NoUsableKeys` quoting that reason.
    fn skip_reason_from(entry: Value, origin: KeyOrigin) -> String {
        let set = import(vec![entry.clone(), p256_jwk("good")], origin).unwrap();
        assert_eq!(set.kids(), ["good"]);
        assert_eq!(set.skipped().len(), 1, "{:?}", set.skipped());
        let reason = set.skipped()[0].clone();
        match import(vec![entry], origin) {
            Err(JwksError::NoUsableKeys(why)) => assert_eq!(why, reason),
            other => panic!("expected NoUsableKeys, got {other:?}"),
        }
        reason
    }
    fn skip_reason(entry: Value) -> String {
        skip_reason_from(entry, KeyOrigin::Remote)
    }

    /// Verifies a compact JWS against a key set the way a caller would: header `alg` and `kid`,
    /// `select`, then `verify`.
    fn verify_compact(set: &JwkSet, jws: &str) -> bool {
        let parts: Vec<&str> = jws.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            return false;
        };
        let header = crate::json::parse_object(&b64::decode(header).unwrap(), 4).unwrap();
        let Some(alg) = header["alg"].as_str().and_then(Algorithm::from_name) else {
            return false;
        };
        let kid = header.get("kid").and_then(Value::as_str);
        let Ok(signature) = b64::decode(signature) else {
            return false;
        };
        match set.select(kid, alg) {
            KeySelection::Found(jwk) => jwk
                .key
                .verify(
                    alg,
                    format!("{header_b64}.{payload}", header_b64 = parts[0]).as_bytes(),
                    &signature,
                )
                .is_ok(),
            _ => false,
        }
    }

    #[test]
    fn wycheproof_json_web_keys() {
        let file = wycheproof(JWK_VECTORS);
        let mut ran = 0;
        for group in file["testGroups"].as_array().unwrap() {
            // "public" is what a verifier is given where the file has it; the "private" sets of
            // the HMAC groups are the shared secrets, which only local configuration may hold.
            let keys = group.get("public").unwrap_or(&group["private"]);
            for test in group["tests"].as_array().unwrap() {
                let jws = test["jws"].as_str().unwrap();
                let verdict = |origin| {
                    JwkSet::from_value(keys, origin, &JwksLimits::default())
                        .is_ok_and(|set| verify_compact(&set, jws))
                };
                let expected = test["result"] == "valid";
                if group["comment"] == "jws_mixedSymmetryKeyset" {
                    // Wycheproof wants keysets mixing secret (oct) and public keys refused
                    // (flags MixedKeySet, Ambiguous). Policy: from a remote JWKS the oct key is
                    // skipped, so the HS256 token fails; from local configuration a mixed set is
                    // allowed, because each key is bound to its own algorithms (the EC key can
                    // never serve HS256, the secret never ES256), so mixing cannot confuse them.
                    assert!(!expected);
                    assert!(!verdict(KeyOrigin::Remote));
                    assert!(verdict(KeyOrigin::Inline));
                } else {
                    assert_eq!(
                        verdict(KeyOrigin::Inline),
                        expected,
                        "tcId {}",
                        test["tcId"]
                    );
                    if keys["keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|k| k["kty"] == "oct")
                    {
                        assert!(
                            !verdict(KeyOrigin::Remote),
                            "tcId {} remote oct",
                            test["tcId"]
                        );
                    }
                }
                ran += 1;
            }
        }
        assert_eq!(ran, 26);
        // The specific reasons, as logged.
        let reason_of = |comment: &str| -> String {
            let group = file["testGroups"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["comment"] == comment)
                .unwrap();
            match JwkSet::from_value(&group["public"], KeyOrigin::Remote, &JwksLimits::default()) {
                Err(JwksError::NoUsableKeys(why)) => why,
                other => panic!("{comment}: {other:?}"),
            }
        };
        assert_eq!(
            reason_of("jws_rsa_roca_key"),
            "kid kid-rsa-roca-sign: RSA modulus has the ROCA fingerprint (CVE-2017-15361)"
        );
        let duplicate = file["testGroups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["comment"] == "jws_duplicate_kid")
            .unwrap();
        let JwksError::NoUsableKeys(why) = JwkSet::from_value(
            &duplicate["private"],
            KeyOrigin::Inline,
            &JwksLimits::default(),
        )
        .unwrap_err() else {
            panic!()
        };
        // The second key's "k" has non-zero trailing bits, so it is also skipped on its own.
        assert!(
            why.starts_with("kid kid-aes-sign: member \"k\": bad base64url"),
            "{why}"
        );
        assert!(
            why.ends_with("; kid kid-aes-sign: 2 oct keys share this kid; none of them is used"),
            "{why}"
        );
        assert_eq!(
            reason_of("keysize_too_small"),
            "kid RS256_1024: RSA modulus is 1024 bits, under 2048"
        );
        assert_eq!(
            reason_of("exponentOne"),
            "kid RS256_2048: RSA exponent 1 is under 3"
        );
        assert_eq!(
            reason_of("wrong_curve"),
            "kid kid-ec-sign: EC coordinate x is 32 bytes, P-384 needs 48"
        );
        assert_eq!(
            reason_of("invalid_point"),
            "kid kid-ec-sign: EC point is not on P-256"
        );
        assert_eq!(
            reason_of("wrong_algorithm"),
            "kid kid-ec-sign: alg \"ES521\" is not a supported JWS algorithm"
        );
        assert_eq!(
            reason_of("invalid_use"),
            "kid kid-ec-sign: use is \"enc\", not \"sig\""
        );
        assert_eq!(
            reason_of("wrong_kty"),
            "kid kid-ec-sign: member \"n\" is missing"
        );
    }

    #[test]
    fn wycheproof_public_key_jwks_import_and_verify() {
        let files: [(&str, &str, Algorithm); 12] = [
            (
                include_str!("../tests/vectors/wycheproof/ecdsa_secp256r1_sha256_p1363_test.json"),
                "publicKeyJwk",
                Algorithm::Es256,
            ),
            (
                include_str!("../tests/vectors/wycheproof/ecdsa_secp384r1_sha384_p1363_test.json"),
                "publicKeyJwk",
                Algorithm::Es384,
            ),
            (
                include_str!("../tests/vectors/wycheproof/ecdsa_secp521r1_sha512_p1363_test.json"),
                "publicKeyJwk",
                Algorithm::Es512,
            ),
            (
                include_str!("../tests/vectors/wycheproof/ed25519_test.json"),
                "publicKeyJwk",
                Algorithm::EdDsa,
            ),
            (
                include_str!("../tests/vectors/wycheproof/rsa_pss_2048_sha256_mgf1_32_test.json"),
                "publicKeyJwk",
                Algorithm::Ps256,
            ),
            (
                include_str!("../tests/vectors/wycheproof/rsa_pss_2048_sha384_mgf1_48_test.json"),
                "publicKeyJwk",
                Algorithm::Ps384,
            ),
            (
                include_str!("../tests/vectors/wycheproof/rsa_pss_4096_sha512_mgf1_64_test.json"),
                "publicKeyJwk",
                Algorithm::Ps512,
            ),
            (
                include_str!("../tests/vectors/wycheproof/rsa_signature_2048_sha256_test.json"),
                "keyJwk",
                Algorithm::Rs256,
            ),
            (
                include_str!("../tests/vectors/wycheproof/rsa_signature_2048_sha384_test.json"),
                "keyJwk",
                Algorithm::Rs384,
            ),
            (
                include_str!("../tests/vectors/wycheproof/rsa_signature_2048_sha512_test.json"),
                "keyJwk",
                Algorithm::Rs512,
            ),
            (
                include_str!("../tests/vectors/wycheproof/rsa_signature_3072_sha384_test.json"),
                "keyJwk",
                Algorithm::Rs384,
            ),
            (
                include_str!("../tests/vectors/wycheproof/rsa_signature_4096_sha512_test.json"),
                "keyJwk",
                Algorithm::Rs512,
            ),
        ];
        for (text, member, alg) in files {
            let mut imported = 0;
            for group in wycheproof(text)["testGroups"].as_array().unwrap() {
                let Some(jwk) = group.get(member) else {
                    continue;
                };
                let set = import(vec![jwk.clone()], KeyOrigin::Remote).unwrap();
                let KeySelection::Found(key) = set.select(Some("none"), alg) else {
                    panic!("{alg}: no key selected")
                };
                let (mut valid, mut invalid) = (None, None);
                for test in group["tests"].as_array().unwrap() {
                    let slot = if test["result"] == "valid" {
                        &mut valid
                    } else {
                        &mut invalid
                    };
                    slot.get_or_insert(test);
                }
                for (test, expected) in [(valid, true), (invalid, false)] {
                    let Some(test) = test else { continue };
                    let hex = |name: &str| {
                        let text = test[name].as_str().unwrap();
                        (0..text.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
                            .collect::<Vec<u8>>()
                    };
                    assert_eq!(
                        key.key.verify(alg, &hex("msg"), &hex("sig")).is_ok(),
                        expected
                    );
                }
                imported += 1;
            }
            assert!(imported > 0, "{alg}");
        }
    }

    #[test]
    fn every_rejection_reason_skips_only_that_key() {
        // kty and crv.
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "kty", json!("RSA-PSS"))),
            "kid k: unsupported kty \"RSA-PSS\""
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "kty", json!(7))),
            "kid k: member \"kty\" is not a string"
        );
        let mut no_kty = rsa_jwk("k");
        no_kty.as_object_mut().unwrap().remove("kty");
        assert_eq!(skip_reason(no_kty), "kid k: member \"kty\" is missing");
        assert_eq!(
            skip_reason(with(p256_jwk("k"), "crv", json!("P-192"))),
            "kid k: unsupported EC crv \"P-192\""
        );
        assert_eq!(
            skip_reason(with(p256_jwk("k"), "crv", json!("secp256k1"))),
            "kid k: unsupported EC crv \"secp256k1\""
        );
        assert_eq!(
            skip_reason(with(ed25519_jwk("k"), "crv", json!("Ed448"))),
            "kid k: unsupported OKP crv \"Ed448\""
        );
        assert_eq!(
            skip_reason(with(ed25519_jwk("k"), "crv", json!("X25519"))),
            "kid k: unsupported OKP crv \"X25519\""
        );

        // RSA size and exponent.
        let n = b64::decode(rsa_jwk("k")["n"].as_str().unwrap()).unwrap();
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "n", json!(b64::encode(&n[..128])))),
            "kid k: RSA modulus is 1024 bits, under 2048"
        );
        let mut huge = vec![0xffu8; 1025];
        huge[0] = 0x01;
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "n", json!(b64::encode(&huge)))),
            "kid k: RSA modulus is 8193 bits, over 8192"
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "e", json!("AQ"))),
            "kid k: RSA exponent 1 is under 3"
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "e", json!("Ag"))),
            "kid k: RSA exponent 2 is under 3"
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "e", json!("AQAA"))),
            "kid k: RSA exponent 65536 is even"
        );
        assert!(skip_reason(with(rsa_jwk("k"), "n", json!("AQAB=")))
            .starts_with("kid k: member \"n\": bad base64url"));
        assert!(skip_reason(with(rsa_jwk("k"), "n", json!(7)))
            .starts_with("kid k: member \"n\" is not a string"));

        // EC points.
        let y = b64::decode(p256_jwk("k")["y"].as_str().unwrap()).unwrap();
        let mut off = y.clone();
        off[31] ^= 1;
        assert_eq!(
            skip_reason(with(p256_jwk("k"), "y", json!(b64::encode(&off)))),
            "kid k: EC point is not on P-256"
        );
        assert_eq!(
            skip_reason(with(p256_jwk("k"), "y", json!(b64::encode(&y[1..])))),
            "kid k: EC coordinate y is 31 bytes, P-256 needs 32"
        );
        assert_eq!(
            skip_reason(with(
                p256_jwk("k"),
                "x",
                json!(b64::encode(&[&[0u8][..], &y].concat()))
            )),
            "kid k: EC coordinate x is 33 bytes, P-256 needs 32"
        );
        assert_eq!(
            skip_reason(with(p384_jwk("k"), "crv", json!("P-521"))),
            "kid k: EC coordinate x is 48 bytes, P-521 needs 66"
        );

        // Ed25519 encodings that do not decode, and wrong lengths.
        let undecodable = (2u8..=255)
            .map(|y| {
                let mut bytes = [0u8; 32];
                bytes[0] = y;
                bytes
            })
            .find(|bytes| ed25519_dalek::VerifyingKey::from_bytes(bytes).is_err())
            .unwrap();
        assert_eq!(
            skip_reason(with(
                ed25519_jwk("k"),
                "x",
                json!(b64::encode(&undecodable))
            )),
            "kid k: Ed25519 key does not decode to a curve point"
        );
        assert_eq!(
            skip_reason(with(ed25519_jwk("k"), "x", json!(b64::encode(&[9; 31])))),
            "kid k: Ed25519 key is 31 bytes, not 32"
        );

        // oct: never from a remote JWKS; too short even locally.
        assert_eq!(
            skip_reason_from(oct_jwk("k", 64), KeyOrigin::Remote),
            "kid k: oct (symmetric) keys are not accepted from a remote JWKS"
        );
        assert_eq!(
            skip_reason_from(oct_jwk("k", 16), KeyOrigin::Inline),
            "kid k: HMAC secret is 16 bytes, under 32"
        );
        assert_eq!(
            import(vec![oct_jwk("k", 32)], KeyOrigin::Inline)
                .unwrap()
                .len(),
            1
        );

        // use and key_ops.
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "use", json!("enc"))),
            "kid k: use is \"enc\", not \"sig\""
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "use", json!(["sig"]))),
            "kid k: member \"use\" is not a string"
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "key_ops", json!(["encrypt", "sign"]))),
            "kid k: key_ops lacks \"verify\""
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "key_ops", json!([]))),
            "kid k: key_ops lacks \"verify\""
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "key_ops", json!("verify"))),
            "kid k: member \"key_ops\" is not an array"
        );
        let ok = with(
            with(rsa_jwk("k"), "key_ops", json!(["sign", "verify"])),
            "use",
            json!("sig"),
        );
        assert_eq!(import(vec![ok], KeyOrigin::Remote).unwrap().len(), 1);

        // alg: unknown, not a JWS algorithm, or not fitting the key.
        for alg in ["ES224", "RSA-OAEP", "none", "A256GCM", "rs256"] {
            assert_eq!(
                skip_reason(with(rsa_jwk("k"), "alg", json!(alg))),
                format!("kid k: alg \"{alg}\" is not a supported JWS algorithm")
            );
        }
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "alg", json!(256))),
            "kid k: member \"alg\" is not a string"
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "alg", json!("ES256"))),
            "kid k: alg ES256 does not fit the key (RSA 2048-bit)"
        );
        assert_eq!(
            skip_reason(with(p256_jwk("k"), "alg", json!("ES384"))),
            "kid k: alg ES384 does not fit the key (EC P-256)"
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "alg", json!("HS256"))),
            "kid k: alg HS256 does not fit the key (RSA 2048-bit)"
        );
        assert_eq!(
            skip_reason_from(
                with(oct_jwk("k", 32), "alg", json!("HS512")),
                KeyOrigin::Inline
            ),
            "kid k: alg HS512 does not fit the key (oct 32-byte)"
        );

        // kid.
        assert_eq!(
            skip_reason(rsa_jwk(&"x".repeat(257))),
            "key #0: kid is 257 bytes, over 256"
        );
        assert_eq!(
            import(vec![rsa_jwk(&"x".repeat(256))], KeyOrigin::Remote)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "kid", json!(42))),
            "key #0: kid is not a string"
        );
        assert_eq!(
            skip_reason(with(rsa_jwk("k"), "kid", Value::Null)),
            "key #0: kid is not a string"
        );
        // Untrusted kids are escaped and shortened in log lines.
        let reason = skip_reason(with(rsa_jwk("line\nbreak"), "use", json!("enc")));
        assert_eq!(reason, "kid line\\nbreak: use is \"enc\", not \"sig\"");
        let reason = skip_reason(with(rsa_jwk(&"y".repeat(200)), "use", json!("enc")));
        assert!(
            reason.starts_with(&format!("kid {}...: use", "y".repeat(64))),
            "{reason}"
        );

        // Private key members, whatever the kty.
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
            assert_eq!(
                skip_reason(with(rsa_jwk("k"), member, json!("AQAB"))),
                format!("kid k: private key member \"{member}\" present; publish only public keys")
            );
        }
        assert!(skip_reason(with(p256_jwk("k"), "d", json!("AQAB")))
            .contains("private key member \"d\""));
        assert!(skip_reason(with(ed25519_jwk("k"), "d", json!("AQAB")))
            .contains("private key member \"d\""));

        // Entries that are not objects.
        assert_eq!(skip_reason(json!("RSA")), "key #0: not a JSON object");
        assert_eq!(skip_reason(json!(null)), "key #0: not a JSON object");
    }

    #[test]
    fn document_level_errors() {
        let limits = JwksLimits::default();
        let good = serde_json::to_vec(&json!({"keys": [p256_jwk("a")]})).unwrap();
        assert_eq!(
            JwkSet::parse(&good, KeyOrigin::Remote, &limits)
                .unwrap()
                .kids(),
            ["a"]
        );

        let tight = JwksLimits {
            max_bytes: good.len() - 1,
            ..JwksLimits::default()
        };
        assert_eq!(
            JwkSet::parse(&good, KeyOrigin::Remote, &tight).unwrap_err(),
            JwksError::TooLarge
        );
        let junk = vec![b'x'; limits.max_bytes + 1];
        assert_eq!(
            JwkSet::parse(&junk, KeyOrigin::Remote, &limits).unwrap_err(),
            JwksError::TooLarge
        );

        for bad in [
            &b"not json"[..],
            b"[]",
            b"{}",
            b"{\"keys\": {}}",
            b"{\"keys\": [], \"keys\": []}",
            b"{\"keys\": []} trailing",
            b"\xff",
        ] {
            assert!(
                matches!(
                    JwkSet::parse(bad, KeyOrigin::Remote, &limits),
                    Err(JwksError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // Duplicate members inside a key are refused with the whole document (strict JSON).
        let duplicate = br#"{"keys": [{"kty": "EC", "kty": "RSA"}]}"#;
        assert!(matches!(
            JwkSet::parse(duplicate, KeyOrigin::Remote, &limits),
            Err(JwksError::Malformed(_))
        ));
        let deep = format!(
            "{{\"keys\": [{{\"x5c\": {}{}}}]}}",
            "[".repeat(20),
            "]".repeat(20)
        );
        assert!(matches!(
            JwkSet::parse(deep.as_bytes(), KeyOrigin::Remote, &limits),
            Err(JwksError::Malformed(_))
        ));

        let many: Vec<Value> = (0..65).map(|i| p256_jwk(&format!("k{i}"))).collect();
        assert_eq!(
            import(many.clone(), KeyOrigin::Remote).unwrap_err(),
            JwksError::TooManyKeys
        );
        assert_eq!(
            import(many[..64].to_vec(), KeyOrigin::Remote)
                .unwrap()
                .len(),
            64
        );

        assert_eq!(
            import(vec![], KeyOrigin::Remote).unwrap_err(),
            JwksError::NoUsableKeys("the key set is empty".to_string())
        );
        let bad: Vec<Value> = (0..20)
            .map(|i| with(rsa_jwk(&format!("b{i}")), "use", json!("enc")))
            .collect();
        let JwksError::NoUsableKeys(why) = import(bad, KeyOrigin::Remote).unwrap_err() else {
            panic!()
        };
        assert!(why.starts_with("kid b0: use is \"enc\""), "{why}");
        assert!(why.ends_with("; and 12 more"), "{why}");
        assert!(JwkSet::from_value(&json!([]), KeyOrigin::Inline, &limits).is_err());
    }

    #[test]
    fn select_by_kid_and_algorithm() {
        let set = import(
            vec![
                rsa_jwk("r1"),
                p256_jwk("e1"),
                ed25519_jwk("ed1"),
                oct_jwk("h1", 64),
            ],
            KeyOrigin::Inline,
        )
        .unwrap();
        assert_eq!(set.len(), 4);
        assert!(!set.is_empty());
        assert_eq!(set.kids(), ["r1", "e1", "ed1", "h1"]);
        assert!(set.skipped().is_empty());
        let found = |selection: KeySelection<'_>| match selection {
            KeySelection::Found(jwk) => jwk.kid.clone().unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(set.has_symmetric());
        assert!(
            !import(vec![rsa_jwk("r1"), oct_jwk("h1", 64)], KeyOrigin::Remote)
                .unwrap()
                .has_symmetric()
        );
        assert_eq!(found(set.select(Some("r1"), Algorithm::Rs256)), "r1");
        assert_eq!(found(set.select(Some("r1"), Algorithm::Ps512)), "r1");
        assert_eq!(found(set.select(Some("e1"), Algorithm::Es256)), "e1");
        assert_eq!(found(set.select(Some("ed1"), Algorithm::EdDsa)), "ed1");
        assert_eq!(found(set.select(Some("h1"), Algorithm::Hs512)), "h1");
        // Known kid, wrong algorithm for its key: HS256 with the RSA key, ES384 with P-256, ...
        for (kid, alg) in [
            ("r1", Algorithm::Hs256),
            ("r1", Algorithm::Es256),
            ("r1", Algorithm::EdDsa),
            ("e1", Algorithm::Es384),
            ("e1", Algorithm::Hs256),
            ("ed1", Algorithm::Rs256),
            ("h1", Algorithm::Rs256),
        ] {
            assert!(
                matches!(set.select(Some(kid), alg), KeySelection::NoKeyForAlgorithm),
                "{kid} {alg}"
            );
        }
        // kid is compared as exact bytes.
        for kid in ["R1", "r1 ", " r1", "r", "r1\0", ""] {
            assert!(
                matches!(
                    set.select(Some(kid), Algorithm::Rs256),
                    KeySelection::UnknownKid
                ),
                "{kid:?}"
            );
        }
        // No kid: the one key that fits, or none.
        assert_eq!(found(set.select(None, Algorithm::Rs256)), "r1");
        assert_eq!(found(set.select(None, Algorithm::Es256)), "e1");
        assert!(matches!(
            set.select(None, Algorithm::Es512),
            KeySelection::NoKeyForAlgorithm
        ));

        // Several keys fit: the token must say which.
        let two = import(
            vec![rsa_jwk("r1"), rsa_jwk("r2"), p256_jwk("e1")],
            KeyOrigin::Remote,
        )
        .unwrap();
        assert!(matches!(
            two.select(None, Algorithm::Rs256),
            KeySelection::KidRequired
        ));
        assert_eq!(found(two.select(Some("r2"), Algorithm::Ps256)), "r2");
        assert_eq!(found(two.select(None, Algorithm::Es256)), "e1");

        // A key's own alg restricts it.
        let restricted = import(
            vec![with(rsa_jwk("r1"), "alg", json!("RS256"))],
            KeyOrigin::Remote,
        )
        .unwrap();
        assert_eq!(found(restricted.select(Some("r1"), Algorithm::Rs256)), "r1");
        assert!(matches!(
            restricted.select(Some("r1"), Algorithm::Ps256),
            KeySelection::NoKeyForAlgorithm
        ));
        assert!(matches!(
            restricted.select(None, Algorithm::Rs384),
            KeySelection::NoKeyForAlgorithm
        ));

        // Keys without a kid are found only by tokens without one.
        let anonymous = import(vec![rsa_jwk("x"), p256_jwk("y")], KeyOrigin::Remote).unwrap();
        let mut no_kid = anonymous.clone();
        for jwk in &mut no_kid.keys {
            jwk.kid = None;
        }
        assert!(no_kid.kids().is_empty());
        assert!(matches!(
            no_kid.select(Some("x"), Algorithm::Rs256),
            KeySelection::UnknownKid
        ));
        assert!(matches!(
            no_kid.select(None, Algorithm::Rs256),
            KeySelection::Found(_)
        ));
        let mut rsa_a = rsa_jwk("a");
        rsa_a.as_object_mut().unwrap().remove("kid");
        let two_anonymous = import(vec![rsa_a.clone(), rsa_a], KeyOrigin::Remote).unwrap();
        assert_eq!(two_anonymous.len(), 2);
        assert!(matches!(
            two_anonymous.select(None, Algorithm::Rs256),
            KeySelection::KidRequired
        ));
    }

    #[test]
    fn wrong_algorithm_keys_do_not_fit() {
        // ES256 token, only a P-384 key; ES384 token, only P-521; EdDSA with RSA; HS256 with RSA.
        let cases = [
            (p384_jwk("k"), Algorithm::Es256),
            (p521_jwk("k"), Algorithm::Es384),
            (p256_jwk("k"), Algorithm::Es512),
            (rsa_jwk("k"), Algorithm::EdDsa),
            (rsa_jwk("k"), Algorithm::Hs256),
            (ed25519_jwk("k"), Algorithm::Es256),
        ];
        for (jwk, alg) in cases {
            let set = import(vec![jwk], KeyOrigin::Remote).unwrap();
            let KeySelection::NoKeyForAlgorithm = set.select(Some("k"), alg) else {
                panic!("{alg}")
            };
            let KeySelection::NoKeyForAlgorithm = set.select(None, alg) else {
                panic!("{alg}")
            };
            assert!(!set.keys[0].fits(alg));
        }
    }

    #[test]
    fn duplicate_kid_and_kty_is_ambiguous() {
        let set = import(
            vec![
                rsa_jwk("dup"),
                p256_jwk("dup"),
                with(rsa_jwk("dup"), "alg", json!("PS256")),
                rsa_jwk("other"),
            ],
            KeyOrigin::Remote,
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.kids(), ["dup", "other"]);
        assert_eq!(
            set.skipped(),
            ["kid dup: 2 RSA keys share this kid; none of them is used"]
        );
        assert!(matches!(
            set.select(Some("dup"), Algorithm::Rs256),
            KeySelection::AmbiguousKid
        ));
        assert!(matches!(
            set.select(Some("dup"), Algorithm::Ps256),
            KeySelection::AmbiguousKid
        ));
        // Same kid, other kty: still unique.
        let KeySelection::Found(jwk) = set.select(Some("dup"), Algorithm::Es256) else {
            panic!()
        };
        assert_eq!(jwk.key.kty(), "EC");
        assert!(matches!(
            set.select(Some("dup"), Algorithm::Es384),
            KeySelection::NoKeyForAlgorithm
        ));
        assert!(matches!(
            set.select(Some("other"), Algorithm::Rs256),
            KeySelection::Found(_)
        ));
        // Without a kid, the ambiguous keys still count as candidates.
        assert!(matches!(
            set.select(None, Algorithm::Rs256),
            KeySelection::KidRequired
        ));

        // Only an ambiguous pair: nothing usable.
        let only = import(vec![oct_jwk("s", 32), oct_jwk("s", 64)], KeyOrigin::Inline).unwrap_err();
        assert_eq!(
            only,
            JwksError::NoUsableKeys(
                "kid s: 2 oct keys share this kid; none of them is used".to_string()
            )
        );
        // A twin that is skipped for another reason still makes the kid ambiguous.
        let broken_twin = import(
            vec![
                rsa_jwk("dup"),
                with(rsa_jwk("dup"), "use", json!("enc")),
                p256_jwk("e"),
            ],
            KeyOrigin::Remote,
        )
        .unwrap();
        assert_eq!(broken_twin.kids(), ["e"]);
        assert_eq!(
            broken_twin.skipped(),
            [
                "kid dup: use is \"enc\", not \"sig\"",
                "kid dup: 2 RSA keys share this kid; none of them is used"
            ]
        );
        assert!(matches!(
            broken_twin.select(Some("dup"), Algorithm::Rs256),
            KeySelection::AmbiguousKid
        ));
        // Three under one kid.
        let three = import(
            vec![p256_jwk("t"), p384_jwk("t"), p521_jwk("t"), rsa_jwk("u")],
            KeyOrigin::Remote,
        )
        .unwrap();
        assert_eq!(
            three.skipped(),
            ["kid t: 3 EC keys share this kid; none of them is used"]
        );
        assert!(matches!(
            three.select(Some("t"), Algorithm::Es384),
            KeySelection::AmbiguousKid
        ));
    }

    #[test]
    fn jwk_fits_combines_key_and_alg() {
        let set = import(
            vec![with(rsa_jwk("r"), "alg", json!("PS384")), rsa_jwk("s")],
            KeyOrigin::Remote,
        )
        .unwrap();
        let fitting = |jwk: &Jwk| Algorithm::ALL.into_iter().filter(|a| jwk.fits(*a)).count();
        assert_eq!(fitting(&set.keys[0]), 1);
        assert_eq!(set.keys[0].alg, Some(Algorithm::Ps384));
        assert_eq!(fitting(&set.keys[1]), 6);
        assert_eq!(set.keys[1].alg, None);
    }
}
