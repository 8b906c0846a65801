//! ECDSA verification (P-256, P-384, P-521), variable-time, shaped for wasm under V8: V8 has no
//! 64x64->128-bit multiply, so the `p256`/`p384`/`p521` crates' 64-bit-limb, constant-time code
//! runs several times slower in wasm than natively, and cannot use what verification allows:
//! every value a verifier handles is public (the key, the signature, the digest), so nothing
//! needs to be constant-time.
//!
//! One implementation serves the three curves: they are short-Weierstrass curves with `a = -3`
//! and cofactor 1, so everything but the field multiplication is the same code, generic over a
//! [`Curve`] with `L` 32-bit limbs per element (const generics: 8, 12, 17). Each curve brings
//! its constants and its field multiplication: a schoolbook product (half the work of a
//! Montgomery multiplication), written out column by column for P-256 and P-384 and a row at a
//! time for P-521 (faster there under V8, and ~11 KB smaller), then the reduction its prime's
//! shape allows:
//! - P-256 (`p256_vt`) and P-384: the NIST fast (Solinas) reductions, signed sums of 32-bit
//!   words and a few carries; p = 2^384 - 2^128 - 2^96 + 2^32 - 1 here.
//! - P-521: p = 2^521 - 1, a Mersenne prime: `lo + hi` and one carry fold.
//!
//! The scalar field (a handful of operations per verification) uses the shared Montgomery
//! multiplication of `limbs`, and `s^-1 mod n` the shared variable-time inversion
//! (Bernstein-Yang divsteps).
//!
//! Where the time goes, and what is precomputed:
//! - Jacobian coordinates, and one interleaved wNAF double-scalar multiplication `u1 G + u2 Q`
//!   over tables of affine points, so every addition in the loop is a mixed addition.
//! - Each scalar is split in `L` chunks of 32 bits, `u = sum u_c 2^(32 c)`, so the loop has 32
//!   doublings rather than 256, 384 or 521 (additions are as many as without the split: one per
//!   non-zero wNAF digit). That needs tables of odd multiples of `2^(32 c) G` (16, 36 and 74 KB
//!   for P-256, P-384 and P-521, built once per process with the curve's first key) and of
//!   `2^(32 c) Q` (4, 9 and 18 KB per key), which [`EcdsaKey::new`] builds when the key is
//!   imported, so every verification with that key reuses them.
//! - The final check compares `X` with `r Z^2` (and `(r + n) Z^2` when that is below `p`)
//!   instead of inverting `Z`.
//!
//! JWS checks: the signature is exactly `R || S` of the field size, `r` and `s` in `[1, n-1]`,
//! high `s` accepted. The digest is never longer than n (SHA-256, SHA-384 and SHA-512 for the
//! 256-, 384- and 521-bit curves), so FIPS 186-5 truncates nothing: it is read as an integer
//! and reduced mod n. Key coordinates must be below p and the point on the curve (cofactor 1:
//! that is the whole check; affine coordinates cannot be the point at infinity).
//!
//! The property tests in `properties.rs` check the fields, the products and the scalar
//! arithmetic against `num-bigint`, the multiplication, key import and whole verifications
//! against the `p256`, `p384` and `p521` crates; the Wycheproof tests in `lib.rs` run
//! through this code too.

use core::marker::PhantomData;

use super::limbs::{
    add_mod, add_raw, finish_signed_reduction, from_be, inv_mod, is_zero, lt, mul_mod,
    mul_wide_columns, mul_wide_rows, one, square_wide_columns, sub_mod, sub_raw, wnaf_into,
};

/// A prime-order short-Weierstrass curve `y^2 = x^3 - 3x + b` over GF(p), elements and scalars
/// on `L` little-endian 32-bit limbs.
pub trait Curve<const L: usize>: Copy + core::fmt::Debug + Eq + 'static {
    /// The JOSE name.
    const NAME: &'static str;
    /// The size of a coordinate, and of `r` and `s`, in bytes.
    const BYTES: usize;
    /// The bit length of n.
    const N_BITS: usize;
    /// The field prime.
    const P: [u32; L];
    /// The group order.
    const N: [u32; L];
    /// The coefficient b.
    const B: [u32; L];
    /// The generator's affine coordinates.
    const GX: [u32; L];
    const GY: [u32; L];
    /// `-n^-1 mod 2^32`, for Montgomery multiplication modulo n.
    const N0INV: u32;
    /// `2^(64 L) mod n`.
    const N_RR: [u32; L];

    /// `a b mod p` for `a, b < p`.
    fn field_mul(a: &[u32; L], b: &[u32; L]) -> [u32; L];
    /// `a^2 mod p` for `a < p`.
    fn field_square(a: &[u32; L]) -> [u32; L];
    /// The generator's tables, built on first use.
    fn generator_tables() -> Option<&'static Tables<L, Self>>;
}

// ---- P-384 ----

/// NIST P-384 (secp384r1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P384;

impl Curve<12> for P384 {
    const NAME: &'static str = "P-384";
    const BYTES: usize = 48;
    const N_BITS: usize = 384;
    // p = 2^384 - 2^128 - 2^96 + 2^32 - 1.
    const P: [u32; 12] = [
        0xffff_ffff,
        0x0000_0000,
        0x0000_0000,
        0xffff_ffff,
        0xffff_fffe,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
    ];
    const N: [u32; 12] = [
        0xccc5_2973,
        0xecec_196a,
        0x48b0_a77a,
        0x581a_0db2,
        0xf437_2ddf,
        0xc763_4d81,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
    ];
    const B: [u32; 12] = [
        0xd3ec_2aef,
        0x2a85_c8ed,
        0x8a2e_d19d,
        0xc656_398d,
        0x5013_875a,
        0x0314_088f,
        0xfe81_4112,
        0x181d_9c6e,
        0xe3f8_2d19,
        0x988e_056b,
        0xe23e_e7e4,
        0xb331_2fa7,
    ];
    const GX: [u32; 12] = [
        0x7276_0ab7,
        0x3a54_5e38,
        0xbf55_296c,
        0x5502_f25d,
        0x8254_2a38,
        0x59f7_41e0,
        0x8ba7_9b98,
        0x6e1d_3b62,
        0xf320_ad74,
        0x8eb1_c71e,
        0xbe8b_0537,
        0xaa87_ca22,
    ];
    const GY: [u32; 12] = [
        0x90ea_0e5f,
        0x7a43_1d7c,
        0x1d7e_819d,
        0x0a60_b1ce,
        0xb5f0_b8c0,
        0xe9da_3113,
        0x289a_147c,
        0xf8f4_1dbd,
        0x9292_dc29,
        0x5d9e_98bf,
        0x9626_2c6f,
        0x3617_de4a,
    ];
    const N0INV: u32 = 0xe88f_dc45;
    const N_RR: [u32; 12] = [
        0x19b4_09a9,
        0x2d31_9b24,
        0xdf1a_a419,
        0xff3d_81e5,
        0xfcb8_2947,
        0xbc3e_483a,
        0x4aab_1cc5,
        0xd40d_4917,
        0x2826_6895,
        0x3fb0_5b7a,
        0x2b39_bf21,
        0x0c84_ee01,
    ];

    // One copy of each product, called from everywhere: inlining it would multiply the module
    // size for no measurable speed.
    #[inline(never)]
    fn field_mul(a: &[u32; 12], b: &[u32; 12]) -> [u32; 12] {
        reduce_p384(&mul_wide_12(a, b))
    }

    #[inline(never)]
    fn field_square(a: &[u32; 12]) -> [u32; 12] {
        reduce_p384(&square_wide_12(a))
    }

    fn generator_tables() -> Option<&'static Tables<12, P384>> {
        static TABLES: std::sync::OnceLock<Option<Tables<12, P384>>> = std::sync::OnceLock::new();
        TABLES
            .get_or_init(|| Tables::new(&Affine::generator(), G_WINDOW))
            .as_ref()
    }
}

/// The 24-word product of 12-limb numbers.
#[inline(always)]
pub(crate) fn mul_wide_12(a: &[u32; 12], b: &[u32; 12]) -> [u32; 24] {
    mul_wide_columns!(
        12,
        a,
        b,
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]
    )
}

/// The 24-word square of a 12-limb number.
#[inline(always)]
pub(crate) fn square_wide_12(a: &[u32; 12]) -> [u32; 24] {
    square_wide_columns!(
        12,
        a,
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]
    )
}

/// A 768-bit number modulo the P-384 prime, by the NIST fast reduction (FIPS 186-4 appendix
/// D.2.4): with `c_i` the 32-bit words and `2^384 = 2^128 + 2^96 - 2^32 + 1 (mod p)`, each
/// word of the result is a signed sum of input words (|sum| < 2^36), then carries are
/// propagated and what passes the top is folded back in the same way.
fn reduce_p384(c: &[u32; 24]) -> [u32; 12] {
    let c = |i: usize| c.get(i).map_or(0, |&x| i64::from(x));
    let w = [
        c(0) + c(12) + c(20) + c(21) - c(23),
        c(1) - c(12) + c(13) - c(20) + c(22) + c(23),
        c(2) - c(13) + c(14) - c(21) + c(23),
        c(3) + c(12) - c(14) + c(15) + c(20) + c(21) - c(22) - c(23),
        c(4) + c(12) + c(13) - c(15) + c(16) + c(20) + 2 * c(21) + c(22) - 2 * c(23),
        c(5) + c(13) + c(14) - c(16) + c(17) + c(21) + 2 * c(22) + c(23),
        c(6) + c(14) + c(15) - c(17) + c(18) + c(22) + 2 * c(23),
        c(7) + c(15) + c(16) - c(18) + c(19) + c(23),
        c(8) + c(16) + c(17) - c(19) + c(20),
        c(9) + c(17) + c(18) - c(20) + c(21),
        c(10) + c(18) + c(19) - c(21) + c(22),
        c(11) + c(19) + c(20) - c(22) + c(23),
    ];
    // 2^384 = 2^128 + 2^96 - 2^32 + 1 (mod p); each fold leaves a much smaller carry than the
    // last, none after at most three.
    finish_signed_reduction(w, &P384::P, |w, carry| {
        let [w0, w1, _, w3, w4, ..] = w;
        *w0 += carry;
        *w1 -= carry;
        *w3 += carry;
        *w4 += carry;
    })
}

// ---- P-521 ----

/// NIST P-521 (secp521r1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P521;

impl Curve<17> for P521 {
    const NAME: &'static str = "P-521";
    const BYTES: usize = 66;
    const N_BITS: usize = 521;
    // p = 2^521 - 1.
    const P: [u32; 17] = [
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0x0000_01ff,
    ];
    const N: [u32; 17] = [
        0x9138_6409,
        0xbb6f_b71e,
        0x899c_47ae,
        0x3bb5_c9b8,
        0xf709_a5d0,
        0x7fcc_0148,
        0xbf2f_966b,
        0x5186_8783,
        0xffff_fffa,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0x0000_01ff,
    ];
    const B: [u32; 17] = [
        0x6b50_3f00,
        0xef45_1fd4,
        0x3d2c_34f1,
        0x3573_df88,
        0x3bb1_bf07,
        0x1652_c0bd,
        0xec7e_937b,
        0x5619_3951,
        0x8ef1_09e1,
        0xb8b4_8991,
        0x99b3_15f3,
        0xa2da_725b,
        0xb685_40ee,
        0x929a_21a0,
        0x8e1c_9a1f,
        0x953e_b961,
        0x0000_0051,
    ];
    const GX: [u32; 17] = [
        0xc2e5_bd66,
        0xf97e_7e31,
        0x856a_429b,
        0x3348_b3c1,
        0xa2ff_a8de,
        0xfe1d_c127,
        0xefe7_5928,
        0xa14b_5e77,
        0x6b4d_3dba,
        0xf828_af60,
        0x053f_b521,
        0x9c64_8139,
        0x2395_b442,
        0x9e3e_cb66,
        0x0404_e9cd,
        0x858e_06b7,
        0x0000_00c6,
    ];
    const GY: [u32; 17] = [
        0x9fd1_6650,
        0x88be_9476,
        0xa272_c240,
        0x353c_7086,
        0x3fad_0761,
        0xc550_b901,
        0x5ef4_2640,
        0x97ee_7299,
        0x273e_662c,
        0x17af_bd17,
        0x579b_4468,
        0x98f5_4449,
        0x2c7d_1bd9,
        0x5c8a_5fb4,
        0x9a3b_c004,
        0x3929_6a78,
        0x0000_0118,
    ];
    const N0INV: u32 = 0x79a9_95c7;
    const N_RR: [u32; 17] = [
        0x61c6_4ca7,
        0x1163_115a,
        0x4374_a642,
        0x1835_4a56,
        0x0791_d9dc,
        0x5d4d_d6d3,
        0xd340_2705,
        0x4fb3_5b72,
        0xb775_6e3a,
        0xcff3_d142,
        0xa8e5_67bc,
        0x5bcc_6d61,
        0x492d_0d45,
        0x2d8e_03d1,
        0x8c44_383d,
        0x5b5a_3afe,
        0x0000_019a,
    ];

    #[inline(never)]
    fn field_mul(a: &[u32; 17], b: &[u32; 17]) -> [u32; 17] {
        reduce_p521(&mul_wide_17(a, b))
    }

    #[inline(never)]
    fn field_square(a: &[u32; 17]) -> [u32; 17] {
        reduce_p521(&square_wide_17(a))
    }

    fn generator_tables() -> Option<&'static Tables<17, P521>> {
        static TABLES: std::sync::OnceLock<Option<Tables<17, P521>>> = std::sync::OnceLock::new();
        TABLES
            .get_or_init(|| Tables::new(&Affine::generator(), G_WINDOW))
            .as_ref()
    }
}

/// The 34-word product of 17-limb numbers, a row of `a` at a time (`limbs::mul_wide_rows`): at
/// 17 limbs the written-out columns were ~11 KB of wasm for the product and the square, and V8
/// ran them slower than this loop (ES512 verifications under node: medians 506-683 us against
/// 722-975 us, alternating builds).
pub(crate) fn mul_wide_17(a: &[u32; 17], b: &[u32; 17]) -> [u32; 34] {
    mul_wide_rows(a, b)
}

/// The 34-word square of a 17-limb number, as [`mul_wide_17`].
pub(crate) fn square_wide_17(a: &[u32; 17]) -> [u32; 34] {
    mul_wide_rows(a, a)
}

/// A product of two numbers below 2^521 modulo p = 2^521 - 1: with `2^521 = 1 (mod p)`, it is
/// `lo + hi` for its low 521 bits and the rest, then the bit that sum carries past 521 once
/// more.
fn reduce_p521(c: &[u32; 34]) -> [u32; 17] {
    let word = |i: usize| c.get(i).copied().unwrap_or(0);
    let lo: [u32; 17] = core::array::from_fn(|i| if i == 16 { word(i) & 0x1ff } else { word(i) });
    // Bits 521 + 32 i and up: 521 = 16 * 32 + 9.
    let hi: [u32; 17] = core::array::from_fn(|i| (word(i + 16) >> 9) | (word(i + 17) << 23));
    // The sum is below 2^522 (no carry out of 17 words); fold bit 521.
    let (mut out, _) = add_raw(&lo, &hi);
    let mut extra = out.last().map_or(0, |&top| top >> 9);
    if let Some(top) = out.last_mut() {
        *top &= 0x1ff;
    }
    for o in out.iter_mut() {
        if extra == 0 {
            break;
        }
        let (s, overflow) = o.overflowing_add(extra);
        *o = s;
        extra = u32::from(overflow);
    }
    // Now at most p, which is zero.
    if out == P521::P {
        [0; 17]
    } else {
        out
    }
}

// ---- the field ----

/// An element of GF(p) of the curve `C`, always fully reduced (below p).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fe<const L: usize, C>(pub(crate) [u32; L], PhantomData<C>);

impl<const L: usize, C: Curve<L>> Fe<L, C> {
    /// From limbs that must be below p.
    pub(crate) fn from_limbs(limbs: [u32; L]) -> Option<Self> {
        lt(&limbs, &C::P).then_some(Fe(limbs, PhantomData))
    }

    /// From limbs known to be below p (constants, reduced values).
    fn reduced(limbs: [u32; L]) -> Self {
        Fe(limbs, PhantomData)
    }

    fn zero() -> Self {
        Fe::reduced([0; L])
    }

    fn one() -> Self {
        Fe::reduced(one())
    }

    pub(crate) fn is_zero(&self) -> bool {
        is_zero(&self.0)
    }

    pub(crate) fn add(&self, other: &Self) -> Self {
        Fe::reduced(add_mod(&self.0, &other.0, &C::P))
    }

    pub(crate) fn sub(&self, other: &Self) -> Self {
        Fe::reduced(sub_mod(&self.0, &other.0, &C::P))
    }

    pub(crate) fn neg(&self) -> Self {
        Fe::zero().sub(self)
    }

    fn double(&self) -> Self {
        self.add(self)
    }

    pub(crate) fn mul(&self, other: &Self) -> Self {
        Fe::reduced(C::field_mul(&self.0, &other.0))
    }

    pub(crate) fn square(&self) -> Self {
        Fe::reduced(C::field_square(&self.0))
    }

    /// `self^-1`, `None` for zero.
    pub(crate) fn invert(&self) -> Option<Self> {
        inv_mod(&self.0, &C::P).map(Fe::reduced)
    }
}

// ---- the scalar field, modulo n ----

/// `a b mod n` for `a, b < n`.
pub(crate) fn mul_mod_n<const L: usize, C: Curve<L>>(a: &[u32; L], b: &[u32; L]) -> [u32; L] {
    mul_mod(a, b, &C::N, C::N0INV, &C::N_RR)
}

// ---- points ----

/// An affine point (never the point at infinity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Affine<const L: usize, C> {
    pub(crate) x: Fe<L, C>,
    pub(crate) y: Fe<L, C>,
}

/// A point in Jacobian coordinates, `(X / Z^2, Y / Z^3)`; `Z = 0` is the point at infinity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Jacobian<const L: usize, C> {
    pub(crate) x: Fe<L, C>,
    pub(crate) y: Fe<L, C>,
    pub(crate) z: Fe<L, C>,
}

impl<const L: usize, C: Curve<L>> Affine<L, C> {
    pub(crate) fn generator() -> Self {
        Affine {
            x: Fe::reduced(C::GX),
            y: Fe::reduced(C::GY),
        }
    }

    /// Whether `y^2 = x^3 - 3x + b`.
    pub(crate) fn is_on_curve(&self) -> bool {
        let x3 = self.x.square().mul(&self.x);
        let three_x = self.x.double().add(&self.x);
        let rhs = x3.sub(&three_x).add(&Fe::reduced(C::B));
        self.y.square() == rhs
    }

    fn neg(&self) -> Self {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }

    pub(crate) fn to_jacobian(self) -> Jacobian<L, C> {
        Jacobian {
            x: self.x,
            y: self.y,
            z: Fe::one(),
        }
    }
}

impl<const L: usize, C: Curve<L>> Jacobian<L, C> {
    pub(crate) fn infinity() -> Self {
        Jacobian {
            x: Fe::one(),
            y: Fe::one(),
            z: Fe::zero(),
        }
    }

    pub(crate) fn is_infinity(&self) -> bool {
        self.z.is_zero()
    }

    // The point operations are not inlined either: one copy each, for the tables and the loop.

    /// `2 P` ("dbl-2001-b", a = -3): 3M + 5S.
    #[inline(never)]
    pub(crate) fn double(&self) -> Self {
        if self.is_infinity() || self.y.is_zero() {
            return Jacobian::infinity();
        }
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        let t = self.x.sub(&delta).mul(&self.x.add(&delta));
        let alpha = t.double().add(&t);
        let beta4 = beta.double().double();
        let x3 = alpha.square().sub(&beta4.double());
        let z3 = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma2 = gamma.square();
        let y3 = alpha
            .mul(&beta4.sub(&x3))
            .sub(&gamma2.double().double().double());
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// `P + Q` for an affine `Q` ("madd-2007-bl"): 7M + 4S.
    #[inline(never)]
    pub(crate) fn add_affine(&self, q: &Affine<L, C>) -> Self {
        if self.is_infinity() {
            return q.to_jacobian();
        }
        let z1z1 = self.z.square();
        let u2 = q.x.mul(&z1z1);
        let s2 = q.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&self.x);
        let r = s2.sub(&self.y).double();
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::infinity()
            };
        }
        let hh = h.square();
        let i = hh.double().double();
        let j = h.mul(&i);
        let v = self.x.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&self.y.mul(&j).double());
        let z3 = self.z.add(&h).square().sub(&z1z1).sub(&hh);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// `P + Q` for Jacobian points ("add-2007-bl"): 11M + 5S. Used to build tables.
    #[inline(never)]
    pub(crate) fn add(&self, q: &Self) -> Self {
        if self.is_infinity() {
            return *q;
        }
        if q.is_infinity() {
            return *self;
        }
        let z1z1 = self.z.square();
        let z2z2 = q.z.square();
        let u1 = self.x.mul(&z2z2);
        let u2 = q.x.mul(&z1z1);
        let s1 = self.y.mul(&q.z).mul(&z2z2);
        let s2 = q.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&u1);
        let r = s2.sub(&s1).double();
        if h.is_zero() {
            return if r.is_zero() {
                self.double()
            } else {
                Jacobian::infinity()
            };
        }
        let i = h.double().square();
        let j = h.mul(&i);
        let v = u1.mul(&i);
        let x3 = r.square().sub(&j).sub(&v.double());
        let y3 = r.mul(&v.sub(&x3)).sub(&s1.mul(&j).double());
        let z3 = self.z.add(&q.z).square().sub(&z1z1).sub(&z2z2).mul(&h);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// The affine point, `None` for infinity.
    #[cfg(test)]
    pub(crate) fn to_affine(self) -> Option<Affine<L, C>> {
        let zinv = self.z.invert()?;
        let zinv2 = zinv.square();
        Some(Affine {
            x: self.x.mul(&zinv2),
            y: self.y.mul(&zinv2).mul(&zinv),
        })
    }
}

/// Affine forms of many points with one inversion (Montgomery's trick). `None` if any of them
/// is the point at infinity.
fn batch_to_affine<const L: usize, C: Curve<L>>(
    points: &[Jacobian<L, C>],
) -> Option<Vec<Affine<L, C>>> {
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = Fe::one();
    for p in points {
        if p.is_infinity() {
            return None;
        }
        prefix.push(acc);
        acc = acc.mul(&p.z);
    }
    let mut inv = acc.invert()?;
    let mut out = vec![Affine::generator(); points.len()];
    for ((p, before), slot) in points.iter().zip(prefix).zip(out.iter_mut()).rev() {
        // inv = (z_0 ... z_i)^-1; z_i^-1 = inv * (z_0 ... z_{i-1}).
        let zinv = inv.mul(&before);
        inv = inv.mul(&p.z);
        let zinv2 = zinv.square();
        *slot = Affine {
            x: p.x.mul(&zinv2),
            y: p.y.mul(&zinv2).mul(&zinv),
        };
    }
    Some(out)
}

/// Bits per chunk: each scalar is split in `L` chunks of 32 bits (one per limb), each with its
/// own table.
const CHUNK_BITS: usize = 32;
/// wNAF width for the key's tables: odd multiples 1..=15 of each chunk base.
const Q_WINDOW: u32 = 5;
/// wNAF width for the generator's tables: odd multiples 1..=63.
pub(crate) const G_WINDOW: u32 = 7;
/// Room for the wNAF digits of the widest scalar: `32 L + 1` for P-521's 17 limbs.
const MAX_DIGITS: usize = 32 * 17 + 1;

/// Odd multiples `P, 3P, ..., (2^(w-1) - 1)P` of the chunk bases `2^(32 c) P`, affine.
#[derive(Clone)]
pub struct Tables<const L: usize, C> {
    /// `L` tables of `2^(w - 2)` points each, one after the other.
    points: Vec<Affine<L, C>>,
    per_chunk: usize,
}

impl<const L: usize, C: Curve<L>> Tables<L, C> {
    pub(crate) fn new(base: &Affine<L, C>, window: u32) -> Option<Self> {
        let per_chunk = 1usize << (window - 2);
        let mut jacobian = Vec::with_capacity(L * per_chunk);
        let mut chunk_base = base.to_jacobian();
        for chunk in 0..L {
            if chunk > 0 {
                for _ in 0..CHUNK_BITS {
                    chunk_base = chunk_base.double();
                }
            }
            let twice = chunk_base.double();
            let mut odd = chunk_base;
            for _ in 0..per_chunk {
                jacobian.push(odd);
                odd = odd.add(&twice);
            }
        }
        Some(Tables {
            points: batch_to_affine(&jacobian)?,
            per_chunk,
        })
    }

    /// `(2 index + 1) 2^(32 chunk) P`.
    fn get(&self, chunk: usize, index: usize) -> Option<&Affine<L, C>> {
        self.points.get(chunk * self.per_chunk + index)
    }
}

/// `u1 G + u2 Q` for scalars below 2^(32 L), variable-time: one doubling chain of 33 steps for
/// all the chunks of both scalars.
pub(crate) fn double_scalar_mul<const L: usize, C: Curve<L>>(
    u1: &[u32; L],
    u2: &[u32; L],
    q: &Tables<L, C>,
) -> Option<Jacobian<L, C>> {
    if 32 * L + 1 > MAX_DIGITS {
        return None;
    }
    let g = C::generator_tables()?;
    let mut d1 = [0i8; MAX_DIGITS];
    let mut d2 = [0i8; MAX_DIGITS];
    wnaf_into(u1, G_WINDOW, &mut d1);
    wnaf_into(u2, Q_WINDOW, &mut d2);
    let mut acc = Jacobian::infinity();
    // Digit i of a scalar sits in chunk i / 32 at position i % 32; digit 32 L (a carry out of
    // the top) is position 32 of the last chunk.
    for pos in (0..=CHUNK_BITS).rev() {
        if !acc.is_infinity() {
            acc = acc.double();
        }
        for chunk in 0..L {
            if pos == CHUNK_BITS && chunk + 1 < L {
                continue;
            }
            let index = chunk * CHUNK_BITS + pos;
            for (digits, tables) in [(&d1, g), (&d2, q)] {
                let d = digits.get(index).copied().unwrap_or(0);
                if d > 0 {
                    acc = acc.add_affine(tables.get(chunk, (d as usize) >> 1)?);
                } else if d < 0 {
                    let point = tables.get(chunk, (d.unsigned_abs() as usize) >> 1)?;
                    acc = acc.add_affine(&point.neg());
                }
            }
        }
    }
    Some(acc)
}

/// Why an ECDSA verification failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EcdsaError {
    /// The signature is not `r || s` of the curve's size, or `r` or `s` is zero or not below n.
    OutOfRange,
    /// The signature does not verify.
    Invalid,
}

/// An ECDSA public key on the curve `C` with the tables its verifications use.
#[derive(Clone)]
pub struct EcdsaKey<const L: usize, C> {
    tables: Tables<L, C>,
}

/// A P-384 public key.
pub type P384Key = EcdsaKey<12, P384>;
/// A P-521 public key.
pub type P521Key = EcdsaKey<17, P521>;

impl<const L: usize, C: Curve<L>> std::fmt::Debug for EcdsaKey<L, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EcdsaKey({})", C::NAME)
    }
}

impl<const L: usize, C: Curve<L>> EcdsaKey<L, C> {
    /// The key with affine coordinates `x`, `y` (big-endian, exactly `C::BYTES` each); `None`
    /// unless both are below p and the point is on the curve (the cofactor is 1, so that is
    /// enough).
    pub(crate) fn new(x: &[u8], y: &[u8]) -> Option<Self> {
        if x.len() != C::BYTES || y.len() != C::BYTES {
            return None;
        }
        let point = Affine {
            x: Fe::from_limbs(from_be(x))?,
            y: Fe::from_limbs(from_be(y))?,
        };
        if !point.is_on_curve() {
            return None;
        }
        let tables = Tables::new(&point, Q_WINDOW)?;
        // Build the generator's tables now, with the key, rather than in the first request.
        C::generator_tables()?;
        Some(EcdsaKey { tables })
    }

    /// The key's tables.
    #[cfg(test)]
    pub(crate) fn tables(&self) -> &Tables<L, C> {
        &self.tables
    }

    /// ECDSA verification (SEC 1 section 4.1.4) of a message digest no longer than n (so never
    /// truncated) and the JWS signature `r || s` of `2 C::BYTES` bytes.
    // Out of line: see "Function size" in the engine's crate docs (`src/lib.rs`).
    #[inline(never)]
    pub(crate) fn verify_prehash(&self, digest: &[u8], signature: &[u8]) -> Result<(), EcdsaError> {
        if signature.len() != 2 * C::BYTES {
            return Err(EcdsaError::OutOfRange);
        }
        if digest.len() * 8 > C::N_BITS {
            return Err(EcdsaError::Invalid);
        }
        let (r_bytes, s_bytes) = signature
            .split_at_checked(C::BYTES)
            .ok_or(EcdsaError::OutOfRange)?;
        let (r, s) = (from_be(r_bytes), from_be(s_bytes));
        if is_zero(&r) || is_zero(&s) || !lt(&r, &C::N) || !lt(&s, &C::N) {
            return Err(EcdsaError::OutOfRange);
        }
        // e = the digest as an integer, below 2^N_BITS < 2n: one subtraction reduces it.
        let mut e = from_be(digest);
        if !lt(&e, &C::N) {
            e = sub_raw(&e, &C::N).0;
        }
        let w = inv_mod(&s, &C::N).ok_or(EcdsaError::Invalid)?;
        let u1 = mul_mod_n::<L, C>(&e, &w);
        let u2 = mul_mod_n::<L, C>(&r, &w);
        let point = double_scalar_mul(&u1, &u2, &self.tables).ok_or(EcdsaError::Invalid)?;
        if point.is_infinity() {
            return Err(EcdsaError::Invalid);
        }
        // x(R) mod n == r  <=>  X = r' Z^2 for r' in {r, r + n} below p (n < p, so r is a
        // field element).
        let z2 = point.z.square();
        if point.x == Fe::reduced(r).mul(&z2) {
            return Ok(());
        }
        let (r_plus_n, carry) = add_raw(&r, &C::N);
        if !carry && lt(&r_plus_n, &C::P) && point.x == Fe::reduced(r_plus_n).mul(&z2) {
            return Ok(());
        }
        Err(EcdsaError::Invalid)
    }
}
