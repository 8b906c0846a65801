//! JWS algorithms (RFC 7518 section 3, RFC 8037) and signature verification.
//!
//! The module is shaped around one rule from RFC 8725: the key decides the algorithm, the token
//! only names it. A [`PublicKey`] can only be built through constructors that validate it (RSA
//! modulus 2048..=8192 bits with a sane exponent and no ROCA fingerprint, EC points on their
//! curve, canonical Ed25519 points of full order, HMAC secrets of at least 32 bytes), so every
//! value of the type is usable; [`PublicKey::fits`] then says which algorithms that key may serve
//! (an RSA key never serves `HS256`, a P-384 key never serves `ES256`), and
//! [`PublicKey::verify`] refuses any algorithm the key does not fit before touching the bytes.
//!
//! Signature encodings are checked for their exact JWS form before any arithmetic: RSA signatures
//! must be exactly the modulus length, ECDSA signatures exactly `R || S` of 64/96/132 bytes with
//! `r` and `s` in `[1, n-1]` (so DER is refused and the "psychic signature" zero values of
//! CVE-2022-21449 fail), Ed25519 signatures exactly 64 bytes and verified strictly, HMAC tags full
//! length and compared in constant time. High-S ECDSA signatures are accepted: JWS (RFC 7518
//! section 3.4) does not require low-S, and common signers do not normalise.
//!
//! Verification speed is shaped for where it runs, wasm under V8, which has no 64x64->128-bit
//! multiply: RSA (`rsa_vt`), ECDSA on P-256, P-384 and P-521 (`ecdsa_vt`, one generic
//! implementation; `p256_vt` is P-256's field) and Ed25519 (`ed25519_vt`) are our own
//! variable-time code on 32-bit limbs (every value a verifier handles is public, so nothing
//! needs to be constant-time; the HMAC tag comparison is), sharing the multi-precision helpers
//! of `limbs`, with what a key allows to precompute (Montgomery constants, tables of multiples)
//! built once, when the key is imported. No signature crate is left among the dependencies:
//! each implementation comes with property tests against a reference crate (`properties.rs`;
//! `rsa`, `p256`, `p384`, `p521`, `curve25519-dalek` and `ed25519-dalek` are dev-dependencies)
//! and passes the Wycheproof vectors below, natively and in wasm32.
//! `examples/crypto_candidates.rs` measures the choices side by side.
//!
//! Nothing here needs randomness, so the crate builds for `wasm32-wasip1` without `getrandom`.
//!
//! # Why a crate of its own
//!
//! It is the part of tollgate whose speed is in its loops: the module builds for size
//! (`[profile.release]` in the workspace's `Cargo.toml`, for the 500 KB target), and at
//! `opt-level = "s"` these loops were not unrolled and their helpers not inlined, which made
//! every verification about twice as slow. A crate keeps `opt-level = 3` for this code alone
//! (~130 KB of the module). The engine reaches it as `tollgate::crypto`. SipHash
//! ([`siphash`]), which a request with a remembered token runs over its whole token, is here
//! for the same reason.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha384, Sha512};

mod ecdsa_vt;
mod ed25519_vt;
mod limbs;
mod p256_vt;
#[cfg(test)]
mod properties;
mod rsa_vt;
pub mod siphash;

use ecdsa_vt::{EcdsaError, P384Key, P521Key};
use ed25519_vt::Ed25519Key;
use p256_vt::P256Key;
use rsa_vt::{RsaHash, RsaPublic};

/// A JWS signature algorithm this gateway can verify. `none` is deliberately not representable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256, MGF1 with SHA-256, 32-byte salt.
    Ps256,
    /// RSASSA-PSS with SHA-384, MGF1 with SHA-384, 48-byte salt.
    Ps384,
    /// RSASSA-PSS with SHA-512, MGF1 with SHA-512, 64-byte salt.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// ECDSA on P-521 with SHA-512.
    Es512,
    /// EdDSA; only Ed25519 is supported (RFC 8037).
    EdDsa,
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
}

/// The hash function an algorithm uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HashAlg {
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    fn output_len(self) -> usize {
        match self {
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    fn digest(self, input: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha256 => Sha256::digest(input).to_vec(),
            HashAlg::Sha384 => Sha384::digest(input).to_vec(),
            HashAlg::Sha512 => Sha512::digest(input).to_vec(),
        }
    }
}

/// The bytes a signature covers, with their SHA-256 when the caller has it already: a JWS's
/// signing input is the first bytes of the token, so the pass that hashes the token yields it
/// (`gate::TokenDigest::prefix_sha256`), and RS256, PS256 and ES256 need not hash it again.
#[derive(Clone, Copy, Debug)]
pub struct SignedBytes<'a> {
    bytes: &'a [u8],
    sha256: Option<&'a [u8; 32]>,
}

impl<'a> SignedBytes<'a> {
    pub fn new(bytes: &'a [u8]) -> SignedBytes<'a> {
        SignedBytes {
            bytes,
            sha256: None,
        }
    }

    /// `sha256` must be the SHA-256 of `bytes` (debug builds check it).
    pub fn with_sha256(bytes: &'a [u8], sha256: &'a [u8; 32]) -> SignedBytes<'a> {
        debug_assert_eq!(Sha256::digest(bytes).as_slice(), sha256.as_slice());
        SignedBytes {
            bytes,
            sha256: Some(sha256),
        }
    }

    fn digest(self, hash: HashAlg) -> Vec<u8> {
        match (hash, self.sha256) {
            (HashAlg::Sha256, Some(known)) => known.to_vec(),
            _ => hash.digest(self.bytes),
        }
    }
}

impl Algorithm {
    /// Every supported algorithm, in declaration order.
    pub const ALL: [Algorithm; 13] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::Es512,
        Algorithm::EdDsa,
        Algorithm::Hs256,
        Algorithm::Hs384,
        Algorithm::Hs512,
    ];

    /// Looks up an algorithm by its exact, case-sensitive JOSE name. `none` and every name not
    /// in [`Algorithm::ALL`] give `None`.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The JOSE name, as in a JWS header `alg`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Es512 => "ES512",
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Hs256 => "HS256",
            Algorithm::Hs384 => "HS384",
            Algorithm::Hs512 => "HS512",
        }
    }

    /// Whether this is an HMAC algorithm (shared secret rather than a public key).
    pub fn is_symmetric(self) -> bool {
        matches!(self, Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512)
    }

    /// The JWK `kty` of keys that can serve this algorithm: `"RSA"`, `"EC"`, `"OKP"` or `"oct"`.
    pub fn kty(self) -> &'static str {
        match self {
            Algorithm::Rs256
            | Algorithm::Rs384
            | Algorithm::Rs512
            | Algorithm::Ps256
            | Algorithm::Ps384
            | Algorithm::Ps512 => "RSA",
            Algorithm::Es256 | Algorithm::Es384 | Algorithm::Es512 => "EC",
            Algorithm::EdDsa => "OKP",
            Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512 => "oct",
        }
    }

    /// Whether the signature covers the SHA-256 of the signing input (RS256, PS256, ES256),
    /// which [`SignedBytes::with_sha256`] may then hand in.
    pub fn signs_a_sha256_digest(self) -> bool {
        matches!(self, Algorithm::Rs256 | Algorithm::Ps256 | Algorithm::Es256)
    }

    fn hash(self) -> HashAlg {
        match self {
            Algorithm::Rs256 | Algorithm::Ps256 | Algorithm::Es256 | Algorithm::Hs256 => {
                HashAlg::Sha256
            }
            Algorithm::Rs384 | Algorithm::Ps384 | Algorithm::Es384 | Algorithm::Hs384 => {
                HashAlg::Sha384
            }
            // Ed25519 hashes internally with SHA-512; the value is unused for EdDSA.
            Algorithm::Rs512
            | Algorithm::Ps512
            | Algorithm::Es512
            | Algorithm::EdDsa
            | Algorithm::Hs512 => HashAlg::Sha512,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a signature did not verify; a short, fixed reason for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureError(pub &'static str);

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for SignatureError {}

const BAD_SIGNATURE: SignatureError = SignatureError("signature does not verify");

/// Smallest accepted RSA modulus, in bits (RFC 7518 section 3.3 and 3.5 say 2048 or larger).
pub const RSA_MIN_BITS: usize = 2048;
/// Largest accepted RSA modulus, in bits: bigger keys only cost verification time.
pub const RSA_MAX_BITS: usize = 8192;
/// Largest accepted RSA public exponent (the `rsa` crate's bound, against "RSADoS").
pub const RSA_MAX_EXPONENT: u64 = (1 << 33) - 1;
/// Smallest accepted HMAC secret: the output length of SHA-256 (RFC 7518 section 3.2).
pub const HMAC_MIN_SECRET_LEN: usize = 32;

/// An RSA public key whose modulus and exponent passed [`PublicKey::rsa`]'s checks.
#[derive(Clone)]
pub struct RsaKey {
    key: RsaPublic,
    bits: usize,
}

impl RsaKey {
    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }
}

/// An HMAC secret of at least [`HMAC_MIN_SECRET_LEN`] bytes. Its `Debug` output shows only the
/// length.
#[derive(Clone)]
pub struct HmacSecret(Vec<u8>);

impl HmacSecret {
    /// The secret length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: empty secrets are refused at construction.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A verification key that passed its validity checks. Build one with [`PublicKey::rsa`],
/// [`PublicKey::ec`], [`PublicKey::ed25519`] or [`PublicKey::hmac`] (or import it from a JWK with
/// `tollgate::jwk`).
#[derive(Clone)]
pub enum PublicKey {
    /// RSA, for RS* and PS*.
    Rsa(RsaKey),
    /// P-256, for ES256.
    P256(P256Key),
    /// P-384, for ES384.
    P384(P384Key),
    /// P-521, for ES512.
    P521(P521Key),
    /// Ed25519, for EdDSA.
    Ed25519(Ed25519Key),
    /// A shared HMAC secret, for HS* when it is at least as long as the hash output.
    Hmac(HmacSecret),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Strips leading zero octets (JWK integers should have none, but some libraries add one).
fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

/// Bit length of a big-endian unsigned integer without leading zero octets.
fn bit_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        None => 0,
        Some(&first) => (bytes.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
    }
}

/// `n mod p` for a big-endian `n` and a small `p`.
fn mod_small(n: &[u8], p: u32) -> u32 {
    let p = u64::from(p);
    // A partial leading word byte by byte, then whole 32-bit words: acc < p < 2^32, so
    // `acc << 32 | word` fits in 64 bits, and a 2048-bit modulus takes 64 divisions, not 256.
    let (head, words) = n.split_at(n.len() % 4);
    let acc = head
        .iter()
        .fold(0u64, |acc, &byte| ((acc << 8) | u64::from(byte)) % p);
    let rem = words.chunks_exact(4).fold(acc, |acc, word| {
        let word = word
            .iter()
            .fold(0u64, |w, &byte| (w << 8) | u64::from(byte));
        ((acc << 32) | word) % p
    });
    // rem < p <= u32::MAX
    u32::try_from(rem).unwrap_or(u32::MAX)
}

/// Whether `r` lies in the multiplicative subgroup generated by 65537 modulo the prime `p`.
fn in_subgroup_of_65537(r: u32, p: u32) -> bool {
    let p = u64::from(p);
    let g = 65537 % p;
    let r = u64::from(r);
    let mut x = 1u64;
    // The subgroup has at most p - 1 elements; the loop returns to 1 once it is exhausted.
    loop {
        if x == r {
            return true;
        }
        x = x * g % p;
        if x == 1 {
            return false;
        }
    }
}

/// The odd primes 3..=701. Together with 2, they are the 126 primes whose product is the ROCA
/// generator modulus M for 1984..=3936-bit keys; larger keys use a superset, so every ROCA key we
/// could be offered (>= 2048 bits) has its modulus in the subgroup <65537> mod each of them.
const SMALL_PRIMES: [u32; 125] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167, 173, 179, 181, 191, 193,
    197, 199, 211, 223, 227, 229, 233, 239, 241, 251, 257, 263, 269, 271, 277, 281, 283, 293, 307,
    311, 313, 317, 331, 337, 347, 349, 353, 359, 367, 373, 379, 383, 389, 397, 401, 409, 419, 421,
    431, 433, 439, 443, 449, 457, 461, 463, 467, 479, 487, 491, 499, 503, 509, 521, 523, 541, 547,
    557, 563, 569, 571, 577, 587, 593, 599, 601, 607, 613, 617, 619, 631, 641, 643, 647, 653, 659,
    661, 673, 677, 683, 691, 701,
];

/// Refuses moduli with a factor under 702 and moduli with the ROCA fingerprint (CVE-2017-15361,
/// Infineon keys whose primes are `k * M + (65537^a mod M)`). The fingerprint test is the
/// published one: `n mod p` lies in `<65537>` for every prime `p` dividing M. For the primes used
/// here a random modulus passes it with probability about 2^-167.
fn check_modulus_structure(n: &[u8]) -> Result<(), String> {
    let mut fingerprint = true;
    for &p in &SMALL_PRIMES {
        let r = mod_small(n, p);
        if r == 0 {
            return Err(format!("RSA modulus has the small factor {p}"));
        }
        if fingerprint && !in_subgroup_of_65537(r, p) {
            fingerprint = false;
        }
    }
    if fingerprint {
        return Err("RSA modulus has the ROCA fingerprint (CVE-2017-15361)".to_string());
    }
    Ok(())
}

impl PublicKey {
    /// An RSA key from its big-endian modulus and exponent (leading zero octets are tolerated).
    /// Refuses moduli outside 2048..=8192 bits, exponents under 3, even or above 2^33 - 1,
    /// moduli with small factors or the ROCA fingerprint.
    pub fn rsa(n: &[u8], e: &[u8]) -> Result<PublicKey, String> {
        let n = strip_leading_zeros(n);
        let e = strip_leading_zeros(e);
        let bits = bit_len(n);
        if bits < RSA_MIN_BITS {
            return Err(format!("RSA modulus is {bits} bits, under {RSA_MIN_BITS}"));
        }
        if bits > RSA_MAX_BITS {
            return Err(format!("RSA modulus is {bits} bits, over {RSA_MAX_BITS}"));
        }
        if n.last().is_some_and(|b| b & 1 == 0) {
            return Err("RSA modulus is even".to_string());
        }
        if e.len() > 8 {
            return Err("RSA exponent is over 2^33 - 1".to_string());
        }
        let e_value = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        if e_value < 3 {
            return Err(format!("RSA exponent {e_value} is under 3"));
        }
        if e_value.is_multiple_of(2) {
            return Err(format!("RSA exponent {e_value} is even"));
        }
        if e_value > RSA_MAX_EXPONENT {
            return Err("RSA exponent is over 2^33 - 1".to_string());
        }
        check_modulus_structure(n)?;
        let key = RsaPublic::new(n, e_value).ok_or_else(|| "RSA key refused".to_string())?;
        Ok(PublicKey::Rsa(RsaKey { key, bits }))
    }

    /// An EC key from its JOSE curve name (`P-256`, `P-384`, `P-521`) and affine coordinates,
    /// each exactly the field size (32, 48 or 66 bytes, RFC 7518 section 6.2.1.2). The point
    /// must be on the curve.
    pub fn ec(crv: &str, x: &[u8], y: &[u8]) -> Result<PublicKey, String> {
        let field_len = match crv {
            "P-256" => 32,
            "P-384" => 48,
            "P-521" => 66,
            _ => return Err("unsupported EC curve".to_string()),
        };
        for (name, coordinate) in [("x", x), ("y", y)] {
            if coordinate.len() != field_len {
                return Err(format!(
                    "EC coordinate {name} is {} bytes, {crv} needs {field_len}",
                    coordinate.len()
                ));
            }
        }
        let not_on_curve = || format!("EC point is not on {crv}");
        Ok(match crv {
            "P-256" => PublicKey::P256(P256Key::new(x, y).ok_or_else(not_on_curve)?),
            "P-384" => PublicKey::P384(P384Key::new(x, y).ok_or_else(not_on_curve)?),
            _ => PublicKey::P521(P521Key::new(x, y).ok_or_else(not_on_curve)?),
        })
    }

    /// An Ed25519 key from its 32-byte encoding. Refuses encodings that do not decode, that are
    /// not canonical (y >= p) and points of small order.
    pub fn ed25519(x: &[u8]) -> Result<PublicKey, String> {
        let bytes: &[u8; 32] = x
            .try_into()
            .map_err(|_| format!("Ed25519 key is {} bytes, not 32", x.len()))?;
        let key = Ed25519Key::new(bytes).map_err(|err| {
            match err {
                ed25519_vt::KeyError::NotAPoint => "Ed25519 key does not decode to a curve point",
                ed25519_vt::KeyError::NotCanonical => "Ed25519 key is not canonically encoded",
                ed25519_vt::KeyError::SmallOrder => "Ed25519 key has small order",
            }
            .to_string()
        })?;
        Ok(PublicKey::Ed25519(key))
    }

    /// A shared HMAC secret; refuses secrets shorter than [`HMAC_MIN_SECRET_LEN`].
    pub fn hmac(secret: &[u8]) -> Result<PublicKey, String> {
        if secret.len() < HMAC_MIN_SECRET_LEN {
            return Err(format!(
                "HMAC secret is {} bytes, under {HMAC_MIN_SECRET_LEN}",
                secret.len()
            ));
        }
        Ok(PublicKey::Hmac(HmacSecret(secret.to_vec())))
    }

    /// Whether this key may verify `alg`: RSA for RS*/PS*, each EC curve for its one ES
    /// algorithm, Ed25519 for EdDSA, HMAC secrets for the HS* whose hash output is no longer
    /// than the secret.
    pub fn fits(&self, alg: Algorithm) -> bool {
        match self {
            PublicKey::Rsa(_) => matches!(
                alg,
                Algorithm::Rs256
                    | Algorithm::Rs384
                    | Algorithm::Rs512
                    | Algorithm::Ps256
                    | Algorithm::Ps384
                    | Algorithm::Ps512
            ),
            PublicKey::P256(_) => alg == Algorithm::Es256,
            PublicKey::P384(_) => alg == Algorithm::Es384,
            PublicKey::P521(_) => alg == Algorithm::Es512,
            PublicKey::Ed25519(_) => alg == Algorithm::EdDsa,
            PublicKey::Hmac(secret) => {
                alg.is_symmetric() && secret.len() >= alg.hash().output_len()
            }
        }
    }

    /// The JWK `kty` of this key: `"RSA"`, `"EC"`, `"OKP"` or `"oct"`.
    pub fn kty(&self) -> &'static str {
        match self {
            PublicKey::Rsa(_) => "RSA",
            PublicKey::P256(_) | PublicKey::P384(_) | PublicKey::P521(_) => "EC",
            PublicKey::Ed25519(_) => "OKP",
            PublicKey::Hmac(_) => "oct",
        }
    }

    /// A short description for logs that never shows secret material, e.g. `RSA 2048-bit`,
    /// `EC P-256`, `OKP Ed25519`, `oct 32-byte`.
    pub fn describe(&self) -> String {
        match self {
            PublicKey::Rsa(key) => format!("RSA {}-bit", key.bits),
            PublicKey::P256(_) => "EC P-256".to_string(),
            PublicKey::P384(_) => "EC P-384".to_string(),
            PublicKey::P521(_) => "EC P-521".to_string(),
            PublicKey::Ed25519(_) => "OKP Ed25519".to_string(),
            PublicKey::Hmac(secret) => format!("oct {}-byte", secret.len()),
        }
    }

    /// Verifies `signature` over `signing_input` (the ASCII `header.payload` of a compact JWS)
    /// with `alg`. Fails without computing anything when the key does not fit `alg` or the
    /// signature does not have the exact length the algorithm and key require.
    pub fn verify(
        &self,
        alg: Algorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        self.verify_signed(alg, SignedBytes::new(signing_input), signature)
    }

    /// [`PublicKey::verify`], with the signing input's SHA-256 when the caller has it.
    pub fn verify_signed(
        &self,
        alg: Algorithm,
        signed: SignedBytes,
        signature: &[u8],
    ) -> Result<(), SignatureError> {
        let signing_input = signed.bytes;
        if !self.fits(alg) {
            return Err(SignatureError("the key does not fit the algorithm"));
        }
        match self {
            PublicKey::Rsa(rsa_key) => {
                let key = &rsa_key.key;
                if signature.len() != key.len() {
                    return Err(SignatureError("signature length does not match the key"));
                }
                let (hash, pss) = match alg {
                    Algorithm::Rs256 => (RsaHash::Sha256, false),
                    Algorithm::Rs384 => (RsaHash::Sha384, false),
                    Algorithm::Rs512 => (RsaHash::Sha512, false),
                    // The salt length is the hash output length, as RFC 7518 section 3.5
                    // requires; other salt lengths fail.
                    Algorithm::Ps256 => (RsaHash::Sha256, true),
                    Algorithm::Ps384 => (RsaHash::Sha384, true),
                    Algorithm::Ps512 => (RsaHash::Sha512, true),
                    _ => return Err(SignatureError("the key does not fit the algorithm")),
                };
                let digest = signed.digest(alg.hash());
                let verified = if pss {
                    key.verify_pss(hash, &digest, signature)
                } else {
                    key.verify_pkcs1v15(hash, &digest, signature)
                };
                if verified {
                    Ok(())
                } else {
                    Err(BAD_SIGNATURE)
                }
            }
            PublicKey::P256(key) => {
                if signature.len() != 64 {
                    return Err(SignatureError(
                        "ECDSA signature is not the 64-byte R || S form",
                    ));
                }
                key.verify_prehash(&signed.digest(HashAlg::Sha256), signature)
                    .map_err(ecdsa_error)
            }
            PublicKey::P384(key) => {
                if signature.len() != 96 {
                    return Err(SignatureError(
                        "ECDSA signature is not the 96-byte R || S form",
                    ));
                }
                key.verify_prehash(&Sha384::digest(signing_input), signature)
                    .map_err(ecdsa_error)
            }
            PublicKey::P521(key) => {
                if signature.len() != 132 {
                    return Err(SignatureError(
                        "ECDSA signature is not the 132-byte R || S form",
                    ));
                }
                key.verify_prehash(&Sha512::digest(signing_input), signature)
                    .map_err(ecdsa_error)
            }
            PublicKey::Ed25519(key) => {
                let bytes: &[u8; 64] = signature
                    .try_into()
                    .map_err(|_| SignatureError("Ed25519 signature is not 64 bytes"))?;
                // As strict as ed25519-dalek's verify_strict: S >= L, small-order R (and A, at
                // import) and, by comparing the recomputed R with the encoded one,
                // non-canonical R are refused.
                if key.verify(signing_input, bytes) {
                    Ok(())
                } else {
                    Err(BAD_SIGNATURE)
                }
            }
            PublicKey::Hmac(secret) => {
                if signature.len() != alg.hash().output_len() {
                    return Err(SignatureError("HMAC tag is not the full hash length"));
                }
                let mac_error = |_| SignatureError("HMAC tag does not verify");
                // verify_slice compares in constant time.
                match alg {
                    Algorithm::Hs256 => {
                        hmac_verify::<Hmac<Sha256>>(&secret.0, signing_input, signature)
                            .map_err(mac_error)
                    }
                    Algorithm::Hs384 => {
                        hmac_verify::<Hmac<Sha384>>(&secret.0, signing_input, signature)
                            .map_err(mac_error)
                    }
                    Algorithm::Hs512 => {
                        hmac_verify::<Hmac<Sha512>>(&secret.0, signing_input, signature)
                            .map_err(mac_error)
                    }
                    _ => Err(SignatureError("the key does not fit the algorithm")),
                }
            }
        }
    }
}

fn ecdsa_error(err: EcdsaError) -> SignatureError {
    match err {
        EcdsaError::OutOfRange => SignatureError("ECDSA r or s is out of range"),
        EcdsaError::Invalid => BAD_SIGNATURE,
    }
}

fn hmac_verify<M: Mac + KeyInit>(secret: &[u8], input: &[u8], tag: &[u8]) -> Result<(), ()> {
    let mut mac = <M as KeyInit>::new_from_slice(secret).map_err(|_| ())?;
    mac.update(input);
    mac.verify_slice(tag).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    macro_rules! wycheproof {
        ($file:literal) => {
            include_str!(concat!("../../tests/vectors/wycheproof/", $file))
        };
    }

    fn hex(text: &str) -> Vec<u8> {
        assert!(text.len().is_multiple_of(2), "odd hex length");
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A big-endian integer as exactly `len` bytes (Wycheproof adds a sign byte or drops zeros).
    fn fixed(text: &str, len: usize) -> Vec<u8> {
        let bytes = hex(text);
        let bytes = strip_leading_zeros(&bytes);
        assert!(bytes.len() <= len);
        let mut out = vec![0; len - bytes.len()];
        out.extend_from_slice(bytes);
        out
    }

    fn groups(text: &str) -> Vec<Value> {
        let file: Value = serde_json::from_str(text).unwrap();
        file["testGroups"].as_array().unwrap().clone()
    }

    fn s<'a>(value: &'a Value, name: &str) -> &'a str {
        value[name]
            .as_str()
            .unwrap_or_else(|| panic!("no string {name}"))
    }

    /// What a Wycheproof verdict means for us. `acceptable` is resolved by the caller's policy.
    fn expect(test: &Value, acceptable: bool) -> bool {
        match s(test, "result") {
            "valid" => true,
            "invalid" => false,
            "acceptable" => acceptable,
            other => panic!("unknown result {other}"),
        }
    }

    /// Runs every test of `groups` whose key `key_of` accepts; returns how many ran. Any verdict
    /// that differs from Wycheproof (with `acceptable` read as `acceptable`) fails the test.
    fn run(
        groups: &[Value],
        alg: Algorithm,
        key_of: impl Fn(&Value) -> Option<PublicKey>,
        acceptable: bool,
    ) -> usize {
        let mut ran = 0;
        let mut wrong = Vec::new();
        for group in groups {
            let Some(key) = key_of(group) else { continue };
            for test in group["tests"].as_array().unwrap() {
                let (msg, sig) = (hex(s(test, "msg")), hex(s(test, "sig")));
                let ours = key.verify(alg, &msg, &sig).is_ok();
                if alg.signs_a_sha256_digest() {
                    // The digest handed in (as the gate does for a JWS) decides the same.
                    let sha256: [u8; 32] = Sha256::digest(&msg).into();
                    let handed = SignedBytes::with_sha256(&msg, &sha256);
                    assert_eq!(
                        key.verify_signed(alg, handed, &sig).is_ok(),
                        ours,
                        "{alg} tcId {}",
                        test["tcId"]
                    );
                }
                if ours != expect(test, acceptable) {
                    wrong.push(format!(
                        "tcId {} ({}, {:?}): ours {ours}",
                        test["tcId"], test["comment"], test["flags"]
                    ));
                }
                ran += 1;
            }
        }
        assert!(
            wrong.is_empty(),
            "{alg}: {} mismatches:\n{}",
            wrong.len(),
            wrong.join("\n")
        );
        ran
    }

    fn ec_key(crv: &'static str, len: usize) -> impl Fn(&Value) -> Option<PublicKey> {
        move |group: &Value| {
            let key = &group["publicKey"];
            Some(PublicKey::ec(crv, &fixed(s(key, "wx"), len), &fixed(s(key, "wy"), len)).unwrap())
        }
    }

    /// RSA keys our policy accepts; groups with smaller keys are skipped after checking that
    /// the import refuses them.
    fn rsa_key(group: &Value) -> Option<PublicKey> {
        let key = &group["publicKey"];
        let imported = PublicKey::rsa(&hex(s(key, "modulus")), &hex(s(key, "publicExponent")));
        if group["keySize"].as_u64().unwrap() < RSA_MIN_BITS as u64 {
            assert!(imported.is_err());
            return None;
        }
        Some(imported.unwrap())
    }

    // No "acceptable" verdicts in the P1363 files; high-S signatures are "valid", and so ours.
    #[test]
    fn wycheproof_ecdsa_p1363_p256() {
        let p256 = groups(wycheproof!("ecdsa_secp256r1_sha256_p1363_test.json"));
        assert_eq!(
            run(&p256, Algorithm::Es256, ec_key("P-256", 32), false),
            262
        );
    }

    #[test]
    fn wycheproof_ecdsa_p1363_p384() {
        let p384 = groups(wycheproof!("ecdsa_secp384r1_sha384_p1363_test.json"));
        assert_eq!(
            run(&p384, Algorithm::Es384, ec_key("P-384", 48), false),
            280
        );
    }

    #[test]
    fn wycheproof_ecdsa_p1363_p521() {
        let p521 = groups(wycheproof!("ecdsa_secp521r1_sha512_p1363_test.json"));
        assert_eq!(
            run(&p521, Algorithm::Es512, ec_key("P-521", 66), false),
            318
        );
    }

    #[test]
    fn wycheproof_ecdsa_der_signatures_never_verify_as_jws() {
        let der = groups(wycheproof!("ecdsa_secp256r1_sha256_test.json"));
        let key_of = ec_key("P-256", 32);
        let mut ran = 0;
        for group in &der {
            let key = key_of(group).unwrap();
            for test in group["tests"].as_array().unwrap() {
                let sig = hex(s(test, "sig"));
                assert!(
                    key.verify(Algorithm::Es256, &hex(s(test, "msg")), &sig)
                        .is_err(),
                    "DER signature accepted: tcId {}",
                    test["tcId"]
                );
                ran += 1;
            }
        }
        assert_eq!(ran, 484);
    }

    #[test]
    fn wycheproof_rsa_pkcs1v15() {
        // Policy for "acceptable" (flag MissingNull: DigestInfo without the NULL parameters):
        // refused. RFC 8017 section 9.2 defines one encoding; the legacy form buys nothing.
        let files = [
            (
                wycheproof!("rsa_signature_2048_sha256_test.json"),
                Algorithm::Rs256,
                259,
            ),
            (
                wycheproof!("rsa_signature_2048_sha384_test.json"),
                Algorithm::Rs384,
                258,
            ),
            (
                wycheproof!("rsa_signature_2048_sha512_test.json"),
                Algorithm::Rs512,
                259,
            ),
            (
                wycheproof!("rsa_signature_3072_sha384_test.json"),
                Algorithm::Rs384,
                259,
            ),
            (
                wycheproof!("rsa_signature_4096_sha512_test.json"),
                Algorithm::Rs512,
                259,
            ),
        ];
        for (text, alg, count) in files {
            assert_eq!(run(&groups(text), alg, rsa_key, false), count, "{alg}");
        }
    }

    #[test]
    fn wycheproof_rsa_pss_with_hash_length_salt() {
        let files = [
            (
                wycheproof!("rsa_pss_2048_sha256_mgf1_32_test.json"),
                Algorithm::Ps256,
                108,
            ),
            (
                wycheproof!("rsa_pss_2048_sha384_mgf1_48_test.json"),
                Algorithm::Ps384,
                141,
            ),
            (
                wycheproof!("rsa_pss_4096_sha512_mgf1_64_test.json"),
                Algorithm::Ps512,
                179,
            ),
        ];
        for (text, alg, count) in files {
            // No "acceptable" verdicts in these files.
            assert_eq!(run(&groups(text), alg, rsa_key, false), count, "{alg}");
        }
    }

    #[test]
    fn wycheproof_rsa_pss_salt_length_zero_is_refused() {
        // Valid RSASSA-PSS signatures, but with an empty salt: PS256 requires a 32-byte salt.
        let mut valid_refused = 0;
        for group in groups(wycheproof!("rsa_pss_2048_sha256_mgf1_0_test.json")) {
            assert_eq!(group["sLen"], 0);
            let key = rsa_key(&group).unwrap();
            for test in group["tests"].as_array().unwrap() {
                let outcome =
                    key.verify(Algorithm::Ps256, &hex(s(test, "msg")), &hex(s(test, "sig")));
                if s(test, "comment") == "s_len changed to 32" {
                    // "Invalid" for a zero-salt verifier, but exactly a PS256 signature for us.
                    assert!(outcome.is_ok(), "tcId {}", test["tcId"]);
                    continue;
                }
                assert!(outcome.is_err(), "tcId {} verified", test["tcId"]);
                if s(test, "result") == "valid" {
                    valid_refused += 1;
                }
            }
        }
        assert_eq!(valid_refused, 61);
    }

    #[test]
    fn wycheproof_ed25519() {
        let groups = groups(wycheproof!("ed25519_test.json"));
        let key_of =
            |group: &Value| Some(PublicKey::ed25519(&hex(s(&group["publicKey"], "pk"))).unwrap());
        // No "acceptable" verdicts: Wycheproof already expects strict verification.
        assert_eq!(run(&groups, Algorithm::EdDsa, key_of, false), 151);
    }

    #[test]
    fn wycheproof_hmac_full_length_tags_only() {
        let files = [
            (wycheproof!("hmac_sha256_test.json"), Algorithm::Hs256),
            (wycheproof!("hmac_sha384_test.json"), Algorithm::Hs384),
            (wycheproof!("hmac_sha512_test.json"), Algorithm::Hs512),
        ];
        for (text, alg) in files {
            let full_bits = alg.hash().output_len() as u64 * 8;
            let (mut matched, mut truncated, mut short_key) = (0, 0, 0);
            for group in groups(text) {
                let tag_bits = group["tagSize"].as_u64().unwrap();
                let key_bits = group["keySize"].as_u64().unwrap();
                for test in group["tests"].as_array().unwrap() {
                    let secret = hex(s(test, "key"));
                    let (msg, tag) = (hex(s(test, "msg")), hex(s(test, "tag")));
                    let outcome = PublicKey::hmac(&secret)
                        .map_err(|_| SignatureError("secret refused"))
                        .and_then(|key| key.verify(alg, &msg, &tag));
                    if key_bits < full_bits {
                        // Secrets shorter than the hash output are refused (RFC 7518 3.2).
                        assert!(outcome.is_err(), "{alg} tcId {} short key", test["tcId"]);
                        short_key += 1;
                    } else if tag_bits < full_bits {
                        // Truncated tags are refused, whatever Wycheproof's verdict.
                        assert!(outcome.is_err(), "{alg} tcId {} truncated", test["tcId"]);
                        truncated += 1;
                    } else {
                        assert_eq!(
                            outcome.is_ok(),
                            expect(test, false),
                            "{alg} tcId {}",
                            test["tcId"]
                        );
                        matched += 1;
                    }
                }
            }
            assert_eq!((matched, truncated, short_key), (84, 84, 6), "{alg}");
        }
    }

    // ---- hand-written cases ----

    const P256_N: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    const P384_N: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973";
    const P521_N: &str = "01fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409";

    /// The first valid vector of a Wycheproof file, with its key.
    fn first_valid(
        text: &str,
        key_of: impl Fn(&Value) -> Option<PublicKey>,
    ) -> (PublicKey, Vec<u8>, Vec<u8>) {
        for group in groups(text) {
            let Some(key) = key_of(&group) else { continue };
            for test in group["tests"].as_array().unwrap() {
                if s(test, "result") == "valid" {
                    return (key, hex(s(test, "msg")), hex(s(test, "sig")));
                }
            }
        }
        panic!("no valid vector");
    }

    fn p256_vector() -> (PublicKey, Vec<u8>, Vec<u8>) {
        first_valid(
            wycheproof!("ecdsa_secp256r1_sha256_p1363_test.json"),
            ec_key("P-256", 32),
        )
    }
    fn p384_vector() -> (PublicKey, Vec<u8>, Vec<u8>) {
        first_valid(
            wycheproof!("ecdsa_secp384r1_sha384_p1363_test.json"),
            ec_key("P-384", 48),
        )
    }
    fn p521_vector() -> (PublicKey, Vec<u8>, Vec<u8>) {
        first_valid(
            wycheproof!("ecdsa_secp521r1_sha512_p1363_test.json"),
            ec_key("P-521", 66),
        )
    }
    fn rsa_vector() -> (PublicKey, Vec<u8>, Vec<u8>) {
        first_valid(wycheproof!("rsa_signature_2048_sha256_test.json"), rsa_key)
    }
    fn ed25519_vector() -> (PublicKey, Vec<u8>, Vec<u8>) {
        first_valid(wycheproof!("ed25519_test.json"), |group| {
            PublicKey::ed25519(&hex(s(&group["publicKey"], "pk"))).ok()
        })
    }
    fn rsa_modulus() -> Vec<u8> {
        let group = &groups(wycheproof!("rsa_signature_2048_sha256_test.json"))[0];
        hex(s(&group["publicKey"], "modulus"))
    }

    /// `a - b` for big-endian numbers of the same length, `a >= b`.
    fn sub_be(a: &[u8], b: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; a.len()];
        let mut borrow = 0i16;
        for i in (0..a.len()).rev() {
            let mut d = i16::from(a[i]) - i16::from(b[i]) - borrow;
            borrow = 0;
            if d < 0 {
                d += 256;
                borrow = 1;
            }
            out[i] = d as u8;
        }
        assert_eq!(borrow, 0);
        out
    }

    #[test]
    fn algorithm_names_are_exact() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
            assert_eq!(alg.to_string(), alg.name());
        }
        for name in [
            "none", "None", "NONE", "", "hs256", "HS256 ", "Rs256", "ES256K", "Ed25519", "ES224",
            "PS256\0",
        ] {
            assert_eq!(Algorithm::from_name(name), None, "{name:?}");
        }
        let symmetric: Vec<_> = Algorithm::ALL
            .into_iter()
            .filter(|a| a.is_symmetric())
            .collect();
        assert_eq!(
            symmetric,
            [Algorithm::Hs256, Algorithm::Hs384, Algorithm::Hs512]
        );
    }

    #[test]
    fn keys_fit_only_their_algorithms() {
        let fitting = |key: &PublicKey| -> Vec<&str> {
            Algorithm::ALL
                .into_iter()
                .filter(|a| key.fits(*a))
                .map(Algorithm::name)
                .collect()
        };
        assert_eq!(
            fitting(&rsa_vector().0),
            ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]
        );
        assert_eq!(fitting(&p256_vector().0), ["ES256"]);
        assert_eq!(fitting(&p384_vector().0), ["ES384"]);
        assert_eq!(fitting(&p521_vector().0), ["ES512"]);
        assert_eq!(fitting(&ed25519_vector().0), ["EdDSA"]);
        assert_eq!(fitting(&PublicKey::hmac(&[7; 32]).unwrap()), ["HS256"]);
        assert_eq!(
            fitting(&PublicKey::hmac(&[7; 48]).unwrap()),
            ["HS256", "HS384"]
        );
        assert_eq!(
            fitting(&PublicKey::hmac(&[7; 64]).unwrap()),
            ["HS256", "HS384", "HS512"]
        );
        assert_eq!(rsa_vector().0.kty(), "RSA");
        assert_eq!(p521_vector().0.kty(), "EC");
        assert_eq!(ed25519_vector().0.kty(), "OKP");
        assert_eq!(PublicKey::hmac(&[7; 32]).unwrap().kty(), "oct");
        for alg in Algorithm::ALL {
            let key_kty = match alg.kty() {
                "RSA" => rsa_vector().0.kty(),
                "oct" => "oct",
                "OKP" => "OKP",
                _ => "EC",
            };
            assert_eq!(alg.kty(), key_kty);
        }
    }

    #[test]
    fn wrong_algorithm_for_the_key_is_refused_before_verifying() {
        let not_fit = Err(SignatureError("the key does not fit the algorithm"));
        // ES256 token, P-384 key (and the other curve mix-ups).
        let (p256, msg, sig) = p256_vector();
        assert!(p256.verify(Algorithm::Es256, &msg, &sig).is_ok());
        let (p384, ..) = p384_vector();
        let (p521, ..) = p521_vector();
        assert_eq!(p384.verify(Algorithm::Es256, &msg, &sig), not_fit);
        assert_eq!(p521.verify(Algorithm::Es256, &msg, &sig), not_fit);
        assert_eq!(p256.verify(Algorithm::Es384, &msg, &sig), not_fit);
        // EdDSA token, RSA key.
        let (ed, msg, sig) = ed25519_vector();
        assert!(ed.verify(Algorithm::EdDsa, &msg, &sig).is_ok());
        let (rsa, rsa_msg, rsa_sig) = rsa_vector();
        assert!(!rsa.fits(Algorithm::EdDsa));
        assert_eq!(rsa.verify(Algorithm::EdDsa, &msg, &sig), not_fit);
        // HS256 with an RSA key: the classic confusion. The key's bytes are never an HMAC secret.
        assert!(!rsa.fits(Algorithm::Hs256));
        assert_eq!(
            rsa.verify(Algorithm::Hs256, &rsa_msg, &rsa_sig[..32]),
            not_fit
        );
        assert_eq!(p256.verify(Algorithm::Hs256, &msg, &[0; 32]), not_fit);
        // An RS256 signature does not pass as PS256 with the same key, nor RS384.
        assert!(rsa.verify(Algorithm::Rs256, &rsa_msg, &rsa_sig).is_ok());
        assert!(rsa.verify(Algorithm::Ps256, &rsa_msg, &rsa_sig).is_err());
        assert!(rsa.verify(Algorithm::Rs384, &rsa_msg, &rsa_sig).is_err());
        // HMAC keys refuse every asymmetric algorithm.
        let hmac = PublicKey::hmac(&[1; 64]).unwrap();
        for alg in Algorithm::ALL.into_iter().filter(|a| !a.is_symmetric()) {
            assert_eq!(hmac.verify(alg, b"x", &[0; 64]), not_fit);
        }
    }

    #[test]
    fn rsa_signature_values_and_lengths() {
        let (key, msg, sig) = rsa_vector();
        let n = rsa_modulus();
        let n = strip_leading_zeros(&n).to_vec();
        assert_eq!(n.len(), 256);
        let mut one = vec![0u8; 256];
        one[255] = 1;
        let n_minus_1 = sub_be(&n, &one);
        for alg in [Algorithm::Rs256, Algorithm::Ps256] {
            for bad in [
                vec![0u8; 256],
                one.clone(),
                n_minus_1.clone(),
                n.clone(),
                vec![0xff; 256],
            ] {
                assert!(key.verify(alg, &msg, &bad).is_err());
            }
        }
        assert_eq!(
            key.verify(Algorithm::Rs256, &msg, &sig[1..]),
            Err(SignatureError("signature length does not match the key"))
        );
        let mut padded = vec![0u8];
        padded.extend_from_slice(&sig);
        assert!(key.verify(Algorithm::Rs256, &msg, &padded).is_err());
        assert!(key.verify(Algorithm::Rs256, &msg, &[]).is_err());
        let mut flipped = sig.clone();
        flipped[100] ^= 1;
        assert!(key.verify(Algorithm::Rs256, &msg, &flipped).is_err());
        assert!(key
            .verify(Algorithm::Rs256, b"other message", &sig)
            .is_err());
        assert!(key.verify(Algorithm::Rs256, &msg, &sig).is_ok());
    }

    #[test]
    fn ecdsa_scalars_out_of_range_and_der_are_refused() {
        let cases = [
            (p256_vector(), Algorithm::Es256, P256_N, 32),
            (p384_vector(), Algorithm::Es384, P384_N, 48),
            (p521_vector(), Algorithm::Es512, P521_N, 66),
        ];
        for ((key, msg, sig), alg, n, len) in cases {
            assert!(key.verify(alg, &msg, &sig).is_ok());
            let n = fixed(n, len);
            let (r, s_) = sig.split_at(len);
            let zero = vec![0u8; len];
            let join = |a: &[u8], b: &[u8]| [a, b].concat();
            // CVE-2022-21449: r = s = 0 must not verify anything.
            for bad in [
                join(&zero, &zero),
                join(&zero, s_),
                join(r, &zero),
                join(&n, s_),
                join(r, &n),
                join(&n, &n),
                join(&[0xff; 132][..len], s_),
            ] {
                assert!(key.verify(alg, &msg, &bad).is_err(), "{alg}");
            }
            // r + n and s + n would wrap around to the same scalars if reduced: refused.
            // Wrong lengths: DER-like lengths, one byte short, one byte long.
            assert!(key.verify(alg, &msg, &sig[1..]).is_err());
            assert!(key
                .verify(alg, &msg, &[sig.as_slice(), &[0]].concat())
                .is_err());
            assert!(key
                .verify(alg, &msg, &[&[0u8][..], sig.as_slice()].concat())
                .is_err());
            // High S: n - s is as valid as s; JWS does not require low-S, so it verifies.
            let high = join(r, &sub_be(&n, s_));
            assert!(key.verify(alg, &msg, &high).is_ok(), "{alg} high-S");
        }
        // A DER encoding of a valid P-256 signature is refused.
        let (key, msg, sig) = p256_vector();
        let der_int = |v: &[u8]| {
            let v = strip_leading_zeros(v);
            let mut body = if v[0] & 0x80 != 0 { vec![0] } else { vec![] };
            body.extend_from_slice(v);
            [vec![0x02, body.len() as u8], body].concat()
        };
        let body = [der_int(&sig[..32]), der_int(&sig[32..])].concat();
        let der = [vec![0x30, body.len() as u8], body].concat();
        assert!(der.len() != 64);
        assert!(key.verify(Algorithm::Es256, &msg, &der).is_err());
    }

    #[test]
    fn ed25519_strictness() {
        let (key, msg, sig) = ed25519_vector();
        assert!(key.verify(Algorithm::EdDsa, &msg, &sig).is_ok());
        assert!(key.verify(Algorithm::EdDsa, &msg, &sig[..63]).is_err());
        assert!(key
            .verify(Algorithm::EdDsa, &msg, &[sig.as_slice(), &[0]].concat())
            .is_err());
        // S + L (little-endian) is the same scalar mod L but not canonical.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut malleated = sig.clone();
        let mut carry = 0u16;
        for i in 0..32 {
            let sum = u16::from(malleated[32 + i]) + u16::from(L[i]) + carry;
            malleated[32 + i] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        assert!(key.verify(Algorithm::EdDsa, &msg, &malleated).is_err());

        // Keys: wrong lengths, non-canonical y (p + small), small order.
        assert!(PublicKey::ed25519(&[0; 31]).is_err());
        assert!(PublicKey::ed25519(&[0; 33]).is_err());
        let mut non_canonical_refused = 0;
        for small in 0u8..19 {
            // p + small, little-endian; p = 2^255 - 19.
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + small;
            bytes[31] = 0x7f;
            if ed25519_dalek::VerifyingKey::from_bytes(&bytes).is_ok() {
                let err = PublicKey::ed25519(&bytes).unwrap_err();
                assert!(
                    err.contains("canonical") || err.contains("small order"),
                    "{err}"
                );
                non_canonical_refused += 1;
            }
        }
        assert!(non_canonical_refused > 0);
        // The identity (y = 1) has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            PublicKey::ed25519(&identity).unwrap_err(),
            "Ed25519 key has small order"
        );
    }

    #[test]
    fn hmac_tags() {
        let key = PublicKey::hmac(b"0123456789abcdef0123456789abcdef").unwrap();
        // RFC 7515 appendix A.1 style: compute with the hmac crate, then verify.
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        mac.update(b"header.payload");
        let tag = mac.finalize().into_bytes().to_vec();
        assert!(key
            .verify(Algorithm::Hs256, b"header.payload", &tag)
            .is_ok());
        assert_eq!(
            key.verify(Algorithm::Hs256, b"header.payload", &tag[..16]),
            Err(SignatureError("HMAC tag is not the full hash length"))
        );
        assert!(key
            .verify(Algorithm::Hs256, b"header.payload", &[])
            .is_err());
        let mut flipped = tag.clone();
        flipped[31] ^= 0x80;
        assert!(key
            .verify(Algorithm::Hs256, b"header.payload", &flipped)
            .is_err());
        assert!(key
            .verify(Algorithm::Hs384, b"header.payload", &[0; 48])
            .is_err());
        assert_eq!(
            PublicKey::hmac(&[1; 31]).unwrap_err(),
            "HMAC secret is 31 bytes, under 32"
        );
        assert!(PublicKey::hmac(&[]).is_err());
        // Debug output never shows the secret.
        assert_eq!(format!("{key:?}"), "oct 32-byte");
    }

    #[test]
    fn rsa_key_checks() {
        let n = rsa_modulus();
        let e = [1, 0, 1];
        assert!(PublicKey::rsa(&n, &e).is_ok());
        assert!(
            PublicKey::rsa(&n, &[0, 0, 1, 0, 1]).is_ok(),
            "leading zeros tolerated"
        );
        assert_eq!(
            PublicKey::rsa(&n, &[1]).unwrap_err(),
            "RSA exponent 1 is under 3"
        );
        assert_eq!(
            PublicKey::rsa(&n, &[]).unwrap_err(),
            "RSA exponent 0 is under 3"
        );
        assert_eq!(
            PublicKey::rsa(&n, &[2]).unwrap_err(),
            "RSA exponent 2 is under 3"
        );
        assert_eq!(
            PublicKey::rsa(&n, &[1, 0, 0]).unwrap_err(),
            "RSA exponent 65536 is even"
        );
        assert!(PublicKey::rsa(&n, &[3]).is_ok());
        assert!(PublicKey::rsa(&n, &[2, 0, 0, 0, 1])
            .unwrap_err()
            .contains("over 2^33 - 1"));
        assert!(PublicKey::rsa(&n, &[1; 9])
            .unwrap_err()
            .contains("over 2^33 - 1"));
        let n = strip_leading_zeros(&n).to_vec();
        assert_eq!(
            PublicKey::rsa(&n[..128], &e).unwrap_err(),
            "RSA modulus is 1024 bits, under 2048"
        );
        assert_eq!(
            PublicKey::rsa(&n[1..], &e).unwrap_err(),
            "RSA modulus is 2040 bits, under 2048"
        );
        let mut huge = vec![0xffu8; 1025];
        huge[0] = 1;
        assert_eq!(
            PublicKey::rsa(&huge, &e).unwrap_err(),
            "RSA modulus is 8193 bits, over 8192"
        );
        let mut even = n.clone();
        even[255] &= 0xfe;
        assert_eq!(
            PublicKey::rsa(&even, &e).unwrap_err(),
            "RSA modulus is even"
        );
        // A 2048-bit odd multiple of 3.
        let mut multiple_of_3 = vec![0xffu8; 256];
        while mod_small(&multiple_of_3, 3) != 0 {
            multiple_of_3 = sub_be(&multiple_of_3, &{
                let mut two = vec![0u8; 256];
                two[255] = 2;
                two
            });
        }
        assert_eq!(
            PublicKey::rsa(&multiple_of_3, &e).unwrap_err(),
            "RSA modulus has the small factor 3"
        );
        // A maximal 8192-bit modulus is not refused for its size (it may be for its structure).
        let mut big = vec![0xffu8; 1024];
        big[1023] = 0xfd;
        let big_err = PublicKey::rsa(&big, &e).err().unwrap_or_default();
        assert!(!big_err.contains("bits"), "{big_err}");
    }

    #[test]
    fn small_number_helpers() {
        assert_eq!(bit_len(&[]), 0);
        assert_eq!(bit_len(&[1]), 1);
        assert_eq!(bit_len(&[0x80, 0]), 16);
        assert_eq!(mod_small(&[1, 0], 7), 256 % 7);
        assert!(in_subgroup_of_65537(1, 11));
        assert!(in_subgroup_of_65537(10, 11)); // 65537 = 10 mod 11, of order 2
        assert!(!in_subgroup_of_65537(2, 11));
        assert!(!in_subgroup_of_65537(0, 11));
    }

    #[test]
    fn ec_key_checks() {
        let group = &groups(wycheproof!("ecdsa_secp256r1_sha256_p1363_test.json"))[0];
        let x = fixed(s(&group["publicKey"], "wx"), 32);
        let y = fixed(s(&group["publicKey"], "wy"), 32);
        assert!(PublicKey::ec("P-256", &x, &y).is_ok());
        let mut off_curve = y.clone();
        off_curve[31] ^= 1;
        assert_eq!(
            PublicKey::ec("P-256", &x, &off_curve).unwrap_err(),
            "EC point is not on P-256"
        );
        assert_eq!(
            PublicKey::ec("P-256", &x[1..], &y).unwrap_err(),
            "EC coordinate x is 31 bytes, P-256 needs 32"
        );
        let mut long_y = vec![0];
        long_y.extend_from_slice(&y);
        assert!(PublicKey::ec("P-256", &x, &long_y).is_err());
        assert!(PublicKey::ec("P-384", &x, &y).is_err());
        assert!(PublicKey::ec("secp256k1", &x, &y).is_err());
        assert!(PublicKey::ec("P-256", &[0xff; 32], &[0xff; 32]).is_err());
        assert!(PublicKey::ec("P-256", &[0; 32], &[0; 32]).is_err());
    }
}
