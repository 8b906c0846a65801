//! Property tests: our own public-key code against reference crates, on random keys, messages
//! and signatures, valid and not.
//!
//! - RSA (`rsa_vt`): the public operation against `num-bigint`'s `modpow` on random moduli and
//!   exponents; whole RS*/PS* verifications against the `rsa` crate, with its own signatures
//!   (2048-, 3072- and 4096-bit keys, exponents 65537 and 3) and mutations of them.
//! - P-256 (`p256_vt`): the field and the scalar arithmetic against `num-bigint`,
//!   `u1 G + u2 Q` against the `p256` crate, whole ES256 verifications and key imports against
//!   the `p256` crate.
//! - Ed25519 (`ed25519_vt`): the field against `num-bigint`, point decoding and
//!   `[s]B + [k]A` against curve25519-dalek (including points with a small-order component),
//!   whole verifications and key imports against ed25519-dalek's `verify_strict`.
//!
//! Every test runs a fixed number of cases from a seed that proptest derives for each run; a
//! failure prints the (shrunk) input and the seed to replay. In wasm32 (`make unit-wasm`, debug
//! code under V8) a quarter of the cases run: the code is the same there (32-bit limbs on every
//! target), the run only checks that V8 computes what the native build does.

use num_bigint::BigUint;
use proptest::prelude::*;
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::limbs::{self, Limbs};
use super::{ed25519_vt, p256_vt, rsa_vt, Algorithm, PublicKey};

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

/// A number below `m`: random bytes reduced, or one of the edge values.
fn below(m: &BigUint) -> impl Strategy<Value = BigUint> {
    let m = m.clone();
    let edges = m.clone();
    prop_oneof![
        4 => any::<[u8; 40]>().prop_map(move |bytes| BigUint::from_bytes_le(&bytes) % &m),
        1 => (0u32..6).prop_map(move |which| match which {
            0 => BigUint::from(0u8),
            1 => BigUint::from(1u8),
            2 => &edges - 1u8,
            3 => &edges - 2u8,
            4 => (BigUint::from(1u8) << 255) % &edges,
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

    /// `s^e mod n` on random odd moduli of 2048..=4096 bits (any length, not only multiples
    /// of 32), random odd exponents up to 2^33 - 1 and random `s`.
    #[test]
    fn rsa_public_op_matches_num_bigint(
        bits in 2048usize..=4096,
        n_bytes in proptest::collection::vec(any::<u8>(), 512),
        e in prop_oneof![Just(65537u64), Just(3u64), (1u64..(1 << 32)).prop_map(|x| 2 * x + 1)],
        s_bytes in proptest::collection::vec(any::<u8>(), 512),
    ) {
        let mut n = BigUint::from_bytes_be(&n_bytes) >> (4096 - bits);
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
// P-256
// ---------------------------------------------------------------------------------------------

fn p256_p() -> BigUint {
    big_le(&p256_vt::P)
}

fn p256_n() -> BigUint {
    big_le(&p256_vt::N)
}

fn p256_fe(value: &BigUint) -> p256_vt::Fe {
    p256_vt::Fe::from_limbs(limbs_of(value)).unwrap()
}

/// `value mod 2^256`, big-endian.
fn be32(value: &BigUint) -> [u8; 32] {
    let modulus: BigUint = BigUint::from(1u8) << 256;
    let raw = (value % modulus).to_bytes_be();
    let mut out = [0u8; 32];
    out[32 - raw.len()..].copy_from_slice(&raw);
    out
}

fn p256_scalar(value: &BigUint) -> p256::Scalar {
    use p256::elliptic_curve::ff::PrimeField;
    Option::from(p256::Scalar::from_repr(be32(value).into())).unwrap()
}

/// The affine x of `u1 G + u2 Q` by the `p256` crate; `None` for the point at infinity.
fn p256_reference_lincomb(u1: &BigUint, u2: &BigUint, q: &p256::AffinePoint) -> Option<BigUint> {
    use p256::elliptic_curve::point::AffineCoordinates;
    let sum = p256::ProjectivePoint::GENERATOR * p256_scalar(u1)
        + p256::ProjectivePoint::from(*q) * p256_scalar(u2);
    if bool::from(p256::elliptic_curve::group::Group::is_identity(&sum)) {
        return None;
    }
    Some(BigUint::from_bytes_be(&sum.to_affine().x()))
}

/// A P-256 key pair from a (non-zero) scalar.
fn p256_keypair(d: &BigUint) -> (p256::ecdsa::SigningKey, PublicKey, p256_vt::P256Key) {
    let signing = p256::ecdsa::SigningKey::from_slice(&be32(d)).unwrap();
    let point = signing.verifying_key().to_sec1_point(false);
    let bytes = point.as_bytes();
    let x: [u8; 32] = bytes[1..33].try_into().unwrap();
    let y: [u8; 32] = bytes[33..65].try_into().unwrap();
    let ours = PublicKey::ec("P-256", &x, &y).unwrap();
    let inner = p256_vt::P256Key::new(&x, &y).unwrap();
    (signing, ours, inner)
}

fn nonzero_below_n() -> impl Strategy<Value = BigUint> {
    below(&p256_n()).prop_map(|x| {
        if x == BigUint::from(0u8) {
            BigUint::from(7u8)
        } else {
            x
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn p256_field_matches_num_bigint(a in below(&p256_p()), b in below(&p256_p())) {
        let p = p256_p();
        let (fa, fb) = (p256_fe(&a), p256_fe(&b));
        prop_assert_eq!(big_le(&fa.mul(&fb).0), &a * &b % &p);
        prop_assert_eq!(big_le(&fa.square().0), &a * &a % &p);
        prop_assert_eq!(big_le(&fa.add(&fb).0), (&a + &b) % &p);
        prop_assert_eq!(big_le(&fa.sub(&fb).0), (&a + &p - &b) % &p);
        prop_assert_eq!(big_le(&fa.neg().0), (&p - &a) % &p);
        match fa.invert() {
            None => prop_assert_eq!(&a, &BigUint::from(0u8)),
            Some(inv) => prop_assert_eq!(big_le(&inv.0), a.modpow(&(&p - 2u8), &p)),
        }
    }

    #[test]
    fn p256_scalars_match_num_bigint(a in below(&p256_n()), b in below(&p256_n())) {
        let n = p256_n();
        prop_assert_eq!(big_le(&p256_vt::mul_mod_n(&limbs_of(&a), &limbs_of(&b))), &a * &b % &n);
        match limbs::inv_mod(&limbs_of(&a), &p256_vt::N) {
            None => prop_assert_eq!(&a, &BigUint::from(0u8)),
            Some(inv) => prop_assert_eq!(big_le(&inv), a.modpow(&(&n - 2u8), &n)),
        }
    }

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
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    /// `u1 G + u2 Q` against the `p256` crate, for random keys and scalars, including 0, 1,
    /// n - 1 and u2 Q = -u1 G (the point at infinity).
    #[test]
    fn p256_double_scalar_mul_matches_p256_crate(
        d in nonzero_below_n(),
        u1 in below(&p256_n()),
        u2 in below(&p256_n()),
        cancel in any::<bool>(),
    ) {
        let n = p256_n();
        let (signing, _, key) = p256_keypair(&d);
        // With u2 = (n - u1) / d, u1 G + u2 Q = u1 G - u1 G = infinity.
        let u2 = if cancel {
            let d_inv = d.modpow(&(&n - 2u8), &n);
            (&n - &u1) % &n * d_inv % &n
        } else {
            u2
        };
        let ours = p256_vt::double_scalar_mul(&limbs_of(&u1), &limbs_of(&u2), key.tables())
            .unwrap()
            .to_affine()
            .map(|point| big_le(&point.x.0));
        let reference = p256_reference_lincomb(&u1, &u2, signing.verifying_key().as_affine());
        prop_assert_eq!(ours, reference);
    }

    /// ES256 verification against the `p256` crate, on its signatures over random messages and
    /// tampered ones (high-S stays valid: JWS does not require low-S).
    #[test]
    fn es256_verify_matches_p256_crate(
        d in nonzero_below_n(),
        msg in proptest::collection::vec(any::<u8>(), 0..300),
        tamper in 0u8..10,
        bit in 0usize..512,
        r_or_s in below(&p256_n()),
    ) {
        use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
        let n = p256_n();
        let (signing, ours, _) = p256_keypair(&d);
        let digest = Sha256::digest(&msg);
        let sig: p256::ecdsa::Signature = signing.sign_prehash(&digest).unwrap();
        let sig = sig.to_bytes().to_vec();
        let mut verify_msg = msg.clone();
        let mut verify_sig = sig.clone();
        let (r, s) = (BigUint::from_bytes_be(&sig[..32]), BigUint::from_bytes_be(&sig[32..]));
        let join = |r: &BigUint, s: &BigUint| {
            let (mut out, tail) = (be32(r).to_vec(), be32(s));
            out.extend_from_slice(&tail);
            out
        };
        match tamper {
            0 | 1 => {}
            2 => verify_sig[bit / 8] ^= 1 << (bit % 8),
            3 => verify_msg.push(1),
            4 => verify_sig = join(&r, &(&n - &s)),
            5 => verify_sig = join(&r_or_s, &s),
            6 => verify_sig = join(&r, &r_or_s),
            7 => verify_sig = join(&(&r + &n), &s),
            8 => verify_sig = join(&r, &(&s + &n)),
            _ => verify_sig = join(&r_or_s, &r_or_s),
        }
        let reference = p256::ecdsa::Signature::from_slice(&verify_sig).is_ok_and(|sig| {
            signing
                .verifying_key()
                .verify_prehash(&Sha256::digest(&verify_msg), &sig)
                .is_ok()
        });
        let got = ours.verify(Algorithm::Es256, &verify_msg, &verify_sig).is_ok();
        prop_assert_eq!(got, reference);
        if tamper < 2 || tamper == 4 {
            prop_assert!(got);
        }
    }

    /// Key import agrees with the `p256` crate: random coordinates (almost never on the curve),
    /// real points, and real points with a coordinate changed or replaced by `p + x`.
    #[test]
    fn p256_key_import_matches_p256_crate(
        d in nonzero_below_n(),
        x in any::<[u8; 32]>(),
        y in any::<[u8; 32]>(),
        which in 0u8..5,
    ) {
        let (signing, _, _) = p256_keypair(&d);
        let point = signing.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        let (mut px, mut py) = (bytes[1..33].to_vec(), bytes[33..65].to_vec());
        match which {
            0 => {}
            1 => (px, py) = (x.to_vec(), y.to_vec()),
            2 => py[31] ^= 1,
            3 => px = be32(&(BigUint::from_bytes_be(&px) + p256_p())).to_vec(),
            _ => py = be32(&((p256_p() - BigUint::from_bytes_be(&py)) % p256_p())).to_vec(),
        }
        let mut sec1 = vec![4u8];
        sec1.extend_from_slice(&px);
        sec1.extend_from_slice(&py);
        let reference = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).is_ok();
        prop_assert_eq!(PublicKey::ec("P-256", &px, &py).is_ok(), reference);
        if which == 0 || which == 4 {
            prop_assert!(reference);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ed25519
// ---------------------------------------------------------------------------------------------

fn ed_p() -> BigUint {
    big_le(&ed25519_vt::P)
}

fn ed_fe(value: &BigUint) -> ed25519_vt::Fe {
    ed25519_vt::Fe::from_limbs(limbs_of(value)).unwrap()
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

    #[test]
    fn ed25519_field_matches_num_bigint(a in below(&ed_p()), b in below(&ed_p())) {
        let p = ed_p();
        let (fa, fb) = (ed_fe(&a), ed_fe(&b));
        prop_assert_eq!(big_le(&fa.mul(&fb).0), &a * &b % &p);
        prop_assert_eq!(big_le(&fa.square().0), &a * &a % &p);
        prop_assert_eq!(big_le(&fa.add(&fb).0), (&a + &b) % &p);
        prop_assert_eq!(big_le(&fa.sub(&fb).0), (&a + &p - &b) % &p);
        prop_assert_eq!(big_le(&fa.neg().0), (&p - &a) % &p);
        match fa.invert() {
            None => prop_assert_eq!(&a, &BigUint::from(0u8)),
            Some(inv) => prop_assert_eq!(big_le(&inv.0), a.modpow(&(&p - 2u8), &p)),
        }
    }

    /// Decoding agrees with curve25519-dalek on random encodings (about half decode) and on
    /// encodings of real points; decoded points re-encode to the same bytes when canonical.
    #[test]
    fn ed25519_decode_matches_dalek(
        bytes in any::<[u8; 32]>(),
        a in any::<[u8; 32]>(),
        torsion in 0usize..8,
        real in any::<bool>(),
    ) {
        let encoding = if real { dalek_point(a, torsion).compress().to_bytes() } else { bytes };
        let dalek = curve25519_dalek::edwards::CompressedEdwardsY(encoding).decompress();
        let mut y = encoding;
        y[31] &= 0x7f;
        let canonical = limbs::lt(&limbs::from_le_bytes(&y), &ed25519_vt::P);
        let ours = ed25519_vt::decode(&encoding);
        if canonical {
            prop_assert_eq!(ours.is_some(), dalek.is_some());
        } else {
            // Non-canonical y: refused by us, whatever dalek (which reduces y) says.
            prop_assert!(ours.is_none());
        }
        if let (Some((x, y)), Some(point)) = (ours, dalek) {
            let ours = ed25519_vt::Extended::from_affine(x, y).encode().unwrap();
            prop_assert_eq!(ours, point.compress().to_bytes());
        }
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
        let (x, y) = ed25519_vt::decode(&point.compress().to_bytes()).unwrap();
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
