//! `normalize_path` on arbitrary paths.
//!
//! Invariants: a normalized path is absolute and has no empty, `.`, or `..` segment, no `;`
//! parameters, no `\`, `?`, `#` or control character; normalizing it again changes nothing
//! unless it holds a `%` (escapes are decoded exactly once).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::request::normalize_path;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = normalize_path(raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{raw:?} -> {path:?}");
    assert!(
        !path
            .chars()
            .any(|c| c.is_control() || matches!(c, '\\' | '?' | '#' | ';')),
        "{raw:?} -> {path:?}"
    );
    if path != "/" {
        for segment in path[1..].split('/') {
            assert!(!matches!(segment, "" | "." | ".."), "{raw:?} -> {path:?}");
        }
    }
    if !path.contains('%') {
        assert_eq!(normalize_path(&path).as_deref().ok(), Some(&*path));
    }
    // The query never changes the path.
    let query_free = raw.split_once('?').map_or(raw, |(p, _)| p);
    assert_eq!(normalize_path(query_free).as_deref().ok(), Some(&*path));
});
