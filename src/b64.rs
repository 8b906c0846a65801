//! Strict base64url (RFC 7515 section 2): no padding, no whitespace, nothing outside the URL-safe
//! alphabet, and no non-zero trailing bits, so that one token has exactly one encoding; and the
//! padded standard alphabet for HTTP Basic credentials (RFC 7617).
//!
//! Written out rather than taken from the `base64` crate, whose general-purpose engine was ~8 KB
//! of the module for what is a table lookup here: these run on the cold path only (parsing a new
//! token, importing a JWK, building an introspection call). The property tests compare both
//! directions with the crate.

const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Marks a byte outside the base64url alphabet in [`URL_SAFE_VALUES`]: above every 6-bit value,
/// so that one OR over a group's values says whether any was outside.
const INVALID: u8 = 0x40;

/// Each ASCII byte's 6-bit value in base64url, or [`INVALID`] (other bytes are not in the
/// table, and invalid too).
// Evaluated at compile time: an index out of bounds would not compile.
#[allow(clippy::indexing_slicing)]
const URL_SAFE_VALUES: [u8; 128] = {
    let mut table = [INVALID; 128];
    let mut value = 0;
    while value < 64 {
        table[URL_SAFE[value] as usize] = value as u8;
        value += 1;
    }
    table
};

/// The 6-bit value of a base64url character, or [`INVALID`].
#[inline(always)]
fn url_safe_value(c: u8) -> u32 {
    u32::from(
        URL_SAFE_VALUES
            .get(usize::from(c))
            .copied()
            .unwrap_or(INVALID),
    )
}

/// Decodes strict unpadded base64url.
///
/// Written with a table, indices and a buffer sized up front, so that it stays one tight loop
/// in a build optimized for size (a signature, a payload and a header are decoded for every
/// token verified: with per-byte `push` and `chunks` it ran ~60 instructions a character, this
/// ~11).
pub fn decode(input: &str) -> Result<Vec<u8>, String> {
    let text = input.as_bytes();
    // A last group of one character carries 6 bits: not a byte.
    let (whole, rest) = (text.len() / 4, text.len() % 4);
    if rest == 1 {
        return Err("bad base64url: invalid length".to_string());
    }
    // The last 0, 2 or 3 characters make 0, 1 or 2 bytes.
    let tail_bytes = rest.saturating_sub(1);
    let mut out = vec![0u8; whole * 3 + tail_bytes];
    let (mut at, mut to) = (0, 0);
    while let Some(&[a, b, c, d]) = text.get(at..at + 4).and_then(|g| g.first_chunk::<4>()) {
        let (a, b, c, d) = (
            url_safe_value(a),
            url_safe_value(b),
            url_safe_value(c),
            url_safe_value(d),
        );
        if (a | b | c | d) & u32::from(INVALID) != 0 {
            return Err(invalid_symbol(text, at));
        }
        let bits = a << 18 | b << 12 | c << 6 | d;
        if let Some(bytes) = out
            .get_mut(to..to + 3)
            .and_then(|o| o.first_chunk_mut::<3>())
        {
            *bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        }
        at += 4;
        to += 3;
    }
    // The last 2 or 3 characters: 12 or 18 bits, of which whole bytes are 1 or 2, and the 4 or 2
    // bits left over must be zero.
    let tail = text.get(at..).unwrap_or_default();
    let bits = tail
        .iter()
        .fold(0, |bits, &c| bits << 6 | url_safe_value(c));
    if tail
        .iter()
        .any(|&c| url_safe_value(c) & u32::from(INVALID) != 0)
    {
        return Err(invalid_symbol(text, at));
    }
    let spare = 2 * (4 - rest as u32) % 8;
    if bits & ((1 << spare) - 1) != 0 {
        return Err("bad base64url: non-zero trailing bits".to_string());
    }
    let bits = bits >> spare;
    for (k, byte) in out.get_mut(to..).unwrap_or_default().iter_mut().enumerate() {
        *byte = (bits >> (8 * (tail_bytes - 1 - k))) as u8;
    }
    Ok(out)
}

/// The error for the first byte from `from` on that is outside the alphabet.
fn invalid_symbol(text: &[u8], from: usize) -> String {
    let mut offset = from;
    while let Some(&c) = text.get(offset) {
        if url_safe_value(c) & u32::from(INVALID) != 0 {
            return format!("bad base64url: invalid symbol {c} at offset {offset}");
        }
        offset += 1;
    }
    "bad base64url: invalid symbol".to_string()
}

/// Encodes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    encode_with(bytes, URL_SAFE, false)
}

/// Encodes as padded standard base64 (`+`, `/` and `=`), as HTTP Basic credentials are.
pub fn encode_standard(bytes: &[u8]) -> String {
    encode_with(bytes, STANDARD, true)
}

fn encode_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let bits =
            group.iter().fold(0u32, |bits, &b| bits << 8 | u32::from(b)) << (8 * (3 - group.len()));
        // 2, 3 or 4 characters for 1, 2 or 3 bytes.
        for k in 0..=group.len() {
            let index = (bits >> (18 - 6 * k)) & 63;
            out.push(char::from(
                alphabet.get(index as usize).copied().unwrap_or(b'A'),
            ));
        }
        if pad {
            for _ in group.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD as CRATE_STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_refuses_non_canonical_forms() {
        assert_eq!(decode(&encode(b"tollgate")).unwrap(), b"tollgate");
        assert!(decode("dG9sbGdhdGU=").is_err(), "padding");
        assert!(decode("dG9s bGdh").is_err(), "whitespace");
        assert!(decode("dG9s+GdhdGU").is_err(), "standard alphabet");
        // "QR" decodes to one byte; "QQ" is its canonical form, "QR" has trailing bits set.
        assert!(decode("QQ").is_ok());
        assert!(decode("QR").is_err(), "non-zero trailing bits");
        assert!(decode("QUJD_").is_err(), "one character left over");
        assert_eq!(decode("").unwrap(), b"");
        assert_eq!(
            decode("dG9s\u{e9}").unwrap_err(),
            "bad base64url: invalid symbol 195 at offset 4"
        );
        // In a whole group, the first of two.
        assert_eq!(
            decode("dG9sbG*h+GU").unwrap_err(),
            "bad base64url: invalid symbol 42 at offset 6"
        );
        assert_eq!(encode_standard(b"gateway:s3cret"), "Z2F0ZXdheTpzM2NyZXQ=");
        assert_eq!(encode_standard(&[0xfb, 0xff]), "+/8=");
    }

    /// Text near base64url: its alphabet, the standard one's two, padding, space and a
    /// non-ASCII character, of every length.
    fn base64ish() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            8 => proptest::char::ranges(vec!['A'..='Z', 'a'..='z', '0'..='9'].into()),
            1 => prop::sample::select(vec!['-', '_', '+', '/', '=', ' ', 'é']),
        ];
        proptest::collection::vec(c, 0..40).prop_map(|chars| chars.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: if cfg!(target_arch = "wasm32") { 256 } else { 2048 },
            ..ProptestConfig::default()
        })]

        #[test]
        fn encodes_as_the_base64_crate(bytes in proptest::collection::vec(any::<u8>(), 0..70)) {
            prop_assert_eq!(encode(&bytes), URL_SAFE_NO_PAD.encode(&bytes));
            prop_assert_eq!(encode_standard(&bytes), CRATE_STANDARD.encode(&bytes));
            prop_assert_eq!(decode(&encode(&bytes)), Ok(bytes));
        }

        #[test]
        fn decodes_and_refuses_as_the_base64_crate(text in base64ish()) {
            prop_assert_eq!(decode(&text).ok(), URL_SAFE_NO_PAD.decode(&text).ok(), "{:?}", text);
        }

        #[test]
        fn one_changed_character_is_refused_or_read_differently(
            bytes in proptest::collection::vec(any::<u8>(), 1..40),
            at in any::<prop::sample::Index>(),
            with in prop::sample::select(URL_SAFE.to_vec()),
        ) {
            let mut text = encode(&bytes).into_bytes();
            let i = at.index(text.len());
            prop_assume!(text[i] != with);
            text[i] = with;
            let text = String::from_utf8(text).unwrap();
            prop_assert_ne!(decode(&text).ok(), Some(bytes));
            prop_assert_eq!(decode(&text).ok(), URL_SAFE_NO_PAD.decode(&text).ok());
        }
    }
}
