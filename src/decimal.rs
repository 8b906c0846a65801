//! Decimal numbers written and read without `core::fmt` and `str::parse`.
//!
//! Some text is made on every request: audit timestamps, rate-limit counters (stored as text in
//! shared data) and their response headers. In wasm, `format!` costs more than the digits
//! (a formatter, padding, a virtual `write_str` per piece), and parsing a `u128` costs a
//! software 128-bit multiplication per digit. Here a number is at most two 64-bit halves.

/// `10^19`, the largest power of ten in a `u64`.
const E19: u64 = 10_000_000_000_000_000_000;

/// "00", "01", ... "99": two digits a step.
// Evaluated when compiling: an index out of range fails the build, not a request.
#[allow(clippy::indexing_slicing)]
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

/// Writes the last `pairs` digit pairs of `chunk` before `digits[*start]`; returns what is left.
fn put_pairs(digits: &mut [u8; 20], start: &mut usize, mut chunk: u32, pairs: usize) -> u32 {
    for _ in 0..pairs {
        let pair = (chunk % 100) as usize;
        chunk /= 100;
        *start = start.saturating_sub(2);
        let (to, from) = (
            digits.get_mut(*start..*start + 2),
            DIGIT_PAIRS.get(2 * pair..2 * pair + 2),
        );
        if let (Some(to), Some(from)) = (to, from) {
            to.copy_from_slice(from);
        }
    }
    chunk
}

/// Appends `value` in decimal, with leading zeros up to `min_width` digits.
pub fn push_u64(out: &mut String, value: u64, min_width: usize) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    // Eight digits per 64-bit division, then 32-bit divisions, which a constant divisor turns
    // into a multiplication (a 64-bit one stays a division in wasm); two digits a step.
    let mut rest = value;
    while rest >= 100_000_000 {
        let chunk = (rest % 100_000_000) as u32;
        rest /= 100_000_000;
        put_pairs(&mut digits, &mut start, chunk, 4);
    }
    let mut small = rest as u32;
    while small >= 10 {
        small = put_pairs(&mut digits, &mut start, small, 1);
    }
    if small > 0 || start == digits.len() {
        start = start.saturating_sub(1);
        if let Some(slot) = digits.get_mut(start) {
            *slot = b'0' + small as u8;
        }
    }
    let written = digits.get(start..).unwrap_or_default();
    out.extend(std::iter::repeat_n(
        '0',
        min_width.saturating_sub(written.len()),
    ));
    out.push_str(std::str::from_utf8(written).unwrap_or_default());
}

/// Appends `value` in decimal.
pub fn push_u128(out: &mut String, value: u128) {
    match u64::try_from(value) {
        Ok(small) => push_u64(out, small, 1),
        Err(_) => {
            // Above u64::MAX: below 10^39, so the high part has at most 20 digits.
            let (high, low) = (value / u128::from(E19), value % u128::from(E19));
            push_u128(out, high);
            push_u64(out, low as u64, 19);
        }
    }
}

/// Reads plain ASCII digits (no sign, no spaces; `str::parse` would take a leading `+`) of a
/// number below 2^128; `None` for anything else, the empty string included.
pub fn parse_u128(text: &str) -> Option<u128> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Nineteen digits at a time in a u64, then one 128-bit step per chunk; only a number of 39
    // digits or more (2^128 has 39) can overflow, and only it takes the checked arithmetic.
    let bytes = text.as_bytes();
    let first = bytes.len() % 19;
    let rest = bytes.get(first..).unwrap_or_default().chunks(19);
    let mut value = 0u128;
    for chunk in bytes.get(..first).into_iter().chain(rest) {
        let part = chunk
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        let scale = u128::from(POWERS_OF_TEN.get(chunk.len()).copied().unwrap_or(E19));
        value = if bytes.len() < 39 {
            value * scale + u128::from(part)
        } else {
            value.checked_mul(scale)?.checked_add(u128::from(part))?
        };
    }
    Some(value)
}

/// `10^k` for `k` in `0..=19`.
const POWERS_OF_TEN: [u64; 20] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
    100_000_000_000,
    1_000_000_000_000,
    10_000_000_000_000,
    100_000_000_000_000,
    1_000_000_000_000_000,
    10_000_000_000_000_000,
    100_000_000_000_000_000,
    1_000_000_000_000_000_000,
    10_000_000_000_000_000_000,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn text_u64(value: u64, width: usize) -> String {
        let mut out = String::new();
        push_u64(&mut out, value, width);
        out
    }

    fn text_u128(value: u128) -> String {
        let mut out = String::new();
        push_u128(&mut out, value);
        out
    }

    #[test]
    fn numbers_are_written_as_format_writes_them() {
        let mut samples: Vec<u128> = vec![0, 1, 9, 10, 99, 100];
        for k in 0..128 {
            let p = 1u128 << k;
            samples.extend([p - 1, p, p + 1]);
        }
        for k in 0..39 {
            let p = 10u128.pow(k);
            samples.extend([p - 1, p, p + 1]);
        }
        samples.extend([
            u128::MAX,
            u128::from(u64::MAX) + 1,
            u128::from(E19) * u128::from(E19),
        ]);
        for v in samples {
            assert_eq!(text_u128(v), format!("{v}"));
            if let Ok(small) = u64::try_from(v) {
                assert_eq!(text_u64(small, 1), format!("{small}"));
                assert_eq!(text_u64(small, 4), format!("{small:04}"));
                assert_eq!(text_u64(small, 25), format!("{small:025}"));
            }
            assert_eq!(parse_u128(&format!("{v}")), Some(v));
            assert_eq!(parse_u128(&format!("000{v}")), Some(v));
        }
        assert_eq!(text_u64(0, 0), "0");
    }

    #[test]
    fn only_plain_digits_below_2_128_are_read() {
        for bad in ["", "+1", "-1", " 1", "1 ", "1.0", "1e3", "0x10", "١"] {
            assert_eq!(parse_u128(bad), None, "{bad:?}");
        }
        // 2^128 and beyond.
        assert_eq!(parse_u128("340282366920938463463374607431768211456"), None);
        assert_eq!(parse_u128(&"9".repeat(60)), None);
        assert_eq!(parse_u128(&format!("{}1", "0".repeat(70))), Some(1));
    }
}
