//! Multi-precision numbers as little-endian 32-bit limbs: the arithmetic the P-256, P-384,
//! P-521 and Ed25519 code share. Products are 32x32->64 bits, the widest multiply V8 does in
//! one instruction. Everything is variable-time: it only ever sees public values.
//!
//! Products are the hottest code, and the fastest in wasm when every partial product and column
//! sum is a local rather than a slot in linear memory: the 256-bit ones (`mul_wide`,
//! `square_wide`) are written out column by column by hand, the wider ones by the
//! `mul_wide_columns!`/`square_wide_columns!` macros (one inlined column function per column,
//! whose loop unrolls). Everything else is generic over the number of limbs `N` (const
//! generics), so every curve uses the same code.

/// A 256-bit number: eight little-endian 32-bit limbs.
pub(crate) type Limbs = [u32; 8];

/// The number 1 on `N` limbs.
pub(crate) fn one<const N: usize>() -> [u32; N] {
    let mut out = [0u32; N];
    if let Some(first) = out.first_mut() {
        *first = 1;
    }
    out
}

/// A big-endian number of at most `4 N` bytes (shorter ones are zero-extended).
pub(crate) fn from_be<const N: usize>(bytes: &[u8]) -> [u32; N] {
    let mut out = [0u32; N];
    for (limb, chunk) in out.iter_mut().zip(bytes.rchunks(4)) {
        *limb = chunk
            .iter()
            .fold(0u32, |acc, &byte| (acc << 8) | u32::from(byte));
    }
    out
}

pub(crate) fn from_le_bytes(bytes: &[u8; 32]) -> Limbs {
    let mut out = [0u32; 8];
    for (limb, chunk) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *limb = chunk
            .iter()
            .rev()
            .fold(0u32, |acc, &byte| (acc << 8) | u32::from(byte));
    }
    out
}

pub(crate) fn to_le_bytes(limbs: &Limbs) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, limb) in out.chunks_exact_mut(4).zip(limbs) {
        chunk.copy_from_slice(&limb.to_le_bytes());
    }
    out
}

/// `a < b`.
pub(crate) fn lt<const N: usize>(a: &[u32; N], b: &[u32; N]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

pub(crate) fn is_zero<const N: usize>(a: &[u32; N]) -> bool {
    a.iter().all(|&x| x == 0)
}

/// `a + b`, and the carry out.
pub(crate) fn add_raw<const N: usize>(a: &[u32; N], b: &[u32; N]) -> ([u32; N], bool) {
    let mut out = [0u32; N];
    let mut carry = 0u64;
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let s = u64::from(x) + u64::from(y) + carry;
        *o = s as u32;
        carry = s >> 32;
    }
    (out, carry != 0)
}

/// Ends a signed fast (Solinas) reduction modulo `p`: `w` holds signed word sums of a value
/// congruent to the result. Carries are propagated, and the carry out of the top word is folded
/// back in by `fold` (which adds `carry * 2^(32N) mod p` to the words) until none is left; the
/// result, then below `2^(32N) < 2p`, takes one subtraction at most.
#[inline(always)]
pub(crate) fn finish_signed_reduction<const N: usize>(
    mut w: [i64; N],
    p: &[u32; N],
    fold: impl Fn(&mut [i64; N], i64),
) -> [u32; N] {
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
        fold(&mut w, carry);
    }
    let limbs = w.map(|x| x as u32);
    if lt(&limbs, p) {
        limbs
    } else {
        sub_raw(&limbs, p).0
    }
}

/// `a - b`, and the borrow out.
pub(crate) fn sub_raw<const N: usize>(a: &[u32; N], b: &[u32; N]) -> ([u32; N], bool) {
    let mut out = [0u32; N];
    let mut borrow = 0i64;
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let d = i64::from(x) - i64::from(y) + borrow;
        *o = d as u32;
        borrow = d >> 32;
    }
    (out, borrow != 0)
}

/// `(a + b) mod m` for `a, b < m`.
pub(crate) fn add_mod<const N: usize>(a: &[u32; N], b: &[u32; N], m: &[u32; N]) -> [u32; N] {
    let (sum, carry) = add_raw(a, b);
    if carry || !lt(&sum, m) {
        sub_raw(&sum, m).0
    } else {
        sum
    }
}

/// `(a - b) mod m` for `a, b < m`.
pub(crate) fn sub_mod<const N: usize>(a: &[u32; N], b: &[u32; N], m: &[u32; N]) -> [u32; N] {
    let (diff, borrow) = sub_raw(a, b);
    if borrow {
        add_raw(&diff, m).0
    } else {
        diff
    }
}

/// The same number in another radix: `digits` of `from` bits each, least significant first,
/// regrouped into digits of `to` bits, least significant first (after the input, one last
/// digit with what is left, if anything is). Every digit must be below `2^from`; with both
/// widths at most 32, the accumulator never holds more than 63 bits.
pub(crate) fn regroup(
    digits: impl IntoIterator<Item = u64>,
    from: u32,
    to: u32,
) -> impl Iterator<Item = u64> {
    let mask = (1u64 << to) - 1;
    let mut digits = digits.into_iter();
    let (mut acc, mut held) = (0u64, 0u32);
    std::iter::from_fn(move || {
        while held < to {
            match digits.next() {
                Some(digit) => {
                    acc |= digit << held;
                    held += from;
                }
                None if held > 0 => {
                    held = 0;
                    return Some(acc);
                }
                None => return None,
            }
        }
        let out = acc & mask;
        acc >>= to;
        held -= to;
        Some(out)
    })
}

/// `-x^-1 mod 2^32` for odd `x` (Newton's iteration: each step doubles the correct low bits).
pub(crate) fn neg_inv_u32(x: u32) -> u32 {
    // x * x = 1 mod 8 for odd x: 3 correct bits to start.
    let mut inv = x;
    for _ in 0..4 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(x.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

/// Bits of the signed limbs of [`inv_mod`].
const DIVSTEP_BITS: u32 = 30;
const DIVSTEP_MASK: i64 = (1 << DIVSTEP_BITS) - 1;
/// Limbs of 30 bits for the widest modulus (P-521: 17 32-bit limbs, 544 bits), one spare.
const DIVSTEP_LIMBS: usize = 20;

/// A number as `len` 30-bit limbs, little-endian: all in `0..2^30` but the top one, which
/// carries the sign (`i64`, so that products with a step matrix's entries fit).
#[derive(Clone, Copy)]
struct Signed30 {
    limbs: [i64; DIVSTEP_LIMBS],
    len: usize,
}

impl Signed30 {
    fn from_limbs<const N: usize>(a: &[u32; N]) -> Signed30 {
        let mut out = Signed30 {
            limbs: [0; DIVSTEP_LIMBS],
            len: (32 * N).div_ceil(DIVSTEP_BITS as usize) + 1,
        };
        let digits = regroup(a.iter().map(|&x| u64::from(x)), 32, DIVSTEP_BITS);
        for (slot, digit) in out.limbs.iter_mut().zip(digits) {
            *slot = digit as i64;
        }
        out
    }

    /// The value as `N` 32-bit limbs; it must be in `0..2^(32 N)` (so every limb is too).
    fn into_limbs<const N: usize>(self) -> [u32; N] {
        let mut out = [0u32; N];
        let digits = regroup(self.used().iter().map(|&x| x as u64), DIVSTEP_BITS, 32);
        for (slot, digit) in out.iter_mut().zip(digits) {
            *slot = digit as u32;
        }
        out
    }

    fn used(&self) -> &[i64] {
        self.limbs.get(..self.len).unwrap_or(&[])
    }

    fn low(&self) -> i64 {
        self.limbs.first().copied().unwrap_or(0)
    }

    fn top(&self) -> i64 {
        self.used().last().copied().unwrap_or(0)
    }

    fn is_zero(&self) -> bool {
        self.used().iter().all(|&x| x == 0)
    }

    fn is_one(&self) -> bool {
        self.used()
            .split_first()
            .is_some_and(|(&low, rest)| low == 1 && rest.iter().all(|&x| x == 0))
    }

    fn is_minus_one(&self) -> bool {
        // -1: every lower limb 2^30 - 1, the top one -1.
        self.used()
            .split_last()
            .is_some_and(|(&top, rest)| top == -1 && rest.iter().all(|&x| x == DIVSTEP_MASK))
    }

    /// `(x a + y b + z m) / 2^30`, where the caller makes the sum divisible (`m` may be absent:
    /// `z = 0`). `|x| + |y| <= 2^30` and `z < 2^30` keep every partial sum within `i64`. `b`
    /// and `m` are at least as long as `a`, whose length the result has.
    fn combine(
        a: &Signed30,
        b: &Signed30,
        x: i64,
        y: i64,
        m: Option<(&Signed30, i64)>,
    ) -> Signed30 {
        let mut out = Signed30 {
            limbs: [0; DIVSTEP_LIMBS],
            len: a.len,
        };
        let mut carry = 0i64;
        let terms = a.used().iter().zip(b.used()).zip(out.limbs.iter_mut());
        for (i, ((&ai, &bi), slot)) in terms.enumerate() {
            let reduction = m.map_or(0, |(m, z)| z * m.limbs.get(i).copied().unwrap_or(0));
            let sum = carry + x * ai + y * bi + reduction;
            if i > 0 {
                *slot = sum & DIVSTEP_MASK;
            }
            carry = sum >> DIVSTEP_BITS;
        }
        // Shift down one limb: the lowest limb of the sum was zero.
        out.limbs.copy_within(1..a.len, 0);
        if let Some(top) = out.limbs.get_mut(a.len - 1) {
            *top = carry;
        }
        out
    }

    /// Whether the top limb only extends the sign (0 or -1), so that the limb below can hold it.
    fn can_shorten(&self) -> bool {
        self.len > 2 && matches!(self.top(), 0 | -1)
    }

    /// Drops the top limb, folded into the one below (see [`Self::can_shorten`]).
    fn shorten(&mut self) {
        let top = self.top();
        if let Some(next) = self.limbs.get_mut(self.len - 2) {
            *next += top << DIVSTEP_BITS;
        }
        if let Some(slot) = self.limbs.get_mut(self.len - 1) {
            *slot = 0;
        }
        self.len -= 1;
    }

    fn add(&self, other: &Signed30) -> Signed30 {
        self.add_scaled(other, 1)
    }

    fn sub(&self, other: &Signed30) -> Signed30 {
        self.add_scaled(other, -1)
    }

    fn add_scaled(&self, other: &Signed30, sign: i64) -> Signed30 {
        let mut out = *self;
        let mut carry = 0i64;
        let last = self.len - 1;
        for (i, (slot, &y)) in out.limbs.iter_mut().zip(other.used()).enumerate() {
            let sum = carry + *slot + sign * y;
            if i == last {
                *slot = sum;
            } else {
                *slot = sum & DIVSTEP_MASK;
                carry = sum >> DIVSTEP_BITS;
            }
        }
        out
    }

    fn negate(&self) -> Signed30 {
        let zero = Signed30 {
            limbs: [0; DIVSTEP_LIMBS],
            len: self.len,
        };
        zero.sub(self)
    }

    /// `self >= other` for normalized numbers of the same length.
    fn ge(&self, other: &Signed30) -> bool {
        for (x, y) in self.used().iter().rev().zip(other.used().iter().rev()) {
            if x != y {
                return x > y;
            }
        }
        true
    }

    /// Brings `self`, in `-k m..k m` for a small `k`, into `0..m`.
    fn reduce(mut self, m: &Signed30) -> Signed30 {
        while self.top() < 0 {
            self = self.add(m);
        }
        while self.ge(m) {
            self = self.sub(m);
        }
        self
    }
}

/// Thirty divsteps (Bernstein and Yang, "Fast constant-time gcd computation and modular
/// inversion", 2019) on the low 30 bits of `f` (odd) and `g`: the 2x2 matrix `(u v; q r)`,
/// entries scaled by `2^30`, that takes `(f, g)` to `(f', g') = (u f + v g, q f + r g) / 2^30`.
/// The steps depend only on those low bits, so the whole numbers follow with one pass each.
fn divsteps(delta: &mut i64, f: i64, g: i64) -> [i64; 4] {
    let (mut f, mut g) = (f, g);
    let (mut u, mut v, mut q, mut r) = (1i64, 0i64, 0i64, 1i64);
    // After i steps 2^i f_i = u f + v g and 2^i g_i = q f + r g, with |u| + |v| <= 2^i.
    let mut left = DIVSTEP_BITS;
    loop {
        // The steps for an even g, all at once: halve g (double the other row).
        let zeros = (g | (1 << left)).trailing_zeros().min(left);
        g >>= zeros;
        (u, v) = (u << zeros, v << zeros);
        *delta += i64::from(zeros);
        left -= zeros;
        if left == 0 {
            return [u, v, q, r];
        }
        // g is odd.
        if *delta > 0 {
            (f, g) = (g, (g - f) >> 1);
            (u, v, q, r) = (q << 1, r << 1, q - u, r - v);
            *delta = 1 - *delta;
        } else {
            g = (g + f) >> 1;
            (q, r) = (q + u, r + v);
            (u, v) = (u << 1, v << 1);
            *delta += 1;
        }
        left -= 1;
        if left == 0 {
            return [u, v, q, r];
        }
    }
}

/// `a^-1 mod m` for an odd prime `m` and `0 < a < m`, variable-time: Bernstein-Yang divsteps,
/// thirty at a time on one word, each batch then applied to the whole numbers as a 2x2 matrix
/// (a few dozen products), rather than a pass over the limbs per bit as in binary Euclid.
/// `None` for `a = 0`.
pub(crate) fn inv_mod<const N: usize>(a: &[u32; N], m: &[u32; N]) -> Option<[u32; N]> {
    if is_zero(a) || (32 * N).div_ceil(DIVSTEP_BITS as usize) + 1 > DIVSTEP_LIMBS {
        return None;
    }
    let modulus = Signed30::from_limbs(m);
    // -m^-1 mod 2^30: the multiple of m that clears a low limb.
    let m_neg_inv = i64::from(neg_inv_u32(modulus.low() as u32)) & DIVSTEP_MASK;
    // f = d a and g = e a (mod m) throughout; f ends at +-1, so a^-1 = +-d.
    let (mut f, mut g) = (modulus, Signed30::from_limbs(a));
    let zero = Signed30 {
        limbs: [0; DIVSTEP_LIMBS],
        len: f.len,
    };
    let (mut d, mut e) = (zero, zero);
    if let Some(first) = e.limbs.first_mut() {
        *first = 1;
    }
    let mut delta = 1i64;
    // Bernstein and Yang bound the divsteps to g = 0 by (49 d + 57) / 17 for d-bit inputs:
    // 1,571 for 544 bits, 53 batches.
    for _ in 0..64 {
        if g.is_zero() {
            break;
        }
        let [u, v, q, r] = divsteps(&mut delta, f.low(), g.low());
        (f, g) = (
            Signed30::combine(&f, &g, u, v, None),
            Signed30::combine(&f, &g, q, r, None),
        );
        // Neither f nor g ever grows (each step keeps one and halves a sum or difference of
        // the two), and they shrink by ~10 bits a batch: drop the limbs both no longer need.
        while f.can_shorten() && g.can_shorten() {
            f.shorten();
            g.shorten();
        }
        // (u d + v e) / 2^30 mod m: add the multiple of m that clears the low 30 bits.
        let clear = |x: i64, y: i64| -> Signed30 {
            let low = (x * d.low() + y * e.low()) & DIVSTEP_MASK;
            let k = (low * m_neg_inv) & DIVSTEP_MASK;
            Signed30::combine(&d, &e, x, y, Some((&modulus, k))).reduce(&modulus)
        };
        (d, e) = (clear(u, v), clear(q, r));
    }
    if !g.is_zero() {
        return None;
    }
    let inverse = if f.is_one() {
        d
    } else if f.is_minus_one() {
        d.negate().reduce(&modulus)
    } else {
        // gcd(a, m) != 1: impossible for a prime m and 0 < a < m.
        return None;
    };
    Some(inverse.into_limbs())
}

/// `a b / 2^(32 N) mod m` (Montgomery multiplication, CIOS) for an odd `m`, `m0inv =
/// -m^-1 mod 2^32` and `a b < m 2^(32 N)` (so `a, b < m`, or any `a` with `b < m`).
pub(crate) fn mont_mul<const N: usize>(
    a: &[u32; N],
    b: &[u32; N],
    m: &[u32; N],
    m0inv: u32,
) -> [u32; N] {
    // t is N words and one more, `t_n` (and, within a round, `t_n1`).
    let mut t = [0u32; N];
    let mut t_n = 0u32;
    for &ai in a {
        let ai = u64::from(ai);
        let mut carry = 0u64;
        for (tj, &bj) in t.iter_mut().zip(b) {
            let s = u64::from(*tj) + ai * u64::from(bj) + carry;
            *tj = s as u32;
            carry = s >> 32;
        }
        let s = u64::from(t_n) + carry;
        t_n = s as u32;
        let t_n1 = (s >> 32) as u32;
        // Add q m with q chosen so that the low word becomes zero, then drop that word.
        let q = u64::from(t.first().map_or(0, |&t0| t0.wrapping_mul(m0inv)));
        let mut carry = 0u64;
        for (tj, &mj) in t.iter_mut().zip(m) {
            let s = u64::from(*tj) + q * u64::from(mj) + carry;
            *tj = s as u32;
            carry = s >> 32;
        }
        let s = u64::from(t_n) + carry;
        t.rotate_left(1);
        if let Some(last) = t.last_mut() {
            *last = s as u32;
        }
        t_n = t_n1 + (s >> 32) as u32;
    }
    // t < 2m: one subtraction at most.
    if t_n != 0 || !lt(&t, m) {
        t = sub_raw(&t, m).0;
    }
    t
}

/// `a b mod m` for `a, b < m`, with `rr = 2^(64 N) mod m`: two Montgomery multiplications.
pub(crate) fn mul_mod<const N: usize>(
    a: &[u32; N],
    b: &[u32; N],
    m: &[u32; N],
    m0inv: u32,
    rr: &[u32; N],
) -> [u32; N] {
    mont_mul(&mont_mul(a, b, m, m0inv), rr, m, m0inv)
}

/// Column `K` of the product `a b` of two `N`-limb numbers (limbs widened to `u64`): the low
/// and high halves of the products `a_i b_(K - i)`, summed apart. Inlined with constant `N` and
/// `K`, its loop unrolls to straight-line code.
#[inline(always)]
pub(crate) fn product_column<const N: usize, const K: usize>(
    a: &[u64; N],
    b: &[u64; N],
) -> (u64, u64) {
    let (mut lo, mut hi) = (0u64, 0u64);
    for i in (K + 1).saturating_sub(N)..N.min(K + 1) {
        let p = a.get(i).copied().unwrap_or(0) * b.get(K - i).copied().unwrap_or(0);
        lo += p & 0xffff_ffff;
        hi += p >> 32;
    }
    (lo, hi)
}

/// Column `K` of the square of an `N`-limb number: the cross products `a_i a_(K - i)` with
/// `i < K - i` doubled, plus `a_(K/2)^2` when `K` is even.
#[inline(always)]
pub(crate) fn square_column<const N: usize, const K: usize>(a: &[u64; N]) -> (u64, u64) {
    let (mut lo, mut hi) = (0u64, 0u64);
    for i in (K + 1).saturating_sub(N)..K.div_ceil(2) {
        let p = a.get(i).copied().unwrap_or(0) * a.get(K - i).copied().unwrap_or(0);
        lo += p & 0xffff_ffff;
        hi += p >> 32;
    }
    let square = if K.is_multiple_of(2) {
        a.get(K / 2).map_or(0, |&x| x * x)
    } else {
        0
    };
    (2 * lo + (square & 0xffff_ffff), 2 * hi + (square >> 32))
}

/// The number `sum (lo_c + hi_(c - 1)) 2^(32 c)` of column sums (each below `2^32` times the
/// number of limbs) as `W` words.
#[inline(always)]
pub(crate) fn carry_column_sums<const W: usize>(columns: [(u64, u64); W]) -> [u32; W] {
    let mut words = [0u32; W];
    let (mut carry, mut prev_hi) = (0u64, 0u64);
    for (w, (lo, hi)) in words.iter_mut().zip(columns) {
        let s = lo + prev_hi + carry;
        *w = s as u32;
        carry = s >> 32;
        prev_hi = hi;
    }
    words
}

/// The `2 N`-word product of two `N`-limb numbers, written out column by column (the list
/// names the columns, `0 ..= 2 N - 2`) so that every product and sum is a local, as `mul_wide`
/// is: `mul_wide_columns!(N, a, b, [0, 1, ..., 2 N - 2])`.
macro_rules! mul_wide_columns {
    ($n:literal, $a:expr, $b:expr, [$($k:literal),* $(,)?]) => {{
        let (a, b) = ($a.map(u64::from), $b.map(u64::from));
        $crate::limbs::carry_column_sums([
            $($crate::limbs::product_column::<$n, $k>(&a, &b),)* (0, 0)
        ])
    }};
}
pub(crate) use mul_wide_columns;

/// The `2 N`-word square of an `N`-limb number, as [`mul_wide_columns`]:
/// `square_wide_columns!(N, a, [0, 1, ..., 2 N - 2])`.
macro_rules! square_wide_columns {
    ($n:literal, $a:expr, [$($k:literal),* $(,)?]) => {{
        let a = $a.map(u64::from);
        $crate::limbs::carry_column_sums([
            $($crate::limbs::square_column::<$n, $k>(&a),)* (0, 0)
        ])
    }};
}
pub(crate) use square_wide_columns;

/// The `W = 2 N`-word product of `N`-limb numbers, schoolbook, a row of `a` at a time with one
/// running carry: the compact form, for P-521 (see `ecdsa_vt::mul_wide_17`).
#[inline(never)]
pub(crate) fn mul_wide_rows<const N: usize, const W: usize>(
    a: &[u32; N],
    b: &[u32; N],
) -> [u32; W] {
    let mut out = [0u32; W];
    for (i, &ai) in a.iter().enumerate() {
        let row = out.get_mut(i..).unwrap_or_default();
        let mut carry = 0u64;
        for (o, &bj) in row.iter_mut().zip(b) {
            // At most (2^32 - 1)^2 + 2 (2^32 - 1) = 2^64 - 1: no overflow.
            let t = u64::from(ai) * u64::from(bj) + u64::from(*o) + carry;
            *o = t as u32;
            carry = t >> 32;
        }
        if let Some(top) = row.get_mut(N) {
            *top = carry as u32;
        }
    }
    out
}

/// The low and high halves of a sum of 64-bit products, summed apart (at most 8 terms: far
/// below 2^64 each), so that no carry chain runs through the products.
#[inline(always)]
fn column(products: &[u64]) -> (u64, u64) {
    products.iter().fold((0, 0), |(lo, hi), &p| {
        (lo + (p & 0xffff_ffff), hi + (p >> 32))
    })
}

/// `2 (lo, hi) + square`, for the columns of a square.
#[inline(always)]
fn doubled_plus((lo, hi): (u64, u64), square: u64) -> (u64, u64) {
    (2 * lo + (square & 0xffff_ffff), 2 * hi + (square >> 32))
}

/// The 512-bit number `sum (lo[c] + hi[c - 1]) 2^(32 c)` as sixteen words.
#[inline(always)]
fn carry_columns(lo: [u64; 16], hi: [u64; 16]) -> [u32; 16] {
    let mut words = [0u32; 16];
    let mut carry = 0u64;
    let mut prev_hi = 0u64;
    for ((w, l), h) in words.iter_mut().zip(lo).zip(hi) {
        // Each column is below 32 * 2^32, so these sums stay far below 2^64.
        let s = l + prev_hi + carry;
        *w = s as u32;
        carry = s >> 32;
        prev_hi = h;
    }
    words
}

/// The 512-bit product `a b`, as sixteen words: product scanning, written out column by
/// column so that every intermediate value is a local (a wasm local, not linear memory).
pub(crate) fn mul_wide(a: &Limbs, b: &Limbs) -> [u32; 16] {
    let [a0, a1, a2, a3, a4, a5, a6, a7] = a.map(u64::from);
    let [b0, b1, b2, b3, b4, b5, b6, b7] = b.map(u64::from);
    let (l0, h0) = column(&[a0 * b0]);
    let (l1, h1) = column(&[a0 * b1, a1 * b0]);
    let (l2, h2) = column(&[a0 * b2, a1 * b1, a2 * b0]);
    let (l3, h3) = column(&[a0 * b3, a1 * b2, a2 * b1, a3 * b0]);
    let (l4, h4) = column(&[a0 * b4, a1 * b3, a2 * b2, a3 * b1, a4 * b0]);
    let (l5, h5) = column(&[a0 * b5, a1 * b4, a2 * b3, a3 * b2, a4 * b1, a5 * b0]);
    let (l6, h6) = column(&[
        a0 * b6,
        a1 * b5,
        a2 * b4,
        a3 * b3,
        a4 * b2,
        a5 * b1,
        a6 * b0,
    ]);
    let (l7, h7) = column(&[
        a0 * b7,
        a1 * b6,
        a2 * b5,
        a3 * b4,
        a4 * b3,
        a5 * b2,
        a6 * b1,
        a7 * b0,
    ]);
    let (l8, h8) = column(&[
        a1 * b7,
        a2 * b6,
        a3 * b5,
        a4 * b4,
        a5 * b3,
        a6 * b2,
        a7 * b1,
    ]);
    let (l9, h9) = column(&[a2 * b7, a3 * b6, a4 * b5, a5 * b4, a6 * b3, a7 * b2]);
    let (l10, h10) = column(&[a3 * b7, a4 * b6, a5 * b5, a6 * b4, a7 * b3]);
    let (l11, h11) = column(&[a4 * b7, a5 * b6, a6 * b5, a7 * b4]);
    let (l12, h12) = column(&[a5 * b7, a6 * b6, a7 * b5]);
    let (l13, h13) = column(&[a6 * b7, a7 * b6]);
    let (l14, h14) = column(&[a7 * b7]);
    carry_columns(
        [
            l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, 0,
        ],
        [
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, 0,
        ],
    )
}

/// The 512-bit square `a^2`: 36 products rather than 64.
pub(crate) fn square_wide(a: &Limbs) -> [u32; 16] {
    let [a0, a1, a2, a3, a4, a5, a6, a7] = a.map(u64::from);
    let (l0, h0) = doubled_plus((0, 0), a0 * a0);
    let (l1, h1) = doubled_plus(column(&[a0 * a1]), 0);
    let (l2, h2) = doubled_plus(column(&[a0 * a2]), a1 * a1);
    let (l3, h3) = doubled_plus(column(&[a0 * a3, a1 * a2]), 0);
    let (l4, h4) = doubled_plus(column(&[a0 * a4, a1 * a3]), a2 * a2);
    let (l5, h5) = doubled_plus(column(&[a0 * a5, a1 * a4, a2 * a3]), 0);
    let (l6, h6) = doubled_plus(column(&[a0 * a6, a1 * a5, a2 * a4]), a3 * a3);
    let (l7, h7) = doubled_plus(column(&[a0 * a7, a1 * a6, a2 * a5, a3 * a4]), 0);
    let (l8, h8) = doubled_plus(column(&[a1 * a7, a2 * a6, a3 * a5]), a4 * a4);
    let (l9, h9) = doubled_plus(column(&[a2 * a7, a3 * a6, a4 * a5]), 0);
    let (l10, h10) = doubled_plus(column(&[a3 * a7, a4 * a6]), a5 * a5);
    let (l11, h11) = doubled_plus(column(&[a4 * a7, a5 * a6]), 0);
    let (l12, h12) = doubled_plus(column(&[a5 * a7]), a6 * a6);
    let (l13, h13) = doubled_plus(column(&[a6 * a7]), 0);
    let (l14, h14) = doubled_plus((0, 0), a7 * a7);
    carry_columns(
        [
            l0, l1, l2, l3, l4, l5, l6, l7, l8, l9, l10, l11, l12, l13, l14, 0,
        ],
        [
            h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, 0,
        ],
    )
}

/// The width-`w` non-adjacent form of a 256-bit number: 257 signed digits, each zero or odd
/// with absolute value below `2^(w-1)`, and `k = sum d_i 2^i`.
pub(crate) fn wnaf(k: &Limbs, window: u32) -> [i8; 257] {
    let mut digits = [0i8; 257];
    wnaf_into(k, window, &mut digits);
    digits
}

/// The width-`w` non-adjacent form of an `N`-limb number into `digits` (which should hold
/// `32 N + 1` of them; digits past its end are dropped): each zero or odd with absolute value
/// below `2^(w-1)`, and `k = sum d_i 2^i`.
pub(crate) fn wnaf_into<const N: usize>(k: &[u32; N], window: u32, digits: &mut [i8]) {
    digits.fill(0);
    let width = 1u64 << window;
    // The 64 bits of k from bit `pos` up, zeros past the top.
    let bits_from = |pos: usize| {
        let limb = |i: usize| u64::from(k.get(i).copied().unwrap_or(0));
        (limb(pos / 32) | limb(pos / 32 + 1) << 32) >> (pos % 32)
    };
    // Reads the bits rather than subtracting each digit from k and shifting it: `carry` is 1
    // after a negative digit, whose subtraction added 2^w at its position.
    let (mut pos, mut carry) = (0usize, 0u64);
    while pos < digits.len().min(32 * N + 1) {
        let value = carry + (bits_from(pos) & (width - 1));
        if value & 1 == 0 {
            // The carry, if any, runs through these zeros unchanged.
            pos += (value.trailing_zeros() as usize).min(window as usize);
            continue;
        }
        let digit = if value < width / 2 {
            carry = 0;
            value as i64
        } else {
            carry = 1;
            value as i64 - width as i64
        };
        if let Some(slot) = digits.get_mut(pos) {
            *slot = digit as i8;
        }
        pos += window as usize;
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
    fn regroup_changes_the_radix_and_keeps_the_value() {
        let value = 0x0123_4567_89ab_cdefu64;
        let bytes: Vec<u64> = value.to_le_bytes().iter().map(|&b| u64::from(b)).collect();
        let limbs: Vec<u64> = regroup(bytes.iter().copied(), 8, 27).collect();
        // 64 bits: two whole 27-bit digits, then the 10 bits left.
        let mask = (1 << 27) - 1;
        assert_eq!(limbs, [value & mask, (value >> 27) & mask, value >> 54]);
        let back: Vec<u64> = regroup(limbs, 27, 8).collect();
        assert_eq!(back[..8], bytes[..]);
        assert!(back[8..].iter().all(|&d| d == 0), "{back:?}");
        assert_eq!(regroup(std::iter::empty(), 32, 30).count(), 0);
    }
}
