//! The path of a serde error in the configuration, found from the error's position.
//!
//! A type error in the configuration is reported as `providers.corp.jwks.uri: invalid type ...`.
//! `serde_path_to_error` gave that path by wrapping the deserializer, so every `Deserialize` impl
//! of the configuration was compiled against the wrapper: about 100 KB of the filter's wasm, twice
//! what the plain impls take. serde_json already says where it stopped (line and column), so
//! after a failed parse this module reads the text again up to that byte, keeping the stack of
//! open objects and arrays, and names the value the parser was in as `serde_path_to_error` did:
//! member names joined with ".", indices as `[i]`, "?" for a member name not read yet.
//!
//! The position alone does not say everything: serde_json reports an error about a whole value
//! (a wrong type, a missing field) at the value's end, and an error between values (a missing
//! comma, the end of the input) at the same place. The error's category and, for a few
//! messages, its text settle which it is; [`Frame::innermost`] says what each place means. The
//! scan never fails: a byte it does not expect ends it, where serde_json stopped too.
//!
//! This needs every `Deserialize` impl of the configuration to fail inside serde_json's call for
//! the value at fault, which is where serde_json fixes the position. Derived structs, maps,
//! sequences and scalars do; a derived `untagged` enum does not (it fails after buffering, and the
//! position lands past the enclosing map), hence the written-out impl of `ClaimValuesFile`. The
//! tests compare every path with `serde_path_to_error`'s on many broken configurations.

use serde_json::error::Category;
use std::fmt::Write as _;

/// serde_json refuses to open a 128th nested object or array; the scan stops there too.
const MAX_OPEN: usize = 127;

/// The path of the value that `err`, from parsing `json`, is about; empty for the root.
pub(crate) fn error_path(json: &[u8], err: &serde_json::Error) -> String {
    let Some(mut end) = byte_offset(json, err.line(), err.column()) else {
        return String::new();
    };
    let message = err.to_string();
    // serde_json points past the byte it peeked at; only here can that byte be a valid start
    // of a value (an extra element after a struct read from an array), which must not count.
    if message.starts_with("trailing characters") {
        end = end.saturating_sub(1);
    }
    let mut scan = Scan::new();
    for (i, &b) in json.iter().enumerate().take(end) {
        if !scan.step(json, i, b) {
            scan.stopped = true;
            break;
        }
    }
    scan.finish(end);
    scan.path(err.classify(), &message, end)
}

/// Bytes before line `line` (1-based), column `column` as serde_json counts them.
fn byte_offset(json: &[u8], line: usize, column: usize) -> Option<usize> {
    let start = match line {
        0 => return None,
        1 => 0,
        _ => {
            json.iter()
                .enumerate()
                .filter(|(_, &b)| b == b'\n')
                .nth(line - 2)?
                .0
                + 1
        }
    };
    Some(start.saturating_add(column).min(json.len()))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Root,
    Object,
    Array,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// After `{` or `[`.
    Open,
    /// Inside a member name.
    Key,
    /// After a member name, before `:`.
    AfterKey,
    /// After `:`, or the root before its value.
    BeforeValue,
    /// Inside a value (a scalar, or a nested object or array).
    InValue,
    /// After a value, before `,` or the end of the container.
    AfterValue,
    /// After `,`.
    AfterComma,
}

struct Frame {
    kind: Kind,
    stage: Stage,
    /// The current member name (objects).
    key: String,
    key_start: usize,
    /// The current element (arrays).
    index: usize,
}

enum Segment<'a> {
    None,
    Key(&'a str),
    UnknownKey,
    Index(usize),
}

impl Frame {
    fn new(kind: Kind, stage: Stage) -> Frame {
        Frame {
            kind,
            stage,
            key: String::new(),
            key_start: 0,
            index: 0,
        }
    }

    /// The segment of a frame with an open value inside it.
    fn outer(&self) -> Segment<'_> {
        match self.kind {
            Kind::Root => Segment::None,
            Kind::Object => Segment::Key(&self.key),
            Kind::Array => Segment::Index(self.index),
        }
    }

    /// The segment of the frame where serde_json stopped. Between members the error came from
    /// reading the next key, which `serde_path_to_error` names "?"; between elements it is the
    /// array's own. `at_value_end`: no byte was read after the last value.
    fn innermost(&self, category: Category, message: &str, at_value_end: bool) -> Segment<'_> {
        // A data error after a value is about that value (a wrong type, a missing field); so is
        // a syntax error right at its end (a number out of range). Anything else after it is
        // about the separator that should follow.
        let about_value =
            category == Category::Data || (category == Category::Syntax && at_value_end);
        match (self.kind, self.stage) {
            (Kind::Root, _) => Segment::None,
            (Kind::Object, Stage::Open | Stage::Key | Stage::AfterComma) => Segment::UnknownKey,
            // An unknown field is reported after its name; a duplicate field and a missing
            // colon are the object's.
            (Kind::Object, Stage::AfterKey) => {
                if category == Category::Data && !message.starts_with("duplicate field") {
                    Segment::Key(&self.key)
                } else {
                    Segment::None
                }
            }
            (Kind::Object, Stage::AfterValue) if !about_value => Segment::UnknownKey,
            (Kind::Object, _) => Segment::Key(&self.key),
            // The end of the input where an element may start is the array's; any other
            // mistake there is the element's.
            (Kind::Array, Stage::Open) if category == Category::Eof => Segment::None,
            (Kind::Array, Stage::AfterComma)
                if category == Category::Eof
                    || message.starts_with("trailing comma")
                    || message.starts_with("trailing characters") =>
            {
                Segment::None
            }
            (Kind::Array, Stage::AfterValue) if !about_value => Segment::None,
            (Kind::Array, _) => Segment::Index(self.index),
        }
    }
}

#[derive(Clone, Copy)]
enum Number {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDigit,
}

impl Number {
    /// The state after `b`; `Err(true)` when the number ended before `b`, `Err(false)` when
    /// `b` makes it invalid.
    fn next(self, b: u8) -> Result<Number, bool> {
        use Number::*;
        match (self, b) {
            (Minus, b'0') => Ok(Zero),
            (Minus | Int, b'1'..=b'9') | (Int, b'0') => Ok(Int),
            (Zero | Int, b'.') => Ok(Dot),
            (Dot | Frac, b'0'..=b'9') => Ok(Frac),
            (Zero | Int | Frac, b'e' | b'E') => Ok(Exp),
            (Exp, b'+' | b'-') => Ok(ExpSign),
            (Exp | ExpSign | ExpDigit, b'0'..=b'9') => Ok(ExpDigit),
            (Zero, b'0'..=b'9') => Err(false),
            (Zero | Int | Frac | ExpDigit, _) => Err(true),
            (Minus | Dot | Exp | ExpSign, _) => Err(false),
        }
    }

    fn is_complete(self) -> bool {
        matches!(
            self,
            Number::Zero | Number::Int | Number::Frac | Number::ExpDigit
        )
    }
}

enum Scalar {
    None,
    /// In a string; `escape`: bytes still owed to a `\` escape (1 after `\`, 4 after `\u`).
    Str {
        escape: u8,
    },
    Number(Number),
    /// The rest of `true`, `false` or `null`.
    Literal(&'static [u8]),
}

struct Scan {
    stack: Vec<Frame>,
    scalar: Scalar,
    /// Offset just past the last complete value.
    value_end: usize,
    stopped: bool,
}

impl Scan {
    fn new() -> Scan {
        Scan {
            stack: vec![Frame::new(Kind::Root, Stage::BeforeValue)],
            scalar: Scalar::None,
            value_end: 0,
            stopped: false,
        }
    }

    /// Reads byte `i`; false when it cannot come here (serde_json stopped at it).
    fn step(&mut self, json: &[u8], i: usize, b: u8) -> bool {
        match self.scalar {
            Scalar::None => {}
            Scalar::Str { escape } => {
                self.string_byte(json, i, b, escape);
                return true;
            }
            Scalar::Number(n) => match n.next(b) {
                Ok(n) => {
                    self.scalar = Scalar::Number(n);
                    return true;
                }
                Err(false) => return false,
                // The byte after a number belongs to what follows it.
                Err(true) => {
                    self.scalar = Scalar::None;
                    self.value_done(i);
                }
            },
            Scalar::Literal(rest) => {
                return match rest.split_first() {
                    Some((&c, tail)) if c == b => {
                        if tail.is_empty() {
                            self.scalar = Scalar::None;
                            self.value_done(i + 1);
                        } else {
                            self.scalar = Scalar::Literal(tail);
                        }
                        true
                    }
                    _ => false,
                };
            }
        }
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return true;
        }
        let open = self.stack.len().saturating_sub(1);
        let Some(top) = self.stack.last_mut() else {
            return false;
        };
        match (top.kind, top.stage, b) {
            (Kind::Array, Stage::Open, b']')
            | (Kind::Object, Stage::Open | Stage::AfterValue, b'}')
            | (Kind::Array, Stage::AfterValue, b']') => {
                self.close(i);
                true
            }
            (Kind::Object, Stage::Open | Stage::AfterComma, b'"') => {
                top.stage = Stage::Key;
                top.key_start = i + 1;
                self.scalar = Scalar::Str { escape: 0 };
                true
            }
            (Kind::Object, Stage::AfterKey, b':') => {
                top.stage = Stage::BeforeValue;
                true
            }
            (Kind::Object | Kind::Array, Stage::AfterValue, b',') => {
                if top.kind == Kind::Array {
                    top.index += 1;
                }
                top.stage = Stage::AfterComma;
                true
            }
            (Kind::Root | Kind::Object, Stage::BeforeValue, _)
            | (Kind::Array, Stage::Open | Stage::AfterComma, _) => {
                let (scalar, kind) = match b {
                    b'{' => (Scalar::None, Some(Kind::Object)),
                    b'[' => (Scalar::None, Some(Kind::Array)),
                    b'"' => (Scalar::Str { escape: 0 }, None),
                    b'-' => (Scalar::Number(Number::Minus), None),
                    b'0' => (Scalar::Number(Number::Zero), None),
                    b'1'..=b'9' => (Scalar::Number(Number::Int), None),
                    b't' => (Scalar::Literal(b"rue"), None),
                    b'f' => (Scalar::Literal(b"alse"), None),
                    b'n' => (Scalar::Literal(b"ull"), None),
                    _ => return false,
                };
                if kind.is_some() && open >= MAX_OPEN {
                    return false;
                }
                top.stage = Stage::InValue;
                self.scalar = scalar;
                if let Some(kind) = kind {
                    self.stack.push(Frame::new(kind, Stage::Open));
                }
                true
            }
            _ => false,
        }
    }

    fn string_byte(&mut self, json: &[u8], i: usize, b: u8, escape: u8) {
        self.scalar = match (escape, b) {
            (1, b'u') => Scalar::Str { escape: 4 },
            (0, b'\\') => Scalar::Str { escape: 1 },
            (0, b'"') => {
                self.scalar = Scalar::None;
                match self.stack.last_mut() {
                    Some(top) if top.stage == Stage::Key => {
                        top.key = unescape(json.get(top.key_start..i).unwrap_or_default());
                        top.stage = Stage::AfterKey;
                    }
                    _ => self.value_done(i + 1),
                }
                return;
            }
            (0, _) => Scalar::Str { escape: 0 },
            (n, _) => Scalar::Str { escape: n - 1 },
        };
    }

    fn close(&mut self, i: usize) {
        if self.stack.len() > 1 {
            self.stack.pop();
        }
        self.value_done(i + 1);
    }

    fn value_done(&mut self, end: usize) {
        if let Some(top) = self.stack.last_mut() {
            top.stage = Stage::AfterValue;
        }
        self.value_end = end;
    }

    /// At the end of the scan a number may be complete: serde_json read it and stopped after.
    fn finish(&mut self, end: usize) {
        if let (false, Scalar::Number(n)) = (self.stopped, &self.scalar) {
            if n.is_complete() {
                self.scalar = Scalar::None;
                self.value_done(end);
            }
        }
    }

    fn path(&self, category: Category, message: &str, end: usize) -> String {
        let mut path = String::new();
        // Written as `serde_path_to_error::Path` displays: "." before every segment but the
        // first and but indices.
        let mut first = true;
        let last = self.stack.len().saturating_sub(1);
        for (depth, frame) in self.stack.iter().enumerate() {
            let segment = if depth == last {
                frame.innermost(category, message, end == self.value_end)
            } else {
                frame.outer()
            };
            let name = match segment {
                Segment::None => continue,
                Segment::Key(key) => key,
                Segment::UnknownKey => "?",
                Segment::Index(i) => {
                    let _ = write!(path, "[{i}]");
                    first = false;
                    continue;
                }
            };
            if !first {
                path.push('.');
            }
            path.push_str(name);
            first = false;
        }
        path
    }
}

/// A member name as serde gave it to the visitor. Only names serde_json accepted reach here.
fn unescape(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut plain = Vec::new();
    let mut rest = raw;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            plain.push(b);
            continue;
        }
        out.push_str(&String::from_utf8_lossy(&plain));
        plain.clear();
        let Some((&e, tail)) = rest.split_first() else {
            break;
        };
        rest = tail;
        let c = match e {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let Some((high, tail)) = hex4(rest) else {
                    break;
                };
                rest = tail;
                let low = match rest {
                    [b'\\', b'u', tail @ ..] if (0xD800..0xDC00).contains(&high) => {
                        hex4(tail).filter(|(low, _)| (0xDC00..0xE000).contains(low))
                    }
                    _ => None,
                };
                let code = match low {
                    Some((low, tail)) => {
                        rest = tail;
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    }
                    None => high,
                };
                char::from_u32(code).unwrap_or('\u{fffd}')
            }
            other => char::from(other),
        };
        out.push(c);
    }
    out.push_str(&String::from_utf8_lossy(&plain));
    out
}

fn hex4(bytes: &[u8]) -> Option<(u32, &[u8])> {
    let digits = bytes.get(..4)?;
    let mut n = 0;
    for &d in digits {
        n = n * 16 + char::from(d).to_digit(16)?;
    }
    Some((n, bytes.get(4..)?))
}

#[cfg(test)]
mod tests;
