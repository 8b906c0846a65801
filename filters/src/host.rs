//! Thin, non-panicking wrappers over the proxy-wasm host calls the filter uses.
//!
//! Every function here returns what the host said or a safe default; none decides anything.

use crate::abi;
use crate::abi::{BufferType, HeaderMap, LogLevel};
use std::cell::RefCell;
use std::ops::Range;
use tollgate::request::Headers;
use tollgate::scan::is_ascii;

pub fn log(level: LogLevel, message: &str) {
    let _ = abi::log(level, message);
}

/// Whether the host writes info-level lines for this plugin (when it cannot say: yes).
pub fn logs_info() -> bool {
    abi::get_log_level().map_or(true, |level| level <= LogLevel::Info as u32)
}

/// Answers the current request here, with no upstream; when even that fails, resets its
/// stream, so that it never goes on.
pub fn answer_here(status: u32, headers: &[(&str, &str)], body: &[u8]) {
    if abi::send_http_response(status, headers, body).is_err() {
        let _ = abi::reset_http_request();
    }
}

pub fn now_ms() -> u64 {
    abi::get_current_time_ns().map_or(0, |ns| ns / 1_000_000)
}

/// A request's headers, owned: kept while the request waits for keys or introspection.
///
/// Read in one host call and held as one string with the position of each name and value, not
/// as a `String` pair per header: on the hot path the copies and allocations of the latter cost
/// more than the decision itself. The pseudo-headers are found once.
pub struct OwnedRequest {
    headers: HeaderBlock,
    method: usize,
    path: usize,
    authority: Option<usize>,
    request_id: Option<usize>,
}

impl OwnedRequest {
    /// Reads the current request's headers; `None` without `:method` or `:path`, or when the
    /// host's answer is malformed.
    pub fn read() -> Option<OwnedRequest> {
        OwnedRequest::parse(abi::get_header_map_pairs(HeaderMap::Request).ok()?)
    }

    fn parse(bytes: Vec<u8>) -> Option<OwnedRequest> {
        OwnedRequest::found(header_block(bytes)?)
    }

    /// The request over its headers, with the ones it needs by name found (`None` without
    /// `:method` or `:path`).
    fn found(headers: HeaderBlock) -> Option<OwnedRequest> {
        // The first of each, in one pass (names compared as bytes: `value` cuts the text).
        let (mut method, mut path, mut authority, mut request_id) = (None, None, None, None);
        for (i, (name, _)) in headers.spans.iter().enumerate() {
            let slot = match headers.text.as_bytes().get(name.clone()) {
                Some(b":method") => &mut method,
                Some(b":path") => &mut path,
                Some(b":authority") => &mut authority,
                Some(b"x-request-id") => &mut request_id,
                _ => continue,
            };
            slot.get_or_insert(i);
        }
        Some(OwnedRequest {
            headers,
            method: method?,
            path: path?,
            authority,
            request_id,
        })
    }

    fn value(&self, at: Option<usize>) -> Option<&str> {
        let (_, value) = self.headers.spans.get(at?)?;
        self.headers.text.get(value.clone())
    }

    pub fn method(&self) -> &str {
        self.value(Some(self.method)).unwrap_or_default()
    }

    pub fn path(&self) -> &str {
        self.value(Some(self.path)).unwrap_or_default()
    }

    pub fn request_id(&self) -> Option<&str> {
        self.value(self.request_id)
    }

    /// The request as the engine reads it.
    pub fn view(&self) -> tollgate::request::Request<'_> {
        tollgate::request::Request {
            method: self.method(),
            path: self.path(),
            authority: self.value(self.authority).unwrap_or_default(),
            headers: self.headers.view(),
        }
    }
}

/// A header map as read from the host: every name and value, one after the other, in the
/// host's buffer, and per header (in the host's order) the byte ranges of its name and value.
/// Both go back to their pools when it is dropped, for the next map read.
#[derive(Default)]
pub struct HeaderBlock {
    text: String,
    spans: Spans,
}

impl HeaderBlock {
    pub fn view(&self) -> Headers<'_> {
        Headers::Spans {
            text: &self.text,
            spans: &self.spans,
        }
    }
}

/// A span list is at most this long to be kept for another request.
const SPARE_SPANS_MAX: usize = 256;
/// Span lists kept at most.
const SPARE_SPANS_KEPT: usize = 8;

type Spans = Vec<(Range<usize>, Range<usize>)>;

thread_local! {
    /// The span lists of requests that ended, for the next ones: a list of its own per request
    /// cost an allocation and a free on the hot path. (One VM, one thread.)
    static SPARE_SPANS: RefCell<Vec<Spans>> = const { RefCell::new(Vec::new()) };
}

/// An empty span list, kept from an earlier request when there is one.
fn spare_spans() -> Spans {
    let spare = SPARE_SPANS.with(|spare| spare.try_borrow_mut().ok()?.pop());
    let mut spans = spare.unwrap_or_default();
    spans.clear();
    spans
}

impl Drop for HeaderBlock {
    fn drop(&mut self) {
        // The text is the host's buffer: the next map goes there.
        abi::recycle(std::mem::take(&mut self.text).into_bytes());
        if self.spans.capacity() == 0 || self.spans.capacity() > SPARE_SPANS_MAX {
            return;
        }
        let spans = std::mem::take(&mut self.spans);
        SPARE_SPANS.with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                if spare.len() < SPARE_SPANS_KEPT {
                    spare.push(spans);
                }
            }
        });
    }
}

/// Reads the proxy-wasm serialization of a header map (a request's, or a call's answer's): the
/// number of pairs (u32, little endian), the length of each name and value (u32 pairs), then
/// each name and value followed by a NUL. The text of every name and value, with the byte ranges
/// of each in it; bytes that are not UTF-8 read as U+FFFD, as `String::from_utf8_lossy` has it.
///
/// The host's buffer becomes the text itself: once the lengths are read, they are zeroed (NUL is
/// UTF-8), and the whole buffer is checked as UTF-8 in one pass, with no copy. Only a map with
/// bytes that are not UTF-8 is copied, piece by piece.
fn header_block(mut bytes: Vec<u8>) -> Option<HeaderBlock> {
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = word(0)?;
    let lengths_end = 4usize.checked_add(count.checked_mul(8)?)?;
    if lengths_end > bytes.len() {
        return None;
    }
    let mut spans = spare_spans();
    spans.reserve(count);
    let total = bytes.len();
    let mut data = lengths_end;
    let mut take = |len: u32| -> Option<Range<usize>> {
        let end = data
            .checked_add(usize::try_from(len).ok()?)
            .filter(|&end| end <= total)?;
        let piece = data..end;
        data = end + 1;
        Some(piece)
    };
    for lengths in bytes.get(4..lengths_end)?.chunks_exact(8) {
        let [n0, n1, n2, n3, v0, v1, v2, v3]: [u8; 8] = lengths.try_into().ok()?;
        let name = take(u32::from_le_bytes([n0, n1, n2, n3]))?;
        let value = take(u32::from_le_bytes([v0, v1, v2, v3]))?;
        spans.push((name, value));
    }
    bytes.get_mut(..lengths_end)?.fill(0);
    // Headers are ASCII but for rare exceptions: checked 64 bytes a step with wasm SIMD
    // (`tollgate::scan`), where UTF-8 validation takes 8.
    if is_ascii(&bytes) {
        // SAFETY: every byte is below 0x80 (`tollgate::scan`'s tests check every byte of
        // every length, natively and under V8), so the bytes are UTF-8, and every index is
        // a char boundary.
        let text = unsafe { String::from_utf8_unchecked(bytes) };
        return Some(HeaderBlock { text, spans });
    }
    let text = match String::from_utf8(bytes) {
        Ok(text)
            if spans.iter().all(|(n, v)| {
                [n.start, n.end, v.start, v.end]
                    .iter()
                    .all(|&at| text.is_char_boundary(at))
            }) =>
        {
            text
        }
        Ok(text) => lossy_copy(text.as_bytes(), &mut spans),
        Err(not_utf8) => lossy_copy(not_utf8.as_bytes(), &mut spans),
    };
    Some(HeaderBlock { text, spans })
}

/// The pieces of `bytes` at `spans`, each read as UTF-8 with U+FFFD for what is not, one after
/// the other in a new string; `spans` are moved to their place in it.
fn lossy_copy(bytes: &[u8], spans: &mut [(Range<usize>, Range<usize>)]) -> String {
    let mut text = String::with_capacity(bytes.len());
    let mut copy = |piece: &mut Range<usize>| {
        let start = text.len();
        text.push_str(&String::from_utf8_lossy(
            bytes.get(piece.clone()).unwrap_or_default(),
        ));
        *piece = start..text.len();
    };
    for (name, value) in spans.iter_mut() {
        copy(name);
        copy(value);
    }
    text
}

/// `source.address` (`10.0.0.1:5555`, `[::1]:5555`) without its port.
/// The downstream peer's IP address (without port), read from the current request's context.
pub fn client_address() -> Option<String> {
    let bytes = abi::get_property(&["source", "address"]).ok()??;
    let text = String::from_utf8(bytes).ok()?;
    let host = match text.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest).to_string(),
        None => text
            .rsplit_once(':')
            .map_or(text.clone(), |(h, _)| h.to_string()),
    };
    Some(host)
}

/// An answer to a dispatched call: status (`None` on timeout or reset), headers, and the body
/// unless it is larger than `max_body` (then `oversized`).
pub struct CallAnswer {
    pub status: Option<u32>,
    headers: HeaderBlock,
    pub body: Vec<u8>,
    pub oversized: bool,
}

impl CallAnswer {
    /// No answer: the call could not be made, or its answer could not be taken.
    pub fn failed() -> CallAnswer {
        CallAnswer {
            status: None,
            headers: Default::default(),
            body: Vec::new(),
            oversized: false,
        }
    }

    pub fn read(body_size: usize, max_body: usize) -> CallAnswer {
        let headers = abi::get_header_map_pairs(HeaderMap::CallResponse).ok();
        let headers = headers.and_then(header_block).unwrap_or_default();
        let oversized = body_size > max_body;
        let body = if oversized || body_size == 0 {
            Vec::new()
        } else {
            abi::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let mut answer = CallAnswer {
            status: None,
            headers,
            body,
            oversized,
        };
        answer.status = answer.header(":status").and_then(|s| s.parse().ok());
        answer
    }

    /// The first value of the header `name` (in any case).
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers.view().values(name).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serialized(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        abi::serialize_pairs(pairs)
    }

    #[test]
    fn a_call_s_answer_reads_its_headers_by_name_in_any_case() {
        let bytes = abi::serialize_pairs(&[(":status", "200"), ("Cache-Control", "max-age=60")]);
        assert_eq!(bytes.get(..4), Some(&2u32.to_le_bytes()[..]));
        let answer = CallAnswer {
            headers: header_block(bytes).unwrap(),
            ..CallAnswer::failed()
        };
        assert_eq!(answer.header(":status"), Some("200"));
        assert_eq!(answer.header("cache-control"), Some("max-age=60"));
        assert_eq!(answer.header("etag"), None);
        assert_eq!(CallAnswer::failed().header(":status"), None);
        assert_eq!(abi::serialize_pairs::<&str, &str>(&[]), 0u32.to_le_bytes());
        // Its span list goes back to the pool, as a request's does.
        drop(answer);
        assert!(
            spare_spans().capacity() >= 2,
            "the answer's span list was kept"
        );
    }

    #[test]
    fn a_header_map_reads_as_the_host_sent_it() {
        let bytes = serialized(&[
            (b":method", b"GET"),
            (b":path", b"/orders?x=1"),
            (b":authority", b"api.example.com"),
            (b"authorization", b"Bearer a.b.c"),
            (b"x-user", b""),
            (b"x-request-id", b"r-1"),
            (b"x-user", b"mallory"),
        ]);
        let r = OwnedRequest::parse(bytes.clone()).unwrap();
        assert_eq!(r.method(), "GET");
        assert_eq!(r.path(), "/orders?x=1");
        assert_eq!(r.request_id(), Some("r-1"));
        let view = r.view();
        assert_eq!(view.authority, "api.example.com");
        assert_eq!(
            view.header_values("x-user").collect::<Vec<_>>(),
            ["", "mallory"]
        );
        assert_eq!(r.headers.spans.len(), 7);
    }

    #[test]
    fn a_request_s_span_list_serves_the_next_one_empty() {
        let first = OwnedRequest::parse(serialized(&[(b":method", b"GET"), (b":path", b"/a")]));
        drop(first);
        let kept = spare_spans();
        assert!(kept.is_empty() && kept.capacity() >= 2, "kept, emptied");
        drop(kept);
        let next = OwnedRequest::parse(serialized(&[(b":method", b"PUT"), (b":path", b"/b")]));
        let next = next.unwrap();
        assert_eq!(
            (next.method(), next.path(), next.headers.spans.len()),
            ("PUT", "/b", 2)
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_read_as_replacement_characters() {
        let bytes = serialized(&[(b":method", b"GET"), (b":path", b"/"), (b"x-a", b"\xffok")]);
        let r = OwnedRequest::parse(bytes.clone()).unwrap();
        assert_eq!(r.view().header_values("x-a").last(), Some("\u{fffd}ok"));
    }

    #[test]
    fn lengths_that_cut_a_character_read_as_replacement_characters() {
        // Valid UTF-8 as a whole, but the value's length ends inside the "é" of "café", and the
        // byte after it, which should be the NUL, is the rest of that character.
        let value: &[u8] = "café".as_bytes();
        let mut bytes = serialized(&[(b":method", b"GET"), (b":path", b"/"), (b"x-a", value)]);
        // The third pair's value length (after the count and two pairs of lengths): 5 -> 4.
        bytes[24..28].copy_from_slice(&4u32.to_le_bytes());
        let r = OwnedRequest::parse(bytes).unwrap();
        assert_eq!(r.view().header_values("x-a").last(), Some("caf\u{fffd}"));
        assert_eq!(r.method(), "GET");
    }

    #[test]
    fn malformed_maps_and_requests_without_method_or_path_are_refused() {
        let good = serialized(&[(b":method", b"GET"), (b":path", b"/")]);
        for cut in 0..good.len() - 1 {
            assert!(OwnedRequest::parse(good[..cut].to_vec()).is_none(), "{cut}");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(OwnedRequest::parse(huge).is_none());
        let no_path = serialized(&[(b":method", b"GET")]);
        assert!(OwnedRequest::parse(no_path).is_none());
        assert!(OwnedRequest::parse(Vec::new()).is_none());
    }
}
