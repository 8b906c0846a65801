//! The request as the engine sees it, and what is read from it: the token(s), the normalized
//! path a rule matches, and the headers the filter owns.
//!
//! Extraction returns *every* token found in the places the route's providers read, so that two
//! different tokens in two places are refused instead of one silently winning. Paths are matched
//! after the same decoding an upstream may apply (`%2F`, `//`, `/./`, `..`, `;params`), so a rule
//! cannot be stepped around by spelling the path differently.

use crate::config::{RouteMatch, TokenSource};
use crate::denial::Denial;
use crate::scan::{same_ignoring_ascii_case, trim_spaces};
use std::borrow::Cow;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

/// One request's attributes, borrowed from the host. Header names are lower case.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path`, with its query.
    pub path: &'a str,
    /// `:authority` (Host).
    pub authority: &'a str,
    /// Every header, in the host's order (a name may repeat).
    pub headers: Headers<'a>,
}

/// Borrowed pairs of owned headers (what [`Request::headers`] holds).
pub fn header_pairs(owned: &[(String, String)]) -> Vec<(&str, &str)> {
    owned
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

impl<'a> Request<'a> {
    /// The values of every header called `name` (in any case), in the host's order.
    pub fn header_values(&self, name: &'a str) -> HeaderValues<'a> {
        self.headers.values(name)
    }
}

/// The values of the headers of one name ([`Request::header_values`]). A loop of its own
/// rather than adapters: every request looks for its token's header and for each header the
/// filter owns among all of its headers, and most names differ in length, which is compared
/// first.
#[derive(Debug, Clone)]
pub struct HeaderValues<'a> {
    headers: Headers<'a>,
    name: &'a [u8],
    next: usize,
}

impl<'a> Iterator for HeaderValues<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let name = self.name;
        let same = |n: &[u8]| same_ignoring_ascii_case(n, name);
        let mut at = self.next;
        let found = match self.headers {
            Headers::Pairs(pairs) => loop {
                let Some((n, v)) = pairs.get(at) else {
                    break None;
                };
                at += 1;
                if same(n.as_bytes()) {
                    break Some(*v);
                }
            },
            // Names are compared as bytes, a range's length before the text it covers, and only
            // a match's value is cut from the text.
            Headers::Spans { text, spans } => loop {
                let Some((n, v)) = spans.get(at) else {
                    break None;
                };
                at += 1;
                if n.end.wrapping_sub(n.start) == name.len()
                    && (text.as_bytes().get(n.clone())).is_some_and(same)
                {
                    if let Some(value) = text.get(v.clone()) {
                        break Some(value);
                    }
                }
            },
        };
        self.next = at;
        found
    }
}

/// A request's headers, borrowed as the host holds them: a list of (name, value) pairs, or one
/// text with the byte ranges of each name and value. The filter holds what proxy-wasm hands it
/// the second way, so a request needs no list made for it; a range that is not in the text (or
/// not on its char boundaries) reads as no header.
#[derive(Debug, Clone, Copy)]
pub enum Headers<'a> {
    Pairs(&'a [(&'a str, &'a str)]),
    Spans {
        text: &'a str,
        spans: &'a [(Range<usize>, Range<usize>)],
    },
}

impl<'a> Headers<'a> {
    /// The values of every header called `name` (in any case), in the host's order.
    pub fn values(self, name: &'a str) -> HeaderValues<'a> {
        HeaderValues {
            headers: self,
            name: name.as_bytes(),
            next: 0,
        }
    }
}

impl<'a> From<&'a [(&'a str, &'a str)]> for Headers<'a> {
    fn from(pairs: &'a [(&'a str, &'a str)]) -> Self {
        Headers::Pairs(pairs)
    }
}

impl<'a> From<&'a Vec<(&'a str, &'a str)>> for Headers<'a> {
    fn from(pairs: &'a Vec<(&'a str, &'a str)>) -> Self {
        Headers::Pairs(pairs)
    }
}

/// A token and where it was found, borrowed from the request (a query parameter with escapes is
/// the one token that has to be decoded into a copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundToken<'a> {
    pub token: Cow<'a, str>,
    pub source: &'a TokenSource,
}

/// Finds every token in `sources`; the same token found twice counts once.
pub fn find_tokens<'a>(
    req: &Request<'a>,
    sources: impl IntoIterator<Item = &'a TokenSource>,
) -> Vec<FoundToken<'a>> {
    let mut found: Vec<FoundToken<'a>> = Vec::new();
    each_token(req, sources, |token, source| {
        if !found.iter().any(|f| f.token == token) {
            found.push(FoundToken { token, source });
        }
    });
    found
}

/// Several different tokens in the places a route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeveralTokens;

/// The request's token, as [`find_tokens`] finds them: none, one (found once or more), or
/// several different ones. What a decision needs, without a list.
pub fn the_token<'a>(
    req: &Request<'a>,
    sources: impl IntoIterator<Item = &'a TokenSource>,
) -> Result<Option<FoundToken<'a>>, SeveralTokens> {
    let mut first: Option<FoundToken<'a>> = None;
    let mut several = false;
    each_token(req, sources, |token, source| match &first {
        None => first = Some(FoundToken { token, source }),
        Some(seen) => several |= seen.token != token,
    });
    match several {
        true => Err(SeveralTokens),
        false => Ok(first),
    }
}

/// Hands every token in `sources` to `push`, in the order found (repeats included).
fn each_token<'a>(
    req: &Request<'a>,
    sources: impl IntoIterator<Item = &'a TokenSource>,
    mut push: impl FnMut(Cow<'a, str>, &'a TokenSource),
) {
    for source in sources {
        match source {
            TokenSource::Header { name, prefix } => {
                let mut part = |value: &'a str| {
                    let value = trim_spaces(value);
                    let rest = match prefix {
                        None => Some(value),
                        Some(p) => value
                            .get(..p.len())
                            .filter(|head| same_ignoring_ascii_case(head.as_bytes(), p.as_bytes()))
                            .and_then(|_| value.get(p.len()..)),
                    };
                    if let Some(token) = rest.map(trim_spaces).filter(|t| !t.is_empty()) {
                        push(Cow::Borrowed(token), source);
                    }
                };
                // A proxy joins repeated headers with ","; no token contains one (RFC 6750's
                // b64token), so each part is a value of its own.
                for value in req.header_values(name) {
                    match has_comma(value) {
                        false => part(value),
                        true => value.split(',').for_each(&mut part),
                    }
                }
            }
            TokenSource::Cookie(name) => {
                for value in req.header_values("cookie") {
                    for pair in value.split(';') {
                        if let Some((n, v)) = pair.trim().split_once('=') {
                            if n == name && !v.is_empty() {
                                push(Cow::Borrowed(v), source);
                            }
                        }
                    }
                }
            }
            TokenSource::Query(name) => {
                let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
                for pair in query.split('&') {
                    if let Some((n, v)) = pair.split_once('=') {
                        if n == name && !v.is_empty() {
                            let token = match percent_decode(v) {
                                Some(decoded) if decoded != v => Cow::Owned(decoded),
                                _ => Cow::Borrowed(v),
                            };
                            push(token, source);
                        }
                    }
                }
            }
        }
    }
}

/// Whether a header value has parts between commas. Most have none, and a scan that does not
/// stop early ([`crate::scan`]) finds that out in a fraction of the time `split` takes to look
/// for the first one (a token is 0.5-2 KB).
#[inline(always)]
fn has_comma(value: &str) -> bool {
    crate::scan::has_byte(value.as_bytes(), b',')
}

/// A change to the request's headers, applied by the host in order. Names are shared with the
/// compiled configuration, so an edit costs no copy of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    Remove(Arc<str>),
    Set(Arc<str>, String),
}

/// An allowed request's header edits, in the order they apply: the removals (the headers the
/// filter owns that the request carries, then the token's place), the identity's headers, then
/// the policy's. The identity's part is shared with the remembered identity it was derived for
/// ([`crate::verified::Derived`]): a remembered token's request derives and copies none, and
/// with none of the filter's headers in the request, allocates none.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    /// The headers the filter owns that the request carries, removed.
    pub removals: Vec<HeaderEdit>,
    /// The token's place, with `strip_token`: its header removed, or the cookie header or the
    /// path set again without it.
    pub token: Option<HeaderEdit>,
    pub identity: Option<Rc<[HeaderEdit]>>,
    pub policy: Vec<HeaderEdit>,
}

impl HeaderEdits {
    pub fn iter(&self) -> HeaderEditsIter<'_> {
        let identity = self.identity.as_deref().unwrap_or_default();
        (self.removals.iter().chain(&self.token))
            .chain(identity)
            .chain(&self.policy)
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    pub fn contains(&self, edit: &HeaderEdit) -> bool {
        self.iter().any(|e| e == edit)
    }
}

/// The edits in the order they apply.
pub type HeaderEditsIter<'a> = std::iter::Chain<
    std::iter::Chain<
        std::iter::Chain<std::slice::Iter<'a, HeaderEdit>, std::option::Iter<'a, HeaderEdit>>,
        std::slice::Iter<'a, HeaderEdit>,
    >,
    std::slice::Iter<'a, HeaderEdit>,
>;

impl<'a> IntoIterator for &'a HeaderEdits {
    type Item = &'a HeaderEdit;
    type IntoIter = HeaderEditsIter<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Equal when they apply the same edits in the same order, however they are held.
impl PartialEq for HeaderEdits {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for HeaderEdits {}

impl PartialEq<Vec<HeaderEdit>> for HeaderEdits {
    fn eq(&self, other: &Vec<HeaderEdit>) -> bool {
        self.iter().eq(other)
    }
}

/// The edit that takes the token out of the request before it goes upstream.
pub fn strip_token(req: &Request, source: &TokenSource) -> HeaderEdit {
    match source {
        TokenSource::Header { name, .. } => HeaderEdit::Remove(Arc::clone(name)),
        TokenSource::Cookie(cookie) => {
            let kept: Vec<&str> = req
                .header_values("cookie")
                .flat_map(|v| v.split(';'))
                .map(str::trim)
                .filter(|pair| {
                    pair.split_once('=').map(|(n, _)| n) != Some(cookie.as_str())
                        && !pair.is_empty()
                })
                .collect();
            if kept.is_empty() {
                HeaderEdit::Remove("cookie".into())
            } else {
                HeaderEdit::Set("cookie".into(), kept.join("; "))
            }
        }
        TokenSource::Query(param) => {
            let (path, query) = req.path.split_once('?').unwrap_or((req.path, ""));
            let kept: Vec<&str> = query
                .split('&')
                .filter(|pair| {
                    !pair.is_empty() && pair.split_once('=').map_or(*pair, |(n, _)| n) != param
                })
                .collect();
            let new_path = if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            };
            HeaderEdit::Set(":path".into(), new_path)
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes everything but the RFC 3986 unreserved characters: a form or query
/// component (a space is `%20`, which every decoder reads, rather than `+`, which a decoder of
/// Basic credentials might not).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` for a broken escape or a result that is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = hex(*bytes.get(i + 1)?)?;
            let lo = hex(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The path a rule is matched against: query removed, escapes decoded once, `\` read as `/`,
/// `;params` removed from segments, empty and `.` segments dropped, `..` applied.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, Denial> {
    if let Some(path) = normal_path(raw) {
        return Ok(Cow::Borrowed(path));
    }
    let path = raw.split_once('?').map_or(raw, |(p, _)| p);
    normalize_slowly(path).map(Cow::Owned)
}

fn normalize_slowly(path: &str) -> Result<String, Denial> {
    if path.contains('#') {
        return Err(Denial::BadRequest("fragment in path"));
    }
    if !path.starts_with('/') {
        return Err(Denial::BadRequest("path is not absolute"));
    }
    let decoded = percent_decode(path).ok_or(Denial::BadRequest("bad percent-encoding in path"))?;
    if decoded
        .chars()
        .any(|c| c.is_control() || c == '?' || c == '#')
    {
        return Err(Denial::BadRequest("forbidden character in path"));
    }
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        let segment = segment.split(';').next().unwrap_or("");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    Ok(format!("/{}", segments.join("/")))
}

/// The path before its query when normalizing would leave it as it is (the common case,
/// answered without a copy, in one pass over the bytes): absolute, ASCII, nothing to decode, no
/// `\`, `;`, `#` or control character, and no empty, `.` or `..` segment (so no trailing `/`
/// either, except for the root).
fn normal_path(raw: &str) -> Option<&str> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return None;
    }
    let fine = |segment: Option<&[u8]>| segment.is_some_and(|s| !matches!(s, b"" | b"." | b".."));
    let (mut segment, mut end) = (1, bytes.len());
    for (at, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b'?' => {
                end = at;
                break;
            }
            b'/' if fine(bytes.get(segment..at)) => segment = at + 1,
            b'/' | b'%' | b'\\' | b';' | b'#' | 0..=0x1f | 0x7f..=0xff => return None,
            _ => {}
        }
    }
    (end == 1 || fine(bytes.get(segment..end))).then(|| raw.get(..end))?
}

/// Host without port, lower case.
fn host_of(authority: &str) -> String {
    let host = if authority.starts_with('[') {
        authority
            .split_once(']')
            .map_or(authority, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host.to_ascii_lowercase()
}

impl RouteMatch {
    /// Whether the request (with its path already normalized) matches.
    pub fn matches(&self, method: &str, normalized_path: &str, authority: &str) -> bool {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == method) {
            return false;
        }
        if let Some(exact) = &self.path {
            if normalize_rule_path(exact) != normalized_path {
                return false;
            }
        }
        if let Some(prefix) = &self.prefix {
            let prefix = normalize_rule_path(prefix);
            let under = prefix == "/"
                || normalized_path == prefix
                || normalized_path
                    .strip_prefix(&*prefix)
                    .is_some_and(|rest| rest.starts_with('/'));
            if !under {
                return false;
            }
        }
        if let Some(want) = &self.host {
            let host = host_of(authority);
            let ok = match want.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .is_some_and(|h| h.len() > 1 && h.ends_with('.')),
                None => &host == want,
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

fn normalize_rule_path(p: &str) -> Cow<'_, str> {
    normalize_path(p).unwrap_or(Cow::Borrowed(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        pairs.to_vec()
    }

    fn bearer() -> TokenSource {
        TokenSource::Header {
            name: "authorization".into(),
            prefix: Some("Bearer ".into()),
        }
    }

    fn req<'a>(path: &'a str, h: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method: "GET",
            path,
            authority: "api.example.com",
            headers: h.into(),
        }
    }

    #[test]
    fn bearer_tokens_with_any_case_scheme() {
        let h = headers(&[("authorization", "bearer abc.def.ghi")]);
        let source = bearer();
        let found = find_tokens(&req("/", &h), [&source]);
        assert_eq!(
            found,
            vec![FoundToken {
                token: "abc.def.ghi".into(),
                source: &source,
            }]
        );
        let basic = headers(&[("authorization", "Basic dXNlcjpwdw==")]);
        assert!(find_tokens(&req("/", &basic), [&source]).is_empty());
        let empty = headers(&[("authorization", "Bearer ")]);
        assert!(find_tokens(&req("/", &empty), [&source]).is_empty());
    }

    #[test]
    fn every_token_in_every_place_is_found() {
        let cookie = TokenSource::Cookie("at".into());
        let query = TokenSource::Query("access_token".into());
        let bearer = bearer();
        let h = headers(&[
            ("authorization", "Bearer a.b.c"),
            ("cookie", "x=1; at=d.e.f"),
            ("authorization", "Bearer g.h.i"),
        ]);
        let found = find_tokens(
            &req("/x?access_token=a.b.c", &h),
            [&bearer, &cookie, &query],
        );
        let tokens: Vec<&str> = found.iter().map(|f| &*f.token).collect();
        assert_eq!(
            tokens,
            vec!["a.b.c", "g.h.i", "d.e.f"],
            "the same token twice counts once"
        );
    }

    #[test]
    fn headers_read_the_same_from_pairs_and_from_spans() {
        let text = "Authorization\0Bearer a.b.c\0x-user\0m\0AUTHORIZATION\0Bearer d\0";
        let spans = [
            (0..13, 14..26),
            (27..33, 34..35),
            (36..49, 50..58),
            (90..96, 0..1),
            (27..33, 50..99),
        ];
        let pairs = [
            ("Authorization", "Bearer a.b.c"),
            ("x-user", "m"),
            ("AUTHORIZATION", "Bearer d"),
        ];
        let mut r = req("/", &pairs);
        let from_pairs: Vec<&str> = r.header_values("authorization").collect();
        r.headers = Headers::Spans {
            text,
            spans: &spans,
        };
        let from_spans: Vec<&str> = r.header_values("authorization").collect();
        assert_eq!(from_pairs, ["Bearer a.b.c", "Bearer d"]);
        assert_eq!(from_spans, from_pairs);
        assert_eq!(r.header_values("X-User").collect::<Vec<_>>(), ["m"]);
        // As long as "cookie" but past the text; "x-user" again, its value past the text.
        assert_eq!(r.header_values("cookie").count(), 0, "a name past the text");
        assert_eq!(
            r.header_values("x-user").count(),
            1,
            "a value past the text"
        );
    }

    #[test]
    fn the_token_is_the_one_token_found() {
        let cookie = TokenSource::Cookie("at".into());
        let query = TokenSource::Query("access_token".into());
        let bearer = bearer();
        let cases: [(&str, &[(&str, &str)]); 6] = [
            ("/x", &[]),
            ("/x", &[("authorization", "Basic dXNlcjpwdw==")]),
            (
                "/x?access_token=a.b.c",
                &[("authorization", "Bearer a.b.c")],
            ),
            (
                "/x",
                &[
                    ("authorization", "Bearer a.b.c,Bearer a.b.c"),
                    ("cookie", "at=a.b.c"),
                ],
            ),
            (
                "/x",
                &[("authorization", "Bearer a.b.c"), ("cookie", "at=d.e.f")],
            ),
            ("/x?access_token=a.b.c&access_token=a.b.d", &[]),
        ];
        for (path, h) in cases {
            let h = headers(h);
            let r = req(path, &h);
            let all = find_tokens(&r, [&bearer, &cookie, &query]);
            let one = the_token(&r, [&bearer, &cookie, &query]);
            match all.as_slice() {
                [] => assert_eq!(one, Ok(None), "{path} {h:?}"),
                [first] => assert_eq!(one, Ok(Some(first.clone())), "{path} {h:?}"),
                _ => assert_eq!(one, Err(SeveralTokens), "{path} {h:?}"),
            }
        }
    }

    #[test]
    fn the_token_can_be_stripped_from_each_place() {
        let h = headers(&[("cookie", "x=1; at=t; y=2")]);
        let r = req("/p?a=1&access_token=t&b=2", &h);
        assert_eq!(
            strip_token(&r, &bearer()),
            HeaderEdit::Remove("authorization".into())
        );
        assert_eq!(
            strip_token(&r, &TokenSource::Cookie("at".into())),
            HeaderEdit::Set("cookie".into(), "x=1; y=2".into())
        );
        assert_eq!(
            strip_token(&r, &TokenSource::Query("access_token".into())),
            HeaderEdit::Set(":path".into(), "/p?a=1&b=2".into())
        );
    }

    #[test]
    fn paths_are_normalized_before_matching() {
        for (raw, want) in [
            ("/admin", "/admin"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public%2F..%2Fadmin", "/admin"),
            ("//admin//x/", "/admin/x"),
            ("/./admin/./", "/admin"),
            ("/admin;jsessionid=1/x", "/admin/x"),
            ("/public\\..\\admin", "/admin"),
            ("/admin?x=/public", "/admin"),
            ("/../../admin", "/admin"),
        ] {
            assert_eq!(normalize_path(raw).unwrap(), want, "{raw}");
        }
        for bad in ["/a#b", "admin", "/a%zz", "/a%00b", "/a%3Fb", "*"] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        /// The shortcut for paths that are already normal agrees with the full normalization.
        #[test]
        fn normal_paths_are_left_as_they_are(path in "/[a/.;%2Fe\\\\#?\u{85}\u{7f}]{0,12}") {
            if let Some(normal) = normal_path(&path) {
                proptest::prop_assert_eq!(normalize_slowly(normal).ok(), Some(normal.to_string()));
            }
            let fast = normalize_path(&path).ok().map(Cow::into_owned);
            let slow = normalize_slowly(path.split('?').next().unwrap_or("")).ok();
            proptest::prop_assert_eq!(fast, slow);
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        let m = RouteMatch {
            prefix: Some("/public".into()),
            ..Default::default()
        };
        assert!(m.matches("GET", "/public", "h"));
        assert!(m.matches("GET", "/public/x", "h"));
        assert!(!m.matches("GET", "/publicity", "h"));
        let root = RouteMatch {
            prefix: Some("/".into()),
            ..Default::default()
        };
        assert!(root.matches("GET", "/anything", "h"));
    }

    #[test]
    fn methods_paths_and_hosts() {
        let m = RouteMatch {
            path: Some("/orders".into()),
            methods: vec!["POST".into()],
            host: Some("*.example.com".into()),
            ..Default::default()
        };
        assert!(m.matches("POST", "/orders", "api.example.com:8443"));
        assert!(!m.matches("GET", "/orders", "api.example.com"));
        assert!(!m.matches("POST", "/orders/1", "api.example.com"));
        assert!(!m.matches("POST", "/orders", "example.com"));
        assert!(!m.matches("POST", "/orders", "evil-example.com"));
        let exact = RouteMatch {
            host: Some("api.example.com".into()),
            ..Default::default()
        };
        assert!(exact.matches("GET", "/", "API.example.com:80"));
        assert!(!exact.matches("GET", "/", "api.example.com.evil"));
    }
}
