//! Strict base64url (RFC 7515 section 2): no padding, no whitespace, nothing outside the URL-safe
//! alphabet, and no non-zero trailing bits, so that one token has exactly one encoding.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// Decodes strict unpadded base64url.
pub fn decode(input: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(input)
        .map_err(|e| format!("bad base64url: {e}"))
}

/// Encodes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_non_canonical_forms() {
        assert_eq!(decode(&encode(b"tollgate")).unwrap(), b"tollgate");
        assert!(decode("dG9sbGdhdGU=").is_err(), "padding");
        assert!(decode("dG9s bGdh").is_err(), "whitespace");
        assert!(decode("dG9s+GdhdGU").is_err(), "standard alphabet");
        // "QR" decodes to one byte; "QQ" is its canonical form, "QR" has trailing bits set.
        assert!(decode("QQ").is_ok());
        assert!(decode("QR").is_err(), "non-zero trailing bits");
    }
}
