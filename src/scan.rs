//! Scans of whole byte strings, shaped for wasm SIMD.
//!
//! Every request checks that its headers are ASCII and looks for a comma in its token's header:
//! 0.5-2 KB each. These scans do not stop early, and in wasm32 with SIMD they read 64 bytes a
//! step as four 16-byte vectors, with the last bytes read as the 16 that end the input (again,
//! for some: an OR does not mind). Under V8 the ASCII check takes a third fewer instructions
//! that way than as a byte fold, which the compiler vectorizes 16 bytes a step with a byte loop
//! for the rest (measured in the module, 0.9 KB of headers). Elsewhere, and for inputs under 16
//! bytes, the byte folds are the answer.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd {
    use core::arch::wasm32::{v128, v128_load, v128_or};

    /// Sixteen bytes as one vector: one load, also where the build optimizes for size (there,
    /// `u8x16` of sixteen bytes stays sixteen lane inserts).
    #[inline(always)]
    fn lanes(c: &[u8; 16]) -> v128 {
        // SAFETY: the pointer comes from a `&[u8; 16]`, so 16 bytes are readable; `v128_load`
        // has no alignment requirement.
        unsafe { v128_load(c.as_ptr().cast::<v128>()) }
    }

    /// ORs `lane` of the vectors of `bytes`; `None` for an input shorter than one vector.
    ///
    /// Written out with indices rather than `chunks_exact`, so that it stays one tight loop in a
    /// build optimized for size, which neither inlines the iterators nor unrolls loops.
    #[inline(always)]
    pub fn fold(bytes: &[u8], lane: impl Fn(v128) -> v128) -> Option<v128> {
        let vector = |at: usize| bytes.get(at..at + 16).and_then(|part| part.first_chunk());
        let last = lane(lanes(bytes.last_chunk()?));
        let (mut a, mut b, mut c, mut d) = (last, last, last, last);
        let mut at = 0;
        while let (Some(w), Some(x), Some(y), Some(z)) = (
            vector(at),
            vector(at + 16),
            vector(at + 32),
            vector(at + 48),
        ) {
            a = v128_or(a, lane(lanes(w)));
            b = v128_or(b, lane(lanes(x)));
            c = v128_or(c, lane(lanes(y)));
            d = v128_or(d, lane(lanes(z)));
            at += 64;
        }
        while let Some(w) = vector(at) {
            a = v128_or(a, lane(lanes(w)));
            at += 16;
        }
        Some(v128_or(v128_or(a, b), v128_or(c, d)))
    }
}

/// Whether every byte is ASCII.
pub fn is_ascii(bytes: &[u8]) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if let Some(seen) = simd::fold(bytes, |x| x) {
        return core::arch::wasm32::u8x16_bitmask(seen) == 0;
    }
    bytes.iter().fold(0, |seen, &x| seen | x) < 0x80
}

/// Whether `byte` occurs.
pub fn has_byte(bytes: &[u8], byte: u8) -> bool {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        use core::arch::wasm32::{u8x16_eq, u8x16_splat, v128_any_true};
        let wanted = u8x16_splat(byte);
        if let Some(hits) = simd::fold(bytes, |x| u8x16_eq(x, wanted)) {
            return v128_any_true(hits);
        }
    }
    bytes.iter().fold(false, |seen, &x| seen | (x == byte))
}

/// Whether `a` and `b` are the same bytes, ASCII letters compared without case.
///
/// A loop of its own rather than `<[u8]>::eq_ignore_ascii_case`, whose iterator adapters a build
/// optimized for size calls out of line for every byte: this runs on every header name of
/// every request.
#[inline(always)]
pub fn same_ignoring_ascii_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    // Written out: a size build calls even `u8::eq_ignore_ascii_case` out of line.
    // (`c - 'A' < 26` is `c` in 'A'..='Z'.)
    let lower = |c: u8| {
        if c.wrapping_sub(b'A') < 26 {
            c | 0x20
        } else {
            c
        }
    };
    let mut at = 0;
    while let (Some(&x), Some(&y)) = (a.get(at), b.get(at)) {
        if lower(x) != lower(y) {
            return false;
        }
        at += 1;
    }
    true
}

/// `text` without the spaces (only U+0020) it starts and ends with.
#[inline(always)]
pub fn trim_spaces(text: &str) -> &str {
    let bytes = text.as_bytes();
    let (mut start, mut end) = (0, bytes.len());
    while bytes.get(start) == Some(&b' ') {
        start += 1;
    }
    while end > start && bytes.get(end - 1) == Some(&b' ') {
        end -= 1;
    }
    // Both ends sit next to an ASCII space or at the text's ends: char boundaries.
    text.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_byte_of_every_length_around_the_steps_counts() {
        for len in 0..200 {
            let base: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(is_ascii(&base));
            assert!(!has_byte(&base, b','));
            for at in 0..len {
                let mut other = base.clone();
                other[at] = 0x80;
                assert!(!is_ascii(&other), "{len} {at}");
                other[at] = b',';
                assert!(has_byte(&other, b','), "{len} {at}");
            }
        }
    }

    proptest! {
        #[test]
        fn scans_agree_with_the_plain_ones(
            a in proptest::collection::vec(any::<u8>(), 0..300),
            byte in any::<u8>(),
        ) {
            prop_assert_eq!(is_ascii(&a), a.is_ascii());
            prop_assert_eq!(has_byte(&a, byte), a.contains(&byte));
        }

        #[test]
        fn case_blind_comparison_agrees_with_the_standard_one(
            a in "[a-zA-Z@`\\[{ -]{0,12}",
            b in "[a-zA-Z@`\\[{ -]{0,12}",
        ) {
            prop_assert_eq!(
                same_ignoring_ascii_case(a.as_bytes(), b.as_bytes()),
                a.eq_ignore_ascii_case(&b)
            );
            prop_assert!(same_ignoring_ascii_case(a.as_bytes(), a.to_uppercase().as_bytes()));
        }

        #[test]
        fn trimming_spaces_agrees_with_the_standard_one(text in "[ a\\t\u{e9}]{0,12}") {
            prop_assert_eq!(trim_spaces(&text), text.trim_matches(' '));
        }
    }
}
