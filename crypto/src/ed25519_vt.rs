//! Ed25519 verification (RFC 8032 section 5.1.7) with the strictness of ed25519-dalek's
//! `verify_strict`, variable-time, shaped for wasm under V8: the field GF(2^255 - 19) on ten
//! limbs of 26 and 25 bits whose products sum without carries, extended twisted Edwards
//! coordinates with the complete formulas of Hisil, Wong, Carter and Dawson, and one interleaved
//! wNAF double-scalar multiplication `[s]B + [k](-A)` whose scalars are split in thirty-two
//! 8-bit chunks, over affine tables of odd multiples of `2^(8 c) B` (240 KB, built once per
//! process, with the first Ed25519 key) and of `2^(8 c) (-A)` (30 KB per key, built when the
//! key is imported). That is 8 doublings where curve25519-dalek's
//! `vartime_double_scalar_mul_basepoint` does 253 (each halving of the doublings, from 32 to 16
//! to 8, took 8-13% off a verification in wasm; the additions stay ~70), and verification more
//! than twice as fast as ed25519-dalek's in wasm (see `examples/crypto_candidates.rs`).
//!
//! Strictness, as `verify_strict`: `S` must be canonical (below L), `A` and `R` must not have
//! small order and the recomputed point must encode exactly to `R` (so a non-canonical `R`
//! fails). The key's checks are done once, at import: it must decode (RFC 8032 section 5.1.3,
//! the square root by one exponentiation), be canonically encoded, and `[8]A` must not be the
//! identity. Like `verify_strict`, that refuses small-order keys but not keys with a small-order
//! component (those verify signatures made with them: the equation is checked without the
//! cofactor). A small-order `R` is recognised from its encoding: the points of order dividing 8
//! have seven encodings up to the sign bit (libsodium's blocklist). Any other `R` that does not
//! decode cannot equal the canonical encoding of the recomputed point, so it fails the final
//! comparison, as in `verify_strict`. The scalars modulo L (`S < L`, and the 512-bit hash
//! reduced) use the shared Montgomery multiplication of `limbs`.
//!
//! Nothing here depends on curve25519-dalek: it is a dev-dependency, the reference of the
//! property tests in `properties.rs`, which check the field, decoding, key import and the scalar
//! arithmetic against `num-bigint` and curve25519-dalek, the multiplication against
//! curve25519-dalek (points with small-order components included), and whole verifications
//! against ed25519-dalek's `verify_strict`; the Wycheproof tests in `lib.rs` run through this
//! code too.

use sha2::{Digest, Sha512};

use super::limbs::{
    add_mod, from_le_bytes, inv_mod, lt, mont_mul, one, sub_raw, to_le_bytes, wnaf, Limbs,
};

/// Encodings, with the sign bit (bit 255) cleared, of every point of order 1, 2, 4 or 8:
/// y = 0, 1, p - 1, the two y of the order-8 points, and the non-canonical p and p + 1.
const SMALL_ORDER_Y: [[u8; 32]; 7] = [
    // y = 0 (order 4)
    [0; 32],
    // y = 1 (the identity)
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    // order 8
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    // order 8
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    // y = p - 1 (order 2)
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // y = p, non-canonical 0 (order 4)
    [
        0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    // y = p + 1, non-canonical 1 (the identity)
    [
        0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
];

/// Whether an encoding decodes to a point of small order (order dividing 8).
pub(crate) fn has_small_order(encoding: &[u8; 32]) -> bool {
    let mut y = *encoding;
    if let Some(last) = y.last_mut() {
        *last &= 0x7f;
    }
    SMALL_ORDER_Y.contains(&y)
}

// ---- the field GF(p), p = 2^255 - 19 ----

/// p = 2^255 - 19.
pub(crate) const P: Limbs = [
    0xffff_ffed,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0x7fff_ffff,
];

/// d = -121665 / 121666.
const D: Limbs = [
    0x1359_78a3,
    0x75eb_4dca,
    0x4141_d8ab,
    0x0070_0a4d,
    0x7779_e898,
    0x8cc7_4079,
    0x2b6f_fe73,
    0x5203_6cee,
];

/// 2d.
const D2: Limbs = [
    0x26b2_f159,
    0xebd6_9b94,
    0x8283_b156,
    0x00e0_149a,
    0xeef3_d130,
    0x198e_80f2,
    0x56df_fce7,
    0x2406_d9dc,
];

const D_FE: Fe = Fe::from_limbs(D);
const D2_FE: Fe = Fe::from_limbs(D2);
const SQRT_M1_FE: Fe = Fe::from_limbs(SQRT_M1);

/// A square root of -1.
const SQRT_M1: Limbs = [
    0x4a0e_a0b0,
    0xc4ee_1b27,
    0xad2f_e478,
    0x2f43_1806,
    0x3dfb_d7a7,
    0x2b4d_0099,
    0x4fc1_df0b,
    0x2b83_2480,
];

/// The base point B.
const BX: Limbs = [
    0x8f25_d51a,
    0xc956_2d60,
    0x9525_a7b2,
    0x692c_c760,
    0xfdd6_dc5c,
    0xc0a4_e231,
    0xcd6e_53fe,
    0x2169_36d3,
];
const BY: Limbs = [
    0x6666_6658,
    0x6666_6666,
    0x6666_6666,
    0x6666_6666,
    0x6666_6666,
    0x6666_6666,
    0x6666_6666,
    0x6666_6666,
];

// ---- scalars modulo the group order L ----

/// L = 2^252 + 27742317777372353535851937790883648493.
pub(crate) const L: Limbs = [
    0x5cf5_d3ed,
    0x5812_631a,
    0xa2f7_9cd6,
    0x14de_f9de,
    0x0000_0000,
    0x0000_0000,
    0x0000_0000,
    0x1000_0000,
];

/// `-L^-1 mod 2^32`, for Montgomery multiplication modulo L.
const L0INV: u32 = 0x1254_7e1b;

/// `2^512 mod L`.
const L_RR: Limbs = [
    0x449c_0f01,
    0xa406_11e3,
    0x6885_9347,
    0xd00e_1ba7,
    0x17f5_be65,
    0xceec_73d2,
    0x7c30_9a3d,
    0x0399_411b,
];

/// Whether the little-endian scalar `s` is canonical: below L.
pub(crate) fn is_canonical_scalar(s: &[u8; 32]) -> bool {
    lt(&from_le_bytes(s), &L)
}

/// A 512-bit little-endian number `lo + 2^256 hi` modulo L (the `k` of RFC 8032), with the
/// Montgomery product `mont(a, b) = a b 2^-256 mod L`, which holds for any 256-bit `a` when
/// `b < L`: `2^256 hi = mont(hi, 2^512 mod L)` and `lo = mont(mont(lo, 2^512 mod L), 1)`.
pub(crate) fn reduce_wide(bytes: &[u8; 64]) -> Limbs {
    let (lo, hi) = bytes.split_at(32);
    let (Ok(lo), Ok(hi)) = (<&[u8; 32]>::try_from(lo), <&[u8; 32]>::try_from(hi)) else {
        return [0; 8];
    };
    let (lo, hi) = (from_le_bytes(lo), from_le_bytes(hi));
    let hi_r = mont_mul(&hi, &L_RR, &L, L0INV);
    let lo_r = mont_mul(&lo, &L_RR, &L, L0INV);
    let lo = mont_mul(&lo_r, &one(), &L, L0INV);
    add_mod(&hi_r, &lo, &L)
}

// ---- the field GF(p) ----

/// Bits of each of the ten limbs of a field element: 26, 25, 26, 25, ... (255 in all), so
/// limb `i` starts at bit `ceil(25.5 i)`: 0, 26, 51, 77, 102, 128, 153, 179, 204, 230.
const WIDTH: [u32; 10] = [26, 25, 26, 25, 26, 25, 26, 25, 26, 25];
/// 2p in limbs (each limb twice that of p): `a + 2p - b` has no negative limb for a tight `b`.
const TWO_P: [u32; 10] = [
    0x7ff_ffda, 0x3ff_fffe, 0x7ff_fffe, 0x3ff_fffe, 0x7ff_fffe, 0x3ff_fffe, 0x7ff_fffe, 0x3ff_fffe,
    0x7ff_fffe, 0x3ff_fffe,
];

/// An element of GF(p) in ten limbs of 26 and 25 bits (radix 2^25.5, as ref10 and most
/// 32-bit Ed25519 code): a product of two limbs stays below 2^54 and a whole column of a
/// product, each term at most 38 times that, below 2^61, so a multiplication is 100 `i64.mul`
/// and adds with no carry per product (with eight 32-bit limbs, which took a carry split per
/// product, a verification took 1.27x as long under V8).
///
/// The value is `sum f_i 2^ceil(25.5 i)`, any representative of its class: each operation ends
/// with one carry pass, which leaves every limb within its width except limb 1 (at most
/// 2^25 + 2^16) and limb 0 of [`Fe::from_limbs`] (at most 2^26 + 18). Only [`Fe::canonical`]
/// reduces below p, for encoding, comparisons and inversion.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fe([u32; 10]);

impl PartialEq for Fe {
    fn eq(&self, other: &Fe) -> bool {
        self.canonical() == other.canonical()
    }
}

impl Eq for Fe {}

impl Fe {
    pub(crate) const ZERO: Fe = Fe([0; 10]);
    pub(crate) const ONE: Fe = Fe([1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

    /// Any 256-bit number, as the element it stands for (bit 255 is `2^255 = 19`).
    pub(crate) const fn from_limbs(limbs: Limbs) -> Fe {
        let [w0, w1, w2, w3, w4, w5, w6, w7] = limbs;
        let mut out = [
            ((w0 as u64) & M26) as u32,
            ((((w0 as u64) >> 26) | ((w1 as u64) << 6)) & M25) as u32,
            ((((w1 as u64) >> 19) | ((w2 as u64) << 13)) & M26) as u32,
            ((((w2 as u64) >> 13) | ((w3 as u64) << 19)) & M25) as u32,
            (((w3 as u64) >> 6) & M26) as u32,
            ((w4 as u64) & M25) as u32,
            ((((w4 as u64) >> 25) | ((w5 as u64) << 7)) & M26) as u32,
            ((((w5 as u64) >> 19) | ((w6 as u64) << 13)) & M25) as u32,
            ((((w6 as u64) >> 12) | ((w7 as u64) << 20)) & M26) as u32,
            (((w7 as u64) >> 6) & M25) as u32,
        ];
        out[0] += 19 * (w7 >> 31);
        Fe(out)
    }

    /// The value below p.
    pub(crate) fn canonical(&self) -> Limbs {
        // Every element is already carried (limbs 0 and 1 at most 2^26 + 18 and 2^25 + 2^16),
        // so the value is below 2^255 + 2^42 < 2^256 = 2p + 38: regrouped into 32-bit limbs
        // (what a limb holds past its width rides on in `acc`), two subtractions at most
        // reduce it.
        let mut w = [0u32; 8];
        let (mut acc, mut held, mut words) = (0u64, 0u32, w.iter_mut());
        for (&limb, width) in self.0.iter().zip(WIDTH) {
            acc += u64::from(limb) << held;
            held += width;
            if held >= 32 {
                if let Some(word) = words.next() {
                    *word = acc as u32;
                }
                acc >>= 32;
                held -= 32;
            }
        }
        if let Some(word) = words.next() {
            *word = acc as u32;
        }
        while !lt(&w, &P) {
            w = sub_raw(&w, &P).0;
        }
        w
    }

    pub(crate) fn add(&self, other: &Fe) -> Fe {
        let mut sum = [0u64; 10];
        for ((s, &a), &b) in sum.iter_mut().zip(&self.0).zip(&other.0) {
            *s = u64::from(a) + u64::from(b);
        }
        carry(sum)
    }

    /// `self + 2p - other`: every limb of 2p is at least that of an operation's result.
    pub(crate) fn sub(&self, other: &Fe) -> Fe {
        let mut diff = [0u64; 10];
        for (((d, &a), &b), &two_p) in diff.iter_mut().zip(&self.0).zip(&other.0).zip(&TWO_P) {
            *d = u64::from(a) + u64::from(two_p) - u64::from(b);
        }
        carry(diff)
    }

    pub(crate) fn neg(&self) -> Fe {
        Fe::ZERO.sub(self)
    }

    fn double(&self) -> Fe {
        self.add(self)
    }

    // One copy of the (fully unrolled) multiplication, called from everywhere: inlining it
    // would multiply the module size for no measurable speed.
    /// Column `k` sums `f_i g_j` for `i + j = k` and `19 f_i g_j` for `i + j = k + 10`
    /// (`2^255 = 19`), each doubled when `i` and `j` are both odd (their starts add up to one
    /// bit less than the column's). Each term is below `2 * 19 * 2^26 * 2^26 < 2^58`.
    #[inline(never)]
    pub(crate) fn mul(&self, other: &Fe) -> Fe {
        let [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9] = self.0.map(u64::from);
        let [g0, g1, g2, g3, g4, g5, g6, g7, g8, g9] = other.0.map(u64::from);
        let [f1_2, f3_2, f5_2, f7_2, f9_2] = [f1, f3, f5, f7, f9].map(|x| 2 * x);
        let [g1_19, g2_19, g3_19, g4_19, g5_19, g6_19, g7_19, g8_19, g9_19] =
            [g1, g2, g3, g4, g5, g6, g7, g8, g9].map(|x| 19 * x);
        let h0 = f0 * g0
            + f1_2 * g9_19
            + f2 * g8_19
            + f3_2 * g7_19
            + f4 * g6_19
            + f5_2 * g5_19
            + f6 * g4_19
            + f7_2 * g3_19
            + f8 * g2_19
            + f9_2 * g1_19;
        let h1 = f0 * g1
            + f1 * g0
            + f2 * g9_19
            + f3 * g8_19
            + f4 * g7_19
            + f5 * g6_19
            + f6 * g5_19
            + f7 * g4_19
            + f8 * g3_19
            + f9 * g2_19;
        let h2 = f0 * g2
            + f1_2 * g1
            + f2 * g0
            + f3_2 * g9_19
            + f4 * g8_19
            + f5_2 * g7_19
            + f6 * g6_19
            + f7_2 * g5_19
            + f8 * g4_19
            + f9_2 * g3_19;
        let h3 = f0 * g3
            + f1 * g2
            + f2 * g1
            + f3 * g0
            + f4 * g9_19
            + f5 * g8_19
            + f6 * g7_19
            + f7 * g6_19
            + f8 * g5_19
            + f9 * g4_19;
        let h4 = f0 * g4
            + f1_2 * g3
            + f2 * g2
            + f3_2 * g1
            + f4 * g0
            + f5_2 * g9_19
            + f6 * g8_19
            + f7_2 * g7_19
            + f8 * g6_19
            + f9_2 * g5_19;
        let h5 = f0 * g5
            + f1 * g4
            + f2 * g3
            + f3 * g2
            + f4 * g1
            + f5 * g0
            + f6 * g9_19
            + f7 * g8_19
            + f8 * g7_19
            + f9 * g6_19;
        let h6 = f0 * g6
            + f1_2 * g5
            + f2 * g4
            + f3_2 * g3
            + f4 * g2
            + f5_2 * g1
            + f6 * g0
            + f7_2 * g9_19
            + f8 * g8_19
            + f9_2 * g7_19;
        let h7 = f0 * g7
            + f1 * g6
            + f2 * g5
            + f3 * g4
            + f4 * g3
            + f5 * g2
            + f6 * g1
            + f7 * g0
            + f8 * g9_19
            + f9 * g8_19;
        let h8 = f0 * g8
            + f1_2 * g7
            + f2 * g6
            + f3_2 * g5
            + f4 * g4
            + f5_2 * g3
            + f6 * g2
            + f7_2 * g1
            + f8 * g0
            + f9_2 * g9_19;
        let h9 = f0 * g9
            + f1 * g8
            + f2 * g7
            + f3 * g6
            + f4 * g5
            + f5 * g4
            + f6 * g3
            + f7 * g2
            + f8 * g1
            + f9 * g0;
        carry([h0, h1, h2, h3, h4, h5, h6, h7, h8, h9])
    }

    /// [`Fe::mul`] by itself, each cross product computed once: 55 products.
    #[inline(never)]
    pub(crate) fn square(&self) -> Fe {
        let [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9] = self.0.map(u64::from);
        let h0 = f0 * f0 + 76 * f1 * f9 + 38 * f2 * f8 + 76 * f3 * f7 + 38 * f4 * f6 + 38 * f5 * f5;
        let h1 = 2 * f0 * f1 + 38 * f2 * f9 + 38 * f3 * f8 + 38 * f4 * f7 + 38 * f5 * f6;
        let h2 =
            2 * f0 * f2 + 2 * f1 * f1 + 76 * f3 * f9 + 38 * f4 * f8 + 76 * f5 * f7 + 19 * f6 * f6;
        let h3 = 2 * f0 * f3 + 2 * f1 * f2 + 38 * f4 * f9 + 38 * f5 * f8 + 38 * f6 * f7;
        let h4 = 2 * f0 * f4 + 4 * f1 * f3 + f2 * f2 + 76 * f5 * f9 + 38 * f6 * f8 + 38 * f7 * f7;
        let h5 = 2 * f0 * f5 + 2 * f1 * f4 + 2 * f2 * f3 + 38 * f6 * f9 + 38 * f7 * f8;
        let h6 =
            2 * f0 * f6 + 4 * f1 * f5 + 2 * f2 * f4 + 2 * f3 * f3 + 76 * f7 * f9 + 19 * f8 * f8;
        let h7 = 2 * f0 * f7 + 2 * f1 * f6 + 2 * f2 * f5 + 2 * f3 * f4 + 38 * f8 * f9;
        let h8 = 2 * f0 * f8 + 4 * f1 * f7 + 2 * f2 * f6 + 4 * f3 * f5 + f4 * f4 + 38 * f9 * f9;
        let h9 = 2 * f0 * f9 + 2 * f1 * f8 + 2 * f2 * f7 + 2 * f3 * f6 + 2 * f4 * f5;
        carry([h0, h1, h2, h3, h4, h5, h6, h7, h8, h9])
    }

    /// `self^-1`, `None` for zero.
    pub(crate) fn invert(&self) -> Option<Fe> {
        inv_mod(&self.canonical(), &P).map(Fe::from_limbs)
    }

    /// `self^e`, variable-time square-and-multiply (only used when a key is imported).
    fn pow(&self, e: &Limbs) -> Fe {
        let mut acc = Fe::ONE;
        for limb in e.iter().rev() {
            for bit in (0..32).rev() {
                acc = acc.square();
                if (limb >> bit) & 1 == 1 {
                    acc = acc.mul(self);
                }
            }
        }
        acc
    }

    /// Whether the canonical value is odd: the "sign" of RFC 8032.
    fn is_negative(&self) -> bool {
        self.canonical().first().is_some_and(|&x| x & 1 == 1)
    }
}

/// One carry pass over limbs below 2^62: each limb keeps its width and passes the rest up;
/// what passes the top (2^255) comes back into limb 0 times 19, and limb 0 passes its carry
/// to limb 1 once more. Limb 1 ends below 2^25 + 2^16, every other limb within its width.
#[inline(always)]
fn carry([h0, h1, h2, h3, h4, h5, h6, h7, h8, h9]: [u64; 10]) -> Fe {
    let (h0, h1) = (h0 & M26, h1 + (h0 >> 26));
    let (h1, h2) = (h1 & M25, h2 + (h1 >> 25));
    let (h2, h3) = (h2 & M26, h3 + (h2 >> 26));
    let (h3, h4) = (h3 & M25, h4 + (h3 >> 25));
    let (h4, h5) = (h4 & M26, h5 + (h4 >> 26));
    let (h5, h6) = (h5 & M25, h6 + (h5 >> 25));
    let (h6, h7) = (h6 & M26, h7 + (h6 >> 26));
    let (h7, h8) = (h7 & M25, h8 + (h7 >> 25));
    let (h8, h9) = (h8 & M26, h9 + (h8 >> 26));
    let (h9, top) = (h9 & M25, h9 >> 25);
    let h0 = h0 + 19 * top;
    let (h0, h1) = (h0 & M26, h1 + (h0 >> 26));
    Fe([h0, h1, h2, h3, h4, h5, h6, h7, h8, h9].map(|x| x as u32))
}

/// Masks of 26 and 25 bits.
const M26: u64 = (1 << 26) - 1;
const M25: u64 = (1 << 25) - 1;

// ---- points ----

/// A point in extended twisted Edwards coordinates: `x = X/Z`, `y = Y/Z`, `T = XY/Z`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Extended {
    pub(crate) x: Fe,
    pub(crate) y: Fe,
    pub(crate) z: Fe,
    pub(crate) t: Fe,
}

/// An affine point prepared for mixed additions: `(y + x, y - x, 2d x y)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Niels {
    y_plus_x: Fe,
    y_minus_x: Fe,
    xy2d: Fe,
}

impl Niels {
    fn from_affine(x: &Fe, y: &Fe) -> Niels {
        Niels {
            y_plus_x: y.add(x),
            y_minus_x: y.sub(x),
            xy2d: x.mul(y).mul(&D2_FE),
        }
    }

    fn neg(&self) -> Niels {
        Niels {
            y_plus_x: self.y_minus_x,
            y_minus_x: self.y_plus_x,
            xy2d: self.xy2d.neg(),
        }
    }
}

impl Extended {
    pub(crate) fn from_affine(x: Fe, y: Fe) -> Extended {
        Extended {
            x,
            y,
            z: Fe::ONE,
            t: x.mul(&y),
        }
    }

    /// `2P`: 4M + 4S.
    pub(crate) fn double(&self) -> Extended {
        doubled(&self.x, &self.y, &self.z).to_extended()
    }

    /// `P + Q` for a prepared affine `Q` ("madd-2008-hwcd-3", complete on Ed25519): 3M, and 4M
    /// more when the result is made extended.
    fn add_niels(&self, q: &Niels) -> Completed {
        let a = self.y.sub(&self.x).mul(&q.y_minus_x);
        let b = self.y.add(&self.x).mul(&q.y_plus_x);
        let c = self.t.mul(&q.xy2d);
        let d = self.z.double();
        Completed {
            e: b.sub(&a),
            f: d.sub(&c),
            g: d.add(&c),
            h: b.add(&a),
        }
    }

    /// `P + Q` ("add-2008-hwcd-3", complete on Ed25519): 9M. Used to build tables.
    pub(crate) fn add(&self, q: &Extended) -> Extended {
        let a = self.y.sub(&self.x).mul(&q.y.sub(&q.x));
        let b = self.y.add(&self.x).mul(&q.y.add(&q.x));
        let c = self.t.mul(&D2_FE).mul(&q.t);
        let d = self.z.mul(&q.z).double();
        let e = b.sub(&a);
        let f = d.sub(&c);
        let g = d.add(&c);
        let h = b.add(&a);
        Extended {
            x: e.mul(&f),
            y: g.mul(&h),
            z: f.mul(&g),
            t: e.mul(&h),
        }
    }

    /// Whether this is the identity: `x = 0` and `y = 1` (Z is never zero).
    pub(crate) fn is_identity(&self) -> bool {
        self.x == Fe::ZERO && self.y == self.z
    }

    /// The RFC 8032 encoding: y, little-endian, with the sign of x in bit 255.
    pub(crate) fn encode(&self) -> Option<[u8; 32]> {
        let zinv = self.z.invert()?;
        let x = self.x.mul(&zinv);
        let y = self.y.mul(&zinv);
        let mut out = to_le_bytes(&y.canonical());
        if x.is_negative() {
            if let Some(last) = out.last_mut() {
                *last |= 0x80;
            }
        }
        Some(out)
    }
}

/// The four factors the point formulas end with: `X = EF`, `Y = GH`, `Z = FG`, `T = EH`. The
/// multiplication loop keeps a point so until it knows what comes next: an addition needs all
/// four coordinates (4M), a doubling only X, Y and Z (3M).
#[derive(Clone, Copy, Debug)]
struct Completed {
    e: Fe,
    f: Fe,
    g: Fe,
    h: Fe,
}

impl Completed {
    const IDENTITY: Completed = Completed {
        e: Fe::ZERO,
        f: Fe::ONE,
        g: Fe::ONE,
        h: Fe::ONE,
    };

    fn to_extended(self) -> Extended {
        Extended {
            x: self.e.mul(&self.f),
            y: self.g.mul(&self.h),
            z: self.f.mul(&self.g),
            t: self.e.mul(&self.h),
        }
    }

    /// `2P`: 3M + 4S.
    fn double(self) -> Completed {
        doubled(
            &self.e.mul(&self.f),
            &self.g.mul(&self.h),
            &self.f.mul(&self.g),
        )
    }
}

/// `2P` from the projective `(X, Y, Z)` of P ("dbl-2008-hwcd", a = -1): 4S.
fn doubled(x: &Fe, y: &Fe, z: &Fe) -> Completed {
    let a = x.square();
    let b = y.square();
    let c = z.square().double();
    let g = b.sub(&a);
    Completed {
        e: x.add(y).square().sub(&a).sub(&b),
        f: g.sub(&c),
        g,
        h: a.add(&b).neg(),
    }
}

/// Decodes an RFC 8032 point encoding (section 5.1.3) to affine `(x, y)`. Reads `y` modulo p
/// and then tells apart, as curve25519-dalek's decompression followed by a comparison of the
/// re-encoded point does: [`KeyError::NotAPoint`] when no point has that `y`,
/// [`KeyError::NotCanonical`] for a point whose canonical encoding differs (`y >= p`, or the
/// sign bit set for `x = 0`).
pub(crate) fn decompress(encoding: &[u8; 32]) -> Result<(Fe, Fe), KeyError> {
    let mut bytes = *encoding;
    let sign = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    if let Some(last) = bytes.last_mut() {
        *last &= 0x7f;
    }
    let raw = from_le_bytes(&bytes);
    // Below 2^255 < 2p: one subtraction reduces it.
    let canonical = lt(&raw, &P);
    let y = Fe::from_limbs(if canonical { raw } else { sub_raw(&raw, &P).0 });
    // x^2 = u / v with u = y^2 - 1, v = d y^2 + 1; x = u v^3 (u v^7)^((p - 5) / 8).
    let y2 = y.square();
    let u = y2.sub(&Fe::ONE);
    let v = D_FE.mul(&y2).add(&Fe::ONE);
    let v3 = v.square().mul(&v);
    let v7 = v3.square().mul(&v);
    // (p - 5) / 8 = 2^252 - 3.
    const EXPONENT: Limbs = [
        0xffff_fffd,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0x0fff_ffff,
    ];
    let mut x = u.mul(&v3).mul(&u.mul(&v7).pow(&EXPONENT));
    let vx2 = v.mul(&x.square());
    if vx2 != u {
        if vx2 != u.neg() {
            return Err(KeyError::NotAPoint);
        }
        x = x.mul(&SQRT_M1_FE);
    }
    if !canonical || (x == Fe::ZERO && sign) {
        return Err(KeyError::NotCanonical);
    }
    if x.is_negative() != sign {
        x = x.neg();
    }
    Ok((x, y))
}

/// How many chunks each scalar is split into (each with its own table): the multiplication
/// does `256 / CHUNKS` doublings, and the tables grow with `CHUNKS`.
const CHUNKS: usize = 32;
/// Bits per chunk.
const CHUNK_BITS: usize = 256 / CHUNKS;
/// wNAF width for the key's tables: odd multiples 1..=15 of each chunk base (width 6 was ~4%
/// faster for twice the memory per key, up to 64 keys a JWKS).
const A_WINDOW: u32 = 5;
/// wNAF width for the base point's tables: odd multiples 1..=127 (the widest an `i8` digit
/// allows).
const B_WINDOW: u32 = 8;

/// Points made affine with one inversion when a table is built: a key's whole table (256
/// points), the base point's in eight parts.
const AFFINE_BATCH: usize = 256;

/// Odd multiples `P, 3P, ..., (2^(w-1) - 1)P` of the chunk bases `2^(CHUNK_BITS c) P`, affine.
#[derive(Clone)]
pub(crate) struct Tables {
    /// `CHUNKS` tables of `2^(w - 2)` points each, one after the other.
    points: Vec<Niels>,
    per_chunk: usize,
    /// The wNAF width the tables serve.
    window: u32,
}

impl Tables {
    pub(crate) fn new(base: &Extended, window: u32) -> Option<Tables> {
        let per_chunk = 1usize << (window - 2);
        let mut points = Vec::with_capacity(CHUNKS * per_chunk);
        // Made affine a few chunks at a time, with one inversion each (Montgomery's trick).
        // All of the base point's 2048 points at once saved 7 inversions, and held ~400 KB
        // more of every VM's memory, which a wasm VM never gives back.
        let batch = (AFFINE_BATCH / per_chunk).max(1) * per_chunk;
        let mut extended = Vec::with_capacity(batch);
        let mut prefix = Vec::with_capacity(batch);
        let mut chunk_base = *base;
        for chunk in 0..CHUNKS {
            if chunk > 0 {
                for _ in 0..CHUNK_BITS {
                    chunk_base = chunk_base.double();
                }
            }
            let twice = chunk_base.double();
            let mut odd = chunk_base;
            for _ in 0..per_chunk {
                extended.push(odd);
                odd = odd.add(&twice);
            }
            if extended.len() < batch && chunk + 1 < CHUNKS {
                continue;
            }
            prefix.clear();
            let mut acc = Fe::ONE;
            for p in &extended {
                prefix.push(acc);
                acc = acc.mul(&p.z);
            }
            let mut inv = acc.invert()?;
            let start = points.len();
            points.resize(
                start + extended.len(),
                Niels::from_affine(&Fe::ZERO, &Fe::ONE),
            );
            let slots = points.get_mut(start..)?;
            for ((p, before), slot) in extended.iter().zip(&prefix).zip(slots).rev() {
                let zinv = inv.mul(before);
                inv = inv.mul(&p.z);
                *slot = Niels::from_affine(&p.x.mul(&zinv), &p.y.mul(&zinv));
            }
            extended.clear();
        }
        Some(Tables {
            points,
            per_chunk,
            window,
        })
    }

    /// `(2 index + 1) 2^(CHUNK_BITS chunk) P`.
    fn get(&self, chunk: usize, index: usize) -> Option<&Niels> {
        self.points.get(chunk * self.per_chunk + index)
    }
}

/// The base point's tables, built on first use.
fn base_tables() -> Option<&'static Tables> {
    static TABLES: std::sync::OnceLock<Option<Tables>> = std::sync::OnceLock::new();
    TABLES
        .get_or_init(|| {
            Tables::new(
                &Extended::from_affine(Fe::from_limbs(BX), Fe::from_limbs(BY)),
                B_WINDOW,
            )
        })
        .as_ref()
}

/// `[s]B + [k]P` for the point `P` whose tables are `p`; scalars below 2^256.
pub(crate) fn double_scalar_mul(s: &Limbs, k: &Limbs, p: &Tables) -> Option<Extended> {
    let b = base_tables()?;
    let ds = wnaf(s, b.window);
    let dk = wnaf(k, p.window);
    let mut acc = Completed::IDENTITY;
    let mut started = false;
    // Digit i of a scalar sits in chunk i / CHUNK_BITS at position i % CHUNK_BITS; digit 256
    // (a carry out of the top) is position CHUNK_BITS of the last chunk.
    for pos in (0..=CHUNK_BITS).rev() {
        if started {
            acc = acc.double();
        }
        for chunk in 0..CHUNKS {
            if pos == CHUNK_BITS && chunk + 1 < CHUNKS {
                continue;
            }
            let index = chunk * CHUNK_BITS + pos;
            for (digits, tables) in [(&ds, b), (&dk, p)] {
                let d = digits.get(index).copied().unwrap_or(0);
                if d > 0 {
                    acc = acc
                        .to_extended()
                        .add_niels(tables.get(chunk, (d as usize) >> 1)?);
                    started = true;
                } else if d < 0 {
                    let point = tables.get(chunk, (d.unsigned_abs() as usize) >> 1)?;
                    acc = acc.to_extended().add_niels(&point.neg());
                    started = true;
                }
            }
        }
    }
    Some(acc.to_extended())
}

/// Why an Ed25519 key was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// The bytes are not the encoding of a curve point.
    NotAPoint,
    /// The encoding is not canonical (y >= p).
    NotCanonical,
    /// The point has small order.
    SmallOrder,
}

/// An Ed25519 public key: its encoding and the tables of `-A` that verification multiplies.
#[derive(Clone)]
pub struct Ed25519Key {
    encoding: [u8; 32],
    minus_a: Tables,
}

impl std::fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ed25519Key")
    }
}

impl Ed25519Key {
    /// A key from its 32-byte encoding: it must decode, be canonical and not have small order
    /// (`[8]A` is not the identity), the checks ed25519-dalek's `verify_strict` makes.
    pub(crate) fn new(encoding: &[u8; 32]) -> Result<Ed25519Key, KeyError> {
        let (x, y) = decompress(encoding)?;
        let eight_a = Extended::from_affine(x, y).double().double().double();
        if eight_a.is_identity() {
            return Err(KeyError::SmallOrder);
        }
        let minus_a =
            Tables::new(&Extended::from_affine(x.neg(), y), A_WINDOW).ok_or(KeyError::NotAPoint)?;
        // Build the base point's tables now, with the key, rather than in the first request.
        base_tables().ok_or(KeyError::NotAPoint)?;
        Ok(Ed25519Key {
            encoding: *encoding,
            minus_a,
        })
    }

    /// Strict verification of `signature` (`R || S`) over `message`: `S` must be canonical
    /// (below the group order L), `R` must not have small order, and `[S]B - [k]A` must encode
    /// exactly to `R`, with `k = SHA-512(R || A || message) mod L`.
    // Out of line: see "Function size" in the engine's crate docs (`src/lib.rs`).
    #[inline(never)]
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        let (r, s) = signature.split_at(32);
        let (Ok(r), Ok(s)) = (<[u8; 32]>::try_from(r), <[u8; 32]>::try_from(s)) else {
            return false;
        };
        if !is_canonical_scalar(&s) {
            return false;
        }
        if has_small_order(&r) {
            return false;
        }
        let mut hasher = Sha512::new();
        hasher.update(r);
        hasher.update(self.encoding);
        hasher.update(message);
        let k = reduce_wide(&hasher.finalize().into());
        let Some(point) = double_scalar_mul(&from_le_bytes(&s), &k, &self.minus_a) else {
            return false;
        };
        point.encode() == Some(r)
    }
}
