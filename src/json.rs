//! Strict JSON for untrusted input (token headers and payloads, JWKS, discovery documents), and
//! compact JSON written out (audit lines, problem bodies, shared records).
//!
//! `serde_json::Value` silently keeps the last of two members with the same name and allows 128
//! levels of nesting. A token whose payload says `"sub":"alice","sub":"admin"` must not mean one
//! thing to us and another to the upstream, so untrusted documents are read through a seed that
//! refuses duplicate member names and caps nesting depth while it builds the value.

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;
use std::fmt::Write as _;

/// Nesting allowed in token headers, payloads and JWKS documents.
pub const MAX_DEPTH: usize = 16;

/// Parses `bytes` as one JSON value, refusing duplicate member names, invalid UTF-8,
/// trailing data and nesting deeper than `max_depth`.
pub fn parse_strict(bytes: &[u8], max_depth: usize) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictSeed {
        depth_left: max_depth,
    }
    .deserialize(&mut de)
    .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// Parses `bytes` strictly and requires a JSON object at the top.
pub fn parse_object(bytes: &[u8], max_depth: usize) -> Result<Map<String, Value>, String> {
    match parse_strict(bytes, max_depth)? {
        Value::Object(map) => Ok(map),
        _ => Err("not a JSON object".to_string()),
    }
}

struct StrictSeed {
    depth_left: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl StrictSeed {
    fn nested<E: serde::de::Error>(&self) -> Result<StrictSeed, E> {
        match self.depth_left.checked_sub(1) {
            Some(depth_left) => Ok(StrictSeed { depth_left }),
            None => Err(E::custom("JSON nested too deeply")),
        }
    }
}

impl<'de> Visitor<'de> for StrictSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.nested()?)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if members.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate member \"{key}\"")));
            }
            let value = map.next_value_seed(self.nested()?)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

// ---- writing ----
//
// What serde_json's compact serializer writes, byte for byte (the tests compare the two), from a
// few direct appends to a `String`: serde's serializer, generic over writers and formatters, was
// ~14 KB of the module for the handful of objects the filter writes.

/// Appends `text` as a JSON string, escaped as serde_json escapes it: `"` and `\`, and control
/// characters (`\n`-style where JSON has one, `\u00XX` otherwise); nothing else.
pub fn write_str(out: &mut String, text: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, byte) in text.bytes().enumerate() {
        // `None`: a control character without a short form.
        let short = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(text.get(plain..i).unwrap_or_default());
        plain = i + 1;
        match short {
            Some(escape) => out.push_str(escape),
            None => _ = write!(out, "\\u{byte:04x}"),
        }
    }
    out.push_str(text.get(plain..).unwrap_or_default());
    out.push('"');
}

/// Appends `value` as compact JSON; an object's members in the map's (name) order.
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => _ = write!(out, "{n}"),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut object = Object::new(out);
            for (name, member) in members {
                object.value(name, member);
            }
            object.end();
        }
    }
}

/// `value` as compact JSON text.
pub fn to_text(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// An object being written, one member at a time, in the order the calls come.
pub struct Object<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> Object<'o> {
    pub fn new(out: &'o mut String) -> Self {
        out.push('{');
        Object { out, first: true }
    }

    /// Starts the member `name`; its value is written next, to [`Object::out`].
    fn name(&mut self, name: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, name);
        self.out.push(':');
    }

    pub fn str(&mut self, name: &str, value: &str) {
        self.name(name);
        write_str(self.out, value);
    }

    /// A string, or `null`.
    pub fn opt_str(&mut self, name: &str, value: Option<&str>) {
        match value {
            Some(value) => self.str(name, value),
            None => {
                self.name(name);
                self.out.push_str("null");
            }
        }
    }

    pub fn u64(&mut self, name: &str, value: u64) {
        self.name(name);
        _ = write!(self.out, "{value}");
    }

    pub fn value(&mut self, name: &str, value: &Value) {
        self.name(name);
        write_value(self.out, value);
    }

    /// An array of strings.
    pub fn strs<'s>(&mut self, name: &str, values: impl IntoIterator<Item = &'s str>) {
        self.name(name);
        self.out.push('[');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            write_str(self.out, value);
        }
        self.out.push(']');
    }

    /// A nested object, written by `members`.
    pub fn object(&mut self, name: &str, members: impl FnOnce(&mut Object)) {
        self.name(name);
        let mut inner = Object::new(self.out);
        members(&mut inner);
        inner.end();
    }

    pub fn end(self) {
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// JSON values of every kind, strings with control characters, quotes, backslashes and
    /// non-ASCII, numbers of the three kinds.
    fn any_value() -> impl Strategy<Value = Value> {
        let text = proptest::collection::vec(
            prop_oneof![
                4 => proptest::char::range(' ', '~'),
                1 => proptest::char::range('\u{0}', '\u{1f}'),
                1 => prop::sample::select(vec!['"', '\\', '\u{7f}', 'é', '\u{2028}', '😀']),
            ],
            0..12,
        )
        .prop_map(|chars| chars.into_iter().collect::<String>());
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", Number::from_f64)
                .prop_map(Value::Number),
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(text.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: if cfg!(target_arch = "wasm32") { 256 } else { 2048 },
            ..ProptestConfig::default()
        })]

        #[test]
        fn writes_what_serde_json_writes(value in any_value()) {
            let ours = to_text(&value);
            prop_assert_eq!(&ours, &serde_json::to_string(&value).unwrap());
            // Read back (not compared: serde_json's float reading is off by an ulp at times).
            prop_assert!(parse_strict(ours.as_bytes(), 64).is_ok());
        }
    }

    #[test]
    fn an_object_is_written_in_the_order_of_the_calls() {
        let mut out = String::new();
        let mut o = Object::new(&mut out);
        o.str("b", "x\"y");
        o.opt_str("a", None);
        o.u64("n", 7);
        o.strs("l", ["p", "q"]);
        o.object("c", |inner| inner.str("k", "\u{1}"));
        o.end();
        assert_eq!(
            out,
            r#"{"b":"x\"y","a":null,"n":7,"l":["p","q"],"c":{"k":"\u0001"}}"#
        );
    }

    #[test]
    fn accepts_ordinary_objects() {
        let v = parse_object(br#"{"a":1,"b":[true,null,"x"],"c":{"d":1.5}}"#, 4).unwrap();
        assert_eq!(v["b"][2], "x");
    }

    #[test]
    fn refuses_duplicate_members_at_any_depth() {
        assert!(parse_strict(br#"{"sub":"a","sub":"b"}"#, 4)
            .unwrap_err()
            .contains("duplicate"));
        assert!(parse_strict(br#"{"x":{"k":1,"k":2}}"#, 4).is_err());
    }

    #[test]
    fn caps_depth() {
        let deep = format!("{}{}", "[".repeat(20), "]".repeat(20));
        assert!(parse_strict(deep.as_bytes(), 16).is_err());
        let ok = format!("{}{}", "[".repeat(10), "]".repeat(10));
        assert!(parse_strict(ok.as_bytes(), 16).is_ok());
    }

    #[test]
    fn refuses_invalid_utf8_trailing_data_and_non_objects() {
        assert!(parse_strict(b"{\"a\":\"\xff\"}", 4).is_err());
        assert!(parse_strict(br#"{"a":1} x"#, 4).is_err());
        assert!(parse_object(b"[1]", 4).is_err());
    }
}
