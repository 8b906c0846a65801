//! The P-256 curve for `ecdsa_vt`, the generic variable-time ECDSA verification: the constants,
//! and field arithmetic on eight 32-bit limbs with the NIST fast (Solinas) reduction.
//!
//! Only the field multiplication is P-256's own: the 256-bit product is `limbs::mul_wide`,
//! written out column by column and shared with Ed25519, and p = 2^256 - 2^224 + 2^192 + 2^96 - 1
//! reduces with signed sums of 32-bit words. Everything else (points, tables, the
//! double-scalar multiplication, the JWS checks) is `ecdsa_vt`'s, as for P-384 and P-521; its
//! tables for P-256 are 16 KB for the generator (built once per process, with the first P-256
//! key) and 4 KB per key.

use super::ecdsa_vt::{Affine, Curve, EcdsaKey, Tables, G_WINDOW};
use super::limbs::{finish_signed_reduction, mul_wide, square_wide, Limbs};

/// NIST P-256 (secp256r1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P256;

/// A P-256 public key.
pub type P256Key = EcdsaKey<8, P256>;

impl Curve<8> for P256 {
    const NAME: &'static str = "P-256";
    const BYTES: usize = 32;
    const N_BITS: usize = 256;
    // p = 2^256 - 2^224 + 2^192 + 2^96 - 1.
    const P: Limbs = [
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0,
        0,
        1,
        0xffff_ffff,
    ];
    const N: Limbs = [
        0xfc63_2551,
        0xf3b9_cac2,
        0xa717_9e84,
        0xbce6_faad,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0xffff_ffff,
    ];
    const B: Limbs = [
        0x27d2_604b,
        0x3bce_3c3e,
        0xcc53_b0f6,
        0x651d_06b0,
        0x7698_86bc,
        0xb3eb_bd55,
        0xaa3a_93e7,
        0x5ac6_35d8,
    ];
    const GX: Limbs = [
        0xd898_c296,
        0xf4a1_3945,
        0x2deb_33a0,
        0x7703_7d81,
        0x63a4_40f2,
        0xf8bc_e6e5,
        0xe12c_4247,
        0x6b17_d1f2,
    ];
    const GY: Limbs = [
        0x37bf_51f5,
        0xcbb6_4068,
        0x6b31_5ece,
        0x2bce_3357,
        0x7c0f_9e16,
        0x8ee7_eb4a,
        0xfe1a_7f9b,
        0x4fe3_42e2,
    ];
    const N0INV: u32 = 0xee00_bc4f;
    const N_RR: Limbs = [
        0xbe79_eea2,
        0x8324_4c95,
        0x49bd_6fa6,
        0x4699_799c,
        0x2b6b_ec59,
        0x2845_b239,
        0xf3d9_5620,
        0x66e1_2d94,
    ];

    // One copy of the (fully unrolled) multiplication, called from everywhere: inlining it
    // would multiply the module size for no measurable speed.
    #[inline(never)]
    fn field_mul(a: &Limbs, b: &Limbs) -> Limbs {
        reduce(&mul_wide(a, b))
    }

    #[inline(never)]
    fn field_square(a: &Limbs) -> Limbs {
        reduce(&square_wide(a))
    }

    fn generator_tables() -> Option<&'static Tables<8, P256>> {
        static TABLES: std::sync::OnceLock<Option<Tables<8, P256>>> = std::sync::OnceLock::new();
        TABLES
            .get_or_init(|| Tables::new(&Affine::generator(), G_WINDOW))
            .as_ref()
    }
}

/// A 512-bit number modulo p, by the NIST fast reduction (FIPS 186-4 appendix D.2.3): with
/// `c_i` the 32-bit words, the result is `s1 + 2 s2 + 2 s3 + s4 + s5 - s6 - s7 - s8 - s9`,
/// each `s` a 256-bit number made of words of the input.
fn reduce(c: &[u32; 16]) -> Limbs {
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15] = c.map(i64::from);
    let w = [
        c0 + c8 + c9 - c11 - c12 - c13 - c14,
        c1 + c9 + c10 - c12 - c13 - c14 - c15,
        c2 + c10 + c11 - c13 - c14 - c15,
        c3 + 2 * c11 + 2 * c12 + c13 - c15 - c8 - c9,
        c4 + 2 * c12 + 2 * c13 + c14 - c9 - c10,
        c5 + 2 * c13 + 2 * c14 + c15 - c10 - c11,
        c6 + 3 * c14 + 2 * c15 + c13 - c8 - c9,
        c7 + 3 * c15 + c8 - c10 - c11 - c12 - c13,
    ];
    // Fold the carry out of the top word back in with 2^256 = 2^224 - 2^192 - 2^96 + 1 (mod p).
    finish_signed_reduction(w, &P256::P, |w, carry| {
        let [w0, _, _, w3, _, _, w6, w7] = w;
        *w0 += carry;
        *w3 -= carry;
        *w6 -= carry;
        *w7 += carry;
    })
}
