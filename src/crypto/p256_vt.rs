//! ECDSA P-256 verification, variable-time, shaped for wasm under V8: field arithmetic on eight
//! 32-bit limbs with the NIST fast (Solinas) reduction, Jacobian coordinates, and one interleaved
//! wNAF double-scalar multiplication `u1 G + u2 Q` over precomputed affine tables.
//!
//! Why our own code: V8 has no 64x64->128-bit multiply, so 64-bit-limb field code runs several
//! times slower in wasm than natively, and the `p256` crate's constant-time scalar
//! multiplication with complete formulas cannot use what verification allows: every value here
//! is public (the key, the signature, the message digest), so nothing needs to be constant-time.
//!
//! Where the time goes, and what is precomputed:
//! - Each scalar is split in eight 32-bit chunks, `u = sum u_c 2^(32 c)`, so the main loop has
//!   32 doublings rather than 256 (additions are as many as without the split: one per non-zero
//!   wNAF digit). That needs tables of odd multiples of `2^(32 c) G` (16 KB, built once per
//!   process, with the first P-256 key) and of `2^(32 c) Q` (4 KB per key), which
//!   [`P256Key::new`] builds when the key is imported (about as long as two verifications), so
//!   every verification with that key reuses them.
//! - The tables hold affine points, so every addition in the loop is a mixed addition.
//! - The final check compares `X` with `r Z^2` (and `(r + n) Z^2` when that is below `p`)
//!   instead of inverting `Z`.
//! - `s^-1 mod n` is a variable-time binary extended Euclid.
//!
//! The property tests in `properties.rs` check the field, the scalar arithmetic, the
//! multiplication, key import and whole verifications against the `p256` crate and
//! `num-bigint`; the Wycheproof tests in `crypto.rs` run through this code too.

use super::limbs::{
    add_mod, add_raw, from_be_bytes, inv_mod, is_zero, lt, mul_wide, square_wide, sub_mod, sub_raw,
    wnaf, Limbs,
};

/// The field prime p = 2^256 - 2^224 + 2^192 + 2^96 - 1.
pub(crate) const P: Limbs = [
    0xffff_ffff,
    0xffff_ffff,
    0xffff_ffff,
    0,
    0,
    0,
    1,
    0xffff_ffff,
];

/// The group order n.
pub(crate) const N: Limbs = [
    0xfc63_2551,
    0xf3b9_cac2,
    0xa717_9e84,
    0xbce6_faad,
    0xffff_ffff,
    0xffff_ffff,
    0,
    0xffff_ffff,
];

/// The curve coefficient b.
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

/// The generator's affine coordinates.
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

/// `-n^-1 mod 2^32`, for Montgomery multiplication modulo n.
const N0INV: u32 = 0xee00_bc4f;

/// `R^2 mod n` with `R = 2^256`.
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

// ---- the field ----

/// An element of GF(p), always fully reduced (below p).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fe(pub(crate) Limbs);

impl Fe {
    pub(crate) const ZERO: Fe = Fe([0; 8]);
    pub(crate) const ONE: Fe = Fe([1, 0, 0, 0, 0, 0, 0, 0]);

    /// From limbs that must be below p.
    pub(crate) fn from_limbs(limbs: Limbs) -> Option<Fe> {
        lt(&limbs, &P).then_some(Fe(limbs))
    }

    pub(crate) fn is_zero(&self) -> bool {
        is_zero(&self.0)
    }

    pub(crate) fn add(&self, other: &Fe) -> Fe {
        Fe(add_mod(&self.0, &other.0, &P))
    }

    pub(crate) fn sub(&self, other: &Fe) -> Fe {
        Fe(sub_mod(&self.0, &other.0, &P))
    }

    pub(crate) fn neg(&self) -> Fe {
        Fe::ZERO.sub(self)
    }

    fn double(&self) -> Fe {
        self.add(self)
    }

    // One copy of the (fully unrolled) multiplication, called from everywhere: inlining it
    // would multiply the module size for no measurable speed.
    #[inline(never)]
    pub(crate) fn mul(&self, other: &Fe) -> Fe {
        reduce(&mul_wide(&self.0, &other.0))
    }

    #[inline(never)]
    pub(crate) fn square(&self) -> Fe {
        reduce(&square_wide(&self.0))
    }

    /// `self^-1`, `None` for zero.
    pub(crate) fn invert(&self) -> Option<Fe> {
        inv_mod(&self.0, &P).map(Fe)
    }
}

/// A 512-bit number modulo p, by the NIST fast reduction (FIPS 186-4 appendix D.2.3): with
/// `c_i` the 32-bit words, the result is `s1 + 2 s2 + 2 s3 + s4 + s5 - s6 - s7 - s8 - s9`,
/// each `s` a 256-bit number made of words of the input.
fn reduce(c: &[u32; 16]) -> Fe {
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15] = c.map(i64::from);
    let mut w = [
        c0 + c8 + c9 - c11 - c12 - c13 - c14,
        c1 + c9 + c10 - c12 - c13 - c14 - c15,
        c2 + c10 + c11 - c13 - c14 - c15,
        c3 + 2 * c11 + 2 * c12 + c13 - c15 - c8 - c9,
        c4 + 2 * c12 + 2 * c13 + c14 - c9 - c10,
        c5 + 2 * c13 + 2 * c14 + c15 - c10 - c11,
        c6 + 3 * c14 + 2 * c15 + c13 - c8 - c9,
        c7 + 3 * c15 + c8 - c10 - c11 - c12 - c13,
    ];
    // Propagate the (signed) carries; fold the carry out of the top word back in with
    // 2^256 = 2^224 - 2^192 - 2^96 + 1 (mod p) until none is left.
    loop {
        let mut carry = 0i64;
        for x in w.iter_mut() {
            let s = *x + carry;
            *x = s & 0xffff_ffff;
            carry = s >> 32;
        }
        if carry == 0 {
            break;
        }
        let [w0, _, _, w3, _, _, w6, w7] = &mut w;
        *w0 += carry;
        *w3 -= carry;
        *w6 -= carry;
        *w7 += carry;
    }
    let limbs = w.map(|x| x as u32);
    // Below 2^256 < 2p: one subtraction at most.
    if lt(&limbs, &P) {
        Fe(limbs)
    } else {
        Fe(sub_raw(&limbs, &P).0)
    }
}

// ---- the scalar field, modulo n ----

/// `a b / 2^256 mod n` for `a, b < n` (Montgomery multiplication, CIOS).
fn mont_mul_n(a: &Limbs, b: &Limbs) -> Limbs {
    let mut t = [0u32; 10];
    for &ai in a {
        let ai = u64::from(ai);
        let mut carry = 0u64;
        for (tj, &bj) in t.iter_mut().zip(b) {
            let s = u64::from(*tj) + ai * u64::from(bj) + carry;
            *tj = s as u32;
            carry = s >> 32;
        }
        let [.., t8, t9] = &mut t;
        let s = u64::from(*t8) + carry;
        *t8 = s as u32;
        *t9 = (s >> 32) as u32;
        let m = u64::from(t.first().map_or(0, |&t0| t0.wrapping_mul(N0INV)));
        let mut carry = 0u64;
        for (tj, &nj) in t.iter_mut().zip(&N) {
            let s = u64::from(*tj) + m * u64::from(nj) + carry;
            *tj = s as u32;
            carry = s >> 32;
        }
        let [.., t8, t9] = &mut t;
        let s = u64::from(*t8) + carry;
        *t8 = s as u32;
        *t9 += (s >> 32) as u32;
        t.rotate_left(1);
        if let Some(last) = t.last_mut() {
            *last = 0;
        }
    }
    let mut out = [0u32; 8];
    out.copy_from_slice(t.get(..8).unwrap_or(&[0; 8]));
    if t.get(8).is_some_and(|&x| x != 0) || !lt(&out, &N) {
        out = sub_raw(&out, &N).0;
    }
    out
}

/// `a b mod n` for `a, b < n`.
pub(crate) fn mul_mod_n(a: &Limbs, b: &Limbs) -> Limbs {
    mont_mul_n(&mont_mul_n(a, b), &N_RR)
}

// ---- points ----

/// An affine point (never the point at infinity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Affine {
    pub(crate) x: Fe,
    pub(crate) y: Fe,
}

/// A point in Jacobian coordinates, `(X / Z^2, Y / Z^3)`; `Z = 0` is the point at infinity.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Jacobian {
    pub(crate) x: Fe,
    pub(crate) y: Fe,
    pub(crate) z: Fe,
}

impl Affine {
    pub(crate) fn generator() -> Affine {
        Affine {
            x: Fe(GX),
            y: Fe(GY),
        }
    }

    /// Whether `y^2 = x^3 - 3x + b`.
    pub(crate) fn is_on_curve(&self) -> bool {
        let x3 = self.x.square().mul(&self.x);
        let three_x = self.x.double().add(&self.x);
        let rhs = x3.sub(&three_x).add(&Fe(B));
        self.y.square() == rhs
    }

    fn neg(&self) -> Affine {
        Affine {
            x: self.x,
            y: self.y.neg(),
        }
    }

    pub(crate) fn to_jacobian(self) -> Jacobian {
        Jacobian {
            x: self.x,
            y: self.y,
            z: Fe::ONE,
        }
    }
}

impl Jacobian {
    pub(crate) const INFINITY: Jacobian = Jacobian {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    pub(crate) fn is_infinity(&self) -> bool {
        self.z.is_zero()
    }

    /// `2 P` ("dbl-2001-b", a = -3): 3M + 5S.
    pub(crate) fn double(&self) -> Jacobian {
        if self.is_infinity() || self.y.is_zero() {
            return Jacobian::INFINITY;
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
    pub(crate) fn add_affine(&self, q: &Affine) -> Jacobian {
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
                Jacobian::INFINITY
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
    pub(crate) fn add(&self, q: &Jacobian) -> Jacobian {
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
                Jacobian::INFINITY
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
    pub(crate) fn to_affine(self) -> Option<Affine> {
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
fn batch_to_affine(points: &[Jacobian]) -> Option<Vec<Affine>> {
    let mut prefix = Vec::with_capacity(points.len());
    let mut acc = Fe::ONE;
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

/// How many chunks each scalar is split into (each with its own table).
const CHUNKS: usize = 8;
/// Bits per chunk.
const CHUNK_BITS: usize = 256 / CHUNKS;
/// wNAF width for the key's tables: odd multiples 1..=15 of each chunk base.
const Q_WINDOW: u32 = 5;
/// wNAF width for the generator's tables: odd multiples 1..=63.
const G_WINDOW: u32 = 7;

/// Odd multiples `P, 3P, ..., (2^(w-1) - 1)P` of the chunk bases `2^(CHUNK_BITS c) P`, affine.
#[derive(Clone)]
pub(crate) struct Tables {
    /// `CHUNKS` tables of `2^(w - 2)` points each, one after the other.
    points: Vec<Affine>,
    per_chunk: usize,
}

impl Tables {
    fn new(base: &Affine, window: u32) -> Option<Tables> {
        let per_chunk = 1usize << (window - 2);
        let mut jacobian = Vec::with_capacity(CHUNKS * per_chunk);
        let mut chunk_base = base.to_jacobian();
        for chunk in 0..CHUNKS {
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

    /// `(2 index + 1) 2^(CHUNK_BITS chunk) P`.
    fn get(&self, chunk: usize, index: usize) -> Option<&Affine> {
        self.points.get(chunk * self.per_chunk + index)
    }
}

/// The generator's tables, built on first use.
fn generator_tables() -> Option<&'static Tables> {
    static TABLES: std::sync::OnceLock<Option<Tables>> = std::sync::OnceLock::new();
    TABLES
        .get_or_init(|| Tables::new(&Affine::generator(), G_WINDOW))
        .as_ref()
}

/// `u1 G + u2 Q`, variable-time: one doubling chain of `CHUNK_BITS + 1` steps for all the
/// chunks of both scalars.
pub(crate) fn double_scalar_mul(u1: &Limbs, u2: &Limbs, q: &Tables) -> Option<Jacobian> {
    let g = generator_tables()?;
    let d1 = wnaf(u1, G_WINDOW);
    let d2 = wnaf(u2, Q_WINDOW);
    let mut acc = Jacobian::INFINITY;
    // Digit i of a scalar sits in chunk i / CHUNK_BITS at position i % CHUNK_BITS; digit 256
    // (a carry out of the top) is position CHUNK_BITS of the last chunk.
    for pos in (0..=CHUNK_BITS).rev() {
        if !acc.is_infinity() {
            acc = acc.double();
        }
        for chunk in 0..CHUNKS {
            let index = chunk * CHUNK_BITS + pos;
            if pos == CHUNK_BITS && chunk + 1 < CHUNKS {
                continue;
            }
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

/// A P-256 public key with the tables its verifications use.
#[derive(Clone)]
pub struct P256Key {
    tables: Tables,
}

impl std::fmt::Debug for P256Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("P256Key")
    }
}

/// Why an ECDSA verification failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EcdsaError {
    /// `r` or `s` is zero or not below n.
    OutOfRange,
    /// The signature does not verify.
    Invalid,
}

impl P256Key {
    /// The key with affine coordinates `x`, `y` (big-endian, 32 bytes each); `None` unless both
    /// are below p and the point is on the curve (P-256 has cofactor 1, so that is enough).
    pub(crate) fn new(x: &[u8; 32], y: &[u8; 32]) -> Option<P256Key> {
        let point = Affine {
            x: Fe::from_limbs(from_be_bytes(x))?,
            y: Fe::from_limbs(from_be_bytes(y))?,
        };
        if !point.is_on_curve() {
            return None;
        }
        let tables = Tables::new(&point, Q_WINDOW)?;
        // Build the generator's tables now, with the key, rather than in the first request.
        generator_tables()?;
        Some(P256Key { tables })
    }

    /// The key's tables.
    #[cfg(test)]
    pub(crate) fn tables(&self) -> &Tables {
        &self.tables
    }

    /// ECDSA verification (SEC 1 section 4.1.4) of a 32-byte message digest and the JWS
    /// signature `r || s`.
    pub(crate) fn verify_prehash(
        &self,
        digest: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<(), EcdsaError> {
        let (r_bytes, s_bytes) = signature.split_at(32);
        let r = from_be_bytes(r_bytes.try_into().map_err(|_| EcdsaError::OutOfRange)?);
        let s = from_be_bytes(s_bytes.try_into().map_err(|_| EcdsaError::OutOfRange)?);
        if is_zero(&r) || is_zero(&s) || !lt(&r, &N) || !lt(&s, &N) {
            return Err(EcdsaError::OutOfRange);
        }
        // e = the digest as an integer (256 bits: no truncation), reduced mod n.
        let mut e = from_be_bytes(digest);
        if !lt(&e, &N) {
            e = sub_raw(&e, &N).0;
        }
        let w = inv_mod(&s, &N).ok_or(EcdsaError::Invalid)?;
        let u1 = mul_mod_n(&e, &w);
        let u2 = mul_mod_n(&r, &w);
        let point = double_scalar_mul(&u1, &u2, &self.tables).ok_or(EcdsaError::Invalid)?;
        if point.is_infinity() {
            return Err(EcdsaError::Invalid);
        }
        // x(R) mod n == r  <=>  X = r' Z^2 for r' in {r, r + n} below p.
        let z2 = point.z.square();
        if point.x == Fe(r).mul(&z2) {
            return Ok(());
        }
        let (r_plus_n, carry) = add_raw(&r, &N);
        if !carry && lt(&r_plus_n, &P) && point.x == Fe(r_plus_n).mul(&z2) {
            return Ok(());
        }
        Err(EcdsaError::Invalid)
    }
}
