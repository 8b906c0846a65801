//! The RSA public-key operation `s^e mod n`, variable-time, with 32-bit limbs, and the
//! RSASSA-PKCS1-v1_5 and RSASSA-PSS encoding checks (RFC 8017 sections 8.1.2, 8.2.2, 9.1.2 and
//! 9.2).
//!
//! Why our own code rather than the `rsa` crate: under V8 (what Envoy runs) a wasm module has no
//! 64x64->128-bit multiply, while 32x32->64 is one fast instruction, and signature verification
//! handles only public values, so it need not be constant-time. A plain Montgomery
//! multiplication over 32-bit limbs with early exits and a data-dependent final subtraction runs
//! RS256 about 4x faster in wasm than `rsa` 0.10's constant-time code (see
//! `examples/crypto_candidates.rs`). What a key allows to precompute (`-n^-1 mod 2^32` and
//! `R^2 mod n` for `R = 2^(32 * limbs)`) is computed once, when the key is imported, and kept in
//! [`RsaPublic`]. The property tests in `properties.rs` check the public operation against
//! `num-bigint` on random moduli and exponents, and whole RS*/PS* verifications against the
//! `rsa` crate on random keys, messages and signatures, valid and not; the Wycheproof tests in
//! `crypto.rs` run through this code too.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// An RSA public key prepared for verification: the modulus as little-endian 32-bit limbs with
/// its Montgomery constants.
#[derive(Clone)]
pub(crate) struct RsaPublic {
    /// The modulus, little-endian limbs, the top limb non-zero.
    n: Vec<u32>,
    /// `-n^-1 mod 2^32`.
    n0inv: u32,
    /// `R^2 mod n`, `R = 2^(32 * n.len())`.
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

/// `-x^-1 mod 2^32` for odd `x` (Newton's iteration: each step doubles the correct low bits).
fn neg_inv_u32(x: u32) -> u32 {
    // x * x = 1 mod 8 for odd x: 3 correct bits to start.
    let mut inv = x;
    for _ in 0..4 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(x.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

/// Big-endian bytes to little-endian limbs, exactly `limbs` of them (the value must fit).
fn limbs_from_be(bytes: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks(4)) {
        *limb = chunk
            .iter()
            .fold(0u32, |acc, &byte| (acc << 8) | u32::from(byte));
    }
    out
}

/// Little-endian limbs to exactly `len` big-endian bytes (high limbs beyond `len` are dropped:
/// callers only convert values below the modulus).
fn limbs_to_be(limbs: &[u32], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    let bytes = limbs.iter().flat_map(|limb| limb.to_le_bytes());
    for (dst, byte) in out.iter_mut().rev().zip(bytes) {
        *dst = byte;
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

/// `a -= b` for little-endian numbers of the same length; returns the borrow out.
fn sub_in_place(a: &mut [u32], b: &[u32]) -> bool {
    let mut borrow = false;
    for (x, &y) in a.iter_mut().zip(b) {
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(u32::from(borrow));
        *x = d2;
        borrow = b1 | b2;
    }
    borrow
}

/// `a = 2a mod n` for `a < n`.
fn double_mod(a: &mut [u32], n: &[u32]) {
    let mut carry = 0u32;
    for x in a.iter_mut() {
        let next = *x >> 31;
        *x = (*x << 1) | carry;
        carry = next;
    }
    if carry != 0 || ge(a, n) {
        sub_in_place(a, n);
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
        let limbs = len.div_ceil(4);
        let n_limbs = limbs_from_be(n, limbs);
        let n0inv = neg_inv_u32(*n_limbs.first()?);
        let mut key = RsaPublic {
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

    /// `R^2 mod n`: `x = R * 2^(2 limbs) mod n` by doublings (about `2 * limbs` of them, each
    /// a pass over the limbs), then four Montgomery squarings, each of which doubles the
    /// exponent of 2 above `R`: `mont(R 2^t, R 2^t) = R 2^(2t)`, ending at
    /// `R * 2^(32 limbs) = R^2`. (Fewer doublings would need more squarings, which cost
    /// `limbs` passes each.)
    fn compute_rr(&self) -> Vec<u32> {
        let k = self.n.len();
        // x = 2^(bits - 1) < n, then doublings up to 2^(32 k + 2 k).
        let mut x = vec![0u32; k];
        let top = self.bits - 1;
        if let Some(limb) = x.get_mut(top / 32) {
            *limb = 1 << (top % 32);
        }
        for _ in top..34 * k {
            double_mod(&mut x, &self.n);
        }
        let mut scratch = vec![0u32; k + 1];
        let mut out = vec![0u32; k];
        for _ in 0..4 {
            self.mont_mul(&mut out, &x, &x, &mut scratch);
            core::mem::swap(&mut out, &mut x);
        }
        x
    }

    /// `out = a * b / R mod n`, for `a, b < n`: CIOS Montgomery multiplication with the
    /// multiplication and reduction passes fused, and a variable-time final subtraction.
    /// `scratch` has `limbs + 1` elements.
    fn mont_mul(&self, out: &mut [u32], a: &[u32], b: &[u32], scratch: &mut [u32]) {
        let n = self.n.as_slice();
        let t = scratch;
        t.fill(0);
        let (body, high) = t.split_at_mut(n.len());
        let Some(top) = high.first_mut() else { return };
        for &ai in a {
            let ai = u64::from(ai);
            let mut slots = body.iter_mut();
            let Some(mut prev) = slots.next() else { return };
            let mut pairs = b.iter().zip(n);
            let Some((&b0, &n0)) = pairs.next() else {
                return;
            };
            // Column 0: choose m so that the column becomes zero, then shift by one limb.
            let s = u64::from(*prev) + ai * u64::from(b0);
            let m = u64::from((s as u32).wrapping_mul(self.n0inv));
            let mut c1 = s >> 32;
            let mut c2 = (u64::from(s as u32) + m * u64::from(n0)) >> 32;
            for (slot, (&bj, &nj)) in slots.zip(pairs) {
                // (2^32-1) + (2^32-1)^2 + (2^32-1) = 2^64 - 1: neither sum overflows.
                let s = u64::from(*slot) + ai * u64::from(bj) + c1;
                c1 = s >> 32;
                let s2 = u64::from(s as u32) + m * u64::from(nj) + c2;
                c2 = s2 >> 32;
                *prev = s2 as u32;
                prev = slot;
            }
            // `prev` is t[k-1]; `top` is t[k].
            let s = u64::from(*top) + c1 + c2;
            *prev = s as u32;
            *top = (s >> 32) as u32;
        }
        // t < 2n: one subtraction at most.
        let (low, high) = t.split_at(n.len());
        out.copy_from_slice(low);
        if high.first().is_some_and(|&h| h != 0) || ge(out, n) {
            sub_in_place(out, n);
        }
    }

    /// `out = a^2 / R mod n`, for `a < n`: the square (each cross product computed once, then
    /// doubled), then a separate Montgomery reduction. `wide` has `2 * limbs + 1` elements.
    /// About 1.5 k^2 multiplications rather than 2 k^2.
    fn mont_sqr(&self, out: &mut [u32], a: &[u32], wide: &mut [u32]) {
        let n = self.n.as_slice();
        let k = n.len();
        wide.fill(0);
        // Cross products a_i a_j, i < j, at position i + j.
        for (i, &ai) in a.iter().enumerate() {
            let ai = u64::from(ai);
            let (Some(rest), Some(row)) = (a.get(i + 1..), wide.get_mut(2 * i + 1..i + k + 1))
            else {
                continue;
            };
            let Some((last, row)) = row.split_last_mut() else {
                continue;
            };
            let mut carry = 0u64;
            for (w, &aj) in row.iter_mut().zip(rest) {
                let s = u64::from(*w) + ai * u64::from(aj) + carry;
                *w = s as u32;
                carry = s >> 32;
            }
            *last = carry as u32;
        }
        // Double, and add the squares a_i^2 at position 2i.
        let mut shifted_out = 0u32;
        let mut carry = 0u64;
        for (pair, &ai) in wide.chunks_exact_mut(2).zip(a) {
            let sq = u64::from(ai) * u64::from(ai);
            for (w, half) in pair.iter_mut().zip([sq as u32, (sq >> 32) as u32]) {
                let doubled = (*w << 1) | shifted_out;
                shifted_out = *w >> 31;
                let s = u64::from(doubled) + u64::from(half) + carry;
                *w = s as u32;
                carry = s >> 32;
            }
        }
        // The square is below 2^(64k): the final carries are zero.
        // Montgomery reduction, one limb at a time; `pending` carries into position i + k.
        let mut pending = 0u64;
        for i in 0..k {
            let Some(window) = wide.get_mut(i..=i + k) else {
                break;
            };
            let Some((top, row)) = window.split_last_mut() else {
                break;
            };
            let Some(&low) = row.first() else { break };
            let m = u64::from(low.wrapping_mul(self.n0inv));
            let mut c = 0u64;
            for (w, &nj) in row.iter_mut().zip(n) {
                let s = u64::from(*w) + m * u64::from(nj) + c;
                *w = s as u32;
                c = s >> 32;
            }
            let s = u64::from(*top) + c + pending;
            *top = s as u32;
            pending = s >> 32;
        }
        // The result is wide[k..2k] + pending R, below 2n.
        if let Some(high) = wide.get(k..2 * k) {
            out.copy_from_slice(high);
        }
        if pending != 0 || ge(out, n) {
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
        let s = limbs_from_be(signature, k);
        if ge(&s, &self.n) {
            return None;
        }
        let mut scratch = vec![0u32; k + 1];
        let mut wide = vec![0u32; 2 * k + 1];
        let mut tmp = vec![0u32; k];
        // s R mod n.
        let mut s_mont = vec![0u32; k];
        self.mont_mul(&mut s_mont, &s, &self.rr, &mut scratch);
        // Left to right over the bits of e below the top one; e is odd, so the last bit's
        // multiplication uses `s` itself, which also leaves the Montgomery domain.
        let mut x = s_mont.clone();
        let top = 63 - self.e.leading_zeros();
        for bit in (0..top).rev() {
            self.mont_sqr(&mut tmp, &x, &mut wide);
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
    fn neg_inv() {
        for x in [1u32, 3, 5, 0xffff_ffff, 0x8000_0001, 0x1234_5677] {
            assert_eq!(x.wrapping_mul(neg_inv_u32(x)), u32::MAX, "{x}");
        }
    }

    #[test]
    fn limb_conversions_round_trip() {
        let bytes: Vec<u8> = (1..=13).collect();
        let limbs = limbs_from_be(&bytes, 4);
        assert_eq!(limbs[0], 0x0a0b_0c0d);
        assert_eq!(limbs[3], 0x01);
        assert_eq!(limbs_to_be(&limbs, 13), bytes);
        assert_eq!(limbs_to_be(&limbs, 16)[3..], bytes[..]);
    }
}
