//! The RSA public-key operation `s^e mod n`, variable-time, with 27-bit limbs, and the
//! RSASSA-PKCS1-v1_5 and RSASSA-PSS encoding checks (RFC 8017 sections 8.1.2, 8.2.2, 9.1.2 and
//! 9.2).
//!
//! Why our own code rather than the `rsa` crate: under V8 (what Envoy runs) a wasm module has no
//! 64x64->128-bit multiply, while 32x32->64 is one fast instruction, and signature verification
//! handles only public values, so it need not be constant-time. Montgomery multiplication by
//! columns over 27-bit limbs, whose column sums need no carry per product, with a
//! data-dependent final subtraction, runs RS256 about 5x faster in wasm than `rsa` 0.10's
//! constant-time code (see `examples/crypto_candidates.rs`); with wasm SIMD, which sums two
//! products per instruction, about 1.5x faster again, and 1.1x more with the operand read
//! backwards in a column kept reversed (see [`dot`]). What a key allows to precompute
//! (`-n^-1 mod 2^27`, `R^2 mod n` for `R = 2^(27 * limbs)`, the modulus reversed) is computed
//! once, when the key is imported, and kept in [`RsaPublic`]. The property tests in
//! `properties.rs` check the public operation against `num-bigint` on random moduli and
//! exponents, and whole RS*/PS* verifications against the `rsa` crate on random keys, messages
//! and signatures, valid and not; the Wycheproof tests in `lib.rs` run through this code
//! too.

use super::limbs::{neg_inv_u32, regroup};
use sha2::{Digest, Sha256, Sha384, Sha512};

/// An RSA public key prepared for verification: the modulus as little-endian 27-bit limbs with
/// its Montgomery constants.
#[derive(Clone)]
pub(crate) struct RsaPublic {
    /// The modulus, little-endian 27-bit limbs, with at least one spare bit at the top.
    n: Vec<u32>,
    /// The same limbs, most significant first (see [`dot`]).
    n_rev: Vec<u32>,
    /// `-n^-1 mod 2^27`.
    n0inv: u32,
    /// `R^2 mod n`, `R = 2^(27 * n.len())`.
    rr: Vec<u32>,
    /// The public exponent: odd, 3..=2^33-1 (checked by the caller).
    e: u64,
    /// The modulus length in bytes, which is the signature length.
    len: usize,
    /// The modulus length in bits.
    bits: usize,
}

/// The hash of an RSA JWS algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RsaHash {
    Sha256,
    Sha384,
    Sha512,
}

impl RsaHash {
    fn len(self) -> usize {
        match self {
            RsaHash::Sha256 => 32,
            RsaHash::Sha384 => 48,
            RsaHash::Sha512 => 64,
        }
    }

    /// The DER `DigestInfo` prefix of RFC 8017 section 9.2, note 1.
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            RsaHash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
            RsaHash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
            RsaHash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        }
    }

    fn hash_parts(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut hasher = D::new();
            for part in parts {
                hasher.update(part);
            }
            hasher.finalize().to_vec()
        }
        match self {
            RsaHash::Sha256 => run::<Sha256>(parts),
            RsaHash::Sha384 => run::<Sha384>(parts),
            RsaHash::Sha512 => run::<Sha512>(parts),
        }
    }
}

/// Bits per limb. 27-bit limbs make every product below `2^54`, so a whole column of a
/// Montgomery product (at most `2 limbs` products for the largest key, 8192 bits: 304 limbs)
/// sums in one `u64` with no carry handling per product: two loads, one multiply and one add.
/// With 32-bit limbs each product needs its carry split off and added on, which costs more
/// under V8 than the 18% more products 27-bit limbs take. Limbs are stored as `u32` so that
/// wasm's SIMD can multiply them two at a time (see [`dot`]).
const LIMB_BITS: u32 = 27;
const LIMB_MASK: u64 = (1 << LIMB_BITS) - 1;

/// Big-endian bytes to `limbs` little-endian 27-bit limbs, or `None` when the value does not
/// fit in them.
fn limbs_from_be(bytes: &[u8], limbs: usize) -> Option<Vec<u32>> {
    let mut out = vec![0u32; limbs];
    let mut digits = regroup(bytes.iter().rev().map(|&b| u64::from(b)), 8, LIMB_BITS);
    for (slot, digit) in out.iter_mut().zip(&mut digits) {
        *slot = digit as u32;
    }
    digits.all(|rest| rest == 0).then_some(out)
}

/// Little-endian 27-bit limbs to exactly `len` big-endian bytes (bits beyond `len` bytes are
/// dropped: callers only convert values below the modulus).
fn limbs_to_be(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let bytes = regroup(limbs.iter().map(|&x| u64::from(x)), LIMB_BITS, 8);
    for (slot, byte) in out.iter_mut().rev().zip(bytes) {
        *slot = byte as u8;
    }
    out
}

/// `a >= b` for little-endian numbers of the same length.
fn ge(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x > y;
        }
    }
    true
}

/// `a -= b` for little-endian 27-bit-limb numbers of the same length, `a >= b`.
fn sub_in_place(a: &mut [u32], b: &[u32]) {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = (d & LIMB_MASK) as u32;
        borrow = d >> 63;
    }
}

/// `a = 2a mod n` for `a < n < 2^(27 limbs - 1)`.
fn double_mod(a: &mut [u32], n: &[u32]) {
    let mut carry = 0u32;
    for x in a.iter_mut() {
        let d = (*x << 1) | carry;
        *x = d & LIMB_MASK as u32;
        carry = d >> LIMB_BITS;
    }
    if ge(a, n) {
        sub_in_place(a, n);
    }
}

/// `sum x_i y_i` over two slices of the same length.
///
/// A column of a product pairs one operand's limbs forwards with the other's backwards. The
/// operand paired backwards is copied, most significant limb first, once per Montgomery
/// product (the modulus once per key), so that every column is a dot product of two slices
/// read forwards: wasm's SIMD then loads four limbs of each with no shuffle.
#[inline(always)]
fn dot_one_by_one(x: &[u32], y: &[u32]) -> u64 {
    x.iter()
        .zip(y)
        .map(|(&a, &b)| u64::from(a) * u64::from(b))
        .sum()
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
use dot_one_by_one as dot;

/// [`dot_one_by_one`] with wasm's SIMD, four limbs of each side at a time: two 32x32->64-bit
/// products per instruction (`i64x2.extmul`, one `pmuludq` each under V8), about 2x faster
/// under V8 than one `i64.mul` per product. Limbs are below `2^27`, so with at most 1024
/// products no lane can overflow.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn dot(x: &[u32], y: &[u32]) -> u64 {
    use core::arch::wasm32::{
        u64x2_add, u64x2_extmul_high_u32x4, u64x2_extmul_low_u32x4, u64x2_extract_lane,
        u64x2_splat, v128, v128_load,
    };
    // SAFETY: the pointer comes from a `&[u32; 4]`, so 16 bytes are readable; `v128_load`
    // has no alignment requirement.
    let load = |four: &[u32; 4]| unsafe { v128_load(four.as_ptr().cast::<v128>()) };
    let (xs, ys) = (x.chunks_exact(4), y.chunks_exact(4));
    let rest = dot_one_by_one(xs.remainder(), ys.remainder());
    let mut sums = u64x2_splat(0);
    for (a, b) in xs.zip(ys) {
        let (Ok(a), Ok(b)) = (<&[u32; 4]>::try_from(a), <&[u32; 4]>::try_from(b)) else {
            continue;
        };
        let (a, b) = (load(a), load(b));
        sums = u64x2_add(sums, u64x2_extmul_low_u32x4(a, b));
        sums = u64x2_add(sums, u64x2_extmul_high_u32x4(a, b));
    }
    u64x2_extract_lane::<0>(sums) + u64x2_extract_lane::<1>(sums) + rest
}

/// One column of a product `x y`: `sum x_i y_(lo + hi - i)` for `i` in `lo..=hi`, with `y`
/// given most significant limb first (`y_rev[j] = y_(limbs - 1 - j)`).
#[inline(always)]
fn column(x: &[u32], y_rev: &[u32], lo: usize, hi: usize) -> u64 {
    let (Some(first), Some(last)) = (
        y_rev.len().checked_sub(hi + 1),
        y_rev.len().checked_sub(lo + 1),
    ) else {
        return 0;
    };
    match (x.get(lo..=hi), y_rev.get(first..=last)) {
        (Some(x), Some(y)) => dot(x, y),
        _ => 0,
    }
}

/// One column of a square `x^2` over `lo..=hi`, each cross product computed once: twice the
/// products of the column's first half with its second half, plus the middle limb squared.
#[inline(always)]
fn square_column(x: &[u32], x_rev: &[u32], lo: usize, hi: usize) -> u64 {
    let half = (hi + 1 - lo) / 2;
    let Some(first) = x_rev.len().checked_sub(hi + 1) else {
        return 0;
    };
    let cross = match (x.get(lo..lo + half), x_rev.get(first..first + half)) {
        (Some(x), Some(y)) => dot(x, y),
        _ => 0,
    };
    let middle = if (hi + 1 - lo) % 2 == 1 {
        x.get(lo + half).map_or(0, |&m| u64::from(m) * u64::from(m))
    } else {
        0
    };
    2 * cross + middle
}

/// `to` = `from` with its limbs in the opposite order.
fn reverse_into(to: &mut [u32], from: &[u32]) {
    for (t, &f) in to.iter_mut().zip(from.iter().rev()) {
        *t = f;
    }
}

/// The work space of a Montgomery product: the reduction's multipliers and an operand
/// reversed, `limbs` each.
struct Scratch {
    m: Vec<u32>,
    rev: Vec<u32>,
}

impl Scratch {
    fn new(limbs: usize) -> Scratch {
        Scratch {
            m: vec![0; limbs],
            rev: vec![0; limbs],
        }
    }
}

impl RsaPublic {
    /// Prepares a key. `n` is big-endian without leading zero octets, odd, at least 2 bytes;
    /// `e` is the (already checked) exponent. Returns `None` for an even or tiny modulus.
    pub(crate) fn new(n: &[u8], e: u64) -> Option<RsaPublic> {
        let len = n.len();
        let first = *n.first()?;
        if first == 0 || len < 2 || n.last().is_none_or(|b| b & 1 == 0) {
            return None;
        }
        let bits = (len - 1) * 8 + (8 - first.leading_zeros() as usize);
        // At least one spare bit at the top: results below 2n then fit in the limbs.
        let limbs = bits / LIMB_BITS as usize + 1;
        let n_limbs = limbs_from_be(n, limbs)?;
        let n0inv = neg_inv_u32(*n_limbs.first()?) & LIMB_MASK as u32;
        let mut key = RsaPublic {
            n_rev: n_limbs.iter().rev().copied().collect(),
            n: n_limbs,
            n0inv,
            rr: Vec::new(),
            e,
            len,
            bits,
        };
        key.rr = key.compute_rr();
        Some(key)
    }

    /// The modulus length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// `R^2 mod n`, `R = 2^(27 limbs)`: `R mod n` by doublings from `2^(bits - 1)`, which is
    /// 1 in the Montgomery domain; then that domain's `2^(27 limbs)` by square-and-multiply,
    /// where multiplying by 2 is one doubling. In the domain it is `2^(27 limbs) R = R^2`.
    fn compute_rr(&self) -> Vec<u32> {
        let k = self.n.len();
        let mut x = vec![0u32; k];
        let top = self.bits - 1;
        if let Some(limb) = x.get_mut(top / LIMB_BITS as usize) {
            *limb = 1 << (top % LIMB_BITS as usize);
        }
        for _ in top..LIMB_BITS as usize * k {
            double_mod(&mut x, &self.n);
        }
        let exponent = LIMB_BITS as usize * k;
        let mut tmp = vec![0u32; k];
        let mut scratch = Scratch::new(k);
        for bit in (0..usize::BITS - exponent.leading_zeros()).rev() {
            self.mont_sqr(&mut tmp, &x, &mut scratch);
            core::mem::swap(&mut tmp, &mut x);
            if (exponent >> bit) & 1 == 1 {
                double_mod(&mut x, &self.n);
            }
        }
        x
    }

    /// `out = a b / R mod n` for `a b < n R` (so `a, b < n`): Montgomery multiplication by
    /// columns (product scanning), the multiplication and the reduction fused, and a
    /// variable-time final subtraction.
    fn mont_mul(&self, out: &mut [u32], a: &[u32], b: &[u32], scratch: &mut Scratch) {
        let Scratch { m, rev } = scratch;
        reverse_into(rev, b);
        self.reduce_columns(out, m, |lo, hi| column(a, rev, lo, hi));
    }

    /// `out = a^2 / R mod n` for `a < n`, as [`Self::mont_mul`] with each cross product
    /// computed once: about 1.5 limbs^2 products rather than 2 limbs^2.
    fn mont_sqr(&self, out: &mut [u32], a: &[u32], scratch: &mut Scratch) {
        let Scratch { m, rev } = scratch;
        reverse_into(rev, a);
        self.reduce_columns(out, m, |lo, hi| square_column(a, rev, lo, hi));
    }

    /// The column loop of a Montgomery product: `product(lo, hi)` is the sum of the products of
    /// one column of `a b`, whose limb indices run over `lo..=hi` (column `c` has `0..=c` in
    /// the low half, `c + 1 - limbs..=limbs - 1` in the high half). To each column it adds the
    /// reduction's products `m_i n_(c - i)`; in the low half it picks `m_c` so that the column
    /// becomes zero modulo `2^27`, in the high half it emits a limb of the result, which is
    /// below `2n` and takes one subtraction at most.
    #[inline(always)]
    fn reduce_columns(
        &self,
        out: &mut [u32],
        m: &mut [u32],
        product: impl Fn(usize, usize) -> u64,
    ) {
        let (n, n_rev) = (self.n.as_slice(), self.n_rev.as_slice());
        let k = n.len();
        let Some(&n0) = n.first() else { return };
        let mut t = 0u64;
        for c in 0..k {
            // m_i n_(c - i) for i < c: m_c is not known yet.
            let (Some(m_low), Some(n_high)) = (m.get(..c), n_rev.get(k - 1 - c..k - 1)) else {
                return;
            };
            t += product(0, c) + dot(m_low, n_high);
            let mc = (t as u32).wrapping_mul(self.n0inv) & LIMB_MASK as u32;
            if let Some(slot) = m.get_mut(c) {
                *slot = mc;
            }
            t = (t + u64::from(mc) * u64::from(n0)) >> LIMB_BITS;
        }
        for (c, limb) in (k..2 * k - 1).zip(out.iter_mut()) {
            let lo = c + 1 - k;
            let (Some(m_high), Some(n_high)) = (m.get(lo..), n_rev.get(..k - lo)) else {
                return;
            };
            t += product(lo, k - 1) + dot(m_high, n_high);
            *limb = (t & LIMB_MASK) as u32;
            t >>= LIMB_BITS;
        }
        // The result is below 2n < 2^(27 limbs): the last carry fits in the top limb.
        if let Some(top) = out.last_mut() {
            *top = t as u32;
        }
        if ge(out, n) {
            sub_in_place(out, n);
        }
    }

    /// `s^e mod n` as exactly `len` big-endian bytes, or `None` when `s` is not exactly `len`
    /// bytes or `s >= n` (RSAVP1, RFC 8017 section 5.2.2).
    pub(crate) fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.len {
            return None;
        }
        let k = self.n.len();
        let s = limbs_from_be(signature, k)?;
        if ge(&s, &self.n) {
            return None;
        }
        let mut scratch = Scratch::new(k);
        let mut tmp = vec![0u32; k];
        // s R mod n.
        let mut s_mont = vec![0u32; k];
        self.mont_mul(&mut s_mont, &s, &self.rr, &mut scratch);
        // Left to right over the bits of e below the top one; e is odd, so the last bit's
        // multiplication uses `s` itself, which also leaves the Montgomery domain.
        let mut x = s_mont.clone();
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            self.mont_sqr(&mut tmp, &x, &mut scratch);
            core::mem::swap(&mut tmp, &mut x);
            if (self.e >> bit) & 1 == 1 {
                let multiplier = if bit == 0 { &s } else { &s_mont };
                self.mont_mul(&mut tmp, &x, multiplier, &mut scratch);
                core::mem::swap(&mut tmp, &mut x);
            }
        }
        Some(limbs_to_be(&x, self.len))
    }

    /// RSASSA-PKCS1-v1_5 verification of a message `digest` (RFC 8017 section 8.2.2): the
    /// decoded block must be exactly `00 01 FF..FF 00 DigestInfo(digest)`.
    // Out of line: see "Function size" in the engine's crate docs (`src/lib.rs`).
    #[inline(never)]
    pub(crate) fn verify_pkcs1v15(&self, hash: RsaHash, digest: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        let prefix = hash.digest_info_prefix();
        let t_len = prefix.len() + digest.len();
        if digest.len() != hash.len() || self.len < t_len + 11 {
            return false;
        }
        let ps_len = self.len - t_len - 3;
        let (head, rest) = em.split_at(2);
        let (ps, rest) = rest.split_at(ps_len);
        let Some((&zero, rest)) = rest.split_first() else {
            return false;
        };
        let (prefix_got, digest_got) = rest.split_at(prefix.len());
        head == [0x00, 0x01]
            && ps.iter().all(|&b| b == 0xff)
            && zero == 0
            && prefix_got == prefix
            && digest_got == digest
    }

    /// RSASSA-PSS verification of a message `digest` with MGF1 over the same hash and a salt of
    /// exactly the hash length (RFC 7518 section 3.5; RFC 8017 section 9.1.2).
    // Out of line: see "Function size" in the engine's crate docs (`src/lib.rs`).
    #[inline(never)]
    pub(crate) fn verify_pss(&self, hash: RsaHash, digest: &[u8], signature: &[u8]) -> bool {
        let Some(m) = self.public_op(signature) else {
            return false;
        };
        let h_len = hash.len();
        let s_len = h_len;
        if digest.len() != h_len {
            return false;
        }
        // EM = I2OSP(m, emLen), emBits = modBits - 1.
        let em_bits = self.bits - 1;
        let em_len = em_bits.div_ceil(8);
        let Some(extra) = self.len.checked_sub(em_len) else {
            return false;
        };
        let (lead, em) = m.split_at(extra);
        if lead.iter().any(|&b| b != 0) || em_len < h_len + s_len + 2 {
            return false;
        }
        let Some((&last, em)) = em.split_last() else {
            return false;
        };
        if last != 0xbc {
            return false;
        }
        let db_len = em_len - h_len - 1;
        let (masked_db, h) = em.split_at(db_len);
        let unused_bits = 8 * em_len - em_bits;
        let top_mask = 0xffu8.checked_shr(unused_bits as u32).unwrap_or(0);
        if masked_db.first().is_none_or(|&b| b & !top_mask != 0) {
            return false;
        }
        // DB = maskedDB xor MGF1(H, dbLen).
        let mut db = masked_db.to_vec();
        for (counter, chunk) in (0u32..).zip(db.chunks_mut(h_len)) {
            let mask = hash.hash_parts(&[h, &counter.to_be_bytes()]);
            for (byte, m) in chunk.iter_mut().zip(mask) {
                *byte ^= m;
            }
        }
        if let Some(first) = db.first_mut() {
            *first &= top_mask;
        }
        // DB = PS (zeros) || 0x01 || salt.
        let ps_len = db_len - s_len - 1;
        let (ps, rest) = db.split_at(ps_len);
        let Some((&one, salt)) = rest.split_first() else {
            return false;
        };
        if ps.iter().any(|&b| b != 0) || one != 0x01 {
            return false;
        }
        hash.hash_parts(&[&[0u8; 8], digest, salt]) == h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limb_conversions_round_trip() {
        let bytes: Vec<u8> = (1..=13).collect();
        let limbs = limbs_from_be(&bytes, 4).unwrap();
        assert_eq!(u64::from(limbs[0]), 0x0a0b0c0d & LIMB_MASK);
        // Limb 3 is bits 81..108: the top seven bits of 0x03, then 0x02 and 0x01.
        assert_eq!(limbs[3], (0x03 >> 1) | (0x02 << 7) | (0x01 << 15));
        assert_eq!(limbs_to_be(&limbs, 13), bytes);
        assert_eq!(limbs_to_be(&limbs, 16)[3..], bytes[..]);
        // 13 bytes are 97 bits: three limbs hold 81.
        assert!(limbs_from_be(&bytes, 3).is_none());
    }

    /// The wasm build (the filter's and this test's, one `.cargo/config.toml`) has SIMD on, so
    /// the RSA columns run two products per instruction, as the README says.
    #[cfg(target_arch = "wasm32")]
    #[test]
    fn the_wasm_build_sums_columns_with_simd() {
        assert!(std::hint::black_box(cfg!(target_feature = "simd128")));
    }

    /// Column sums are largest when every limb is at its maximum: the largest modulus accepted
    /// (8192 bits, all ones) and `s = n - 1`, whose square and products reach each bound.
    #[test]
    fn largest_key_with_every_limb_at_its_maximum() {
        let n = vec![0xffu8; 1024];
        let key = RsaPublic::new(&n, 65537).unwrap();
        assert_eq!(key.n.len(), 304);
        let mut s = n.clone();
        s[1023] = 0xfe;
        // (n - 1)^e = (-1)^e = -1 = n - 1 (mod n) for odd e.
        assert_eq!(key.public_op(&s).unwrap(), s);
        let mut two = vec![0u8; 1024];
        two[1023] = 2;
        let mut expected = vec![0u8; 1024];
        // 2^65537 mod (2^8192 - 1) = 2^(65537 mod 8192) = 2^1.
        expected[1023] = 2;
        assert_eq!(key.public_op(&two).unwrap(), expected);
        assert!(key.public_op(&n).is_none(), "s = n is refused");
    }
}
