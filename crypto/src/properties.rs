//! Property tests: our own public-key code against reference crates, on random keys, messages
//! and signatures, valid and not.
//!
//! - RSA (`rsa_vt`): the public operation against `num-bigint`'s `modpow` on random moduli and
//!   exponents; whole RS*/PS* verifications against the `rsa` crate, with its own signatures
//!   (2048-, 3072- and 4096-bit keys, exponents 65537 and 3) and mutations of them.
//! - ECDSA (`ecdsa_vt` with `p256_vt`; one macro of tests run for each of P-256, P-384 and
//!   P-521): the field, the scalar arithmetic, the 12- and 17-limb products and the wNAF
//!   recodings against `num-bigint`; `u1 G + u2 Q`, whole ES256/ES384/ES512 verifications and
//!   key imports against the `p256`, `p384` and `p521` crates.
//! - Ed25519 (`ed25519_vt`): the field against `num-bigint`; point decoding (with the reason a
//!   key is refused), `S < L`, the 512-bit reduction modulo L and `[s]B + [k]A` against
//!   curve25519-dalek (including points with a small-order component); whole verifications and
//!   key imports against ed25519-dalek's `verify_strict`.
//!
//! Every test runs a fixed number of cases from a seed that proptest derives for each run; a
//! failure prints the (shrunk) input and the seed to replay. In wasm32 (`make unit-wasm`, debug
//! code under V8) a quarter of the cases run: the code is the same there (32-bit limbs on every
//! target), the run only checks that V8 computes what the native build does.

use num_bigint::BigUint;
use proptest::prelude::*;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::limbs::{self, Limbs};
use super::{ecdsa_vt, ed25519_vt, p256_vt, rsa_vt, Algorithm, PublicKey};

/// The number of cases: `native` natively, a quarter of it in wasm32.
const fn cases(native: u32) -> u32 {
    if cfg!(target_arch = "wasm32") {
        native.div_ceil(4)
    } else {
        native
    }
}

fn big_le(limbs: &Limbs) -> BigUint {
    BigUint::from_slice(limbs)
}

fn limbs_of(value: &BigUint) -> Limbs {
    let mut out = [0u32; 8];
    for (dst, src) in out.iter_mut().zip(value.to_u32_digits()) {
        *dst = src;
    }
    out
}

/// A number below `m`: random bytes (eight more than `m` has) reduced, or one of the edge
/// values.
fn below(m: &BigUint) -> impl Strategy<Value = BigUint> {
    let m = m.clone();
    let edges = m.clone();
    let len = m.bits().div_ceil(8) as usize + 8;
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), len)
            .prop_map(move |bytes| BigUint::from_bytes_le(&bytes) % &m),
        1 => (0u32..7).prop_map(move |which| match which {
            0 => BigUint::from(0u8),
            1 => BigUint::from(1u8),
            2 => &edges - 1u8,
            3 => &edges - 2u8,
            4 => (BigUint::from(1u8) << 255) % &edges,
            5 => (BigUint::from(1u8) << (edges.bits() - 1)) % &edges,
            _ => (BigUint::from(1u8) << 128) - 1u8,
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// RSA
// ---------------------------------------------------------------------------------------------

const RSA_KEYS: &str = include_str!("../../tests/vectors/rsa_test_keys.json");

fn hex(text: &str) -> Vec<u8> {
    let text = if text.len() % 2 == 1 {
        format!("0{text}")
    } else {
        text.to_string()
    };
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

struct RsaFixture {
    private: rsa::PrivateKey,
    public: rsa::PublicKey,
    ours: PublicKey,
    n: BigUint,
}

fn rsa_fixtures() -> &'static [RsaFixture] {
    static FIXTURES: std::sync::OnceLock<Vec<RsaFixture>> = std::sync::OnceLock::new();
    FIXTURES.get_or_init(|| {
        let keys: serde_json::Value = serde_json::from_str(RSA_KEYS).unwrap();
        keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|key| {
                let part = |name: &str| hex(key[name].as_str().unwrap());
                let big = |name: &str| rsa::BoxedUint::from_be_slice_vartime(&part(name));
                let private = rsa::PrivateKey::from_components(
                    big("n"),
                    big("e"),
                    big("d"),
                    vec![big("p"), big("q")],
                )
                .unwrap();
                RsaFixture {
                    public: private.to_public_key(),
                    ours: PublicKey::rsa(&part("n"), &part("e")).unwrap(),
                    n: BigUint::from_bytes_be(&part("n")),
                    private,
                }
            })
            .collect()
    })
}

/// A deterministic RNG for PSS salts, seeded by the test case.
struct SeededRng(u64);

impl rand_core::TryRng for SeededRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.try_next_u64()? as u32)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        // SplitMix64.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Ok(z ^ (z >> 31))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for SeededRng {}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::Rs256,
    Algorithm::Rs384,
    Algorithm::Rs512,
    Algorithm::Ps256,
    Algorithm::Ps384,
    Algorithm::Ps512,
];

fn rsa_digest(alg: Algorithm, msg: &[u8]) -> Vec<u8> {
    match alg {
        Algorithm::Rs256 | Algorithm::Ps256 => Sha256::digest(msg).to_vec(),
        Algorithm::Rs384 | Algorithm::Ps384 => Sha384::digest(msg).to_vec(),
        _ => Sha512::digest(msg).to_vec(),
    }
}

fn rsa_sign(fx: &RsaFixture, alg: Algorithm, msg: &[u8], seed: u64) -> Vec<u8> {
    let digest = rsa_digest(alg, msg);
    let mut rng = SeededRng(seed);
    let signed = match alg {
        Algorithm::Rs256 => fx.private.sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest),
        Algorithm::Rs384 => fx.private.sign(rsa::Pkcs1v15Sign::new::<Sha384>(), &digest),
        Algorithm::Rs512 => fx.private.sign(rsa::Pkcs1v15Sign::new::<Sha512>(), &digest),
        Algorithm::Ps256 => fx
            .private
            .sign_with_rng(&mut rng, rsa::Pss::<Sha256>::new(), &digest),
        Algorithm::Ps384 => fx
            .private
            .sign_with_rng(&mut rng, rsa::Pss::<Sha384>::new(), &digest),
        _ => fx
            .private
            .sign_with_rng(&mut rng, rsa::Pss::<Sha512>::new(), &digest),
    };
    signed.unwrap()
}

fn rsa_reference_verify(fx: &RsaFixture, alg: Algorithm, msg: &[u8], sig: &[u8]) -> bool {
    let digest = rsa_digest(alg, msg);
    let key = &fx.public;
    match alg {
        Algorithm::Rs256 => key.verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, sig),
        Algorithm::Rs384 => key.verify(rsa::Pkcs1v15Sign::new::<Sha384>(), &digest, sig),
        Algorithm::Rs512 => key.verify(rsa::Pkcs1v15Sign::new::<Sha512>(), &digest, sig),
        Algorithm::Ps256 => key.verify(rsa::Pss::<Sha256>::new(), &digest, sig),
        Algorithm::Ps384 => key.verify(rsa::Pss::<Sha384>::new(), &digest, sig),
        _ => key.verify(rsa::Pss::<Sha512>::new(), &digest, sig),
    }
    .is_ok()
}

/// What to do to a valid signature before verifying it.
#[derive(Clone, Debug)]
enum Tamper {
    None,
    /// Flip one bit of the signature.
    FlipBit(usize),
    /// Verify another message.
    OtherMessage,
    /// Verify with another algorithm of the same key type.
    OtherAlg(usize),
    /// Replace by `n - s`, `s + n` (if it fits), `n`, `n - 1`, 0, 1, all-ones.
    Value(u8),
    /// Random bytes of the right length.
    Random(u64),
    /// One byte shorter or longer.
    Length(bool),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        3 => Just(Tamper::None),
        3 => any::<usize>().prop_map(Tamper::FlipBit),
        1 => Just(Tamper::OtherMessage),
        2 => (0usize..6).prop_map(Tamper::OtherAlg),
        2 => (0u8..7).prop_map(Tamper::Value),
        1 => any::<u64>().prop_map(Tamper::Random),
        1 => any::<bool>().prop_map(Tamper::Length),
    ]
}

fn rsa_value_tamper(fx: &RsaFixture, sig: &[u8], which: u8) -> Vec<u8> {
    let len = sig.len();
    let s = BigUint::from_bytes_be(sig);
    let value = match which {
        0 => &fx.n - &s,
        1 => &s + &fx.n,
        2 => fx.n.clone(),
        3 => &fx.n - 1u8,
        4 => BigUint::from(0u8),
        5 => BigUint::from(1u8),
        _ => (BigUint::from(1u8) << (8 * len)) - 1u8,
    };
    let bytes = value.to_bytes_be();
    if bytes.len() > len {
        return bytes;
    }
    let mut out = vec![0u8; len - bytes.len()];
    out.extend_from_slice(&bytes);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(48), ..ProptestConfig::default() })]

    /// `s^e mod n` on random odd moduli of 2048..=8192 bits (every size accepted, not only
    /// multiples of the limb size), random odd exponents up to 2^33 - 1 and random `s`.
    #[test]
    fn rsa_public_op_matches_num_bigint(
        bits in 2048usize..=8192,
        n_bytes in proptest::collection::vec(any::<u8>(), 1024),
        e in prop_oneof![Just(65537u64), Just(3u64), (1u64..(1 << 32)).prop_map(|x| 2 * x + 1)],
        s_bytes in proptest::collection::vec(any::<u8>(), 1024),
    ) {
        let mut n = BigUint::from_bytes_be(&n_bytes) >> (8192 - bits);
        n.set_bit(bits as u64 - 1, true);
        n.set_bit(0, true);
        let key = rsa_vt::RsaPublic::new(&n.to_bytes_be(), e).unwrap();
        let len = key.len();
        let s = BigUint::from_bytes_be(&s_bytes) % &n;
        let mut s_be = vec![0u8; len];
        let raw = s.to_bytes_be();
        s_be[len - raw.len()..].copy_from_slice(&raw);
        let expected = s.modpow(&BigUint::from(e), &n);
        let got = key.public_op(&s_be).unwrap();
        prop_assert_eq!(BigUint::from_bytes_be(&got), expected);
        prop_assert_eq!(got.len(), len);
        // s >= n is refused (RSAVP1), as is a wrong length.
        let mut n_be = n.to_bytes_be();
        prop_assert!(key.public_op(&n_be).is_none());
        n_be.push(0);
        prop_assert!(key.public_op(&n_be).is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(40), ..ProptestConfig::default() })]

    /// RS*/PS* verification agrees with the `rsa` crate, on the `rsa` crate's own signatures
    /// over random messages and on tampered ones.
    #[test]
    fn rsa_verify_matches_rsa_crate(
        key_index in 0usize..4,
        alg_index in 0usize..6,
        msg in proptest::collection::vec(any::<u8>(), 0..600),
        seed in any::<u64>(),
        tamper in tamper(),
    ) {
        let fx = &rsa_fixtures()[key_index];
        let alg = RSA_ALGS[alg_index];
        let sig = rsa_sign(fx, alg, &msg, seed);
        prop_assert!(rsa_reference_verify(fx, alg, &msg, &sig));
        let (mut verify_alg, mut verify_msg, mut verify_sig) = (alg, msg.clone(), sig.clone());
        match tamper {
            Tamper::None => {}
            Tamper::FlipBit(bit) => {
                let bit = bit % (8 * sig.len());
                verify_sig[bit / 8] ^= 1 << (bit % 8);
            }
            Tamper::OtherMessage => verify_msg.push(b'x'),
            Tamper::OtherAlg(other) => verify_alg = RSA_ALGS[other],
            Tamper::Value(which) => verify_sig = rsa_value_tamper(fx, &sig, which),
            Tamper::Random(seed) => {
                let mut rng = SeededRng(seed);
                rand_core::TryRng::try_fill_bytes(&mut rng, &mut verify_sig).unwrap();
            }
            Tamper::Length(longer) => {
                if longer {
                    verify_sig.insert(0, 0);
                } else {
                    verify_sig.remove(0);
                }
            }
        }
        let reference = rsa_reference_verify(fx, verify_alg, &verify_msg, &verify_sig);
        let ours = fx.ours.verify(verify_alg, &verify_msg, &verify_sig).is_ok();
        prop_assert_eq!(ours, reference);
        if matches!(tamper, Tamper::None) {
            prop_assert!(ours);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ECDSA: P-256, P-384 and P-521 (one generic implementation, `ecdsa_vt`; the same tests for each
// curve)
// ---------------------------------------------------------------------------------------------

/// The property tests of one `ecdsa_vt` curve against `num-bigint` and its reference crate.
macro_rules! ecdsa_properties {
    (
        $module:ident, curve = $curve:ty, limbs = $limbs:literal, bytes = $bytes:literal,
        reference = $reference:ident, hash = $hash:ty, alg = $alg:expr, crv = $crv:literal,
        cases = $cases:literal
    ) => {
        mod $module {
            use super::*;
            use ecdsa_vt::Curve as _;

            type C = $curve;
            const L: usize = $limbs;
            const BYTES: usize = $bytes;

            fn p() -> BigUint {
                BigUint::from_slice(&C::P)
            }

            fn n() -> BigUint {
                BigUint::from_slice(&C::N)
            }

            fn limbs(value: &BigUint) -> [u32; L] {
                let mut out = [0u32; L];
                for (dst, src) in out.iter_mut().zip(value.to_u32_digits()) {
                    *dst = src;
                }
                out
            }

            fn fe(value: &BigUint) -> ecdsa_vt::Fe<L, C> {
                ecdsa_vt::Fe::from_limbs(limbs(value)).unwrap()
            }

            /// `value mod 2^(8 BYTES)`, big-endian.
            fn be(value: &BigUint) -> [u8; BYTES] {
                let modulus: BigUint = BigUint::from(1u8) << (8 * BYTES);
                let raw = (value % modulus).to_bytes_be();
                let mut out = [0u8; BYTES];
                out[BYTES - raw.len()..].copy_from_slice(&raw);
                out
            }

            fn scalar(value: &BigUint) -> ::$reference::Scalar {
                use ::$reference::elliptic_curve::ff::PrimeField;
                Option::from(::$reference::Scalar::from_repr(be(value).into())).unwrap()
            }

            /// The affine x of `u1 G + u2 Q` by the reference crate; `None` for infinity.
            fn reference_lincomb(
                u1: &BigUint,
                u2: &BigUint,
                q: &::$reference::AffinePoint,
            ) -> Option<BigUint> {
                use ::$reference::elliptic_curve::point::AffineCoordinates;
                let sum = ::$reference::ProjectivePoint::GENERATOR * scalar(u1)
                    + ::$reference::ProjectivePoint::from(*q) * scalar(u2);
                if bool::from(::$reference::elliptic_curve::group::Group::is_identity(
                    &sum,
                )) {
                    return None;
                }
                Some(BigUint::from_bytes_be(&sum.to_affine().x()))
            }

            /// The reference signer for a (non-zero) scalar, and its public key's coordinates.
            fn signer(d: &BigUint) -> (::$reference::ecdsa::SigningKey, Vec<u8>, Vec<u8>) {
                let signing = ::$reference::ecdsa::SigningKey::from_slice(&be(d)).unwrap();
                let point = signing.verifying_key().to_sec1_point(false);
                let bytes = point.as_bytes();
                let (x, y) = (bytes[1..1 + BYTES].to_vec(), bytes[1 + BYTES..].to_vec());
                (signing, x, y)
            }

            fn nonzero_below_n() -> impl Strategy<Value = BigUint> {
                below(&n()).prop_map(|x| {
                    if x == BigUint::from(0u8) {
                        BigUint::from(7u8)
                    } else {
                        x
                    }
                })
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(cases(256)))]

                #[test]
                fn field_matches_num_bigint(a in below(&p()), b in below(&p())) {
                    let p = p();
                    let (fa, fb) = (fe(&a), fe(&b));
                    prop_assert_eq!(BigUint::from_slice(&fa.mul(&fb).0), &a * &b % &p);
                    prop_assert_eq!(BigUint::from_slice(&fa.square().0), &a * &a % &p);
                    prop_assert_eq!(BigUint::from_slice(&fa.add(&fb).0), (&a + &b) % &p);
                    prop_assert_eq!(BigUint::from_slice(&fa.sub(&fb).0), (&a + &p - &b) % &p);
                    prop_assert_eq!(BigUint::from_slice(&fa.neg().0), (&p - &a) % &p);
                    match fa.invert() {
                        None => prop_assert_eq!(&a, &BigUint::from(0u8)),
                        Some(inv) => prop_assert_eq!(
                            BigUint::from_slice(&inv.0),
                            a.modpow(&(&p - 2u8), &p)
                        ),
                    }
                }

                #[test]
                fn scalars_match_num_bigint(a in below(&n()), b in below(&n())) {
                    let n = n();
                    let product = ecdsa_vt::mul_mod_n::<L, C>(&limbs(&a), &limbs(&b));
                    prop_assert_eq!(BigUint::from_slice(&product), &a * &b % &n);
                    match limbs::inv_mod(&limbs(&a), &C::N) {
                        None => prop_assert_eq!(&a, &BigUint::from(0u8)),
                        Some(inv) => prop_assert_eq!(
                            BigUint::from_slice(&inv),
                            a.modpow(&(&n - 2u8), &n)
                        ),
                    }
                }
            }

            proptest! {
                #![proptest_config(ProptestConfig::with_cases(cases($cases)))]

                /// `u1 G + u2 Q` against the reference crate, for random keys and scalars,
                /// including 0, 1, n - 1 and u2 Q = -u1 G (the point at infinity).
                #[test]
                fn double_scalar_mul_matches_reference(
                    d in nonzero_below_n(),
                    u1 in below(&n()),
                    u2 in below(&n()),
                    cancel in any::<bool>(),
                ) {
                    let n = n();
                    let (signing, x, y) = signer(&d);
                    let key = ecdsa_vt::EcdsaKey::<L, C>::new(&x, &y).unwrap();
                    // With u2 = (n - u1) / d, u1 G + u2 Q = u1 G - u1 G = infinity.
                    let u2 = if cancel {
                        let d_inv = d.modpow(&(&n - 2u8), &n);
                        (&n - &u1) % &n * d_inv % &n
                    } else {
                        u2
                    };
                    let ours = ecdsa_vt::double_scalar_mul(&limbs(&u1), &limbs(&u2), key.tables())
                        .unwrap()
                        .to_affine()
                        .map(|point| BigUint::from_slice(&point.x.0));
                    let reference =
                        reference_lincomb(&u1, &u2, signing.verifying_key().as_affine());
                    prop_assert_eq!(ours, reference);
                }

                /// Verification against the reference crate, on its signatures over random
                /// messages and tampered ones (high-S stays valid: JWS does not require low-S).
                #[test]
                fn verify_matches_reference(
                    d in nonzero_below_n(),
                    msg in proptest::collection::vec(any::<u8>(), 0..300),
                    tamper in 0u8..11,
                    bit in 0usize..(16 * BYTES),
                    r_or_s in below(&n()),
                ) {
                    use ::$reference::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
                    let n = n();
                    let (signing, x, y) = signer(&d);
                    let ours = PublicKey::ec($crv, &x, &y).unwrap();
                    let sig: ::$reference::ecdsa::Signature =
                        signing.sign_prehash(&<$hash>::digest(&msg)).unwrap();
                    let sig = sig.to_bytes().to_vec();
                    let mut verify_msg = msg.clone();
                    let mut verify_sig = sig.clone();
                    let (r, s) = (
                        BigUint::from_bytes_be(&sig[..BYTES]),
                        BigUint::from_bytes_be(&sig[BYTES..]),
                    );
                    let join = |r: &BigUint, s: &BigUint| [be(r), be(s)].concat();
                    match tamper {
                        0 | 1 => {}
                        2 => verify_sig[bit / 8] ^= 1 << (bit % 8),
                        3 => verify_msg.push(1),
                        4 => verify_sig = join(&r, &(&n - &s)),
                        5 => verify_sig = join(&r_or_s, &s),
                        6 => verify_sig = join(&r, &r_or_s),
                        7 => verify_sig = join(&(&r + &n), &s),
                        8 => verify_sig = join(&r, &(&s + &n)),
                        9 => verify_sig.truncate(2 * BYTES - 1),
                        _ => verify_sig = join(&r_or_s, &r_or_s),
                    }
                    let reference = ::$reference::ecdsa::Signature::from_slice(&verify_sig)
                        .is_ok_and(|sig| {
                            signing
                                .verifying_key()
                                .verify_prehash(&<$hash>::digest(&verify_msg), &sig)
                                .is_ok()
                        });
                    let got = ours.verify($alg, &verify_msg, &verify_sig).is_ok();
                    prop_assert_eq!(got, reference);
                    if tamper < 2 || tamper == 4 {
                        prop_assert!(got);
                    }
                }

                /// Key import agrees with the reference crate: random coordinates (almost never
                /// on the curve), real points, and real points with a coordinate changed or
                /// replaced by `p + x` (when that fits) or `p - y`.
                #[test]
                fn key_import_matches_reference(
                    d in nonzero_below_n(),
                    x in proptest::collection::vec(any::<u8>(), BYTES),
                    y in proptest::collection::vec(any::<u8>(), BYTES),
                    which in 0u8..6,
                ) {
                    let (_, mut px, mut py) = signer(&d);
                    match which {
                        0 => {}
                        1 => (px, py) = (x, y),
                        2 => py[BYTES - 1] ^= 1,
                        3 => px = be(&(BigUint::from_bytes_be(&px) + p())).to_vec(),
                        4 => py = be(&((p() - BigUint::from_bytes_be(&py)) % p())).to_vec(),
                        // Random x below p with the real y: not on the curve.
                        _ => px = be(&(BigUint::from_bytes_be(&x) % p())).to_vec(),
                    }
                    let mut sec1 = vec![4u8];
                    sec1.extend_from_slice(&px);
                    sec1.extend_from_slice(&py);
                    let reference =
                        ::$reference::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).is_ok();
                    prop_assert_eq!(PublicKey::ec($crv, &px, &py).is_ok(), reference);
                    if which == 0 || which == 4 {
                        prop_assert!(reference);
                    }
                }
            }
        }
    };
}

ecdsa_properties!(
    p256,
    curve = p256_vt::P256,
    limbs = 8,
    bytes = 32,
    reference = p256,
    hash = Sha256,
    alg = Algorithm::Es256,
    crv = "P-256",
    cases = 64
);

ecdsa_properties!(
    p384,
    curve = ecdsa_vt::P384,
    limbs = 12,
    bytes = 48,
    reference = p384,
    hash = Sha384,
    alg = Algorithm::Es384,
    crv = "P-384",
    cases = 48
);

ecdsa_properties!(
    p521,
    curve = ecdsa_vt::P521,
    limbs = 17,
    bytes = 66,
    reference = p521,
    hash = Sha512,
    alg = Algorithm::Es512,
    crv = "P-521",
    cases = 32
);

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn wnaf_digits_are_a_valid_recoding(k in any::<[u8; 32]>(), window in 2u32..=8) {
        let k = limbs::from_le_bytes(&k);
        let digits = limbs::wnaf(&k, window);
        let mut sum = num_bigint::BigInt::from(0);
        let mut last_nonzero: Option<usize> = None;
        for (i, &d) in digits.iter().enumerate() {
            if d != 0 {
                prop_assert!(d % 2 != 0 && i32::from(d).abs() < 1 << (window - 1));
                if let Some(last) = last_nonzero {
                    prop_assert!(i - last >= window as usize);
                }
                last_nonzero = Some(i);
            }
            sum += num_bigint::BigInt::from(d) << i;
        }
        prop_assert_eq!(sum, num_bigint::BigInt::from(big_le(&k)));
    }

    /// The generic wNAF recoding on 17 limbs (P-521's scalars), and the products and squares
    /// on 12 and 17 limbs against `num-bigint`, on random and all-ones inputs.
    #[test]
    fn wide_limb_helpers_match_num_bigint(
        k in proptest::collection::vec(any::<u32>(), 17),
        b in proptest::collection::vec(any::<u32>(), 17),
        window in 2u32..=8,
        ones in any::<bool>(),
    ) {
        let mut k: [u32; 17] = k.try_into().unwrap();
        let mut b: [u32; 17] = b.try_into().unwrap();
        if ones {
            (k, b) = ([u32::MAX; 17], [u32::MAX; 17]);
        }
        let mut digits = [0i8; 32 * 17 + 1];
        limbs::wnaf_into(&k, window, &mut digits);
        let mut sum = num_bigint::BigInt::from(0);
        let mut last_nonzero: Option<usize> = None;
        for (i, &d) in digits.iter().enumerate() {
            if d != 0 {
                prop_assert!(d % 2 != 0 && i32::from(d).abs() < 1 << (window - 1));
                if let Some(last) = last_nonzero {
                    prop_assert!(i - last >= window as usize);
                }
                last_nonzero = Some(i);
            }
            sum += num_bigint::BigInt::from(d) << i;
        }
        prop_assert_eq!(sum, num_bigint::BigInt::from(BigUint::from_slice(&k)));

        let (kb, bb) = (BigUint::from_slice(&k), BigUint::from_slice(&b));
        let product: [u32; 34] = ecdsa_vt::mul_wide_17(&k, &b);
        prop_assert_eq!(BigUint::from_slice(&product), &kb * &bb);
        let square: [u32; 34] = ecdsa_vt::square_wide_17(&k);
        prop_assert_eq!(BigUint::from_slice(&square), &kb * &kb);
        let (k12, b12): ([u32; 12], [u32; 12]) =
            (k[..12].try_into().unwrap(), b[..12].try_into().unwrap());
        let (kb, bb) = (BigUint::from_slice(&k12), BigUint::from_slice(&b12));
        let product: [u32; 24] = ecdsa_vt::mul_wide_12(&k12, &b12);
        prop_assert_eq!(BigUint::from_slice(&product), &kb * &bb);
        let square: [u32; 24] = ecdsa_vt::square_wide_12(&k12);
        prop_assert_eq!(BigUint::from_slice(&square), &kb * &kb);
    }
}

// ---------------------------------------------------------------------------------------------
// Ed25519
// ---------------------------------------------------------------------------------------------

fn ed_p() -> BigUint {
    big_le(&ed25519_vt::P)
}

fn ed_fe(value: &BigUint) -> ed25519_vt::Fe {
    ed25519_vt::Fe::from_limbs(limbs_of(value))
}

/// Any of the 256-bit numbers that stand for a field element: a value below p plus 0, p or 2p
/// (when that stays below 2^256), or one of the largest, up to `2^256 - 1 = 2p + 37`.
fn ed_representative() -> impl Strategy<Value = BigUint> {
    let top = BigUint::from(1u8) << 256;
    prop_oneof![
        6 => (below(&ed_p()), 0u8..3).prop_map(|(v, k)| {
            let r = &v + ed_p() * k;
            if r.bits() > 256 { v } else { r }
        }),
        1 => (1u8..=40).prop_map(move |d| &top - d),
    ]
}

fn dalek_scalar(bytes: [u8; 32]) -> curve25519_dalek::Scalar {
    curve25519_dalek::Scalar::from_bytes_mod_order(bytes)
}

/// A point: `[a]B` plus one of the eight torsion points.
fn dalek_point(a: [u8; 32], torsion: usize) -> curve25519_dalek::EdwardsPoint {
    curve25519_dalek::constants::ED25519_BASEPOINT_POINT * dalek_scalar(a)
        + curve25519_dalek::constants::EIGHT_TORSION[torsion % 8]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    /// The field on every representative, not only the canonical one: operations take and
    /// give numbers anywhere below 2^256, and `canonical` and `==` see through them.
    #[test]
    fn ed25519_field_matches_num_bigint(a in ed_representative(), b in ed_representative()) {
        let p = ed_p();
        let (fa, fb) = (ed_fe(&a), ed_fe(&b));
        let (a, b) = (&a % &p, &b % &p);
        prop_assert!(fa == ed_fe(&a) && fb == ed_fe(&b));
        prop_assert_eq!(big_le(&fa.canonical()), a.clone());
        prop_assert_eq!(big_le(&fa.mul(&fb).canonical()), &a * &b % &p);
        prop_assert_eq!(big_le(&fa.square().canonical()), &a * &a % &p);
        prop_assert_eq!(big_le(&fa.add(&fb).canonical()), (&a + &b) % &p);
        prop_assert_eq!(big_le(&fa.sub(&fb).canonical()), (&a + &p - &b) % &p);
        prop_assert_eq!(big_le(&fa.neg().canonical()), (&p - &a) % &p);
        match fa.invert() {
            None => prop_assert_eq!(&a, &BigUint::from(0u8)),
            Some(inv) => prop_assert_eq!(big_le(&inv.canonical()), a.modpow(&(&p - 2u8), &p)),
        }
    }

    /// Decoding agrees with curve25519-dalek's decompression followed by re-encoding, on
    /// random encodings (about half decode), encodings of real points, and the non-canonical
    /// ones: `y + p` for `y < 19` and the sign bit set on `x = 0` (y = 1 or p - 1), with either
    /// sign. A point that decodes re-encodes to the same bytes.
    #[test]
    fn ed25519_decode_matches_dalek(
        bytes in any::<[u8; 32]>(),
        a in any::<[u8; 32]>(),
        torsion in 0usize..8,
        kind in 0u8..4,
    ) {
        let encoding = match kind {
            0 => bytes,
            1 => dalek_point(a, torsion).compress().to_bytes(),
            2 => {
                let mut r = [0xffu8; 32];
                r[0] = 0xed + (bytes[0] % 19);
                r[31] = 0x7f | (bytes[1] & 0x80);
                r
            }
            _ => {
                let mut r = if bytes[0] & 1 == 0 { [0u8; 32] } else { [0xffu8; 32] };
                r[0] = if bytes[0] & 1 == 0 { 1 } else { 0xec };
                r[31] = (r[31] & 0x7f) | (bytes[1] & 0x80);
                r
            }
        };
        let dalek = curve25519_dalek::edwards::CompressedEdwardsY(encoding).decompress();
        let expected = match dalek {
            None => Err(ed25519_vt::KeyError::NotAPoint),
            Some(point) if point.compress().to_bytes() != encoding => {
                Err(ed25519_vt::KeyError::NotCanonical)
            }
            Some(point) => Ok(point.compress().to_bytes()),
        };
        let ours = ed25519_vt::decompress(&encoding)
            .map(|(x, y)| ed25519_vt::Extended::from_affine(x, y).encode().unwrap());
        prop_assert_eq!(ours, expected);
    }

    /// The scalar checks against curve25519-dalek: `S < L` as `from_canonical_bytes`, and the
    /// 512-bit reduction modulo L as `from_bytes_mod_order_wide`, on random bytes, random
    /// scalars near L and the edges.
    #[test]
    fn ed25519_scalars_match_dalek(
        wide in proptest::collection::vec(any::<u8>(), 64),
        s in any::<[u8; 32]>(),
        kind in 0u8..6,
    ) {
        let l = big_le(&ed25519_vt::L);
        let le32 = |value: &BigUint| {
            let mut out = value.to_bytes_le();
            out.resize(32, 0);
            <[u8; 32]>::try_from(out).unwrap()
        };
        let s = match kind {
            0 => s,
            // Mostly below L: the top byte of L is 0x10.
            1 => { let mut s = s; s[31] &= 0x1f; s }
            2 => le32(&(&l - 1u8)),
            3 => le32(&l),
            4 => le32(&(&l + BigUint::from(s[0]))),
            _ => le32(&(BigUint::from_bytes_le(&s) % &l)),
        };
        let reference = curve25519_dalek::Scalar::from_canonical_bytes(s);
        prop_assert_eq!(ed25519_vt::is_canonical_scalar(&s), bool::from(reference.is_some()));
        let mut wide: [u8; 64] = wide.try_into().unwrap();
        if kind == 2 {
            wide = [0xff; 64];
        }
        let ours = limbs::to_le_bytes(&ed25519_vt::reduce_wide(&wide));
        let reference = curve25519_dalek::Scalar::from_bytes_mod_order_wide(&wide).to_bytes();
        prop_assert_eq!(ours, reference);
        prop_assert_eq!(BigUint::from_bytes_le(&ours), BigUint::from_bytes_le(&wide) % &l);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    /// `[s]B + [k]A` against curve25519-dalek, for random scalars and points with any
    /// small-order component.
    #[test]
    fn ed25519_double_scalar_mul_matches_dalek(
        a in any::<[u8; 32]>(),
        torsion in 0usize..8,
        s in any::<[u8; 32]>(),
        k in any::<[u8; 32]>(),
        small in any::<bool>(),
    ) {
        let point = dalek_point(a, torsion);
        let (s, k) = if small {
            // Short scalars: most chunks empty.
            (dalek_scalar([s[0], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), dalek_scalar(k))
        } else {
            (dalek_scalar(s), dalek_scalar(k))
        };
        let reference = curve25519_dalek::EdwardsPoint::vartime_double_scalar_mul_basepoint(
            &k, &point, &s,
        )
        .compress()
        .to_bytes();
        let (x, y) = ed25519_vt::decompress(&point.compress().to_bytes()).unwrap();
        let tables = ed25519_vt::Tables::new(&ed25519_vt::Extended::from_affine(x, y), 5).unwrap();
        let ours = ed25519_vt::double_scalar_mul(
            &limbs::from_le_bytes(s.as_bytes()),
            &limbs::from_le_bytes(k.as_bytes()),
            &tables,
        )
        .unwrap()
        .encode()
        .unwrap();
        prop_assert_eq!(ours, reference);
    }

    /// EdDSA verification against ed25519-dalek's `verify_strict`, on its signatures over
    /// random messages and tampered ones: bit flips, S + L, small-order and non-canonical R,
    /// random R or S.
    #[test]
    fn eddsa_verify_matches_verify_strict(
        seed in any::<[u8; 32]>(),
        msg in proptest::collection::vec(any::<u8>(), 0..300),
        tamper in 0u8..9,
        bit in 0usize..512,
        random in any::<[u8; 32]>(),
        torsion in 0usize..8,
    ) {
        use ed25519_dalek::Signer;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let verifying = signing.verifying_key();
        let ours = PublicKey::ed25519(verifying.as_bytes()).unwrap();
        let sig = signing.sign(&msg).to_bytes();
        let mut verify_msg = msg.clone();
        let mut verify_sig = sig;
        match tamper {
            0 | 1 => {}
            2 => verify_sig[bit / 8] ^= 1 << (bit % 8),
            3 => verify_msg.push(1),
            4 => {
                // S + L: the same scalar, not canonical.
                let s = BigUint::from_bytes_le(&sig[32..]);
                let l: BigUint = (BigUint::from(1u8) << 252)
                    + BigUint::parse_bytes(b"14def9dea2f79cd65812631a5cf5d3ed", 16).unwrap();
                let mut bytes = (s + l).to_bytes_le();
                bytes.resize(32, 0);
                verify_sig[32..].copy_from_slice(&bytes);
            }
            5 => {
                let r = curve25519_dalek::constants::EIGHT_TORSION[torsion].compress().to_bytes();
                verify_sig[..32].copy_from_slice(&r);
                verify_sig[31] ^= (bit as u8 & 1) << 7;
            }
            6 => {
                // Non-canonical R: y + p when y < 19 (p, p + 1, ... with either sign).
                let mut r = [0xffu8; 32];
                r[0] = 0xed + (random[0] % 19);
                r[31] = 0x7f | ((bit as u8 & 1) << 7);
                verify_sig[..32].copy_from_slice(&r);
            }
            7 => verify_sig[..32].copy_from_slice(&random),
            _ => verify_sig[32..].copy_from_slice(&random),
        }
        let reference = verifying
            .verify_strict(&verify_msg, &ed25519_dalek::Signature::from_bytes(&verify_sig))
            .is_ok();
        let got = ours.verify(Algorithm::EdDsa, &verify_msg, &verify_sig).is_ok();
        prop_assert_eq!(got, reference);
        if tamper < 2 {
            prop_assert!(got);
        }
    }

    /// Key import agrees with ed25519-dalek plus the checks `verify_strict` makes: random
    /// bytes, real keys, small-order points and non-canonical encodings.
    #[test]
    fn ed25519_key_import_matches_dalek(
        bytes in any::<[u8; 32]>(),
        a in any::<[u8; 32]>(),
        torsion in 0usize..8,
        which in 0u8..4,
    ) {
        let encoding = match which {
            0 => bytes,
            1 => dalek_point(a, torsion).compress().to_bytes(),
            2 => curve25519_dalek::constants::EIGHT_TORSION[torsion].compress().to_bytes(),
            _ => {
                let mut r = [0xffu8; 32];
                r[0] = 0xed + (bytes[0] % 19);
                r[31] = 0x7f | (bytes[1] & 0x80);
                r
            }
        };
        let reference = ed25519_dalek::VerifyingKey::from_bytes(&encoding).is_ok_and(|key| {
            !key.is_weak() && key.to_edwards().compress().to_bytes() == encoding
        });
        prop_assert_eq!(PublicKey::ed25519(&encoding).is_ok(), reference);
        // The reason, as curve25519-dalek tells it; keys with a small-order component (but
        // not of small order) are accepted, as by verify_strict.
        let expected = match curve25519_dalek::edwards::CompressedEdwardsY(encoding).decompress() {
            None => Err(ed25519_vt::KeyError::NotAPoint),
            Some(point) if point.compress().to_bytes() != encoding => {
                Err(ed25519_vt::KeyError::NotCanonical)
            }
            Some(point) if point.is_small_order() => Err(ed25519_vt::KeyError::SmallOrder),
            Some(_) => Ok(()),
        };
        prop_assert_eq!(ed25519_vt::Ed25519Key::new(&encoding).map(|_| ()), expected);
        if which == 1 {
            prop_assert!(expected.is_ok());
        }
    }
}

#[test]
fn small_order_blocklist_is_every_small_order_encoding() {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    // Every torsion point's encoding, with either sign bit, is on the list.
    for point in curve25519_dalek::constants::EIGHT_TORSION {
        let mut encoding = point.compress().to_bytes();
        assert!(ed25519_vt::has_small_order(&encoding));
        encoding[31] ^= 0x80;
        assert!(ed25519_vt::has_small_order(&encoding));
    }
    // Every other encoding with a small y, or y = p + small, decodes (if at all; dalek accepts
    // non-canonical y) to a point of small order exactly when it is on the list.
    let mut small = 0;
    for low in 0u8..=255 {
        for high in [0x00u8, 0x7f, 0x80, 0xff] {
            let mut encoding = if high & 0x7f == 0x7f {
                [0xffu8; 32]
            } else {
                [0u8; 32]
            };
            encoding[0] = low;
            encoding[31] = high;
            let decodes_small = CompressedEdwardsY(encoding)
                .decompress()
                .is_some_and(|p| p.is_small_order());
            assert_eq!(
                ed25519_vt::has_small_order(&encoding),
                decodes_small,
                "{encoding:?}"
            );
            small += usize::from(decodes_small);
        }
    }
    // y = 0, 1 (each with both signs), p - 1, p, p + 1 (each with both signs).
    assert_eq!(small, 10);
}
